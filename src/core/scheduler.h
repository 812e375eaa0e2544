/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "deployment.h"

/* Who runs when: at most one running deployment per app, the others of that
 * app wait in order (at most NORN_QUEUE_MAX, else -EBUSY), and at most
 * NORN_MAX_PARALLEL apps deploy at once. */

/* Called once the row exists (r = 0, d->id set) or could not be made
 * (r < 0, error says why; d is NULL or freed afterwards). */
typedef void (*SchedulerDone)(Deployment *d, int r, const char *error, void *userdata);

/* Validates the request and queues it; done() follows. On an immediate
 * error, ret_error says why (caller frees). Asked for while start-up
 * recovery runs, the row is made once it has ended (done() then), or the
 * request fails with -ENOTCONN when it has not ended within 20 s. */
int scheduler_submit(Manager *m, const char *app, const char *ref, const char *requested_by,
                     SchedulerDone done, void *userdata, char **ret_error);

/* The two halves of scheduler_submit(): validate and read the infraspec,
 * then queue (takes d on success). */
int scheduler_prepare(Manager *m, const char *app, const char *ref, const char *requested_by,
                      Deployment **ret, char **ret_error);
int scheduler_enqueue(Manager *m, Deployment *d, SchedulerDone done, void *userdata, char **ret_error);

/* Start-up recovery has ended: deploys asked for meanwhile get their rows. */
void scheduler_recovered(Manager *m);
/* nornd stops: deploys still waiting for recovery are answered so. */
void scheduler_abandon_waiting(Manager *m);

/* A deployment of app is queued or running. */
bool scheduler_app_busy(Manager *m, const char *app);

/* Starts what may start now. */
void scheduler_kick(Manager *m);

/* Called by the pipeline when a deployment reached its final status. */
void scheduler_deployment_finished(Manager *m, Deployment *d);

/* Active (queued or running) or recently finished deployments. */
Deployment *manager_find_deployment(Manager *m, int64_t id);
