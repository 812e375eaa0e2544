/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deploy-store.h"
#include "events.h"
#include "infraspec.h"
#include "log.h"
#include "manager-bus.h"
#include "manager.h"
#include "pipeline.h"
#include "scheduler.h"
#include "step-driver.h"
#include "strv.h"
#include "utf8.h"

/* journald message ids of the key events, for journalctl MESSAGE_ID=... */
#define MESSAGE_ID_DEPLOY_STARTED   "MESSAGE_ID=3c2b8e0b6a5e4d2c9f1e7a4b5d6c8e01"
#define MESSAGE_ID_DEPLOY_COMPLETED "MESSAGE_ID=3c2b8e0b6a5e4d2c9f1e7a4b5d6c8e02"
#define MESSAGE_ID_DEPLOY_FAILED    "MESSAGE_ID=3c2b8e0b6a5e4d2c9f1e7a4b5d6c8e03"
#define MESSAGE_ID_DEPLOY_ROLLED_BACK "MESSAGE_ID=3c2b8e0b6a5e4d2c9f1e7a4b5d6c8e04"

static void step_enter(Deployment *d, StepId s);
static void step_end(Deployment *d, StepStatus status);
static void deployment_finish(Deployment *d);
static void rollback_completed(Deployment *d);

static void log_deployment(Deployment *d, int level, const char *extra_field, const char *format, ...)
        _printf_(4, 5);
static void log_deployment(Deployment *d, int level, const char *extra_field, const char *format, ...) {
        char buf[DEPLOYMENT_LOG_FIELDS_MAX][96], message[2048];
        const char *fields[DEPLOYMENT_LOG_FIELDS_MAX + 1];
        va_list ap;

        deployment_log_fields(d, buf, fields);
        if (extra_field) {
                size_t n = 0;
                while (fields[n])
                        n++;
                fields[n] = extra_field;
                fields[n + 1] = NULL;
        }
        va_start(ap, format);
        vsnprintf(message, sizeof(message), format, ap);
        va_end(ap);
        log_fields(level, fields, "%s", message);
}

int deployment_fail(Deployment *d, const char *format, ...) {
        va_list ap;
        char *e;

        if (d->error)
                return -EIO;
        va_start(ap, format);
        if (vasprintf(&e, format, ap) < 0)
                e = NULL;
        va_end(ap);
        d->error = e ?: strdup("out of memory");
        return -EIO;
}

static void deployment_line(Deployment *d, const char *line, const char *stream) {
        char field[32];

        snprintf(field, sizeof(field), "NORN_STREAM=%s", stream);
        log_deployment(d, LOG_INFO, field, "%s", line);
        if (d->step >= 0 && d->step < _STEP_MAX)
                output_tail_append_line(&d->steps[d->step].tail, line);
        if (streq(stream, "stdout")) {
                free(d->last_stdout);
                d->last_stdout = strdup(line);
        }
        events_emit(d->manager, "deploy.log", d->app,
                    json_pack("{s:I, s:s?, s:s, s:s}", "deploymentId", (json_int_t) d->id,
                              "step", step_to_string(d->step), "stream", stream, "line", line));
}

void deployment_log(Deployment *d, const char *format, ...) {
        char line[2048];
        va_list ap;

        va_start(ap, format);
        vsnprintf(line, sizeof(line), format, ap);
        va_end(ap);
        deployment_line(d, line, "norn");
}

static void emit_step_event(Deployment *d, StepId s) {
        json_t *payload = deployment_step_to_json(d, s);

        if (payload)
                json_object_set_new(payload, "deploymentId", json_integer((json_int_t) d->id));
        events_emit(d->manager, "deploy.step", d->app, payload);
        manager_bus_deployment_changed(d->manager, d);
}

/* A write of the record is committed (r = 0); refused by the server (-EIO:
 * the deployment fails, saying so); or the hold at this boundary timed out
 * (-ETIMEDOUT: the error is already set). */
static bool store_ok(Deployment *d, int r) {
        if (r >= 0)
                return true;
        if (r == -EIO)
                deployment_fail(d, "PostgreSQL refused to record the deployment (%s)", d->held_at);
        else if (r != -ETIMEDOUT)
                deployment_fail(d, "cannot record the deployment (%s): %s", d->held_at, strerror(-r));
        return false;
}

static int on_hold_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Deployment *d = userdata;
        DeployStoreDone next;

        d->hold_timer = sd_event_source_disable_unref(d->hold_timer);
        if (!deploy_store_held(d) || d->hold_expired)
                return 0;

        /* Give up waiting: the deployment ends with what really happened, and
         * everything queued (this boundary first) is written in order once
         * the database is back. A finished one only waits for its record. */
        d->hold_expired = true;
        if (!d->finishing)
                deployment_fail(d, "PostgreSQL was unavailable for more than %" PRIu64 " s (NORN_DB_HOLD_TIMEOUT) "
                                "%s; the deployment stopped there", d->manager->config.db_hold_timeout_usec / 1000000,
                                d->held_at);
        log_deployment(d, LOG_ERR, NULL, "Deployment %" PRIi64 " of %s: the database is still unavailable %s; "
                       "giving up waiting (the record is written when it is back).", d->id, d->app, d->held_at);
        next = deploy_store_release(d);
        if (next)
                next(d, -ETIMEDOUT);
        return 0;
}

/* deploy-store.c: the write of this boundary waits for the database. */
static void on_store_held(Deployment *d, bool held) {
        Manager *m = d->manager;
        int r;

        if (m->shutting_down)
                return;
        if (!held) {
                if (!d->hold_timer)
                        return;
                d->hold_timer = sd_event_source_disable_unref(d->hold_timer);
                log_deployment(d, LOG_NOTICE, NULL, "Deployment %" PRIi64 " of %s: the database is back, recorded "
                               "%s; going on.", d->id, d->app, d->held_at);
                return;
        }
        if (d->hold_timer || d->hold_expired)
                return;
        r = sd_event_add_time_relative(m->event, &d->hold_timer, CLOCK_MONOTONIC,
                                       m->config.db_hold_timeout_usec, 0, on_hold_timeout, d);
        if (r < 0)
                log_deployment(d, LOG_WARNING, NULL, "Cannot arm the database hold timer: %s", strerror(-r));
        log_deployment(d, LOG_WARNING, NULL, "Deployment %" PRIi64 " of %s held %s: the database is unavailable; "
                       "waiting up to %" PRIu64 " s for it to record this before going on.", d->id, d->app,
                       d->held_at, m->config.db_hold_timeout_usec / 1000000);
        deployment_log(d, "held %s: waiting for the database to record it", d->held_at);
}

/* Queues a write of the record; next() runs once it is committed (at once
 * when nobody waits any more). held_at names the boundary for messages. */
static void store_or_continue(Deployment *d, int (*write)(Deployment *, StepId, DeployStoreDone),
                              StepId s, DeployStoreDone next) {
        int r;

        d->store_held = on_store_held;
        r = write(d, s, d->hold_expired ? NULL : next);
        if (r < 0 || d->hold_expired)
                next(d, r < 0 ? r : 0);
}

/* --- step end --- */

static void on_step_end_stored(Deployment *d, int r) {
        StepId s = d->step;

        (void) store_ok(d, r);
        emit_step_event(d, s);

        if (s == STEP_CLEANUP)
                deployment_finish(d);
        else if (d->steps[s].status == STEP_FAILED || d->error)
                step_enter(d, STEP_CLEANUP);
        else
                step_enter(d, s + 1);
}

static void step_end(Deployment *d, StepStatus status) {
        DeploymentStep *st = &d->steps[d->step];

        st->status = status;
        st->finished_usec = now_realtime_usec();
        if (status == STEP_FAILED)
                log_deployment(d, LOG_WARNING, NULL, "Step %s failed: %s", step_to_string(d->step),
                               strna(d->error));
        else
                log_deployment(d, LOG_INFO, NULL, "Step %s %s (%.1fs).", step_to_string(d->step),
                               step_status_to_string(status),
                               (double) (st->finished_usec - st->started_usec) / 1e6);
        snprintf(d->held_at, sizeof(d->held_at), "after step %s ended (%s)", step_to_string(d->step),
                 step_status_to_string(status));
        store_or_continue(d, deploy_store_step_end, d->step, on_step_end_stored);
}

static void step_driver_result(Deployment *d, int r) {
        if (r > 0)
                return; /* more work started; pipeline_step_continue() follows */

        /* Cleanup is best-effort: its failure is recorded on the step only. */
        if (r < 0 && d->step == STEP_CLEANUP) {
                step_end(d, STEP_FAILED);
                return;
        }
        step_end(d, r == 0 ? STEP_SUCCEEDED : STEP_FAILED);
}

void pipeline_step_continue(Deployment *d, const StepRunResult *result) {
        DeploymentStep *st = &d->steps[d->step];
        int r;

        st->exit_code = result->exit_code;

        if (result->cancelled && d->step == STEP_CLEANUP) {
                /* Cut short by nornd's stop: cleanup never fails a deploy. */
                deployment_log(d, "cleanup interrupted; the next start removes %s", strna(d->workdir));
                step_driver_result(d, -ECANCELED);
                return;
        }
        if (result->cancelled || (d->cancel_requested && d->step != STEP_CLEANUP)) {
                deployment_fail(d, "cancelled");
                step_driver_result(d, -ECANCELED);
                return;
        }
        if (result->timed_out) {
                deployment_fail(d, "step %s timed out after %" PRIu64 "s", step_to_string(d->step),
                                d->manager->config.step_timeout_usec[d->step] / 1000000);
                step_driver_result(d, -ETIMEDOUT);
                return;
        }

        r = step_driver(d->step)(d, result);
        step_driver_result(d, r);
}

/* --- step start --- */

static void on_step_begin_stored(Deployment *d, int r) {
        if (!store_ok(d, r) && d->step != STEP_CLEANUP) {
                /* Nothing may run that the database does not know of: a
                 * step that never ran ends failed (its begin and end are
                 * written in that order once the database is back). */
                if (d->steps[d->step].status == STEP_SKIPPED) {
                        emit_step_event(d, d->step);
                        step_enter(d, STEP_CLEANUP);
                } else
                        step_end(d, STEP_FAILED);
                return;
        }
        emit_step_event(d, d->step);

        if (d->steps[d->step].status == STEP_SKIPPED) {
                if (d->step == STEP_CLEANUP)
                        deployment_finish(d);
                else
                        step_enter(d, d->step + 1);
                return;
        }
        if (d->cancel_requested && d->step != STEP_CLEANUP) {
                /* Cancelled while the step's start was being recorded. */
                deployment_fail(d, "cancelled");
                step_end(d, STEP_FAILED);
                return;
        }
        log_deployment(d, LOG_INFO, NULL, "Step %s started.", step_to_string(d->step));
        snprintf(d->held_at, sizeof(d->held_at), "while step %s ran", step_to_string(d->step));
        d->phase = 0;
        step_driver_result(d, step_driver(d->step)(d, NULL));
}

static void step_enter(Deployment *d, StepId s) {
        DeploymentStep *st = &d->steps[s];
        DeployStatus status = step_deploy_status(s);

        if (d->cancel_requested && s != STEP_CLEANUP) {
                deployment_fail(d, "cancelled");
                s = STEP_CLEANUP;
                st = &d->steps[s];
        }

        d->step = s;
        if (step_is_skipped(d, s))
                st->status = STEP_SKIPPED;
        else {
                st->status = STEP_RUNNING;
                st->started_usec = now_realtime_usec();
                if (status >= 0)
                        d->status = status;
        }
        snprintf(d->held_at, sizeof(d->held_at), st->status == STEP_SKIPPED ? "at step %s (skipped)" :
                 "before step %s started", step_to_string(s));
        store_or_continue(d, deploy_store_step_begin, s, on_step_begin_stored);
}

static void on_step_line(StepRun *run, const char *line, bool is_stderr, void *userdata) {
        _cleanup_free_ char *clean = strdup(line);

        if (!clean)
                return (void) log_oom();
        utf8_sanitize(clean);
        deployment_line(userdata, clean, is_stderr ? "stderr" : "stdout");
}

static void on_step_done(StepRun *run, const StepRunResult *result, void *userdata) {
        Deployment *d = userdata;

        /* The finished run is freed on the next step or with the deployment. */
        d->finished_run = step_run_free(d->finished_run);
        d->finished_run = TAKE_PTR(d->run);
        pipeline_step_continue(d, result);
}

static int run_command(Deployment *d, char *const *argv, char *const *env, const char *cwd,
                       const StepSandbox *sandbox) {
        Manager *m = d->manager;
        DeploymentStep *st = &d->steps[d->step];
        _cleanup_free_ char *unit = NULL;
        int r;

        if (d->cancel_requested && d->step != STEP_CLEANUP)
                return deployment_fail(d, "cancelled");

        /* One scope per command: the first is norn-<app>-<id>-<step>.scope,
         * later ones of the same step get -<n>. */
        if (d->phase == 0)
                r = asprintf(&unit, "norn-%s-%" PRIi64 "-%s.scope", d->app, d->id, step_to_string(d->step));
        else
                r = asprintf(&unit, "norn-%s-%" PRIi64 "-%s-%u.scope", d->app, d->id,
                             step_to_string(d->step), d->phase);
        if (r < 0)
                return -ENOMEM;
        d->phase++;

        StepRunSpec spec = {
                .argv = argv,
                .env = env,
                .cwd = cwd,
                .unit = unit,
                .slice = m->config.slice,
                .memory_max = m->config.step_memory_max,
                .tasks_max = m->config.step_tasks_max,
                .cpu_quota_per_sec_usec = m->config.step_cpu_quota_usec,
                .timeout_usec = m->config.step_timeout_usec[d->step],
                .stdin_fd = -1,
                .sandbox = sandbox,
        };

        r = step_run_start(m->event, manager_systemd_bus(m), &spec, on_step_line,
                           on_step_done, d, &d->run);
        if (r < 0) {
                /* Cleanup is best-effort and must not turn a deploy into a failure. */
                if (d->step == STEP_CLEANUP) {
                        deployment_log(d, "cannot start %s: %s", argv[0], strerror(-r));
                        return r;
                }
                return deployment_fail(d, "failed to start %s: %s", argv[0], strerror(-r));
        }

        free(st->unit);
        st->unit = manager_systemd_bus(m) ? TAKE_PTR(unit) : NULL;
        return 1;
}

int pipeline_run_command(Deployment *d, char *const *argv, char *const *env, const char *cwd) {
        return run_command(d, argv, env, cwd, NULL);
}

int pipeline_run_app_command(Deployment *d, char *const *argv, char *const *env) {
        const NornConfig *c = &d->manager->config;
        StepSandbox sandbox = {
                .uid = c->step_uid,
                .gid = c->step_gid,
                .workdir = d->workdir,
                .hide = c->step_hide,
        };

        /* Without root there is no one else to be (config.c said so at start). */
        return run_command(d, argv, env, d->workdir, c->step_isolated ? &sandbox : NULL);
}


/* --- start and finish --- */

static int store_start(Deployment *d, StepId s, DeployStoreDone done) {
        return deploy_store_start(d, done);
}

static int store_finish(Deployment *d, StepId s, DeployStoreDone done) {
        return deploy_store_finish(d, done);
}

static void on_started_stored(Deployment *d, int r) {
        if (!store_ok(d, r)) {
                deployment_finish(d);
                return;
        }
        manager_bus_deployment_changed(d->manager, d);
        step_enter(d, STEP_CLONE);
}

void pipeline_start(Deployment *d) {
        Manager *m = d->manager;

        assert(d->started && !d->finishing);
        log_deployment(d, LOG_INFO, MESSAGE_ID_DEPLOY_STARTED, "Deployment %" PRIi64 " of %s (%s) started.",
                       d->id, d->app, d->ref);

        if (!d->prebuilt &&
            asprintf(&d->workdir, "%s/work/%s-%" PRIi64, m->config.state_dir, d->app, d->id) < 0) {
                d->workdir = NULL;
                deployment_fail(d, "out of memory");
                deployment_finish(d);
                return;
        }

        d->started_usec = now_realtime_usec();
        if (d->prebuilt) {
                /* Straight from queued to its first step (migrate or deploy). */
                manager_bus_deployment_changed(m, d);
                step_enter(d, STEP_CLONE);
                return;
        }
        d->status = DEPLOY_BUILDING;
        d->step = STEP_CLONE;
        snprintf(d->held_at, sizeof(d->held_at), "before step clone started");
        store_or_continue(d, store_start, STEP_CLONE, on_started_stored);
}

static void on_finish_stored(Deployment *d, int r) {
        (void) store_ok(d, r);

        if (d->status == DEPLOY_DEPLOYED) {
                log_deployment(d, LOG_INFO, MESSAGE_ID_DEPLOY_COMPLETED,
                               "Deployment %" PRIi64 " of %s deployed %s.", d->id, d->app, strna(d->image_tag));
                events_emit(d->manager, "deploy.completed", d->app, deployment_to_json(d));
                if (d->rollback_of > 0)
                        rollback_completed(d);
        } else {
                log_deployment(d, LOG_ERR, MESSAGE_ID_DEPLOY_FAILED, "Deployment %" PRIi64 " of %s failed: %s",
                               d->id, d->app, strna(d->error));
                events_emit(d->manager, "deploy.failed", d->app, deployment_to_json(d));
        }
        manager_bus_deployment_changed(d->manager, d);
        scheduler_deployment_finished(d->manager, d);
}

/* The deployment a rollback replaced becomes rolled_back. */
static void rollback_completed(Deployment *d) {
        Manager *m = d->manager;
        Deployment *old = manager_find_deployment(m, d->rollback_of);
        int r;

        if (old && old->status == DEPLOY_DEPLOYED) {
                old->status = DEPLOY_ROLLED_BACK;
                manager_bus_deployment_changed(m, old);
        }
        r = deploy_store_mark_rolled_back(d);
        if (r < 0)
                log_deployment(d, LOG_WARNING, NULL, "Cannot record deployment %" PRIi64 " as rolled back: %s",
                               d->rollback_of, strerror(-r));
        log_deployment(d, LOG_NOTICE, MESSAGE_ID_DEPLOY_ROLLED_BACK, "Deployment %" PRIi64 " of %s rolled back by %"
                       PRIi64 " to %s.", d->rollback_of, d->app, d->id, strna(d->image_tag));
        events_emit(m, "deploy.rolled_back", d->app,
                    json_pack("{s:I, s:I, s:s?, s:s?}", "deploymentId", (json_int_t) d->rollback_of,
                              "rolledBackBy", (json_int_t) d->id, "imageTag", d->image_tag,
                              "commitSha", d->commit_sha));
}

/* The one way a deployment ends; a second call (whatever the interleaving
 * that led to it) changes nothing. */
static void deployment_finish(Deployment *d) {
        if (d->finishing) {
                log_deployment(d, LOG_WARNING, NULL, "Deployment %" PRIi64 " of %s is already finishing.",
                               d->id, d->app);
                return;
        }
        d->finishing = true;
        d->status = d->error ? DEPLOY_FAILED : DEPLOY_DEPLOYED;
        d->finished_usec = now_realtime_usec();

        if (d->id == 0) {
                on_finish_stored(d, 0);
                return;
        }
        snprintf(d->held_at, sizeof(d->held_at), "at its end (%s)", deploy_status_to_string(d->status));
        store_or_continue(d, store_finish, _STEP_INVALID, on_finish_stored);
}

int pipeline_cancel(Deployment *d) {
        if (d->finishing || deploy_status_is_final(d->status))
                return -EALREADY;

        /* "Never started" is what the scheduler did, not the status: a
         * rollback stays queued while its skipped steps are recorded. */
        if (!d->started) {
                d->cancel_requested = true;
                if (d->id == 0)
                        return 0; /* the row is being made: on_inserted() comes back here */
                log_deployment(d, LOG_NOTICE, NULL, "Cancelling deployment %" PRIi64 " before it started.", d->id);
                deployment_fail(d, "cancelled");
                deployment_finish(d);
                return 0;
        }
        if (d->cancel_requested)
                return 0;

        d->cancel_requested = true;
        log_deployment(d, LOG_NOTICE, NULL, "Cancelling deployment %" PRIi64 ".", d->id);

        if (d->step == STEP_CLEANUP)
                return 0; /* already on its way out */
        if (d->run)
                return step_run_cancel(d->run);
        if (d->step == STEP_DEPLOY && (d->kube || d->defer)) {
                /* A Kubernetes request or the rollout poll timer. */
                step_deploy_cancel(d);
                return 0;
        }
        /* Between steps (a database write in flight): step_enter() sees the flag. */
        return 0;
}

int pipeline_stop(Deployment *d, const char *reason) {
        if (deploy_status_is_final(d->status))
                return -EALREADY;
        if (d->started && d->step == STEP_CLEANUP) {
                /* Its deploy step is done: it ends as it would have, without
                 * waiting for the work dir's removal (start-up recovery does it). */
                d->cancel_requested = true;
                return d->run ? step_run_cancel(d->run) : 0;
        }
        /* The first error wins: "cancelled" comes after ours. */
        deployment_fail(d, "%s", reason);
        return pipeline_cancel(d);
}
