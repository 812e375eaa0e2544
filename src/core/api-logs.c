/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* GET /api/deployments/{id}/logs: the deployment's lines from the journal
 * (NORN_DEPLOY_ID=<id> and NORN_APP=<app>), oldest first, in pages:
 *
 *   ?limit=N     lines per answer, 1..10000 (default 1000)
 *   ?after=C     continue after cursor C (the "cursor" of the last answer;
 *                percent-encode it, it holds ';' and '=')
 *   ?follow=1    long poll: with nothing new yet and the deployment still
 *                running, wait up to ?wait=S seconds (1..60, default 20) for
 *                lines instead of answering at once. The wait is on the
 *                journal's inotify fd in the event loop; nothing blocks.
 *
 * Answer: {"deploymentId", "app", "lines": [{"timestamp", "message", "step",
 * "stream", "priority"}], "cursor", "more" (the limit cut the page short),
 * "finished" (the deployment has ended: no more lines will come)}.
 *
 * The journal is read through deploy-log.h, as the D-Bus GetLogs does, a
 * slice of lines per loop iteration (deploy_log_read_async()). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-journal.h>

#include "api-internal.h"
#include "deploy-log.h"
#include "deploy-store.h"
#include "log.h"
#include "scheduler.h"

#define LOGS_LIMIT_DEFAULT 1000U
#define LOGS_LIMIT_MAX 10000U
#define LOGS_WAIT_DEFAULT_SEC 20U
#define LOGS_WAIT_MAX_SEC 60U
#define LOGS_FOLLOWERS_MAX 64U
#define LOGS_SETTLE_USEC (2ULL * 1000000ULL)

typedef struct LogsCall {
        Manager *manager;
        HttpResponder *responder;
        int64_t id;
        char *app;
        uint64_t queued_usec, finished_usec;
        bool final;              /* as the row said */
        uint64_t limit;
        char *after;
        bool follow;
        uint64_t wait_usec;

        DeployLog *log;
        char *cursor;
        json_t *lines;
        bool more;
        sd_event_source *io, *timer;
        bool waiting;
} LogsCall;

static unsigned n_followers;

static LogsCall *logs_call_free(LogsCall *c) {
        if (!c)
                return NULL;
        if (c->waiting)
                n_followers--;
        sd_event_source_disable_unref(c->io);
        sd_event_source_disable_unref(c->timer);
        deploy_log_free(c->log);
        json_decref(c->lines);
        free(c->app);
        free(c->after);
        free(c->cursor);
        return mfree(c);
}

/* Ended, and long enough ago that journald has stored its last lines (they
 * reach the journal files a little after they were sent). */
static bool logs_call_finished(LogsCall *c) {
        Deployment *d = manager_find_deployment(c->manager, c->id);
        bool final = c->final;
        uint64_t finished = c->finished_usec;

        if (d && streq(d->app, c->app)) {
                final = deploy_status_is_final(d->status);
                finished = d->finished_usec;
        }
        return final && (finished == 0 || now_realtime_usec() > finished + LOGS_SETTLE_USEC);
}

static void logs_call_answer(LogsCall *c) {
        json_t *body;

        /* The wait ended in the middle of a read: the page is cut short. */
        if (deploy_log_reading(c->log))
                c->more = true;

        body = json_pack("{s:I, s:s, s:O, s:o, s:b, s:b}",
                         "deploymentId", (json_int_t) c->id,
                         "app", c->app,
                         "lines", c->lines,
                         "cursor", c->cursor ? json_string(c->cursor) : json_null(),
                         "more", c->more,
                         "finished", logs_call_finished(c) && !c->more);
        http_responder_complete(TAKE_PTR(c->responder), body ? 200 : 500, body);
        logs_call_free(c);
}

static json_t *logs_line_json(const DeployLogLine *line) {
        return json_pack("{s:o, s:o, s:o, s:o, s:o}",
                         "timestamp", api_json_time(line->realtime_usec),
                         "message", api_json_string(line->message),
                         "step", api_json_string(line->step),
                         "stream", api_json_string(line->stream),
                         "priority", line->priority >= 0 ? json_integer(line->priority) : json_null());
}

static int logs_start_read(LogsCall *c);

static int on_logs_line(DeployLogLine *line, void *userdata) {
        LogsCall *c = userdata;

        if (json_array_append_new(c->lines, logs_line_json(line)) < 0)
                return -ENOMEM;
        free(c->cursor);
        c->cursor = TAKE_PTR(line->cursor);
        return json_array_size(c->lines) < c->limit;
}

static int on_logs_timer(sd_event_source *es, uint64_t usec, void *userdata) {
        logs_call_answer(userdata);
        return 0;
}

static int on_logs_journal(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        LogsCall *c = userdata;
        int r;

        r = sd_journal_process(deploy_log_journal(c->log));
        if (r < 0) {
                log_debug_errno(r, "Failed to process journal changes: %m");
                logs_call_answer(c);
                return 0;
        }
        if (r == SD_JOURNAL_NOP && !logs_call_finished(c))
                return 0;
        /* Not watched while the new lines are read. */
        r = sd_event_source_set_enabled(c->io, SD_EVENT_OFF);
        if (r >= 0)
                r = logs_start_read(c);
        if (r < 0) {
                log_debug_errno(r, "Failed to read the journal: %m");
                logs_call_answer(c);
        }
        return 0;
}

static void on_logs_gone(HttpResponder *r, void *userdata) {
        LogsCall *c = userdata;

        http_responder_complete(r, 500, NULL); /* only frees it: nobody to answer */
        c->responder = NULL;
        logs_call_free(c);
}

/* Nothing new yet: wait on the journal's fd, bounded by a timer. */
static int logs_wait(LogsCall *c) {
        sd_event *event = c->manager->event;
        int fd, events, r;

        if (n_followers >= LOGS_FOLLOWERS_MAX)
                return -EBUSY;
        fd = sd_journal_get_fd(deploy_log_journal(c->log));
        if (fd < 0)
                return fd;
        events = sd_journal_get_events(deploy_log_journal(c->log));
        if (events < 0)
                return events;
        r = sd_event_add_io(event, &c->io, fd, (uint32_t) events, on_logs_journal, c);
        if (r < 0)
                return r;
        r = sd_event_add_time_relative(event, &c->timer, CLOCK_MONOTONIC, c->wait_usec, 100 * 1000,
                                       on_logs_timer, c);
        if (r < 0)
                return r;
        c->waiting = true;
        n_followers++;
        return 0;
}

static void logs_fail(LogsCall *c, int r) {
        log_warning_errno(r, "Failed to read the journal for deployment %" PRIi64 ": %m", c->id);
        api_respond_error(TAKE_PTR(c->responder), 503, "unavailable", "the journal cannot be read");
        logs_call_free(c);
}

/* A page read (r: 1 full, 0 no more lines yet, < 0 error). */
static void on_logs_read(DeployLog *l, int r, void *userdata) {
        LogsCall *c = userdata;

        if (r > 0)
                c->more = true;
        if (c->waiting) {
                /* Woken by the journal: answer once there is something. */
                if (r < 0)
                        log_debug_errno(r, "Failed to read the journal: %m");
                if (r >= 0 && json_array_size(c->lines) == 0 && !logs_call_finished(c)) {
                        r = sd_event_source_set_enabled(c->io, SD_EVENT_ON);
                        if (r >= 0)
                                return;
                }
                logs_call_answer(c);
                return;
        }
        if (r < 0) {
                logs_fail(c, r);
                return;
        }
        if (json_array_size(c->lines) == 0 && c->follow && !logs_call_finished(c)) {
                r = logs_wait(c);
                if (r == -EBUSY) {
                        api_respond_error(TAKE_PTR(c->responder), 429, "too_many_requests",
                                          "too many log followers; try again without follow=1");
                        logs_call_free(c);
                        return;
                }
                if (r < 0)
                        logs_fail(c, r);
                return;
        }
        logs_call_answer(c);
}

/* Reads on from the journal's position into c->lines, up to the limit, a
 * slice per loop iteration; on_logs_read() goes on from there. */
static int logs_start_read(LogsCall *c) {
        return deploy_log_read_async(c->log, c->manager->event, on_logs_line, on_logs_read, c);
}

static void logs_start(LogsCall *c) {
        int r;

        r = deploy_log_open(c->id, c->app, c->queued_usec, c->finished_usec, c->after, &c->log);
        if (r == -EINVAL) {
                api_respond_error(TAKE_PTR(c->responder), 400, "invalid_argument",
                                  "after is not a journal cursor of this log");
                logs_call_free(c);
                return;
        }
        if (r >= 0)
                r = logs_start_read(c);
        if (r < 0) {
                logs_fail(c, r);
                return;
        }
        /* From now on the call lives in the event loop: a client gone frees it. */
        http_responder_set_gone_callback(c->responder, on_logs_gone, c);
}

static void on_logs_row(Db *db, const PGresult *res, const char *error, void *userdata) {
        LogsCall *c = userdata;
        DeploymentRow row;

        if (!deploy_query_ok(res)) {
                api_respond_error(TAKE_PTR(c->responder), 503, "unavailable", "the database is unavailable");
                logs_call_free(c);
                return;
        }
        if (!deployment_row_read(res, 0, 0, &row) || !row.app) {
                api_respond_error(TAKE_PTR(c->responder), 404, "not_found", "no such deployment");
                logs_call_free(c);
                return;
        }
        c->app = strdup(row.app);
        c->queued_usec = row.queued_usec;
        c->finished_usec = row.finished_usec;
        c->final = row.status && deploy_status_is_final(deploy_status_from_string(row.status));
        if (!c->app) {
                http_responder_complete(TAKE_PTR(c->responder), 500, NULL);
                logs_call_free(c);
                return;
        }
        logs_start(c);
}

int api_route_deployment_logs(ApiContext *ctx) {
        static const char *const allowed[] = { "limit", "after", "follow", "wait", NULL };
        _cleanup_(api_query_done) ApiQuery q = {};
        Manager *m = ctx->manager;
        uint64_t limit = LOGS_LIMIT_DEFAULT, wait = LOGS_WAIT_DEFAULT_SEC;
        const char *v, *after, *follow;
        LogsCall *c;
        int64_t id;
        int r;

        if (api_parse_id(ctx->args[0], &id) < 0)
                return api_fail(ctx->ret_body, 404, "not_found", "no such deployment");
        r = api_query_parse(ctx->req, allowed, &q, ctx->ret_body);
        if (r != 0)
                return r;
        v = api_query_get(&q, "limit");
        if (v && api_parse_uint(v, 1, LOGS_LIMIT_MAX, &limit) < 0)
                return api_fail(ctx->ret_body, 400, "invalid_argument", "limit must be an integer from 1 to %u",
                                LOGS_LIMIT_MAX);
        v = api_query_get(&q, "wait");
        if (v && api_parse_uint(v, 1, LOGS_WAIT_MAX_SEC, &wait) < 0)
                return api_fail(ctx->ret_body, 400, "invalid_argument", "wait must be an integer from 1 to %u",
                                LOGS_WAIT_MAX_SEC);
        follow = api_query_get(&q, "follow");
        if (follow && !streq(follow, "0") && !streq(follow, "1"))
                return api_fail(ctx->ret_body, 400, "invalid_argument", "follow must be 0 or 1");
        after = api_query_get(&q, "after");
        if (after && !deploy_log_cursor_is_valid(after))
                return api_fail(ctx->ret_body, 400, "invalid_argument", "after must be a cursor of an earlier answer");
        if (!m->db || !db_is_up(m->db))
                return api_fail(ctx->ret_body, 503, "unavailable", "the database is unavailable");

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        *c = (LogsCall) {
                .manager = m,
                .id = id,
                .limit = limit,
                .follow = follow && streq(follow, "1"),
                .wait_usec = wait * 1000000ULL,
                .after = after ? strdup(after) : NULL,
                .lines = json_array(),
        };
        if ((after && !c->after) || !c->lines) {
                logs_call_free(c);
                return -ENOMEM;
        }
        c->responder = http_request_defer(ctx->req);
        if (!c->responder) {
                logs_call_free(c);
                return -ENOMEM;
        }

        r = deploy_query_one(m->db, id, on_logs_row, c);
        if (r < 0) {
                api_respond_error(TAKE_PTR(c->responder), 503, "unavailable", "the database is unavailable");
                logs_call_free(c);
        }
        return HTTP_DEFERRED;
}
