/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs-util.h"
#include "git-ref.h"
#include "infraspec.h"
#include "log.h"
#include "manager.h"
#include "pipeline.h"
#include "step-driver.h"
#include "step-env.h"
#include "strv.h"

/* The clone step: resolves what to deploy into d->workdir and d->commit_sha.
 *
 *   branch tip:   clone --depth 1 --branch B, rev-parse
 *   commit SHA:   init, fetch --depth 1 SHA (fall back to a full fetch),
 *                 checkout --detach, rev-parse (must match what was asked)
 *   local app:    copy NORN_APPS_DIR/<app>, commit id = its git tree hash
 *
 * When cloning the branch tip fails and the app directory holds a source
 * tree, the local copy is deployed instead and recorded as local-fallback.
 * Refs and URLs were validated before (git_ref_is_valid, git_url_is_valid)
 * and always follow "--" or a fixed option on the command line. */

typedef enum CloneStage {
        CLONE_START,
        CLONE_BRANCH,       /* git clone --depth 1 --branch */
        CLONE_INIT,         /* git init (commit SHA) */
        CLONE_FETCH_SHA,
        CLONE_FETCH_ALL,
        CLONE_CHECKOUT,
        CLONE_REV_PARSE,
        LOCAL_REMOVE,       /* fallback: drop the half-made clone */
        LOCAL_COPY,
        LOCAL_INIT,
        LOCAL_ADD,
        LOCAL_WRITE_TREE,
} CloneStage;

bool ref_is_commit_sha(const char *ref) {
        size_t n = strlen(ref);

        if (!(n >= 7 && n <= 40) && n != 64)
                return false;
        return strspn(ref, "0123456789abcdef") == n;
}

bool deploy_ref_is_valid(const char *ref) {
        return streq(ref, "HEAD") || ref_is_commit_sha(ref) || git_ref_is_valid(ref);
}

static bool line_is_sha(const char *s) {
        size_t n = s ? strlen(s) : 0;
        return (n == 40 || n == 64) && strspn(s, "0123456789abcdef") == n;
}

/* The options every git call gets: nothing from the cloned tree or the
 * host's configuration may run code or prompt. */
static int git_argv(Deployment *d, char ***argv) {
        return strv_extend_many(argv, "git", "-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false",
                                "-c", "protocol.ext.allow=never", "-c", "credential.helper=", NULL);
}

static void askpass_remove(Deployment *d) {
        char path[PATH_MAX];

        if (!d->askpass_dir)
                return;
        snprintf(path, sizeof(path), "%s/token", d->askpass_dir);
        (void) unlink(path);
        snprintf(path, sizeof(path), "%s/askpass", d->askpass_dir);
        (void) unlink(path);
        (void) rmdir(d->askpass_dir);
        d->askpass_dir = mfree(d->askpass_dir);
}

/* A private 0700 directory with the token in a 0600 file and a helper that
 * prints it: git asks GIT_ASKPASS, so the token is never in argv or env. */
static int askpass_create(Deployment *d) {
        Manager *m = d->manager;
        char path[PATH_MAX];
        _cleanup_close_ int fd = -EBADF;
        FILE *f;

        if (asprintf(&d->askpass_dir, "%s/work/askpass-XXXXXX", m->config.state_dir) < 0) {
                d->askpass_dir = NULL;
                return -ENOMEM;
        }
        if (!mkdtemp(d->askpass_dir)) {
                d->askpass_dir = mfree(d->askpass_dir);
                return -errno;
        }
        if (strchr(d->askpass_dir, '\'')) {
                askpass_remove(d);
                return -EINVAL;
        }

        snprintf(path, sizeof(path), "%s/token", d->askpass_dir);
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0 || write(fd, m->config.git_token, strlen(m->config.git_token)) < 0) {
                askpass_remove(d);
                return -errno;
        }
        fd = safe_close(fd);

        snprintf(path, sizeof(path), "%s/askpass", d->askpass_dir);
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0700);
        if (fd < 0 || !(f = fdopen(fd, "w"))) {
                askpass_remove(d);
                return -errno;
        }
        fd = -EBADF;
        fprintf(f, "#!/bin/sh\ncase \"$1\" in\nUsername*) echo '%s' ;;\n*) cat '%s/token' ;;\nesac\n",
                getenv("NORN_GIT_USERNAME") && !strchr(getenv("NORN_GIT_USERNAME"), '\'')
                        ? getenv("NORN_GIT_USERNAME") : "x-access-token",
                d->askpass_dir);
        if (fclose(f) != 0) {
                askpass_remove(d);
                return -EIO;
        }
        return 0;
}

static int git_env(Deployment *d, bool remote, char ***env) {
        Manager *m = d->manager;
        const char *url = d->spec->repo.url;
        _cleanup_free_ char *ssh = NULL, *askpass = NULL;
        int r;

        r = step_env_new(d, env);
        if (r < 0)
                return r;
        if (strv_env_set(env, "GIT_TERMINAL_PROMPT", "0") < 0)
                return -ENOMEM;

        if (!remote)
                return 0;
        if (m->config.git_token && (strncmp(url, "https://", 8) == 0 || strncmp(url, "http://", 7) == 0)) {
                if (!d->askpass_dir && (r = askpass_create(d)) < 0)
                        return r;
                if (asprintf(&askpass, "%s/askpass", d->askpass_dir) < 0)
                        return -ENOMEM;
                if (strv_env_set(env, "GIT_ASKPASS", askpass) < 0)
                        return -ENOMEM;
        }
        if (m->config.git_ssh_key) {
                /* Paths were checked for shell characters when configured. */
                if (asprintf(&ssh, "ssh -i %s -o IdentitiesOnly=yes -o BatchMode=yes %s%s",
                             m->config.git_ssh_key,
                             m->config.git_ssh_known_hosts ? "-o StrictHostKeyChecking=yes -o UserKnownHostsFile="
                                                           : "-o StrictHostKeyChecking=accept-new",
                             m->config.git_ssh_known_hosts ?: "") < 0)
                        return -ENOMEM;
                if (strv_env_set(env, "GIT_SSH_COMMAND", ssh) < 0)
                        return -ENOMEM;
        }
        return 0;
}

static int run_git(Deployment *d, CloneStage next, ...) _sentinel_;
static int run_git(Deployment *d, CloneStage next, ...) {
        _cleanup_strv_free_ char **argv = NULL, **env = NULL;
        const char *a;
        va_list ap;
        int r;

        r = git_argv(d, &argv);
        va_start(ap, next);
        while (r >= 0 && (a = va_arg(ap, const char *)))
                r = strv_extend(&argv, a);
        va_end(ap);
        if (r >= 0)
                r = git_env(d, next == CLONE_BRANCH || next == CLONE_FETCH_SHA || next == CLONE_FETCH_ALL, &env);
        if (r < 0)
                return deployment_fail(d, "cannot prepare git: %s", strerror(-r));

        d->stage = next;
        return pipeline_run_command(d, argv, env, d->workdir_parent);
}

/* An app directory "holds a source tree" when it has more than its infraspec. */
static bool app_dir_has_source(Deployment *d) {
        _cleanup_free_ char *dir = NULL;
        DIR *dh;
        struct dirent *de;
        bool found = false;

        if (asprintf(&dir, "%s/%s", d->manager->config.apps_dir, d->app) < 0)
                return false;
        dh = opendir(dir);
        if (!dh)
                return false;
        while (!found && (de = readdir(dh)))
                found = !streq(de->d_name, ".") && !streq(de->d_name, "..") &&
                        !streq(de->d_name, INFRASPEC_FILE_NAME);
        closedir(dh);
        return found;
}

static int local_copy(Deployment *d) {
        _cleanup_strv_free_ char **env = NULL;
        _cleanup_free_ char *src = NULL;
        int r;

        if (asprintf(&src, "%s/%s/.", d->manager->config.apps_dir, d->app) < 0)
                return deployment_fail(d, "out of memory");
        r = mkdir_p(d->workdir, 0750);
        if (r < 0)
                return deployment_fail(d, "cannot create %s: %s", d->workdir, strerror(-r));
        r = step_env_new(d, &env);
        if (r < 0)
                return deployment_fail(d, "out of memory");

        char *const argv[] = { (char *) "cp", (char *) "-a", (char *) "--", src, d->workdir, NULL };
        d->stage = LOCAL_COPY;
        return pipeline_run_command(d, argv, env, d->workdir_parent);
}

static int clone_failed(Deployment *d, const StepRunResult *prev, const char *what) {
        /* A requested commit must be exactly that commit: no fallback then. */
        if (!ref_is_commit_sha(d->ref) && app_dir_has_source(d) && !d->cancel_requested) {
                char *const argv[] = { (char *) "rm", (char *) "-rf", (char *) "--", d->workdir, NULL };
                _cleanup_strv_free_ char **env = NULL;

                deployment_log(d, "%s failed (exit %d); deploying the local copy in %s/%s instead",
                               what, prev->exit_code, d->manager->config.apps_dir, d->app);
                free(d->source);
                d->source = strdup("local-fallback");
                if (step_env_new(d, &env) < 0)
                        return deployment_fail(d, "out of memory");
                d->stage = LOCAL_REMOVE;
                return pipeline_run_command(d, argv, env, d->workdir_parent);
        }
        return step_command_check(d, prev, what) ?: deployment_fail(d, "%s failed", what);
}

static int clone_finish(Deployment *d, const char *sha) {
        askpass_remove(d);
        if (!line_is_sha(sha))
                return deployment_fail(d, "could not resolve the commit: got \"%s\"", strna(sha));
        if (ref_is_commit_sha(d->ref) && strncmp(sha, d->ref, strlen(d->ref)) != 0)
                return deployment_fail(d, "checked out %s, not the requested %s", sha, d->ref);
        free(d->commit_sha);
        d->commit_sha = strdup(sha);
        if (!d->commit_sha)
                return deployment_fail(d, "out of memory");
        deployment_log(d, "deploying commit %s (%s)", sha, strna(d->source));
        return 0;
}

static int clone_start(Deployment *d) {
        const char *url = d->spec->repo.present ? d->spec->repo.url : NULL;
        int r;

        free(d->workdir_parent);
        d->workdir_parent = strndup(d->workdir, strrchr(d->workdir, '/') - d->workdir);
        if (!d->workdir_parent)
                return deployment_fail(d, "out of memory");
        r = mkdir_p(d->workdir_parent, 0750);
        if (r < 0)
                return deployment_fail(d, "cannot create %s: %s", d->workdir_parent, strerror(-r));

        if (!url) {
                if (ref_is_commit_sha(d->ref) || (!streq(d->ref, "HEAD")))
                        return deployment_fail(d, "app %s has no repo.url: only HEAD (the local directory) "
                                                  "can be deployed, not \"%s\"", d->app, d->ref);
                d->source = strdup("local");
                return local_copy(d);
        }
        if (!git_url_is_valid(url))
                return deployment_fail(d, "repo.url is not an acceptable git URL");

        d->source = strdup("git");
        if (ref_is_commit_sha(d->ref))
                return run_git(d, CLONE_INIT, "init", "-q", "--", d->workdir, NULL);

        return run_git(d, CLONE_BRANCH, "clone", "-q", "--depth", "1", "--single-branch", "--branch",
                       streq(d->ref, "HEAD") ? d->spec->repo.branch : d->ref, "--", url, d->workdir, NULL);
}

int step_clone_next(Deployment *d, const StepRunResult *prev) {
        const char *url = d->spec->repo.url;

        if (!prev)
                return clone_start(d);

        switch ((CloneStage) d->stage) {
        case CLONE_BRANCH:
                if (prev->exit_code != 0 || prev->error)
                        return clone_failed(d, prev, "git clone");
                return run_git(d, CLONE_REV_PARSE, "-C", d->workdir, "rev-parse", "--verify", "HEAD^{commit}",
                               NULL);
        case CLONE_INIT:
                if (prev->exit_code != 0 || prev->error)
                        return clone_failed(d, prev, "git init");
                if (strlen(d->ref) == 40 || strlen(d->ref) == 64)
                        return run_git(d, CLONE_FETCH_SHA, "-C", d->workdir, "fetch", "-q", "--depth", "1", "--",
                                       url, d->ref, NULL);
                _fallthrough_;
        case CLONE_FETCH_SHA:
                if (d->stage == CLONE_FETCH_SHA && prev->exit_code == 0 && !prev->error)
                        return run_git(d, CLONE_CHECKOUT, "-C", d->workdir, "checkout", "-q", "--detach",
                                       "FETCH_HEAD", NULL);
                if (d->stage == CLONE_FETCH_SHA)
                        deployment_log(d, "the server does not serve commit %s directly; fetching all branches",
                                       d->ref);
                return run_git(d, CLONE_FETCH_ALL, "-C", d->workdir, "fetch", "-q", "--", url,
                               "+refs/heads/*:refs/remotes/origin/*", NULL);
        case CLONE_FETCH_ALL: {
                _cleanup_free_ char *commit = NULL;

                if (prev->exit_code != 0 || prev->error)
                        return clone_failed(d, prev, "git fetch");
                if (asprintf(&commit, "%s^{commit}", d->ref) < 0)
                        return deployment_fail(d, "out of memory");
                return run_git(d, CLONE_CHECKOUT, "-C", d->workdir, "checkout", "-q", "--detach", commit, NULL);
        }
        case CLONE_CHECKOUT:
                if (prev->error || prev->signal > 0)
                        return step_command_check(d, prev, "git checkout");
                if (prev->exit_code != 0)
                        return deployment_fail(d, "commit %s not found in the repository of %s "
                                                  "(git checkout exited with status %d)",
                                               d->ref, d->app, prev->exit_code);
                return run_git(d, CLONE_REV_PARSE, "-C", d->workdir, "rev-parse", "--verify", "HEAD^{commit}",
                               NULL);
        case CLONE_REV_PARSE:
                if (prev->exit_code != 0 || prev->error)
                        return step_command_check(d, prev, "git rev-parse");
                return clone_finish(d, d->last_stdout);
        case LOCAL_REMOVE:
                askpass_remove(d);
                return local_copy(d);
        case LOCAL_COPY:
                if (prev->exit_code != 0 || prev->error)
                        return step_command_check(d, prev, "copying the app directory");
                return run_git(d, LOCAL_INIT, "-C", d->workdir, "init", "-q", NULL);
        case LOCAL_INIT:
                if (prev->exit_code != 0 || prev->error)
                        return step_command_check(d, prev, "git init");
                return run_git(d, LOCAL_ADD, "-C", d->workdir, "add", "-A", NULL);
        case LOCAL_ADD:
                if (prev->exit_code != 0 || prev->error)
                        return step_command_check(d, prev, "git add");
                return run_git(d, LOCAL_WRITE_TREE, "-C", d->workdir, "write-tree", NULL);
        case LOCAL_WRITE_TREE:
                if (prev->exit_code != 0 || prev->error)
                        return step_command_check(d, prev, "git write-tree");
                return clone_finish(d, d->last_stdout);
        default:
                return deployment_fail(d, "internal error: clone stage %d", d->stage);
        }
}

void step_clone_abort(Deployment *d) {
        askpass_remove(d);
}
