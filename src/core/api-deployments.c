/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* /api/deployments: the history from PostgreSQL (the record of every
 * deployment), one deployment with its steps, and cancelling. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api-internal.h"
#include "deploy-state.h"
#include "infraspec.h"
#include "log.h"
#include "pipeline.h"
#include "scheduler.h"

#define LIST_LIMIT_DEFAULT DEPLOY_QUERY_LIMIT_DEFAULT
#define LIST_LIMIT_MAX DEPLOY_QUERY_LIMIT_MAX
#define LIST_OFFSET_MAX DEPLOY_QUERY_OFFSET_MAX

/* --- list --- */

typedef struct ListCall {
        HttpResponder *responder;
        uint64_t limit, offset;
} ListCall;

static void on_list(Db *db, const PGresult *res, const char *error, void *userdata) {
        ListCall *c = userdata;
        json_t *list = NULL;
        json_int_t total = 0;

        if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
                log_debug("Cannot list deployments: %s", strna(error));
                api_respond_error(c->responder, 503, "unavailable", "cannot list deployments: the database is unavailable");
                free(c);
                return;
        }

        list = json_array();
        for (int i = 0; list && i < PQntuples(res); i++) {
                json_t *d;

                total = (json_int_t) strtoll(PQgetvalue(res, i, 0), NULL, 10);
                if (PQgetisnull(res, i, DEPLOY_QUERY_LIST_COL))
                        continue; /* no rows in this page */
                d = api_deployment_from_row(res, i, DEPLOY_QUERY_LIST_COL);
                if (!d || json_array_append_new(list, d) < 0)
                        json_decref(TAKE_PTR(list));
        }
        http_responder_complete(c->responder, list ? 200 : 500,
                                list ? json_pack("{s:o, s:I, s:I, s:I}", "deployments", list, "total", total,
                                                 "limit", (json_int_t) c->limit, "offset", (json_int_t) c->offset)
                                     : NULL);
        free(c);
}

int api_route_deployments_list(ApiContext *ctx) {
        static const char *const allowed[] = { "app", "status", "limit", "offset", NULL };
        _cleanup_(api_query_done) ApiQuery q = {};
        Manager *m = ctx->manager;
        const char *app, *status, *v;
        uint64_t limit = LIST_LIMIT_DEFAULT, offset = 0;
        ListCall *c;
        int r;

        r = api_query_parse(ctx->req, allowed, &q, ctx->ret_body);
        if (r != 0)
                return r;

        app = api_query_get(&q, "app");
        if (app && !app_id_is_valid(app))
                return api_fail(ctx->ret_body, 400, "invalid_argument",
                                "app must be an app id (^[a-z0-9][a-z0-9-]*$, at most %u characters)", APP_ID_MAX);
        status = api_query_get(&q, "status");
        if (status && deploy_status_from_string(status) < 0)
                return api_fail(ctx->ret_body, 400, "invalid_argument",
                                "status must be one of queued, building, testing, snapshotting, migrating, "
                                "deploying, deployed, failed, rolled_back");
        v = api_query_get(&q, "limit");
        if (v && api_parse_uint(v, 1, LIST_LIMIT_MAX, &limit) < 0)
                return api_fail(ctx->ret_body, 400, "invalid_argument", "limit must be an integer from 1 to %u",
                                LIST_LIMIT_MAX);
        v = api_query_get(&q, "offset");
        if (v && api_parse_uint(v, 0, LIST_OFFSET_MAX, &offset) < 0)
                return api_fail(ctx->ret_body, 400, "invalid_argument", "offset must be an integer from 0 to %u",
                                LIST_OFFSET_MAX);

        if (!manager_db_available(m))
                return api_fail(ctx->ret_body, 503, "unavailable", "the database is unavailable");

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->limit = limit;
        c->offset = offset;
        c->responder = http_request_defer(ctx->req);
        if (!c->responder) {
                free(c);
                return -ENOMEM;
        }

        r = deploy_query_list(m->db, app, status, limit, offset, on_list, c);
        if (r < 0) {
                api_respond_error(c->responder, 503, "unavailable", "the database is unavailable");
                free(c);
        }
        return HTTP_DEFERRED;
}

/* --- one --- */

static json_t *step_json(const StepRow *s) {
        return json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
                         "step", api_json_string(s->name),
                         "status", api_json_string(s->status),
                         "startedAt", api_json_time(s->started_usec),
                         "finishedAt", api_json_time(s->finished_usec),
                         "durationMs", s->has_duration ? json_integer((json_int_t) s->duration_ms) : json_null(),
                         "exitCode", s->has_exit_code ? json_integer(s->exit_code) : json_null(),
                         "unit", api_json_string(s->unit),
                         "outputTail", api_json_string(s->output_tail));
}

static void on_deployment(Db *db, const PGresult *res, const char *error, void *userdata) {
        HttpResponder *responder = userdata;
        json_t *d, *steps;

        if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
                log_debug("Cannot read a deployment: %s", strna(error));
                api_respond_error(responder, 503, "unavailable", "the database is unavailable");
                return;
        }
        if (PQntuples(res) == 0) {
                api_respond_error(responder, 404, "not_found", "no such deployment");
                return;
        }

        d = api_deployment_from_row(res, 0, 0);
        steps = json_array();
        for (int i = 0; d && steps && i < PQntuples(res); i++) {
                StepRow s;

                if (!deploy_query_step_read(res, i, &s))
                        continue;
                if (json_array_append_new(steps, step_json(&s)) < 0)
                        json_decref(TAKE_PTR(steps));
        }
        if (!d || !steps || json_object_set_new(d, "steps", steps) < 0) {
                json_decref(d);
                http_responder_complete(responder, 500, NULL);
                return;
        }
        http_responder_complete(responder, 200, d);
}

static int path_deployment_id(ApiContext *ctx, int64_t *ret) {
        if (api_parse_id(ctx->args[0], ret) < 0)
                return api_fail(ctx->ret_body, 404, "not_found", "no such deployment");
        return 0;
}

int api_route_deployment_get(ApiContext *ctx) {
        static const char *const allowed[] = { NULL };
        _cleanup_(api_query_done) ApiQuery q = {};
        Manager *m = ctx->manager;
        HttpResponder *responder;
        int64_t id;
        int r;

        r = path_deployment_id(ctx, &id);
        if (r != 0)
                return r;
        r = api_query_parse(ctx->req, allowed, &q, ctx->ret_body);
        if (r != 0)
                return r;
        if (!manager_db_available(m))
                return api_fail(ctx->ret_body, 503, "unavailable", "the database is unavailable");

        responder = http_request_defer(ctx->req);
        if (!responder)
                return -ENOMEM;
        r = deploy_query_one(m->db, id, on_deployment, responder);
        if (r < 0)
                api_respond_error(responder, 503, "unavailable", "the database is unavailable");
        return HTTP_DEFERRED;
}

/* --- cancel --- */

static void on_cancel_lookup(Db *db, const PGresult *res, const char *error, void *userdata) {
        HttpResponder *responder = userdata;

        if (!res || PQresultStatus(res) != PGRES_TUPLES_OK)
                api_respond_error(responder, 503, "unavailable", "the database is unavailable");
        else if (PQntuples(res) == 0)
                api_respond_error(responder, 404, "not_found", "no such deployment");
        else
                /* Known, but not one this nornd is running: it ended (or
                 * crash recovery is about to end it). */
                api_respond_error(responder, 409, "already_finished", "deployment %s already ended %s",
                                  PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1));
}

int api_route_deployment_cancel(ApiContext *ctx) {
        static const char *const allowed[] = { NULL };
        _cleanup_(json_decrefp) json_t *body = NULL;
        Manager *m = ctx->manager;
        HttpResponder *responder;
        Deployment *d;
        int64_t id;
        char id_s[32];
        int r;

        r = path_deployment_id(ctx, &id);
        if (r != 0)
                return r;
        r = api_parse_body_object(ctx->req, allowed, &body, ctx->ret_body);
        if (r != 0)
                return r;

        d = manager_find_deployment(m, id);
        if (d) {
                r = pipeline_cancel(d);
                if (r == -EALREADY)
                        return api_fail(ctx->ret_body, 409, "already_finished", "deployment %" PRIi64 " already ended %s",
                                        id, deploy_status_to_string(d->status));
                if (r < 0)
                        return api_fail_errno(ctx->ret_body, r, NULL);
                log_info("Deployment %" PRIi64 " of %s cancelled through the HTTP API.", id, d->app);
                *ctx->ret_body = deployment_to_json(d);
                return *ctx->ret_body ? 202 : -ENOMEM;
        }

        if (!manager_db_available(m))
                return api_fail(ctx->ret_body, 404, "not_found", "no active deployment %" PRIi64, id);
        responder = http_request_defer(ctx->req);
        if (!responder)
                return -ENOMEM;
        snprintf(id_s, sizeof(id_s), "%" PRIi64, id);
        const char *params[] = { id_s };
        r = db_query(m->db, "SELECT id, status FROM deployments WHERE id = $1::bigint", 1, params,
                     on_cancel_lookup, responder);
        if (r < 0)
                api_respond_error(responder, 503, "unavailable", "the database is unavailable");
        return HTTP_DEFERRED;
}
