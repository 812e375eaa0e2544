/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Cron expressions (infraspec `schedule`) to systemd OnCalendar= expressions.
 *
 * Accepted: five fields "minute hour day-of-month month day-of-week",
 * separated by spaces or tabs, each a comma list of elements:
 *   "*"        every value           "a"      one value
 *   "a-b"      a range (a <= b)
 *   "*" "/n"   every n-th value of the field, from its first (written together)
 *   "a-b/n"    every n-th value of the range, from a
 *   "a/n"      every n-th value from a to the end of the field (a common extension)
 * Months also as JAN..DEC, weekdays as SUN..SAT (three letters, any case, also
 * inside ranges); weekday 0 and 7 are both Sunday. Macros @hourly, @daily,
 * @midnight, @weekly, @monthly, @yearly, @annually (any case).
 * Refused, with the field named: values out of range, step 0 or wider than
 * the field, reversed ranges, empty list elements, anything else (L, W, #, ?,
 * @reboot, six fields, ...), and inputs longer than CRON_EXPR_MAX bytes.
 *
 * The result is a list of OnCalendar= expressions, to be set together (a
 * timer elapses when any of them does). It has ONE expression except for
 * cron's OR rule: when neither day-of-month nor day-of-week starts with '*'
 * and neither covers every day, cron runs when EITHER matches, while one
 * OnCalendar= requires both; that schedule becomes two expressions (the
 * weekdays, and the days of the month). A schedule that can never run (e.g.
 * "0 0 30 2 *") is an error. Times are in the timer's time zone (the
 * host's), as with cron. */

#define CRON_EXPR_MAX 256U

/* On success *ret is a NULL-terminated list (1 or 2 entries; free with
 * strv_free) of normalized expressions like "Mon..Fri *-*-* 03:00:00". On
 * failure returns -EINVAL (bad input) or -ENOMEM and, when ret_error is
 * given, sets it to a one-line message naming the field, e.g.
 * "minute: 60 is out of range 0-59"; input is quoted only as printable ASCII.
 * Example: every 15 minutes gives "*-*-* *:00..45/15:00" (never the open
 * form "00/15", which systemd 252 gets wrong at roll-overs; see cron.c). */
int cron_to_oncalendar(const char *expr, char ***ret, char **ret_error);
