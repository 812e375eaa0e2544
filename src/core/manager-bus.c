/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>

#include "config-build.h"
#include "health.h"
#include "log.h"
#include "manager-bus.h"
#include "manager.h"

static int property_get_version(sd_bus *bus, const char *path, const char *interface,
                                const char *property, sd_bus_message *reply, void *userdata,
                                sd_bus_error *error) {
        return sd_bus_message_append(reply, "s", NORN_VERSION);
}

static int method_health(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        Manager *m = userdata;
        HealthState h;
        int r;

        r = health_collect(m, &h);
        if (r < 0)
                return r;

        r = sd_bus_message_new_method_return(msg, &reply);
        if (r < 0)
                goto finish;
        r = sd_bus_message_append(reply, "s", health_state_ok(&h) ? "ok" : "degraded");
        if (r < 0)
                goto finish;
        r = sd_bus_message_open_container(reply, 'a', "(sbs)");
        if (r < 0)
                goto finish;
        for (size_t i = 0; i < _HEALTH_MAX; i++) {
                r = sd_bus_message_append(reply, "(sbs)", health_component_to_string(i), h.up[i],
                                          h.detail[i]);
                if (r < 0)
                        goto finish;
        }
        r = sd_bus_message_close_container(reply);
        if (r < 0)
                goto finish;
        r = sd_bus_send(NULL, reply, NULL);
finish:
        health_state_done(&h);
        return r;
}

static const sd_bus_vtable manager_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Version", "s", property_get_version, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_METHOD_WITH_ARGS("Health",
                                SD_BUS_NO_ARGS,
                                SD_BUS_RESULT("s", status, "a(sbs)", components),
                                method_health,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END,
};

int manager_bus_add_objects(sd_bus *bus, Manager *m) {
        return sd_bus_add_object_vtable(bus, NULL, NORN_BUS_PATH, NORN_BUS_MANAGER_INTERFACE,
                                        manager_vtable, m);
}

int manager_bus_register(Manager *m) {
        int r = manager_bus_add_objects(m->bus, m);
        if (r < 0)
                return log_error_errno(r, "Failed to register object " NORN_BUS_PATH ": %m");
        return 0;
}
