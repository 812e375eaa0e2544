/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdint.h>

#include "deployment.h"

/* Who runs when: at most one running deployment per app, the others of that
 * app wait in order (at most NORN_QUEUE_MAX, else -EBUSY), and at most
 * NORN_MAX_PARALLEL apps deploy at once. */

/* Validates the request and queues it. done() runs once the row exists
 * (r = 0, d->id set) or the insert failed (r < 0; d is freed afterwards).
 * On an immediate error, ret_error says why (caller frees). */
int scheduler_submit(Manager *m, const char *app, const char *ref, const char *requested_by,
                     void (*done)(Deployment *d, int r, void *userdata), void *userdata,
                     char **ret_error);

/* Starts what may start now. */
void scheduler_kick(Manager *m);

/* Called by the pipeline when a deployment reached its final status. */
void scheduler_deployment_finished(Manager *m, Deployment *d);

/* Active (queued or running) or recently finished deployments. */
Deployment *manager_find_deployment(Manager *m, int64_t id);
