#!/usr/bin/python3
"""Smoke test of tools/bench/ws-clients (the benchmarks' C client), so the
benchmark tools cannot rot unseen: against a real nornd it authenticates,
subscribes and times every deploy.step event for every client; the write()
floor delivers every frame; a wrong token is refused loudly. No timing is
asserted (numbers belong in the benchmarks)."""
import os
import subprocess
import sys
import unittest

from nornlib import SOURCE_DIR, main

sys.path.insert(0, os.path.join(SOURCE_DIR, "tools", "bench"))
import benchlib as B  # noqa: E402


class WsClientsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.env = B.TrivialNornd(prefix="ws-clients").__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.env.__exit__(None, None, None)

    def test_connect_receives_step_events(self):
        clients = B.WsClients(self.env.port, 3, 1, threads=2, timeout=240)
        self.env.deploy()
        res = clients.finish(timeout=240)
        self.assertGreaterEqual(len(res["events"]), 8, res)   # start and end of each step that ran
        for seq, emitted, first, last, count in res["events"]:
            self.assertEqual(count, 3, res)
            self.assertGreater(emitted, 1.6e9)                  # the envelope's time was parsed
            self.assertLessEqual(first, last)
        self.assertEqual(res["step_frames"], 3 * len(res["events"]))
        self.assertGreater(res["frames"], res["step_frames"])   # queued and completed too
        self.env.nornd.alive()

    def test_wrong_token_is_refused(self):
        p = subprocess.run([B.WS_CLIENTS, "connect", str(self.env.port), "wrong", "/ws", "1", "1"],
                           capture_output=True, text=True, timeout=60)
        self.assertNotEqual(p.returncode, 0)
        self.assertRegex(p.stderr, r"upgrade refused: HTTP/1\.[01] 401")

    def test_floor(self):
        res = B.ws_floor(3, 5, 300, threads=2, gap_ms=1)
        self.assertEqual([(e[0], e[4]) for e in res["events"]], [(i, 3) for i in range(1, 6)])
        self.assertEqual(res["step_bytes"], 3 * 5 * 300)
        self.assertEqual(res["writes"], 3 * 6)                  # 5 steps + the closing frame
        self.assertGreater(res["writer_cpu"], 0)


if __name__ == "__main__":
    main()
