"""Start-up recovery reconciles instead of guessing (issue 11 #4): nornd
killed (-9) while following a rollout has the rollout checked again against
the cluster (the Kubernetes stand-in) and the deployment ends with what is
true; killed during cleanup, after the deploy step succeeded, it is deployed.
The record says that nornd restarted meanwhile.

Made deterministic with the stand-in's controls: a rollout to an image the
stand-in never makes ready stalls until the test says "ready"; cleanup is
caught by stopping the systemd user manager (SIGSTOP) before its scope can
start, so nornd is killed with the cleanup recorded as running."""
import json
import os
import signal
import subprocess
import threading
import unittest

from fixtures import example_app_files, write_files
from nornlib import NORNCTL, main, run, wait_until
from pipeline_env import KubeStandin, PipelineEnv

BAD = {"standin.norn.dev/never-ready-image": "*/*:*"}   # images norn built; not "<app>:initial"


def local_app_files(app):
    files = example_app_files(app=app)
    files["infraspec.yaml"] = "\n".join([f"app: {app}", "role: webserver", "port: 8080", "deploy: true",
                                         "build:", "  dockerfile: Dockerfile"]) + "\n"
    del files["migrations/001.sql"]
    return files


def cron_app_files(app, runtime, fifo):
    """A local cron app whose test step waits on fifo."""
    files = example_app_files(app=app)
    del files["migrations/001.sql"]
    files["infraspec.yaml"] = "\n".join([
        f"app: {app}", "role: cron", "deploy: true", 'schedule: "@yearly"', 'command: "true"',
        "runtime: " + json.dumps(runtime), "build:", "  dockerfile: Dockerfile",
        "  test: " + json.dumps(f"echo waiting; read x < {fifo}")]) + "\n"
    return files


def cron_units(app):
    out = run(["systemctl", "--user", "list-units", "--all", "--plain", "--no-legend", f"norn-cron-{app}.*"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


APPS = {
    "waitok": KubeStandin.deployment("waitok", annotations=BAD, progress_deadline=600),
    "waitbad": KubeStandin.deployment("waitbad", annotations=BAD, progress_deadline=4),
    "inclean": KubeStandin.deployment("inclean", annotations=BAD, progress_deadline=600),
}


class RecoveryTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.env = PipelineEnv(nornd_env={"NORN_ROLLOUT_TIMEOUT": "120"}, kube_deployments=tuple(APPS.values()))
        cls.env.__enter__()
        for app in APPS:
            write_files(cls.env.add_app(app, local_app_files(app)), local_app_files(app))
        # Paths a cron runtime may have: no '_' or "/." in them.
        cls.cron_dir = os.path.join(os.environ["NORN_SANDBOX_DIR"], "recovery-" + os.urandom(4).hex())
        os.makedirs(cls.cron_dir)
        os.chmod(cls.cron_dir, 0o755)
        runtime = os.path.join(cls.cron_dir, "runtime")
        with open(runtime, "w") as f:
            f.write("#!/bin/sh\nexit 0\n")
        os.chmod(runtime, 0o755)
        cls.fifo = os.path.join(cls.cron_dir, "release")
        os.mkfifo(cls.fifo)
        files = cron_app_files("cronny", runtime, cls.fifo)
        write_files(cls.env.add_app("cronny", files), files)

    @classmethod
    def tearDownClass(cls):
        cls.env.__exit__(None, None, None)

    def tearDown(self):
        self.env.nornd.alive()

    def deploy_until(self, app, marker):
        """nornctl deploy app, read until a line has marker: (process, deployment id)."""
        p = subprocess.Popen([NORNCTL, "--user", "deploy", app], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        lines = []
        for line in p.stdout:
            lines.append(line)
            if marker in line:
                break
        else:
            raise AssertionError("".join(lines) + p.stderr.read())
        return p, self.env.deployment_id("".join(lines))

    def kill_nornd(self, client):
        os.kill(self.env.nornd.proc.pid, signal.SIGKILL)
        self.env.nornd.proc.wait()
        client.communicate(timeout=60)

    def ready(self, app):
        status, _ = self.env.kube.request("POST", f"/_standin/deployments/default/{app}/ready", {})
        self.assertEqual(status, 200)

    def manager_pid(self):
        return int(run(["busctl", "--user", "call", "org.freedesktop.DBus", "/org/freedesktop/DBus",
                        "org.freedesktop.DBus", "GetConnectionUnixProcessID", "s",
                        "org.freedesktop.systemd1"]).stdout.split()[1])

    def release(self):
        with open(self.fifo, "w") as f:
            f.write("go\n")

    def assert_rolled_out(self, name, image):
        obj = self.env.kube.get(name)
        st, spec = obj["status"], obj["spec"]
        self.assertEqual(spec["template"]["spec"]["containers"][0]["image"], image)
        self.assertEqual((st["replicas"], st["updatedReplicas"], st["availableReplicas"]), (spec["replicas"],) * 3)

    def test_killed_while_following_a_rollout_that_then_completes(self):
        env = self.env
        p, deploy_id = self.deploy_until("waitok", "rollout: ")
        image = env.row(deploy_id)["image_tag"]
        self.assertEqual(env.kube.image("waitok"), image)   # the PATCH is done
        self.kill_nornd(p)
        env.nornd.start()
        wait_until(lambda: "checking it again" in env.nornd.log(), timeout=60, what="the rollout to be checked")
        # Still rolling out: the row waits, and so does the next deploy of the app.
        self.assertEqual(env.row(deploy_id)["status"], "deploying")
        self.ready("waitok")
        wait_until(lambda: env.row(deploy_id)["status"] != "deploying", timeout=60, what="reconciliation")
        row, steps = env.row(deploy_id), env.steps(deploy_id)
        self.assertEqual((row["status"], row["error"]), ("deployed", None))
        self.assertEqual(steps["deploy"]["status"], "succeeded")
        self.assertIn(f"nornd restarted while following the rollout of {image}; checked again at start-up: "
                      "complete (1 of 1 updated, 1 available)", steps["deploy"]["output_tail"])
        self.assertEqual(steps["cleanup"]["status"], "succeeded")
        self.assertIn("nornd restarted before cleanup ended", steps["cleanup"]["output_tail"])
        self.assert_rolled_out("waitok", image)
        self.assertEqual([w for w in env.workdirs() if w.startswith("waitok-")], [])
        # nornctl tells the same.
        shown = run([NORNCTL, "--user", "show", str(deploy_id), "--json"]).stdout
        self.assertIn('"deployed"', shown)

    def test_killed_while_following_a_rollout_that_fails(self):
        env = self.env
        p, deploy_id = self.deploy_until("waitbad", "rollout: ")
        image = env.row(deploy_id)["image_tag"]
        self.kill_nornd(p)
        env.nornd.start()
        wait_until(lambda: env.row(deploy_id)["status"] != "deploying", timeout=60, what="reconciliation")
        row, steps = env.row(deploy_id), env.steps(deploy_id)
        self.assertEqual(row["status"], "failed")
        self.assertRegex(row["error"], rf"^nornd restarted while following the rollout of {image}; checked "
                                       r"again at start-up: it did not complete: ProgressDeadlineExceeded: ")
        self.assertEqual(steps["deploy"]["status"], "failed")
        self.assertEqual(env.kube.image("waitbad"), image)

    def test_killed_during_cleanup(self):
        env = self.env
        p, deploy_id = self.deploy_until("inclean", "rollout: ")
        image = env.row(deploy_id)["image_tag"]
        # The user manager stops answering: cleanup's scope cannot start.
        manager = self.manager_pid()
        os.kill(manager, signal.SIGSTOP)
        try:
            self.ready("inclean")
            wait_until(lambda: env.steps(deploy_id)["cleanup"]["status"] == "running", timeout=60,
                       what="cleanup to start")
            self.assertEqual(env.steps(deploy_id)["deploy"]["status"], "succeeded")
            self.kill_nornd(p)
        finally:
            os.kill(manager, signal.SIGCONT)
        env.nornd.start()
        wait_until(lambda: env.row(deploy_id)["status"] != "deploying", timeout=60, what="reconciliation")
        row, steps = env.row(deploy_id), env.steps(deploy_id)
        self.assertEqual((row["status"], row["error"]), ("deployed", None))
        self.assertEqual(steps["cleanup"]["status"], "succeeded")
        self.assertIn("nornd restarted before cleanup ended; the work dir was removed when it started again",
                      steps["cleanup"]["output_tail"])
        self.assert_rolled_out("inclean", image)
        wait_until(lambda: not [w for w in env.workdirs() if w.startswith("inclean-")], what="work dir removed")
        # And the app deploys again.
        self.ready("inclean")
        p = env.deploy("inclean")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_killed_while_setting_up_a_cron_timer(self):
        env = self.env
        p, deploy_id = self.deploy_until("cronny", "waiting")
        # The manager stops answering before the deploy step asks it for the timer.
        manager = self.manager_pid()
        os.kill(manager, signal.SIGSTOP)
        try:
            self.release()
            wait_until(lambda: env.steps(deploy_id)["deploy"]["status"] == "running", timeout=90,
                       what="the deploy step to start")
            self.kill_nornd(p)
        finally:
            os.kill(manager, signal.SIGCONT)
        env.nornd.start()
        wait_until(lambda: env.row(deploy_id)["status"] != "deploying", timeout=60, what="reconciliation")
        row, steps = env.row(deploy_id), env.steps(deploy_id)
        self.assertEqual(row["status"], "failed")
        self.assertEqual(row["error"], "nornd restarted while setting up the timer, before it was recorded; the "
                                       "timer of the last good deploy stays")
        self.assertEqual(steps["deploy"]["status"], "failed")
        # The manager agrees with the record: no timer for a deploy that never was recorded.
        wait_until(lambda: "Timer of cronny checked against the manager" in env.nornd.log(), timeout=60,
                   what="the timer check")
        self.assertEqual(cron_units("cronny"), [])
        # A deploy now goes through, and its timer is there.
        threading.Thread(target=self.release, daemon=True).start()
        p = env.deploy("cronny")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("norn-cron-cronny.timer", cron_units("cronny"))


if __name__ == "__main__":
    main()
