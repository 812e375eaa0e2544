/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* Splits a byte stream (a child's stdout or stderr) into lines for callers
 * that want C strings:
 *   - a line ends at '\n' (a '\r' right before it is dropped too); the
 *     terminator is not part of the line;
 *   - a line longer than LINE_SPLIT_MAX bytes is cut there and continues as
 *     the next line (never at a point that splits a UTF-8 sequence, as long
 *     as the input was UTF-8 there);
 *   - NUL bytes become U+FFFD, everything else is passed through as it came:
 *     lines need not be valid UTF-8;
 *   - line_split_flush() hands out a final line without terminator. */

#define LINE_SPLIT_MAX 8192

typedef void (*LineSplitEmit)(const char *line, size_t len, void *userdata);

typedef struct LineSplit {
        size_t len;
        bool cr;                        /* the last byte fed was a '\r' (held back) */
        char buf[LINE_SPLIT_MAX + 1];   /* + the terminating NUL */
} LineSplit;

void line_split_feed(LineSplit *s, const char *data, size_t n, LineSplitEmit emit, void *userdata);
/* Emits what is buffered as a last line, if anything is. */
void line_split_flush(LineSplit *s, LineSplitEmit emit, void *userdata);
