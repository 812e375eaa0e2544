/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cron.h"
#include "macro.h"
#include "strv.h"

/* Each field is parsed into a bit set of its values, and the OnCalendar=
 * components are printed from those sets, so the output matches exactly the
 * times cron would pick whatever way the input was written. */

enum { F_MINUTE, F_HOUR, F_DOM, F_MONTH, F_DOW, _F_MAX };

typedef struct FieldInfo {
        const char *name;
        unsigned lo, hi;            /* accepted values (day-of-week: 0-7) */
        const char *const *names;   /* three-letter names for lo.. */
} FieldInfo;

static const char *const month_names[] = {
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec", NULL,
};
static const char *const dow_names[] = { "sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL };

static const FieldInfo fields[_F_MAX] = {
        [F_MINUTE] = { "minute", 0, 59, NULL },
        [F_HOUR] = { "hour", 0, 23, NULL },
        [F_DOM] = { "day-of-month", 1, 31, NULL },
        [F_MONTH] = { "month", 1, 12, month_names },
        [F_DOW] = { "day-of-week", 0, 7, dow_names },
};

typedef struct Field {
        uint64_t set;   /* bit v: value v selected (day-of-week: 7 folded into 0) */
        bool star;      /* the field text starts with '*' (cron's day rule looks at this) */
} Field;

static const struct {
        const char *name;
        const char *expr;
} macros[] = {
        { "@hourly", "0 * * * *" },   { "@daily", "0 0 * * *" },   { "@midnight", "0 0 * * *" },
        { "@weekly", "0 0 * * 0" },   { "@monthly", "0 0 1 * *" }, { "@yearly", "0 0 1 1 *" },
        { "@annually", "0 0 1 1 *" },
};

static int fail(char **ret_error, const char *format, ...) _printf_(2, 3);
static int fail(char **ret_error, const char *format, ...) {
        va_list ap;

        if (ret_error) {
                char *s = NULL;

                va_start(ap, format);
                if (vasprintf(&s, format, ap) < 0)
                        s = NULL;
                va_end(ap);
                if (!s)
                        return -ENOMEM;
                *ret_error = s;
        }
        return -EINVAL;
}

/* User text for a message: printable ASCII only, bounded. */
static void quote(char *buf, size_t size, const char *s, size_t n) {
        size_t k = 0;

        for (; k < n && k + 4 < size; k++)
                buf[k] = s[k] >= 0x20 && s[k] < 0x7f ? s[k] : '?';
        if (k < n) {
                memcpy(buf + k, "...", 3);
                k += 3;
        }
        buf[k] = 0;
}

static uint64_t bits(unsigned lo, unsigned hi) {
        return (hi >= 63 ? ~UINT64_C(0) : (UINT64_C(1) << (hi + 1)) - 1) & ~((UINT64_C(1) << lo) - 1);
}

static uint64_t field_full(int f) {
        return f == F_DOW ? bits(0, 6) : bits(fields[f].lo, fields[f].hi);
}

/* A number (at most 4 digits, so no overflow) or, for months and weekdays, a
 * three-letter name. *p advances past it. */
static int parse_value(int f, const char **p, const char *end, unsigned *ret, char **ret_error) {
        const FieldInfo *fi = &fields[f];
        const char *s = *p;
        char q[64];

        if (s < end && *s >= '0' && *s <= '9') {
                unsigned v = 0;
                size_t n = 0;

                for (; s < end && *s >= '0' && *s <= '9'; s++, n++)
                        if (n < 4)
                                v = v * 10 + (unsigned) (*s - '0');
                if (n > 4 || v < fi->lo || v > fi->hi) {
                        quote(q, sizeof(q), *p, (size_t) (s - *p));
                        return fail(ret_error, "%s: %s is out of range %u-%u", fi->name, q, fi->lo, fi->hi);
                }
                *p = s;
                *ret = v;
                return 0;
        }
        if (fi->names && end - s >= 3) {
                for (unsigned i = 0; fi->names[i]; i++)
                        if (strncasecmp(s, fi->names[i], 3) == 0 &&
                            (end - s == 3 || !((s[3] | 0x20) >= 'a' && (s[3] | 0x20) <= 'z'))) {
                                *p = s + 3;
                                *ret = fi->lo + i;
                                return 0;
                        }
        }
        quote(q, sizeof(q), s, (size_t) (end - s));
        if (s == end)
                return fail(ret_error, "%s: a value is missing", fi->name);
        return fail(ret_error, "%s: expected %s, got \"%s\"", fi->name,
                    f == F_MONTH ? "a number 1-12 or a month name JAN-DEC" :
                    f == F_DOW ? "a number 0-7 or a weekday name SUN-SAT" : "a number", q);
}

static int parse_element(int f, const char *s, const char *end, uint64_t *set, char **ret_error) {
        const FieldInfo *fi = &fields[f];
        unsigned lo, hi, step = 1;
        bool range = false;
        const char *p = s;
        char q[64];
        int r;

        if (p == end)
                return fail(ret_error, "%s: empty element in a list", fi->name);
        if (*p == '*') {
                p++;
                lo = fi->lo;
                hi = f == F_DOW ? 6 : fi->hi;
                range = true;
        } else {
                r = parse_value(f, &p, end, &lo, ret_error);
                if (r < 0)
                        return r;
                hi = lo;
                if (p < end && *p == '-') {
                        p++;
                        r = parse_value(f, &p, end, &hi, ret_error);
                        if (r < 0)
                                return r;
                        if (lo > hi) {
                                quote(q, sizeof(q), s, (size_t) (p - s));
                                return fail(ret_error, "%s: reversed range %s (write the smaller value first)",
                                            fi->name, q);
                        }
                        range = true;
                }
        }
        if (p < end && *p == '/') {
                const char *d = ++p;
                unsigned span = (f == F_DOW ? 6 : fi->hi) - fi->lo;

                step = 0;
                for (; p < end && *p >= '0' && *p <= '9' && p - d < 4; p++)
                        step = step * 10 + (unsigned) (*p - '0');
                if (p == d || (p < end && *p >= '0' && *p <= '9')) {
                        quote(q, sizeof(q), d, (size_t) (end - d));
                        return fail(ret_error, "%s: expected a step number after '/', got \"%s\"", fi->name, q);
                }
                if (step == 0)
                        return fail(ret_error, "%s: step 0 is not allowed (the step must be at least 1)", fi->name);
                if (step > span)
                        return fail(ret_error, "%s: step %u is larger than the field's range %u-%u",
                                    fi->name, step, fi->lo, f == F_DOW ? 6 : fi->hi);
                if (!range)     /* "a/n": from a to the end of the field */
                        hi = f == F_DOW ? 7 : fi->hi;
        }
        if (p != end) {
                quote(q, sizeof(q), s, (size_t) (end - s));
                return fail(ret_error, "%s: cannot parse \"%s\" (expected *, a value, a range a-b, "
                            "a step */n or a-b/n, or a list of these)", fi->name, q);
        }
        for (unsigned v = lo; v <= hi; v += step)
                *set |= UINT64_C(1) << (f == F_DOW && v == 7 ? 0 : v);
        return 0;
}

static int parse_field(int f, const char *s, size_t n, Field *ret, char **ret_error) {
        const char *end = s + n;
        Field field = { .star = n > 0 && s[0] == '*' };
        int r;

        for (const char *p = s;;) {
                const char *comma = memchr(p, ',', (size_t) (end - p));
                const char *e = comma ?: end;

                r = parse_element(f, p, e, &field.set, ret_error);
                if (r < 0)
                        return r;
                if (!comma)
                        break;
                p = comma + 1;
        }
        *ret = field;
        return 0;
}

/* A bounded buffer that remembers an overflow rather than truncating. */
typedef struct Buf {
        char s[512];
        size_t n;
        bool overflow;
} Buf;

static void buf_printf(Buf *b, const char *format, ...) _printf_(2, 3);
static void buf_printf(Buf *b, const char *format, ...) {
        va_list ap;
        int k;

        if (b->overflow)
                return;
        va_start(ap, format);
        k = vsnprintf(b->s + b->n, sizeof(b->s) - b->n, format, ap);
        va_end(ap);
        if (k < 0 || (size_t) k >= sizeof(b->s) - b->n)
                b->overflow = true;
        else
                b->n += (size_t) k;
}

/* One date or time component from a set: "*", "05", "01..05", "00..45/15",
 * or a list of values and runs "01,03,10..20". Never the open form "00/15":
 * systemd 252 misses the first value of such a component when a larger one
 * rolls over ("*-*-* 00/5:00:00" after 23:59 on the last day of a month
 * elapses at 05:00, not 00:00), while "00..20/5" is right. */
static void put_component(Buf *b, uint64_t set, unsigned lo, unsigned hi) {
        unsigned v[64], n = 0, step;
        bool progression;

        if (set == bits(lo, hi)) {
                buf_printf(b, "*");
                return;
        }
        for (unsigned i = lo; i <= hi; i++)
                if (set & (UINT64_C(1) << i))
                        v[n++] = i;
        if (n == 1) {
                buf_printf(b, "%02u", v[0]);
                return;
        }
        step = v[1] - v[0];
        progression = n >= (step == 1 ? 3U : 4U);
        for (unsigned i = 2; i < n && progression; i++)
                progression = v[i] - v[i - 1] == step;
        if (progression) {
                if (step == 1)
                        buf_printf(b, "%02u..%02u", v[0], v[n - 1]);
                else
                        buf_printf(b, "%02u..%02u/%u", v[0], v[n - 1], step);
                return;
        }
        for (unsigned i = 0; i < n;) {
                unsigned j = i;

                while (j + 1 < n && v[j + 1] == v[j] + 1)
                        j++;
                if (i > 0)
                        buf_printf(b, ",");
                if (j - i >= 2) {
                        buf_printf(b, "%02u..%02u", v[i], v[j]);
                        i = j + 1;
                } else
                        buf_printf(b, "%02u", v[i++]);
        }
}

/* Weekdays in systemd's order, Monday first (ranges cannot wrap). */
static void put_weekdays(Buf *b, uint64_t set) {
        static const char *const names[] = { "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun" };
        bool in[7];

        for (unsigned i = 0; i < 7; i++)
                in[i] = set & (UINT64_C(1) << ((i + 1) % 7));
        for (unsigned i = 0, first = 1; i < 7;) {
                unsigned j = i;

                if (!in[i]) {
                        i++;
                        continue;
                }
                while (j + 1 < 7 && in[j + 1])
                        j++;
                buf_printf(b, "%s", first ? "" : ",");
                first = 0;
                if (j - i >= 2) {
                        buf_printf(b, "%s..%s", names[i], names[j]);
                        i = j + 1;
                } else
                        buf_printf(b, "%s", names[i++]);
        }
        buf_printf(b, " ");
}

/* Does some selected day of the month exist in some selected month? */
static bool days_exist(uint64_t dom, uint64_t month) {
        static const unsigned mdays[13] = { 0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };

        for (unsigned m = 1; m <= 12; m++)
                if ((month & (UINT64_C(1) << m)) && (dom & bits(1, mdays[m])))
                        return true;
        return false;
}

static int put_expression(char ***list, const Field *f, bool weekdays, bool days) {
        Buf b = {};

        if (weekdays)
                put_weekdays(&b, f[F_DOW].set);
        buf_printf(&b, "*-");
        put_component(&b, f[F_MONTH].set, 1, 12);
        buf_printf(&b, "-");
        if (days)
                put_component(&b, f[F_DOM].set, 1, 31);
        else
                buf_printf(&b, "*");
        buf_printf(&b, " ");
        put_component(&b, f[F_HOUR].set, 0, 23);
        buf_printf(&b, ":");
        put_component(&b, f[F_MINUTE].set, 0, 59);
        buf_printf(&b, ":00");
        if (b.overflow)
                return -E2BIG;  /* cannot happen: every component fits */
        return strv_extend(list, b.s);
}

static int convert_fields(const char *expr, char ***ret, char **ret_error) {
        _cleanup_strv_free_ char **list = NULL;
        Field f[_F_MAX];
        unsigned n = 0;
        bool dom_all, dow_all, dom_on, dow_on;
        int r;

        for (const char *p = expr; *(p += strspn(p, " \t")); p += strcspn(p, " \t"))
                n++;
        if (n != _F_MAX)
                return fail(ret_error, "expected 5 fields (minute hour day-of-month month day-of-week), got %u", n);
        n = 0;
        for (const char *p = expr; *(p += strspn(p, " \t")); p += strcspn(p, " \t")) {
                r = parse_field((int) n, p, strcspn(p, " \t"), &f[n], ret_error);
                if (r < 0)
                        return r;
                n++;
        }

        /* cron's day rule: if either day field starts with '*', a day must match both
         * (the starred one usually matches all); otherwise it must match either. */
        dom_all = f[F_DOM].set == field_full(F_DOM);
        dow_all = f[F_DOW].set == field_full(F_DOW);
        if (!f[F_DOM].star && !f[F_DOW].star) {
                if (dom_all || dow_all) {   /* "either" with one side matching all days: every day */
                        dom_on = dow_on = false;
                } else {
                        r = put_expression(&list, f, true, false);
                        if (r >= 0 && days_exist(f[F_DOM].set, f[F_MONTH].set))
                                r = put_expression(&list, f, false, true);
                        if (r < 0)
                                return r == -ENOMEM ? -ENOMEM : fail(ret_error, "schedule too complex");
                        *ret = TAKE_PTR(list);
                        return 0;
                }
        } else {
                dom_on = !dom_all;
                dow_on = !dow_all;
        }
        if (dom_on && !days_exist(f[F_DOM].set, f[F_MONTH].set))
                return fail(ret_error, "day-of-month: none of the selected days exists in the selected months; "
                            "the job would never run");

        r = put_expression(&list, f, dow_on, dom_on);
        if (r < 0)
                return r == -ENOMEM ? -ENOMEM : fail(ret_error, "schedule too complex");
        *ret = TAKE_PTR(list);
        return 0;
}

int cron_to_oncalendar(const char *expr, char ***ret, char **ret_error) {
        size_t n, a, b;
        char q[64];

        if (!expr || !ret)
                return -EINVAL;
        n = strlen(expr);
        if (n > CRON_EXPR_MAX)
                return fail(ret_error, "schedule too long (%zu bytes, at most %u)", n, CRON_EXPR_MAX);
        for (size_t i = 0; i < n; i++)
                if ((expr[i] < 0x20 && expr[i] != '\t') || (unsigned char) expr[i] >= 0x7f)
                        return fail(ret_error, "schedule contains a control or non-ASCII character at byte %zu",
                                    i + 1);

        a = strspn(expr, " \t");
        if (expr[a] == '@') {
                b = strcspn(expr + a, " \t");
                if (expr[a + b + strspn(expr + a + b, " \t")] == 0)
                        for (size_t i = 0; i < ELEMENTSOF(macros); i++)
                                if (strlen(macros[i].name) == b && strncasecmp(expr + a, macros[i].name, b) == 0)
                                        return convert_fields(macros[i].expr, ret, ret_error);
                quote(q, sizeof(q), expr + a, n - a);
                if (strncasecmp(expr + a, "@reboot", 7) == 0 && b == 7)
                        return fail(ret_error, "@reboot has no calendar equivalent");
                return fail(ret_error, "unknown macro \"%s\" (expected @hourly, @daily, @midnight, @weekly, "
                            "@monthly, @yearly or @annually)", q);
        }
        if (expr[a] == 0)
                return fail(ret_error, "empty schedule (expected 5 fields: minute hour day-of-month month "
                            "day-of-week)");
        return convert_fields(expr, ret, ret_error);
}
