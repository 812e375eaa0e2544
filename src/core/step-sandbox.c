/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/mount.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "macro.h"
#include "step-sandbox.h"

/* Everything here runs in a child forked from nornd: no malloc, no stdio. */

#define CHOWN_DEPTH_MAX 256

struct dirent64_raw {
        unsigned long long d_ino;
        long long d_off;
        unsigned short d_reclen;
        unsigned char d_type;
        char d_name[];
};

/* Gives the tree below dfd to uid:gid. File descriptors all the way, never
 * a symlink followed: the tree may already hold what an earlier step of the
 * app left there. A hard-linked file someone else owns is left alone (it is
 * not the clone's to give away). */
static int chown_tree(int dfd, uid_t uid, gid_t gid, unsigned depth) {
        char buf[2048];

        if (fchown(dfd, uid, gid) < 0)
                return -errno;
        if (depth > CHOWN_DEPTH_MAX)
                return -ELOOP;
        for (;;) {
                long n = syscall(SYS_getdents64, dfd, buf, sizeof(buf));

                if (n < 0)
                        return -errno;
                if (n == 0)
                        return 0;
                for (long off = 0; off < n;) {
                        struct dirent64_raw *de = (struct dirent64_raw *) (buf + off);
                        struct stat st;
                        int fd, r;

                        off += de->d_reclen;
                        if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                                continue;
                        if (de->d_type == DT_DIR || de->d_type == DT_UNKNOWN) {
                                fd = openat(dfd, de->d_name,
                                            O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
                                if (fd >= 0) {
                                        r = chown_tree(fd, uid, gid, depth + 1);
                                        (void) close(fd);
                                        if (r < 0)
                                                return r;
                                        continue;
                                }
                                if (errno != ENOTDIR && errno != ELOOP)
                                        return -errno;
                        }
                        if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                                return -errno;
                        if (!S_ISDIR(st.st_mode) && st.st_nlink > 1 && st.st_uid != uid)
                                continue;
                        if (fchownat(dfd, de->d_name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
                                return -errno;
                }
        }
}

static int mount_tmpfs(const char *path, const char *options) {
        if (mount("norn-step", path, "tmpfs", MS_NOSUID | MS_NODEV, options) < 0)
                return errno == ENOENT || errno == ENOTDIR ? 0 : -errno;
        return 1;
}

static bool searchable(const struct stat *st, uid_t uid, gid_t gid) {
        if (st->st_uid == uid)
                return st->st_mode & S_IXUSR;
        if (st->st_gid == gid)
                return st->st_mode & S_IXGRP;
        return st->st_mode & S_IXOTH;
}

/* The first parent of path the step user cannot search gets a tmpfs of its
 * own (what was there is hidden), so that the work dir can be bound at its
 * own path below it. */
static int make_reachable(char *path, uid_t uid, gid_t gid) {
        struct stat st;

        for (char *p = strchr(path + 1, '/'); p; p = strchr(p + 1, '/')) {
                int r;

                *p = 0;
                r = stat(path, &st);
                if (r < 0 && errno == ENOENT) {
                        *p = '/';
                        return 0;       /* below a tmpfs already: made by mkdir_all() */
                }
                if (r < 0 || !searchable(&st, uid, gid)) {
                        r = r < 0 ? -errno : mount_tmpfs(path, "mode=0755,size=64k");
                        *p = '/';
                        return r < 0 ? r : 0;
                }
                *p = '/';
        }
        return 0;
}

static int mkdir_all(char *path) {
        for (char *p = strchr(path + 1, '/');; p = strchr(p + 1, '/')) {
                if (p)
                        *p = 0;
                if (mkdir(path, 0755) < 0 && errno != EEXIST) {
                        int r = -errno;
                        if (p)
                                *p = '/';
                        return r;
                }
                if (!p)
                        return 0;
                *p = '/';
        }
}

static int set_attr(const char *path, unsigned flags, uint64_t set, uint64_t clr) {
        struct mount_attr a = { .attr_set = set, .attr_clr = clr };

        if (syscall(SYS_mount_setattr, AT_FDCWD, path, flags, &a, sizeof(a)) < 0)
                return -errno;
        return 0;
}

static int setup_mounts(const StepSandbox *s, int workdir_fd) {
        static const char *const private_tmp[] = { "/tmp", "/var/tmp", "/dev/shm" };
        char path[PATH_MAX], source[64];
        int r;

        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                return -errno;
        for (size_t i = 0; i < ELEMENTSOF(private_tmp); i++)
                if ((r = mount_tmpfs(private_tmp[i], "mode=1777")) < 0)
                        return r;
        for (char *const *h = s->hide; h && *h; h++) {
                r = mount_tmpfs(*h, "mode=0755,size=64k");
                /* A file to hide reads as empty instead. */
                if (r == 0 && mount("/dev/null", *h, NULL, MS_BIND, NULL) < 0 && errno != ENOENT &&
                    errno != ENOTDIR)
                        return -errno;
                if (r < 0)
                        return r;
        }

        if (strlen(s->workdir) >= sizeof(path) || s->workdir[0] != '/')
                return -EINVAL;
        strcpy(path, s->workdir);
        r = make_reachable(path, s->uid, s->gid);
        if (r >= 0)
                r = mkdir_all(path);
        if (r < 0)
                return r;
        (void) snprintf(source, sizeof(source), "/proc/self/fd/%i", workdir_fd);
        if (mount(source, s->workdir, NULL, MS_BIND, NULL) < 0)
                return -errno;

        /* Read-only everywhere, then writable again where it may write. */
        r = set_attr("/", AT_RECURSIVE, MOUNT_ATTR_RDONLY, 0);
        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(private_tmp); i++) {
                r = set_attr(private_tmp[i], 0, 0, MOUNT_ATTR_RDONLY);
                if (r == -ENOENT)
                        r = 0;
        }
        if (r >= 0)
                r = set_attr(s->workdir, 0, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, MOUNT_ATTR_RDONLY);
        return r;
}

static int drop_identity(const StepSandbox *s) {
        if (setgroups(0, NULL) < 0 || setresgid(s->gid, s->gid, s->gid) < 0 ||
            setresuid(s->uid, s->uid, s->uid) < 0)
                return -errno;
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                return -errno;
        /* Set after the uid change, which clears it: when the process that
         * waits for us goes, so does everything in the namespace. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
                return -errno;
        return 0;
}

/* The parent that stays outside the PID namespace: waits for its init and
 * ends the same way. */
_Noreturn static void wait_and_mirror(pid_t pid) {
        int status;

        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        _exit(127);
        if (WIFSIGNALED(status)) {
                (void) signal(WTERMSIG(status), SIG_DFL);
                (void) kill(getpid(), WTERMSIG(status));
                _exit(128 + WTERMSIG(status));
        }
        _exit(WEXITSTATUS(status));
}

int step_sandbox_enter(const StepSandbox *s) {
        int fd, r;
        pid_t pid;

        if (!s || !s->workdir || s->uid == 0)
                return -EINVAL;
        if (unshare(CLONE_NEWNS | CLONE_NEWPID) < 0)
                return -errno;

        fd = open(s->workdir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        r = chown_tree(fd, s->uid, s->gid, 0);
        if (r >= 0) {
                /* The path to the work dir must be searchable whatever nornd's
                 * umask (the unit's is 0027); the command gets that umask back. */
                mode_t mask = umask(0022);
                r = setup_mounts(s, fd);
                (void) umask(mask);
        }
        (void) close(fd);
        if (r < 0)
                return r;

        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid > 0)
                wait_and_mirror(pid);

        /* PID 1 of the new namespace: a /proc that shows only it. */
        if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
                return -errno;
        return drop_identity(s);
}
