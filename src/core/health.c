/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "health.h"
#include "manager.h"

#define IN_CLUSTER_TOKEN "/var/run/secrets/kubernetes.io/serviceaccount/token"

static const char *const component_names[_HEALTH_MAX] = {
        [HEALTH_DATABASE] = "database",
        [HEALTH_SYSTEMD] = "systemd",
        [HEALTH_KUBERNETES] = "kubernetes",
};

const char *health_component_to_string(HealthComponent c) {
        return c < _HEALTH_MAX ? component_names[c] : NULL;
}

int kube_config_locate(char **ret_path, bool *ret_in_cluster) {
        const char *kubeconfig, *home;
        char *p;

        if (getenv("KUBERNETES_SERVICE_HOST") && access(IN_CLUSTER_TOKEN, R_OK) == 0) {
                p = strdup(IN_CLUSTER_TOKEN);
                if (!p)
                        return -ENOMEM;
                *ret_path = p;
                *ret_in_cluster = true;
                return 0;
        }

        kubeconfig = getenv("KUBECONFIG");
        if (kubeconfig && *kubeconfig) {
                /* Like kubectl, the first entry of the list is the one we use. */
                p = strndup(kubeconfig, strcspn(kubeconfig, ":"));
        } else {
                home = getenv("HOME");
                if (!home || !*home)
                        return -ENOENT;
                if (asprintf(&p, "%s/.kube/config", home) < 0)
                        p = NULL;
        }
        if (!p)
                return -ENOMEM;
        if (access(p, R_OK) < 0) {
                int r = -errno;
                free(p);
                return r;
        }
        *ret_path = p;
        *ret_in_cluster = false;
        return 0;
}

static char *strdup_printf(const char *fmt, ...) _printf_(1, 2);
static char *strdup_printf(const char *fmt, ...) {
        va_list ap;
        char *s;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&s, fmt, ap);
        va_end(ap);
        return r < 0 ? NULL : s;
}

int health_collect(Manager *m, HealthState *ret) {
        HealthState s = {};
        _cleanup_free_ char *kube_path = NULL;
        bool in_cluster = false;
        int r;

        s.up[HEALTH_DATABASE] = m->db && db_is_up(m->db);
        s.detail[HEALTH_DATABASE] = s.up[HEALTH_DATABASE] ? strdup("connected, schema applied")
                : strdup_printf("down: %s", m->db ? db_last_error(m->db) ?: "connecting" : "not configured");

        s.up[HEALTH_SYSTEMD] = m->systemd_up;
        s.detail[HEALTH_SYSTEMD] = m->systemd_up
                ? strdup_printf("%s manager, version %s", m->config.user_mode ? "user" : "system",
                                strna(m->systemd_version))
                : strdup_printf("unreachable: %s", m->systemd_error ?: "not checked yet");

        r = kube_config_locate(&kube_path, &in_cluster);
        s.up[HEALTH_KUBERNETES] = r >= 0;
        s.detail[HEALTH_KUBERNETES] = r >= 0
                ? strdup_printf("%s %s", in_cluster ? "in-cluster service account" : "kubeconfig", kube_path)
                : strdup("not configured (no service account, KUBECONFIG or ~/.kube/config)");

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

json_t *health_state_to_json(const HealthState *s) {
        json_t *components = json_object();
        if (!components)
                return NULL;

        for (size_t i = 0; i < _HEALTH_MAX; i++)
                if (json_object_set_new(components, component_names[i],
                                        json_pack("{s:s, s:s}", "status", s->up[i] ? "up" : "down",
                                                  "detail", s->detail[i])) < 0) {
                        json_decref(components);
                        return NULL;
                }

        return json_pack("{s:s, s:o}", "status", health_state_ok(s) ? "ok" : "degraded",
                         "components", components);
}
