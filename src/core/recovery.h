/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

typedef struct Manager Manager;

/* Runs each time the database comes up. The first time (start-up), nothing
 * may stay half-way: in-flight rows become failed ("norn restarted during
 * deployment"), leftover norn-*.scope units are killed and work dirs removed;
 * only then do deployments start. Later times repair rows of deployments this
 * nornd gave up while the database was away. */
void recovery_on_database_up(Manager *m);
