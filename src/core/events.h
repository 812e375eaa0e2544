/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct Manager Manager;

/* The one fan-out of deployment events: each event gets a sequence number
 * (1, 2, ... for the life of this nornd), is kept in a bounded history,
 * sent to WebSocket clients (api-ws*.c) as
 *   {"seq", "type", "appId", "time", "payload"}
 * and mirrored as a D-Bus signal, so all clients see the same stream. Key
 * events also go to the journal with a MESSAGE_ID (pipeline.c). */

#define EVENT_HISTORY_MAX 1024U

typedef struct Event {
        uint64_t seq;           /* 0: a hole (out of memory at emit time) */
        char *type;             /* "deploy.queued", "deploy.step", ... */
        char *app;
        int64_t deployment_id;  /* the deployment it is about (0: none) */
        int64_t related_id;     /* deploy.rolled_back: the deployment that rolled back */
        bool is_log;            /* deploy.log: may be skipped for a slow client */
        json_t *payload;        /* only during events_emit() (the D-Bus mirror reads it) */
        char *text;             /* the serialized envelope */
        size_t text_size;
} Event;

typedef struct EventLog {
        Event ring[EVENT_HISTORY_MAX];
        uint64_t next_seq;      /* the last seq handed out */
} EventLog;

/* Steals payload. */
void events_emit(Manager *m, const char *type, const char *app, json_t *payload);
void event_log_done(EventLog *l);

/* The newest seq (0 before the first event) and the oldest one still in
 * the history (last + 1 when it is empty). */
uint64_t event_log_last_seq(const EventLog *l);
uint64_t event_log_oldest_seq(const EventLog *l);
/* The event with that seq, NULL when it is not (or no longer) kept. */
const Event *event_log_get(const EventLog *l, uint64_t seq);
