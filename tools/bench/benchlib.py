"""Shared parts of the tools/bench-* benchmarks (stdlib only).

Each benchmark re-executes itself inside tools/norn-sandbox (enter_sandbox),
starts a nornd with apps of trivial steps (TrivialNornd) and measures it with
/proc (cpu_seconds, memory_breakdown) and the C clients of
tools/bench/ws-clients.c (WsClients, ws_floor). Numbers only make sense as
ratios within one run: the machine is shared.
"""
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("NORN_BUILD_DIR") or os.path.join(ROOT, "build")
WS_CLIENTS = os.path.join(BUILD, "tools", "bench", "ws-clients")
TOKEN = "bench-token-" + os.urandom(8).hex()


def enter_sandbox(script):
    """Outside the sandbox: build, then exec script again inside it."""
    if os.environ.get("NORN_SANDBOX"):
        sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
        return
    if not os.path.exists(os.path.join(BUILD, "build.ninja")):
        subprocess.run(["meson", "setup", BUILD, ROOT], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["ninja", "-C", BUILD], check=True, stdout=subprocess.DEVNULL)
    os.environ["NORN_BUILD_DIR"] = BUILD
    os.execv(os.path.join(ROOT, "tools", "norn-sandbox"),
             ["norn-sandbox", "/usr/bin/python3", os.path.abspath(script)] + sys.argv[1:])


def cache_dir():
    """bench-cache/ beside the sandbox dirs (NORN_SANDBOX_BASE): kept between
    runs, where the benchmarks keep fixtures that take long to make. Each
    user of it keys its entries by a version string."""
    d = os.path.join(os.path.dirname(os.environ["NORN_SANDBOX_DIR"]), "bench-cache")
    os.makedirs(d, exist_ok=True)
    return d


def raise_nofile(n):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, n)), hard))  # inherited by nornd


# --------------------------------------------------------------------------
# /proc

def cpu_seconds(pid):
    """utime + stime of pid (all its threads), seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def smaps_rollup(pid):
    """{field: kB} of /proc/pid/smaps_rollup."""
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            m = re.match(r"(\w+):\s+(\d+) kB", line)
            if m:
                out[m.group(1)] = int(m.group(2))
    return out


def _mapping_group(name, exe):
    if not name:
        return "[anon]"
    if name == exe:
        return "nornd (binary)"
    if name.startswith("["):
        return "[stack]" if name.startswith("[stack") else name
    base = os.path.basename(name)
    if ".so" in base:
        return re.sub(r"\.so.*", ".so", base)
    return base


def smaps_groups(pid):
    """{group: {Rss, Private_Dirty, Shared_Dirty, Private_Clean, Shared_Clean}}
    from /proc/pid/smaps: [heap], [stack], [anon], each shared library, the binary."""
    exe = os.readlink(f"/proc/{pid}/exe")
    keys = ("Rss", "Private_Dirty", "Shared_Dirty", "Private_Clean", "Shared_Clean")
    groups, cur = {}, None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split(None, 5)
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                name = head[5].strip() if len(head) > 5 else ""
                cur = groups.setdefault(_mapping_group(name, exe), dict.fromkeys(keys, 0))
            elif cur is not None and head and head[0].rstrip(":") in keys:
                cur[head[0].rstrip(":")] += int(head[1])
    return groups


def memory_breakdown(pid, top=14):
    """Lines of a table: smaps_rollup totals, then the mappings by RSS."""
    roll = smaps_rollup(pid)
    groups = smaps_groups(pid)
    lines = [f"smaps_rollup: Rss {roll.get('Rss', 0)} kB, Pss {roll.get('Pss', 0)} kB, "
             f"Private_Dirty {roll.get('Private_Dirty', 0)} kB, Anonymous {roll.get('Anonymous', 0)} kB, "
             f"Shared_Clean {roll.get('Shared_Clean', 0)} kB", ""]
    rows = sorted(groups.items(), key=lambda kv: -kv[1]["Rss"])
    shown, rest = rows[:top], rows[top:]
    table = [(name, g["Rss"], g["Private_Dirty"], g["Shared_Dirty"], g["Private_Clean"] + g["Shared_Clean"])
             for name, g in shown]
    if rest:
        table.append((f"({len(rest)} more mappings)", sum(g["Rss"] for _, g in rest),
                      sum(g["Private_Dirty"] for _, g in rest), sum(g["Shared_Dirty"] for _, g in rest),
                      sum(g["Private_Clean"] + g["Shared_Clean"] for _, g in rest)))
    lines += table_lines(("mapping", "Rss kB", "Priv dirty", "Shr dirty", "clean"), table)
    return lines


# --------------------------------------------------------------------------
# output

def table_lines(headers, rows):
    cells = [[str(h) for h in headers]] + [[c if isinstance(c, str) else _fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    out = ["| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells[0], widths)))
           + " |",
           "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    for r in cells[1:]:
        out.append("| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                   + " |")
    return out


def print_table(headers, rows):
    print("\n".join(table_lines(headers, rows)))


def _fmt(x):
    if isinstance(x, float):
        return f"{x:.2f}" if abs(x) < 100 else f"{x:.0f}"
    return str(x)


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


# --------------------------------------------------------------------------
# nornd with trivial apps

SPEC = """app: {name}
role: webserver
port: 8080
deploy: true
build:
  dockerfile: Dockerfile
  test: "true"
"""


# No build section: clone (a copy of the app dir), deploy, cleanup; the
# other steps are recorded as skipped.
SPEC_NO_BUILD = """app: {name}
role: webserver
port: 8080
deploy: true
"""


class TrivialNornd:
    """nornd --user in the sandbox with apps `names` (FROM scratch + COPY, a
    test of `true`), the Kubernetes stand-in (instant rollouts) and buildah.
    .nornd (nornlib.Nornd), .pid, .port, .dir."""

    def __init__(self, names=("bench",), env=None, prefix="bench", spec=SPEC):
        self.names, self.extra_env, self.prefix, self.spec = names, env or {}, prefix, spec

    def __enter__(self):
        from fixtures import Buildah, write_files
        from nornlib import Nornd, wait_until
        from pipeline_env import KubeStandin
        self.dir = tempfile.mkdtemp(prefix=f"{self.prefix}-", dir=os.environ["NORN_SANDBOX_DIR"])
        apps = os.path.join(self.dir, "apps")
        for name in self.names:
            write_files(os.path.join(apps, name), {
                "infraspec.yaml": self.spec.format(name=name), "Dockerfile": "FROM scratch\nCOPY index.html /\n",
                "index.html": f"{name}\n"})
        self.kube = KubeStandin(self.dir, tuple(self.names), rollout_seconds=0)
        self.buildah = Buildah().__enter__()
        env = dict(self.buildah.overrides, NORN_APPS_DIR=apps, NORN_STATE_DIR=os.path.join(self.dir, "state"),
                   NORN_BUILDER="buildah", KUBECONFIG=self.kube.kubeconfig, NORN_LOG_LEVEL="info",
                   NORN_API_TOKEN=TOKEN,
                   # All clients come from 127.0.0.1: one peer, over the default 256 connections.
                   NORN_HTTP_PEER_MAX_CONNECTIONS="2048")
        env.update(self.extra_env)
        self.nornd = Nornd(env=env).start()
        self.pid, self.port = self.nornd.proc.pid, self.nornd.port
        wait_until(lambda: self.nornd.health()[0] == 200, timeout=120, what="nornd healthy")
        return self

    def __exit__(self, *exc):
        self.nornd.__exit__(None)
        self.kube.close()
        self.buildah.__exit__(None, None, None)

    def deploy(self, app="bench", follow=True):
        from nornlib import NORNCTL, run
        return run([NORNCTL, "--user", "deploy", app] + ([] if follow else ["--no-follow"]), timeout=600)


# --------------------------------------------------------------------------
# the C clients

def _parse(out):
    """ws-clients' report: {"events": [(seq, emitted, first, last, count)] (s), "frames": ...}."""
    res = {"events": []}
    for line in out.splitlines():
        f = line.split()
        if not f:
            continue
        if f[0] == "event":
            seq, em, first, last, count = (int(x) for x in f[1:6])
            res["events"].append((seq, em / 1e6, first / 1e6, last / 1e6, count))
        elif f[0] == "frames":
            res.update(frames=int(f[1]), bytes=int(f[3]), step_frames=int(f[5]), step_bytes=int(f[7]))
        elif f[0] == "writer_cpu_ns":
            res.update(writer_cpu=int(f[1]) / 1e9, writes=int(f[3]))
    return res


class WsClients:
    """`ws-clients connect`: n subscribed clients; .finish() waits for them to
    have seen n_done deployments end and returns the parsed report."""

    def __init__(self, port, n, n_done, path="/ws?appId=bench", threads=2, timeout=900):
        self.n = n
        self.proc = subprocess.Popen([WS_CLIENTS, "connect", str(port), TOKEN, path, str(n), str(n_done),
                                      str(min(threads, n)), str(timeout)],
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if line.split() != ["ready", str(n)]:
            self.proc.kill()
            raise RuntimeError(f"ws-clients did not get ready: {line!r}")

    def finish(self, timeout=900):
        out, _ = self.proc.communicate(timeout=timeout)
        if self.proc.returncode != 0:
            raise RuntimeError(f"ws-clients failed ({self.proc.returncode})")
        return _parse(out)


def ws_floor(n, events, frame_bytes, threads=2, gap_ms=10):
    out = subprocess.run([WS_CLIENTS, "floor", str(n), str(events), str(frame_bytes), str(min(threads, n)),
                          str(gap_ms)], check=True, stdout=subprocess.PIPE, text=True, timeout=900).stdout
    return _parse(out)


def last_latencies(res):
    """Per step event: seconds from emission to the last client."""
    return [last - em for _seq, em, _first, last, _count in res["events"] if em > 0]


def wait_settled(seconds=1.0):
    time.sleep(seconds)
