/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Cron apps on systemd timers: one transient timer + service pair per app,
 * norn-cron-<app>.timer and norn-cron-<app>.service, created over the bus in
 * ONE StartTransientUnit call (the timer is the main unit, the service its
 * auxiliary unit, as `systemd-run --on-calendar` does). Never blocks: every
 * call to the manager is asynchronous.
 *
 * The service runs cron_job_argv(): the container runtime with the image
 * and the app's command, as ONE argument of `sh -c`. Nothing of the command
 * is interpreted by nornd; systemd would expand "$VAR" in ExecStart=, so
 * every '$' is sent as "$$" (systemd turns it back into '$'). ExecStartEx=
 * with "no-env-expand" would avoid that, but with systemd 252 a transient
 * unit made with it turns "bad-setting" at the next daemon-reload.
 *
 * systemd 252 also writes '$' and ';' of ExecStart= arguments into the
 * transient unit file as "\$" and "\;", and reads them back WITH the
 * backslash: after `systemctl daemon-reload` the command has changed.
 * CronTimers therefore compares the units with their record after every
 * reload of the manager (and at start-up), and re-creates the ones that
 * differ once their job is not running. */

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>

#include "db.h"
#include "macro.h"

#define CRON_UNIT_PREFIX "norn-cron-"
#define CRON_APP_MAX 63U
#define CRON_IMAGE_MAX 512U
#define CRON_COMMAND_MAX (64U * 1024U)
#define CRON_ENV_MAX 256U
#define CRON_CALENDARS_MAX 8U
#define CRON_TIMEOUT_STOP_SEC 15U   /* SIGTERM → SIGKILL when a job is replaced or stopped */

typedef struct CronJob {
        const char *app;            /* ^[a-z0-9][a-z0-9-]*$, at most CRON_APP_MAX bytes */
        const char *image;          /* [A-Za-z0-9._/:@+-], starting with a letter or digit */
        char *const *oncalendar;    /* 1..CRON_CALENDARS_MAX expressions (cron_to_oncalendar()) */
        const char *command;        /* non-empty UTF-8, run as `sh -c <command>` in the image */
        char *const *env;           /* "NAME=value" entries for the job, or NULL */
        const char *runtime;        /* NULL or "": cron_runtime(); else a path or a command name */
        const char *slice;          /* NULL: the manager's default slice */
        unsigned timeout_sec;       /* RuntimeMaxSec=; 0: no limit */
        const char *env_file;       /* NULL, or a root-only file with the env values (EnvironmentFile=):
                                     * then only the names of env are used, never its values */
        const char *user;           /* NULL, or User= of the job (with NoNewPrivileges=, PrivateTmp=,
                                     * ProtectProc=invisible) */
        char *const *inaccessible;  /* InaccessiblePaths= of the job (missing ones ignored), or NULL */
} CronJob;

/* App ids as DESIGN §2: ^[a-z0-9][a-z0-9-]*$, 1..CRON_APP_MAX bytes. */
bool cron_app_is_valid(const char *app);

/* "norn-cron-<app><suffix>" (suffix ".timer" or ".service"); -EINVAL for an
 * invalid app id (checked before anything is built from it). */
int cron_unit_name(const char *app, const char *suffix, char **ret);

/* $NORN_CRON_RUNTIME when set and non-empty, else "podman". */
const char *cron_runtime(void);

/* Checks every field of job; -EINVAL with a one-line reason in *ret_error
 * (when given) naming the field. */
int cron_job_validate(const CronJob *job, char **ret_error);

/* The job's command line, as the service runs it (before the '$' escaping):
 *   <runtime> run --rm [--env NAME]... <image> sh -c <command>
 * One "--env NAME" per job->env entry, in order: the runtime passes the
 * variable from its own environment (the service's Environment=) into the
 * container, so values never appear on a command line. */
int cron_job_argv(const CronJob *job, char ***ret);

/* Completion of an operation: r > 0 the units were (re)created, r == 0
 * they were in place already (or removed), r < 0 failure (negative errno) and
 * error, one line, says what failed. */
typedef void (*CronDoneCallback)(int r, const char *error, void *userdata);

typedef struct CronOp CronOp;

/* Creates (or replaces) the app's timer and service. An existing pair is
 * stopped first (a running job gets SIGTERM, SIGKILL after
 * CRON_TIMEOUT_STOP_SEC) and its units waited for until unloaded; then both
 * are created, and done() is called once the timer's start job finished.
 * The job's strings are copied. The CronOp frees itself after calling done();
 * *ret (optional) is valid until then. Fails right away (-EINVAL, nothing
 * touched, done() not called) when cron_job_validate() fails. */
int cron_timer_install(sd_bus *bus, const CronJob *job, CronDoneCallback done, void *userdata, CronOp **ret);

/* Stops and unloads the app's timer and service (a running job is stopped);
 * succeeds when they do not exist. */
int cron_timer_remove(sd_bus *bus, const char *app, CronDoneCallback done, void *userdata, CronOp **ret);

/* Abandons an operation without calling done(). NULL-safe; returns NULL.
 * Units stay as they are (possibly stopped, or created), except for a deploy
 * of cron_timers_deploy() that had begun changing them: the recorded units
 * (the last good deploy's) are put back. */
CronOp *cron_op_cancel(CronOp *op);

/* ---- Records in PostgreSQL (sql/0003-cron.sql) and executions ----------------
 *
 * cron_timers: the current timer of each cron app (what a deploy installed);
 * cron_executions: one row per run, keyed by the service's InvocationID,
 * written when a run starts and completed when it ends (times, systemd's
 * Result, exit code or signal, the image that ran). */

typedef struct CronTimers CronTimers;

/* Watches the manager on bus: state changes of norn-cron-*.service (to record
 * executions) and the manager's reloads (to repair units). slice: of all
 * units made here (NULL: the manager's default). db may be NULL (nothing
 * recorded or restored; deploys refused). Needs bus attached to an event loop. */
int cron_timers_new(sd_bus *bus, Db *db, const char *slice, CronTimers **ret);
/* Who the jobs of the cron apps run as, and where their env values go
 * (cron-env.c): once set, cron_timers_deploy() writes each app's values to a
 * root-only file in env_dir and records only the names and the file, and
 * every unit made here gets User=user (NoNewPrivileges=, PrivateTmp=,
 * ProtectProc=invisible) and InaccessiblePaths= of inaccessible. Any of
 * them may be NULL. Call before the first deploy or restore. */
int cron_timers_set_sandbox(CronTimers *c, const char *user, const char *env_dir, char *const *inaccessible);
/* Stops checks and recording. Deploys and undeploys in flight go on
 * (cron_op_cancel() stays valid for them) but cannot record any more. Free
 * it before the Db. */
CronTimers *cron_timers_free(CronTimers *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(CronTimers *, cron_timers_free);

/* The deploy step of a cron app: make the units match job (replacing a
 * running job of an older image; nothing changes when they match already),
 * then record job as the app's current timer. Refused with -ENOTCONN while
 * the database is down, -EBUSY while another deploy of the app runs, -EINVAL
 * for a job cron_job_validate() refuses. done() gets an error when either
 * step fails; a recording failure leaves the new units in place and says so. job->slice is ignored: the units go into the slice given to
 * cron_timers_new(). schedule: the infraspec expression, kept for display;
 * deployment_id: 0 for none. */
int cron_timers_deploy(CronTimers *c, const CronJob *job, const char *schedule, int64_t deployment_id,
                       CronDoneCallback done, void *userdata, CronOp **ret);

/* Removes the app's units and its record. */
int cron_timers_undeploy(CronTimers *c, const char *app, CronDoneCallback done, void *userdata, CronOp **ret);

/* Re-creates the recorded timers that are missing or differ from their
 * record, leaving matching ones (and running jobs) alone; a unit that differs
 * while its job runs is re-created when the job ends. Call once the database
 * is up (at start-up: transient units do not survive a reboot). Also records
 * each app's last run. done (may be NULL) is called when every app was
 * looked at, with the first error. */
int cron_timers_restore(CronTimers *c, CronDoneCallback done, void *userdata);
