/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "manager.h"

/* How nornd ends: a stop (SIGTERM/SIGINT, or the bus connection lost) first
 * ends every deployment it runs, killing each step's whole scope over the
 * still-open bus and committing "failed, <reason>" to PostgreSQL, and only
 * then leaves the event loop with exit_status. Bounded by
 * MANAGER_STOP_TIMEOUT_USEC (under the unit's TimeoutStopSec=30s): what is
 * still running then is killed on the way out and left to start-up recovery. */

#define MANAGER_STOP_TIMEOUT_USEC (20ULL * 1000000ULL)

#define MANAGER_STOP_REASON_SIGNAL "nornd stopped during deployment"
#define MANAGER_STOP_REASON_BUS_LOST "nornd lost its D-Bus connection during deployment"

/* Begins the stop; a second call (a second signal) leaves the loop at once. */
int manager_stop(Manager *m, const char *reason, int exit_status);

/* The scheduler calls this instead of starting anything while stopping:
 * stops what is still queued and leaves the loop once nothing is left. */
void manager_stop_continue(Manager *m);

/* Watches the bus connection: when the bus daemon goes away, nornd stops
 * with MANAGER_STOP_REASON_BUS_LOST and exits non-zero (Restart=on-failure
 * brings it back, and start-up recovery kills what the lost bus hid). */
int manager_watch_bus_disconnect(Manager *m);
