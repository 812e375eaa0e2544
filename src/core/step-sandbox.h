/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <sys/types.h>

/* What an app's command (build.test, the migration) runs in: nornd forks it
 * as root, and the child, once it is in its scope, enters this before
 * running anything of the app:
 *
 *   - its own mount namespace: the whole tree read-only, every submount
 *     too (mount_setattr(AT_RECURSIVE), else each mount remounted; then
 *     checked, mount by mount, before anything runs), the hidden
 *     directories (nornd's state, apps, snapshots, configuration) replaced by
 *     empty read-only tmpfs, fresh private /tmp, /var/tmp and /dev/shm, and
 *     the work dir bound at its own path, the only writable place that
 *     outlives the step (parents the step user could not search are covered
 *     by a tmpfs too, so the path is always reachable);
 *   - its own PID namespace with its own /proc: nornd and the other steps are
 *     not there to be read (/proc/PID/environ) or signalled;
 *   - the step user's uid and gid, no supplementary groups, no_new_privs.
 *
 * The work dir (made by nornd's clone, as root) is given to the step user
 * first, walked through file descriptors without following symlinks. */

typedef struct StepSandbox {
        uid_t uid;
        gid_t gid;
        const char *workdir;    /* absolute; the command's only writable directory */
        char *const *hide;      /* absolute directories to replace by an empty tmpfs (missing: skipped) */
} StepSandbox;

/* Child side only (after fork, single-threaded, async-signal-safe calls
 * only). Returns in the process that is to exec the command, now in the
 * sandbox; the process that called it stays behind as its parent, waits and
 * exits with its status. Returns a negative errno on failure (nothing of the
 * command ran then). */
int step_sandbox_enter(const StepSandbox *s);
