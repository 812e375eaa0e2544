/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Shared pieces of the HTTP API: error bodies, strict parsing of paths,
 * query strings and JSON bodies (all of it untrusted input), and the JSON of
 * deployment rows. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "api-internal.h"
#include "infraspec.h"
#include "utf8.h"
#include "string-util.h"

static json_t *error_body(const char *code, const char *format, va_list ap) _printf_(2, 0);
static json_t *error_body(const char *code, const char *format, va_list ap) {
        _cleanup_free_ char *msg = NULL;

        if (vasprintf(&msg, format, ap) < 0)
                msg = NULL;
        if (msg)
                utf8_sanitize(msg); /* a JSON string must be UTF-8 */
        return api_error(code, msg ?: "out of memory");
}

int api_fail(json_t **ret_body, int status, const char *code, const char *format, ...) {
        va_list ap;

        va_start(ap, format);
        *ret_body = error_body(code, format, ap);
        va_end(ap);
        return status;
}

void api_respond_error(HttpResponder *responder, int status, const char *code, const char *format, ...) {
        json_t *body;
        va_list ap;

        va_start(ap, format);
        body = error_body(code, format, ap);
        va_end(ap);
        http_responder_complete(responder, status, body);
}

int api_status_from_errno(int r, const char **ret_code) {
        static const struct {
                int error;
                int status;
                const char *code;
        } table[] = {
                { EINVAL, 400, "invalid_argument" },
                { ENOENT, 404, "not_found" },
                { ENODATA, 404, "not_found" },           /* nothing to roll back */
                { EBUSY, 409, "busy" },
                { EALREADY, 409, "already_finished" },
                { ENOTCONN, 503, "unavailable" },
                { ENOBUFS, 503, "unavailable" },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                if (-r == table[i].error) {
                        *ret_code = table[i].code;
                        return table[i].status;
                }
        *ret_code = "internal_error";
        return 500;
}

int api_fail_errno(json_t **ret_body, int r, const char *message) {
        const char *code;
        int status = api_status_from_errno(r, &code);

        /* Internal errors are logged, not explained to the client. */
        if (status == 500)
                message = "internal error";
        return api_fail(ret_body, status, code, "%s", message ?: strerror(-r));
}

/* --- parsing --- */

int api_percent_decode(const char *s, size_t n, char **ret) {
        _cleanup_free_ char *out = malloc(n + 1);
        size_t k = 0;

        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                if (s[i] == '%') {
                        int hi, lo;

                        if (i + 2 >= n || (hi = unhexchar(s[i + 1])) < 0 || (lo = unhexchar(s[i + 2])) < 0)
                                return -EINVAL;
                        out[k++] = (char) (hi * 16 + lo);
                        i += 2;
                } else
                        out[k++] = s[i];
        }
        out[k] = 0;
        if (memchr(out, 0, k) || !utf8_is_valid_n(out, k))
                return -EINVAL;
        *ret = TAKE_PTR(out);
        return 0;
}

void api_query_done(ApiQuery *q) {
        for (size_t i = 0; i < q->n; i++) {
                free(q->keys[i]);
                free(q->values[i]);
        }
        free(q->keys);
        free(q->values);
        *q = (ApiQuery) {};
}

static bool strv_contains(const char *const *l, const char *s) {
        for (; l && *l; l++)
                if (streq(*l, s))
                        return true;
        return false;
}

int api_query_parse(const HttpRequest *req, const char *const *allowed, ApiQuery *ret, json_t **ret_body) {
        _cleanup_(api_query_done) ApiQuery q = {};
        const char *p = req->query;

        *ret = (ApiQuery) {};
        while (p && *p) {
                size_t len = strcspn(p, "&");
                const char *eq = memchr(p, '=', len);
                _cleanup_free_ char *key = NULL, *value = NULL;
                char **k, **v;
                int r;

                if (len == 0) {
                        p++;
                        continue;
                }
                if (q.n >= 32)
                        return api_fail(ret_body, 400, "invalid_query", "too many query parameters");
                r = api_percent_decode(p, eq ? (size_t) (eq - p) : len, &key);
                if (r == -ENOMEM)
                        return r;
                if (r >= 0)
                        r = api_percent_decode(eq ? eq + 1 : p + len, eq ? len - (size_t) (eq - p) - 1 : 0, &value);
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        return api_fail(ret_body, 400, "invalid_query",
                                        "query string is not valid percent-encoded UTF-8");
                if (!strv_contains(allowed, key))
                        return api_fail(ret_body, 400, "invalid_query", "unknown query parameter \"%.*s\"",
                                        (int) utf8_prefix_len(key, 64), key);
                if (api_query_get(&q, key))
                        return api_fail(ret_body, 400, "invalid_query", "query parameter \"%s\" given twice", key);

                k = reallocarray(q.keys, q.n + 1, sizeof(char *));
                if (!k)
                        return -ENOMEM;
                q.keys = k;
                v = reallocarray(q.values, q.n + 1, sizeof(char *));
                if (!v)
                        return -ENOMEM;
                q.values = v;
                q.keys[q.n] = TAKE_PTR(key);
                q.values[q.n] = TAKE_PTR(value);
                q.n++;

                p += len;
        }
        *ret = q;
        q = (ApiQuery) {};
        return 0;
}

const char *api_query_get(const ApiQuery *q, const char *key) {
        for (size_t i = 0; i < q->n; i++)
                if (streq(q->keys[i], key))
                        return q->values[i];
        return NULL;
}

int api_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *ret) {
        uint64_t v = 0;

        if (!s || !*s || strlen(s) > 19)
                return -EINVAL;
        for (const char *p = s; *p; p++) {
                if (*p < '0' || *p > '9')
                        return -EINVAL;
                v = v * 10 + (uint64_t) (*p - '0');
        }
        if (v < min || v > max)
                return -ERANGE;
        *ret = v;
        return 0;
}

int api_parse_id(const char *s, int64_t *ret) {
        uint64_t v;
        int r = api_parse_uint(s, 1, INT64_MAX, &v);

        if (r < 0)
                return r;
        *ret = (int64_t) v;
        return 0;
}

static bool content_type_is_json(const char *ct) {
        size_t n;

        if (!ct)
                return false;
        while (*ct == ' ')
                ct++;
        n = strcspn(ct, "; ");
        return n == strlen("application/json") && strncasecmp(ct, "application/json", n) == 0;
}

int api_parse_body_object(const HttpRequest *req, const char *const *allowed, json_t **ret,
                          json_t **ret_body) {
        json_error_t err;
        json_t *j;
        const char *key;
        json_t *value;

        *ret = NULL;
        /* Even for an empty body: a browser can send a body-less POST
         * without a preflight, but not with this Content-Type. */
        if (!content_type_is_json(req->content_type))
                return api_fail(ret_body, 415, "unsupported_media_type",
                                "the request must be JSON (Content-Type: application/json), even with an empty body");
        if (!req->body || req->body_size == 0)
                return 0;
        if (!utf8_is_valid_n(req->body, req->body_size))
                return api_fail(ret_body, 400, "invalid_json", "the request body is not valid UTF-8");

        j = json_loadb(req->body, req->body_size, JSON_REJECT_DUPLICATES, &err);
        if (!j)
                return api_fail(ret_body, 400, "invalid_json", "the request body is not valid JSON: %s", err.text);
        if (!json_is_object(j)) {
                json_decref(j);
                return api_fail(ret_body, 400, "invalid_json", "the request body must be a JSON object");
        }
        json_object_foreach(j, key, value)
                if (!strv_contains(allowed, key)) {
                        int status = api_fail(ret_body, 400, "invalid_argument", "unknown field \"%.*s\"",
                                            (int) utf8_prefix_len(key, 64), key);
                        json_decref(j);
                        return status;
                }
        *ret = j;
        return 0;
}

/* --- JSON --- */

json_t *api_json_string(const char *s) {
        _cleanup_free_ char *copy = NULL;

        if (!s)
                return json_null();
        if (utf8_is_valid_n(s, strlen(s)))
                return json_string(s);
        copy = strdup(s);
        if (!copy)
                return NULL;
        utf8_sanitize(copy);
        return json_string(copy);
}

json_t *api_json_time(uint64_t usec) {
        char buf[64];
        struct tm tm;
        time_t t;

        if (usec == 0)
                return json_null();
        t = (time_t) (usec / 1000000);
        if (!gmtime_r(&t, &tm))
                return json_null();
        snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned) (usec % 1000000 / 1000));
        return json_string(buf);
}

json_t *api_deployment_from_row(const PGresult *res, int row, int col) {
        DeploymentRow d;

        if (!deployment_row_read(res, row, col, &d))
                return NULL;
        return json_pack("{s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
                         "id", (json_int_t) d.id,
                         "app", api_json_string(d.app),
                         "ref", api_json_string(d.ref),
                         "commitSha", api_json_string(d.commit_sha),
                         "imageTag", api_json_string(d.image_tag),
                         "status", api_json_string(d.status),
                         "step", api_json_string(d.step),
                         "error", api_json_string(d.error),
                         "queuedAt", api_json_time(d.queued_usec),
                         "startedAt", api_json_time(d.started_usec),
                         "finishedAt", api_json_time(d.finished_usec),
                         "source", api_json_string(d.source),
                         "requestedBy", api_json_string(d.requested_by),
                         "rollbackOf", d.rollback_of > 0 ? json_integer((json_int_t) d.rollback_of) : json_null());
}

bool api_app_exists(Manager *m, const char *app) {
        _cleanup_free_ char *path = NULL;

        if (!app_id_is_valid(app))
                return false;
        if (asprintf(&path, "%s/%s/" INFRASPEC_FILE_NAME, m->config.apps_dir, app) < 0)
                return false;
        return faccessat(AT_FDCWD, path, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
}
