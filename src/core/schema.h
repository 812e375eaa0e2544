/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The database schema: the *.sql files of a directory, read once, applied on every connect.
 *
 * Application is one transaction on the Db's connection:
 *   BEGIN; SELECT pg_advisory_xact_lock(SCHEMA_LOCK_KEY);
 *   CREATE TABLE IF NOT EXISTS norn_schema (...); SELECT version FROM norn_schema;
 *   then per file not yet recorded: <file>; INSERT INTO norn_schema (version) VALUES (<file name>);
 *   COMMIT
 * The lock serialises daemons starting at once: the second one waits, then sees
 * the versions the first recorded. Any failure: ROLLBACK, nothing recorded. */

#include <libpq-fe.h>
#include <stddef.h>

#include "db.h"
#include "macro.h"

/* "NornSchm" as a big-endian 64-bit integer. */
#define SCHEMA_LOCK_KEY INT64_C(0x4e6f726e5363686d)

#define SCHEMA_FILE_MAX (16U * 1024U * 1024U)

typedef struct SchemaFile {
        char *version; /* the file name, e.g. "0001-init.sql" */
        char *sql;
} SchemaFile;

typedef struct Schema {
        SchemaFile *files; /* sorted by version, byte-wise */
        size_t n_files;
} Schema;

/* Reads every regular "*.sql" file (not hidden) of dir. A missing dir is an error. */
int schema_load(const char *dir, Schema **ret);
Schema *schema_free(Schema *schema);
DEFINE_TRIVIAL_CLEANUP_FUNC(Schema*, schema_free);

typedef struct SchemaApply SchemaApply;

/* r < 0 and error set (which file, the server's message) on failure. The
 * callback may free the SchemaApply. */
typedef void (*SchemaApplyCallback)(Db *db, int r, const char *error, void *userdata);

/* Start applying schema on db's freshly opened connection. The schema must
 * outlive the SchemaApply. */
int schema_apply_start(Db *db, const Schema *schema, SchemaApplyCallback cb, void *userdata,
                       SchemaApply **ret);
/* Only valid once the Db has dropped the internal queries (or none are pending). */
SchemaApply *schema_apply_free(SchemaApply *apply);
DEFINE_TRIVIAL_CLEANUP_FUNC(SchemaApply*, schema_apply_free);

/* Provided by db.c for schema.c only.
 * db_submit_internal() queues a statement also while the schema is being
 * applied; "simple" sends sql with the simple query protocol (several
 * statements allowed, no parameters). Internal callbacks always get a result:
 * when the connection fails they are dropped without being called. */
int db_submit_internal(Db *db, const char *sql, bool simple, int n_params,
                       const char *const *params, DbResultCallback cb, void *userdata);
PGTransactionStatusType db_transaction_status(Db *db);
