/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>
#include <systemd/sd-daemon.h>

#include "log.h"
#include "manager-stop.h"
#include "pipeline.h"

static unsigned count_running(Manager *m) {
        unsigned n = 0;

        for (Deployment *d = m->deployments; d; d = d->next)
                n++;
        return n;
}

static void stop_leave(Manager *m, const char *why) {
        if (m->stop_left)
                return;
        m->stop_left = true;
        m->stop_timer = sd_event_source_disable_unref(m->stop_timer);
        log_info("%s; exiting.", why);
        (void) sd_event_exit(m->event, m->exit_status);
}

void manager_stop_continue(Manager *m) {
        bool again = true;

        if (!m->stopping || m->stop_left)
                return;

        /* Stopping one may finish it (and unlink it) at once: look again from
         * the head each time. A deployment whose row is still being inserted
         * (id 0) is stopped once it has one: the scheduler calls us then. */
        while (again) {
                again = false;
                for (Deployment *d = m->deployments; d; d = d->next)
                        if (d->id != 0 && !d->cancel_requested && !deploy_status_is_final(d->status)) {
                                (void) pipeline_stop(d, m->stop_reason);
                                again = true;
                                break;
                        }
        }

        if (!m->deployments)
                stop_leave(m, "No deployment left running");
}

static int on_stop_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        log_warning("%u deployment(s) still running %llu s after the stop began: their steps are killed "
                    "now, start-up recovery records them.", count_running(m),
                    MANAGER_STOP_TIMEOUT_USEC / 1000000ULL);
        stop_leave(m, "Stop timeout reached");
        return 0;
}

int manager_stop(Manager *m, const char *reason, int exit_status) {
        int r;

        if (m->stopping) {
                /* Asked again (a second Ctrl-C): do not wait any longer. */
                stop_leave(m, "Asked to stop again");
                return 0;
        }
        m->stopping = true;
        m->stop_reason = reason;
        m->exit_status = exit_status;
        (void) sd_notify(false, "STOPPING=1");

        if (!m->deployments) {
                stop_leave(m, "Nothing running");
                return 0;
        }

        log_notice("Stopping %u deployment(s) before exiting: %s.", count_running(m), reason);
        r = sd_event_add_time_relative(m->event, &m->stop_timer, CLOCK_MONOTONIC, MANAGER_STOP_TIMEOUT_USEC, 0,
                                       on_stop_timeout, m);
        if (r < 0)
                log_warning_errno(r, "Cannot bound the stop, waiting without a timeout: %m");
        manager_stop_continue(m);
        return 0;
}

static int on_bus_disconnected(sd_bus_message *message, void *userdata, sd_bus_error *ret_error) {
        Manager *m = userdata;

        log_error("Lost the connection to the %s bus: ending running deployments and exiting with an error, "
                  "so that the service manager starts nornd again.", m->config.user_mode ? "session" : "system");
        /* Without the bus there is no systemd manager either: what still has to
         * run (cleanup) runs as a plain process group. */
        m->systemd_up = false;
        m->bus_lost = true;
        manager_update_status(m);
        if (m->stopping)
                return 0;       /* already on the way out; keep its reason and status */
        (void) manager_stop(m, MANAGER_STOP_REASON_BUS_LOST, EXIT_FAILURE);
        return 0;
}

int manager_watch_bus_disconnect(Manager *m) {
        int r;

        /* A local match: sd-bus synthesizes this signal when the connection
         * closes; nothing goes to the bus daemon. */
        r = sd_bus_match_signal(m->bus, &m->disconnect_slot, "org.freedesktop.DBus.Local",
                                "/org/freedesktop/DBus/Local", "org.freedesktop.DBus.Local", "Disconnected",
                                on_bus_disconnected, m);
        if (r < 0)
                return log_error_errno(r, "Failed to watch the bus connection: %m");
        return 0;
}
