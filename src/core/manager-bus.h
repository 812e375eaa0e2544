/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <systemd/sd-bus.h>

#define NORN_BUS_NAME "org.norn.Norn1"
#define NORN_BUS_PATH "/org/norn/Norn1"
#define NORN_BUS_MANAGER_INTERFACE "org.norn.Norn1.Manager"
#define NORN_BUS_DEPLOYMENT_INTERFACE "org.norn.Norn1.Deployment"
#define NORN_BUS_ERROR_PREFIX "org.norn.Norn1.Error."

typedef struct Manager Manager;
typedef struct Deployment Deployment;
typedef struct Event Event;

/* Puts the manager's and deployments' vtables on bus; m may be NULL for
 * introspection only. */
int manager_bus_add_objects(sd_bus *bus, Manager *m);
int deployment_bus_add_objects(sd_bus *bus, Manager *m);
int manager_bus_register(Manager *m);

/* The D-Bus mirror of an event (see events.h). */
void manager_bus_emit_event(Manager *m, const Event *e);

void manager_bus_deployment_added(Manager *m, Deployment *d);
void manager_bus_deployment_changed(Manager *m, Deployment *d);
void manager_bus_deployment_removed(Manager *m, Deployment *d);
