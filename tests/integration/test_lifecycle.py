"""A deployment is finished exactly once whatever the interleaving: cancel
raced against every early point of a deploy, a rollback and a restore, many
times (issue 10 #1: a restore cancelled right after it was queued was finished
twice, and freed while still listed). Run it under the ASan+UBSan build too:
any sanitizer report in nornd's log fails it."""
import json
import os
import random
import socket
import time
import unittest

from fixtures import MIGRATION_001
from nornlib import http_request, main, wait_until
from pipeline_env import PipelineEnv, psql

ROUNDS = int(os.environ.get("NORN_TEST_CANCEL_ROUNDS", "12"))
FINAL = ("deployed", "failed", "rolled_back")
SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "UndefinedBehaviorSanitizer")


def post(path, body=None):
    data = json.dumps(body or {}).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode() + data


def read_responses(sock, n, timeout=60):
    """n HTTP/1.1 responses (with Content-Length) read off one connection: [(status, JSON)]."""
    sock.settimeout(timeout)
    buf, out = b"", []
    while len(out) < n:
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError(f"connection closed after {len(out)} responses: {buf!r}")
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError("connection closed inside a response body")
            rest += chunk
        out.append((int(head.split(b" ", 2)[1]), json.loads(rest[:length] or b"null")))
        buf = rest[length:]
    return out


class CancelRaceTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.env = PipelineEnv().__enter__()
        env = cls.env
        # Two deployed versions (each with a snapshot) to roll back and restore between.
        for i in range(2):
            if i:
                env.repo.commit({"migrations/001.sql": MIGRATION_001 + "-- v2\n"}, "v2")
            p = env.deploy("hello")
            assert p.returncode == 0, p.stdout + p.stderr + env.nornd.log()[-3000:]
        cls.snapshot = psql("SELECT regexp_replace(file, '^.*/', '') FROM snapshots ORDER BY id LIMIT 1")
        assert cls.snapshot, "no snapshot"

    @classmethod
    def tearDownClass(cls):
        cls.env.__exit__(None, None, None)

    def tearDown(self):
        self.env.nornd.alive()
        self.assert_no_sanitizer_report()

    def assert_no_sanitizer_report(self):
        log = self.env.nornd.log()
        for mark in SANITIZER_MARKS:
            self.assertNotIn(mark, log, log[-6000:])

    def next_id(self):
        return int(psql("SELECT coalesce(pg_sequence_last_value(pg_get_serial_sequence('deployments', 'id')), 0) + 1"))

    def wait_final(self, deploy_id):
        """The deployment ended, nornd and PostgreSQL agree on how, and its logs can be read."""
        port = self.env.nornd.port

        def final():
            status, body, _ = http_request(port, "GET", f"/api/deployments/{deploy_id}")
            return body if status == 200 and body["status"] in FINAL else None

        body = wait_until(final, timeout=240, what=f"deployment {deploy_id} to end")
        row = self.env.row(deploy_id)
        self.assertEqual((row["status"], row["error"]), (body["status"], body["error"]))
        self.assertIsNotNone(row["finished_at"], row)
        steps = self.env.steps(deploy_id)
        self.assertNotIn("running", [s["status"] for s in steps.values()], steps)
        status, _, _ = http_request(port, "GET", f"/api/deployments/{deploy_id}/logs")
        self.assertEqual(status, 200)
        return row

    def race(self, request, what, delays):
        """Sends request and a cancel of the deployment it makes: on the same
        connection the moment the answer is read, or from a second connection
        after a delay. Returns how the deployments ended."""
        env, port = self.env, self.env.nornd.port
        outcomes = {}
        for i, delay in enumerate(delays):
            deploy_id = self.next_id()
            cancel = post(f"/api/deployments/{deploy_id}/cancel")
            with socket.create_connection(("127.0.0.1", port)) as s:
                if delay is None:
                    # At once on the same connection, as soon as the answer is read.
                    s.sendall(request)
                    (st, body), = read_responses(s, 1)
                    s.sendall(cancel)
                    (cst, cbody), = read_responses(s, 1)
                else:
                    s.sendall(request)
                    (st, body), = read_responses(s, 1)
                    time.sleep(delay)
                    with socket.create_connection(("127.0.0.1", port)) as c:
                        c.sendall(cancel)
                        (cst, cbody), = read_responses(c, 1)
            self.assertEqual(st, 202, body)
            self.assertEqual(body["id"], deploy_id, f"{what}: predicted id")
            # Cancelled, or it had already ended (a rollback is quick).
            self.assertIn(cst, (202, 409), cbody)
            row = self.wait_final(deploy_id)
            if cst == 202:
                self.assertEqual((row["status"], row["error"]), ("failed", "cancelled"), (what, delay, row))
            outcomes[row["status"]] = outcomes.get(row["status"], 0) + 1
            env.nornd.alive()
            if row["status"] == "deployed" and what.startswith("rollback"):
                # The cancel came too late: deploy the newest again, to have a rollback target.
                p = env.deploy("hello")
                self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        # The app is free again: nothing is left queued or running.
        self.assertEqual(psql("SELECT count(*) FROM deployments WHERE status NOT IN "
                              "('deployed', 'failed', 'rolled_back')"), "0")
        self.assertTrue(outcomes.get("failed"), f"{what}: no cancel ever landed: {outcomes}")
        return outcomes

    def delays(self, spread):
        rng = random.Random(10)
        return [None] * (ROUNDS // 2) + [rng.uniform(0, spread) for _ in range(ROUNDS - ROUNDS // 2)]

    def test_cancel_races_restore(self):
        self.race(post(f"/api/apps/hello/snapshots/{self.snapshot}/restore"), "restore", self.delays(0.05))

    def test_cancel_races_rollback(self):
        self.race(post("/api/apps/hello/rollback"), "rollback", self.delays(0.05))

    def test_cancel_races_rollback_with_restore(self):
        self.race(post("/api/apps/hello/rollback", {"restoreDb": True}), "rollback --restore-db",
                  self.delays(0.1))

    def test_cancel_races_deploy(self):
        self.race(post("/api/apps/hello/deploy"), "deploy", self.delays(0.5))

    def test_zz_next_deploy_works(self):
        p = self.env.deploy("hello")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)


if __name__ == "__main__":
    main()
