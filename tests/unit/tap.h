/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* TAP output for the unit tests (meson reads it with protocol 'tap'):
 * check() prints "ok N - what" or "not ok N - what" and counts; each
 * test's main() prints the plan from n_checks and fails when n_failed. */

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

#include "macro.h"

/* Time bounds in checks are stretched in the sanitizer build, where
 * AddressSanitizer makes the code several times slower. */
#if defined(__SANITIZE_ADDRESS__)
#  define TEST_SLOWDOWN 5
#elif defined(__has_feature)
#  if __has_feature(address_sanitizer)
#    define TEST_SLOWDOWN 5
#  endif
#endif
#ifndef TEST_SLOWDOWN
#  define TEST_SLOWDOWN 1
#endif

static unsigned n_checks, n_failed;

static inline bool check(bool ok, const char *format, ...) _printf_(2, 3);
static inline bool check(bool ok, const char *format, ...) {
        va_list ap;

        printf("%s %u - ", ok ? "ok" : "not ok", ++n_checks);
        va_start(ap, format);
        vprintf(format, ap);
        va_end(ap);
        putchar('\n');
        fflush(stdout);
        if (!ok)
                n_failed++;
        return ok;
}
