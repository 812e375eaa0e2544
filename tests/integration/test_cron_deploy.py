"""Cron apps (role: cron) deployed by nornd through the whole pipeline: the
deploy step sets up norn-cron-<app>.timer/.service in the sandbox's systemd
--user manager, the timer really fires and runs the job, runs are recorded in
PostgreSQL, and the timer comes back from PostgreSQL after a "reboot".

No container runtime works here (DESIGN §4), so the apps name a small
runtime of their own (infraspec `runtime:`) that takes the arguments a real
one gets (run --rm --env=NAME... IMAGE sh -c COMMAND), records them and runs
the command directly. Cron's finest schedule is one minute, so the test waits
for the next minute once (at most ~61 s)."""
import json
import os
import pwd
import subprocess
import time
import unittest

from fixtures import example_app_files, write_files
from nornlib import NORNCTL, main, run, wait_until
from pipeline_env import PipelineEnv, psql

SYSTEMCTL = ["systemctl", "--user"]
# uid 65534 on the sandbox's session bus (the one the user manager is on), as any local user.
NOBODY = ["env", "DBUS_SESSION_BUS_ADDRESS=" + os.environ.get("NORN_SANDBOX_SHARED_BUS", "unset"),
          "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
COMMAND = 'echo "tick says $GREETING, run $((6 * 7))"'
OUTPUT = "tick says hello from cron, run 42"

FAKE_RUNTIME = r"""#!/usr/bin/python3
import json, os, sys, time
args = sys.argv[1:]
assert args[:2] == ["run", "--rm"], args
i, names = 2, []
while args[i].startswith("--env="):
    names.append(args[i][len("--env="):])
    i += 1
rec = {"argv": sys.argv, "image": args[i], "invocation": os.environ.get("INVOCATION_ID"), "uid": os.getuid(),
       "env": {n: os.environ.get(n) for n in names}, "t": time.time()}
with open(%(runs)r, "a") as f:
    f.write(json.dumps(rec) + "\n")
print("fake runtime: running " + args[i], flush=True)
os.execvp(args[i + 1], args[i + 1:])
"""


def cron_app_files(app, schedule, command, runtime, env=None, timeout=30):
    """A local app (its directory is the source) with role cron."""
    files = example_app_files(app=app)
    del files["migrations/001.sql"]
    spec = [f"app: {app}", "role: cron", "deploy: true", "schedule: " + json.dumps(schedule),
            "command: " + json.dumps(command), "runtime: " + json.dumps(runtime), f"timeout: {timeout}",
            "build:", "  dockerfile: Dockerfile"]
    if env:
        spec.append("env:")
        spec += [f"  {k}: {json.dumps(v)}" for k, v in env.items()]
    files["infraspec.yaml"] = "\n".join(spec) + "\n"
    return files


def show(unit, *props):
    out = run(SYSTEMCTL + ["show", unit] + [f"-p{p}" for p in props]).stdout
    return dict(line.split("=", 1) for line in out.strip().splitlines())


def cron_units(app):
    out = run(SYSTEMCTL + ["list-units", "--all", "--plain", "--no-legend", f"norn-cron-{app}.*"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


class CronDeployTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # The runtime's path must pass both infraspec and cron checks: no '_' or "/.".
        cls.rt_dir = os.path.join(os.environ["NORN_SANDBOX_DIR"], "cron-deploy-" + os.urandom(4).hex())
        os.makedirs(cls.rt_dir)
        os.chmod(cls.rt_dir, 0o755)
        cls.runs_file = os.path.join(cls.rt_dir, "runs.jsonl")
        # The jobs run as the step user: they may append to it.
        with open(cls.runs_file, "w"):
            os.chmod(cls.runs_file, 0o666)
        cls.runtime = os.path.join(cls.rt_dir, "fake-runtime")
        with open(cls.runtime, "w") as f:
            f.write(FAKE_RUNTIME % {"runs": cls.runs_file})
        os.chmod(cls.runtime, 0o755)
        cls.env = PipelineEnv().__enter__()

    @classmethod
    def tearDownClass(cls):
        try:
            cls.env.__exit__(None, None, None)
        finally:
            for app in ("tick", "slow", "never", "nth", "secret"):
                run(SYSTEMCTL + ["stop", f"norn-cron-{app}.timer", f"norn-cron-{app}.service"], check=False)

    def tearDown(self):
        self.env.nornd.alive()

    def add_cron_app(self, app, schedule, command=COMMAND, **kw):
        d = os.path.join(self.env.apps, app)
        os.makedirs(d, exist_ok=True)
        write_files(d, cron_app_files(app, schedule, command, self.runtime, **kw))

    def runs(self, after=0.0):
        try:
            with open(self.runs_file) as f:
                return [r for r in map(json.loads, f) if r["t"] > after]
        except FileNotFoundError:
            return []

    def record(self, app):
        out = psql(f"SELECT row_to_json(t) FROM cron_timers t WHERE app = '{app}'")
        return json.loads(out) if out else None

    def execution(self, invocation):
        out = psql("SELECT row_to_json(e) FROM cron_executions e "
                   f"WHERE invocation_id = '{invocation}' AND finished_at IS NOT NULL")
        return json.loads(out) if out else None

    def job_output(self, app, invocation):
        out = run(["journalctl", "--no-pager", "-o", "json", f"_SYSTEMD_USER_UNIT=norn-cron-{app}.service",
                   f"_SYSTEMD_INVOCATION_ID={invocation}"]).stdout
        return [e.get("MESSAGE") for e in map(json.loads, out.splitlines())]

    def deploy_ok(self, app):
        p = self.env.deploy(app)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr + self.env.nornd.log()[-3000:])
        deploy_id = self.env.deployment_id(p.stdout)
        row = self.env.row(deploy_id)
        self.assertEqual((row["status"], row["error"]), ("deployed", None))
        self.assertEqual(self.env.steps(deploy_id)["deploy"]["status"], "succeeded")
        return deploy_id, row

    # ---- the whole pipeline, a timer that fires, a reboot -----------------------------------

    def test_1_deploy_fires_records_and_comes_back_after_reboot(self):
        env = self.env
        self.add_cron_app("tick", "* * * * *", env={"GREETING": "hello from cron"})
        deploy_id, row = self.deploy_ok("tick")
        image = row["image_tag"]
        self.assertTrue(image.startswith(f"{env.registry.address}/tick:"), image)
        self.assertIn(image.rsplit(":", 1)[1], env.registry.tags("tick"))

        timer = show("norn-cron-tick.timer", "ActiveState", "TimersCalendar", "AccuracyUSec")
        self.assertEqual(timer["ActiveState"], "active", timer)
        self.assertIn("OnCalendar=*-*-* *:*:00 ;", timer["TimersCalendar"])
        service = show("norn-cron-tick.service", "RuntimeMaxUSec", "Slice", "LogExtraFields")
        self.assertEqual((service["RuntimeMaxUSec"], service["Slice"]), ("30s", "norn.slice"))
        self.assertIn(f"NORN_CRON_IMAGE={image}", service["LogExtraFields"])

        rec = self.record("tick")
        # The record has the env's names, and the path of the root-only file with the values.
        self.assertEqual((rec["image"], rec["schedule"], rec["oncalendar"], rec["command"], rec["env"],
                          rec["runtime"], rec["timeout_sec"], rec["deployment_id"]),
                         (image, "* * * * *", ["*-*-* *:*:00"], COMMAND, ["GREETING="],
                          self.runtime, 30, deploy_id))
        self.assertRegex(rec["env_file"], rf"^{env.state}/cron-env/tick\.[0-9a-f]{{32}}\.env$")
        # The step's log says what it did.
        messages = [e.get("MESSAGE") for e in env.journal(deploy_id) if e.get("NORN_STEP") == "deploy"]
        self.assertTrue(any('schedule "* * * * *" becomes OnCalendar=*-*-* *:*:00' in str(m) for m in messages),
                        messages)
        self.assertTrue(any("norn-cron-tick.timer is active" in str(m) for m in messages), messages)

        # The timer fires at the next minute and runs the new image with the command, untouched.
        fired = wait_until(lambda: self.runs(), timeout=75, interval=0.5, what="the timer to fire")[0]
        self.assertEqual(fired["argv"], [self.runtime, "run", "--rm", "--env=GREETING", image, "sh", "-c", COMMAND])
        self.assertEqual(fired["env"], {"GREETING": "hello from cron"})
        self.assertEqual(fired["uid"], pwd.getpwnam("norn-step").pw_uid)     # the step user, not root
        self.assertLessEqual(time.gmtime(fired["t"]).tm_sec, 2, fired)     # at the minute
        execution = wait_until(lambda: self.execution(fired["invocation"]), timeout=15,
                               what="the run recorded in PostgreSQL")
        self.assertEqual((execution["app"], execution["image"], execution["result"], execution["exit_code"],
                          execution["unit"]), ("tick", image, "success", 0, "norn-cron-tick.service"))
        self.assertIsNotNone(execution["started_at"])
        self.assertLessEqual(execution["started_at"], execution["finished_at"])
        self.assertIn(OUTPUT, wait_until(lambda: OUTPUT in self.job_output("tick", fired["invocation"]) and
                                         self.job_output("tick", fired["invocation"]), what="the job's output"))

        # "Reboot": nornd stops, then the transient units go (stopped, they are unloaded).
        self.assertEqual(env.nornd.stop(), 0)
        # The service may already be unloaded after its run: only the timer must stop cleanly.
        run(SYSTEMCTL + ["stop", "norn-cron-tick.timer"])
        run(SYSTEMCTL + ["stop", "norn-cron-tick.service"], check=False)
        wait_until(lambda: not cron_units("tick"), what="the units to be unloaded")
        env.nornd.start()
        timer = wait_until(lambda: show("norn-cron-tick.timer", "ActiveState", "TimersCalendar")["ActiveState"]
                           == "active" and show("norn-cron-tick.timer", "TimersCalendar"), timeout=30,
                           what="the timer re-created from PostgreSQL")
        self.assertIn("OnCalendar=*-*-* *:*:00 ;", timer["TimersCalendar"])
        self.assertIn(f"NORN_CRON_IMAGE={image}", show("norn-cron-tick.service", "LogExtraFields")["LogExtraFields"])
        # The re-created service runs the same job, and the new nornd records it.
        t0 = time.time()
        run(SYSTEMCTL + ["start", "norn-cron-tick.service"])
        again = wait_until(lambda: self.runs(after=t0), timeout=15, what="a run of the re-created unit")[0]
        self.assertEqual(again["argv"], fired["argv"])
        execution = wait_until(lambda: self.execution(again["invocation"]), timeout=15,
                               what="the run after the restart recorded")
        self.assertEqual((execution["image"], execution["result"], execution["exit_code"]), (image, "success", 0))

    # ---- hostile schedules: a clear error, no units, nothing changed -------------------------

    def test_2_unrepresentable_schedules_are_refused_and_leave_nothing(self):
        """A schedule a timer cannot express is an infraspec error: the deploy
        is refused before anything is built, with the line of the schedule."""
        before = self.record("tick")
        self.assertIsNotNone(before, "test_1 deploys tick first")
        deployments = psql("SELECT count(*) FROM deployments")
        for app, schedule, error in (
                ("never", "0 0 30 2 *", "the job would never run"),
                ("nth", "0 12 * * 5#3", "schedule:"),
                # A working app: its timer and record stay the last good deploy's.
                ("tick", "0 0 31 4,6,9,11 *", "the job would never run")):
            with self.subTest(schedule=schedule):
                self.add_cron_app(app, schedule, env={"GREETING": "hello from cron"})
                p = self.env.deploy(app)
                self.assertNotEqual(p.returncode, 0, p.stdout + p.stderr)
                self.assertIn("schedule", p.stderr)
                self.assertIn(error, p.stderr)
                self.assertRegex(p.stderr, r"infraspec\.yaml:\d+:\d+")
                if app != "tick":
                    self.assertEqual(cron_units(app), [])
                    self.assertIsNone(self.record(app))
        self.assertEqual(psql("SELECT count(*) FROM deployments"), deployments)
        self.assertEqual(self.record("tick"), before)
        self.assertEqual(show("norn-cron-tick.timer", "ActiveState")["ActiveState"], "active")
        self.assertIn("OnCalendar=*-*-* *:*:00 ;", show("norn-cron-tick.timer", "TimersCalendar")["TimersCalendar"])

    # ---- cancel: the app keeps the timer of its last good deploy ----------------------------

    def test_3_cancelled_deploy_keeps_recorded_timer(self):
        env = self.env
        old_command = "trap '' TERM; echo slow job started; sleep 60"
        self.add_cron_app("slow", "0 3 * * *", old_command)
        _, row = self.deploy_ok("slow")
        old = self.record("slow")
        # A running job that ignores SIGTERM: replacing the units waits for TimeoutStopSec= (15 s).
        t0 = time.time()
        run(SYSTEMCTL + ["start", "--no-block", "norn-cron-slow.service"])
        wait_until(lambda: self.runs(after=t0), what="the slow job to start")

        self.add_cron_app("slow", "0 4 * * *", "echo new")
        p = subprocess.Popen([NORNCTL, "--user", "deploy", "slow"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        try:
            deploy_id = wait_until(lambda: psql("SELECT id FROM deployments WHERE app = 'slow' AND "
                                                "status = 'deploying'"), timeout=120, what="the deploy step")
            wait_until(lambda: any("setting up timer" in str(e.get("MESSAGE"))
                                   for e in env.journal(int(deploy_id))), what="the timer being replaced")
            time.sleep(1)
            self.assertIn("cancelled", run([NORNCTL, "--user", "cancel", deploy_id]).stdout)
        finally:
            out, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 1, out + err)
        row = env.row(int(deploy_id))
        self.assertEqual((row["status"], row["error"]), ("failed", "cancelled"))
        self.assertEqual(env.steps(int(deploy_id))["deploy"]["status"], "failed")
        # Once the old job is gone, the recorded timer (the last good deploy's) is back.
        wait_until(lambda: show("norn-cron-slow.timer", "ActiveState")["ActiveState"] == "active" and
                   "OnCalendar=*-*-* 03:00:00" in show("norn-cron-slow.timer", "TimersCalendar")["TimersCalendar"],
                   timeout=45, interval=0.5, what="the recorded timer back")
        self.assertEqual(self.record("slow"), old)
        self.assertEqual([r for r in self.runs(after=t0) if r["argv"][-1] == "echo new"], [])

    # ---- env values: only the job gets them -------------------------------------------------

    def test_4_env_values_are_for_the_job_only(self):
        """uid 65534 reads every property of the job's units over the bus, the
        transient unit files and cron_timers hold nothing of the values; the
        values are in a root-only file, and the job (as the step user) gets
        them exactly, also after the units are re-created from the record."""
        env = self.env
        secret = "s3cret-" + os.urandom(6).hex()
        weird = 'a "quoted" $HOME \\ `x` line\nnext  '
        self.add_cron_app("secret", "0 5 * * *", "true", env={"DB_PASSWORD": secret, "WEIRD": weird})
        self.deploy_ok("secret")

        for unit in ("norn-cron-secret.service", "norn-cron-secret.timer"):
            path = "/org/freedesktop/systemd1/unit/" + unit.replace("-", "_2d").replace(".", "_2e")
            p = run(NOBODY + ["busctl", "--user", "call", "org.freedesktop.systemd1", path,
                              "org.freedesktop.DBus.Properties", "GetAll", "s", ""])
            self.assertIn("norn-cron-secret", p.stdout)     # really read them
            self.assertNotIn(secret, p.stdout)
            self.assertNotIn("s3cret", p.stdout)
        service = run(NOBODY + ["busctl", "--user", "get-property", "org.freedesktop.systemd1",
                                "/org/freedesktop/systemd1/unit/norn_2dcron_2dsecret_2eservice",
                                "org.freedesktop.systemd1.Service", "EnvironmentFiles", "Environment", "User"]).stdout
        rec = self.record("secret")
        self.assertIn(rec["env_file"], service)
        self.assertIn('"norn-step"', service)
        transient = os.path.join(os.environ["XDG_RUNTIME_DIR"], "systemd", "transient")
        for name in os.listdir(transient):
            if name.startswith("norn-cron-secret."):
                with open(os.path.join(transient, name)) as f:
                    self.assertNotIn(secret, f.read())
        self.assertNotIn(secret, psql("SELECT row_to_json(t) FROM cron_timers t"))
        self.assertEqual(rec["env"], ["DB_PASSWORD=", "WEIRD="])

        # The file: root's alone, in a directory only root can open.
        st, dst = os.stat(rec["env_file"]), os.stat(os.path.dirname(rec["env_file"]))
        self.assertEqual((st.st_uid, st.st_mode & 0o7777, dst.st_uid, dst.st_mode & 0o7777), (0, 0o600, 0, 0o700))
        p = run(NOBODY + ["cat", rec["env_file"]], check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertNotIn(secret, p.stdout)

        # The job gets the values, exactly; again from units re-created from the record.
        for again in (False, True):
            if again:
                self.assertEqual(env.nornd.stop(), 0)
                run(SYSTEMCTL + ["stop", "norn-cron-secret.timer", "norn-cron-secret.service"], check=False)
                wait_until(lambda: not cron_units("secret"), what="the units to be unloaded")
                env.nornd.start()
                wait_until(lambda: "norn-cron-secret.timer" in cron_units("secret"), timeout=30,
                           what="the timer re-created from PostgreSQL")
            t0 = time.time()
            run(SYSTEMCTL + ["start", "norn-cron-secret.service"])
            job = wait_until(lambda: self.runs(after=t0), timeout=30, what="the job to run")[0]
            self.assertEqual(job["env"], {"DB_PASSWORD": secret, "WEIRD": weird})
            self.assertEqual(job["uid"], pwd.getpwnam("norn-step").pw_uid)

        # Deployed with other values: a new file, and the old one is gone.
        self.add_cron_app("secret", "0 5 * * *", "true", env={"DB_PASSWORD": "rotated"})
        self.deploy_ok("secret")
        new = self.record("secret")["env_file"]
        self.assertNotEqual(new, rec["env_file"])
        self.assertFalse(os.path.exists(rec["env_file"]))
        with open(new) as f:
            self.assertEqual(f.read(), 'DB_PASSWORD="rotated"\n')


if __name__ == "__main__":
    main()
