/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What a /ws client says, parsed and checked without any connection state
 * (api-ws.c acts on the result; tests/fuzz/fuzz-ws-message.c feeds it). */
#include <errno.h>
#include <stdlib.h>

#include "api-ws-internal.h"
#include "infraspec.h"
#include "macro.h"

#define WS_SINCE_MAX ((uint64_t) INT64_MAX)

/* Every key of o is in allowed. */
static bool keys_allowed(json_t *o, const char *const *allowed) {
        const char *key;
        json_t *v;

        json_object_foreach(o, key, v) {
                bool found = false;

                for (const char *const *a = allowed; *a; a++)
                        if (streq(*a, key))
                                found = true;
                if (!found)
                        return false;
        }
        return true;
}

/* A JSON integer in [min, INT64_MAX]; not a real, not a bool. */
static int json_get_uint(json_t *v, int64_t min, uint64_t *ret) {
        if (!json_is_integer(v) || json_integer_value(v) < min)
                return -EINVAL;
        *ret = (uint64_t) json_integer_value(v);
        return 0;
}

static const char *parse_auth(json_t *msg, WsMessage *m) {
        static const char *const allowed[] = { "type", "token", NULL };
        json_t *token = json_object_get(msg, "token");

        if (!keys_allowed(msg, allowed) || !json_is_string(token))
                return "expected {\"type\":\"auth\",\"token\":\"...\"}";
        m->token = json_string_value(token);
        m->token_size = json_string_length(token);
        return NULL;
}

static const char *parse_subscribe(json_t *msg, bool resume, WsMessage *m) {
        static const char *const subscribe_keys[] = { "type", "appId", "deploymentId", "since", NULL };
        static const char *const resume_keys[] = { "type", "since", NULL };
        json_t *app = json_object_get(msg, "appId"), *id = json_object_get(msg, "deploymentId"),
               *since = json_object_get(msg, "since");
        uint64_t v;

        if (!keys_allowed(msg, resume ? resume_keys : subscribe_keys))
                return resume ? "resume takes \"since\" only" : "subscribe takes appId, deploymentId and since";
        if (resume && !since)
                return "resume needs \"since\"";
        if (since && (json_get_uint(since, 0, &m->since) < 0 || m->since > WS_SINCE_MAX))
                return "\"since\" must be an integer >= 0";
        m->has_since = since;
        if (app && id)
                return "subscribe to an appId or a deploymentId, not both";
        if (app && (!json_is_string(app) || !app_id_is_valid(json_string_value(app))))
                return "\"appId\" must be an app id";
        if (id) {
                if (json_get_uint(id, 1, &v) < 0)
                        return "\"deploymentId\" must be an integer >= 1";
                m->deployment_id = (int64_t) v;
        }
        m->app = json_string_value(app);
        return NULL;
}

void ws_message_parse(const char *text, size_t size, WsMessage *ret) {
        WsMessage m = {};
        const char *type;

        m.json = json_loadb(text, size, JSON_REJECT_DUPLICATES, NULL);
        type = json_string_value(json_object_get(m.json, "type"));
        if (!m.json)
                m.type = WS_MESSAGE_NOT_JSON;
        else if (!json_is_object(m.json) || !type)
                m.type = WS_MESSAGE_NOT_TYPED;
        else if (streq(type, "auth")) {
                m.type = WS_MESSAGE_AUTH;
                m.error = parse_auth(m.json, &m);
        } else if (streq(type, "subscribe") || streq(type, "resume")) {
                m.type = streq(type, "resume") ? WS_MESSAGE_RESUME : WS_MESSAGE_SUBSCRIBE;
                m.error = parse_subscribe(m.json, m.type == WS_MESSAGE_RESUME, &m);
        } else
                m.type = WS_MESSAGE_UNKNOWN;
        *ret = m;
}

void ws_message_done(WsMessage *m) {
        json_decref(m->json);
        *m = (WsMessage) {};
}
