"""The Debian package, as a host gets it (slow: builds the .deb).

tools/build-deb builds it with dpkg-buildpackage and checks it with lintian
(no errors). Then the .deb is installed with dpkg into a fresh root
(--instdir/--admindir, maintainer scripts run chrootless with DPKG_ROOT, as
for any foreign root), which shows what its postinst does: nornd.socket
enabled the Debian way, the norn group, the directories. Its files then go
into the sandbox's private /usr, and the sandbox's user manager runs the
installed nornd from the installed units; the installed catalog explains
the journal message nornd writes when it recovers in-flight deployments.
"""
import glob
import gzip
import json
import os
import shutil
import subprocess
import unittest

from installed import link_units, unlink_units
from nornlib import SOURCE_DIR, free_port, http_request, main, run, wait_until
from pipeline_env import psql

MESSAGE_ID_RECOVERED = "3c2b8e0b6a5e4d2c9f1e7a4b5d6c8e05"


class DebTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        p = subprocess.run([os.path.join(SOURCE_DIR, "tools", "build-deb")], capture_output=True, text=True,
                           timeout=1500)
        if p.returncode != 0:
            raise AssertionError(f"tools/build-deb failed ({p.returncode}):\n{p.stdout}\n{p.stderr[-5000:]}")
        cls.deb = p.stdout.strip().splitlines()[-1]
        cls.lintian = p.stderr
        cls.root = os.path.join(os.environ["NORN_SANDBOX_DIR"], "debroot")
        shutil.rmtree(cls.root, ignore_errors=True)
        admin = os.path.join(cls.root, "var", "lib", "dpkg")
        for d in ("info", "updates", "triggers"):
            os.makedirs(os.path.join(admin, d))
        open(os.path.join(admin, "status"), "w").close()
        # What every Debian root has before any package: base-passwd's users and
        # groups (systemd-sysusers adds to them)
        os.makedirs(os.path.join(cls.root, "etc"))
        for name in ("passwd", "group"):
            shutil.copy(f"/usr/share/base-passwd/{name}.master", os.path.join(cls.root, "etc", name))
        cls.dpkg = subprocess.run(["dpkg", f"--instdir={cls.root}", f"--admindir={admin}",
                                   "--force-script-chrootless", "--force-depends", "--force-not-root",
                                   "--log=/dev/null", "-i", cls.deb], capture_output=True, text=True, timeout=300)
        # Then the package's files into the sandbox's private /usr (/lib is
        # /usr/lib), where dpkg -i puts them on a host: the units can run
        if cls.dpkg.returncode == 0:
            for d in ("usr", "lib"):
                subprocess.run(["cp", "-a", "--", os.path.join(cls.root, d) + "/.", f"/{d}/"], check=True)

    def path(self, p):
        return os.path.join(self.root, p.lstrip("/"))

    def test_1_dpkg_installs_it_into_a_fresh_root(self):
        self.assertEqual(self.dpkg.returncode, 0, self.dpkg.stdout + self.dpkg.stderr)
        self.assertNotIn("E:", self.lintian)
        status = run(["dpkg-query", f"--admindir={self.path('/var/lib/dpkg')}", "-W",
                      "-f=${Status} ${Version}", "norn"]).stdout
        self.assertTrue(status.startswith("install ok installed "), status)

    def test_2_layout(self):
        # bookworm: units in /lib/systemd/system (the rest in /usr)
        for p in ("/usr/sbin/nornd", "/usr/bin/nornctl", "/lib/systemd/system/nornd.service",
                  "/lib/systemd/system/nornd.socket", "/lib/systemd/system/norn.slice",
                  "/usr/share/dbus-1/system.d/org.norn.Norn1.conf",
                  "/usr/share/dbus-1/system-services/org.norn.Norn1.service",
                  "/usr/share/dbus-1/interfaces/org.norn.Norn1.xml", "/usr/share/polkit-1/actions/org.norn.policy",
                  "/usr/share/bash-completion/completions/nornctl", "/usr/lib/sysusers.d/norn.conf",
                  "/usr/lib/tmpfiles.d/norn.conf", "/usr/lib/systemd/catalog/norn.catalog",
                  "/usr/share/norn/sql/0001-init.sql", "/usr/share/doc/norn/copyright",
                  "/usr/share/doc/norn/examples/nornd.env"):
            self.assertTrue(os.path.exists(self.path(p)), p)
        with open(self.path("/lib/systemd/system/nornd.service")) as f:
            self.assertIn("ExecStart=/usr/sbin/nornd\n", f.read())

    def test_3_man_pages(self):
        for page in ("man8/nornd.8", "man1/nornctl.1", "man5/infraspec.yaml.5", "man5/nornd.env.5"):
            path = self.path(f"/usr/share/man/{page}.gz")
            self.assertTrue(os.path.exists(path), page)
            p = run(["man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", path], check=False,
                     env=dict(os.environ, MANWIDTH="80"))
            self.assertEqual((p.returncode, p.stderr), (0, ""), page)
            with gzip.open(path, "rt") as f:
                self.assertIn(".SH NAME", f.read())

    def test_4_postinst_the_debian_way(self):
        # deb-systemd-helper enabled the socket (not the service: socket-activated)
        link = self.path("/etc/systemd/system/sockets.target.wants/nornd.socket")
        self.assertEqual(os.readlink(link), "/lib/systemd/system/nornd.socket")
        self.assertFalse(os.path.lexists(self.path("/etc/systemd/system/multi-user.target.wants/nornd.service")))
        # systemd-sysusers made the group, systemd-tmpfiles the directories
        with open(self.path("/etc/group")) as f:
            self.assertRegex(f.read(), r"(?m)^norn:x:\d+:")
        for d in ("/var/lib/norn", "/var/lib/norn/apps", "/var/lib/norn/snapshots"):
            self.assertEqual(os.stat(self.path(d)).st_mode & 0o777, 0o750, d)

    def test_5_systemd_analyze_verify(self):
        units = sorted(glob.glob(self.path("/lib/systemd/system/*")))
        self.assertEqual([os.path.basename(u) for u in units], ["norn.slice", "nornd.service", "nornd.socket"])
        # as installed (ExecStart=/usr/sbin/nornd must exist, the targets they name too)
        p = run(["systemd-analyze", "verify", "--man=no",
                 *(os.path.join("/lib/systemd/system", os.path.basename(u)) for u in units)], check=False)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual([l for l in (p.stdout + p.stderr).splitlines() if "norn" in l], [], p.stdout + p.stderr)

    def test_6_installed_nornd_runs_from_installed_units(self):
        self.assertEqual(self.dpkg.returncode, 0)
        # A deployment left in flight by an "earlier nornd": the schema first
        # (nornd applies it), then a row that was building when it died.
        port = free_port()
        nornd = link_units("/lib/systemd/system", socket_listen=f"127.0.0.1:{port}")
        self.addCleanup(unlink_units)
        self.assertEqual(nornd, "/usr/sbin/nornd")

        def health():
            status, body, _ = http_request(port, "GET", "/api/health", timeout=30)
            return status in (200, 503) and body["components"]["database"]["status"] == "up"
        run(["systemctl", "--user", "start", "nornd.socket"])
        wait_until(health, timeout=60, what="the installed nornd, socket-activated, with its database")
        pid = run(["systemctl", "--user", "show", "-p", "MainPID", "--value", "nornd.service"]).stdout.strip()
        self.assertEqual(os.readlink(f"/proc/{pid}/exe"), "/usr/sbin/nornd")
        run(["systemctl", "--user", "stop", "nornd.service"])
        dep = psql("INSERT INTO deployments (app, ref) VALUES ('orphan', 'main') RETURNING id").split()[0]
        psql(f"UPDATE deployments SET status = 'building', step = 'build', started_at = now() WHERE id = {dep}")

        wait_until(health, timeout=60, what="nornd again, after the 'crash'")
        self.assertEqual(psql(f"SELECT status FROM deployments WHERE id = {dep}"), "failed")

        def recovered():
            out = run(["journalctl", "--no-pager", "-o", "json", f"MESSAGE_ID={MESSAGE_ID_RECOVERED}"]).stdout
            return [json.loads(l) for l in out.splitlines() if l.strip()]
        entries = wait_until(recovered, what="the recovery message in the journal")
        self.assertEqual(entries[-1]["NORN_RECOVERED_DEPLOYMENTS"], "1")
        self.assertEqual(entries[-1]["NORN_RECOVERY_REASON"], "restart")
        self.assertEqual(entries[-1]["SYSLOG_IDENTIFIER"], "nornd")

        # journalctl -x explains it from the installed catalog
        run(["journalctl", "--update-catalog"])
        out = run(["journalctl", "--no-pager", "-x", f"MESSAGE_ID={MESSAGE_ID_RECOVERED}"]).stdout
        self.assertIn("Subject: nornd recovered 1 in-flight deployment(s)", out)
        self.assertIn("reason: restart", out)
        self.assertIn("Documentation: man:nornctl(1)", out)
        out = run(["journalctl", "--list-catalog", "3c2b8e0b6a5e4d2c9f1e7a4b5d6c8e01",
                   "3c2b8e0b6a5e4d2c9f1e7a4b5d6c8e02", "3c2b8e0b6a5e4d2c9f1e7a4b5d6c8e03",
                   "3c2b8e0b6a5e4d2c9f1e7a4b5d6c8e04", MESSAGE_ID_RECOVERED]).stdout
        self.assertEqual(len(out.strip().splitlines()), 5, out)


if __name__ == "__main__":
    main()
