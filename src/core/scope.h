/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-bus.h>

/* A transient systemd scope for a process we forked ourselves, created over
 * the bus without ever blocking: StartTransientUnit with PIDs=[pid], then the
 * start job is followed through JobRemoved (also when that signal overtakes
 * the method reply), and the unit's unloading through UnitRemoved. */

typedef struct Scope Scope;

typedef struct ScopeSpec {
        const char *unit;               /* "<name>.scope" */
        const char *slice;              /* NULL = the manager's default */
        const char *description;        /* NULL = the unit name */
        uint64_t memory_max;            /* bytes, 0 = unset */
        uint64_t tasks_max;             /* 0 = unset */
        uint64_t cpu_quota_per_sec_usec; /* 0 = unset */
} ScopeSpec;

typedef enum ScopeEvent {
        SCOPE_EVENT_READY,      /* start job done: the process is in the scope */
        SCOPE_EVENT_FAILED,     /* the scope could not be created or started; error says why */
        SCOPE_EVENT_GONE,       /* the unit was unloaded (scope_is_gone() is true from now on) */
} ScopeEvent;

/* Called from bus callbacks; the callee may free the Scope. */
typedef void (*ScopeCallback)(Scope *s, ScopeEvent event, const char *error, void *userdata);

/* Unit names we accept: [A-Za-z0-9:_.@-]+ ending in suffix (".scope",
 * ".slice"), shorter than 256 bytes. No quotes or backslashes, so they can
 * go into match rules as they are. */
bool unit_name_is_safe(const char *name, const char *suffix);

int scope_start(sd_bus *bus, const ScopeSpec *spec, pid_t pid,
                ScopeCallback callback, void *userdata, Scope **ret);
/* KillUnit(unit, "all", signo), fire and forget. A no-op once the unit is gone. */
int scope_kill(Scope *s, int signo);
/* True when the unit never got created (StartTransientUnit failed) or was unloaded. */
bool scope_is_gone(const Scope *s);
/* True while the StartTransientUnit reply is outstanding. */
bool scope_is_pending(const Scope *s);
/* Drops the matches and the pending call; does not touch the unit. */
Scope *scope_free(Scope *s);

static inline void scope_freep(Scope **s) {
        scope_free(*s);
}
