/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Reading a Deployment's rollout the way `kubectl rollout status` does; the
 * deploy step (step-deploy.c) polls and decides with these. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kube.h"

typedef enum RolloutState {
        ROLLOUT_WAITING,        /* not observed yet, or pods still being replaced */
        ROLLOUT_COMPLETE,       /* every replica updated and available, old ones gone */
        ROLLOUT_FAILED,         /* Progressing: ProgressDeadlineExceeded */
} RolloutState;

typedef struct RolloutProgress {
        int64_t generation;             /* waited for: max(ours, metadata.generation) */
        int64_t observed_generation;
        bool observed;                  /* observed_generation >= generation */
        int64_t replicas;               /* spec.replicas: wanted */
        int64_t total;                  /* status.replicas: old and new pods */
        int64_t updated, ready, available;
} RolloutProgress;

/* generation: the one our PATCH produced. A newer metadata.generation
 * (someone else's change) is waited for as well, as kubectl does. */
RolloutState rollout_evaluate(const KubeDeployment *k, int64_t generation, RolloutProgress *ret);

bool rollout_progress_equal(const RolloutProgress *a, const RolloutProgress *b);

/* "1 of 3 updated, 0 available", "waiting for generation 4 to be observed (at 3)", ... */
void rollout_progress_format(const RolloutProgress *p, char *buf, size_t size);

/* The Progressing condition's reason and message, one bounded line:
 * "ProgressDeadlineExceeded: ReplicaSet \"x-1\" has timed out progressing." */
void rollout_condition_format(const KubeDeployment *k, char *buf, size_t size);

/* The container of that name, NULL when there is none. */
const KubeContainer *rollout_find_container(const KubeDeployment *k, const char *name);

/* How long the deploy step waits for a rollout, and again for the rollback of
 * a failed one: NORN_ROLLOUT_TIMEOUT, whole seconds 1..604800, default 600.
 * -EINVAL when it is set to anything else. */
#define ROLLOUT_TIMEOUT_DEFAULT_SEC 600U
#define ROLLOUT_TIMEOUT_MAX_SEC (7U * 24U * 3600U)
int rollout_timeout_usec(uint64_t *ret);
