/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "utf8.h"

/* Length of the valid UTF-8 sequence at s (of `left` bytes), or 0. Rejects
 * overlong forms, surrogates and code points above U+10FFFF. */
static size_t utf8_valid_len(const unsigned char *s, size_t left) {
        uint32_t cp;
        size_t n;

        if (s[0] < 0x80)
                return 1;
        if (s[0] >= 0xc2 && s[0] <= 0xdf) {
                n = 2;
                cp = s[0] & 0x1f;
        } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
                n = 3;
                cp = s[0] & 0x0f;
        } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
                n = 4;
                cp = s[0] & 0x07;
        } else
                return 0;
        if (n > left)
                return 0;
        for (size_t i = 1; i < n; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                cp = (cp << 6) | (s[i] & 0x3f);
        }
        if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
                return 0;
        return n;
}

void utf8_sanitize(char *s) {
        unsigned char *p = (unsigned char *) s, *end = p + strlen(s);

        while (p < end) {
                size_t n = utf8_valid_len(p, (size_t) (end - p));
                if (n == 0) {
                        *p++ = '?';
                        continue;
                }
                p += n;
        }
}

bool utf8_is_valid_n(const char *s, size_t size) {
        const unsigned char *p = (const unsigned char *) s, *end = p + size;

        while (p < end) {
                size_t n = utf8_valid_len(p, (size_t) (end - p));
                if (n == 0)
                        return false;
                p += n;
        }
        return true;
}

bool utf8_is_valid(const char *s) {
        return utf8_is_valid_n(s, strlen(s));
}

size_t utf8_prefix_len(const char *s, size_t max) {
        const unsigned char *p = (const unsigned char *) s;
        size_t n = strnlen(s, max);

        if (n < max || p[n] == 0)
                return n;
        /* p[n] is the first byte left out: when it continues a character,
         * leave out that character's first bytes too (at most 3 of them in
         * UTF-8; more is not UTF-8 and is cut anywhere). */
        for (size_t i = 0; i < 4 && i <= n; i++)
                if ((p[n - i] & 0xc0) != 0x80)
                        return n - i;
        return n;
}
