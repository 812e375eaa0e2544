/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Asynchronous PostgreSQL client on sd-event.
 *
 * One connection, driven entirely from the event loop: libpq's non-blocking
 * connect (PQconnectStartParams/PQconnectPoll) and query API on its socket.
 * Queries run one at a time from a FIFO queue. On every (re)connect the
 * schema (the *.sql files of schema_dir) is applied in one transaction; only
 * then is the database "up". When the server goes away, in-flight and queued
 * queries fail with result=NULL and the connection is re-established with
 * exponential backoff. */

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "macro.h"

typedef struct Db Db;

/* result is NULL when the query could not run (connection lost, not connected,
 * shutting down); error then says why. For a failed statement result is
 * non-NULL with PQresultStatus != PGRES_TUPLES_OK/PGRES_COMMAND_OK and error
 * set (the server's primary message). The callback does not own result: it is
 * PQclear'ed after the callback returns. */
typedef void (*DbResultCallback)(Db *db, const PGresult *result, const char *error, void *userdata);

/* Called on each transition: up=true once connected and the schema is applied,
 * up=false when an up connection is lost. Not called from db_free(). */
typedef void (*DbStateCallback)(Db *db, bool up, void *userdata);

/* conninfo: a libpq connection string or URI (-EINVAL if it does not parse).
 * schema_dir: directory whose *.sql files are applied in lexical order on
 * each connect; read here, synchronously. NULL: no schema files. */
int db_new(sd_event *event, const char *conninfo, const char *schema_dir, Db **ret);

/* NULL-safe. Cancels pending queries: their callbacks get result=NULL,
 * error="shutting down" before this returns. Safe to call from a callback. */
Db *db_free(Db *db);

void db_set_state_callback(Db *db, DbStateCallback cb, void *userdata);

/* Liveness check: when the connection has been idle for interval_usec, a
 * "SELECT 1" is sent; no answer within timeout_usec means the connection is
 * dead. Defaults: 5 s and 5 s. interval_usec=0 disables the check. */
void db_set_liveness_check(Db *db, uint64_t interval_usec, uint64_t timeout_usec);

/* Begin connecting. Never fails because the server is down (that is retried
 * with backoff); idempotent. */
int db_start(Db *db);

/* Connected and schema applied. */
bool db_is_up(Db *db);

/* The last connection or schema error, on one line, with any password from
 * the connection string masked; NULL once the database is up. */
const char *db_last_error(Db *db);

/* Queue a statement with text parameters (params[i] NULL = SQL NULL); the
 * strings are copied. cb may be NULL. Returns -ENOTCONN right away when the
 * database is not up (cb is not called then), -ENOBUFS when the queue is full.
 * The callback is never called from within db_query() itself. */
int db_query(Db *db, const char *sql, int n_params, const char *const *params,
             DbResultCallback cb, void *userdata);

DEFINE_TRIVIAL_CLEANUP_FUNC(Db*, db_free);
