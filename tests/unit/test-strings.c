/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* UTF-8 validation and repair (src/core/utf8.c) and hex digits
 * (string-util.c): what every external string goes through before it
 * reaches JSON, D-Bus or a signature check. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "macro.h"
#include "string-util.h"
#include "utf8.h"
#include "tap.h"

int main(void) {
        static const char *const valid[] = {
                "", "plain ascii", "caf\xc3\xa9", "\xe2\x96\xb6 clone", "\xf0\x9f\x9a\x80",
                "\xef\xbf\xbd", "\xf4\x8f\xbf\xbf", /* U+10FFFF, the last code point */
        };
        static const char *const invalid[] = {
                "\xff", "\xc3", "\xc0\xaf",         /* overlong '/' */
                "\xe0\x80\xaf",                     /* overlong, 3 bytes */
                "\xed\xa0\x80",                     /* a UTF-16 surrogate */
                "\xf4\x90\x80\x80",                 /* beyond U+10FFFF */
                "\xe2\x96",                         /* cut short */
                "ok then \x80",                     /* a lone continuation byte */
        };
        char buf[64];

        for (size_t i = 0; i < ELEMENTSOF(valid); i++)
                check(utf8_is_valid(valid[i]) && utf8_is_valid_n(valid[i], strlen(valid[i])), "valid #%zu", i);
        for (size_t i = 0; i < ELEMENTSOF(invalid); i++)
                check(!utf8_is_valid(invalid[i]) && !utf8_is_valid_n(invalid[i], strlen(invalid[i])),
                      "invalid #%zu", i);

        /* Bounded: a sequence cut by the size is invalid, a NUL inside is not. */
        check(!utf8_is_valid_n("\xe2\x96\xb6", 2), "a sequence cut by the size is invalid");
        check(utf8_is_valid_n("a\0b", 3), "an embedded NUL is valid UTF-8");
        check(utf8_is_valid_n("\xff", 0), "zero bytes are valid");

        strcpy(buf, "a\xff" "b\xc3\xa9" "c\xe2\x96");
        utf8_sanitize(buf);
        check(streq(buf, "a?b\xc3\xa9" "c??"), "sanitize replaces each bad byte with '?': %s", buf);

        /* Cuts on a character boundary: "é" (2 bytes), "▶" (3), "😀" (4) at every offset of the cut. */
        {
                static const char *const chars[] = { "\xc3\xa9", "\xe2\x96\xb6", "\xf0\x9f\x98\x80" };

                for (size_t c = 0; c < ELEMENTSOF(chars); c++)
                        for (size_t pad = 0; pad < 5; pad++) {
                                char t[32] = "";
                                size_t len, n;

                                memset(t, 'x', pad);
                                strcpy(t + pad, chars[c]);
                                strcat(t, "yz");
                                len = strlen(t);
                                for (size_t max = 0; max <= len + 1; max++) {
                                        n = utf8_prefix_len(t, max);
                                        if (!check(n <= max && n <= len && utf8_is_valid_n(t, n) &&
                                                           (max >= len ? n == len : max - n < strlen(chars[c])),
                                                   "utf8_prefix_len(%zu x + %zu-byte char + yz, %zu) = %zu",
                                                   pad, strlen(chars[c]), max, n))
                                                break;
                                }
                        }
        }
        check(utf8_prefix_len("\x80\x80\x80\x80\x80\x80", 5) == 5, "a run of stray continuation bytes is cut anywhere");
        check(utf8_prefix_len("", 3) == 0 && utf8_prefix_len("abc", 0) == 0, "empty string, zero length");

        check(unhexchar('0') == 0 && unhexchar('9') == 9 && unhexchar('a') == 10 && unhexchar('F') == 15,
              "hex digits of either case");
        check(unhexchar('g') < 0 && unhexchar('z') < 0 && unhexchar('\0') < 0 && unhexchar(' ') < 0 &&
                      unhexchar((char) 0xc3) < 0,
              "anything else is not a hex digit");

        printf("1..%u\n", n_checks);
        return n_failed > 0;
}
