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
#include "webhook-payload.h"
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
        _cleanup_(webhook_push_done) WebhookPush push = {};
        const HttpRequest *req = ctx->req;
        Manager *m = ctx->manager;
        WebhookDelivery wd = {};
        WebhookProvider provider;
        const char *event, *delivery, *requested_by, *reason = NULL, *code = NULL;
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

        r = webhook_delivery_parse(&(const WebhookHeaders) {
                                           .gitea_signature = gitea_sig, .github_signature = github_sig,
                                           .gitea_event = gitea_event, .github_event = github_event,
                                           .gitea_delivery = gitea_delivery, .github_delivery = github_delivery,
                                   }, &wd, &reason);
        if (r == -EACCES)
                return api_fail(ctx->ret_body, 401, "unauthorized", "%s", reason);
        if (r < 0)
                return api_fail(ctx->ret_body, 400, "invalid_argument",
                                "%s is required: 1 to %u printable characters without spaces",
                                wd.provider == WEBHOOK_GITEA ? "X-Gitea-Delivery" : "X-GitHub-Delivery",
                                WEBHOOK_DELIVERY_ID_MAX);
        provider = wd.provider;
        event = wd.event;
        delivery = wd.delivery;

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
                    signature_verifies(s->repo.webhook_secret, req->body ?: "", req->body_size, wd.signature)) {
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
        r = webhook_replay_check_and_remember(delivery, wd.signature, now_usec);
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

        r = webhook_push_parse(req->content_type, req->body, req->body_size, &push, &code, &reason);
        if (r == 1) {
                *ctx->ret_body = json_pack("{s:[], s:[], s:s}", "deployed", "errors", "ignored",
                                           "not a push of a branch commit");
                return 202;
        }
        if (r != 0)
                return api_fail(ctx->ret_body, r, code, "%s", reason);

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
                if (!streq(push.branch, s->repo.branch ?: "main") ||
                    !webhook_url_matches(s->repo.url, push.repository))
                        continue;

                log_info("Push of %s to refs/heads/%s (%s): deploying %s.", push.after, push.branch, requested_by,
                         e->id);
                c->pending++;
                r = scheduler_submit(m, e->id, push.after, requested_by, on_webhook_queued, c, &why);
                if (r < 0) {
                        c->pending--;
                        add_error(c, e->id, why ?: strerror(-r));
                }
        }
        c->submitting = false;
        webhook_call_maybe_answer(c);
        return HTTP_DEFERRED;
}
