/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctl-output.h"

bool ctl_fancy(void) {
        static int cached = -1;

        if (cached < 0) {
                const char *term = getenv("TERM"), *no_color = getenv("NO_COLOR");
                /* no-color.org: set and not empty. */
                cached = isatty(STDOUT_FILENO) && !(no_color && *no_color) && !(term && streq(term, "dumb"));
        }
        return cached;
}

const char *ctl_ansi(const char *sequence) {
        return ctl_fancy() ? sequence : "";
}

char *ctl_printable(const char *s) {
        char *copy = strdup(s ?: "");

        if (!copy)
                return NULL;
        for (char *p = copy; *p; p++) {
                unsigned char c = (unsigned char) *p;

                if (c < 0x20 ? c != '\t' : c == 0x7f)
                        *p = '?';
                /* C1 controls (U+0080..U+009F, e.g. the one-byte CSI) as UTF-8. */
                else if (c == 0xc2 && (unsigned char) p[1] >= 0x80 && (unsigned char) p[1] <= 0x9f) {
                        memmove(p, p + 1, strlen(p + 1) + 1);
                        *p = '?';
                }
        }
        return copy;
}

void ctl_fputs_printable(const char *s, FILE *f) {
        _cleanup_free_ char *p = ctl_printable(s);
        fputs(p ?: "?", f);
}

const char *ctl_format_time(char buf[static 32], uint64_t usec) {
        time_t t = (time_t) (usec / 1000000);
        struct tm tm;

        if (usec == 0 || !gmtime_r(&t, &tm) || strftime(buf, 32, "%Y-%m-%d %H:%M:%S", &tm) == 0)
                return "-";
        return buf;
}

const char *ctl_format_duration(char buf[static 32], uint64_t usec) {
        uint64_t s = usec / 1000000;

        if (s < 60)
                snprintf(buf, 32, "%.1fs", (double) usec / 1e6);
        else if (s < 3600)
                snprintf(buf, 32, "%" PRIu64 "m%02" PRIu64 "s", s / 60, s % 60);
        else
                snprintf(buf, 32, "%" PRIu64 "h%02" PRIu64 "m", s / 3600, s / 60 % 60);
        return buf;
}

const char *ctl_format_span(char buf[static 32], uint64_t start_usec, uint64_t end_usec) {
        if (start_usec == 0 || end_usec == 0 || end_usec < start_usec)
                return "-";
        return ctl_format_duration(buf, end_usec - start_usec);
}

const char *ctl_status_color(const char *status) {
        if (!status)
                return "";
        if (streq(status, "deployed") || streq(status, "succeeded"))
                return ctl_ansi(ANSI_GREEN);
        if (streq(status, "failed"))
                return ctl_ansi(ANSI_RED);
        if (streq(status, "rolled_back") || streq(status, "skipped") || streq(status, "pending"))
                return ctl_ansi(ANSI_DIM);
        if (*status)
                return ctl_ansi(ANSI_YELLOW);   /* queued, building, ... running */
        return "";
}

const char *ctl_step_glyph(const char *status) {
        if (streq(status, "succeeded"))
                return "\u2713";
        if (streq(status, "failed"))
                return "\u2717";
        if (streq(status, "running"))
                return "\u25b6";
        if (streq(status, "skipped"))
                return "-";
        return "\u00b7";
}

json_t *ctl_json_time(uint64_t usec) {
        char buf[64];
        struct tm tm;
        time_t t = (time_t) (usec / 1000000);

        if (usec == 0 || !gmtime_r(&t, &tm))
                return json_null();
        snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned) (usec % 1000000 / 1000));
        return json_string(buf);
}

json_t *ctl_json_string(const char *s) {
        /* nornd sends UTF-8 (D-Bus requires it); json_string() refuses
         * anything else, which would drop the whole document. */
        return s && *s ? json_string(s) ?: json_string("?") : json_null();
}

int ctl_json_print(json_t *j) {
        _cleanup_(json_decrefp) json_t *owned = j;

        if (!owned)
                return -ENOMEM;
        if (json_dumpf(owned, stdout, JSON_INDENT(2) | JSON_ENSURE_ASCII) < 0)
                return -EIO;
        fputc('\n', stdout);
        return fflush(stdout) == 0 ? 0 : -errno;
}

/* --- tables --- */

struct Table {
        size_t n_columns, n_cells, allocated;
        char **cells;           /* row-major; the first row is the header */
        const char **colors;    /* one per cell, NULL: none */
};

static int table_grow(Table *t, size_t need) {
        size_t n;
        char **c;
        const char **k;

        if (need <= t->allocated)
                return 0;
        n = MAX(MAX(t->allocated * 2, need), (size_t) 64);
        c = reallocarray(t->cells, n, sizeof(char *));
        if (!c)
                return -ENOMEM;
        t->cells = c;
        k = reallocarray(t->colors, n, sizeof(char *));
        if (!k)
                return -ENOMEM;
        t->colors = k;
        t->allocated = n;
        return 0;
}

Table *table_new(size_t n_columns, ...) {
        _cleanup_(table_freep) Table *t = calloc(1, sizeof(Table));
        va_list ap;
        int r;

        if (!t || n_columns == 0)
                return NULL;
        t->n_columns = n_columns;
        r = table_grow(t, n_columns);
        va_start(ap, n_columns);
        for (size_t i = 0; r >= 0 && i < n_columns; i++) {
                t->colors[t->n_cells] = NULL;
                if (!(t->cells[t->n_cells++] = strdup(va_arg(ap, const char *))))
                        r = -ENOMEM;
        }
        va_end(ap);
        return r < 0 ? NULL : TAKE_PTR(t);
}

Table *table_free(Table *t) {
        if (!t)
                return NULL;
        for (size_t i = 0; i < t->n_cells; i++)
                free(t->cells[i]);
        free(t->cells);
        free(t->colors);
        return mfree(t);
}

int table_add_row(Table *t, ...) {
        va_list ap;
        int r;

        r = table_grow(t, t->n_cells + t->n_columns);
        if (r < 0)
                return r;
        va_start(ap, t);
        for (size_t i = 0; i < t->n_columns; i++) {
                const char *v = va_arg(ap, const char *);
                char *copy = ctl_printable(v && *v ? v : "-");
                if (!copy)
                        r = -ENOMEM;
                t->colors[t->n_cells] = NULL;
                t->cells[t->n_cells++] = copy ?: strdup("");
        }
        va_end(ap);
        return r;
}

void table_set_color(Table *t, size_t column, const char *ansi) {
        if (column < t->n_columns && t->n_cells >= t->n_columns)
                t->colors[t->n_cells - t->n_columns + column] = ansi && *ansi ? ansi : NULL;
}

size_t table_rows(const Table *t) {
        return t->n_cells / t->n_columns - 1;
}

/* Display width of UTF-8 text: continuation bytes take no column. */
static size_t utf8_width(const char *s) {
        size_t n = 0;

        for (; *s; s++)
                n += ((unsigned char) *s & 0xc0) != 0x80;
        return n;
}

void table_print(const Table *t, bool header, unsigned indent) {
        size_t width[t->n_columns];

        memset(width, 0, sizeof(width));
        for (size_t i = header ? 0 : t->n_columns; i < t->n_cells; i++)
                width[i % t->n_columns] = MAX(width[i % t->n_columns], utf8_width(t->cells[i] ?: ""));

        for (size_t i = header ? 0 : t->n_columns; i < t->n_cells; i++) {
                size_t col = i % t->n_columns;
                const char *cell = t->cells[i] ?: "";
                bool last = col == t->n_columns - 1;

                if (col == 0)
                        printf("%*s", (int) indent, "");
                if (i < t->n_columns)
                        fputs(ctl_ansi(ANSI_BOLD), stdout);
                else if (t->colors[i])
                        fputs(t->colors[i], stdout);
                fputs(cell, stdout);
                if (i < t->n_columns || t->colors[i])
                        fputs(ctl_ansi(ANSI_NORMAL), stdout);
                if (last)
                        fputc('\n', stdout);
                else
                        printf("%*s", (int) (width[col] - utf8_width(cell) + 2), "");
        }
}
