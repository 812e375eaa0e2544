/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"
#include "snapshot-file.h"

char *snapshot_partial_path(const char *final) {
        char *p;

        if (asprintf(&p, "%s" SNAPSHOT_PARTIAL_SUFFIX, final) < 0)
                return NULL;
        return p;
}

int snapshot_partial_commit(const char *final) {
        _cleanup_free_ char *partial = snapshot_partial_path(final);

        if (!partial)
                return -ENOMEM;
        if (rename(partial, final) < 0)
                return -errno;
        return 0;
}

int snapshot_partial_remove(const char *final) {
        _cleanup_free_ char *partial = NULL;

        if (!final)
                return 0;
        partial = snapshot_partial_path(final);
        if (!partial)
                return -ENOMEM;
        if (unlink(partial) < 0 && errno != ENOENT)
                return -errno;
        return 0;
}

static bool is_partial(const char *name) {
        size_t n = strlen(name), k = strlen(SNAPSHOT_PARTIAL_SUFFIX);

        return n > k && streq(name + n - k, SNAPSHOT_PARTIAL_SUFFIX);
}

/* The partial files directly in one app's directory (fd is consumed). */
static int remove_partials_in(int fd, const char *path) {
        DIR *d = fdopendir(fd);
        struct dirent *de;
        int n = 0;

        if (!d) {
                safe_close(fd);
                return -errno;
        }
        while ((de = readdir(d)))
                if (de->d_type == DT_REG && is_partial(de->d_name)) {
                        if (unlinkat(dirfd(d), de->d_name, 0) < 0)
                                log_warning_errno(-errno, "Failed to remove partial snapshot %s/%s: %m", path,
                                                  de->d_name);
                        else {
                                log_notice("Removed partial snapshot %s/%s (its pg_dump never finished).",
                                           path, de->d_name);
                                n++;
                        }
                }
        closedir(d);
        return n;
}

int snapshot_remove_partials(const char *snapshot_dir) {
        DIR *d;
        struct dirent *de;
        int n = 0;

        d = opendir(snapshot_dir);
        if (!d)
                return errno == ENOENT ? 0 : -errno;
        while ((de = readdir(d))) {
                _cleanup_free_ char *path = NULL;
                int fd, k;

                if (de->d_type != DT_DIR || de->d_name[0] == '.')
                        continue;
                fd = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (fd < 0)
                        continue;
                if (asprintf(&path, "%s/%s", snapshot_dir, de->d_name) < 0)
                        path = NULL;
                k = remove_partials_in(fd, strna(path));
                if (k > 0)
                        n += k;
        }
        closedir(d);
        return n;
}
