/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "line-split.h"
#include "log.h"
#include "macro.h"
#include "scope.h"
#include "step-run.h"

/* How long to wait for the scope to be unloaded after we killed it. */
#define STEP_RUN_SCOPE_KILLED_USEC (2 * 1000 * 1000ULL)

typedef enum LingerPhase {
        LINGER_NONE,
        LINGER_EOF,             /* child exited, pipes still open */
        LINGER_SCOPE,           /* child and pipes done, unit still loaded */
        LINGER_SCOPE_KILLED,    /* ... and we sent KillUnit */
} LingerPhase;

/* What the child reports on its error pipe before _exit(). */
typedef enum ChildStage {
        CHILD_STAGE_SETUP,
        CHILD_STAGE_SANDBOX,
        CHILD_STAGE_CHDIR,
        CHILD_STAGE_EXEC,
} ChildStage;

typedef struct ChildError {
        int stage;
        int error;
} ChildError;

typedef struct StepRunStream {
        StepRun *run;
        sd_event_source *source;
        int fd;
        bool is_stderr;
        bool eof;
        LineSplit split;
} StepRunStream;

struct StepRun {
        sd_event *event;
        sd_bus *bus;
        StepRunLineCallback on_line;
        StepRunDoneCallback on_done;
        void *userdata;

        char *unit;             /* NULL without a scope */
        char *argv0;
        char *cwd;

        pid_t pid;              /* also the process group id (the child calls setsid) */
        int release_fd;         /* ours of the socket pair the child waits on */
        int error_fd;           /* read end of the child's CLOEXEC error pipe */
        sd_event_source *child_source;
        sd_event_source *timeout_source;
        sd_event_source *linger_source;
        LingerPhase linger_phase;
        StepRunStream out, err;
        Scope *scope;

        bool released;          /* the child may run the command */
        bool child_exited;
        bool killed;            /* we sent SIGKILL to everything */
        bool scope_kill_sent;
        bool finished;          /* the done callback was called */

        bool timed_out, cancelled;
        int exit_code, signal;
        char *error;
};

/* ---- the child ---------------------------------------------------------- */

_Noreturn static void child_fail(int error_fd, ChildStage stage, int error) {
        ChildError e = { .stage = stage, .error = error };

        (void) !write(error_fd, &e, sizeof(e));
        _exit(127);
}

static void close_range_or_loop(unsigned first, unsigned last) {
        struct rlimit rl;

        if (first > last)
                return;
        if (close_range(first, last, 0) >= 0)
                return;
        /* Kernel without close_range(): close what the limit allows. */
        if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
                rl.rlim_cur = 65536;
        for (unsigned fd = first; fd <= last && fd < rl.rlim_cur; fd++)
                (void) close((int) fd);
}

/* Only async-signal-safe calls from here on: nornd may have other threads. */
_Noreturn static void child_run(int release_fd, int error_fd, int stdin_fd, int out_fd, int err_fd,
                                const char *cwd, char *const *argv, char *const *env,
                                const StepSandbox *sandbox) {
        struct sigaction sa = { .sa_handler = SIG_DFL };
        sigset_t ss;
        ssize_t n;
        char c;
        int a, b;

        /* Signals first: nornd blocks SIGCHLD/SIGTERM/SIGINT for sd-event, and
         * blocked masks and ignored dispositions (SIGPIPE) survive execve(). */
        for (int sig = 1; sig < _NSIG; sig++)
                if (sig != SIGKILL && sig != SIGSTOP)
                        (void) sigaction(sig, &sa, NULL);
        sigemptyset(&ss);
        if (sigprocmask(SIG_SETMASK, &ss, NULL) < 0)
                child_fail(error_fd, CHILD_STAGE_SETUP, errno);

        /* Own session and process group: killpg() reaches the whole tree (unless
         * something calls setsid() again; the scope reaches even that). */
        if (setsid() < 0)
                child_fail(error_fd, CHILD_STAGE_SETUP, errno);

        /* All our pipe fds are >= 3 (see fd_above_stdio()), so these do not
         * clobber one another; stdin_fd may be anything. */
        if (stdin_fd == STDIN_FILENO) {
                if (fcntl(STDIN_FILENO, F_SETFD, 0) < 0)
                        child_fail(error_fd, CHILD_STAGE_SETUP, errno);
        } else if (dup2(stdin_fd, STDIN_FILENO) < 0)
                child_fail(error_fd, CHILD_STAGE_SETUP, errno);
        if (dup2(out_fd, STDOUT_FILENO) < 0 || dup2(err_fd, STDERR_FILENO) < 0)
                child_fail(error_fd, CHILD_STAGE_SETUP, errno);

        a = MIN(release_fd, error_fd);
        b = MAX(release_fd, error_fd);
        close_range_or_loop(3, (unsigned) a - 1);
        close_range_or_loop((unsigned) a + 1, (unsigned) b - 1);
        close_range_or_loop((unsigned) b + 1, ~0U);

        /* No PR_SET_PDEATHSIG, on purpose. Before the release, a dying nornd
         * closes its end of the socket and we exit below without running the
         * command. After it, with a scope the step stays visible as a running
         * norn-*.scope unit and crash recovery stops it at the next start;
         * PDEATHSIG would only kill this one process and leave its children,
         * hiding that the step was still running. Without a manager the read
         * ends of our pipes die with nornd, so anything still writing output gets
         * SIGPIPE (its disposition was reset above). And PDEATHSIG fires when the
         * forking *thread* exits, a trap if a worker thread ever runs this. */
        do
                n = read(release_fd, &c, 1);
        while (n < 0 && errno == EINTR);
        if (n != 1)
                _exit(EXIT_FAILURE);    /* nornd gave up on us (or died) */
        (void) close(release_fd);

        if (sandbox) {
                int k = step_sandbox_enter(sandbox);
                if (k < 0)
                        child_fail(error_fd, CHILD_STAGE_SANDBOX, -k);
        }

        if (cwd && chdir(cwd) < 0)
                child_fail(error_fd, CHILD_STAGE_CHDIR, errno);

        execvpe(argv[0], argv, env ?: environ);
        child_fail(error_fd, CHILD_STAGE_EXEC, errno);
}

/* ---- helpers ------------------------------------------------------------ */

/* Parent-side fds must not be 0..2, so the child's dup2() onto 0..2 cannot
 * overwrite one it still needs. */
static int fd_above_stdio(int fd) {
        int nfd;

        if (fd < 0 || fd > STDERR_FILENO)
                return fd;
        nfd = fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
        safe_close(fd);
        return nfd < 0 ? -errno : nfd;
}

static int make_pipe(int fds[2]) {
        if (pipe2(fds, O_CLOEXEC) < 0)
                return -errno;
        fds[0] = fd_above_stdio(fds[0]);
        fds[1] = fd_above_stdio(fds[1]);
        if (fds[0] < 0 || fds[1] < 0) {
                int r = fds[0] < 0 ? fds[0] : fds[1];
                safe_close(fds[0]);
                safe_close(fds[1]);
                fds[0] = fds[1] = -EBADF;
                return r;
        }
        return 0;
}

static int fd_nonblock(int fd) {
        int flags = fcntl(fd, F_GETFL);

        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
                return -errno;
        return 0;
}

static void close_pair(int fds[2]) {
        safe_close(fds[0]);
        safe_close(fds[1]);
}

static bool sigchld_blocked(void) {
        sigset_t ss;

        return sigprocmask(SIG_SETMASK, NULL, &ss) >= 0 && sigismember(&ss, SIGCHLD) == 1;
}

static void set_error(StepRun *r, const char *format, ...) _printf_(2, 3);
static void set_error(StepRun *r, const char *format, ...) {
        va_list ap;
        char *e;

        if (r->error)
                return;         /* the first error is the real one */
        va_start(ap, format);
        if (vasprintf(&e, format, ap) < 0)
                e = NULL;
        va_end(ap);
        r->error = e ?: strdup("out of memory");
        log_debug("step %s: %s", strna(r->unit ?: r->argv0), strna(r->error));
}

static void step_run_advance(StepRun *r);

/* ---- killing ------------------------------------------------------------ */

static void release_child(StepRun *r) {
        ssize_t n;

        if (r->released || r->release_fd < 0)
                return;
        /* A socket, not a pipe: MSG_NOSIGNAL, so a child that died meanwhile
         * costs us EPIPE instead of SIGPIPE. */
        n = send(r->release_fd, "x", 1, MSG_NOSIGNAL);
        if (n != 1)
                log_debug_errno(n < 0 ? -errno : -EIO, "Failed to release the child: %m");
        r->release_fd = safe_close(r->release_fd);
        r->released = true;
}

/* Kills everything the step started. */
static void kill_all(StepRun *r) {
        if (r->finished)
                return;
        r->killed = true;

        /* Not released yet: closing our end makes it exit without running anything. */
        r->release_fd = safe_close(r->release_fd);

        if (!r->child_exited && r->child_source)
                (void) sd_event_source_send_child_signal(r->child_source, SIGKILL, NULL, 0);
        if (r->released && r->pid > 0 && kill(-r->pid, SIGKILL) < 0 && errno != ESRCH)
                log_debug_errno(-errno, "Failed to kill process group %d: %m", (int) r->pid);
        if (r->released && r->scope && !r->scope_kill_sent) {
                r->scope_kill_sent = true;
                (void) scope_kill(r->scope, SIGKILL);
        }
}

/* ---- output ------------------------------------------------------------- */

static void stream_emit(const char *line, size_t len, void *userdata) {
        StepRunStream *st = userdata;
        StepRun *r = st->run;

        if (r->on_line && !r->finished)
                r->on_line(r, line, st->is_stderr, r->userdata);
}

static void stream_close(StepRunStream *st) {
        if (st->eof)
                return;
        st->eof = true;
        st->source = sd_event_source_disable_unref(st->source);
        st->fd = safe_close(st->fd);
        line_split_flush(&st->split, stream_emit, st);
}

/* Reads what is there without waiting, then closes. */
static void stream_drain(StepRunStream *st) {
        char buf[16384];

        /* Bounded: without a scope, a writer outside our process group may
         * never stop. */
        for (int i = 0; i < 64 && !st->eof; i++) {
                ssize_t n = read(st->fd, buf, sizeof(buf));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                line_split_feed(&st->split, buf, (size_t) n, stream_emit, st);
        }
        stream_close(st);
}

static int on_stream_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        StepRunStream *st = userdata;
        char buf[16384];
        ssize_t n;

        n = read(st->fd, buf, sizeof(buf));
        if (n < 0) {
                if (errno == EAGAIN || errno == EINTR)
                        return 0;
                log_debug_errno(-errno, "Failed to read the child's output: %m");
        }
        if (n > 0) {
                line_split_feed(&st->split, buf, (size_t) n, stream_emit, st);
                return 0;
        }
        stream_close(st);
        step_run_advance(st->run);      /* may free everything */
        return 0;
}

/* ---- completion --------------------------------------------------------- */

static void step_run_complete(StepRun *r) {
        StepRunResult result = {
                .exit_code = r->error ? -1 : r->exit_code,
                .signal = r->error ? 0 : r->signal,
                .timed_out = r->timed_out,
                .cancelled = r->cancelled,
                .error = r->error,
        };

        r->finished = true;
        r->timeout_source = sd_event_source_disable_unref(r->timeout_source);
        r->linger_source = sd_event_source_disable_unref(r->linger_source);
        r->scope = scope_free(r->scope);
        r->error_fd = safe_close(r->error_fd);
        r->release_fd = safe_close(r->release_fd);

        log_debug("step %s finished: exit %d signal %d%s%s%s%s", strna(r->unit ?: r->argv0),
                  result.exit_code, result.signal, result.timed_out ? " timed out" : "",
                  result.cancelled ? " cancelled" : "", result.error ? ": " : "",
                  result.error ?: "");
        r->on_done(r, &result, r->userdata);    /* may free r: nothing after this */
}

static int on_linger(sd_event_source *s, uint64_t usec, void *userdata);

static void linger_arm(StepRun *r, LingerPhase phase, uint64_t usec) {
        int k;

        if (r->linger_phase == phase)
                return;
        r->linger_phase = phase;
        r->linger_source = sd_event_source_disable_unref(r->linger_source);
        k = sd_event_add_time_relative(r->event, &r->linger_source, CLOCK_MONOTONIC, usec, 0,
                                       on_linger, r);
        if (k < 0)
                /* Without the timer the run could hang: give up waiting right away
                 * (the caller is told by a later pass of step_run_advance()). */
                log_debug_errno(k, "Failed to arm a timer: %m");
}

static void step_run_advance(StepRun *r) {
        if (r->finished || !r->child_exited)
                return;

        if (!r->out.eof || !r->err.eof) {
                linger_arm(r, LINGER_EOF, STEP_RUN_EOF_GRACE_USEC);
                if (r->linger_source)
                        return;
                stream_drain(&r->out);
                stream_drain(&r->err);
        }

        if (r->scope && !scope_is_gone(r->scope)) {
                if (r->linger_phase < LINGER_SCOPE) {
                        if (r->scope_kill_sent)
                                linger_arm(r, LINGER_SCOPE_KILLED, STEP_RUN_SCOPE_KILLED_USEC);
                        else
                                linger_arm(r, LINGER_SCOPE, STEP_RUN_SCOPE_LINGER_USEC);
                }
                if (r->linger_source)
                        return;
        }

        step_run_complete(r);
}

static int on_linger(sd_event_source *s, uint64_t usec, void *userdata) {
        StepRun *r = userdata;

        r->linger_source = sd_event_source_unref(r->linger_source);
        switch (r->linger_phase) {
        case LINGER_EOF:
                /* Something the step left behind holds the pipes. */
                log_debug("step %s: output still open %llu ms after the process exited, killing",
                          strna(r->unit ?: r->argv0), STEP_RUN_EOF_GRACE_USEC / 1000);
                kill_all(r);
                stream_drain(&r->out);
                stream_drain(&r->err);
                break;
        case LINGER_SCOPE:
                log_debug("scope %s still loaded %llu ms after its process exited, killing it",
                          r->unit, STEP_RUN_SCOPE_LINGER_USEC / 1000);
                r->scope_kill_sent = true;
                (void) scope_kill(r->scope, SIGKILL);
                linger_arm(r, LINGER_SCOPE_KILLED, STEP_RUN_SCOPE_KILLED_USEC);
                return 0;
        case LINGER_SCOPE_KILLED:
                log_debug("scope %s not unloaded after KillUnit, finishing anyway", r->unit);
                r->scope = scope_free(r->scope);
                break;
        case LINGER_NONE:
                break;
        }
        step_run_advance(r);    /* may free r */
        return 0;
}

static int on_child(sd_event_source *s, const siginfo_t *si, void *userdata) {
        StepRun *r = userdata;
        ChildError e;
        ssize_t n;

        r->child_exited = true;
        if (si->si_code == CLD_EXITED) {
                r->exit_code = si->si_status;
                r->signal = 0;
        } else {
                r->exit_code = -1;
                r->signal = si->si_status;
        }
        log_debug("step %s: process %d exited (code %d, signal %d)",
                  strna(r->unit ?: r->argv0), (int) r->pid, r->exit_code, r->signal);

        /* The child is gone and nothing else held the write end: this cannot block. */
        do
                n = read(r->error_fd, &e, sizeof(e));
        while (n < 0 && errno == EINTR);
        if (n == (ssize_t) sizeof(e)) {
                if (e.stage == CHILD_STAGE_EXEC)
                        set_error(r, "failed to execute %s: %s", r->argv0, strerror(e.error));
                else if (e.stage == CHILD_STAGE_SANDBOX)
                        set_error(r, "failed to isolate %s (step user, namespaces): %s", r->argv0,
                                  strerror(e.error));
                else if (e.stage == CHILD_STAGE_CHDIR)
                        set_error(r, "failed to change to directory %s: %s", strna(r->cwd),
                                  strerror(e.error));
                else
                        set_error(r, "failed to set up the process for %s: %s", r->argv0,
                                  strerror(e.error));
        }
        r->error_fd = safe_close(r->error_fd);

        step_run_advance(r);    /* may free r */
        return 0;
}

static int on_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        StepRun *r = userdata;

        log_debug("step %s: timed out, killing it", strna(r->unit ?: r->argv0));
        r->timeout_source = sd_event_source_unref(r->timeout_source);
        r->timed_out = true;
        kill_all(r);
        return 0;
}

static void on_scope_event(Scope *s, ScopeEvent event, const char *error, void *userdata) {
        StepRun *r = userdata;

        switch (event) {
        case SCOPE_EVENT_READY:
                if (r->killed)
                        return;
                release_child(r);
                return;
        case SCOPE_EVENT_FAILED:
                /* After a cancel or timeout this is just the consequence of our kill. */
                if (!r->killed)
                        set_error(r, "%s", error);
                kill_all(r);
                break;
        case SCOPE_EVENT_GONE:
                break;
        }
        step_run_advance(r);    /* may free r */
}

/* ---- public ------------------------------------------------------------- */

static int on_orphan_exit(sd_event_source *s, const siginfo_t *si, void *userdata) {
        return 0;       /* sd-event reaps it after we return */
}

StepRun *step_run_free(StepRun *r) {
        if (!r)
                return NULL;

        /* Whatever the step started must not outlive it. */
        if (r->pid > 0 && !r->finished)
                kill_all(r);
        if (r->pid > 0 && !r->child_exited) {
                /* Hand the reaping to a floating child source. */
                r->child_source = sd_event_source_disable_unref(r->child_source);
                if (sd_event_add_child(r->event, NULL, r->pid, WEXITED, on_orphan_exit, NULL) < 0)
                        log_debug("Failed to watch process %d, it will stay a zombie", (int) r->pid);
        }
        r->child_source = sd_event_source_disable_unref(r->child_source);
        r->timeout_source = sd_event_source_disable_unref(r->timeout_source);
        r->linger_source = sd_event_source_disable_unref(r->linger_source);
        r->out.source = sd_event_source_disable_unref(r->out.source);
        r->err.source = sd_event_source_disable_unref(r->err.source);
        safe_close(r->out.fd);
        safe_close(r->err.fd);
        safe_close(r->release_fd);
        safe_close(r->error_fd);
        scope_free(r->scope);
        sd_bus_unref(r->bus);
        sd_event_unref(r->event);
        free(r->unit);
        free(r->argv0);
        free(r->cwd);
        free(r->error);
        return mfree(r);
}

static int stream_watch(StepRun *r, StepRunStream *st, bool is_stderr) {
        int k;

        st->run = r;
        st->is_stderr = is_stderr;
        k = fd_nonblock(st->fd);
        if (k < 0)
                return k;
        return sd_event_add_io(r->event, &st->source, st->fd, EPOLLIN, on_stream_io, st);
}

int step_run_start(sd_event *event, sd_bus *bus, const StepRunSpec *spec,
                   StepRunLineCallback on_line, StepRunDoneCallback on_done, void *userdata,
                   StepRun **ret) {
        _cleanup_(step_run_freep) StepRun *r = NULL;
        _cleanup_close_ int stdin_fd = -EBADF;
        int release[2] = { -EBADF, -EBADF }, error[2] = { -EBADF, -EBADF },
            out[2] = { -EBADF, -EBADF }, err[2] = { -EBADF, -EBADF };
        _cleanup_free_ char *description = NULL;
        int k;

        if (!event || !spec || !spec->argv || !spec->argv[0] || !on_done || !ret)
                return -EINVAL;
        if (bus && spec->unit && (!unit_name_is_safe(spec->unit, ".scope") ||
                                  (spec->slice && !unit_name_is_safe(spec->slice, ".slice"))))
                return -EINVAL;
        if (!sigchld_blocked())
                return log_debug_errno(-EBUSY, "SIGCHLD must be blocked to watch children");

        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        *r = (StepRun) {
                .event = sd_event_ref(event),
                .bus = bus && spec->unit ? sd_bus_ref(bus) : NULL,
                .on_line = on_line,
                .on_done = on_done,
                .userdata = userdata,
                .release_fd = -EBADF,
                .error_fd = -EBADF,
                .out.fd = -EBADF,
                .err.fd = -EBADF,
                .exit_code = -1,
        };
        r->argv0 = strdup(spec->argv[0]);
        if (!r->argv0)
                return -ENOMEM;
        if (spec->cwd && !(r->cwd = strdup(spec->cwd)))
                return -ENOMEM;
        if (r->bus && !(r->unit = strdup(spec->unit)))
                return -ENOMEM;

        if (spec->stdin_fd < 0) {
                stdin_fd = open("/dev/null", O_RDONLY | O_CLOEXEC | O_NOCTTY);
                if (stdin_fd < 0)
                        return -errno;
        }

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, release) < 0)
                return -errno;
        release[0] = fd_above_stdio(release[0]);
        release[1] = fd_above_stdio(release[1]);
        k = release[0] < 0 ? release[0] : release[1] < 0 ? release[1] : 0;
        if (k >= 0)
                k = make_pipe(error);
        if (k >= 0)
                k = make_pipe(out);
        if (k >= 0)
                k = make_pipe(err);
        if (k < 0)
                goto fail_fds;

        r->pid = fork();
        if (r->pid < 0) {
                k = -errno;
                goto fail_fds;
        }
        if (r->pid == 0)
                child_run(release[1], error[1], spec->stdin_fd >= 0 ? spec->stdin_fd : stdin_fd,
                          out[1], err[1], spec->cwd, spec->argv, spec->env, spec->sandbox);

        /* From here on, a failure kills the child: step_run_free() does that. */
        r->release_fd = release[0];
        r->error_fd = error[0];
        r->out.fd = out[0];
        r->err.fd = err[0];
        safe_close(release[1]);
        safe_close(error[1]);
        safe_close(out[1]);
        safe_close(err[1]);
        log_debug("step %s: forked process %d", r->unit ?: r->argv0, (int) r->pid);

        k = sd_event_add_child(event, &r->child_source, r->pid, WEXITED, on_child, r);
        if (k < 0) {
                /* Nobody can reap it now; it exits on EOF of the release socket. */
                r->pid = 0;
                return log_debug_errno(k, "Failed to watch the child: %m");
        }
        k = fd_nonblock(r->error_fd);
        if (k < 0)
                return k;
        k = stream_watch(r, &r->out, false);
        if (k < 0)
                return k;
        k = stream_watch(r, &r->err, true);
        if (k < 0)
                return k;

        if (spec->timeout_usec > 0) {
                k = sd_event_add_time_relative(event, &r->timeout_source, CLOCK_MONOTONIC,
                                               spec->timeout_usec, 0, on_timeout, r);
                if (k < 0)
                        return k;
        }

        if (r->bus) {
                ScopeSpec s = {
                        .unit = spec->unit,
                        .slice = spec->slice,
                        .description = spec->description,
                        .memory_max = spec->memory_max,
                        .tasks_max = spec->tasks_max,
                        .cpu_quota_per_sec_usec = spec->cpu_quota_per_sec_usec,
                };
                if (!s.description) {
                        if (asprintf(&description, "Norn step %s", r->argv0) < 0)
                                return -ENOMEM;
                        s.description = description;
                }
                k = scope_start(r->bus, &s, r->pid, on_scope_event, r, &r->scope);
                if (k < 0)
                        return k;
        } else
                release_child(r);

        *ret = TAKE_PTR(r);
        return 0;

fail_fds:
        close_pair(release);
        close_pair(error);
        close_pair(out);
        close_pair(err);
        return k;
}

int step_run_cancel(StepRun *r) {
        if (!r)
                return -EINVAL;
        if (r->finished || r->cancelled)
                return 0;
        log_debug("step %s: cancelled", strna(r->unit ?: r->argv0));
        r->cancelled = true;
        kill_all(r);
        return 0;
}

pid_t step_run_pid(StepRun *r) {
        return r ? r->pid : 0;
}

const char *step_run_unit(StepRun *r) {
        return r ? r->unit : NULL;
}
