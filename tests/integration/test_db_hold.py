"""PostgreSQL lost exactly at a step boundary (issue 11 #1): nornd holds the
deployment at that boundary, writes the transition once the database is back
and only then goes on; or, after NORN_DB_HOLD_TIMEOUT, fails it saying what
really happened, recorded once the database is back. What a WebSocket client
and nornctl (D-Bus) saw always agrees with what PostgreSQL holds.

Deterministic: the app's test command blocks on a fifo. The test stops
PostgreSQL while the step runs, releases the step, waits until nornd says the
boundary is held, and only then starts PostgreSQL again."""
import json
import os
import subprocess
import threading
import time
import unittest

from fixtures import example_app_files, write_files
from nornlib import NORNCTL, main, run, wait_until
from pipeline_env import PipelineEnv
from wslib import ws_connect


def pgctl(action):
    p = subprocess.run(["sh", "-c", os.environ["NORN_TEST_PGCTL"] + " " + action], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, (action, p.stdout, p.stderr)


def app_files(app, fifo):
    files = example_app_files(app=app)
    files["infraspec.yaml"] = "\n".join([
        f"app: {app}", "role: webserver", "port: 8080", "deploy: true", "build:", "  dockerfile: Dockerfile",
        "  test: " + json.dumps(f"echo waiting; read x < {fifo}; echo released")]) + "\n"
    del files["migrations/001.sql"]
    return files


class EventRecorder:
    """A /ws client reading every event in a thread, with the time it arrived."""

    def __init__(self, port):
        self.client = ws_connect(port)
        self.events = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        try:
            while True:
                m = self.client.recv(timeout=3600)
                with self.lock:
                    self.events.append((time.monotonic(), m))
        except Exception:
            pass

    def of(self, deploy_id, type_=None):
        with self.lock:
            return [(t, m) for t, m in self.events
                    if m.get("payload") and (m["payload"].get("deploymentId") == deploy_id or
                                             m["payload"].get("id") == deploy_id)
                    and (type_ is None or m["type"] == type_)]

    def close(self):
        self.client.close()


class HoldBase:
    TIMEOUT = None

    @classmethod
    def setUpClass(cls):
        cls.env = PipelineEnv(nornd_env={"NORN_DB_HOLD_TIMEOUT": cls.TIMEOUT}, kube_deployments=("held",))
        cls.env.__enter__()
        cls.fifo = os.path.join(cls.env.dir, "release")
        os.mkfifo(cls.fifo)
        os.chmod(cls.env.dir, 0o755)
        write_files(cls.env.add_app("held", app_files("held", cls.fifo)), app_files("held", cls.fifo))

    @classmethod
    def tearDownClass(cls):
        cls.env.__exit__(None, None, None)

    def setUp(self):
        self.pg_stopped = False
        self.events = EventRecorder(self.env.nornd.port)
        self.addCleanup(self.events.close)

    def tearDown(self):
        if self.pg_stopped:
            pgctl("start -w")   # whatever happened, the next test has its database
        self.env.nornd.alive()

    def release(self):
        with open(self.fifo, "w") as f:
            f.write("go\n")

    def run_across_boundary(self, hold_seen):
        """Deploys 'held', stops PostgreSQL during its test step, releases the
        step, waits for hold_seen(log) and starts PostgreSQL again. Returns
        (nornctl result, deployment id, monotonic time PostgreSQL was back)."""
        env = self.env
        p = subprocess.Popen([NORNCTL, "--user", "deploy", "held"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        out = []

        def reader():
            for line in p.stdout:
                out.append(line)
        t = threading.Thread(target=reader, daemon=True)
        t.start()
        wait_until(lambda: any("waiting" in l for l in out), timeout=180, what="the test step to run")
        deploy_id = env.deployment_id("".join(out))
        log_before = len(env.nornd.log())
        pgctl("stop -m fast")
        self.pg_stopped = True
        self.release()   # the step's read returns: it ends now
        wait_until(lambda: hold_seen(env.nornd.log()[log_before:]), timeout=120, what="nornd to hold the boundary")
        pgctl("start -w")
        self.pg_stopped = False
        back = time.monotonic()
        rest, err = p.communicate(timeout=240)
        t.join(10)
        return p, "".join(out) + rest + err, deploy_id, back

    def final_event(self, deploy_id):
        ev = wait_until(lambda: self.events.of(deploy_id, "deploy.completed") or
                        self.events.of(deploy_id, "deploy.failed"), timeout=60, what="the final event")
        return ev[-1][1]

    def step_ends(self, deploy_id):
        """The last status each step was reported with over the WebSocket."""
        seen = {}
        for _, m in self.events.of(deploy_id, "deploy.step"):
            seen[m["payload"]["step"]] = m["payload"]["status"]
        return seen


class HoldTest(HoldBase, unittest.TestCase):
    TIMEOUT = "120"

    def test_held_at_the_boundary_then_goes_on(self):
        env = self.env
        p, out, deploy_id, back = self.run_across_boundary(
            lambda log: "held after step test ended (succeeded)" in log)
        self.assertEqual(p.returncode, 0, out + env.nornd.log()[-4000:])
        row, steps = env.row(deploy_id), env.steps(deploy_id)
        self.assertEqual((row["status"], row["error"]), ("deployed", None))
        recorded = {n: s["status"] for n, s in steps.items()}
        self.assertEqual(recorded, {"clone": "succeeded", "build": "succeeded", "test": "succeeded",
                                    "snapshot": "skipped", "migrate": "skipped", "deploy": "succeeded",
                                    "cleanup": "succeeded"})
        # The client saw the same history, and the test step's end only once it was committed.
        self.assertEqual(self.step_ends(deploy_id), recorded)
        test_end = [t for t, m in self.events.of(deploy_id, "deploy.step")
                    if m["payload"]["step"] == "test" and m["payload"]["status"] == "succeeded"]
        self.assertEqual(len(test_end), 1)
        self.assertGreater(test_end[0], back, "step end sent before PostgreSQL had it")
        # Nothing after the test started before the database was back.
        deploy_start = [t for t, m in self.events.of(deploy_id, "deploy.step")
                        if m["payload"]["step"] == "deploy" and m["payload"]["status"] == "running"]
        self.assertGreater(deploy_start[0], back)
        final = self.final_event(deploy_id)
        self.assertEqual((final["type"], final["payload"]["status"]), ("deploy.completed", "deployed"))
        self.assertIn("✓ test", out)
        self.assertIn("held after step test ended (succeeded)", out)
        log = env.nornd.log()
        self.assertIn("the database is back, recorded after step test ended (succeeded); going on", log)


class HoldTimeoutTest(HoldBase, unittest.TestCase):
    TIMEOUT = "3"

    def test_hold_times_out_and_says_so(self):
        env = self.env
        p, out, deploy_id, back = self.run_across_boundary(lambda log: "giving up waiting" in log)
        self.assertEqual(p.returncode, 1, out)
        error = ("PostgreSQL was unavailable for more than 3 s (NORN_DB_HOLD_TIMEOUT) after step test ended "
                 "(succeeded); the deployment stopped there")
        # Recorded once the database is back, exactly as clients were told.
        wait_until(lambda: env.row(deploy_id)["status"] == "failed", timeout=60, what="the record")
        wait_until(lambda: env.steps(deploy_id)["cleanup"]["status"] != "pending", timeout=60,
                   what="the queued writes")
        row, steps = env.row(deploy_id), env.steps(deploy_id)
        self.assertEqual(row["error"], error)
        recorded = {n: s["status"] for n, s in steps.items()}
        self.assertEqual(recorded, {"clone": "succeeded", "build": "succeeded", "test": "succeeded",
                                    "snapshot": "pending", "migrate": "pending", "deploy": "pending",
                                    "cleanup": "succeeded"})
        seen = self.step_ends(deploy_id)
        self.assertEqual(seen, {n: s for n, s in recorded.items() if s != "pending"})
        final = self.final_event(deploy_id)
        self.assertEqual((final["type"], final["payload"]["error"]), ("deploy.failed", error))
        self.assertIn(error, out)
        # The cluster was never touched.
        self.assertEqual(env.kube.image("held"), "held:initial")
        # The app deploys again normally.
        threading.Thread(target=self.release, daemon=True).start()
        p = env.deploy("held")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)


if __name__ == "__main__":
    main()
