/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdlib.h>
#include <string.h>

#include "output-tail.h"

static void tail_push(OutputTail *t, char c) {
        size_t end = (t->start + t->size) % OUTPUT_TAIL_MAX;

        t->buf[end] = c;
        if (t->size < OUTPUT_TAIL_MAX)
                t->size++;
        else
                t->start = (t->start + 1) % OUTPUT_TAIL_MAX;
}

void output_tail_append_line(OutputTail *t, const char *line) {
        size_t n = strlen(line);

        /* A line longer than the tail keeps only its end. */
        if (n >= OUTPUT_TAIL_MAX)
                line += n - (OUTPUT_TAIL_MAX - 1);
        for (const char *p = line; *p; p++)
                tail_push(t, *p);
        tail_push(t, '\n');
}

char *output_tail_get(const OutputTail *t) {
        char *s = malloc(t->size + 1), *p;
        size_t skip = 0;

        if (!s)
                return NULL;
        for (size_t i = 0; i < t->size; i++)
                s[i] = t->buf[(t->start + i) % OUTPUT_TAIL_MAX];
        s[t->size] = '\0';

        /* When the ring wrapped, the first line is a fragment: drop it. */
        if (t->size == OUTPUT_TAIL_MAX && (p = memchr(s, '\n', t->size)))
                skip = (size_t) (p - s) + 1;
        memmove(s, s + skip, t->size - skip + 1);
        return s;
}
