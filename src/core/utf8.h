/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* Replaces every byte that is not part of valid UTF-8 with '?', in place:
 * step output goes into JSON and D-Bus strings, which must be UTF-8. */
void utf8_sanitize(char *s);

/* Whether the NUL-terminated s is valid UTF-8 (what D-Bus strings must be). */
bool utf8_is_valid(const char *s);
/* The same for `size` bytes; a NUL among them is valid (U+0000). */
bool utf8_is_valid_n(const char *s, size_t size);

/* The length of the longest prefix of s, at most max bytes, that does not end
 * inside a UTF-8 character: for cuts such as "%.*s" of text that is shown or
 * sent on. The whole string when it is not longer than max. */
size_t utf8_prefix_len(const char *s, size_t max);
