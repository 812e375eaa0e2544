"""The web dashboard: how nornd serves its files (types, caching, a strict
Content-Security-Policy, no token needed, nothing outside the dashboard
directory reachable), and the pages themselves in a real browser: Debian's
chromium driven by tests/browser/dashboard.test.mjs (playwright-core, axe-core)
against this nornd doing real deploys of the example app. Screenshots go to
<build>/dashboard-screenshots."""
import json
import os
import re
import subprocess
import threading
import unittest

from dashboard_env import WEB_DIR, DashboardEnv
from fixtures import example_app_files
from nornlib import BUILD_DIR, SOURCE_DIR, http_request, main, raw_request, status_of

TOKEN = "dash-token-" + os.urandom(12).hex()
BROWSER_DIR = os.path.join(SOURCE_DIR, "tests", "browser")
SHOTS = os.path.join(BUILD_DIR, "dashboard-screenshots")


def headers_of(raw):
    head = raw.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")[1:]
    return {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in head)}


class DashboardTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.env = DashboardEnv(TOKEN).__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.env.__exit__(None, None, None)

    def get(self, path, headers=None):
        return http_request(self.env.nornd.port, "GET", path, headers=headers)

    def test_static_files(self):
        status, body, h = self.get("/")
        self.assertEqual(status, 200)
        self.assertIn(b'<script type="module" src="main.js">', body)
        self.assertEqual(h["content-type"], "text/html; charset=utf-8")
        self.assertEqual(h["cache-control"], "no-cache")
        self.assertEqual(h["x-content-type-options"], "nosniff")
        csp = h["content-security-policy"]
        self.assertIn("default-src 'none'", csp)
        self.assertIn("script-src 'self';", csp)
        self.assertNotIn("unsafe", csp)
        self.assertIn(f"connect-src 'self' ws://127.0.0.1:{self.env.nornd.port}", csp)
        self.assertIn("frame-ancestors 'none'", csp)

        for name, ctype in (("main.js", "text/javascript; charset=utf-8"),
                            ("style.css", "text/css; charset=utf-8"),
                            ("favicon.svg", "image/svg+xml")):
            status, body, h = self.get("/" + name)
            self.assertEqual(status, 200, name)
            self.assertEqual(h["content-type"], ctype)
            with open(os.path.join(WEB_DIR, name), "rb") as f:
                self.assertEqual(body if isinstance(body, bytes) else json.dumps(body).encode(), f.read())

        # Revalidation: the ETag gets a 304 without a body.
        etag = self.get("/main.js")[2]["etag"]
        status, body, h = self.get("/main.js", {"If-None-Match": etag})
        self.assertEqual(status, 304)
        self.assertFalse(body)
        self.assertEqual(self.get("/main.js", {"If-None-Match": '"other"'})[0], 200)

        # HEAD: the headers only.
        raw = raw_request(self.env.nornd.port, b"HEAD /style.css HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        self.assertEqual(status_of(raw), 200)
        self.assertEqual(raw.partition(b"\r\n\r\n")[2], b"")

        # The files need no token; the API still does, and POST is not a file:
        # without the token a request with a body is refused from its head
        # (401, its body never read), with it POST / is 405.
        json_type = {"Content-Type": "application/json"}
        auth = dict(json_type, Authorization=f"Bearer {TOKEN}")
        self.assertEqual(self.get("/api/apps")[0], 401)
        self.assertEqual(http_request(self.env.nornd.port, "POST", "/", body=b"{}", headers=json_type)[0], 401)
        self.assertEqual(http_request(self.env.nornd.port, "POST", "/", body=b"{}", headers=auth)[0], 405)
        # A path that is no file of the dashboard (an API path with "../" in
        # it ends up here once resolved) is a 404 whatever the method.
        self.assertEqual(http_request(self.env.nornd.port, "POST", "/api/apps/..%2f..%2fetc/deploy", body=b"{}",
                                      headers=auth)[0], 404)

    def test_hostile_paths(self):
        # Files that exist outside the dashboard directory, and names that
        # are not flat file names of it: all 404, nornd keeps answering.
        outside = os.path.join(os.path.dirname(WEB_DIR), "README.md")
        self.assertTrue(os.path.exists(outside))
        for target in ("/../README.md", "/..%2FREADME.md", "/%2e%2e/README.md", "/%2e%2e%2fREADME.md",
                       "/web/../../README.md", "//etc/passwd", "/etc/passwd", "/.hidden.js",
                       "/main.js%00.html", "/main.js/", "/main", "/MAIN.JS.bak", "/sub/main.js",
                       "/%5c..%5cREADME.md", "/..\\README.md", "/main.js?x=../../README.md",
                       "/" + "a" * 300 + ".js", "/proc/self/environ", "/index.html%20"):
            raw = raw_request(self.env.nornd.port,
                              f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            status = status_of(raw)
            body = raw.partition(b"\r\n\r\n")[2]
            if target.startswith("/main.js?"):
                self.assertEqual(status, 200, target)  # the query is not part of the name
                continue
            self.assertIn(status, (400, 404), target)
            self.assertNotIn(b"Norn", body, target)
            self.assertNotIn(b"root:", body, target)
        # A symlink in the dashboard directory is not followed.
        link = os.path.join(WEB_DIR, "zz-test-link.js")
        os.symlink("/etc/passwd", link)
        try:
            self.assertEqual(self.get("/zz-test-link.js")[0], 404)
        finally:
            os.unlink(link)
        self.assertEqual(self.get("/api/version")[0], 200)

    def test_browser(self):
        """tests/browser/dashboard.test.mjs in Debian's chromium."""
        env = dict(os.environ, NORN_DASH_URL=self.env.url, NORN_DASH_TOKEN=TOKEN,
                   NORN_DASH_GATE=self.env.gate, NORN_DASH_SHOTS=SHOTS)
        proc = subprocess.Popen(["node", "--test-reporter=spec", "dashboard.test.mjs"], cwd=BROWSER_DIR,
                                env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1)
        output = []
        timer = threading.Timer(1500, proc.kill)
        timer.start()
        try:
            for line in proc.stdout:
                if line.startswith("@@control "):
                    answer = self.control(json.loads(line[len("@@control "):]))
                    proc.stdin.write(json.dumps(answer) + "\n")
                    proc.stdin.flush()
                    continue
                print(line, end="", flush=True)
                output.append(line)
            proc.wait()
        finally:
            timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdin.close()
            proc.stdout.close()
        self.assertEqual(proc.returncode, 0, "browser tests failed:\n" + "".join(output[-80:]))
        self.assertTrue(re.search(r"^ℹ fail 0$", "".join(output), re.M), "".join(output[-20:]))
        self.assertTrue(os.path.exists(os.path.join(SHOTS, "deployment-failed-dark-narrow.png")))

    def control(self, req):
        try:
            if req["action"] == "restart":
                self.env.restart_nornd()
            elif req["action"] == "commit":
                files = example_app_files(self.env.repo.file_url, version="2")
                self.env.repo.commit({"index.html": files["index.html"], "VERSION": files["VERSION"]},
                                     "v2 for the rollback test")
            else:
                return {"ok": False, "error": "unknown action"}
            return {"ok": True}
        except Exception as e:  # reported to the browser test, which fails
            return {"ok": False, "error": repr(e)}


if __name__ == "__main__":
    main()
