/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>

#include "line-split.h"

static void emit_line(LineSplit *s, size_t len, LineSplitEmit emit, void *userdata) {
        char saved = s->buf[len];

        /* Hand out buf[0..len) as a C string, keep buf[len..s->len) for the next line. */
        s->buf[len] = 0;
        emit(s->buf, len, userdata);
        s->buf[len] = saved;
        memmove(s->buf, s->buf + len, s->len - len);
        s->len -= len;
}

static size_t utf8_length_of_lead(unsigned char c) {
        if (c >= 0xf0 && c <= 0xf4)
                return 4;
        if (c >= 0xe0)
                return c <= 0xef ? 3 : 0;
        if (c >= 0xc2)
                return 2;
        return 0;
}

/* Where to cut a full buffer: before a trailing UTF-8 sequence that is not
 * complete yet, so a character is not split between two lines. */
static size_t cut_point(const LineSplit *s) {
        size_t i = s->len;

        while (i > 0 && s->len - i < 3 && ((unsigned char) s->buf[i - 1] & 0xc0) == 0x80)
                i--;
        if (i > 0) {
                size_t need = utf8_length_of_lead((unsigned char) s->buf[i - 1]);
                if (need > 0 && (i - 1) + need > s->len && i - 1 > 0)
                        return i - 1;
        }
        return s->len;
}

static void append(LineSplit *s, const char *p, size_t n, LineSplitEmit emit, void *userdata) {
        while (s->len + n > LINE_SPLIT_MAX)
                emit_line(s, cut_point(s), emit, userdata);
        memcpy(s->buf + s->len, p, n);
        s->len += n;
}

void line_split_feed(LineSplit *s, const char *data, size_t n, LineSplitEmit emit, void *userdata) {
        static const char replacement[] = "\xef\xbf\xbd"; /* U+FFFD */

        for (size_t i = 0; i < n; i++) {
                char c = data[i];

                if (c == '\n') {
                        s->cr = false;
                        emit_line(s, s->len, emit, userdata);
                        continue;
                }
                if (s->cr) {
                        /* A '\r' not followed by '\n' is kept as it came. */
                        s->cr = false;
                        append(s, "\r", 1, emit, userdata);
                }
                if (c == '\r')
                        s->cr = true;
                else if (c == 0)
                        append(s, replacement, sizeof(replacement) - 1, emit, userdata);
                else
                        append(s, &c, 1, emit, userdata);
        }
}

void line_split_flush(LineSplit *s, LineSplitEmit emit, void *userdata) {
        if (s->cr) {
                s->cr = false;
                append(s, "\r", 1, emit, userdata);
        }
        /* A full buffer may hold a cut-off UTF-8 tail: emit it all now. */
        while (s->len > 0)
                emit_line(s, s->len, emit, userdata);
}
