/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Tests of the asynchronous PostgreSQL client (src/core/db.c) and the schema
 * (src/core/schema.c, the sql files) against a real, throwaway server.
 *
 * Environment (both required; the test fails without them):
 *   NORN_TEST_DATABASE_URL  libpq URL or conninfo of a role that may CREATE DATABASE;
 *                           the test creates and drops norn_test_<pid>_* databases.
 *   NORN_TEST_PGCTL         shell command prefix controlling that server; the test runs
 *                           "$NORN_TEST_PGCTL stop -m fast" and "$NORN_TEST_PGCTL start -w"
 *                           through /bin/sh; both must exit 0, start only once the server
 *                           accepts connections, and the server's output must not go to
 *                           the test's stdout/stderr (use pg_ctl -l <logfile>).
 *                           The liveness check sends SIGSTOP/SIGCONT to one server backend,
 *                           so the server must run on this machine, signallable by us.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config-build.h"
#include "db.h"
#include "log.h"
#include "macro.h"
#include "tap.h"

#define USEC_PER_MSEC UINT64_C(1000)
#define USEC_PER_SEC  UINT64_C(1000000)

static sd_event *event;
static const char *base_url;
static char *tmp_root;

/* ---- reporting ---- */

static void diag(const char *format, ...) _printf_(1, 2);
static void diag(const char *format, ...) {
        va_list ap;

        fputs("# ", stdout);
        va_start(ap, format);
        vprintf(format, ap);
        va_end(ap);
        fputc('\n', stdout);
        fflush(stdout);
}

/* Inside a check: print why a condition failed and remember it. */
#define expect(cond)                                                              \
        ({                                                                        \
                bool _ok_ = (cond);                                               \
                if (!_ok_)                                                        \
                        diag("%s:%d: expected %s", __FILE__, __LINE__, #cond);    \
                _ok_;                                                             \
        })

static bool contains(const char *haystack, const char *needle) {
        return haystack && strstr(haystack, needle);
}

/* ---- the loop ---- */

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

typedef bool (*Cond)(void *userdata);

/* Runs the loop until cond holds (true) or timeout (false). cond NULL: run for timeout. */
static bool run_until(Cond cond, void *userdata, uint64_t timeout_usec) {
        uint64_t end = now_usec() + timeout_usec;

        for (;;) {
                uint64_t now;

                if (cond && cond(userdata))
                        return true;
                now = now_usec();
                if (now >= end)
                        return cond ? cond(userdata) : true;
                if (sd_event_run(event, MIN(end - now, 50 * USEC_PER_MSEC)) < 0)
                        return false;
        }
}

typedef struct Ticker {
        sd_event_source *source;
        unsigned ticks;
        uint64_t last, max_gap;
} Ticker;

static int on_tick(sd_event_source *s, uint64_t usec, void *userdata) {
        Ticker *t = userdata;
        uint64_t now = now_usec();

        if (t->last > 0)
                t->max_gap = MAX(t->max_gap, now - t->last);
        t->last = now;
        t->ticks++;
        (void) sd_event_source_set_time_relative(s, 10 * USEC_PER_MSEC);
        (void) sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        return 0;
}

static int ticker_start(Ticker *t) {
        *t = (Ticker) {};
        return sd_event_add_time_relative(event, &t->source, CLOCK_MONOTONIC, 10 * USEC_PER_MSEC,
                                          USEC_PER_MSEC, on_tick, t);
}

static void ticker_stop(Ticker *t) {
        t->source = sd_event_source_disable_unref(t->source);
}

/* ---- Db observation ---- */

typedef struct Watch {
        Db *db;
        char transitions[64]; /* 'U' and 'D', in order */
        bool saw_error;       /* db_last_error() was ever set while polled */
} Watch;

static void on_state(Db *db, bool up, void *userdata) {
        Watch *w = userdata;
        size_t n = strlen(w->transitions);

        if (n + 1 < sizeof(w->transitions))
                w->transitions[n] = up ? 'U' : 'D';
}

static Db *watch_new(Watch *w, const char *url, const char *schema_dir) {
        Db *db = NULL;
        int r;

        *w = (Watch) {};
        r = db_new(event, url, schema_dir, &db);
        if (r < 0) {
                diag("db_new(): %s", strerror(-r));
                return NULL;
        }
        db_set_state_callback(db, on_state, w);
        w->db = db;
        return db;
}

static bool cond_up(void *userdata) {
        Watch *w = userdata;

        if (db_last_error(w->db))
                w->saw_error = true;
        return db_is_up(w->db);
}

static bool cond_down(void *userdata) {
        return !db_is_up(((Watch *) userdata)->db);
}

static bool cond_both_up(void *userdata) {
        Watch *w = userdata;
        bool a = cond_up(&w[0]), b = cond_up(&w[1]);

        return a && b;
}

static bool cond_both_down(void *userdata) {
        Watch *w = userdata;

        return !db_is_up(w[0].db) && !db_is_up(w[1].db);
}

/* ---- captured query results ---- */

typedef struct Capture {
        bool done;
        bool null_result;
        ExecStatusType status;
        char *error;
        int ntuples;
        int nfields;
        char *values[8]; /* first row; NULL for SQL NULL */
} Capture;

static void capture_clear(Capture *c) {
        free(c->error);
        for (size_t i = 0; i < ELEMENTSOF(c->values); i++)
                free(c->values[i]);
        *c = (Capture) {};
}

static void on_capture(Db *db, const PGresult *result, const char *error, void *userdata) {
        Capture *c = userdata;

        c->done = true;
        c->null_result = !result;
        c->error = error ? strdup(error) : NULL;
        if (!result)
                return;
        c->status = PQresultStatus(result);
        c->ntuples = PQntuples(result);
        c->nfields = PQnfields(result);
        if (c->ntuples > 0)
                for (int i = 0; i < c->nfields && i < (int) ELEMENTSOF(c->values); i++)
                        c->values[i] = PQgetisnull(result, 0, i) ? NULL : strdup(PQgetvalue(result, 0, i));
}

static bool cond_captured(void *userdata) {
        return ((Capture *) userdata)->done;
}

/* Submits and waits up to 10 s; c is cleared first. */
static bool query_wait(Db *db, const char *sql, int n, const char *const *params, Capture *c) {
        int r;

        capture_clear(c);
        r = db_query(db, sql, n, params, on_capture, c);
        if (r < 0) {
                diag("db_query(%s): %s", sql, strerror(-r));
                return false;
        }
        if (!run_until(cond_captured, c, 10 * USEC_PER_SEC)) {
                diag("no answer to %s", sql);
                return false;
        }
        if (c->error)
                diag("%s -> %s", sql, c->error);
        return true;
}

static bool query_ok(Db *db, const char *sql, int n, const char *const *params, Capture *c) {
        return query_wait(db, sql, n, params, c) && !c->null_result &&
               (c->status == PGRES_TUPLES_OK || c->status == PGRES_COMMAND_OK) && !c->error;
}

/* ---- synchronous helpers for setting up and verifying ---- */

static char *url_for(const char *dbname) {
        PQconninfoOption *options = PQconninfoParse(base_url, NULL);
        char *buf = NULL;
        size_t size = 0;
        FILE *f;

        if (!options)
                return NULL;
        f = open_memstream(&buf, &size);
        if (!f) {
                PQconninfoFree(options);
                return NULL;
        }
        for (PQconninfoOption *o = options; o->keyword; o++) {
                const char *v = streq(o->keyword, "dbname") ? NULL : o->val;

                if (!v || !*v)
                        continue;
                fprintf(f, "%s='", o->keyword);
                for (const char *c = v; *c; c++) {
                        if (*c == '\'' || *c == '\\')
                                fputc('\\', f);
                        fputc(*c, f);
                }
                fputs("' ", f);
        }
        fprintf(f, "dbname='%s'", dbname);
        fclose(f);
        PQconninfoFree(options);
        return buf;
}

/* First value of the first row of sql run in database dbname, or NULL. */
static char *sync_value(const char *dbname, const char *sql) {
        _cleanup_free_ char *url = url_for(dbname);
        PGconn *conn;
        PGresult *res;
        char *v = NULL;

        if (!url)
                return NULL;
        conn = PQconnectdb(url);
        if (PQstatus(conn) != CONNECTION_OK) {
                diag("connecting to %s: %s", dbname, PQerrorMessage(conn));
                PQfinish(conn);
                return NULL;
        }
        res = PQexec(conn, sql);
        if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0 && !PQgetisnull(res, 0, 0))
                v = strdup(PQgetvalue(res, 0, 0));
        else if (PQresultStatus(res) != PGRES_TUPLES_OK)
                diag("%s: %s", sql, PQresultErrorMessage(res));
        PQclear(res);
        PQfinish(conn);
        return v;
}

static bool sync_equals(const char *dbname, const char *sql, const char *expected) {
        _cleanup_free_ char *v = sync_value(dbname, sql);

        if (streq_ptr(v, expected))
                return true;
        diag("%s: got \"%s\", expected \"%s\"", sql, strna(v), strna(expected));
        return false;
}

static bool admin_exec(const char *sql) {
        _cleanup_free_ char *url = url_for("postgres");
        PGconn *conn;
        PGresult *res;
        bool ok;

        if (!url)
                return false;
        conn = PQconnectdb(url);
        if (PQstatus(conn) != CONNECTION_OK) {
                diag("connecting: %s", PQerrorMessage(conn));
                PQfinish(conn);
                return false;
        }
        res = PQexec(conn, sql);
        ok = PQresultStatus(res) == PGRES_COMMAND_OK;
        if (!ok)
                diag("%s: %s", sql, PQresultErrorMessage(res));
        PQclear(res);
        PQfinish(conn);
        return ok;
}

#define N_DATABASES 6
static char dbnames[N_DATABASES][64];

static bool create_databases(void) {
        for (size_t i = 0; i < N_DATABASES; i++) {
                char sql[512];

                snprintf(dbnames[i], sizeof(dbnames[i]), "norn_test_%ld_%zu", (long) getpid(), i);
                snprintf(sql, sizeof(sql), "CREATE DATABASE %s", dbnames[i]);
                if (!admin_exec(sql))
                        return false;
        }
        return true;
}

static void drop_databases(void) {
        for (size_t i = 0; i < N_DATABASES; i++) {
                char sql[512];

                if (!dbnames[i][0])
                        continue;
                snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", dbnames[i]);
                (void) admin_exec(sql);
        }
}

static int write_file(const char *dir, const char *name, const char *content) {
        char path[512];
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        f = fopen(path, "we");
        if (!f)
                return -errno;
        fputs(content, f);
        if (fclose(f) != 0)
                return -errno;
        return 0;
}

/* A schema directory under tmp_root with the given files (name, content, ..., NULL). */
static char *make_schema_dir(const char *name, ...) _sentinel_;
static char *make_schema_dir(const char *name, ...) {
        char *dir = NULL;
        const char *file;
        va_list ap;

        if (asprintf(&dir, "%s/%s", tmp_root, name) < 0)
                return NULL;
        if (mkdir(dir, 0755) < 0) {
                free(dir);
                return NULL;
        }
        va_start(ap, name);
        while ((file = va_arg(ap, const char *))) {
                const char *content = va_arg(ap, const char *);

                if (write_file(dir, file, content) < 0) {
                        va_end(ap);
                        free(dir);
                        return NULL;
                }
        }
        va_end(ap);
        return dir;
}

static unsigned count_sql_files(const char *path) {
        struct dirent *de;
        unsigned n = 0;
        DIR *d;

        d = opendir(path);
        if (!d)
                return 0;
        while ((de = readdir(d))) {
                size_t l = strlen(de->d_name);

                if (de->d_name[0] != '.' && l > 4 && streq(de->d_name + l - 4, ".sql"))
                        n++;
        }
        closedir(d);
        return n;
}

/* ---- the checks ---- */

static Db *main_db; /* up on dbnames[0] with the real schema, used by several checks */
static Watch main_watch;

static void test_schema_applies(void) {
        char *url = url_for(dbnames[0]);
        char expected[16];
        bool ok = true;

        ok = expect(url) && ok;
        main_db = watch_new(&main_watch, url, NORN_SOURCE_SQL_DIR);
        ok = expect(main_db) && ok;
        if (main_db) {
                ok = expect(db_start(main_db) >= 0) && ok;
                ok = expect(run_until(cond_up, &main_watch, 15 * USEC_PER_SEC)) && ok;
                if (db_last_error(main_db))
                        diag("last error: %s", db_last_error(main_db));
                ok = expect(db_last_error(main_db) == NULL) && ok;
                ok = expect(streq(main_watch.transitions, "U")) && ok;
        }
        snprintf(expected, sizeof(expected), "%u", count_sql_files(NORN_SOURCE_SQL_DIR));
        ok = expect(!streq(expected, "0")) && ok;
        ok = expect(sync_equals(dbnames[0], "SELECT count(*) FROM norn_schema", expected)) && ok;
        ok = expect(sync_equals(dbnames[0],
                                "SELECT count(*) FROM norn_schema WHERE version = '0001-init.sql'", "1")) && ok;
        ok = expect(sync_equals(dbnames[0],
                                "SELECT to_regclass('deployments') IS NOT NULL AND to_regclass('deployment_steps') IS NOT NULL "
                                "AND to_regclass('snapshots') IS NOT NULL AND to_regclass('status_transitions') IS NOT NULL",
                                "t")) && ok;
        ok = expect(sync_equals(dbnames[0], "SELECT count(*) FROM status_transitions", "21")) && ok;
        check(ok, "schema applies on a fresh database; db_is_up only then");
        free(url);
}

static const char applied_sql[] =
        "SELECT string_agg(version || '@' || applied_at::text, ',' ORDER BY version) FROM norn_schema";

static void test_schema_twice(void) {
        _cleanup_free_ char *before = sync_value(dbnames[0], applied_sql), *after = NULL;
        char *url = url_for(dbnames[0]);
        bool ok = true;

        /* A second daemon start on the same database: nothing new may be recorded. */
        main_db = db_free(main_db);
        main_db = watch_new(&main_watch, url, NORN_SOURCE_SQL_DIR);
        ok = expect(main_db) && ok;
        if (main_db) {
                ok = expect(db_start(main_db) >= 0) && ok;
                ok = expect(run_until(cond_up, &main_watch, 15 * USEC_PER_SEC)) && ok;
                ok = expect(!main_watch.saw_error) && ok;
        }
        after = sync_value(dbnames[0], applied_sql);
        ok = expect(before && after && streq(before, after)) && ok;
        if (before && after && !streq(before, after))
                diag("before: %s; after: %s", before, after);
        check(ok, "applying the schema again is a no-op");
        free(url);
}

static void test_schema_concurrent(void) {
        _cleanup_free_ char *dir = make_schema_dir("concurrent",
                "0001-a.sql", "CREATE TABLE marker (n int);\nINSERT INTO marker VALUES (1);\nSELECT pg_sleep(0.3);\n",
                "0002-b.sql", "-- second file\nINSERT INTO marker VALUES (2);\n",
                NULL);
        _cleanup_free_ char *url = url_for(dbnames[1]);
        Watch w[2];
        bool ok = true;

        ok = expect(dir && url) && ok;
        for (size_t i = 0; i < 2; i++) {
                ok = expect(watch_new(&w[i], url, dir)) && ok;
                ok = expect(!w[i].db || db_start(w[i].db) >= 0) && ok;
        }
        if (w[0].db && w[1].db) {
                ok = expect(run_until(cond_both_up, w, 15 * USEC_PER_SEC)) && ok;
                /* Without the lock the second one would fail on "marker exists" and only
                 * come up after a retry: it must never have failed at all. */
                ok = expect(!w[0].saw_error && !w[1].saw_error) && ok;
                ok = expect(streq(w[0].transitions, "U") && streq(w[1].transitions, "U")) && ok;
        }
        ok = expect(sync_equals(dbnames[1], "SELECT string_agg(n::text, ',' ORDER BY n) FROM marker", "1,2")) && ok;
        ok = expect(sync_equals(dbnames[1], "SELECT string_agg(version, ',' ORDER BY version) FROM norn_schema",
                                "0001-a.sql,0002-b.sql")) && ok;
        for (size_t i = 0; i < 2; i++)
                db_free(w[i].db);
        check(ok, "two Db instances started at once both come up, the schema applied once");
}

static void test_params(void) {
        const char *params[] = { "héllo 'wörld' \"x\" \\ ; --", "41", NULL };
        Capture c = {};
        bool ok = true;

        ok = expect(query_ok(main_db,
                             "SELECT $1::text, $2::int + 1, $3::text IS NULL, $3::text, char_length($1)",
                             3, params, &c)) && ok;
        ok = expect(c.ntuples == 1 && c.nfields == 5) && ok;
        ok = expect(streq_ptr(c.values[0], params[0])) && ok;
        ok = expect(streq_ptr(c.values[1], "42")) && ok;
        ok = expect(streq_ptr(c.values[2], "t")) && ok;
        ok = expect(c.values[3] == NULL) && ok;
        ok = expect(streq_ptr(c.values[4], "24")) && ok;
        capture_clear(&c);
        check(ok, "a query with parameters (NULL, quotes, UTF-8) round-trips");
}

static void test_failed_statement(void) {
        Capture c = {};
        bool ok = true;

        ok = expect(query_wait(main_db, "SELECT 1/0", 0, NULL, &c)) && ok;
        ok = expect(!c.null_result && c.status == PGRES_FATAL_ERROR) && ok;
        ok = expect(contains(c.error, "division by zero")) && ok;
        ok = expect(query_ok(main_db, "SELECT 2", 0, NULL, &c) && streq_ptr(c.values[0], "2")) && ok;
        ok = expect(db_query(main_db, "SELECT $1", 1, NULL, NULL, NULL) == -EINVAL) && ok;
        capture_clear(&c);
        check(ok, "a failed statement gives a result and the server's message; the connection goes on");
}

typedef struct Order {
        unsigned next, bad, errors;
} Order;

static Order order_state;

static void on_order(Db *db, const PGresult *result, const char *error, void *userdata) {
        unsigned i = (unsigned) (uintptr_t) userdata;

        if (i != order_state.next)
                order_state.bad++;
        if (!result || PQresultStatus(result) != PGRES_TUPLES_OK ||
            (unsigned) atoi(PQgetvalue(result, 0, 0)) != i)
                order_state.errors++;
        order_state.next = i + 1;
}

static bool cond_order_done(void *userdata) {
        return order_state.next >= *(unsigned *) userdata;
}

static void test_queue(void) {
        unsigned n = 0;
        uint64_t t0 = now_usec();
        bool ok = true;
        int r = 0;

        order_state = (Order) {};
        for (unsigned i = 0; i < 10000; i++) {
                char buf[16];
                const char *p[1] = { buf };

                snprintf(buf, sizeof(buf), "%u", i);
                r = db_query(main_db, "SELECT $1::int", 1, p, on_order, (void *) (uintptr_t) i);
                if (r < 0)
                        break;
                n++;
        }
        ok = expect(n == 10000) && ok;
        ok = expect(db_query(main_db, "SELECT 1", 0, NULL, NULL, NULL) == -ENOBUFS) && ok;
        ok = expect(run_until(cond_order_done, &n, 60 * USEC_PER_SEC)) && ok;
        ok = expect(order_state.bad == 0 && order_state.errors == 0) && ok;
        diag("%u queries in %" PRIu64 " ms", n, (now_usec() - t0) / USEC_PER_MSEC);
        check(ok, "queries run one at a time in FIFO order; the queue is bounded (-ENOBUFS)");
}

static void test_transitions(void) {
        Capture c = {};
        _cleanup_free_ char *id = NULL;
        const char *p[2];
        bool ok = true;

        ok = expect(query_ok(main_db, "INSERT INTO deployments (app, ref) VALUES ('web', 'main') RETURNING id, status",
                             0, NULL, &c)) && ok;
        ok = expect(streq_ptr(c.values[1], "queued")) && ok;
        id = c.values[0] ? strdup(c.values[0]) : NULL;
        ok = expect(id) && ok;
        p[0] = id;

        /* queued -> deployed: illegal */
        p[1] = "deployed";
        ok = expect(query_wait(main_db, "UPDATE deployments SET status = $2 WHERE id = $1", 2, p, &c)) && ok;
        ok = expect(!c.null_result && c.status == PGRES_FATAL_ERROR) && ok;
        ok = expect(contains(c.error, "illegal status transition")) && ok;

        /* queued -> building: legal, and started_at follows */
        p[1] = "building";
        ok = expect(query_ok(main_db, "UPDATE deployments SET status = $2 WHERE id = $1 RETURNING status, started_at IS NOT NULL",
                             2, p, &c)) && ok;
        ok = expect(streq_ptr(c.values[0], "building") && streq_ptr(c.values[1], "t")) && ok;

        /* building -> snapshotting: legal (no test step) */
        p[1] = "snapshotting";
        ok = expect(query_ok(main_db, "UPDATE deployments SET status = $2 WHERE id = $1", 2, p, &c)) && ok;

        /* snapshotting -> testing: backwards, illegal */
        p[1] = "testing";
        ok = expect(query_wait(main_db, "UPDATE deployments SET status = $2 WHERE id = $1", 2, p, &c)) && ok;
        ok = expect(!c.null_result && contains(c.error, "illegal status transition")) && ok;

        /* other columns can change without a transition */
        ok = expect(query_ok(main_db, "UPDATE deployments SET step = 'snapshot' WHERE id = $1", 1, p, &c)) && ok;

        /* a deployment starts queued */
        ok = expect(query_wait(main_db, "INSERT INTO deployments (app, ref, status) VALUES ('web', 'main', 'deployed')",
                               0, NULL, &c)) && ok;
        ok = expect(!c.null_result && c.status == PGRES_FATAL_ERROR) && ok;

        /* ... to deploying -> deployed, with finished_at */
        p[1] = "deploying";
        ok = expect(query_ok(main_db, "UPDATE deployments SET status = $2 WHERE id = $1", 2, p, &c)) && ok;
        p[1] = "deployed";
        ok = expect(query_ok(main_db, "UPDATE deployments SET status = $2 WHERE id = $1 RETURNING finished_at IS NOT NULL",
                             2, p, &c)) && ok;
        ok = expect(streq_ptr(c.values[0], "t")) && ok;
        capture_clear(&c);
        check(ok, "the trigger rejects an illegal status transition and accepts legal ones");
}

static void test_nothing_listening(void) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(sa);
        _cleanup_free_ char *url = NULL;
        _cleanup_close_ int fd = -EBADF;
        Watch w;
        Ticker t;
        bool ok = true;

        /* A port that was free a moment ago: connection refused. */
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ok = expect(fd >= 0 && bind(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0 &&
                    getsockname(fd, (struct sockaddr *) &sa, &len) == 0) && ok;
        fd = safe_close(fd);
        ok = expect(asprintf(&url, "host=127.0.0.1 port=%u dbname=norn user=norn", ntohs(sa.sin_port)) > 0) && ok;

        ok = expect(watch_new(&w, url, NORN_SOURCE_SQL_DIR)) && ok;
        ok = expect(ticker_start(&t) >= 0) && ok;
        if (w.db) {
                ok = expect(db_start(w.db) >= 0) && ok;
                (void) run_until(NULL, NULL, 1500 * USEC_PER_MSEC);
                ok = expect(!db_is_up(w.db)) && ok;
                ok = expect(db_query(w.db, "SELECT 1", 0, NULL, NULL, NULL) == -ENOTCONN) && ok;
                ok = expect(contains(db_last_error(w.db), "refused")) && ok;
                diag("last error: %s", strna(db_last_error(w.db)));
                ok = expect(streq(w.transitions, "")) && ok;
        }
        diag("%u ticks of 10 ms in 1.5 s, longest gap %" PRIu64 " ms", t.ticks, t.max_gap / USEC_PER_MSEC);
        ok = expect(t.ticks >= 50 && t.max_gap < 300 * USEC_PER_MSEC) && ok;
        ticker_stop(&t);
        db_free(w.db);
        check(ok, "nothing listening: stays down, db_query() is -ENOTCONN, the loop keeps running");
}

static void test_silent_server(void) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(sa);
        _cleanup_free_ char *url = NULL;
        _cleanup_close_ int fd = -EBADF;
        Watch w;
        Ticker t;
        bool ok = true;

        /* Accepts TCP connections (the kernel does) but never says a word. */
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ok = expect(fd >= 0 && bind(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0 &&
                    listen(fd, 64) == 0 && getsockname(fd, (struct sockaddr *) &sa, &len) == 0) && ok;
        ok = expect(asprintf(&url, "host=127.0.0.1 port=%u dbname=norn user=norn connect_timeout=1",
                             ntohs(sa.sin_port)) > 0) && ok;

        ok = expect(watch_new(&w, url, NORN_SOURCE_SQL_DIR)) && ok;
        ok = expect(ticker_start(&t) >= 0) && ok;
        if (w.db) {
                ok = expect(db_start(w.db) >= 0) && ok;
                (void) run_until(NULL, NULL, 2500 * USEC_PER_MSEC);
                ok = expect(!db_is_up(w.db)) && ok;
                ok = expect(contains(db_last_error(w.db), "timed out")) && ok;
                diag("last error: %s", strna(db_last_error(w.db)));
        }
        diag("%u ticks of 10 ms in 2.5 s, longest gap %" PRIu64 " ms", t.ticks, t.max_gap / USEC_PER_MSEC);
        ok = expect(t.ticks >= 80 && t.max_gap < 300 * USEC_PER_MSEC) && ok;
        ticker_stop(&t);
        db_free(w.db);
        check(ok, "a server that never answers: connect timeout, the loop keeps running");
}

static void test_password_masked(void) {
        static const char secret[] = "Sup3rSecretPw";
        _cleanup_free_ char *url = NULL;
        Watch w;
        bool ok = true;

        /* The socket path in the error message contains the password. */
        ok = expect(asprintf(&url, "host=/nonexistent-norn-test/%s dbname=norn user=norn password=%s",
                             secret, secret) > 0) && ok;
        ok = expect(watch_new(&w, url, NULL)) && ok;
        if (w.db) {
                ok = expect(db_start(w.db) >= 0) && ok;
                (void) run_until(NULL, NULL, 300 * USEC_PER_MSEC);
                diag("last error: %s", strna(db_last_error(w.db)));
                ok = expect(db_last_error(w.db) && !contains(db_last_error(w.db), secret) &&
                            contains(db_last_error(w.db), "********")) && ok;
        }
        db_free(w.db);
        ok = expect(db_new(event, "host=x no_such_option=1", NULL, &w.db) == -EINVAL) && ok;
        ok = expect(db_new(event, "postgresql://a:b@%zz/", NULL, &w.db) == -EINVAL) && ok;
        check(ok, "db_last_error() masks the password; a bad connection string is -EINVAL");
}

typedef struct FreeInCallback {
        Capture first, second;
} FreeInCallback;

static void on_free_in_callback(Db *db, const PGresult *result, const char *error, void *userdata) {
        FreeInCallback *f = userdata;

        on_capture(db, result, error, &f->first);
        db_free(db);
}

static void test_free_pending(void) {
        _cleanup_free_ char *url = url_for(dbnames[0]);
        Capture a = {}, b = {};
        FreeInCallback f = {};
        uint64_t t0;
        Watch w;
        bool ok = true;

        ok = expect(watch_new(&w, url, NORN_SOURCE_SQL_DIR)) && ok;
        if (w.db) {
                ok = expect(db_start(w.db) >= 0 && run_until(cond_up, &w, 15 * USEC_PER_SEC)) && ok;
                ok = expect(db_query(w.db, "SELECT pg_sleep(10)", 0, NULL, on_capture, &a) == 0) && ok;
                ok = expect(db_query(w.db, "SELECT 1", 0, NULL, on_capture, &b) == 0) && ok;
                (void) run_until(NULL, NULL, 100 * USEC_PER_MSEC);
                t0 = now_usec();
                db_free(w.db);
                ok = expect(now_usec() - t0 < 500 * USEC_PER_MSEC) && ok;
                ok = expect(a.done && a.null_result && streq_ptr(a.error, "shutting down")) && ok;
                ok = expect(b.done && b.null_result && streq_ptr(b.error, "shutting down")) && ok;
        }
        capture_clear(&a);
        capture_clear(&b);

        /* db_free() from inside a result callback, with another query queued. */
        ok = expect(watch_new(&w, url, NORN_SOURCE_SQL_DIR)) && ok;
        if (w.db) {
                ok = expect(db_start(w.db) >= 0 && run_until(cond_up, &w, 15 * USEC_PER_SEC)) && ok;
                ok = expect(db_query(w.db, "SELECT 1", 0, NULL, on_free_in_callback, &f) == 0) && ok;
                ok = expect(db_query(w.db, "SELECT 2", 0, NULL, on_capture, &f.second) == 0) && ok;
                ok = expect(run_until(cond_captured, &f.second, 5 * USEC_PER_SEC)) && ok;
                ok = expect(f.first.done && !f.first.null_result && streq_ptr(f.first.values[0], "1")) && ok;
                ok = expect(f.second.null_result && streq_ptr(f.second.error, "shutting down")) && ok;
                (void) run_until(NULL, NULL, 100 * USEC_PER_MSEC);
        }
        capture_clear(&f.first);
        capture_clear(&f.second);
        check(ok, "db_free() fails pending queries with \"shutting down\", also from a callback");
}

static bool commit_reported;

static bool cond_commit_reported(void *userdata) {
        const char *e = db_last_error(((Watch *) userdata)->db);

        if (contains(e, "0001-commit.sql") && contains(e, "ends the transaction")) {
                diag("last error: %s", e);
                commit_reported = true;
        }
        return commit_reported;
}

static void test_bad_schema_file(void) {
        _cleanup_free_ char *dir = make_schema_dir("bad",
                "0001-ok.sql", "CREATE TABLE okt (x int);\n",
                "0002-bad.sql", "CREATE TABLE good (x int);\n\nCREATE TABLE bad (x int,);\n",
                NULL);
        _cleanup_free_ char *dir2 = make_schema_dir("commit",
                "0001-commit.sql", "CREATE TABLE c1 (x int);\nCOMMIT;\n",
                NULL);
        _cleanup_free_ char *url = url_for(dbnames[2]), *url2 = url_for(dbnames[3]);
        Watch w, w2;
        bool ok = true;

        ok = expect(dir && dir2 && url && url2) && ok;
        ok = expect(watch_new(&w, url, dir) && watch_new(&w2, url2, dir2)) && ok;
        if (w.db && w2.db) {
                ok = expect(db_start(w.db) >= 0 && db_start(w2.db) >= 0) && ok;
                /* The COMMIT cannot be prevented, only detected: it is reported on the
                 * first attempt (later ones then trip over what it committed). */
                (void) run_until(cond_commit_reported, &w2, 1000 * USEC_PER_MSEC);
                ok = expect(commit_reported) && ok;
                (void) run_until(NULL, NULL, 500 * USEC_PER_MSEC);
                ok = expect(!db_is_up(w.db) && !db_is_up(w2.db)) && ok;
                diag("last error: %s", strna(db_last_error(w.db)));
                ok = expect(contains(db_last_error(w.db), "0002-bad.sql") &&
                            contains(db_last_error(w.db), "line 3") &&
                            contains(db_last_error(w.db), "syntax error")) && ok;
                ok = expect(db_query(w.db, "SELECT 1", 0, NULL, NULL, NULL) == -ENOTCONN) && ok;
        }
        db_free(w.db);
        db_free(w2.db);
        /* All or nothing: not even norn_schema exists. */
        ok = expect(sync_equals(dbnames[2], "SELECT to_regclass('okt') IS NULL AND to_regclass('norn_schema') IS NULL",
                                "t")) && ok;
        check(ok, "a failing schema file: stays down, the error names file and line, nothing is applied");
}

static void test_liveness(void) {
        _cleanup_free_ char *url = url_for(dbnames[0]);
        Capture c = {};
        Watch w;
        pid_t pid = 0;
        bool ok = true;

        ok = expect(watch_new(&w, url, NORN_SOURCE_SQL_DIR)) && ok;
        if (w.db) {
                db_set_liveness_check(w.db, 200 * USEC_PER_MSEC, 300 * USEC_PER_MSEC);
                ok = expect(db_start(w.db) >= 0 && run_until(cond_up, &w, 15 * USEC_PER_SEC)) && ok;
                ok = expect(query_ok(w.db, "SELECT pg_backend_pid()", 0, NULL, &c) && c.values[0]) && ok;
                if (c.values[0])
                        pid = (pid_t) atoi(c.values[0]);
        }
        if (pid > 0) {
                /* The backend hangs with its socket open: only the liveness check can tell. */
                if (!expect(kill(pid, SIGSTOP) == 0))
                        diag("kill(%ld, SIGSTOP): %m", (long) pid);
                else {
                        ok = expect(run_until(cond_down, &w, 5 * USEC_PER_SEC)) && ok;
                        (void) kill(pid, SIGCONT);
                        diag("last error: %s", strna(db_last_error(w.db)));
                        ok = expect(contains(db_last_error(w.db), "liveness")) && ok;
                        ok = expect(run_until(cond_up, &w, 10 * USEC_PER_SEC)) && ok;
                        ok = expect(streq(w.transitions, "UDU")) && ok;
                        ok = expect(query_ok(w.db, "SELECT 3", 0, NULL, &c)) && ok;
                }
        } else
                ok = false;
        capture_clear(&c);
        db_free(w.db);
        check(ok, "a silently dead connection is noticed by the liveness check, then reconnected");
}

static bool pgctl(const char *pgctl_prefix, const char *action) {
        _cleanup_free_ char *cmd = NULL;
        int status;

        if (asprintf(&cmd, "%s %s >&2", pgctl_prefix, action) < 0)
                return false;
        fflush(stdout);
        status = system(cmd);
        if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                diag("\"%s\" failed (status %d)", cmd, status);
                return false;
        }
        return true;
}

static bool server_stopped;

static void test_server_restart(const char *pgctl_prefix) {
        _cleanup_free_ char *url = url_for(dbnames[0]);
        Capture inflight = {}, c = {};
        Watch idle, both[2];
        uint64_t t0;
        bool ok = true;

        if (!pgctl_prefix) {
                diag("NORN_TEST_PGCTL is not set: it must be a command prefix such that "
                     "\"$NORN_TEST_PGCTL stop -m fast\" and \"$NORN_TEST_PGCTL start -w\" stop and start "
                     "the server of NORN_TEST_DATABASE_URL, e.g. "
                     "'runuser -u postgres -- pg_ctl -D DIR -l LOGFILE -o \"-k SOCKDIR -c listen_addresses=\"'");
                check(false, "server stop and start: down at once, in-flight query fails, back up after");
                return;
        }

        /* main_db: busy with a long query; idle: nothing in flight, no liveness check,
         * so only the socket turning readable can tell it the server is gone. */
        ok = expect(watch_new(&idle, url, NORN_SOURCE_SQL_DIR)) && ok;
        if (!idle.db || !main_db) {
                check(false, "server stop and start: down at once, in-flight query fails, back up after");
                return;
        }
        db_set_liveness_check(idle.db, 0, 0);
        ok = expect(db_start(idle.db) >= 0 && run_until(cond_up, &idle, 15 * USEC_PER_SEC)) && ok;
        ok = expect(db_query(main_db, "SELECT pg_sleep(60)", 0, NULL, on_capture, &inflight) == 0) && ok;
        (void) run_until(NULL, NULL, 200 * USEC_PER_MSEC);

        both[0] = main_watch;
        both[1] = idle;
        server_stopped = true;
        ok = expect(pgctl(pgctl_prefix, "stop -m fast")) && ok;
        t0 = now_usec();
        ok = expect(run_until(cond_both_down, both, 3 * USEC_PER_SEC)) && ok;
        diag("both down %" PRIu64 " ms after pg_ctl stop returned", (now_usec() - t0) / USEC_PER_MSEC);
        ok = expect(now_usec() - t0 < 1 * USEC_PER_SEC) && ok;
        ok = expect(run_until(cond_captured, &inflight, 1 * USEC_PER_SEC)) && ok;
        diag("in-flight query: %s", strna(inflight.error));
        ok = expect(inflight.null_result && inflight.error && *inflight.error) && ok;
        ok = expect(db_query(main_db, "SELECT 1", 0, NULL, NULL, NULL) == -ENOTCONN) && ok;
        (void) run_until(NULL, NULL, 500 * USEC_PER_MSEC);
        ok = expect(!db_is_up(main_db) && db_last_error(main_db)) && ok;
        diag("while down: %s", strna(db_last_error(main_db)));

        if (expect(pgctl(pgctl_prefix, "start -w"))) {
                server_stopped = false;
                t0 = now_usec();
                ok = expect(run_until(cond_both_up, both, 20 * USEC_PER_SEC)) && ok;
                diag("both up again %" PRIu64 " ms after pg_ctl start returned", (now_usec() - t0) / USEC_PER_MSEC);
                ok = expect(query_ok(main_db, "SELECT 42", 0, NULL, &c) && streq_ptr(c.values[0], "42")) && ok;
                ok = expect(streq(main_watch.transitions, "UDU") && streq(idle.transitions, "UDU")) && ok;
                ok = expect(db_last_error(main_db) == NULL) && ok;
        } else
                ok = false;

        capture_clear(&inflight);
        capture_clear(&c);
        db_free(idle.db);
        check(ok, "server stop and start: down at once, in-flight query fails, back up after");
}

int main(int argc, char *argv[]) {
        const char *pgctl_prefix = getenv("NORN_TEST_PGCTL");
        _cleanup_free_ char *rm = NULL;

        log_setup(LOG_TARGET_STDERR, LOG_INFO);
        (void) signal(SIGPIPE, SIG_IGN);

        base_url = getenv("NORN_TEST_DATABASE_URL");
        if (!base_url || !*base_url) {
                check(false, "NORN_TEST_DATABASE_URL is set");
                diag("This test needs a throwaway PostgreSQL server: set NORN_TEST_DATABASE_URL to a libpq URL "
                     "of a role that may CREATE DATABASE (and NORN_TEST_PGCTL, see the head of test-db.c).");
                return EXIT_FAILURE;
        }
        if (pgctl_prefix && !*pgctl_prefix)
                pgctl_prefix = NULL;

        if (asprintf(&tmp_root, "%s/norn-test-db-XXXXXX", getenv("TMPDIR") ?: "/tmp") < 0 ||
            !mkdtemp(tmp_root) || sd_event_default(&event) < 0) {
                check(false, "set-up: temporary directory and event loop");
                return EXIT_FAILURE;
        }
        if (!check(create_databases(), "set-up: create the test databases")) {
                drop_databases();
                return EXIT_FAILURE;
        }

        test_schema_applies();
        test_schema_twice();
        test_schema_concurrent();
        if (main_db && db_is_up(main_db)) {
                test_params();
                test_failed_statement();
                test_queue();
                test_transitions();
        } else
                check(false, "queries on the main database (it did not come up)");
        test_nothing_listening();
        test_silent_server();
        test_password_masked();
        test_free_pending();
        test_bad_schema_file();
        test_liveness();
        test_server_restart(pgctl_prefix);

        if (server_stopped && pgctl_prefix)
                (void) pgctl(pgctl_prefix, "start -w");
        main_db = db_free(main_db);
        (void) run_until(NULL, NULL, 50 * USEC_PER_MSEC);
        drop_databases();
        event = sd_event_unref(event);
        if (asprintf(&rm, "rm -rf '%s'", tmp_root) > 0)
                (void) system(rm);
        free(tmp_root);

        printf("1..%u\n", n_checks);
        if (n_failed > 0)
                printf("# %u of %u checks failed\n", n_failed, n_checks);
        return n_failed > 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
