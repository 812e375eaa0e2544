/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "deployment.h"
#include "manager-bus.h"
#include "manager.h"
#include "scheduler.h"

/* org.norn.Norn1.Deployment on /org/norn/Norn1/deployment/<id>: one object
 * per active or recent deployment, found through a fallback vtable. */

#define DEPLOYMENT_PREFIX NORN_BUS_PATH "/deployment"

static int parse_path(const char *path, int64_t *ret) {
        const char *p;
        char *end;
        long long v;

        if (strncmp(path, DEPLOYMENT_PREFIX "/", strlen(DEPLOYMENT_PREFIX "/")) != 0)
                return -EINVAL;
        p = path + strlen(DEPLOYMENT_PREFIX "/");
        if (*p < '1' || *p > '9')
                return -EINVAL;
        errno = 0;
        v = strtoll(p, &end, 10);
        if (errno != 0 || *end != '\0')
                return -EINVAL;
        *ret = v;
        return 0;
}

static int find_deployment(sd_bus *bus, const char *path, const char *interface, void *userdata,
                           void **found, sd_bus_error *error) {
        Manager *m = userdata;
        Deployment *d;
        int64_t id;

        if (parse_path(path, &id) < 0)
                return 0;
        if (!m) {
                /* Introspection only (nornd --bus-introspect): any object will do. */
                *found = NULL;
                return 1;
        }
        d = manager_find_deployment(m, id);
        if (!d)
                return 0;
        *found = d;
        return 1;
}

static int enumerate_deployments(sd_bus *bus, const char *path, void *userdata, char ***nodes,
                                 sd_bus_error *error) {
        Manager *m = userdata;
        size_t n = 0;
        char **l;

        if (!m)
                return 0;

        for (Deployment *d = m->deployments; d; d = d->next)
                n++;
        for (Deployment *d = m->recent; d; d = d->next)
                n++;
        l = calloc(n + 1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        n = 0;
        for (int pass = 0; pass < 2; pass++)
                for (Deployment *d = pass ? m->recent : m->deployments; d; d = d->next)
                        if (d->id > 0 && !(l[n++] = deployment_bus_path(d->id))) {
                                for (size_t i = 0; i < n; i++)
                                        free(l[i]);
                                free(l);
                                return -ENOMEM;
                        }
        *nodes = l;
        return 1;
}

#define STRING_PROPERTY(fn, expr)                                                                        \
        static int fn(sd_bus *bus, const char *path, const char *interface, const char *property,         \
                      sd_bus_message *reply, void *userdata, sd_bus_error *error) {                       \
                Deployment *d = userdata;                                                                 \
                return sd_bus_message_append(reply, "s", (expr) ?: "");                                  \
        }

STRING_PROPERTY(property_get_app, d->app)
STRING_PROPERTY(property_get_ref, d->ref)
STRING_PROPERTY(property_get_commit, d->commit_sha)
STRING_PROPERTY(property_get_image, d->image_tag)
STRING_PROPERTY(property_get_status, deploy_status_to_string(d->status))
STRING_PROPERTY(property_get_step, step_to_string(d->step))
STRING_PROPERTY(property_get_error, d->error)
STRING_PROPERTY(property_get_source, d->source)
STRING_PROPERTY(property_get_requested_by, d->requested_by)

static int property_get_id(sd_bus *bus, const char *path, const char *interface, const char *property,
                           sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Deployment *d = userdata;
        return sd_bus_message_append(reply, "t", (uint64_t) d->id);
}

static int property_get_times(sd_bus *bus, const char *path, const char *interface, const char *property,
                              sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Deployment *d = userdata;
        uint64_t v = streq(property, "QueuedAt") ? d->queued_usec
                   : streq(property, "StartedAt") ? d->started_usec : d->finished_usec;
        return sd_bus_message_append(reply, "t", v);
}

static int property_get_steps(sd_bus *bus, const char *path, const char *interface, const char *property,
                              sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Deployment *d = userdata;
        int r;

        r = sd_bus_message_open_container(reply, 'a', "(ssttis)");
        if (r < 0)
                return r;
        for (StepId s = 0; s < _STEP_MAX; s++) {
                const DeploymentStep *st = &d->steps[s];
                r = sd_bus_message_append(reply, "(ssttis)", step_to_string(s), step_status_to_string(st->status),
                                          st->started_usec, st->finished_usec, (int32_t) st->exit_code,
                                          st->unit ?: "");
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(reply);
}

static const sd_bus_vtable deployment_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Id", "t", property_get_id, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("App", "s", property_get_app, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Ref", "s", property_get_ref, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("RequestedBy", "s", property_get_requested_by, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("CommitSha", "s", property_get_commit, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("ImageTag", "s", property_get_image, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Source", "s", property_get_source, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Status", "s", property_get_status, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Step", "s", property_get_step, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Error", "s", property_get_error, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("QueuedAt", "t", property_get_times, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("StartedAt", "t", property_get_times, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("FinishedAt", "t", property_get_times, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Steps", "a(ssttis)", property_get_steps, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_VTABLE_END,
};

int deployment_bus_add_objects(sd_bus *bus, Manager *m) {
        int r;

        r = sd_bus_add_fallback_vtable(bus, NULL, DEPLOYMENT_PREFIX, NORN_BUS_DEPLOYMENT_INTERFACE,
                                       deployment_vtable, find_deployment, m);
        if (r < 0)
                return r;
        return sd_bus_add_node_enumerator(bus, NULL, DEPLOYMENT_PREFIX, enumerate_deployments, m);
}

void manager_bus_deployment_changed(Manager *m, Deployment *d) {
        _cleanup_free_ char *path = NULL;

        if (!m->bus || d->id <= 0 || !(path = deployment_bus_path(d->id)))
                return;
        (void) sd_bus_emit_properties_changed(m->bus, path, NORN_BUS_DEPLOYMENT_INTERFACE, "Status", "Step",
                                              "Error", "CommitSha", "ImageTag", "Source", "StartedAt",
                                              "FinishedAt", "Steps", NULL);
}

void manager_bus_deployment_added(Manager *m, Deployment *d) {
        _cleanup_free_ char *path = NULL;

        if (!m->bus || !(path = deployment_bus_path(d->id)))
                return;
        (void) sd_bus_emit_object_added(m->bus, path);
}

void manager_bus_deployment_removed(Manager *m, Deployment *d) {
        _cleanup_free_ char *path = NULL;

        if (!m->bus || !(path = deployment_bus_path(d->id)))
                return;
        (void) sd_bus_emit_object_removed(m->bus, path);
}
