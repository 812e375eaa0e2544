"""Push webhooks (GitHub and Gitea) against a real nornd and pipeline: a
push signed with the app's repo.webhookSecret deploys exactly the pushed
commit; unsigned, badly signed or tampered pushes are refused with 401 and
create no deployment row; signed pushes that match no app are accepted
without deploying anything. Each delivery needs its id; a verified delivery
replayed (same id or same signed body) is refused with 409; a changed
webhookSecret or a new app takes effect within about a second; a burst is
refused with 429 while nornd keeps answering."""
import hashlib
import hmac
import itertools
import json
import os
import time
import unittest
import uuid

from fixtures import example_app_files
from nornlib import http_request, main, raw_request, status_of, wait_until
from pipeline_env import PipelineEnv, psql

TOKEN = "api-token-" + os.urandom(12).hex()
SECRET = "hook-secret-" + os.urandom(8).hex()
OTHER_SECRET = "other-secret-" + os.urandom(8).hex()
ROTATED_SECRET = "rotated-secret-" + os.urandom(8).hex()
THIRD_SECRET = "third-secret-" + os.urandom(8).hex()
PATH = "/api/webhooks/push"
# Real payloads differ at least in repository.pushed_at; identical signed
# bodies are refused as replays.
PUSHED_AT = itertools.count(int(time.time() * 1000))


def sign(secret, body):
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def rows():
    return int(psql("SELECT count(*) FROM deployments"))


class WebhookTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.env = env = PipelineEnv(nornd_env={"NORN_API_TOKEN": TOKEN}).__enter__()
        cls.port = env.nornd.port
        spec = example_app_files(env.repo.file_url)["infraspec.yaml"]
        env.add_app("hello", {"infraspec.yaml": spec.replace(
            "  autoDeploy: false", f"  autoDeploy: true\n  webhookSecret: {SECRET}")})
        # Same repository, its own secret, no autoDeploy: verified, never deployed.
        other = example_app_files(env.repo.file_url, app="other")["infraspec.yaml"]
        env.add_app("other", {"infraspec.yaml": other.replace(
            "  autoDeploy: false", f"  autoDeploy: false\n  webhookSecret: {OTHER_SECRET}")})

    @classmethod
    def tearDownClass(cls):
        log = cls.env.nornd.log()
        cls.env.__exit__(None, None, None)
        for secret in (TOKEN, SECRET, OTHER_SECRET, ROTATED_SECRET, THIRD_SECRET):
            assert secret not in log, "a secret appeared in nornd's log"

    def tearDown(self):
        self.env.nornd.alive()

    def payload(self, after, ref="refs/heads/main", clone_url=None, **extra):
        p = {"ref": ref, "before": "0" * 40, "after": after,
             "repository": {"full_name": "norn/hello", "clone_url": clone_url or self.env.repo.file_url,
                            "ssh_url": "git@git.invalid:norn/hello.git",
                            "html_url": "https://git.invalid/norn/hello", "pushed_at": next(PUSHED_AT)},
             "pusher": {"name": "tester"}}
        p.update(extra)
        return json.dumps(p).encode()

    def github(self, body, secret=SECRET, event="push", signature=None, headers=None, delivery=None):
        """delivery: the X-GitHub-Delivery id, a fresh one when None, none when False."""
        h = {"Content-Type": "application/json", "X-GitHub-Event": event,
             "X-Hub-Signature-256": signature if signature is not None else "sha256=" + sign(secret, body)}
        if delivery is not False:
            h["X-GitHub-Delivery"] = delivery or str(uuid.uuid4())
        h.update(headers or {})
        return http_request(self.port, "POST", PATH, body=body, headers=h)[:2]

    def gitea(self, body, secret=SECRET, event="push", signature=None, delivery=None):
        h = {"Content-Type": "application/json", "X-Gitea-Event": event,
             "X-Gitea-Signature": signature if signature is not None else sign(secret, body)}
        if delivery is not False:
            h["X-Gitea-Delivery"] = delivery or str(uuid.uuid4())
        return http_request(self.port, "POST", PATH, body=body, headers=h)[:2]

    def deployment(self, deploy_id):
        status, d = http_request(self.port, "GET", f"/api/deployments/{deploy_id}",
                                 headers={"Authorization": f"Bearer {TOKEN}"})[:2]
        self.assertEqual(status, 200, d)
        return d

    def wait_final(self, deploy_id):
        return wait_until(lambda: (lambda d: d if d["status"] in ("deployed", "failed") else None)(
            self.deployment(deploy_id)), timeout=240, interval=0.3, what="the webhook's deployment to end")

    def assertRefused(self, result, status=401):
        got, body = result
        self.assertEqual(got, status, body)
        self.assertIsInstance(body.get("error"), str, body)
        self.assertIsInstance(body.get("code"), str, body)

    def test_1_unsigned_and_badly_signed(self):
        before = rows()
        body = self.payload(self.env.repo.head_sha())
        # No signature at all, with or without the bearer token.
        for headers in ({}, {"Authorization": f"Bearer {TOKEN}"}):
            h = dict({"Content-Type": "application/json", "X-GitHub-Event": "push",
                      "X-GitHub-Delivery": str(uuid.uuid4())}, **headers)
            self.assertRefused(http_request(self.port, "POST", PATH, body=body, headers=h)[:2])
        bad = [
            "sha256=" + "0" * 64,
            "sha256=" + sign(SECRET, body)[:-1],
            "sha256=" + sign(SECRET, body) + "00",
            "sha256=z" + sign(SECRET, body)[1:],     # not hex
            "sha1=" + hashlib.sha1(body).hexdigest(),
            sign(SECRET, body),                       # without "sha256="
            "sha256=" + sign("wrong-secret", body),
            "sha256=" + sign(SECRET, body + b" "),    # signs other bytes
            "sha256=" + sign("", body),
            "",
        ]
        for signature in bad:
            self.assertRefused(self.github(body, signature=signature), 401)
        for signature in ("0" * 64, sign("wrong-secret", body), "sha256=" + sign(SECRET, body), "zz" * 32, ""):
            self.assertRefused(self.gitea(body, signature=signature), 401)
        # A tampered payload under the signature of the original.
        tampered = self.payload(self.env.repo.shas[0])
        self.assertRefused(self.github(tampered, signature="sha256=" + sign(SECRET, body)), 401)
        # Hostile bodies without a valid signature are refused before parsing.
        for junk in (b"{", b"\xff\xfe", b"", b"[]"):
            self.assertRefused(self.github(junk, signature="sha256=" + "1" * 64), 401)
        # Too large: refused by the server before reading.
        raw = raw_request(self.port, b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                          b"Content-Type: application/json\r\nContent-Length: 2000000\r\n\r\n" + b"x" * 2000000)
        self.assertEqual(status_of(raw), 413)
        self.assertEqual(rows(), before)

    def test_2_signed_but_nothing_to_deploy(self):
        time.sleep(2.5)  # test_1's checks drew on the rate limit's bucket: let it refill
        before = rows()
        head = self.env.repo.head_sha()
        cases = [
            self.payload(head, ref="refs/heads/other-branch"),
            self.payload(head, ref="refs/tags/v1"),
            self.payload(head, clone_url="file:///somewhere/else.git"),
            self.payload("0" * 40, deleted=True),
        ]
        for body in cases:
            status, answer = self.github(body)
            self.assertEqual((status, answer["deployed"]), (202, []), answer)
        # Signed by the app without autoDeploy: verified, nothing deployed.
        status, answer = self.github(self.payload(head), secret=OTHER_SECRET)
        self.assertEqual((status, answer["deployed"]), (202, []), answer)
        status, answer = self.gitea(self.payload(head), secret=OTHER_SECRET)
        self.assertEqual((status, answer["deployed"]), (202, []), answer)
        # Other events: a signed ping is answered, nothing deployed.
        status, answer = self.github(b'{"zen": "hi"}', event="ping")
        self.assertEqual((status, answer), (200, {"pong": True}))
        status, answer = self.github(self.payload(head), event="issues")
        self.assertEqual((status, answer["deployed"]), (202, []))
        # Signed but malformed.
        for body, want in ((b"{", 400), (b"[]", 400), (b'{"ref": 1, "after": 2, "repository": 3}', 400),
                           (b'{"ref": "refs/heads/main"}', 400), (b"\xff\xfe{}", 400),
                           (json.dumps({"ref": "refs/heads/main", "after": "1; DROP TABLE deployments",
                                        "repository": {"clone_url": self.env.repo.file_url}}).encode(), 202)):
            status, answer = self.github(body)
            self.assertEqual(status, want, (body[:40], answer))
        status, answer = self.github(self.payload(head), headers={"Content-Type": "text/plain"})
        self.assertEqual(status, 415, answer)
        self.assertEqual(http_request(self.port, "GET", PATH)[0], 405)
        self.assertEqual(rows(), before)
        # The API shows that a secret is set, never the secret.
        status, app = http_request(self.port, "GET", "/api/apps/hello",
                                   headers={"Authorization": f"Bearer {TOKEN}"})[:2]
        self.assertEqual((status, app["spec"]["repo"]["autoDeploy"]), (200, True), app)
        self.assertNotIn(SECRET, json.dumps(app))

    def test_3_github_push_deploys_the_pushed_commit(self):
        env = self.env
        sha = env.repo.commit({"CHANGES": "pushed through a GitHub webhook\n"}, "Webhook change")
        before = rows()
        # Any spelling of the repository URL: another scheme case, no .git.
        url = env.repo.file_url.replace("file://", "FILE://")[:-len(".git")] + "/"
        # A wrong bearer token does not matter: webhooks are signed instead.
        status, answer = self.github(self.payload(sha, clone_url=url),
                                     headers={"Authorization": "Bearer wrong"})
        self.assertEqual(status, 202, answer)
        self.assertEqual([(d["app"], d["commitSha"]) for d in answer["deployed"]], [("hello", sha)], answer)
        self.assertEqual(answer["errors"], [])
        self.assertEqual(rows(), before + 1)
        d = self.wait_final(answer["deployed"][0]["deploymentId"])
        self.assertEqual((d["status"], d["commitSha"], d["requestedBy"]), ("deployed", sha, "webhook github"), d)
        self.assertEqual(env.kube.image("hello"), d["imageTag"])

    def test_4_gitea_push_deploys_the_pushed_commit(self):
        env = self.env
        # Not the branch tip: exactly the commit of the payload is deployed.
        sha = env.repo.shas[1]
        self.assertNotEqual(sha, env.repo.head_sha())
        before = rows()
        status, answer = self.gitea(self.payload(sha))
        self.assertEqual(status, 202, answer)
        self.assertEqual([d["app"] for d in answer["deployed"]], ["hello"], answer)
        self.assertEqual(rows(), before + 1)
        d = self.wait_final(answer["deployed"][0]["deploymentId"])
        self.assertEqual((d["status"], d["commitSha"], d["requestedBy"]), ("deployed", sha, "webhook gitea"), d)

    def test_5_delivery_ids_and_replays(self):
        env = self.env
        sha = env.repo.commit({"CHANGES": "pushed once, replayed\n"}, "Replayed change")
        before = rows()
        body = self.payload(sha)
        # No delivery id, or one that is not an id: 400, nothing deployed.
        self.assertRefused(self.github(body, delivery=False), 400)
        self.assertRefused(self.gitea(body, delivery=False), 400)
        for bad in (" ", "a b", "x" * 129, "id\x7f", "caf\xe9"):
            self.assertRefused(self.github(body, delivery=bad), 400)
        self.assertEqual(rows(), before)

        delivery = str(uuid.uuid4())
        # A forged request carrying the id first must not burn it.
        self.assertRefused(self.github(body, delivery=delivery, signature="sha256=" + sign("forged", body)), 401)
        self.assertRefused(self.github(body, delivery=delivery, signature="sha256=" + "0" * 64), 401)
        status, answer = self.github(body, delivery=delivery)
        self.assertEqual(status, 202, answer)
        self.assertEqual([(d["app"], d["commitSha"]) for d in answer["deployed"]], [("hello", sha)], answer)
        self.assertEqual(rows(), before + 1)

        # The captured delivery replayed as it was, under a fresh id (the id
        # is not signed), or as Gitea: refused, nothing deployed.
        self.assertRefused(self.github(body, delivery=delivery), 409)
        self.assertRefused(self.github(body), 409)
        self.assertRefused(self.gitea(body), 409)
        # The id again with another validly signed body (an older commit).
        self.assertRefused(self.github(self.payload(env.repo.shas[0]), delivery=delivery), 409)
        self.assertRefused(self.gitea(self.payload(env.repo.shas[0]), delivery=delivery), 409)
        status, answer = self.github(body, delivery=delivery)
        self.assertEqual(answer["error"], "duplicate delivery: this delivery id or payload was handled already")
        self.assertEqual(rows(), before + 1)
        d = self.wait_final(self.deployments_since(before)[0])
        self.assertEqual((d["status"], d["commitSha"]), ("deployed", sha), d)
        self.assertEqual(rows(), before + 1)

    def deployments_since(self, count):
        return [int(i) for i in psql("SELECT id FROM deployments ORDER BY id OFFSET %d" % count).split()]

    def wait_status(self, send, want, what):
        """Polls send() until it answers want; returns how long that took."""
        start = time.monotonic()
        wait_until(lambda: send()[0] == want, timeout=5, interval=0.2, what=what)
        return time.monotonic() - start

    def test_6_changed_secret_and_new_app_take_effect(self):
        env = self.env
        head = env.repo.head_sha()
        before = rows()
        # Warm the app list, so that the change below must be noticed.
        status, answer = self.github(self.payload(head, ref="refs/heads/nowhere"), secret=OTHER_SECRET)
        self.assertEqual(status, 202, answer)

        spec = example_app_files(env.repo.file_url, app="other")["infraspec.yaml"]
        env.add_app("other", {"infraspec.yaml": spec.replace(
            "  autoDeploy: false", f"  autoDeploy: false\n  webhookSecret: {ROTATED_SECRET}")})
        took = self.wait_status(lambda: self.github(self.payload(head, ref="refs/heads/nowhere"),
                                                    secret=ROTATED_SECRET), 202, "the rotated secret to verify")
        self.assertLess(took, 3.0)
        self.assertRefused(self.github(self.payload(head, ref="refs/heads/nowhere"), secret=OTHER_SECRET), 401)
        self.assertRefused(self.gitea(self.payload(head, ref="refs/heads/nowhere"), secret=OTHER_SECRET), 401)

        # A new app's secret is honoured; once its directory is gone, no more.
        third = example_app_files(env.repo.file_url, app="third")["infraspec.yaml"]
        path = env.add_app("third", {"infraspec.yaml": third.replace(
            "  autoDeploy: false", f"  autoDeploy: false\n  webhookSecret: {THIRD_SECRET}")})
        took = self.wait_status(lambda: self.github(b'{"zen": "%d"}' % next(PUSHED_AT), event="ping",
                                                    secret=THIRD_SECRET), 200, "the new app's secret to verify")
        self.assertLess(took, 3.0)
        os.rename(path, os.path.join(env.apps, ".third-removed"))
        took = self.wait_status(lambda: self.github(b'{"zen": "%d"}' % next(PUSHED_AT), event="ping",
                                                    secret=THIRD_SECRET), 401, "the removed app's secret to fail")
        self.assertLess(took, 3.0)
        self.assertEqual(rows(), before)

    def test_7_burst_is_rate_limited(self):
        time.sleep(2.5)  # a full bucket
        head = self.env.repo.head_sha()
        before = rows()
        statuses = []
        deadline = time.monotonic() + 20
        while len(statuses) < 150 and time.monotonic() < deadline:
            body = self.payload(head)
            status, answer = self.github(body, signature="sha256=" + sign("guessed-" + str(len(statuses)), body))
            if status == 429:
                self.assertEqual(answer["code"], "too_many_requests", answer)
                self.assertIn("retry later", answer["error"])
            statuses.append(status)
        self.assertEqual(set(statuses), {401, 429}, statuses)
        # The bucket's burst, and what it refilled meanwhile, were checked.
        self.assertGreaterEqual(statuses.count(401), 32, statuses)
        self.assertGreater(statuses.count(429), 0, statuses)
        # Over the limit, a valid push is refused too; nornd keeps answering.
        # On a busy machine the bucket may refill one check between two
        # requests: then that push is taken (nothing to deploy) and the
        # bucket is emptied again first.
        while True:
            body, delivery = self.payload(head, ref="refs/heads/nowhere"), str(uuid.uuid4())
            status, answer = self.github(body, delivery=delivery)
            if status == 429 or time.monotonic() > deadline + 20:
                break
            self.assertEqual((status, answer["deployed"]), (202, []), answer)
            while self.github(body, signature="sha256=" + sign("guessed", body))[0] != 429:
                self.assertLess(time.monotonic(), deadline + 20, "the bucket never ran empty again")
        self.assertEqual(status, 429, answer)
        self.assertEqual(answer["code"], "too_many_requests", answer)
        status, health, _ = http_request(self.port, "GET", "/api/health")
        self.assertEqual((status, health["components"]["database"]["status"]), (200, "up"), health)
        # Refused before verification: not remembered, so the same delivery
        # goes through once the bucket refilled.
        time.sleep(1.0)
        status, answer = self.github(body, delivery=delivery)
        self.assertEqual((status, answer["deployed"]), (202, []), answer)
        self.assertEqual(rows(), before)


if __name__ == "__main__":
    main()
