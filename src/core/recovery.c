/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deploy-store.h"
#include "fs-util.h"
#include "log.h"
#include "manager.h"
#include "recovery.h"
#include "scheduler.h"
#include "snapshot-file.h"

#define SYSTEMD_DEST "org.freedesktop.systemd1"
#define SYSTEMD_PATH "/org/freedesktop/systemd1"
#define SYSTEMD_MANAGER "org.freedesktop.systemd1.Manager"

static void recovery_finish(Manager *m) {
        _cleanup_free_ char *work = NULL;
        int r;

        if (asprintf(&work, "%s/work", m->config.state_dir) >= 0) {
                r = rm_rf_children(work);
                if (r < 0)
                        log_warning_errno(r, "Failed to remove leftover work dirs in %s: %m", work);
                r = mkdir_p(work, 0750);
                if (r < 0)
                        log_warning_errno(r, "Failed to create %s: %m", work);
        }
        /* After the leftover scopes were killed: no pg_dump writes any more. */
        r = snapshot_remove_partials(m->config.snapshot_dir);
        if (r < 0)
                log_warning_errno(r, "Failed to look for partial snapshots in %s: %m", m->config.snapshot_dir);
        m->recovered = true;
        log_info("Start-up recovery done; deployments may run.");
        scheduler_recovered(m);
        scheduler_kick(m);
}

static int on_unit_stopped(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Manager *m = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);

        /* The unit may have gone away by itself meanwhile: not an error. */
        if (e && !sd_bus_error_has_name(e, "org.freedesktop.systemd1.NoSuchUnit"))
                log_warning("Failed to stop a leftover step scope: %s", e->message ?: e->name);
        if (--m->recovery_pending == 0)
                recovery_finish(m);
        return 0;
}

static int on_leftover_units(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Manager *m = userdata;
        const char *name;
        int r;

        m->recovery_pending = 1; /* held until all stops are sent */
        if (sd_bus_message_is_method_error(reply, NULL)) {
                log_warning("Cannot list leftover step scopes: %s", sd_bus_message_get_error(reply)->message);
                goto done;
        }
        r = sd_bus_message_enter_container(reply, 'a', "(ssssssouso)");
        if (r < 0)
                goto done;
        while ((r = sd_bus_message_read(reply, "(ssssssouso)", &name, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                                        NULL, NULL)) > 0) {
                log_notice("Killing step scope %s left by an earlier nornd.", name);
                /* SIGKILL to every process in it; the empty scope then goes away. */
                r = sd_bus_call_method_async(m->bus, NULL, SYSTEMD_DEST, SYSTEMD_PATH, SYSTEMD_MANAGER, "KillUnit",
                                             on_unit_stopped, m, "ssi", name, "all", (int32_t) SIGKILL);
                if (r >= 0)
                        m->recovery_pending++;
                r = sd_bus_call_method_async(m->bus, NULL, SYSTEMD_DEST, SYSTEMD_PATH, SYSTEMD_MANAGER, "StopUnit",
                                             on_unit_stopped, m, "ss", name, "replace");
                if (r >= 0)
                        m->recovery_pending++;
        }
done:
        if (--m->recovery_pending == 0)
                recovery_finish(m);
        return 0;
}

static void stop_leftover_scopes(Manager *m) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL;
        int r;

        r = sd_bus_message_new_method_call(m->bus, &call, SYSTEMD_DEST, SYSTEMD_PATH, SYSTEMD_MANAGER,
                                           "ListUnitsByPatterns");
        if (r >= 0)
                r = sd_bus_message_append(call, "as", 0);
        if (r >= 0)
                r = sd_bus_message_append(call, "as", 1, "norn-*.scope");
        if (r >= 0)
                r = sd_bus_call_async(m->bus, NULL, call, on_leftover_units, m, 0);
        if (r < 0) {
                log_warning_errno(r, "Cannot look for leftover step scopes: %m");
                recovery_finish(m);
        }
}

/* journalctl MESSAGE_ID=... and catalog/norn.catalog: nornd recovered in-flight deployments */
#define MESSAGE_ID_RECOVERED "MESSAGE_ID=3c2b8e0b6a5e4d2c9f1e7a4b5d6c8e05"

static void on_orphans_failed(Manager *m, int n) {
        if (n > 0) {
                char count[64];

                snprintf(count, sizeof(count), "NORN_RECOVERED_DEPLOYMENTS=%d", n);
                log_fields(LOG_NOTICE,
                           ((const char *const[]) { MESSAGE_ID_RECOVERED, count,
                                                    m->recovered ? "NORN_RECOVERY_REASON=database-reconnect"
                                                                 : "NORN_RECOVERY_REASON=restart",
                                                    NULL }),
                           "Marked %d interrupted deployment(s) failed.", n);
        }
        if (m->recovered)
                return;
        if (n < 0) {
                /* Try again on the next connection: nothing runs before this. */
                return;
        }
        stop_leftover_scopes(m);
}

static void fail_orphans(Manager *m) {
        int r;

        r = deploy_store_fail_orphans(m, m->recovered ? "norn lost its database connection during deployment"
                                                      : "norn restarted during deployment",
                                      on_orphans_failed);
        if (r < 0)
                log_warning_errno(r, "Cannot repair interrupted deployments: %m");
}

static void on_reconciled(Manager *m) {
        fail_orphans(m);
}

void recovery_on_database_up(Manager *m) {
        int r;

        if (m->recovered) {
                fail_orphans(m);
                return;
        }
        r = recovery_reconcile_start(m, on_reconciled);
        if (r < 0) {
                log_warning_errno(r, "Cannot reconcile interrupted deployments: %m");
                fail_orphans(m);
        }
}
