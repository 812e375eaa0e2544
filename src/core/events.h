/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <jansson.h>
#include <stdint.h>

typedef struct Manager Manager;
typedef struct HttpWsClient HttpWsClient;

/* The one fan-out of deployment events: each event gets a sequence number,
 * is kept in a bounded history, sent to WebSocket clients as
 * {"seq", "type", "appId", "payload"} and mirrored as a D-Bus signal, so all
 * clients see the same stream. Key events also go to the journal with a
 * MESSAGE_ID. */

#define EVENT_HISTORY_MAX 1024U

typedef struct Event {
        uint64_t seq;
        char *type;       /* "deploy.queued", "deploy.step", ... */
        char *app;
        json_t *payload;
        char *text;       /* the serialized envelope */
} Event;

typedef struct EventLog {
        Event ring[EVENT_HISTORY_MAX];
        uint64_t next_seq;
} EventLog;

/* Steals payload. */
void events_emit(Manager *m, const char *type, const char *app, json_t *payload);
void event_log_done(EventLog *l);
