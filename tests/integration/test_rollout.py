"""The deploy step waits for the Kubernetes rollout as `kubectl rollout status`
does, sets the previous image back when the rollout fails, retries on 409
conflicts, and stops (setting the previous image back) when cancelled.
Kubernetes is the stand-in (tests/k8s-standin.py), whose rollouts here take
2 seconds; nornd waits at most NORN_ROLLOUT_TIMEOUT=5 seconds."""
import subprocess
import time
import unittest

from fixtures import example_app_files, write_files
from nornlib import NORNCTL, main, run, wait_until
from pipeline_env import KubeStandin, PipelineEnv

ROLLOUT_SECONDS = 2
TIMEOUT = 5
SMP = "application/strategic-merge-patch+json"
BAD = {"standin.norn.dev/never-ready-image": "*/*:*"}   # images norn built; not "<app>:initial"


def local_app_files(app):
    """A local app (its directory is the source): build, no test, no database."""
    files = example_app_files(app=app)
    files["infraspec.yaml"] = "\n".join([f"app: {app}", "role: webserver", "port: 8080", "deploy: true",
                                         "build:", "  dockerfile: Dockerfile"]) + "\n"
    del files["migrations/001.sql"]
    return files


APPS = {
    "roll": KubeStandin.deployment("roll", replicas=3),
    "stuck": KubeStandin.deployment("stuck", replicas=2, annotations=BAD, progress_deadline=2),
    "slowstuck": KubeStandin.deployment("slowstuck", annotations=BAD, progress_deadline=600),
    "cancelme": KubeStandin.deployment("cancelme", annotations=BAD, progress_deadline=600),
    "conflict": KubeStandin.deployment("conflict"),
    "conflict5": KubeStandin.deployment("conflict5"),
}


class RolloutTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.env = PipelineEnv(nornd_env={"NORN_ROLLOUT_TIMEOUT": str(TIMEOUT)},
                              kube_deployments=tuple(APPS.values()) + ("control",),
                              kube_options={"rollout_seconds": ROLLOUT_SECONDS}).__enter__()
        for app in APPS:
            write_files(cls.env.add_app(app, local_app_files(app)), local_app_files(app))

    @classmethod
    def tearDownClass(cls):
        cls.env.__exit__(None, None, None)

    def tearDown(self):
        self.env.nornd.alive()

    def deploy(self, app):
        p = self.env.deploy(app)
        deploy_id = self.env.deployment_id(p.stdout)
        return p, self.env.row(deploy_id), self.env.steps(deploy_id)

    def deploy_log(self, steps):
        return steps["deploy"]["output_tail"] or ""

    def assert_rolled_out(self, name, image):
        obj = self.env.kube.get(name)
        st, spec = obj["status"], obj["spec"]
        self.assertEqual(obj["spec"]["template"]["spec"]["containers"][0]["image"], image)
        self.assertGreaterEqual(st["observedGeneration"], obj["metadata"]["generation"])
        self.assertEqual((st["replicas"], st["updatedReplicas"], st["availableReplicas"]),
                         (spec["replicas"],) * 3, st)

    def test_successful_rollout_is_waited_for(self):
        p, row, steps = self.deploy("roll")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual((row["status"], row["error"]), ("deployed", None))
        deploy = steps["deploy"]
        self.assertEqual(deploy["status"], "succeeded")
        # The stand-in takes 2 s to replace the 3 pods: the step waited for it.
        self.assertGreaterEqual(deploy["duration_ms"], ROLLOUT_SECONDS * 1000 - 300, deploy)
        log = self.deploy_log(steps)
        self.assertIn("deployment default/roll runs image roll:initial", log)
        self.assertRegex(log, r"rollout: [0-2] of 3 updated")
        self.assertIn("rollout: 3 of 3 updated, 3 available", log)
        self.assertRegex(log, rf"rollout of {row['image_tag']} complete: 3 of 3 updated, 3 available \(\d+\.\d s\)")
        # Progress lines are streamed to the client as the rollout goes.
        self.assertIn("rollout: ", p.stdout)
        self.assert_rolled_out("roll", row["image_tag"])

    def test_progress_deadline_rolls_back(self):
        p, row, steps = self.deploy("stuck")
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertEqual(row["status"], "failed")
        self.assertEqual(steps["deploy"]["status"], "failed")
        self.assertEqual(steps["cleanup"]["status"], "succeeded")
        err = row["error"]
        self.assertRegex(err, rf"^rollout of {row['image_tag']} did not complete: ProgressDeadlineExceeded: "
                              r"ReplicaSet \"stuck-[0-9a-f]+\" has timed out progressing\.")
        self.assertRegex(err, r"; rolled back to image stuck:initial \(its rollout completed in \d+\.\d s\)$")
        log = self.deploy_log(steps)
        self.assertIn("rolling back to image stuck:initial", log)
        self.assertIn("rollback rollout: 2 of 2 updated, 2 available", log)
        # The cluster runs the previous image again, fully rolled out.
        self.assert_rolled_out("stuck", "stuck:initial")

    def test_rollout_timeout_rolls_back(self):
        started = time.monotonic()
        p, row, steps = self.deploy("slowstuck")
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertEqual(row["status"], "failed")
        self.assertRegex(row["error"], rf"^rollout of {row['image_tag']} did not complete within {TIMEOUT} s "
                                       r"\(NORN_ROLLOUT_TIMEOUT\): 1 of 1 updated, 1 available, "
                                       r"1 old still running; rolled back to image slowstuck:initial")
        self.assertGreaterEqual(steps["deploy"]["duration_ms"], TIMEOUT * 1000)
        self.assertLess(time.monotonic() - started, 120)
        self.assert_rolled_out("slowstuck", "slowstuck:initial")

    def test_cancel_during_rollout_sets_image_back(self):
        env = self.env
        p = subprocess.Popen([NORNCTL, "--user", "deploy", "cancelme"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        lines = []
        for line in p.stdout:
            lines.append(line)
            if "rollout: " in line:
                break
        deploy_id = env.deployment_id("".join(lines))
        image = env.row(deploy_id)["image_tag"]
        self.assertEqual(env.kube.image("cancelme"), image)
        time.sleep(0.3)   # most likely between two polls: the timer, not a request, is pending
        t0 = time.monotonic()
        run([NORNCTL, "--user", "cancel", str(deploy_id)])
        rest, _ = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 1, rest)
        wait_until(lambda: env.row(deploy_id)["status"] == "failed", what="deployment to end")
        self.assertLess(time.monotonic() - t0, 3)
        row, steps = env.row(deploy_id), env.steps(deploy_id)
        self.assertEqual(row["error"], "cancelled")
        self.assertEqual(steps["deploy"]["status"], "failed")
        self.assertIn("cancelled: setting image cancelme:initial back", self.deploy_log(steps))
        wait_until(lambda: env.kube.image("cancelme") == "cancelme:initial", what="previous image back")

    def test_conflict_is_retried(self):
        status, _ = self.env.kube.request("POST", "/_standin/deployments/default/conflict/conflict", {"count": 1})
        self.assertEqual(status, 200)
        p, row, steps = self.deploy("conflict")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(row["status"], "deployed")
        log = self.deploy_log(steps)
        self.assertIn('conflict: deployment default/conflict was changed meanwhile', log)
        self.assertIn("reading it again (attempt 2 of 3)", log)
        self.assert_rolled_out("conflict", row["image_tag"])
        self.assertRegex(self.env.kube.log(), r"PATCH /apis/apps/v1/namespaces/default/deployments/conflict -> 409")

    def test_conflicts_give_up_after_three_attempts(self):
        status, _ = self.env.kube.request("POST", "/_standin/deployments/default/conflict5/conflict", {"count": 5})
        self.assertEqual(status, 200)
        p, row, steps = self.deploy("conflict5")
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertEqual((row["status"], steps["deploy"]["status"]), ("failed", "failed"))
        self.assertRegex(row["error"], r"^conflict: deployment default/conflict5 was changed meanwhile: .*"
                                       r"\(gave up after 3 attempts\)$")
        self.assertEqual(self.env.kube.image("conflict5"), "conflict5:initial")
        patches = [l for l in self.env.kube.log().splitlines()
                   if "PATCH /apis/apps/v1/namespaces/default/deployments/conflict5 " in l]
        self.assertEqual(len(patches), 3, patches)

    def test_standin_conflict_control(self):
        # The control itself: a stale resourceVersion is refused; the current one is not.
        kube = self.env.kube
        path = "/apis/apps/v1/namespaces/default/deployments/control"
        rv = kube.get("control")["metadata"]["resourceVersion"]
        self.assertEqual(kube.request("POST", "/_standin/deployments/default/control/conflict", {})[0], 200)
        patch = {"metadata": {"resourceVersion": rv, "annotations": {"x": "1"}}}
        status, obj = kube.request("PATCH", path, patch, SMP)
        self.assertEqual((status, obj.get("reason")), (409, "Conflict"), obj)
        patch["metadata"]["resourceVersion"] = kube.get("control")["metadata"]["resourceVersion"]
        status, obj = kube.request("PATCH", path, patch, SMP)
        self.assertEqual(status, 200, obj)
        self.assertEqual(obj["metadata"]["annotations"]["x"], "1")


if __name__ == "__main__":
    main()
