/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "config-build.h"
#include "health.h"
#include "log.h"
#include "manager.h"

typedef int (*ApiRoute)(Manager *m, const HttpRequest *req, json_t **ret_body);

json_t *api_error(const char *code, const char *message) {
        return json_pack("{s:s, s:s}", "error", message, "code", code);
}

static int route_health(Manager *m, const HttpRequest *req, json_t **ret_body) {
        HealthState h;
        int r, status;

        r = health_collect(m, &h);
        if (r < 0)
                return r;
        *ret_body = health_state_to_json(&h);
        /* 503 lets load balancers and probes act on a degraded daemon. */
        status = health_state_ok(&h) ? 200 : 503;
        health_state_done(&h);
        return *ret_body ? status : -ENOMEM;
}

static int route_version(Manager *m, const HttpRequest *req, json_t **ret_body) {
        *ret_body = json_pack("{s:s, s:s}", "name", "norn", "version", NORN_VERSION);
        return *ret_body ? 200 : -ENOMEM;
}

static const struct {
        const char *method;
        const char *path;
        ApiRoute route;
} routes[] = {
        { "GET", "/api/health", route_health },
        { "GET", "/api/version", route_version },
};

int api_handle_request(const HttpRequest *req, json_t **ret_body, void *userdata) {
        Manager *m = userdata;
        bool path_known = false;
        int r;

        for (size_t i = 0; i < ELEMENTSOF(routes); i++) {
                if (!streq(req->path, routes[i].path))
                        continue;
                path_known = true;
                if (!streq(req->method, routes[i].method) &&
                    !(streq(req->method, "HEAD") && streq(routes[i].method, "GET")))
                        continue;

                r = routes[i].route(m, req, ret_body);
                if (r < 0) {
                        log_warning_errno(r, "Request %s %s failed: %m", req->method, req->path);
                        *ret_body = api_error("internal_error", "internal error");
                        return 500;
                }
                return r;
        }

        if (path_known) {
                *ret_body = api_error("method_not_allowed", "method not allowed for this path");
                return 405;
        }
        *ret_body = api_error("not_found", "no such API path");
        return 404;
}
