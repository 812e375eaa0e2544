/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "macro.h"

/* Colour, glyphs redrawn in place and the live progress line: only when
 * stdout is a terminal, NO_COLOR is unset and TERM is not "dumb". */
bool ctl_fancy(void);

/* An ANSI sequence when fancy, "" otherwise. */
const char *ctl_ansi(const char *sequence);
#define ANSI_BOLD "\033[1m"
#define ANSI_DIM "\033[2m"
#define ANSI_RED "\033[31m"
#define ANSI_GREEN "\033[32m"
#define ANSI_YELLOW "\033[33m"
#define ANSI_BOLD_RED "\033[1;31m"
#define ANSI_BOLD_GREEN "\033[1;32m"
#define ANSI_NORMAL "\033[0m"

/* A copy of s for a terminal: control characters (escape sequences a build
 * log could carry) become '?'. NULL on OOM. */
char *ctl_printable(const char *s);
/* Prints s through ctl_printable(). */
void ctl_fputs_printable(const char *s, FILE *f);

/* "2026-11-28 17:52:11" (UTC) or "-" for 0. */
const char *ctl_format_time(char buf[static 32], uint64_t usec);
/* "0.2s", "1m05s", "2h03m"; "-" when either end is 0 or end < start. */
const char *ctl_format_span(char buf[static 32], uint64_t start_usec, uint64_t end_usec);
const char *ctl_format_duration(char buf[static 32], uint64_t usec);

/* The colour of a deployment or step status ("deployed", "failed", ...). */
const char *ctl_status_color(const char *status);
/* The glyph of a step status: ✓ ✗ ▶ - · */
const char *ctl_step_glyph(const char *status);

/* JSON values in the HTTP API's shapes: RFC 3339 UTC time or null for 0,
 * null for "". */
json_t *ctl_json_time(uint64_t usec);
json_t *ctl_json_string(const char *s);
/* Prints j (taken) as one indented document; -ENOMEM when j is NULL. */
int ctl_json_print(json_t *j);

/* A text table: columns sized to their widest cell, the last unpadded. */
typedef struct Table Table;
Table *table_new(size_t n_columns, ...);       /* n_columns header strings */
Table *table_free(Table *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(Table *, table_free);
/* Appends one row of n_columns strings (copied; NULL prints "-"). */
int table_add_row(Table *t, ...);
/* Colour for one cell of the last row added (fancy only). */
void table_set_color(Table *t, size_t column, const char *ansi);
size_t table_rows(const Table *t);
void table_print(const Table *t, bool header, unsigned indent);
