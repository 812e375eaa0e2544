"""Control of deployments: cancel, crash recovery, per-app serialisation,
bounded queues, authenticated clones, and hostile requests."""
import json
import os
import signal
import subprocess
import threading
import time
import unittest

from fixtures import GitHttpsServer, GitRepo, GitSshServer, example_app_files, write_files
from nornlib import NORNCTL, main, run, wait_until
from pipeline_env import PipelineEnv, psql

SLOW_TEST = "sleep 1000 & echo child=$!; sleep 1000 & echo child=$!; echo ready; wait"


def local_app_files(app, test=None, repo_url=None):
    """A local app (its directory is the source) without database steps."""
    files = example_app_files(app=app)
    spec = [f"app: {app}", "role: webserver", "port: 8080", "deploy: true", "build:",
            "  dockerfile: Dockerfile"]
    if test:
        spec.append("  test: " + json.dumps(test))
    if repo_url:
        spec += ["repo:", "  url: " + json.dumps(repo_url)]
    files["infraspec.yaml"] = "\n".join(spec) + "\n"
    del files["migrations/001.sql"]
    return files


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def scopes(pattern):
    out = run(["systemctl", "--user", "list-units", "--all", "--plain", "--no-legend", pattern]).stdout
    return [l.split()[0] for l in out.splitlines() if l.strip()]


class ControlTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.env = PipelineEnv(nornd_env={"NORN_QUEUE_MAX": "1"}, kube_deployments=("hello", "slow", "local", "early", "stuck"))
        cls.env.__enter__()
        d = os.path.join(cls.env.apps, "slow")
        os.makedirs(d)
        write_files(d, local_app_files("slow", SLOW_TEST))

    @classmethod
    def tearDownClass(cls):
        cls.env.__exit__(None, None, None)

    def start_slow(self):
        p = subprocess.Popen([NORNCTL, "--user", "deploy", "slow"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        lines, children = [], []
        for line in p.stdout:
            lines.append(line)
            if "child=" in line:
                children.append(int(line.split("child=")[1]))
            if "ready" in line and len(children) == 2:
                break
        else:
            # nornctl ended before the step ran: show why (its errors go to stderr).
            err = p.stderr.read()
            p.wait(timeout=60)
            self.fail(f"nornctl deploy slow exited {p.returncode} before its step ran; "
                      f"stdout:\n{''.join(lines)}stderr:\n{err}")
        deploy_id = self.env.deployment_id("".join(lines))
        # The $! it printed are pids of the step's own PID namespace: ask the
        # manager for the scope's processes as the host sees them.
        unit = f"norn-slow-{deploy_id}-test.scope"
        out = run(["busctl", "--user", "--json=short", "call", "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                   "org.freedesktop.systemd1.Manager", "GetUnitProcesses", "s", unit]).stdout
        children = [pid for _, pid, cmd in json.loads(out)["data"][0] if cmd == "sleep 1000"]
        return p, deploy_id, children

    def test_cancel_kills_whole_tree(self):
        p, deploy_id, children = self.start_slow()
        self.assertEqual(len(children), 2)
        self.assertTrue(all(alive(c) for c in children))
        self.assertTrue(scopes(f"norn-slow-{deploy_id}-test*.scope"))
        out = run([NORNCTL, "--user", "cancel", str(deploy_id)]).stdout
        self.assertIn("cancelled", out)
        rest, _ = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 1, rest)
        self.assertIn("cancelled", rest)
        wait_until(lambda: not any(alive(c) for c in children), what="step processes to die")
        row = self.env.row(deploy_id)
        self.assertEqual((row["status"], row["error"]), ("failed", "cancelled"))
        self.assertEqual(self.env.steps(deploy_id)["test"]["status"], "failed")
        wait_until(lambda: not scopes(f"norn-slow-{deploy_id}-*"), what="scopes to go")
        self.assertEqual([w for w in self.env.workdirs() if w.startswith("slow-")], [])
        # Cancelling again: already finished.
        again = run([NORNCTL, "--user", "cancel", str(deploy_id)], check=False)
        self.assertNotEqual(again.returncode, 0)

    def restart_with_recovery_held(self, app):
        """Restarts nornd with its start-up recovery held open: an unfinished
        row of app is locked (FOR UPDATE) by a transaction of the test, so
        recovery's UPDATE waits for it. Returns (that row's id, the psql
        holding the lock: write "ROLLBACK;" to it to let recovery end)."""
        write_files(self.env.add_app(app, local_app_files(app)), local_app_files(app))
        self.env.nornd.stop()
        self.addCleanup(lambda: self.env.nornd.proc.poll() is None or self.env.nornd.start())
        orphan = int(psql(f"WITH o AS (INSERT INTO deployments (app, ref, requested_by) "
                          f"VALUES ('{app}', 'HEAD', 'test') RETURNING id) SELECT id FROM o"))
        holder = subprocess.Popen(["psql", os.environ["NORN_DATABASE_URL"], "-v", "ON_ERROR_STOP=1", "-q"],
                                  stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True, env=dict(os.environ, PGAPPNAME="norn-test-lock"))
        self.addCleanup(lambda: holder.poll() is not None or holder.communicate("ROLLBACK;\n", timeout=60))
        holder.stdin.write(f"BEGIN; SELECT id FROM deployments WHERE id = {orphan} FOR UPDATE;\n")
        holder.stdin.flush()
        wait_until(lambda: psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                                "'norn-test-lock' AND state = 'idle in transaction'") == "1",
                   what="the test's row lock")
        self.env.nornd.start()
        wait_until(lambda: self.env.nornd.health()[1]["components"]["database"]["status"] == "up",
                   what="database up")
        wait_until(lambda: psql("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                "AND query LIKE '%UPDATE deployments SET status = ''failed''%'") == "1",
                   what="recovery waiting for the row lock")
        return orphan, holder

    def test_deploy_right_after_start_waits_for_recovery(self):
        """A deploy asked for while start-up recovery runs is accepted and made
        once recovery ended, never refused nor failed by it."""
        orphan, holder = self.restart_with_recovery_held("early")
        deploy = subprocess.Popen([NORNCTL, "--user", "deploy", "early"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: deploy.poll() is not None or deploy.kill())

        def waiting():
            if deploy.poll() is not None:
                out, err = deploy.communicate()
                raise AssertionError(f"nornctl deploy ended ({deploy.returncode}) while recovery ran:\n{out}{err}")
            return "Deploy of early (HEAD) asked for by" in self.env.nornd.log() and \
                "waits for start-up recovery to end" in self.env.nornd.log()
        wait_until(waiting, what="the deploy to wait for recovery")
        self.assertEqual(psql("SELECT count(*) FROM deployments WHERE app = 'early'"), "1")
        # A rollback reads rows recovery may still change: refused, clearly.
        rb = run([NORNCTL, "--user", "rollback", "hello"], check=False)
        self.assertEqual(rb.returncode, 1, rb.stdout + rb.stderr)
        self.assertIn("still recovering the deployments its previous run left unfinished", rb.stderr)

        holder.communicate("ROLLBACK;\n", timeout=60)
        out, err = deploy.communicate(timeout=240)
        self.assertEqual(deploy.returncode, 0, out + err)
        new = self.env.deployment_id(out)
        self.assertGreater(new, orphan)
        self.assertEqual(self.env.row(new)["status"], "deployed")
        row = self.env.row(orphan)
        self.assertEqual((row["status"], row["error"]), ("failed", "norn restarted during deployment"))

    def test_deploy_during_recovery_that_does_not_end_is_refused_clearly(self):
        """When recovery does not end within 20 s, the waiting deploy is
        answered with the reason (before the client's D-Bus timeout) and
        nothing is queued."""
        orphan, holder = self.restart_with_recovery_held("stuck")
        started = time.monotonic()
        deploy = run([NORNCTL, "--user", "deploy", "stuck"], check=False, timeout=120)
        self.assertEqual(deploy.returncode, 1, deploy.stdout + deploy.stderr)
        self.assertIn("nornd is still recovering the deployments its previous run left unfinished; nothing was "
                      "queued, try again", deploy.stderr)
        self.assertGreaterEqual(time.monotonic() - started, 19)
        self.assertEqual(psql("SELECT count(*) FROM deployments WHERE app = 'stuck'"), "1")
        holder.communicate("ROLLBACK;\n", timeout=60)
        wait_until(lambda: self.env.row(orphan)["status"] == "failed", what="recovery to end")
        # Afterwards a deploy is queued at once.
        p = self.env.deploy("stuck")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_queue_is_bounded_and_serialised(self):
        p, first, children = self.start_slow()
        second = subprocess.Popen([NORNCTL, "--user", "deploy", "slow"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        try:
            second_id = None
            wait_until(lambda: psql("SELECT count(*) FROM deployments WHERE app = 'slow' AND status = 'queued'")
                       == "1", what="second deploy queued")
            second_id = int(psql("SELECT id FROM deployments WHERE app = 'slow' AND status = 'queued'"))
            # The queue (NORN_QUEUE_MAX=1) is full: a third is refused, clearly.
            third = run([NORNCTL, "--user", "deploy", "slow"], check=False)
            self.assertNotEqual(third.returncode, 0)
            self.assertIn("busy", third.stderr)
            # The second never started while the first runs.
            self.assertEqual(self.env.row(second_id)["started_at"], None)
        finally:
            run([NORNCTL, "--user", "cancel", str(first)], check=False)
            if second_id:
                run([NORNCTL, "--user", "cancel", str(second_id)], check=False)
            p.communicate(timeout=60)
            second.communicate(timeout=120)
        self.assertEqual(self.env.row(second_id)["error"], "cancelled")

    def test_two_deploys_of_one_app_never_overlap(self):
        procs = [subprocess.Popen([NORNCTL, "--user", "deploy", "hello"], stdout=subprocess.PIPE, text=True)
                 for _ in range(2)]
        outs = [p.communicate(timeout=300)[0] for p in procs]
        self.assertEqual([p.returncode for p in procs], [0, 0], outs)
        ids = sorted(self.env.deployment_id(o) for o in outs)
        a, b = (self.env.row(i) for i in ids)
        self.assertLessEqual(a["finished_at"], b["started_at"])

    def test_kill_nornd_mid_step_then_restart(self):
        p, deploy_id, children = self.start_slow()
        os.kill(self.env.nornd.proc.pid, signal.SIGKILL)
        self.env.nornd.proc.wait()
        _, err = p.communicate(timeout=30)
        self.assertEqual(p.returncode, 1, err)
        self.assertIn(f"nornd went away while deployment {deploy_id} was running", err)
        self.env.nornd.start()
        wait_until(lambda: self.env.row(deploy_id)["status"] == "failed", timeout=30, what="recovery")
        row = self.env.row(deploy_id)
        self.assertEqual(row["error"], "norn restarted during deployment")
        self.assertIsNotNone(row["finished_at"])
        wait_until(lambda: not scopes(f"norn-slow-{deploy_id}-*"), what="leftover scope killed")
        wait_until(lambda: not any(alive(c) for c in children), what="step processes killed")
        self.assertEqual([w for w in self.env.workdirs() if w.startswith("slow-")], [])

    def test_local_app_and_fallback(self):
        # A local-only app deploys its directory; the commit is its tree hash.
        d = os.path.join(self.env.apps, "local")
        write_files(d, local_app_files("local"))
        p = self.env.deploy("local")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        row = self.env.row(self.env.deployment_id(p.stdout))
        self.assertEqual(row["source"], "local")
        self.assertRegex(row["commit_sha"] or "", r"^[0-9a-f]{40}$")
        steps = self.env.steps(row["id"])
        self.assertEqual(steps["build"]["status"], "succeeded")
        # No services.postgres, no migrations.command: recorded as skipped.
        self.assertEqual((steps["snapshot"]["status"], steps["migrate"]["status"]), ("skipped", "skipped"))
        self.assertIn("- snapshot skipped", p.stdout)

        # repo.url broken but a source tree in the app dir: deployed from it, and said so.
        write_files(d, local_app_files("local", repo_url="file:///nonexistent.git"))
        p = self.env.deploy("local")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        row = self.env.row(self.env.deployment_id(p.stdout))
        self.assertEqual(row["source"], "local-fallback")
        self.assertIn("deploying the local copy", p.stdout)
        # ... but never for an explicitly requested commit.
        p = self.env.deploy("local", "a" * 40)
        self.assertEqual(self.env.row(self.env.deployment_id(p.stdout))["status"], "failed")


class TimeoutAndParallelTest(unittest.TestCase):
    def test_step_timeout_and_parallel_limit(self):
        with PipelineEnv(nornd_env={"NORN_TIMEOUT_TEST": "2", "NORN_MAX_PARALLEL": "1"},
                         kube_deployments=("slow", "slow2")) as env:
            for app in ("slow", "slow2"):
                write_files(os.path.join(env.apps, app), local_app_files(app, SLOW_TEST))
            procs = [subprocess.Popen([NORNCTL, "--user", "deploy", app], stdout=subprocess.PIPE, text=True)
                     for app in ("slow", "slow2")]
            outs = [p.communicate(timeout=120)[0] for p in procs]
            rows = [env.row(env.deployment_id(o)) for o in outs]
            for row, out in zip(rows, outs):
                self.assertEqual(row["status"], "failed", out)
                self.assertEqual(row["error"], "step test timed out after 2s")
                self.assertEqual(env.steps(row["id"])["test"]["status"], "failed")
            # NORN_MAX_PARALLEL=1: different apps, still one after the other.
            a, b = sorted(rows, key=lambda r: r["started_at"])
            self.assertLessEqual(a["finished_at"], b["started_at"])
            env.nornd.alive()


class HostileRequestTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.env = PipelineEnv().__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.env.__exit__(None, None, None)

    def rows(self):
        return int(psql("SELECT count(*) FROM deployments"))

    def refused(self, app, ref=None, expect=None):
        before = self.rows()
        p = self.env.deploy(app, ref)
        self.assertNotEqual(p.returncode, 0, p.stdout)
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
        if expect:
            self.assertRegex(p.stderr, expect)
        self.assertEqual(self.rows(), before, "a refused request created a deployment")
        self.env.nornd.alive()
        return p.stderr

    def test_bad_app_names(self):
        for app in ("../etc", "Hello", "-x", "a_b", "a" * 64, "hello/../x", ""):
            # nornctl refuses a word like "-x" as an unknown option before it is sent.
            self.refused(app, expect=r"invalid app name|needs more arguments|unknown option")
        self.refused("nosuchapp", expect="no such app")

    def test_hostile_refs(self):
        marker = os.path.join(os.environ["NORN_SANDBOX_DIR"], "pwned")
        for ref in (f"--upload-pack=touch {marker}", "-b", "a..b", "x.lock", "@{u}", "ref with space",
                    "refs/heads/\x01", "main;touch " + marker, "$(touch " + marker + ")"):
            self.refused("hello", ref, expect="invalid ref|unknown option")
        self.assertFalse(os.path.exists(marker))

    def test_hostile_infraspecs(self):
        cases = {
            "badyaml": ("app: badyaml\nrole: [webserver\n", r"badyaml/infraspec.yaml:\d+:\d+: error"),
            "badtype": ("app: badtype\nrole: webserver\nport: http\ndeploy: true\n",
                        r"infraspec.yaml:3:7: error: port"),
            "huge": ("app: huge\nrole: webserver\nport: 8080\nreplicas: 99999999999999999999\ndeploy: true\n",
                     r"replicas"),
            "traversal": ("app: traversal\nrole: webserver\nport: 8080\ndeploy: true\n"
                          "build:\n  dockerfile: ../../etc/passwd\n", r"build.dockerfile"),
            "mismatch": ("app: other\nrole: webserver\nport: 8080\ndeploy: true\n", r"app"),
            "nodeploy": ("app: nodeploy\nrole: webserver\nport: 8080\ndeploy: false\n", r"not deployable"),
        }
        for app, (spec, pattern) in cases.items():
            d = os.path.join(self.env.apps, app)
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, "infraspec.yaml"), "w") as f:
                f.write(spec)
            self.refused(app, expect=pattern)
        big = os.path.join(self.env.apps, "big")
        os.makedirs(big, exist_ok=True)
        with open(os.path.join(big, "infraspec.yaml"), "w") as f:
            f.write("app: big\nrole: webserver\nport: 8080\ndeploy: true\nx: '" + "a" * 300000 + "'\n")
        self.refused("big", expect=r"too large|bytes")

    def test_unprivileged_caller_is_refused(self):
        before = self.rows()
        # nobody reaches the session bus through the sandbox's shared socket;
        # the refusal must come from nornd, not from the bus.
        p = run(["env", "DBUS_SESSION_BUS_ADDRESS=" + os.environ["NORN_SANDBOX_SHARED_BUS"],
                 "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
                 "dbus-send", "--session", "--print-reply", "--dest=org.norn.Norn1", "/org/norn/Norn1",
                 "org.norn.Norn1.Manager.Deploy", "string:hello", "string:HEAD"], check=False)
        self.assertNotEqual(p.returncode, 0, p.stdout)
        self.assertIn("Error org.freedesktop.DBus.Error.AccessDenied: Access denied: uid 65534 is not allowed "
                      "to deploy or cancel (polkit action org.norn.deploy)", p.stderr)
        self.assertEqual(self.rows(), before)

    def test_bad_dbus_types_for_deploy(self):
        for args in (["Deploy", "s", "hello"], ["Deploy", "ii", "1", "2"], ["Cancel", "s", "1"]):
            p = run(["busctl", "--user", "call", "org.norn.Norn1", "/org/norn/Norn1",
                     "org.norn.Norn1.Manager"] + args, check=False)
            self.assertNotEqual(p.returncode, 0, args)
        p = run(["busctl", "--user", "call", "org.norn.Norn1", "/org/norn/Norn1", "org.norn.Norn1.Manager",
                 "Cancel", "t", "999999"], check=False)
        self.assertIn("No active deployment", p.stderr)
        self.env.nornd.alive()


class AuthenticatedCloneTest(unittest.TestCase):
    def test_https_token_and_ssh_key(self):
        token = "tok-" + os.urandom(12).hex()
        with GitRepo(example_app_files()) as repo, GitHttpsServer(repo, token=token) as https, \
                GitSshServer(repo) as ssh:
            env = {"NORN_GIT_TOKEN": token, "GIT_SSL_CAINFO": https.ca_file,
                   "NORN_GIT_SSH_KEY": ssh.client_key, "NORN_GIT_SSH_KNOWN_HOSTS": ssh.known_hosts}
            with PipelineEnv(nornd_env=env) as penv:
                seen = []
                stop = threading.Event()

                def watch_argv():
                    while not stop.is_set():
                        for pid in os.listdir("/proc"):
                            if pid.isdigit():
                                try:
                                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                                        seen.append(f.read())
                                except OSError:
                                    pass
                        time.sleep(0.005)

                t = threading.Thread(target=watch_argv)
                t.start()
                try:
                    outputs = []
                    for url in (https.url_for(repo), ssh.url_for(repo)):
                        penv.add_app("hello", example_app_files(url))
                        p = penv.deploy("hello")
                        outputs.append(p.stdout + p.stderr)
                        self.assertEqual(p.returncode, 0, p.stdout + p.stderr + penv.nornd.log()[-2000:])
                        row = penv.row(penv.deployment_id(p.stdout))
                        self.assertEqual((row["commit_sha"], row["source"]), (repo.head_sha(), "git"))
                finally:
                    stop.set()
                    t.join()
                self.assertTrue(any(b"git" in c and b"clone" in c for c in seen), "watcher saw no clone")
                tok = token.encode()
                self.assertFalse([c for c in seen if tok in c], "token in a process argv")
                journal = run(["journalctl", "--no-pager", "-o", "json"]).stdout
                self.assertNotIn(token, journal)
                self.assertNotIn(token, penv.nornd.log())
                self.assertNotIn(token, "".join(outputs))
                self.assertNotIn(token, https.access_log_text())
                # The askpass helper is gone after the clone.
                self.assertEqual([w for w in penv.workdirs() if w.startswith("askpass-")], [])
                # And without the token the clone fails.
            with PipelineEnv(nornd_env={"GIT_SSL_CAINFO": https.ca_file}) as penv:
                penv.add_app("hello", example_app_files(https.url_for(repo)))
                p = penv.deploy("hello")
                self.assertEqual(p.returncode, 1)
                self.assertEqual(penv.steps(penv.deployment_id(p.stdout))["clone"]["status"], "failed")


if __name__ == "__main__":
    main()
