"""The shipped units, for real: nornd socket-activated by the sandbox's
systemd --user manager (Type=notify, watchdog, journal), and the unit files
checked with systemd-analyze."""
import json
import os
import re
import shutil
import tempfile
import time
import unittest

from nornlib import (BUILD_DIR, NORND, SOURCE_DIR, free_port, http_request, main, run, sanitizer_dropin,
                     wait_until)

USER_UNIT_DIR = os.path.join(os.environ.get("XDG_RUNTIME_DIR", "/nonexistent"), "systemd", "user")
SYSTEMCTL = ["systemctl", "--user"]


def service_text(exec_start, extra=""):
    with open(os.path.join(BUILD_DIR, "units", "nornd.service")) as f:
        text = f.read()
    text = re.sub(r"^ExecStart=.*$", "ExecStart=" + exec_start, text, flags=re.M)
    return text.replace("[Service]\n", "[Service]\n" + extra, 1)


def show(unit, *props):
    out = run(SYSTEMCTL + ["show", unit] + [f"-p{p}" for p in props]).stdout
    return dict(line.split("=", 1) for line in out.strip().splitlines())


class SocketActivationTest(unittest.TestCase):
    def setUp(self):
        os.makedirs(USER_UNIT_DIR, exist_ok=True)
        self.port = free_port()
        with open(os.path.join(SOURCE_DIR, "units", "nornd.socket")) as f:
            sock = f.read().replace("127.0.0.1:8800", f"127.0.0.1:{self.port}")
        with open(os.path.join(USER_UNIT_DIR, "nornd.socket"), "w") as f:
            f.write(sock)
        env = (f"Environment=NORN_DATABASE_URL={os.environ['NORN_DATABASE_URL']}\n"
               "Environment=NORN_LOG_LEVEL=debug\n")
        with open(os.path.join(USER_UNIT_DIR, "nornd.service"), "w") as f:
            # The user manager runs this exact unit; WatchdogSec short so the test sees pings matter.
            f.write(service_text(NORND + " --user", env).replace("WatchdogSec=30s", "WatchdogSec=2s"))
        self.dropin = sanitizer_dropin(USER_UNIT_DIR, "nornd.service")
        run(SYSTEMCTL + ["daemon-reload"])

    def tearDown(self):
        run(SYSTEMCTL + ["stop", "nornd.socket", "nornd.service"], check=False)
        for u in ("nornd.socket", "nornd.service"):
            os.unlink(os.path.join(USER_UNIT_DIR, u))
        if self.dropin:
            shutil.rmtree(self.dropin)
        run(SYSTEMCTL + ["daemon-reload"])

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
        with tempfile.TemporaryDirectory() as d:
            shutil.copy(os.path.join(SOURCE_DIR, "units", "nornd.socket"), d)
            shutil.copy(os.path.join(SOURCE_DIR, "units", "norn.slice"), d)
            with open(os.path.join(d, "nornd.service"), "w") as f:
                f.write(service_text(NORND))
            p = run(["systemd-analyze", "verify", "--man=no",
                     *(os.path.join(d, u) for u in ("nornd.service", "nornd.socket", "norn.slice"))],
                    check=False)
            problems = [l for l in (p.stdout + p.stderr).splitlines()
                        if "nornd" in l or "norn.slice" in l]
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            self.assertEqual(problems, [], p.stdout + p.stderr)

    def test_service_is_hardened(self):
        with open(os.path.join(BUILD_DIR, "units", "nornd.service")) as f:
            text = f.read()
        for setting in ("Type=notify", "ProtectSystem=strict", "PrivateTmp=yes", "NoNewPrivileges=yes",
                        "StateDirectory=norn", "RuntimeDirectory=norn", "WatchdogSec="):
            self.assertIn(setting, text)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "nornd.service")
            with open(path, "w") as f:
                f.write(service_text(NORND))
            p = run(["systemd-analyze", "security", "--offline=yes", "--no-pager", path], check=False)
            m = re.search(r"Overall exposure level for nornd.service: (\d+\.\d+)", p.stdout + p.stderr)
            self.assertIsNotNone(m, p.stdout + p.stderr)
            self.assertLess(float(m.group(1)), 4.0, p.stdout)


if __name__ == "__main__":
    main()
