/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stdio.h>

typedef struct Manager Manager;
typedef struct Reconcile Reconcile;

/* Runs each time the database comes up. The first time (start-up), nothing
 * may stay half-way: in-flight rows become failed ("norn restarted during
 * deployment"), leftover norn-*.scope units are killed and work dirs removed;
 * only then do deployments start. Later times repair rows of deployments this
 * nornd gave up while the database was away. */
void recovery_on_database_up(Manager *m);

/* recovery-reconcile.c: before that, deployments a killed nornd left in or
 * after their deploy step end with what is true (see there); done() follows
 * once those that need no waiting are settled. */
int recovery_reconcile_start(Manager *m, void (*done)(Manager *m));
/* A rollout of app is being checked again: nothing of app may start. */
bool recovery_app_reconciling(Manager *m, const char *app);
/* Their ids, comma-separated, for an array literal. */
void recovery_reconciling_ids(Manager *m, FILE *f);
void recovery_reconcile_free_all(Manager *m);
