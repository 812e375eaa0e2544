/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "log.h"
#include "manager.h"

/* The /ws event stream: every client gets the events of events.c. */

int api_ws_connected(HttpWsClient *c, const HttpRequest *upgrade_req, void *userdata) {
        Manager *m = userdata;
        WsSubscriber *s = calloc(1, sizeof(*s));

        if (!s)
                return -ENOMEM;
        s->client = c;
        s->next = m->ws_subscribers;
        m->ws_subscribers = s;
        http_ws_client_set_userdata(c, s);
        log_debug("WebSocket client connected.");
        return 0;
}

void api_ws_message(HttpWsClient *c, const char *text, size_t size, void *userdata) {
        /* The event stream is server-to-client; client messages (subscriptions)
         * arrive with the event API. Until then, answer so clients can tell. */
        static const char reply[] = "{\"type\":\"error\",\"payload\":{\"error\":\"no client messages are supported yet\",\"code\":\"unsupported\"}}";
        (void) http_ws_client_send(c, reply, sizeof(reply) - 1);
}

void api_ws_closed(HttpWsClient *c, void *userdata) {
        Manager *m = userdata;
        WsSubscriber *s = http_ws_client_get_userdata(c);

        for (WsSubscriber **p = &m->ws_subscribers; *p; p = &(*p)->next)
                if (*p == s) {
                        *p = s->next;
                        break;
                }
        free(s);
        log_debug("WebSocket client disconnected.");
}
