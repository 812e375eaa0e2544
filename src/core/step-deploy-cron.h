/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "deployment.h"

/* The deploy step of a cron app (role: cron), called by step-deploy.c:
 * points the app's systemd timer at the new image (cron-timer.h). */

/* Starts the step: 1 when the timer is being set up (pipeline_step_continue()
 * follows), negative errno after deployment_fail() said why. */
int step_deploy_cron_start(Deployment *d);

/* Abandons the step; the app keeps its recorded timer (the last good
 * deploy's). The step ends cancelled. */
void step_deploy_cron_cancel(Deployment *d);
