#!/usr/bin/python3
"""tools/norn-sandbox leaves nothing behind: run OUTSIDE the sandbox, as root.

    /usr/bin/python3 tests/integration/test_sandbox_cleanup.py

- kill -9 of the outer process: within seconds no process of that sandbox is
  left (found by its PID namespace, its temp dir in cmdline/environ, and its
  cgroup), and the next run works and sweeps the dead run's dir and cgroups;
- SIGTERM: an orderly stop (COMMAND gets SIGTERM, then the services stop);
  at any moment of start-up it is never lost: the run ends promptly (143 before
  COMMAND runs) and leaves nothing;
- two sandboxes at once do not collide;
- exit status is COMMAND's, nothing is printed on success, a service that
  fails to start gives exit 125 and a one-line message with its log.
Stdlib only.
"""
import os
import signal
import subprocess
import tempfile
import time
import unittest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(REPO, "tools", "norn-sandbox")
STARTUP_TIMEOUT = 60


def read(path, binary=False):
    try:
        with open(path, "rb" if binary else "r") as f:
            return f.read()
    except OSError:
        return b"" if binary else ""


def readline_unbuffered(f):
    line = b""
    while not line.endswith(b"\n"):
        c = os.read(f.fileno(), 1)
        if not c:
            break
        line += c
    return line.decode(errors="replace")


def proc_state(pid):
    stat = read(f"/proc/{pid}/stat")
    if not stat:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def sandbox_processes(info):
    """Live (non-zombie) processes belonging to the sandbox described by info."""
    pidns = info.get("NORN_SANDBOX_PIDNS", "\0")
    sdir = info.get("NORN_SANDBOX_DIR", "\0")
    name = os.path.basename(sdir).encode()
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        pid = int(entry)
        state = proc_state(pid)
        if state is None or state in ("Z", "X"):
            continue
        why = []
        try:
            if os.readlink(f"/proc/{pid}/ns/pid") == pidns:
                why.append("pidns")
        except OSError:
            pass
        if sdir.encode() in read(f"/proc/{pid}/cmdline", True):
            why.append("cmdline")
        if sdir.encode() in read(f"/proc/{pid}/environ", True):
            why.append("environ")
        if b"/" + name in read(f"/proc/{pid}/cgroup", True):  # host view: full paths
            why.append("cgroup")
        if why:
            cmd = read(f"/proc/{pid}/cmdline", True).replace(b"\0", b" ").decode(errors="replace")
            found[pid] = (cmd.strip() or "[%s]" % read(f"/proc/{pid}/comm").strip(), why)
    return found


def sandbox_cgroups(sdir):
    name = os.path.basename(sdir)
    out = []
    for root, dirs, _ in os.walk("/sys/fs/cgroup"):
        if name in dirs:
            out.append(os.path.join(root, name))
        # the sandbox cgroups are made next to the caller's own: shallow
        if root.count("/") > 7:
            dirs[:] = []
    return out


def start(args, env=None, **kw):
    return subprocess.Popen([TOOL, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, **kw)


def wait_ready(proc, ready_file):
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if os.path.exists(ready_file):
            info = {}
            for line in read(ready_file).splitlines():
                k, _, v = line.partition("=")
                info[k] = v
            return info
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"sandbox exited {proc.returncode} before ready:\n{out}\n{err}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("sandbox not ready after %ss" % STARTUP_TIMEOUT)


def wait_gone(info, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        left = sandbox_processes(info)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


class CleanupTest(unittest.TestCase):
    def setUp(self):
        if os.environ.get("NORN_SANDBOX"):
            self.fail("run test_sandbox_cleanup.py OUTSIDE the sandbox")
        if os.geteuid() != 0:
            self.fail("tools/norn-sandbox needs root")
        self.tmp = tempfile.mkdtemp(prefix="norn-sandbox-cleanup-test-")

    def tearDown(self):
        subprocess.run(["rm", "-rf", "--", self.tmp])

    def env(self, **extra):
        env = {k: v for k, v in os.environ.items() if not k.startswith("NORN_SANDBOX")}
        env.update(extra)
        return env

    def started(self, args, tag="a"):
        ready = os.path.join(self.tmp, f"ready-{tag}")
        proc = start(args, env=self.env(NORN_SANDBOX_READY_FILE=ready))
        self.addCleanup(lambda: proc.poll() is None and (proc.kill(), proc.wait()))
        info = wait_ready(proc, ready)
        return proc, info

    def assert_all_parts_found(self, info):
        procs = sandbox_processes(info)
        cmds = " | ".join(c for c, _ in procs.values())
        for part in ("systemd-journald", "systemd --user", "dbus-daemon", "postgres", "sleep 600"):
            self.assertIn(part, cmds, f"the marker does not find {part}: the check would prove nothing")
        return procs

    def test_kill9_leaves_nothing_and_next_run_works(self):
        proc, info = self.started(["sleep", "600"])
        before = self.assert_all_parts_found(info)
        sdir = info["NORN_SANDBOX_DIR"]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
        left = wait_gone(info, timeout=5.0)
        self.assertEqual(left, {}, f"processes survived kill -9 (had {len(before)}): {left}")
        # the next run works, and sweeps what the killed one left (dir, cgroups)
        p = subprocess.run([TOOL, "sh", "-c",
                            'psql -X -At -c "SELECT 1" "$NORN_DATABASE_URL" && '
                            'systemctl --user is-system-running && '
                            'busctl --user status org.freedesktop.systemd1 >/dev/null && echo bus-ok'],
                           env=self.env(), capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(p.stdout.split(), ["1", "running", "bus-ok"], p.stdout + p.stderr)
        self.assertFalse(os.path.exists(sdir), f"{sdir} of the killed run was not swept")
        self.assertEqual(sandbox_cgroups(sdir), [], "cgroups of the killed run were not swept")

    def test_sigterm_is_an_orderly_stop(self):
        # COMMAND says when its handler is in place: a SIGTERM before that kills
        # it (143, rightly), which is not what this test is about
        armed = os.path.join(self.tmp, "armed")
        proc, info = self.started(["sh", "-c", "trap 'echo got TERM; exit 3' TERM; : >\"$0\"; "
                                   "sleep 600 & wait", armed])
        sdir = info["NORN_SANDBOX_DIR"]
        deadline = time.monotonic() + 10
        while not os.path.exists(armed):
            self.assertIsNone(proc.poll(), "COMMAND ended before it was armed")
            self.assertLess(time.monotonic(), deadline, "COMMAND did not start")
            time.sleep(0.01)
        t0 = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        self.assertEqual(proc.returncode, 3, out + err)
        self.assertEqual(out.strip(), "got TERM")
        self.assertEqual(err, "")
        self.assertLess(time.monotonic() - t0, 20)
        self.assertEqual(wait_gone(info, timeout=2.0), {})
        self.assertFalse(os.path.exists(sdir))
        self.assertEqual(sandbox_cgroups(sdir), [])

    # stderr lines (NORN_SANDBOX_VERBOSE=1) at which a SIGTERM is sent; None: at once
    START_UP_MOMENTS = (None, "sandbox dir", "namespaces and mounts ready", "journald up",
                        "initdb done", "postgres up", "systemd --user up", "ready, running")

    def test_sigterm_at_every_moment_of_start_up(self):
        """A SIGTERM is never lost: not before the traps are set, not while PID 1
        of the namespace has no handler yet (the kernel drops it then), not while
        COMMAND is on its way into its scope. The run ends promptly with 143 and
        stops everything; from the ready file on, the status is COMMAND's."""
        base = tempfile.mkdtemp(prefix="nsb-", dir="/tmp")  # short: socket paths
        self.addCleanup(subprocess.run, ["rm", "-rf", "--", base])
        os.chmod(base, 0o755)  # postgres walks into it
        for moment in self.START_UP_MOMENTS:
            with self.subTest(moment=moment):
                self.sigterm_at(moment, base)

    def sigterm_at(self, moment, base):
        ready = os.path.join(self.tmp, "ready-moment")
        if os.path.exists(ready):
            os.unlink(ready)
        proc = start(["sh", "-c", "trap 'echo got TERM; exit 3' TERM; sleep 600 & wait"],
                     env=self.env(NORN_SANDBOX_VERBOSE="1", NORN_SANDBOX_BASE=base,
                                  NORN_SANDBOX_READY_FILE=ready))
        self.addCleanup(lambda: proc.poll() is None and (proc.kill(), proc.wait()))
        seen, sdir = [], ""
        if moment is not None:
            # byte by byte: a buffered read-ahead would hide lines from communicate()
            for line in iter(lambda: readline_unbuffered(proc.stderr), ""):
                seen.append(line)
                if "sandbox dir " in line:
                    sdir = line.split("sandbox dir ", 1)[1].strip()
                if moment in line:
                    break
            else:
                self.fail(f"no '{moment}' line:\n{''.join(seen)}")
        t0 = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            self.fail(f"SIGTERM at '{moment}' was lost: still running after 30 s\n{''.join(seen)}{err}")
        err = "".join(seen) + err
        self.assertLess(time.monotonic() - t0, 20, err)
        if moment is None:
            # may come before the shell has read its trap: killed, nothing made yet
            self.assertIn(proc.returncode, (143, -signal.SIGTERM), err)
            self.assertEqual(out, "")
        elif "ready, running" in err:
            # it came once COMMAND was started: COMMAND's to handle (143 when it
            # had no handler in place yet)
            self.assertIn((proc.returncode, out), ((143, ""), (3, "got TERM\n")), err)
            self.assertNotIn("terminated during start-up", err)
        else:
            self.assertEqual((proc.returncode, out), (143, ""), err)
            self.assertIn("terminated during start-up", err)
            self.assertFalse(os.path.exists(ready), "a stopped start-up wrote the ready file")
        if moment in self.START_UP_MOMENTS[1:5]:
            # hundreds of ms of start-up follow these: the stop must be the start-up's
            self.assertNotIn("ready, running", err)
        info = {"NORN_SANDBOX_DIR": sdir or base}
        if os.path.exists(ready):
            info = dict(line.partition("=")[::2] for line in read(ready).splitlines())
        self.assertEqual(wait_gone(info, timeout=2.0), {}, err)
        self.assertEqual(os.listdir(base), [], "the stopped run left its dir")
        if sdir:
            self.assertEqual(sandbox_cgroups(sdir), [], err)

    def test_two_at_once(self):
        script = ('set -e; psql -X -q -c "CREATE TABLE t (v text)" "$NORN_DATABASE_URL"; '
                  'systemd-run --user --scope --quiet -u same-name.scope true; '
                  'printf "MESSAGE=x\\nNORN_APP=same\\n" | logger --journald; journalctl --sync; '
                  'sleep 2; echo "$NORN_SANDBOX_DIR $(journalctl NORN_APP=same -o cat | wc -l)"')
        p1 = start(["sh", "-c", script], env=self.env())
        p2 = start(["sh", "-c", script], env=self.env())
        out1, err1 = p1.communicate(timeout=120)
        out2, err2 = p2.communicate(timeout=120)
        self.assertEqual((p1.returncode, p2.returncode), (0, 0), err1 + err2)
        d1, n1 = out1.split()
        d2, n2 = out2.split()
        self.assertNotEqual(d1, d2)
        self.assertEqual((n1, n2), ("1", "1"), "the journals are not separate")
        self.assertEqual((err1, err2), ("", ""))
        for d in (d1, d2):
            self.assertFalse(os.path.exists(d))

    def test_two_at_once_both_pass_test_sandbox(self):
        """Two sandboxes running test_sandbox.py at the same time, the second
        started from a cgroup of its own (as another session's caller would
        be): each gets what it promises, independent of the other and of the
        caller's cgroup."""
        caller_cgs = []
        for mp in ("/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
            if os.path.exists(os.path.join(mp, "cgroup.procs")):
                d = os.path.join(mp, f"norn-sandbox-caller-{os.getpid()}")
                os.mkdir(d)
                caller_cgs.append(d)
        self.addCleanup(lambda: [os.rmdir(d) for d in caller_cgs if os.path.isdir(d)])
        self.assertTrue(caller_cgs, "no cgroup hierarchy to start the caller in")
        move = "".join(f'echo $$ >"{d}/cgroup.procs" && ' for d in caller_cgs)
        test = os.path.join(REPO, "tests", "integration", "test_sandbox.py")
        p1 = start(["/usr/bin/python3", test], env=self.env())
        p2 = subprocess.Popen(["sh", "-c", move + 'exec "$0" "$@"', TOOL, "/usr/bin/python3", test],
                              env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
        out1, err1 = p1.communicate(timeout=240)
        out2, err2 = p2.communicate(timeout=240)
        self.assertEqual(p1.returncode, 0, err1[-3000:])
        self.assertEqual(p2.returncode, 0, err2[-3000:])
        for err in (err1, err2):
            self.assertRegex(err, r"Ran \d+ tests")

    def test_exit_status_and_quiet(self):
        p = subprocess.run([TOOL, "sh", "-c", "echo out; exit 7"], env=self.env(), capture_output=True,
                           text=True, timeout=120)
        self.assertEqual(p.returncode, 7)
        self.assertEqual((p.stdout, p.stderr), ("out\n", ""))
        p = subprocess.run([TOOL, "sh", "-c", "kill -KILL $$"], env=self.env(), capture_output=True,
                           text=True, timeout=120)
        self.assertEqual(p.returncode, 128 + 9)

    def test_usr_mirrors_the_host_whatever_the_umask(self):
        # The overlay's root is its upper dir, made by the sandbox: not 0777 under umask 0.
        p = subprocess.run(["sh", "-c", 'umask 0 && exec "$0" stat -c "%a %u %g" /usr /usr/local', TOOL],
                           env=self.env(), capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        want = ["%o %d %d" % (st.st_mode & 0o7777, st.st_uid, st.st_gid)
                for st in (os.stat("/usr"), os.stat("/usr/local"))]
        self.assertEqual(p.stdout.split("\n")[:2], want)

    def test_keep(self):
        p = subprocess.run([TOOL, "--keep", "sh", "-c", 'echo "$NORN_SANDBOX_DIR"'], env=self.env(),
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        sdir = p.stdout.strip()
        try:
            # logs are kept (the cluster itself lived on a tmpfs of the sandbox)
            self.assertTrue(os.path.getsize(os.path.join(sdir, "log", "postgresql.log")) > 0)
            self.assertTrue(os.path.isfile(os.path.join(sdir, "env")))
            self.assertIn(sdir, p.stderr)
            self.assertEqual(sandbox_cgroups(sdir), [])
        finally:
            subprocess.run(["rm", "-rf", "--", sdir])

    def test_failed_service_gives_125_and_its_log(self):
        fake = os.path.join(self.tmp, "pgbin")
        os.makedirs(fake)
        for prog, body in (("initdb", "echo 'initdb: simulated breakage' >&2; exit 1"),
                           ("pg_ctl", "exit 1"), ("postgres", "exit 1")):
            path = os.path.join(fake, prog)
            with open(path, "w") as f:
                f.write("#!/bin/sh\n" + body + "\n")
            os.chmod(path, 0o755)
        os.chmod(self.tmp, 0o755)
        p = subprocess.run([TOOL, "echo", "must not run"], env=self.env(NORN_SANDBOX_PGBIN=fake),
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 125, p.stdout + p.stderr)
        self.assertEqual(p.stdout, "")
        first = p.stderr.splitlines()[0]
        self.assertIn("initdb failed", first)
        self.assertIn("simulated breakage", p.stderr)

    def test_usage_error(self):
        p = subprocess.run([TOOL], env=self.env(), capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 125)
        self.assertIn("usage", p.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
