/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What a /ws client receives: the events matching its subscription, in seq
 * order, a replay of the history on request, and bounded memory for clients
 * that do not keep up.
 *
 * Slow clients: every client's queue is bounded by http-ws.c (bytes and
 * frames, per client and for all together). Once a queue is past half its
 * bound (http_ws_client_congested()), deploy.log events for that client are
 * skipped and counted; the next event it does get is preceded by
 * {"type":"skipped","payload":{"logLines":N,"fromSeq":A,"toSeq":B}}. Any
 * other event that no longer fits drops the client (close 1008): it can
 * reconnect and resume from its last seq. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api-ws-internal.h"
#include "log.h"
#include "manager.h"

bool ws_filter_matches(const WsFilter *f, const Event *e) {
        if (f->app && !streq(f->app, e->app))
                return false;
        if (f->deployment_id > 0 && f->deployment_id != e->deployment_id && f->deployment_id != e->related_id)
                return false;
        return true;
}

void ws_filter_done(WsFilter *f) {
        f->app = mfree(f->app);
        f->deployment_id = 0;
}

void ws_drop(WsSubscriber *s, const char *reason) {
        if (http_ws_client_is_closing(s->client))
                return;
        log_debug("Dropping WebSocket client: %s", reason);
        http_ws_client_close_with(s->client, 1008, reason);
}

/* Queues text; a full queue drops the client. */
static int ws_send_text(WsSubscriber *s, const char *text, size_t size) {
        int r;

        if (http_ws_client_is_closing(s->client))
                return -ECONNRESET;
        r = http_ws_client_send(s->client, text, size);
        if (r == -ENOBUFS)
                ws_drop(s, "too slow: event queue full");
        return r;
}

int ws_send_control(WsSubscriber *s, const char *type, json_t *payload) {
        _cleanup_free_ char *text = NULL;
        json_t *j;

        if (!payload)
                return -ENOMEM;
        j = json_pack("{s:s, s:o}", "type", type, "payload", payload);
        if (!j)
                return -ENOMEM;
        text = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        if (!text)
                return -ENOMEM;
        return ws_send_text(s, text, strlen(text));
}

int ws_send_error(WsSubscriber *s, const char *code, const char *message) {
        return ws_send_control(s, "error", json_pack("{s:s, s:s}", "error", message, "code", code));
}

static int ws_flush_skipped(WsSubscriber *s) {
        int r;

        if (s->skipped == 0)
                return 0;
        r = ws_send_control(s, "skipped", json_pack("{s:I, s:I, s:I}", "logLines", (json_int_t) s->skipped,
                                                    "fromSeq", (json_int_t) s->skipped_first,
                                                    "toSeq", (json_int_t) s->skipped_last));
        if (r < 0)
                return r;
        s->skipped = 0;
        return 0;
}

static void ws_deliver(WsSubscriber *s, const Event *e) {
        if (!ws_filter_matches(&s->filter, e) || http_ws_client_is_closing(s->client))
                return;

        if (e->is_log && http_ws_client_congested(s->client)) {
                if (s->skipped++ == 0)
                        s->skipped_first = e->seq;
                s->skipped_last = e->seq;
                return;
        }
        if (ws_flush_skipped(s) < 0)
                return;
        (void) ws_send_text(s, e->text, e->text_size);
}

void api_ws_broadcast(Manager *m, const Event *e) {
        /* ws_drop() only starts a close: the list stays as it is. */
        for (WsSubscriber *s = m->ws_subscribers; s; s = s->next)
                ws_deliver(s, e);
}

static json_t *ws_filter_to_json(const WsFilter *f) {
        return json_pack("{s:s?, s:o}", "appId", f->app, "deploymentId",
                         f->deployment_id > 0 ? json_integer(f->deployment_id) : json_null());
}

void ws_subscribe(WsSubscriber *s, WsFilter *filter, bool has_since, uint64_t since) {
        EventLog *l = &s->manager->events;
        uint64_t last = event_log_last_seq(l), oldest = event_log_oldest_seq(l);
        json_t *ack;

        ws_filter_done(&s->filter);
        s->filter = *filter;
        *filter = (WsFilter) {};
        /* Whatever was skipped under the old filter is reported now. */
        if (ws_flush_skipped(s) < 0)
                return;

        /* Everything up to lastSeq is history (replayed or not), everything
         * after it comes live. */
        ack = ws_filter_to_json(&s->filter);
        if (ack)
                json_object_set_new(ack, "lastSeq", json_integer((json_int_t) last));
        if (ws_send_control(s, "subscribed", ack) < 0)
                return;
        if (!has_since)
                return;

        if (since > last || since + 1 < oldest) {
                /* Events after since are gone (or since is of another nornd,
                 * one that ran before this one started): reload the state. */
                (void) ws_send_control(s, "resync",
                                       json_pack("{s:s, s:I, s:I, s:I}",
                                                 "reason", since > last ? "unknown_seq" : "history_exceeded",
                                                 "since", (json_int_t) since, "oldestSeq", (json_int_t) oldest,
                                                 "lastSeq", (json_int_t) last));
                return;
        }

        for (uint64_t seq = since + 1; seq <= last && !http_ws_client_is_closing(s->client); seq++) {
                const Event *e = event_log_get(l, seq);

                if (e)
                        ws_deliver(s, e);
        }
}
