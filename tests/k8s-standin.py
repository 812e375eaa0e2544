#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A Kubernetes API stand-in for Norn's tests.

This is NOT Kubernetes. No API server can run on the machines Norn is tested
on, so this speaks the small REST subset Norn uses, the way kube-apiserver
does: the same paths, verbs, content types, Status objects and status codes,
metadata.generation / resourceVersion bookkeeping, and a Deployment
controller that moves status.observedGeneration and the replica counts along
over --rollout-seconds.

  GET   /apis/apps/v1/namespaces/{ns}/deployments/{name}
  PATCH /apis/apps/v1/namespaces/{ns}/deployments/{name}
        application/strategic-merge-patch+json (lists with a merge key, such as
        containers by name, are merged) or application/merge-patch+json;
        anything else is 415
  GET   /apis/apps/v1/namespaces/{ns}/deployments          (list)
  POST  /apis/apps/v1/namespaces/{ns}/deployments          (create)
  GET   /version, /healthz, /livez, /readyz                (no authentication)

Test controls (no authentication, not part of Kubernetes):
  POST  /_standin/deployments/{ns}/{name}/fail   pods of new rollouts never become ready
  POST  /_standin/deployments/{ns}/{name}/ready  undoes that (both never-ready annotations go):
        a stalled rollout then completes
  POST  /_standin/deployments/{ns}/{name}/conflict   body {"count": N} (default 1): the next N
        PATCHes that carry a metadata.resourceVersion find the Deployment changed
        just before them by another writer (an annotation, a new resourceVersion),
        so they get 409 Conflict as they would on a real server
  POST  /_standin/deployments/{ns}/{name}/deny   body {"message": TEXT, "code": N (default 400)}:
        the next PATCH is refused with that Status message, as a validating
        admission webhook's denial would be
  GET   /_standin/state                          all deployments, as in the state file

Deliberate differences from a real cluster:
  * a PATCH that would add a container not in the pod template is refused
    with 422 (a real server adds the container); Norn only ever sets the image
    of an existing container, so a typo must not pass silently in tests;
  * the annotation standin.norn.dev/never-ready: "true" (or the fail control)
    makes the pods of the next rollouts never ready: the rollout stalls and
    Progressing turns False with reason ProgressDeadlineExceeded after
    spec.progressDeadlineSeconds x --deadline-scale; the annotation
    standin.norn.dev/never-ready-image: GLOB does so only for rollouts to a pod
    template with a container image matching GLOB (fnmatch), i.e. a bad image
    whose predecessor still gets ready;
  * json-patch and apply-patch content types are answered with 415.

Each request is logged to stderr as "METHOD PATH -> STATUS (user)"; header
values (the token) never are.
"""

import argparse
import copy
import datetime
import fnmatch
import hashlib
import hmac
import json
import os
import re
import signal
import ssl
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

NEVER_READY = "standin.norn.dev/never-ready"
NEVER_READY_IMAGE = "standin.norn.dev/never-ready-image"
TOUCHED = "standin.norn.dev/touched"
BODY_MAX = 3 * 1024 * 1024
LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DEPLOYMENT_PATH = re.compile(r"^/apis/apps/v1/namespaces/([^/]+)/deployments(?:/([^/]+))?/?$")
CONTROL_PATH = re.compile(r"^/_standin/deployments/([^/]+)/([^/]+)/(fail|ready|conflict|deny)/?$")

# Lists a strategic merge patch merges by key instead of replacing
# (patchMergeKey in the Kubernetes API types), as far as a Deployment goes.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "envFrom": None,
    "ports": "containerPort",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "volumes": "name",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "conditions": "type",
}


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def log(msg):
    sys.stderr.write("k8s-standin: %s\n" % msg)
    sys.stderr.flush()


class ApiError(Exception):
    """Becomes a v1 Status object."""

    def __init__(self, code, reason, message, details=None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self):
        s = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
             "message": self.message, "reason": self.reason, "code": self.code}
        if self.details is not None:
            s["details"] = self.details
        return s


def not_found(name):
    return ApiError(404, "NotFound", 'deployments.apps "%s" not found' % name,
                    {"name": name, "group": "apps", "kind": "deployments"})


def invalid(name, causes):
    """causes: [(field, reason, message)]"""
    msg = 'Deployment.apps "%s" is invalid: ' % name + ", ".join("%s: %s" % (f, m) for f, _, m in causes)
    return ApiError(422, "Invalid", msg, {
        "name": name, "group": "apps", "kind": "Deployment",
        "causes": [{"reason": r, "message": m, "field": f} for f, r, m in causes]})


# ---- patches ------------------------------------------------------------

def strip_directives(v):
    if isinstance(v, dict):
        return {k: strip_directives(x) for k, x in v.items()
                if not k.startswith("$")}
    if isinstance(v, list):
        return [strip_directives(x) for x in v if not (isinstance(x, dict) and "$patch" in x)]
    return copy.deepcopy(v)


def merge_list(orig, patch, key):
    if any(isinstance(p, dict) and p.get("$patch") == "replace" for p in patch):
        return strip_directives(patch)
    result = copy.deepcopy(orig)
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise ApiError(400, "BadRequest", "map: %r does not contain declared merge key: %s" % (item, key))
        idx = next((i for i, o in enumerate(result) if isinstance(o, dict) and o.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                del result[idx]
        elif idx is None:
            result.append(strip_directives(item))
        else:
            result[idx] = strategic_merge(result[idx], item)
    return result


def strategic_merge(orig, patch):
    if not isinstance(patch, dict) or not isinstance(orig, dict):
        return strip_directives(patch)
    if patch.get("$patch") == "replace":
        return strip_directives(patch)
    result = copy.deepcopy(orig)
    for k, v in patch.items():
        if k.startswith("$"):
            continue
        if v is None:
            result.pop(k, None)
        elif isinstance(v, dict) and isinstance(result.get(k), dict):
            if v.get("$patch") == "delete":
                result.pop(k, None)
            else:
                result[k] = strategic_merge(result[k], v)
        elif isinstance(v, list) and MERGE_KEYS.get(k) and isinstance(result.get(k), list):
            result[k] = merge_list(result[k], v, MERGE_KEYS[k])
        else:
            result[k] = strip_directives(v)
    return result


def json_merge(orig, patch):
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(orig) if isinstance(orig, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = json_merge(result.get(k), v)
    return result


# ---- the store and its controller ----------------------------------------

def pod_template(obj):
    return obj.get("spec", {}).get("template", {})


def containers_of(obj):
    c = pod_template(obj).get("spec", {}).get("containers")
    return c if isinstance(c, list) else []


def replicaset_name(obj):
    h = hashlib.sha256(json.dumps(pod_template(obj), sort_keys=True).encode()).hexdigest()[:10]
    return "%s-%s" % (obj["metadata"]["name"], h)


def validate(obj, old=None):
    name = obj["metadata"]["name"]
    causes = []
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        raise invalid(name, [("spec", "FieldValueRequired", "Required value")])
    replicas = spec.get("replicas", 1)
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        causes.append(("spec.replicas", "FieldValueInvalid",
                       "Invalid value: %s: must be greater than or equal to 0" % json.dumps(replicas)))
    pds = spec.get("progressDeadlineSeconds", 600)
    if not isinstance(pds, (int, float)) or isinstance(pds, bool) or pds <= 0:
        causes.append(("spec.progressDeadlineSeconds", "FieldValueInvalid", "Invalid value: must be greater than 0"))
    containers = containers_of(obj)
    if not containers:
        causes.append(("spec.template.spec.containers", "FieldValueRequired", "Required value"))
    old_names = {c.get("name") for c in containers_of(old)} if old else None
    seen = set()
    for i, c in enumerate(containers):
        f = "spec.template.spec.containers[%d]" % i
        if not isinstance(c, dict):
            causes.append((f, "FieldValueInvalid", "Invalid value: must be an object"))
            continue
        n = c.get("name")
        if not isinstance(n, str) or not n:
            causes.append((f + ".name", "FieldValueRequired", "Required value"))
        elif not LABEL.match(n):
            causes.append((f + ".name", "FieldValueInvalid",
                           'Invalid value: "%s": a lowercase RFC 1123 label must consist of lower case '
                           "alphanumeric characters or '-', and must start and end with an alphanumeric character" % n))
        elif n in seen:
            causes.append((f + ".name", "FieldValueDuplicate", 'Duplicate value: "%s"' % n))
        elif old_names is not None and n not in old_names:
            # Stand-in strictness, see the module comment.
            causes.append((f + ".name", "FieldValueNotFound",
                           'Not found: "%s": no such container in the pod template' % n))
        seen.add(n)
        img = c.get("image")
        if not isinstance(img, str) or not img.strip():
            causes.append((f + ".image", "FieldValueRequired", "Required value"))
        elif img != img.strip():
            causes.append((f + ".image", "FieldValueInvalid",
                           "Invalid value: %s: must not have leading or trailing whitespace" % json.dumps(img)))
    if causes:
        raise invalid(name, causes)


class Store:
    def __init__(self, args):
        self.args = args
        self.lock = threading.RLock()
        self.rv = 1000
        self.objects = {}       # (ns, name) -> Deployment
        self.rollouts = {}      # (ns, name) -> {"start", "old"}
        self.conflicts = {}     # (ns, name) -> PATCHes still to be beaten by another writer
        self.denials = {}       # (ns, name) -> (code, message) for the next PATCH
        if args.state and os.path.exists(args.state):
            with open(args.state) as f:
                data = json.load(f)
            items = data.get("deployments", data.get("items", [])) if isinstance(data, dict) else data
            for obj in items:
                self.preload(obj)

    def next_rv(self):
        self.rv += 1
        return str(self.rv)

    def preload(self, obj):
        md = obj.setdefault("metadata", {})
        md.setdefault("namespace", "default")
        md.setdefault("generation", 1)
        md.setdefault("uid", str(uuid.uuid4()))
        md.setdefault("creationTimestamp", now_rfc3339())
        md["resourceVersion"] = self.next_rv()
        obj.setdefault("apiVersion", "apps/v1")
        obj.setdefault("kind", "Deployment")
        spec = obj.setdefault("spec", {})
        spec.setdefault("replicas", 1)
        spec.setdefault("progressDeadlineSeconds", 600)
        if "status" not in obj:
            n = spec["replicas"]
            obj["status"] = {"observedGeneration": md["generation"], "replicas": n, "updatedReplicas": n,
                             "readyReplicas": n, "availableReplicas": n}
            obj["status"]["conditions"] = self.conditions(obj, n, "True", "NewReplicaSetAvailable",
                                                          'ReplicaSet "%s" has successfully progressed.'
                                                          % replicaset_name(obj))
        self.objects[(md["namespace"], md["name"])] = obj

    def dump(self):
        if not self.args.state:
            return
        tmp = self.args.state + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"deployments": list(self.objects.values())}, f, indent=1)
        os.replace(tmp, self.args.state)

    def conditions(self, obj, available, progressing, reason, message):
        n = obj["spec"].get("replicas", 1)
        t = now_rfc3339()
        old = {c.get("type"): c for c in obj.get("status", {}).get("conditions", []) if isinstance(c, dict)}

        def cond(type_, status, reason_, message_):
            prev = old.get(type_, {})
            return {"type": type_, "status": status, "reason": reason_, "message": message_,
                    "lastUpdateTime": t if prev.get("reason") != reason_ else prev.get("lastUpdateTime", t),
                    "lastTransitionTime": t if prev.get("status") != status else prev.get("lastTransitionTime", t)}
        ok = available >= n - n // 4
        return [
            cond("Available", "True" if ok else "False",
                 "MinimumReplicasAvailable" if ok else "MinimumReplicasUnavailable",
                 "Deployment has minimum availability." if ok else "Deployment does not have minimum availability."),
            cond("Progressing", progressing, reason, message),
        ]

    def start_rollout(self, key, obj):
        st = obj.get("status", {})
        self.rollouts[key] = {"start": time.monotonic(),
                              "old": min(st.get("availableReplicas", 0), obj["spec"].get("replicas", 1))}

    def reconcile(self, key, now):
        """The Deployment controller: compute status for a rollout in flight."""
        obj, ro = self.objects.get(key), self.rollouts.get(key)
        if not obj or not ro:
            self.rollouts.pop(key, None)
            return False
        elapsed = now - ro["start"]
        seconds = self.args.rollout_seconds
        observe = min(0.05, seconds)
        if elapsed < observe:
            return False
        n = obj["spec"].get("replicas", 1)
        old = ro["old"]
        rs = replicaset_name(obj)
        annotations = obj["metadata"].get("annotations", {})
        never_ready = annotations.get(NEVER_READY) in ("true", True)
        bad_image = annotations.get(NEVER_READY_IMAGE)
        if isinstance(bad_image, str) and any(isinstance(c, dict) and isinstance(c.get("image"), str) and
                                              fnmatch.fnmatchcase(c["image"], bad_image)
                                              for c in containers_of(obj)):
            never_ready = True
        deadline = obj["spec"].get("progressDeadlineSeconds", 600) * self.args.deadline_scale
        done = False

        if never_ready:
            new_ready, surge = 0, 1 if n > 0 else 0
            if elapsed >= deadline:
                prog = ("False", "ProgressDeadlineExceeded", 'ReplicaSet "%s" has timed out progressing.' % rs)
            else:
                prog = ("True", "ReplicaSetUpdated", 'ReplicaSet "%s" is progressing.' % rs)
        else:
            frac = 1.0 if seconds <= 0 else min(1.0, (elapsed - observe) / seconds)
            new_ready = n if frac >= 1.0 else int(frac * n)
            surge = 1 if new_ready < n else 0
            done = new_ready == n
            if done:
                prog = ("True", "NewReplicaSetAvailable", 'ReplicaSet "%s" has successfully progressed.' % rs)
            else:
                prog = ("True", "ReplicaSetUpdated", 'ReplicaSet "%s" is progressing.' % rs)

        old_left = 0 if done else min(old, n - new_ready)
        ready = new_ready + old_left
        status = {
            "observedGeneration": obj["metadata"]["generation"],
            "replicas": new_ready + old_left + surge,
            "updatedReplicas": new_ready + surge,
            "readyReplicas": ready,
            "availableReplicas": ready,
        }
        if ready < status["replicas"]:
            status["unavailableReplicas"] = status["replicas"] - ready
        status["conditions"] = self.conditions(obj, ready, *prog)
        if done:
            del self.rollouts[key]
        if status == obj.get("status"):
            return False
        obj["status"] = status
        obj["metadata"]["resourceVersion"] = self.next_rv()
        return True

    def tick(self):
        with self.lock:
            now = time.monotonic()
            changed = False
            for key in list(self.rollouts):
                changed |= self.reconcile(key, now)
            if changed:
                self.dump()

    # ---- verbs ----

    def get(self, ns, name):
        with self.lock:
            obj = self.objects.get((ns, name))
            if not obj:
                raise not_found(name)
            return copy.deepcopy(obj)

    def list(self, ns):
        with self.lock:
            items = [copy.deepcopy(o) for (n, _), o in sorted(self.objects.items()) if n == ns]
            return {"kind": "DeploymentList", "apiVersion": "apps/v1",
                    "metadata": {"resourceVersion": str(self.rv)}, "items": items}

    def create(self, ns, obj):
        if not isinstance(obj, dict):
            raise ApiError(400, "BadRequest", "the body must be a Deployment object")
        if obj.get("kind", "Deployment") != "Deployment" or obj.get("apiVersion", "apps/v1") != "apps/v1":
            raise ApiError(400, "BadRequest", "the object must be an apps/v1 Deployment")
        md = obj.get("metadata")
        name = md.get("name") if isinstance(md, dict) else None
        if not isinstance(name, str) or not name:
            raise ApiError(422, "Invalid", "Deployment.apps is invalid: metadata.name: Required value: name or "
                           "generateName is required")
        if len(name) > 253 or not SUBDOMAIN.match(name):
            raise invalid(name, [("metadata.name", "FieldValueInvalid",
                                  'Invalid value: "%s": a lowercase RFC 1123 subdomain' % name)])
        if md.get("namespace", ns) != ns:
            raise ApiError(400, "BadRequest", "the namespace of the provided object does not match the namespace "
                           "sent on the request")
        validate(obj)
        with self.lock:
            if (ns, name) in self.objects:
                raise ApiError(409, "AlreadyExists", 'deployments.apps "%s" already exists' % name,
                               {"name": name, "group": "apps", "kind": "deployments"})
            obj = copy.deepcopy(obj)
            obj.update({"apiVersion": "apps/v1", "kind": "Deployment"})
            md = obj["metadata"]
            for k in ("resourceVersion", "uid", "generation", "creationTimestamp"):
                md.pop(k, None)
            md.update({"namespace": ns, "uid": str(uuid.uuid4()), "generation": 1,
                       "creationTimestamp": now_rfc3339(), "resourceVersion": self.next_rv()})
            obj["spec"].setdefault("replicas", 1)
            obj["spec"].setdefault("progressDeadlineSeconds", 600)
            obj["status"] = {}
            self.objects[(ns, name)] = obj
            self.start_rollout((ns, name), obj)
            self.dump()
            return copy.deepcopy(obj)

    def patch(self, ns, name, kind, patch):
        if not isinstance(patch, dict):
            raise ApiError(400, "BadRequest", "the patch must be a JSON object")
        with self.lock:
            old = self.objects.get((ns, name))
            if not old:
                raise not_found(name)
            denial = self.denials.pop((ns, name), None)
            if denial:
                raise ApiError(denial[0], "Forbidden" if denial[0] == 403 else "BadRequest", denial[1])
            pmd = patch.get("metadata")
            if isinstance(pmd, dict) and pmd.get("resourceVersion") is not None \
                    and self.conflicts.get((ns, name), 0) > 0:
                # The conflict control: another writer got there first.
                self.conflicts[(ns, name)] -= 1
                old["metadata"].setdefault("annotations", {})[TOUCHED] = str(uuid.uuid4())
                old["metadata"]["resourceVersion"] = self.next_rv()
                self.dump()
            if isinstance(pmd, dict) and "resourceVersion" in pmd and pmd["resourceVersion"] is not None \
                    and pmd["resourceVersion"] != old["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict", 'Operation cannot be fulfilled on deployments.apps "%s": the '
                               "object has been modified; please apply your changes to the latest version and "
                               "try again" % name, {"name": name, "group": "apps", "kind": "deployments"})
            new = strategic_merge(old, patch) if kind == "strategic" else json_merge(old, patch)
            if not isinstance(new.get("metadata"), dict):
                new["metadata"] = {}
            # The server owns these; status is its own subresource.
            for k in ("name", "namespace", "uid", "generation", "resourceVersion", "creationTimestamp"):
                if k in old["metadata"]:
                    new["metadata"][k] = old["metadata"][k]
            new["apiVersion"], new["kind"] = "apps/v1", "Deployment"
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            validate(new, old)
            if new == old:
                return copy.deepcopy(old)          # a no-op patch changes nothing
            if new.get("spec") != old.get("spec"):
                new["metadata"]["generation"] = old["metadata"]["generation"] + 1
            new["metadata"]["resourceVersion"] = self.next_rv()
            self.objects[(ns, name)] = new
            if new.get("spec") != old.get("spec"):
                self.start_rollout((ns, name), new)
            self.dump()
            return copy.deepcopy(new)

    def add_conflicts(self, ns, name, count):
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise ApiError(400, "BadRequest", "count must be a non-negative integer")
        with self.lock:
            if (ns, name) not in self.objects:
                raise not_found(name)
            self.conflicts[(ns, name)] = count
            return {"ok": True, "count": count}

    def add_denial(self, ns, name, body):
        code = body.get("code", 400) if isinstance(body, dict) else None
        message = body.get("message") if isinstance(body, dict) else None
        if not isinstance(code, int) or isinstance(code, bool) or not 400 <= code <= 599 \
                or not isinstance(message, str):
            raise ApiError(400, "BadRequest", "deny needs a string message and a 4xx/5xx code")
        with self.lock:
            if (ns, name) not in self.objects:
                raise not_found(name)
            self.denials[(ns, name)] = (code, message)
            return {"ok": True}

    def mark_ready(self, ns, name):
        with self.lock:
            obj = self.objects.get((ns, name))
            if not obj:
                raise not_found(name)
            annotations = obj["metadata"].get("annotations", {})
            annotations.pop(NEVER_READY, None)
            annotations.pop(NEVER_READY_IMAGE, None)
            obj["metadata"]["resourceVersion"] = self.next_rv()
            self.dump()
            return {"ok": True}

    def mark_failing(self, ns, name):
        with self.lock:
            obj = self.objects.get((ns, name))
            if not obj:
                raise not_found(name)
            obj["metadata"].setdefault("annotations", {})[NEVER_READY] = "true"
            obj["metadata"]["resourceVersion"] = self.next_rv()
            self.dump()
            return {"ok": True}


# ---- HTTP ------------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "k8s-standin"
    timeout = 30

    def log_message(self, fmt, *args):        # the default logs the request line only; we log our own
        pass

    def send_json(self, code, obj, user="-"):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Audit-Id", str(uuid.uuid4()))
        self.end_headers()
        log("%s %s -> %d (%s)" % (self.command, urlsplit(self.path).path, code, user))
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError) as e:
            log("client went away while sending %d bytes: %s" % (len(body), e.__class__.__name__))
            self.close_connection = True

    def send_text(self, code, text):
        body = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        log("%s %s -> %d" % (self.command, urlsplit(self.path).path, code))
        self.wfile.write(body)

    def _read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise ApiError(411, "BadRequest", "chunked request bodies are not supported by the stand-in")
        try:
            n = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            raise ApiError(400, "BadRequest", "bad Content-Length")
        if n < 0 or n > BODY_MAX:
            self.close_connection = True
            raise ApiError(413, "RequestEntityTooLarge", "the request body is too large")
        return self.rfile.read(n) if n else b""

    def authenticate(self):
        """Returns the user name, or None. Like kube-apiserver: a verified
        client certificate or a bearer token; anonymous when neither is
        configured."""
        a = self.server.args
        if a.client_ca and isinstance(self.connection, ssl.SSLSocket):
            cert = self.connection.getpeercert()
            if cert:
                for rdn in cert.get("subject", ()):
                    for k, v in rdn:
                        if k == "commonName":
                            return v
                return "client-certificate"
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            t = auth[7:].strip().encode()
            if a.token and hmac.compare_digest(t, a.token.encode()):
                return "norn"
            if a.readonly_token and hmac.compare_digest(t, a.readonly_token.encode()):
                return "readonly"
            return None
        if not a.token and not a.client_ca and not a.readonly_token:
            return "system:anonymous"
        return None

    def handle_api(self, method):
        path = urlsplit(self.path).path
        m = DEPLOYMENT_PATH.match(path)
        if not m:
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        ns, name = m.group(1), m.group(2)

        user = self.authenticate()
        self.user = user or "-"
        if user is None:
            self.read_body()
            raise ApiError(401, "Unauthorized", "Unauthorized")

        verb = {"GET": "get" if name else "list", "PATCH": "patch", "POST": "create"}.get(method)
        if verb is None or (verb in ("patch",) and not name) or (verb == "create" and name):
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        if user == "readonly" and verb not in ("get", "list"):
            self.read_body()
            raise ApiError(403, "Forbidden", 'deployments.apps%s is forbidden: User "readonly" cannot %s resource '
                           '"deployments" in API group "apps" in the namespace "%s"'
                           % (' "%s"' % name if name else "", verb, ns),
                           {"name": name or "", "group": "apps", "kind": "deployments"})

        if self.server.args.delay > 0:
            time.sleep(self.server.args.delay)

        store = self.server.store
        if verb == "get":
            return 200, store.get(ns, name)
        if verb == "list":
            return 200, store.list(ns)

        raw = self.read_body()
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if verb == "patch":
            kinds = {"application/strategic-merge-patch+json": "strategic",
                     "application/merge-patch+json": "merge"}
            if ctype not in kinds:
                raise ApiError(415, "UnsupportedMediaType",
                               "the body of the request was in an unknown format - accepted media types include: "
                               "application/strategic-merge-patch+json, application/merge-patch+json")
            body = self.parse_json(raw)
            return 200, store.patch(ns, name, kinds[ctype], body)
        if ctype not in ("application/json", ""):
            raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - "
                           "accepted media types include: application/json")
        return 201, store.create(ns, self.parse_json(raw))

    @staticmethod
    def parse_json(raw):
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise ApiError(400, "BadRequest", "error decoding the request body: %s" % e)

    def read_body(self):
        self.body_read = True
        return self._read_body()

    def dispatch(self, method):
        self.user = "-"
        self.body_read = False
        path = urlsplit(self.path).path
        try:
            if method == "GET" and path in ("/healthz", "/livez", "/readyz"):
                return self.send_text(200, "ok")
            if method == "GET" and path == "/version":
                return self.send_json(200, {"major": "1", "minor": "29", "gitVersion": "v1.29.0-norn-standin",
                                            "platform": "linux/amd64"})
            if method == "GET" and path == "/_standin/state":
                with self.server.store.lock:
                    return self.send_json(200, {"deployments": list(self.server.store.objects.values())})
            m = CONTROL_PATH.match(path)
            if method == "POST" and m:
                raw = self.read_body()
                if m.group(3) == "conflict":
                    body = self.parse_json(raw) if raw.strip() else {}
                    count = body.get("count", 1) if isinstance(body, dict) else None
                    return self.send_json(200, self.server.store.add_conflicts(m.group(1), m.group(2), count))
                if m.group(3) == "deny":
                    return self.send_json(200, self.server.store.add_denial(m.group(1), m.group(2),
                                                                            self.parse_json(raw)))
                if m.group(3) == "ready":
                    return self.send_json(200, self.server.store.mark_ready(m.group(1), m.group(2)))
                return self.send_json(200, self.server.store.mark_failing(m.group(1), m.group(2)))
            code, obj = self.handle_api(method)
            self.send_json(code, obj, self.user)
        except ApiError as e:
            if not self.body_read:      # keep the connection in step for the next request
                try:
                    self.read_body()
                except ApiError:
                    self.close_connection = True
            self.send_json(e.code, e.status(), self.user)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:  # a bug in the stand-in: say so, as a 500
            log("internal error: %r" % e)
            self.send_json(500, ApiError(500, "InternalError", "stand-in internal error").status(), self.user)

    def do_GET(self):
        self.dispatch("GET")

    def do_PATCH(self):
        self.dispatch("PATCH")

    def do_POST(self):
        self.dispatch("POST")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_DELETE(self):
        self.dispatch("DELETE")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, args, store, tls):
        self.args, self.store, self.tls = args, store, tls
        super().__init__(addr, Handler)

    def finish_request(self, request, client_address):
        # The TLS handshake happens here, in the connection's own thread, so a
        # slow or failing client never holds up the others.
        if self.tls:
            request.settimeout(10)
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError) as e:
                log("TLS handshake with %s failed: %s" % (client_address[0], getattr(e, "reason", None) or e))
                return
        try:
            request.settimeout(None)
            self.RequestHandlerClass(request, client_address, self)
        finally:
            if self.tls:
                try:
                    request.close()
                except OSError:
                    pass


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0: pick a free port")
    p.add_argument("--port-file", help="write the port here (atomically) once listening")
    p.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM)")
    p.add_argument("--tls-key", help="... and this key")
    p.add_argument("--client-ca", help="verify client certificates against this CA; a verified one authenticates")
    p.add_argument("--require-client-cert", action="store_true", help="fail the TLS handshake without one")
    p.add_argument("--token", help="bearer token that authenticates (user \"norn\")")
    p.add_argument("--readonly-token", help="bearer token allowed to get and list only (403 otherwise)")
    p.add_argument("--state", help="JSON file: deployments to preload; rewritten on every change")
    p.add_argument("--rollout-seconds", type=float, default=1.0, help="how long a rollout takes")
    p.add_argument("--deadline-scale", type=float, default=1.0,
                   help="multiplies spec.progressDeadlineSeconds (600 by default)")
    p.add_argument("--delay", type=float, default=0.0, help="answer every API request this many seconds late")
    args = p.parse_args()

    if bool(args.tls_cert) != bool(args.tls_key):
        p.error("--tls-cert and --tls-key go together")
    if (args.client_ca or args.require_client_cert) and not args.tls_cert:
        p.error("client certificates need --tls-cert")

    tls = None
    if args.tls_cert:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.minimum_version = ssl.TLSVersion.TLSv1_2
        tls.load_cert_chain(args.tls_cert, args.tls_key)
        tls.set_alpn_protocols(["http/1.1"])
        if args.client_ca:
            tls.load_verify_locations(args.client_ca)
            tls.verify_mode = ssl.CERT_REQUIRED if args.require_client_cert else ssl.CERT_OPTIONAL

    store = Store(args)
    server = Server((args.host, args.port), args, store, tls)
    port = server.server_address[1]

    def stop(signo, frame):
        raise SystemExit(0)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def controller():
        while True:
            time.sleep(0.05)
            store.tick()
    threading.Thread(target=controller, daemon=True).start()

    with store.lock:
        store.dump()
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.replace(tmp, args.port_file)
    print("port %d" % port, flush=True)
    log("listening on %s://%s:%d" % ("https" if tls else "http", args.host, port))
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


if __name__ == "__main__":
    sys.exit(main())
