/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The /ws event stream: who may connect, and what clients may say.
 *
 * Authentication is that of the HTTP API (api-auth.c), in one of two ways:
 *  - "Authorization: Bearer <token>" on the upgrade request (scripts, CI):
 *    a wrong or malformed one is answered 401 before any upgrade;
 *  - from a browser, which cannot set that header: upgrade without it, then
 *    send {"type":"auth","token":"<token>"} as the first message within
 *    WS_AUTH_TIMEOUT_USEC. Anything else first, a wrong token or silence
 *    closes the connection with 1008 (policy violation). Until then the
 *    client gets no event.
 * A token in the URL (?token=) is refused with 400: URLs end up in proxy
 * logs and browser history. With no token configured, only non-browser
 * clients on this host may connect (403 for others, and for an upgrade with
 * an Origin or a Host not a loopback name), as for the API. The token is
 * never logged, nor echoed in an error.
 *
 * Client messages are JSON objects with a "type", checked strictly (unknown
 * keys, wrong types and invalid ids are errors, answered with
 * {"type":"error","payload":{"error","code"}}; the connection stays):
 *   {"type":"subscribe"}                       every event (the default)
 *   {"type":"subscribe","appId":"web"}          one app's events
 *   {"type":"subscribe","deploymentId":12}      one deployment's events
 *   ... each optionally with "since": SEQ       replay after SEQ first
 *   {"type":"resume","since":SEQ}              replay after SEQ, same filter
 * The upgrade's query may say the same: /ws?appId=web&since=40. See
 * api-ws-stream.c for what is sent back. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api-internal.h"
#include "api-ws-internal.h"
#include "infraspec.h"
#include "log.h"
#include "manager.h"

#define WS_SINCE_MAX ((uint64_t) INT64_MAX)

static void ws_activate(WsSubscriber *s) {
        Manager *m = s->manager;
        WsFilter f = s->filter;

        s->authenticated = true;
        s->auth_timer = sd_event_source_disable_unref(s->auth_timer);
        s->next = m->ws_subscribers;
        if (s->next)
                s->next->prev = s;
        m->ws_subscribers = s;

        s->filter = (WsFilter) {};
        ws_subscribe(s, &f, s->connect_since_set, s->connect_since);
}

static int on_auth_timeout(sd_event_source *source, uint64_t usec, void *userdata) {
        WsSubscriber *s = userdata;

        ws_drop(s, "authentication timed out");
        return 0;
}

static int refuse(HttpWsClient *c, int status, json_t *body) {
        http_ws_client_refuse(c, status, body);
        return status == 401 ? -EACCES : status == 400 ? -EINVAL : -EPERM;
}

/* The subscription asked for in the upgrade's query. 0 or an HTTP status. */
static int parse_connect_query(const HttpRequest *req, WsFilter *f, bool *ret_has_since, uint64_t *ret_since,
                               json_t **ret_body) {
        static const char *const allowed[] = { "appId", "deploymentId", "since", "token", NULL };
        _cleanup_(api_query_done) ApiQuery q = {};
        const char *app, *id, *since;
        int r;

        r = api_query_parse(req, allowed, &q, ret_body);
        if (r != 0)
                return r;
        if (api_query_get(&q, "token"))
                return api_fail(ret_body, 400, "token_in_url",
                                "a token in the URL is not accepted (URLs end up in logs): send "
                                "\"Authorization: Bearer <token>\" or a first message {\"type\":\"auth\",\"token\":...}");
        app = api_query_get(&q, "appId");
        id = api_query_get(&q, "deploymentId");
        since = api_query_get(&q, "since");
        if (app && id)
                return api_fail(ret_body, 400, "invalid_query", "subscribe to an appId or a deploymentId, not both");
        if (app) {
                if (!app_id_is_valid(app))
                        return api_fail(ret_body, 400, "invalid_query", "invalid appId");
                f->app = strdup(app);
                if (!f->app)
                        return -ENOMEM;
        }
        if (id && api_parse_id(id, &f->deployment_id) < 0)
                return api_fail(ret_body, 400, "invalid_query", "invalid deploymentId");
        *ret_has_since = since;
        if (since && api_parse_uint(since, 0, WS_SINCE_MAX, ret_since) < 0)
                return api_fail(ret_body, 400, "invalid_query", "invalid since");
        return 0;
}

int api_ws_connected(HttpWsClient *c, const HttpRequest *upgrade_req, void *userdata) {
        Manager *m = userdata;
        WsSubscriber *s;
        WsFilter f = {};
        json_t *body = NULL;
        bool has_since = false;
        uint64_t since = 0;
        int r;

        r = parse_connect_query(upgrade_req, &f, &has_since, &since, &body);
        if (r < 0) {
                ws_filter_done(&f);
                return r;
        }
        if (r > 0) {
                ws_filter_done(&f);
                return refuse(c, r, body);
        }

        /* A header, or no token at all: decided here, before the upgrade. */
        if (upgrade_req->authorization || !m->config.api_token) {
                r = api_authorize(m, upgrade_req, &body);
                if (r < 0) {
                        ws_filter_done(&f);
                        return r;
                }
                if (r > 0) {
                        ws_filter_done(&f);
                        log_debug("WebSocket upgrade refused with %i.", r);
                        return refuse(c, r, body);
                }
        }

        s = calloc(1, sizeof(*s));
        if (!s) {
                ws_filter_done(&f);
                return -ENOMEM;
        }
        s->manager = m;
        s->client = c;
        s->filter = f;
        s->connect_since_set = has_since;
        s->connect_since = since;
        http_ws_client_set_userdata(c, s);

        if (upgrade_req->authorization || !m->config.api_token) {
                log_debug("WebSocket client connected.");
                ws_activate(s);
                return 0;
        }

        r = sd_event_add_time_relative(m->event, &s->auth_timer, CLOCK_MONOTONIC, WS_AUTH_TIMEOUT_USEC, 0,
                                       on_auth_timeout, s);
        if (r < 0) {
                http_ws_client_set_userdata(c, NULL);
                ws_filter_done(&s->filter);
                free(s);
                return r == -ENOMEM ? r : -EIO;
        }
        log_debug("WebSocket client connected, waiting for its auth message.");
        return 0;
}

static void on_auth_message(WsSubscriber *s, const WsMessage *msg) {
        if (msg->error) {
                ws_drop(s, msg->error);
                return;
        }
        if (!api_token_matches(s->manager, msg->token, msg->token_size)) {
                log_debug("WebSocket client refused: wrong token.");
                ws_drop(s, "invalid token");
                return;
        }
        log_debug("WebSocket client authenticated.");
        ws_activate(s);
}

static void on_subscribe_message(WsSubscriber *s, const WsMessage *msg) {
        WsFilter f = { .deployment_id = msg->deployment_id };

        if (msg->error)
                return (void) ws_send_error(s, "bad_message", msg->error);

        if (msg->type == WS_MESSAGE_RESUME) {
                f.app = s->filter.app ? strdup(s->filter.app) : NULL;
                f.deployment_id = s->filter.deployment_id;
                if (s->filter.app && !f.app)
                        return (void) log_oom();
        } else if (msg->app) {
                f.app = strdup(msg->app);
                if (!f.app)
                        return (void) log_oom();
        }

        ws_subscribe(s, &f, msg->has_since, msg->since);
        ws_filter_done(&f);
}

void api_ws_message(HttpWsClient *c, const char *text, size_t size, void *userdata) {
        WsSubscriber *s = http_ws_client_get_userdata(c);
        _cleanup_(ws_message_done) WsMessage msg = {};

        if (!s || http_ws_client_is_closing(c))
                return;

        ws_message_parse(text, size, &msg);

        if (!s->authenticated) {
                /* Nothing but authentication before authentication. */
                if (msg.type != WS_MESSAGE_AUTH)
                        ws_drop(s, "authenticate first: {\"type\":\"auth\",\"token\":\"...\"}");
                else
                        on_auth_message(s, &msg);
                return;
        }

        switch (msg.type) {
        case WS_MESSAGE_NOT_JSON:
                return (void) ws_send_error(s, "bad_message", "not valid JSON");
        case WS_MESSAGE_NOT_TYPED:
                return (void) ws_send_error(s, "bad_message", "expected a JSON object with a string \"type\"");
        case WS_MESSAGE_SUBSCRIBE:
        case WS_MESSAGE_RESUME:
                return on_subscribe_message(s, &msg);
        case WS_MESSAGE_AUTH:
                return (void) ws_send_error(s, "already_authenticated", "this connection is already authenticated");
        case WS_MESSAGE_UNKNOWN:
                return (void) ws_send_error(s, "unknown_type", "unknown message type (subscribe, resume)");
        }
}

void api_ws_closed(HttpWsClient *c, void *userdata) {
        Manager *m = userdata;
        WsSubscriber *s = http_ws_client_get_userdata(c);

        if (!s)
                return;
        if (s->authenticated) {
                if (s->prev)
                        s->prev->next = s->next;
                else
                        m->ws_subscribers = s->next;
                if (s->next)
                        s->next->prev = s->prev;
        }
        sd_event_source_disable_unref(s->auth_timer);
        ws_filter_done(&s->filter);
        free(s);
        log_debug("WebSocket client disconnected.");
}
