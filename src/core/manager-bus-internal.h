/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Private to org.norn.Norn1.Manager: manager-bus.c holds the vtable and
 * the mutating methods, manager-bus-query.c the reading ones. */

#include <systemd/sd-bus.h>

/* Reading methods: open to every caller but GetLogs (bus-auth.h). Those
 * that read PostgreSQL answer from the query's callback; the loop never
 * waits for the database. */
int bus_method_list_apps(sd_bus_message *msg, void *userdata, sd_bus_error *error);
int bus_method_list_deployments(sd_bus_message *msg, void *userdata, sd_bus_error *error);
int bus_method_get_deployment(sd_bus_message *msg, void *userdata, sd_bus_error *error);
int bus_method_get_logs(sd_bus_message *msg, void *userdata, sd_bus_error *error);
int bus_method_validate(sd_bus_message *msg, void *userdata, sd_bus_error *error);

/* Limits of the reading methods. */
#define BUS_LOGS_MAX_DEFAULT 1000U
#define BUS_LOGS_MAX 10000U
#define BUS_LOGS_REPLY_BYTES_MAX (16U * 1024U * 1024U)
