/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cron-timer.h"
#include "deploy-store.h"
#include "deployment.h"
#include "infraspec.h"
#include "kube.h"
#include "manager-bus.h"
#include "step-driver.h"
#include "step-run.h"

int deployment_new(Manager *m, const char *app, const char *ref, const char *requested_by,
                   Deployment **ret) {
        _cleanup_(deployment_freep) Deployment *d = NULL;

        d = calloc(1, sizeof(*d));
        if (!d)
                return -ENOMEM;
        d->manager = m;
        d->status = DEPLOY_QUEUED;
        d->step = _STEP_INVALID;
        d->app = strdup(app);
        d->ref = strdup(ref);
        d->requested_by = strdup(requested_by);
        if (!d->app || !d->ref || !d->requested_by)
                return -ENOMEM;
        for (size_t i = 0; i < _STEP_MAX; i++)
                d->steps[i].exit_code = -1;

        *ret = TAKE_PTR(d);
        return 0;
}

Deployment *deployment_free(Deployment *d) {
        if (!d)
                return NULL;

        deploy_store_drop(d);
        sd_event_source_unref(d->hold_timer);
        step_clone_abort(d);
        step_run_free(d->run);
        step_run_free(d->finished_run);
        kube_request_cancel(d->kube);
        cron_op_cancel(d->cron_op);
        sd_event_source_unref(d->defer);
        sd_bus_message_unref(d->pending_reply);
        infraspec_free(d->spec);
        for (size_t i = 0; i < _STEP_MAX; i++)
                free(d->steps[i].unit);
        free(d->app);
        free(d->ref);
        free(d->requested_by);
        free(d->commit_sha);
        free(d->image_tag);
        free(d->source);
        free(d->restore_file);
        free(d->error);
        free(d->workdir);
        free(d->workdir_parent);
        free(d->snapshot_file);
        free(d->kube_client_error);
        free(d->last_stdout);
        free(d->askpass_dir);
        return mfree(d);
}

void deployment_log_fields(const Deployment *d, char buf[][96], const char *fields[]) {
        size_t n = 0;

        snprintf(buf[n], 96, "NORN_APP=%s", d->app);
        fields[n] = buf[n];
        n++;
        snprintf(buf[n], 96, "NORN_DEPLOY_ID=%" PRIi64, d->id);
        fields[n] = buf[n];
        n++;
        if (step_to_string(d->step)) {
                snprintf(buf[n], 96, "NORN_STEP=%s", step_to_string(d->step));
                fields[n] = buf[n];
                n++;
        }
        fields[n] = NULL;
}

static json_t *usec_to_json(uint64_t usec) {
        char buf[64];
        time_t t;
        struct tm tm;

        if (usec == 0)
                return json_null();
        t = (time_t) (usec / 1000000);
        if (!gmtime_r(&t, &tm))
                return json_null();
        snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 (unsigned) (usec % 1000000 / 1000));
        return json_string(buf);
}

static json_t *string_or_null(const char *s) {
        return s ? json_string(s) : json_null();
}

json_t *deployment_step_to_json(const Deployment *d, StepId s) {
        const DeploymentStep *st = &d->steps[s];
        json_t *j;

        j = json_pack("{s:s, s:s, s:o, s:o, s:o, s:o}",
                      "step", step_to_string(s),
                      "status", step_status_to_string(st->status),
                      "startedAt", usec_to_json(st->started_usec),
                      "finishedAt", usec_to_json(st->finished_usec),
                      "exitCode", st->exit_code >= 0 ? json_integer(st->exit_code) : json_null(),
                      "unit", string_or_null(st->unit));
        if (j && st->finished_usec > 0 && st->started_usec > 0)
                json_object_set_new(j, "durationMs",
                                    json_integer((json_int_t) ((st->finished_usec - st->started_usec) / 1000)));
        return j;
}

json_t *deployment_to_json(const Deployment *d) {
        json_t *steps = json_array(), *j;

        for (StepId s = 0; steps && s < _STEP_MAX; s++)
                json_array_append_new(steps, deployment_step_to_json(d, s));

        j = json_pack("{s:I, s:s, s:s, s:o, s:o, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:s, s:o, s:o}",
                      "id", (json_int_t) d->id,
                      "app", d->app,
                      "ref", d->ref,
                      "commitSha", string_or_null(d->commit_sha),
                      "imageTag", string_or_null(d->image_tag),
                      "status", deploy_status_to_string(d->status),
                      "step", string_or_null(step_to_string(d->step)),
                      "error", string_or_null(d->error),
                      "queuedAt", usec_to_json(d->queued_usec),
                      "startedAt", usec_to_json(d->started_usec),
                      "finishedAt", usec_to_json(d->finished_usec),
                      "source", string_or_null(d->source),
                      "requestedBy", d->requested_by,
                      "rollbackOf", d->rollback_of > 0 ? json_integer((json_int_t) d->rollback_of) : json_null(),
                      "steps", steps ?: json_null());
        return j;
}

char *deployment_bus_path(int64_t id) {
        char *p;
        if (asprintf(&p, NORN_BUS_PATH "/deployment/%" PRIi64, id) < 0)
                return NULL;
        return p;
}
