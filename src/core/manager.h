/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "db.h"
#include "http-server.h"

/* The daemon's state: one per nornd process, owned by main(). */
typedef struct Manager {
        NornConfig config;

        sd_event *event;
        sd_bus *bus;             /* our API and the systemd manager live here */
        sd_bus_slot *systemd_slot;
        sd_event_source *systemd_check_timer;

        Db *db;
        HttpServer *http;

        /* Last answer of the systemd manager's Version property. */
        bool systemd_up;
        char *systemd_version;
        char *systemd_error;

        bool degraded_reported;  /* last STATUS= we sent said degraded */
} Manager;

int manager_new(NornConfig *config, Manager **ret);
Manager *manager_free(Manager *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(Manager *, manager_free);

int manager_start(Manager *m);
int manager_run(Manager *m);

/* Called whenever something health() reports may have changed. */
void manager_update_status(Manager *m);
