"""Shared helpers for Norn's integration tests (stdlib only).

Tests run inside tools/norn-sandbox: a private journald, dbus-daemon,
systemd --user manager and PostgreSQL cluster. They drive the real nornd
binary from the build tree and talk to it as clients would.
"""
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import unittest

BUILD_DIR = os.environ.get("NORN_BUILD_DIR", "")
SOURCE_DIR = os.environ.get("NORN_SOURCE_DIR", os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))))
NORND = os.path.join(BUILD_DIR, "src", "nornd", "nornd")
NORNCTL = os.path.join(BUILD_DIR, "src", "nornctl", "nornctl")


def require_sandbox(testcase_cls=None):
    """Fail loudly (never skip) when not run inside tools/norn-sandbox."""
    missing = [v for v in ("NORN_SANDBOX", "DBUS_SESSION_BUS_ADDRESS", "NORN_DATABASE_URL",
                           "NORN_BUILD_DIR") if not os.environ.get(v)]
    if missing:
        sys.exit("integration tests must run inside tools/norn-sandbox via meson test; "
                 "missing: " + ", ".join(missing))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout=30.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except (OSError, http.client.HTTPException) as e:
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def http_request(port, method, path, body=None, headers=None, timeout=5.0):
    """Returns (status, parsed JSON or raw bytes, headers)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            parsed = data
        return resp.status, parsed, dict(resp.getheaders())
    finally:
        conn.close()


def raw_request(port, payload, timeout=5.0, read_limit=65536):
    """Send raw bytes, return what the server answered before closing (may be b'')."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass
        chunks = []
        try:
            while sum(map(len, chunks)) < read_limit:
                c = s.recv(65536)
                if not c:
                    break
                chunks.append(c)
                if b"\r\n\r\n" in b"".join(chunks):
                    head, _, rest = b"".join(chunks).partition(b"\r\n\r\n")
                    length = [l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
                    if length and len(rest) >= int(length[0].split(b":")[1]):
                        break
        except (ConnectionResetError, socket.timeout):
            pass
        return b"".join(chunks)


def status_of(raw):
    """HTTP status code of a raw response, or None when the server just closed."""
    if not raw.startswith(b"HTTP/1."):
        return None
    return int(raw.split(b" ", 2)[1])


class Nornd:
    """A nornd process started directly (not through systemd)."""

    def __init__(self, env=None, args=("--user",), port=None):
        self.port = port or free_port()
        self.env = dict(os.environ)
        self.env.update({"NORN_PORT": str(self.port), "NORN_BIND_ADDR": "127.0.0.1",
                         "NORN_LOG_LEVEL": "debug"})
        self.env.update(env or {})
        self.args = list(args)
        self.proc = None
        self.log_path = None

    def start(self, wait_http=True):
        import tempfile
        fd, self.log_path = tempfile.mkstemp(prefix="nornd-", suffix=".log")
        self.proc = subprocess.Popen([NORND] + self.args, env=self.env, stdout=fd, stderr=fd,
                                     stdin=subprocess.DEVNULL)
        os.close(fd)
        if wait_http:
            wait_until(lambda: self.alive() and self.health()[0] in (200, 503),
                       what="nornd to answer /api/health")
        return self

    def alive(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"nornd exited with {self.proc.returncode}; log:\n{self.log()}")
        return True

    def health(self):
        return http_request(self.port, "GET", "/api/health")[:2]

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self, sig=signal.SIGTERM, timeout=10):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"nornd did not exit within {timeout}s of signal {sig}")
        return self.proc.returncode

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        if self.log_path:
            os.unlink(self.log_path)


def run(cmd, check=True, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    p = subprocess.run(cmd, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd!r} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def main():
    require_sandbox()
    unittest.main(verbosity=2)
