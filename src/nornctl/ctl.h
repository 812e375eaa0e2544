/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>

#include "macro.h"

/* What the command line asked for, beyond the command and its arguments.
 * Parsed once in main.c, read by every command. */
typedef struct CtlOptions {
        bool user;              /* session bus / user-mode nornd */
        const char *host;       /* -H: [USER@]HOST[:PORT], reached over ssh */
        bool json;              /* one JSON document on stdout */
        bool follow;            /* logs -f */
        bool no_follow;         /* deploy/rollback/restore: queue and return */
        bool restore_db;        /* rollback --restore-db */
        uint64_t to;            /* rollback --to ID (0: the last good one) */
        const char *status;     /* history --status */
        uint32_t limit;         /* history -n (0: nornd's default) */
} CtlOptions;

/* A command: args are the words after its name; returns an exit status
 * (0, or > 0 when the command's answer is "no"), or a negative errno after
 * having printed why. */
typedef int (*CtlCommand)(sd_bus *bus, char **args, const CtlOptions *o);

/* ctl-polkit.c: a pkttyagent for mutating commands run on a terminal by
 * someone other than root, stopped again after the command. */
void ctl_polkit_agent_open(void);
void ctl_polkit_agent_close(void);

/* ctl-deploy.c */
int ctl_deploy(sd_bus *bus, char **args, const CtlOptions *o);
int ctl_rollback(sd_bus *bus, char **args, const CtlOptions *o);
int ctl_restore(sd_bus *bus, char **args, const CtlOptions *o);
int ctl_cancel(sd_bus *bus, char **args, const CtlOptions *o);

/* ctl-query.c */
int ctl_apps(sd_bus *bus, char **args, const CtlOptions *o);
int ctl_list_app_names(sd_bus *bus, char **args, const CtlOptions *o);
int ctl_status(sd_bus *bus, char **args, const CtlOptions *o);
int ctl_history(sd_bus *bus, char **args, const CtlOptions *o);
int ctl_show(sd_bus *bus, char **args, const CtlOptions *o);

/* ctl-logs.c */
int ctl_logs(sd_bus *bus, char **args, const CtlOptions *o);

/* ctl-system.c */
int ctl_version(sd_bus *bus, char **args, const CtlOptions *o);
int ctl_health(sd_bus *bus, char **args, const CtlOptions *o);
int ctl_validate(sd_bus *bus, char **args, const CtlOptions *o);
int ctl_snapshots(sd_bus *bus, char **args, const CtlOptions *o);
