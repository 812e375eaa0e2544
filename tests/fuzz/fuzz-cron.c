/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A cron app's `schedule`, turned into OnCalendar= expressions. */
#include "cron.h"
#include "fuzz.h"
#include "strv.h"
#include "utf8.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        fuzz_quiet();
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *expr = NULL, *error = NULL;
        char **l = NULL;
        int r;

        if (size > 4 * CRON_EXPR_MAX)
                return 0;
        expr = fuzz_strndup(data, size);

        r = cron_to_oncalendar(expr, &l, &error);
        if (r < 0) {
                FUZZ_CHECK(r == -EINVAL);
                FUZZ_CHECK(!l);
                /* One printable line: the input is quoted as printable ASCII only. */
                FUZZ_CHECK(error && *error);
                for (const char *p = error; *p; p++)
                        FUZZ_CHECK((unsigned char) *p >= 0x20 && (unsigned char) *p < 0x7f);
                return 0;
        }
        FUZZ_CHECK(r == 0 && l && l[0]);
        FUZZ_CHECK(!l[1] || !l[2]);
        FUZZ_CHECK(strlen(expr) <= CRON_EXPR_MAX);
        for (char **e = l; *e; e++)
                for (const char *p = *e; *p; p++)   /* goes into a unit file as is */
                        FUZZ_CHECK((unsigned char) *p > 0x20 - 1 && (unsigned char) *p < 0x7f && *p != '\\');
        strv_free(l);
        return 0;
}
