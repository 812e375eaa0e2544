"""The /ws event stream against a real nornd and real deploys: events in
order with increasing seq, subscriptions to an app or a deployment, resume
after a reconnect without gaps or duplicates (and an explicit resync once the
history is gone), authentication like the HTTP API, hostile frames, and
bounded memory for clients that do not read."""
import json
import os
import re
import socket
import subprocess
import threading
import time
import unittest

from fixtures import write_files
from nornlib import http_request, main, wait_until
from pipeline_env import PipelineEnv
from wslib import WsClosed, WsRefused, ws_connect

TOKEN = "ws-token-" + os.urandom(12).hex()
AUTH = {"Authorization": f"Bearer {TOKEN}"}
STEPS = ["clone", "build", "test", "snapshot", "migrate", "deploy", "cleanup"]
FINAL = ("deploy.completed", "deploy.failed")
CHATTY_LINES = 60000
CHATTY_SPEC = f"""app: chatty
role: webserver
port: 8080
deploy: true
build:
  dockerfile: Dockerfile
  test: "seq -f 'chatty output line %08g padded so that each event is a few hundred bytes long' {CHATTY_LINES}"
"""


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def parse_dbus_monitor(text):
    """[(member, [args])] of dbus-monitor's text output (uint64 and string args)."""
    out = []
    for line in text.splitlines():
        if line.startswith("signal "):
            out.append((re.search(r"member=(\w+)", line).group(1), []))
        elif out and line.startswith("   uint64 "):
            out[-1][1].append(int(line.split()[1]))
        elif out and line.startswith("   string "):
            out[-1][1].append(json.loads(line[len("   string "):]))
    return out


class WsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        nornd_env = {"NORN_API_TOKEN": TOKEN, "NORN_LOG_LEVEL": "debug"}
        if os.environ.get("ASAN_OPTIONS"):
            # The sanitizer run: AddressSanitizer keeps freed memory in a
            # quarantine (256 MiB) that test_5 would count as growth.
            nornd_env["ASAN_OPTIONS"] = os.environ["ASAN_OPTIONS"] + ":quarantine_size_mb=1"
        cls.env = PipelineEnv(nornd_env=nornd_env,
                              kube_deployments=("hello", "chatty")).__enter__()
        cls.port = cls.env.nornd.port
        write_files(os.path.join(cls.env.apps, "chatty"), {
            "infraspec.yaml": CHATTY_SPEC, "Dockerfile": "FROM scratch\nCOPY index.html /\n",
            "index.html": "chatty\n"})

    @classmethod
    def tearDownClass(cls):
        log = cls.env.nornd.log()
        cls.env.__exit__(None, None, None)
        assert TOKEN not in log, "the API token appeared in nornd's log"

    def tearDown(self):
        self.env.nornd.alive()
        self.assertIn(self.env.nornd.health()[0], (200, 503))

    def connect(self, query="", **kw):
        kw.setdefault("token", TOKEN)
        c = ws_connect(self.port, query, **kw)
        self.addCleanup(c.close)
        return c

    def subscribed(self, c):
        m = c.recv()
        self.assertEqual(m["type"], "subscribed", m)
        return m["payload"]

    def deploy(self, app):
        status, d = http_request(self.port, "POST", f"/api/apps/{app}/deploy", body="{}",
                                 headers=dict(AUTH, **{"Content-Type": "application/json"}))[:2]
        self.assertEqual(status, 202, d)
        return d["id"]

    def assert_deploy_order(self, events, deploy_id):
        """queued, then each step's start and end in pipeline order, then completed."""
        mine = [e for e in events if e.get("seq") and
                (e["payload"].get("deploymentId") or e["payload"].get("id")) == deploy_id]
        seqs = [e["seq"] for e in mine]
        self.assertEqual(seqs, sorted(set(seqs)), "seq not strictly increasing")
        self.assertEqual(mine[0]["type"], "deploy.queued")
        self.assertEqual(mine[-1]["type"], "deploy.completed", mine[-1])
        steps = [(e["payload"]["step"], e["payload"]["status"]) for e in mine if e["type"] == "deploy.step"]
        started = [s for s, st in steps if st == "running"]
        self.assertEqual(started, [s for s in STEPS if s in started])
        self.assertGreaterEqual(set(started), {"clone", "build", "test", "deploy"}, steps)
        for s in started:  # each step ends after it starts, before the next starts
            i = steps.index((s, "running"))
            self.assertIn(steps[i + 1][0], (s,), steps)
            self.assertIn(steps[i + 1][1], ("succeeded", "skipped"), steps)
        for e in mine:
            self.assertEqual(e["appId"], "hello")
            self.assertRegex(e["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
        return mine

    # --- authentication ---

    def test_1_auth(self):
        # Header: right → 101 and a subscription; wrong or malformed → 401 before any upgrade.
        c = self.connect()
        ack = self.subscribed(c)
        self.assertEqual((ack["appId"], ack["deploymentId"]), (None, None))
        self.assertIsInstance(ack["lastSeq"], int)
        for headers in ({"Authorization": "Bearer wrong"}, {"Authorization": "Basic " + TOKEN},
                        {"Authorization": "Bearer"}, {"Authorization": f"Bearer {TOKEN}x"}):
            with self.assertRaises(WsRefused) as cm:
                ws_connect(self.port, token=None, headers=headers)
            self.assertEqual(cm.exception.status, 401, headers)
            self.assertEqual(cm.exception.body["code"], "unauthorized")
        # A token in the URL is refused outright (URLs end up in logs).
        with self.assertRaises(WsRefused) as cm:
            ws_connect(self.port, "token=" + TOKEN, token=None)
        self.assertEqual((cm.exception.status, cm.exception.body["code"]), (400, "token_in_url"))
        self.assertNotIn(TOKEN, json.dumps(cm.exception.body))
        # Bad subscription in the query: 400.
        for q in ("appId=..%2Fx", "deploymentId=0", "deploymentId=abc", "since=-1", "appId=a&deploymentId=1",
                  "nope=1", "since=1&since=2"):
            with self.assertRaises(WsRefused) as cm:
                ws_connect(self.port, q, token=TOKEN)
            self.assertEqual(cm.exception.status, 400, q)

        # First message: right token → subscribed.
        c = self.connect(token=None)
        c.send_json({"type": "auth", "token": TOKEN})
        self.assertEqual(c.recv()["type"], "subscribed")
        c.send_json({"type": "auth", "token": TOKEN})
        self.assertEqual(c.recv()["payload"]["code"], "already_authenticated")
        # Wrong token, wrong shape, anything else first: closed with 1008, no token echoed.
        for msg in ({"type": "auth", "token": "wrong"}, {"type": "auth", "token": 5},
                    {"type": "auth", "token": TOKEN, "x": 1}, {"type": "subscribe"}, "not json", [1]):
            c = self.connect(token=None)
            c.send_text(json.dumps(msg) if not isinstance(msg, str) else msg)
            code, reason, msgs = c.expect_close()
            self.assertEqual((code, msgs), (1008, []), msg)
            self.assertNotIn(TOKEN, reason)

    # --- a real deploy ---

    def test_2_deploy_events_filters_and_resume(self):
        env = self.env
        silent = self.connect(token=None)            # never authenticates
        every = self.connect()
        hello = self.connect("appId=hello")
        other = self.connect("appId=chatty")
        for c in (every, hello, other):
            self.subscribed(c)

        # The D-Bus signals of the same deploy, to compare.
        monitor = subprocess.Popen(["stdbuf", "-oL", "dbus-monitor", "--session",
                                    "type='signal',interface='org.norn.Norn1.Manager'"],
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.addCleanup(lambda: monitor.poll() is not None or monitor.kill())
        time.sleep(0.5)
        deploy_id = self.deploy("hello")
        # One deployment, subscribed after the fact with since=0: the
        # history is replayed, then live events follow.
        one = self.connect(f"deploymentId={deploy_id}&since=0")
        self.assertEqual(self.subscribed(one)["deploymentId"], deploy_id)

        # A client that reconnects in the middle and resumes from its last seq.
        mid = self.connect("appId=hello")
        self.subscribed(mid)
        first = mid.recv_until(lambda e: e["type"] == "deploy.step" and e["payload"]["status"] == "succeeded")
        mid.close()
        last_seen = first[-1]["seq"]
        time.sleep(0.3)  # events go by meanwhile
        mid = self.connect(f"appId=hello&since={last_seen}")
        self.assertEqual(self.subscribed(mid)["appId"], "hello")
        done = lambda e: e["type"] in FINAL and e["payload"].get("id") == deploy_id
        rest = mid.recv_until(done, timeout=240)

        events = every.recv_until(done, timeout=240)
        mine = self.assert_deploy_order(events, deploy_id)
        hello_events = hello.recv_until(done, timeout=30)
        self.assertEqual([e["seq"] for e in hello_events], [e["seq"] for e in events if e["appId"] == "hello"])
        self.assertEqual([e["seq"] for e in one.recv_until(done, timeout=30)], [e["seq"] for e in mine])

        # Resume: what came before the reconnect + what came after = the whole stream, exactly.
        before = [e["seq"] for e in first]
        after = [e["seq"] for e in rest]
        self.assertEqual(before + after, [e["seq"] for e in events if e["appId"] == "hello" and e["seq"] >= before[0]])

        # The resume message, once the deploy is over: exactly the events after since.
        c = self.connect("appId=hello")
        self.subscribed(c)
        c.send_json({"type": "resume", "since": last_seen})
        self.assertEqual(self.subscribed(c)["appId"], "hello")
        replay = c.recv_until(done, timeout=10)
        self.assertEqual([e["seq"] for e in replay], after)
        self.assertEqual(replay, rest)

        # D-Bus and WebSocket come from one fan-out: the same step changes.
        time.sleep(0.5)
        monitor.terminate()
        signals = parse_dbus_monitor(monitor.communicate(timeout=10)[0])
        bus_steps = [tuple(args[:4]) for member, args in signals if member == "StepChanged"]
        ws_steps = [(deploy_id, "hello", e["payload"]["step"], e["payload"]["status"]) for e in mine
                    if e["type"] == "deploy.step"]
        self.assertEqual([x for x in bus_steps if x[0] == deploy_id], ws_steps)
        finished = [args[:3] for member, args in signals if member == "DeploymentFinished"]
        self.assertIn([deploy_id, "hello", "deployed"], finished)

        # The other app's subscriber saw nothing of hello.
        with self.assertRaises(socket.timeout):
            other.recv(timeout=0.5)
        # D-Bus and WebSocket tell the same story: the deploy's step changes
        # are what the database recorded.
        self.assertEqual(env.row(deploy_id)["status"], "deployed")

        # The unauthenticated client got no event; it is closed after the auth timeout.
        code, reason, msgs = silent.expect_close(timeout=15)
        self.assertEqual((code, msgs), (1008, []))
        self.assertIn("authentication", reason)

        # Resume from a seq this nornd never handed out: resync, then live.
        c = self.connect(f"since={events[-1]['seq'] + 1000}")
        self.subscribed(c)
        m = c.recv()
        self.assertEqual((m["type"], m["payload"]["reason"]), ("resync", "unknown_seq"), m)
        WsTest.hello_id = deploy_id

    # --- hostile frames ---

    def test_3_hostile_frames(self):
        watcher = self.connect()
        self.subscribed(watcher)
        c = self.connect()
        self.subscribed(c)
        bad = [b"not json", b"[1,2]", b'"x"', b"{}", b'{"type":5}', b'{"type":"nope"}',
               b'{"type":"subscribe","x":1}', b'{"type":"subscribe","deploymentId":"1"}',
               b'{"type":"subscribe","deploymentId":-1}', b'{"type":"subscribe","deploymentId":1.5}',
               b'{"type":"subscribe","deploymentId":true}', b'{"type":"subscribe","appId":"../etc"}',
               b'{"type":"subscribe","appId":"a\'; DROP TABLE deployments;--"}',
               b'{"type":"subscribe","appId":"hello","deploymentId":1}', b'{"type":"resume"}',
               b'{"type":"resume","since":-1}', b'{"type":"resume","since":1e99}',
               b'{"type":"resume","since":99999999999999999999}', b'{"type":"subscribe","type":"subscribe"}',
               b'{"type":"subscribe","appId":"a\\u0000b"}', b'[' * 5000 + b']' * 5000]
        for payload in bad:
            c.send_text(payload)
            m = c.recv()
            self.assertEqual(m["type"], "error", (payload[:80], m))
            self.assertIn(m["payload"]["code"], ("bad_message", "unknown_type"), payload[:80])
        # Still subscribed as before, and still working.
        c.send_json({"type": "subscribe", "appId": "hello"})
        self.assertEqual(self.subscribed(c)["appId"], "hello")

        # Frames that end the connection (each on a new one); the daemon stays.
        cases = [
            (lambda c: c.send_frame(2, b"\x00\x01binary"), 1003),
            (lambda c: c.send_frame(1, b"\xff\xfe\xc3\x28"), 1007),   # not UTF-8
            (lambda c: c.send_frame(1, b"x" * (70 * 1024)), 1009),  # over 64 KiB
            (lambda c: c.send_frame(1, b"x" * 100, declared_len=1 << 62), 1009),
            (lambda c: c.send_frame(0x3, b"reserved opcode"), None),
            (lambda c: c.sock.sendall(os.urandom(4096)), None),
        ]
        for i, (send, want) in enumerate(cases):
            c = self.connect()
            self.subscribed(c)
            send(c)
            code, _, msgs = c.expect_close(timeout=10)
            self.assertEqual(msgs, [], i)
            if want:
                self.assertEqual(code, want, i)
            else:
                self.assertNotEqual(code, 1000, i)
        # Unauthenticated and hostile: closed, nothing sent.
        c = self.connect(token=None)
        c.send_frame(2, os.urandom(64))
        self.assertEqual(c.expect_close()[2], [])

        # A fragmented, valid message is fine.
        c = self.connect()
        self.subscribed(c)
        c.send_frame(1, b'{"type":"subs', fin=False)
        c.send_frame(0, b'cribe","appId":"chatty"}')
        self.assertEqual(self.subscribed(c)["appId"], "chatty")

        # The watcher was not disturbed: nothing arrived, it still answers.
        watcher.send_json({"type": "subscribe"})
        self.assertEqual(self.subscribed(watcher)["appId"], None)

    # --- slow clients ---

    def test_4_client_asking_replays_without_reading_is_dropped(self):
        """Non-log events that no longer fit in a client's queue drop it;
        its queue never grows past the bound."""
        c = self.connect(rcvbuf=4096)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        for _ in range(400):
            try:
                c.send_json({"type": "resume", "since": 0})
            except OSError:
                break
        # Now read: what was written before the drop (the queue itself is
        # discarded), then the end of the connection, not a timeout.
        received, ended = 0, False
        c.sock.settimeout(20)
        try:
            while True:
                chunk = c.sock.recv(1 << 20)
                if not chunk:
                    ended = True
                    break
                received += len(chunk)
        except ConnectionResetError:
            ended = True
        except socket.timeout:
            pass
        self.assertTrue(ended, f"not dropped ({received} bytes arrived)")
        self.assertLess(received, 1024 * 1024 + 512 * 1024, "more than a queue's worth arrived")
        # Others are still served.
        w = self.connect()
        self.subscribed(w)

    def test_5_never_reading_clients_do_not_grow_memory(self):
        pid = self.env.nornd.proc.pid
        base = rss_kib(pid)
        stalled = [self.connect(rcvbuf=4096) for _ in range(10)]
        reader = self.connect("appId=chatty")
        self.subscribed(reader)
        deploy_id = self.deploy("chatty")

        peak = [base]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], rss_kib(pid))
                time.sleep(0.05)
        t = threading.Thread(target=sample)
        t.start()
        try:
            events = reader.recv_until(lambda e: e["type"] in FINAL and e["payload"].get("id") == deploy_id,
                                       timeout=240)
        finally:
            stop.set()
            t.join()
        self.assertEqual(events[-1]["type"], "deploy.completed", events[-1])

        grew = (peak[0] - base) / 1024
        skipped = sum(e["payload"]["logLines"] for e in events if e["type"] == "skipped")
        print(f"# nornd RSS {base / 1024:.1f} MiB before, peak {peak[0] / 1024:.1f} MiB "
              f"with 10 stalled clients during {CHATTY_LINES} log lines; reader skipped {skipped}")
        # Accounting of the reader: every seq of the deployment arrived or
        # was counted in a "skipped" marker, in order.
        logs = [e for e in events if e["type"] == "deploy.log"]
        skipped = sum(e["payload"]["logLines"] for e in events if e["type"] == "skipped")
        self.assertGreaterEqual(len(logs) + skipped, CHATTY_LINES)
        seqs = [e["seq"] for e in events if "seq" in e]
        self.assertEqual(seqs, sorted(set(seqs)))

        # 10 clients x ~16 MiB of events each were not kept: nornd grew by
        # at most its queue bounds (1 MiB each) plus allocator slack.
        self.assertLess(grew, 40, f"nornd grew by {grew:.1f} MiB")
        # What each stalled client can still read is bounded (its queue plus
        # the socket buffers), far below the 60000 lines, and says what it
        # lost.
        for c in stalled:
            got = []
            try:
                while True:
                    got.append(c.recv(timeout=1))
            except (socket.timeout, WsClosed, EOFError, ConnectionResetError):
                pass
            size = sum(len(json.dumps(m)) for m in got)
            # nornd's queue (1 MiB) + the kernel's send buffer (up to 4 MiB).
            self.assertLess(size, 6 * 1024 * 1024)
            self.assertLess(len(got), CHATTY_LINES / 2)
            self.assertTrue(any(m["type"] == "skipped" for m in got), [m["type"] for m in got][-5:])
            self.assertIn(got[-1]["type"], FINAL + ("skipped",))
            c.sock.close()

        # The history is far past the first hello deploy now: explicit resync.
        c = self.connect("since=1")
        self.subscribed(c)
        m = c.recv()
        self.assertEqual((m["type"], m["payload"]["reason"]), ("resync", "history_exceeded"), m)
        self.assertGreater(m["payload"]["oldestSeq"], 2)


if __name__ == "__main__":
    main()
