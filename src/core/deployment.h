/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "deploy-state.h"
#include "macro.h"
#include "output-tail.h"

typedef struct Manager Manager;
typedef struct Infraspec Infraspec;
typedef struct StepRun StepRun;
typedef struct KubeRequest KubeRequest;
typedef struct CronOp CronOp;
typedef struct DeployWrite DeployWrite;

typedef struct DeploymentStep {
        StepStatus status;
        uint64_t started_usec;   /* CLOCK_REALTIME */
        uint64_t finished_usec;
        int exit_code;           /* of the last command, -1 when none ran or killed */
        char *unit;              /* scope of the last command */
        OutputTail tail;         /* last few KiB of output */
} DeploymentStep;

/* One deploy of one app, from queued to a final status. Active deployments
 * live in Manager.deployments; the row in PostgreSQL is the record. */
typedef struct Deployment {
        Manager *manager;
        int64_t id;
        char *app;
        char *ref;               /* as requested: "HEAD", a branch or a commit SHA */
        char *requested_by;
        char *commit_sha;        /* resolved by clone */
        char *image_tag;         /* final image reference */
        char *source;            /* "git", "local" or "local-fallback" */
        int64_t rollback_of;     /* a rollback: the deployment it replaces (0: a deploy) */
        char *restore_file;      /* restore this snapshot (in the migrate step) */
        bool prebuilt;           /* rollback or restore: deploys an existing image_tag */
        DeployStatus status;
        StepId step;             /* current or last step */
        char *error;
        uint64_t queued_usec, started_usec, finished_usec;
        DeploymentStep steps[_STEP_MAX];

        Infraspec *spec;         /* read when the deploy starts */
        char *workdir;

        /* The running step: its state machine position and what it waits on. */
        unsigned phase;          /* commands started in this step (names the scope) */
        int stage;               /* the step driver's own position */
        char *last_stdout;       /* last stdout line of the step, e.g. rev-parse */
        char *workdir_parent;
        char *snapshot_file;
        char *kube_client_error;
        void *submit;            /* scheduler: who waits for the row to exist */
        bool started;            /* the scheduler handed it to the pipeline */
        StepRun *run;
        StepRun *finished_run;   /* freed outside its own callback */
        KubeRequest *kube;
        CronOp *cron_op;         /* deploy step of a cron app: its timer being set up */
        sd_event_source *defer;
        char *askpass_dir;       /* GIT_ASKPASS helper, removed after clone */
        bool cancel_requested;
        bool finishing;          /* deployment_finish() ran: its final status is set */
        bool listed_recent;      /* moved to Manager.recent (once) */

        /* The record: writes go out one at a time, in order (deploy-store.c).
         * One that cannot reach the database is held and sent again when it
         * is back; the pipeline waits at that boundary (hold_timer). */
        DeployWrite *writes;
        bool write_held;
        void (*store_held)(struct Deployment *d, bool held);
        sd_event_source *hold_timer;
        bool hold_expired;       /* gave up waiting: later writes queue behind, unwaited */
        char held_at[128];       /* the boundary being recorded, for messages */

        sd_bus_message *pending_reply; /* Deploy() answered once the row exists */
        struct Deployment *next;
} Deployment;

int deployment_new(Manager *m, const char *app, const char *ref, const char *requested_by,
                   Deployment **ret);
Deployment *deployment_free(Deployment *d);
DEFINE_TRIVIAL_CLEANUP_FUNC(Deployment *, deployment_free);

/* Journal fields of this deployment (NORN_APP, NORN_DEPLOY_ID, NORN_STEP). */
#define DEPLOYMENT_LOG_FIELDS_MAX 4
void deployment_log_fields(const Deployment *d, char buf[][96], const char *fields[]);

json_t *deployment_to_json(const Deployment *d);
json_t *deployment_step_to_json(const Deployment *d, StepId s);
char *deployment_bus_path(int64_t id);
