/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <sys/types.h>

int mkdir_p(const char *path, mode_t mode);

/* Removes everything below path (not path itself), never following
 * symlinks or crossing into other file systems. */
int rm_rf_children(const char *path);
