/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "health.h"
#include "kube-config.h"
#include "string-util.h"
#include "manager.h"

static const char *const component_names[_HEALTH_MAX] = {
        [HEALTH_DATABASE] = "database",
        [HEALTH_SYSTEMD] = "systemd",
        [HEALTH_KUBERNETES] = "kubernetes",
};

const char *health_component_to_string(HealthComponent c) {
        return c < _HEALTH_MAX ? component_names[c] : NULL;
}

int health_collect(Manager *m, HealthState *ret) {
        HealthState s = {};
        _cleanup_(kube_config_freep) KubeConfig *kube = NULL;
        _cleanup_free_ char *kube_error = NULL, *kube_text = NULL;

        s.up[HEALTH_DATABASE] = m->db && db_is_up(m->db);
        s.detail[HEALTH_DATABASE] = s.up[HEALTH_DATABASE] ? strdup("connected, schema applied")
                : strdup_printf("down: %s", m->db ? db_last_error(m->db) ?: "connecting" : "not configured");

        s.up[HEALTH_SYSTEMD] = m->systemd_up;
        s.detail[HEALTH_SYSTEMD] = m->systemd_up
                ? strdup_printf("%s manager, version %s", m->config.user_mode ? "user" : "system",
                                strna(m->systemd_version))
                : strdup_printf("unreachable: %s", m->systemd_error ?: "not checked yet");

        /* Read anew each time: a fixed kubeconfig shows up without a restart. */
        s.up[HEALTH_KUBERNETES] = kube_config_load(&kube, &kube_error) >= 0 &&
                                  kube_config_describe(kube, &kube_text) >= 0;
        s.detail[HEALTH_KUBERNETES] = s.up[HEALTH_KUBERNETES] ? TAKE_PTR(kube_text)
                : strdup_printf("not configured: %s", kube_error ?: "no usable configuration");

        for (size_t i = 0; i < _HEALTH_MAX; i++)
                if (!s.detail[i]) {
                        health_state_done(&s);
                        return -ENOMEM;
                }
        *ret = s;
        return 0;
}

void health_state_done(HealthState *s) {
        for (size_t i = 0; i < _HEALTH_MAX; i++)
                s->detail[i] = mfree(s->detail[i]);
}

bool health_state_ok(const HealthState *s) {
        for (size_t i = 0; i < _HEALTH_MAX; i++)
                if (!s->up[i])
                        return false;
        return true;
}

json_t *health_state_to_json(const HealthState *s, bool with_detail) {
        json_t *components = json_object();
        if (!components)
                return NULL;

        for (size_t i = 0; i < _HEALTH_MAX; i++)
                if (json_object_set_new(components, component_names[i],
                                        json_pack("{s:s, s:s*}", "status", s->up[i] ? "up" : "down",
                                                  "detail", with_detail ? s->detail[i] : NULL)) < 0) {
                        json_decref(components);
                        return NULL;
                }

        return json_pack("{s:s, s:o}", "status", health_state_ok(s) ? "ok" : "degraded",
                         "components", components);
}
