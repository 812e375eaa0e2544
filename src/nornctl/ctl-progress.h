/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* Shows a deployment's steps as they happen. On a terminal: colour, and a
 * live line under the output with a spinner and the running step's elapsed
 * time, redrawn by progress_tick(). Otherwise one plain line per event:
 *   ▶ clone
 *       <output line of the step>
 *   ✓ clone (0.2s)          ✗ build (1.3s)          - test skipped
 */
typedef struct Progress {
        bool fancy;
        bool quiet;             /* --json: nothing on stdout until the end */
        char step[32];          /* the running step, "" when none */
        uint64_t step_started;  /* CLOCK_MONOTONIC usec */
        bool live_shown;
        unsigned spin;
} Progress;

void progress_init(Progress *p, bool quiet);
void progress_step(Progress *p, const char *step, const char *status, uint64_t duration_usec);
void progress_log(Progress *p, const char *line);
/* Redraws the live line (terminal only). */
void progress_tick(Progress *p);
/* Removes the live line, before anything else is printed. */
void progress_clear(Progress *p);
