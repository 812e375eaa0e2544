/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* See webhook-payload.h; api-webhook.c decides what to do with the result,
 * tests/fuzz/fuzz-webhook.c feeds it. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "string-util.h"
#include "utf8.h"
#include "webhook-payload.h"

static int parse_signature(const char *hex, uint8_t ret[WEBHOOK_DIGEST_SIZE]) {
        if (!hex || strlen(hex) != WEBHOOK_DIGEST_SIZE * 2)
                return -EINVAL;
        for (size_t i = 0; i < WEBHOOK_DIGEST_SIZE; i++) {
                int hi = unhexchar(hex[2 * i]), lo = unhexchar(hex[2 * i + 1]);

                if (hi < 0 || lo < 0)
                        return -EINVAL;
                ret[i] = (uint8_t) (hi * 16 + lo);
        }
        return 0;
}

int webhook_delivery_parse(const WebhookHeaders *h, WebhookDelivery *ret, const char **ret_error) {
        WebhookDelivery d = {};
        const char *sig_hex;

        if (h->gitea_signature) {
                d.provider = WEBHOOK_GITEA;
                sig_hex = h->gitea_signature;
                d.event = h->gitea_event ?: h->github_event;
                d.delivery = h->gitea_delivery ?: h->github_delivery;
        } else if (h->github_signature) {
                d.provider = WEBHOOK_GITHUB;
                if (strncmp(h->github_signature, "sha256=", 7) != 0) {
                        *ret_error = "X-Hub-Signature-256 must be sha256=<hex HMAC-SHA256 of the body>";
                        return -EACCES;
                }
                sig_hex = h->github_signature + 7;
                d.event = h->github_event;
                d.delivery = h->github_delivery;
        } else {
                *ret_error = "unsigned webhook: X-Hub-Signature-256 (GitHub) or X-Gitea-Signature (Gitea) "
                             "is required";
                return -EACCES;
        }
        if (parse_signature(sig_hex, d.signature) < 0) {
                *ret_error = "malformed webhook signature";
                return -EACCES;
        }
        ret->provider = d.provider;
        if (!webhook_delivery_id_is_valid(d.delivery))
                return -EINVAL;
        *ret = d;
        return 0;
}

static bool sha_is_valid(const char *s) {
        size_t n = s ? strlen(s) : 0;

        return (n == 40 || n == 64) && strspn(s, "0123456789abcdef") == n && strspn(s, "0") != n;
}

int webhook_push_parse(const char *content_type, const char *body, size_t size, WebhookPush *ret,
                       const char **ret_code, const char **ret_error) {
        _cleanup_(json_decrefp) json_t *payload = NULL;
        const char *ref, *after;
        json_t *repository;

        if (!content_type || strncasecmp(content_type, "application/json", 16) != 0) {
                *ret_code = "unsupported_media_type";
                *ret_error = "the webhook must send application/json";
                return 415;
        }
        if (!body || !utf8_is_valid_n(body, size)) {
                *ret_code = "invalid_json";
                *ret_error = "the payload is not valid UTF-8 JSON";
                return 400;
        }
        payload = json_loadb(body, size, 0, NULL);
        if (!json_is_object(payload)) {
                *ret_code = "invalid_json";
                *ret_error = "the payload is not a JSON object";
                return 400;
        }
        ref = json_string_value(json_object_get(payload, "ref"));
        after = json_string_value(json_object_get(payload, "after"));
        repository = json_object_get(payload, "repository");
        if (!ref || !after || !json_is_object(repository)) {
                *ret_code = "invalid_argument";
                *ret_error = "a push payload needs ref, after (strings) and repository (an object)";
                return 400;
        }
        if (strncmp(ref, "refs/heads/", 11) != 0 || !sha_is_valid(after) ||
            json_is_true(json_object_get(payload, "deleted")))
                return 1;

        *ret = (WebhookPush) {
                .branch = ref + 11,
                .after = after,
                .repository = repository,
                .payload = TAKE_PTR(payload),
        };
        return 0;
}

void webhook_push_done(WebhookPush *p) {
        json_decref(p->payload);
        *p = (WebhookPush) {};
}

char *webhook_url_normalize(const char *url) {
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

bool webhook_url_matches(const char *spec_url, json_t *repository) {
        _cleanup_free_ char *want = webhook_url_normalize(spec_url);
        static const char *const keys[] = { "clone_url", "ssh_url", "html_url", "git_url", "url" };

        if (!want || !*want)
                return false;
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                const char *v = json_string_value(json_object_get(repository, keys[i]));
                _cleanup_free_ char *got = v ? webhook_url_normalize(v) : NULL;

                if (got && streq(got, want))
                        return true;
        }
        return false;
}
