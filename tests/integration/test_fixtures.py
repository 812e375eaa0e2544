"""Proves that the fixtures in fixtures.py are real: clones over file://,
HTTPS (token through GIT_ASKPASS, checked by nginx) and SSH (key only);
buildah builds the example app and pushes it into the registry; a broken
Dockerfile fails; nothing is left running or on disk afterwards.

Run: tools/norn-sandbox /usr/bin/python3 tests/integration/test_fixtures.py
Nothing here skips: a missing program or a broken server is a failure.
"""
import ctypes
import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fixtures import (Buildah, GitHttpsServer, GitRepo, GitSshServer, Registry,  # noqa: E402
                      DEFAULT_HTTP_USERS, example_app_files, git, git_base_env,
                      process_tree, write_files)

TIMINGS = {}          # fixture -> [startup seconds, ...]
SHARED = {}           # fixtures shared by the test classes (setUpModule)
PR_SET_CHILD_SUBREAPER = 36


def become_subreaper():
    """Orphans of the fixtures' processes get re-parented to us, so a
    leftover is seen as our child instead of vanishing under PID 1."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def reap_zombies():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def live_processes_mentioning(text):
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{name}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmd and state != "Z":
            out.append((int(name), cmd))
    return out


def shared_pids():
    """Live processes of the module-wide fixtures (not leftovers)."""
    out = set()
    for f in SHARED.values():
        for d in getattr(f, "daemons", ()):
            if d.running():
                out.add(d.pid)
                out.update(process_tree(d.pid))
    return out


def timed(name, fixture):
    fixture.__enter__()
    TIMINGS.setdefault(name, []).append(fixture.startup_seconds)
    return fixture


class LeftoverChecks:
    def assertNothingLeft(self, fixture):
        """After close: no pid of the fixture alive, no process naming its
        dir, no child of ours, and its dir removed."""
        pids = fixture.pids
        self.assertTrue(pids or not fixture.daemons, "fixture recorded no pids")
        deadline = time.monotonic() + 5
        while True:
            reap_zombies()
            alive = [p for p in pids if os.path.exists(f"/proc/{p}")
                     and open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"]
            mention = live_processes_mentioning(fixture.dir)
            ours = [p for p in process_tree(os.getpid()) if p not in shared_pids()]
            if not (alive or mention or ours) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertEqual(alive, [], f"{type(fixture).__name__}: pids still alive")
        self.assertEqual(mention, [], f"{type(fixture).__name__}: processes use its dir")
        self.assertEqual(ours, [], "children of the test process left behind")
        if not os.environ.get("NORN_KEEP_FIXTURES"):
            self.assertFalse(os.path.exists(fixture.dir), f"{fixture.dir} not removed")


class CmdlineWatch:
    """Scans every process's command line for `secret` while active."""

    def __init__(self, secret):
        self.secret = secret.encode()
        self.hits, self.scans = [], 0
        self._stop = threading.Event()

    def _run(self):
        while not self._stop.is_set():
            for name in os.listdir("/proc"):
                if name.isdigit() and int(name) != os.getpid():
                    try:
                        with open(f"/proc/{name}/cmdline", "rb") as f:
                            cmd = f.read()
                    except OSError:
                        continue
                    if self.secret in cmd and len(self.hits) < 20:
                        self.hits.append(cmd.replace(b"\0", b" ").decode(errors="replace"))
            self.scans += 1
            time.sleep(0.002)

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        return False


def clone(url, dest, env, *extra):
    return git("clone", "-q", *extra, url, dest, env=env, check=False)


def head(dest):
    return git("-C", dest, "rev-parse", "HEAD")


def err(r):
    return r.stderr.decode(errors="replace")


# --------------------------------------------------------------------------

def setUpModule():
    become_subreaper()
    SHARED["tmp"] = tempfile.mkdtemp(prefix="norn-test-fixtures-",
                                     dir=os.environ.get("NORN_SANDBOX_DIR") or None)
    SHARED["token"] = "tok-" + os.urandom(12).hex()
    try:
        SHARED["repo"] = timed("GitRepo", GitRepo(example_app_files(), "hello"))
        SHARED["https"] = timed("GitHttpsServer", GitHttpsServer(SHARED["repo"],
                                                                 token=SHARED["token"]))
        SHARED["ssh"] = timed("GitSshServer", GitSshServer(SHARED["repo"]))
        SHARED["registry"] = timed("Registry", Registry())
        SHARED["buildah"] = timed("Buildah", Buildah([SHARED["registry"].address]))
    except BaseException:
        tearDownModule()
        raise


def tearDownModule():
    closed = []
    for key in ("buildah", "registry", "ssh", "https", "repo"):
        f = SHARED.pop(key, None)
        if f is not None:
            f.close()
            closed.append(f)
    shutil.rmtree(SHARED.pop("tmp", ""), ignore_errors=True)
    reap_zombies()
    left = [(type(f).__name__, p) for f in closed for p in f.pids if os.path.exists(f"/proc/{p}")
            and open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"]
    left += [("child", p) for p in process_tree(os.getpid())]
    left += [(type(f).__name__, f.dir) for f in closed if os.path.exists(f.dir)
             and not os.environ.get("NORN_KEEP_FIXTURES")]
    if left:
        raise AssertionError(f"shared fixtures left processes or dirs behind: {left}")
    if TIMINGS:
        print("\nfixture start-up times (s):", file=sys.stderr)
        for name, ts in TIMINGS.items():
            print(f"  {name:15s} " + " ".join(f"{t:.3f}" for t in ts), file=sys.stderr)


class _Base(unittest.TestCase, LeftoverChecks):
    def setUp(self):
        self.repo = SHARED["repo"]
        self.tmp = tempfile.mkdtemp(dir=SHARED["tmp"])

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def dest(self, name="clone"):
        return os.path.join(self.tmp, name)


# --------------------------------------------------------------------------

class GitRepoTest(_Base):
    def test_file_clone(self):
        d = self.dest()
        r = clone(self.repo.file_url, d, git_base_env())
        self.assertEqual(r.returncode, 0, err(r))
        self.assertEqual(head(d), self.repo.head_sha())
        self.assertEqual(git("-C", d, "rev-parse", "--abbrev-ref", "HEAD"), "main")
        self.assertGreaterEqual(int(git("-C", d, "rev-list", "--count", "HEAD")), 3)
        for path, content in example_app_files().items():
            with open(os.path.join(d, path)) as f:
                self.assertEqual(f.read(), content, path)

    def test_repo_helpers(self):
        with GitRepo(example_app_files(), "helpers", root=self.repo.root) as repo:
            self.assertEqual(len(repo.shas), 3)
            self.assertEqual(repo.history(), repo.shas)
            self.assertEqual(repo.head_sha(), repo.shas[-1])
            self.assertEqual(repo.sha("main~2"), repo.shas[0])
            new = repo.commit({"index.html": "v2\n"}, "v2")
            self.assertEqual(repo.head_sha(), new)
            self.assertEqual(repo.show(new, "index.html"), b"v2\n")
            self.assertEqual(repo.show(repo.shas[0], "VERSION"), b"1\n")
            base = repo.create_branch("feature", repo.shas[1])
            self.assertEqual(base, repo.shas[1])
            feat = repo.commit({"feature.txt": "f\n"}, "feature", branch="feature",
                               remove=["CHANGES"])
            self.assertNotIn(feat, repo.shas)
            d = self.dest()
            r = clone(repo.file_url, d, git_base_env(), "-b", "feature")
            self.assertEqual(r.returncode, 0, err(r))
            self.assertEqual(head(d), feat)
            self.assertTrue(os.path.exists(os.path.join(d, "feature.txt")))
            self.assertFalse(os.path.exists(os.path.join(d, "CHANGES")))
            path = repo.path
        self.assertFalse(os.path.exists(path), "repo in a shared root not removed")
        self.assertTrue(os.path.isdir(self.repo.path), "shared root damaged")

    def test_fetch_older_sha(self):
        """A deploy of a given SHA can fetch exactly that commit."""
        old = self.repo.shas[0]
        for name, url, env in (
                ("file", self.repo.file_url, git_base_env()),
                ("https", SHARED["https"].url_for(self.repo), SHARED["https"].git_env()),
                ("ssh", SHARED["ssh"].url_for(self.repo), SHARED["ssh"].git_env())):
            d = self.dest(name)
            git("init", "-q", d)
            r = git("-C", d, "fetch", "-q", "--depth", "1", url, old, env=env, check=False)
            self.assertEqual(r.returncode, 0, f"{name}: {err(r)}")
            self.assertEqual(git("-C", d, "rev-parse", "FETCH_HEAD"), old)


class GitHttpsTest(_Base):
    def setUp(self):
        super().setUp()
        self.https = SHARED["https"]
        self.url = self.https.url_for(self.repo)

    def test_clone_with_token(self):
        before = len(self.https.access_log_text().splitlines())
        d = self.dest()
        env = self.https.git_env()
        self.assertNotIn(self.https.token, self.url)
        with CmdlineWatch(self.https.token) as watch:
            r = clone(self.url, d, env)
        self.assertEqual(r.returncode, 0, err(r))
        self.assertGreater(watch.scans, 0)
        self.assertEqual(watch.hits, [], "the token appeared on a command line")
        self.assertEqual(head(d), self.repo.head_sha())
        lines = self.https.access_log_text().splitlines()[before:]
        self.assertTrue(any('"x-access-token"' in l and '" 200 ' in l for l in lines), lines)
        self.assertTrue(any('git-upload-pack' in l for l in lines), lines)
        self.assertNotIn(self.https.token, self.https.access_log_text())
        self.assertNotIn(self.https.token, git("-C", d, "config", "--get", "remote.origin.url"))

    def test_other_user_names(self):
        for user in DEFAULT_HTTP_USERS:
            d = self.dest(user)
            r = clone(self.url, d, self.https.git_env(user=user))
            self.assertEqual(r.returncode, 0, f"{user}: {err(r)}")

    def test_without_token_fails(self):
        r = clone(self.url, self.dest(), self.https.git_env(token=False))
        self.assertNotEqual(r.returncode, 0)
        self.assertFalse(os.path.exists(os.path.join(self.dest(), ".git")))
        status, headers, _ = self.https.request("/hello.git/info/refs?service=git-upload-pack")
        self.assertEqual(status, 401)
        self.assertIn("Basic", headers.get("WWW-Authenticate", ""))

    def test_wrong_token_fails(self):
        r = clone(self.url, self.dest(), self.https.git_env(token="not-the-token"))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("Authentication failed", err(r))
        path = "/hello.git/info/refs?service=git-upload-pack"
        self.assertEqual(self.https.request(path, "x-access-token", "nope")[0], 401)
        self.assertEqual(self.https.request(path, "intruder", self.https.token)[0], 401)
        self.assertEqual(self.https.request(path, "x-access-token", self.https.token)[0], 200)

    def test_tls_needs_the_ca(self):
        env = self.https.git_env()
        del env["GIT_SSL_CAINFO"]        # system CAs only: ours is not among them
        r = clone(self.url, self.dest(), env)
        self.assertNotEqual(r.returncode, 0)
        self.assertRegex(err(r).lower(), "certificate|ssl|tls")
        env = self.https.git_env(base=dict(git_base_env(), GIT_CONFIG_COUNT="1",
                                           GIT_CONFIG_KEY_0="http.sslCAInfo",
                                           GIT_CONFIG_VALUE_0=self.https.ca_file))
        del env["GIT_SSL_CAINFO"]
        r = clone(self.url, self.dest("cfg"), env)
        self.assertEqual(r.returncode, 0, "http.sslCAInfo: " + err(r))


class GitSshTest(_Base):
    def setUp(self):
        super().setUp()
        self.ssh = SHARED["ssh"]
        self.url = self.ssh.url_for(self.repo)

    def test_clone_with_key(self):
        d = self.dest()
        r = clone(self.url, d, self.ssh.git_env())
        self.assertEqual(r.returncode, 0, err(r) + self.ssh.log())
        self.assertEqual(head(d), self.repo.head_sha())
        self.assertIn("Accepted publickey for " + self.ssh.user, self.ssh.log())

    def test_documented_ssh_command_shape(self):
        """GIT_SSH_COMMAND='ssh -i KEY -o UserKnownHostsFile=... -p PORT' as a
        deploy daemon would build it from NORN_GIT_SSH_KEY."""
        env = dict(git_base_env(), GIT_SSH_COMMAND=(
            f"ssh -i {self.ssh.client_key} -o IdentitiesOnly=yes -o BatchMode=yes "
            f"-o UserKnownHostsFile={self.ssh.known_hosts} -o StrictHostKeyChecking=yes "
            f"-p {self.ssh.port}"))
        r = clone(self.url, self.dest(), env)
        self.assertEqual(r.returncode, 0, err(r))

    def test_without_key_fails(self):
        r = clone(self.url, self.dest(), self.ssh.git_env(key=None))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("Permission denied", err(r))

    def test_wrong_key_fails(self):
        key = os.path.join(self.tmp, "other_key")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
        r = clone(self.url, self.dest(), self.ssh.git_env(key=key))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("Permission denied", err(r))

    def test_unknown_host_key_fails(self):
        empty = os.path.join(self.tmp, "known_hosts")
        open(empty, "w").close()
        env = dict(git_base_env(),
                   GIT_SSH_COMMAND=self.ssh.ssh_command_for(self.ssh.client_key, empty))
        r = clone(self.url, self.dest(), env)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("Host key verification failed", err(r))


class BuildahRegistryTest(_Base):
    def setUp(self):
        super().setUp()
        self.reg = SHARED["registry"]
        self.buildah = SHARED["buildah"]

    def app_dir(self, **kw):
        return write_files(os.path.join(self.tmp, "app"), example_app_files(**kw))

    def test_build_and_push_example_app(self):
        tag = self.repo.head_sha()[:12]
        ctx = self.app_dir(version="7")
        r = self.buildah.build(f"hello:{tag}", ctx, "Dockerfile")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f"localhost/hello:{tag}", self.buildah.images())
        # plain push: the registry is insecure through registries.conf, no flag
        r = self.buildah.push(f"hello:{tag}", self.reg.ref("hello", tag))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(tag, self.reg.tags("hello"))
        self.assertIn("hello", self.reg.catalog())
        manifest, digest, ctype = self.reg.manifest("hello", tag)
        self.assertTrue(digest.startswith("sha256:"))
        self.assertIn(ctype, ("application/vnd.oci.image.manifest.v1+json",
                              "application/vnd.docker.distribution.manifest.v2+json"))
        self.assertEqual(len(manifest["layers"]), 1)
        layer = self.reg.blob("hello", manifest["layers"][0]["digest"])
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer))) as tar:
            names = {n.lstrip("./") for n in tar.getnames()}
            self.assertIn("srv/www/index.html", names)
            member = [m for m in tar.getmembers() if m.name.lstrip("./") == "srv/www/VERSION"]
            self.assertEqual(tar.extractfile(member[0]).read(), b"7\n")

    def test_env_only_and_tls_verify_flag(self):
        """What nornd runs: bare `buildah build|push` with only the env."""
        ctx = self.app_dir()
        r = subprocess.run(["buildah", "build", "-t", "envonly:1", "-f", "Dockerfile", ctx],
                           env=self.buildah.env, capture_output=True, text=True, cwd=self.tmp)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(os.listdir(os.path.join(self.buildah.graphroot, "vfs")))
        r = subprocess.run(["buildah", "push", "--tls-verify=false", "envonly:1",
                            f"docker://{self.reg.ref('envonly', '1')}"],
                           env=self.buildah.env, capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.reg.tags("envonly"), ["1"])
        self.assertFalse(os.path.exists("/var/lib/containers/storage"),
                         "buildah used the host's image storage")

    def test_failing_dockerfile(self):
        ctx = self.app_dir(broken="build")
        r = self.buildah.build("broken:1", ctx)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("missing-file", r.stderr)
        self.assertNotIn("localhost/broken:1", self.buildah.images())
        self.assertEqual(self.reg.tags("broken"), [])

    def test_run_instruction(self):
        """RUN works with --isolation chroot when the image has the program;
        FROM scratch has no /bin/sh, so RUN there fails (non-zero)."""
        ctx = write_files(os.path.join(self.tmp, "run"), {
            "Dockerfile": "FROM scratch\nCOPY root/ /\nRUN echo ran > /ran\n",
            "Dockerfile.noshell": "FROM scratch\nRUN true\n"})
        root = os.path.join(ctx, "root")
        os.makedirs(os.path.join(root, "bin"))
        shutil.copy("/bin/dash", os.path.join(root, "bin", "sh"))
        ldd = subprocess.run(["ldd", "/bin/dash"], capture_output=True, text=True, check=True)
        for lib in [w for w in ldd.stdout.split() if w.startswith("/")]:
            os.makedirs(root + os.path.dirname(lib), exist_ok=True)
            shutil.copy(lib, root + lib)
        r = self.buildah.build("runok:1", ctx)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.buildah.build("noshell:1", ctx, "Dockerfile.noshell")
        self.assertNotEqual(r.returncode, 0)

    def test_registry_api(self):
        self.assertEqual(self.reg.tags("no-such-repo"), [])
        status, headers, _ = self.reg.get("/v2/")
        self.assertEqual(status, 200)
        self.assertEqual(headers.get("docker-distribution-api-version"), "registry/2.0")

    def test_zz_host_paths_are_private(self):
        """buildah 1.28 writes a blob-info cache under /var/lib/containers
        and a lock under /var/cache/containers whatever it is told; the
        sandbox must give them a private tmpfs (/run already is one)."""
        self.assertEqual(self.buildah.build("hello:short", self.app_dir()).returncode, 0)
        for path in ("/var/lib/containers", "/var/cache/containers", "/run"):
            if os.path.exists(path):
                self.assertTrue(os.path.ismount(path),
                                f"{path} is the host's: run inside tools/norn-sandbox, "
                                f"which must mount a tmpfs there")


class ExampleAppTest(_Base):
    """The example app's build.test and migration, run as the pipeline runs
    them (sh -c in the work dir), the migration against the sandbox's
    PostgreSQL (PGHOST/PGPORT/PGUSER from tools/norn-sandbox)."""

    def spec_value(self, files, key):
        for line in files["infraspec.yaml"].splitlines():
            if line.strip().startswith(key + ":"):
                return json.loads(line.split(":", 1)[1].strip())
        raise AssertionError(f"{key} not in infraspec.yaml")

    def test_infraspec_fields(self):
        spec = example_app_files("https://example.invalid/hello.git")["infraspec.yaml"]
        for line in ("app: hello", "role: webserver", "port: 8080", "deploy: true",
                     "  dockerfile: Dockerfile", '  url: "https://example.invalid/hello.git"',
                     "  branch: main", "  autoDeploy: false", "    database: hello"):
            self.assertIn(line + "\n", spec)
        self.assertNotIn("repo:", example_app_files()["infraspec.yaml"])

    def test_build_test_command(self):
        for broken, want in ((None, 0), ("test", 1)):
            files = example_app_files(broken=broken)
            ctx = write_files(self.dest(str(broken)), files)
            r = subprocess.run(["sh", "-c", self.spec_value(files, "test")], cwd=ctx,
                               capture_output=True)
            self.assertEqual(r.returncode, want, (broken, r.stderr))

    def test_migration_is_idempotent(self):
        for var in ("PGHOST", "PGPORT", "PGUSER"):
            self.assertTrue(os.environ.get(var), f"{var} unset: run inside tools/norn-sandbox")
        db = "hello_fixture_" + os.urandom(4).hex()
        psql = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "postgres"]
        subprocess.run(psql + ["-c", f"CREATE DATABASE {db}"], check=True, capture_output=True)
        try:
            url = (f"postgresql:///{db}?host={os.environ['PGHOST']}"
                   f"&port={os.environ['PGPORT']}&user={os.environ['PGUSER']}")
            for broken, want in ((None, 0), (None, 0), ("migrate", 3)):
                files = example_app_files(broken=broken)
                ctx = write_files(self.dest(str(broken)), files)
                r = subprocess.run(["sh", "-c", self.spec_value(files, "command")], cwd=ctx,
                                   env=dict(os.environ, DATABASE_URL=url), capture_output=True)
                self.assertEqual(r.returncode, want, (broken, r.stderr))
            r = subprocess.run(["psql", "-X", "-At", "-d", url, "-c",
                                "SELECT count(*), min(message) FROM greetings"],
                               capture_output=True, text=True, check=True)
            self.assertEqual(r.stdout.strip(), "1|hello, world")
        finally:
            subprocess.run(psql + ["-c", f"DROP DATABASE IF EXISTS {db}"], capture_output=True)


class LifecycleTest(unittest.TestCase, LeftoverChecks):
    """Each fixture, started fresh, used, and closed: nothing is left."""

    def test_git_servers(self):
        with GitRepo(example_app_files(), "life") as repo:
            for cls in (GitHttpsServer, GitSshServer):
                fixture = timed(cls.__name__, cls(repo))
                try:
                    self.assertTrue(fixture.pids)
                    with tempfile.TemporaryDirectory() as tmp:
                        r = clone(fixture.url_for(repo), tmp + "/c", fixture.git_env())
                        self.assertEqual(r.returncode, 0, err(r))
                finally:
                    fixture.close()
                self.assertNothingLeft(fixture)
        self.assertNothingLeft(repo)

    def test_registry_and_buildah(self):
        reg = timed("Registry", Registry())
        b = None
        try:
            b = timed("Buildah", Buildah([reg.address]))
            with tempfile.TemporaryDirectory() as tmp:
                ctx = write_files(tmp, example_app_files())
                self.assertEqual(b.build("hello:life", ctx).returncode, 0)
                self.assertEqual(b.push("hello:life", reg.ref("hello", "life")).returncode, 0)
            self.assertEqual(reg.tags("hello"), ["life"])
        finally:
            if b:
                b.close()
            reg.close()
        self.assertNothingLeft(reg)
        self.assertNothingLeft(b)

    def test_failed_start_cleans_up(self):
        """A fixture that cannot start raises and leaves nothing behind."""
        https = GitHttpsServer("/nonexistent;root")    # nginx rejects its config
        try:
            https.__enter__()
        except Exception as e:
            self.assertIn("nginx", str(e))
        else:
            https.close()
            self.fail("GitHttpsServer started with a broken nginx config")
        self.assertTrue(https.pids, "fcgiwrap should have been started first")
        self.assertNothingLeft(https)


if __name__ == "__main__":
    unittest.main(verbosity=2)
