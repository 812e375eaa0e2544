/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Asynchronous PostgreSQL client on sd-event.
 *
 * Life of a connection:
 *
 *   IDLE --db_start--> CONNECTING --PQconnectPoll OK--> SCHEMA --applied--> UP
 *                          ^  |                            |                  |
 *                          |  +--- failure or timeout -----+------ loss ------+
 *                          |                               v
 *                          +------- backoff timer ----- WAITING
 *
 * Every failure goes through db_fail(): close the connection, fail the queries
 * (result=NULL), report "down" if it was up, and schedule the next attempt with
 * exponential backoff (100 ms doubling to 5 s, +-10% jitter); the backoff is
 * reset once the database is up again.
 *
 * The event loop never waits on the server: connecting is PQconnectPoll on the
 * socket (re-registered after every poll: libpq may close it and open another,
 * possibly under the same number), queries are PQsendQuery[Params] + PQflush
 * (EPOLLOUT while output is pending), results PQconsumeInput/PQisBusy/
 * PQgetResult when readable. The socket is always watched for input, so a
 * server that closes an idle connection (at shutdown it sends a FATAL and
 * closes) is noticed at once; a silently dead one is found by a cheap
 * "SELECT 1" when idle (and TCP keepalives for long queries).
 *
 * Known limit: libpq resolves host names synchronously in PQconnectStartParams
 * (use hostaddr=, a unix socket or /etc/hosts names to avoid DNS waits).
 *
 * User callbacks may call any db_*() function, db_free() included: handlers
 * hold a reference for their duration and re-check the state after each
 * callback.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>

#include "db.h"
#include "log.h"
#include "macro.h"
#include "schema.h"

#define USEC_PER_MSEC UINT64_C(1000)
#define USEC_PER_SEC  UINT64_C(1000000)

#define DB_QUEUE_MAX                     10000U
#define DB_BACKOFF_MIN_USEC              (100 * USEC_PER_MSEC)
#define DB_BACKOFF_MAX_USEC              (5 * USEC_PER_SEC)
#define DB_CONNECT_TIMEOUT_DEFAULT_USEC  (10 * USEC_PER_SEC)
#define DB_LIVENESS_INTERVAL_USEC        (5 * USEC_PER_SEC)
#define DB_LIVENESS_TIMEOUT_USEC         (5 * USEC_PER_SEC)
#define DB_TIMER_ACCURACY_USEC           (1 * USEC_PER_MSEC)
#define DB_MAX_PARAMS                    65535

typedef enum DbPhase {
        DB_PHASE_IDLE,       /* db_start() not called yet */
        DB_PHASE_WAITING,    /* backing off before the next attempt */
        DB_PHASE_CONNECTING, /* PQconnectPoll() in progress */
        DB_PHASE_SCHEMA,     /* connected, applying the schema */
        DB_PHASE_UP,
        DB_PHASE_CLOSED,     /* db_free() called */
} DbPhase;

typedef struct DbQuery DbQuery;
struct DbQuery {
        DbQuery *next;
        char *sql;
        char **params;
        int n_params;
        bool simple;   /* simple query protocol: several statements, no parameters */
        bool internal; /* schema or liveness: dropped silently when the connection fails */
        DbResultCallback callback;
        void *userdata;
};

struct Db {
        unsigned n_ref;
        sd_event *event;
        DbPhase phase;

        char *conninfo;
        char *secrets[2]; /* passwords to mask in messages: conninfo's, $PGPASSWORD */
        Schema *schema;

        PGconn *conn;
        uint64_t generation; /* bumped each time a connection is closed */
        bool flushing;       /* output pending: watch EPOLLOUT */
        char *fatal_message; /* a FATAL the server sent before closing */

        sd_event_source *io_source;
        sd_event_source *connect_timer;
        sd_event_source *retry_timer;
        sd_event_source *liveness_timer;
        sd_event_source *dispatch_source;

        uint64_t connect_timeout_usec;
        uint64_t backoff_usec;
        uint64_t liveness_interval_usec;
        uint64_t liveness_timeout_usec;
        bool liveness_pending;
        uint64_t rng;

        DbQuery *current;          /* in flight */
        PGresult *current_result;  /* its result so far */
        DbQuery *queue_head, *queue_tail;
        size_t n_queued;

        SchemaApply *apply;
        char *last_error;

        DbStateCallback state_callback;
        void *state_userdata;
};

/* ---- Small helpers -------------------------------------------------------------------- */

static DbQuery *db_query_free(DbQuery *q) {
        if (!q)
                return NULL;
        free(q->sql);
        for (int i = 0; i < q->n_params; i++)
                free(q->params[i]);
        free(q->params);
        free(q);
        return NULL;
}

/* Messages from libpq span lines ("...failed: ...\n\tIs the server running..."): one line. */
static char *one_line(const char *s) {
        char *t, *o;
        bool space = false;

        t = malloc(strlen(s) + 1);
        if (!t)
                return NULL;
        o = t;
        for (const char *c = s; *c; c++) {
                if (*c == '\n' || *c == '\t' || *c == '\r' || *c == ' ') {
                        space = o != t;
                        continue;
                }
                if (space)
                        *o++ = ' ';
                space = false;
                *o++ = *c;
        }
        *o = 0;
        return t;
}

static char *replace_all(const char *s, const char *needle, const char *with) {
        size_t n = strlen(needle), w = strlen(with), count = 0;
        const char *p;
        char *t, *o;

        for (p = s; (p = strstr(p, needle)); p += n)
                count++;
        if (count == 0)
                return strdup(s);

        t = malloc(strlen(s) - count * n + count * w + 1);
        if (!t)
                return NULL;
        o = t;
        for (p = s;;) {
                const char *hit = strstr(p, needle);

                if (!hit)
                        break;
                memcpy(o, p, (size_t) (hit - p));
                o += hit - p;
                memcpy(o, with, w);
                o += w;
                p = hit + n;
        }
        strcpy(o, p);
        return t;
}

/* One line, passwords masked: the only form in which a message leaves this file. */
static char *db_sanitize(Db *db, const char *s) {
        _cleanup_free_ char *t = one_line(s ?: "");

        if (!t)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(db->secrets); i++) {
                char *u;

                if (!db->secrets[i] || !db->secrets[i][0])
                        continue;
                u = replace_all(t, db->secrets[i], "********");
                if (!u)
                        return NULL;
                free(t);
                t = u;
        }
        return TAKE_PTR(t);
}

static const char *result_error(const PGresult *res) {
        const char *m;

        switch (PQresultStatus(res)) {
        case PGRES_TUPLES_OK:
        case PGRES_COMMAND_OK:
                return NULL;
        case PGRES_EMPTY_QUERY:
                return "empty query";
        default:
                break;
        }
        m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
        if (m && *m)
                return m;
        m = PQresultErrorMessage(res);
        if (m && *m)
                return m;
        return PQresStatus(PQresultStatus(res));
}

static bool result_failed(const PGresult *res) {
        ExecStatusType st = PQresultStatus(res);

        return st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK && st != PGRES_EMPTY_QUERY;
}

static uint64_t db_random(Db *db) {
        /* xorshift64*: jitter only, nothing secret */
        db->rng ^= db->rng >> 12;
        db->rng ^= db->rng << 25;
        db->rng ^= db->rng >> 27;
        return db->rng * UINT64_C(2685821657736338717);
}

static Db *db_ref(Db *db) {
        db->n_ref++;
        return db;
}

static void db_unref(Db *db) {
        if (--db->n_ref > 0)
                return;

        /* db_free() has already closed the connection and released the sources. */
        free(db->conninfo);
        for (size_t i = 0; i < ELEMENTSOF(db->secrets); i++)
                if (db->secrets[i]) {
                        explicit_bzero(db->secrets[i], strlen(db->secrets[i]));
                        free(db->secrets[i]);
                }
        schema_free(db->schema);
        free(db->fatal_message);
        free(db->last_error);
        sd_event_unref(db->event);
        free(db);
}

static int db_arm_timer(Db *db, sd_event_source **s, uint64_t usec,
                        sd_event_time_handler_t handler, const char *description) {
        int r;

        if (*s) {
                r = sd_event_source_set_time_relative(*s, usec);
                if (r < 0)
                        return r;
                return sd_event_source_set_enabled(*s, SD_EVENT_ONESHOT);
        }

        r = sd_event_add_time_relative(db->event, s, CLOCK_MONOTONIC, usec, DB_TIMER_ACCURACY_USEC,
                                       handler, db);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(*s, description);
        return 0;
}

static void db_disarm_timer(sd_event_source *s) {
        if (s)
                (void) sd_event_source_set_enabled(s, SD_EVENT_OFF);
}

/* ---- Queries -------------------------------------------------------------------------- */

/* Hands a finished query to its owner; the Db may be freed or its connection
 * closed by the callback: callers re-check. */
static void db_complete(Db *db, DbQuery *q, PGresult *res, const char *error) {
        if (!error)
                error = res ? result_error(res) : "no result";

        if (q->callback)
                q->callback(db, res, error, q->userdata);

        PQclear(res);
        db_query_free(q);
}

/* Takes every query off the connection and fails it with result=NULL; internal
 * ones are dropped without a call (their owner is reset by the caller). */
static void db_purge_queries(Db *db, const char *error) {
        DbQuery *list;

        if (db->current) {
                db->current->next = db->queue_head;
                list = TAKE_PTR(db->current);
        } else
                list = db->queue_head;
        db->queue_head = db->queue_tail = NULL;
        db->n_queued = 0;
        PQclear(TAKE_PTR(db->current_result));
        db_disarm_timer(db->dispatch_source);

        while (list) {
                DbQuery *q = list;

                list = q->next;
                if (q->internal || !q->callback) {
                        db_query_free(q);
                        continue;
                }
                q->callback(db, NULL, error, q->userdata);
                db_query_free(q);
        }
}

static int db_enqueue(Db *db, const char *sql, bool simple, bool internal, int n_params,
                      const char *const *params, DbResultCallback cb, void *userdata) {
        DbQuery *q;
        int r;

        if (db->n_queued >= DB_QUEUE_MAX)
                return -ENOBUFS;

        q = calloc(1, sizeof(DbQuery));
        if (!q)
                return -ENOMEM;
        *q = (DbQuery) {
                .simple = simple,
                .internal = internal,
                .callback = cb,
                .userdata = userdata,
        };
        q->sql = strdup(sql);
        if (!q->sql)
                goto oom;
        if (n_params > 0) {
                q->params = calloc((size_t) n_params, sizeof(char *));
                if (!q->params)
                        goto oom;
                q->n_params = n_params;
                for (int i = 0; i < n_params; i++)
                        if (params[i]) {
                                q->params[i] = strdup(params[i]);
                                if (!q->params[i])
                                        goto oom;
                        }
        }

        /* Always dispatched from the loop: a callback never runs inside db_query(). */
        r = sd_event_source_set_enabled(db->dispatch_source, SD_EVENT_ONESHOT);
        if (r < 0) {
                db_query_free(q);
                return r;
        }

        if (db->queue_tail)
                db->queue_tail->next = q;
        else
                db->queue_head = q;
        db->queue_tail = q;
        db->n_queued++;
        return 0;

oom:
        db_query_free(q);
        return -ENOMEM;
}

/* ---- Connection ----------------------------------------------------------------------- */

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata);
static int on_connect_timeout(sd_event_source *s, uint64_t usec, void *userdata);
static int on_retry(sd_event_source *s, uint64_t usec, void *userdata);
static int on_liveness(sd_event_source *s, uint64_t usec, void *userdata);

static void db_close_connection(Db *db) {
        /* The io source goes first, while its fd is still open. */
        db->io_source = sd_event_source_disable_unref(db->io_source);
        db_disarm_timer(db->connect_timer);
        db_disarm_timer(db->liveness_timer);
        db->liveness_pending = false;
        db->flushing = false;
        if (db->conn) {
                PQfinish(db->conn);
                db->conn = NULL;
                db->generation++;
        }
        db->fatal_message = mfree(db->fatal_message);
}

static void db_schedule_reconnect(Db *db) {
        uint64_t delay = db->backoff_usec, jitter = delay / 5;
        int r;

        if (jitter > 0)
                delay = delay - jitter / 2 + db_random(db) % (jitter + 1);
        db->backoff_usec = MIN(db->backoff_usec * 2, DB_BACKOFF_MAX_USEC);
        db->phase = DB_PHASE_WAITING;

        log_debug("Database: next connection attempt in %" PRIu64 " ms.", delay / USEC_PER_MSEC);
        r = db_arm_timer(db, &db->retry_timer, delay, on_retry, "db-retry");
        if (r < 0)
                log_debug_errno(r, "Database: cannot arm the reconnect timer: %m");
}

/* The one failure path: connect error, timeout, loss, schema failure. */
static void db_fail(Db *db, const char *format, ...) _printf_(2, 3);
static void db_fail(Db *db, const char *format, ...) {
        _cleanup_free_ char *raw = NULL, *msg = NULL;
        bool was_up = db->phase == DB_PHASE_UP;
        va_list ap;

        va_start(ap, format);
        if (vasprintf(&raw, format, ap) < 0)
                raw = NULL;
        va_end(ap);
        msg = db_sanitize(db, raw ?: "database connection failed");

        free(db->last_error);
        db->last_error = msg ? strdup(msg) : NULL;
        log_debug("Database: %s", strna(msg));

        db_close_connection(db);
        db->apply = schema_apply_free(db->apply); /* its queries are dropped below, uncalled */
        db->phase = DB_PHASE_WAITING;             /* db_query() says -ENOTCONN from now on */

        db_ref(db);
        db_purge_queries(db, msg ?: "database connection failed");
        if (db->phase != DB_PHASE_CLOSED) {
                db_schedule_reconnect(db);
                if (was_up && db->state_callback)
                        db->state_callback(db, false, db->state_userdata);
        }
        db_unref(db);
}

/* After the connection broke: the FATAL the server sent, if any, says more than
 * "server closed the connection unexpectedly". */
static void db_fail_lost(Db *db) {
        const char *why = db->fatal_message;

        if (!why && db->current_result) {
                const char *severity = PQresultErrorField(db->current_result, PG_DIAG_SEVERITY_NONLOCALIZED);

                if (severity && (streq(severity, "FATAL") || streq(severity, "PANIC")))
                        why = PQresultErrorField(db->current_result, PG_DIAG_MESSAGE_PRIMARY);
        }
        if (!why)
                why = PQerrorMessage(db->conn);

        db_fail(db, "connection lost: %s", why ?: "unknown error");
}

static void on_notice(void *userdata, const PGresult *res) {
        Db *db = userdata;
        const char *severity = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
        const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
        _cleanup_free_ char *m = db_sanitize(db, PQresultErrorMessage(res));

        log_debug("PostgreSQL: %s", strna(m));

        /* A FATAL outside a query (e.g. "terminating connection due to administrator
         * command" on an idle connection) comes here; the connection closes next. */
        if (primary && severity && (streq(severity, "FATAL") || streq(severity, "PANIC"))) {
                free(db->fatal_message);
                db->fatal_message = strdup(primary);
        }
}

static int db_watch(Db *db, uint32_t events) {
        int fd, r;

        /* Drop the old registration first: libpq may have closed that socket and
         * opened another under the same number. */
        db->io_source = sd_event_source_disable_unref(db->io_source);

        fd = PQsocket(db->conn);
        if (fd < 0)
                return -EBADF;
        r = sd_event_add_io(db->event, &db->io_source, fd, events, on_io, db);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(db->io_source, "db-io");
        return 0;
}

static void db_update_io_events(Db *db) {
        int r;

        r = sd_event_source_set_io_events(db->io_source, EPOLLIN | (db->flushing ? EPOLLOUT : 0));
        if (r < 0)
                db_fail(db, "cannot watch the database socket: %s", strerror(-r));
}

static void db_flush(Db *db) {
        int r;

        r = PQflush(db->conn);
        if (r < 0)
                return db_fail_lost(db);
        db->flushing = r > 0;
        db_update_io_events(db);
}

static void db_dispatch(Db *db) {
        DbQuery *q;
        int ok;

        if (db->current || !db->queue_head || !db->conn)
                return;
        if (db->phase != DB_PHASE_SCHEMA && db->phase != DB_PHASE_UP)
                return;

        q = db->queue_head;
        db->queue_head = q->next;
        if (!db->queue_head)
                db->queue_tail = NULL;
        q->next = NULL;
        db->n_queued--;
        db->current = q;

        if (q->simple)
                ok = PQsendQuery(db->conn, q->sql);
        else
                ok = PQsendQueryParams(db->conn, q->sql, q->n_params, NULL,
                                       (const char *const *) q->params, NULL, NULL, 0);
        if (!ok)
                /* Parameters were checked, so this is the connection (or memory):
                 * start over with a fresh one. */
                return db_fail(db, "cannot send query: %s", PQerrorMessage(db->conn));

        db_flush(db);
}

static int on_dispatch(sd_event_source *s, void *userdata) {
        Db *db = db_ref(userdata);

        db_dispatch(db);
        db_unref(db);
        return 0;
}

/* Collects results of the query in flight; completes it when libpq has no more. */
static void db_process_results(Db *db) {
        uint64_t generation = db->generation;

        while (db->current && !PQisBusy(db->conn)) {
                PGresult *res = PQgetResult(db->conn);
                DbQuery *q;

                if (res) {
                        switch (PQresultStatus(res)) {
                        case PGRES_COPY_IN:
                        case PGRES_COPY_OUT:
                        case PGRES_COPY_BOTH:
                                PQclear(res);
                                return db_fail(db, "COPY is not supported, resetting the connection");
                        default:
                                break;
                        }
                        /* Several statements (simple protocol): keep the first error, else the last. */
                        if (db->current_result && result_failed(db->current_result))
                                PQclear(res);
                        else {
                                PQclear(db->current_result);
                                db->current_result = res;
                        }
                        continue;
                }

                if (PQstatus(db->conn) == CONNECTION_BAD)
                        return db_fail_lost(db);

                q = TAKE_PTR(db->current);
                db_complete(db, q, TAKE_PTR(db->current_result), NULL);
                if (db->phase == DB_PHASE_CLOSED || db->generation != generation)
                        return;

                db_dispatch(db);
                if (db->phase == DB_PHASE_CLOSED || db->generation != generation)
                        return;
        }

        if (PQstatus(db->conn) == CONNECTION_BAD)
                db_fail_lost(db);
}

static void db_connected(Db *db);

static void db_connect_continue(Db *db) {
        uint32_t events;
        int r;

        switch (PQconnectPoll(db->conn)) {
        case PGRES_POLLING_READING:
                events = EPOLLIN;
                break;
        case PGRES_POLLING_WRITING:
                events = EPOLLOUT;
                break;
        case PGRES_POLLING_OK:
                return db_connected(db);
        default:
                return db_fail(db, "%s", PQerrorMessage(db->conn));
        }

        r = db_watch(db, events);
        if (r < 0)
                db_fail(db, "cannot watch the database socket: %s", strerror(-r));
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Db *db = db_ref(userdata);
        uint64_t generation = db->generation;

        switch (db->phase) {
        case DB_PHASE_CONNECTING:
                db_connect_continue(db);
                break;

        case DB_PHASE_SCHEMA:
        case DB_PHASE_UP:
                /* Readable with nothing in flight is how an idle connection learns that
                 * the server went away: consume it, libpq then reports the loss. */
                if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR))
                        if (!PQconsumeInput(db->conn)) {
                                db_fail_lost(db);
                                break;
                        }
                if (db->flushing) {
                        db_flush(db);
                        if (db->generation != generation || db->phase == DB_PHASE_CLOSED)
                                break;
                }
                for (PGnotify *n; (n = PQnotifies(db->conn)); )
                        PQfreemem(n);
                db_process_results(db);
                break;

        default:
                break;
        }

        db_unref(db);
        return 0;
}

static void on_schema_done(Db *db, int r, const char *error, void *userdata) {
        db->apply = schema_apply_free(db->apply);

        if (r < 0)
                return db_fail(db, "%s", error);

        db->phase = DB_PHASE_UP;
        db->backoff_usec = DB_BACKOFF_MIN_USEC;
        db->last_error = mfree(db->last_error);
        log_debug("Database: up, schema applied.");

        if (db->liveness_interval_usec > 0) {
                r = db_arm_timer(db, &db->liveness_timer, db->liveness_interval_usec, on_liveness,
                                 "db-liveness");
                if (r < 0)
                        log_debug_errno(r, "Database: cannot arm the liveness timer: %m");
        }

        if (db->state_callback)
                db->state_callback(db, true, db->state_userdata);
}

static void db_connected(Db *db) {
        int r;

        db_disarm_timer(db->connect_timer);

        if (PQsetnonblocking(db->conn, 1) < 0)
                return db_fail(db, "cannot make the connection non-blocking: %s",
                               PQerrorMessage(db->conn));

        r = db_watch(db, EPOLLIN);
        if (r < 0)
                return db_fail(db, "cannot watch the database socket: %s", strerror(-r));

        db->phase = DB_PHASE_SCHEMA;
        log_debug("Database: connected (server %d), applying the schema.", PQserverVersion(db->conn));

        r = schema_apply_start(db, db->schema, on_schema_done, db, &db->apply);
        if (r < 0)
                db_fail(db, "cannot start applying the schema: %s", strerror(-r));
}

static void db_connect(Db *db) {
        /* Defaults go before "dbname": the connection string overrides them. libpq
         * ignores connect_timeout in PQconnectPoll; we run our own timer. */
        static const char *const keywords[] = {
                "fallback_application_name",
                "keepalives",
                "keepalives_idle",
                "keepalives_interval",
                "keepalives_count",
                "tcp_user_timeout",
                "dbname",
                NULL,
        };
        const char *const values[] = {
                "nornd", "1", "10", "5", "3", "30000", db->conninfo, NULL,
        };
        int r;

        db->phase = DB_PHASE_CONNECTING;
        db->conn = PQconnectStartParams(keywords, values, /* expand_dbname= */ 1);
        if (!db->conn)
                return db_fail(db, "cannot start connecting: out of memory");
        PQsetNoticeReceiver(db->conn, on_notice, db);

        if (PQstatus(db->conn) == CONNECTION_BAD)
                return db_fail(db, "%s", PQerrorMessage(db->conn));

        r = db_arm_timer(db, &db->connect_timer, db->connect_timeout_usec, on_connect_timeout,
                         "db-connect-timeout");
        if (r < 0)
                return db_fail(db, "cannot arm the connect timer: %s", strerror(-r));

        /* Before the first PQconnectPoll(), wait as for PGRES_POLLING_WRITING. */
        r = db_watch(db, EPOLLOUT);
        if (r < 0)
                db_fail(db, "cannot watch the database socket: %s", strerror(-r));
}

static int on_connect_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Db *db = db_ref(userdata);

        if (db->phase == DB_PHASE_CONNECTING)
                db_fail(db, "timed out connecting to the database after %" PRIu64 " ms",
                        db->connect_timeout_usec / USEC_PER_MSEC);
        db_unref(db);
        return 0;
}

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        Db *db = db_ref(userdata);

        if (db->phase == DB_PHASE_WAITING)
                db_connect(db);
        db_unref(db);
        return 0;
}

static void on_liveness_result(Db *db, const PGresult *result, const char *error, void *userdata) {
        int r;

        db->liveness_pending = false;
        if (db->phase != DB_PHASE_UP || db->liveness_interval_usec == 0)
                return;
        r = db_arm_timer(db, &db->liveness_timer, db->liveness_interval_usec, on_liveness, "db-liveness");
        if (r < 0)
                log_debug_errno(r, "Database: cannot arm the liveness timer: %m");
}

static int on_liveness(sd_event_source *s, uint64_t usec, void *userdata) {
        Db *db = db_ref(userdata);
        int r;

        if (db->phase != DB_PHASE_UP || db->liveness_interval_usec == 0)
                goto finish;

        if (db->liveness_pending) {
                db_fail(db, "liveness check: no answer from the server within %" PRIu64 " ms",
                        db->liveness_timeout_usec / USEC_PER_MSEC);
                goto finish;
        }

        /* Busy connections are checked by their own traffic (and TCP keepalives). */
        if (db->current || db->queue_head) {
                r = db_arm_timer(db, &db->liveness_timer, db->liveness_interval_usec, on_liveness,
                                 "db-liveness");
                goto check;
        }

        r = db_enqueue(db, "SELECT 1", false, true, 0, NULL, on_liveness_result, NULL);
        if (r >= 0) {
                db->liveness_pending = true;
                r = db_arm_timer(db, &db->liveness_timer, db->liveness_timeout_usec, on_liveness,
                                 "db-liveness");
        }
check:
        if (r < 0)
                log_debug_errno(r, "Database: liveness check failed to start: %m");
finish:
        db_unref(db);
        return 0;
}

/* ---- Public API ----------------------------------------------------------------------- */

int db_new(sd_event *event, const char *conninfo, const char *schema_dir, Db **ret) {
        _cleanup_(db_freep) Db *db = NULL;
        PQconninfoOption *options;
        char *errmsg = NULL;
        struct timespec ts;
        const char *e;
        int r;

        if (!event || !conninfo || !ret)
                return -EINVAL;

        db = calloc(1, sizeof(Db));
        if (!db)
                return -ENOMEM;
        db->n_ref = 1;
        db->event = sd_event_ref(event);
        db->phase = DB_PHASE_IDLE;
        db->connect_timeout_usec = DB_CONNECT_TIMEOUT_DEFAULT_USEC;
        db->backoff_usec = DB_BACKOFF_MIN_USEC;
        db->liveness_interval_usec = DB_LIVENESS_INTERVAL_USEC;
        db->liveness_timeout_usec = DB_LIVENESS_TIMEOUT_USEC;
        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        db->rng = ((uint64_t) ts.tv_nsec << 20) ^ (uint64_t) ts.tv_sec ^ (uint64_t) (uintptr_t) db ^
                  ((uint64_t) getpid() << 40);
        if (db->rng == 0)
                db->rng = 1;

        /* Validate now; the parser's message may quote the string (and a password). */
        options = PQconninfoParse(conninfo, &errmsg);
        if (!options) {
                if (!errmsg)
                        return -ENOMEM;
                PQfreemem(errmsg);
                return log_debug_errno(-EINVAL, "Invalid database connection string.");
        }
        for (PQconninfoOption *o = options; o->keyword; o++) {
                if (!o->val)
                        continue;
                if (streq(o->keyword, "password"))
                        db->secrets[0] = strdup(o->val);
                else if (streq(o->keyword, "connect_timeout")) {
                        char *end;
                        long t;

                        errno = 0;
                        t = strtol(o->val, &end, 10);
                        if (errno == 0 && end != o->val && *end == 0 && t > 0 && t <= 3600)
                                db->connect_timeout_usec = (uint64_t) t * USEC_PER_SEC;
                }
        }
        PQconninfoFree(options);
        e = getenv("PGPASSWORD");
        if (e && *e)
                db->secrets[1] = strdup(e);

        db->conninfo = strdup(conninfo);
        if (!db->conninfo)
                return -ENOMEM;

        if (schema_dir) {
                r = schema_load(schema_dir, &db->schema);
                if (r < 0)
                        return r;
        } else {
                db->schema = calloc(1, sizeof(Schema));
                if (!db->schema)
                        return -ENOMEM;
        }

        r = sd_event_add_defer(event, &db->dispatch_source, on_dispatch, db);
        if (r < 0)
                return r;
        r = sd_event_source_set_enabled(db->dispatch_source, SD_EVENT_OFF);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(db->dispatch_source, "db-dispatch");

        *ret = TAKE_PTR(db);
        return 0;
}

Db *db_free(Db *db) {
        if (!db || db->phase == DB_PHASE_CLOSED)
                return NULL;

        db->phase = DB_PHASE_CLOSED;
        db_close_connection(db);
        db->connect_timer = sd_event_source_disable_unref(db->connect_timer);
        db->retry_timer = sd_event_source_disable_unref(db->retry_timer);
        db->liveness_timer = sd_event_source_disable_unref(db->liveness_timer);
        db->apply = schema_apply_free(db->apply);

        db_purge_queries(db, "shutting down");
        db->dispatch_source = sd_event_source_disable_unref(db->dispatch_source);

        db_unref(db);
        return NULL;
}

void db_set_state_callback(Db *db, DbStateCallback cb, void *userdata) {
        if (!db)
                return;
        db->state_callback = cb;
        db->state_userdata = userdata;
}

void db_set_liveness_check(Db *db, uint64_t interval_usec, uint64_t timeout_usec) {
        if (!db)
                return;
        db->liveness_interval_usec = interval_usec;
        db->liveness_timeout_usec = timeout_usec > 0 ? timeout_usec : DB_LIVENESS_TIMEOUT_USEC;
        if (db->phase == DB_PHASE_UP && !db->liveness_pending) {
                if (interval_usec == 0)
                        db_disarm_timer(db->liveness_timer);
                else
                        (void) db_arm_timer(db, &db->liveness_timer, interval_usec, on_liveness,
                                            "db-liveness");
        }
}

int db_start(Db *db) {
        if (!db)
                return -EINVAL;
        if (db->phase == DB_PHASE_CLOSED)
                return -ESHUTDOWN;
        if (db->phase != DB_PHASE_IDLE)
                return 0;

        /* No user callback can run from here: it is never up yet. */
        db_connect(db);
        return 0;
}

bool db_is_up(Db *db) {
        return db && db->phase == DB_PHASE_UP;
}

const char *db_last_error(Db *db) {
        return db ? db->last_error : NULL;
}

int db_query(Db *db, const char *sql, int n_params, const char *const *params,
             DbResultCallback cb, void *userdata) {
        if (!db || !sql || n_params < 0 || n_params > DB_MAX_PARAMS || (n_params > 0 && !params))
                return -EINVAL;
        if (db->phase != DB_PHASE_UP)
                return -ENOTCONN;

        return db_enqueue(db, sql, false, false, n_params, params, cb, userdata);
}

int db_submit_internal(Db *db, const char *sql, bool simple, int n_params,
                       const char *const *params, DbResultCallback cb, void *userdata) {
        if (!db || !sql || n_params < 0 || n_params > DB_MAX_PARAMS || (n_params > 0 && !params) ||
            (simple && n_params > 0))
                return -EINVAL;
        if (db->phase != DB_PHASE_SCHEMA && db->phase != DB_PHASE_UP)
                return -ENOTCONN;

        return db_enqueue(db, sql, simple, true, n_params, params, cb, userdata);
}

PGTransactionStatusType db_transaction_status(Db *db) {
        return db && db->conn ? PQtransactionStatus(db->conn) : PQTRANS_UNKNOWN;
}
