/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "step-sandbox.h"

/* Runs one command of a deploy step as a child process, in its own transient
 * systemd scope when a manager is given, and streams its output line by line.
 * Nothing here blocks the event loop: the scope is created with asynchronous
 * bus calls, output is read from non-blocking pipes, the child is reaped by an
 * sd-event child source.
 *
 * The caller must have SIGCHLD blocked (sd-event's requirement for child
 * sources); step_run_start() returns -EBUSY otherwise.
 *
 * Sequence: fork; the child puts itself into a new session (setsid, so its
 * process group id is its pid), wires stdin/stdout/stderr, closes every other
 * fd and then waits on a socket until released. The parent creates the scope
 * (StartTransientUnit, PIDs=[pid]) and releases the child only once the
 * scope's start job is done, so nothing of the step ever runs outside the
 * scope. Without a manager the child is released at once. Then the child
 * chdir()s and execvp()s; if that fails, the done callback reports
 * "failed to execute <argv[0]>: <strerror>".
 *
 * The done callback comes once, after the child exited AND both pipes hit
 * EOF AND (with a scope) the unit was unloaded, so the same unit name can be
 * used again right away. If the child exited but something it left behind
 * still holds the pipes after STEP_RUN_EOF_GRACE_USEC, the scope (or process
 * group) is killed and the run finishes; a scope that still exists
 * STEP_RUN_SCOPE_LINGER_USEC after that is killed too: whatever the step
 * started does not outlive it. */

#define STEP_RUN_EOF_GRACE_USEC (1 * 1000 * 1000ULL)
#define STEP_RUN_SCOPE_LINGER_USEC (1 * 1000 * 1000ULL)

typedef struct StepRun StepRun;

typedef struct StepRunSpec {
        char *const *argv;              /* argv[0] is looked up in PATH by execvp */
        char *const *env;               /* full environment for the child (NULL = inherit);
                                         * PATH for the argv[0] lookup is nornd's own */
        const char *cwd;                /* may be NULL */
        const char *unit;               /* e.g. "norn-web-12-build.scope"; NULL = no scope */
        const char *slice;              /* e.g. "norn.slice" */
        uint64_t memory_max;            /* bytes, 0 = unset (MemoryMax=) */
        uint64_t tasks_max;             /* 0 = unset (TasksMax=) */
        uint64_t cpu_quota_per_sec_usec; /* 0 = unset (CPUQuotaPerSecUSec=) */
        uint64_t timeout_usec;          /* 0 = none: on expiry the whole scope is killed;
                                         * counted from step_run_start() */
        int stdin_fd;                   /* -1 = /dev/null; not closed, the child gets a copy */
        const char *description;        /* the scope's Description=; NULL = "Norn step <argv[0]>" */
        const StepSandbox *sandbox;     /* NULL: runs as nornd; else the child enters it (as root)
                                         * once it is in its scope, before cwd and exec */
} StepRunSpec;

typedef struct StepRunResult {
        int exit_code;                  /* exit status, or -1 when killed by a signal or
                                         * when it could not start (error set) */
        int signal;                     /* terminating signal or 0 */
        bool timed_out, cancelled;
        const char *error;              /* set when it could not start, e.g. "scope job
                                         * failed: ..."; valid until step_run_free() */
} StepRunResult;

/* line: a NUL-terminated line without its '\n', at most LINE_SPLIT_MAX bytes
 * (8 KiB, line-split.h): longer lines are cut and continue as the next line.
 * NUL bytes are replaced by U+FFFD; otherwise the bytes come as the command
 * wrote them, so a line need not be valid UTF-8. Lines of one stream come in
 * order; the relative order of stdout and stderr lines is only as good as two
 * pipes allow (lines written at about the same time may swap).
 * The line callback may call step_run_cancel() but must not free r. */
typedef void (*StepRunLineCallback)(StepRun *r, const char *line, bool is_stderr, void *userdata);
/* Called once; may free r. */
typedef void (*StepRunDoneCallback)(StepRun *r, const StepRunResult *result, void *userdata);

/* bus: connection to the systemd manager (user or system), NULL = no manager:
 * the child runs as its own process group instead (the caller logs that once).
 * With a bus but unit == NULL there is no scope either. The bus must be a bus
 * client (sd_bus_open_user/system) attached to event. unit and slice must be
 * plain names ([A-Za-z0-9:_.@-], ending in .scope/.slice), else -EINVAL.
 * Returns a negative errno when the step could not be set up (nothing is left
 * running then, and no callback follows). */
int step_run_start(sd_event *event, sd_bus *bus, const StepRunSpec *spec,
                   StepRunLineCallback on_line, StepRunDoneCallback on_done, void *userdata,
                   StepRun **ret);
/* Kills everything the step started (KillUnit(unit, "all", SIGKILL) and the
 * process group); the done callback follows with cancelled=true. A child not
 * released yet never runs the command. No-op after the done callback. */
int step_run_cancel(StepRun *r);
/* Does not call callbacks; kills the child if still running (and reaps it later). */
StepRun *step_run_free(StepRun *r);
pid_t step_run_pid(StepRun *r);
const char *step_run_unit(StepRun *r);

static inline void step_run_freep(StepRun **r) {
        step_run_free(*r);
}
