/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <systemd/sd-bus.h>

#define NORN_BUS_NAME "org.norn.Norn1"
#define NORN_BUS_PATH "/org/norn/Norn1"
#define NORN_BUS_MANAGER_INTERFACE "org.norn.Norn1.Manager"

typedef struct Manager Manager;

/* Puts the manager's vtables on bus; m may be NULL for introspection only. */
int manager_bus_add_objects(sd_bus *bus, Manager *m);
int manager_bus_register(Manager *m);
