/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "scheduler.h"

/* Roll an app back to the image of an earlier successful deployment,
 * without rebuilding: a new deployment row (rollback_of = the one being
 * replaced) that runs only the deploy step, and with restore_db first
 * restores the app's database from the snapshot taken before the first
 * migration after the target. When it is deployed, the replaced deployment
 * becomes rolled_back.
 *
 * to_id 0: the last deployed deployment before the current one whose image
 * differs (failed and rolled back ones are skipped). Refused when nothing
 * was deployed, there is nothing to go back to, or the app is busy.
 * done() as for scheduler_submit(). */
int rollback_submit(Manager *m, const char *app, int64_t to_id, bool restore_db, const char *requested_by,
                    SchedulerDone done, void *userdata, char **ret_error);

/* Restore the app's database from one of its snapshots (by file name, as
 * listed), then deploy the image it runs now again: a new deployment with
 * the migrate step restoring and the deploy step. */
int restore_submit(Manager *m, const char *app, const char *snapshot, const char *requested_by,
                   SchedulerDone done, void *userdata, char **ret_error);
