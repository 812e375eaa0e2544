/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The event fan-out's history (src/core/events.c): sequence numbers, the
 * bounded ring and what a replay can find in it, the envelope, and the
 * deployment an event is about (what /ws subscriptions filter on). */
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "macro.h"
#include "manager.h"
#include "tap.h"

int main(void) {
        /* No bus, no WebSocket client: only the history is exercised. */
        Manager *m = calloc(1, sizeof(Manager));
        const Event *e;
        json_t *j;
        uint64_t n = EVENT_HISTORY_MAX + 500;

        if (!m)
                return 1;

        check(event_log_last_seq(&m->events) == 0 && event_log_oldest_seq(&m->events) == 1 &&
              !event_log_get(&m->events, 0) && !event_log_get(&m->events, 1),
              "empty history: last 0, oldest 1, nothing to get");

        events_emit(m, "deploy.queued", "web", json_pack("{s:i, s:s}", "id", 7, "status", "queued"));
        e = event_log_get(&m->events, 1);
        check(e && e->seq == 1 && e->deployment_id == 7 && e->related_id == 0 && !e->is_log && !e->payload,
              "queued: seq 1, about deployment 7 (\"id\"), payload not kept after the fan-out");
        j = e ? json_loads(e->text, 0, NULL) : NULL;
        check(j && json_integer_value(json_object_get(j, "seq")) == 1 &&
              streq(json_string_value(json_object_get(j, "type")) ?: "", "deploy.queued") &&
              streq(json_string_value(json_object_get(j, "appId")) ?: "", "web") &&
              json_is_object(json_object_get(j, "payload")) &&
              strlen(json_string_value(json_object_get(j, "time")) ?: "") == 27 &&
              e->text_size == strlen(e->text),
              "envelope {seq, type, appId, time (µs, UTC), payload}: %s", e ? e->text : "(none)");
        json_decref(j);

        events_emit(m, "deploy.rolled_back", "web", json_pack("{s:i, s:i}", "deploymentId", 5, "rolledBackBy", 9));
        e = event_log_get(&m->events, 2);
        check(e && e->deployment_id == 5 && e->related_id == 9, "rolled_back: about 5, related to 9");

        events_emit(m, "deploy.log", "web", json_pack("{s:i, s:s}", "deploymentId", 7, "line", "x"));
        e = event_log_get(&m->events, 3);
        check(e && e->is_log && e->deployment_id == 7, "deploy.log is marked as sheddable");

        events_emit(m, "deploy.log", "web", NULL);
        check(event_log_last_seq(&m->events) == 3, "an event without payload (OOM) takes no seq");

        for (uint64_t i = 4; i <= n; i++)
                events_emit(m, "deploy.step", "web", json_pack("{s:I}", "deploymentId", (json_int_t) i));

        check(event_log_last_seq(&m->events) == n, "last seq %" PRIu64, event_log_last_seq(&m->events));
        check(event_log_oldest_seq(&m->events) == n - EVENT_HISTORY_MAX + 1, "the history keeps the last %u",
              EVENT_HISTORY_MAX);
        check(!event_log_get(&m->events, n - EVENT_HISTORY_MAX) && !event_log_get(&m->events, n + 1),
              "older and future seqs are not found");
        {
                bool all = true;

                for (uint64_t s = n - EVENT_HISTORY_MAX + 1; s <= n; s++) {
                        e = event_log_get(&m->events, s);
                        all = all && e && e->seq == s && e->deployment_id == (int64_t) s;
                }
                check(all, "every kept seq maps to its own event");
        }

        event_log_done(&m->events);
        free(m);
        printf("1..%u\n", n_checks);
        return n_failed > 0;
}
