"""Real servers for Norn's integration tests (stdlib only).

Every fixture is a context manager that starts real Debian programs bound to
127.0.0.1 on free ports, keeps all of its state in a private temp dir (under
$NORN_SANDBOX_DIR when tools/norn-sandbox provides one) and, on exit, stops
every process it started (the whole process tree) and removes that dir.
Set NORN_KEEP_FIXTURES=1 to keep the dirs (logs, configs) for debugging.

    GitRepo            bare repo on branch main, built with git plumbing
    GitHttpsServer     nginx + fcgiwrap + git http-backend, TLS + token
    GitSshServer       private sshd, key-only
    Registry           Debian's docker-registry (distribution 2.8), plain HTTP
    Buildah            buildah with storage and config in a temp dir
    example_app_files  the example app (Dockerfile, infraspec.yaml, migration)

Typical use:

    with GitRepo(example_app_files()) as repo, \\
         GitHttpsServer(repo, token="s3cret") as https, \\
         GitSshServer(repo) as ssh, Registry() as reg, \\
         Buildah(insecure_registries=[reg.address]) as buildah:
        https.url_for(repo)   # https://127.0.0.1:PORT/hello.git
        https.git_env()       # GIT_ASKPASS + GIT_SSL_CAINFO + NORN_GIT_TOKEN
        ssh.url_for(repo)     # ssh://root@127.0.0.1:PORT/<dir>/hello.git
        ssh.git_env()         # GIT_SSH_COMMAND with key + known_hosts
        buildah.env           # give this to nornd (builder = buildah)
"""
import base64
import http.client
import json
import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time

__all__ = [
    "GitRepo", "GitHttpsServer", "GitSshServer", "Registry", "Buildah",
    "example_app_files", "write_files", "git", "git_base_env", "free_port", "make_ca",
    "process_tree", "FixtureError", "DEFAULT_HTTP_USERS",
]

GIT_HTTP_BACKEND = "/usr/lib/git-core/git-http-backend"
NGINX = "/usr/sbin/nginx"
FCGIWRAP = "/usr/sbin/fcgiwrap"
SSHD = "/usr/sbin/sshd"
DOCKER_REGISTRY = "/usr/bin/docker-registry"
BUILDAH = "/usr/bin/buildah"

# User names the HTTPS git server accepts (each with the token as password).
# Git asks GIT_ASKPASS for a user name first; GitHub-style clients answer
# "x-access-token" (or anything: GitHub ignores it). htpasswd needs a name.
DEFAULT_HTTP_USERS = ("x-access-token", "git", "oauth2", "norn")

START_TIMEOUT = 15.0


class FixtureError(RuntimeError):
    pass


# --------------------------------------------------------------------------
# small helpers

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mkdtemp(prefix):
    base = os.environ.get("NORN_SANDBOX_DIR") or None
    return tempfile.mkdtemp(prefix=f"norn-{prefix}-", dir=base)


def _keep():
    return os.environ.get("NORN_KEEP_FIXTURES", "") not in ("", "0")


def _umount_under(path):
    """Unmount anything left mounted below path (buildah RUN steps)."""
    path = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo") as f:
            points = [line.split()[4] for line in f]
    except OSError:
        return
    for p in sorted(points, key=len, reverse=True):
        p = p.replace("\\040", " ")
        if p == path or p.startswith(path + "/"):
            subprocess.run(["umount", "-l", p], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False)


def _rmtree(path):
    if not path or not os.path.exists(path):
        return
    if _keep():
        return

    def onerror(func, p, _exc):
        try:
            os.chmod(os.path.dirname(p), 0o700)
            os.chmod(p, 0o700)
        except OSError:
            pass
        func(p)

    _umount_under(path)
    shutil.rmtree(path, onerror=onerror)


def _run(argv, *, env=None, cwd=None, input=None, timeout=60, check=True):
    r = subprocess.run(argv, env=env, cwd=cwd, input=input, capture_output=True,
                       timeout=timeout, check=False)
    if check and r.returncode != 0:
        raise FixtureError(f"{shlex.join(argv)} failed ({r.returncode}):\n"
                           f"{r.stderr.decode(errors='replace')}")
    return r


def write_files(dest, files):
    """Write {relative path: str | bytes | (content, mode)} below dest."""
    for rel, content in files.items():
        mode = None
        if isinstance(content, tuple):
            content, mode = content
        if isinstance(content, str):
            content = content.encode()
        p = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(p) or ".", exist_ok=True)
        with open(p, "wb") as f:
            f.write(content)
        if mode is not None:
            os.chmod(p, mode)
    return dest


def _read(path, default=""):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return default


# --------------------------------------------------------------------------
# processes

def _ppid_map():
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        rest = stat[stat.rfind(")") + 2:].split()
        out[int(name)] = (int(rest[1]), rest[0])   # ppid, state
    return out


def process_tree(pid):
    """pid's live (non-zombie) descendants, from /proc."""
    m = _ppid_map()
    children = {}
    for p, (pp, _state) in m.items():
        children.setdefault(pp, []).append(p)
    out, todo = [], list(children.get(pid, []))
    while todo:
        p = todo.pop()
        if m.get(p, (0, "Z"))[1] != "Z":
            out.append(p)
        todo.extend(children.get(p, []))
    return out


def _alive(pid):
    st = _ppid_map().get(pid)
    return st is not None and st[1] != "Z"


class _Daemon:
    """A child in its own session; stop() ends it and all its descendants."""

    def __init__(self, name, argv, log_path, env=None, cwd=None):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "ab")
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                         stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                         start_new_session=True)
        except BaseException:
            self._log.close()
            raise
        self.pid = self.proc.pid
        self.seen = {self.pid}

    def running(self):
        return self.proc.poll() is None

    def log(self):
        return _read(self.log_path)

    def check_running(self):
        if not self.running():
            raise FixtureError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")

    def _signal_all(self, sig):
        tree = process_tree(self.pid)
        self.seen.update(tree)
        try:
            os.killpg(self.pid, sig)        # our session id == process group id
        except (ProcessLookupError, PermissionError):
            pass
        for p in tree:                      # descendants that left the group (sshd sessions)
            try:
                os.kill(p, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def stop(self, timeout=5.0):
        if self.proc.returncode is None:
            self._signal_all(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal_all(signal.SIGKILL)
                self.proc.wait(timeout)
        # The leader is gone; make sure nothing it spawned lingers.
        deadline = time.monotonic() + timeout
        while True:
            left = [p for p in self.seen if p != self.pid and _alive(p)]
            if not left:
                break
            if time.monotonic() > deadline:
                for p in left:
                    try:
                        os.kill(p, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                deadline = time.monotonic() + timeout
            time.sleep(0.02)
        self._log.close()


def _wait_ready(daemon, probe, what, timeout=START_TIMEOUT):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        daemon.check_running()
        try:
            if probe():
                return
        except (OSError, http.client.HTTPException, ssl.SSLError) as e:
            last = e
        time.sleep(0.02)
    raise FixtureError(f"{what} not ready after {timeout}s (last: {last!r}):\n{daemon.log()}")


def _port_in_use(log):
    return "Address already in use" in log or "address already in use" in log


class _Fixture:
    """Temp dir + daemons + ExitStack-like teardown."""
    prefix = "fixture"

    def __init__(self):
        self.dir = None
        self.daemons = []
        self.startup_seconds = None

    def __enter__(self):
        t0 = time.monotonic()
        self.dir = _mkdtemp(self.prefix)
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _start(self):
        pass

    def _spawn(self, name, argv, **kw):
        d = _Daemon(name, argv, os.path.join(self.dir, f"{name}.log"), **kw)
        self.daemons.append(d)
        return d

    @property
    def pids(self):
        """Every pid this fixture started or saw below its daemons."""
        out = set()
        for d in self.daemons:
            out |= d.seen
            if d.running():
                out.update(process_tree(d.pid))
        return out

    def close(self):
        errors = []
        for d in reversed(self.daemons):
            try:
                d.stop()
            except Exception as e:      # keep tearing down the rest
                errors.append(e)
        _rmtree(self.dir)
        if errors:
            raise errors[0]


# --------------------------------------------------------------------------
# git

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Norn Test", "GIT_AUTHOR_EMAIL": "test@norn.invalid",
    "GIT_COMMITTER_NAME": "Norn Test", "GIT_COMMITTER_EMAIL": "test@norn.invalid",
}


def git_base_env(home=None):
    """An environment for git that ignores the host's and the user's config."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("GIT_") and k not in ("SSH_AUTH_SOCK", "SSH_ASKPASS")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0", GIT_CONFIG_GLOBAL="/dev/null",
               LC_ALL="C")
    if home:
        env["HOME"] = home
    return env


def git(*args, env=None, cwd=None, input=None, check=True, timeout=60):
    """Run git; returns stdout as str (CompletedProcess when check=False)."""
    r = _run(["git", *args], env=env or git_base_env(), cwd=cwd, input=input,
             check=check, timeout=timeout)
    return r.stdout.decode().strip() if check else r


class GitRepo(_Fixture):
    """A bare repo <root>/<name>.git whose branch `main` holds `files`.

    files: {path: str | bytes | (content, mode)} for the first commit; then
    `commits - 1` small commits that only rewrite CHANGES (the app's own files
    stay as given). root: put the repo in an existing dir (another GitRepo's
    .root) so one server can serve several repos; the dir is then not removed.

    Attributes: name, root, path (bare repo), file_url, branch, shas (commits
    of main made by this fixture, oldest first). Methods: commit(files,
    message, branch=, remove=) -> sha, create_branch(name, start) -> sha,
    sha(ref), head_sha(branch), history(branch) -> [sha...], show(ref, path).
    Commits get fixed, increasing dates (from 2023-11-14), so equal content
    gives equal SHAs from run to run.
    """
    prefix = "git"

    def __init__(self, files, name="hello", *, commits=3, branch="main", root=None):
        super().__init__()
        if not commits >= 1:
            raise ValueError("commits must be >= 1")
        self.name = name
        self.branch = branch
        self._files = dict(files)
        self._ncommits = commits
        self._given_root = root
        self._clock = 1700000000
        self.root = self.path = self.file_url = None
        self.shas = []

    def _start(self):
        self.root = self._given_root or os.path.join(self.dir, "repos")
        os.makedirs(self.root, exist_ok=True)
        self.path = os.path.join(self.root, f"{self.name}.git")
        self.file_url = "file://" + self.path
        self._env = git_base_env(home=self.dir)
        self._env.update(GIT_IDENTITY)
        git("init", "-q", "--bare", "-b", self.branch, self.path, env=self._env)
        # Like GitHub: a client may fetch any commit reachable from a ref.
        self._git("config", "uploadpack.allowReachableSHA1InWant", "true")
        self._git("config", "http.receivepack", "false")
        self.commit(self._files, "Initial commit of the app")
        for i in range(2, self._ncommits + 1):
            self.commit({"CHANGES": f"change {i}\n"}, f"Change {i}")

    def _git(self, *args, env=None, input=None):
        return git("--git-dir", self.path, *args, env=env or self._env, input=input)

    def sha(self, ref):
        """Full SHA of a ref (branch name, tag, SHA prefix, main~1 ...)."""
        return self._git("rev-parse", "--verify", "--quiet", ref + "^{commit}")

    def head_sha(self, branch=None):
        return self.sha("refs/heads/" + (branch or self.branch))

    def show(self, ref, path):
        """Content (bytes) of path at ref."""
        return _run(["git", "--git-dir", self.path, "show", f"{ref}:{path}"],
                    env=self._env).stdout

    def commit(self, files=None, message="Update", *, branch=None, remove=()):
        """Commit files (added/replaced) and removals on branch (created from
        nothing when it does not exist); returns the new SHA."""
        branch = branch or self.branch
        ref = "refs/heads/" + branch
        r = git("--git-dir", self.path, "rev-parse", "--verify", "--quiet", ref,
                env=self._env, check=False)
        parent = r.stdout.decode().strip() if r.returncode == 0 else None
        index = os.path.join(self.dir, "index.tmp")
        env = dict(self._env, GIT_INDEX_FILE=index)
        self._clock += 60
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = f"@{self._clock} +0000"
        try:
            if parent:
                self._git("read-tree", parent, env=env)
            else:
                self._git("read-tree", "--empty", env=env)
            entries = []
            for rel, content in (files or {}).items():
                mode = 0o644
                if isinstance(content, tuple):
                    content, mode = content
                if isinstance(content, str):
                    content = content.encode()
                blob = self._git("hash-object", "-w", "--stdin", env=env, input=content)
                entries.append(f"{'100755' if mode & 0o111 else '100644'} {blob}\t{rel}\n")
            for rel in remove:     # mode 0 removes the path from the index
                entries.append(f"0 {'0' * 40}\t{rel}\n")
            if entries:
                self._git("update-index", "--index-info", env=env,
                          input="".join(entries).encode())
            tree = self._git("write-tree", env=env)
        finally:
            if os.path.exists(index):
                os.unlink(index)
        args = ["commit-tree", tree, "-m", message]
        if parent:
            args[2:2] = ["-p", parent]
        sha = self._git(*args, env=env)
        self._git("update-ref", ref, sha, *([parent] if parent else []))
        if branch == self.branch:
            self.shas.append(sha)
        return sha

    def history(self, branch=None):
        """SHAs of branch's commits, oldest first."""
        out = self._git("rev-list", "--reverse", "refs/heads/" + (branch or self.branch))
        return out.split()

    def create_branch(self, name, start=None):
        """Create branch `name` at `start` (default: tip of main); returns its SHA."""
        sha = self.sha(start or ("refs/heads/" + self.branch))
        self._git("update-ref", "refs/heads/" + name, sha, "0" * 40)
        return sha

    def close(self):
        if self._given_root is None:
            super().close()
        else:
            if self.path and os.path.isdir(self.path) and not _keep():
                shutil.rmtree(self.path)
            _rmtree(self.dir)


def _project_root(repo_or_root):
    return repo_or_root.root if isinstance(repo_or_root, GitRepo) else repo_or_root


def _repo_rel(server_root, repo):
    path = repo.path if isinstance(repo, GitRepo) else repo
    if not os.path.isabs(path):
        path = os.path.join(server_root, path)
    rel = os.path.relpath(path, server_root)
    if rel.startswith(".."):
        raise ValueError(f"{path} is not below the served root {server_root}")
    return rel


# --------------------------------------------------------------------------
# TLS

def make_ca(dest, names=("127.0.0.1", "localhost")):
    """A throwaway CA and a server certificate for names, with the openssl CLI.
    Returns dict(ca=..., cert=..., key=...) (PEM paths)."""
    os.makedirs(dest, exist_ok=True)
    ca_key, ca = os.path.join(dest, "ca.key"), os.path.join(dest, "ca.pem")
    key, csr = os.path.join(dest, "server.key"), os.path.join(dest, "server.csr")
    cert, ext = os.path.join(dest, "server.pem"), os.path.join(dest, "server.ext")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _run(["openssl", "req", "-x509", "-new", *ec, "-keyout", ca_key, "-out", ca,
          "-days", "2", "-subj", "/CN=Norn test CA",
          "-addext", "basicConstraints=critical,CA:TRUE",
          "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    _run(["openssl", "req", "-new", *ec, "-keyout", key, "-out", csr,
          "-subj", f"/CN={names[0]}"])
    san = ",".join(("IP:" if n.replace(".", "").isdigit() or ":" in n else "DNS:") + n
                   for n in names)
    with open(ext, "w") as f:
        f.write(f"subjectAltName={san}\nbasicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n")
    _run(["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key,
          "-set_serial", "0x" + secrets.token_hex(8), "-days", "2", "-out", cert,
          "-extfile", ext])
    return {"ca": ca, "cert": cert, "key": key}


ASKPASS_SCRIPT = """#!/bin/sh
# GIT_ASKPASS for tests: the token comes from the environment, never argv.
case "$1" in
  Username*|username*) printf '%s\\n' "${NORN_TEST_GIT_USER:-x-access-token}" ;;
  *) printf '%s\\n' "$NORN_GIT_TOKEN" ;;
esac
"""


class GitHttpsServer(_Fixture):
    """Smart-HTTP git over TLS: nginx (foreground) -> fcgiwrap (unix socket)
    -> git http-backend, every request behind HTTP Basic auth whose password
    is `token` (users: `users`). Unauthenticated or wrong token: 401.

    repo_or_root: a GitRepo (its .root is served) or a directory of bare repos.
    Attributes: port, base_url, ca_file (give to GIT_SSL_CAINFO or
    http.sslCAInfo), token, users, access_log, error_log, askpass (script
    answering Username with $NORN_TEST_GIT_USER or x-access-token and Password
    with $NORN_GIT_TOKEN). Methods: url_for(repo), git_env(token=...),
    access_log_text(), request(path, user, password) -> (status, headers, body).
    The access log records "$remote_user" and the request line (URL); it never
    logs the Authorization header.
    """
    prefix = "git-https"

    def __init__(self, repo_or_root, token=None, *, users=DEFAULT_HTTP_USERS, workers=4):
        super().__init__()
        self.root = os.path.realpath(_project_root(repo_or_root))
        self.token = token or secrets.token_hex(16)
        self.users = (users,) if isinstance(users, str) else tuple(users)
        self.workers = workers
        self.port = None

    def _start(self):
        d = self.dir
        for sub in ("tmp", "logs"):
            os.makedirs(os.path.join(d, sub))
        tls = make_ca(os.path.join(d, "tls"))
        self.ca_file, self.cert_file, self.key_file = tls["ca"], tls["cert"], tls["key"]
        # htpasswd: openssl reads the token on stdin (never on a command line).
        digest = _run(["openssl", "passwd", "-apr1", "-stdin"],
                      input=self.token.encode() + b"\n").stdout.decode().strip()
        self.htpasswd = os.path.join(d, "htpasswd")
        with open(self.htpasswd, "w") as f:
            for u in self.users:
                f.write(f"{u}:{digest}\n")
        self.askpass = os.path.join(d, "askpass.sh")
        write_files(d, {"askpass.sh": (ASKPASS_SCRIPT, 0o755)})
        self.access_log = os.path.join(d, "logs", "access.log")
        self.error_log = os.path.join(d, "logs", "error.log")
        self.socket = os.path.join(d, "fcgiwrap.sock")

        self.fcgiwrap = self._spawn("fcgiwrap", [FCGIWRAP, "-c", str(self.workers),
                                                 "-s", "unix:" + self.socket],
                                    env={"PATH": "/usr/bin:/bin"})

        def fcgi_ready():
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(self.socket)
            return True
        _wait_ready(self.fcgiwrap, fcgi_ready, "fcgiwrap")

        for attempt in range(5):
            self.port = free_port()
            conf = self._write_nginx_conf()
            self.nginx = self._spawn("nginx", [NGINX, "-p", d, "-e", self.error_log,
                                               "-c", conf])
            try:
                _wait_ready(self.nginx, self._nginx_ready, "nginx")
                break
            except FixtureError:
                if attempt < 4 and _port_in_use(self.nginx.log() + _read(self.error_log)):
                    self.nginx.stop()
                    self.daemons.remove(self.nginx)
                    continue
                raise FixtureError("nginx did not start:\n" + _read(self.error_log))
        self.base_url = f"https://127.0.0.1:{self.port}"

    def _write_nginx_conf(self):
        d = self.dir
        user = "user root root;" if os.geteuid() == 0 else ""
        conf = f"""
daemon off;
master_process on;
worker_processes 1;
{user}
pid {d}/nginx.pid;
error_log {self.error_log} info;
events {{ worker_connections 256; }}
http {{
    log_format norn '$remote_addr "$remote_user" [$time_iso8601] "$request" '
                    '$status $body_bytes_sent "$http_user_agent"';
    access_log {self.access_log} norn;
    client_body_temp_path {d}/tmp/body;
    fastcgi_temp_path {d}/tmp/fastcgi;
    proxy_temp_path {d}/tmp/proxy;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    default_type application/octet-stream;
    client_max_body_size 0;
    server_tokens off;
    server {{
        listen 127.0.0.1:{self.port} ssl;
        server_name localhost;
        ssl_certificate {self.cert_file};
        ssl_certificate_key {self.key_file};
        location / {{
            auth_basic "norn test git";
            auth_basic_user_file {self.htpasswd};
            fastcgi_pass unix:{self.socket};
            fastcgi_param SCRIPT_FILENAME {GIT_HTTP_BACKEND};
            fastcgi_param GIT_PROJECT_ROOT {self.root};
            fastcgi_param GIT_HTTP_EXPORT_ALL "";
            fastcgi_param GIT_CONFIG_NOSYSTEM 1;
            fastcgi_param PATH_INFO $uri;
            fastcgi_param REMOTE_USER $remote_user;
            fastcgi_param REMOTE_ADDR $remote_addr;
            fastcgi_param QUERY_STRING $query_string;
            fastcgi_param REQUEST_METHOD $request_method;
            fastcgi_param CONTENT_TYPE $content_type;
            fastcgi_param CONTENT_LENGTH $content_length;
            fastcgi_param SERVER_PROTOCOL $server_protocol;
            fastcgi_param GATEWAY_INTERFACE CGI/1.1;
            fastcgi_param PATH /usr/bin:/bin;
        }}
    }}
}}
"""
        path = os.path.join(d, "nginx.conf")
        with open(path, "w") as f:
            f.write(conf)
        return path

    def _ssl_context(self):
        return ssl.create_default_context(cafile=self.ca_file)

    def _nginx_ready(self):
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
            with self._ssl_context().wrap_socket(s, server_hostname="127.0.0.1"):
                return True

    def url_for(self, repo):
        return f"{self.base_url}/{_repo_rel(self.root, repo)}"

    def git_env(self, token=None, *, user=None, base=None):
        """Environment for `git clone URL` with the token through GIT_ASKPASS
        (NORN_GIT_TOKEN) and the CA through GIT_SSL_CAINFO. token=False: no
        credentials at all."""
        env = dict(base) if base is not None else git_base_env()
        env["GIT_SSL_CAINFO"] = self.ca_file
        if token is not False:
            env["GIT_ASKPASS"] = self.askpass
            env["NORN_GIT_TOKEN"] = self.token if token is None else token
            if user:
                env["NORN_TEST_GIT_USER"] = user
        return env

    def access_log_text(self):
        return _read(self.access_log)

    def request(self, path, user=None, password=None, method="GET"):
        """One HTTPS request (CA-verified); returns (status, headers, body)."""
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=10,
                                           context=self._ssl_context())
        headers = {}
        if user is not None:
            cred = base64.b64encode(f"{user}:{password}".encode()).decode()
            headers["Authorization"] = "Basic " + cred
        try:
            conn.request(method, path, headers=headers)
            r = conn.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            conn.close()


# --------------------------------------------------------------------------
# SSH

class GitSshServer(_Fixture):
    """A private sshd on 127.0.0.1:port (its own host key) that accepts only
    a generated ed25519 client key for `user` (root when run as root:
    PermitRootLogin prohibit-password, AuthorizedKeysFile in the temp dir,
    StrictModes no). Clone with ssh://USER@127.0.0.1:PORT/<abs path>.git.

    Attributes: port, user, client_key (private key path, for
    NORN_GIT_SSH_KEY), client_pubkey, host_key_line ("[127.0.0.1]:PORT
    ssh-ed25519 ..."), known_hosts (file holding that line), ssh_command
    (GIT_SSH_COMMAND: key + known_hosts, strict checking, batch mode), log.
    Methods: url_for(repo), git_env(key=...), ssh_command_for(key, known_hosts).
    """
    prefix = "git-ssh"

    def __init__(self, repo_or_root=None):
        super().__init__()
        self.root = os.path.realpath(_project_root(repo_or_root)) if repo_or_root else "/"
        self.user = pwd.getpwuid(os.geteuid()).pw_name
        self.port = None

    def _start(self):
        d = self.dir
        self.host_key = os.path.join(d, "ssh_host_ed25519_key")
        self.client_key = os.path.join(d, "client_ed25519")
        for path, comment in ((self.host_key, "norn-test-host"),
                              (self.client_key, "norn-test-client")):
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path])
        self.client_pubkey = self.client_key + ".pub"
        self.authorized_keys = os.path.join(d, "authorized_keys")
        with open(self.authorized_keys, "w") as f:
            f.write("restrict " + _read(self.client_pubkey))
        # sshd's privilege-separation dir is compiled in; tmpfs /run lacks it.
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        host_pub = " ".join(_read(self.host_key + ".pub").split()[:2])
        for attempt in range(5):
            self.port = free_port()
            conf = os.path.join(d, "sshd_config")
            with open(conf, "w") as f:
                f.write(f"""\
Port {self.port}
ListenAddress 127.0.0.1
AddressFamily inet
HostKey {self.host_key}
PidFile {d}/sshd.pid
AuthorizedKeysFile {self.authorized_keys}
AuthorizedPrincipalsFile none
StrictModes no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
HostbasedAuthentication no
UsePAM no
AllowUsers {self.user}
PermitUserEnvironment no
PermitUserRC no
AllowAgentForwarding no
AllowTcpForwarding no
X11Forwarding no
PrintMotd no
UseDNS no
LogLevel VERBOSE
MaxStartups 100:30:200
AcceptEnv GIT_PROTOCOL
""")
            self.sshd = self._spawn("sshd", [SSHD, "-D", "-e", "-f", conf])
            try:
                _wait_ready(self.sshd, self._banner, "sshd")
                break
            except FixtureError:
                if attempt < 4 and _port_in_use(self.sshd.log()):
                    self.sshd.stop()
                    self.daemons.remove(self.sshd)
                    continue
                raise
        self.host_key_line = f"[127.0.0.1]:{self.port} {host_pub}"
        self.known_hosts = os.path.join(d, "known_hosts")
        with open(self.known_hosts, "w") as f:
            f.write(self.host_key_line + "\n")
        self.log_path = self.sshd.log_path
        self.ssh_command = self.ssh_command_for(self.client_key)

    def _banner(self):
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
            return s.recv(64).startswith(b"SSH-2.0-")

    def log(self):
        return _read(self.log_path)

    def ssh_command_for(self, key=None, known_hosts=None):
        """A GIT_SSH_COMMAND that uses only `key` (None: no key at all) and
        checks the host key against known_hosts (default: ours)."""
        argv = ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                "-o", "IdentityAgent=none", "-o", "StrictHostKeyChecking=yes",
                "-o", "UserKnownHostsFile=" + (known_hosts or self.known_hosts),
                "-o", "GlobalKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                "-o", "ConnectTimeout=10"]
        argv += ["-i", key] if key else ["-i", "/dev/null", "-o", "PubkeyAuthentication=no"]
        return shlex.join(argv)

    def url_for(self, repo):
        path = repo.path if isinstance(repo, GitRepo) else os.path.join(self.root, repo)
        return f"ssh://{self.user}@127.0.0.1:{self.port}{os.path.realpath(path)}"

    def git_env(self, key=True, *, base=None):
        """key=True: our client key; a path: that key; None/False: no key."""
        env = dict(base) if base is not None else git_base_env()
        k = self.client_key if key is True else (key or None)
        env["GIT_SSH_COMMAND"] = self.ssh_command_for(k)
        env["GIT_SSH_VARIANT"] = "ssh"
        return env


# --------------------------------------------------------------------------
# OCI registry

class Registry(_Fixture):
    """Debian's docker-registry (distribution 2.8) on 127.0.0.1:port, plain
    HTTP, no auth, storage in the temp dir, deletes enabled.

    Attributes: port, address ("127.0.0.1:PORT", for NORN_REGISTRY_URL and
    docker:// references), url ("http://127.0.0.1:PORT"), storage, log_path.
    Methods: get(path, accept) -> (status, headers, body), catalog(),
    tags(name), manifest(name, ref) -> (manifest dict, digest, media type),
    blob(name, digest) -> bytes, ref(name, tag) -> "127.0.0.1:PORT/name:tag".
    """
    prefix = "registry"
    MANIFEST_TYPES = ", ".join((
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ))

    def _start(self):
        self.storage = os.path.join(self.dir, "storage")
        os.makedirs(self.storage)
        for attempt in range(5):
            self.port = free_port()
            conf = os.path.join(self.dir, "config.yml")
            with open(conf, "w") as f:
                f.write(f"""\
version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {self.storage}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{self.port}
  secret: {secrets.token_hex(16)}
health:
  storagedriver:
    enabled: false
""")
            self.daemon = self._spawn("registry", [DOCKER_REGISTRY, "serve", conf],
                                      env={"PATH": "/usr/bin:/bin", "HOME": self.dir},
                                      cwd=self.dir)
            try:
                _wait_ready(self.daemon, lambda: self.get("/v2/")[0] == 200, "docker-registry")
                break
            except FixtureError:
                if attempt < 4 and _port_in_use(self.daemon.log()):
                    self.daemon.stop()
                    self.daemons.remove(self.daemon)
                    continue
                raise
        self.address = f"127.0.0.1:{self.port}"
        self.url = "http://" + self.address
        self.log_path = self.daemon.log_path

    def get(self, path, accept=None, method="GET"):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, headers={"Accept": accept} if accept else {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def _json(self, path, accept=None):
        status, headers, body = self.get(path, accept)
        if status != 200:
            raise FixtureError(f"GET {path}: {status} {body[:300]!r}")
        return json.loads(body), headers

    def catalog(self):
        return self._json("/v2/_catalog")[0].get("repositories") or []

    def tags(self, name):
        """Tags of repository `name`; [] when it does not exist."""
        status, _h, body = self.get(f"/v2/{name}/tags/list")
        if status == 404:
            return []
        if status != 200:
            raise FixtureError(f"tags/list {name}: {status} {body[:300]!r}")
        return sorted(json.loads(body).get("tags") or [])

    def manifest(self, name, ref):
        """(manifest, Docker-Content-Digest, Content-Type) of name:ref."""
        m, h = self._json(f"/v2/{name}/manifests/{ref}", self.MANIFEST_TYPES)
        return m, h.get("docker-content-digest"), h.get("content-type")

    def blob(self, name, digest):
        status, _h, body = self.get(f"/v2/{name}/blobs/{digest}")
        if status != 200:
            raise FixtureError(f"blob {name}@{digest}: {status}")
        return body

    def ref(self, name, tag):
        return f"{self.address}/{name}:{tag}"

    def log(self):
        return _read(self.log_path)


# --------------------------------------------------------------------------
# buildah

class Buildah(_Fixture):
    """buildah with everything in a temp dir, configured through the
    environment so that a plain `buildah build -t app:tag -f Dockerfile DIR`
    and `buildah push app:tag docker://127.0.0.1:PORT/app:tag` (what nornd
    runs) need no extra flags:

      CONTAINERS_STORAGE_CONF  driver vfs, graphroot/runroot in the temp dir
      CONTAINERS_CONF          netavark config dir + tmp dirs in the temp dir
      CONTAINERS_REGISTRIES_CONF  insecure_registries (plain HTTP) listed
      BUILDAH_ISOLATION=chroot no runtime (crun) needed; RUN works only when
                               the image has the program (FROM scratch: no sh)
      TMPDIR                   big temporary files

    Attributes: env (full environment: os.environ + the above), overrides
    (only the variables above), argv (["buildah", --root, --runroot,
    --storage-driver vfs, --short-name-alias-conf ...]: same storage, as flags),
    graphroot, runroot. Methods: run(*args), build(tag, context, dockerfile),
    push(tag, dest), images().

    Paths buildah 1.28 writes no matter what (as root): the blob-info cache
    /var/lib/containers/cache/blob-info-cache-v1.boltdb, the short-name alias
    lock /var/cache/containers/short-name-aliases.conf.lock (only for short
    names such as hello:abc, unless --short-name-alias-conf), and
    /run/containers/networks. tools/norn-sandbox must give the first two a
    private tmpfs (/run already is one).
    """
    prefix = "buildah"

    def __init__(self, insecure_registries=()):
        super().__init__()
        self.insecure_registries = list(insecure_registries)

    def _start(self):
        d = self.dir
        self.graphroot = os.path.join(d, "storage")
        self.runroot = os.path.join(d, "run")
        self.tmpdir = os.path.join(d, "tmp")
        self.netdir = os.path.join(d, "networks")
        for p in (self.graphroot, self.runroot, self.tmpdir, self.netdir):
            os.makedirs(p, mode=0o700)
        self.storage_conf = os.path.join(d, "storage.conf")
        with open(self.storage_conf, "w") as f:
            f.write(f'[storage]\ndriver = "vfs"\ngraphroot = "{self.graphroot}"\n'
                    f'runroot = "{self.runroot}"\n')
        self.containers_conf = os.path.join(d, "containers.conf")
        with open(self.containers_conf, "w") as f:
            f.write(f'[network]\nnetwork_backend = "netavark"\n'
                    f'network_config_dir = "{self.netdir}"\n'
                    f'[engine]\ntmp_dir = "{self.tmpdir}"\n'
                    f'image_copy_tmp_dir = "{self.tmpdir}"\n')
        self.registries_conf = os.path.join(d, "registries.conf")
        self.short_name_alias_conf = os.path.join(d, "short-name-aliases.conf")
        self._write_registries()
        self.overrides = {
            "CONTAINERS_STORAGE_CONF": self.storage_conf,
            "CONTAINERS_CONF": self.containers_conf,
            "CONTAINERS_REGISTRIES_CONF": self.registries_conf,
            "BUILDAH_ISOLATION": "chroot",
            "TMPDIR": self.tmpdir,
        }
        self.env = dict(os.environ, **self.overrides)
        self.argv = [BUILDAH, "--storage-driver", "vfs", "--root", self.graphroot,
                     "--runroot", self.runroot,
                     "--short-name-alias-conf", self.short_name_alias_conf]
        r = self.run("info", check=False)
        if r.returncode != 0:
            raise FixtureError("buildah info failed:\n" + r.stderr)

    def _write_registries(self):
        with open(self.registries_conf, "w") as f:
            f.write('unqualified-search-registries = []\nshort-name-mode = "disabled"\n')
            for reg in self.insecure_registries:
                f.write(f'\n[[registry]]\nlocation = "{reg}"\ninsecure = true\n')

    def add_insecure_registry(self, address):
        self.insecure_registries.append(address)
        self._write_registries()

    def run(self, *args, check=True, timeout=300, flags=True):
        """buildah ARGS with our env (and our storage flags unless flags=False)."""
        argv = (self.argv if flags else [BUILDAH]) + list(args)
        r = subprocess.run(argv, env=self.env, capture_output=True, text=True,
                           timeout=timeout, check=False)
        if check and r.returncode != 0:
            raise FixtureError(f"{shlex.join(argv)} failed ({r.returncode}):\n"
                               f"{r.stdout}\n{r.stderr}")
        return r

    def build(self, tag, context, dockerfile="Dockerfile", *extra, check=False):
        return self.run("build", "--isolation", "chroot", "-t", tag, "-f", dockerfile,
                        *extra, context, check=check)

    def push(self, tag, dest, *extra, check=False):
        if "://" not in dest:
            dest = "docker://" + dest
        return self.run("push", *extra, tag, dest, check=check)

    def images(self):
        out = self.run("images", "--json").stdout.strip()
        names = []
        for img in json.loads(out or "[]"):
            names.extend(img.get("names") or [])
        return names


# --------------------------------------------------------------------------
# the example app

INDEX_HTML = """<!doctype html>
<html><head><title>hello</title></head>
<body><h1>Hello from Norn</h1><p>version {version}</p></body></html>
"""

MIGRATION_001 = """-- hello: first migration (idempotent: deploys run it again)
CREATE TABLE IF NOT EXISTS greetings (
    id integer PRIMARY KEY,
    message text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO greetings (id, message) VALUES (1, 'hello, world')
    ON CONFLICT (id) DO NOTHING;
"""


def _yaml_str(s):
    return json.dumps(s)    # a JSON string is a valid YAML double-quoted scalar


def example_app_files(repo_url=None, *, app="hello", branch="main", database="hello",
                      version="1", port=8080, broken=None, extra_spec=""):
    """The example app: {path: content}.

    Dockerfile      FROM scratch + COPY index.html and VERSION (no RUN)
    index.html      mentions `version`
    infraspec.yaml  app/role webserver/port/deploy/build/repo/services/migrations
    migrations/001.sql  creates table greetings and inserts row id 1 (idempotent)

    repo_url: repo.url in infraspec.yaml (omitted when None). broken: None, or
    "build" (COPY of a missing file), "test" (build.test exits 1) or
    "migrate" (SQL error) to make that pipeline step fail. extra_spec: YAML
    text appended to infraspec.yaml.
    """
    if broken not in (None, "build", "test", "migrate"):
        raise ValueError(f"broken must be build, test or migrate, not {broken!r}")
    dockerfile = ("FROM scratch\n"
                  "COPY index.html /srv/www/index.html\n"
                  "COPY VERSION /srv/www/VERSION\n")
    if broken == "build":
        dockerfile += "COPY missing-file /srv/www/missing-file\n"
    test = "test -f index.html && grep -q 'Hello from Norn' index.html"
    if broken == "test":
        test = "echo 'example test fails on purpose' >&2; exit 1"
    migration = MIGRATION_001
    if broken == "migrate":
        migration += "SELECT * FROM no_such_table;\n"
    spec = [
        f"app: {app}",
        "role: webserver",
        f"port: {port}",
        "healthcheck: /index.html",
        "replicas: 1",
        "deploy: true",
        "build:",
        "  dockerfile: Dockerfile",
        f"  test: {_yaml_str(test)}",
    ]
    if repo_url is not None:
        spec += ["repo:", f"  url: {_yaml_str(repo_url)}", f"  branch: {branch}",
                 "  autoDeploy: false"]
    spec += [
        "services:",
        "  postgres:",
        f"    database: {database}",
        "migrations:",
        "  command: " + _yaml_str('psql "$DATABASE_URL" -v ON_ERROR_STOP=1 '
                                  '-f migrations/001.sql'),
        "env:",
        f"  GREETING: {_yaml_str('hello')}",
    ]
    text = "\n".join(spec) + "\n" + (extra_spec.rstrip("\n") + "\n" if extra_spec else "")
    return {
        "Dockerfile": dockerfile,
        "index.html": INDEX_HTML.format(version=version),
        "VERSION": f"{version}\n",
        "infraspec.yaml": text,
        "migrations/001.sql": migration,
    }
