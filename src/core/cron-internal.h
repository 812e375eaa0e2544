/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Shared by the cron-*.c files only; the API is cron-timer.h.
 *
 *   cron-job.c         the job: checks, command line, fingerprint
 *   cron-unit-state.c  what the service manager says about a unit
 *   cron-op.c          one operation on an app's units: inspect, stop, wait, create
 *   cron-unit.c        building the StartTransientUnit call (timer + service)
 *   cron-record.c      PostgreSQL: the timer records and the executions
 *   cron-restore.c     re-creating units from their records
 *   cron-timer.c       CronTimers: watching the manager, deploy, undeploy */

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "cron-timer.h"

#define SYSTEMD_DEST "org.freedesktop.systemd1"
#define SYSTEMD_PATH "/org/freedesktop/systemd1"
#define SYSTEMD_MANAGER SYSTEMD_DEST ".Manager"
#define SYSTEMD_UNIT SYSTEMD_DEST ".Unit"
#define SYSTEMD_SERVICE SYSTEMD_DEST ".Service"
#define UNIT_PATH_PREFIX SYSTEMD_PATH "/unit"
#define DBUS_PROPERTIES "org.freedesktop.DBus.Properties"

#define CRON_USEC_PER_MSEC UINT64_C(1000)
#define CRON_USEC_PER_SEC UINT64_C(1000000)

/* ---- cron-env.c ---- */

/* Writes env's NAME=value entries to a new root-only file <dir>/<app>.<random>.env
 * (dir is made 0700), or finds the app's file with exactly these values. */
int cron_env_file_prepare(const char *dir, const char *app, char *const *env, char **ret_path);
/* Removes the app's files in dir but keep (a path or NULL). */
void cron_env_files_prune(const char *dir, const char *app, const char *keep);

/* ---- cron-job.c ---- */

/* ExecStart= as systemd gets it: each '$' doubled. */
int cron_argv_escape(char *const *argv, char ***ret);
/* Changes when anything the units are made of changes: 16 hex digits. */
void cron_job_fingerprint(const CronJob *job, char *const *argv, char ret[17]);

/* ---- cron-unit-state.c ---- */

typedef struct UnitState {
        char *load_state;
        char *active_state;
        char invocation[33];            /* hex, "" when none */
        bool job;                       /* a job is queued for the unit (Job= is set) */
        char **exec_argv;               /* ExecStart=, first command */
        char **extra_fields;            /* LogExtraFields= */
        uint64_t start_usec, exit_usec; /* ExecMainStartTimestamp, ExecMainExitTimestamp */
        int32_t code, status;           /* ExecMainCode (CLD_*), ExecMainStatus */
        char *result;
} UnitState;

void unit_state_done(UnitState *s);
/* Reads a "v" holding InvocationID (ay) as 32 hex digits ("" when not set). */
int unit_state_read_invocation(sd_bus_message *m, char ret[33]);
/* Reads the a{sv} of a GetAll() reply (Unit or Service interface) into s. */
int unit_state_parse(sd_bus_message *m, UnitState *s);
/* A job runs, and nobody is stopping it. */
bool unit_active_state_is_running(const char *s);
/* The value of NAME= in LogExtraFields=, NULL when missing. */
const char *unit_extra_field(char *const *fields, const char *name);
const char *bus_reply_error_text(sd_bus_message *m);
bool bus_reply_error_is(sd_bus_message *m, const char *name);

/* ---- cron-op.c ---- */

#define OP_SLOTS 8
#define EARLY_JOBS_MAX 4

typedef enum OpSync {
        SYNC_NONE,      /* always (re)create */
        SYNC_REPLACE,   /* keep matching units, else re-create (stopping a running job) */
        SYNC_IDLE,      /* keep matching units; -EBUSY when they differ while the job runs */
} OpSync;

typedef enum OpPhase {
        PHASE_INSPECT,
        PHASE_STOP,
        PHASE_UNLOAD,
        PHASE_CREATE,
        PHASE_RECORD,
} OpPhase;

struct CronOp {
        sd_bus *bus;
        CronTimers *owner;              /* set for operations of a CronTimers */
        CronOp *next;                   /* in owner->ops */
        bool check;                     /* a check of a record (cron-restore.c), not a deploy */
        char *app, *timer, *service, *timer_path, *service_path;
        bool install;
        OpSync sync;
        OpPhase phase;
        sd_bus_message *create;         /* the StartTransientUnit call */
        char **argv;                    /* ExecStart= argv as sent (escaped) */
        char *env_file;                 /* a deploy's env file: the app's others go once it is recorded */
        char spec[17];

        sd_bus_slot *slots[OP_SLOTS];   /* outstanding method calls */
        unsigned pending;
        sd_bus_slot *removed_match, *jobs_match;
        sd_event_source *poll, *timeout;
        bool timer_gone, service_gone;
        char *job;
        struct { char *path, *result; } early[EARLY_JOBS_MAX];
        size_t n_early;
        UnitState timer_state, service_state;

        const char *record_sql;         /* PHASE_RECORD: statement and parameters */
        char *record_params[10];        /* cron_sql_upsert_timer has the most */
        bool orphaned;                  /* cancelled while the record query runs */
        int result;

        CronDoneCallback done;
        void *userdata;
};

int cron_op_new(sd_bus *bus, const char *app, bool install, CronDoneCallback done, void *userdata, CronOp **ret);
CronOp *cron_op_free(CronOp *op);
DEFINE_TRIVIAL_CLEANUP_FUNC(CronOp *, cron_op_free);
/* Adds op to c's operations (it is then told when op ends). */
void cron_op_link(CronOp *op, CronTimers *c);
void cron_op_unlink(CronOp *op);
/* The end: exactly one done() call (after recording, when op has a record
 * to write and r >= 0), then the op is gone. */
void cron_op_finish(CronOp *op, int r, const char *format, ...) _printf_(3, 4);
/* Reads the units' state; they are kept when they match their job. */
int cron_op_inspect(CronOp *op);
/* Stops both units (a running job included), then waits until they are unloaded. */
int cron_op_begin_replace(CronOp *op);

/* ---- cron-unit.c ---- */

/* An install operation for job, with its StartTransientUnit call built: bad
 * input fails here, before anything is sent. */
int cron_op_new_install(sd_bus *bus, const CronJob *job, OpSync sync, CronDoneCallback done, void *userdata,
                        CronOp **ret, char **ret_error);

/* ---- cron-record.c ---- */

extern const char cron_sql_upsert_timer[];      /* 10 parameters */
extern const char cron_sql_delete_timer[];      /* 1 parameter */
extern const char cron_sql_select_timers[];     /* 1 parameter: an app or NULL */

typedef struct Probe Probe;

/* PHASE_RECORD: writes op's record, then finishes it. */
void cron_op_record(CronOp *op);
void cron_record_execution(CronTimers *c, const char *app, const char *unit, const UnitState *s);
/* Reads the service's last run and records it. */
void cron_probe_start(CronTimers *c, const char *app, const char *unit, const char *path);
Probe *cron_probe_free(Probe *p);

/* ---- cron-restore.c ---- */

typedef struct Restore Restore;

int cron_restore_start(CronTimers *c, const char *app, CronDoneCallback done, void *userdata);
/* A restore whose query runs frees itself when the answer comes. */
void cron_restores_drop(CronTimers *c);

/* ---- cron-timer.c ---- */

struct CronTimers {
        unsigned n_ref;
        bool dead;                      /* cron_timers_free() was called */
        sd_bus *bus;
        Db *db;
        char *slice;
        char *user, *env_dir;           /* cron_timers_set_sandbox() */
        char **inaccessible;
        sd_bus_slot *changes_match, *reload_match;
        CronOp *ops;
        Probe *probes;
        Restore *restores;
        char **after_op;                /* apps to check again when their operation ends */
        char **after_job;               /* ... when their running job ends */
};

void cron_timers_unref(CronTimers *c);
CronOp *cron_timers_find_op(CronTimers *c, const char *app);
void cron_timers_op_ended(CronTimers *c, const char *app, int r);
