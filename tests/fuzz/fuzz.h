/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Shared by the libFuzzer targets of tests/fuzz (see tools/fuzz). Each target
 * feeds its input to the real parser of the core library and checks the
 * promises the parser's header makes about its result. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "log.h"
#include "macro.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A broken promise is a crash, so libFuzzer keeps the input. */
#define FUZZ_CHECK(cond)                                                                         \
        do {                                                                                     \
                if (!(cond)) {                                                                   \
                        fprintf(stderr, "%s:%d: fuzz check failed: %s\n", __FILE__, __LINE__, #cond); \
                        abort();                                                                 \
                }                                                                                \
        } while (0)

/* The input as a C string (bytes after a NUL are cut off, as for a parser
 * that takes a string). Aborts when out of memory: a fuzzer has no use for it. */
static inline char *fuzz_strndup(const uint8_t *data, size_t size) {
        char *s = malloc(size + 1);

        if (!s)
                abort();
        memcpy(s, data, size);
        s[size] = 0;
        return s;
}

/* Library code logs at debug at most; keep the fuzzer's output for findings. */
static inline void fuzz_quiet(void) {
        log_setup(LOG_TARGET_STDERR, getenv("NORN_FUZZ_DEBUG") ? LOG_DEBUG : LOG_CRIT);
}
