/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A response that is not JSON (the dashboard's files), written from within
 * the request handler; http-request.c's writeable callback sends the body. */
#include "http-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static bool header_value_ok(const char *v) {
        return v && !strpbrk(v, "\r\n");
}

static int http_write_raw_headers(struct lws *wsi, int status, const char *content_type,
                                  const char *const *headers, size_t size) {
        uint8_t buf[LWS_PRE + 4096], *start = buf + LWS_PRE, *p = start, *end = buf + sizeof(buf) - 1;

        if (status == 304) {
                if (lws_add_http_header_status(wsi, (unsigned) status, &p, end))
                        return -ENOBUFS;
        } else if (lws_add_http_common_headers(wsi, (unsigned) status, content_type, (lws_filepos_t) size,
                                               &p, end))
                return -ENOBUFS;

        if (lws_add_http_header_by_name(wsi, (const uint8_t *) "x-content-type-options:",
                                        (const uint8_t *) "nosniff", 7, &p, end))
                return -ENOBUFS;
        for (size_t i = 0; headers && headers[i]; i += 2) {
                if (!headers[i + 1] || !header_value_ok(headers[i + 1]))
                        return -EINVAL;
                if (lws_add_http_header_by_name(wsi, (const uint8_t *) headers[i],
                                                (const uint8_t *) headers[i + 1],
                                                (int) strlen(headers[i + 1]), &p, end))
                        return -ENOBUFS;
        }

        if (lws_finalize_write_http_header(wsi, start, &p, end))
                return -EIO;
        return 0;
}

int http_request_respond_raw(const HttpRequest *req, int status, const char *content_type,
                             const char *const *headers, const void *body, size_t size) {
        HttpConn *c = req ? req->conn : NULL;
        int r;

        if (!c || !c->in_handler || c->raw_sent || c->responder || c->ws || !content_type ||
            !header_value_ok(content_type) || status < 200 || status > 599 || (size > 0 && !body))
                return -EINVAL;

        c->raw_sent = true;
        c->raw_failed = true; /* until the headers are out */

        r = http_write_raw_headers(c->wsi, status, content_type, headers, status == 304 ? 0 : size);
        if (r < 0)
                return r;

        if (!c->head && status != 304 && size > 0) {
                c->resp = malloc(LWS_PRE + size);
                if (!c->resp)
                        return -ENOMEM;
                memcpy(c->resp + LWS_PRE, body, size);
                c->resp_size = size;
                c->resp_sent = 0;
                c->resp_pending = true;
                lws_callback_on_writable(c->wsi);
        }
        c->raw_failed = false;
        return 0;
}
