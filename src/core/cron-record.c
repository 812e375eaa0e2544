/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cron-internal.h"
#include "log.h"

/* PostgreSQL (sql/0003-cron.sql): cron_timers, the current timer of each cron
 * app (what a deploy installed), and cron_executions, one row per run keyed
 * by the service's InvocationID. */

const char cron_sql_upsert_timer[] =
        "INSERT INTO cron_timers (app, image, schedule, oncalendar, command, env, runtime, timeout_sec, "
        "                         deployment_id, env_file, updated_at) "
        "VALUES ($1, $2, $3, ARRAY(SELECT json_array_elements_text($4::json)), $5, "
        "        ARRAY(SELECT json_array_elements_text($6::json)), $7, $8::integer, $9::bigint, $10, now()) "
        "ON CONFLICT (app) DO UPDATE SET image = EXCLUDED.image, schedule = EXCLUDED.schedule, "
        "        oncalendar = EXCLUDED.oncalendar, command = EXCLUDED.command, env = EXCLUDED.env, "
        "        runtime = EXCLUDED.runtime, timeout_sec = EXCLUDED.timeout_sec, "
        "        deployment_id = EXCLUDED.deployment_id, env_file = EXCLUDED.env_file, updated_at = now()";

const char cron_sql_delete_timer[] = "DELETE FROM cron_timers WHERE app = $1";

const char cron_sql_select_timers[] =
        "SELECT app, image, command, runtime, timeout_sec, array_to_json(oncalendar)::text, "
        "       array_to_json(env)::text, env_file "
        "FROM cron_timers WHERE $1::text IS NULL OR app = $1 ORDER BY app";

/* Written when a run is seen starting, completed when it is seen ended; any
 * number of times (the same values). */
static const char sql_record_execution[] =
        "INSERT INTO cron_executions (app, invocation_id, unit, image, started_at, finished_at, result, "
        "                             exit_code, exit_signal) "
        "VALUES ($1, $2, $3, $4, to_timestamp($5::double precision / 1000000), "
        "        to_timestamp($6::double precision / 1000000), $7, $8::integer, $9::integer) "
        "ON CONFLICT (invocation_id) DO UPDATE SET "
        "        started_at = coalesce(cron_executions.started_at, EXCLUDED.started_at), "
        "        finished_at = coalesce(EXCLUDED.finished_at, cron_executions.finished_at), "
        "        result = coalesce(EXCLUDED.result, cron_executions.result), "
        "        exit_code = coalesce(EXCLUDED.exit_code, cron_executions.exit_code), "
        "        exit_signal = coalesce(EXCLUDED.exit_signal, cron_executions.exit_signal)";

static void on_recorded(Db *db, const PGresult *result, const char *error, void *userdata) {
        CronOp *op = userdata;

        if (op->orphaned) {
                cron_op_free(op);
                return;
        }
        if (error)
                cron_op_finish(op, -EIO, "the units of %s are %s, but the record could not be updated: %s",
                               op->app, op->install ? "in place" : "removed", error);
        else {
                /* The record names the new file (or none): the app's others are garbage. */
                if (op->owner && op->owner->env_dir)
                        cron_env_files_prune(op->owner->env_dir, op->app, op->env_file);
                cron_op_finish(op, op->result, NULL);
        }
}

void cron_op_record(CronOp *op) {
        int r = -ENOTCONN;

        /* From here on only the query's answer ends the op. */
        op->phase = PHASE_RECORD;
        op->timeout = sd_event_source_disable_unref(op->timeout);
        if (op->owner && op->owner->db)
                r = db_query(op->owner->db, op->record_sql, op->record_sql == cron_sql_upsert_timer ? 10 : 1,
                             (const char *const *) op->record_params, on_recorded, op);
        if (r < 0)
                cron_op_finish(op, r, "the units of %s are %s, but the record could not be updated: %s",
                               op->app, op->install ? "in place" : "removed",
                               r == -ENOTCONN ? "the database is not connected" : strerror(-r));
}

void cron_record_execution(CronTimers *c, const char *app, const char *unit, const UnitState *s) {
        char start[24], exit_[24], status[16];
        bool finished = s->exit_usec > 0 && s->exit_usec >= s->start_usec;
        const char *params[9];
        int r;

        if (!c->db || !db_is_up(c->db) || !s->invocation[0] || s->start_usec == 0)
                return;
        (void) snprintf(start, sizeof(start), "%" PRIu64, s->start_usec);
        (void) snprintf(exit_, sizeof(exit_), "%" PRIu64, s->exit_usec);
        (void) snprintf(status, sizeof(status), "%" PRIi32, s->status);
        params[0] = app;
        params[1] = s->invocation;
        params[2] = unit;
        params[3] = unit_extra_field(s->extra_fields, "NORN_CRON_IMAGE");
        params[4] = start;
        params[5] = finished ? exit_ : NULL;
        params[6] = finished ? s->result : NULL;
        params[7] = finished && s->code == CLD_EXITED ? status : NULL;
        params[8] = finished && (s->code == CLD_KILLED || s->code == CLD_DUMPED) ? status : NULL;
        r = db_query(c->db, sql_record_execution, 9, params, NULL, NULL);
        if (r < 0)
                log_warning_errno(r, "Cannot record a run of %s: %m", unit);
}

/* ---- Executions: runs are seen through the services' ActiveState ---------------- */

struct Probe {
        CronTimers *c;
        Probe *next;
        char *app, *unit;
        sd_bus_slot *slots[3];
        unsigned pending;
        char first[33];         /* InvocationID before and after reading the run: */
        char last[33];          /* a new run in between makes them differ */
        UnitState state;
};

Probe *cron_probe_free(Probe *p) {
        Probe **i;

        if (!p)
                return NULL;
        for (i = &p->c->probes; *i && *i != p; i = &(*i)->next)
                ;
        if (*i)
                *i = p->next;
        for (size_t k = 0; k < ELEMENTSOF(p->slots); k++)
                sd_bus_slot_unref(p->slots[k]);
        unit_state_done(&p->state);
        free(p->app);
        free(p->unit);
        return mfree(p);
}

static void probe_reply(Probe *p, sd_bus_message *m, int which) {
        int r = -EIO;

        p->slots[which] = sd_bus_slot_unref(p->slots[which]);
        p->pending--;
        if (!sd_bus_message_is_method_error(m, NULL))
                r = which == 1 ? unit_state_parse(m, &p->state) :
                                 unit_state_read_invocation(m, which == 0 ? p->first : p->last);
        if (r < 0) {
                log_debug("Cannot read the last run of %s: %s", p->unit, strna(bus_reply_error_text(m)));
                cron_probe_free(p);
                return;
        }
        if (p->pending > 0)
                return;
        if (p->first[0] && streq(p->first, p->last)) {
                memcpy(p->state.invocation, p->first, sizeof(p->first));
                cron_record_execution(p->c, p->app, p->unit, &p->state);
        }
        cron_probe_free(p);
}

static int on_probe_first(sd_bus_message *m, void *userdata, sd_bus_error *e) {
        probe_reply(userdata, m, 0);
        return 0;
}

static int on_probe_service(sd_bus_message *m, void *userdata, sd_bus_error *e) {
        probe_reply(userdata, m, 1);
        return 0;
}

static int on_probe_last(sd_bus_message *m, void *userdata, sd_bus_error *e) {
        probe_reply(userdata, m, 2);
        return 0;
}

void cron_probe_start(CronTimers *c, const char *app, const char *unit, const char *path) {
        Probe *p;
        int r;

        if (!c->db)
                return;
        p = calloc(1, sizeof(*p));
        if (!p)
                return (void) log_oom();
        p->c = c;
        p->next = c->probes;
        c->probes = p;
        p->app = strdup(app);
        p->unit = strdup(unit);
        if (!p->app || !p->unit) {
                cron_probe_free(p);
                return (void) log_oom();
        }
        r = sd_bus_call_method_async(c->bus, &p->slots[0], SYSTEMD_DEST, path, DBUS_PROPERTIES, "Get",
                                     on_probe_first, p, "ss", SYSTEMD_UNIT, "InvocationID");
        if (r >= 0)
                r = sd_bus_call_method_async(c->bus, &p->slots[1], SYSTEMD_DEST, path, DBUS_PROPERTIES, "GetAll",
                                             on_probe_service, p, "s", SYSTEMD_SERVICE);
        if (r >= 0)
                r = sd_bus_call_method_async(c->bus, &p->slots[2], SYSTEMD_DEST, path, DBUS_PROPERTIES, "Get",
                                             on_probe_last, p, "ss", SYSTEMD_UNIT, "InvocationID");
        if (r < 0) {
                log_debug_errno(r, "Cannot ask for the last run of %s: %m", unit);
                cron_probe_free(p);
                return;
        }
        p->pending = 3;
}
