/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Reading deployments back from PostgreSQL, for the HTTP API and the D-Bus
 * API alike: the statements and the decoding of their rows, in one place,
 * so both answer the same question the same way. The queries are
 * asynchronous (db_query()); the callbacks decode rows with the readers
 * below. Strings point into the PGresult and live as long as it. */

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#include "db.h"

#define DEPLOY_QUERY_LIMIT_DEFAULT 50U
#define DEPLOY_QUERY_LIMIT_MAX 500U
#define DEPLOY_QUERY_OFFSET_MAX 1000000000U

/* A deployments row; SQL NULL is a NULL string, 0 for times and ids. */
typedef struct DeploymentRow {
        int64_t id;
        const char *app, *ref, *commit_sha, *image_tag, *status, *step, *error;
        uint64_t queued_usec, started_usec, finished_usec;
        const char *source, *requested_by;
        int64_t rollback_of;
} DeploymentRow;

/* A deployment_steps row. */
typedef struct StepRow {
        const char *name, *status;
        uint64_t started_usec, finished_usec;
        bool has_duration, has_exit_code;
        int64_t duration_ms;
        int32_t exit_code;
        const char *unit, *output_tail;
} StepRow;

/* The deployment whose columns start at col; false when there is none (its
 * id is NULL: an outer join found nothing). */
bool deployment_row_read(const PGresult *res, int row, int col, DeploymentRow *ret);

/* The history, newest first: app and status NULL for all. Rows:
 * (total matching, deployment...), at least one; the deployment columns
 * (from DEPLOY_QUERY_LIST_COL) are NULL when the page is empty. */
#define DEPLOY_QUERY_LIST_COL 1
int deploy_query_list(Db *db, const char *app, const char *status, uint64_t limit, uint64_t offset,
                      DbResultCallback cb, void *userdata);

/* One deployment with its steps in pipeline order: one row per step, each
 * (deployment..., step... from DEPLOY_QUERY_STEP_COL); the step columns are
 * NULL when it has no steps yet. No rows: no such deployment. */
int deploy_query_one(Db *db, int64_t id, DbResultCallback cb, void *userdata);
bool deploy_query_step_read(const PGresult *res, int row, StepRow *ret);

/* The last deployment of each of the n apps (ids that are not valid app
 * ids are left out): one row per app that has one. */
int deploy_query_last(Db *db, char *const *apps, size_t n, DbResultCallback cb, void *userdata);

/* A snapshots row; deployment_id 0 when it was made by hand. */
typedef struct SnapshotRow {
        int64_t id;
        const char *database, *name;   /* name: the dump's file name, without its directory */
        uint64_t size_bytes, created_usec;
        int64_t deployment_id;
} SnapshotRow;

/* The app's database snapshots, newest first, at most
 * DEPLOY_QUERY_SNAPSHOTS_MAX of them. */
#define DEPLOY_QUERY_SNAPSHOTS_MAX 1000U
int deploy_query_snapshots(Db *db, const char *app, DbResultCallback cb, void *userdata);
bool deploy_query_snapshot_read(const PGresult *res, int row, SnapshotRow *ret);

/* Whether res is a successful query's answer. */
static inline bool deploy_query_ok(const PGresult *res) {
        return res && PQresultStatus(res) == PGRES_TUPLES_OK;
}
