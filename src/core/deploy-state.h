/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>

/* Names shared by PostgreSQL, D-Bus, HTTP and events: the strings are the
 * wire format. Which status edges are legal is decided in one place, the
 * status_transitions table and its trigger (sql/), not here. */

typedef enum DeployStatus {
        DEPLOY_QUEUED,
        DEPLOY_BUILDING,
        DEPLOY_TESTING,
        DEPLOY_SNAPSHOTTING,
        DEPLOY_MIGRATING,
        DEPLOY_DEPLOYING,
        DEPLOY_DEPLOYED,
        DEPLOY_FAILED,
        DEPLOY_ROLLED_BACK,
        _DEPLOY_STATUS_MAX,
        _DEPLOY_STATUS_INVALID = -1,
} DeployStatus;

typedef enum StepId {
        STEP_CLONE,
        STEP_BUILD,
        STEP_TEST,
        STEP_SNAPSHOT,
        STEP_MIGRATE,
        STEP_DEPLOY,
        STEP_CLEANUP,
        _STEP_MAX,
        _STEP_INVALID = -1,
} StepId;

typedef enum StepStatus {
        STEP_PENDING,
        STEP_RUNNING,
        STEP_SUCCEEDED,
        STEP_FAILED,
        STEP_SKIPPED,
        _STEP_STATUS_MAX,
        _STEP_STATUS_INVALID = -1,
} StepStatus;

const char *deploy_status_to_string(DeployStatus s);
DeployStatus deploy_status_from_string(const char *s);
bool deploy_status_is_final(DeployStatus s);

const char *step_to_string(StepId s);
StepId step_from_string(const char *s);
const char *step_status_to_string(StepStatus s);
StepStatus step_status_from_string(const char *s);

/* The deployment status while a step runs (clone and build are "building"). */
DeployStatus step_deploy_status(StepId s);
