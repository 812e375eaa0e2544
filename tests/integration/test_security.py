"""Defects of the security audit (issue 10), each against a real nornd:

- /api/health shows details (kubeconfig path, database errors) only with the
  token; without it, the status of each component; D-Bus Health has them;
- clients that half-close after their request (shutdown(SHUT_WR), as
  "nc -N" does) get their answer on the routes answered from the database;
- an infraspec whose diagnostic quotes a tag cut inside a character does
  not turn GET /api/apps into a 500 for every app, nor hide the other apps
  from D-Bus ListApps;
- unauthenticated connections announcing 1 MiB bodies and trickling them do
  not take the request body budget from authenticated requests and signed
  webhooks, and are cut off at the body deadline;
- two requests in one packet (HTTP pipelining), e.g. deploy + cancel, froze
  nornd for good (not even SIGTERM stopped it): the first is answered, the
  next refused with 400 pipelining_unsupported and the connection closed,
  and nornd keeps serving and stops on SIGTERM."""
import hashlib
import hmac
import json
import os
import select
import shutil
import socket
import tempfile
import threading
import time
import unittest
import uuid

from nornlib import NORNCTL, Nornd, http_request, main, run, status_of, wait_until

TOKEN = "sec-token-" + os.urandom(12).hex()
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SECRET = "sec-hook-" + os.urandom(8).hex()
# Short, so the slow-body test does not take minutes; the default is 30 s.
BODY_TIMEOUT = 4
KUBECONFIG_SECRET = "kube-token-" + os.urandom(8).hex()

GOOD = f"""app: good
role: worker
deploy: true
repo:
  url: https://git.invalid/norn/good.git
  branch: main
  autoDeploy: false
  webhookSecret: {SECRET}
"""
# A tag of 63 ASCII bytes and then "é" (percent-escaped, as tags are): the
# old diagnostic cut it after 64 bytes, inside the character.
BROKEN = "app: !" + "x" * 62 + "%c3%a9%c3%a9 broken\nrole: worker\ndeploy: true\n"


def bus_call(method):
    p = run(["busctl", "--user", "--json=short", "call", "org.norn.Norn1", "/org/norn/Norn1",
             "org.norn.Norn1.Manager", method], timeout=60)
    return json.loads(p.stdout)["data"]


class SecurityTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="test-security-", dir=os.environ.get("NORN_SANDBOX_DIR"))
        cls.apps = os.path.join(cls.dir, "apps")
        for app, spec in (("good", GOOD), ("broken", BROKEN)):
            os.makedirs(os.path.join(cls.apps, app))
            with open(os.path.join(cls.apps, app, "infraspec.yaml"), "w") as f:
                f.write(spec)
        cls.kubeconfig = os.path.join(cls.dir, "kubeconfig")
        with open(cls.kubeconfig, "w") as f:
            f.write("apiVersion: v1\nkind: Config\ncurrent-context: c\n"
                    "clusters: [{name: k, cluster: {server: 'https://127.0.0.1:6443'}}]\n"
                    f"users: [{{name: u, user: {{token: {KUBECONFIG_SECRET}}}}}]\n"
                    "contexts: [{name: c, context: {cluster: k, user: u}}]\n")
        cls.nornd = Nornd(env={"NORN_API_TOKEN": TOKEN, "NORN_APPS_DIR": cls.apps,
                               "NORN_STATE_DIR": os.path.join(cls.dir, "state"),
                               "KUBECONFIG": cls.kubeconfig,
                               "NORN_HTTP_BODY_TIMEOUT": str(BODY_TIMEOUT)}).start()
        cls.port = cls.nornd.port
        wait_until(lambda: cls.nornd.health()[0] == 200, what="all components up")

    @classmethod
    def tearDownClass(cls):
        log = cls.nornd.log()
        cls.nornd.__exit__(None)
        shutil.rmtree(cls.dir, ignore_errors=True)
        for secret in (TOKEN, SECRET, KUBECONFIG_SECRET):
            assert secret not in log, "a secret appeared in nornd's log"

    def tearDown(self):
        self.nornd.alive()

    def get(self, path, auth=True):
        return http_request(self.port, "GET", path, headers=dict(AUTH) if auth else {}, timeout=30)[:2]

    # --- #7: /api/health ---

    def test_health_details_need_the_token(self):
        for headers in ({}, {"Authorization": "Bearer wrong-" + TOKEN}):
            status, body = http_request(self.port, "GET", "/api/health", headers=headers)[:2]
            self.assertEqual((status, body["status"]), (200, "ok"), body)
            self.assertEqual(sorted(body["components"]), ["database", "kubernetes", "systemd"], body)
            for name, comp in body["components"].items():
                self.assertEqual(comp, {"status": "up"}, (name, body))
            text = json.dumps(body)
            for leak in (self.kubeconfig, "127.0.0.1:6443", "schema", "manager"):
                self.assertNotIn(leak, text)

        status, body = self.get("/api/health")
        self.assertEqual(status, 200, body)
        self.assertIn(self.kubeconfig, body["components"]["kubernetes"]["detail"])
        self.assertIn("connected", body["components"]["database"]["detail"])
        self.assertNotIn(KUBECONFIG_SECRET, json.dumps(body))

    def test_health_details_over_dbus(self):
        data = bus_call("Health")
        self.assertEqual(data[0], "ok", data)
        detail = {name: (up, text) for name, up, text in data[1]}
        self.assertEqual(detail["kubernetes"][0], True, data)
        self.assertIn(self.kubeconfig, detail["kubernetes"][1])
        self.assertNotIn(KUBECONFIG_SECRET, json.dumps(data))

    def test_health_down_database_hides_error_text_without_token(self):
        """A component that is down shows "down" and nothing of why, unless
        the caller has the token."""
        other = Nornd(env={"NORN_API_TOKEN": TOKEN, "NORN_APPS_DIR": self.apps,
                           "NORN_STATE_DIR": os.path.join(self.dir, "state-down"), "KUBECONFIG": self.kubeconfig,
                           "NORN_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/nodb?connect_timeout=2"})
        with other:
            status, body = other.health()
            self.assertEqual((status, body["status"]), (503, "degraded"), body)
            self.assertEqual(body["components"]["database"], {"status": "down"}, body)
            self.assertNotIn("127.0.0.1:1", json.dumps(body))
            status, body = http_request(other.port, "GET", "/api/health", headers=AUTH)[:2]
            self.assertEqual(status, 503, body)
            self.assertIn("down", body["components"]["database"]["detail"])

    # --- #6: half-closed clients ---

    def half_closed(self, path, auth=True):
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as s:
            head = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            if auth:
                head += f"Authorization: Bearer {TOKEN}\r\n"
            s.sendall((head + "\r\n").encode())
            s.shutdown(socket.SHUT_WR)
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        return status_of(data), (json.loads(body) if body else None)

    def test_half_closed_clients_get_answers(self):
        for path, want in (("/api/version", 200), ("/api/apps", 200), ("/api/apps/good", 200),
                           ("/api/deployments", 200), ("/api/deployments/999999", 404),
                           ("/api/apps/good/snapshots", 200), ("/api/deployments/999999/logs", 404)):
            with self.subTest(path=path):
                status, body = self.half_closed(path)
                self.assertEqual(status, want, (path, body))
                self.assertIsInstance(body, dict, path)
        status, body = self.half_closed("/api/apps", auth=False)
        self.assertEqual(status, 401, body)

    # --- #5: an infraspec whose diagnostic would not be UTF-8 ---

    def test_broken_infraspec_does_not_hide_the_others(self):
        status, body = self.get("/api/apps")
        self.assertEqual(status, 200, body)
        apps = {a["id"]: a for a in body["apps"]}
        self.assertEqual(sorted(apps), ["broken", "good"], body)
        self.assertTrue(apps["good"]["valid"], apps["good"])
        self.assertFalse(apps["broken"]["valid"], apps["broken"])
        messages = [d["message"] for d in apps["broken"]["diagnostics"]]
        # cut before the "é" that would have been split
        self.assertIn('unsupported YAML tag "!' + "x" * 62 + '"', messages)

        status, body = self.get("/api/apps/broken")
        self.assertEqual((status, body["id"], body["valid"]), (200, "broken", False), body)

        listed = {a[0]: a for a in bus_call("ListApps")[0]}
        self.assertEqual(sorted(listed), ["broken", "good"], listed)
        self.assertEqual(listed["good"][1], "worker", listed)

        p = run([NORNCTL, "--user", "validate", "broken"], check=False)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn("unsupported YAML tag", p.stdout + p.stderr)

    def test_nornctl_errors_cut_on_character_boundaries(self):
        """nornctl quotes a bad argument cut to 64 (or 32) bytes: never
        inside a character."""
        import subprocess
        long = "x" * 63 + "\u00e9" * 4
        for args, what in (([long], "unknown command"), (["--" + long[2:]], "unknown option"),
                           (["show", "--", long], "invalid deployment id"), (["deploy", "--", long], "invalid app name"),
                           (["history", "-n", "x" * 31 + "\u00e9"], "invalid limit")):
            p = subprocess.run([NORNCTL, "--user"] + args, capture_output=True, timeout=60)
            self.assertEqual(p.returncode, 2, p)
            text = p.stderr.decode("utf-8")      # raises on a cut character
            self.assertIn(what, text)

    # --- #3: slow unauthenticated bodies ---

    def test_trickled_bodies_do_not_starve_others(self):
        """64 connections (from 127.0.0.2, another peer) each announce a
        1 MiB body and send one byte every 0.5 s, unauthenticated, the way
        the audit's attack did with 2 s; meanwhile authenticated requests
        and signed webhooks get their usual answers, never 503, and every
        slow connection is answered 408 (or closed) at the body deadline."""
        n = 64
        socks = []
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.2", 0))
            s.settimeout(30)
            s.connect(("127.0.0.1", self.port))
            s.sendall(b"POST /api/webhooks/push HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      b"Content-Type: application/json\r\nX-GitHub-Event: push\r\n"
                      b"Content-Length: 1048576\r\n\r\n{")
            socks.append(s)
        started = time.monotonic()
        results = [None] * n
        stop = threading.Event()

        def trickle(i, s):
            try:
                while not stop.is_set():
                    s.sendall(b" ")
                    if stop.wait(0.5):
                        break
            except OSError:
                pass     # nornd cut it off: what we want; the answer is read below

        def read_answer(i, s):
            data = b""
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            except OSError:
                pass
            results[i] = (status_of(data), time.monotonic() - started)

        threads = [threading.Thread(target=trickle, args=(i, s), daemon=True) for i, s in enumerate(socks)]
        readers = [threading.Thread(target=read_answer, args=(i, s), daemon=True) for i, s in enumerate(socks)]
        for t in threads + readers:
            t.start()
        try:
            answers = []
            while time.monotonic() - started < BODY_TIMEOUT - 1:
                # each signed body differs: the same one again is refused as a replay
                body = json.dumps({"zen": "ok", "hook_id": len(answers)}).encode()
                sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                status, resp = http_request(self.port, "POST", "/api/webhooks/push", body=body, headers={
                    "Content-Type": "application/json", "X-GitHub-Event": "ping", "X-Hub-Signature-256": sig,
                    "X-GitHub-Delivery": str(uuid.uuid4())}, timeout=30)[:2]
                answers.append(("webhook", status, resp))
                status, resp = http_request(self.port, "POST", "/api/apps/nosuch/deploy", body=b"{}",
                                            headers=dict(AUTH, **{"Content-Type": "application/json"}),
                                            timeout=30)[:2]
                answers.append(("deploy", status, resp))
                status, resp = self.get("/api/deployments")
                answers.append(("list", status, resp))
                time.sleep(0.2)   # under the webhook rate limit (16 a second)
            self.assertGreater(len(answers), 3)
            for what, status, resp in answers:
                self.assertEqual(status, {"webhook": 200, "deploy": 404, "list": 200}[what], (what, resp))

            for t in readers:
                t.join(BODY_TIMEOUT + 30)
        finally:
            stop.set()
            for s in socks:
                s.close()
        self.assertTrue(all(r is not None for r in results), results)
        for status, took in results:
            self.assertIn(status, (408, None), results)
            self.assertGreater(took, BODY_TIMEOUT - 1.5, results)
            self.assertLess(took, BODY_TIMEOUT + 20, results)
        self.assertGreaterEqual(sum(1 for s, _ in results if s == 408), n // 2, results)

    def test_unauthenticated_body_is_not_read(self):
        """A request that needs the token and has none (or a wrong one) is
        answered 401 from its head: its announced body is never awaited."""
        for auth in (b"", b"Authorization: Bearer wrong\r\n"):
            with socket.create_connection(("127.0.0.1", self.port), timeout=30) as s:
                s.sendall(b"POST /api/apps/good/deploy HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth +
                          b"Content-Type: application/json\r\nContent-Length: 1048576\r\n\r\n{")
                started = time.monotonic()
                data = s.recv(65536)
                self.assertEqual(status_of(data), 401, data)
                self.assertLess(time.monotonic() - started, BODY_TIMEOUT - 1)   # not at the body deadline

    def test_per_peer_limits(self):
        """One peer holds at most NORN_HTTP_PEER_MAX_CONNECTIONS connections
        (more are closed at once) and 16 MiB of request bodies (the body
        that goes over is answered 503); other peers are served meanwhile,
        and a peer's budget comes back when its connections close."""
        limit = 20
        other = Nornd(env={"NORN_API_TOKEN": TOKEN, "NORN_APPS_DIR": self.apps,
                           "NORN_STATE_DIR": os.path.join(self.dir, "state-peer"), "KUBECONFIG": self.kubeconfig,
                           "NORN_HTTP_PEER_MAX_CONNECTIONS": str(limit)})
        socks = []

        def connect(addr):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind((addr, 0))
            s.settimeout(30)
            s.connect(("127.0.0.1", other.port))
            return s

        def version(s):
            s.sendall(b"GET /api/version HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            return status_of(s.recv(65536))

        def deploy_nosuch(s, size, complete=True):
            """POST with a body of size bytes; only size - 1 of them unless complete."""
            head = (b"POST /api/apps/nosuch/deploy HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Authorization: Bearer " + TOKEN.encode() + b"\r\nContent-Type: application/json\r\n"
                    b"Content-Length: " + str(size).encode() + b"\r\n\r\n")
            body = b"{" + b" " * (size - 2) + b"}"
            try:
                s.sendall(head + (body if complete else body[:-1]))
            except OSError:
                pass

        with other:
            try:
                held = [connect("127.0.0.3") for _ in range(limit)]
                self.assertEqual(version(held[-1]), 200)     # the last one allowed is served
                extra = connect("127.0.0.3")
                started = time.monotonic()
                try:
                    data = extra.recv(65536)
                except ConnectionResetError:
                    data = b""
                self.assertEqual(data, b"")                  # closed at once ...
                self.assertLess(time.monotonic() - started, 8)   # ... not at the 10 s head timeout
                self.assertEqual(version(connect("127.0.0.1")), 200)   # another peer is served

                # 17 bodies of 1 MiB, one byte short each, from one peer: 16 fit.
                bodies = []
                for _ in range(17):
                    s = connect("127.0.0.4")
                    deploy_nosuch(s, 1048576, complete=False)
                    bodies.append(s)
                refused = []

                def one_refused():
                    r, _, _ = select.select(bodies, [], [], 0.5)
                    refused.extend(x for x in r if x not in refused)
                    return refused
                wait_until(one_refused, timeout=60, what="a body over the peer's budget to be refused")
                self.assertEqual(len(refused), 1)
                self.assertEqual(status_of(refused[0].recv(65536)), 503)

                # Meanwhile another peer's large body is taken.
                s = connect("127.0.0.1")
                deploy_nosuch(s, 1048576)
                self.assertEqual(status_of(s.recv(65536)), 404)

                # The others complete and are answered; the budget comes back.
                for s in bodies:
                    if s not in refused:
                        s.sendall(b"}")
                        self.assertEqual(status_of(s.recv(65536)), 404)
                for _ in range(3):
                    s = connect("127.0.0.4")
                    deploy_nosuch(s, 1048576)
                    self.assertEqual(status_of(s.recv(65536)), 404)
            finally:
                for s in socks:
                    s.close()

    # --- pipelined requests (two requests in one packet) ---

    @staticmethod
    def read_response(s, buf):
        """One response from socket s: (status, JSON body, rest of buf), or
        (None, None, buf) when the connection ended first."""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                return None, None, buf
            buf += chunk
        head, _, buf = buf.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(buf) < length:
            chunk = s.recv(65536)
            if not chunk:
                return None, None, buf
            buf += chunk
        body, buf = buf[:length], buf[length:]
        try:
            body = json.loads(body) if body else None
        except ValueError:
            body = body.decode(errors="replace")  # not ours: lws' own error page
        return status_of(head + b"\r\n"), body, buf

    @staticmethod
    def req(method, path, body=None, auth=True):
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        if auth:
            head += f"Authorization: Bearer {TOKEN}\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        return (head + "\r\n" + (body or "")).encode()

    def pipelined(self, port, data):
        """Sends data in one write; returns the responses until the server
        closed the connection."""
        answers = []
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(data)
            buf = b""
            while True:
                status, body, buf = self.read_response(s, buf)
                if status is None:
                    self.assertEqual(buf, b"", "bytes after the last response")
                    return answers
                answers.append((status, body))

    def test_pipelined_requests_do_not_freeze_nornd(self):
        other = Nornd(env={"NORN_API_TOKEN": TOKEN, "NORN_APPS_DIR": self.apps,
                           "NORN_STATE_DIR": os.path.join(self.dir, "state-pipelining"),
                           "KUBECONFIG": self.kubeconfig})
        other.start()
        try:
            wait_until(lambda: other.health()[0] == 200, what="all components up")
            refused = (400, "pipelining_unsupported")
            cases = [
                # Issue 10's freeze: an answer from the database, then a POST.
                ("deferred GET + POST", self.req("GET", "/api/deployments/999999")
                 + self.req("POST", "/api/deployments/999999/cancel"), 404),
                ("deferred GET + POST with body", self.req("GET", "/api/deployments")
                 + self.req("POST", "/api/apps/nosuch/deploy", "{}"), 200),
                ("deferred GET + GET", self.req("GET", "/api/apps/good/snapshots")
                 + self.req("GET", "/api/version"), 200),
                ("immediate GET + deferred GET", self.req("GET", "/api/version")
                 + self.req("GET", "/api/deployments"), 200),
                ("POST with body + GET", self.req("POST", "/api/deployments/999999/cancel", "{}")
                 + self.req("GET", "/api/deployments"), 404),
                ("three at once", self.req("GET", "/api/deployments") + self.req("GET", "/api/version")
                 + self.req("POST", "/api/deployments/999999/cancel"), 200),
                ("request + half the next", self.req("GET", "/api/deployments")
                 + self.req("GET", "/api/version")[:20], 200),
                ("request + garbage", self.req("GET", "/api/deployments") + b"\x00\x01garbage\xff\r\n\r\n", 200),
            ]
            for name, data, first in cases:
                with self.subTest(name):
                    answers = self.pipelined(other.port, data)
                    self.assertGreaterEqual(len(answers), 1, name)
                    self.assertEqual(answers[0][0], first, (name, answers))
                    # What came after the first answer, if anything did: a
                    # clear refusal. ("half the next" is complete only after.)
                    for status, body in answers[1:]:
                        if name == "request + garbage":
                            self.assertGreaterEqual(status, 400, (name, answers))
                            continue
                        self.assertEqual((status, body and body.get("code")), refused, (name, answers))
                    self.assertLessEqual(len(answers), 2, (name, answers))
                    other.alive()
                    # Others are served meanwhile.
                    self.assertEqual(other.health()[0], 200, name)

            # The same requests one after the other on one connection work.
            with socket.create_connection(("127.0.0.1", other.port), timeout=30) as s:
                buf = b""
                for data, want in ((self.req("GET", "/api/deployments/999999"), 404),
                                   (self.req("POST", "/api/deployments/999999/cancel", "{}"), 404),
                                   (self.req("GET", "/api/version"), 200)):
                    s.sendall(data)
                    status, body, buf = self.read_response(s, buf)
                    self.assertEqual(status, want, body)
        finally:
            self.assertEqual(other.stop(timeout=20), 0, other.log())

if __name__ == "__main__":
    main()
