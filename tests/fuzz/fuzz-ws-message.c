/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A text message of a /ws client (before and after authentication). */
#include "api-ws-internal.h"
#include "fuzz.h"
#include "infraspec.h"
#include "utf8.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        fuzz_quiet();
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(ws_message_done) WsMessage m = {};

        if (size > 64 * 1024)
                return 0;
        /* http-ws.c hands over complete messages, NUL-terminated. */
        _cleanup_free_ char *text = malloc(size + 1);
        FUZZ_CHECK(text);
        memcpy(text, data, size);
        text[size] = 0;

        ws_message_parse(text, size, &m);
        switch (m.type) {
        case WS_MESSAGE_NOT_JSON:
                FUZZ_CHECK(!m.json);
                break;
        case WS_MESSAGE_NOT_TYPED:
        case WS_MESSAGE_UNKNOWN:
                FUZZ_CHECK(m.json && !m.error);
                break;
        case WS_MESSAGE_AUTH:
                FUZZ_CHECK(json_is_object(m.json));
                if (!m.error)
                        FUZZ_CHECK(m.token && strlen(m.token) <= m.token_size);
                break;
        case WS_MESSAGE_SUBSCRIBE:
        case WS_MESSAGE_RESUME:
                FUZZ_CHECK(json_is_object(m.json));
                if (m.error) {
                        FUZZ_CHECK(utf8_is_valid(m.error));
                        break;
                }
                FUZZ_CHECK(!(m.app && m.deployment_id));
                FUZZ_CHECK(!m.app || app_id_is_valid(m.app));
                FUZZ_CHECK(m.deployment_id >= 0 && m.since <= (uint64_t) INT64_MAX);
                if (m.type == WS_MESSAGE_RESUME)
                        FUZZ_CHECK(m.has_since && !m.app && !m.deployment_id);
                break;
        default:
                FUZZ_CHECK(!"unknown message type");
        }
        return 0;
}
