/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cron-internal.h"
#include "log.h"
#include "strv.h"

/* Re-creating units from their records: the recorded timers that are missing
 * or differ from their record are re-created, matching ones (and running
 * jobs) are left alone. Transient units do not survive a reboot, and systemd
 * 252 changes them at a daemon-reload (see cron-timer.h). */

struct Restore {
        CronTimers *c;
        Restore *next;
        char *app;              /* NULL: all apps */
        bool querying;          /* the SELECT runs (it holds a reference on c) */
        unsigned pending;       /* operations started */
        int error;
        char *message;
        CronDoneCallback done;
        void *userdata;
};

static Restore *restore_free(Restore *rs) {
        Restore **i;

        if (!rs)
                return NULL;
        for (i = &rs->c->restores; *i && *i != rs; i = &(*i)->next)
                ;
        if (*i)
                *i = rs->next;
        free(rs->app);
        free(rs->message);
        return mfree(rs);
}

static void restore_fail(Restore *rs, int r, const char *app, const char *message) {
        log_warning("Cannot restore the cron timer of %s: %s", strna(app), strna(message));
        if (rs->error < 0)
                return;
        rs->error = r;
        if (asprintf(&rs->message, "%s: %s", strna(app), strna(message)) < 0)
                rs->message = NULL;
}

static void restore_maybe_end(Restore *rs) {
        if (rs->querying || rs->pending > 0)
                return;
        if (rs->done)
                rs->done(rs->error, rs->message, rs->userdata);
        restore_free(rs);
}

static void on_restored(int r, const char *error, void *userdata) {
        Restore *rs = userdata;

        rs->pending--;
        if (r < 0 && r != -EBUSY && r != -ECANCELED)
                restore_fail(rs, r, NULL, error);
        restore_maybe_end(rs);
}

static int strv_from_json(const char *text, char ***ret) {
        json_t *a = json_loads(text, 0, NULL);
        _cleanup_strv_free_ char **l = calloc(1, sizeof(char *));
        size_t i;
        json_t *v;
        int r = 0;

        if (!json_is_array(a) || !l)
                r = a ? -EBADMSG : -ENOMEM;
        json_array_foreach(a, i, v)
                if (r >= 0)
                        r = json_is_string(v) ? strv_extend(&l, json_string_value(v)) : -EBADMSG;
        json_decref(a);
        if (r >= 0)
                *ret = TAKE_PTR(l);
        return r;
}

/* One recorded timer: keep its units if they match, else re-create them. */
static void restore_row(Restore *rs, const PGresult *res, int row) {
        CronTimers *c = rs->c;
        _cleanup_strv_free_ char **calendar = NULL, **env = NULL;
        _cleanup_free_ char *error = NULL;
        const char *app = PQgetvalue(res, row, 0);
        CronJob job = {
                .app = app,
                .image = PQgetvalue(res, row, 1),
                .command = PQgetvalue(res, row, 2),
                .runtime = PQgetisnull(res, row, 3) ? NULL : PQgetvalue(res, row, 3),
                .timeout_sec = (unsigned) strtoul(PQgetvalue(res, row, 4), NULL, 10),
                .slice = c->slice,
                .env_file = PQgetisnull(res, row, 7) ? NULL : PQgetvalue(res, row, 7),
                .user = c->user,
                .inaccessible = c->inaccessible,
        };
        CronOp *op;
        int r;

        if (cron_timers_find_op(c, app)) {
                /* A deploy (or an earlier check) is at it: look again when it ends. */
                if (!strv_contains(c->after_op, app))
                        (void) strv_extend(&c->after_op, app);
                return;
        }
        r = strv_from_json(PQgetvalue(res, row, 5), &calendar);
        if (r >= 0)
                r = strv_from_json(PQgetvalue(res, row, 6), &env);
        if (r < 0)
                return restore_fail(rs, r, app, "unreadable record");
        job.oncalendar = calendar;
        job.env = env;
        /* Values are only ever in the app's env file: without it the job
         * would run with empty ones. */
        if (c->env_dir && env[0] && !job.env_file)
                return restore_fail(rs, -ENOENT, app, "its env values are not recorded (an older nornd kept "
                                    "them in the database, from where they were removed): deploy it again");
        if (job.env_file && access(job.env_file, F_OK) < 0)
                return restore_fail(rs, -errno, app, "its env file is missing: deploy it again");
        r = cron_op_new_install(c->bus, &job, SYNC_IDLE, on_restored, rs, &op, &error);
        if (r < 0)
                return restore_fail(rs, r, app, error ?: strerror(-r));
        op->check = true;
        cron_op_link(op, c);
        r = cron_op_inspect(op);
        if (r < 0) {
                cron_op_free(op);
                return restore_fail(rs, r, app, strerror(-r));
        }
        rs->pending++;
}

static void on_timer_rows(Db *db, const PGresult *res, const char *error, void *userdata) {
        Restore *rs = userdata;
        CronTimers *c = rs->c;

        rs->querying = false;
        if (c->dead) {
                restore_free(rs);
                cron_timers_unref(c);
                return;
        }
        if (error)
                restore_fail(rs, -EIO, rs->app ?: "cron apps", error);
        else
                for (int i = 0; i < PQntuples(res); i++)
                        restore_row(rs, res, i);
        restore_maybe_end(rs);
        cron_timers_unref(c);
}

int cron_restore_start(CronTimers *c, const char *app, CronDoneCallback done, void *userdata) {
        Restore *rs;
        int r;

        if (!c->db)
                return -ENOTCONN;
        rs = calloc(1, sizeof(*rs));
        if (!rs)
                return -ENOMEM;
        *rs = (Restore) { .c = c, .next = c->restores, .done = done, .userdata = userdata, .querying = true };
        c->restores = rs;
        if (app && !(rs->app = strdup(app))) {
                restore_free(rs);
                return -ENOMEM;
        }
        r = db_query(c->db, cron_sql_select_timers, 1, (const char *const[]) { app }, on_timer_rows, rs);
        if (r < 0) {
                restore_free(rs);
                return log_debug_errno(r, "Cannot read the cron timers: %m");
        }
        c->n_ref++;
        return 0;
}

int cron_timers_restore(CronTimers *c, CronDoneCallback done, void *userdata) {
        if (!c || c->dead)
                return -EINVAL;
        /* A manager that restarted forgot our subscription: without one it sends
         * no PropertiesChanged, and runs would go unrecorded. */
        (void) sd_bus_call_method_async(c->bus, NULL, SYSTEMD_DEST, SYSTEMD_PATH, SYSTEMD_MANAGER, "Subscribe",
                                        NULL, NULL, NULL);
        return cron_restore_start(c, NULL, done, userdata);
}

void cron_restores_drop(CronTimers *c) {
        for (Restore *rs = c->restores, *next; rs; rs = next) {
                next = rs->next;
                if (!rs->querying)
                        restore_free(rs);
        }
}
