/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The parts of an HTTP API request the routes parse themselves: the query
 * string (percent-decoded, keys checked) and the JSON body. Input: the query
 * string, a newline, the body; the first byte picks the Content-Type. */
#include <jansson.h>

#include "api-internal.h"
#include "fuzz.h"
#include "utf8.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        fuzz_quiet();
        return 0;
}

static void check_error_body(int status, json_t *body) {
        const char *error;

        FUZZ_CHECK(status >= 400 && status < 500);
        error = json_string_value(json_object_get(body, "error"));
        FUZZ_CHECK(error && utf8_is_valid(error));
        FUZZ_CHECK(json_string_value(json_object_get(body, "code")));
        /* Goes out as the response: must serialize. */
        free(({ char *t = json_dumps(body, 0); FUZZ_CHECK(t); t; }));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const char *const content_types[] = {
                "application/json", "application/json; charset=utf-8", "text/plain", NULL,
        };
        static const char *const allowed[] = { "limit", "before", "app", "since", "status", "cursor", NULL };
        _cleanup_free_ char *query = NULL, *body = NULL, *decoded = NULL;
        _cleanup_(api_query_done) ApiQuery q = {};
        const uint8_t *nl;
        json_t *ret_body = NULL, *obj = NULL;
        HttpRequest req = { .method = "POST", .path = "/api/apps/web/deploy" };
        uint64_t u;
        int64_t id;
        int r;

        if (size < 1 || size > 256 * 1024)
                return 0;
        req.content_type = content_types[data[0] % ELEMENTSOF(content_types)];
        data++, size--;

        nl = memchr(data, '\n', size);
        query = fuzz_strndup(data, nl ? (size_t) (nl - data) : size);
        if (nl) {
                body = malloc(size - (size_t) (nl + 1 - data) + 1);
                FUZZ_CHECK(body);
                memcpy(body, nl + 1, size - (size_t) (nl + 1 - data));
                body[size - (size_t) (nl + 1 - data)] = 0;
                req.body = body;
                req.body_size = size - (size_t) (nl + 1 - data);
        }
        req.query = query;

        r = api_query_parse(&req, allowed, &q, &ret_body);
        if (r == 0) {
                FUZZ_CHECK(!ret_body && q.n <= 32);
                for (size_t i = 0; i < q.n; i++) {
                        FUZZ_CHECK(utf8_is_valid(q.keys[i]) && utf8_is_valid(q.values[i]));
                        FUZZ_CHECK(api_query_get(&q, q.keys[i]) == q.values[i]);
                        if (api_parse_uint(q.values[i], 1, 1000, &u) == 0)
                                FUZZ_CHECK(u >= 1 && u <= 1000);
                        if (api_parse_id(q.values[i], &id) == 0)
                                FUZZ_CHECK(id >= 1);
                }
        } else {
                check_error_body(r, ret_body);
                json_decref(TAKE_PTR(ret_body));
        }

        if (api_percent_decode(query, strlen(query), &decoded) == 0)
                FUZZ_CHECK(utf8_is_valid(decoded) && strlen(decoded) <= strlen(query));

        r = api_parse_body_object(&req, (const char *const[]) { "ref", "snapshot", "reason", NULL }, &obj,
                                  &ret_body);
        if (r == 0)
                FUZZ_CHECK(!ret_body && (!obj || json_is_object(obj)));
        else {
                FUZZ_CHECK(!obj);
                check_error_body(r, ret_body);
                json_decref(ret_body);
        }
        json_decref(obj);
        return 0;
}
