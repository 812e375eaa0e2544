/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Who may use the API: a bearer token (NORN_API_TOKEN or
 * NORN_API_TOKEN_FILE), or, when none is configured, any non-browser client
 * on this host (loopback) and nobody else. The token is never logged, nor is
 * the Authorization header.
 *
 * Without a token, loopback alone is not enough: any web page open in a
 * browser on this host can reach 127.0.0.1 too (a no-cors POST, a WebSocket,
 * or reading answers after rebinding its own name to 127.0.0.1). Browsers
 * say so: they send Origin on every cross-origin request, POST and
 * WebSocket upgrade, Sec-Fetch-Site on every fetch, and the page's own
 * host name in Host. So a request with an Origin, a Sec-Fetch-Site other
 * than "none" (typed into the address bar) or a Host other than a loopback
 * literal or localhost is refused; a browser needs the token. */
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <string.h>
#include <strings.h>

#include "api-internal.h"
#include "log.h"
#include "macro.h"

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

/* "127.0.0.1", "[::1]" or "localhost", each with an optional ":port". */
static bool host_is_loopback(const char *host) {
        static const char *const names[] = { "127.0.0.1", "[::1]", "localhost" };
        const char *port = NULL;
        size_t n;

        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                n = strlen(names[i]);

                if (strncasecmp(host, names[i], n) == 0 && (host[n] == 0 || host[n] == ':')) {
                        port = host + n;
                        break;
                }
        }
        if (!port)
                return false;
        if (!*port)
                return true;
        n = strlen(++port);
        return n >= 1 && n <= 5 && strspn(port, "0123456789") == n;
}

/* 0 when req shows no sign of coming from a browser (or of a name not ours),
 * else 403 with *ret_body set, or -ENOMEM. */
static int refuse_browser(const HttpRequest *req, json_t **ret_body) {
        _cleanup_free_ char *origin = NULL, *site = NULL, *host = NULL;
        int r;

        r = http_request_get_header(req, "origin", &origin);
        if (r == -ENOMEM)
                return r;
        if (r != -ENOENT)
                return api_fail(ret_body, 403, "forbidden",
                                "browser requests need a token: no API token is configured, and this "
                                "request carries an Origin header");

        r = http_request_get_header(req, "sec-fetch-site", &site);
        if (r == -ENOMEM)
                return r;
        if (r != -ENOENT && (r < 0 || !streq(site, "none")))
                return api_fail(ret_body, 403, "forbidden",
                                "browser requests need a token: no API token is configured, and this "
                                "request carries Sec-Fetch-Site");

        r = http_request_get_header(req, "host", &host);
        if (r == -ENOMEM)
                return r;
        if (r < 0 || !host_is_loopback(host))
                return api_fail(ret_body, 403, "forbidden",
                                "browser requests need a token: no API token is configured, and Host is not "
                                "127.0.0.1, [::1] or localhost (with an optional port)");
        return 0;
}

int api_authorize(Manager *m, const HttpRequest *req, json_t **ret_body) {
        const char *a = req->authorization, *token;
        size_t n;
        int r;

        if (!m->config.api_token) {
                /* No token: local non-browser clients only (see config.c). */
                if (!req->peer_local)
                        return api_fail(ret_body, 403, "forbidden",
                                        "no API token is configured: the API only answers clients on this host");
                r = refuse_browser(req, ret_body);
                if (r > 0)
                        log_debug("HTTP API request %s %s refused: looks like a browser, and no token is configured.",
                                  req->method, req->path);
                return r;
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
