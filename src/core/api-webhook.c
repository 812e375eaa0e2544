/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* POST /api/webhooks/push: git push webhooks of GitHub and Gitea.
 *
 * Not behind the API token: each push must be signed instead, HMAC-SHA256
 * over the raw body with the repo.webhookSecret of an app:
 *   GitHub  X-Hub-Signature-256: sha256=<hex>   X-GitHub-Event: push
 *   Gitea   X-Gitea-Signature: <hex>            X-Gitea-Event: push
 * (Gitea also sends the GitHub headers; X-Gitea-Signature wins.) Each
 * delivery must carry its id, X-GitHub-Delivery or X-Gitea-Delivery. The
 * signature is checked against the secret of every app that has one, each in
 * constant time; a push no secret verifies is refused with 401 and changes
 * nothing. Of the apps whose secret verified it, those with repo.autoDeploy,
 * deploy: true, a repo.url equal (normalized) to the payload's
 * repository.clone_url, ssh_url or html_url, and ref == refs/heads/<branch>
 * get a deploy of the pushed commit ("after"), requested by "webhook github"
 * or "webhook gitea".
 *
 * The app list comes from webhook-apps.c (rediscovered only when the apps
 * directory changed), and before any secret is tried the request must fit
 * in the limits below: nothing here is authenticated yet, so a stranger
 * must not be able to make nornd hash megabytes at will. A verified
 * delivery whose id or signature was seen before is refused (webhook-
 * replay.c): a captured push cannot be replayed to deploy an old commit.
 *
 *   401  no signature, a malformed one, or no app's secret verifies it
 *   400  no or a malformed delivery id
 *   429  more than WEBHOOK_IN_FLIGHT_MAX deliveries in progress, or over
 *        the rate (token bucket of WEBHOOK_BURST, WEBHOOK_RATE_PER_SEC)
 *   409  verified, but that delivery id or signed body was seen before
 *   400  signed, but not a JSON object / fields of the wrong type
 *   415  signed, but not Content-Type: application/json
 *   200  {"pong": true} for a signed ping
 *   202  {"deployed": [{"app", "deploymentId"}], "errors": [{"app", "error"}]}
 *        (also for other events, tags and branch deletions: nothing deployed) */
#include <ctype.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api-internal.h"
#include "apps.h"
#include "log.h"
#include "scheduler.h"
#include "utf8.h"
#include "string-util.h"
#include "webhook-apps.h"
#include "webhook-replay.h"

#define SIGNATURE_SIZE WEBHOOK_DIGEST_SIZE

/* Limits of the unauthenticated part. A check costs one token plus one per
 * MiB of body per app secret it is HMACed with: a flood of large bodies is
 * throttled harder than a flood of small ones. Real providers send a few
 * deliveries a minute. */
#define WEBHOOK_IN_FLIGHT_MAX 4U
#define WEBHOOK_RATE_PER_SEC 16U
#define WEBHOOK_BURST 32U
#define TOKEN UINT64_C(1000000)        /* tokens are counted in millionths */

static unsigned webhooks_in_flight;
static struct {
        uint64_t tokens;
        uint64_t at_usec;
        bool started;
} bucket;

static bool bucket_take(uint64_t now_usec, uint64_t cost) {
        const uint64_t cap = WEBHOOK_BURST * TOKEN;

        if (!bucket.started) {
                bucket.tokens = cap;
                bucket.started = true;
        } else if (now_usec > bucket.at_usec)
                /* TOKEN per second is one millionth of a token per µs. */
                bucket.tokens = MIN(cap, bucket.tokens + (now_usec - bucket.at_usec) * WEBHOOK_RATE_PER_SEC);
        bucket.at_usec = now_usec;

        /* A check dearer than the whole bucket still runs when it is full. */
        cost = MIN(cost, WEBHOOK_BURST) * TOKEN;
        if (bucket.tokens < cost)
                return false;
        bucket.tokens -= cost;
        return true;
}

typedef enum WebhookProvider {
        WEBHOOK_GITHUB,
        WEBHOOK_GITEA,
} WebhookProvider;

static int parse_signature(const char *hex, uint8_t ret[SIGNATURE_SIZE]) {
        if (!hex || strlen(hex) != SIGNATURE_SIZE * 2)
                return -EINVAL;
        for (size_t i = 0; i < SIGNATURE_SIZE; i++) {
                int hi = unhexchar(hex[2 * i]), lo = unhexchar(hex[2 * i + 1]);

                if (hi < 0 || lo < 0)
                        return -EINVAL;
                ret[i] = (uint8_t) (hi * 16 + lo);
        }
        return 0;
}

static bool signature_verifies(const char *secret, const void *body, size_t size,
                               const uint8_t want[SIGNATURE_SIZE]) {
        uint8_t mac[EVP_MAX_MD_SIZE];
        unsigned mac_len = 0;
        bool ok;

        if (!HMAC(EVP_sha256(), secret, (int) strlen(secret), body, size, mac, &mac_len) ||
            mac_len != SIGNATURE_SIZE)
                return false;
        ok = CRYPTO_memcmp(mac, want, SIGNATURE_SIZE) == 0;
        OPENSSL_cleanse(mac, sizeof(mac));
        return ok;
}

/* A repository URL reduced to host[:port]/path in lower case, without
 * scheme, user, default port, trailing "/" or ".git": https://, ssh://,
 * git://, scp-style user@host:path and file:// URLs of one repository then
 * compare equal. */
static char *url_normalize(const char *url) {
        _cleanup_free_ char *s = NULL;
        const char *p, *scheme_end;
        char *out, *slash, *at;
        size_t n;

        if (!url || !*url || strlen(url) > 4096)
                return NULL;
        s = strdup(url);
        if (!s)
                return NULL;
        for (char *c = s; *c; c++)
                *c = (char) tolower((unsigned char) *c);

        p = s;
        scheme_end = strstr(s, "://");
        if (scheme_end)
                p = scheme_end + 3;
        else if (s[0] != '/') {
                /* scp-style [user@]host:path */
                char *colon = strchr(s, ':');
                slash = strchr(s, '/');
                if (colon && (!slash || colon < slash))
                        *colon = '/';
        }

        out = strdup(p);
        if (!out)
                return NULL;

        /* user[:password]@ before the first '/' */
        slash = strchr(out, '/');
        at = strchr(out, '@');
        if (at && (!slash || at < slash))
                memmove(out, at + 1, strlen(at + 1) + 1);

        /* default ports */
        slash = strchr(out, '/');
        n = slash ? (size_t) (slash - out) : strlen(out);
        for (const char *const *port = (const char *const[]) { ":443", ":80", ":22", NULL }; *port; port++) {
                size_t pl = strlen(*port);
                if (n > pl && memcmp(out + n - pl, *port, pl) == 0) {
                        memmove(out + n - pl, out + n, strlen(out + n) + 1);
                        break;
                }
        }

        n = strlen(out);
        while (n > 0 && out[n - 1] == '/')
                out[--n] = 0;
        if (n > 4 && streq(out + n - 4, ".git"))
                out[n -= 4] = 0;
        while (n > 0 && out[n - 1] == '/')
                out[--n] = 0;
        return out;
}

static bool url_matches(const char *spec_url, json_t *repository) {
        _cleanup_free_ char *want = url_normalize(spec_url);
        static const char *const keys[] = { "clone_url", "ssh_url", "html_url", "git_url", "url" };

        if (!want || !*want)
                return false;
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                const char *v = json_string_value(json_object_get(repository, keys[i]));
                _cleanup_free_ char *got = v ? url_normalize(v) : NULL;

                if (got && streq(got, want))
                        return true;
        }
        return false;
}

static bool sha_is_valid(const char *s) {
        size_t n = s ? strlen(s) : 0;

        return (n == 40 || n == 64) && strspn(s, "0123456789abcdef") == n && strspn(s, "0") != n;
}

typedef struct WebhookCall {
        HttpResponder *responder;
        json_t *deployed, *errors;
        unsigned pending;
        bool submitting;         /* still queuing: do not answer yet */
} WebhookCall;

static void webhook_call_maybe_answer(WebhookCall *c) {
        json_t *body;

        if (c->pending > 0 || c->submitting)
                return;
        body = json_pack("{s:O, s:O}", "deployed", c->deployed, "errors", c->errors);
        http_responder_complete(c->responder, body ? 202 : 500, body);
        json_decref(c->deployed);
        json_decref(c->errors);
        free(c);
        webhooks_in_flight--;
}

static void add_error(WebhookCall *c, const char *app, const char *error) {
        (void) json_array_append_new(c->errors, json_pack("{s:s, s:o}", "app", app, "error",
                                                          api_json_string(error ?: "failed")));
}

static void on_webhook_queued(Deployment *d, int r, const char *error, void *userdata) {
        WebhookCall *c = userdata;

        if (r < 0)
                add_error(c, d ? d->app : "?", error);
        else
                (void) json_array_append_new(c->deployed, json_pack("{s:s, s:I, s:s}", "app", d->app,
                                                                    "deploymentId", (json_int_t) d->id,
                                                                    "commitSha", d->ref));
        c->pending--;
        webhook_call_maybe_answer(c);
}

static int header(const HttpRequest *req, const char *name, char **ret) {
        int r = http_request_get_header(req, name, ret);

        if (r == -ENOENT || r == -E2BIG) {
                *ret = NULL;
                return 0;
        }
        return r;
}

int api_route_webhook_push(ApiContext *ctx) {
        _cleanup_free_ char *gitea_sig = NULL, *github_sig = NULL, *gitea_event = NULL, *github_event = NULL,
                *gitea_delivery = NULL, *github_delivery = NULL;
        const AppList *apps = NULL;
        _cleanup_free_ bool *verified = NULL;
        _cleanup_(json_decrefp) json_t *payload = NULL;
        const HttpRequest *req = ctx->req;
        Manager *m = ctx->manager;
        WebhookProvider provider;
        uint8_t sig[SIGNATURE_SIZE];
        const char *sig_hex, *event, *delivery, *ref, *after, *requested_by;
        json_t *repository;
        json_error_t err;
        size_t n_verified = 0, n_secrets = 0;
        uint64_t now_usec = 0, cost;
        WebhookCall *c;
        int r;

        if ((r = header(req, "x-gitea-signature", &gitea_sig)) < 0 ||
            (r = header(req, "x-hub-signature-256", &github_sig)) < 0 ||
            (r = header(req, "x-gitea-event", &gitea_event)) < 0 ||
            (r = header(req, "x-github-event", &github_event)) < 0 ||
            (r = header(req, "x-gitea-delivery", &gitea_delivery)) < 0 ||
            (r = header(req, "x-github-delivery", &github_delivery)) < 0)
                return r;

        if (gitea_sig) {
                provider = WEBHOOK_GITEA;
                sig_hex = gitea_sig;
                event = gitea_event ?: github_event;
                delivery = gitea_delivery ?: github_delivery;
        } else if (github_sig) {
                provider = WEBHOOK_GITHUB;
                if (strncmp(github_sig, "sha256=", 7) != 0)
                        return api_fail(ctx->ret_body, 401, "unauthorized",
                                        "X-Hub-Signature-256 must be sha256=<hex HMAC-SHA256 of the body>");
                sig_hex = github_sig + 7;
                event = github_event;
                delivery = github_delivery;
        } else
                return api_fail(ctx->ret_body, 401, "unauthorized",
                                "unsigned webhook: X-Hub-Signature-256 (GitHub) or X-Gitea-Signature (Gitea) "
                                "is required");
        if (parse_signature(sig_hex, sig) < 0)
                return api_fail(ctx->ret_body, 401, "unauthorized", "malformed webhook signature");
        if (!webhook_delivery_id_is_valid(delivery))
                return api_fail(ctx->ret_body, 400, "invalid_argument",
                                "%s is required: 1 to %u printable characters without spaces",
                                provider == WEBHOOK_GITEA ? "X-Gitea-Delivery" : "X-GitHub-Delivery",
                                WEBHOOK_DELIVERY_ID_MAX);

        if (webhooks_in_flight >= WEBHOOK_IN_FLIGHT_MAX)
                return api_fail(ctx->ret_body, 429, "too_many_requests",
                                "too many webhook deliveries in progress; retry later");

        r = sd_event_now(m->event, CLOCK_MONOTONIC, &now_usec);
        if (r < 0)
                return r;
        r = webhook_apps_get(m->config.apps_dir, now_usec, &apps);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return api_fail(ctx->ret_body, 503, "unavailable", "the apps directory cannot be read");

        for (size_t i = 0; i < apps->n; i++)
                if (apps->entries[i].spec && apps->entries[i].spec->repo.webhook_secret)
                        n_secrets++;
        cost = 1 + (uint64_t) req->body_size * n_secrets / (1024U * 1024U);
        if (!bucket_take(now_usec, cost)) {
                log_debug("Webhook delivery refused: over the rate limit.");
                return api_fail(ctx->ret_body, 429, "too_many_requests",
                                "too many webhook deliveries (at most %u per second); retry later",
                                WEBHOOK_RATE_PER_SEC);
        }

        /* Whose secret signed it? Every app with a secret is tried, each
         * in constant time. */
        verified = calloc(apps->n ?: 1, sizeof(bool));
        if (!verified)
                return -ENOMEM;
        for (size_t i = 0; i < apps->n; i++) {
                const Infraspec *s = apps->entries[i].spec;

                if (s && s->repo.webhook_secret &&
                    signature_verifies(s->repo.webhook_secret, req->body ?: "", req->body_size, sig)) {
                        verified[i] = true;
                        n_verified++;
                }
        }
        if (n_verified == 0) {
                log_info("Refused a %s webhook whose signature no app's secret verifies.",
                         provider == WEBHOOK_GITEA ? "Gitea" : "GitHub");
                return api_fail(ctx->ret_body, 401, "unauthorized", "invalid webhook signature");
        }

        /* Only now, verified, is the delivery remembered: a forged request
         * cannot burn the id of a real one. */
        r = webhook_replay_check_and_remember(delivery, sig, now_usec);
        if (r == -EEXIST) {
                log_info("Refused %s webhook delivery %s: a replay of a delivery already handled.",
                         provider == WEBHOOK_GITEA ? "Gitea" : "GitHub", delivery);
                return api_fail(ctx->ret_body, 409, "conflict",
                                "duplicate delivery: this delivery id or payload was handled already");
        }
        if (r < 0)
                return r;

        if (event && streq(event, "ping")) {
                *ctx->ret_body = json_pack("{s:b}", "pong", 1);
                return 200;
        }
        if (!event || !streq(event, "push")) {
                *ctx->ret_body = json_pack("{s:[], s:[], s:s}", "deployed", "errors", "ignored",
                                           "not a push event");
                return 202;
        }

        if (!req->content_type || strncasecmp(req->content_type, "application/json", 16) != 0)
                return api_fail(ctx->ret_body, 415, "unsupported_media_type",
                                "the webhook must send application/json");
        if (!req->body || !utf8_is_valid_n(req->body, req->body_size))
                return api_fail(ctx->ret_body, 400, "invalid_json", "the payload is not valid UTF-8 JSON");
        payload = json_loadb(req->body, req->body_size, 0, &err);
        if (!json_is_object(payload))
                return api_fail(ctx->ret_body, 400, "invalid_json", "the payload is not a JSON object");
        ref = json_string_value(json_object_get(payload, "ref"));
        after = json_string_value(json_object_get(payload, "after"));
        repository = json_object_get(payload, "repository");
        if (!ref || !after || !json_is_object(repository))
                return api_fail(ctx->ret_body, 400, "invalid_argument",
                                "a push payload needs ref, after (strings) and repository (an object)");
        if (strncmp(ref, "refs/heads/", 11) != 0 || !sha_is_valid(after) ||
            json_is_true(json_object_get(payload, "deleted"))) {
                *ctx->ret_body = json_pack("{s:[], s:[], s:s}", "deployed", "errors", "ignored",
                                           "not a push of a branch commit");
                return 202;
        }

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->deployed = json_array();
        c->errors = json_array();
        c->responder = http_request_defer(req);
        if (!c->deployed || !c->errors || !c->responder) {
                bool deferred = c->responder;

                http_responder_complete(c->responder, 500, NULL);
                json_decref(c->deployed);
                json_decref(c->errors);
                free(c);
                return deferred ? HTTP_DEFERRED : -ENOMEM;
        }
        webhooks_in_flight++;

        requested_by = provider == WEBHOOK_GITEA ? "webhook gitea" : "webhook github";
        c->submitting = true;
        for (size_t i = 0; i < apps->n; i++) {
                const AppEntry *e = apps->entries + i;
                const Infraspec *s = e->spec;
                _cleanup_free_ char *why = NULL;

                if (!verified[i] || !e->deployable || !s->repo.auto_deploy || !s->repo.url)
                        continue;
                if (!streq(ref + 11, s->repo.branch ?: "main") || !url_matches(s->repo.url, repository))
                        continue;

                log_info("Push of %s to %s (%s): deploying %s.", after, ref, requested_by, e->id);
                c->pending++;
                r = scheduler_submit(m, e->id, after, requested_by, on_webhook_queued, c, &why);
                if (r < 0) {
                        c->pending--;
                        add_error(c, e->id, why ?: strerror(-r));
                }
        }
        c->submitting = false;
        webhook_call_maybe_answer(c);
        return HTTP_DEFERRED;
}
