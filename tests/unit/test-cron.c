/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Tests of the cron expression converter (src/core/cron.c) and of the pure
 * parts of cron-timer.c (app ids, unit names, the job's command line, job
 * validation).
 *
 * Every OnCalendar= expression produced is checked with the real
 * `systemd-analyze calendar`: it must be accepted, and its next elapses from
 * fixed base times (--base-time, in UTC) must be exactly the minutes an
 * independent cron evaluator (below, written from crontab(5), sharing no code
 * with cron.c) picks, including cron's "either day field" rule. Also checked
 * for a few hundred random expressions of the cron grammar.
 *
 * `test-cron --driver` is not a test: it is the driver tests/integration/
 * test_cron.py uses to run the cron-timer.c API against the sandbox's
 * systemd --user manager and PostgreSQL (commands as JSON lines on stdin,
 * answers as JSON lines on stdout).
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config-build.h"
#include "cron-timer.h"
#include "cron.h"
#include "db.h"
#include "log.h"
#include "macro.h"
#include "strv.h"
#include "tap.h"

#define ITERATIONS 6

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

/* ---- An independent cron evaluator (crontab(5)) ----------------------------------- */

static int name_value(const char *s, size_t n, bool month) {
        static const char *const months[] = { "jan", "feb", "mar", "apr", "may", "jun",
                                              "jul", "aug", "sep", "oct", "nov", "dec" };
        static const char *const days[] = { "sun", "mon", "tue", "wed", "thu", "fri", "sat" };

        if (n != 3)
                return -1;
        for (int i = 0; i < (month ? 12 : 7); i++)
                if (strncasecmp(s, month ? months[i] : days[i], 3) == 0)
                        return month ? i + 1 : i;
        return -1;
}

static int value_at(const char **p, int field) {
        const char *s = *p;
        size_t n = strspn(s, "0123456789");

        if (n > 0) {
                *p = s + n;
                return atoi(s);
        }
        n = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ");
        *p = s + n;
        return field == 3 || field == 4 ? name_value(s, n, field == 3) : -1;
}

/* Does value v match one field ("1,5-10/2,*\/3")? field: 0 minute .. 4 weekday. */
static bool field_matches(const char *text, size_t len, int field, int v) {
        static const int lo[] = { 0, 0, 1, 1, 0 }, hi[] = { 59, 23, 31, 12, 7 };
        char buf[300];
        char *save = NULL;

        memcpy(buf, text, len);
        buf[len] = 0;
        for (char *e = strtok_r(buf, ",", &save); e; e = strtok_r(NULL, ",", &save)) {
                const char *p = e;
                int a, b, step = 1;

                if (*p == '*') {
                        p++;
                        a = lo[field];
                        b = field == 4 ? 6 : hi[field];
                } else {
                        a = b = value_at(&p, field);
                        if (*p == '-') {
                                p++;
                                b = value_at(&p, field);
                        } else if (*p == '/')
                                b = hi[field];
                }
                if (*p == '/')
                        step = atoi(p + 1);
                for (int x = a; x <= b; x += step)
                        if (x == v || (field == 4 && x == 7 && v == 0))
                                return true;
        }
        return false;
}

typedef struct CronSpec {
        const char *f[5];
        size_t n[5];
} CronSpec;

static void cron_split(const char *expr, CronSpec *c) {
        static const struct { const char *name, *expr; } macros[] = {
                { "@hourly", "0 * * * *" }, { "@daily", "0 0 * * *" }, { "@midnight", "0 0 * * *" },
                { "@weekly", "0 0 * * 0" }, { "@monthly", "0 0 1 * *" }, { "@yearly", "0 0 1 1 *" },
                { "@annually", "0 0 1 1 *" },
        };
        const char *p = expr;

        for (size_t i = 0; i < ELEMENTSOF(macros); i++)
                if (strcasecmp(expr + strspn(expr, " \t"), macros[i].name) == 0)
                        p = macros[i].expr;
        for (int i = 0; i < 5; i++) {
                p += strspn(p, " \t");
                c->f[i] = p;
                c->n[i] = strcspn(p, " \t");
                p += c->n[i];
        }
}

static bool day_matches(const CronSpec *c, const struct tm *t) {
        bool dom = field_matches(c->f[2], c->n[2], 2, t->tm_mday);
        bool dow = field_matches(c->f[4], c->n[4], 4, t->tm_wday);

        if (!field_matches(c->f[3], c->n[3], 3, t->tm_mon + 1))
                return false;
        /* Vixie cron: a '*' first in either day field makes it "both must match". */
        if (c->f[2][0] == '*' || c->f[4][0] == '*')
                return dom && dow;
        return dom || dow;
}

/* The first n run times (UTC) strictly after base; fewer if none within `years`. */
static size_t cron_next(const char *expr, time_t base, time_t *out, size_t n, int years) {
        CronSpec c;
        time_t t = (base / 60 + 1) * 60, end = base + (time_t) years * 366 * 86400;
        size_t k = 0;

        cron_split(expr, &c);
        while (k < n && t < end) {
                struct tm tm;

                gmtime_r(&t, &tm);
                if (!day_matches(&c, &tm)) {
                        t += 86400 - (tm.tm_hour * 3600 + tm.tm_min * 60);
                        continue;
                }
                if (field_matches(c.f[1], c.n[1], 1, tm.tm_hour) && field_matches(c.f[0], c.n[0], 0, tm.tm_min))
                        out[k++] = t;
                t += 60;
        }
        return k;
}

/* ---- systemd-analyze calendar ---------------------------------------------------- */

/* Runs `systemd-analyze calendar --iterations=N --base-time=@base EXPR...` in
 * UTC; returns its exit status, the elapses of all expressions (merged,
 * sorted, unique) and its output. */
static int analyze(char *const *exprs, time_t base, time_t *out, size_t *n_out, char **ret_output) {
        _cleanup_strv_free_ char **argv = NULL;
        char *output = NULL;
        size_t size = 0;
        FILE *f;
        int pipefd[2], status;
        pid_t pid;

        if (strv_extend_many(&argv, "systemd-analyze", "calendar", NULL) < 0 ||
            strv_extendf(&argv, "--iterations=%d", ITERATIONS) < 0 ||
            strv_extendf(&argv, "--base-time=@%lld", (long long) base) < 0)
                return -ENOMEM;
        for (char *const *e = exprs; *e; e++)
                if (strv_extend(&argv, *e) < 0)
                        return -ENOMEM;
        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return -errno;
        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                (void) dup2(pipefd[1], STDOUT_FILENO);
                (void) dup2(pipefd[1], STDERR_FILENO);
                (void) setenv("TZ", "UTC", 1);
                (void) setenv("SYSTEMD_COLORS", "0", 1);
                execvp(argv[0], argv);
                _exit(127);
        }
        close(pipefd[1]);
        f = open_memstream(&output, &size);
        for (char buf[4096];;) {
                ssize_t k = read(pipefd[0], buf, sizeof(buf));
                if (k <= 0)
                        break;
                fwrite(buf, 1, (size_t) k, f);
        }
        fclose(f);
        close(pipefd[0]);
        if (waitpid(pid, &status, 0) < 0)
                return -errno;

        *n_out = 0;
        for (const char *line = output; line && *line;) {
                const char *eol = strchrnul(line, '\n');
                char l[256], wd[8];
                const char *p;
                struct tm tm = {};
                time_t t;

                snprintf(l, sizeof(l), "%.*s", (int) (eol - line), line);
                line = *eol ? eol + 1 : eol;
                if ((p = strstr(l, "Iter. #")))
                        p = strchr(p, ':') + 1;
                else if ((p = strstr(l, "Next elapse:")))
                        p += strlen("Next elapse:");
                else
                        continue;
                if (sscanf(p, " %7s %d-%d-%d %d:%d:%d", wd, &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                           &tm.tm_min, &tm.tm_sec) != 7)
                        continue;       /* "never" */
                tm.tm_year -= 1900;
                tm.tm_mon -= 1;
                t = timegm(&tm);
                /* merge, sorted, unique */
                size_t i = 0;
                while (i < *n_out && out[i] < t)
                        i++;
                if (i < *n_out && out[i] == t)
                        continue;
                if (*n_out == 4 * ITERATIONS)
                        continue;
                memmove(out + i + 1, out + i, sizeof(time_t) * (*n_out - i));
                out[i] = t;
                (*n_out)++;
        }
        *ret_output = output;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static void fmt_time(time_t t, char *buf, size_t size) {
        struct tm tm;

        gmtime_r(&t, &tm);
        strftime(buf, size, "%a %Y-%m-%d %H:%M", &tm);
}

/* Converts expr; the result must be accepted by systemd-analyze and elapse
 * exactly when cron would run, from each base time. */
static bool verify(const char *expr, char ***ret_list, bool quiet) {
        static const time_t bases[] = {
                1735689600,     /* Wed 2025-01-01 00:00 UTC */
                1709164740,     /* Wed 2024-02-28 23:59 UTC, before a leap day */
                1767225540,     /* Wed 2025-12-31 23:59 UTC, a year's end */
                1764547140,     /* Sun 2025-11-30 23:59 UTC, a 30-day month's end */
                1740787140,     /* Fri 2025-02-28 23:59 UTC, February's end, no leap year */
                1752582600,     /* Tue 2025-07-15 12:30 UTC, mid-month, mid-day */
        };
        _cleanup_strv_free_ char **list = NULL;
        _cleanup_free_ char *error = NULL;
        bool ok = true;
        int r;

        r = cron_to_oncalendar(expr, &list, &error);
        if (r < 0) {
                diag("\"%s\": %s", expr, strna(error));
                return false;
        }
        for (size_t b = 0; b < ELEMENTSOF(bases) && ok; b++) {
                time_t got[4 * ITERATIONS], want[ITERATIONS];
                size_t n_got = 0, n_want;
                _cleanup_free_ char *output = NULL;
                int status;

                status = analyze(list, bases[b], got, &n_got, &output);
                n_want = cron_next(expr, bases[b], want, ITERATIONS, 30);
                if (status != 0) {
                        diag("systemd-analyze calendar refused the result of \"%s\" (exit %d):\n%s", expr, status,
                             strna(output));
                        ok = false;
                        break;
                }
                if (n_got > n_want)
                        n_got = n_want;
                ok = n_got == n_want;
                for (size_t i = 0; ok && i < n_want; i++)
                        ok = got[i] == want[i];
                if (!ok) {
                        char a[64], w[64];

                        diag("\"%s\" -> \"%s\"%s%s: elapses differ from cron's (base %lld)", expr, list[0],
                             list[1] ? " + " : "", list[1] ?: "", (long long) bases[b]);
                        for (size_t i = 0; i < MAX(n_got, n_want); i++) {
                                fmt_time(i < n_got ? got[i] : 0, a, sizeof(a));
                                fmt_time(i < n_want ? want[i] : 0, w, sizeof(w));
                                diag("  systemd %s   cron %s", i < n_got ? a : "-", i < n_want ? w : "-");
                        }
                }
        }
        if (ok && !quiet)
                diag("\"%s\" -> \"%s\"%s%s", expr, list[0], list[1] ? "\", \"" : "", list[1] ?: "");
        if (ret_list)
                *ret_list = TAKE_PTR(list);
        return ok;
}

/* ---- The converter ---------------------------------------------------------------- */

static void test_examples(void) {
        static const struct {
                const char *expr;
                const char *want[3];
        } cases[] = {
                { "*/15 * * * *", { "*-*-* *:00..45/15:00" } },
                { "0 3 * * 1-5", { "Mon..Fri *-*-* 03:00:00" } },
                { "30 2 1,15 * *", { "*-*-01,15 02:30:00" } },
                { "* * * * *", { "*-*-* *:*:00" } },
                { "0 * * * *", { "*-*-* *:00:00" } },
                { "@hourly", { "*-*-* *:00:00" } },
                { "@daily", { "*-*-* 00:00:00" } },
                { "@midnight", { "*-*-* 00:00:00" } },
                { "@weekly", { "Sun *-*-* 00:00:00" } },
                { "@monthly", { "*-*-01 00:00:00" } },
                { "@yearly", { "*-01-01 00:00:00" } },
                { "@annually", { "*-01-01 00:00:00" } },
                { "  @Daily\t", { "*-*-* 00:00:00" } },
                { "5 4 * * sun", { "Sun *-*-* 04:05:00" } },
                { "0 0 * * 7", { "Sun *-*-* 00:00:00" } },
                { "0 0 * * 0,7", { "Sun *-*-* 00:00:00" } },
                { "0 0 * * 0-7", { "*-*-* 00:00:00" } },
                { "0 0 * * 5-7", { "Fri..Sun *-*-* 00:00:00" } },
                { "0 0 * * SAT,sun", { "Sat,Sun *-*-* 00:00:00" } },
                { "0 0 * * 1,3,5", { "Mon,Wed,Fri *-*-* 00:00:00" } },
                { "0 0 * * */2", { "Tue,Thu,Sat,Sun *-*-* 00:00:00" } },
                { "0 12 * JAN-MAR,dec *", { "*-01..03,12-* 12:00:00" } },
                { "0 0 1 */3 *", { "*-01..10/3-01 00:00:00" } },
                { "0 0 1 jan *", { "*-01-01 00:00:00" } },
                { "5-50/10 * * * *", { "*-*-* *:05..45/10:00" } },
                { "1/20 * * * *", { "*-*-* *:01,21,41:00" } },
                { "1/10 * * * *", { "*-*-* *:01..51/10:00" } },
                { "0 */6 * * *", { "*-*-* 00..18/6:00:00" } },
                { "0 9-17 * * mon-fri", { "Mon..Fri *-*-* 09..17:00:00" } },
                { "0,30 8,12,16 * * *", { "*-*-* 08,12,16:00,30:00" } },
                { "0 0 */2 * *", { "*-*-01..31/2 00:00:00" } },
                { "59 23 31 12 *", { "*-12-31 23:59:00" } },
                { "0 0 29 2 *", { "*-02-29 00:00:00" } },
                { "0 0 1,15 * 5", { "Fri *-*-* 00:00:00", "*-*-01,15 00:00:00" } },
                { "0 0 13 * fri", { "Fri *-*-* 00:00:00", "*-*-13 00:00:00" } },
                { "0 0 */2 * 1", { "Mon *-*-01..31/2 00:00:00" } },           /* '*' first: both */
                { "0 0 1 * */2", { "Tue,Thu,Sat,Sun *-*-01 00:00:00" } }, /* '*' first: both */
                { "0 0 1-31 * 1", { "*-*-* 00:00:00" } },                 /* either, one side all */
                { "0 0 1 1 0-6", { "*-01-* 00:00:00" } },
                { "0 0 30 2 mon", { "Mon *-02-* 00:00:00" } },            /* Feb 30 never: weekdays only */
                { "0 0 1,2,3,10,20-22 * *", { "*-*-01..03,10,20..22 00:00:00" } },
                { "0 0 1,15,29 * *", { "*-*-01,15,29 00:00:00" } },
                { "0 0 */9 * *", { "*-*-01..28/9 00:00:00" } },
                { "0 */5 * * *", { "*-*-* 00..20/5:00:00" } },
                { "*/59 * * * *", { "*-*-* *:00,59:00" } },
                { "07 007 * * *", { "*-*-* 07:07:00" } },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_strv_free_ char **list = NULL;
                bool ok = verify(cases[i].expr, &list, true);
                size_t n = 0;

                while (n < ELEMENTSOF(cases[i].want) && cases[i].want[n])
                        n++;
                if (ok && strv_length(list) != n)
                        ok = false;
                for (size_t k = 0; ok && k < n; k++)
                        ok = streq(list[k], cases[i].want[k]);
                if (!ok && list)
                        diag("got \"%s\"%s%s", list[0], list[1] ? ", " : "", list[1] ?: "");
                check(ok, "\"%s\" -> \"%s\"%s%s%s", cases[i].expr, cases[i].want[0], cases[i].want[1] ? " and \"" : "",
                      cases[i].want[1] ?: "", cases[i].want[1] ? "\"" : "");
        }
}

static void test_errors(void) {
        static const struct {
                const char *expr;
                const char *error;      /* a part of the message */
        } cases[] = {
                { "", "empty schedule" },
                { "   \t ", "empty schedule" },
                { "* * * *", "expected 5 fields" },
                { "* * * * * *", "got 6" },
                { "0 0 * * * 2024", "expected 5 fields" },
                { "60 * * * *", "minute: 60 is out of range 0-59" },
                { "* 24 * * *", "hour: 24 is out of range 0-23" },
                { "* * 0 * *", "day-of-month: 0 is out of range 1-31" },
                { "* * 32 * *", "day-of-month: 32 is out of range 1-31" },
                { "* * * 13 *", "month: 13 is out of range 1-12" },
                { "* * * 0 *", "month: 0 is out of range 1-12" },
                { "* * * * 8", "day-of-week: 8 is out of range 0-7" },
                { "99999999999999999999 * * * *", "minute: 9999999999999999999" },
                { "*/0 * * * *", "minute: step 0 is not allowed" },
                { "* 1-5/0 * * *", "hour: step 0" },
                { "*/60 * * * *", "minute: step 60 is larger" },
                { "* * * * */7", "day-of-week: step 7 is larger" },
                { "5-2 * * * *", "minute: reversed range 5-2" },
                { "* * * dec-jan *", "month: reversed range dec-jan" },
                { "* * * * fri-mon", "day-of-week: reversed range fri-mon" },
                { "x * * * *", "minute: expected a number, got \"x\"" },
                { "* * * * monday", "day-of-week: expected a number 0-7 or a weekday name" },
                { "* * * foo *", "month: expected a number 1-12 or a month name" },
                { "* * * * jan", "day-of-week: expected" },
                { "* * * mon *", "month: expected" },
                { "1,,2 * * * *", "minute: empty element" },
                { ",1 * * * *", "minute: empty element" },
                { "1, * * * *", "minute: empty element" },
                { "1- * * * *", "minute: a value is missing" },
                { "-1 * * * *", "minute: expected a number, got \"-1\"" },
                { "*/ * * * *", "minute: expected a step number" },
                { "*/x * * * *", "minute: expected a step number" },
                { "*/5/2 * * * *", "minute: cannot parse" },
                { "** * * * *", "minute: cannot parse" },
                { "1-2-3 * * * *", "minute: cannot parse" },
                { "* * L * *", "day-of-month: expected a number" },
                { "* * 15W * *", "day-of-month: cannot parse" },
                { "* * * * 5#3", "day-of-week: cannot parse" },
                { "* * ? * *", "day-of-month: expected a number" },
                { "0 0 30 2 *", "never run" },
                { "0 0 31 4,6,9,11 *", "never run" },
                { "@reboot", "@reboot has no calendar equivalent" },
                { "@every_5m", "unknown macro" },
                { "@daily 5", "unknown macro" },
                { "* * * * *\n", "control or non-ASCII character at byte 10" },
                { "* * * * *; rm -rf /", "expected 5 fields (minute hour day-of-month month day-of-week), got 8" },
                { "$(reboot) * * * *", "minute: expected a number" },
                { "0 0 * * 1\x01", "control" },
                { "0 0 * * \xc3\xa9", "non-ASCII" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_strv_free_ char **list = NULL;
                _cleanup_free_ char *error = NULL;
                const char *want = cases[i].error;
                int r;

                r = cron_to_oncalendar(cases[i].expr, &list, &error);
                if (!check(r == -EINVAL && !list && error && strstr(error, want), "refused: \"%s\"", cases[i].expr))
                        diag("r=%d error=%s (want \"%s\")", r, strna(error), want);
                else
                        diag("  %s", error);
        }

        /* Length limit, and errors quote user text only as printable ASCII. */
        {
                char big[CRON_EXPR_MAX + 2];
                _cleanup_free_ char *error = NULL;
                _cleanup_strv_free_ char **list = NULL;
                bool clean = true;
                int r;

                memset(big, '1', sizeof(big) - 1);
                big[sizeof(big) - 1] = 0;
                r = cron_to_oncalendar(big, &list, &error);
                check(r == -EINVAL && error && strstr(error, "too long"), "input longer than %u bytes refused (%s)",
                      CRON_EXPR_MAX, strna(error));
                free(error);
                error = NULL;
                memset(big, ' ', sizeof(big) - 1);
                memcpy(big, "0 0 * * *", 9);
                big[CRON_EXPR_MAX] = 0;
                check(cron_to_oncalendar(big, &list, &error) == 0 && list, "input of exactly %u bytes accepted",
                      CRON_EXPR_MAX);
                list = strv_free(list);
                free(error);
                error = NULL;
                (void) cron_to_oncalendar("0 0 1 \"'\\`$(x)AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
                                          "AAAAAAAAAAAAAAAAAAAAAA *", &list, &error);
                for (const char *p = error; p && *p; p++)
                        clean = clean && *p >= 0x20 && *p < 0x7f;
                check(error && clean && strlen(error) < 200, "error about long junk is short and printable: %s",
                      strna(error));
        }
        {
                char **list = (char **) 0x1;
                check(cron_to_oncalendar(NULL, &list, NULL) == -EINVAL && list == (char **) 0x1,
                      "NULL input: -EINVAL, output untouched");
                check(cron_to_oncalendar("x", &list, NULL) == -EINVAL && list == (char **) 0x1,
                      "no error wanted: still -EINVAL, output untouched");
        }
}

/* Random expressions of the grammar, each verified against the evaluator. */
static unsigned rnd_state = 12345;

static unsigned rnd(unsigned n) {
        rnd_state = rnd_state * 1103515245 + 12345;
        return (rnd_state >> 16) % n;
}

static void random_value(char *buf, size_t size, int field, int lo, int hi) {
        static const char *const months[] = { "JAN", "feb", "Mar", "apr", "MAY", "jun",
                                              "jul", "aug", "sep", "oct", "nov", "dec" };
        static const char *const days[] = { "sun", "MON", "tue", "Wed", "thu", "fri", "sat" };
        int v = lo + (int) rnd((unsigned) (hi - lo + 1));

        if (field == 3 && rnd(3) == 0)
                snprintf(buf, size, "%s", months[v - 1]);
        else if (field == 4 && v < 7 && rnd(3) == 0)
                snprintf(buf, size, "%s", days[v]);
        else
                snprintf(buf, size, "%d", v);
}

static void random_field(char *buf, size_t size, int field) {
        static const int lo[] = { 0, 0, 1, 1, 0 }, hi[] = { 59, 23, 31, 12, 7 };
        int span = (field == 4 ? 6 : hi[field]) - lo[field];
        unsigned n = rnd(4) == 0 ? 2 + rnd(2) : 1;
        size_t k = 0;

        if (rnd(3) == 0) {
                snprintf(buf, size, "*");
                return;
        }
        for (unsigned i = 0; i < n; i++) {
                char a[8], b[8];
                int x = lo[field] + (int) rnd((unsigned) (hi[field] - lo[field] + 1));
                int y = x + (int) rnd((unsigned) (hi[field] - x + 1));

                k += (size_t) snprintf(buf + k, size - k, "%s", i ? "," : "");
                switch (rnd(5)) {
                case 0:
                        k += (size_t) snprintf(buf + k, size - k, "*/%d", 1 + (int) rnd((unsigned) span));
                        break;
                case 1:
                        random_value(a, sizeof(a), field, x, x);
                        k += (size_t) snprintf(buf + k, size - k, "%s", a);
                        break;
                case 2:
                        random_value(a, sizeof(a), field, x, x);
                        random_value(b, sizeof(b), field, y, y);
                        k += (size_t) snprintf(buf + k, size - k, "%s-%s", a, b);
                        break;
                case 3:
                        random_value(a, sizeof(a), field, x, x);
                        random_value(b, sizeof(b), field, y, y);
                        k += (size_t) snprintf(buf + k, size - k, "%s-%s/%d", a, b, 1 + (int) rnd((unsigned) span));
                        break;
                default:
                        k += (size_t) snprintf(buf + k, size - k, "%d/%d", x, 1 + (int) rnd((unsigned) span));
                        break;
                }
        }
}

static void test_random(void) {
        unsigned n_ok = 0, n_never = 0, total = 400;

        for (unsigned i = 0; i < total; i++) {
                char f[5][64], expr[400];
                _cleanup_strv_free_ char **list = NULL;
                _cleanup_free_ char *error = NULL;

                for (int k = 0; k < 5; k++)
                        random_field(f[k], sizeof(f[k]), k);
                snprintf(expr, sizeof(expr), "%s %s %s %s %s", f[0], f[1], f[2], f[3], f[4]);
                if (cron_to_oncalendar(expr, &list, &error) < 0) {
                        time_t t[1];

                        /* Only a schedule that never runs may be refused. */
                        if (error && strstr(error, "never run") && cron_next(expr, 1735689600, t, 1, 30) == 0) {
                                n_never++;
                                continue;
                        }
                        diag("refused \"%s\": %s", expr, strna(error));
                        continue;
                }
                if (verify(expr, NULL, true))
                        n_ok++;
        }
        check(n_ok + n_never == total, "%u random expressions: %u match cron exactly, %u never run (refused)", total,
              n_ok, n_never);
}

/* ---- cron-timer.c: app ids, names, the command line, validation -------------------- */

static void test_names(void) {
        static const char *const good[] = { "a", "0", "app", "my-app-2", "0cron", "a-" };
        static const char *const bad[] = {
                "", "-app", "App", "my_app", "a.b", "a/b", "../etc", "a b", "a;b", "a\nb", "$(x)", "a*",
                "app.timer", "\xc3\xa9", "0123456789012345678901234567890123456789012345678901234567890123",
        };
        char *name = NULL;

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                check(cron_app_is_valid(good[i]) && cron_unit_name(good[i], ".timer", &name) == 0 &&
                      strncmp(name, "norn-cron-", 10) == 0 && streq(name + 10 + strlen(good[i]), ".timer"),
                      "app id \"%s\" accepted: %s", good[i], strna(name));
                name = mfree(name);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                check(!cron_app_is_valid(bad[i]) && cron_unit_name(bad[i], ".service", &name) == -EINVAL && !name,
                      "app id refused before any unit name is made: \"%.20s\"", bad[i]);
        check(cron_unit_name("app", ".scope", &name) == -EINVAL && !name, "only .timer and .service names");
        check(cron_app_is_valid("012345678901234567890123456789012345678901234567890123456789012"),
              "63-character app id accepted");
}

static void test_argv(void) {
        const char *command = "echo \"it's\" $HOME ${X} $$ `id` $(date) %n \\\\ 'q'\nsecond line; exit 3";
        char *calendar[] = { (char *) "*-*-* *:*:00", NULL };
        char *env[] = { (char *) "FOO=bar baz", (char *) "EMPTY=", (char *) "DOLLAR=$x", NULL };
        CronJob job = {
                .app = "app", .image = "registry.local:5000/app:0123456789ab", .oncalendar = calendar,
                .command = command, .env = env, .runtime = "/usr/bin/docker",
        };
        const char *want[] = {
                "/usr/bin/docker", "run", "--rm", "--env=FOO", "--env=EMPTY", "--env=DOLLAR",
                "registry.local:5000/app:0123456789ab", "sh", "-c", command, NULL,
        };
        _cleanup_strv_free_ char **argv = NULL;
        bool same;

        same = cron_job_argv(&job, &argv) == 0 && strv_length(argv) == ELEMENTSOF(want) - 1;
        for (size_t i = 0; same && want[i]; i++)
                same = streq(argv[i], want[i]);
        check(same, "argv: runtime run --rm --env=NAME... image sh -c <command as one argument, untouched>");
        argv = strv_free(argv);

        (void) unsetenv("NORN_CRON_RUNTIME");
        job.runtime = NULL;
        job.env = NULL;
        check(streq(cron_runtime(), "podman") && cron_job_argv(&job, &argv) == 0 && streq(argv[0], "podman") &&
              strv_length(argv) == 7, "default runtime: podman");
        argv = strv_free(argv);
        (void) setenv("NORN_CRON_RUNTIME", "/opt/bin/fake-runtime", 1);
        check(streq(cron_runtime(), "/opt/bin/fake-runtime") && cron_job_argv(&job, &argv) == 0 &&
              streq(argv[0], "/opt/bin/fake-runtime"), "NORN_CRON_RUNTIME is the runtime");
        argv = strv_free(argv);
        (void) setenv("NORN_CRON_RUNTIME", "", 1);
        check(streq(cron_runtime(), "podman"), "empty NORN_CRON_RUNTIME: podman");
        (void) unsetenv("NORN_CRON_RUNTIME");
}

static void test_validate(void) {
        char *calendar[] = { (char *) "*-*-* *:*:00", NULL };
        char *no_calendar[] = { NULL };
        char *bad_calendar[] = { (char *) "*-*-* *:*:00 $(x)", NULL };
        char *bad_env1[] = { (char *) "NOEQUALS", NULL };
        char *bad_env2[] = { (char *) "1X=1", NULL };
        char *bad_env3[] = { (char *) "A-B=1", NULL };
        char *bad_env4[] = { (char *) "=x", NULL };
        char *bad_env5[] = { (char *) "X=\xff", NULL };
        const CronJob ok = { .app = "app", .image = "app:1", .oncalendar = calendar, .command = "true" };
        static const struct {
                const char *what, *field;
                int change;
        } cases[] = {
                { "bad app id", "app:", 0 },        { "app with a slash", "app:", 1 },
                { "image starting with -", "image:", 2 }, { "image with a space", "image:", 3 },
                { "empty image", "image:", 4 },     { "no calendar", "schedule:", 5 },
                { "calendar with junk", "schedule:", 6 }, { "empty command", "command:", 7 },
                { "command not UTF-8", "command:", 8 }, { "env without =", "env:", 9 },
                { "env name with a digit first", "env:", 10 }, { "env name with -", "env:", 11 },
                { "env without name", "env:", 12 }, { "env value not UTF-8", "env:", 13 },
                { "runtime with a space", "runtime:", 14 }, { "runtime starting with -", "runtime:", 15 },
                { "relative runtime path", "runtime:", 16 }, { "runtime with $", "runtime:", 17 },
                { "runtime with ..", "runtime:", 18 }, { "slice with /", "slice:", 19 },
                { "image with $", "image:", 20 }, { "image with newline", "image:", 21 },
        };
        _cleanup_free_ char *error = NULL;
        int r;

        check(cron_job_validate(&ok, &error) == 0 && !error, "a plain job is valid");
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                CronJob j = ok;

                switch (cases[i].change) {
                case 0: j.app = "Bad_App"; break;
                case 1: j.app = "a/b"; break;
                case 2: j.image = "--privileged"; break;
                case 3: j.image = "app:1 --privileged"; break;
                case 4: j.image = ""; break;
                case 5: j.oncalendar = no_calendar; break;
                case 6: j.oncalendar = bad_calendar; break;
                case 7: j.command = ""; break;
                case 8: j.command = "echo \xc3"; break;
                case 9: j.env = bad_env1; break;
                case 10: j.env = bad_env2; break;
                case 11: j.env = bad_env3; break;
                case 12: j.env = bad_env4; break;
                case 13: j.env = bad_env5; break;
                case 14: j.runtime = "podman run"; break;
                case 15: j.runtime = "-podman"; break;
                case 16: j.runtime = "bin/podman"; break;
                case 17: j.runtime = "/usr/bin/$X"; break;
                case 18: j.runtime = "/usr/../bin/sh"; break;
                case 19: j.slice = "a/b.slice"; break;
                case 20: j.image = "app:$HOME"; break;
                case 21: j.image = "app:1\nx"; break;
                }
                error = mfree(error);
                r = cron_job_validate(&j, &error);
                check(r == -EINVAL && error && strncmp(error, cases[i].field, strlen(cases[i].field)) == 0,
                      "invalid job refused: %s (%s)", cases[i].what, strna(error));
        }
        {
                char *many[CRON_CALENDARS_MAX + 2];
                CronJob j = ok;

                for (size_t i = 0; i < CRON_CALENDARS_MAX + 1; i++)
                        many[i] = (char *) "*-*-* 00:00:00";
                many[CRON_CALENDARS_MAX + 1] = NULL;
                j.oncalendar = many;
                error = mfree(error);
                check(cron_job_validate(&j, &error) == -EINVAL, "more than %u calendars refused", CRON_CALENDARS_MAX);
        }
        {
                CronJob j = ok;
                char *command = malloc(CRON_COMMAND_MAX + 2);

                memset(command, 'x', CRON_COMMAND_MAX + 1);
                command[CRON_COMMAND_MAX + 1] = 0;
                j.command = command;
                error = mfree(error);
                check(cron_job_validate(&j, &error) == -EINVAL, "a command over %u bytes refused", CRON_COMMAND_MAX);
                command[CRON_COMMAND_MAX] = 0;
                error = mfree(error);
                check(cron_job_validate(&j, &error) == 0, "a command of %u bytes accepted", CRON_COMMAND_MAX);
                free(command);
        }
        {
                CronJob j = ok;

                j.command = "echo \"$(date)\" 'it''s'\n\tand `more` ${X} %n \\ é";
                error = mfree(error);
                check(cron_job_validate(&j, &error) == 0, "a command with quotes, newlines and $ is valid");
        }
}

/* ---- The driver for tests/integration/test_cron.py --------------------------------- */

typedef struct Driver {
        sd_event *event;
        sd_bus *bus;
        Db *db;
        CronTimers *timers;
        char buf[256 * 1024];
        size_t n;
        bool quit;
} Driver;

typedef struct Pending {
        json_int_t id;
        CronOp *op;
        sd_event_source *cancel_timer;  /* "cancel_after_ms": cancel the operation then */
} Pending;

static void reply(json_int_t id, int r, const char *error, json_t *extra) {
        json_t *o = extra ?: json_object();
        char *s;

        json_object_set_new(o, "id", json_integer(id));
        json_object_set_new(o, "ok", json_boolean(r >= 0));
        json_object_set_new(o, "r", json_integer(r));
        if (error)
                json_object_set_new(o, "error", json_string(error));
        s = json_dumps(o, JSON_COMPACT);
        printf("%s\n", s);
        fflush(stdout);
        free(s);
        json_decref(o);
}

static void on_done(int r, const char *error, void *userdata) {
        Pending *p = userdata;

        sd_event_source_disable_unref(p->cancel_timer);
        reply(p->id, r, error, NULL);
        free(p);
}

static int on_cancel_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Pending *p = userdata;
        json_t *o = json_object();

        cron_op_cancel(p->op);
        sd_event_source_disable_unref(p->cancel_timer);
        json_object_set_new(o, "cancelled", json_true());
        reply(p->id, 0, NULL, o);
        free(p);
        return 0;
}

static char **json_strv(json_t *a) {
        char **l = calloc(1, sizeof(char *));
        size_t i;
        json_t *v;

        json_array_foreach(a, i, v)
                if (l && strv_extend(&l, json_string_value(v) ?: "") < 0)
                        l = strv_free(l);
        return l;
}

static const char *jstr(json_t *o, const char *key) {
        return json_string_value(json_object_get(o, key));
}

static void driver_command(Driver *d, const char *line) {
        json_t *cmd = json_loads(line, 0, NULL);
        json_t *job_json = json_object_get(cmd, "job");
        const char *op = jstr(cmd, "cmd");
        json_int_t id = json_integer_value(json_object_get(cmd, "id"));
        _cleanup_strv_free_ char **calendar = NULL, **env = NULL;
        _cleanup_free_ char *error = NULL;
        Pending *p = NULL;
        CronJob job = {};
        int r = 0;

        if (!op) {
                reply(id, -EINVAL, "bad command", NULL);
                goto finish;
        }
        if (job_json) {
                const char *schedule = jstr(job_json, "schedule");

                if (schedule) {
                        r = cron_to_oncalendar(schedule, &calendar, &error);
                        if (r < 0) {
                                reply(id, r, error, NULL);
                                goto finish;
                        }
                } else
                        calendar = json_strv(json_object_get(job_json, "oncalendar"));
                if (json_object_get(job_json, "env"))
                        env = json_strv(json_object_get(job_json, "env"));
                job = (CronJob) {
                        .app = jstr(job_json, "app"),
                        .image = jstr(job_json, "image"),
                        .oncalendar = calendar,
                        .command = jstr(job_json, "command"),
                        .env = env,
                        .runtime = jstr(job_json, "runtime"),
                        .slice = jstr(job_json, "slice"),
                        .timeout_sec = (unsigned) json_integer_value(json_object_get(job_json, "timeout")),
                };
        }
        if (streq(op, "quit")) {
                d->quit = true;
                reply(id, 0, NULL, NULL);
                goto finish;
        }
        if (streq(op, "validate")) {
                r = cron_job_validate(&job, &error);
                reply(id, r, error, NULL);
                goto finish;
        }
        p = calloc(1, sizeof(*p));
        if (!p) {
                reply(id, -ENOMEM, "out of memory", NULL);
                goto finish;
        }
        *p = (Pending) { .id = id };
        if (streq(op, "install"))
                r = cron_timer_install(d->bus, &job, on_done, p, NULL);
        else if (streq(op, "remove"))
                r = cron_timer_remove(d->bus, jstr(cmd, "app"), on_done, p, NULL);
        else if (streq(op, "deploy") && d->timers) {
                r = cron_timers_deploy(d->timers, &job, jstr(cmd, "schedule") ?: "", 0, on_done, p, &p->op);
                if (r >= 0 && json_integer_value(json_object_get(cmd, "cancel_after_ms")) > 0)
                        (void) sd_event_add_time_relative(
                                d->event, &p->cancel_timer, CLOCK_MONOTONIC,
                                (uint64_t) json_integer_value(json_object_get(cmd, "cancel_after_ms")) * 1000, 0,
                                on_cancel_timer, p);
        }
        else if (streq(op, "undeploy") && d->timers)
                r = cron_timers_undeploy(d->timers, jstr(cmd, "app"), on_done, p, NULL);
        else if (streq(op, "restore") && d->timers)
                r = cron_timers_restore(d->timers, on_done, p);
        else
                r = -EOPNOTSUPP;
        if (r < 0) {
                (void) cron_job_validate(&job, &error);
                reply(id, r, error ?: strerror(-r), NULL);
                free(p);
        }
finish:
        json_decref(cmd);
}

static int on_stdin(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Driver *d = userdata;
        ssize_t k = read(fd, d->buf + d->n, sizeof(d->buf) - d->n - 1);
        char *nl;

        if (k <= 0) {
                d->quit = true;
                return 0;
        }
        d->n += (size_t) k;
        d->buf[d->n] = 0;
        while ((nl = strchr(d->buf, '\n'))) {
                *nl = 0;
                driver_command(d, d->buf);
                memmove(d->buf, nl + 1, d->n - (size_t) (nl + 1 - d->buf) + 1);
                d->n -= (size_t) (nl + 1 - d->buf);
        }
        return 0;
}

static int driver(void) {
        Driver d = {};
        const char *url = getenv("NORN_CRON_DRIVER_DATABASE_URL");
        sd_event_source *in = NULL;
        int r;

        log_setup(LOG_TARGET_STDERR, getenv("NORN_CRON_DRIVER_DEBUG") ? LOG_DEBUG : LOG_INFO);
        r = sd_event_default(&d.event);
        if (r >= 0)
                r = sd_bus_open_user(&d.bus);
        if (r >= 0)
                r = sd_bus_attach_event(d.bus, d.event, 0);
        if (r >= 0 && url) {
                r = db_new(d.event, url, NORN_SOURCE_SQL_DIR, &d.db);
                if (r >= 0)
                        r = db_start(d.db);
                while (r >= 0 && !db_is_up(d.db))
                        r = sd_event_run(d.event, UINT64_MAX);
        }
        if (r >= 0)
                r = cron_timers_new(d.bus, d.db, getenv("NORN_CRON_DRIVER_SLICE"), &d.timers);
        if (r >= 0)
                r = sd_event_add_io(d.event, &in, STDIN_FILENO, EPOLLIN, on_stdin, &d);
        if (r < 0) {
                fprintf(stderr, "driver set-up failed: %s\n", strerror(-r));
                return EXIT_FAILURE;
        }
        reply(0, 0, NULL, NULL);        /* ready */
        while (!d.quit)
                if (sd_event_run(d.event, UINT64_MAX) < 0)
                        break;
        /* Let replies and last queries go out. */
        for (int i = 0; i < 20; i++)
                (void) sd_event_run(d.event, 10000);
        sd_event_source_disable_unref(in);
        cron_timers_free(d.timers);
        db_free(d.db);
        sd_bus_flush_close_unref(d.bus);
        sd_event_unref(d.event);
        return EXIT_SUCCESS;
}

int main(int argc, char *argv[]) {
        if (argc > 1 && streq(argv[1], "--driver"))
                return driver();

        log_setup(LOG_TARGET_STDERR, LOG_INFO);
        (void) signal(SIGPIPE, SIG_IGN);

        test_examples();
        test_errors();
        test_random();
        test_names();
        test_argv();
        test_validate();

        printf("1..%u\n", n_checks);
        if (n_failed > 0)
                diag("%u of %u checks failed", n_failed, n_checks);
        return n_failed > 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
