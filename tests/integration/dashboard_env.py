"""The environment of the dashboard's browser tests and benchmark: a
PipelineEnv (real git, registry, buildah, PostgreSQL, Kubernetes stand-in)
whose nornd has an API token and serves the dashboard from the source tree,
and the example app `hello` whose test step the test drives with files:

  <gate>/hold   the test step prints a line every 0.2 s until it is let go
  <gate>/open   lets one held test step go on: the step runs as the step user
                on a read-only tree, so it cannot take `open` itself; a thread
                here turns it into <gate>/open-<deployment id> of the held
                step that waits longest, and removes it
  <gate>/fail   the test step fails, with a message on stderr

Run by hand inside tools/norn-sandbox (`python3 dashboard_env.py`) it prints
the URL and token and keeps running until stdin closes: for trying the
dashboard during development."""
import json
import os
import sys
import threading

from fixtures import example_app_files
from nornlib import SOURCE_DIR, Nornd, require_sandbox, wait_until
from pipeline_env import PipelineEnv, psql

WEB_DIR = os.path.join(SOURCE_DIR, "web")


def gated_test(gate):
    # The work dir is <state>/work/<app>-<deployment id>.
    return (f"if [ -e {gate}/fail ]; then echo 'running the example tests'; "
            f"echo 'assertion failed: greeting is wrong' >&2; exit 1; fi; "
            f"if [ -e {gate}/hold ]; then i=0; while [ ! -e {gate}/open-${{PWD##*-}} ]; do i=$((i+1)); "
            f"echo \"test output line $i\"; sleep 0.2; done; fi; "
            f"echo 'all example tests passed'; test -f index.html")


class DashboardEnv(PipelineEnv):
    def __init__(self, token):
        self.token = token
        super().__init__(nornd_env={"NORN_API_TOKEN": token, "NORN_DASHBOARD_DIR": WEB_DIR})

    def __enter__(self):
        super().__enter__()
        self.gate = os.path.join(self.dir, "gate")
        os.makedirs(self.gate)
        # The step user must reach the gate (it reads, never writes it).
        os.chmod(self.dir, 0o755)
        os.chmod(self.gate, 0o755)
        self._stop = threading.Event()
        self._opener = threading.Thread(target=self._hand_out_opens, daemon=True)
        self._opener.start()
        files = example_app_files(self.repo.file_url)
        spec = files["infraspec.yaml"].splitlines()
        spec = [("  test: " + json.dumps(gated_test(self.gate))) if l.startswith("  test:") else l
                for l in spec]
        files["infraspec.yaml"] = "\n".join(spec) + "\n"
        self.add_app("hello", files)
        return self

    def _hand_out_opens(self):
        """<gate>/open -> <gate>/open-<id> of the test step running longest."""
        while not self._stop.wait(0.05):
            if not os.path.exists(os.path.join(self.gate, "open")):
                continue
            try:
                held = psql("SELECT deployment_id FROM deployment_steps WHERE name = 'test' "
                            "AND status = 'running' ORDER BY started_at").split()
            except Exception:  # the database restarting under a test: ask again
                continue
            held = [i for i in held if not os.path.exists(os.path.join(self.gate, f"open-{i}"))]
            if held:
                open(os.path.join(self.gate, f"open-{held[0]}"), "w").close()
                os.unlink(os.path.join(self.gate, "open"))

    def __exit__(self, *exc):
        self._stop.set()
        self._opener.join()
        return super().__exit__(*exc)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.nornd.port}/"

    def gate_file(self, name, present=True):
        p = os.path.join(self.gate, name)
        if present:
            open(p, "w").close()
        elif os.path.exists(p):
            os.unlink(p)

    def restart_nornd(self):
        """Stops nornd and starts it again on the same port."""
        port, env = self.nornd.port, self.nornd.env
        self.nornd.__exit__(None)
        self.nornd = Nornd(env=env, port=port)
        self.nornd.env = env
        self.nornd.start()
        wait_until(lambda: self.nornd.health()[1]["components"]["database"]["status"] == "up",
                   what="database up")


if __name__ == "__main__":
    require_sandbox()
    with DashboardEnv("dev-token") as env:
        print(json.dumps({"url": env.url, "token": env.token, "gate": env.gate}), flush=True)
        sys.stdin.read()
