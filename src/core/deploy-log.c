/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deploy-log.h"

#define DEPLOY_LOG_BEFORE_USEC (5ULL * 1000000ULL)
#define DEPLOY_LOG_AFTER_USEC (60ULL * 1000000ULL)

struct DeployLog {
        sd_journal *journal;
        uint64_t queued_usec, finished_usec;
        char *after;             /* the first entry may be this one: skip it */

        /* deploy_log_read_async(), while it reads */
        sd_event_source *slice;
        DeployLogLineFunc on_line;
        DeployLogDoneFunc on_done;
        void *userdata;
        DeployLog *reading_prev, *reading_next;
};

/* Every DeployLog with a read going, for deploy_log_cancel_reads(). */
static DeployLog *reading;

bool deploy_log_cursor_is_valid(const char *s) {
        size_t n = strlen(s);

        if (n == 0 || n > DEPLOY_LOG_CURSOR_MAX)
                return false;
        for (const char *p = s; *p; p++)
                if (*p < 0x21 || *p > 0x7e)
                        return false;
        return true;
}

static void read_stop(DeployLog *l) {
        if (!l->slice)
                return;
        l->slice = sd_event_source_disable_unref(l->slice);
        if (l->reading_prev)
                l->reading_prev->reading_next = l->reading_next;
        else
                reading = l->reading_next;
        if (l->reading_next)
                l->reading_next->reading_prev = l->reading_prev;
        l->reading_prev = l->reading_next = NULL;
}

DeployLog *deploy_log_free(DeployLog *l) {
        if (!l)
                return NULL;
        read_stop(l);
        sd_journal_close(l->journal);
        free(l->after);
        return mfree(l);
}

int deploy_log_open(int64_t id, const char *app, uint64_t queued_usec, uint64_t finished_usec, const char *after,
                    DeployLog **ret) {
        _cleanup_(deploy_log_freep) DeployLog *l = NULL;
        char match[96];
        int r;

        if (after && !deploy_log_cursor_is_valid(after))
                return -EINVAL;
        l = calloc(1, sizeof(*l));
        if (!l)
                return -ENOMEM;
        l->queued_usec = queued_usec;
        l->finished_usec = finished_usec;

        r = sd_journal_open(&l->journal, SD_JOURNAL_LOCAL_ONLY);
        if (r < 0)
                return r;
        (void) sd_journal_set_data_threshold(l->journal, DEPLOY_LOG_MESSAGE_MAX);

        snprintf(match, sizeof(match), "NORN_DEPLOY_ID=%" PRIi64, id);
        r = sd_journal_add_match(l->journal, match, 0);
        if (r < 0)
                return r;
        snprintf(match, sizeof(match), "NORN_APP=%s", app);
        r = sd_journal_add_match(l->journal, match, 0);
        if (r < 0)
                return r;

        if (after) {
                r = sd_journal_seek_cursor(l->journal, after);
                if (r < 0)
                        return -EINVAL;
                l->after = strdup(after);
                if (!l->after)
                        return -ENOMEM;
        } else {
                r = sd_journal_seek_realtime_usec(l->journal, queued_usec > DEPLOY_LOG_BEFORE_USEC
                                                                      ? queued_usec - DEPLOY_LOG_BEFORE_USEC : 0);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(l);
        return 0;
}

static char *field(sd_journal *j, const char *name) {
        const void *data;
        size_t size, n = strlen(name);

        if (sd_journal_get_data(j, name, &data, &size) < 0 || size <= n + 1)
                return NULL;
        return strndup((const char *) data + n + 1, MIN(size - n - 1, (size_t) DEPLOY_LOG_MESSAGE_MAX));
}

void deploy_log_line_done(DeployLogLine *line) {
        free(line->message);
        free(line->step);
        free(line->stream);
        free(line->cursor);
        *line = (DeployLogLine) {};
}

int deploy_log_next(DeployLog *l, DeployLogLine *ret) {
        sd_journal *j = l->journal;
        int r;

        for (;;) {
                _cleanup_free_ char *prio = NULL;
                DeployLogLine line = { .priority = -1 };
                uint64_t realtime;

                r = sd_journal_next(j);
                if (r <= 0)
                        return r;
                if (l->after) {
                        bool same = sd_journal_test_cursor(j, l->after) > 0;
                        l->after = mfree(l->after);
                        if (same)
                                continue;
                }
                r = sd_journal_get_realtime_usec(j, &realtime);
                if (r < 0)
                        return r;
                if (realtime + DEPLOY_LOG_BEFORE_USEC < l->queued_usec)
                        continue;
                if (l->finished_usec > 0 && realtime > l->finished_usec + DEPLOY_LOG_AFTER_USEC) {
                        /* Someone else's, later: step back so the next call sees it again. */
                        (void) sd_journal_previous(j);
                        return 0;
                }

                line.realtime_usec = realtime;
                line.message = field(j, "MESSAGE") ?: strdup("");
                line.step = field(j, "NORN_STEP");
                line.stream = field(j, "NORN_STREAM");
                prio = field(j, "PRIORITY");
                if (prio && prio[0] >= '0' && prio[0] <= '7' && !prio[1])
                        line.priority = prio[0] - '0';
                r = sd_journal_get_cursor(j, &line.cursor);
                if (r < 0 || !line.message) {
                        deploy_log_line_done(&line);
                        return r < 0 ? r : -ENOMEM;
                }
                *ret = line;
                return 1;
        }
}

sd_journal *deploy_log_journal(DeployLog *l) {
        return l->journal;
}

static void read_finish(DeployLog *l, int r) {
        read_stop(l);
        l->on_done(l, r, l->userdata); /* may free l */
}

static int on_slice(sd_event_source *s, uint64_t usec, void *userdata) {
        DeployLog *l = userdata;
        int r;

        for (unsigned n = 0; n < DEPLOY_LOG_SLICE; n++) {
                _cleanup_(deploy_log_line_done) DeployLogLine line = {};

                r = deploy_log_next(l, &line);
                if (r <= 0) {
                        read_finish(l, r);
                        return 0;
                }
                r = l->on_line(&line, l->userdata);
                if (r <= 0) {
                        read_finish(l, r < 0 ? r : 1);
                        return 0;
                }
        }
        /* Again on the next iteration, after what else is ready: an
         * elapsed one-shot timer is pending anew each time it is enabled
         * (a defer source stays pending and would go first every time). */
        r = sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        if (r < 0)
                read_finish(l, r);
        return 0;
}

int deploy_log_read_async(DeployLog *l, sd_event *event, DeployLogLineFunc on_line, DeployLogDoneFunc on_done,
                          void *userdata) {
        int r;

        if (l->slice)
                return -EBUSY;
        r = sd_event_add_time(event, &l->slice, CLOCK_MONOTONIC, 0, 1, on_slice, l);
        if (r < 0)
                return r;
        l->on_line = on_line;
        l->on_done = on_done;
        l->userdata = userdata;
        l->reading_next = reading;
        if (reading)
                reading->reading_prev = l;
        reading = l;
        return 0;
}

bool deploy_log_reading(DeployLog *l) {
        return l && l->slice;
}

void deploy_log_cancel_reads(void) {
        while (reading)
                read_finish(reading, -ECANCELED);
}
