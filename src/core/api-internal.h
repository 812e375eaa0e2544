/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Private to the HTTP API: api.c (router), api-util.c (request parsing,
 * errors, JSON of database rows), api-auth.c, api-apps.c,
 * api-deployments.c, api-logs.c and api-webhook.c.
 *
 * A route returns the HTTP status with *ret_body set, HTTP_DEFERRED after
 * http_request_defer() (it answers later through the responder), or a
 * negative errno for an internal error (answered 500). Client errors are
 * always {"error": message, "code": code}. */

#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#include "api.h"
#include "deploy-query.h"
#include "manager.h"

#define API_PATH_ARGS_MAX 2U

typedef struct ApiContext {
        Manager *manager;
        const HttpRequest *req;
        char *args[API_PATH_ARGS_MAX]; /* the '*' segments of the route, percent-decoded */
        json_t **ret_body;
} ApiContext;

typedef int (*ApiRoute)(ApiContext *ctx);

/* --- errors --- */

/* Sets *ret_body to {"error", "code"} and returns status. */
int api_fail(json_t **ret_body, int status, const char *code, const char *format, ...) _printf_(4, 5);
/* The status and code for an errno of scheduler_submit() & co. */
int api_status_from_errno(int r, const char **ret_code);
/* As api_fail() with the status from the errno; message NULL: strerror. */
int api_fail_errno(json_t **ret_body, int r, const char *message);
/* Completes a deferred request with an error. */
void api_respond_error(HttpResponder *responder, int status, const char *code, const char *format, ...)
        _printf_(4, 5);

/* --- request parsing --- */

/* Percent-decodes s (n bytes). -EINVAL on a bad escape, a NUL byte or
 * invalid UTF-8 in the result. */
int api_percent_decode(const char *s, size_t n, char **ret);

typedef struct ApiQuery {
        char **keys;
        char **values;
        size_t n;
} ApiQuery;

/* Parses req->query. Every key must be in allowed (NULL-terminated) and
 * appear at most once; else 400 with *ret_body set. Returns 0 or a status. */
int api_query_parse(const HttpRequest *req, const char *const *allowed, ApiQuery *ret, json_t **ret_body);
const char *api_query_get(const ApiQuery *q, const char *key);
void api_query_done(ApiQuery *q);

/* Decimal digits only (no sign, no spaces), in [min, max]. */
int api_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *ret);
/* A deployment id of a path: 1..INT64_MAX. */
int api_parse_id(const char *s, int64_t *ret);

/* The request body as a JSON object. Content-Type must be JSON (415), even
 * when the body is empty (then *ret is NULL); else the body must be valid
 * JSON (400) and an object (400), with keys among allowed (400). Returns 0 or
 * a status. */
int api_parse_body_object(const HttpRequest *req, const char *const *allowed, json_t **ret,
                          json_t **ret_body);

/* --- JSON --- */

/* A JSON string of s, with invalid UTF-8 replaced; JSON null for NULL. */
json_t *api_json_string(const char *s);
/* "2024-01-02T03:04:05.678Z", or null for 0. */
json_t *api_json_time(uint64_t usec);

/* The deployment of row `row` whose columns start at `col` (a query of
 * deploy-query.h), shaped like deployment_to_json() (without steps). NULL
 * when there is none there, or OOM. */
json_t *api_deployment_from_row(const PGresult *res, int row, int col);

/* Whether the infraspec of a (valid) app id exists in the apps dir. */
bool api_app_exists(Manager *m, const char *app);

/* --- routes --- */

int api_route_apps_list(ApiContext *ctx);
int api_route_app_get(ApiContext *ctx);
int api_route_app_deploy(ApiContext *ctx);
int api_route_app_rollback(ApiContext *ctx);
int api_route_app_snapshots(ApiContext *ctx);
int api_route_app_restore(ApiContext *ctx);

int api_route_deployments_list(ApiContext *ctx);
int api_route_deployment_get(ApiContext *ctx);
int api_route_deployment_cancel(ApiContext *ctx);

int api_route_deployment_logs(ApiContext *ctx);

int api_route_webhook_push(ApiContext *ctx);

/* api-static.c: the dashboard's files, for any path outside /api/. */
int api_static_handle(Manager *m, const HttpRequest *req);
const char *api_static_file_name(const char *path, const char **ret_type);
