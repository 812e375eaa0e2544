/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The HTTP API router.
 *
 *   GET  /api/health                         200 | 503               open (details: authenticated)
 *   GET  /api/version                        200                     open
 *   POST /api/webhooks/push                  202 | 200 (ping)        open, HMAC-signed (api-webhook.c)
 *   GET  /api/apps                           200 {"apps": [...]}
 *   GET  /api/apps/{app}                     200 | 404
 *   POST /api/apps/{app}/deploy              202 deployment | 400 | 404 | 409 | 503
 *   POST /api/apps/{app}/rollback            202 deployment | 400 | 404 | 409 | 503
 *   GET  /api/apps/{app}/snapshots           200 {"snapshots": [...]} | 404 | 503
 *   POST /api/apps/{app}/snapshots/{name}/restore   202 deployment | 400 | 404 | 409 | 503
 *   GET  /api/deployments                    200 {"deployments": [...], "total", "limit", "offset"}
 *   GET  /api/deployments/{id}               200 deployment with steps | 404
 *   POST /api/deployments/{id}/cancel        202 deployment | 404 | 409
 *   GET  /api/deployments/{id}/logs          200 {"lines": [...], "cursor", ...} | 404
 *   GET  /, /NAME.EXT (not /api/...)         the dashboard's files   open (api-static.c)
 *
 * Path segments are percent-decoded before use; an {app} or {id} that cannot
 * name anything is a 404 like an unknown one. Everything but the open routes
 * is authenticated first (api-auth.c), before the path is even looked at. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api-internal.h"
#include "config-build.h"
#include "health.h"
#include "log.h"
#include "manager.h"

json_t *api_error(const char *code, const char *message) {
        /* Messages may quote client input, cut anywhere: keep them UTF-8. */
        return json_pack("{s:o, s:s}", "error", api_json_string(message), "code", code);
}

/* Open, for probes: the status of each component to anyone, the details
 * (kubeconfig path and server, database errors) only to those the API
 * would answer otherwise (api-auth.c); D-Bus Health has them too. */
static int route_health(ApiContext *ctx) {
        _cleanup_(json_decrefp) json_t *refusal = NULL;
        HealthState h;
        bool detail;
        int r, status;

        r = api_authorize(ctx->manager, ctx->req, &refusal);
        if (r < 0)
                return r;
        detail = r == 0;

        r = health_collect(ctx->manager, &h);
        if (r < 0)
                return r;
        *ctx->ret_body = health_state_to_json(&h, detail);
        /* 503 lets load balancers and probes act on a degraded daemon. */
        status = health_state_ok(&h) ? 200 : 503;
        health_state_done(&h);
        return *ctx->ret_body ? status : -ENOMEM;
}

static int route_version(ApiContext *ctx) {
        *ctx->ret_body = json_pack("{s:s, s:s}", "name", "norn", "version", NORN_VERSION);
        return *ctx->ret_body ? 200 : -ENOMEM;
}

static const struct {
        const char *method;
        const char *pattern;     /* '*' matches one segment, handed to the route decoded */
        ApiRoute route;
        bool open;               /* no bearer token */
} routes[] = {
        { "GET",  "/api/health",                           route_health,                true  },
        { "GET",  "/api/version",                          route_version,               true  },
        { "POST", "/api/webhooks/push",                    api_route_webhook_push,      true  },
        { "GET",  "/api/apps",                             api_route_apps_list,         false },
        { "GET",  "/api/apps/*",                           api_route_app_get,           false },
        { "POST", "/api/apps/*/deploy",                    api_route_app_deploy,        false },
        { "POST", "/api/apps/*/rollback",                  api_route_app_rollback,      false },
        { "GET",  "/api/apps/*/snapshots",                 api_route_app_snapshots,     false },
        { "POST", "/api/apps/*/snapshots/*/restore",       api_route_app_restore,       false },
        { "GET",  "/api/deployments",                      api_route_deployments_list,  false },
        { "GET",  "/api/deployments/*",                    api_route_deployment_get,    false },
        { "POST", "/api/deployments/*/cancel",             api_route_deployment_cancel, false },
        { "GET",  "/api/deployments/*/logs",               api_route_deployment_logs,   false },
};

/* Matches path against pattern; the '*' segments (still encoded) go to
 * args as offsets into path. */
static bool path_match(const char *pattern, const char *path, const char *arg_start[], size_t arg_len[],
                       size_t *n_args) {
        const char *p = pattern, *s = path;

        *n_args = 0;
        for (;;) {
                size_t pl = strcspn(p, "/"), sl = strcspn(s, "/");

                if (pl == 1 && *p == '*') {
                        if (sl == 0 || *n_args >= API_PATH_ARGS_MAX)
                                return false;
                        arg_start[*n_args] = s;
                        arg_len[*n_args] = sl;
                        (*n_args)++;
                } else if (pl != sl || strncmp(p, s, pl) != 0)
                        return false;

                p += pl;
                s += sl;
                if (!*p || !*s)
                        return !*p && !*s;
                p++;
                s++;
        }
}

static bool method_matches(const char *route_method, const char *method) {
        return streq(method, route_method) || (streq(method, "HEAD") && streq(route_method, "GET"));
}

static bool route_is_open(const char *path) {
        for (size_t i = 0; i < ELEMENTSOF(routes); i++)
                if (routes[i].open && streq(path, routes[i].pattern))
                        return true;
        return false;
}

static int dispatch(Manager *m, const HttpRequest *req, json_t **ret_body) {
        ApiContext ctx = { .manager = m, .req = req, .ret_body = ret_body };
        const char *arg_start[API_PATH_ARGS_MAX];
        size_t arg_len[API_PATH_ARGS_MAX], n_args;
        bool path_known = false;
        int r;

        /* The dashboard's files need no token (api-static.c). */
        if (strncmp(req->path, "/api/", 5) != 0)
                return api_static_handle(m, req);

        /* Authentication before anything about the path is revealed. */
        if (!route_is_open(req->path)) {
                r = api_authorize(m, req, ret_body);
                if (r != 0)
                        return r;
        }

        for (size_t i = 0; i < ELEMENTSOF(routes); i++) {
                if (!path_match(routes[i].pattern, req->path, arg_start, arg_len, &n_args))
                        continue;
                path_known = true;
                if (!method_matches(routes[i].method, req->method))
                        continue;

                for (size_t k = 0; k < n_args; k++) {
                        r = api_percent_decode(arg_start[k], arg_len[k], &ctx.args[k]);
                        if (r == -ENOMEM)
                                goto finish;
                        if (r < 0) {
                                r = api_fail(ret_body, 404, "not_found", "no such resource");
                                goto finish;
                        }
                }
                r = routes[i].route(&ctx);
                goto finish;
        }

        if (path_known)
                return api_fail(ret_body, 405, "method_not_allowed", "method not allowed for this path");
        return api_fail(ret_body, 404, "not_found", "no such API path");

finish:
        for (size_t k = 0; k < API_PATH_ARGS_MAX; k++)
                free(ctx.args[k]);
        return r;
}

int api_check_head(const HttpRequest *req, json_t **ret_body, void *userdata) {
        Manager *m = userdata;

        /* The open routes (the webhook) need their body to authenticate. */
        if (route_is_open(req->path))
                return 0;
        return api_authorize(m, req, ret_body);
}

int api_handle_request(const HttpRequest *req, json_t **ret_body, void *userdata) {
        Manager *m = userdata;
        int r;

        r = dispatch(m, req, ret_body);
        if (r < 0) {
                log_warning_errno(r, "Request %s %s failed: %m", req->method, req->path);
                json_decref(*ret_body);
                *ret_body = api_error("internal_error", "internal error");
                return 500;
        }
        return r;
}
