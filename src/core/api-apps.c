/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* /api/apps: discovery (apps.c) joined with each app's last deployment from
 * the database, and what can be done to an app: deploy, rollback, list and
 * restore snapshots. The mutating routes hand over to the same submit
 * functions as the D-Bus methods and answer once the deployment row exists. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api-internal.h"
#include "apps.h"
#include "log.h"
#include "rollback.h"
#include "scheduler.h"
#include "step-driver.h"

#define API_REQUESTED_BY "api"

/* --- listing --- */

typedef struct AppsCall {
        HttpResponder *responder;
        json_t *apps;            /* [app...], each with "lastDeployment" to fill in */
        bool single;             /* GET /api/apps/{app}: answer apps[0] alone */
} AppsCall;

static void apps_call_free(AppsCall *c) {
        json_decref(c->apps);
        free(c);
}

static int apps_call_answer(AppsCall *c, bool db_up) {
        json_t *body;

        if (c->single) {
                body = json_incref(json_array_get(c->apps, 0));
        } else
                body = json_pack("{s:O, s:s}", "apps", c->apps, "database", db_up ? "up" : "unavailable");
        http_responder_complete(c->responder, body ? 200 : 500, body);
        apps_call_free(c);
        return HTTP_DEFERRED;
}

static void on_last_deployments(Db *db, const PGresult *res, const char *error, void *userdata) {
        AppsCall *c = userdata;
        bool ok = res && PQresultStatus(res) == PGRES_TUPLES_OK;

        if (!ok)
                log_debug("Cannot read the last deployments: %s", strna(error));
        for (int i = 0; ok && i < PQntuples(res); i++) {
                DeploymentRow row;
                size_t k;
                json_t *a;

                if (!deployment_row_read(res, i, 0, &row) || !row.app)
                        continue;
                json_array_foreach(c->apps, k, a)
                        if (streq(json_string_value(json_object_get(a, "id")) ?: "", row.app)) {
                                json_t *d = api_deployment_from_row(res, i, 0);
                                if (d)
                                        json_object_set_new(a, "lastDeployment", d);
                        }
        }
        (void) apps_call_answer(c, ok);
}

static json_t *app_json(Manager *m, const AppEntry *e) {
        json_t *j = app_entry_to_json(e);

        if (!j) {
                /* Whatever is wrong with one app's entry, the list still
                 * answers with the others: this one as invalid (its id is
                 * printable ASCII, see apps.c). */
                log_debug("Cannot show the infraspec of app %s as JSON.", e->id);
                j = json_pack("{s:s, s:b, s:b, s:[{s:s, s:i, s:i, s:s}]}", "id", e->id, "valid", false,
                              "deployable", false, "diagnostics", "severity", "error", "line", 0, "column", 0,
                              "message", "this app's infraspec cannot be shown");
                if (!j)
                        return NULL;
        }
        if (json_object_set_new(j, "lastDeployment", json_null()) < 0 ||
            json_object_set_new(j, "busy", json_boolean(app_id_is_valid(e->id) && scheduler_app_busy(m, e->id))) < 0)
                return json_decref(j), (json_t *) NULL;
        return j;
}

/* Answers with the apps of list (or the one named single), each joined with
 * its last deployment. */
static int apps_answer(ApiContext *ctx, const AppList *list, const char *single) {
        Manager *m = ctx->manager;
        _cleanup_free_ char **ids = NULL;
        size_t n_ids = 0;
        AppsCall *c;
        int r;

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->single = single;
        c->apps = json_array();
        if (!c->apps) {
                apps_call_free(c);
                return -ENOMEM;
        }

        ids = calloc(list->n + 1, sizeof(char *));
        if (!ids) {
                apps_call_free(c);
                return -ENOMEM;
        }
        for (size_t i = 0; i < list->n; i++) {
                const AppEntry *e = list->entries + i;

                if (single && !streq(e->id, single))
                        continue;
                if (json_array_append_new(c->apps, app_json(m, e)) < 0) {
                        apps_call_free(c);
                        return -ENOMEM;
                }
                ids[n_ids++] = e->id;
        }
        if (single && json_array_size(c->apps) == 0) {
                apps_call_free(c);
                return api_fail(ctx->ret_body, 404, "not_found", "no such app: %s", single);
        }

        c->responder = http_request_defer(ctx->req);
        if (!c->responder) {
                apps_call_free(c);
                return -ENOMEM;
        }
        if (!m->db || !db_is_up(m->db))
                return apps_call_answer(c, false);

        r = deploy_query_last(m->db, ids, n_ids, on_last_deployments, c);
        if (r < 0)
                return apps_call_answer(c, false);
        return HTTP_DEFERRED;
}

static int discover(ApiContext *ctx, AppList **ret) {
        int r = apps_discover(ctx->manager->config.apps_dir, ret);

        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                log_warning_errno(r, "Cannot read the apps directory %s: %m", ctx->manager->config.apps_dir);
                return api_fail(ctx->ret_body, 503, "unavailable", "the apps directory cannot be read");
        }
        return 0;
}

int api_route_apps_list(ApiContext *ctx) {
        _cleanup_(app_list_freep) AppList *list = NULL;
        _cleanup_(api_query_done) ApiQuery q = {};
        static const char *const allowed[] = { NULL };
        int r;

        r = api_query_parse(ctx->req, allowed, &q, ctx->ret_body);
        if (r != 0)
                return r;
        r = discover(ctx, &list);
        if (r != 0)
                return r;
        return apps_answer(ctx, list, NULL);
}

int api_route_app_get(ApiContext *ctx) {
        _cleanup_(app_list_freep) AppList *list = NULL;
        const char *app = ctx->args[0];
        int r;

        if (!app_id_is_valid(app))
                return api_fail(ctx->ret_body, 404, "not_found", "no such app");
        r = discover(ctx, &list);
        if (r != 0)
                return r;
        return apps_answer(ctx, list, app);
}

/* --- deploy, rollback, restore --- */

static void on_queued(Deployment *d, int r, const char *error, void *userdata) {
        HttpResponder *responder = userdata;
        const char *code;
        int status;

        if (r < 0) {
                status = api_status_from_errno(r, &code);
                api_respond_error(responder, status, code, "%s", status == 500 ? "internal error"
                                                                               : error ?: strerror(-r));
                return;
        }
        http_responder_complete(responder, 202, deployment_to_json(d));
}

typedef int (*SubmitFunc)(ApiContext *ctx, const void *args, SchedulerDone done, void *userdata,
                          char **ret_error);

/* Runs submit; the answer comes once the row exists (or at once on error). */
static int submit_deferred(ApiContext *ctx, SubmitFunc submit, const void *args) {
        _cleanup_free_ char *why = NULL;
        HttpResponder *responder;
        const char *code;
        int r, status;

        responder = http_request_defer(ctx->req);
        if (!responder)
                return -ENOMEM;
        r = submit(ctx, args, on_queued, responder, &why);
        if (r < 0) {
                if (r != -ENOMEM && r != -EIO)
                        log_debug_errno(r, "API %s %s refused: %s", ctx->req->method, ctx->req->path, strna(why));
                status = api_status_from_errno(r, &code);
                api_respond_error(responder, status, code, "%s",
                                  status == 500 ? "internal error" : why ?: strerror(-r));
        }
        return HTTP_DEFERRED;
}

static int submit_deploy(ApiContext *ctx, const void *args, SchedulerDone done, void *userdata,
                         char **ret_error) {
        const char *ref = args;

        return scheduler_submit(ctx->manager, ctx->args[0], ref, API_REQUESTED_BY, done, userdata, ret_error);
}

static int app_from_path(ApiContext *ctx) {
        if (!app_id_is_valid(ctx->args[0]) || !api_app_exists(ctx->manager, ctx->args[0]))
                return api_fail(ctx->ret_body, 404, "not_found", "no such app");
        return 0;
}

int api_route_app_deploy(ApiContext *ctx) {
        static const char *const allowed[] = { "commitSha", "ref", NULL };
        _cleanup_(json_decrefp) json_t *body = NULL;
        json_t *sha, *ref;
        int r;

        r = app_from_path(ctx);
        if (r != 0)
                return r;
        r = api_parse_body_object(ctx->req, allowed, &body, ctx->ret_body);
        if (r != 0)
                return r;

        sha = json_object_get(body, "commitSha");
        ref = json_object_get(body, "ref");
        if (sha && ref)
                return api_fail(ctx->ret_body, 400, "invalid_argument", "give commitSha or ref, not both");
        if (sha && (!json_is_string(sha) || !ref_is_commit_sha(json_string_value(sha))))
                return api_fail(ctx->ret_body, 400, "invalid_argument",
                                "commitSha must be a string of 7 to 40 (or 64) lowercase hex digits");
        if (ref && (!json_is_string(ref) || !deploy_ref_is_valid(json_string_value(ref))))
                return api_fail(ctx->ret_body, 400, "invalid_argument",
                                "ref must be a string: HEAD, a commit SHA or a branch name");

        return submit_deferred(ctx, submit_deploy,
                               sha ? json_string_value(sha) : ref ? json_string_value(ref) : "HEAD");
}

typedef struct RollbackArgs {
        int64_t to;
        bool restore_db;
} RollbackArgs;

static int submit_rollback(ApiContext *ctx, const void *args, SchedulerDone done, void *userdata,
                           char **ret_error) {
        const RollbackArgs *a = args;

        return rollback_submit(ctx->manager, ctx->args[0], a->to, a->restore_db, API_REQUESTED_BY, done,
                               userdata, ret_error);
}

int api_route_app_rollback(ApiContext *ctx) {
        static const char *const allowed[] = { "to", "restoreDb", NULL };
        _cleanup_(json_decrefp) json_t *body = NULL;
        json_t *to, *restore;
        int r;

        r = app_from_path(ctx);
        if (r != 0)
                return r;
        r = api_parse_body_object(ctx->req, allowed, &body, ctx->ret_body);
        if (r != 0)
                return r;

        to = json_object_get(body, "to");
        restore = json_object_get(body, "restoreDb");
        if (to && !json_is_null(to) && (!json_is_integer(to) || json_integer_value(to) < 1))
                return api_fail(ctx->ret_body, 400, "invalid_argument", "to must be a deployment id (an integer >= 1)");
        if (restore && !json_is_boolean(restore))
                return api_fail(ctx->ret_body, 400, "invalid_argument", "restoreDb must be true or false");

        return submit_deferred(ctx, submit_rollback, &(RollbackArgs) {
                .to = json_is_integer(to) ? (int64_t) json_integer_value(to) : 0,
                .restore_db = json_is_true(restore),
        });
}

static int submit_restore(ApiContext *ctx, const void *args, SchedulerDone done, void *userdata,
                          char **ret_error) {
        return restore_submit(ctx->manager, ctx->args[0], ctx->args[1], API_REQUESTED_BY, done, userdata,
                              ret_error);
}

int api_route_app_restore(ApiContext *ctx) {
        static const char *const allowed[] = { NULL };
        _cleanup_(json_decrefp) json_t *body = NULL;
        int r;

        r = app_from_path(ctx);
        if (r != 0)
                return r;
        r = api_parse_body_object(ctx->req, allowed, &body, ctx->ret_body);
        if (r != 0)
                return r;
        return submit_deferred(ctx, submit_restore, NULL);
}

/* --- snapshots --- */

static void on_snapshots(Db *db, const PGresult *res, const char *error, void *userdata) {
        HttpResponder *responder = userdata;
        json_t *list;

        if (!deploy_query_ok(res)) {
                api_respond_error(responder, 503, "unavailable", "cannot list snapshots: the database is unavailable");
                return;
        }
        list = json_array();
        for (int i = 0; list && i < PQntuples(res); i++) {
                SnapshotRow s;

                if (!deploy_query_snapshot_read(res, i, &s))
                        continue;
                if (json_array_append_new(list, json_pack("{s:I, s:o, s:o, s:I, s:o, s:o}",
                                "id", (json_int_t) s.id,
                                "database", api_json_string(s.database),
                                "name", api_json_string(s.name),
                                "sizeBytes", (json_int_t) s.size_bytes,
                                "createdAt", api_json_time(s.created_usec),
                                "deploymentId", s.deployment_id > 0 ? json_integer((json_int_t) s.deployment_id)
                                                                    : json_null())) < 0)
                        json_decref(TAKE_PTR(list));
        }
        http_responder_complete(responder, list ? 200 : 500, list ? json_pack("{s:o}", "snapshots", list) : NULL);
}

int api_route_app_snapshots(ApiContext *ctx) {
        Manager *m = ctx->manager;
        HttpResponder *responder;
        int r;

        r = app_from_path(ctx);
        if (r != 0)
                return r;
        if (!manager_db_available(m))
                return api_fail(ctx->ret_body, 503, "unavailable", "the database is unavailable");

        responder = http_request_defer(ctx->req);
        if (!responder)
                return -ENOMEM;
        r = deploy_query_snapshots(m->db, ctx->args[0], on_snapshots, responder);
        if (r < 0)
                api_respond_error(responder, 503, "unavailable", "the database is unavailable");
        return HTTP_DEFERRED;
}
