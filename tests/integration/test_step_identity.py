"""Code from an app's repository never runs with nornd's powers (issue 10).

A hostile app's build.test and migration try everything an app's code must
not do: read nornd's environment, its configuration, a clone's token file,
another app's infraspec, the snapshots; write outside the work dir; signal
nornd; use Norn's own database, by its role or the apps' role. Each try
prints one PROBE line (the command records the outcomes), and every one must
fail, while what the job needs works: its work dir, its own database. A
normal app still deploys through all seven steps, and a nornd that would
hand a migration Norn's own role refuses to, saying how to configure one."""
import os
import pwd
import re
import unittest

from fixtures import example_app_files, write_files
from nornlib import main, run
from pipeline_env import APP_PASSWORD, APP_ROLE, PipelineEnv, create_app_database, psql

STEPS = ["clone", "build", "test", "snapshot", "migrate", "deploy", "cleanup"]

PROBE = r"""#!/bin/sh
# What an app's code must not be able to do, and what it must: one line per try.
phase=$1
probe() {
    name=$1; shift
    if ( "$@" ) >/dev/null 2>&1; then echo "PROBE $phase $name allowed"; else echo "PROBE $phase $name denied"; fi
}
probe read-nornd-environ cat /proc/%(pid)d/environ
probe see-nornd test -e /proc/%(pid)d/status
probe read-config cat %(config)s/nornd.env
probe read-token cat %(state)s/work/askpass-concurrent/token
probe read-other-infraspec cat %(apps)s/hello/infraspec.yaml
probe list-snapshots ls %(snapshots)s/hello
probe read-snapshot sh -c 'cat %(snapshots)s/hello/*.dump'
probe see-other-work-dirs sh -c 'ls -a %(state)s/work | grep -v -e "^hostile-" -e "^\.\.\?$"' 
probe write-state touch %(state)s/pwned-%(run)s-$phase
probe write-apps touch %(apps)s/pwned-%(run)s-$phase
probe write-snapshots touch %(snapshots)s/pwned-%(run)s-$phase
probe write-shared-tmp touch %(shared_tmp)s/pwned-%(run)s-$phase
probe write-usr touch /usr/local/pwned-%(run)s-$phase
probe signal-0-nornd kill -0 %(pid)d
probe signal-term-nornd kill -TERM %(pid)d
probe norn-db-as-norn psql -X -v ON_ERROR_STOP=1 "%(norn_url)s" -Atc "DELETE FROM deployments"
probe norn-db-as-app psql -X -v ON_ERROR_STOP=1 "%(norn_url_app)s" -Atc "UPDATE deployments SET error = 'pwned'"
probe norn-db-cron-as-app psql -X -v ON_ERROR_STOP=1 "%(norn_url_app)s" -Atc "DELETE FROM cron_timers"
# what it may do
probe is-step-user test "$(id -u)" = %(step_uid)d
probe write-work-dir touch ./written-by-$phase
probe write-private-tmp touch /tmp/norn-probe-%(run)s-$phase
if [ "$phase" = migrate ]; then
    probe own-database psql -X -v ON_ERROR_STOP=1 "$DATABASE_URL" -Atc "CREATE TABLE IF NOT EXISTS probe (x int)"
fi
exit 0
"""

DENIED = ["read-nornd-environ", "see-nornd", "read-config", "read-token", "read-other-infraspec", "list-snapshots",
          "read-snapshot", "see-other-work-dirs", "write-state", "write-apps", "write-snapshots", "write-shared-tmp",
          "write-usr", "signal-0-nornd", "signal-term-nornd", "norn-db-as-norn", "norn-db-as-app",
          "norn-db-cron-as-app"]
ALLOWED = {"test": ["is-step-user", "write-work-dir", "write-private-tmp"],
           "migrate": ["is-step-user", "write-work-dir", "write-private-tmp", "own-database"]}


def hostile_files():
    files = example_app_files(app="hostile", database="hostile")
    spec = files["infraspec.yaml"]
    spec = re.sub(r"(?m)^  test: .*$", '  test: "sh probe.sh test"', spec)
    spec = re.sub(r"(?m)^  command: .*$", '  command: "sh probe.sh migrate"', spec)
    files["infraspec.yaml"] = spec
    return files


class StepIdentityTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.config = os.path.join(os.environ["NORN_SANDBOX_DIR"], "etc-norn-" + os.urandom(4).hex())
        os.makedirs(cls.config)
        os.chmod(cls.config, 0o755)
        # World-readable on purpose: what protects it is that app code never sees it.
        with open(os.path.join(cls.config, "nornd.env"), "w") as f:
            f.write("NORN_API_TOKEN=config-secret\n")
        os.chmod(os.path.join(cls.config, "nornd.env"), 0o644)
        cls.env = PipelineEnv(kube_deployments=("hello", "hostile"),
                              nornd_env={"NORN_STEP_HIDE_PATHS": cls.config,
                                         "NORN_API_TOKEN": "nornd-environ-secret-0123456789"}).__enter__()
        # The state dir's parents are searchable by everyone on a host (/var/lib/norn's are).
        os.chmod(cls.env.dir, 0o755)

    @classmethod
    def tearDownClass(cls):
        cls.env.__exit__(None, None, None)

    def deploy_ok(self, app):
        p = self.env.deploy(app)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr + self.env.nornd.log()[-3000:])
        deploy_id = self.env.deployment_id(p.stdout)
        steps = self.env.steps(deploy_id)
        self.assertEqual([(n, steps[n]["status"]) for n in STEPS], [(n, "succeeded") for n in STEPS])
        return deploy_id

    def test_hostile_app_gets_nothing_of_norns(self):
        env = self.env
        # A snapshot of hello to go after, and a concurrent clone's token file (world-readable
        # here, so only hiding can keep it).
        self.deploy_ok("hello")
        snapshots = os.path.join(env.state, "snapshots")
        self.assertTrue(os.listdir(os.path.join(snapshots, "hello")))
        askpass = os.path.join(env.state, "work", "askpass-concurrent")
        os.makedirs(askpass)
        with open(os.path.join(askpass, "token"), "w") as f:
            f.write("git-token-secret\n")
        os.chmod(askpass, 0o755)
        os.chmod(os.path.join(askpass, "token"), 0o644)

        create_app_database("hostile")
        norn_db = re.search(r"^postgresql:///([^?]+)", os.environ["NORN_DATABASE_URL"]).group(1)
        base = f"postgresql:///{norn_db}?host={os.environ['PGHOST']}&port={os.environ['PGPORT']}"
        shared_tmp = os.path.join(os.environ["NORN_SANDBOX_DIR"], "tmp")
        step_uid = pwd.getpwnam("norn-step").pw_uid
        files = hostile_files()
        # Names of this run only: /usr/local and /tmp are the host's, shared with every run before.
        run = os.urandom(4).hex()
        files["probe.sh"] = PROBE % {
            "run": run,
            "pid": env.nornd.proc.pid, "config": self.config, "state": env.state, "apps": env.apps,
            "snapshots": snapshots, "shared_tmp": shared_tmp, "step_uid": step_uid,
            "norn_url": base + "&user=postgres",
            "norn_url_app": base + f"&user={APP_ROLE}&password={APP_PASSWORD}"}
        write_files(os.path.join(env.apps, "hostile"), files)
        deployments = psql("SELECT count(*) FROM deployments")

        deploy_id = self.deploy_ok("hostile")

        lines = [str(e.get("MESSAGE")) for e in env.journal(deploy_id)]
        probes = {}
        for line in lines:
            m = re.match(r"^PROBE (\w+) ([\w-]+) (allowed|denied)$", line)
            if m:
                probes[(m.group(1), m.group(2))] = m.group(3)
        for phase in ("test", "migrate"):
            for name in DENIED:
                with self.subTest(phase=phase, probe=name):
                    self.assertEqual(probes.get((phase, name)), "denied", lines)
            for name in ALLOWED[phase]:
                with self.subTest(phase=phase, probe=name):
                    self.assertEqual(probes.get((phase, name)), "allowed", lines)

        # Nothing of it reached the host, nornd or Norn's records; secrets never showed.
        self.assertTrue(env.nornd.alive())
        for d in (env.state, env.apps, snapshots, shared_tmp, "/usr/local", "/tmp"):
            mine = (f"pwned-{run}-", f"norn-probe-{run}-")
            self.assertEqual([f for f in os.listdir(d) if f.startswith(mine)], [], d)
        self.assertEqual(psql("SELECT count(*) FROM deployments"), str(int(deployments) + 1))
        self.assertEqual(psql("SELECT count(*) FROM deployments WHERE error = 'pwned'"), "0")
        text = "\n".join(lines)
        for secret in ("nornd-environ-secret", "config-secret", "git-token-secret", "app: hello"):
            self.assertNotIn(secret, text)
        # The migration could do its job in its own database.
        self.assertEqual(psql("SELECT count(*) FROM pg_tables WHERE tablename = 'probe'", db="hostile"), "1")
        # nornd (root) removed the step user's work dir.
        self.assertEqual([w for w in env.workdirs() if w.startswith("hostile-")], [])

    def test_normal_app_deploys_all_seven_steps(self):
        self.deploy_ok("hello")
        self.assertEqual(psql("SELECT message FROM greetings WHERE id = 1", db="hello"), "hello, world")



class NornRoleTest(unittest.TestCase):
    def test_migration_refuses_norns_own_role(self):
        # Its own nornd (the bus name is one per sandbox): after StepIdentityTest's.
        with PipelineEnv(nornd_env={"NORN_APP_DATABASE_URL": ""}) as env:
            p = env.deploy("hello")
            self.assertNotEqual(p.returncode, 0, p.stdout)
            deploy_id = env.deployment_id(p.stdout)
            row, steps = env.row(deploy_id), env.steps(deploy_id)
            self.assertEqual((row["status"], steps["migrate"]["status"]), ("failed", "failed"))
            self.assertEqual(steps["test"]["status"], "succeeded")
            self.assertIn("refusing to run the migration of hello with Norn's own database role", row["error"])
            self.assertIn("NORN_APP_DATABASE_URL", row["error"])
            self.assertIn("NORN_APP_DATABASE_URL", p.stdout + p.stderr)     # what nornctl shows
            self.assertEqual(psql("SELECT count(*) FROM pg_tables WHERE tablename = 'greetings'", db="hello"), "0")


if __name__ == "__main__":
    main()
