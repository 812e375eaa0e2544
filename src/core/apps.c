/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "apps.h"
#include "log.h"
#include "macro.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(DIR *, closedir);

static void app_entry_done(AppEntry *e) {
        free(e->id);
        free(e->path);
        infraspec_free(e->spec);
        infraspec_diagnostics_done(&e->diagnostics);
}

AppList *app_list_free(AppList *l) {
        if (!l)
                return NULL;
        for (size_t i = 0; i < l->n; i++)
                app_entry_done(l->entries + i);
        free(l->entries);
        free(l);
        return NULL;
}

/* An entry that is only an error, not tied to a line of the file. */
static int entry_error(AppEntry *e, const char *message) {
        InfraspecDiagnostic *d;

        e->diagnostics.file = strdup(e->path);
        d = calloc(1, sizeof(*d));
        if (!e->diagnostics.file || !d) {
                free(d);
                return -ENOMEM;
        }
        d->error = true;
        d->message = strdup(message);
        if (!d->message) {
                free(d);
                return -ENOMEM;
        }
        e->diagnostics.items = d;
        e->diagnostics.n = e->diagnostics.n_errors = 1;
        return 0;
}

/* Directory names are bytes: a name that is not a valid app id is shown with
 * anything but printable ASCII replaced, so it cannot break a log line or
 * the JSON of the app list. */
static char *name_sanitize(const char *name) {
        char *s = strndup(name, 255);

        for (char *p = s; p && *p; p++)
                if ((unsigned char) *p < ' ' || (unsigned char) *p >= 0x7f || *p == '"' || *p == '\\')
                        *p = '?';
        return s;
}

static int entry_init(AppEntry *e, const char *apps_dir, const char *name) {
        e->id = name_sanitize(name);
        if (!e->id || asprintf(&e->path, "%s/%s/%s", apps_dir, e->id, INFRASPEC_FILE_NAME) < 0)
                return -ENOMEM;
        return 0;
}

/* Fills *e for the directory entry 'name'. Returns 0 with e->id == NULL
 * when the entry is not an app, -ENOMEM. */
static int app_entry_load(int dir_fd, const char *apps_dir, const char *name, AppEntry *e) {
        _cleanup_close_ int app_fd = -EBADF;
        struct stat st;
        int r;

        if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return 0; /* gone meanwhile */

        if (S_ISLNK(st.st_mode)) {
                /* Report a symlink only when it points at an app directory. */
                if (fstatat(dir_fd, name, &st, 0) < 0 || !S_ISDIR(st.st_mode))
                        return 0;
                app_fd = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (app_fd < 0 || faccessat(app_fd, INFRASPEC_FILE_NAME, F_OK, AT_SYMLINK_NOFOLLOW) < 0)
                        return 0;
                r = entry_init(e, apps_dir, name);
                if (r < 0)
                        return r;
                return entry_error(e, "app directory is a symbolic link, which is not followed");
        }
        if (!S_ISDIR(st.st_mode))
                return 0;

        app_fd = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (app_fd < 0) {
                log_debug_errno(-errno, "Cannot open %s/%s, ignoring: %m", apps_dir, name);
                return 0;
        }
        /* No infraspec.yaml (not even a dangling symlink): not an app. */
        if (fstatat(app_fd, INFRASPEC_FILE_NAME, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return 0;

        r = entry_init(e, apps_dir, name);
        if (r < 0)
                return r;

        if (!app_id_is_valid(name)) {
                _cleanup_free_ char *m = NULL;

                if (asprintf(&m, "directory name \"%.64s\" is not a valid app id "
                             "(lowercase letters, digits and '-', not starting with '-', at most 63 characters)",
                             e->id) < 0)
                        return -ENOMEM;
                return entry_error(e, m);
        }

        r = infraspec_load_at(app_fd, INFRASPEC_FILE_NAME, e->path, name, &e->spec, &e->diagnostics);
        if (r == -ENOMEM)
                return r;
        /* Other failures are in e->diagnostics. */
        e->deployable = e->spec && e->spec->deploy;
        return 0;
}

static int entry_compare(const void *a, const void *b) {
        return strcmp(((const AppEntry *) a)->id, ((const AppEntry *) b)->id);
}

int apps_discover(const char *apps_dir, AppList **ret) {
        _cleanup_(app_list_freep) AppList *l = NULL;
        _cleanup_(closedirp) DIR *d = NULL;
        size_t allocated = 0;
        int fd;

        fd = open(apps_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return log_debug_errno(-errno, "Cannot open apps directory %s: %m", apps_dir);
        d = fdopendir(fd);
        if (!d) {
                safe_close(fd);
                return -errno;
        }

        l = calloc(1, sizeof(AppList));
        if (!l)
                return -ENOMEM;

        for (;;) {
                struct dirent *de;
                AppEntry e = {};
                int r;

                errno = 0;
                de = readdir(d);
                if (!de) {
                        if (errno != 0)
                                return log_debug_errno(-errno, "Cannot read apps directory %s: %m", apps_dir);
                        break;
                }
                if (de->d_name[0] == '.')
                        continue;

                r = app_entry_load(dirfd(d), apps_dir, de->d_name, &e);
                if (r < 0 || !e.id) {
                        app_entry_done(&e);
                        if (r < 0)
                                return r;
                        continue;
                }

                if (l->n >= allocated) {
                        AppEntry *n = reallocarray(l->entries, allocated ? allocated * 2 : 8, sizeof(AppEntry));

                        if (!n) {
                                app_entry_done(&e);
                                return -ENOMEM;
                        }
                        l->entries = n;
                        allocated = allocated ? allocated * 2 : 8;
                }
                l->entries[l->n++] = e;
        }

        if (l->n > 0)
                qsort(l->entries, l->n, sizeof(AppEntry), entry_compare);
        *ret = TAKE_PTR(l);
        return 0;
}

const AppEntry *app_list_find(const AppList *l, const char *id) {
        if (!l || !id)
                return NULL;
        for (size_t i = 0; i < l->n; i++)
                if (streq(l->entries[i].id, id))
                        return l->entries + i;
        return NULL;
}

json_t *app_entry_to_json(const AppEntry *e) {
        json_t *spec = NULL, *diags, *o;

        if (e->spec) {
                spec = infraspec_to_json(e->spec);
                if (!spec)
                        return NULL;
        }
        diags = infraspec_diagnostics_to_json(&e->diagnostics);
        if (!diags) {
                json_decref(spec);
                return NULL;
        }
        /* "o" steals the references, also on failure. */
        o = json_pack("{s:s, s:s, s:b, s:b, s:o?, s:o}",
                      "id", e->id,
                      "path", e->path,
                      "valid", e->spec != NULL,
                      "deployable", e->deployable,
                      "spec", spec,
                      "diagnostics", diags);
        return o;
}
