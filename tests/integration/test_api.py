"""The HTTP API against a real nornd and a real pipeline: every route with a
good request, without and with a wrong bearer token, and with hostile input
(bad JSON, wrong types, huge bodies, unknown apps, path traversal, SQL-ish
strings, non-UTF-8 bytes, out-of-range numbers), each answered with the
right status and changing nothing; then real deploys, logs, cancel,
rollback and restore through the API."""
import json
import os
import re
import shutil
import tempfile
import threading
import time
import unittest
import urllib.parse

from fixtures import example_app_files
from nornlib import Nornd, free_port, http_request, main, raw_request, run, status_of, wait_until
from pipeline_env import PipelineEnv, psql
from wslib import WsRefused, ws_connect

TOKEN = "api-token-" + os.urandom(12).hex()
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON_AUTH = dict(AUTH, **{"Content-Type": "application/json"})
STEPS = ["clone", "build", "test", "snapshot", "migrate", "deploy", "cleanup"]

# Every authenticated route, with a request that would succeed or be
# refused for its content, never for its path.
AUTH_ROUTES = [
    ("GET", "/api/apps"),
    ("GET", "/api/apps/hello"),
    ("POST", "/api/apps/hello/deploy"),
    ("POST", "/api/apps/hello/rollback"),
    ("GET", "/api/apps/hello/snapshots"),
    ("POST", "/api/apps/hello/snapshots/x.dump/restore"),
    ("GET", "/api/deployments"),
    ("GET", "/api/deployments/1"),
    ("POST", "/api/deployments/1/cancel"),
    ("GET", "/api/deployments/1/logs"),
    ("GET", "/api/no-such-path"),
]


def counts():
    return psql("SELECT (SELECT count(*) FROM deployments) || '/' || (SELECT count(*) FROM deployment_steps)"
                " || '/' || (SELECT count(*) FROM snapshots)")


class ApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.env = PipelineEnv(nornd_env={"NORN_API_TOKEN": TOKEN}, kube_deployments=("hello", "loud")).__enter__()
        cls.port = cls.env.nornd.port

    @classmethod
    def tearDownClass(cls):
        log = cls.env.nornd.log()
        cls.env.__exit__(None, None, None)
        assert TOKEN not in log, "the API token appeared in nornd's log"

    def tearDown(self):
        self.env.nornd.alive()

    def req(self, method, path, body=None, headers=None, auth=True, timeout=10):
        h = dict(AUTH) if auth else {}
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        return http_request(self.port, method, path, body=body, headers=h, timeout=timeout)[:2]

    def assertError(self, result, status, code=None, msg=None):
        got, body = result
        self.assertEqual(got, status, (msg, body))
        self.assertIsInstance(body, dict, msg)
        self.assertIsInstance(body.get("error"), str, (msg, body))
        self.assertIsInstance(body.get("code"), str, (msg, body))
        if code:
            self.assertEqual(body["code"], code, (msg, body))

    def wait_final(self, deploy_id, timeout=240):
        def final():
            status, d = self.req("GET", f"/api/deployments/{deploy_id}")
            self.assertEqual(status, 200, d)
            return d if d["status"] in ("deployed", "failed", "rolled_back") else None
        return wait_until(final, timeout=timeout, interval=0.3, what=f"deployment {deploy_id} to end")

    def deploy(self, body=None):
        status, d = self.req("POST", "/api/apps/hello/deploy", body if body is not None else {})
        self.assertEqual(status, 202, d)
        return d

    # --- auth ---

    def test_01_open_routes(self):
        for path in ("/api/health", "/api/version"):
            status, body = self.req("GET", path, auth=False)
            self.assertIn(status, (200, 503), path)
            self.assertIsInstance(body, dict)
        self.assertEqual(self.req("GET", "/api/version", auth=False)[1]["name"], "norn")

    def test_02_missing_and_wrong_auth(self):
        before = counts()
        wrong = [
            None,
            {"Authorization": ""},
            {"Authorization": "Bearer"},
            {"Authorization": "Bearer "},
            {"Authorization": "Basic " + TOKEN},
            {"Authorization": TOKEN},
            {"Authorization": "Bearer " + TOKEN[:-1]},
            {"Authorization": "Bearer " + TOKEN + "x"},
            {"Authorization": "Bearer " + TOKEN.upper()},
            {"Authorization": "Bearer x"},
            {"Authorization": "Bearer " + "a" * 4000},
            {"Authorization": "Bearer " + TOKEN + " " + TOKEN},
        ]
        for method, path in AUTH_ROUTES:
            for headers in wrong:
                result = self.req(method, path, body={} if method == "POST" else None, headers=headers, auth=False)
                self.assertError(result, 401, "unauthorized", (method, path, headers and headers["Authorization"][:40]))
        # Non-UTF-8 bytes in the header.
        raw = raw_request(self.port, b"GET /api/apps HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe"
                                     b"\r\nConnection: close\r\n\r\n")
        self.assertEqual(status_of(raw), 401)
        # The scheme is case-insensitive, the token is not.
        self.assertEqual(self.req("GET", "/api/apps", headers={"Authorization": "bearer " + TOKEN}, auth=False)[0], 200)
        self.assertEqual(counts(), before)
        # Authenticated, an unknown path is a plain 404, a known one with the
        # wrong method a 405.
        self.assertError(self.req("GET", "/api/no-such-path"), 404, "not_found")
        self.assertError(self.req("DELETE", "/api/apps"), 405, "method_not_allowed")
        self.assertError(self.req("GET", "/api/apps/hello/deploy"), 405, "method_not_allowed")

    # --- apps ---

    def test_03_apps(self):
        status, body = self.req("GET", "/api/apps")
        self.assertEqual(status, 200, body)
        apps = {a["id"]: a for a in body["apps"]}
        hello = apps["hello"]
        self.assertEqual((hello["valid"], hello["deployable"], hello["diagnostics"]), (True, True, []))
        self.assertIn("lastDeployment", hello)
        self.assertEqual(hello["spec"]["app"], "hello")

        status, one = self.req("GET", "/api/apps/hello")
        self.assertEqual(status, 200, one)
        self.assertEqual(one["id"], "hello")

        # An invalid infraspec is listed with its diagnostics, not hidden.
        d = os.path.join(self.env.apps, "broken")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "infraspec.yaml"), "w") as f:
            f.write("app: broken\nrole: webserver\nport: [1\n")
        try:
            status, body = self.req("GET", "/api/apps")
            broken = {a["id"]: a for a in body["apps"]}["broken"]
            self.assertFalse(broken["valid"])
            self.assertTrue(broken["diagnostics"])
            self.assertError(self.req("POST", "/api/apps/broken/deploy", {}), 400, "invalid_argument")
        finally:
            os.remove(os.path.join(d, "infraspec.yaml"))
            os.rmdir(d)

        for path in ("/api/apps/nope", "/api/apps/..%2f..%2fetc", "/api/apps/%2e%2e", "/api/apps/..",
                     "/api/apps/HELLO", "/api/apps/hello%00", "/api/apps/%ff%fe", "/api/apps/-x",
                     "/api/apps/x%3B%20DROP%20TABLE%20deployments", "/api/apps/" + "a" * 300):
            status, body = self.req("GET", path)
            self.assertIn(status, (400, 404), (path, body))
            self.assertIsInstance(body, dict, path)
        self.assertError(self.req("GET", "/api/apps?x=1"), 400, "invalid_query")

    # --- hostile input to the mutating routes ---

    def test_04_hostile_deploy_input(self):
        before = counts()
        cases = [
            (b"{", 400), (b"", None), (b"null", 400), (b"[]", 400), (b'"x"', 400), (b"1", 400),
            (b'{"commitSha": 5}', 400), (b'{"commitSha": ["a"]}', 400), (b'{"commitSha": null}', 400),
            (b'{"commitSha": "xyz"}', 400), (b'{"commitSha": "ABCDEF1234567"}', 400),
            (b'{"commitSha": "1; DROP TABLE deployments"}', 400),
            (b'{"commitSha": "\' OR 1=1 --"}', 400),
            (b'{"ref": "../../etc/passwd"}', 400), (b'{"ref": "-x"}', 400), (b'{"ref": "a b"}', 400),
            (b'{"ref": "main", "commitSha": "abcdef1"}', 400),
            (b'{"foo": 1}', 400), (b'{"commitSha": "\xff\xfe"}', 400), (b'\xff{}', 400),
            (b'{"commitSha": "abc", "commitSha": "def"}', 400),
            (b'{"a":' * 5000 + b'1' + b'}' * 5000, 400),
        ]
        for body, want in cases:
            if want is None:
                continue
            result = self.req("POST", "/api/apps/hello/deploy", body=body, headers={"Content-Type": "application/json"})
            self.assertError(result, want, msg=body[:60])
        # Not JSON at all.
        self.assertError(self.req("POST", "/api/apps/hello/deploy", body=b"commitSha=abc",
                                  headers={"Content-Type": "application/x-www-form-urlencoded"}), 415)
        # Bodies over 1 MiB are refused before they are read.
        big = b'{"commitSha": "' + b"a" * (2 * 1024 * 1024) + b'"}'
        raw = raw_request(self.port, b"POST /api/apps/hello/deploy HTTP/1.1\r\nHost: x\r\n"
                          b"Authorization: Bearer " + TOKEN.encode() + b"\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n" % len(big) + big)
        self.assertEqual(status_of(raw), 413)
        # Unknown app, traversal, SQL-ish names in the path: 404, nothing queued.
        for app in ("nope", "..%2f..%2fetc", "x%3B%20DROP%20TABLE%20deployments", "%ff", "hello%00x"):
            status, body = self.req("POST", f"/api/apps/{app}/deploy", {})
            self.assertIn(status, (400, 404), (app, body))
        for body in ({"to": "x"}, {"to": -1}, {"to": 0}, {"to": 1.5}, {"to": True}, {"restoreDb": "yes"},
                     {"restoreDb": 1}, {"bogus": 1}, [1]):
            self.assertError(self.req("POST", "/api/apps/hello/rollback", body), 400, msg=body)
        self.assertError(self.req("POST", "/api/apps/hello/rollback", {}), 404, "not_found")  # nothing deployed
        for name in ("x%3Brm%20-rf%20%2F", "-x", ".hidden", "a%20b", "%ff", "hello_nope.dump"):
            status, body = self.req("POST", f"/api/apps/hello/snapshots/{name}/restore", {})
            self.assertIn(status, (400, 404), (name, body))
        self.assertError(self.req("POST", "/api/apps/hello/snapshots/x.dump/restore", {"x": 1}), 400)
        self.assertEqual(counts(), before)

    def test_05_hostile_queries(self):
        before = counts()
        bad = ["limit=0", "limit=-1", "limit=501", "limit=99999999999999999999999", "limit=abc", "limit=1e3",
               "limit=%2B5", "limit=", "limit=5&limit=6", "offset=-1", "offset=x", "offset=1000000001",
               "status=bogus", "status=deployed%3B%20DROP%20TABLE%20deployments", "app=..%2Fetc",
               "app=x%27%3B%20DROP%20TABLE%20deployments%3B--", "app=%ff", "app=HELLO", "foo=1", "limit=1%00"]
        for q in bad:
            self.assertError(self.req("GET", "/api/deployments?" + q), 400, msg=q)
        status, body = self.req("GET", "/api/deployments?app=nope")
        self.assertEqual((status, body["deployments"], body["total"]), (200, [], 0))
        status, body = self.req("GET", "/api/deployments?limit=500&offset=1000000000")
        self.assertEqual((status, body["deployments"]), (200, []))

        for ident in ("0", "-1", "abc", "1.5", "99999999999999999999999", "%ff", "1;2", "1%3B%20DROP%20TABLE%20x"):
            for suffix in ("", "/logs"):
                self.assertError(self.req("GET", f"/api/deployments/{ident}{suffix}"), 404, msg=ident)
            self.assertError(self.req("POST", f"/api/deployments/{ident}/cancel", {}), 404, msg=ident)
        # A NUL byte in the target: refused by the server itself.
        self.assertError(self.req("GET", "/api/deployments/1%00"), 400)
        self.assertError(self.req("GET", "/api/deployments/424242"), 404, "not_found")
        self.assertError(self.req("GET", "/api/deployments/424242/logs"), 404, "not_found")
        self.assertError(self.req("POST", "/api/deployments/424242/cancel", {}), 404, "not_found")
        for q in ("limit=0", "limit=10001", "follow=2", "wait=0", "wait=61", "after=", "bogus=1"):
            self.assertError(self.req("GET", "/api/deployments/1/logs?" + q), 400, msg=q)
        self.assertEqual(counts(), before)

    def test_06_token_holders_may_use_browsers(self):
        # With a token, Origin, Sec-Fetch-Site and a foreign Host do not matter.
        browser = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site", "Host": "norn.example:8800"}
        status, body = self.req("GET", "/api/apps", headers=browser)
        self.assertEqual(status, 200, body)
        self.assertError(self.req("POST", "/api/deployments/424242/cancel", {}, headers=browser), 404, "not_found")
        # Without the token they are still just unauthenticated.
        self.assertError(self.req("GET", "/api/apps", headers=browser, auth=False), 401, "unauthorized")

    def test_07_post_needs_json_content_type_even_when_empty(self):
        before = counts()
        for path in ("/api/apps/hello/deploy", "/api/apps/hello/rollback", "/api/apps/hello/snapshots/x.dump/restore",
                     "/api/deployments/1/cancel"):
            for headers, body in (({}, None), ({}, b"{}"), ({"Content-Type": "text/plain"}, b""),
                                  ({"Content-Type": "text/plain"}, b"{}"),
                                  ({"Content-Type": "application/x-www-form-urlencoded"}, b""),
                                  ({"Content-Type": "multipart/form-data; boundary=x"}, b""),
                                  ({"Content-Type": "application/jsonx"}, b"")):
                self.assertError(self.req("POST", path, body=body, headers=headers), 415, "unsupported_media_type",
                                 (path, headers, body))
        self.assertEqual(counts(), before)
        # The same empty body with the right type is accepted (here: 404, nothing running).
        self.assertError(self.req("POST", "/api/deployments/424242/cancel", body=b"",
                                  headers={"Content-Type": "application/json; charset=utf-8"}), 404, "not_found")

    # --- real deploys ---

    def test_10_deploy_logs_and_list(self):
        env = self.env
        sha = env.repo.shas[1]
        before = int(psql("SELECT count(*) FROM deployments"))
        d = self.deploy({"commitSha": sha})
        self.assertEqual((d["app"], d["ref"], d["status"], d["requestedBy"]), ("hello", sha, "queued", "api"))
        self.assertEqual(int(psql("SELECT count(*) FROM deployments")), before + 1)

        # Follow the logs while it runs: long polls until it has finished.
        lines, cursor, finished = [], None, False
        deadline = time.monotonic() + 240
        while not finished and time.monotonic() < deadline:
            q = "follow=1&wait=5" + ("&after=" + urllib.parse.quote(cursor, safe="") if cursor else "")
            status, page = self.req("GET", f"/api/deployments/{d['id']}/logs?{q}", timeout=15)
            self.assertEqual(status, 200, page)
            lines += page["lines"]
            cursor = page["cursor"] or cursor
            finished = page["finished"]
        self.assertTrue(finished, "the log never said finished")

        done = self.wait_final(d["id"])
        self.assertEqual(done["status"], "deployed", done)
        self.assertEqual(done["commitSha"], sha)
        self.assertEqual([s["step"] for s in done["steps"]], STEPS)
        self.assertEqual({s["status"] for s in done["steps"]}, {"succeeded"})
        self.assertIsInstance(done["steps"][0]["durationMs"], int)

        # The followed lines are the journal's lines of this deployment, in order, once each.
        journal = [e["MESSAGE"] for e in env.journal(d["id"])]
        self.assertEqual([l["message"] for l in lines], journal)
        self.assertTrue(any(l["stream"] == "stdout" for l in lines), lines[:5])
        self.assertTrue({l["step"] for l in lines} >= {"clone", "build", "deploy"})

        # Without follow: everything at once, then page by page.
        status, page = self.req("GET", f"/api/deployments/{d['id']}/logs")
        self.assertEqual([l["message"] for l in page["lines"]], journal)
        self.assertTrue(page["finished"])
        paged, after = [], None
        while True:
            q = "limit=7" + ("&after=" + urllib.parse.quote(after, safe="") if after else "")
            status, page = self.req("GET", f"/api/deployments/{d['id']}/logs?{q}")
            self.assertEqual(status, 200, page)
            self.assertLessEqual(len(page["lines"]), 7)
            paged += page["lines"]
            after = page["cursor"]
            if not page["more"]:
                break
        self.assertEqual([l["message"] for l in paged], journal)
        self.assertError(self.req("GET", f"/api/deployments/{d['id']}/logs?after=s%3Dbogus"), 400)

        # The list and the app show it.
        status, body = self.req("GET", "/api/deployments?app=hello&status=deployed&limit=1")
        self.assertEqual(status, 200, body)
        self.assertEqual([x["id"] for x in body["deployments"]], [d["id"]])
        self.assertEqual((body["limit"], body["offset"]), (1, 0))
        status, body = self.req("GET", "/api/deployments")
        self.assertEqual(body["total"], len(body["deployments"]))
        self.assertEqual(self.req("GET", "/api/apps/hello")[1]["lastDeployment"]["id"], d["id"])

        # Cancelling a finished deployment: 409, nothing changes.
        self.assertError(self.req("POST", f"/api/deployments/{d['id']}/cancel", {}), 409, "already_finished")
        self.assertEqual(self.req("GET", f"/api/deployments/{d['id']}")[1]["status"], "deployed")
        type(self).first = done

    def test_11_cancel(self):
        d = self.deploy()
        status, body = self.req("POST", f"/api/deployments/{d['id']}/cancel", {})
        self.assertEqual(status, 202, body)
        done = self.wait_final(d["id"])
        self.assertEqual(done["status"], "failed")
        self.assertIn("cancel", done["error"])

    def test_12_second_deploy_rollback_and_restore(self):
        env = self.env
        second = self.wait_final(self.deploy({"ref": "main"})["id"])
        self.assertEqual(second["status"], "deployed", second)
        self.assertNotEqual(second["imageTag"], self.first["imageTag"])

        # Busy while a deploy is queued: 409, no row.
        d = self.deploy()
        self.assertError(self.req("POST", "/api/apps/hello/rollback", {}), 409, "busy")
        self.wait_final(d["id"])

        self.assertError(self.req("POST", "/api/apps/hello/rollback", {"to": 999999}), 404)
        status, rb = self.req("POST", "/api/apps/hello/rollback", {"to": self.first["id"]})
        self.assertEqual(status, 202, rb)
        self.assertEqual(rb["imageTag"], self.first["imageTag"])
        rb = self.wait_final(rb["id"])
        self.assertEqual(rb["status"], "deployed", rb)
        self.assertEqual(env.kube.image("hello"), self.first["imageTag"])

        status, body = self.req("GET", "/api/apps/hello/snapshots")
        self.assertEqual(status, 200, body)
        names = [s["name"] for s in body["snapshots"]]
        self.assertTrue(names and all(n.startswith("hello_") for n in names), body)
        self.assertError(self.req("GET", "/api/apps/nope/snapshots"), 404)

        status, restore = self.req("POST", f"/api/apps/hello/snapshots/{names[0]}/restore", {})
        self.assertEqual(status, 202, restore)
        restore = self.wait_final(restore["id"])
        self.assertEqual(restore["status"], "deployed", restore)

    def test_13_large_log_in_slices(self):
        # A step printing 20,000 lines: both APIs return them all, in order,
        # page by page (a page is read a slice per loop iteration), and
        # /api/health keeps answering meanwhile.
        env = self.env
        spec = example_app_files(env.repo.file_url, app="loud")["infraspec.yaml"]
        spec, n = re.subn(r"(?m)^  test: .*$", "  test: seq -f line-%05.0f 1 20000", spec)
        self.assertEqual(n, 1)
        env.add_app("loud", {"infraspec.yaml": spec})
        try:
            status, d = self.req("POST", "/api/apps/loud/deploy", {})
            self.assertEqual(status, 202, d)
            done = self.wait_final(d["id"])
            self.assertEqual(done["status"], "deployed", done)
            self._check_large_log(d["id"])
        finally:
            shutil.rmtree(os.path.join(env.apps, "loud"), ignore_errors=True)

    def _check_large_log(self, deploy_id):
        expected = [f"line-{i:05d}" for i in range(1, 20001)]
        time.sleep(2.5)  # journald has stored the last lines: the log says finished
        journal = [e["MESSAGE"] for e in self.env.journal(deploy_id)]
        self.assertEqual([m for m in journal if m.startswith("line-")], expected)

        # /api/health asked over and over while the pages are read.
        reads, healths, stop = [], [], threading.Event()

        def poll_health():
            while not stop.is_set():
                start = time.monotonic()
                status, _ = http_request(self.port, "GET", "/api/health", timeout=10)[:2]
                healths.append((start, time.monotonic(), status))

        def timed(api, fn):
            start = time.monotonic()
            result = fn()
            reads.append((api, start, time.monotonic()))
            return result

        poller = threading.Thread(target=poll_health)
        poller.start()
        try:
            # HTTP: pages of the largest limit.
            http_lines, after = [], None
            while True:
                q = "limit=10000" + ("&after=" + urllib.parse.quote(after, safe="") if after else "")
                status, page = timed("http", lambda: self.req("GET", f"/api/deployments/{deploy_id}/logs?{q}",
                                                      timeout=60))
                self.assertEqual(status, 200, page)
                self.assertLessEqual(len(page["lines"]), 10000)
                http_lines += page["lines"]
                after = page["cursor"]
                if not page["more"]:
                    break
            self.assertTrue(page["finished"])
            # D-Bus: GetLogs pages of its largest max, until an empty page.
            bus_lines, cursor = [], ""
            for _ in range(10):
                p = timed("bus", lambda: run(["busctl", "--user", "--json=short", "call", "org.norn.Norn1",
                                       "/org/norn/Norn1", "org.norn.Norn1.Manager", "GetLogs", "tsu",
                                       str(deploy_id), cursor, "10000"], check=False, timeout=60))
                self.assertEqual(p.returncode, 0, p.stderr)
                page, next_cursor = json.loads(p.stdout)["data"]
                self.assertLessEqual(len(page), 10000)
                if not page:
                    self.assertEqual(next_cursor, cursor)
                    break
                bus_lines += page
                cursor = next_cursor
        finally:
            stop.set()
            poller.join()

        self.assertEqual([l["message"] for l in http_lines], journal)
        self.assertEqual([l[2] for l in bus_lines], journal)
        self.assertEqual([l["message"] for l in http_lines if l["step"] == "test" and l["stream"] == "stdout"],
                         expected)
        self.assertTrue(healths)
        self.assertEqual({s for _, _, s in healths} - {200, 503}, set(), healths[:5])
        self.assertLess(max(end - start for start, end, _ in healths), 5, "health waited on the log reads")
        # Some health answers came back while an HTTP page was being asked for.
        overlapped = [h for h in healths
                      if any(api == "http" and r0 < h[0] and h[1] < r1 for api, r0, r1 in reads)]
        self.assertTrue(overlapped, (reads, healths[:10]))

    def test_20_clients_leaving_early(self):
        # Clients that leave before their (deferred) answers do not hurt.
        import socket
        for path in ("/api/deployments/1/logs?follow=1&wait=30", "/api/deployments", "/api/apps"):
            for _ in range(10):
                with socket.create_connection(("127.0.0.1", self.port)) as s:
                    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
        status, body = self.req("GET", "/api/deployments")
        self.assertEqual(status, 200)


class TokenlessTest(unittest.TestCase):
    """No token: local clients only, and never a browser (a web page on this
    host can reach loopback too)."""

    BROWSER = [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://127.0.0.1:8800"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "None"},
        {"Host": "evil.example:8800"},
        {"Host": "evil.example"},
        {"Host": "127.0.0.1.evil.example"},
        {"Host": "localhost.evil.example:8800"},
        {"Host": "127.0.0.2"},
        {"Host": "127.0.0.1:"},
        {"Host": "127.0.0.1:80x"},
        {"Host": "127.0.0.1:123456"},
        {"Host": "[::1"},
        {"Host": "localhost:8800@evil.example"},
    ]
    MUTATING = ["/api/apps/hello/deploy", "/api/apps/hello/rollback", "/api/apps/hello/snapshots/x.dump/restore",
                "/api/deployments/1/cancel"]

    @classmethod
    def setUpClass(cls):
        cls.apps = tempfile.mkdtemp(prefix="norn-apps-")
        os.makedirs(os.path.join(cls.apps, "hello"))
        with open(os.path.join(cls.apps, "hello", "infraspec.yaml"), "w") as f:
            f.write("app: hello\nrole: webserver\nport: 8080\n")
        cls.nornd = Nornd(env={"NORN_APPS_DIR": cls.apps}).start()
        cls.port = cls.nornd.port

    @classmethod
    def tearDownClass(cls):
        cls.nornd.__exit__(None)
        shutil.rmtree(cls.apps)

    def tearDown(self):
        self.nornd.alive()

    def req(self, method, path, headers=None, body=None, json_body=True):
        h = {"Content-Type": "application/json"} if json_body else {}
        h.update(headers or {})
        return http_request(self.port, method, path, body=body, headers=h)[:2]

    def assertForbidden(self, result, msg=None):
        status, body = result
        self.assertEqual(status, 403, (msg, body))
        self.assertEqual(body["code"], "forbidden", (msg, body))
        self.assertIn("browser requests need a token", body["error"], msg)

    def test_local_clients_allowed(self):
        for host in (None, "127.0.0.1", f"127.0.0.1:{self.port}", "localhost", f"LOCALHOST:{self.port}",
                     "[::1]", f"[::1]:{self.port}"):
            for extra in ({}, {"Sec-Fetch-Site": "none"}):
                headers = dict(extra, **({"Host": host} if host else {}))
                status, body = self.req("GET", "/api/deployments", headers=headers)
                self.assertIn(status, (200, 503), (headers, body))
        # A local POST with the JSON type gets through to the route.
        status, body = self.req("POST", "/api/deployments/424242/cancel", body=b"{}")
        self.assertEqual((status, body["code"]), (404, "not_found"), body)

    def test_browser_requests_refused(self):
        before = counts()
        for path in self.MUTATING:
            for headers in self.BROWSER:
                self.assertForbidden(self.req("POST", path, headers=headers, body=b"{}"), (path, headers))
            # What a no-cors fetch() sends: an Origin, no body, no Content-Type.
            self.assertForbidden(self.req("POST", path, headers={"Origin": "http://evil.example"},
                                          json_body=False), path)
        # Reading too: a page that rebound its name to 127.0.0.1 sends its own Host.
        for path in ("/api/apps", "/api/apps/hello", "/api/deployments", "/api/deployments/1/logs"):
            for headers in self.BROWSER:
                self.assertForbidden(self.req("GET", path, headers=headers, json_body=False), (path, headers))
        # No Host at all (HTTP/1.0 style) is not a loopback name either.
        raw = raw_request(self.port, b"POST /api/apps/hello/deploy HTTP/1.0\r\nContent-Type: application/json\r\n"
                                     b"Content-Length: 2\r\n\r\n{}")
        self.assertEqual(status_of(raw), 403, raw[:300])
        self.assertEqual(counts(), before)
        # The open routes stay open.
        status, body = self.req("GET", "/api/version", headers={"Origin": "http://evil.example"}, json_body=False)
        self.assertEqual(status, 200, body)

    def test_post_without_json_type_is_415(self):
        before = counts()
        for path in self.MUTATING:
            for headers, body in (({}, None), ({"Content-Type": "text/plain"}, b"{}"),
                                  ({"Content-Type": "application/x-www-form-urlencoded"}, b"")):
                status, answer = self.req("POST", path, headers=headers, body=body, json_body=False)
                self.assertEqual((status, answer["code"]), (415, "unsupported_media_type"), (path, headers, answer))
        self.assertEqual(counts(), before)

    def test_ws_upgrade_from_browser_refused(self):
        for headers in self.BROWSER:
            with self.assertRaises(WsRefused, msg=headers) as cm:
                ws_connect(self.port, token=None, headers=headers)
            self.assertEqual(cm.exception.status, 403, headers)
            self.assertEqual(cm.exception.body["code"], "forbidden", headers)
        # A local non-browser client still connects without a token.
        c = ws_connect(self.port, token=None)
        try:
            self.assertEqual(c.recv()["type"], "subscribed")
        finally:
            c.close()


class TokenConfigTest(unittest.TestCase):
    """How nornd starts with and without a token."""

    def test_no_token_loopback_only(self):
        with Nornd() as n:
            status, body = http_request(n.port, "GET", "/api/deployments")[:2]
            self.assertIn(status, (200, 503), body)  # allowed: local client
            self.assertIn("only answers clients on this host", n.log())

    def test_no_token_refuses_public_bind(self):
        n = Nornd(env={"NORN_BIND_ADDR": "0.0.0.0"})
        n.start(wait_http=False)
        try:
            n.proc.wait(10)
        except Exception:
            n.stop()
            raise
        self.assertNotEqual(n.proc.returncode, 0)
        self.assertIn("not a loopback address", n.log())
        os.unlink(n.log_path)

    def test_token_file(self):
        path = os.path.join(os.environ["NORN_SANDBOX_DIR"], "api-token")
        with open(path, "w") as f:
            f.write(TOKEN + "\n")
        os.chmod(path, 0o600)
        with Nornd(env={"NORN_API_TOKEN_FILE": path, "NORN_BIND_ADDR": "0.0.0.0"}) as n:
            self.assertEqual(http_request(n.port, "GET", "/api/deployments")[0], 401)
            status = http_request(n.port, "GET", "/api/deployments", headers=AUTH)[0]
            self.assertIn(status, (200, 503))
            self.assertNotIn(TOKEN, n.log())
        n = Nornd(env={"NORN_API_TOKEN_FILE": path, "NORN_API_TOKEN": TOKEN})
        n.start(wait_http=False)
        n.proc.wait(10)
        self.assertNotEqual(n.proc.returncode, 0)
        self.assertIn("set only one", n.log())
        self.assertNotIn(TOKEN, n.log())
        os.unlink(n.log_path)


if __name__ == "__main__":
    main()
