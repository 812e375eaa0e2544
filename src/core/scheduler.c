/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deploy-store.h"
#include "events.h"
#include "infraspec.h"
#include "log.h"
#include "manager-bus.h"
#include "manager.h"
#include "manager-stop.h"
#include "pipeline.h"
#include "recovery.h"
#include "scheduler.h"
#include "step-driver.h"

#define RECENT_MAX 64U
/* How long a deploy asked for during start-up recovery waits for it to end:
 * within the 25 s a D-Bus client waits for an answer by default. */
#define RECOVERY_WAIT_USEC (20ULL * 1000000ULL)

typedef struct SubmitRequest {
        SchedulerDone done;
        void *userdata;
        sd_event_source *recovery_wait; /* its row waits for start-up recovery (not sent yet) */
} SubmitRequest;

static SubmitRequest *submit_request_free(SubmitRequest *req) {
        if (!req)
                return NULL;
        sd_event_source_disable_unref(req->recovery_wait);
        return mfree(req);
}

static void list_append(Deployment **head, Deployment *d) {
        Deployment **p = head;
        while (*p)
                p = &(*p)->next;
        d->next = NULL;
        *p = d;
}

static void list_remove(Deployment **head, Deployment *d) {
        for (Deployment **p = head; *p; p = &(*p)->next)
                if (*p == d) {
                        *p = d->next;
                        d->next = NULL;
                        return;
                }
}

Deployment *manager_find_deployment(Manager *m, int64_t id) {
        for (Deployment *d = m->deployments; d; d = d->next)
                if (d->id == id)
                        return d;
        for (Deployment *d = m->recent; d; d = d->next)
                if (d->id == id)
                        return d;
        return NULL;
}

static char *first_error(const InfraspecDiagnostics *diags) {
        for (size_t i = 0; i < diags->n; i++)
                if (diags->items[i].error)
                        return infraspec_diagnostic_format(diags, i);
        return NULL;
}

static int error_printf(char **ret, const char *format, ...) _printf_(2, 3);
static int error_printf(char **ret, const char *format, ...) {
        va_list ap;

        va_start(ap, format);
        if (vasprintf(ret, format, ap) < 0)
                *ret = NULL;
        va_end(ap);
        return -EINVAL;
}

static void on_inserted(Deployment *d, int r) {
        Manager *m = d->manager;
        SubmitRequest *req = d->submit;

        d->submit = NULL;
        if (r < 0) {
                list_remove(&m->deployments, d);
                req->done(d, r, "could not record the deployment: the database is unavailable", req->userdata);
                submit_request_free(req);
                deployment_free(d);
                return;
        }

        log_info("Deployment %" PRIi64 " of %s (%s) queued by %s.", d->id, d->app, d->ref, d->requested_by);
        manager_bus_deployment_added(m, d);
        events_emit(m, "deploy.queued", d->app, deployment_to_json(d));
        req->done(d, 0, NULL, req->userdata);
        submit_request_free(req);

        if (d->cancel_requested)
                (void) pipeline_cancel(d);
        scheduler_kick(m);
}

int scheduler_prepare(Manager *m, const char *app, const char *ref, const char *requested_by,
                      Deployment **ret, char **ret_error) {
        _cleanup_(deployment_freep) Deployment *d = NULL;
        _cleanup_free_ char *path = NULL;
        InfraspecDiagnostics diags = {};
        int r;

        *ret_error = NULL;
        if (!app_id_is_valid(app))
                return error_printf(ret_error, "invalid app name: must match ^[a-z0-9][a-z0-9-]*$, at most %u "
                                               "characters", APP_ID_MAX);
        if (!ref || !*ref)
                ref = "HEAD";
        if (!deploy_ref_is_valid(ref))
                return error_printf(ret_error, "invalid ref: expected HEAD, a commit SHA or a branch name");
        /* While start-up recovery runs, a deploy is accepted and waits for it
         * (scheduler_enqueue()); without the database nothing can be recorded. */
        if (!m->db || !db_is_up(m->db)) {
                *ret_error = strdup("the database is unavailable; try again when nornd reports healthy");
                return -ENOTCONN;
        }

        if (asprintf(&path, "%s/%s/" INFRASPEC_FILE_NAME, m->config.apps_dir, app) < 0)
                return -ENOMEM;
        r = deployment_new(m, app, ref, requested_by, &d);
        if (r < 0)
                return r;
        r = infraspec_load(path, app, &d->spec, &diags);
        if (r < 0) {
                *ret_error = r == -ENOENT ? NULL : first_error(&diags);
                infraspec_diagnostics_done(&diags);
                if (r == -ENOENT) {
                        error_printf(ret_error, "no such app: %s", app);
                        return -ENOENT;
                }
                if (!*ret_error)
                        error_printf(ret_error, "cannot read the infraspec of %s: %s", app, strerror(-r));
                return -EINVAL;
        }
        infraspec_diagnostics_done(&diags);
        if (!d->spec->deploy)
                return error_printf(ret_error, "app %s is not deployable (deploy: false)", app);

        *ret = TAKE_PTR(d);
        return 0;
}

/* The row of d could not be made: its client is told, d goes. */
static void submit_fail(Deployment *d, int r, const char *error) {
        SubmitRequest *req = d->submit;

        d->submit = NULL;
        list_remove(&d->manager->deployments, d);
        req->done(d, r, error, req->userdata);
        submit_request_free(req);
        deployment_free(d);
}

static int on_recovery_wait_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Deployment *d = userdata;
        Manager *m = d->manager;

        log_warning("Deploy of %s (%s) asked for by %s not queued: start-up recovery did not end within %llu s.",
                    d->app, d->ref, d->requested_by, RECOVERY_WAIT_USEC / 1000000ULL);
        submit_fail(d, -ENOTCONN, manager_db_available(m)
                    ? "nornd is still recovering the deployments its previous run left unfinished; nothing "
                      "was queued, try again"
                    : "the database is unavailable, so nornd cannot finish recovering the deployments its "
                      "previous run left unfinished; nothing was queued, try again when nornd reports healthy");
        return 0;
}

void scheduler_recovered(Manager *m) {
        Deployment *next;
        int r;

        /* Rows of deploys asked for during recovery are made now, in the order
         * asked: recovery, which fails every unfinished row, cannot take them. */
        for (Deployment *d = m->deployments; d; d = next) {
                SubmitRequest *req = d->submit;

                next = d->next;
                if (!req || !req->recovery_wait)
                        continue;
                req->recovery_wait = sd_event_source_disable_unref(req->recovery_wait);
                r = deploy_store_insert(d, on_inserted);
                if (r < 0)
                        submit_fail(d, r, "the database is unavailable");
        }
}

void scheduler_abandon_waiting(Manager *m) {
        Deployment *next;

        for (Deployment *d = m->deployments; d; d = next) {
                SubmitRequest *req = d->submit;

                next = d->next;
                if (req && req->recovery_wait)
                        submit_fail(d, -ENOTCONN, "nornd is stopping; nothing was queued");
        }
}

int scheduler_enqueue(Manager *m, Deployment *d, SchedulerDone done, void *userdata, char **ret_error) {
        SubmitRequest *req;
        unsigned waiting = 0;
        bool running = false;
        int r;

        for (Deployment *i = m->deployments; i; i = i->next)
                if (streq(i->app, d->app)) {
                        if (i->started)
                                running = true;
                        else
                                waiting++;
                }
        /* With nothing of the app running, the first in line is about to
         * start: it is not waiting behind anything. */
        if (!running && waiting > 0)
                waiting--;
        if (waiting >= m->config.queue_max) {
                error_printf(ret_error, "app %s is busy: %u deploys are already waiting", d->app, waiting);
                return -EBUSY;
        }

        req = calloc(1, sizeof(*req));
        if (!req)
                return -ENOMEM;
        *req = (SubmitRequest) { done, userdata };
        if (!m->recovered) {
                /* Start-up recovery fails every unfinished row it finds: this
                 * one is made once it has ended, and its client answered then. */
                r = sd_event_add_time_relative(m->event, &req->recovery_wait, CLOCK_MONOTONIC,
                                               RECOVERY_WAIT_USEC, 0, on_recovery_wait_timeout, d);
                if (r < 0) {
                        free(req);
                        return r;
                }
                d->submit = req;
                list_append(&m->deployments, d);
                log_info("Deploy of %s (%s) asked for by %s waits for start-up recovery to end.", d->app, d->ref,
                         d->requested_by);
                return 0;
        }
        d->submit = req;
        r = deploy_store_insert(d, on_inserted);
        if (r < 0) {
                d->submit = NULL;
                free(req);
                *ret_error = strdup("the database is unavailable");
                return r;
        }
        list_append(&m->deployments, d);
        return 0;
}

int scheduler_submit(Manager *m, const char *app, const char *ref, const char *requested_by,
                     SchedulerDone done, void *userdata, char **ret_error) {
        _cleanup_(deployment_freep) Deployment *d = NULL;
        int r;

        r = scheduler_prepare(m, app, ref, requested_by, &d, ret_error);
        if (r < 0)
                return r;
        r = scheduler_enqueue(m, d, done, userdata, ret_error);
        if (r < 0)
                return r;
        TAKE_PTR(d);
        return 0;
}

bool scheduler_app_busy(Manager *m, const char *app) {
        for (Deployment *d = m->deployments; d; d = d->next)
                if (streq(d->app, app))
                        return true;
        return recovery_app_reconciling(m, app);
}

static Deployment *next_startable(Manager *m) {
        unsigned running = 0;

        for (Deployment *d = m->deployments; d; d = d->next)
                if (d->started)
                        running++;
        if (running >= m->config.max_parallel)
                return NULL;

        for (Deployment *d = m->deployments; d; d = d->next) {
                bool app_busy = false;

                if (d->started || d->id == 0 || d->finishing)
                        continue;
                for (Deployment *o = m->deployments; o && !app_busy; o = o->next)
                        app_busy = o->started && streq(o->app, d->app);
                /* One that ended while the database was away is not
                 * recorded yet: the next of its app waits for that. */
                for (Deployment *o = m->recent; o && !app_busy; o = o->next)
                        app_busy = deploy_store_pending(o) && streq(o->app, d->app);
                /* Its rollout is being checked again after a restart. */
                app_busy = app_busy || recovery_app_reconciling(m, d->app);
                if (!app_busy)
                        return d;
        }
        return NULL;
}

void scheduler_kick(Manager *m) {
        Deployment *d;

        if (m->stopping) {
                manager_stop_continue(m);
                return;
        }
        if (!m->recovered || m->shutting_down)
                return;
        /* Each start may finish (and unlink) a deployment at once, so look
         * again from the head every time. */
        while ((d = next_startable(m))) {
                d->started = true;
                pipeline_start(d);
        }
}

void scheduler_deployment_finished(Manager *m, Deployment *d) {
        unsigned n = 0;

        if (d->listed_recent)
                return;
        d->listed_recent = true;
        list_remove(&m->deployments, d);
        d->next = m->recent;
        m->recent = d;
        /* Keep the newest RECENT_MAX for D-Bus objects and late followers,
         * and any whose record is still being written. */
        for (Deployment **p = &m->recent; *p; ) {
                Deployment *i = *p;

                if (++n <= RECENT_MAX || deploy_store_pending(i)) {
                        p = &i->next;
                        continue;
                }
                *p = i->next;
                manager_bus_deployment_removed(m, i);
                deployment_free(i);
        }
        scheduler_kick(m);
}
