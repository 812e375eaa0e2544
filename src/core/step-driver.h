/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>

#include "deployment.h"
#include "step-run.h"

/* One step's work, as a small state machine on Deployment.phase. next() is
 * called with prev=NULL when the step starts and then with the result of each
 * command (or other asynchronous work) it started. It returns 1 when it
 * started more work, 0 when the step succeeded, or a negative errno when it
 * failed (after deployment_fail() said why). */
typedef int (*StepNext)(Deployment *d, const StepRunResult *prev);

StepNext step_driver(StepId s);

/* Steps are skipped by what the infraspec leaves out (DESIGN §1). */
bool step_is_skipped(const Deployment *d, StepId s);

int step_clone_next(Deployment *d, const StepRunResult *prev);
int step_build_next(Deployment *d, const StepRunResult *prev);
int step_test_next(Deployment *d, const StepRunResult *prev);
int step_snapshot_next(Deployment *d, const StepRunResult *prev);
int step_migrate_next(Deployment *d, const StepRunResult *prev);
int step_deploy_next(Deployment *d, const StepRunResult *prev);
int step_cleanup_next(Deployment *d, const StepRunResult *prev);

/* Refs a deploy may ask for: "HEAD", a commit SHA (7-40 or 64 hex) or a
 * branch name that git_ref_is_valid() accepts. */
bool ref_is_commit_sha(const char *ref);
bool deploy_ref_is_valid(const char *ref);

/* <registry>/<app>:<sha12>, or <app>:<sha12> without a registry. */
int deployment_image_name(Deployment *d, char **ret);

/* Removes the clone's GIT_ASKPASS directory if it still exists. */
void step_clone_abort(Deployment *d);

/* Stops the deploy step (its Kubernetes request, or a cron app's timer
 * operation); the step ends cancelled. */
void step_deploy_cancel(Deployment *d);

/* The migrate step of a rollback with --restore-db. */
int step_restore_start(Deployment *d);

/* Helper for drivers: did the command succeed? If not, record why. */
int step_command_check(Deployment *d, const StepRunResult *r, const char *what);
