#!/usr/bin/python3
"""The sandbox's parts are real: run INSIDE tools/norn-sandbox.

    tools/norn-sandbox /usr/bin/python3 tests/integration/test_sandbox.py

Checks the journal (structured fields written with the native protocol that
sd_journal_send uses, and with logger --journald, read back with a plain
journalctl), the systemd --user manager (transient scopes and services,
Type=notify, socket activation of units placed in $XDG_RUNTIME_DIR/systemd/user,
MemoryMax), the session bus (the manager is on it; any name can be owned) and
PostgreSQL (psql on NORN_DATABASE_URL; stop/start through NORN_TEST_PGCTL).
Outside the sandbox every test FAILS (never skips).

The kill -9 / no-strays checks run outside: test_sandbox_cleanup.py.
Stdlib only.
"""
import json
import os
import socket
import struct
import subprocess
import time
import unittest
import uuid

PSQL = "psql"
for _v in ("15", "16", "17"):
    if os.path.exists(f"/usr/lib/postgresql/{_v}/bin/psql"):
        PSQL = f"/usr/lib/postgresql/{_v}/bin/psql"
        break
PYTHON = "/usr/bin/python3"


def run(args, check=True, timeout=30, **kw):
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{args!r} exited {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}")
    return p


def wait_until(pred, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def uid():
    return uuid.uuid4().hex[:12]


def journal(*matches):
    p = run(["journalctl", "--no-pager", "-o", "json", *matches], check=False)
    out = []
    for line in p.stdout.splitlines():
        if line.strip():
            out.append(json.loads(line))
    return out


def field(entry, name):
    """A journal JSON field as str (journalctl prints non-printable values as byte arrays)."""
    v = entry.get(name)
    if isinstance(v, list):
        v = bytes(v).decode("utf-8", "replace")
    return v


def cgroup_lines(text):
    """/proc/PID/cgroup text -> {controllers: path}."""
    res = {}
    for line in text.splitlines():
        if line.count(":") >= 2:
            _, ctl, path = line.split(":", 2)
            res[ctl] = path
    return res


def tracking_paths(cg):
    """The paths systemd tracks units by: name=systemd (legacy/hybrid) and the
    cgroup2 one (0::, hybrid and unified)."""
    return {k: v for k, v in cg.items() if k in ("name=systemd", "")}


def user_unit_state(unit):
    p = run(["systemctl", "--user", "show", "-p", "ActiveState", "-p", "SubState", "-p", "Result",
             "-p", "MainPID", unit])
    return dict(line.split("=", 1) for line in p.stdout.splitlines() if "=" in line)


# --------------------------------------------------------------------------
# a minimal D-Bus client (stdlib): Hello, RequestName, GetNameOwner

class MiniBus:
    def __init__(self, address):
        path = None
        for part in address.split(";")[0].split(":", 1)[1].split(","):
            k, _, v = part.partition("=")
            if k == "path":
                path = v
        if not address.startswith("unix:") or not path:
            raise AssertionError(f"unsupported bus address {address!r}")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(path)
        self.sock.sendall(b"\0AUTH EXTERNAL " + str(os.getuid()).encode().hex().encode() + b"\r\n")
        line = self._readline()
        if not line.startswith(b"OK "):
            raise AssertionError(f"bus refused AUTH EXTERNAL: {line!r}")
        self.sock.sendall(b"BEGIN\r\n")
        self.serial = 0
        self.buf = b""
        self.unique_name = self.call("Hello")[0]

    def _readline(self):
        data = b""
        while not data.endswith(b"\r\n"):
            c = self.sock.recv(1)
            if not c:
                raise AssertionError("bus closed the connection")
            data += c
        return data

    @staticmethod
    def _pad(b, n):
        b += b"\0" * (-len(b) % n)

    def _string(self, b, s, sig=False):
        raw = s.encode()
        if sig:
            b += bytes([len(raw)]) + raw + b"\0"
        else:
            self._pad(b, 4)
            b += struct.pack("<I", len(raw)) + raw + b"\0"

    def call(self, member, signature="", args=(), dest="org.freedesktop.DBus",
             path="/org/freedesktop/DBus", iface="org.freedesktop.DBus"):
        body = bytearray()
        for t, a in zip(signature, args):
            if t == "s":
                self._string(body, a)
            elif t == "u":
                self._pad(body, 4)
                body += struct.pack("<I", a)
            else:
                raise ValueError(t)
        fields = bytearray()
        hdr = [(1, "o", path), (2, "s", iface), (3, "s", member), (6, "s", dest)]
        if signature:
            hdr.append((8, "g", signature))
        for code, t, v in hdr:
            self._pad(fields, 8)  # fields start at offset 16: 8-aligned
            fields += bytes([code])
            self._string(fields, t, sig=True)
            self._string(fields, v, sig=(t == "g"))
        self.serial += 1
        msg = bytearray(struct.pack("<cBBBII", b"l", 1, 0, 1, len(body), self.serial))
        msg += struct.pack("<I", len(fields)) + fields
        self._pad(msg, 8)
        self.sock.sendall(bytes(msg + body))
        while True:
            mtype, hfields, body = self._read_message()
            if hfields.get(5) != self.serial:
                continue  # signals (NameAcquired, ...)
            if mtype == 3:
                raise AssertionError(f"{member} failed: {hfields.get(4)}: {self._parse(hfields.get(8, ''), body)}")
            return self._parse(hfields.get(8, ""), body)

    def _recv_exact(self, n):
        while len(self.buf) < n:
            c = self.sock.recv(65536)
            if not c:
                raise AssertionError("bus closed the connection")
            self.buf += c
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def _read_message(self):
        fixed = self._recv_exact(16)
        if fixed[0:1] != b"l":
            raise AssertionError("big-endian message not supported")
        mtype = fixed[1]
        body_len, _serial, flen = struct.unpack("<III", fixed[4:16])
        rest = self._recv_exact(flen + (-(16 + flen) % 8))
        body = self._recv_exact(body_len)
        hf = {}
        data = fixed + rest
        off = 16
        end = 16 + flen
        while off < end:
            off += -off % 8
            code = data[off]
            slen = data[off + 1]
            sig = data[off + 2:off + 2 + slen].decode()
            off += 3 + slen
            if sig in ("s", "o"):
                off += -off % 4
                (n,) = struct.unpack("<I", data[off:off + 4])
                hf[code] = data[off + 4:off + 4 + n].decode()
                off += 5 + n
            elif sig == "g":
                n = data[off]
                hf[code] = data[off + 1:off + 1 + n].decode()
                off += 2 + n
            elif sig == "u":
                off += -off % 4
                (hf[code],) = struct.unpack("<I", data[off:off + 4])
                off += 4
            else:
                raise AssertionError(f"unexpected header field type {sig}")
        return mtype, hf, body

    @staticmethod
    def _parse(sig, body):
        out, off = [], 0
        for t in sig:
            if t in ("s", "o"):
                off += -off % 4
                (n,) = struct.unpack("<I", body[off:off + 4])
                out.append(body[off + 4:off + 4 + n].decode())
                off += 5 + n
            elif t in ("u", "b"):
                off += -off % 4
                (v,) = struct.unpack("<I", body[off:off + 4])
                out.append(v)
                off += 4
            else:
                break
        return out

    def close(self):
        self.sock.close()


# --------------------------------------------------------------------------

class SandboxTest(unittest.TestCase):
    def setUp(self):
        if os.environ.get("NORN_SANDBOX") != "1":
            self.fail("not inside the sandbox: run as "
                      "tools/norn-sandbox /usr/bin/python3 tests/integration/test_sandbox.py")


class EnvironmentTest(SandboxTest):
    def test_exported_variables(self):
        for v in ("NORN_SANDBOX_DIR", "XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS",
                  "NORN_DATABASE_URL", "NORN_TEST_DATABASE_URL", "NORN_TEST_PGCTL",
                  "PGHOST", "PGUSER", "PGPORT", "TMPDIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME",
                  "XDG_DATA_HOME", "XDG_STATE_HOME"):
            self.assertTrue(os.environ.get(v), f"{v} is not set")
        self.assertTrue(os.path.isdir(os.environ["NORN_SANDBOX_DIR"]))
        rt = os.environ["XDG_RUNTIME_DIR"]
        self.assertEqual(rt, "/run/user/0")
        self.assertEqual(os.stat(rt).st_mode & 0o777, 0o700)
        self.assertEqual(os.environ["DBUS_SESSION_BUS_ADDRESS"], f"unix:path={rt}/bus")
        for v in ("TMPDIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME"):
            self.assertTrue(os.environ[v].startswith(os.environ["NORN_SANDBOX_DIR"] + "/"), v)
        # not under /tmp: PrivateTmp=yes units must see it
        self.assertFalse(os.environ["NORN_SANDBOX_DIR"].startswith(("/tmp/", "/var/tmp/")))

    def test_private_namespaces_and_mounts(self):
        with open("/proc/1/cmdline", "rb") as f:
            self.assertIn(b"norn-sandbox", f.read(), "PID 1 is not the sandbox's")
        mounts = {}
        with open("/proc/self/mountinfo") as f:
            for line in f:
                parts = line.split()
                fs = parts[parts.index("-") + 1]
                mounts[parts[4]] = fs
        for path in ("/run", "/dev/shm", "/var/lib/containers", "/var/cache/containers"):
            self.assertEqual(mounts.get(path), "tmpfs", f"{path} is not a private tmpfs")
        self.assertEqual(mounts.get("/usr"), "overlay", "/usr is not copy-on-write")
        if os.path.isdir("/var/log/journal"):
            self.assertEqual(mounts.get("/var/log/journal"), "tmpfs")
        self.assertTrue(os.path.isdir("/run/systemd/system"))

    def test_cgroup_namespace(self):
        """COMMAND runs in a scope of its own, apart from PID 1 and the
        services (whatever the names: they are the sandbox's to choose)."""
        with open("/proc/self/cgroup") as f:
            paths = tracking_paths(cgroup_lines(f.read()))
        self.assertTrue(paths)
        self.assertEqual(len(set(paths.values())), 1, paths)
        path = set(paths.values()).pop()
        self.assertTrue(path.endswith(".scope"), path)
        with open("/proc/1/cgroup") as f:
            init_paths = tracking_paths(cgroup_lines(f.read()))
        self.assertNotIn(path, init_paths.values())
        manager = run(["systemctl", "--user", "show", "-p", "ControlGroup", "--value"]).stdout.strip()
        self.assertTrue(manager)
        self.assertFalse(path == manager or path.startswith(manager + "/"), (path, manager))
        # the cgroup namespace hides the host's tree: the sandbox's root is "/"
        self.assertNotIn(os.path.basename(os.environ["NORN_SANDBOX_DIR"]), path)

    def test_usr_is_copy_on_write(self):
        mark = f"/usr/local/share/norn-sandbox-test-{uid()}"
        with open(mark, "w") as f:
            f.write("x")
        try:
            # the host does not see it: only the sandbox's upper layer holds it
            self.assertTrue(os.path.exists(os.path.join(os.environ["NORN_SANDBOX_DIR"], "usr", "upper",
                                                        os.path.relpath(mark, "/usr"))))
        finally:
            os.unlink(mark)


class JournalTest(SandboxTest):
    def test_native_protocol_round_trip(self):
        """What sd_journal_send() does: a datagram to /run/systemd/journal/socket,
        FIELD=value lines, binary-safe FIELD\\n<le64 size><data>\\n for values with
        newlines."""
        deploy = uid()
        multi = "line one\nline two"
        msg = (b"MESSAGE=deploy step started\n"
               b"PRIORITY=6\n"
               b"MESSAGE_ID=5b0a3a2f8c9d4e6fa1b2c3d4e5f60718\n"
               b"NORN_APP=sandbox-app\n"
               b"NORN_STEP=build\n" +
               f"NORN_DEPLOY_ID={deploy}\n".encode() +
               b"NORN_OUTPUT\n" + struct.pack("<Q", len(multi.encode())) + multi.encode() + b"\n")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(msg, "/run/systemd/journal/socket")
        entries = wait_until(lambda: journal(f"NORN_DEPLOY_ID={deploy}"), what="the journal entry")
        self.assertEqual(len(entries), 1, entries)
        e = entries[0]
        self.assertEqual(field(e, "MESSAGE"), "deploy step started")
        self.assertEqual(field(e, "NORN_APP"), "sandbox-app")
        self.assertEqual(field(e, "NORN_STEP"), "build")
        self.assertEqual(field(e, "MESSAGE_ID"), "5b0a3a2f8c9d4e6fa1b2c3d4e5f60718")
        self.assertEqual(field(e, "NORN_OUTPUT"), multi)
        self.assertEqual(field(e, "_TRANSPORT"), "journal")
        self.assertEqual(int(field(e, "_PID")), os.getpid())
        # journald attributes us to our cgroup, as on a real host
        with open("/proc/self/cgroup") as f:
            own = set(tracking_paths(cgroup_lines(f.read())).values()).pop()
        self.assertEqual(field(e, "_SYSTEMD_UNIT"), os.path.basename(own))
        # and matches combine
        self.assertEqual(len(journal(f"NORN_DEPLOY_ID={deploy}", "NORN_STEP=build")), 1)
        self.assertEqual(journal(f"NORN_DEPLOY_ID={deploy}", "NORN_STEP=test"), [])

    def test_logger_journald(self):
        app = "x-" + uid()
        run(["logger", "--journald"], input=f"MESSAGE=hi\nNORN_APP={app}\n")
        run(["journalctl", "--sync"])
        entries = wait_until(lambda: journal(f"NORN_APP={app}"), what="the logger entry")
        self.assertEqual(field(entries[0], "MESSAGE"), "hi")
        # plain journalctl (no -D/--directory) reads it, in short output too
        out = run(["journalctl", "--no-pager", f"NORN_APP={app}"]).stdout
        self.assertIn("hi", out)

    def test_journal_files_are_private(self):
        with open("/etc/machine-id") as f:
            mid = f.read().strip()
        path = f"/run/log/journal/{mid}/system.journal"
        self.assertTrue(os.path.exists(path), f"no {path}")
        self.assertEqual(run(["journalctl", "--no-pager", "-q", "--header"]).returncode, 0)


class UserManagerTest(SandboxTest):
    def test_system_running(self):
        state = run(["systemctl", "--user", "is-system-running"], check=False).stdout.strip()
        self.assertIn(state, ("running", "degraded"))
        self.assertTrue(os.path.exists(os.path.join(os.environ["XDG_RUNTIME_DIR"], "systemd", "private")))

    def test_scope_cgroup(self):
        name = f"norn-probe-{uid()}.scope"
        p = run(["systemd-run", "--user", "--scope", "--quiet", "-u", name, "cat", "/proc/self/cgroup"])
        cg = cgroup_lines(p.stdout)
        paths = tracking_paths(cg)
        self.assertTrue(paths, p.stdout)
        for ctl, path in paths.items():
            self.assertTrue(path.endswith(f"/user@0.service/app.slice/{name}"), f"{ctl}: {path}")
        if "memory" in cg:  # v1 memory controller (hybrid): realized for the scope
            self.assertTrue(cg["memory"].endswith("/" + name), cg["memory"])
        if "pids" in cg:
            self.assertTrue(cg["pids"].endswith("/" + name), cg["pids"])

    def test_scope_for_running_process(self):
        """What nornd does: StartTransientUnit(name.scope, PIDs=[pid]) over the
        session bus, for a process that already runs."""
        name = f"norn-adopt-{uid()}.scope"
        child = subprocess.Popen(["sleep", "60"])
        try:
            run(["busctl", "--user", "call", "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                 "org.freedesktop.systemd1.Manager", "StartTransientUnit", "ssa(sv)a(sa(sv))",
                 name, "fail", "3", "PIDs", "au", "1", str(child.pid),
                 "Description", "s", "sandbox test", "CollectMode", "s", "inactive-or-failed", "0"])

            def in_scope():
                with open(f"/proc/{child.pid}/cgroup") as f:
                    paths = tracking_paths(cgroup_lines(f.read()))
                return all(p.endswith("/" + name) for p in paths.values()) and paths
            wait_until(in_scope, what=f"pid {child.pid} in {name}")
            self.assertEqual(user_unit_state(name)["ActiveState"], "active")
            run(["systemctl", "--user", "stop", name])
            child.wait(timeout=10)  # stopping the scope killed it
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()

    def test_transient_service_logs_to_journal(self):
        name = f"norn-svc-{uid()}"
        marker = "marker-" + uid()
        # Lives a moment: journald reads the unit from the sender's /proc/PID/cgroup,
        # and for a process that is already gone (under load) the entry has no
        # _SYSTEMD_* fields at all -- journald 252 behaves so on any host.
        run(["systemd-run", "--user", "--quiet", "--wait", "-u", name, "-p", "Type=oneshot",
             "sh", "-c", f"echo {marker}; echo to-stderr >&2; sleep 1"])
        entries = wait_until(lambda: journal(f"MESSAGE={marker}"), what="the service's stdout in the journal")
        e = entries[0]
        self.assertEqual(field(e, "_SYSTEMD_USER_UNIT"), name + ".service", e)
        self.assertEqual(field(e, "_TRANSPORT"), "stdout")
        self.assertEqual(field(e, "_SYSTEMD_UNIT"), "user@0.service")
        self.assertEqual(field(e, "_SYSTEMD_USER_SLICE"), "app.slice")
        out = run(["journalctl", "--no-pager", "--user-unit", name]).stdout
        self.assertIn(marker, out)
        self.assertIn("to-stderr", out)

    def test_notify_service(self):
        name = f"norn-notify-{uid()}"
        code = ("import os, socket, time\n"
                "a = os.environ['NOTIFY_SOCKET']\n"
                "a = '\\0' + a[1:] if a.startswith('@') else a\n"
                "time.sleep(0.3)\n"
                "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
                "s.sendto(b'READY=1\\nSTATUS=serving', a)\n"
                "print('notified', flush=True)\n"
                "time.sleep(60)\n")
        t0 = time.monotonic()
        run(["systemd-run", "--user", "--quiet", "-u", name, "-p", "Type=notify", PYTHON, "-c", code])
        # systemd-run returned when the start job finished, i.e. after READY=1
        self.assertGreaterEqual(time.monotonic() - t0, 0.25)
        try:
            st = user_unit_state(name + ".service")
            self.assertEqual((st["ActiveState"], st["SubState"]), ("active", "running"), st)
            status = run(["systemctl", "--user", "show", "-p", "StatusText", "--value", name]).stdout.strip()
            self.assertEqual(status, "serving")
        finally:
            run(["systemctl", "--user", "stop", name], check=False)

    def test_socket_activated_units_from_runtime_dir(self):
        """Units placed in $XDG_RUNTIME_DIR/systemd/user load after daemon-reload
        (the integration tests install nornd.socket/nornd.service there)."""
        u = "norn-sbtest-" + uid()
        unit_dir = os.path.join(os.environ["XDG_RUNTIME_DIR"], "systemd", "user")
        sock_path = os.path.join(os.environ["NORN_SANDBOX_DIR"], u + ".sock")
        server = ("import socket, os\n"
                  "assert os.environ['LISTEN_FDS'] == '1', os.environ\n"
                  "ls = socket.socket(fileno=3)\n"
                  "c, _ = ls.accept()\n"
                  "c.sendall(b'hello from ' + os.environ['LISTEN_FDNAMES'].encode())\n"
                  "c.close()\n")
        script = os.path.join(os.environ["NORN_SANDBOX_DIR"], u + ".py")
        with open(script, "w") as f:
            f.write(server)
        files = {
            u + ".socket": f"[Socket]\nListenStream={sock_path}\nFileDescriptorName=api\n",
            u + ".service": f"[Service]\nExecStart={PYTHON} {script}\n",
        }
        for fname, text in files.items():
            with open(os.path.join(unit_dir, fname), "w") as f:
                f.write(text)
        try:
            run(["systemctl", "--user", "daemon-reload"])
            run(["systemctl", "--user", "start", u + ".socket"])
            self.assertEqual(user_unit_state(u + ".socket")["ActiveState"], "active")
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
                c.settimeout(10)
                c.connect(sock_path)
                data = b""
                while True:
                    chunk = c.recv(100)
                    if not chunk:
                        break
                    data += chunk
            self.assertEqual(data, b"hello from api")
        finally:
            run(["systemctl", "--user", "stop", u + ".socket", u + ".service"], check=False)
            for fname in files:
                os.unlink(os.path.join(unit_dir, fname))
            run(["systemctl", "--user", "daemon-reload"], check=False)

    def test_hardened_service(self):
        """The sandboxing directives of units/nornd.service work in this manager
        (several need /run/systemd/inaccessible, which the sandbox makes as PID 1
        would), and such a service still reaches the sandbox's PostgreSQL and
        files: the sandbox dir is not under /tmp, which PrivateTmp= hides."""
        name = f"norn-hard-{uid()}"
        rw = os.path.join(os.environ["NORN_SANDBOX_DIR"], name)
        os.mkdir(rw)
        props = ["ProtectSystem=strict", "ProtectHome=read-only", "PrivateTmp=yes", "PrivateDevices=yes",
                 "NoNewPrivileges=yes", "ProtectKernelTunables=yes", "ProtectKernelModules=yes",
                 "ProtectKernelLogs=yes", "ProtectControlGroups=yes", "ProtectClock=yes",
                 "ProtectHostname=yes", "ProtectProc=invisible", "RestrictNamespaces=yes",
                 "RestrictRealtime=yes", "RestrictSUIDSGID=yes", "LockPersonality=yes",
                 "MemoryDenyWriteExecute=yes", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
                 "SystemCallArchitectures=native", "SystemCallFilter=@system-service",
                 "SystemCallErrorNumber=EPERM", "UMask=0027", f"ReadWritePaths={rw}"]
        script = ("touch /usr/norn-must-fail 2>/dev/null && echo usr-writable; "
                  "touch /root/norn-must-fail 2>/dev/null && echo home-writable; "
                  "touch /tmp/private && echo tmp-ok; "
                  "grep -q 'NoNewPrivs:.*1' /proc/self/status && echo nnp-ok; "
                  # through sh: lines of short-lived writers (psql) may lose their unit
                  f"v=$({PSQL} -X -At -c 'SELECT 40 + 2' \"$NORN_DATABASE_URL\" 2>&1); echo pg=$v; "
                  f"echo done > {rw}/out; sleep 1")  # alive while journald attributes it
        args = ["systemd-run", "--user", "--quiet", "--wait", "-u", name,
                "-E", "NORN_DATABASE_URL=" + os.environ["NORN_DATABASE_URL"]]
        for prop in props:
            args += ["-p", prop]
        p = run(args + ["sh", "-c", script], check=False)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        with open(os.path.join(rw, "out")) as f:
            self.assertEqual(f.read(), "done\n")

        seen = [""]

        def output():
            seen[0] = run(["journalctl", "--no-pager", "-o", "cat", "--user-unit", name]).stdout
            return "nnp-ok" in seen[0] and "pg=" in seen[0] and seen[0]
        try:
            out = wait_until(output, what="the service's output")
        except AssertionError as e:
            raise AssertionError(f"{e}\njournal of {name}:\n{seen[0]}") from None
        self.assertIn("tmp-ok", out)
        self.assertIn("pg=42", out)
        self.assertNotIn("usr-writable", out)
        self.assertNotIn("home-writable", out)
        self.assertFalse(os.path.exists("/tmp/private"), "PrivateTmp= did not apply")

    def test_unit_directories_are_in_the_sandbox(self):
        """StateDirectory=/CacheDirectory=/LogsDirectory= of user units (252: in
        $XDG_CONFIG_HOME, $XDG_CACHE_HOME, $XDG_CONFIG_HOME/log) land in the
        sandbox dir, not in the host's /root."""
        name = f"norn-dirs-{uid()}"
        out = os.path.join(os.environ["NORN_SANDBOX_DIR"], name + ".out")
        run(["systemd-run", "--user", "--quiet", "--wait", "-u", name, "-p", "StateDirectory=" + name,
             "-p", "CacheDirectory=" + name, "-p", "LogsDirectory=" + name, "-p", "RuntimeDirectory=" + name,
             "sh", "-c", f'printf "%s\\n" "$STATE_DIRECTORY" "$CACHE_DIRECTORY" "$LOGS_DIRECTORY" > {out}'])
        with open(out) as f:
            dirs = f.read().split()
        self.assertEqual(len(dirs), 3, dirs)
        for d in dirs:
            self.assertTrue(d.startswith(os.environ["NORN_SANDBOX_DIR"] + "/"), dirs)
            self.assertTrue(os.path.isdir(d), d)

    def test_memory_max_is_enforced(self):
        have_memory = os.path.isdir("/sys/fs/cgroup/memory")  # v1 controller (hybrid)
        if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):  # unified
            with open("/sys/fs/cgroup/cgroup.controllers") as f:
                have_memory = "memory" in f.read().split()
        if not have_memory:
            self.skipTest("no memory controller on this host")
        name = f"norn-mem-{uid()}"
        p = run(["systemd-run", "--user", "--quiet", "--wait", "-u", name, "-p", "MemoryMax=32M",
                 PYTHON, "-c", "x = bytearray(256 << 20); x[::4096] = b'x' * len(x[::4096]); print('survived')"],
                check=False, timeout=60)
        self.assertNotEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertNotIn("survived", run(["journalctl", "--no-pager", "--user-unit", name]).stdout)


class BusTest(SandboxTest):
    def test_manager_is_on_the_session_bus(self):
        out = run(["busctl", "--user", "list", "--no-pager", "--no-legend"]).stdout
        owners = {line.split()[0]: line.split()[1] for line in out.splitlines() if line.split()}
        self.assertIn("org.freedesktop.systemd1", owners)
        self.assertNotEqual(owners["org.freedesktop.systemd1"], "-", out)
        p = run(["busctl", "--user", "get-property", "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                 "org.freedesktop.systemd1.Manager", "SystemState"])
        self.assertRegex(p.stdout.strip(), r'^s "(running|degraded)"$')

    def test_any_name_can_be_owned(self):
        bus = MiniBus(os.environ["DBUS_SESSION_BUS_ADDRESS"])
        try:
            self.assertTrue(bus.unique_name.startswith(":"))
            (reply,) = bus.call("RequestName", "su", ("org.norn.SandboxTest", 4))
            self.assertEqual(reply, 1, "not the primary owner")
            (owner,) = bus.call("GetNameOwner", "s", ("org.norn.SandboxTest",))
            self.assertEqual(owner, bus.unique_name)
            out = run(["busctl", "--user", "list", "--no-pager", "--no-legend"]).stdout
            self.assertIn("org.norn.SandboxTest", out)
        finally:
            bus.close()


class PostgresTest(SandboxTest):
    def psql(self, sql, check=True):
        return run([PSQL, "-X", "-At", "-v", "ON_ERROR_STOP=1", os.environ["NORN_DATABASE_URL"], "-c", sql],
                   check=check)

    def pgctl(self, action):
        return run(["sh", "-c", os.environ["NORN_TEST_PGCTL"] + " " + action], check=False, timeout=60)

    def test_connect(self):
        out = self.psql("SELECT current_database(), current_user, "
                        "current_setting('server_version_num')::int / 10000").stdout.strip()
        db, user, major = out.split("|")
        self.assertEqual((db, user), ("norn", "postgres"))
        self.assertGreaterEqual(int(major), 15)
        # PGHOST/PGUSER alone reach the same server
        env = {k: v for k, v in os.environ.items()}
        out = run([PSQL, "-X", "-At", "-d", "norn", "-c", "SELECT 1"], env=env).stdout.strip()
        self.assertEqual(out, "1")
        # only a unix socket
        self.assertEqual(self.psql("SHOW listen_addresses").stdout.strip(), "")

    def test_pgctl_stop_start(self):
        self.psql("CREATE TABLE IF NOT EXISTS sandbox_probe (v int); INSERT INTO sandbox_probe VALUES (42)")
        p = self.pgctl("stop -m fast")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual((p.stdout, p.stderr), ("", ""), "pg_ctl output must not reach the caller")
        self.assertNotEqual(self.psql("SELECT 1", check=False).returncode, 0, "server still up after stop")
        p = self.pgctl("start -w")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual((p.stdout, p.stderr), ("", ""))
        self.assertEqual(self.psql("SELECT sum(v) FROM sandbox_probe").stdout.strip(), "42")
        self.psql("DROP TABLE sandbox_probe")
        # the restarted server is the sandbox's service, not a child of this test's cgroup
        with open(os.path.join(os.environ["NORN_SANDBOX_PGDATA"], "postmaster.pid")) as f:
            pid = f.readline().strip()
        with open(f"/proc/{pid}/cgroup") as f:
            for path in tracking_paths(cgroup_lines(f.read())).values():
                self.assertEqual(path, "/system.slice/postgresql.service")


if __name__ == "__main__":
    unittest.main(verbosity=2)
