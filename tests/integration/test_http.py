"""nornd's HTTP API and /ws endpoint against a real nornd in the sandbox:
well-formed requests, then malformed and hostile ones; the daemon must answer
each with a clear 4xx and keep serving."""
import base64
import hashlib
import json
import os
import socket
import unittest

from nornlib import Nornd, http_request, main, raw_request, status_of, wait_until


class HttpApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.nornd = Nornd().start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.nornd.stop()
        cls.nornd.__exit__(None)
        assert rc == 0, f"nornd exit status {rc} on SIGTERM"

    def tearDown(self):
        # Whatever a test sent, the daemon is still up and serving.
        self.nornd.alive()
        status, body = self.nornd.health()
        self.assertIn(status, (200, 503))
        self.assertIn("components", body)

    def test_health_reports_components(self):
        # nornd connects to the database after it answers: wait for that.
        wait_until(lambda: self.nornd.health()[1]["components"]["database"]["status"] == "up", timeout=30,
                   what="/api/health to report the database up")
        status, body = self.nornd.health()
        self.assertEqual(body["components"]["database"]["status"], "up", body)
        self.assertEqual(body["components"]["systemd"]["status"], "up", body)
        # No kubeconfig in this test's environment: reported down, daemon degraded.
        self.assertEqual(body["components"]["kubernetes"]["status"], "down", body)
        self.assertEqual(body["status"], "degraded")
        self.assertEqual(status, 503)

    def test_health_with_kubeconfig_is_ok(self):
        path = os.path.join(os.environ["NORN_SANDBOX_DIR"], "kubeconfig-health")
        with open(path, "w") as f:
            f.write("apiVersion: v1\nkind: Config\ncurrent-context: c\n"
                    "clusters: [{name: k, cluster: {server: 'https://127.0.0.1:6443'}}]\n"
                    "users: [{name: u, user: {token: secret-token-value}}]\n"
                    "contexts: [{name: c, context: {cluster: k, user: u}}]\n")
        with Nornd(env={"KUBECONFIG": path}) as other:
            wait_until(lambda: other.health()[0] == 200, what="all components up")
            status, body = other.health()
            kube = body["components"]["kubernetes"]
            self.assertEqual(kube["status"], "up", body)
            self.assertIn(path, kube["detail"])
            self.assertIn("https://127.0.0.1:6443", kube["detail"])
            self.assertNotIn("secret-token-value", json.dumps(body))
            self.assertEqual((status, body["status"]), (200, "ok"), body)

            # A kubeconfig that does not parse is reported, not half-used.
            with open(path, "w") as f:
                f.write("apiVersion: v1\nkind: Config\ncurrent-context: [nope\n")
            status, body = other.health()
            self.assertEqual(status, 503)
            self.assertIn(path, body["components"]["kubernetes"]["detail"])

    def test_version(self):
        status, body, headers = http_request(self.nornd.port, "GET", "/api/version")
        self.assertEqual(status, 200)
        self.assertEqual(body["name"], "norn")
        self.assertRegex(body["version"], r"^\d+\.\d+\.\d+$")
        headers = {k.lower(): v for k, v in headers.items()}
        self.assertTrue(headers["content-type"].startswith("application/json"))
        self.assertEqual(headers["cache-control"], "no-store")

    def test_unknown_path_is_json_404(self):
        for path in ("/nope", "/api/../etc/passwd", "/api/health/x", "/api/healthz", "/API/health"):
            status, body, _ = http_request(self.nornd.port, "GET", path)
            self.assertEqual(status, 404, path)
            self.assertEqual(body["code"], "not_found", path)
            self.assertIn("error", body)
        # A NUL byte or a broken escape is not a target at all.
        for path in ("/%00", "/api/version?x=1%", "/api/%zz"):
            status, body, _ = http_request(self.nornd.port, "GET", path)
            self.assertEqual(status, 400, path)
            self.assertEqual(body["code"], "bad_request", path)

    def test_wrong_method_is_405(self):
        for method in ("POST", "DELETE", "PUT", "PATCH"):
            status, body, _ = http_request(self.nornd.port, method, "/api/health", body=b"{}")
            self.assertEqual(status, 405, method)
            self.assertEqual(body["code"], "method_not_allowed")

    def test_malformed_request_lines(self):
        raw = raw_request(self.nornd.port, b"GET /api/health HTTP/9.9\r\n\r\n")
        self.assertEqual(status_of(raw), 505, raw[:200])
        for payload in (b"GARBAGE\r\n\r\n",
                        b"GET\r\n\r\n",
                        b"GET /api/health HTTP/1.1\r\nHost: x\r\nBroken header line\r\n\r\n",
                        b"\x00\x01\x02\x03\xff\xfe\r\n\r\n",
                        b"GET /api/health HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
                        b"POST /api/health HTTP/1.1\r\nContent-Length: abc\r\n\r\n"):
            raw = raw_request(self.nornd.port, payload)
            status = status_of(raw)
            # Either a 4xx answer or a closed connection; never a 2xx, never a hang.
            self.assertTrue(status is None or 400 <= status < 500, (payload, raw[:200]))

    def test_huge_header_is_431(self):
        payload = (b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 32768 + b"\r\n\r\n")
        raw = raw_request(self.nornd.port, payload)
        self.assertIn(status_of(raw), (431, None), raw[:200])
        self.assertNotEqual(status_of(raw), 200)

    def test_huge_body_is_413(self):
        payload = (b"POST /api/health HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Content-Length: 104857600\r\n\r\n{")
        raw = raw_request(self.nornd.port, payload)
        self.assertEqual(status_of(raw), 413, raw[:200])

    def test_many_connections_then_normal_service(self):
        socks = [socket.create_connection(("127.0.0.1", self.nornd.port)) for _ in range(200)]
        try:
            status, _ = self.nornd.health()
            self.assertIn(status, (200, 503))
        finally:
            for s in socks:
                s.close()

    def test_websocket_handshake_on_ws(self):
        key = base64.b64encode(os.urandom(16))
        payload = (b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
        with socket.create_connection(("127.0.0.1", self.nornd.port), timeout=5) as s:
            s.sendall(payload)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = s.recv(4096)
                self.assertTrue(chunk, "connection closed during handshake")
                head += chunk
            self.assertTrue(head.startswith(b"HTTP/1.1 101"), head)
            accept = base64.b64encode(hashlib.sha1(
                key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
            self.assertIn(b"Sec-WebSocket-Accept: " + accept, head.replace(b"accept", b"Accept"))

    def test_websocket_upgrade_elsewhere_refused(self):
        payload = (b"GET /api/health HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        raw = raw_request(self.nornd.port, payload)
        self.assertFalse(raw.startswith(b"HTTP/1.1 101"), raw[:200])


if __name__ == "__main__":
    main()
