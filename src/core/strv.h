/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "macro.h"

/* NULL-terminated string vectors, for argv and environment blocks. */

char **strv_free(char **l);
DEFINE_TRIVIAL_CLEANUP_FUNC(char **, strv_free);
#define _cleanup_strv_free_ _cleanup_(strv_freep)

size_t strv_length(char *const *l);
char **strv_copy(char *const *l);
/* Appends a copy of s; on failure *l is unchanged. */
int strv_extend(char ***l, const char *s);
int strv_extendf(char ***l, const char *format, ...) _printf_(2, 3);
/* Appends copies of all arguments up to NULL. */
int strv_extend_many(char ***l, ...) _sentinel_;
bool strv_contains(char *const *l, const char *s);

/* Sets NAME=value in an environment block, replacing an earlier NAME. */
int strv_env_set(char ***env, const char *name, const char *value);
const char *strv_env_get(char *const *env, const char *name);
