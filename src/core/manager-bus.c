/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bus-auth.h"
#include "bus-error.h"
#include "config-build.h"
#include "deploy-query.h"
#include "events.h"
#include "health.h"
#include "log.h"
#include "manager-bus-internal.h"
#include "manager-bus.h"
#include "manager.h"
#include "infraspec.h"
#include "pipeline.h"
#include "rollback.h"
#include "scheduler.h"

static int property_get_version(sd_bus *bus, const char *path, const char *interface,
                                const char *property, sd_bus_message *reply, void *userdata,
                                sd_bus_error *error) {
        return sd_bus_message_append(reply, "s", NORN_VERSION);
}

static int method_health(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        Manager *m = userdata;
        HealthState h;
        int r;

        r = health_collect(m, &h);
        if (r < 0)
                return r;

        r = sd_bus_message_new_method_return(msg, &reply);
        if (r >= 0)
                r = sd_bus_message_append(reply, "s", health_state_ok(&h) ? "ok" : "degraded");
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "(sbs)");
        for (size_t i = 0; r >= 0 && i < _HEALTH_MAX; i++)
                r = sd_bus_message_append(reply, "(sbs)", health_component_to_string(i), h.up[i], h.detail[i]);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r >= 0)
                r = sd_bus_send(NULL, reply, NULL);
        health_state_done(&h);
        return r;
}

/* The reply of Deploy, Rollback and RestoreSnapshot comes once the
 * deployment's row exists; submit() returns at once. */
static int reply_when_queued(sd_bus_message *msg, int r, char *why, sd_bus_error *error) {
        if (r < 0) {
                sd_bus_message_unref(msg);
                return bus_error_set_errno(error, r, why);
        }
        return 1;
}

static void on_deploy_queued(Deployment *d, int r, const char *error, void *userdata) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = userdata;
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        _cleanup_free_ char *path = NULL;

        if (r < 0) {
                bus_error_set_errno(&e, r, error);
                (void) sd_bus_reply_method_error(call, &e);
                return;
        }
        path = deployment_bus_path(d->id);
        if (!path)
                (void) sd_bus_reply_method_errno(call, ENOMEM, NULL);
        else
                (void) sd_bus_reply_method_return(call, "o", path);
}

/* The mutating methods run in two halves: method_*() reads and checks the
 * arguments, then bus_authorize() runs *_authorized() once the caller may
 * (at once for root, else when polkit has answered). The second half reads
 * the arguments again from the rewound message. */

static int deploy_authorized(Manager *m, sd_bus_message *msg, const BusCaller *caller, sd_bus_error *error) {
        _cleanup_free_ char *why = NULL, *who = NULL;
        const char *app, *ref;
        int r;

        r = sd_bus_message_rewind(msg, true);
        if (r >= 0)
                r = sd_bus_message_read(msg, "ss", &app, &ref);
        if (r >= 0)
                r = bus_caller_describe(caller, msg, &who);
        if (r < 0)
                return r;
        r = scheduler_submit(m, app, ref, who, on_deploy_queued, sd_bus_message_ref(msg), &why);
        return reply_when_queued(msg, r, why, error);
}

static int method_deploy(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        const char *app, *ref;
        int r;

        r = sd_bus_message_read(msg, "ss", &app, &ref);
        if (r < 0)
                return r;
        if (!app_id_is_valid(app))
                return bus_error_invalid_app(error);
        return bus_authorize(userdata, msg, NORN_ACTION_DEPLOY, deploy_authorized, error);
}

static int rollback_authorized(Manager *m, sd_bus_message *msg, const BusCaller *caller, sd_bus_error *error) {
        _cleanup_free_ char *why = NULL, *who = NULL;
        const char *app;
        uint64_t to;
        int restore, r;

        r = sd_bus_message_rewind(msg, true);
        if (r >= 0)
                r = sd_bus_message_read(msg, "stb", &app, &to, &restore);
        if (r >= 0)
                r = bus_caller_describe(caller, msg, &who);
        if (r < 0)
                return r;
        r = rollback_submit(m, app, (int64_t) to, restore, who, on_deploy_queued, sd_bus_message_ref(msg), &why);
        return reply_when_queued(msg, r, why, error);
}

static int method_rollback(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        const char *app;
        uint64_t to;
        int restore, r;

        r = sd_bus_message_read(msg, "stb", &app, &to, &restore);
        if (r < 0)
                return r;
        if (!app_id_is_valid(app))
                return bus_error_invalid_app(error);
        if (to > INT64_MAX)
                return sd_bus_error_set(error, NORN_ERROR_INVALID_ARGUMENT, "Invalid deployment id.");
        return bus_authorize(userdata, msg, NORN_ACTION_ROLLBACK, rollback_authorized, error);
}

static int restore_authorized(Manager *m, sd_bus_message *msg, const BusCaller *caller, sd_bus_error *error) {
        _cleanup_free_ char *why = NULL, *who = NULL;
        const char *app, *snapshot;
        int r;

        r = sd_bus_message_rewind(msg, true);
        if (r >= 0)
                r = sd_bus_message_read(msg, "ss", &app, &snapshot);
        if (r >= 0)
                r = bus_caller_describe(caller, msg, &who);
        if (r < 0)
                return r;
        r = restore_submit(m, app, snapshot, who, on_deploy_queued, sd_bus_message_ref(msg), &why);
        return reply_when_queued(msg, r, why, error);
}

static int method_restore_snapshot(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        const char *app, *snapshot;
        int r;

        r = sd_bus_message_read(msg, "ss", &app, &snapshot);
        if (r < 0)
                return r;
        if (!app_id_is_valid(app))
                return bus_error_invalid_app(error);
        return bus_authorize(userdata, msg, NORN_ACTION_ROLLBACK, restore_authorized, error);
}

static void on_snapshots(Db *db, const PGresult *res, const char *error, void *userdata) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = userdata, *reply = NULL;
        int r;

        if (!deploy_query_ok(res)) {
                log_debug("Cannot list snapshots: %s", strna(error));
                (void) sd_bus_reply_method_errorf(call, NORN_ERROR_UNAVAILABLE,
                                                  "Cannot list snapshots: the database is unavailable.");
                return;
        }
        r = sd_bus_message_new_method_return(call, &reply);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "(tssttt)");
        for (int i = 0; r >= 0 && i < PQntuples(res); i++) {
                SnapshotRow s;

                if (deploy_query_snapshot_read(res, i, &s))
                        r = sd_bus_message_append(reply, "(tssttt)", (uint64_t) s.id, s.database, s.name,
                                                  s.size_bytes, s.created_usec, (uint64_t) s.deployment_id);
        }
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r >= 0)
                r = sd_bus_send(NULL, reply, NULL);
        if (r < 0)
                (void) sd_bus_reply_method_errno(call, -r, NULL);
}

static int method_list_snapshots(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *app;
        int r;

        r = sd_bus_message_read(msg, "s", &app);
        if (r < 0)
                return r;
        if (!app_id_is_valid(app))
                return bus_error_invalid_app(error);
        if (!manager_db_available(m))
                return sd_bus_error_set(error, NORN_ERROR_UNAVAILABLE, "The database is unavailable.");

        r = deploy_query_snapshots(m->db, app, on_snapshots, sd_bus_message_ref(msg));
        if (r < 0) {
                sd_bus_message_unref(msg);
                return sd_bus_error_set(error, NORN_ERROR_UNAVAILABLE, "The database is unavailable.");
        }
        return 1;
}

static int cancel_authorized(Manager *m, sd_bus_message *msg, const BusCaller *caller, sd_bus_error *error) {
        Deployment *d;
        uint64_t id;
        int r;

        r = sd_bus_message_rewind(msg, true);
        if (r >= 0)
                r = sd_bus_message_read(msg, "t", &id);
        if (r < 0)
                return r;
        /* Looked up only now: it may have ended while polkit was asked. */
        d = id <= INT64_MAX ? manager_find_deployment(m, (int64_t) id) : NULL;
        if (!d)
                return sd_bus_error_setf(error, NORN_ERROR_NOT_FOUND, "No active deployment %" PRIu64 ".", id);
        r = pipeline_cancel(d);
        if (r == -EALREADY)
                return sd_bus_error_setf(error, NORN_ERROR_ALREADY_FINISHED,
                                         "Deployment %" PRIu64 " already ended %s.", id,
                                         deploy_status_to_string(d->status));
        if (r < 0)
                return bus_error_set_errno(error, r, NULL);
        return sd_bus_reply_method_return(msg, NULL);
}

static int method_cancel(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        uint64_t id;
        int r;

        r = sd_bus_message_read(msg, "t", &id);
        if (r < 0)
                return r;
        return bus_authorize(userdata, msg, NORN_ACTION_DEPLOY, cancel_authorized, error);
}

static const sd_bus_vtable manager_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Version", "s", property_get_version, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_METHOD_WITH_ARGS("Health",
                                SD_BUS_NO_ARGS,
                                SD_BUS_RESULT("s", status, "a(sbs)", components),
                                method_health,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ListApps",
                                SD_BUS_NO_ARGS,
                                SD_BUS_RESULT("a(sssbtsst)", apps),
                                bus_method_list_apps,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ListDeployments",
                                SD_BUS_ARGS("s", app, "s", status, "u", limit),
                                SD_BUS_RESULT("a(tsssssssttts)", deployments),
                                bus_method_list_deployments,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("GetDeployment",
                                SD_BUS_ARGS("t", id),
                                SD_BUS_RESULT("(tsssssssttts)", deployment, "a(ssttis)", steps),
                                bus_method_get_deployment,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("GetLogs",
                                SD_BUS_ARGS("t", id, "s", after_cursor, "u", max_lines),
                                SD_BUS_RESULT("a(tss)", lines, "s", cursor),
                                bus_method_get_logs,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Validate",
                                SD_BUS_ARGS("s", app),
                                SD_BUS_RESULT("a(sssuus)", problems),
                                bus_method_validate,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Deploy",
                                SD_BUS_ARGS("s", app, "s", ref),
                                SD_BUS_RESULT("o", deployment),
                                method_deploy,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Cancel",
                                SD_BUS_ARGS("t", id),
                                SD_BUS_NO_RESULT,
                                method_cancel,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Rollback",
                                SD_BUS_ARGS("s", app, "t", to_deployment, "b", restore_db),
                                SD_BUS_RESULT("o", deployment),
                                method_rollback,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("RestoreSnapshot",
                                SD_BUS_ARGS("s", app, "s", snapshot),
                                SD_BUS_RESULT("o", deployment),
                                method_restore_snapshot,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ListSnapshots",
                                SD_BUS_ARGS("s", app),
                                SD_BUS_RESULT("a(tssttt)", snapshots),
                                method_list_snapshots,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_ARGS("DeploymentQueued",
                                SD_BUS_ARGS("t", id, "s", app, "s", ref, "o", deployment), 0),
        SD_BUS_SIGNAL_WITH_ARGS("StepChanged",
                                SD_BUS_ARGS("t", id, "s", app, "s", step, "s", status, "t", duration_usec), 0),
        SD_BUS_SIGNAL_WITH_ARGS("LogLine",
                                SD_BUS_ARGS("t", id, "s", app, "s", step, "s", stream, "s", line), 0),
        SD_BUS_SIGNAL_WITH_ARGS("DeploymentFinished",
                                SD_BUS_ARGS("t", id, "s", app, "s", status, "s", error), 0),
        SD_BUS_SIGNAL_WITH_ARGS("DeploymentRolledBack",
                                SD_BUS_ARGS("t", id, "s", app, "t", rolled_back_by), 0),
        SD_BUS_VTABLE_END,
};

int manager_bus_add_objects(sd_bus *bus, Manager *m) {
        int r;

        r = sd_bus_add_object_vtable(bus, NULL, NORN_BUS_PATH, NORN_BUS_MANAGER_INTERFACE, manager_vtable, m);
        if (r < 0)
                return r;
        r = deployment_bus_add_objects(bus, m);
        if (r < 0)
                return r;
        return sd_bus_add_object_manager(bus, NULL, NORN_BUS_PATH);
}

int manager_bus_register(Manager *m) {
        int r;

        /* Clients in this process (none yet) and tests see the errnos too. */
        r = sd_bus_error_add_map(norn_bus_error_map);
        if (r < 0)
                return log_error_errno(r, "Failed to register the D-Bus error map: %m");
        r = manager_bus_add_objects(m->bus, m);
        if (r < 0)
                return log_error_errno(r, "Failed to register objects under " NORN_BUS_PATH ": %m");
        return 0;
}

static const char *json_str(json_t *o, const char *key) {
        return json_string_value(json_object_get(o, key)) ?: "";
}

void manager_bus_emit_event(Manager *m, const Event *e) {
        json_t *p = e->payload;
        uint64_t id;

        if (!m->bus)
                return;
        id = (uint64_t) json_integer_value(json_object_get(p, json_object_get(p, "deploymentId") ? "deploymentId"
                                                                                                    : "id"));
        if (streq(e->type, "deploy.queued")) {
                _cleanup_free_ char *path = deployment_bus_path((int64_t) id);
                if (path)
                        (void) sd_bus_emit_signal(m->bus, NORN_BUS_PATH, NORN_BUS_MANAGER_INTERFACE,
                                                  "DeploymentQueued", "tsso", id, e->app, json_str(p, "ref"), path);
        } else if (streq(e->type, "deploy.step"))
                (void) sd_bus_emit_signal(m->bus, NORN_BUS_PATH, NORN_BUS_MANAGER_INTERFACE, "StepChanged", "tssst",
                                          id, e->app, json_str(p, "step"), json_str(p, "status"),
                                          (uint64_t) json_integer_value(json_object_get(p, "durationMs")) * 1000);
        else if (streq(e->type, "deploy.log"))
                (void) sd_bus_emit_signal(m->bus, NORN_BUS_PATH, NORN_BUS_MANAGER_INTERFACE, "LogLine", "tssss",
                                          id, e->app, json_str(p, "step"), json_str(p, "stream"),
                                          json_str(p, "line"));
        else if (streq(e->type, "deploy.rolled_back"))
                (void) sd_bus_emit_signal(m->bus, NORN_BUS_PATH, NORN_BUS_MANAGER_INTERFACE, "DeploymentRolledBack",
                                          "tst", id, e->app,
                                          (uint64_t) json_integer_value(json_object_get(p, "rolledBackBy")));
        else if (streq(e->type, "deploy.completed") || streq(e->type, "deploy.failed"))
                (void) sd_bus_emit_signal(m->bus, NORN_BUS_PATH, NORN_BUS_MANAGER_INTERFACE,
                                          "DeploymentFinished", "tsss", id, e->app, json_str(p, "status"),
                                          json_str(p, "error"));
}
