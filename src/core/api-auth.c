/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Who may use the API: a bearer token (NORN_API_TOKEN or
 * NORN_API_TOKEN_FILE), or, when none is configured, any client on this
 * host (loopback) and nobody else. The token is never logged, nor is the
 * Authorization header. */
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <string.h>
#include <strings.h>

#include "api-internal.h"
#include "log.h"

bool api_token_matches(Manager *m, const char *token, size_t size) {
        unsigned char want[SHA256_DIGEST_LENGTH], got[SHA256_DIGEST_LENGTH];
        const char *configured = m->config.api_token;
        bool ok;

        if (!configured || !token)
                return false;
        /* Digests of both, compared with CRYPTO_memcmp: the time taken does
         * not depend on where they differ, nor on the lengths. */
        SHA256((const unsigned char *) configured, strlen(configured), want);
        SHA256((const unsigned char *) token, size, got);
        ok = CRYPTO_memcmp(want, got, sizeof(want)) == 0;
        OPENSSL_cleanse(want, sizeof(want));
        OPENSSL_cleanse(got, sizeof(got));
        return ok;
}

static int unauthorized(json_t **ret_body, const char *message) {
        *ret_body = json_pack("{s:s, s:s, s:s}", "error", message, "code", "unauthorized",
                              "authenticate", "Bearer realm=\"norn\"");
        return 401;
}

int api_authorize(Manager *m, const HttpRequest *req, json_t **ret_body) {
        const char *a = req->authorization, *token;
        size_t n;

        if (!m->config.api_token) {
                /* No token: local clients only (see config.c). */
                if (req->peer_local)
                        return 0;
                return api_fail(ret_body, 403, "forbidden",
                                "no API token is configured: the API only answers clients on this host");
        }

        if (!a)
                return unauthorized(ret_body, "missing bearer token (Authorization: Bearer <token>)");
        while (*a == ' ')
                a++;
        if (strncasecmp(a, "Bearer", 6) != 0 || (a[6] != ' ' && a[6] != '\t'))
                return unauthorized(ret_body, "missing bearer token (Authorization: Bearer <token>)");
        token = a + 6;
        while (*token == ' ' || *token == '\t')
                token++;
        n = strlen(token);
        while (n > 0 && (token[n - 1] == ' ' || token[n - 1] == '\t'))
                n--;

        if (!api_token_matches(m, token, n)) {
                log_debug("HTTP API request %s %s refused: wrong bearer token.", req->method, req->path);
                return unauthorized(ret_body, "invalid bearer token");
        }
        return 0;
}
