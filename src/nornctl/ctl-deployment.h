/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <jansson.h>
#include <stdint.h>
#include <systemd/sd-bus.h>

/* A deployment as nornd sends it: (tsssssssttts). The strings point into
 * the message they were read from. */
typedef struct DeploymentInfo {
        uint64_t id;
        const char *app, *ref, *commit_sha, *image_tag, *status, *step, *error;
        uint64_t queued_usec, started_usec, finished_usec;
        const char *requested_by;
} DeploymentInfo;
#define DEPLOYMENT_INFO_SIGNATURE "(tsssssssttts)"

/* One step of a deployment: (ssttis), as the Deployment object's Steps. */
typedef struct StepInfo {
        const char *name, *status;
        uint64_t started_usec, finished_usec;
        int32_t exit_code;
        const char *unit;
} StepInfo;
#define STEP_INFO_SIGNATURE "(ssttis)"

/* Read one struct; 1 when read, 0 at the end of the array, < 0 on error. */
int deployment_info_read(sd_bus_message *m, DeploymentInfo *ret);
int step_info_read(sd_bus_message *m, StepInfo *ret);

/* The HTTP API's field names (id, app, commitSha, ..., queuedAt). */
json_t *deployment_info_to_json(const DeploymentInfo *d);
json_t *step_info_to_json(const StepInfo *s);

/* GetDeployment(id): the deployment, the reply left at the steps array. */
int ctl_get_deployment(sd_bus *bus, uint64_t id, sd_bus_message **ret_reply, DeploymentInfo *ret);

/* The deployment with the steps array of its GetDeployment reply, as
 * `show --json` prints it. */
int deployment_to_json_with_steps(const DeploymentInfo *d, sd_bus_message *reply, json_t **ret);

/* Prints a deployment and its steps for people (show, status APP). */
int deployment_print(const DeploymentInfo *d, sd_bus_message *steps_reply);

/* True when status is one a deployment ends in. */
bool deployment_status_is_final(const char *status);
