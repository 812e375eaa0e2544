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
#include <sys/statvfs.h>
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

typedef int (*MountFn)(const char *path, const char *options, void *userdata);

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static void unescape(char *s) {
        char *d = s;

        for (; *s; s++, d++)
                if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' && s[3] >= '0' &&
                    s[3] <= '7') {
                        *d = (char) ((s[1] - '0') << 6 | (s[2] - '0') << 3 | (s[3] - '0'));
                        s += 3;
                } else
                        *d = *s;
        *d = 0;
}

/* "id parent major:minor root mount-point options ...": fields 5 and 6. */
static int mount_line(char *line, MountFn fn, void *userdata) {
        char *field[6];
        size_t n = 0;

        for (char *p = line; n < ELEMENTSOF(field); n++) {
                field[n] = p;
                p = strchr(p, ' ');
                if (!p)
                        break;
                *p++ = 0;
        }
        if (n < ELEMENTSOF(field) - 1)
                return -EBADMSG;
        unescape(field[4]);
        return fn(field[4], field[5], userdata);
}

/* Calls fn for every mount of ours, a line of /proc/self/mountinfo at a
 * time (no malloc here). */
static int for_each_mount(MountFn fn, void *userdata) {
        char buf[8192];
        size_t len = 0;
        int fd, r = 0;

        fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        for (;;) {
                ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
                char *start = buf, *nl;

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        r = -errno;
                        break;
                }
                len += (size_t) n;
                if (n == 0 && len > 0 && buf[len - 1] != '\n')
                        buf[len++] = '\n';      /* a last line without its newline */
                while (r >= 0 && (nl = memchr(start, '\n', len - (size_t) (start - buf)))) {
                        *nl = 0;
                        r = mount_line(start, fn, userdata);
                        start = nl + 1;
                }
                len -= (size_t) (start - buf);
                memmove(buf, start, len);
                if (r < 0 || n == 0)
                        break;
                if (len == sizeof(buf) - 1) {
                        r = -ENAMETOOLONG;
                        break;
                }
        }
        (void) close(fd);
        return r;
}

static bool has_option(const char *options, const char *name) {
        size_t l = strlen(name);

        for (const char *p = options; p; p = strchr(p, ',')) {
                if (*p == ',')
                        p++;
                if (strncmp(p, name, l) == 0 && (p[l] == ',' || p[l] == 0))
                        return true;
        }
        return false;
}

/* Without mount_setattr() (before Linux 5.12, or a seccomp filter that
 * refuses it): each mount in turn, keeping its other flags. A mount out of
 * reach by its path (covered by a later one) cannot be written through that
 * path either; check_read_only() has the last word. */
static int remount_read_only(const char *path, const char *options, void *userdata) {
        unsigned long flags = MS_REMOUNT | MS_BIND | MS_RDONLY;

        if (has_option(options, "nosuid"))
                flags |= MS_NOSUID;
        if (has_option(options, "nodev"))
                flags |= MS_NODEV;
        if (has_option(options, "noexec"))
                flags |= MS_NOEXEC;
        if (mount(NULL, path, NULL, flags, NULL) < 0 && errno != ENOENT && errno != ENOTDIR && errno != EINVAL &&
            errno != EACCES)
                return -errno;
        return 0;
}

static int make_writable(const char *path) {
        int r = set_attr(path, 0, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, MOUNT_ATTR_RDONLY);

        if ((r == -ENOSYS || r == -EPERM) &&
            mount(NULL, path, NULL, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV, NULL) < 0)
                r = -errno;
        else if (r == -ENOSYS || r == -EPERM)
                r = 0;
        return r;
}

static const char *const private_tmp[] = { "/tmp", "/var/tmp", "/dev/shm" };

/* Every mount the command can reach by a path is read-only, but for the
 * work dir and the private tmp dirs. Whichever way they were made so, the
 * step does not start otherwise. */
static int check_read_only(const char *path, const char *options, void *userdata) {
        const char *workdir = userdata;
        struct statvfs sv;
        int fd, r;

        if (streq(path, workdir))
                return 0;
        for (size_t i = 0; i < ELEMENTSOF(private_tmp); i++)
                if (streq(path, private_tmp[i]))
                        return 0;
        /* O_PATH: an autofs mount point (binfmt_misc) is looked at, not triggered. */
        fd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT || errno == ENOTDIR || errno == EACCES ? 0 : -errno;
        r = fstatvfs(fd, &sv) < 0 ? -errno : sv.f_flag & ST_RDONLY ? 0 : -EPERM;
        (void) close(fd);
        return r;
}

static int make_read_only(const char *workdir) {
        int r;

        /* Submounts too (an overlay on /usr, a tmpfs, a bound file). */
        r = set_attr("/", AT_RECURSIVE, MOUNT_ATTR_RDONLY, 0);
        if (r == -ENOSYS || r == -EPERM)
                r = for_each_mount(remount_read_only, NULL);
        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(private_tmp); i++) {
                r = make_writable(private_tmp[i]);
                if (r == -ENOENT)
                        r = 0;
        }
        if (r >= 0)
                r = make_writable(workdir);
        if (r >= 0)
                r = for_each_mount(check_read_only, (void *) workdir);
        return r;
}

static int setup_mounts(const StepSandbox *s, int workdir_fd) {
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
        return make_read_only(s->workdir);
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
