/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-id128.h>
#include <unistd.h>

#include "cron-internal.h"
#include "fs-util.h"
#include "log.h"

/* The values of a cron job's env, kept out of everything others can read:
 * not in the service's properties (readable by every local user over the
 * bus, and written to a 0644 transient unit file), not in cron_timers (only
 * the names and the file's path are recorded). They live in a root-only
 * file, <dir>/<app>.<random>.env (dir 0700, file 0600), which the manager
 * reads as root when it starts the job (EnvironmentFile=): only the job
 * gets them. A random name, not a hash of the values: the path is public.
 * A deploy with the same values reuses the file, so its units stay as they
 * are. Files of an app other than its recorded one are removed once a
 * deploy or undeploy is recorded. */

#define ENV_FILE_MAX (CRON_ENV_MAX * (CRON_COMMAND_MAX * 2 + 260))

/* EnvironmentFile= syntax: NAME="value", with \ before " \ ` $ (systemd's
 * double-quote rules; newlines stay as they are inside the quotes). */
static int env_file_text(char *const *env, char **ret) {
        size_t size = 0;
        FILE *f = open_memstream(ret, &size);

        if (!f)
                return -ENOMEM;
        for (char *const *e = env; e && *e; e++) {
                const char *eq = strchr(*e, '=');

                if (!eq)
                        continue;
                fprintf(f, "%.*s=\"", (int) (eq - *e), *e);
                for (const char *p = eq + 1; *p; p++) {
                        if (strchr("\"\\`$", *p))
                                fputc('\\', f);
                        fputc(*p, f);
                }
                fputs("\"\n", f);
        }
        if (fclose(f) != 0) {
                free(*ret);
                *ret = NULL;
                return -ENOMEM;
        }
        return 0;
}

static bool is_app_file(const char *name, const char *app) {
        size_t n = strlen(app), k = strlen(name);

        return strncmp(name, app, n) == 0 && name[n] == '.' && k > n + 5 && streq(name + k - 4, ".env");
}

static bool file_has(int dir_fd, const char *name, const char *text) {
        _cleanup_close_ int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        size_t n = strlen(text), got = 0;
        _cleanup_free_ char *buf = NULL;
        struct stat st;

        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (size_t) st.st_size != n ||
            !(buf = malloc(n + 1)))
                return false;
        while (got < n) {
                ssize_t k = read(fd, buf + got, n - got);
                if (k <= 0)
                        return false;
                got += (size_t) k;
        }
        return memcmp(buf, text, n) == 0;
}

static int open_dir(const char *dir) {
        struct stat st;
        int fd;

        int r = mkdir_p(dir, 0700);

        if (r < 0)
                return r;
        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        /* Only root may ever list or read it. */
        if (fstat(fd, &st) < 0 || ((st.st_mode & 07777) != 0700 && fchmod(fd, 0700) < 0)) {
                r = -errno;
                safe_close(fd);
                return r;
        }
        return fd;
}

int cron_env_file_prepare(const char *dir, const char *app, char *const *env, char **ret_path) {
        _cleanup_free_ char *text = NULL, *name = NULL;
        _cleanup_close_ int dir_fd = -EBADF, fd = -EBADF;
        sd_id128_t id;
        DIR *d;
        struct dirent *de;
        size_t n;
        int r;

        r = env_file_text(env, &text);
        if (r < 0)
                return r;
        n = strlen(text);
        if (n > ENV_FILE_MAX)
                return -E2BIG;
        dir_fd = open_dir(dir);
        if (dir_fd < 0)
                return log_debug_errno(dir_fd, "Cannot open %s: %m", dir);

        /* The same values as a file of the app already has: that file. */
        fd = fcntl(dir_fd, F_DUPFD_CLOEXEC, 3);
        d = fd >= 0 ? fdopendir(fd) : NULL;
        if (!d)
                return -errno;
        fd = -EBADF;
        while (!name && (de = readdir(d)))
                if (is_app_file(de->d_name, app) && file_has(dir_fd, de->d_name, text) &&
                    !(name = strdup(de->d_name))) {
                        closedir(d);
                        return -ENOMEM;
                }
        closedir(d);

        if (!name) {
                r = sd_id128_randomize(&id);
                if (r < 0)
                        return r;
                if (asprintf(&name, "%s." SD_ID128_FORMAT_STR ".env", app, SD_ID128_FORMAT_VAL(id)) < 0) {
                        name = NULL;
                        return -ENOMEM;
                }
                fd = openat(dir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
                if (fd < 0)
                        return -errno;
                /* It must survive a reboot: timers are re-created from the record. */
                if (write(fd, text, n) != (ssize_t) n || fsync(fd) < 0) {
                        r = errno > 0 ? -errno : -EIO;
                        (void) unlinkat(dir_fd, name, 0);
                        return r;
                }
        }
        explicit_bzero(text, n);
        if (asprintf(ret_path, "%s/%s", dir, name) < 0)
                return -ENOMEM;
        return 0;
}

void cron_env_files_prune(const char *dir, const char *app, const char *keep) {
        const char *keep_name = keep ? strrchr(keep, '/') : NULL;
        DIR *d = opendir(dir);
        struct dirent *de;

        if (!d)
                return;
        keep_name = keep_name ? keep_name + 1 : keep;
        while ((de = readdir(d)))
                if (is_app_file(de->d_name, app) && !streq_ptr(de->d_name, keep_name) &&
                    unlinkat(dirfd(d), de->d_name, 0) < 0)
                        log_debug_errno(-errno, "Cannot remove %s/%s: %m", dir, de->d_name);
        closedir(d);
}
