"""Rollback and database restore against the real pipeline: the image of
the last good deployment goes back, failed ones are skipped, the replaced
deployment becomes rolled_back, and a restore brings the data back."""
import subprocess
import unittest

from fixtures import MIGRATION_001
from nornlib import NORNCTL, main, run
from pipeline_env import PipelineEnv, psql

CHANGE = "UPDATE greetings SET message = 'changed by v2' WHERE id = 1;\n"


class RollbackTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.env = PipelineEnv().__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.env.__exit__(None, None, None)

    def deploy(self, ref=None):
        p = self.env.deploy("hello", ref)
        return p, self.env.row(self.env.deployment_id(p.stdout))

    def nornctl(self, *args):
        return run([NORNCTL, "--user"] + list(args), check=False, timeout=240)

    def test_1_nothing_to_roll_back(self):
        p = self.nornctl("rollback", "hello")
        self.assertEqual(p.returncode, 1)
        self.assertIn("nothing to roll back", p.stderr)

    def test_2_rollback_skips_failed_and_marks_rolled_back(self):
        env = self.env
        _, first = self.deploy(env.repo.shas[0])
        _, second = self.deploy(env.repo.shas[1])
        _, broken = self.deploy("0" * 40)
        self.assertEqual(broken["status"], "failed")
        _, current = self.deploy(env.repo.shas[2])
        self.assertEqual([r["status"] for r in (first, second, current)], ["deployed"] * 3)

        p = self.nornctl("rollback", "hello")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        rb = env.row(env.deployment_id(p.stdout))
        self.assertEqual((rb["status"], rb["rollback_of"], rb["commit_sha"], rb["image_tag"]),
                         ("deployed", current["id"], second["commit_sha"], second["image_tag"]))
        self.assertEqual(env.row(current["id"])["status"], "rolled_back")
        self.assertEqual(env.kube.image("hello"), second["image_tag"])
        steps = env.steps(rb["id"])
        self.assertEqual({n: s["status"] for n, s in steps.items()},
                         {"clone": "skipped", "build": "skipped", "test": "skipped", "snapshot": "skipped",
                          "migrate": "skipped", "deploy": "succeeded", "cleanup": "skipped"})
        rolled = [e for e in env.journal(rb["id"]) if e.get("MESSAGE_ID") == "3c2b8e0b6a5e4d2c9f1e7a4b5d6c8e04"]
        self.assertEqual(len(rolled), 1)

        # To a chosen one: the first deployment.
        p = self.nornctl("rollback", "hello", "--to", str(first["id"]))
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        rb2 = env.row(env.deployment_id(p.stdout))
        self.assertEqual((rb2["image_tag"], rb2["rollback_of"]), (first["image_tag"], rb["id"]))
        self.assertEqual(env.row(rb["id"])["status"], "rolled_back")
        self.assertEqual(env.kube.image("hello"), first["image_tag"])

        # Not to a failed one, nor to a deployment of another app or no deployment.
        for to in (broken["id"], 999999):
            p = self.nornctl("rollback", "hello", "--to", str(to))
            self.assertEqual(p.returncode, 1)
            self.assertIn("is not an earlier successful deployment", p.stderr)
        for bad in (["--to", "-1"], ["--to", "x"], ["--to"], ["--restore-db", "--bogus"]):
            p = self.nornctl("rollback", "hello", *bad)
            self.assertEqual(p.returncode, 2, bad)  # nornctl's usage error

    def test_3_rollback_refused_while_deploying(self):
        p = subprocess.Popen([NORNCTL, "--user", "deploy", "hello"], stdout=subprocess.PIPE, text=True)
        try:
            line = p.stdout.readline()
            self.assertIn("queued", line)
            r = self.nornctl("rollback", "hello")
            self.assertEqual(r.returncode, 1)
            self.assertIn("queued or running", r.stderr)
        finally:
            p.communicate(timeout=240)
        self.assertEqual(p.returncode, 0)

    def test_4_rollback_with_database_restore(self):
        env = self.env
        _, v1 = self.deploy()
        self.assertEqual(psql("SELECT message FROM greetings WHERE id = 1", db="hello"), "hello, world")
        env.repo.commit({"migrations/001.sql": MIGRATION_001 + CHANGE}, "v2 changes the greeting")
        _, v2 = self.deploy()
        self.assertEqual(v2["status"], "deployed")
        self.assertEqual(psql("SELECT message FROM greetings WHERE id = 1", db="hello"), "changed by v2")

        p = self.nornctl("rollback", "hello", "--restore-db")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        rb = env.row(env.deployment_id(p.stdout))
        self.assertEqual(rb["image_tag"], v1["image_tag"])
        self.assertEqual(env.steps(rb["id"])["migrate"]["status"], "succeeded")
        self.assertIn("restoring hello from", p.stdout)
        # The row the v2 migration changed is back as v1 left it.
        self.assertEqual(psql("SELECT message FROM greetings WHERE id = 1", db="hello"), "hello, world")

    def test_5_snapshots_and_restore(self):
        env = self.env
        p = self.nornctl("snapshots", "hello")
        self.assertEqual(p.returncode, 0, p.stderr)
        names = [l.split()[-2] for l in p.stdout.splitlines()[1:]]
        self.assertTrue(names and all(n.startswith("hello_") and n.endswith(".dump") for n in names), p.stdout)

        psql("UPDATE greetings SET message = 'vandalised' WHERE id = 1", db="hello")
        # The newest was taken before v2's migration: the table as v1 left it.
        p = self.nornctl("restore", "hello", names[0])
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(psql("SELECT message FROM greetings WHERE id = 1", db="hello"), "hello, world")

        for bad in ("../../etc/passwd", "/etc/passwd", "-x", "", "hello_nope.dump", "a b", "x;rm -rf /"):
            p = self.nornctl("restore", "hello", "--", bad)
            # Refused by nornctl (usage error, 2) or by nornd (1).
            self.assertEqual(p.returncode, 1 if bad == "hello_nope.dump" else 2, bad)
            self.assertRegex(p.stderr, r"invalid snapshot name|no snapshot named", bad)
        p = self.nornctl("snapshots", "../etc")
        self.assertEqual(p.returncode, 2)
        self.assertIn("invalid app name", p.stderr)
        env.nornd.alive()


if __name__ == "__main__":
    main()
