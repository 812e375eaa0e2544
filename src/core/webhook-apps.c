/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "log.h"
#include "macro.h"
#include "webhook-apps.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(DIR *, closedir);

/* Timestamps this close to now may still change without changing (coarse
 * file system clocks, as git's "racy" index entries): do not trust them. */
#define RACY_SEC 2

static struct {
        char *apps_dir;
        AppList *apps;
        uint64_t fingerprint;
        uint64_t checked_usec;
        bool racy;
} cache;

void webhook_apps_flush(void) {
        cache.apps = app_list_free(cache.apps);
        cache.apps_dir = mfree(cache.apps_dir);
        cache.checked_usec = 0;
        cache.fingerprint = 0;
        cache.racy = false;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
        const uint8_t *b = p;

        for (size_t i = 0; i < n; i++) {
                h ^= b[i];
                h *= UINT64_C(0x100000001b3);
        }
        return h;
}

static uint64_t stat_hash(uint64_t h, const struct stat *st, time_t racy_after, bool *racy) {
        uint64_t v[] = {
                (uint64_t) st->st_dev, (uint64_t) st->st_ino, (uint64_t) st->st_mode, (uint64_t) st->st_size,
                (uint64_t) st->st_mtim.tv_sec, (uint64_t) st->st_mtim.tv_nsec,
                (uint64_t) st->st_ctim.tv_sec, (uint64_t) st->st_ctim.tv_nsec,
        };

        if (st->st_mtim.tv_sec >= racy_after || st->st_ctim.tv_sec >= racy_after)
                *racy = true;
        return fnv(h, v, sizeof(v));
}

/* A hash of what apps_discover() would look at, without reading a file. */
static int apps_fingerprint(const char *apps_dir, uint64_t *ret, bool *ret_racy) {
        _cleanup_(closedirp) DIR *d = NULL;
        struct timespec now;
        struct stat st;
        time_t racy_after;
        uint64_t sum = 0;
        bool racy = false;
        int fd;

        (void) clock_gettime(CLOCK_REALTIME, &now);
        racy_after = now.tv_sec - RACY_SEC;

        fd = open(apps_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        d = fdopendir(fd);
        if (!d) {
                safe_close(fd);
                return -errno;
        }
        if (fstat(dirfd(d), &st) < 0)
                return -errno;
        sum = stat_hash(UINT64_C(0xcbf29ce484222325), &st, racy_after, &racy);

        for (;;) {
                struct dirent *de;
                _cleanup_free_ char *file = NULL;
                uint64_t h;

                errno = 0;
                de = readdir(d);
                if (!de) {
                        if (errno != 0)
                                return -errno;
                        break;
                }
                if (de->d_name[0] == '.')
                        continue;

                /* Entries are summed, so readdir's order does not matter. */
                h = fnv(UINT64_C(0xcbf29ce484222325), de->d_name, strlen(de->d_name) + 1);
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue; /* gone meanwhile: as apps_discover() */
                h = stat_hash(h, &st, racy_after, &racy);
                if (S_ISDIR(st.st_mode)) {
                        file = malloc(strlen(de->d_name) + sizeof("/" INFRASPEC_FILE_NAME));
                        if (!file)
                                return -ENOMEM;
                        strcpy(stpcpy(file, de->d_name), "/" INFRASPEC_FILE_NAME);
                        if (fstatat(dirfd(d), file, &st, AT_SYMLINK_NOFOLLOW) >= 0)
                                h = stat_hash(h, &st, racy_after, &racy);
                }
                sum += h;
        }
        *ret = sum;
        *ret_racy = racy;
        return 0;
}

int webhook_apps_get(const char *apps_dir, uint64_t now_usec, const AppList **ret) {
        AppList *apps = NULL;
        uint64_t fingerprint = 0;
        bool racy = true, same_dir;
        int r;

        same_dir = cache.apps_dir && streq(cache.apps_dir, apps_dir);
        if (cache.apps && same_dir && now_usec >= cache.checked_usec &&
            now_usec - cache.checked_usec < WEBHOOK_APPS_CHECK_USEC) {
                *ret = cache.apps;
                return 0;
        }

        /* Before discovering: a change made meanwhile shows next time. */
        r = apps_fingerprint(apps_dir, &fingerprint, &racy);
        if (r < 0) {
                webhook_apps_flush();
                return log_debug_errno(r, "Cannot read apps directory %s: %m", apps_dir);
        }
        if (cache.apps && same_dir && !cache.racy && fingerprint == cache.fingerprint) {
                cache.checked_usec = now_usec;
                cache.racy = racy;
                *ret = cache.apps;
                return 0;
        }

        r = apps_discover(apps_dir, &apps);
        if (r < 0) {
                webhook_apps_flush();
                return r;
        }
        if (!same_dir) {
                char *s = strdup(apps_dir);

                if (!s) {
                        app_list_free(apps);
                        webhook_apps_flush();
                        return -ENOMEM;
                }
                free(cache.apps_dir);
                cache.apps_dir = s;
        }
        app_list_free(cache.apps);
        cache.apps = apps;
        cache.fingerprint = fingerprint;
        cache.checked_usec = now_usec;
        cache.racy = racy;
        log_debug("Webhook app list rediscovered (%zu apps).", apps->n);
        *ret = cache.apps;
        return 0;
}
