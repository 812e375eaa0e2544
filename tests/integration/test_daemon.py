"""nornd as a process: command line, D-Bus API, database loss and recovery,
signals. Everything real: the sandbox's bus, systemd --user and PostgreSQL."""
import os
import signal
import subprocess
import time
import unittest

from nornlib import (NORNCTL, NORND, SOURCE_DIR, Nornd, free_port, main, run, wait_until)

BUS = ["busctl", "--user"]
OBJ = ["org.norn.Norn1", "/org/norn/Norn1", "org.norn.Norn1.Manager"]


def pgctl(action):
    return subprocess.run(["sh", "-c", os.environ["NORN_TEST_PGCTL"] + " " + action],
                          capture_output=True, text=True, timeout=60)


class CommandLineTest(unittest.TestCase):
    def test_version_and_help(self):
        out = run([NORND, "--version"]).stdout
        self.assertRegex(out, r"^nornd \d+\.\d+\.\d+\n$")
        out = run([NORND, "--help"]).stdout
        for word in ("--user", "--bus-introspect", "NORN_DATABASE_URL"):
            self.assertIn(word, out)

    def test_bad_option_and_argument(self):
        p = run([NORND, "--no-such-option"], check=False)
        self.assertNotEqual(p.returncode, 0)
        p = run([NORND, "stray-argument"], check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("takes no arguments", p.stderr)

    def test_bad_port_is_refused(self):
        for port in ("0", "65536", "-1", "80x", "99999999999999999999"):
            p = run([NORND, "--user"], check=False, env=dict(os.environ, NORN_PORT=port), timeout=10)
            self.assertNotEqual(p.returncode, 0, port)
            self.assertIn("NORN_PORT", p.stderr + p.stdout, port)

    def test_bus_introspect_matches_shipped_xml(self):
        out = run([NORND, "--bus-introspect"]).stdout
        with open(os.path.join(SOURCE_DIR, "dbus", "org.norn.Norn1.xml")) as f:
            shipped = f.read()
        self.assertEqual(out, shipped, "dbus/org.norn.Norn1.xml is out of date: "
                         "regenerate it with `nornd --bus-introspect`")
        self.assertIn('<interface name="org.norn.Norn1.Manager">', out)


class BusTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.nornd = Nornd().start()
        wait_until(lambda: run(BUS + ["status", "org.norn.Norn1"], check=False).returncode == 0,
                   what="org.norn.Norn1 on the bus")
        # connected and schema applied (on a busy machine that comes after the name)
        wait_until(lambda: '"database" true' in run(BUS + ["call"] + OBJ + ["Health"], check=False).stdout,
                   timeout=60, what="nornd's database connection")

    @classmethod
    def tearDownClass(cls):
        cls.nornd.__exit__(None)

    def tearDown(self):
        self.nornd.alive()

    def test_version_property(self):
        out = run(BUS + ["get-property"] + OBJ + ["Version"]).stdout
        self.assertRegex(out, r'^s "\d+\.\d+\.\d+"\n$')

    def test_health_method(self):
        def health():
            return run(BUS + ["call"] + OBJ + ["Health"]).stdout
        # nornd connects to the database after it answers: wait for that.
        wait_until(lambda: health().startswith('sa(sbs) "degraded" 3 "database" true'), timeout=30,
                   what="Health to report the database up")
        out = health()
        self.assertTrue(out.startswith('sa(sbs) "degraded" 3 "database" true'), out)
        self.assertIn('"systemd" true', out)
        self.assertIn('"kubernetes" false', out)

    def test_bad_argument_types(self):
        for args in (["Health", "s", "x"], ["Health", "u", "7"], ["Health", "as", "2", "a", "b"]):
            p = run(BUS + ["call"] + OBJ + args, check=False)
            self.assertNotEqual(p.returncode, 0, args)
            self.assertIn("rgument", p.stderr, args)  # InvalidArgs: "...arguments..."

    def test_unknown_method_and_property(self):
        p = run(BUS + ["call"] + OBJ + ["DropDatabase"], check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("Unknown method", p.stderr)
        p = run(BUS + ["set-property"] + OBJ + ["Version", "s", "9.9.9"], check=False)
        self.assertNotEqual(p.returncode, 0)
        out = run(BUS + ["get-property"] + OBJ + ["Version"]).stdout
        self.assertNotIn("9.9.9", out)

    def test_nornctl_version_and_health(self):
        p = run([NORNCTL, "--user", "version"])
        self.assertRegex(p.stdout, r"^nornctl \d+\.\d+\.\d+\nnornd \d+\.\d+\.\d+\n$")
        p = run([NORNCTL, "--user", "health"], check=False)
        self.assertEqual(p.returncode, 1, "degraded (no Kubernetes) must exit 1")
        self.assertIn("nornd: degraded", p.stdout)
        self.assertRegex(p.stdout, r"database\s+up")
        self.assertRegex(p.stdout, r"kubernetes\s+down")


class NornctlWithoutDaemonTest(unittest.TestCase):
    def test_unreachable_is_one_clear_line(self):
        # Nothing owns the name in this private bus right now.
        p = run([NORNCTL, "--user", "version"], check=False, timeout=30)
        self.assertNotEqual(p.returncode, 0)
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
        self.assertIn("not reachable", p.stderr)

    def test_no_bus_is_one_clear_line(self):
        env = dict(os.environ, DBUS_SESSION_BUS_ADDRESS="unix:path=/nonexistent/bus",
                   XDG_RUNTIME_DIR="/nonexistent")
        p = run([NORNCTL, "--user", "health"], check=False, env=env)
        self.assertNotEqual(p.returncode, 0)
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
        self.assertIn("cannot connect to the session bus", p.stderr)

    def test_usage_errors(self):
        for args in ([], ["frobnicate"], ["version", "extra"]):
            p = run([NORNCTL, "--user"] + args, check=False)
            self.assertNotEqual(p.returncode, 0, args)
            self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)


class DatabaseTest(unittest.TestCase):
    def test_refused_database_keeps_running_degraded(self):
        dead = f"postgresql://postgres@127.0.0.1:{free_port()}/norn?connect_timeout=2"
        with Nornd(env={"NORN_DATABASE_URL": dead}) as n:
            status, body = n.health()
            self.assertEqual(status, 503)
            self.assertEqual(body["components"]["database"]["status"], "down")
            time.sleep(1.0)
            n.alive()
            self.assertEqual(n.health()[1]["components"]["database"]["status"], "down")

    def test_database_stopped_mid_run_then_recovers(self):
        with Nornd() as n:
            db = lambda: n.health()[1]["components"]["database"]["status"]
            wait_until(lambda: db() == "up", what="database up")
            p = pgctl("stop -m fast")
            try:
                self.assertEqual(p.returncode, 0, p.stderr)
                wait_until(lambda: db() == "down", timeout=15, what="database reported down")
                n.alive()
            finally:
                p = pgctl("start -w")
                self.assertEqual(p.returncode, 0, p.stderr)
            wait_until(lambda: db() == "up", timeout=20, what="database reported up again")

    def test_schema_applied_once_by_concurrent_daemons(self):
        with Nornd() as a, Nornd() as b:
            for n in (a, b):
                wait_until(lambda: n.health()[1]["components"]["database"]["status"] == "up",
                           what="database up")
        out = run(["psql", os.environ["NORN_DATABASE_URL"], "-Atc",
                   "SELECT count(*), count(DISTINCT version) FROM norn_schema"]).stdout.strip()
        total, distinct = out.split("|")
        self.assertEqual(total, distinct)
        self.assertGreaterEqual(int(total), 1)


class SignalTest(unittest.TestCase):
    def test_sigterm_and_sigint_exit_cleanly(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            n = Nornd().start()
            try:
                self.assertEqual(n.stop(sig), 0, n.log())
            finally:
                n.__exit__(None)


if __name__ == "__main__":
    main()
