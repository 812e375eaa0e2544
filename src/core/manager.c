/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "api.h"
#include "config-build.h"
#include "cron-timer.h"
#include "deploy-log.h"
#include "deploy-store.h"
#include "health.h"
#include "kube.h"
#include "recovery.h"
#include "listen.h"
#include "scheduler.h"
#include "log.h"
#include "manager-bus.h"
#include "manager.h"
#include "manager-stop.h"

#define SYSTEMD_CHECK_INTERVAL_USEC (10ULL * 1000000ULL)

static void manager_check_systemd(Manager *m);

static void on_cron_restored(int r, const char *error, void *userdata) {
        if (r < 0)
                log_warning("Cannot restore every cron timer: %s", strna(error));
        else
                log_debug("Cron timers match their records.");
}

/* Transient units do not survive a reboot, nor a restart of the systemd
 * manager: re-create the cron timers from their records whenever both the
 * database and the manager are (back) up. */
static void manager_restore_cron(Manager *m) {
        int r;

        if (!m->cron || !m->systemd_up || !db_is_up(m->db))
                return;
        r = cron_timers_restore(m->cron, on_cron_restored, m);
        if (r < 0)
                log_warning_errno(r, "Cannot restore the cron timers: %m");
}

static int on_systemd_version(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Manager *m = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        const char *version = NULL;
        bool was_up = m->systemd_up;
        int r;

        m->systemd_slot = sd_bus_slot_unref(m->systemd_slot);
        m->systemd_error = mfree(m->systemd_error);

        if (e) {
                m->systemd_up = false;
                m->systemd_error = strdup(e->message ?: e->name);
        } else if ((r = sd_bus_message_read(reply, "v", "s", &version)) < 0) {
                m->systemd_up = false;
                m->systemd_error = strdup("malformed Version reply");
        } else {
                m->systemd_up = true;
                free(m->systemd_version);
                m->systemd_version = strdup(version);
        }

        if (was_up != m->systemd_up) {
                if (m->systemd_up) {
                        log_info("systemd %s manager reachable (version %s).",
                                 m->config.user_mode ? "user" : "system", strna(m->systemd_version));
                        manager_restore_cron(m);
                } else
                        log_warning("systemd %s manager unreachable: %s",
                                    m->config.user_mode ? "user" : "system", strna(m->systemd_error));
        }
        manager_update_status(m);
        return 0;
}

static void manager_check_systemd(Manager *m) {
        int r;

        if (m->systemd_slot)
                return; /* a check is already in flight */

        r = sd_bus_call_method_async(m->bus, &m->systemd_slot, "org.freedesktop.systemd1",
                                     "/org/freedesktop/systemd1", "org.freedesktop.DBus.Properties",
                                     "Get", on_systemd_version, m, "ss",
                                     "org.freedesktop.systemd1.Manager", "Version");
        if (r < 0) {
                m->systemd_up = false;
                free(m->systemd_error);
                m->systemd_error = strdup(strerror(-r));
                manager_update_status(m);
        }
}

static int on_systemd_check_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        manager_check_systemd(m);
        (void) sd_event_source_set_time_relative(s, SYSTEMD_CHECK_INTERVAL_USEC);
        (void) sd_event_source_set_enabled(s, SD_EVENT_ON);
        return 0;
}

static void on_db_state(Db *db, bool up, void *userdata) {
        Manager *m = userdata;

        if (up) {
                log_info("Database connected, schema is current.");
                recovery_on_database_up(m);
                deploy_store_resume(m); /* deployments held at a boundary go on */
                manager_restore_cron(m);
        } else
                log_warning("Database unavailable: %s", strna(db_last_error(db)));
        manager_update_status(m);
}

bool manager_db_available(Manager *m) {
        return m->db && db_is_up(m->db);
}

void manager_update_status(Manager *m) {
        HealthState h;
        bool ok;

        if (health_collect(m, &h) < 0)
                return;

        ok = health_state_ok(&h);
        if (ok)
                (void) sd_notify(false, "STATUS=Running.");
        else {
                char status[512] = "STATUS=Degraded:";
                for (size_t i = 0; i < _HEALTH_MAX; i++)
                        if (!h.up[i]) {
                                strncat(status, " ", sizeof(status) - strlen(status) - 1);
                                strncat(status, health_component_to_string(i),
                                        sizeof(status) - strlen(status) - 1);
                                strncat(status, " down;", sizeof(status) - strlen(status) - 1);
                        }
                (void) sd_notify(false, status);
        }
        m->degraded_reported = !ok;
        health_state_done(&h);
}

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;

        log_info("Received %s, shutting down.", strsignal((int) si->ssi_signo));
        return manager_stop(m, MANAGER_STOP_REASON_SIGNAL, EXIT_SUCCESS);
}

int manager_new(NornConfig *config, Manager **ret) {
        _cleanup_(manager_freep) Manager *m = NULL;
        sigset_t mask;
        int r;

        m = calloc(1, sizeof(*m));
        if (!m)
                return log_oom();
        /* Take the configuration over; the caller's copy is emptied. */
        m->config = *config;
        *config = (NornConfig) {};

        r = sd_event_default(&m->event);
        if (r < 0)
                return log_error_errno(r, "Failed to allocate event loop: %m");

        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGCHLD); /* sd-event child sources need it blocked */
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return log_error_errno(-errno, "Failed to block signals: %m");
        if ((r = sd_event_add_signal(m->event, NULL, SIGTERM, on_signal, m)) < 0 ||
            (r = sd_event_add_signal(m->event, NULL, SIGINT, on_signal, m)) < 0)
                return log_error_errno(r, "Failed to watch signals: %m");
        /* Pings WATCHDOG=1 at half of WatchdogSec= when the service sets it. */
        r = sd_event_set_watchdog(m->event, true);
        if (r < 0)
                return log_error_errno(r, "Failed to enable watchdog handling: %m");

        *ret = TAKE_PTR(m);
        return 0;
}

static int on_name_requested(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        uint32_t result = 0;

        if (e)
                log_error("Failed to request bus name " NORN_BUS_NAME ": %s", e->message ?: e->name);
        else if (sd_bus_message_read(reply, "u", &result) >= 0 && result == 2 /* IN_QUEUE */)
                log_warning("Another process owns " NORN_BUS_NAME "; queued to take it over when it goes.");
        return 0;
}

static int manager_connect_bus(Manager *m) {
        int r;

        r = m->config.user_mode ? sd_bus_open_user(&m->bus) : sd_bus_open_system(&m->bus);
        if (r < 0)
                return log_error_errno(r, "Failed to connect to the %s bus: %m",
                                       m->config.user_mode ? "session" : "system");
        r = sd_bus_attach_event(m->bus, m->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return log_error_errno(r, "Failed to attach bus to event loop: %m");
        /* By default sd-bus closes the connection when the loop exits: the
         * steps' scopes are killed after that (manager_free), over this bus. */
        r = sd_bus_set_close_on_exit(m->bus, false);
        if (r < 0)
                return log_error_errno(r, "Failed to keep the bus open after the event loop: %m");
        r = manager_watch_bus_disconnect(m);
        if (r < 0)
                return r;

        r = manager_bus_register(m);
        if (r < 0)
                return r;

        /* Queue behind another owner instead of failing (sd-bus would then
         * close our connection): a second nornd on one bus takes over when
         * the first goes, and meanwhile still reaches the systemd manager. */
        r = sd_bus_request_name_async(m->bus, NULL, NORN_BUS_NAME, SD_BUS_NAME_QUEUE, on_name_requested, m);
        if (r < 0)
                return log_error_errno(r, "Failed to request bus name " NORN_BUS_NAME ": %m");
        return 0;
}

static const HttpServerCallbacks http_callbacks = {
        .handle_request = api_handle_request,
        .check_head = api_check_head,
        .ws_connected = api_ws_connected,
        .ws_message = api_ws_message,
        .ws_closed = api_ws_closed,
};

int manager_start(Manager *m) {
        _cleanup_free_ char *cron_env_dir = NULL;
        int r;

        r = manager_connect_bus(m);
        if (r < 0)
                return r;

        r = sd_event_add_time_relative(m->event, &m->systemd_check_timer, CLOCK_MONOTONIC, 0, 0,
                                       on_systemd_check_timer, m);
        if (r < 0)
                return log_error_errno(r, "Failed to add systemd check timer: %m");

        r = db_new(m->event, m->config.database_url, m->config.sql_dir, &m->db);
        if (r < 0)
                return log_error_errno(r, "Failed to set up database client: %m");
        db_set_state_callback(m->db, on_db_state, m);
        r = cron_timers_new(m->bus, m->db, m->config.slice, &m->cron);
        if (r < 0)
                return log_error_errno(r, "Failed to set up cron timers: %m");
        /* Cron jobs are the app's code too: the step user, nothing of ours to see,
         * env values in root-only files. */
        if (asprintf(&cron_env_dir, "%s/cron-env", m->config.state_dir) < 0)
                return log_oom();
        r = cron_timers_set_sandbox(m->cron, m->config.step_isolated ? m->config.step_user : NULL, cron_env_dir,
                                    m->config.step_isolated ? m->config.step_hide : NULL);
        if (r < 0)
                return log_oom();
        r = db_start(m->db);
        if (r < 0)
                return log_error_errno(r, "Failed to start database client: %m");

        r = http_server_new(m->event, &http_callbacks, m, &m->http);
        if (r < 0)
                return log_error_errno(r, "Failed to set up HTTP server: %m");
        http_server_set_limits(m->http, m->config.http_body_timeout_usec, m->config.http_peer_max_connections);
        r = listen_setup(m->http, m->config.bind_address, m->config.port);
        if (r < 0)
                return r;

        manager_update_status(m);
        return 0;
}

int manager_run(Manager *m) {
        int r;

        (void) sd_notify(false, "READY=1");
        log_info("nornd " NORN_VERSION " running (%s mode).", m->config.user_mode ? "user" : "system");

        r = sd_event_loop(m->event);
        (void) sd_notify(false, "STOPPING=1");
        if (r < 0)
                return log_error_errno(r, "Event loop failed: %m");
        return r;
}

sd_bus *manager_systemd_bus(Manager *m) {
        if (m->systemd_up)
                return m->bus;
        if (!m->warned_no_manager) {
                log_warning("The systemd %s manager is unreachable: deploy steps run as plain process "
                            "groups, without scopes or resource limits.", m->config.user_mode ? "user" : "system");
                m->warned_no_manager = true;
        }
        return NULL;
}

int manager_kube_client(Manager *m, char **ret_error) {
        KubeConfig *config = NULL;
        int r;

        if (m->kube)
                return 0;
        r = kube_config_load(&config, ret_error);
        if (r < 0)
                return r;
        r = kube_client_new(m->event, config, &m->kube);
        if (r < 0) {
                kube_config_free(config);
                return r;
        }
        return 0;
}

static void free_deployments(Deployment *l) {
        while (l) {
                Deployment *next = l->next;
                deployment_free(l);
                l = next;
        }
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;

        /* Clients first, then what they use. Deployments still running are
         * left to crash recovery at the next start: their scopes die with
         * their StepRun here, their rows are repaired then. */
        m->shutting_down = true;
        scheduler_abandon_waiting(m); /* answered while the bus and HTTP clients are there */
        http_server_free(m->http);
        deploy_log_cancel_reads(); /* GetLogs pages still being read: answered while the bus is up */
        cron_timers_free(m->cron);
        db_free(m->db);
        free_deployments(m->deployments);
        free_deployments(m->recent);
        recovery_reconcile_free_all(m);
        kube_client_free(m->kube);
        event_log_done(&m->events);
        sd_bus_slot_unref(m->systemd_slot);
        sd_bus_slot_unref(m->disconnect_slot);
        sd_event_source_unref(m->systemd_check_timer);
        sd_event_source_unref(m->stop_timer);
        sd_bus_flush_close_unref(m->bus);
        sd_event_unref(m->event);
        free(m->systemd_version);
        free(m->systemd_error);
        config_done(&m->config);
        return mfree(m);
}
