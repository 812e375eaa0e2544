/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>

#include "deployment.h"

/* The deployment record in PostgreSQL. A deployment's writes form a queue:
 * one is in flight at a time, in order, each with the values of the moment it
 * was queued; done(d, r) runs once it is committed (r = 0) or refused by the
 * server (r = -EIO, logged). A write never fails for a busy queue.
 *
 * A write that cannot reach the database (not connected, connection lost) is
 * not failed: it is held, d->store_held(d, true) is called, and it is sent
 * again by deploy_store_resume() once the database is back (every write is
 * idempotent, as the lost one may have been committed); done() then follows,
 * after d->store_held(d, false). Only the INSERT is never held: its client
 * is answered at once. */
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

/* d->rollback_of: deployed -> rolled_back, once its rollback d is deployed. */
int deploy_store_mark_rolled_back(Deployment *d);

/* Writes of d are queued or in flight. */
bool deploy_store_pending(const Deployment *d);
/* The first of them is held: the database is away. */
bool deploy_store_held(const Deployment *d);
/* Nobody waits for d's queued writes any more (the hold timed out): they are
 * still written, in order, once the database is back, but without done().
 * Returns the done() of the first that had one, for the caller to call. */
DeployStoreDone deploy_store_release(Deployment *d);
/* The database is back: send every held write again. */
void deploy_store_resume(Manager *m);
/* d is being freed: its writes go (one in flight is only detached). */
void deploy_store_drop(Deployment *d);

uint64_t now_realtime_usec(void);
