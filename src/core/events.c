/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "log.h"
#include "manager-bus.h"
#include "manager.h"

static void event_done(Event *e) {
        free(e->type);
        free(e->app);
        json_decref(e->payload);
        free(e->text);
        *e = (Event) {};
}

void event_log_done(EventLog *l) {
        for (size_t i = 0; i < EVENT_HISTORY_MAX; i++)
                event_done(&l->ring[i]);
}

void events_emit(Manager *m, const char *type, const char *app, json_t *payload) {
        Event *e;
        json_t *envelope;

        if (!payload)
                return (void) log_oom();

        e = &m->events.ring[m->events.next_seq % EVENT_HISTORY_MAX];
        event_done(e);
        e->seq = ++m->events.next_seq;
        e->type = strdup(type);
        e->app = strdup(app);
        e->payload = payload;

        envelope = json_pack("{s:I, s:s, s:s, s:O}", "seq", (json_int_t) e->seq, "type", type,
                             "appId", app, "payload", payload);
        e->text = envelope ? json_dumps(envelope, JSON_COMPACT) : NULL;
        json_decref(envelope);
        if (!e->type || !e->app || !e->text) {
                event_done(e);
                return (void) log_oom();
        }

        for (WsSubscriber *s = m->ws_subscribers; s; s = s->next)
                /* A client that cannot keep up loses events rather than
                 * growing our memory; it can resume from its last seq. */
                (void) http_ws_client_send(s->client, e->text, strlen(e->text));

        manager_bus_emit_event(m, e);
}
