/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cron-internal.h"
#include "log.h"
#include "strv.h"

/* CronTimers: the cron apps of one nornd. It watches the service manager
 * (runs of norn-cron-*.service to record them, reloads to repair units) and
 * deploys and undeploys apps: their units, then their record. */

static int strv_remove(char **l, const char *s) {
        for (size_t i = 0; l && l[i]; i++)
                if (streq(l[i], s)) {
                        free(l[i]);
                        memmove(l + i, l + i + 1, sizeof(char *) * (strv_length(l + i + 1) + 1));
                        return 1;
                }
        return 0;
}

static int on_unit_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        CronTimers *c = userdata;
        _cleanup_free_ char *unit = NULL, *app = NULL;
        const char *path = sd_bus_message_get_path(m), *key, *state = NULL;
        size_t n;
        int r;

        r = sd_bus_path_decode(path, UNIT_PATH_PREFIX, &unit);
        n = r > 0 ? strlen(unit) : 0;
        if (n <= strlen(CRON_UNIT_PREFIX ".service") || strncmp(unit, CRON_UNIT_PREFIX, strlen(CRON_UNIT_PREFIX)) != 0 ||
            !streq(unit + n - strlen(".service"), ".service"))
                return 0;
        app = strndup(unit + strlen(CRON_UNIT_PREFIX), n - strlen(CRON_UNIT_PREFIX ".service"));
        if (!app || !cron_app_is_valid(app))
                return 0;

        /* PropertiesChanged(s interface, a{sv} changed, as invalidated) */
        r = sd_bus_message_skip(m, "s");
        if (r >= 0)
                r = sd_bus_message_enter_container(m, 'a', "{sv}");
        while (r >= 0 && !state && (r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                r = sd_bus_message_read(m, "s", &key);
                if (r >= 0 && streq(key, "ActiveState"))
                        r = sd_bus_message_read(m, "v", "s", &state);
                else if (r >= 0)
                        r = sd_bus_message_skip(m, "v");
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
        }
        if (!state)
                return 0;

        log_debug("cron %s: %s is %s", app, unit, state);
        /* A run has started or ended (the manager may say so more than once). */
        if (streq(state, "active") || streq(state, "inactive") || streq(state, "failed"))
                cron_probe_start(c, app, unit, path);
        if (!unit_active_state_is_running(state) && strv_remove(c->after_job, app) > 0)
                (void) cron_restore_start(c, app, NULL, NULL);
        return 0;
}

static int on_reloading(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        CronTimers *c = userdata;
        int active;

        if (sd_bus_message_read(m, "b", &active) < 0 || active)
                return 0;
        /* systemd 252 does not read back the '$' of our ExecStart= from the transient
         * unit files it re-reads: check every unit against its record. */
        log_debug("The service manager reloaded; checking the cron units.");
        (void) cron_restore_start(c, NULL, NULL, NULL);
        return 0;
}

CronOp *cron_timers_find_op(CronTimers *c, const char *app) {
        for (CronOp *op = c->ops; op; op = op->next)
                if (streq_ptr(op->app, app))
                        return op;
        return NULL;
}

void cron_timers_op_ended(CronTimers *c, const char *app, int r) {
        if (r == -EBUSY) {
                if (!strv_contains(c->after_job, app))
                        (void) strv_extend(&c->after_job, app);
                return;
        }
        if (strv_remove(c->after_op, app) > 0)
                (void) cron_restore_start(c, app, NULL, NULL);
}

/* The names of env as NAME= entries: what is recorded when the values are in a file. */
static int env_names(char *const *env, char ***ret) {
        _cleanup_strv_free_ char **l = calloc(1, sizeof(char *));

        if (!l)
                return -ENOMEM;
        for (char *const *e = env; e && *e; e++)
                if (strv_extendf(&l, "%.*s=", (int) strcspn(*e, "="), *e) < 0)
                        return -ENOMEM;
        *ret = TAKE_PTR(l);
        return 0;
}

int cron_timers_deploy(CronTimers *c, const CronJob *job, const char *schedule, int64_t deployment_id,
                       CronDoneCallback done, void *userdata, CronOp **ret) {
        _cleanup_(cron_op_freep) CronOp *op = NULL;
        _cleanup_free_ char *calendar = NULL, *env = NULL, *env_file = NULL;
        _cleanup_strv_free_ char **names = NULL;
        CronJob j;
        json_t *a;
        CronOp *other;
        int r;

        if (!c || c->dead || !job || !done || !schedule)
                return -EINVAL;
        /* Never change units that could not be recorded. */
        if (!c->db || !db_is_up(c->db))
                return -ENOTCONN;
        /* The same slice as units re-created from the record get. */
        j = *job;
        j.slice = c->slice;
        j.user = c->user;
        j.inaccessible = c->inaccessible;
        job = &j;
        r = cron_job_validate(job, NULL);
        if (r < 0)
                return r;
        /* The values go to a root-only file, the record gets the names. */
        if (c->env_dir && job->env && job->env[0]) {
                r = cron_env_file_prepare(c->env_dir, job->app, job->env, &env_file);
                if (r < 0)
                        return log_debug_errno(r, "Cannot write the env file of %s: %m", job->app);
                r = env_names(job->env, &names);
                if (r < 0)
                        return r;
                j.env_file = env_file;
                j.env = names;
        }
        r = cron_op_new_install(c->bus, job, SYNC_REPLACE, done, userdata, &op, NULL);
        if (r < 0)
                return r;
        op->env_file = TAKE_PTR(env_file);
        other = cron_timers_find_op(c, job->app);
        if (other && !other->check)
                return -EBUSY;  /* another deploy of this app */
        if (other)              /* a check of the old record: this deploy supersedes it */
                cron_op_finish(other, -ECANCELED, "superseded by a deploy");

        for (int i = 0; i < 2; i++) {
                a = json_array();
                for (char *const *l = i == 0 ? job->oncalendar : job->env; a && l && *l; l++)
                        if (json_array_append_new(a, json_string(*l)) < 0)
                                json_decref(TAKE_PTR(a));
                *(i == 0 ? &calendar : &env) = a ? json_dumps(a, JSON_COMPACT) : NULL;
                json_decref(a);
        }
        op->record_sql = cron_sql_upsert_timer;
        if (!calendar || !env || !(op->record_params[0] = strdup(job->app)) ||
            !(op->record_params[1] = strdup(job->image)) || !(op->record_params[2] = strdup(schedule)) ||
            !(op->record_params[4] = strdup(job->command)) ||
            (job->runtime && *job->runtime && !(op->record_params[6] = strdup(job->runtime))) ||
            asprintf(&op->record_params[7], "%u", job->timeout_sec) < 0 ||
            (deployment_id > 0 && asprintf(&op->record_params[8], "%" PRIi64, deployment_id) < 0) ||
            (op->env_file && !(op->record_params[9] = strdup(op->env_file))))
                return -ENOMEM;
        op->record_params[3] = TAKE_PTR(calendar);
        op->record_params[5] = TAKE_PTR(env);

        cron_op_link(op, c);
        r = cron_op_inspect(op);
        if (r < 0)
                return r;
        if (ret)
                *ret = op;
        TAKE_PTR(op);
        return 0;
}

int cron_timers_undeploy(CronTimers *c, const char *app, CronDoneCallback done, void *userdata, CronOp **ret) {
        _cleanup_(cron_op_freep) CronOp *op = NULL;
        CronOp *other;
        int r;

        if (!c || c->dead || !done)
                return -EINVAL;
        if (!c->db || !db_is_up(c->db))
                return -ENOTCONN;
        r = cron_op_new(c->bus, app, false, done, userdata, &op);
        if (r < 0)
                return r;
        other = cron_timers_find_op(c, app);
        if (other && !other->check)
                return -EBUSY;
        if (other)
                cron_op_finish(other, -ECANCELED, "superseded by an undeploy");
        op->record_sql = cron_sql_delete_timer;
        op->record_params[0] = strdup(app);
        if (!op->record_params[0])
                return -ENOMEM;
        cron_op_link(op, c);
        r = cron_op_begin_replace(op);
        if (r < 0)
                return r;
        if (ret)
                *ret = op;
        TAKE_PTR(op);
        return 0;
}

int cron_timers_new(sd_bus *bus, Db *db, const char *slice, CronTimers **ret) {
        _cleanup_(cron_timers_freep) CronTimers *c = NULL;
        int r;

        if (!bus || !ret)
                return -EINVAL;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->n_ref = 1;
        c->bus = sd_bus_ref(bus);
        c->db = db;
        if (slice && !(c->slice = strdup(slice)))
                return -ENOMEM;

        /* Without Subscribe the manager sends no PropertiesChanged for units at all. */
        r = sd_bus_call_method_async(bus, NULL, SYSTEMD_DEST, SYSTEMD_PATH, SYSTEMD_MANAGER, "Subscribe", NULL,
                                     NULL, NULL);
        if (r >= 0)
                r = sd_bus_add_match_async(bus, &c->changes_match,
                                           "type='signal',sender='" SYSTEMD_DEST "',"
                                           "interface='" DBUS_PROPERTIES "',member='PropertiesChanged',"
                                           "path_namespace='" UNIT_PATH_PREFIX "',arg0='" SYSTEMD_UNIT "'",
                                           on_unit_changed, NULL, c);
        if (r >= 0)
                r = sd_bus_add_match_async(bus, &c->reload_match,
                                           "type='signal',sender='" SYSTEMD_DEST "',path='" SYSTEMD_PATH "',"
                                           "interface='" SYSTEMD_MANAGER "',member='Reloading'",
                                           on_reloading, NULL, c);
        if (r < 0)
                return log_debug_errno(r, "Cannot watch the service manager for cron units: %m");
        *ret = TAKE_PTR(c);
        return 0;
}

int cron_timers_set_sandbox(CronTimers *c, const char *user, const char *env_dir, char *const *inaccessible) {
        if (!c)
                return -EINVAL;
        free(c->user);
        free(c->env_dir);
        c->inaccessible = strv_free(c->inaccessible);
        c->user = user ? strdup(user) : NULL;
        c->env_dir = env_dir ? strdup(env_dir) : NULL;
        for (char *const *p = inaccessible; p && *p; p++)
                if (strv_extend(&c->inaccessible, *p) < 0)
                        return -ENOMEM;
        if ((user && !c->user) || (env_dir && !c->env_dir))
                return -ENOMEM;
        return 0;
}

void cron_timers_unref(CronTimers *c) {
        if (!c || --c->n_ref > 0)
                return;
        sd_bus_unref(c->bus);
        free(c->slice);
        free(c->user);
        free(c->env_dir);
        strv_free(c->inaccessible);
        free(c);
}

CronTimers *cron_timers_free(CronTimers *c) {
        if (!c)
                return NULL;
        c->dead = true;
        c->changes_match = sd_bus_slot_unref(c->changes_match);
        c->reload_match = sd_bus_slot_unref(c->reload_match);
        /* Checks of records stop here; deploys and undeploys go on without us (their
         * callers may still cancel them), but cannot record anymore. */
        while (c->ops) {
                CronOp *op = c->ops;

                cron_op_unlink(op);
                if (op->check)
                        cron_op_cancel(op);
        }
        while (c->probes)
                cron_probe_free(c->probes);
        cron_restores_drop(c);
        c->after_op = strv_free(c->after_op);
        c->after_job = strv_free(c->after_job);
        cron_timers_unref(c);
        return NULL;
}
