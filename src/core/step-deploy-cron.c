/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cron-timer.h"
#include "cron.h"
#include "infraspec.h"
#include "log.h"
#include "manager.h"
#include "pipeline.h"
#include "step-deploy-cron.h"
#include "step-driver.h"
#include "strv.h"

/* The deploy step of a cron app: instead of Kubernetes, the app's systemd
 * timer (norn-cron-<app>.timer and its .service) is pointed at the new image
 * through the manager's CronTimers, which replaces the units (stopping a job
 * of the old image that still runs) and records the timer in PostgreSQL, so
 * that it is re-created after a reboot.
 *
 * What the step waits on is d->cron_op; d->defer is the step's deadline
 * (NORN_TIMEOUT_DEPLOY). While d->defer is set, pipeline_cancel() calls
 * step_deploy_cancel(), which comes here: the operation is abandoned and the
 * recorded timer (the last good deploy's) put back. */

static void cron_step_end(Deployment *d, const StepRunResult *result) {
        d->defer = sd_event_source_disable_unref(d->defer);
        pipeline_step_continue(d, result);
}

static void on_cron_deployed(int r, const char *error, void *userdata) {
        Deployment *d = userdata;
        StepRunResult result = { .exit_code = r < 0 ? 1 : 0 };

        d->cron_op = NULL;      /* it frees itself once we return */
        /* The database went away under manager_free(): nothing may run any more. */
        if (d->manager->shutting_down)
                return;
        if (r < 0)
                deployment_fail(d, "cannot set up the timer of cron app %s: %s", d->app, strna(error));
        else if (r == 0)
                deployment_log(d, "timer " CRON_UNIT_PREFIX "%s.timer already runs image %s on this schedule",
                               d->app, d->image_tag);
        else
                deployment_log(d, "timer " CRON_UNIT_PREFIX "%s.timer is active; it runs image %s", d->app,
                               d->image_tag);
        cron_step_end(d, &result);
}

static int on_cron_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        Deployment *d = userdata;
        StepRunResult result = { .exit_code = -1, .timed_out = true };

        deployment_log(d, "the timer was not set up in time; the app keeps its recorded timer");
        d->cron_op = cron_op_cancel(d->cron_op);
        cron_step_end(d, &result);
        return 0;
}

/* The infraspec's env map as NAME=value entries, in file order. */
static int job_env(const Infraspec *s, char ***ret) {
        _cleanup_strv_free_ char **env = calloc(1, sizeof(char *));

        if (!env)
                return -ENOMEM;
        for (size_t i = 0; i < s->n_env; i++)
                if (strv_extendf(&env, "%s=%s", s->env[i].name, s->env[i].value ?: "") < 0)
                        return -ENOMEM;
        *ret = TAKE_PTR(env);
        return 0;
}

static void log_calendar(Deployment *d, char *const *calendar) {
        char line[1024] = "";

        for (char *const *c = calendar; c && *c; c++)
                snprintf(line + strlen(line), sizeof(line) - strlen(line), "%sOnCalendar=%s",
                         c == calendar ? "" : ", ", *c);
        deployment_log(d, "schedule \"%s\" becomes %s", d->spec->schedule, line);
}

int step_deploy_cron_start(Deployment *d) {
        Manager *m = d->manager;
        const Infraspec *s = d->spec;
        _cleanup_(sd_event_source_unrefp) sd_event_source *deadline = NULL;
        _cleanup_strv_free_ char **calendar = NULL, **env = NULL;
        _cleanup_free_ char *error = NULL;
        CronJob job;
        int r;

        if (!d->image_tag) {
                r = deployment_image_name(d, &d->image_tag);
                if (r < 0)
                        return deployment_fail(d, "cannot name the image: %s", strerror(-r));
        }
        if (!s->schedule || !s->command)
                return deployment_fail(d, "cron apps need a schedule and a command");

        /* The schedule is checked before anything is touched: a bad one leaves no units. */
        r = cron_to_oncalendar(s->schedule, &calendar, &error);
        if (r < 0)
                return deployment_fail(d, "schedule cannot be run by a systemd timer: %s",
                                       error ?: strerror(-r));
        log_calendar(d, calendar);
        r = job_env(s, &env);
        if (r < 0)
                return deployment_fail(d, "out of memory");
        job = (CronJob) {
                .app = d->app,
                .image = d->image_tag,
                .oncalendar = calendar,
                .command = s->command,
                .env = env,
                .runtime = s->runtime,
                .timeout_sec = s->timeout,
        };
        error = mfree(error);
        r = cron_job_validate(&job, &error);
        if (r < 0)
                return deployment_fail(d, "invalid cron job: %s", error ?: strerror(-r));

        if (!m->cron)
                return deployment_fail(d, "cron timers are not available in this nornd");
        if (!m->systemd_up)
                return deployment_fail(d, "the systemd %s manager is unreachable: %s",
                                       m->config.user_mode ? "user" : "system", strna(m->systemd_error));

        r = sd_event_add_time_relative(m->event, &deadline, CLOCK_MONOTONIC,
                                       m->config.step_timeout_usec[STEP_DEPLOY], 0, on_cron_deadline, d);
        if (r < 0)
                return deployment_fail(d, "cannot set up the step's deadline: %s", strerror(-r));
        (void) sd_event_source_set_description(deadline, "deploy-cron-deadline");

        deployment_log(d, "setting up timer " CRON_UNIT_PREFIX "%s.timer: image %s, runtime %s, "
                       "at most %u s per run", d->app, d->image_tag,
                       s->runtime && *s->runtime ? s->runtime : cron_runtime(), s->timeout);
        r = cron_timers_deploy(m->cron, &job, s->schedule, d->id, on_cron_deployed, d, &d->cron_op);
        if (r < 0)
                return deployment_fail(d, "cannot set up the timer: %s",
                                       r == -ENOTCONN ? "the database is not connected" :
                                       r == -EBUSY ? "another deploy of this app is changing it" : strerror(-r));
        sd_event_source_disable_unref(d->defer);
        d->defer = TAKE_PTR(deadline);
        return 1;
}

void step_deploy_cron_cancel(Deployment *d) {
        StepRunResult result = { .exit_code = -1, .cancelled = true };

        if (d->cron_op)
                deployment_log(d, "cancelled: the app keeps its recorded timer");
        d->cron_op = cron_op_cancel(d->cron_op);
        cron_step_end(d, &result);
}
