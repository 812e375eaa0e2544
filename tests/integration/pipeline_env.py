"""A complete deploy environment for pipeline tests: real git repo, real
registry, buildah, the app's PostgreSQL database, the Kubernetes API
stand-in (TLS + token), and a nornd --user driven through nornctl."""
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

from fixtures import Buildah, GitRepo, Registry, example_app_files, free_port, make_ca, write_files
from nornlib import NORNCTL, SOURCE_DIR, Nornd, run, wait_until

STANDIN = os.path.join(SOURCE_DIR, "tests", "k8s-standin.py")
KUBE_TOKEN = "kube-token-" + os.urandom(8).hex()


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def psql(sql, db=None):
    """Runs sql in Norn's database (the current PipelineEnv's), or in db."""
    url = os.environ["NORN_DATABASE_URL"]
    if db:
        url = re.sub(r"^(postgresql://[^/?]*/)[^?]*", r"\g<1>" + db, url)
    return run(["psql", url, "-v", "ON_ERROR_STOP=1", "-Atc", sql]).stdout.strip()


APP_ROLE = "norn_apps"
APP_PASSWORD = "apps-of-this-sandbox"    # one for all tests of a sandbox: they may run at once


def app_database_url():
    """What an administrator sets up for the apps' databases, as the README
    says: a role of their own (never Norn's, which nornd refuses for
    migrations), with a password; returns NORN_APP_DATABASE_URL for it, on
    the sandbox's server. Create the apps' databases with create_app_database()."""
    psql(f"DO $$BEGIN CREATE ROLE {APP_ROLE}; "
         f"EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END$$", db="postgres")
    psql(f"ALTER ROLE {APP_ROLE} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '{APP_PASSWORD}'",
         db="postgres")
    url = os.environ.get("NORN_TEST_DATABASE_URL") or os.environ["NORN_DATABASE_URL"]
    return re.sub(r"([?&])user=[^&]*", rf"\g<1>user={APP_ROLE}&password={APP_PASSWORD}", url)


def create_app_database(name):
    """An app's database, owned by the apps' role (dropped first if it exists)."""
    psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", db="postgres")
    psql(f"CREATE DATABASE {name} OWNER {APP_ROLE}", db="postgres")


class KubeStandin:
    """tests/k8s-standin.py over TLS with its own CA and a bearer token."""

    def __init__(self, workdir, deployments=("hello",), rollout_seconds=0.2, deadline_scale=None):
        """deployments: names (see deployment()) or whole Deployment objects."""
        self.dir = os.path.join(workdir, "kube")
        os.makedirs(self.dir)
        self.tls = make_ca(os.path.join(self.dir, "tls"))
        self.state = os.path.join(self.dir, "state.json")
        with open(self.state, "w") as f:
            json.dump({"deployments": [self.deployment(n) if isinstance(n, str) else n for n in deployments]}, f)
        port_file = os.path.join(self.dir, "port")
        self.log_path = os.path.join(self.dir, "standin.log")
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                ["/usr/bin/python3", STANDIN, "--port-file", port_file, "--tls-cert", self.tls["cert"],
                 "--tls-key", self.tls["key"], "--token", KUBE_TOKEN, "--state", self.state,
                 "--rollout-seconds", str(rollout_seconds)] +
                (["--deadline-scale", str(deadline_scale)] if deadline_scale is not None else []),
                stdout=subprocess.DEVNULL, stderr=log)
        wait_until(lambda: read(port_file).strip(), what="Kubernetes stand-in to listen")
        self.port = int(read(port_file))
        self.kubeconfig = os.path.join(self.dir, "kubeconfig")
        self.write_kubeconfig(self.kubeconfig, KUBE_TOKEN)

    @staticmethod
    def deployment(name, replicas=1, annotations=None, progress_deadline=None):
        d = {"metadata": {"name": name, "namespace": "default"},
             "spec": {"replicas": replicas, "template": {"spec": {"containers": [
                 {"name": name, "image": f"{name}:initial"}]}}}}
        if annotations:
            d["metadata"]["annotations"] = dict(annotations)
        if progress_deadline is not None:
            d["spec"]["progressDeadlineSeconds"] = progress_deadline
        return d

    def url(self, path):
        return f"https://127.0.0.1:{self.port}{path}"

    def request(self, method, path, body=None, content_type="application/json"):
        """An authenticated request to the stand-in (API or test control): (status, JSON)."""
        ctx = ssl.create_default_context(cafile=self.tls["ca"])
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url(path), data=data, method=method,
                                     headers={"Authorization": f"Bearer {KUBE_TOKEN}",
                                              "Content-Type": content_type})
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def get(self, name, namespace="default"):
        status, obj = self.request("GET", f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
        assert status == 200, (status, obj)
        return obj

    def write_kubeconfig(self, path, token):
        with open(path, "w") as f:
            f.write(f"""apiVersion: v1
kind: Config
current-context: test
clusters:
- name: standin
  cluster:
    server: https://127.0.0.1:{self.port}
    certificate-authority: {self.tls['ca']}
users:
- name: norn
  user:
    token: {token}
contexts:
- name: test
  context:
    cluster: standin
    user: norn
    namespace: default
""")

    def image(self, name):
        with open(self.state) as f:
            for d in json.load(f)["deployments"]:
                if d["metadata"]["name"] == name:
                    return d["spec"]["template"]["spec"]["containers"][0]["image"]
        return None

    def log(self):
        return read(self.log_path)

    def close(self):
        self.proc.terminate()
        self.proc.wait(10)


class PipelineEnv:
    """apps dir + fixtures + nornd. Use as a context manager."""

    def __init__(self, nornd_env=None, kube_deployments=("hello",), kube_options=None):
        """kube_options: keyword arguments for KubeStandin (rollout_seconds, deadline_scale)."""
        self.nornd_env = nornd_env or {}
        self.kube_deployments = kube_deployments
        self.kube_options = kube_options or {}

    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix="pipeline-", dir=os.environ.get("NORN_SANDBOX_DIR"))
        self.apps = os.path.join(self.dir, "apps")
        self.state = os.path.join(self.dir, "state")
        os.makedirs(self.apps)
        # A database of its own: rows of other tests never leak in.
        self.saved_url = os.environ["NORN_DATABASE_URL"]
        self.db = "norn_" + os.urandom(4).hex()
        psql(f"CREATE DATABASE {self.db}")
        os.environ["NORN_DATABASE_URL"] = re.sub(r"^(postgresql://[^/?]*/)[^?]*", r"\g<1>" + self.db,
                                                 self.saved_url)
        self.repo = GitRepo(example_app_files()).__enter__()
        self.registry = Registry().__enter__()
        self.buildah = Buildah(insecure_registries=[self.registry.address]).__enter__()
        self.kube = KubeStandin(self.dir, self.kube_deployments, **self.kube_options)
        self.app_database_url = app_database_url()
        create_app_database("hello")
        self.add_app("hello", example_app_files(self.repo.file_url))
        env = dict(self.buildah.overrides)
        env.update({
            "NORN_DATABASE_URL": os.environ["NORN_DATABASE_URL"],
            "NORN_APP_DATABASE_URL": self.app_database_url,
            "NORN_APPS_DIR": self.apps,
            "NORN_STATE_DIR": self.state,
            "NORN_BUILDER": "buildah",
            "NORN_REGISTRY_URL": self.registry.address,
            "NORN_REGISTRY_INSECURE": "1",
            "KUBECONFIG": self.kube.kubeconfig,
            "NORN_SLICE": "norn.slice",
        })
        env.update(self.nornd_env)
        self.nornd = Nornd(env=env).start()
        wait_until(lambda: self.nornd.health()[1]["components"]["database"]["status"] == "up",
                   what="database up")
        return self

    def __exit__(self, *exc):
        self.nornd.__exit__(None)
        self.kube.close()
        for f in (self.buildah, self.registry, self.repo):
            f.__exit__(None, None, None)
        os.environ["NORN_DATABASE_URL"] = self.saved_url
        psql(f"DROP DATABASE IF EXISTS {self.db} WITH (FORCE)")
        shutil.rmtree(self.dir, ignore_errors=True)

    def add_app(self, name, files):
        """The app's directory in NORN_APPS_DIR: only its infraspec unless files say more."""
        d = os.path.join(self.apps, name)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        write_files(d, {"infraspec.yaml": files["infraspec.yaml"]})
        return d

    def deploy(self, app, ref=None, timeout=240):
        args = [NORNCTL, "--user", "deploy", app] + ([ref] if ref else [])
        return run(args, check=False, timeout=timeout)

    def deployment_id(self, nornctl_output):
        for line in nornctl_output.splitlines():
            if line.startswith("deployment ") and "queued" in line:
                return int(line.split()[1])
        raise AssertionError("no deployment id in:\n" + nornctl_output)

    def row(self, deploy_id):
        out = psql("SELECT row_to_json(d) FROM deployments d WHERE id = %d" % deploy_id)
        return json.loads(out)

    def steps(self, deploy_id):
        out = psql("SELECT json_agg(s ORDER BY position) FROM deployment_steps s "
                   "WHERE deployment_id = %d" % deploy_id)
        return {s["name"]: s for s in json.loads(out)}

    def workdirs(self):
        work = os.path.join(self.state, "work")
        return sorted(os.listdir(work)) if os.path.isdir(work) else []

    def journal(self, deploy_id):
        # Ids restart in each env's database: this nornd's entries only.
        out = run(["journalctl", "--no-pager", "-o", "json", f"NORN_DEPLOY_ID={deploy_id}",
                   f"_PID={self.nornd.proc.pid}"]).stdout
        return [json.loads(l) for l in out.splitlines() if l.strip()]
