"""The D-Bus API (org.norn.Norn1.Manager and the deployment objects) against a
real nornd and a real pipeline: every reading method compared with
PostgreSQL and the journal, filters and paging, hostile arguments, named
errors, wrong argument types, PropertiesChanged during a deploy (seen with
dbus-monitor), and who may change things: an unprivileged uid (setpriv) is
refused Deploy/Cancel/Rollback/RestoreSnapshot and GetLogs but may read the
rest; members of NORN_ADMIN_GROUP pass where polkit is absent; with the real polkitd on the
bus (tests/integration/polkitlib.py), its rules decide, keyed by action id and
user, and an authentication challenge reaches a real agent (pkttyagent).
BusPolicyTest checks dbus/org.norn.Norn1.conf on a bus of its own: LogLine
reaches root only."""
import fcntl
import json
import os
import pty
import re
import select
import subprocess
import sys
import tempfile
import termios
import threading
import time
import unittest

from nornlib import SOURCE_DIR, Nornd, main, run, wait_until
from pipeline_env import PipelineEnv, psql
from polkitlib import Polkitd

DEST = ["org.norn.Norn1", "/org/norn/Norn1", "org.norn.Norn1.Manager"]
DEPLOY, ROLLBACK, READ_LOGS = "org.norn.deploy", "org.norn.rollback", "org.norn.read-logs"
# busctl allows interactive authorization too, but prints no AccessDenied message.
GDBUS_DEPLOY = ["gdbus", "call", "--session", "--interactive", "--dest", DEST[0], "--object-path", DEST[1],
                "--method", DEST[2] + ".Deploy", "hello", "HEAD"]
ADMIN_GID = 4242
# Other uids reach the sandbox's session bus through its shared socket.
SHARED_BUS = ["env", "DBUS_SESSION_BUS_ADDRESS=" + os.environ.get("NORN_SANDBOX_SHARED_BUS", "unset")]
NOBODY = SHARED_BUS + ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
ADMIN = SHARED_BUS + ["setpriv", "--reuid=65534", "--regid=65534", f"--groups={ADMIN_GID}", "--"]
FINAL = ("deployed", "failed", "rolled_back")
ERR = "org.norn.Norn1.Error."

HOSTILE_APPS = ["../etc", "..", "hello/../x", "Hello", "-hello", "hello world", "a" * 64, "hello'; DROP TABLE "
                "deployments;--", "hello\nx", "%2e%2e", "héllo", "x" * 5000]
HOSTILE_STATUSES = ["Deployed", "deployed' OR '1'='1", "done", "queued;", " failed", "x" * 5000]


def call(method, sig="", *args, prefix=(), check=True):
    """busctl call → the reply's values (busctl's JSON)."""
    p = run(list(prefix) + ["busctl", "--user", "--json=short", "call"] + DEST + [method] +
            ([sig] + [str(a) for a in args] if sig else []), check=False, timeout=60)
    if check and p.returncode != 0:
        raise AssertionError(f"{method} {args!r} failed: {p.stderr}")
    return json.loads(p.stdout)["data"] if p.returncode == 0 else p


def send(method, *args, prefix=()):
    """dbus-send (which prints the error's name) → (returncode, stdout, stderr)."""
    p = run(list(prefix) + ["dbus-send", "--session", "--print-reply", "--dest=" + DEST[0], DEST[1],
                            DEST[2] + "." + method] + list(args), check=False, timeout=60)
    return p.returncode, p.stdout, p.stderr


def rules(deploy=None, rollback=None, read_logs=None):
    """polkit JavaScript rules: user nobody gets polkit.Result.<deploy> for
    org.norn.deploy, .<rollback> for org.norn.rollback and .<read_logs> for
    org.norn.read-logs; anything else is left to the actions' defaults
    (auth_admin_keep)."""
    body = "".join(f'    if (subject.user == "nobody" && action.id == "{action}") return polkit.Result.{result};\n'
                   for action, result in ((DEPLOY, deploy), (ROLLBACK, rollback), (READ_LOGS, read_logs))
                   if result)
    return "polkit.addRule(function(action, subject) {\n" + body + "});\n"


def with_agent(cmd, timeout=60):
    """Runs cmd as nobody with polkit's text agent (pkttyagent, as nobody, on a
    pty of its own) registered for cmd's process; answers its password prompt
    wrongly. → (returncode, stdout, stderr, what the agent showed)."""
    env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=os.environ["NORN_SANDBOX_SHARED_BUS"])
    # env, setpriv and sh exec in turn: caller.pid is the process that calls nornd.
    caller = subprocess.Popen(NOBODY + ["sh", "-c", 'read go && exec "$@"', "sh"] + cmd, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    master, slave = pty.openpty()
    os.chown(os.ttyname(slave), 65534, 65534)
    ready_r, ready_w = os.pipe()
    agent = subprocess.Popen(
        NOBODY + ["pkttyagent", "--process", str(caller.pid), "--notify-fd", str(ready_w)],
        stdin=slave, stdout=slave, stderr=slave, env=env, pass_fds=(ready_w,), start_new_session=True,
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
    os.close(slave)
    os.close(ready_w)
    shown = b""
    try:
        os.read(ready_r, 1)   # EOF: pkttyagent closed it once registered
        if agent.poll() is not None:
            raise AssertionError(f"pkttyagent exited ({agent.returncode}): {os.read(master, 65536)!r}")
        caller.stdin.write("go\n")
        caller.stdin.close()
        # The agent may switch echo off (TCSAFLUSH) just after its prompt
        # shows, dropping an answer typed at once (then echoed, since echo
        # was still on): answer again while the prompt, or the prompt with
        # that echo, is the last thing it said.
        deadline, answered_at = time.monotonic() + timeout, 0.0
        while caller.poll() is None and time.monotonic() < deadline:
            if select.select([master], [], [], 0.1)[0]:
                try:
                    shown += os.read(master, 65536)
                except OSError:   # EIO: the agent closed its tty
                    time.sleep(0.1)
            if re.search(rb"Password:( not-the-password)?\s*$", shown) and time.monotonic() - answered_at > 3:
                os.write(master, b"not-the-password\n")
                answered_at = time.monotonic()
        if caller.poll() is None:
            caller.kill()
            raise AssertionError(f"{cmd!r} did not finish; agent showed {shown!r}")
        out, err = caller.stdout.read(), caller.stderr.read()
        while select.select([master], [], [], 0.2)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
        return caller.returncode, out, err, shown.decode(errors="replace")
    finally:
        if caller.poll() is None:
            caller.kill()
            caller.wait()
        caller.stdout.close()
        caller.stderr.close()
        agent.terminate()
        agent.wait(10)
        os.close(ready_r)
        os.close(master)


def counts():
    return psql("SELECT (SELECT count(*) FROM deployments) || '/' || (SELECT count(*) FROM deployment_steps)"
                " || '/' || (SELECT count(*) FROM snapshots)")


# --- dbus-monitor's text, parsed ---

def _tokens(text):
    return re.findall(r'"(?:[^"\\]|\\.)*"|\S+', text)


def _value(t, i):
    """(value, next index) of the value at t[i] in dbus-monitor's notation."""
    w = t[i]
    if w in ("string", "signature"):
        return json.loads(t[i + 1]), i + 2
    if w == "object" and t[i + 1] == "path":
        return json.loads(t[i + 2]), i + 3
    if w in ("byte", "int16", "uint16", "int32", "uint32", "int64", "uint64"):
        return int(t[i + 1]), i + 2
    if w == "double":
        return float(t[i + 1]), i + 2
    if w == "boolean":
        return t[i + 1] == "true", i + 2
    if w == "variant":
        return _value(t, i + 1)
    if w == "array" and t[i + 1] == "[":
        out, i = [], i + 2
        while t[i] != "]":
            v, i = _value(t, i)
            out.append(v)
        return out, i + 1
    if w == "struct" and t[i + 1] == "{":
        out, i = [], i + 2
        while t[i] != "}":
            v, i = _value(t, i)
            out.append(v)
        return tuple(out), i + 1
    if w == "dict" and t[i + 1] == "entry(":
        k, i = _value(t, i + 2)
        v, i = _value(t, i)
        assert t[i] == ")", t[i:i + 3]
        return (k, v), i + 1
    raise ValueError(f"cannot parse dbus-monitor output at {t[i:i + 5]}")


def properties_changed(text):
    """[(path, {property: value})] of the PropertiesChanged signals in text."""
    out = []
    for block in re.split(r"\n(?=signal |method |error |method return )", text):
        head, _, body = block.partition("\n")
        if "member=PropertiesChanged" not in head:
            continue
        path = re.search(r"path=([^;\s]+)", head).group(1)
        t = _tokens(body)
        iface, i = _value(t, 0)
        changed, i = _value(t, i)
        if iface == "org.norn.Norn1.Deployment":
            out.append((path, dict(changed)))
    return out


def dedupe(seq):
    out = []
    for x in seq:
        if not out or out[-1] != x:
            out.append(x)
    return out


class DbusApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.env = PipelineEnv(nornd_env={"NORN_ADMIN_GROUP": str(ADMIN_GID)}).__enter__()
        wait_until(lambda: run(["busctl", "--user", "status", DEST[0]], check=False).returncode == 0,
                   what="org.norn.Norn1 on the bus")

    @classmethod
    def tearDownClass(cls):
        cls.env.__exit__(None, None, None)

    def tearDown(self):
        self.env.nornd.alive()

    def assertBusError(self, result, name, msg=None, text=None):
        code, out, err = result
        self.assertNotEqual(code, 0, (msg, out))
        self.assertIn("Error " + name, err, msg)
        if text:
            self.assertRegex(err, text, msg)

    def wait_final(self, deploy_id, timeout=240):
        def final():
            d, _ = call("GetDeployment", "t", deploy_id)
            return d if d[5] in FINAL else None
        return wait_until(final, timeout=timeout, interval=0.3, what=f"deployment {deploy_id} to end")

    def deploy(self, ref="HEAD"):
        (path,) = call("Deploy", "ss", "hello", ref)
        self.assertRegex(path, r"^/org/norn/Norn1/deployment/[1-9][0-9]*$")
        return int(path.rsplit("/", 1)[1])

    # --- before any deploy ---

    def test_01_named_errors_before_any_deploy(self):
        before = counts()
        self.assertBusError(send("Rollback", "string:hello", "uint64:0", "boolean:false"),
                            ERR + "NothingToRollBack", text="nothing to roll back")
        self.assertBusError(send("Deploy", "string:nosuch", "string:HEAD"), ERR + "NotFound", text="no such app")
        self.assertBusError(send("Deploy", "string:Bad_App", "string:HEAD"), ERR + "InvalidArgument")
        self.assertBusError(send("Deploy", "string:hello", "string:--upload-pack=x"), ERR + "InvalidArgument")
        self.assertBusError(send("Rollback", "string:hello", "uint64:18446744073709551615", "boolean:false"),
                            ERR + "InvalidArgument")
        for bad in ("999999", "0", "18446744073709551615"):
            self.assertBusError(send("GetDeployment", "uint64:" + bad), ERR + "NotFound", bad)
            self.assertBusError(send("GetLogs", "uint64:" + bad, "string:", "uint32:0"), ERR + "NotFound", bad)
            self.assertBusError(send("Cancel", "uint64:" + bad), ERR + "NotFound", bad)
        self.assertEqual(call("ListDeployments", "ssu", "", "", 0), [[]])
        apps = {a[0]: a for a in call("ListApps")[0]}
        self.assertEqual(apps["hello"], ["hello", "webserver", "main", False, 0, "", "", 0])
        self.assertEqual(counts(), before)

    # --- a real deploy ---

    def test_02_deploy_emits_properties_changed(self):
        monitor = subprocess.Popen(
            ["stdbuf", "-oL", "dbus-monitor", "--session",
             "type='signal',interface='org.freedesktop.DBus.Properties',member='PropertiesChanged',"
             "path_namespace='/org/norn/Norn1/deployment'"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.addCleanup(lambda: monitor.poll() is not None or monitor.kill())
        time.sleep(0.5)

        deploy_id = self.deploy()
        type(self).deploy_id = deploy_id
        # The app is busy until this deploy ends: a rollback is refused.
        self.assertBusError(send("Rollback", "string:hello", "uint64:0", "boolean:false"), ERR + "Busy")
        d = self.wait_final(deploy_id)
        self.assertEqual(d[5], "deployed", d)
        time.sleep(0.5)
        monitor.terminate()
        out, _ = monitor.communicate(timeout=10)

        path = f"/org/norn/Norn1/deployment/{deploy_id}"
        changes = [c for p, c in properties_changed(out) if p == path]
        self.assertTrue(changes, out[-2000:])
        statuses = dedupe([c["Status"] for c in changes if "Status" in c])
        self.assertEqual(statuses, ["building", "testing", "snapshotting", "migrating", "deploying", "deployed"])
        steps = dedupe([c["Step"] for c in changes if "Step" in c])
        self.assertEqual(steps, ["clone", "build", "test", "snapshot", "migrate", "deploy", "cleanup"])
        last = changes[-1]
        row = self.env.row(deploy_id)
        self.assertEqual((last["CommitSha"], last["ImageTag"], last["Error"]),
                         (row["commit_sha"], row["image_tag"], ""))
        self.assertTrue(all(c["StartedAt"] > 0 for c in changes if "StartedAt" in c))
        self.assertGreaterEqual(last["FinishedAt"], last["StartedAt"])
        # Steps: each step seen running, then succeeded, in every change.
        seen = {}
        for c in changes:
            for name, status, started, finished, exit_code, unit in c["Steps"]:
                seen.setdefault(name, []).append(status)
        for name in ("clone", "build", "test", "snapshot", "migrate", "deploy", "cleanup"):
            self.assertEqual(dedupe(seen[name])[-2:], ["running", "succeeded"], (name, seen[name]))

        # The object itself says the same (it is among the recent ones).
        props = json.loads(run(["busctl", "--user", "--json=short", "get-property", DEST[0], path,
                                "org.norn.Norn1.Deployment", "Id", "App", "Ref", "Status", "CommitSha"]).stdout
                           .replace("}\n{", "},{").join("[]"))
        self.assertEqual([p["data"] for p in props], [deploy_id, "hello", "HEAD", "deployed", row["commit_sha"]])

    def test_03_get_deployment_matches_database(self):
        deploy_id = self.deploy_id
        (d, steps) = call("GetDeployment", "t", deploy_id)
        row = json.loads(psql(
            "SELECT json_build_object('id', id, 'app', app, 'ref', ref, 'commit', commit_sha, 'image', image_tag, "
            "'status', status, 'step', step, 'error', coalesce(error, ''), "
            "'q', (extract(epoch FROM queued_at) * 1000000)::bigint, "
            "'s', (extract(epoch FROM started_at) * 1000000)::bigint, "
            "'f', (extract(epoch FROM finished_at) * 1000000)::bigint, 'by', requested_by) "
            f"FROM deployments WHERE id = {deploy_id}"))
        self.assertEqual(d, [row["id"], row["app"], row["ref"], row["commit"], row["image"], row["status"],
                             row["step"], row["error"], row["q"], row["s"], row["f"], row["by"]])
        self.assertRegex(d[11], r"^uid 0 \(D-Bus :\d+\.\d+\)$")
        db_steps = json.loads(psql(
            "SELECT json_agg(json_build_array(name, status, "
            "(extract(epoch FROM started_at) * 1000000)::bigint, (extract(epoch FROM finished_at) * 1000000)::bigint, "
            f"coalesce(exit_code, -1), coalesce(scope_unit, '')) ORDER BY position) FROM deployment_steps WHERE deployment_id = {deploy_id}"))
        self.assertEqual(steps, db_steps)
        self.assertEqual([s[0] for s in steps], ["clone", "build", "test", "snapshot", "migrate", "deploy", "cleanup"])

    def test_04_list_deployments_filters_and_hostile_values(self):
        failed_id = self.deploy("0" * 40)  # no such commit: fails in clone
        self.assertEqual(self.wait_final(failed_id)[5], "failed")
        type(self).failed_id = failed_id
        ids = lambda *a: [d[0] for d in call("ListDeployments", "ssu", *a)[0]]
        db_ids = lambda where="true": [int(x) for x in psql(
            f"SELECT id FROM deployments WHERE {where} ORDER BY id DESC").split()]

        self.assertEqual(ids("", "", 0), db_ids())
        self.assertEqual(ids("hello", "", 0), db_ids("app = 'hello'"))
        self.assertEqual(ids("", "failed", 0), db_ids("status = 'failed'"))
        self.assertEqual(ids("hello", "deployed", 0), [self.deploy_id])
        self.assertEqual(ids("", "", 1), db_ids()[:1])
        self.assertEqual(ids("", "", 4294967295), db_ids())  # capped, not refused
        self.assertEqual(ids("nosuch", "", 0), [])
        self.assertEqual(ids("", "rolled_back", 0), [])
        full = call("ListDeployments", "ssu", "", "failed", 0)[0][0]
        self.assertEqual(full[:2], [failed_id, "hello"])
        self.assertEqual(full[5], "failed")
        self.assertNotEqual(full[7], "")   # the error says why

        before = counts()
        for app in HOSTILE_APPS:
            self.assertBusError(send("ListDeployments", "string:" + app, "string:", "uint32:0"),
                                ERR + "InvalidArgument", app)
        for status in HOSTILE_STATUSES:
            self.assertBusError(send("ListDeployments", "string:", "string:" + status, "uint32:0"),
                                ERR + "InvalidArgument", status)
        self.assertEqual(counts(), before)
        self.assertEqual(psql("SELECT count(*) FROM deployments WHERE app = 'hello'"), str(len(db_ids())))

    def test_05_list_apps(self):
        os.makedirs(os.path.join(self.env.apps, "broken"))
        with open(os.path.join(self.env.apps, "broken", "infraspec.yaml"), "w") as f:
            f.write("app: broken\nrole: [unclosed\n")
        os.makedirs(os.path.join(self.env.apps, "Bad_Name"))
        with open(os.path.join(self.env.apps, "Bad_Name", "infraspec.yaml"), "w") as f:
            f.write("app: Bad_Name\nrole: worker\ndeploy: true\n")
        self.addCleanup(lambda: [os.remove(os.path.join(self.env.apps, a, "infraspec.yaml")) or
                                 os.rmdir(os.path.join(self.env.apps, a)) for a in ("broken", "Bad_Name")])

        apps = {a[0]: a for a in call("ListApps")[0]}
        self.assertEqual(sorted(apps), ["broken", "hello"])   # no app id, no entry: see Validate
        last = json.loads(psql(
            "SELECT json_build_array(id, status, coalesce(commit_sha, ''), "
            "(extract(epoch FROM coalesce(finished_at, queued_at)) * 1000000)::bigint) "
            "FROM deployments WHERE app = 'hello' ORDER BY id DESC LIMIT 1"))
        self.assertEqual(apps["hello"], ["hello", "webserver", "main", False] + last)
        self.assertEqual(apps["hello"][4], self.failed_id)
        self.assertEqual(apps["broken"], ["broken", "", "", False, 0, "", "", 0])
        # Anyone may read.
        self.assertEqual({a[0] for a in call("ListApps", prefix=NOBODY)[0]}, {"broken", "hello"})

    def test_06_get_logs_and_paging(self):
        deploy_id = self.deploy_id
        lines, cursor = call("GetLogs", "tsu", deploy_id, "", 0)
        journal = [e for e in self.env.journal(deploy_id) if e.get("NORN_APP") == "hello"]
        self.assertEqual([l[2] for l in lines], [e["MESSAGE"] for e in journal])
        self.assertEqual([l[0] for l in lines], [int(e["__REALTIME_TIMESTAMP"]) for e in journal])
        self.assertEqual([l[1] for l in lines], [e.get("NORN_STEP", "") for e in journal])
        self.assertGreater(len(lines), 7)
        self.assertTrue({"clone", "build", "deploy"} <= {l[1] for l in lines})
        self.assertEqual(cursor, journal[-1]["__CURSOR"])

        # Pages of 3 add up to the whole, in order, without gaps or repeats.
        paged, after = [], ""
        for _ in range(1000):
            page, after2 = call("GetLogs", "tsu", deploy_id, after, 3)
            self.assertLessEqual(len(page), 3)
            paged += page
            if not page:
                self.assertEqual(after2, after)
                break
            after = after2
        self.assertEqual(paged, lines)
        self.assertEqual(call("GetLogs", "tsu", deploy_id, cursor, 4294967295), [[], cursor])

        # The lines of another deployment do not leak in through its cursor.
        other, _ = call("GetLogs", "tsu", self.failed_id, "", 0)
        self.assertTrue(other)
        self.assertFalse({l[2] for l in other} & {l[2] for l in lines if "Deployment" in l[2]})

        for bad in ("garbage", "a b", "s=zz;i=1", "x" * 600, "\t", "s=;i=;b=;m=;t=;x="):
            self.assertBusError(send("GetLogs", f"uint64:{deploy_id}", "string:" + bad, "uint32:0"),
                                ERR + "InvalidArgument", bad)

    def test_07_validate(self):
        os.makedirs(os.path.join(self.env.apps, "broken"), exist_ok=True)
        with open(os.path.join(self.env.apps, "broken", "infraspec.yaml"), "w") as f:
            f.write("app: broken\nrole: webserver\nport: http\ndeploy: true\nbogus: 1\n")
        self.addCleanup(lambda: os.remove(os.path.join(self.env.apps, "broken", "infraspec.yaml")) or
                        os.rmdir(os.path.join(self.env.apps, "broken")))
        (problems,) = call("Validate", "s", "")
        broken = [p for p in problems if p[0] == "broken"]
        self.assertIn(["broken", os.path.join(self.env.apps, "broken", "infraspec.yaml"), "error", 3, 7],
                      [p[:5] for p in broken])
        self.assertTrue(any(p[2] == "warning" and "bogus" in p[5] for p in broken), broken)
        self.assertEqual([p for p in problems if p[0] == "hello" and p[2] == "error"], [])
        self.assertEqual(call("Validate", "s", "broken")[0], broken)
        self.assertEqual(call("Validate", "s", "hello", prefix=NOBODY)[0], [])
        self.assertBusError(send("Validate", "string:nosuch"), ERR + "NotFound")
        for app in HOSTILE_APPS:
            self.assertBusError(send("Validate", "string:" + app), ERR + "InvalidArgument", app)

    # --- who may change things ---

    MUTATING = [("Deploy", ["string:hello", "string:HEAD"]),
                ("Cancel", ["uint64:1"]),
                ("Rollback", ["string:hello", "uint64:0", "boolean:false"]),
                ("RestoreSnapshot", ["string:hello", "string:hello_0123456789ab_20260101T000000Z.dump"])]

    def test_08_unprivileged_caller(self):
        before = counts()
        for method, args in self.MUTATING:
            self.assertBusError(send(method, *args, prefix=NOBODY), "org.freedesktop.DBus.Error.AccessDenied",
                                method, text=r"uid 65534 is not allowed")
        self.assertEqual(counts(), before)
        # Reading is open, but for the logs.
        for method, sig, args in (("ListApps", "", ()), ("ListDeployments", "ssu", ("", "", 0)),
                                  ("GetDeployment", "t", (self.deploy_id,)), ("Validate", "s", ("",)),
                                  ("ListSnapshots", "s", ("hello",)), ("Health", "", ())):
            call(method, sig, *args, prefix=NOBODY)
        code, out, err = send("GetLogs", f"uint64:{self.deploy_id}", "string:", "uint32:5", prefix=NOBODY)
        self.assertBusError((code, out, err), "org.freedesktop.DBus.Error.AccessDenied",
                            text=r"uid 65534 is not allowed to read deployment logs \(polkit action "
                                 r"org\.norn\.read-logs\): polkit is not running")
        self.assertNotIn("Deployment", out + err)
        # Arguments are checked first: a bad one is the same answer for anyone.
        for bad in ("a b", "x" * 600, "\t"):
            self.assertBusError(send("GetLogs", f"uint64:{self.deploy_id}", "string:" + bad, "uint32:0",
                                     prefix=NOBODY), ERR + "InvalidArgument", bad)
        self.assertBusError(send("GetLogs", "uint64:0", "string:", "uint32:0", prefix=NOBODY), ERR + "NotFound")
        self.assertEqual(counts(), before)

    def test_09_admin_group_without_polkit(self):
        before = counts()
        # Authorized (no polkit on this bus), then refused for what was asked.
        self.assertBusError(send("Deploy", "string:nosuch", "string:HEAD", prefix=ADMIN), ERR + "NotFound")
        self.assertBusError(send("Cancel", "uint64:999999", prefix=ADMIN), ERR + "NotFound")
        self.assertBusError(send("Rollback", "string:nosuch", "uint64:0", "boolean:false", prefix=ADMIN),
                            ERR + "NotFound")
        self.assertBusError(send("Cancel", f"uint64:{self.deploy_id}", prefix=ADMIN), ERR + "AlreadyFinished")
        # The group comes from the bus (UnixGroupIDs), and lets its members read logs.
        self.assertEqual(call("GetLogs", "tsu", self.deploy_id, "", 0, prefix=ADMIN),
                         call("GetLogs", "tsu", self.deploy_id, "", 0))
        self.assertEqual(counts(), before)

    def test_10_polkit_refuses(self):
        before = counts()
        with Polkitd(rules(deploy="NO", rollback="NO")) as pk:
            for method, args in self.MUTATING:
                self.assertBusError(send(method, *args, prefix=NOBODY), "org.freedesktop.DBus.Error.AccessDenied",
                                    method, text="uid 65534 .*polkit refused")
            # With polkit there, the group alone is not enough.
            self.assertBusError(send("Deploy", "string:hello", "string:HEAD", prefix=ADMIN),
                                "org.freedesktop.DBus.Error.AccessDenied", text="polkit refused")
            # Asked for the caller (not for nornd), with the method's action.
            self.assertEqual(pk.asked(), [(DEPLOY, "nobody"), (DEPLOY, "nobody"), (ROLLBACK, "nobody"),
                                          (ROLLBACK, "nobody"), (DEPLOY, "nobody")])
            # root is not asked.
            self.assertBusError(send("Cancel", "uint64:999999"), ERR + "NotFound")
            self.assertEqual(len(pk.asked()), 5)
        self.assertEqual(counts(), before)

    def test_11_polkit_rules_keyed_by_action(self):
        before = counts()
        with Polkitd(rules(deploy="YES", rollback="NO")) as pk:
            # Authorized, then refused for what was asked.
            self.assertBusError(send("Cancel", "uint64:999999", prefix=NOBODY), ERR + "NotFound")
            self.assertBusError(send("Deploy", "string:nosuch", "string:HEAD", prefix=NOBODY), ERR + "NotFound")
            self.assertBusError(send("Rollback", "string:nosuch", "uint64:0", "boolean:false", prefix=NOBODY),
                                "org.freedesktop.DBus.Error.AccessDenied", text="polkit refused")
            self.assertBusError(send("RestoreSnapshot", *self.MUTATING[3][1], prefix=NOBODY), "org.freedesktop.DBus.Error.AccessDenied")
            self.assertEqual(pk.asked(), [(DEPLOY, "nobody"), (DEPLOY, "nobody"), (ROLLBACK, "nobody"),
                                          (ROLLBACK, "nobody")])
        with Polkitd(rules(deploy="NO", rollback="YES")) as pk:
            self.assertBusError(send("Rollback", "string:nosuch", "uint64:0", "boolean:false", prefix=NOBODY),
                                ERR + "NotFound")
            self.assertBusError(send("Cancel", "uint64:999999", prefix=NOBODY),
                                "org.freedesktop.DBus.Error.AccessDenied", text="polkit refused")
            self.assertBusError(send("Deploy", "string:nosuch", "string:HEAD", prefix=NOBODY),
                                "org.freedesktop.DBus.Error.AccessDenied", text="polkit refused")
            self.assertEqual(pk.asked(), [(ROLLBACK, "nobody"), (DEPLOY, "nobody"), (DEPLOY, "nobody")])
        self.assertEqual(counts(), before)

    def test_12_polkit_yes_deploys_as_caller(self):
        with Polkitd(rules(deploy="YES")) as pk:
            # Authorized by polkit, a real deploy runs and is recorded as the caller's.
            (path,) = call("Deploy", "ss", "hello", "HEAD", prefix=NOBODY)
            self.assertEqual(pk.asked(), [(DEPLOY, "nobody")])
        deploy_id = int(path.rsplit("/", 1)[1])
        d = self.wait_final(deploy_id)
        self.assertEqual(d[5], "deployed", d)
        self.assertRegex(d[11], r"^uid 65534 \(D-Bus :\d+\.\d+\)$")
        self.assertEqual(self.env.row(deploy_id)["requested_by"], d[11])

    def test_13_polkit_challenge(self):
        before = counts()
        with Polkitd(rules(deploy="AUTH_ADMIN")) as pk:
            # dbus-send does not allow interaction: polkit's challenge is passed on.
            self.assertBusError(send("Deploy", "string:hello", "string:HEAD", prefix=NOBODY),
                                "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired",
                                text="Authentication is required to deploy")
            # gdbus --interactive allows it, but no agent is there to ask.
            p = run(NOBODY + GDBUS_DEPLOY, check=False)
            self.assertNotEqual(p.returncode, 0, p.stdout)
            self.assertIn("org.freedesktop.DBus.Error.AccessDenied: Access denied: uid 65534 is not allowed to "
                          "deploy or cancel (polkit action org.norn.deploy): polkit requires authentication, "
                          "but no polkit authentication agent is running for the caller", p.stderr)
            # With a real agent for the caller: polkit asks it (so it was told
            # interaction is allowed), a wrong password fails.
            code, out, err, agent = with_agent(GDBUS_DEPLOY)
            self.assertNotEqual(code, 0, out)
            self.assertIn("AUTHENTICATING FOR org.norn.deploy", agent)
            self.assertIn("Authentication is required to deploy an app or cancel a deployment.", agent)
            self.assertIn("org.freedesktop.DBus.Error.AccessDenied: Access denied: uid 65534", err, agent)
            self.assertIn("polkit refused", err)
            # Same agent, no interaction allowed: it is not asked.
            code, out, err, agent = with_agent(["dbus-send", "--session", "--print-reply", "--dest=" + DEST[0],
                                                DEST[1], DEST[2] + ".Deploy", "string:hello", "string:HEAD"])
            self.assertIn("Error org.freedesktop.DBus.Error.InteractiveAuthorizationRequired", err)
            self.assertNotIn("AUTHENTICATING", agent)
            self.assertEqual(pk.asked(), [(DEPLOY, "nobody")] * 4)
        self.assertEqual(counts(), before)

    def test_15_polkit_decides_logs(self):
        lines = call("GetLogs", "tsu", self.deploy_id, "", 0)
        self.assertTrue(lines[0])
        with Polkitd(rules(deploy="YES", rollback="YES", read_logs="NO")) as pk:
            self.assertBusError(send("GetLogs", f"uint64:{self.deploy_id}", "string:", "uint32:0", prefix=NOBODY),
                                "org.freedesktop.DBus.Error.AccessDenied",
                                text="uid 65534 is not allowed to read deployment logs.*polkit refused")
            # With polkit there, the group alone is not enough.
            self.assertBusError(send("GetLogs", f"uint64:{self.deploy_id}", "string:", "uint32:0", prefix=ADMIN),
                                "org.freedesktop.DBus.Error.AccessDenied", text="polkit refused")
            self.assertEqual(pk.asked(), [(READ_LOGS, "nobody"), (READ_LOGS, "nobody")])
        with Polkitd(rules(read_logs="AUTH_ADMIN")) as pk:
            self.assertBusError(send("GetLogs", f"uint64:{self.deploy_id}", "string:", "uint32:0", prefix=NOBODY),
                                "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired",
                                text="Authentication is required to read deployment logs")
        with Polkitd(rules(read_logs="YES")) as pk:
            self.assertEqual(call("GetLogs", "tsu", self.deploy_id, "", 0, prefix=NOBODY), lines)
            # Deploying is still refused: the action is the logs' only.
            self.assertBusError(send("Deploy", "string:hello", "string:HEAD", prefix=NOBODY),
                                "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired")
            self.assertEqual(pk.asked(), [(READ_LOGS, "nobody"), (DEPLOY, "nobody")])
            # root is not asked.
            self.assertEqual(call("GetLogs", "tsu", self.deploy_id, "", 0), lines)
            self.assertEqual(len(pk.asked()), 2)

    def test_14_wrong_argument_types(self):
        cases = [("ListApps", ["string:x"]), ("ListDeployments", ["string:hello"]),
                 ("ListDeployments", ["string:", "string:", "int32:5"]),
                 ("ListDeployments", ["uint32:1", "string:", "uint32:5"]),
                 ("GetDeployment", ["string:1"]), ("GetDeployment", []), ("GetDeployment", ["int64:1"]),
                 ("GetLogs", [f"uint64:{self.deploy_id}", "string:"]),
                 ("GetLogs", [f"uint64:{self.deploy_id}", "uint32:1", "string:"]),
                 ("Validate", ["uint64:1"]), ("Validate", ["string:a", "string:b"]),
                 ("Deploy", ["string:hello"]), ("Cancel", ["string:1"]),
                 ("Rollback", ["string:hello", "uint64:0"]), ("RestoreSnapshot", ["string:hello"])]
        for method, args in cases:
            self.assertBusError(send(method, *args), "org.freedesktop.DBus.Error.InvalidArgs", (method, args))
            self.env.nornd.alive()
        newest = int(psql("SELECT max(id) FROM deployments WHERE status = 'deployed'"))
        self.assertEqual(call("ListDeployments", "ssu", "hello", "deployed", 1)[0][0][0], newest)


# The stock system bus's default policy (/usr/share/dbus-1/system.conf), with
# our file included as it is from system.d; any uid may connect.
SYSTEM_BUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <include>{conf}</include>
</busconfig>
"""

# Owns org.norn.Norn1 as root and emits, when told, LogLine then StepChanged.
EMITTER = r"""
import sys, dbus, dbus.lowlevel
bus = dbus.bus.BusConnection(sys.argv[1])
assert bus.request_name("org.norn.Norn1") == dbus.bus.REQUEST_NAME_REPLY_PRIMARY_OWNER
print("owned", flush=True)
sys.stdin.readline()
for member, sig, args in (("LogLine", "tssss", (7, "hello", "build", "stdout", "SECRET-LINE")),
                          ("StepChanged", "tssst", (7, "hello", "build", "succeeded", 1))):
    m = dbus.lowlevel.SignalMessage("/org/norn/Norn1", "org.norn.Norn1.Manager", member)
    m.append(*args, signature=sig)
    bus.send_message(m)
bus.flush()
print("sent", flush=True)
sys.stdin.readline()
"""


class BusPolicyTest(unittest.TestCase):
    """dbus/org.norn.Norn1.conf on a system-style dbus-daemon: LogLine (step
    output) reaches root, not other users; other signals reach everyone."""

    def test_log_line_only_for_root(self):
        d = tempfile.mkdtemp(prefix="norn-bus-")
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", d]))
        os.chmod(d, 0o755)
        socket = os.path.join(d, "bus")
        conf = os.path.join(d, "bus.conf")
        with open(conf, "w") as f:
            f.write(SYSTEM_BUS_CONF.format(socket=socket, conf=os.path.join(SOURCE_DIR, "dbus",
                                                                              "org.norn.Norn1.conf")))
        procs = []

        def start(cmd, **kw):
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
            procs.append(p)
            return p

        def kill():
            for p in procs:
                if p.poll() is None:
                    p.kill()

        def stop():
            watchdog.cancel()
            kill()
            for p in procs:
                p.wait()
                p.stdout.close()
        # Reads below block: nothing may hang the suite.
        watchdog = threading.Timer(60, kill)
        watchdog.start()
        self.addCleanup(stop)

        daemon = start(["dbus-daemon", "--nofork", "--nopidfile", "--config-file=" + conf, "--print-address"])
        address = daemon.stdout.readline().strip()
        self.assertTrue(address.startswith("unix:path="), address)

        emitter = start([sys.executable, "-c", EMITTER, address], stdin=subprocess.PIPE, cwd=d)
        self.assertEqual(emitter.stdout.readline().strip(), "owned")
        # A plain match on the sender, as any client subscribes: no eavesdropping.
        monitor = ["stdbuf", "-oL", "gdbus", "monitor", "--address", address, "--dest", "org.norn.Norn1"]
        root = start(monitor)
        nobody = start(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"] + monitor)
        for p in (root, nobody):
            out = ""
            while "is owned by" not in out:
                line = p.stdout.readline()
                self.assertTrue(line, out)
                out += line
        time.sleep(0.5)   # the matches are added before the owner is asked
        emitter.stdin.write("go\n")
        emitter.stdin.flush()
        self.assertEqual(emitter.stdout.readline().strip(), "sent")

        def seen(p):
            out = ""
            for line in p.stdout:
                out += line
                if "StepChanged" in line:
                    return out
            raise AssertionError(f"no StepChanged: {out!r}")
        root_out, nobody_out = seen(root), seen(nobody)
        self.assertIn("LogLine", root_out)
        self.assertIn("SECRET-LINE", root_out)
        self.assertNotIn("LogLine", nobody_out)
        self.assertNotIn("SECRET", nobody_out)
        self.assertIn("'succeeded'", nobody_out)


class UnavailableDatabaseTest(unittest.TestCase):
    """No database: every method that reads it says Unavailable; Validate still works."""

    def test_unavailable(self):
        with tempfile.TemporaryDirectory(dir=os.environ.get("NORN_SANDBOX_DIR")) as d:
            apps = os.path.join(d, "apps")
            os.makedirs(os.path.join(apps, "hello"))
            with open(os.path.join(apps, "hello", "infraspec.yaml"), "w") as f:
                f.write("app: hello\nrole: worker\ndeploy: true\n")
            env = {"NORN_DATABASE_URL": f"postgresql:///norn?host={d}/nowhere&connect_timeout=1",
                   "NORN_APPS_DIR": apps, "NORN_STATE_DIR": os.path.join(d, "state")}
            with Nornd(env=env) as nornd:
                wait_until(lambda: run(["busctl", "--user", "status", DEST[0]], check=False).returncode == 0,
                           what="org.norn.Norn1 on the bus")
                for method, args in (("ListApps", []), ("ListDeployments", ["string:", "string:", "uint32:0"]),
                                     ("GetDeployment", ["uint64:1"]),
                                     ("GetLogs", ["uint64:1", "string:", "uint32:0"]),
                                     ("ListSnapshots", ["string:hello"])):
                    code, out, err = send(method, *args)
                    self.assertNotEqual(code, 0, method)
                    self.assertIn("Error " + ERR + "Unavailable", err, method)
                code, out, err = send("Deploy", "string:hello", "string:HEAD")
                self.assertIn("Error " + ERR + "Unavailable", err)
                self.assertEqual(call("Validate", "s", "hello"), [[]])
                nornd.alive()


if __name__ == "__main__":
    main()
