/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "schema.h"

static void schema_file_done(SchemaFile *f) {
        free(f->version);
        free(f->sql);
}

Schema *schema_free(Schema *schema) {
        if (!schema)
                return NULL;
        for (size_t i = 0; i < schema->n_files; i++)
                schema_file_done(&schema->files[i]);
        free(schema->files);
        free(schema);
        return NULL;
}

static void closedirp(DIR **d) {
        if (*d)
                (void) closedir(*d);
}

static void strv_freep(char ***l) {
        if (!*l)
                return;
        for (char **i = *l; *i; i++)
                free(*i);
        free(*l);
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static bool is_schema_file_name(const char *name) {
        size_t n = strlen(name);

        return name[0] != '.' && n > 4 && streq(name + n - 4, ".sql");
}

/* Reads a whole regular file; refuses NUL bytes, which cannot go into a query string. */
static int read_sql_file(int dir_fd, const char *name, char **ret) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *buf = NULL;
        size_t size = 0, allocated = 0;
        struct stat st;

        fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EBADFD;
        if ((uintmax_t) st.st_size > SCHEMA_FILE_MAX)
                return -EFBIG;

        for (;;) {
                ssize_t k;

                if (allocated - size < 4096) {
                        size_t n = MAX(allocated * 2, (size_t) st.st_size + 4097);
                        char *p;

                        if (n > SCHEMA_FILE_MAX + 4097)
                                return -EFBIG;
                        p = realloc(buf, n);
                        if (!p)
                                return -ENOMEM;
                        buf = p;
                        allocated = n;
                }
                k = read(fd, buf + size, allocated - size - 1);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        break;
                size += (size_t) k;
        }
        buf[size] = 0;
        if (strlen(buf) != size)
                return -EBADMSG;

        *ret = TAKE_PTR(buf);
        return 0;
}

int schema_load(const char *dir, Schema **ret) {
        _cleanup_(schema_freep) Schema *schema = NULL;
        _cleanup_(closedirp) DIR *d = NULL;
        _cleanup_(strv_freep) char **names = NULL;
        size_t n_names = 0, allocated = 0;
        struct dirent *de;
        int r;

        if (!dir || !ret)
                return -EINVAL;

        d = opendir(dir);
        if (!d)
                return log_debug_errno(-errno, "Cannot open schema directory %s: %m", dir);

        for (;;) {
                errno = 0;
                de = readdir(d);
                if (!de) {
                        if (errno != 0)
                                return log_debug_errno(-errno, "Cannot read schema directory %s: %m", dir);
                        break;
                }
                if (!is_schema_file_name(de->d_name))
                        continue;
                if (n_names + 2 > allocated) {
                        size_t n = MAX(allocated * 2, (size_t) 16);
                        char **p = realloc(names, n * sizeof(char *));
                        if (!p)
                                return -ENOMEM;
                        names = p;
                        allocated = n;
                }
                names[n_names] = strdup(de->d_name);
                if (!names[n_names])
                        return -ENOMEM;
                names[++n_names] = NULL;
        }

        schema = calloc(1, sizeof(Schema));
        if (!schema)
                return -ENOMEM;
        if (n_names == 0) {
                log_debug("No schema files in %s.", dir);
                *ret = TAKE_PTR(schema);
                return 0;
        }

        /* Lexical order, byte-wise: independent of the locale. */
        qsort(names, n_names, sizeof(char *), cmp_str);

        schema->files = calloc(n_names, sizeof(SchemaFile));
        if (!schema->files)
                return -ENOMEM;

        for (size_t i = 0; i < n_names; i++) {
                _cleanup_free_ char *sql = NULL;

                r = read_sql_file(dirfd(d), names[i], &sql);
                if (r == -EBADFD) {
                        log_debug("Schema: %s/%s is not a regular file, ignoring.", dir, names[i]);
                        continue;
                }
                if (r < 0)
                        return log_debug_errno(r, "Cannot read schema file %s/%s: %m", dir, names[i]);

                schema->files[schema->n_files].version = strdup(names[i]);
                if (!schema->files[schema->n_files].version)
                        return -ENOMEM;
                schema->files[schema->n_files++].sql = TAKE_PTR(sql);
        }

        log_debug("Schema: %zu file(s) read from %s.", schema->n_files, dir);
        *ret = TAKE_PTR(schema);
        return 0;
}

/* ---- Application ---------------------------------------------------------------------- */

struct SchemaApply {
        Db *db;
        const Schema *schema;
        bool *recorded;   /* per file: already in norn_schema */
        size_t index;     /* the file being applied */
        unsigned n_applied;
        char *error;
        SchemaApplyCallback callback;
        void *userdata;
};

SchemaApply *schema_apply_free(SchemaApply *apply) {
        if (!apply)
                return NULL;
        free(apply->recorded);
        free(apply->error);
        free(apply);
        return NULL;
}

/* Hands the outcome to the owner, which may free apply: touch nothing after. */
static void apply_finish(SchemaApply *apply, int r) {
        _cleanup_free_ char *error = TAKE_PTR(apply->error);

        if (r < 0 && !error)
                error = strdup("schema could not be applied");
        apply->callback(apply->db, r, r < 0 ? (error ?: "out of memory") : NULL, apply->userdata);
}

static void on_rollback(Db *db, const PGresult *result, const char *error, void *userdata) {
        apply_finish(userdata, -EBADMSG);
}

static void apply_fail(SchemaApply *apply, const char *format, ...) _printf_(2, 3);
static void apply_fail(SchemaApply *apply, const char *format, ...) {
        va_list ap;
        int r;

        free(apply->error);
        va_start(ap, format);
        if (vasprintf(&apply->error, format, ap) < 0)
                apply->error = NULL;
        va_end(ap);

        log_debug("Schema: %s; rolling back.", strna(apply->error));

        r = db_submit_internal(apply->db, "ROLLBACK", true, 0, NULL, on_rollback, apply);
        if (r < 0)
                apply_finish(apply, r);
}

static bool result_ok(const PGresult *result) {
        switch (PQresultStatus(result)) {
        case PGRES_TUPLES_OK:
        case PGRES_COMMAND_OK:
        case PGRES_EMPTY_QUERY: /* a file of comments only */
                return true;
        default:
                return false;
        }
}

/* The server reports where a syntax error is as a 1-based character offset into
 * the query string, i.e. the file: turn it into a line number. */
static unsigned error_line(const char *sql, const PGresult *result) {
        const char *p = PQresultErrorField(result, PG_DIAG_STATEMENT_POSITION);
        unsigned long pos, chars = 0;
        unsigned line = 1;
        char *end;

        if (!p)
                return 0;
        errno = 0;
        pos = strtoul(p, &end, 10);
        if (errno != 0 || *end != 0 || pos == 0)
                return 0;

        for (const char *c = sql; *c; c++) {
                if (((unsigned char) *c & 0xC0) == 0x80)
                        continue; /* UTF-8 continuation byte */
                if (++chars >= pos)
                        break;
                if (*c == '\n')
                        line++;
        }
        return line;
}

static void apply_next(SchemaApply *apply);

static void on_commit(Db *db, const PGresult *result, const char *error, void *userdata) {
        SchemaApply *apply = userdata;

        if (!result_ok(result))
                return apply_fail(apply, "schema commit failed: %s", strna(error));

        log_debug("Schema: %u file(s) applied, %zu already recorded.", apply->n_applied,
                  apply->schema->n_files - apply->n_applied);
        apply_finish(apply, 0);
}

static void on_recorded(Db *db, const PGresult *result, const char *error, void *userdata) {
        SchemaApply *apply = userdata;
        const SchemaFile *f = &apply->schema->files[apply->index];

        if (!result_ok(result))
                return apply_fail(apply, "schema file %s: cannot record it in norn_schema: %s",
                                  f->version, strna(error));

        apply->n_applied++;
        apply->index++;
        apply_next(apply);
}

static void on_file(Db *db, const PGresult *result, const char *error, void *userdata) {
        SchemaApply *apply = userdata;
        const SchemaFile *f = &apply->schema->files[apply->index];
        const char *params[1] = { f->version };
        unsigned line;
        int r;

        if (!result_ok(result)) {
                line = error_line(f->sql, result);
                if (line > 0)
                        return apply_fail(apply, "schema file %s, line %u: %s", f->version, line,
                                          strna(error));
                return apply_fail(apply, "schema file %s: %s", f->version, strna(error));
        }

        /* A file that ends the transaction would break the all-or-nothing promise. */
        if (db_transaction_status(db) != PQTRANS_INTRANS)
                return apply_fail(apply,
                                  "schema file %s ends the transaction: schema files must not use BEGIN, COMMIT or ROLLBACK",
                                  f->version);

        log_debug("Schema: applied %s.", f->version);
        r = db_submit_internal(db, "INSERT INTO norn_schema (version) VALUES ($1)", false, 1, params,
                               on_recorded, apply);
        if (r < 0)
                apply_fail(apply, "schema file %s: cannot queue: %s", f->version, strerror(-r));
}

static void apply_next(SchemaApply *apply) {
        int r;

        while (apply->index < apply->schema->n_files && apply->recorded[apply->index])
                apply->index++;

        if (apply->index >= apply->schema->n_files) {
                r = db_submit_internal(apply->db, "COMMIT", true, 0, NULL, on_commit, apply);
                if (r < 0)
                        apply_fail(apply, "cannot queue COMMIT: %s", strerror(-r));
                return;
        }

        log_debug("Schema: applying %s.", apply->schema->files[apply->index].version);
        r = db_submit_internal(apply->db, apply->schema->files[apply->index].sql, true, 0, NULL,
                               on_file, apply);
        if (r < 0)
                apply_fail(apply, "schema file %s: cannot queue: %s",
                           apply->schema->files[apply->index].version, strerror(-r));
}

static void on_prologue(Db *db, const PGresult *result, const char *error, void *userdata) {
        SchemaApply *apply = userdata;
        int n;

        /* The last result is the one of "SELECT version FROM norn_schema". */
        if (PQresultStatus(result) != PGRES_TUPLES_OK)
                return apply_fail(apply, "schema setup failed: %s", strna(error));

        n = PQntuples(result);
        for (int i = 0; i < n; i++) {
                const char *v = PQgetvalue(result, i, 0);

                for (size_t j = 0; j < apply->schema->n_files; j++)
                        if (streq(apply->schema->files[j].version, v))
                                apply->recorded[j] = true;
        }

        apply_next(apply);
}

int schema_apply_start(Db *db, const Schema *schema, SchemaApplyCallback cb, void *userdata,
                       SchemaApply **ret) {
        _cleanup_(schema_apply_freep) SchemaApply *apply = NULL;
        char prologue[512];
        int r;

        if (!db || !schema || !cb || !ret)
                return -EINVAL;

        apply = calloc(1, sizeof(SchemaApply));
        if (!apply)
                return -ENOMEM;
        apply->recorded = calloc(MAX(schema->n_files, (size_t) 1), sizeof(bool));
        if (!apply->recorded)
                return -ENOMEM;
        apply->db = db;
        apply->schema = schema;
        apply->callback = cb;
        apply->userdata = userdata;

        /* One round trip for the set-up; the advisory lock is held until COMMIT or
         * ROLLBACK, so concurrent daemons apply the files one after the other. */
        (void) snprintf(prologue, sizeof(prologue),
                        "BEGIN;\n"
                        "SET LOCAL client_min_messages = warning;\n"
                        "SELECT pg_advisory_xact_lock(%" PRId64 ");\n"
                        "CREATE TABLE IF NOT EXISTS norn_schema (\n"
                        "        version text PRIMARY KEY,\n"
                        "        applied_at timestamptz NOT NULL DEFAULT now()\n"
                        ");\n"
                        "SELECT version FROM norn_schema;",
                        (int64_t) SCHEMA_LOCK_KEY);

        r = db_submit_internal(db, prologue, true, 0, NULL, on_prologue, apply);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(apply);
        return 0;
}
