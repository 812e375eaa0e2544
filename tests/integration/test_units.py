"""The shipped units, for real: `meson install` into the sandbox's private
/usr, then nornd socket-activated from the installed units by the sandbox's
systemd --user manager (Type=notify, watchdog, journal), and the installed
unit files checked with systemd-analyze. Nothing runs from the checkout,
wherever it is (PrivateTmp= would hide one under /tmp)."""
import json
import os
import re
import time
import unittest

from installed import environment_line, installed_path, link_units, meson_install, unlink_units
from nornlib import BUILD_DIR, free_port, http_request, main, run, wait_until

SYSTEMCTL = ["systemctl", "--user"]
INSTALLED = {}


def setUpModule():
    INSTALLED.update(meson_install(BUILD_DIR))


def unit_dir():
    return os.path.dirname(installed_path(INSTALLED, "/systemd/system/nornd.service"))


def show(unit, *props):
    out = run(SYSTEMCTL + ["show", unit] + [f"-p{p}" for p in props]).stdout
    return dict(line.split("=", 1) for line in out.strip().splitlines())


class SocketActivationTest(unittest.TestCase):
    def setUp(self):
        self.port = free_port()
        # The user manager runs the installed units; WatchdogSec short so the
        # test sees pings matter.
        self.nornd = link_units(unit_dir(), environment_line("NORN_LOG_LEVEL", "debug") + "WatchdogSec=2s\n",
                                socket_listen=f"127.0.0.1:{self.port}")
        self.addCleanup(unlink_units)

    def test_first_connection_activates_ready_healthy_daemon(self):
        run(SYSTEMCTL + ["start", "nornd.socket"])
        self.assertEqual(show("nornd.service", "ActiveState")["ActiveState"], "inactive")

        status, body, _ = http_request(self.port, "GET", "/api/health", timeout=30)
        self.assertIn(status, (200, 503))
        self.assertEqual(body["components"]["database"]["status"] in ("up", "down"), True)
        wait_until(lambda: http_request(self.port, "GET", "/api/health")[1]["components"]
                   ["database"]["status"] == "up", what="database up")

        # Type=notify: "active (running)" only after READY=1.
        st = show("nornd.service", "ActiveState", "SubState", "Type", "StatusText", "MainPID")
        self.assertEqual((st["ActiveState"], st["SubState"], st["Type"]), ("active", "running", "notify"))
        # the installed binary, not one of the build tree
        self.assertEqual(os.readlink(f"/proc/{st['MainPID']}/exe"), self.nornd)
        self.assertNotEqual(st["MainPID"], "0")
        wait_until(lambda: "Degraded" in show("nornd.service", "StatusText")["StatusText"],
                   what="STATUS= to report degraded (no Kubernetes configured)")

        # The watchdog (2s) is kept fed: still the same process, no restarts.
        time.sleep(5)
        st2 = show("nornd.service", "ActiveState", "MainPID", "NRestarts")
        self.assertEqual((st2["ActiveState"], st2["MainPID"], st2["NRestarts"]),
                         ("active", st["MainPID"], "0"))

        # Structured journal entries from the daemon itself.
        out = run(["journalctl", "--no-pager", "-o", "json", f"_PID={st['MainPID']}",
                   "SYSLOG_IDENTIFIER=nornd"]).stdout
        entries = [json.loads(l) for l in out.splitlines() if l.strip()]
        msgs = {e["MESSAGE"]: e for e in entries}
        self.assertIn("Listening on 1 socket(s) passed by systemd.", msgs, list(msgs)[:20])
        self.assertIn("CODE_FILE", msgs["Listening on 1 socket(s) passed by systemd."])

        run(SYSTEMCTL + ["stop", "nornd.service"])
        st = show("nornd.service", "ActiveState", "Result")
        self.assertEqual((st["ActiveState"], st["Result"]), ("inactive", "success"))


class UnitFilesTest(unittest.TestCase):
    def test_systemd_analyze_verify(self):
        units = [os.path.join(unit_dir(), u) for u in ("nornd.service", "nornd.socket", "norn.slice")]
        p = run(["systemd-analyze", "verify", "--man=no", *units], check=False)
        problems = [l for l in (p.stdout + p.stderr).splitlines() if "nornd" in l or "norn.slice" in l]
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(problems, [], p.stdout + p.stderr)

    def test_service_is_hardened(self):
        path = os.path.join(unit_dir(), "nornd.service")
        with open(path) as f:
            text = f.read()
        for setting in ("Type=notify", "ProtectSystem=strict", "PrivateTmp=yes", "NoNewPrivileges=yes",
                        "StateDirectory=norn", "RuntimeDirectory=norn", "WatchdogSec=",
                        "ExecStart=" + installed_path(INSTALLED, "/sbin/nornd")):
            self.assertIn(setting, text)
        p = run(["systemd-analyze", "security", "--offline=yes", "--no-pager", path], check=False)
        m = re.search(r"Overall exposure level for nornd.service: (\d+\.\d+)", p.stdout + p.stderr)
        self.assertIsNotNone(m, p.stdout + p.stderr)
        self.assertLess(float(m.group(1)), 4.0, p.stdout)

    def test_everything_a_host_needs_is_installed(self):
        for suffix in ("/sbin/nornd", "/bin/nornctl", "/systemd/system/nornd.socket", "/systemd/system/norn.slice",
                       "/dbus-1/system.d/org.norn.Norn1.conf", "/dbus-1/system-services/org.norn.Norn1.service",
                       "/dbus-1/interfaces/org.norn.Norn1.xml", "/polkit-1/actions/org.norn.policy",
                       "/bash-completion/completions/nornctl", "/man/man8/nornd.8", "/man/man1/nornctl.1",
                       "/man/man5/infraspec.yaml.5", "/man/man5/nornd.env.5", "/lib/sysusers.d/norn.conf",
                       "/lib/tmpfiles.d/norn.conf", "/systemd/catalog/norn.catalog",
                       "/doc/norn/examples/nornd.env"):
            self.assertTrue(os.path.exists(installed_path(INSTALLED, suffix)), suffix)
        # the schema, where the installed nornd looks for it
        self.assertTrue(os.path.exists(os.path.join(installed_path(INSTALLED, "/share/norn/sql"), "0001-init.sql")))
        # the unit's documentation exists
        with open(os.path.join(unit_dir(), "nornd.service")) as f:
            self.assertIn("Documentation=man:nornd(8)", f.read())
        man = os.path.dirname(os.path.dirname(installed_path(INSTALLED, "/man/man8/nornd.8")))
        p = run(["man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z",
                 os.path.join(man, "man8", "nornd.8")], check=False, env=dict(os.environ, MANWIDTH="80"))
        self.assertEqual((p.returncode, p.stderr), (0, ""))


if __name__ == "__main__":
    main()
