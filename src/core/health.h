/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <jansson.h>

typedef struct Manager Manager;

typedef enum HealthComponent {
        HEALTH_DATABASE,
        HEALTH_SYSTEMD,
        HEALTH_KUBERNETES,
        _HEALTH_MAX,
} HealthComponent;

typedef struct HealthState {
        bool up[_HEALTH_MAX];
        char *detail[_HEALTH_MAX];
} HealthState;

const char *health_component_to_string(HealthComponent c);

/* Snapshot of what nornd depends on; never blocks (uses cached checks). */
int health_collect(Manager *m, HealthState *ret);
void health_state_done(HealthState *s);
bool health_state_ok(const HealthState *s);
/* with_detail: each component's detail text too (paths, error messages of
 * the database or the kubeconfig); only for authenticated callers. */
json_t *health_state_to_json(const HealthState *s, bool with_detail);

