/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "deployment.h"

/* The deployment record in PostgreSQL. One write per deployment is in flight
 * at a time; done(d, r) runs once it is committed (r = 0) or failed (r < 0,
 * with d->manager's database error logged). */
typedef void (*DeployStoreDone)(Deployment *d, int r);

int deploy_store_insert(Deployment *d, DeployStoreDone done);   /* sets d->id, d->queued_usec */
int deploy_store_start(Deployment *d, DeployStoreDone done);    /* queued -> building */
int deploy_store_step_begin(Deployment *d, StepId s, DeployStoreDone done);
int deploy_store_step_end(Deployment *d, StepId s, DeployStoreDone done);
int deploy_store_finish(Deployment *d, DeployStoreDone done);   /* final status, error */
int deploy_store_snapshot(Deployment *d, const char *database, const char *file, uint64_t size,
                          DeployStoreDone done);

/* Every in-flight row that no active deployment of this nornd owns is set to
 * failed with the given error (crash recovery, and after a lost database
 * connection). done may be NULL. */
int deploy_store_fail_orphans(Manager *m, const char *error, void (*done)(Manager *m, int n_failed));

/* deployed -> rolled_back, once its rollback is deployed. */
int deploy_store_mark_rolled_back(Manager *m, int64_t id);

uint64_t now_realtime_usec(void);
