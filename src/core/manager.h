/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "db.h"
#include "deployment.h"
#include "events.h"
#include "http-server.h"

typedef struct KubeClient KubeClient;
typedef struct CronTimers CronTimers;
typedef struct Reconcile Reconcile;

typedef struct WsSubscriber WsSubscriber; /* api-ws-internal.h */

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
        bool warned_no_manager;  /* said once that steps run without scopes */

        Deployment *deployments; /* queued and running, in queue order */
        Deployment *recent;      /* finished, newest first, bounded */
        bool recovered;          /* start-up recovery done: deployments may run */
        unsigned recovery_pending;
        Reconcile *reconciling;  /* rollouts checked again after a restart (recovery-reconcile.c) */
        bool shutting_down;

        /* manager-stop.c: a stop ends the running deployments before exiting. */
        bool stopping;
        bool stop_left;          /* sd_event_exit() called */
        bool bus_lost;           /* the bus connection closed under us */
        const char *stop_reason; /* the error interrupted deployments get */
        int exit_status;
        sd_event_source *stop_timer;
        sd_bus_slot *disconnect_slot;

        KubeClient *kube;        /* made on first use from the kubeconfig */
        CronTimers *cron;        /* systemd timers of cron apps, recorded in db */
        EventLog events;
        WsSubscriber *ws_subscribers; /* authenticated /ws clients */
} Manager;

int manager_new(NornConfig *config, Manager **ret);
Manager *manager_free(Manager *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(Manager *, manager_free);

int manager_start(Manager *m);
int manager_run(Manager *m);

/* Whether PostgreSQL is connected: the reading APIs answer Unavailable
 * at once rather than queue a query that cannot run. */
bool manager_db_available(Manager *m);

/* Called whenever something health() reports may have changed. */
void manager_update_status(Manager *m);

/* The bus to reach the systemd manager for step scopes, NULL when it is
 * unreachable (steps then run as plain process groups). */
sd_bus *manager_systemd_bus(Manager *m);

/* The Kubernetes client, made from the configuration on first use. */
int manager_kube_client(Manager *m, char **ret_error);
