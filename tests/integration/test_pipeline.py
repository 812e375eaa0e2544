"""The deploy pipeline end to end, with real git, buildah, registry,
PostgreSQL, systemd scopes and journal; Kubernetes is the stand-in."""
import os
import re
import unittest

from fixtures import example_app_files
from nornlib import main, run, wait_until
from pipeline_env import PipelineEnv, psql

STEPS = ["clone", "build", "test", "snapshot", "migrate", "deploy", "cleanup"]


class FullDeployTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.env = PipelineEnv().__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.env.__exit__(None, None, None)

    def tearDown(self):
        self.env.nornd.alive()

    def test_1_full_deploy(self):
        env = self.env
        p = env.deploy("hello")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr + env.nornd.log()[-3000:])
        deploy_id = env.deployment_id(p.stdout)
        for step in STEPS:
            self.assertIn(f"\u2713 {step}", p.stdout)
        self.assertIn("deployed", p.stdout.splitlines()[-1])

        head = env.repo.head_sha()
        row = env.row(deploy_id)
        image = f"{env.registry.address}/hello:{head[:12]}"
        self.assertEqual((row["status"], row["commit_sha"], row["image_tag"], row["source"], row["error"]),
                         ("deployed", head, image, "git", None))
        self.assertIsNotNone(row["finished_at"])
        steps = env.steps(deploy_id)
        self.assertEqual([s for s in STEPS if steps[s]["status"] == "succeeded"], STEPS)
        # Every command ran in its own scope; deploy is an API call, not a command.
        for name in STEPS:
            if name == "deploy":
                self.assertIsNone(steps[name]["scope_unit"])
                continue
            self.assertRegex(steps[name]["scope_unit"] or "", rf"^norn-hello-{deploy_id}-{name}(-\d+)?\.scope$")
        self.assertEqual(steps["test"]["exit_code"], 0)

        # The registry holds the image, the stand-in runs it.
        self.assertIn(head[:12], env.registry.tags("hello"))
        self.assertEqual(env.kube.image("hello"), image)

        # The snapshot was taken before the migration, recorded, and exists.
        snap = psql(f"SELECT file || '|' || size_bytes || '|' || commit_sha FROM snapshots "
                    f"WHERE deployment_id = {deploy_id}")
        path, size, sha = snap.split("|")
        self.assertTrue(os.path.isfile(path), path)
        self.assertRegex(os.path.basename(path), rf"^hello_{head[:12]}_\d{{8}}T\d{{6}}\.\d{{6}}Z\.dump$")
        self.assertEqual(int(size), os.path.getsize(path))
        self.assertEqual(sha, head)
        # The migration ran against the app's database.
        self.assertEqual(psql("SELECT message FROM greetings WHERE id = 1", db="hello"), "hello, world")

        # The journal has the whole deploy, each step tagged.
        entries = env.journal(deploy_id)
        self.assertTrue({e.get("NORN_STEP") for e in entries} >= set(STEPS) - {"cleanup"} | {"clone"},
                        {e.get("NORN_STEP") for e in entries})
        self.assertTrue(all(e.get("NORN_APP") == "hello" for e in entries))
        messages = [e["MESSAGE"] for e in entries if isinstance(e.get("MESSAGE"), str)]
        self.assertTrue(any("deployed" in m for m in messages), messages[-5:])
        completed = [e for e in entries if e.get("MESSAGE_ID") == "3c2b8e0b6a5e4d2c9f1e7a4b5d6c8e02"]
        self.assertEqual(len(completed), 1)

        # The work dir is gone.
        self.assertEqual([w for w in env.workdirs() if w.startswith("hello-")], [])

    def test_2_deploy_older_sha(self):
        env = self.env
        old = env.repo.shas[0]
        self.assertNotEqual(old, env.repo.head_sha())
        p = env.deploy("hello", old)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        row = env.row(env.deployment_id(p.stdout))
        self.assertEqual(row["commit_sha"], old)
        self.assertEqual(row["image_tag"], f"{env.registry.address}/hello:{old[:12]}")
        self.assertEqual(env.kube.image("hello"), row["image_tag"])

    def test_3_deploy_short_sha(self):
        env = self.env
        sha = env.repo.shas[1]
        p = env.deploy("hello", sha[:10])
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(env.row(env.deployment_id(p.stdout))["commit_sha"], sha)

    def test_4_unknown_sha_fails_at_clone(self):
        p = self.env.deploy("hello", "deadbeefdeadbeefdeadbeefdeadbeefdeadbeef")
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        deploy_id = self.env.deployment_id(p.stdout)
        row, steps = self.env.row(deploy_id), self.env.steps(deploy_id)
        self.assertEqual((row["status"], row["step"]), ("failed", "cleanup"))
        self.assertEqual(steps["clone"]["status"], "failed")
        self.assertEqual(steps["build"]["status"], "pending")
        self.assertIn("deadbeef", row["error"])


class FailureTest(unittest.TestCase):
    """Each step failing: failed at that step, error recorded, later steps
    not run, work dir gone."""

    @classmethod
    def setUpClass(cls):
        cls.env = PipelineEnv(kube_deployments=("hello", "broken-build", "broken-test", "broken-migrate",
                                                "nodb")).__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.env.__exit__(None, None, None)

    def app_from_repo(self, name, **kw):
        from fixtures import GitRepo
        repo = GitRepo(example_app_files(app=name, **kw), name=name).__enter__()
        self.addCleanup(repo.__exit__, None, None, None)
        self.env.add_app(name, example_app_files(repo.file_url, app=name, **kw))
        return repo

    def assert_failed_at(self, app, step, error_pattern):
        env = self.env
        p = env.deploy(app)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        deploy_id = env.deployment_id(p.stdout)
        row, steps = env.row(deploy_id), env.steps(deploy_id)
        self.assertEqual(row["status"], "failed")
        self.assertRegex(row["error"] or "", error_pattern)
        self.assertEqual(steps[step]["status"], "failed", steps)
        later = STEPS[STEPS.index(step) + 1:-1]
        self.assertEqual([s for s in later if steps[s]["status"] != "pending"], [], steps)
        self.assertEqual(steps["cleanup"]["status"], "succeeded")
        self.assertEqual([w for w in env.workdirs() if w.startswith(f"{app}-")], [])
        self.assertIn(f"\u2717 {step}", p.stdout)
        env.nornd.alive()
        return row, steps

    def test_clone_of_missing_repo(self):
        files = example_app_files("file:///nonexistent/repo.git", app="ghost")
        self.env.add_app("ghost", files)
        self.assert_failed_at("ghost", "clone", r"git clone")

    def test_failing_dockerfile(self):
        self.app_from_repo("broken-build", broken="build")
        self.assert_failed_at("broken-build", "build", r"image build exited with status \d+")

    def test_failing_test(self):
        self.app_from_repo("broken-test", broken="test")
        row, steps = self.assert_failed_at("broken-test", "test", r"test command exited with status 1")
        self.assertEqual(steps["test"]["exit_code"], 1)

    def test_pg_dump_of_missing_database(self):
        self.app_from_repo("nodb", database="no_such_database")
        row, steps = self.assert_failed_at("nodb", "snapshot", r"pg_dump exited")
        self.assertIn("no_such_database", steps["snapshot"]["output_tail"])

    def test_failing_migration(self):
        self.app_from_repo("broken-migrate", broken="migrate")
        row, steps = self.assert_failed_at("broken-migrate", "migrate", r"migration command exited")
        # The snapshot taken before stays available for a restore.
        self.assertEqual(steps["snapshot"]["status"], "succeeded")
        snap = psql(f"SELECT file FROM snapshots WHERE deployment_id = {row['id']}")
        self.assertTrue(os.path.isfile(snap))

    def test_kubernetes_404(self):
        self.app_from_repo("nok8s")
        row, _ = self.assert_failed_at("nok8s", "deploy", r"(?i)deployment default/nok8s not found")

    def test_kubernetes_401(self):
        self.env.kube.write_kubeconfig(self.env.kube.kubeconfig + ".bad", "wrong-token")
        from pipeline_env import KUBE_TOKEN
        # A fresh nornd reading the bad kubeconfig.
        self.env.nornd.__exit__(None)
        try:
            self.env.nornd.env["KUBECONFIG"] = self.env.kube.kubeconfig + ".bad"
            self.env.nornd.start()
            wait_until(lambda: self.env.nornd.health()[1]["components"]["database"]["status"] == "up")
            row, _ = self.assert_failed_at("hello", "deploy", r"(?i)not authori[sz]ed|unauthori[sz]ed|401")
            self.assertNotIn("wrong-token", row["error"])
            self.assertNotIn(KUBE_TOKEN, self.env.nornd.log())
        finally:
            self.env.nornd.__exit__(None)
            self.env.nornd.env["KUBECONFIG"] = self.env.kube.kubeconfig
            self.env.nornd.start()


if __name__ == "__main__":
    main()
