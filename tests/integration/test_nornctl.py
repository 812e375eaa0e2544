"""nornctl against a real nornd and a real deploy: the live output of
deploy (plain, and on a terminal through tmux), the query commands in text
and --json checked against PostgreSQL, logs from the journal, validate,
hostile arguments, -H over a real sshd, and the bash completion."""
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
import unittest

from nornlib import NORNCTL, SOURCE_DIR, main, run, wait_until
from pipeline_env import PipelineEnv, psql
from polkitlib import Polkitd

STEPS = ["clone", "build", "test", "snapshot", "migrate", "deploy", "cleanup"]
BAD_SHA = "deadbeef" * 5
COMPLETION = os.path.join(SOURCE_DIR, "completions", "nornctl.bash")


def nornctl(*args, env=None, timeout=240):
    return run([NORNCTL, "--user"] + list(args), check=False, timeout=timeout, env=env)


def nornctl_json(*args):
    p = nornctl(*args, "--json")
    if p.returncode not in (0, 1):
        raise AssertionError(f"nornctl {args} --json: {p.returncode}\n{p.stdout}\n{p.stderr}")
    return json.loads(p.stdout), p


def one_line_error(testcase, p, pattern=None, code=1):
    """Exit code: 2 for a bad command line (refused before connecting), 1 otherwise."""
    testcase.assertEqual(p.returncode, code, p.stdout + p.stderr)
    testcase.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
    testcase.assertTrue(p.stderr.startswith("nornctl: "), p.stderr)
    if pattern:
        testcase.assertRegex(p.stderr, pattern)


def pg_deployments():
    out = psql("SELECT coalesce(json_agg(d ORDER BY id DESC), '[]') FROM deployments d")
    return json.loads(out)


class NornctlTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.env = PipelineEnv().__enter__()
        cls.good = cls.bad = None

    @classmethod
    def tearDownClass(cls):
        cls.env.__exit__(None, None, None)

    def tearDown(self):
        self.env.nornd.alive()

    # --- deploy ---

    def test_01_deploy_plain_output(self):
        p = nornctl("deploy", "hello")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr + self.env.nornd.log()[-3000:])
        lines = p.stdout.splitlines()
        self.assertRegex(lines[0], r"^deployment \d+ \(deploy of hello at HEAD\) queued$")
        deploy_id = self.env.deployment_id(p.stdout)
        self.assertEqual(lines[-1], f"deployment {deploy_id} of hello: deployed")
        self.assertNotIn("\x1b", p.stdout, "no colour when stdout is not a terminal")

        # Each step starts (▶) then ends (✓ with its duration), in pipeline order.
        events = [(m.group(1), m.group(2)) for m in
                  (re.match(r"^(\u25b6|\u2713|\u2717|-) (\w+)", l) for l in lines) if m]
        ends = [s for g, s in events if g == "\u2713"]
        self.assertEqual(ends, STEPS, p.stdout)
        for step in STEPS:
            self.assertLess(events.index(("\u25b6", step)), events.index(("\u2713", step)), p.stdout)
            self.assertRegex(p.stdout, rf"(?m)^\u2713 {step} \(\d+\.\ds\)$")
        # The build's output is under the running build step, indented.
        start, end = lines.index("\u25b6 build"), next(i for i, l in enumerate(lines) if l.startswith("\u2713 build"))
        under = lines[start + 1:end]
        self.assertTrue(under and all(l.startswith("    ") for l in under), under)
        self.assertTrue(any("STEP" in l or "COPY" in l for l in under), under)

        row = self.env.row(deploy_id)
        self.assertEqual(row["status"], "deployed")
        type(self).good = row

    def test_02_failing_deploy(self):
        p = nornctl("deploy", "hello", BAD_SHA)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        deploy_id = self.env.deployment_id(p.stdout)
        row = self.env.row(deploy_id)
        self.assertEqual(row["status"], "failed")
        self.assertRegex(p.stdout, r"(?m)^\u2717 clone \(\d+\.\ds\)$")
        last = p.stdout.splitlines()[-1]
        self.assertEqual(last, f"deployment {deploy_id} of hello: failed: {row['error']}")
        self.assertNotIn("\u2713 build", p.stdout)
        type(self).bad = row

    def test_03_deploy_no_follow_then_logs_follow(self):
        p = nornctl("deploy", "hello", "--no-follow")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(len(p.stdout.splitlines()), 1, p.stdout)
        deploy_id = self.env.deployment_id(p.stdout)
        # logs -f follows the running deployment and returns when it ends.
        f = nornctl("logs", str(deploy_id), "-f", timeout=240)
        self.assertEqual(f.returncode, 0, f.stderr)
        self.assertIn(self.env.row(deploy_id)["status"], ("deployed",))
        self.assertRegex(f.stdout, r"(?m)^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} build +\S")
        # Everything the follow printed, a plain read prints too, in order.
        again = nornctl("logs", str(deploy_id))
        self.assertEqual(again.returncode, 0, again.stderr)
        self.assertEqual(f.stdout, again.stdout)

    def test_04_deploy_json(self):
        doc, p = nornctl_json("deploy", "hello")
        self.assertEqual(p.returncode, 0, p.stderr)
        row = self.env.row(doc["id"])
        self.assertEqual((doc["status"], doc["commitSha"], doc["imageTag"]),
                         (row["status"], row["commit_sha"], row["image_tag"]))
        self.assertEqual([s["step"] for s in doc["steps"]], STEPS)

    def test_05_rollback_output(self):
        # An older commit (another image), then back to the one before it.
        older = self.env.deploy("hello", self.env.repo.shas[0])
        self.assertEqual(older.returncode, 0, older.stdout + older.stderr)
        older_row = self.env.row(self.env.deployment_id(older.stdout))
        p = nornctl("rollback", "hello")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        lines = p.stdout.splitlines()
        self.assertRegex(lines[0], r"^deployment \d+ \(rollback of hello\) queued$")
        rb = self.env.row(self.env.deployment_id(p.stdout))
        self.assertEqual((rb["status"], rb["rollback_of"], rb["image_tag"]),
                         ("deployed", older_row["id"], self.good["image_tag"]))
        # Only the deploy step runs: the others are shown skipped.
        self.assertIn("- clone skipped", lines)
        self.assertRegex(p.stdout, r"(?m)^\u25b6 deploy\n(    .*\n)*\u2713 deploy \(\d+\.\ds\)$")
        self.assertEqual(lines[-1], f"deployment {rb['id']} of hello: deployed")
        self.assertEqual(self.env.row(older_row["id"])["status"], "rolled_back")

    def test_06_cancel_errors(self):
        # Only a queued or running deployment can be cancelled: nornd says so, nothing changes.
        before = pg_deployments()
        one_line_error(self, nornctl("cancel", str(self.good["id"])))
        one_line_error(self, nornctl("cancel", "999999"))
        self.assertEqual(pg_deployments(), before)

    # --- queries ---

    def test_10_history(self):
        rows = pg_deployments()
        doc, p = nornctl_json("history")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual([d["id"] for d in doc["deployments"]], [r["id"] for r in rows])
        for d, r in zip(doc["deployments"], rows):
            self.assertEqual((d["app"], d["status"], d["ref"], d["commitSha"], d["error"]),
                             (r["app"], r["status"], r["ref"], r["commit_sha"], r["error"]))
        failed, _ = nornctl_json("history", "hello", "--status", "failed")
        self.assertEqual([d["id"] for d in failed["deployments"]],
                         [r["id"] for r in rows if r["status"] == "failed"])
        one, _ = nornctl_json("history", "-n", "1")
        self.assertEqual([d["id"] for d in one["deployments"]], [rows[0]["id"]])

        text = nornctl("history", "hello")
        self.assertEqual(text.returncode, 0, text.stderr)
        lines = text.stdout.splitlines()
        self.assertEqual(lines[0].split()[:3], ["ID", "APP", "STATUS"])
        self.assertEqual([l.split()[:3] for l in lines[1:]], [[str(r["id"]), "hello", r["status"]] for r in rows])

        one_line_error(self, nornctl("history", "nope"), r"unknown app 'nope'")
        one_line_error(self, nornctl("history", "--status", "nonsense"), r"invalid status", code=2)
        one_line_error(self, nornctl("history", "-n", "x"), r"invalid limit", code=2)

    def test_11_show(self):
        good, bad = self.good, self.bad
        self.assertIsNotNone(good)
        doc, p = nornctl_json("show", str(good["id"]))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual((doc["id"], doc["app"], doc["status"], doc["commitSha"], doc["imageTag"]),
                         (good["id"], "hello", "deployed", good["commit_sha"], good["image_tag"]))
        pg_steps = self.env.steps(good["id"])
        self.assertEqual({s["step"]: s["status"] for s in doc["steps"]},
                         {n: s["status"] for n, s in pg_steps.items()})
        self.assertEqual(doc["steps"][STEPS.index("test")]["exitCode"], 0)

        text = nornctl("show", str(bad["id"]))
        self.assertEqual(text.returncode, 0, text.stderr)
        self.assertIn(f"deployment {bad['id']} of hello: failed", text.stdout)
        self.assertIn(f"Error: {bad['error']}", text.stdout)
        self.assertRegex(text.stdout, r"(?m)^\s+clone\s+failed\s")
        self.assertRegex(text.stdout, r"(?m)^\s+build\s+pending\s")

        one_line_error(self, nornctl("show", "999999"), r"999999")

    def test_12_apps_and_status(self):
        rows = pg_deployments()
        last = rows[0]
        doc, p = nornctl_json("apps")
        self.assertEqual(p.returncode, 0, p.stderr)
        apps = {a["id"]: a for a in doc["apps"]}
        self.assertEqual(set(apps), {"hello"})
        self.assertEqual((apps["hello"]["role"], apps["hello"]["branch"]), ("webserver", "main"))
        self.assertEqual((apps["hello"]["lastDeployment"]["id"], apps["hello"]["lastDeployment"]["status"]),
                         (last["id"], last["status"]))
        text = nornctl("apps")
        self.assertRegex(text.stdout, rf"(?m)^hello\s+webserver\s+main\s+no\s+{last['id']}\s+{last['status']}")

        overview = nornctl("status")
        self.assertEqual(overview.returncode, 0, overview.stderr)
        self.assertRegex(overview.stdout, rf"(?m)^hello\s+{last['status']}\s+{last['id']}\s")

        doc, p = nornctl_json("status", "hello")
        self.assertEqual((doc["app"], doc["deployment"]["id"]), ("hello", last["id"]))
        self.assertEqual(len(doc["deployment"]["steps"]), len(STEPS))
        text = nornctl("status", "hello")
        self.assertIn(f"deployment {last['id']} of hello: {last['status']}", text.stdout)
        one_line_error(self, nornctl("status", "nope"), r"unknown app 'nope'")

    def test_13_logs(self):
        good = self.good
        doc, p = nornctl_json("logs", str(good["id"]))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(doc["lines"])
        journal = [e["MESSAGE"] for e in self.env.journal(good["id"]) if isinstance(e.get("MESSAGE"), str)]
        for line in doc["lines"]:
            self.assertIn(line["message"], journal)
            self.assertRegex(line["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertIn("build", {l["step"] for l in doc["lines"]})
        text = nornctl("logs", str(good["id"]))
        self.assertEqual(len(text.stdout.splitlines()), len(doc["lines"]))
        # -f on a finished deployment prints it all and returns at once.
        start = time.monotonic()
        f = nornctl("logs", "-f", str(good["id"]), timeout=30)
        self.assertEqual((f.returncode, f.stdout), (0, text.stdout))
        self.assertLess(time.monotonic() - start, 10)
        # -f --json: one object a line, the same lines.
        fj = nornctl("logs", "-f", "--json", str(good["id"]), timeout=30)
        self.assertEqual(fj.returncode, 0, fj.stderr)
        self.assertEqual([json.loads(l) for l in fj.stdout.splitlines()], doc["lines"])
        one_line_error(self, nornctl("logs", "999999"))

    def test_14_validate(self):
        p = nornctl("validate")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        doc, p = nornctl_json("validate", "hello")
        self.assertEqual((doc["valid"], doc["errors"]), (True, 0))

        d = os.path.join(self.env.apps, "badspec")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "infraspec.yaml"), "w") as f:
            f.write("app: badspec\nrole: webserver\ndeploy: true\nreplicas: [1,\n")
        try:
            p = nornctl("validate", "badspec")
            self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
            self.assertRegex(p.stdout, r"(?m)^\S*badspec/infraspec\.yaml(:\d+(:\d+)?)?: error: ")
            doc, p = nornctl_json("validate")
            self.assertEqual(p.returncode, 1)
            self.assertFalse(doc["valid"])
            errors = [q for q in doc["problems"] if q["severity"] == "error"]
            self.assertTrue(errors and all(q["app"] == "badspec" for q in errors), doc)
        finally:
            shutil.rmtree(d)

    def test_15_snapshots(self):
        rows = json.loads(psql("SELECT coalesce(json_agg(s ORDER BY id DESC), '[]') FROM snapshots s "
                               "WHERE app = 'hello'"))
        self.assertTrue(rows, "the deploys above took snapshots")
        doc, p = nornctl_json("snapshots", "hello")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual([(s["id"], s["database"], s["name"], s["deploymentId"]) for s in doc["snapshots"]],
                         [(r["id"], r["database"], os.path.basename(r["file"]), r["deployment_id"]) for r in rows])
        text = nornctl("snapshots", "hello")
        self.assertEqual(text.returncode, 0, text.stderr)
        self.assertEqual([l.split()[-2] for l in text.stdout.splitlines()[1:]],
                         [os.path.basename(r["file"]) for r in rows])
        # A well-formed name nornd does not have: its refusal, nothing queued.
        before = psql("SELECT count(*) FROM deployments")
        one_line_error(self, nornctl("restore", "hello", "hello_nope.dump"), r"no snapshot named")
        self.assertEqual(psql("SELECT count(*) FROM deployments"), before)

    # --- hostile input and errors ---

    def test_20_hostile_arguments(self):
        before = psql("SELECT count(*) FROM deployments")
        # Unknown to nornd: its refusal (exit 1).
        one_line_error(self, nornctl("deploy", "nope"), r"nope")
        # Refused by nornctl before connecting (exit 2).
        for app in ("../etc", "Hello", "a b", "-x", "hello\x1b[31m", "a" * 64):
            one_line_error(self, nornctl("deploy", "--", app), r"invalid app name", code=2)
        for ref in ("; rm -rf /", "--upload-pack=touch /tmp/x", "-oX", "a..b", "ref with space", "x\ny"):
            one_line_error(self, nornctl("deploy", "hello", "--", ref), r"invalid ref", code=2)
        for verb in ("show", "logs", "cancel"):
            for bad in ("abc", "0", "-1", "1x", "99999999999999999999999", "9223372036854775808", ""):
                one_line_error(self, nornctl(verb, "--", bad), r"invalid deployment id", code=2)
        huge = "a" * 100000
        for args in (["deploy", huge], ["deploy", "hello", huge], ["history", huge], ["status", huge],
                     ["snapshots", huge], ["restore", "hello", huge], ["validate", huge],
                     ["history", "--status", huge]):
            one_line_error(self, nornctl(*args), r"too long", code=2)
        # Options that are not ours are refused wherever they stand, never passed on as a ref.
        one_line_error(self, nornctl("deploy", "hello", "--upload-pack=touch /tmp/x"),
                       r"unknown option '--upload-pack=touch /tmp/x'", code=2)
        one_line_error(self, nornctl("--bogus", "apps"), r"unknown option '--bogus'", code=2)
        one_line_error(self, nornctl("apps", "-x"), r"unknown option '-x'", code=2)
        one_line_error(self, nornctl("frobnicate"), r"unknown command 'frobnicate'", code=2)
        one_line_error(self, nornctl("deploy\x1b]0;x\x07"), r"unknown command 'deploy\?\]0;x\?'", code=2)
        one_line_error(self, nornctl("deploy", "hello", "--to", "3"), r"not for 'deploy'", code=2)
        one_line_error(self, nornctl("deploy"), r"needs more arguments", code=2)
        one_line_error(self, nornctl("deploy", "hello", "HEAD", "extra"), r"too many arguments", code=2)
        one_line_error(self, nornctl("logs", "1", "--follow=yes"), r"takes no value", code=2)
        one_line_error(self, nornctl("history", "-n"), r"needs a value", code=2)
        self.assertEqual(psql("SELECT count(*) FROM deployments"), before)
        self.assertFalse(os.path.exists("/tmp/x"))
        # --help and --version answer without a daemon.
        h = run([NORNCTL, "--help"], check=False)
        self.assertEqual(h.returncode, 0)
        self.assertIn("deploy APP [REF] [--no-follow]", h.stdout)
        self.assertRegex(run([NORNCTL, "--version"]).stdout, r"^nornctl \d+\.\d+\.\d+\n$")

    def fake_ssh_dir(self, script):
        """A directory holding an executable "ssh" (script), for the front of PATH:
        nornctl runs ssh from PATH, as libsystemd does for systemctl -H."""
        tmp = tempfile.mkdtemp(prefix="nornctl-ssh-", dir=os.environ.get("NORN_SANDBOX_DIR"))
        self.addCleanup(shutil.rmtree, tmp, True)
        with open(os.path.join(tmp, "ssh"), "w") as f:
            f.write("#!/bin/sh\n" + script.replace("@DIR@", shlex.quote(tmp)) + "\n")
        os.chmod(os.path.join(tmp, "ssh"), 0o755)
        return tmp, dict(os.environ, PATH=tmp + ":" + os.environ["PATH"])

    def test_21_host_cannot_inject_ssh_options(self):
        tmp, env = self.fake_ssh_dir("printf '%s\\n' \"$@\" > @DIR@/argv\nexit 1")
        argv_log = os.path.join(tmp, "argv")
        marker = os.path.join(tmp, "injected")
        for host in (f"-oProxyCommand=touch {marker}", "-oProxyCommand=x", "-p", "host name", "host\tname",
                     "a;b", "a`b`", "$(touch x)", "user@-oProxyCommand=x", "-@host", "host:99999", "host:-1",
                     "host:0", "", "a" * 600, "h\nost", "h\x1bost", "[::1", "@host", "a@b@c", "user@",
                     "host/machine"):
            for args in (["-H", host, "apps"], [f"--host={host}", "apps"], ["apps", "-H", host],
                         ["--user", "-H", host, "version"]):
                p = run([NORNCTL] + args, check=False, env=env)
                one_line_error(self, p, r"invalid host", code=2)
                self.assertNotIn("\x1b", p.stderr)
        self.assertFalse(os.path.exists(argv_log), "ssh must not run for a refused host")
        self.assertFalse(os.path.exists(marker))

        # A valid host does run ssh, with the host after "--": the refusals above
        # were not just a broken -H. ssh fails here: one line of ours.
        for user_bus, extra in ((False, []), (True, ["--bus-path=unix:path=/run/user/$(id -u)/bus"])):
            p = run([NORNCTL] + (["--user"] if user_bus else []) + ["-H", "user@example.invalid:2222", "apps"],
                    check=False, env=env)
            one_line_error(self, p, r"cannot reach nornd on user@example\.invalid:2222")
            with open(argv_log) as f:
                self.assertEqual(f.read().splitlines(), ["-xT", "-p", "2222", "--", "user@example.invalid",
                                                         "systemd-stdio-bridge"] + extra)
            os.unlink(argv_log)

    def test_23_remote_over_ssh(self):
        # -H through a real sshd and systemd-stdio-bridge. The "ssh" first on
        # PATH logs its argv and runs the real ssh with the test server's key
        # and known host.
        from fixtures import GitSshServer
        server = GitSshServer().__enter__()
        self.addCleanup(server.__exit__, None, None, None)
        real_ssh = shlex.join([shutil.which("ssh")] + shlex.split(server.ssh_command)[1:])
        tmp, env = self.fake_ssh_dir(f"printf '%s\\n' \"$@\" > @DIR@/argv\nexec {real_ssh} \"$@\"")
        argv_log = os.path.join(tmp, "argv")
        host = f"{server.user}@127.0.0.1:{server.port}"

        # The user-mode nornd: through the remote user's session bus.
        p = nornctl("-H", host, "version", env=env, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr + server.log()[-2000:])
        self.assertRegex(p.stdout, r"^nornctl \d+\.\d+\.\d+\nnornd \d+\.\d+\.\d+\n$")
        with open(argv_log) as f:
            self.assertEqual(f.read().splitlines(), ["-xT", "-p", str(server.port), "--", f"{server.user}@127.0.0.1",
                                                     "systemd-stdio-bridge",
                                                     "--bus-path=unix:path=/run/user/$(id -u)/bus"])
        remote = nornctl("-H", host, "snapshots", "hello", "--json", env=env, timeout=60)
        self.assertEqual(remote.returncode, 0, remote.stderr)
        self.assertEqual(json.loads(remote.stdout), json.loads(nornctl("snapshots", "hello", "--json").stdout))
        # A deploy followed through the bridge: the signals arrive too.
        p = nornctl("-H", host, "deploy", "hello", env=env)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertRegex(p.stdout, r"(?m)^\u2713 cleanup \(\d+\.\ds\)$")
        self.assertEqual(self.env.row(self.env.deployment_id(p.stdout))["status"], "deployed")

        # The system bus (sd_bus_open_system_remote): the same ssh command line
        # without --bus-path. The sandbox has no system bus, so the bridge on
        # the far side fails: one clear line of ours after the bridge's words.
        p = run([NORNCTL, "-H", host, "version"], check=False, env=env, timeout=60)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertRegex(p.stderr.splitlines()[-1], rf"^nornctl: .*{re.escape(host)} \(over ssh, system bus\)")
        with open(argv_log) as f:
            self.assertEqual(f.read().splitlines(), ["-xT", "-p", str(server.port), "--", f"{server.user}@127.0.0.1",
                                                     "systemd-stdio-bridge"])

        # sshd refusing us (no key): ssh says why, then one line of ours.
        no_key = shlex.join([shutil.which("ssh")] + shlex.split(server.ssh_command_for(None))[1:])
        with open(os.path.join(tmp, "ssh"), "w") as f:
            f.write(f"#!/bin/sh\nexec {no_key} \"$@\"\n")
        p = nornctl("-H", host, "version", env=env, timeout=60)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn("Permission denied", p.stderr)
        self.assertRegex(p.stderr.splitlines()[-1], rf"^nornctl: cannot reach nornd on {re.escape(host)} ")

    def test_22_unreachable(self):
        p = run([NORNCTL, "--system", "apps"], check=False)
        one_line_error(self, p, r"system bus")
        # Hostile arguments are refused before any connection is tried.
        one_line_error(self, run([NORNCTL, "--system", "deploy", "../x"], check=False), r"invalid app", code=2)
        env = dict(os.environ, DBUS_SESSION_BUS_ADDRESS="unix:path=/nonexistent/bus")
        one_line_error(self, nornctl("apps", env=env), r"cannot connect to the session bus")

    # --- a terminal, through tmux ---

    def test_30_terminal_mode_in_tmux(self):
        tmp = tempfile.mkdtemp(prefix="nornctl-tmux-", dir=os.environ.get("NORN_SANDBOX_DIR"))
        self.addCleanup(shutil.rmtree, tmp, True)
        sock = os.path.join(tmp, "tmux.sock")
        tmux = ["tmux", "-S", sock, "-f", "/dev/null"]
        env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
        cmd = f"{shlex.quote(NORNCTL)} --user deploy hello; echo EXIT=$?; sleep 60"
        run(tmux + ["new-session", "-d", "-s", "deploy", "-x", "150", "-y", "60", cmd], env=env)
        self.addCleanup(run, tmux + ["kill-server"], check=False)

        def capture(session="deploy", escapes=False):
            return run(tmux + ["capture-pane", "-p", "-J", "-S", "-200", "-t", session] +
                       (["-e"] if escapes else [])).stdout
        screen = wait_until(lambda: "EXIT=" in capture() and capture(), timeout=240, interval=0.3,
                            what="deploy in tmux to end")
        self.assertIn("EXIT=0", screen)
        for step in STEPS:
            self.assertIn(f"\u25b6 {step}", screen)
            self.assertRegex(screen, rf"\u2713 {step}\s*\(\d+\.\ds\)")
        self.assertRegex(screen, r"deployment \d+ of hello: deployed")
        # The live line (spinner, elapsed time) is erased before each line and at the end.
        self.assertFalse(re.search(r"[\u2800-\u28ff]", screen), screen)
        # Colour on a terminal: green for the finished steps (tmux may add
        # a background reset between).
        self.assertRegex(capture(escapes=True), r"\x1b\[32m(\x1b\[\d+m)*\u2713 clone")

        # NO_COLOR on a terminal: plain lines, no escape sequences.
        run(tmux + ["new-session", "-d", "-s", "nc", "-x", "150", "-y", "20",
                    f"NO_COLOR=1 {shlex.quote(NORNCTL)} --user health; echo EXIT=$?; "
                    f"{shlex.quote(NORNCTL)} --user health; echo EXIT=$?; sleep 60"], env=env)
        screen = wait_until(lambda: capture("nc").count("EXIT=") == 2 and capture("nc", escapes=True),
                            timeout=30, what="health in tmux")
        plain, coloured = screen.split("EXIT=", 1)
        self.assertRegex(plain, r"database\s+up")
        self.assertNotIn("\x1b[3", plain)
        self.assertRegex(coloured, r"\x1b\[3\dm")

    def test_31_polkit_asks_for_a_password_on_a_terminal(self):
        """Not root, at a terminal: nornctl starts polkit's text agent as
        systemctl does, the real polkitd asks for the password there, and a
        wrong one is refused with nornd's reason; nothing is deployed."""
        tmp = tempfile.mkdtemp(prefix="nornctl-pk-", dir=os.environ.get("NORN_SANDBOX_DIR"))
        self.addCleanup(shutil.rmtree, tmp, True)
        os.chmod(tmp, 0o755)
        go = os.path.join(tmp, "go")
        tmux = ["tmux", "-S", os.path.join(tmp, "tmux.sock"), "-f", "/dev/null"]
        shared = os.environ["NORN_SANDBOX_SHARED_BUS"]
        # polkit's agent talks to polkitd on the "system bus": here the sandbox's.
        cmd = (f"while [ ! -e {go} ]; do sleep 0.1; done; "
               f"env DBUS_SESSION_BUS_ADDRESS={shared} DBUS_SYSTEM_BUS_ADDRESS={shared} "
               f"setpriv --reuid=65534 --regid=65534 --clear-groups -- "
               f"{shlex.quote(NORNCTL)} --user deploy hello; echo EXIT=$?; sleep 60")
        rules = ('polkit.addRule(function(action, subject) {\n'
                 '    if (subject.user == "nobody" && action.id == "org.norn.deploy")\n'
                 '        return polkit.Result.AUTH_ADMIN;\n});\n')
        before = pg_deployments()
        with Polkitd(rules) as pk:
            run(tmux + ["new-session", "-d", "-s", "pk", "-x", "150", "-y", "40", cmd])
            self.addCleanup(run, tmux + ["kill-server"], check=False)
            # The agent (as nobody) opens the terminal nornctl runs on.
            os.chown(run(tmux + ["display", "-p", "-t", "pk", "#{pane_tty}"]).stdout.strip(), 65534, 65534)
            open(go, "w").close()

            def capture():
                return run(tmux + ["capture-pane", "-p", "-J", "-S", "-100", "-t", "pk"]).stdout
            def prompt():
                screen = capture()
                # nornctl ended without a prompt (the call outran the agent's
                # registration): a failure, not a reason to wait on
                self.assertNotIn("EXIT=", screen, "nornctl gave up before polkit asked")
                return "Password:" in screen
            wait_until(prompt, timeout=120, interval=0.2, what="polkit's password prompt")
            # Typed again while the prompt (maybe with the answer echoed) is
            # still the last line: the agent may flush input typed before it
            # switched echo off.
            answered_at = 0.0

            def answer_until_done():
                nonlocal answered_at
                screen = capture()
                if "EXIT=" in screen:
                    return screen
                if re.search(r"Password:( not-the-password)?\s*$", screen) and time.monotonic() - answered_at > 3:
                    run(tmux + ["send-keys", "-t", "pk", "not-the-password", "Enter"])
                    answered_at = time.monotonic()
                return None
            screen = wait_until(answer_until_done, timeout=90, interval=0.2, what="nornctl to give up")
            self.assertIn("AUTHENTICATING FOR org.norn.deploy", screen)
            self.assertIn("EXIT=1", screen)
            self.assertRegex(screen, r"uid 65534 is not allowed to deploy or cancel.*polkit refused")
            self.assertEqual(pk.asked(), [("org.norn.deploy", "nobody")])
        self.assertEqual(pg_deployments(), before)

    # --- bash completion ---

    def complete(self, words):
        """COMPREPLY of _nornctl for the command line words (the last is being typed)."""
        script = (f"source {shlex.quote(COMPLETION)}\n"
                  f"COMP_WORDS=({' '.join(shlex.quote(w) for w in words)})\n"
                  f"COMP_CWORD={len(words) - 1}\n"
                  "_nornctl\n"
                  "printf '%s\\n' \"${COMPREPLY[@]}\"\n")
        env = dict(os.environ, PATH=os.path.dirname(NORNCTL) + ":" + os.environ["PATH"])
        p = run(["bash", "--norc", "--noprofile", "-c", script], env=env)
        return sorted(l for l in p.stdout.splitlines() if l)

    def test_40_bash_completion(self):
        # Registered for nornctl by sourcing the file.
        p = run(["bash", "--norc", "--noprofile", "-c", f"source {shlex.quote(COMPLETION)}; complete -p nornctl"])
        self.assertEqual(p.stdout.strip(), "complete -F _nornctl nornctl")
        self.assertEqual(self.complete(["nornctl", "de"]), ["deploy"])
        self.assertEqual(self.complete(["nornctl", "s"]), ["show", "snapshots", "status"])
        self.assertEqual(self.complete(["nornctl", "--j"]), ["--json"])
        self.assertEqual(self.complete(["nornctl", "hi"]), ["history"])
        self.assertEqual(self.complete(["nornctl", "--user", "de"]), ["deploy"])
        self.assertEqual(self.complete(["nornctl", "--user", "deploy", "he"]), ["hello"])
        self.assertEqual(self.complete(["nornctl", "--user", "status", ""]), ["hello"])
        self.assertEqual(self.complete(["nornctl", "--user", "deploy", "hello", "--no-f"]), ["--no-follow"])
        self.assertEqual(self.complete(["nornctl", "--user", "logs", "--f"]), ["--follow"])
        self.assertEqual(self.complete(["nornctl", "--user", "history", "--status", "fa"]), ["failed"])
        self.assertEqual(self.complete(["nornctl", "--user", "rollback", "hello", "--re"]), ["--restore-db"])
        ids = self.complete(["nornctl", "--user", "show", ""])
        self.assertIn(str(self.good["id"]), ids)
        self.assertTrue(ids and all(i.isdigit() for i in ids), ids)
        snaps = self.complete(["nornctl", "--user", "restore", "hello", ""])
        self.assertTrue(snaps and all(n.startswith("hello_") and n.endswith(".dump") for n in snaps), snaps)
        # Without --user it asks the system bus, which has no nornd here: nothing, no noise.
        self.assertEqual(self.complete(["nornctl", "deploy", ""]), [])


if __name__ == "__main__":
    main()
