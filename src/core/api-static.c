/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The dashboard's files (web/ in the source tree, share/norn/dashboard when
 * installed; NORN_DASHBOARD_DIR), served at / without a token: they hold
 * nothing secret, and every API call they make needs the token.
 *
 * Only a flat name of the dashboard directory can be asked for: "/" is
 * index.html, "/NAME.EXT" a file whose name is letters, digits, '-' and '_'
 * with one known extension, opened with openat() below the directory (no
 * '/', no leading dot, no symlink followed), regular files only. Anything
 * else is a 404 like a missing file.
 *
 * Caching: an ETag from inode, size and mtime and "Cache-Control: no-cache",
 * so browsers revalidate (304) and an upgrade is seen at once. Every answer
 * carries a strict Content-Security-Policy: the page's own files only, no
 * inline script or style, no eval, connections to this origin (and its
 * WebSocket) only, no framing. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api-internal.h"
#include "log.h"
#include "macro.h"

#define STATIC_FILE_MAX (1024U * 1024U)
#define STATIC_NAME_MAX 64U

static const struct {
        const char *ext;
        const char *type;
} content_types[] = {
        { "html", "text/html; charset=utf-8" },
        { "js",   "text/javascript; charset=utf-8" },
        { "css",  "text/css; charset=utf-8" },
        { "svg",  "image/svg+xml" },
        { "png",  "image/png" },
        { "ico",  "image/x-icon" },
        { "json", "application/json" },
        { "txt",  "text/plain; charset=utf-8" },
};

static bool char_is_name(char ch) {
        return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
               ch == '_';
}

/* The file a request path names, and its Content-Type; NULL when none. */
const char *api_static_file_name(const char *path, const char **ret_type) {
        const char *name, *dot;
        size_t n;

        assert(path);

        if (streq(path, "/") || streq(path, "/index.html")) {
                *ret_type = content_types[0].type;
                return "index.html";
        }
        if (path[0] != '/')
                return NULL;
        name = path + 1;
        n = strlen(name);
        if (n == 0 || n > STATIC_NAME_MAX)
                return NULL;
        dot = strchr(name, '.');
        if (!dot || dot == name)
                return NULL;
        for (const char *p = name; p < dot; p++)
                if (!char_is_name(*p))
                        return NULL;
        for (size_t i = 0; i < ELEMENTSOF(content_types); i++)
                if (streq(dot + 1, content_types[i].ext)) {
                        *ret_type = content_types[i].type;
                        return name;
                }
        return NULL;
}

/* A Host header that may stand in a header value and a CSP source:
 * host name or IP literal, optional port. */
static bool host_is_plain(const char *host) {
        size_t n = strlen(host);

        return n > 0 && n <= 255 && strspn(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]") == n;
}

static int static_send(const HttpRequest *req, int status, const char *type, const char *etag, const void *body,
                       size_t size) {
        _cleanup_free_ char *host = NULL, *csp = NULL;
        const char *connect = "'self'";
        _cleanup_free_ char *ws = NULL;
        int r;

        /* 'self' covers ws: of the same origin in CSP 3; older browsers need
         * it spelled out. */
        r = http_request_get_header(req, "host", &host);
        if (r == -ENOMEM)
                return r;
        if (r >= 0 && host_is_plain(host)) {
                if (asprintf(&ws, "'self' ws://%s wss://%s", host, host) < 0)
                        return -ENOMEM;
                connect = ws;
        }
        if (asprintf(&csp,
                     "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                     "connect-src %s; manifest-src 'self'; base-uri 'none'; form-action 'self'; "
                     "frame-ancestors 'none'",
                     connect) < 0)
                return -ENOMEM;

        const char *headers[] = {
                "content-security-policy:", csp,
                "cache-control:", "no-cache",
                "referrer-policy:", "no-referrer",
                "x-frame-options:", "DENY",
                etag ? "etag:" : NULL, etag,
                NULL,
        };
        r = http_request_respond_raw(req, status, type, headers, body, size);
        if (r < 0)
                log_debug_errno(r, "Cannot answer %s %s: %m", req->method, req->path);
        return HTTP_SENT;
}

static int static_not_found(const HttpRequest *req, int status, const char *message) {
        char body[128];
        int n;

        n = snprintf(body, sizeof(body), "{\"error\":\"%s\",\"code\":\"%s\"}", message,
                     status == 404 ? "not_found" : status == 405 ? "method_not_allowed" : "unavailable");
        return static_send(req, status, "application/json", NULL, body, (size_t) n);
}

/* if-none-match holds etag (or is "*"). */
static bool etag_matches(const char *if_none_match, const char *etag) {
        const char *p = if_none_match;
        size_t n = strlen(etag);

        for (;;) {
                p += strspn(p, " \t,");
                if (!*p)
                        return false;
                if (*p == '*')
                        return true;
                if (strncmp(p, "W/", 2) == 0)
                        p += 2;
                if (strncmp(p, etag, n) == 0 && (p[n] == 0 || p[n] == ',' || p[n] == ' ' || p[n] == '\t'))
                        return true;
                p += strcspn(p, ",");
        }
}

int api_static_handle(Manager *m, const HttpRequest *req) {
        _cleanup_close_ int dfd = -EBADF, fd = -EBADF;
        _cleanup_free_ char *inm = NULL, *data = NULL;
        const char *name, *type = NULL;
        char etag[96];
        struct stat st;
        size_t got = 0;
        int r;

        name = api_static_file_name(req->path, &type);
        if (!name)
                return static_not_found(req, 404, "no such file");
        if (!streq(req->method, "GET") && !streq(req->method, "HEAD"))
                return static_not_found(req, 405, "method not allowed for this path");

        dfd = open(m->config.dashboard_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0) {
                log_debug_errno(-errno, "Cannot open dashboard directory %s: %m", m->config.dashboard_dir);
                return static_not_found(req, 404, "no such file");
        }
        fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
                return static_not_found(req, 404, "no such file");
        if ((uint64_t) st.st_size > STATIC_FILE_MAX)
                return static_not_found(req, 404, "no such file");

        snprintf(etag, sizeof(etag), "\"%" PRIx64 "-%" PRIx64 "-%" PRIx64 "\"", (uint64_t) st.st_ino,
                 (uint64_t) st.st_size, (uint64_t) st.st_mtim.tv_sec * UINT64_C(1000000000) + (uint64_t) st.st_mtim.tv_nsec);

        r = http_request_get_header(req, "if-none-match", &inm);
        if (r == -ENOMEM)
                return r;
        if (r >= 0 && etag_matches(inm, etag))
                return static_send(req, 304, type, etag, NULL, 0);

        /* Small local files: read at once. */
        data = malloc((size_t) st.st_size + 1);
        if (!data)
                return -ENOMEM;
        while (got < (size_t) st.st_size) {
                ssize_t n = read(fd, data + got, (size_t) st.st_size - got);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return static_not_found(req, 404, "no such file");
                got += (size_t) n;
        }
        return static_send(req, 200, type, etag, data, got);
}
