/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "macro.h"

/* A newly allocated formatted string, NULL when out of memory. */
char *strdup_printf(const char *format, ...) _printf_(1, 2);

/* The value of one hex digit (either case), -1 when c is not one. */
int unhexchar(char c);
