/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "deployment.h"
#include "step-run.h"

/* The pipeline engine: walks a deployment through the seven steps. Every
 * status and step change is committed to PostgreSQL before the next piece of
 * work starts; events and D-Bus properties follow each commit. The steps'
 * own work lives in step-*.c (StepDriver). */

/* Start a queued deployment; the scheduler decided it may run now. */
void pipeline_start(Deployment *d);

/* Stop a deployment: the running step's scope is killed and the deployment
 * ends failed with error "cancelled". -EALREADY when already final. */
int pipeline_cancel(Deployment *d);

/* Cancel for nornd's own stop: like pipeline_cancel(), but the deployment
 * fails with reason; one already in cleanup (its deploy step is done) has
 * its cleanup cut short and ends as it would have. -EALREADY when final. */
int pipeline_stop(Deployment *d, const char *reason);

/* --- for step drivers --- */

/* Run one command of the current step in its own scope
 * (norn-<app>-<id>-<step>[-<n>].scope); pipeline_step_continue() follows. */
int pipeline_run_command(Deployment *d, char *const *argv, char *const *env, const char *cwd);
/* The same for a command that comes from the app (build.test, the migration):
 * in the work dir, as the step user, in a sandbox (step-sandbox.h) that hides
 * nornd's state, apps, snapshots and configuration. */
int pipeline_run_app_command(Deployment *d, char *const *argv, char *const *env);

/* Report the end of asynchronous work a driver started itself. */
void pipeline_step_continue(Deployment *d, const StepRunResult *result);

/* Records the deployment's error (the first one wins) and returns -EIO. */
int deployment_fail(Deployment *d, const char *format, ...) _printf_(2, 3);

/* A line in the step's log: journal (with NORN_* fields), output tail and a
 * deploy.log event. */
void deployment_log(Deployment *d, const char *format, ...) _printf_(2, 3);
