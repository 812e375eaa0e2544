/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <systemd/sd-bus.h>

/* Who may do what through org.norn.Norn1. Reading is open, except the
 * deployments' logs (step output can hold secrets); Deploy, Cancel,
 * Rollback, RestoreSnapshot and GetLogs need an action:
 *
 *   root                           always
 *   the uid nornd runs as          in --user mode (it owns the session bus)
 *   polkit says yes                CheckAuthorization, asked asynchronously
 *   members of NORN_ADMIN_GROUP    only where polkit is not on the bus
 *
 * Anything else is org.freedesktop.DBus.Error.AccessDenied, except that a
 * polkit challenge (auth_admin) for a caller that did not allow interactive
 * authorization is org.freedesktop.DBus.Error.InteractiveAuthorizationRequired. */

#define NORN_ACTION_DEPLOY    "org.norn.deploy"     /* Deploy, Cancel */
#define NORN_ACTION_ROLLBACK  "org.norn.rollback"   /* Rollback, RestoreSnapshot */
#define NORN_ACTION_READ_LOGS "org.norn.read-logs"  /* GetLogs */

typedef struct Manager Manager;

/* The caller as the bus daemon saw it when it connected (its
 * GetConnectionCredentials answer), never read back from /proc. */
typedef struct BusCaller {
        uid_t uid;
        gid_t *gids;             /* primary and supplementary */
        size_t n_gids;
        bool gids_known;         /* the bus told us the groups */
} BusCaller;

/* Runs once the caller is authorized; returns like an sd-bus method handler
 * (error set or r < 0: the call is answered with that error). */
typedef int (*BusAuthorizedFunc)(Manager *m, sd_bus_message *call, const BusCaller *caller,
                                 sd_bus_error *error);

/* Authorizes the caller of call for action, then runs fn(m, call, caller).
 * Never waits: the bus daemon is asked for the caller's credentials (and
 * polkit after it) asynchronously, and fn runs, or the denial is sent, from
 * the reply callback. Returns like an sd-bus method handler: 1 once the
 * question is on its way, or an error (set or r < 0) when it cannot be asked. */
int bus_authorize(Manager *m, sd_bus_message *call, const char *action, BusAuthorizedFunc fn,
                  sd_bus_error *error);

/* "uid 1000 (D-Bus :1.42)": who asked, for the deployment's record. */
int bus_caller_describe(const BusCaller *caller, sd_bus_message *call, char **ret);
