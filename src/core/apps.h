/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "infraspec.h"

/* App discovery (DESIGN §2): every immediate subdirectory of NORN_APPS_DIR
 * that holds an infraspec.yaml is an app entry. Nothing is skipped silently:
 * a directory whose name is not a valid app id, a symlinked directory or
 * infraspec.yaml, or a file that does not parse is an entry with
 * diagnostics and no spec, listed next to the good ones. Dotfiles, plain
 * files and directories without infraspec.yaml are not apps and are not
 * listed. */

typedef struct AppEntry {
        char *id;                /* the directory name (maybe not a valid id) */
        char *path;              /* <apps_dir>/<id>/infraspec.yaml, as shown in diagnostics */
        Infraspec *spec;         /* NULL when invalid */
        InfraspecDiagnostics diagnostics; /* errors when invalid; warnings otherwise */
        bool deployable;         /* spec valid and deploy: true */
} AppEntry;

typedef struct AppList {
        AppEntry *entries;       /* sorted by id */
        size_t n;
} AppList;

/* -errno when apps_dir cannot be read; problems with single apps are
 * entries, not failures. */
int apps_discover(const char *apps_dir, AppList **ret);
AppList *app_list_free(AppList *l);
static inline void app_list_freep(AppList **l) { app_list_free(*l); }

const AppEntry *app_list_find(const AppList *l, const char *id);

/* {"id", "path", "valid", "deployable", "spec": {...}|null, "diagnostics": [...]} */
json_t *app_entry_to_json(const AppEntry *e);
