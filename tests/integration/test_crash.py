"""Crash safety (issue 11): a clean stop ends what nornd started, a killed
pg_dump leaves no partial snapshot, and losing the bus ends nornd (non-zero,
for Restart=on-failure) without leaving anything half-way."""
import os
import signal
import subprocess
import tempfile
import time
import unittest

from crashlib import CrashEnv, alive, scopes
from nornlib import NORNCTL, Nornd, main, run, wait_until
from pipeline_env import psql

STOP_REASON = "nornd stopped during deployment"
BUS_REASON = "nornd lost its D-Bus connection during deployment"
TIMEOUT_STOP_SEC = 30   # units/nornd.service.in


def unit_setting(name):
    with open(os.path.join(os.environ["NORN_SOURCE_DIR"], "units", "nornd.service.in")) as f:
        return [l.split("=", 1)[1].strip() for l in f if l.startswith(name + "=")]


class CrashTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.env = CrashEnv()
        cls.env.__enter__()

    @classmethod
    def tearDownClass(cls):
        cls.env.__exit__(None, None, None)

    def setUp(self):
        self.env.release()
        self.env.kube_release()
        if self.env.nornd.proc.poll() is not None:
            self.env.restart_nornd()

    def deploy_ok(self):
        p, deploy_id = self.env.start_deploy()
        rc, out = self.env.finish_client(p, timeout=240)
        self.assertEqual(rc, 0, out + self.env.nornd.log()[-3000:])
        return deploy_id

    def test_1_unit_matches(self):
        self.assertEqual(unit_setting("Restart"), ["on-failure"])
        self.assertEqual(unit_setting("TimeoutStopSec"), [f"{TIMEOUT_STOP_SEC}s"])

    def start_over(self, client):
        """After a failed case: nothing of it may hold up the next one."""
        if client.poll() is None:
            client.kill()
        client.communicate(timeout=60)
        self.env.release()
        self.env.kube_release()
        if self.env.nornd.proc.poll() is None:
            self.env.kill_nornd(signal.SIGTERM)
        self.env.restart_nornd()

    def test_2_sigterm_in_each_step(self):
        for step in ("clone", "build", "test", "snapshot", "migrate", "deploy", "cleanup"):
            with self.subTest(step=step):
                self.setUp()
                self.env.hold(step)
                client, deploy_id = self.env.start_deploy()
                try:
                    self.sigterm_in(step, client, deploy_id)
                except BaseException:
                    self.start_over(client)
                    raise
        self.deploy_ok()

    def sigterm_in(self, step, client, deploy_id):
        pids = self.env.wait_held(step, deploy_id)
        self.assertTrue(all(alive(p) for p in pids), pids)
        self.assertTrue(scopes() or step == "deploy")

        t0 = time.monotonic()
        rc = self.env.kill_nornd(signal.SIGTERM)
        took = time.monotonic() - t0
        log = self.env.nornd.log()
        self.assertEqual(rc, 0, log[-3000:])
        self.assertLess(took, TIMEOUT_STOP_SEC, log[-3000:])
        # Right when nornd is gone: nothing of the step, no scope, the row final.
        self.assertEqual([p for p in pids if alive(p)], [], log[-3000:])
        self.assertEqual(scopes(), [], log[-3000:])
        row = self.env.row(deploy_id)
        self.assertEqual(self.env.steps(deploy_id)[step]["status"], "failed")
        self.assertEqual(self.env.partial_snapshots(), [])
        self.assertNotIn("Transport endpoint is not connected", log)
        rc, out = self.env.finish_client(client)
        if step == "cleanup":
            # Deployed already: the stop cuts cleanup short, the next start removes the dir.
            self.assertEqual((row["status"], row["error"]), ("deployed", None))
            self.assertIn("deployed", out)
        else:
            self.assertEqual((row["status"], row["error"]), ("failed", STOP_REASON))
            self.assertEqual(self.env.workdirs(), [])
            self.assertIn(STOP_REASON, out)
        ok, why = self.env.history_agrees(deploy_id, out)
        self.assertTrue(ok, why + "\n" + out)

        self.env.release()
        self.env.kube_release()
        self.env.restart_nornd()
        self.assertEqual(self.env.workdirs(), [])

    def test_3_kill9_during_pg_dump(self):
        self.deploy_ok()   # the app's table exists
        locker = subprocess.Popen(["psql", psql_url("hello"), "-v", "ON_ERROR_STOP=1", "-qAt"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            locker.stdin.write("BEGIN;\nLOCK TABLE greetings IN ACCESS EXCLUSIVE MODE;\nSELECT 'locked';\n")
            locker.stdin.flush()
            self.assertEqual(locker.stdout.readline().strip(), "locked")

            client, deploy_id = self.env.start_deploy()
            # pg_dump has its output file open and waits for our lock.
            wait_until(lambda: psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_dump' "
                                    "AND wait_event_type = 'Lock'") == "1", timeout=120,
                       what="pg_dump waiting on the lock")
            partial = self.env.partial_snapshots()
            self.assertEqual(len(partial), 1, partial)
            self.assertTrue(partial[0].endswith(".dump.partial"), partial)
            self.env.kill_nornd(signal.SIGKILL)
            client.communicate(timeout=60)

            self.env.restart_nornd()
            self.assertEqual(self.env.partial_snapshots(), [])
            self.assertEqual(psql(f"SELECT count(*) FROM snapshots WHERE deployment_id = {deploy_id}"), "0")
            self.assertEqual(self.env.row(deploy_id)["status"], "failed")
            self.env.wait_no_scopes()
        finally:
            locker.stdin.close()
            locker.wait(30)
            locker.stdout.close()
        deploy_id = self.deploy_ok()
        files = psql(f"SELECT file FROM snapshots WHERE deployment_id = {deploy_id}").split()
        self.assertEqual(len(files), 1)
        self.assertTrue(files[0].endswith(".dump") and os.path.getsize(files[0]) > 0, files)
        self.assertEqual(self.env.partial_snapshots(), [])

    def test_4_bus_lost_user_bus(self):
        self.env.hold("test")
        client, deploy_id = self.env.start_deploy()
        pids = self.env.wait_held("test", deploy_id)
        bus_pid = int(run(["systemctl", "--user", "show", "-p", "MainPID", "--value", "dbus.service"]).stdout)
        self.assertGreater(bus_pid, 0)
        os.kill(bus_pid, signal.SIGKILL)

        self.env.nornd.proc.wait(TIMEOUT_STOP_SEC)
        log = self.env.nornd.log()
        self.assertEqual(self.env.nornd.proc.returncode, 1, log[-3000:])
        self.assertIn("Lost the connection to the session bus", log)
        row = self.env.row(deploy_id)
        self.assertEqual((row["status"], row["error"]), ("failed", BUS_REASON))
        # The step's process group died with it; a grandchild in a session of its
        # own is out of reach without the manager: its scope holds it for recovery.
        self.assertFalse(alive(pids[0]) or alive(pids[1]), pids)
        client.communicate(timeout=60)

        # The bus comes back (socket activation) and the user manager with it.
        wait_until(lambda: run(["busctl", "--user", "call", "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                                "org.freedesktop.DBus.Peer", "Ping"], check=False).returncode == 0,
                   timeout=60, interval=0.5, what="session bus and user manager back")
        self.env.release()
        self.env.restart_nornd()       # what Restart=on-failure does
        self.env.wait_no_scopes()
        self.assertFalse(alive(pids[2]), "grandchild survived recovery")
        self.assertEqual(self.env.row(deploy_id)["error"], BUS_REASON)
        self.deploy_ok()

    def test_5_bus_lost_system_bus(self):
        """System mode on a private bus standing in for the system bus (no
        systemd manager on it: steps run as process groups, see the README)."""
        d = tempfile.mkdtemp(prefix="sysbus-", dir=os.environ.get("NORN_SANDBOX_DIR"))
        address = f"unix:path={d}/system_bus_socket"
        bus = subprocess.Popen(["dbus-daemon", "--config-file=/run/dbus/norn-session.conf", "--address=" + address,
                                "--nofork", "--nopidfile", "--print-address"], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
        sysnornd = None
        try:
            self.assertTrue(bus.stdout.readline().startswith("unix:"))
            self.env.kill_nornd(signal.SIGTERM)
            env = dict(self.env.nornd.env, DBUS_SYSTEM_BUS_ADDRESS=address)
            sysnornd = Nornd(env=env, args=("--system",), port=self.env.nornd.port).start()
            wait_until(lambda: "Start-up recovery done" in sysnornd.log(), timeout=60, what="recovery")
            self.env.hold("test")
            client = subprocess.Popen([NORNCTL, "--system", "deploy", "hello"], stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True,
                                      env=dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=address))
            deploy_id = int(client.stdout.readline().split()[1])
            pids = self.env.held_pids("test", deploy_id)
            wait_until(lambda: self.env.step_status(deploy_id, "test") == "running", what="test running")
            bus.kill()
            bus.wait(10)

            sysnornd.proc.wait(TIMEOUT_STOP_SEC)
            log = sysnornd.log()
            self.assertEqual(sysnornd.proc.returncode, 1, log[-3000:])
            self.assertIn("Lost the connection to the system bus", log)
            row = self.env.row(deploy_id)
            self.assertEqual((row["status"], row["error"]), ("failed", BUS_REASON))
            self.assertFalse(alive(pids[0]) or alive(pids[1]), pids)
            self.assertEqual(self.env.workdirs(), [])
            client.communicate(timeout=60)
            if alive(pids[2]):
                os.kill(pids[2], signal.SIGKILL)   # no scope held it (no manager on this bus)
        finally:
            if bus.poll() is None:
                bus.kill()
                bus.wait()
            bus.stdout.close()
            if sysnornd:
                if sysnornd.proc.poll() is None:
                    sysnornd.stop()
                os.unlink(sysnornd.log_path)
            self.env.release()
            self.env.restart_nornd()


def psql_url(db):
    import re
    return re.sub(r"^(postgresql://[^/?]*/)[^?]*", r"\g<1>" + db, os.environ["NORN_DATABASE_URL"])


if __name__ == "__main__":
    main()
