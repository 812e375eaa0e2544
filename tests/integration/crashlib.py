"""Crash fixtures: make a deploy stop deterministically inside any of its
seven steps, with a grandchild in its own session, then kill or stop nornd,
the bus or PostgreSQL and measure what is left. Used by test_crash.py and
tools/crash-campaign.

How a step is held (nothing is timed by luck):
  clone    a `git` wrapper first in nornd's PATH
  build    a `buildah` wrapper (NORN_BUILDER=buildah)
  test     build.test starts with the hold script
  snapshot a `pg_dump` wrapper (it creates pg_dump's output file first, as
           pg_dump does)
  migrate  migrations.command starts with the hold script
  deploy   the Kubernetes stand-in's never-ready annotation: the rollout never
           completes, nornd follows it (no process runs in this step)
  cleanup  an `rm` wrapper
While held, the step's process has a child in its process group and a
grandchild in a session of its own (setsid), their pids in CTL/pids-<step>.
The app commands (test, migrate) run as norn-step in their own mount and PID
namespaces, where only the work dir is writable: they leave their pids in
<work dir>/.norn-hold/ instead, as pids of their namespace, which
held_pids() turns into the host's.
"""
import glob
import json
import os
import re
import signal
import subprocess
import time

from fixtures import example_app_files, write_files
from nornlib import NORNCTL, Nornd, run, wait_until
from pipeline_env import PipelineEnv, psql

STEPS = ("clone", "build", "test", "snapshot", "migrate", "deploy", "cleanup")
NEVER_READY = "standin.norn.dev/never-ready"
IN_FLIGHT = "status NOT IN ('deployed', 'failed', 'rolled_back')"

HOLD = r"""#!/bin/sh
# hold STEP: when CTL/hold-at says STEP, stay here (with a child and a
# grandchild in its own session) until hold-at changes; else return at once.
ctl=@CTL@
[ "$(cat "$ctl/hold-at" 2>/dev/null)" = "$1" ] || exit 0
# A sandboxed app command can write only to its work dir (its cwd).
out=$ctl
[ -w "$out" ] || out=$PWD/.norn-hold
mkdir -p "$out" || { echo "norn-hold: cannot write $out" >&2; exit 97; }
setsid sh -c 'echo $$ >"$1"; exec sleep 100000' sh "$out/gc-$1" </dev/null >/dev/null 2>&1 &
sleep 100000 </dev/null >/dev/null 2>&1 &
child=$!
wait_gc=0
while [ ! -s "$out/gc-$1" ] && [ $wait_gc -lt 600 ]; do sleep 0.05; wait_gc=$((wait_gc + 1)); done
# The PID namespace first: the pids are its own.
echo "$(readlink /proc/self/ns/pid) $$ $child $(cat "$out/gc-$1")" >"$out/pids-$1.tmp" &&
    mv "$out/pids-$1.tmp" "$out/pids-$1" || { echo "norn-hold: cannot write $out/pids-$1" >&2; exit 97; }
echo "norn-hold: $1 held"
while [ "$(cat "$ctl/hold-at" 2>/dev/null)" = "$1" ]; do sleep 0.1; done
kill "$child" "$(cat "$out/gc-$1")" 2>/dev/null
echo "norn-hold: $1 released"
exit 0
"""

WRAPPER = """#!/bin/sh
@CTL@/hold @STEP@
exec @REAL@ "$@"
"""

# pg_dump opens its output file before it reads anything: held, it leaves
# the same empty file a pg_dump waiting on a lock does.
PG_DUMP_WRAPPER = """#!/bin/sh
if [ "$(cat @CTL@/hold-at 2>/dev/null)" = snapshot ]; then
    prev=
    for a in "$@"; do [ "$prev" = -f ] && : >"$a"; prev=$a; done
fi
@CTL@/hold snapshot
exec @REAL@ "$@"
"""


def host_pid(ns, pid):
    """The host's pid of the process that is pid in PID namespace ns (as
    readlink /proc/PID/ns/pid gives it)."""
    if os.readlink("/proc/self/ns/pid") == ns:
        return pid
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{d}/ns/pid") != ns:
                continue
            with open(f"/proc/{d}/status") as f:
                nspid = next(l for l in f if l.startswith("NSpid:")).split()
        except (OSError, StopIteration):
            continue
        if int(nspid[-1]) == pid:
            return int(d)
    raise AssertionError(f"no process is pid {pid} in {ns}")


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def scopes(pattern="norn-*.scope"):
    out = run(["systemctl", "--user", "list-units", "--all", "--plain", "--no-legend", pattern],
              check=False).stdout
    return [l.split()[0] for l in out.splitlines() if l.strip()]


def which(name):
    for d in ("/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"):
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    raise RuntimeError(f"{name} not found")


def parse_client(out):
    """What nornctl deploy showed: ({step: succeeded|failed|skipped}, final status, error)."""
    steps, status, error = {}, None, None
    for line in out.splitlines():
        m = re.match(r"^(\u2713|\u2717) (\w+) \(", line)
        if m:
            steps[m.group(2)] = "succeeded" if m.group(1) == "\u2713" else "failed"
            continue
        m = re.match(r"^- (\w+) skipped", line)
        if m:
            steps[m.group(1)] = "skipped"
            continue
        m = re.match(r"^deployment \d+ of [\w-]+: (\w+)(?:: (.*))?$", line)
        if m and m.group(1) != "queued" and "queued" not in line.split(":")[0]:
            status, error = m.group(1), m.group(2)
    return steps, status, error


class CrashEnv(PipelineEnv):
    """PipelineEnv whose hello app can be held in any step."""

    def __init__(self, nornd_env=None, **kw):
        self.ctl = None
        super().__init__(nornd_env=nornd_env, **kw)

    def __enter__(self):
        import tempfile
        self.ctl = tempfile.mkdtemp(prefix="crash-ctl-", dir=os.environ.get("NORN_SANDBOX_DIR"))
        os.chmod(self.ctl, 0o755)
        bindir = os.path.join(self.ctl, "bin")
        os.makedirs(bindir)
        hold = os.path.join(self.ctl, "hold")
        with open(hold, "w") as f:
            f.write(HOLD.replace("@CTL@", self.ctl))
        os.chmod(hold, 0o755)
        for tool, step in (("git", "clone"), ("buildah", "build"), ("pg_dump", "snapshot"), ("rm", "cleanup")):
            p = os.path.join(bindir, tool)
            with open(p, "w") as f:
                f.write((PG_DUMP_WRAPPER if tool == "pg_dump" else WRAPPER).replace("@CTL@", self.ctl)
                        .replace("@STEP@", step).replace("@REAL@", which(tool)))
            os.chmod(p, 0o755)
        self.nornd_env = dict(self.nornd_env)
        self.nornd_env["PATH"] = bindir + ":" + os.environ.get("PATH", "/usr/bin:/bin")
        super().__enter__()
        self.write_app()
        return self

    def __exit__(self, *exc):
        self.release()
        self.kube_release()
        super().__exit__(*exc)
        import shutil
        shutil.rmtree(self.ctl, ignore_errors=True)

    def write_app(self):
        files = example_app_files(self.repo.file_url)
        spec = files["infraspec.yaml"]
        hold = os.path.join(self.ctl, "hold")
        spec = re.sub(r"(?m)^(  test: )(.*)$", lambda m: m.group(1) + json.dumps(
            f"{hold} test && {json.loads(m.group(2)) if m.group(2).startswith(chr(34)) else m.group(2)}"), spec)
        spec = re.sub(r"(?m)^(  command: )(.*)$", lambda m: m.group(1) + json.dumps(
            f"{hold} migrate && {json.loads(m.group(2)) if m.group(2).startswith(chr(34)) else m.group(2)}"), spec)
        assert f"{hold} test" in spec and f"{hold} migrate" in spec, spec
        files["infraspec.yaml"] = spec
        self.add_app("hello", files)

    # --- holding a step ---

    def hold(self, step):
        for f in os.listdir(self.ctl):
            if f.startswith(("pids-", "gc-")):
                os.unlink(os.path.join(self.ctl, f))
        with open(os.path.join(self.ctl, "hold-at"), "w") as f:
            f.write(step)
        if step == "deploy":
            # The cluster must be running something else, or nornd's PATCH
            # changes nothing and there is no rollout to follow.
            self.kube_patch({NEVER_READY: "true"}, image="hello:before-crash")

    def release(self):
        if self.ctl:
            with open(os.path.join(self.ctl, "hold-at"), "w") as f:
                f.write("")

    def kube_release(self):
        if getattr(self, "kube", None):
            self.kube_patch({NEVER_READY: None})

    def kube_patch(self, annotations, image=None):
        body = {"metadata": {"annotations": annotations}}
        if image:
            body["spec"] = {"template": {"spec": {"containers": [{"name": "hello", "image": image}]}}}
        status, obj = self.kube.request("PATCH", "/apis/apps/v1/namespaces/default/deployments/hello",
                                        body, "application/strategic-merge-patch+json")
        assert status == 200, (status, obj)

    def pids_file(self, step, deploy_id=None):
        """CTL/pids-<step>, or a sandboxed app command's <work dir>/.norn-hold/pids-<step>."""
        path = os.path.join(self.ctl, "pids-" + step)
        if os.path.exists(path):
            return path
        workdir = f"hello-{deploy_id}" if deploy_id is not None else "*"
        found = glob.glob(os.path.join(self.state, "work", workdir, ".norn-hold", "pids-" + step))
        return found[0] if found else None

    def not_holding(self, step, deploy_id):
        """Why deploy_id will never be held in step (None while it still may be)."""
        if deploy_id is None:
            return None
        row = self.row(deploy_id)
        st = self.step_status(deploy_id, step)
        # Cleanup runs after the row is final (deployed or failed): only its own end counts there.
        final = row["status"] in ("deployed", "failed", "rolled_back") and step != "cleanup"
        if final or st in ("succeeded", "failed", "skipped"):
            return (f"deployment {deploy_id} never held in {step}: it is {row['status']} "
                    f"({row['error']}), step {step} {st or 'not recorded'}\n" +
                    json.dumps({s: v["status"] for s, v in self.steps(deploy_id).items()}) +
                    "\n" + self.nornd.log()[-3000:])
        return None

    def held_pids(self, step, deploy_id=None, timeout=120):
        """Waits until step is held; its (process, child, grandchild) pids as the
        host sees them, () for deploy. Fails at once, saying why, when the
        deployment ended or went past step instead."""
        if step == "deploy":
            return ()

        def held():
            why = self.not_holding(step, deploy_id)
            if why:
                raise AssertionError(why)
            return self.pids_file(step, deploy_id)
        path = wait_until(held, timeout=timeout, what=f"step {step} to be held")
        with open(path) as f:
            ns, *pids = f.read().split()
        return tuple(host_pid(ns, int(p)) for p in pids)

    def wait_held(self, step, deploy_id, timeout=120):
        """Held and recorded: the step's row is running (for deploy: the image PATCH is done)."""
        pids = self.held_pids(step, deploy_id, timeout)
        wait_until(lambda: self.step_status(deploy_id, step) == "running", timeout=timeout,
                   what=f"step {step} recorded running")
        if step == "deploy":
            wait_until(lambda: self.kube.image("hello") == self.row(deploy_id).get("image_tag"),
                       timeout=timeout, what="image PATCH, rollout followed")
        return pids

    def step_status(self, deploy_id, step):
        return psql(f"SELECT status FROM deployment_steps WHERE deployment_id = {deploy_id} AND name = '{step}'")

    # --- deploying ---

    def start_deploy(self, app="hello"):
        """nornctl deploy in the background: (process, deployment id)."""
        p = subprocess.Popen([NORNCTL, "--user", "deploy", app], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
        first = p.stdout.readline()
        m = re.match(r"^deployment (\d+) ", first)
        if not m:
            p.kill(); rest = p.communicate()[0]
            raise AssertionError("nornctl deploy did not queue:\n" + repr(first) + rest)
        p.first_line = first
        return p, int(m.group(1))

    def finish_client(self, p, timeout=120):
        out = p.first_line + p.communicate(timeout=timeout)[0]
        return p.returncode, out

    # --- nornd ---

    def restart_nornd(self):
        """A new nornd with the same environment (the old one must be gone)."""
        old = self.nornd
        self.nornd = Nornd(env={k: v for k, v in old.env.items()}, port=old.port).start()
        wait_until(lambda: self.nornd.health()[1]["components"]["database"]["status"] == "up",
                   timeout=60, what="database up")
        wait_until(lambda: "Start-up recovery done" in self.nornd.log(), timeout=60,
                   what="start-up recovery")
        return old

    # --- measuring ---

    def partial_snapshots(self):
        snap = os.path.join(self.state, "snapshots")
        found = []
        for root, _, files in os.walk(snap):
            found += [os.path.join(root, f) for f in files if f.endswith(".partial") or
                      os.path.getsize(os.path.join(root, f)) == 0]
        return found

    def leftovers(self, pids=()):
        """What a crash left: counts of in-flight rows, scopes, processes, dirs (+ partial dumps)."""
        return {
            "rows": int(psql(f"SELECT count(*) FROM deployments WHERE {IN_FLIGHT}")),
            "scopes": len(scopes()),
            "procs": sum(1 for p in pids if alive(p)),
            "dirs": len(self.workdirs()) + len(self.partial_snapshots()),
        }

    def history_agrees(self, deploy_id, client_out):
        """What the client saw matches what PostgreSQL holds: every step end it
        showed, and its final status and error if it saw one. Returns (ok, why)."""
        steps, status, error = parse_client(client_out)
        db_steps = {s: v["status"] for s, v in self.steps(deploy_id).items()}
        row = self.row(deploy_id)
        why = []
        for s, st in steps.items():
            if db_steps.get(s) != st:
                why.append(f"{s}: client {st}, db {db_steps.get(s)}")
        if status is not None:
            if row["status"] != status:
                why.append(f"status: client {status}, db {row['status']}")
            if (error or None) != (row["error"] or None):
                why.append(f"error: client {error!r}, db {row['error']!r}")
        if row["status"] in ("deployed", "failed", "rolled_back"):
            running = [s for s, v in db_steps.items() if v == "running"]
            if running:
                why.append("db: final row with running step(s) " + ",".join(running))
            # Once the client saw the deploy step succeed, the cluster runs the
            # new image: anything but deployed rewrites what happened.
            if steps.get("deploy") == "succeeded" and row["status"] != "deployed":
                why.append(f"client saw deploy succeed, db {row['status']} ({row['error']})")
        return (not why), "; ".join(why)

    def kill_nornd(self, sig=signal.SIGKILL):
        self.nornd.proc.send_signal(sig)
        self.nornd.proc.wait(60)
        return self.nornd.proc.returncode

    def wait_no_scopes(self, timeout=30):
        wait_until(lambda: not scopes(), timeout=timeout, what="no norn-*.scope left")


def pgctl(action):
    return subprocess.run(["sh", "-c", os.environ["NORN_TEST_PGCTL"] + " " + action],
                          capture_output=True, text=True, timeout=120)


def time_it(fn):
    t = time.monotonic()
    r = fn()
    return r, time.monotonic() - t
