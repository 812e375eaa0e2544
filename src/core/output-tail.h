/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stddef.h>

/* The last OUTPUT_TAIL_MAX bytes of a step's output, cut at line starts,
 * kept in a ring so appending is O(line) however much a step prints. */
#define OUTPUT_TAIL_MAX (8U * 1024U)

typedef struct OutputTail {
        char buf[OUTPUT_TAIL_MAX];
        size_t start, size;
} OutputTail;

void output_tail_append_line(OutputTail *t, const char *line);
/* Newly allocated, NUL-terminated, starting at a line boundary. */
char *output_tail_get(const OutputTail *t);
