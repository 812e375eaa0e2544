/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* A deployment's output lines as the journal holds them (NORN_DEPLOY_ID=<id>
 * and NORN_APP=<app>), oldest first, for the HTTP API and the D-Bus API.
 *
 * Ids are per database: the deployment's time window (from a little before
 * queued_at until a minute after finished_at) keeps out entries of another
 * deployment that had the same id in another database. Reading is local file
 * access through sd-journal; callers that wait for more lines watch
 * deploy_log_journal()'s fd in the event loop. A page is read in slices
 * (deploy_log_read_async()): on a host with a large journal, reading
 * thousands of entries at once would hold the loop for a long time. */

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>
#include <systemd/sd-journal.h>

#include "macro.h"

#define DEPLOY_LOG_CURSOR_MAX 512U
#define DEPLOY_LOG_MESSAGE_MAX (64U * 1024U)

typedef struct DeployLog DeployLog;

typedef struct DeployLogLine {
        uint64_t realtime_usec;
        char *message;           /* never NULL; not necessarily UTF-8 */
        char *step, *stream;     /* NULL when the entry has none */
        int priority;            /* 0..7, -1 when unknown */
        char *cursor;            /* of this entry: continue after it */
} DeployLogLine;

/* Printable ASCII, not empty, at most DEPLOY_LOG_CURSOR_MAX bytes: the shape
 * of a journal cursor, checked before the journal sees it. */
bool deploy_log_cursor_is_valid(const char *s);

/* Opens the journal at the lines of deployment id of app, after the entry
 * of cursor after (NULL: from the start). -EINVAL when after is not a
 * cursor the journal can seek to. finished_usec 0: still running. */
int deploy_log_open(int64_t id, const char *app, uint64_t queued_usec, uint64_t finished_usec, const char *after,
                    DeployLog **ret);
DeployLog *deploy_log_free(DeployLog *l);
DEFINE_TRIVIAL_CLEANUP_FUNC(DeployLog *, deploy_log_free);

/* The next line: 1 with *ret set (release with deploy_log_line_done()), 0
 * when there is none (yet), < 0 on error. */
int deploy_log_next(DeployLog *l, DeployLogLine *ret);
void deploy_log_line_done(DeployLogLine *line);

/* For waiting on new entries (sd_journal_get_fd/process). */
sd_journal *deploy_log_journal(DeployLog *l);

/* Lines per event loop iteration of deploy_log_read_async(). */
#define DEPLOY_LOG_SLICE 256U

/* Takes a line (it may steal its strings); > 0 for more, 0 when the page
 * is full, < 0 to stop with that error. */
typedef int (*DeployLogLineFunc)(DeployLogLine *line, void *userdata);
/* The read is over: r is 1 when the page is full, 0 when the journal has no
 * more lines (yet), < 0 on error (-ECANCELED: deploy_log_cancel_reads()).
 * l may be freed here. */
typedef void (*DeployLogDoneFunc)(DeployLog *l, int r, void *userdata);

/* Reads on from l's position, DEPLOY_LOG_SLICE lines per loop iteration,
 * each handed to on_line, until on_line says the page is full or there is
 * nothing more; then on_done, always from a later iteration (never from
 * within this call). One read at a time per l; deploy_log_free() cancels
 * it silently. */
int deploy_log_read_async(DeployLog *l, sd_event *event, DeployLogLineFunc on_line, DeployLogDoneFunc on_done,
                          void *userdata);
bool deploy_log_reading(DeployLog *l);
/* At shutdown: ends every read still going with -ECANCELED. */
void deploy_log_cancel_reads(void);
