/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The reading methods of org.norn.Norn1.Manager: ListApps, ListDeployments,
 * GetDeployment, GetLogs (which needs authorization, bus-auth.h) and
 * Validate. They answer what the HTTP API answers (the same queries,
 * deploy-query.h, and the same journal reader, deploy-log.h), as typed
 * D-Bus values. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apps.h"
#include "bus-auth.h"
#include "bus-error.h"
#include "deploy-log.h"
#include "deploy-query.h"
#include "infraspec.h"
#include "log.h"
#include "manager-bus-internal.h"
#include "manager.h"
#include "utf8.h"

#define DEPLOYMENT_SIGNATURE "(tsssssssttts)"
#define STEP_SIGNATURE "(ssttis)"

/* D-Bus strings must be UTF-8: a database or journal string that is not
 * is shown with '?' for the bad bytes; NULL is "". *buf owns any copy. */
static const char *bus_string(const char *s, char **buf) {
        if (!s)
                return "";
        if (utf8_is_valid(s))
                return s;
        *buf = strdup(s);
        if (!*buf)
                return "";
        utf8_sanitize(*buf);
        return *buf;
}

static void free_strings(char **l, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(l[i]);
}

static int database_unavailable(sd_bus_error *error) {
        return sd_bus_error_set(error, NORN_ERROR_UNAVAILABLE, "The database is unavailable.");
}

static void reply_database_error(sd_bus_message *call, const char *error) {
        log_debug("Database query for %s failed: %s", strna(sd_bus_message_get_member(call)), strna(error));
        (void) sd_bus_reply_method_errorf(call, NORN_ERROR_UNAVAILABLE, "The database is unavailable.");
}

/* Sends reply, or an error to call when building it failed. */
static void send_reply(sd_bus_message *call, sd_bus_message *reply, int r) {
        if (r >= 0)
                r = sd_bus_send(NULL, reply, NULL);
        if (r < 0) {
                log_debug_errno(r, "Cannot answer %s: %m", strna(sd_bus_message_get_member(call)));
                (void) bus_reply_errno(call, r, NULL);
        }
}

/* Deployment ids are 1..INT64_MAX; anything else is simply not there. */
static int read_deployment_id(sd_bus_message *msg, int64_t *ret, sd_bus_error *error) {
        uint64_t id;
        int r;

        r = sd_bus_message_read(msg, "t", &id);
        if (r < 0)
                return r;
        if (id == 0 || id > INT64_MAX)
                return sd_bus_error_setf(error, NORN_ERROR_NOT_FOUND, "No deployment %" PRIu64 ".", id);
        *ret = (int64_t) id;
        return 0;
}

static int append_deployment(sd_bus_message *reply, const DeploymentRow *d) {
        char *b[9] = {};
        int r;

        r = sd_bus_message_append(reply, DEPLOYMENT_SIGNATURE, (uint64_t) d->id, bus_string(d->app, &b[0]),
                                  bus_string(d->ref, &b[1]), bus_string(d->commit_sha, &b[2]),
                                  bus_string(d->image_tag, &b[3]), bus_string(d->status, &b[4]),
                                  bus_string(d->step, &b[5]), bus_string(d->error, &b[6]), d->queued_usec,
                                  d->started_usec, d->finished_usec, bus_string(d->requested_by, &b[7]));
        free_strings(b, ELEMENTSOF(b));
        return r;
}

/* --- ListApps --- */

typedef struct AppsQuery {
        sd_bus_message *call;
        AppList *apps;
} AppsQuery;

static void apps_query_free(AppsQuery *q) {
        sd_bus_message_unref(q->call);
        app_list_free(q->apps);
        free(q);
}

static int append_app(sd_bus_message *reply, const AppEntry *e, const DeploymentRow *last) {
        const Infraspec *s = e->spec;
        char *b[3] = {};
        int r;

        r = sd_bus_message_append(reply, "(sssbtsst)", e->id, s ? app_role_to_string(s->role) : "",
                                  s && s->repo.present ? bus_string(s->repo.branch, &b[0]) : "",
                                  s && s->repo.present && s->repo.auto_deploy, last ? (uint64_t) last->id : 0,
                                  last ? bus_string(last->status, &b[1]) : "",
                                  last ? bus_string(last->commit_sha, &b[2]) : "",
                                  last ? (last->finished_usec ?: last->queued_usec) : 0);
        free_strings(b, ELEMENTSOF(b));
        return r;
}

static void on_last_deployments(Db *db, const PGresult *res, const char *error, void *userdata) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        AppsQuery *q = userdata;
        int r;

        if (!deploy_query_ok(res)) {
                reply_database_error(q->call, error);
                apps_query_free(q);
                return;
        }
        r = sd_bus_message_new_method_return(q->call, &reply);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "(sssbtsst)");
        for (size_t i = 0; r >= 0 && i < q->apps->n; i++) {
                const AppEntry *e = q->apps->entries + i;
                DeploymentRow row, *last = NULL;

                /* Apps whose directory name is no app id are Validate's business. */
                if (!app_id_is_valid(e->id))
                        continue;
                for (int k = 0; k < PQntuples(res); k++)
                        if (deployment_row_read(res, k, 0, &row) && streq_ptr(row.app, e->id)) {
                                last = &row;
                                break;
                        }
                r = append_app(reply, e, last);
        }
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        send_reply(q->call, reply, r);
        apps_query_free(q);
}

static int discover(Manager *m, AppList **ret, sd_bus_error *error) {
        int r = apps_discover(m->config.apps_dir, ret);

        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                log_warning_errno(r, "Cannot read the apps directory %s: %m", m->config.apps_dir);
                return sd_bus_error_set(error, NORN_ERROR_UNAVAILABLE, "The apps directory cannot be read.");
        }
        return 0;
}

int bus_method_list_apps(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_free_ char **ids = NULL;
        Manager *m = userdata;
        AppsQuery *q;
        int r;

        if (!manager_db_available(m))
                return database_unavailable(error);
        q = calloc(1, sizeof(*q));
        if (!q)
                return -ENOMEM;
        r = discover(m, &q->apps, error);
        if (r < 0) {
                apps_query_free(q);
                return r;
        }
        ids = calloc(q->apps->n + 1, sizeof(char *));
        if (!ids) {
                apps_query_free(q);
                return -ENOMEM;
        }
        for (size_t i = 0; i < q->apps->n; i++)
                ids[i] = q->apps->entries[i].id;
        q->call = sd_bus_message_ref(msg);
        r = deploy_query_last(m->db, ids, q->apps->n, on_last_deployments, q);
        if (r < 0) {
                apps_query_free(q);
                return database_unavailable(error);
        }
        return 1;
}

/* --- ListDeployments --- */

static void on_list(Db *db, const PGresult *res, const char *error, void *userdata) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = userdata, *reply = NULL;
        int r;

        if (!deploy_query_ok(res)) {
                reply_database_error(call, error);
                return;
        }
        r = sd_bus_message_new_method_return(call, &reply);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', DEPLOYMENT_SIGNATURE);
        for (int i = 0; r >= 0 && i < PQntuples(res); i++) {
                DeploymentRow d;

                if (deployment_row_read(res, i, DEPLOY_QUERY_LIST_COL, &d))
                        r = append_deployment(reply, &d);
        }
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        send_reply(call, reply, r);
}

int bus_method_list_deployments(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *app, *status;
        uint32_t limit;
        int r;

        r = sd_bus_message_read(msg, "ssu", &app, &status, &limit);
        if (r < 0)
                return r;
        if (*app && !app_id_is_valid(app))
                return bus_error_invalid_app(error);
        if (*status && deploy_status_from_string(status) < 0)
                return sd_bus_error_set(error, NORN_ERROR_INVALID_ARGUMENT,
                                        "Invalid status: expected queued, building, testing, snapshotting, "
                                        "migrating, deploying, deployed, failed or rolled_back.");
        /* 0 asks for the default; more than the maximum gets the maximum. */
        if (limit == 0)
                limit = DEPLOY_QUERY_LIMIT_DEFAULT;
        limit = MIN(limit, DEPLOY_QUERY_LIMIT_MAX);
        if (!manager_db_available(m))
                return database_unavailable(error);

        r = deploy_query_list(m->db, *app ? app : NULL, *status ? status : NULL, limit, 0, on_list,
                              sd_bus_message_ref(msg));
        if (r < 0) {
                sd_bus_message_unref(msg);
                return database_unavailable(error);
        }
        return 1;
}

/* --- GetDeployment --- */

static void on_deployment(Db *db, const PGresult *res, const char *error, void *userdata) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = userdata, *reply = NULL;
        DeploymentRow d;
        uint64_t id = 0;
        int r;

        if (!deploy_query_ok(res)) {
                reply_database_error(call, error);
                return;
        }
        if (!deployment_row_read(res, 0, 0, &d)) {
                (void) sd_bus_message_rewind(call, true);
                (void) sd_bus_message_read(call, "t", &id);
                (void) sd_bus_reply_method_errorf(call, NORN_ERROR_NOT_FOUND, "No deployment %" PRIu64 ".", id);
                return;
        }
        r = sd_bus_message_new_method_return(call, &reply);
        if (r >= 0)
                r = append_deployment(reply, &d);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', STEP_SIGNATURE);
        for (int i = 0; r >= 0 && i < PQntuples(res); i++) {
                char *b[3] = {};
                StepRow s;

                if (!deploy_query_step_read(res, i, &s))
                        continue;
                r = sd_bus_message_append(reply, STEP_SIGNATURE, bus_string(s.name, &b[0]),
                                          bus_string(s.status, &b[1]), s.started_usec, s.finished_usec,
                                          s.has_exit_code ? s.exit_code : -1, bus_string(s.unit, &b[2]));
                free_strings(b, ELEMENTSOF(b));
        }
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        send_reply(call, reply, r);
}

int bus_method_get_deployment(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        int64_t id = 0;
        int r;

        r = read_deployment_id(msg, &id, error);
        if (r != 0)
                return r;
        if (!manager_db_available(m))
                return database_unavailable(error);
        r = deploy_query_one(m->db, id, on_deployment, sd_bus_message_ref(msg));
        if (r < 0) {
                sd_bus_message_unref(msg);
                return database_unavailable(error);
        }
        return 1;
}

/* --- GetLogs --- */

typedef struct LogsQuery {
        sd_bus_message *call;
        sd_event *event;
        int64_t id;
        char *after;             /* NULL: from the start */
        uint32_t max;

        /* The page, read in slices (deploy_log_read_async()) */
        DeployLog *log;
        sd_bus_message *reply;
        char *cursor;
        uint32_t n;
        size_t bytes;
} LogsQuery;

static void logs_query_free(LogsQuery *q) {
        deploy_log_free(q->log);
        sd_bus_message_unref(q->reply);
        sd_bus_message_unref(q->call);
        free(q->cursor);
        free(q->after);
        free(q);
}

static int on_logs_line(DeployLogLine *line, void *userdata) {
        LogsQuery *q = userdata;
        char *b[2] = {};
        int r;

        r = sd_bus_message_append(q->reply, "(tss)", line->realtime_usec, bus_string(line->step, &b[0]),
                                  bus_string(line->message, &b[1]));
        free_strings(b, ELEMENTSOF(b));
        if (r < 0)
                return r;
        q->n++;
        q->bytes += strlen(line->message) + 64;
        free(q->cursor);
        q->cursor = TAKE_PTR(line->cursor);
        /* At most max lines, and a reply well below the bus's message limit:
         * the cursor says where the next page starts. */
        return q->n < q->max && q->bytes < BUS_LOGS_REPLY_BYTES_MAX;
}

static void on_logs_read(DeployLog *l, int r, void *userdata) {
        LogsQuery *q = userdata;

        if (r >= 0)
                r = sd_bus_message_close_container(q->reply);
        if (r >= 0)
                r = sd_bus_message_append(q->reply, "s", q->cursor ?: q->after ?: "");
        if (r < 0)
                log_warning_errno(r, "Cannot read the journal for deployment %" PRIi64 ": %m", q->id);
        send_reply(q->call, q->reply, r);
        logs_query_free(q);
}

/* A reply in the making, filled a slice per loop iteration: a page of
 * thousands of entries does not hold the loop. on_logs_read() answers. */
static int logs_start_read(LogsQuery *q) {
        int r;

        r = sd_bus_message_new_method_return(q->call, &q->reply);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(q->reply, 'a', "(tss)");
        if (r < 0)
                return r;
        return deploy_log_read_async(q->log, q->event, on_logs_line, on_logs_read, q);
}

static void on_logs_row(Db *db, const PGresult *res, const char *error, void *userdata) {
        LogsQuery *q = userdata;
        DeploymentRow d;
        int r;

        if (!deploy_query_ok(res))
                reply_database_error(q->call, error);
        else if (!deployment_row_read(res, 0, 0, &d) || !d.app)
                (void) sd_bus_reply_method_errorf(q->call, NORN_ERROR_NOT_FOUND, "No deployment %" PRIi64 ".",
                                                  q->id);
        else {
                r = deploy_log_open(q->id, d.app, d.queued_usec, d.finished_usec, q->after, &q->log);
                if (r == -EINVAL)
                        (void) sd_bus_reply_method_errorf(q->call, NORN_ERROR_INVALID_ARGUMENT,
                                                          "The cursor is not one of this deployment's log.");
                else {
                        if (r >= 0)
                                r = logs_start_read(q);
                        if (r >= 0)
                                return;
                        log_warning_errno(r, "Cannot open the journal: %m");
                        (void) sd_bus_reply_method_errorf(q->call, NORN_ERROR_UNAVAILABLE,
                                                          "The journal cannot be read.");
                }
        }
        logs_query_free(q);
}

/* Reads and checks the arguments of GetLogs from the (rewound) message. */
static int read_logs_args(sd_bus_message *msg, int64_t *ret_id, const char **ret_after, uint32_t *ret_max,
                          sd_bus_error *error) {
        int r;

        r = read_deployment_id(msg, ret_id, error);
        if (r != 0)
                return r;
        r = sd_bus_message_read(msg, "su", ret_after, ret_max);
        if (r < 0)
                return r;
        if (**ret_after && !deploy_log_cursor_is_valid(*ret_after))
                return sd_bus_error_set(error, NORN_ERROR_INVALID_ARGUMENT,
                                        "Invalid cursor: pass \"\" or the cursor of an earlier GetLogs answer.");
        return 0;
}

static int logs_authorized(Manager *m, sd_bus_message *msg, const BusCaller *caller, sd_bus_error *error) {
        const char *after;
        LogsQuery *q;
        uint32_t max;
        int64_t id = 0;
        int r;

        r = sd_bus_message_rewind(msg, true);
        if (r < 0)
                return r;
        r = read_logs_args(msg, &id, &after, &max, error);
        if (r != 0)
                return r;
        if (!manager_db_available(m))
                return database_unavailable(error);

        q = calloc(1, sizeof(*q));
        if (!q)
                return -ENOMEM;
        q->event = m->event;
        q->id = id;
        q->max = max == 0 ? BUS_LOGS_MAX_DEFAULT : MIN(max, BUS_LOGS_MAX);
        if (*after && !(q->after = strdup(after))) {
                logs_query_free(q);
                return -ENOMEM;
        }
        q->call = sd_bus_message_ref(msg);
        r = deploy_query_one(m->db, id, on_logs_row, q);
        if (r < 0) {
                logs_query_free(q);
                return database_unavailable(error);
        }
        return 1;
}

/* nornd reads the journal as root for the caller, and step output can hold
 * secrets: unlike the other reading methods, GetLogs needs authorization
 * (as the HTTP API needs its token). The arguments are checked first, so a
 * bad one is InvalidArgument or NotFound for everyone. */
int bus_method_get_logs(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        const char *after;
        uint32_t max;
        int64_t id = 0;
        int r;

        r = read_logs_args(msg, &id, &after, &max, error);
        if (r != 0)
                return r;
        return bus_authorize(userdata, msg, NORN_ACTION_READ_LOGS, logs_authorized, error);
}

/* --- Validate --- */

static int append_diagnostics(sd_bus_message *reply, const AppEntry *e) {
        const InfraspecDiagnostics *d = &e->diagnostics;
        char *b[3] = {};
        size_t errors = 0;
        int r = 0;

        for (size_t i = 0; r >= 0 && i < d->n; i++) {
                const InfraspecDiagnostic *g = d->items + i;

                errors += g->error;
                r = sd_bus_message_append(reply, "(sssuus)", bus_string(e->id, &b[0]),
                                          bus_string(d->file ?: e->path, &b[1]), g->error ? "error" : "warning",
                                          (uint32_t) g->line, (uint32_t) g->column, bus_string(g->message, &b[2]));
                free_strings(b, ELEMENTSOF(b));
                memset(b, 0, sizeof(b));
        }
        if (r >= 0 && d->truncated)
                r = sd_bus_message_append(reply, "(sssuus)", bus_string(e->id, &b[0]),
                                          bus_string(d->file ?: e->path, &b[1]),
                                          d->n_errors > errors ? "error" : "warning", 0U, 0U,
                                          "more problems than shown; fix these first");
        free_strings(b, ELEMENTSOF(b));
        return r;
}

int bus_method_validate(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(app_list_freep) AppList *list = NULL;
        Manager *m = userdata;
        const char *app;
        int r;

        r = sd_bus_message_read(msg, "s", &app);
        if (r < 0)
                return r;
        if (*app && !app_id_is_valid(app))
                return bus_error_invalid_app(error);
        r = discover(m, &list, error);
        if (r < 0)
                return r;
        if (*app && !app_list_find(list, app))
                return sd_bus_error_setf(error, NORN_ERROR_NOT_FOUND,
                                         "No app %s (no %s/" INFRASPEC_FILE_NAME " in the apps directory).", app, app);

        r = sd_bus_message_new_method_return(msg, &reply);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "(sssuus)");
        for (size_t i = 0; r >= 0 && i < list->n; i++)
                if (!*app || streq(list->entries[i].id, app))
                        r = append_diagnostics(reply, list->entries + i);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}
