/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api-ws.h"
#include "events.h"
#include "log.h"
#include "manager-bus.h"
#include "manager.h"
#include "deploy-store.h"

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

uint64_t event_log_last_seq(const EventLog *l) {
        return l->next_seq;
}

uint64_t event_log_oldest_seq(const EventLog *l) {
        return l->next_seq >= EVENT_HISTORY_MAX ? l->next_seq - EVENT_HISTORY_MAX + 1 : 1;
}

const Event *event_log_get(const EventLog *l, uint64_t seq) {
        const Event *e;

        if (seq == 0 || seq > l->next_seq || seq < event_log_oldest_seq(l))
                return NULL;
        e = &l->ring[(seq - 1) % EVENT_HISTORY_MAX];
        return e->seq == seq ? e : NULL;
}

/* "2026-01-02T03:04:05.123456Z": microseconds, so that clients can measure
 * how late an event reaches them. */
static void format_time(uint64_t usec, char buf[static 32]) {
        time_t t = (time_t) (usec / 1000000U);
        struct tm tm;

        if (!gmtime_r(&t, &tm) || strftime(buf, 32, "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
                strcpy(buf, "1970-01-01T00:00:00");
                return;
        }
        snprintf(buf + strlen(buf), 32 - strlen(buf), ".%06uZ", (unsigned) (usec % 1000000U));
}

/* The deployment an event is about: "deploymentId" of step/log/rolled_back
 * payloads, "id" of the whole deployments of queued/completed/failed. */
static int64_t payload_deployment_id(json_t *p) {
        json_t *id = json_object_get(p, "deploymentId") ?: json_object_get(p, "id");

        return json_is_integer(id) ? (int64_t) json_integer_value(id) : 0;
}

void events_emit(Manager *m, const char *type, const char *app, json_t *payload) {
        char when[32];
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
        e->deployment_id = payload_deployment_id(payload);
        e->related_id = json_integer_value(json_object_get(payload, "rolledBackBy"));
        e->is_log = streq(type, "deploy.log");

        format_time(now_realtime_usec(), when);
        envelope = json_pack("{s:I, s:s, s:s, s:s, s:O}", "seq", (json_int_t) e->seq, "type", type,
                             "appId", app, "time", when, "payload", payload);
        e->text = envelope ? json_dumps(envelope, JSON_COMPACT) : NULL;
        json_decref(envelope);
        if (!e->type || !e->app || !e->text) {
                event_done(e);
                return (void) log_oom();
        }
        e->text_size = strlen(e->text);

        api_ws_broadcast(m, e);
        manager_bus_emit_event(m, e);

        /* The history keeps the text only: jansson objects cost far more. */
        json_decref(e->payload);
        e->payload = NULL;
}
