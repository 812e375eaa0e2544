/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deploy-query.h"
#include "infraspec.h"

/* The columns DeploymentRow is read from; the table is aliased "d". */
#define DEPLOYMENT_COLUMNS                                                              \
        "d.id, d.app, d.ref, d.commit_sha, d.image_tag, d.status, d.step, d.error, "   \
        "(extract(epoch FROM d.queued_at) * 1000000)::bigint, "                         \
        "(extract(epoch FROM d.started_at) * 1000000)::bigint, "                        \
        "(extract(epoch FROM d.finished_at) * 1000000)::bigint, "                       \
        "d.source, d.requested_by, d.rollback_of"
#define DEPLOYMENT_N_COLUMNS 14

#define STEP_COLUMNS                                                                    \
        "s.name, s.status, "                                                            \
        "(extract(epoch FROM s.started_at) * 1000000)::bigint, "                        \
        "(extract(epoch FROM s.finished_at) * 1000000)::bigint, "                       \
        "s.duration_ms, s.exit_code, s.scope_unit, s.output_tail"

static const char *column_string(const PGresult *res, int row, int col) {
        return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

static int64_t column_int(const PGresult *res, int row, int col) {
        return PQgetisnull(res, row, col) ? 0 : strtoll(PQgetvalue(res, row, col), NULL, 10);
}

/* Times before 1970 do not happen here; a negative one reads as unset. */
static uint64_t column_usec(const PGresult *res, int row, int col) {
        int64_t v = column_int(res, row, col);
        return v > 0 ? (uint64_t) v : 0;
}

bool deployment_row_read(const PGresult *res, int row, int col, DeploymentRow *ret) {
        if (row >= PQntuples(res) || col + DEPLOYMENT_N_COLUMNS > PQnfields(res) || PQgetisnull(res, row, col))
                return false;
        *ret = (DeploymentRow) {
                .id = column_int(res, row, col),
                .app = column_string(res, row, col + 1),
                .ref = column_string(res, row, col + 2),
                .commit_sha = column_string(res, row, col + 3),
                .image_tag = column_string(res, row, col + 4),
                .status = column_string(res, row, col + 5),
                .step = column_string(res, row, col + 6),
                .error = column_string(res, row, col + 7),
                .queued_usec = column_usec(res, row, col + 8),
                .started_usec = column_usec(res, row, col + 9),
                .finished_usec = column_usec(res, row, col + 10),
                .source = column_string(res, row, col + 11),
                .requested_by = column_string(res, row, col + 12),
                .rollback_of = column_int(res, row, col + 13),
        };
        return true;
}

bool deploy_query_step_read(const PGresult *res, int row, StepRow *ret) {
        int col = DEPLOYMENT_N_COLUMNS;

        if (row >= PQntuples(res) || col + 8 > PQnfields(res) || PQgetisnull(res, row, col))
                return false;
        *ret = (StepRow) {
                .name = column_string(res, row, col),
                .status = column_string(res, row, col + 1),
                .started_usec = column_usec(res, row, col + 2),
                .finished_usec = column_usec(res, row, col + 3),
                .has_duration = !PQgetisnull(res, row, col + 4),
                .duration_ms = column_int(res, row, col + 4),
                .has_exit_code = !PQgetisnull(res, row, col + 5),
                .exit_code = (int32_t) column_int(res, row, col + 5),
                .unit = column_string(res, row, col + 6),
                .output_tail = column_string(res, row, col + 7),
        };
        return true;
}

int deploy_query_list(Db *db, const char *app, const char *status, uint64_t limit, uint64_t offset,
                      DbResultCallback cb, void *userdata) {
        char limit_s[32], offset_s[32];

        snprintf(limit_s, sizeof(limit_s), "%" PRIu64, limit);
        snprintf(offset_s, sizeof(offset_s), "%" PRIu64, offset);
        const char *params[] = { app, status, limit_s, offset_s };
        /* One row at least: the total even when the page is empty. */
        return db_query(db,
                        "WITH f AS (SELECT * FROM deployments WHERE ($1::text IS NULL OR app = $1) "
                        "                                     AND ($2::text IS NULL OR status = $2)), "
                        "     t AS (SELECT count(*) AS n FROM f) "
                        "SELECT t.n, " DEPLOYMENT_COLUMNS " FROM t "
                        "LEFT JOIN LATERAL (SELECT * FROM f ORDER BY id DESC LIMIT $3::bigint OFFSET $4::bigint) d "
                        "ON true ORDER BY d.id DESC",
                        4, params, cb, userdata);
}

int deploy_query_one(Db *db, int64_t id, DbResultCallback cb, void *userdata) {
        char id_s[32];

        snprintf(id_s, sizeof(id_s), "%" PRIi64, id);
        const char *params[] = { id_s };
        return db_query(db,
                        "SELECT " DEPLOYMENT_COLUMNS ", " STEP_COLUMNS " "
                        "FROM deployments d LEFT JOIN deployment_steps s ON s.deployment_id = d.id "
                        "WHERE d.id = $1::bigint ORDER BY s.position",
                        1, params, cb, userdata);
}

int deploy_query_last(Db *db, char *const *apps, size_t n, DbResultCallback cb, void *userdata) {
        _cleanup_free_ char *ids = NULL;
        size_t size = 0;
        bool first = true;
        FILE *f;

        /* The ids as a PostgreSQL array literal: valid ids need no quoting. */
        f = open_memstream(&ids, &size);
        if (!f)
                return -ENOMEM;
        fputc('{', f);
        for (size_t i = 0; i < n; i++)
                if (app_id_is_valid(apps[i])) {
                        fprintf(f, "%s%s", first ? "" : ",", apps[i]);
                        first = false;
                }
        fputc('}', f);
        if (fclose(f) != 0)
                return -ENOMEM;

        const char *params[] = { ids };
        return db_query(db,
                        "SELECT DISTINCT ON (d.app) " DEPLOYMENT_COLUMNS " FROM deployments d "
                        "WHERE d.app = ANY($1::text[]) ORDER BY d.app, d.id DESC",
                        1, params, cb, userdata);
}

int deploy_query_snapshots(Db *db, const char *app, DbResultCallback cb, void *userdata) {
        char limit_s[16];

        snprintf(limit_s, sizeof(limit_s), "%u", DEPLOY_QUERY_SNAPSHOTS_MAX);
        const char *params[] = { app, limit_s };
        return db_query(db,
                        "SELECT id, database, regexp_replace(file, '^.*/', ''), size_bytes, "
                        "       (extract(epoch FROM created_at) * 1000000)::bigint, deployment_id "
                        "FROM snapshots WHERE app = $1 ORDER BY id DESC LIMIT $2::bigint",
                        2, params, cb, userdata);
}

bool deploy_query_snapshot_read(const PGresult *res, int row, SnapshotRow *ret) {
        if (row >= PQntuples(res) || PQnfields(res) < 6 || PQgetisnull(res, row, 0))
                return false;
        *ret = (SnapshotRow) {
                .id = column_int(res, row, 0),
                .database = column_string(res, row, 1) ?: "",
                .name = column_string(res, row, 2) ?: "",
                .size_bytes = (uint64_t) MAX(column_int(res, row, 3), 0),
                .created_usec = column_usec(res, row, 4),
                .deployment_id = column_int(res, row, 5),
        };
        return true;
}
