"""The real polkitd (Debian's package polkitd) for tests of who may change
things over D-Bus: it runs on the sandbox's session bus (the bus nornd --user
is on; GDBus takes the "system bus" from DBUS_SYSTEM_BUS_ADDRESS), sees Norn's
actions (dbus/org.norn.policy) and a test's own JavaScript rules. Both are
bind-mounted over polkit's directories inside the sandbox's private mount
namespace, so the host's polkit configuration is never touched.

Every CheckAuthorization that reaches the rules is recorded (by a rule of our
own, through polkit.spawn) as "ACTION-ID USER", so a test sees what polkit was
asked and for whom."""
import glob
import json
import os
import pwd
import shutil
import subprocess
import tempfile

from nornlib import SOURCE_DIR, run, wait_until

POLKITD = "/usr/lib/polkit-1/polkitd"
ACTIONS_DIR = "/usr/share/polkit-1/actions"
RULES_DIR = "/etc/polkit-1/rules.d"
BUS_NAME = "org.freedesktop.PolicyKit1"
DBUS = ["org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus"]

# Runs first (file name order), decides nothing: records what was asked.
RECORD_RULE = """polkit.addRule(function(action, subject) {
    polkit.spawn(["/bin/sh", "-c", 'printf "%%s %%s\\\\n" "$1" "$2" >>"$3"', "sh",
                  action.id, subject.user, %s]);
});
"""


def in_sandbox_namespace():
    """True inside tools/norn-sandbox's private mount namespace (its /run)."""
    with open("/proc/self/mountinfo") as f:
        return os.environ.get("NORN_SANDBOX") == "1" and any(
            line.split()[4] == "/run" and "norn-sandbox-run" in line for line in f)


def bus_owner_pid(name):
    p = run(["busctl", "--user", "--json=short", "call"] + DBUS + ["GetConnectionUnixProcessID", "s", name],
            check=False)
    return json.loads(p.stdout)["data"][0] if p.returncode == 0 else None


class Polkitd:
    """with Polkitd(rules_js) as pk: polkitd runs with rules_js as its rules;
    pk.asked() lists what it was asked. Stops and unmounts on exit."""

    def __init__(self, rules):
        self.rules = rules
        self.dir = None
        self.proc = None
        self.mounted = []

    def __enter__(self):
        if not in_sandbox_namespace():
            raise AssertionError("Polkitd mounts over /etc/polkit-1: only inside tools/norn-sandbox")
        if bus_owner_pid(BUS_NAME) is not None:
            raise AssertionError(f"{BUS_NAME} is already on the bus")
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self):
        # polkitd drops to the polkitd user: what it reads or writes must be
        # open to it.
        user = pwd.getpwnam("polkitd")
        self.dir = tempfile.mkdtemp(prefix="polkit-")
        os.chmod(self.dir, 0o755)
        actions = os.path.join(self.dir, "actions")
        rules = os.path.join(self.dir, "rules.d")
        os.mkdir(actions, 0o755)
        os.mkdir(rules, 0o755)
        for f in glob.glob(os.path.join(ACTIONS_DIR, "*.policy")) + [
                os.path.join(SOURCE_DIR, "dbus", "org.norn.policy")]:
            shutil.copy(f, actions)
        self.record = os.path.join(self.dir, "asked")
        open(self.record, "w").close()
        os.chown(self.record, user.pw_uid, user.pw_gid)
        with open(os.path.join(rules, "00-norn-record.rules"), "w") as f:
            f.write(RECORD_RULE % json.dumps(self.record))
        with open(os.path.join(rules, "10-norn-test.rules"), "w") as f:
            f.write(self.rules)
        for src, dst in ((actions, ACTIONS_DIR), (rules, RULES_DIR)):
            run(["mount", "--bind", src, dst])
            self.mounted.append(dst)

        self.log = os.path.join(self.dir, "polkitd.log")
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=os.environ["NORN_SANDBOX_SHARED_BUS"])
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([POLKITD, "--no-debug"], env=env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"polkitd exited ({self.proc.returncode}): {self.read_log()}")
            return bus_owner_pid(BUS_NAME) == self.proc.pid
        wait_until(up, timeout=20, what="polkitd on the bus")

    def read_log(self):
        with open(self.log) as f:
            return f.read()

    def asked(self):
        """[(action id, user name)] in the order polkit was asked."""
        with open(self.record) as f:
            return [tuple(line.split()) for line in f.read().splitlines()]

    def __exit__(self, *exc):
        if self.proc:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            wait_until(lambda: bus_owner_pid(BUS_NAME) is None, what=f"{BUS_NAME} to leave the bus")
        for dst in reversed(self.mounted):
            run(["umount", dst])
        self.mounted = []
        if self.dir:
            shutil.rmtree(self.dir)
        return False
