/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Private to api-ws.c (connection, authentication, client messages) and
 * api-ws-stream.c (subscriptions, replay, slow clients). */

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "api-ws.h"
#include "http-server.h"
#include "manager.h"

/* An unauthenticated client must send {"type":"auth"} within this time. */
#define WS_AUTH_TIMEOUT_USEC (10U * 1000U * 1000U)

typedef struct WsFilter {
        char *app;              /* NULL: any app */
        int64_t deployment_id;  /* 0: any deployment */
} WsFilter;

struct WsSubscriber {
        Manager *manager;
        HttpWsClient *client;
        WsSubscriber *prev, *next; /* in manager->ws_subscribers once authenticated */
        bool authenticated;
        sd_event_source *auth_timer;

        WsFilter filter;
        /* From the upgrade's query (?since=N), applied once authenticated. */
        bool connect_since_set;
        uint64_t connect_since;

        /* Log lines skipped while the client was congested, not yet
         * reported by a {"type":"skipped"} marker. */
        uint64_t skipped, skipped_first, skipped_last;
};

/* api-ws-message.c: one client message, checked (no connection state). */
typedef enum WsMessageType {
        WS_MESSAGE_NOT_JSON,
        WS_MESSAGE_NOT_TYPED,   /* not an object with a string "type" */
        WS_MESSAGE_UNKNOWN,     /* a type we do not know */
        WS_MESSAGE_AUTH,
        WS_MESSAGE_SUBSCRIBE,
        WS_MESSAGE_RESUME,
} WsMessageType;

typedef struct WsMessage {
        WsMessageType type;
        /* For AUTH, SUBSCRIBE, RESUME: what is wrong with its fields (a
         * sentence for the client), NULL when they are fine. */
        const char *error;
        json_t *json;           /* owns the strings below */
        const char *token;      /* AUTH */
        size_t token_size;
        const char *app;        /* SUBSCRIBE: a valid app id, or NULL */
        int64_t deployment_id;  /* SUBSCRIBE: >= 1, or 0 */
        bool has_since;         /* SUBSCRIBE (optional), RESUME (always) */
        uint64_t since;
} WsMessage;

void ws_message_parse(const char *text, size_t size, WsMessage *ret);
void ws_message_done(WsMessage *m);

/* api-ws-stream.c */
bool ws_filter_matches(const WsFilter *f, const Event *e);
void ws_filter_done(WsFilter *f);
/* Queues a message of ours (not an event): {"type": type, "payload": payload}
 * (payload taken). Drops the client when its queue is full. */
int ws_send_control(WsSubscriber *s, const char *type, json_t *payload);
int ws_send_error(WsSubscriber *s, const char *code, const char *message);
/* Takes *filter. Answers {"type":"subscribed"}, then replays the history
 * after since (when has_since) or says {"type":"resync"} when that part of
 * the history is gone; live events follow with no gap and no duplicate. */
void ws_subscribe(WsSubscriber *s, WsFilter *filter, bool has_since, uint64_t since);
/* Closes the connection with 1008 and reason (the queue is dropped). */
void ws_drop(WsSubscriber *s, const char *reason);
