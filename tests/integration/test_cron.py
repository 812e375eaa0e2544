"""Cron apps on systemd timers, for real: the cron-timer.c API (through the
`test-cron --driver` program) against the sandbox's systemd --user manager,
journal and PostgreSQL.

The container runtime is replaced by a fake (NORN_CRON_RUNTIME semantics: the
job's `runtime`) that records its argv, environment and INVOCATION_ID, so
the test sees exactly what a real runtime would get. Timers fire every 2
seconds (an OnCalendar= given directly, as cron's minute is too slow)."""
import json
import os
import select
import signal
import subprocess
import tempfile
import time
import unittest
import urllib.parse

from nornlib import BUILD_DIR, SOURCE_DIR, main, run, wait_until

DRIVER = os.path.join(BUILD_DIR, "tests", "test-cron")
SYSTEMCTL = ["systemctl", "--user"]
EVERY_2S = ["*:*:0/2"]

# What a user might write; none of it may be touched on its way to `sh -c`.
COMMAND = ("echo \"it's $HOME\" ${PATH} $$ `id -u` $(date +%s) %n %% \\\\ 'single \"q\"'\n"
           "printf '%s\\n' \"second line\"; exit 0 # é ✓")
WEIRD_ENV = "v=$HOME \"q\" 'x' `y` %n\nnext line \\ é"

FAKE_RUNTIME = r"""#!/usr/bin/python3
import json, os, signal, sys, time
if os.environ.get("FAKE_IGNORE_TERM"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
rec = {"argv": sys.argv, "invocation": os.environ.get("INVOCATION_ID"),
       "env": {k: os.environ.get(k) for k in ("FOO", "WEIRD", "FAKE_EXIT", "FAKE_SLEEP")},
       "t": time.time()}
line = json.dumps(rec)
print("FAKE-RUNTIME " + line, flush=True)
with open(os.path.join(%(dir)r, "runs-" + rec["argv"][-4].split(":")[0].split("/")[-1] + ".jsonl"), "a") as f:
    f.write(line + "\n")
time.sleep(float(os.environ.get("FAKE_SLEEP") or 0))
sys.exit(int(os.environ.get("FAKE_EXIT") or 0))
"""


def psql(db, sql):
    out = run(["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql]).stdout
    return [line.split("|") for line in out.splitlines() if line]


def show(unit, *props):
    out = run(SYSTEMCTL + ["show", unit] + [f"-p{p}" for p in props]).stdout
    return dict(line.split("=", 1) for line in out.strip().splitlines())


def exec_start_command(unit):
    """The last argument of the unit's ExecStart= as the manager holds it (before its $-expansion);
    None while the unit has none (it is being re-created)."""
    path = "/org/freedesktop/systemd1/unit/" + "".join(
        c if c.isalnum() else "_%02x" % ord(c) for c in unit)
    out = run(["busctl", "--user", "--json=short", "get-property", "org.freedesktop.systemd1", path,
               "org.freedesktop.systemd1.Service", "ExecStart"]).stdout
    commands = json.loads(out)["data"]
    # None while the unit is being re-created (unloaded for a moment: no ExecStart=).
    return commands[0][1][-1] if commands else None


class Driver:
    """test-cron --driver: one JSON command per line in, one JSON answer per line out."""

    def __init__(self, db_url, workdir):
        env = dict(os.environ, NORN_CRON_DRIVER_DATABASE_URL=db_url, NORN_CRON_DRIVER_SLICE="norn.slice",
                   NORN_CRON_DRIVER_DEBUG="1")
        self.log_path = os.path.join(workdir, "driver.log")
        self.log = open(self.log_path, "a")
        self.p = subprocess.Popen([DRIVER, "--driver"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=self.log, env=env)
        self.buf = b""
        self.next_id = 1
        self.answers = {}
        self._wait(0, 30)

    def _wait(self, want, timeout):
        deadline = time.monotonic() + timeout
        while want not in self.answers:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"driver: no answer to command {want} in {timeout}s")
            r, _, _ = select.select([self.p.stdout], [], [], left)
            if not r:
                continue
            chunk = os.read(self.p.stdout.fileno(), 65536)
            if not chunk:
                with open(self.log_path) as f:
                    tail = f.read()[-3000:]
                raise AssertionError(f"driver exited ({self.p.wait()}) before answering command {want}:\n{tail}")
            self.buf += chunk
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                a = json.loads(line)
                self.answers[a["id"]] = a
        return self.answers.pop(want)

    def call(self, cmd, timeout=60, **kw):
        i = self.next_id
        self.next_id += 1
        try:
            self.p.stdin.write((json.dumps(dict(kw, cmd=cmd, id=i)) + "\n").encode())
            self.p.stdin.flush()
        except BrokenPipeError:
            pass    # _wait() reports how it ended
        return self._wait(i, timeout)

    def close(self):
        if self.p.poll() is None:
            try:
                self.call("quit", timeout=10)
            finally:
                self.p.stdin.close()
                self.p.wait(10)
        self.log.close()

    def kill(self):
        self.p.send_signal(signal.SIGKILL)
        self.p.wait(10)
        self.log.close()


class CronTimerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="norn-cron-")
        os.chmod(cls.dir, 0o755)
        cls.runtime = os.path.join(cls.dir, "fake-runtime")
        with open(cls.runtime, "w") as f:
            f.write(FAKE_RUNTIME % {"dir": cls.dir})
        os.chmod(cls.runtime, 0o755)
        cls.dbname = f"norn_cron_{os.getpid()}"
        run(["createdb", cls.dbname])
        # postgresql:///norn?host=...: the same server, our own database.
        u = urllib.parse.urlsplit(os.environ["NORN_TEST_DATABASE_URL"])
        cls.db_url = f"{u.scheme}://{u.netloc}/{cls.dbname}" + (f"?{u.query}" if u.query else "")
        cls.driver = Driver(cls.db_url, cls.dir)

    @classmethod
    def tearDownClass(cls):
        cls.driver.close()
        for u in run(SYSTEMCTL + ["list-units", "--all", "--plain", "--no-legend", "norn-cron-*"]).stdout.split("\n"):
            if u.split():
                run(SYSTEMCTL + ["stop", u.split()[0]], check=False)
        run(["dropdb", "--if-exists", cls.dbname], check=False)

    def setUp(self):
        # A test that failed half-way may have left the driver killed.
        if self.driver.p.poll() is not None:
            self.__class__.driver = Driver(self.db_url, self.dir)

    def job(self, app, image, command=COMMAND, env=None, timeout=30, oncalendar=EVERY_2S):
        return {"app": app, "image": image, "oncalendar": oncalendar, "command": command,
                "env": env if env is not None else ["FOO=bar baz", "WEIRD=" + WEIRD_ENV],
                "runtime": self.runtime, "timeout": timeout}

    def runs(self, image_name):
        try:
            with open(os.path.join(self.dir, f"runs-{image_name}.jsonl")) as f:
                return [json.loads(line) for line in f]
        except FileNotFoundError:
            return []

    def wait_runs(self, image_name, n, timeout=20, after=0.0):
        return wait_until(lambda: [r for r in self.runs(image_name) if r["t"] > after][n - 1:] and
                          [r for r in self.runs(image_name) if r["t"] > after],
                          timeout=timeout, interval=0.2, what=f"{n} run(s) of {image_name}")

    def executions(self, app):
        return psql(self.dbname, "SELECT invocation_id, image, coalesce(result, ''), coalesce(exit_code, -1), "
                                 "coalesce(exit_signal, -1), started_at IS NOT NULL, finished_at IS NOT NULL "
                                 f"FROM cron_executions WHERE app = '{app}' ORDER BY started_at")

    def record(self, app):
        rows = psql(self.dbname, f"SELECT row_to_json(t) FROM cron_timers t WHERE app = '{app}'")
        return json.loads(rows[0][0]) if rows else None

    def deploy(self, job, want_r=None, **kw):
        a = self.driver.call("deploy", job=job, schedule=" ".join(job["oncalendar"]), **kw)
        self.assertTrue(a["ok"], a)
        if want_r is not None:
            self.assertEqual(a["r"], want_r, a)
        return a

    def assert_unit_gone(self, unit):
        self.assertEqual(show(unit, "LoadState")["LoadState"], "not-found")

    # ---- hostile input --------------------------------------------------------------

    def test_hostile_input_refused_before_systemd(self):
        before = run(SYSTEMCTL + ["list-units", "--all", "--plain", "--no-legend"]).stdout
        for app in ("Bad_App", "../etc", "a;b", "a b", "$(reboot)", "-x", "a" * 64, ""):
            for cmd in ("install", "deploy"):
                a = self.driver.call(cmd, job=self.job(app, "img:1"))
                self.assertFalse(a["ok"], (cmd, app, a))
                self.assertTrue(a["error"].startswith("app:"), a)
            a = self.driver.call("remove", app=app)
            self.assertFalse(a["ok"], a)
        for image in ("--privileged", "img:1 --rm", "img$(x)", "img\n1", ""):
            a = self.driver.call("install", job=self.job("hostile", image))
            self.assertFalse(a["ok"], a)
            self.assertTrue(a["error"].startswith("image:"), a)
        for env in (["NOEQUALS"], ["1X=1"], ["A-B=1"], ["=x"]):
            a = self.driver.call("install", job=self.job("hostile", "img:1", env=env))
            self.assertFalse(a["ok"], a)
            self.assertTrue(a["error"].startswith("env:"), a)
        a = self.driver.call("install", job=dict(self.job("hostile", "img:1"), runtime="podman --privileged"))
        self.assertTrue(a["error"].startswith("runtime:"), a)
        a = self.driver.call("install", job=self.job("hostile", "img:1", command=""))
        self.assertTrue(a["error"].startswith("command:"), a)
        for schedule, error in (("61 * * * *", "minute: 61 is out of range 0-59"),
                                ("* * * *", "expected 5 fields"),
                                ("*/0 * * * *", "minute: step 0"),
                                ("0 0 30 2 *", "never run"),
                                ("@reboot", "@reboot"),
                                ("* * * * * ; rm -rf /", "expected 5 fields")):
            job = self.job("hostile", "img:1")
            del job["oncalendar"]
            job["schedule"] = schedule
            a = self.driver.call("install", job=job)
            self.assertFalse(a["ok"], a)
            self.assertIn(error, a["error"])
        # A calendar systemd itself refuses: a clear error from the manager, nothing left behind.
        a = self.driver.call("install", job=self.job("hostile", "img:1", oncalendar=["*-*-* 99:00:00"]))
        self.assertFalse(a["ok"], a)
        self.assertIn("Invalid calendar spec", a["error"])
        self.assert_unit_gone("norn-cron-hostile.timer")
        self.assert_unit_gone("norn-cron-hostile.service")
        after = run(SYSTEMCTL + ["list-units", "--all", "--plain", "--no-legend"]).stdout
        self.assertEqual([u for u in after.split() if "cron" in u], [u for u in before.split() if "cron" in u])
        self.assertEqual(self.driver.call("remove", app="never-installed")["r"], 0)

    # ---- the job runs, is visible in the journal and recorded ------------------------

    def test_timer_runs_job_and_redeploy_switches_image(self):
        app = "cronapp"
        a = self.deploy(self.job(app, "img1:one"), want_r=1)
        t = show(f"norn-cron-{app}.timer", "TimersCalendar", "AccuracyUSec", "ActiveState", "Description")
        self.assertIn("OnCalendar=*-*-* *:*:00/2", t["TimersCalendar"])
        self.assertEqual(t["AccuracyUSec"], "1s")
        self.assertEqual(t["ActiveState"], "active")
        s = show(f"norn-cron-{app}.service", "RuntimeMaxUSec", "Type", "CollectMode", "Slice", "Environment",
                 "TimeoutStopUSec")
        self.assertEqual((s["RuntimeMaxUSec"], s["Type"], s["CollectMode"], s["Slice"], s["TimeoutStopUSec"]),
                         ("30s", "exec", "inactive-or-failed", "norn.slice", "15s"), s)

        runs = self.wait_runs("img1", 2)
        for r in runs:
            self.assertEqual(r["argv"], [self.runtime, "run", "--rm", "--env=FOO", "--env=WEIRD", "img1:one",
                                         "sh", "-c", COMMAND])
            self.assertEqual(r["env"]["FOO"], "bar baz")
            self.assertEqual(r["env"]["WEIRD"], WEIRD_ENV)
        self.assertNotEqual(runs[0]["invocation"], runs[1]["invocation"])

        # The journal shows each run under the service, with our fields.
        def journal():
            out = run(["journalctl", "-o", "json", f"_SYSTEMD_USER_UNIT=norn-cron-{app}.service"]).stdout
            return [e for e in map(json.loads, out.splitlines()) if str(e.get("MESSAGE", "")).startswith("FAKE-RUNTIME")]
        entries = wait_until(lambda: len(journal()) >= 2 and journal(), timeout=10, what="journal entries")
        self.assertEqual(entries[0]["SYSLOG_IDENTIFIER"], f"norn-cron-{app}")
        self.assertEqual({json.loads(e["MESSAGE"].split(" ", 1)[1])["invocation"] for e in entries[:2]},
                         {e["_SYSTEMD_INVOCATION_ID"] for e in entries[:2]})
        # The unit carries NORN_APP= and NORN_CRON_IMAGE= for its log lines. (journald adds
        # LogExtraFields= only to units of the system manager: it reads them from
        # /run/systemd/units/, which a user manager does not write; so not checked here.)
        extra = show(f"norn-cron-{app}.service", "LogExtraFields")["LogExtraFields"]
        self.assertIn(f"NORN_APP={app}", extra)
        self.assertIn("NORN_CRON_IMAGE=img1:one", extra)

        # Executions in PostgreSQL: one row per run, keyed by the invocation id.
        ids = {r["invocation"] for r in runs}
        rows = wait_until(lambda: [x for x in self.executions(app) if x[0] in ids and x[6] == "t"] if len(
            [x for x in self.executions(app) if x[0] in ids and x[6] == "t"]) == 2 else None,
            timeout=10, what="2 finished executions")
        for row in rows:
            self.assertEqual(row[1:], ["img1:one", "success", "0", "-1", "t", "t"])
        rec = self.record(app)
        self.assertEqual((rec["image"], rec["command"], rec["oncalendar"], rec["env"], rec["timeout_sec"],
                          rec["runtime"], rec["schedule"]),
                         ("img1:one", COMMAND, EVERY_2S, ["FOO=bar baz", "WEIRD=" + WEIRD_ENV], 30, self.runtime,
                          "*:*:0/2"))

        # The same deploy again: units kept as they are.
        self.deploy(self.job(app, "img1:one"), want_r=0)

        # A new image (and a failing job): the timer is replaced, the new image runs.
        t0 = time.time()
        self.deploy(self.job(app, "img2:two", env=["FAKE_EXIT=3"]), want_r=1)
        new = self.wait_runs("img2", 1, after=t0)[0]
        self.assertEqual(new["argv"], [self.runtime, "run", "--rm", "--env=FAKE_EXIT", "img2:two", "sh", "-c",
                                       COMMAND])
        timers = run(SYSTEMCTL + ["list-timers", "--all", "--plain", "--no-legend"]).stdout
        self.assertEqual(timers.count(f"norn-cron-{app}.timer"), 1, timers)
        row = wait_until(lambda: [x for x in self.executions(app) if x[0] == new["invocation"] and x[6] == "t"],
                         timeout=10, what="the failed run recorded")[0]
        self.assertEqual(row[1:5], ["img2:two", "exit-code", "3", "-1"])
        self.assertEqual(self.record(app)["image"], "img2:two")

        # Undeploy: units and record gone.
        a = self.driver.call("undeploy", app=app)
        self.assertTrue(a["ok"], a)
        self.assert_unit_gone(f"norn-cron-{app}.timer")
        self.assert_unit_gone(f"norn-cron-{app}.service")
        self.assertIsNone(self.record(app))

    def test_timeout_is_runtime_max(self):
        app = "cronslow"
        self.deploy(self.job(app, "img3:slow", env=["FAKE_SLEEP=30"], timeout=1,
                             oncalendar=["*:*:0/10"]), want_r=1)
        self.assertEqual(show(f"norn-cron-{app}.service", "RuntimeMaxUSec")["RuntimeMaxUSec"], "1s")
        run1 = self.wait_runs("img3", 1, timeout=20)[0]
        row = wait_until(lambda: [x for x in self.executions(app) if x[0] == run1["invocation"] and x[6] == "t"],
                         timeout=10, what="the timed-out run recorded")[0]
        self.assertEqual(row[1:5], ["img3:slow", "timeout", "-1", str(signal.SIGTERM)])
        self.assertTrue(self.driver.call("undeploy", app=app)["ok"])

    # ---- restart, reboot, daemon-reload ---------------------------------------------------

    def test_restore_after_restart_and_reboot(self):
        app = "cronrest"
        self.deploy(self.job(app, "img4:rest"), want_r=1)
        self.wait_runs("img4", 1)
        self.__class__.driver.kill()

        # nornd restarts, units still there: restore leaves them alone.
        before = show(f"norn-cron-{app}.timer", "ActiveEnterTimestampMonotonic")
        self.__class__.driver = Driver(self.db_url, self.dir)
        a = self.driver.call("restore")
        self.assertTrue(a["ok"], a)
        self.assertEqual(show(f"norn-cron-{app}.timer", "ActiveEnterTimestampMonotonic"), before)

        # "Reboot": nornd gone and the transient units with it.
        self.__class__.driver.kill()
        # (The service may be unloaded as soon as the timer is: "not loaded" is fine.)
        run(SYSTEMCTL + ["stop", f"norn-cron-{app}.timer", f"norn-cron-{app}.service"], check=False)
        wait_until(lambda: show(f"norn-cron-{app}.service", "LoadState")["LoadState"] == "not-found",
                   what="units unloaded")
        self.assert_unit_gone(f"norn-cron-{app}.timer")
        self.__class__.driver = Driver(self.db_url, self.dir)
        t0 = time.time()
        a = self.driver.call("restore")
        self.assertTrue(a["ok"], a)
        self.assertEqual(show(f"norn-cron-{app}.timer", "ActiveState")["ActiveState"], "active")
        r = self.wait_runs("img4", 1, after=t0)[0]
        self.assertEqual(r["argv"][-4:], ["img4:rest", "sh", "-c", COMMAND])
        wait_until(lambda: [x for x in self.executions(app) if x[0] == r["invocation"] and x[6] == "t"],
                   timeout=10, what="a run after the restore recorded")
        self.assertTrue(self.driver.call("undeploy", app=app)["ok"])

    def test_cancelled_deploy_puts_recorded_timer_back(self):
        # A deploy cancelled after it stopped the old units must not leave the app
        # without a timer: the recorded one (the last good deploy) comes back.
        app = "croncancel"
        self.deploy(self.job(app, "imgc1:old", env=["FAKE_SLEEP=60", "FAKE_IGNORE_TERM=1"], timeout=0),
                    want_r=1)
        self.wait_runs("imgc1", 1)
        # The old job ignores SIGTERM: stopping it takes TimeoutStopSec= (15 s); the
        # deploy is cancelled while it waits for that (and the timer's stop waits too).
        t0 = time.time()
        a = self.driver.call("deploy", job=self.job(app, "imgc2:new"), schedule="x", cancel_after_ms=1500)
        self.assertTrue(a.get("cancelled"), a)
        self.assertLess(time.time() - t0, 5)
        # Once the old job is gone, the recorded timer is back and runs again.
        self.wait_runs("imgc1", 1, timeout=45, after=t0 + 2)
        self.assertEqual(show(f"norn-cron-{app}.timer", "ActiveState")["ActiveState"], "active")
        self.assertIn("NORN_CRON_IMAGE=imgc1:old", show(f"norn-cron-{app}.service", "LogExtraFields")["LogExtraFields"])
        self.assertEqual(self.record(app)["image"], "imgc1:old")
        self.assertEqual(self.runs("imgc2"), [])
        self.assertTrue(self.driver.call("undeploy", app=app, timeout=60)["ok"])

    def test_daemon_reload_repairs_units(self):
        # systemd 252 re-reads the transient unit file on daemon-reload, and reads a
        # '$' of ExecStart= back as "\$": the command would change. The driver (as
        # nornd) re-creates such units, but never under a running job.
        app = "cronreload"
        # The job runs long enough that the checks below see it running on a busy machine.
        self.deploy(self.job(app, "img5:reload", env=["FAKE_SLEEP=8"], oncalendar=["*:*:0/10"]), want_r=1)
        running = self.wait_runs("img5", 1, timeout=20)[0]
        self.assertEqual(exec_start_command(f"norn-cron-{app}.service"), COMMAND.replace("$", "$$"))
        run(SYSTEMCTL + ["daemon-reload"])
        # The bug, seen while the job still runs (the unit is not touched under it):
        # each '$' (and ';') is read back from the transient unit file with a backslash.
        self.assertEqual(exec_start_command(f"norn-cron-{app}.service"),
                         COMMAND.replace("$", "\\$\\$").replace(";", "\\;"))
        # The running job is not killed by the repair: it ends by itself, successfully.
        row = wait_until(lambda: [x for x in self.executions(app) if x[0] == running["invocation"] and x[6] == "t"],
                         timeout=40, what="the run during the reload recorded")[0]
        self.assertEqual(row[2:5], ["success", "0", "-1"])
        # Then the unit is re-created; every run after that gets the command exactly.
        wait_until(lambda: exec_start_command(f"norn-cron-{app}.service") == COMMAND.replace("$", "$$"),
                   timeout=30, what="the unit re-created")
        t0 = time.time()
        for r in self.wait_runs("img5", 2, timeout=60, after=t0)[:2]:
            self.assertEqual(r["argv"][-1], COMMAND)
        self.assertTrue(self.driver.call("undeploy", app=app)["ok"])


if __name__ == "__main__":
    main()
