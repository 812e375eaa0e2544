/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cron-internal.h"
#include "log.h"
#include "strv.h"

/* The units of a cron app, as ONE StartTransientUnit call: the timer is the
 * main unit, the service its auxiliary unit (as `systemd-run --on-calendar`
 * does). */

static int append_timer_properties(sd_bus_message *m, const CronJob *job, const char *description) {
        int r;

        r = sd_bus_message_open_container(m, 'a', "(sv)");
        if (r >= 0)
                r = sd_bus_message_append(m, "(sv)", "Description", "s", description);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'r', "sv");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", "TimersCalendar");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'v', "a(ss)");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "(ss)");
        for (char *const *c = job->oncalendar; r >= 0 && *c; c++)
                r = sd_bus_message_append(m, "(ss)", "OnCalendar", *c);
        for (unsigned i = 0; r >= 0 && i < 3; i++)
                r = sd_bus_message_close_container(m);
        /* The default accuracy is one minute: a job could run up to a minute late. */
        if (r >= 0)
                r = sd_bus_message_append(m, "(sv)", "AccuracyUSec", "t", CRON_USEC_PER_SEC);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        return r;
}

/* The job is the app's code: not nornd's user, nothing of nornd's to see. */
static int append_sandbox_properties(sd_bus_message *m, const CronJob *job) {
        _cleanup_strv_free_ char **paths = NULL;
        int r = 0;

        if (job->user) {
                r = sd_bus_message_append(m, "(sv)(sv)(sv)(sv)", "User", "s", job->user, "NoNewPrivileges", "b", 1,
                                          "PrivateTmp", "b", 1, "ProtectProc", "s", "invisible");
                if (r < 0)
                        return r;
        }
        if (!job->inaccessible || !job->inaccessible[0])
                return 0;
        /* "-": a path that does not exist is no error. */
        for (char *const *p = job->inaccessible; *p; p++)
                if (strv_extendf(&paths, "-%s", *p) < 0)
                        return -ENOMEM;
        r = sd_bus_message_open_container(m, 'r', "sv");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", "InaccessiblePaths");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'v', "as");
        if (r >= 0)
                r = sd_bus_message_append_strv(m, paths);
        for (unsigned i = 0; r >= 0 && i < 2; i++)
                r = sd_bus_message_close_container(m);
        return r;
}

static int append_service_properties(sd_bus_message *m, const CronOp *op, const CronJob *job,
                                     const char *description) {
        _cleanup_free_ char *ident = NULL;
        char *fields[3] = {};
        int r;

        if (asprintf(&ident, CRON_UNIT_PREFIX "%s", job->app) < 0 ||
            asprintf(&fields[0], "NORN_APP=%s", job->app) < 0 ||
            asprintf(&fields[1], "NORN_CRON_IMAGE=%s", job->image) < 0 ||
            asprintf(&fields[2], "NORN_CRON_SPEC=%s", op->spec) < 0) {
                r = -ENOMEM;
                goto finish;
        }
        r = sd_bus_message_open_container(m, 'a', "(sv)");
        if (r >= 0)
                r = sd_bus_message_append(m, "(sv)", "Description", "s", description);
        if (r >= 0)
                r = sd_bus_message_append(m, "(sv)", "Type", "s", "exec");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'r', "sv");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", "ExecStart");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'v', "a(sasb)");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "(sasb)");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'r', "sasb");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", op->argv[0]);
        if (r >= 0)
                r = sd_bus_message_append_strv(m, op->argv);
        if (r >= 0)
                r = sd_bus_message_append(m, "b", 0);
        for (unsigned i = 0; r >= 0 && i < 4; i++)
                r = sd_bus_message_close_container(m);
        /* Values in a property are anyone's to read (over the bus, and in the
         * 0644 transient unit file): with a file, only its path is sent. */
        if (r >= 0 && job->env_file)
                r = sd_bus_message_append(m, "(sv)", "EnvironmentFiles", "a(sb)", 1, job->env_file, 0);
        else if (r >= 0) {
                r = sd_bus_message_open_container(m, 'r', "sv");
                if (r >= 0)
                        r = sd_bus_message_append(m, "s", "Environment");
                if (r >= 0)
                        r = sd_bus_message_open_container(m, 'v', "as");
                if (r >= 0)
                        r = sd_bus_message_append_strv(m, (char **) (job->env ?: (char *const[]) { NULL }));
                for (unsigned i = 0; r >= 0 && i < 2; i++)
                        r = sd_bus_message_close_container(m);
        }
        if (r >= 0)
                r = append_sandbox_properties(m, job);
        if (r >= 0 && job->timeout_sec > 0)
                r = sd_bus_message_append(m, "(sv)", "RuntimeMaxUSec", "t", job->timeout_sec * CRON_USEC_PER_SEC);
        if (r >= 0)
                r = sd_bus_message_append(m, "(sv)", "TimeoutStopUSec", "t", CRON_TIMEOUT_STOP_SEC * CRON_USEC_PER_SEC);
        if (r >= 0 && job->slice)
                r = sd_bus_message_append(m, "(sv)", "Slice", "s", job->slice);
        /* A failed run must not keep the unit loaded once the timer is gone. */
        if (r >= 0)
                r = sd_bus_message_append(m, "(sv)", "CollectMode", "s", "inactive-or-failed");
        if (r >= 0)
                r = sd_bus_message_append(m, "(sv)", "SyslogIdentifier", "s", ident);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'r', "sv");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", "LogExtraFields");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'v', "aay");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "ay");
        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(fields); i++)
                r = sd_bus_message_append_array(m, 'y', fields[i], strlen(fields[i]));
        for (unsigned i = 0; r >= 0 && i < 4; i++)
                r = sd_bus_message_close_container(m);
finish:
        for (size_t i = 0; i < ELEMENTSOF(fields); i++)
                free(fields[i]);
        return r;
}

/* Everything is checked and built here, so that bad input fails at once. */
int cron_op_new_install(sd_bus *bus, const CronJob *job, OpSync sync, CronDoneCallback done, void *userdata,
                        CronOp **ret, char **ret_error) {
        _cleanup_(cron_op_freep) CronOp *op = NULL;
        _cleanup_strv_free_ char **argv = NULL;
        _cleanup_free_ char *timer_description = NULL, *service_description = NULL;
        sd_bus_message *m;
        int r;

        r = cron_job_validate(job, ret_error);
        if (r < 0)
                return r;
        r = cron_op_new(bus, job->app, true, done, userdata, &op);
        if (r < 0)
                return r;
        op->sync = sync;
        r = cron_job_argv(job, &argv);
        if (r >= 0)
                r = cron_argv_escape(argv, &op->argv);
        if (r < 0)
                return r;
        cron_job_fingerprint(job, op->argv, op->spec);
        if (asprintf(&timer_description, "Norn cron timer of %s", job->app) < 0 ||
            asprintf(&service_description, "Norn cron job of %s (%s)", job->app, job->image) < 0)
                return -ENOMEM;

        /* StartTransientUnit(name, mode, properties, aux units): the timer, and
         * the service it triggers as the one auxiliary unit. "fail": never
         * replace a job queued for these names by someone else. */
        r = sd_bus_message_new_method_call(bus, &op->create, SYSTEMD_DEST, SYSTEMD_PATH, SYSTEMD_MANAGER,
                                           "StartTransientUnit");
        m = op->create;
        if (r >= 0)
                r = sd_bus_message_append(m, "ss", op->timer, "fail");
        if (r >= 0)
                r = append_timer_properties(m, job, timer_description);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "(sa(sv))");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'r', "sa(sv)");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", op->service);
        if (r >= 0)
                r = append_service_properties(m, op, job, service_description);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r < 0)
                return log_debug_errno(r, "Cannot build the units of %s: %m", job->app);
        *ret = TAKE_PTR(op);
        return 0;
}
