/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* A snapshot file exists only when complete: pg_dump writes
 * <final>.partial in the same directory, renamed to <final> once pg_dump
 * succeeded. A killed or failed pg_dump leaves only a .partial, which the
 * deployment's cleanup or start-up recovery removes. */

#define SNAPSHOT_PARTIAL_SUFFIX ".partial"

/* <final>.partial; NULL when out of memory. */
char *snapshot_partial_path(const char *final);

/* Renames <final>.partial to final. */
int snapshot_partial_commit(const char *final);

/* Removes <final>.partial if there is one; 0 also when there was none. */
int snapshot_partial_remove(const char *final);

/* Removes every *.partial in the per-app directories of snapshot_dir;
 * returns how many, or a negative errno when snapshot_dir cannot be read
 * (0 when it does not exist). */
int snapshot_remove_partials(const char *snapshot_dir);
