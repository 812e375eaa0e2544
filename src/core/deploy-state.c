/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>

#include "deploy-state.h"
#include "macro.h"

static const char *const deploy_status_names[_DEPLOY_STATUS_MAX] = {
        [DEPLOY_QUEUED] = "queued",
        [DEPLOY_BUILDING] = "building",
        [DEPLOY_TESTING] = "testing",
        [DEPLOY_SNAPSHOTTING] = "snapshotting",
        [DEPLOY_MIGRATING] = "migrating",
        [DEPLOY_DEPLOYING] = "deploying",
        [DEPLOY_DEPLOYED] = "deployed",
        [DEPLOY_FAILED] = "failed",
        [DEPLOY_ROLLED_BACK] = "rolled_back",
};

static const char *const step_names[_STEP_MAX] = {
        [STEP_CLONE] = "clone",
        [STEP_BUILD] = "build",
        [STEP_TEST] = "test",
        [STEP_SNAPSHOT] = "snapshot",
        [STEP_MIGRATE] = "migrate",
        [STEP_DEPLOY] = "deploy",
        [STEP_CLEANUP] = "cleanup",
};

static const char *const step_status_names[_STEP_STATUS_MAX] = {
        [STEP_PENDING] = "pending",
        [STEP_RUNNING] = "running",
        [STEP_SUCCEEDED] = "succeeded",
        [STEP_FAILED] = "failed",
        [STEP_SKIPPED] = "skipped",
};

static int lookup(const char *const *table, int n, const char *s) {
        if (!s)
                return -1;
        for (int i = 0; i < n; i++)
                if (table[i] && streq(table[i], s))
                        return i;
        return -1;
}

const char *deploy_status_to_string(DeployStatus s) {
        return s >= 0 && s < _DEPLOY_STATUS_MAX ? deploy_status_names[s] : NULL;
}

DeployStatus deploy_status_from_string(const char *s) {
        return (DeployStatus) lookup(deploy_status_names, _DEPLOY_STATUS_MAX, s);
}

bool deploy_status_is_final(DeployStatus s) {
        return s == DEPLOY_DEPLOYED || s == DEPLOY_FAILED || s == DEPLOY_ROLLED_BACK;
}

const char *step_to_string(StepId s) {
        return s >= 0 && s < _STEP_MAX ? step_names[s] : NULL;
}

StepId step_from_string(const char *s) {
        return (StepId) lookup(step_names, _STEP_MAX, s);
}

const char *step_status_to_string(StepStatus s) {
        return s >= 0 && s < _STEP_STATUS_MAX ? step_status_names[s] : NULL;
}

StepStatus step_status_from_string(const char *s) {
        return (StepStatus) lookup(step_status_names, _STEP_STATUS_MAX, s);
}

DeployStatus step_deploy_status(StepId s) {
        switch (s) {
        case STEP_CLONE:
        case STEP_BUILD:
                return DEPLOY_BUILDING;
        case STEP_TEST:
                return DEPLOY_TESTING;
        case STEP_SNAPSHOT:
                return DEPLOY_SNAPSHOTTING;
        case STEP_MIGRATE:
                return DEPLOY_MIGRATING;
        case STEP_DEPLOY:
                return DEPLOY_DEPLOYING;
        default:
                return _DEPLOY_STATUS_INVALID;
        }
}
