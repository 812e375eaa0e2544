/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* HTTP transactions on an lws connection: request line, headers and body in,
 * one JSON response out. */
#include "http-internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>

/* The answer to a pipelined request (see http_conn_on_http()). */
#define HTTP_PIPELINED_ERROR                                                           \
        "{\"error\":\"HTTP pipelining is not supported: send a request after the "     \
        "answer to the previous one\",\"code\":\"pipelining_unsupported\"}"

/* Response bodies go out in pieces of this size, one per writeable callback. */
#define HTTP_WRITE_CHUNK (16U * 1024U)
/* A request body buffer starts at this size (or the body's, if smaller) and
 * doubles as bytes arrive: what is charged follows what was sent. */
#define HTTP_BODY_CHUNK_MIN (4U * 1024U)
/* After a 408 for a slow body, lws gets this long to send it. */
#define HTTP_BODY_TIMEOUT_KILL_SEC 5

static const char *const method_names[] = {
        [LWSHUMETH_GET] = "GET",
        [LWSHUMETH_POST] = "POST",
        [LWSHUMETH_OPTIONS] = "OPTIONS",
        [LWSHUMETH_PUT] = "PUT",
        [LWSHUMETH_PATCH] = "PATCH",
        [LWSHUMETH_DELETE] = "DELETE",
        [LWSHUMETH_CONNECT] = "CONNECT",
        [LWSHUMETH_HEAD] = "HEAD",
        [LWSHUMETH_COLON_PATH] = "GET", /* h2 only; not reachable over h1 */
};

static const struct {
        int status;
        const char *reason;
        const char *code;
} status_table[] = {
        { 400, "Bad Request", "bad_request" },
        { 401, "Unauthorized", "unauthorized" },
        { 403, "Forbidden", "forbidden" },
        { 404, "Not Found", "not_found" },
        { 405, "Method Not Allowed", "method_not_allowed" },
        { 406, "Not Acceptable", "not_acceptable" },
        { 408, "Request Timeout", "request_timeout" },
        { 409, "Conflict", "conflict" },
        { 410, "Gone", "gone" },
        { 411, "Length Required", "length_required" },
        { 412, "Precondition Failed", "precondition_failed" },
        { 413, "Payload Too Large", "payload_too_large" },
        { 414, "URI Too Long", "uri_too_long" },
        { 415, "Unsupported Media Type", "unsupported_media_type" },
        { 422, "Unprocessable Entity", "unprocessable_entity" },
        { 423, "Locked", "locked" },
        { 426, "Upgrade Required", "upgrade_required" },
        { 429, "Too Many Requests", "too_many_requests" },
        { 431, "Request Header Fields Too Large", "request_header_fields_too_large" },
        { 500, "Internal Server Error", "internal_server_error" },
        { 501, "Not Implemented", "not_implemented" },
        { 502, "Bad Gateway", "bad_gateway" },
        { 503, "Service Unavailable", "service_unavailable" },
        { 504, "Gateway Timeout", "gateway_timeout" },
        { 505, "HTTP Version Not Supported", "http_version_not_supported" },
};

const char *http_status_reason(int status) {
        for (size_t i = 0; i < ELEMENTSOF(status_table); i++)
                if (status_table[i].status == status)
                        return status_table[i].reason;
        return status >= 500 ? "Server Error" : "Client Error";
}

char *http_error_body(int status) {
        const char *reason = status >= 500 ? "Server Error" : "Client Error";
        const char *code = status >= 500 ? "server_error" : "client_error";
        json_t *j;
        char *text;

        for (size_t i = 0; i < ELEMENTSOF(status_table); i++)
                if (status_table[i].status == status) {
                        reason = status_table[i].reason;
                        code = status_table[i].code;
                        break;
                }

        j = json_pack("{s:s, s:s}", "error", reason, "code", code);
        if (!j)
                return NULL;
        text = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        return text;
}

static json_t *json_decref_safe(json_t *j) {
        json_decref(j);
        return NULL;
}

/* RFC 3986 pchar minus '%', plus '/'. */
static bool char_is_path_safe(unsigned char ch) {
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
                return true;
        return ch != 0 && strchr("-._~!$&'()*+,;=:@/", ch);
}

/* Inside one query argument: like a path, but '&', '=' and '+' must stay
 * encoded to keep their value, and '?' is fine. */
static bool char_is_query_safe(unsigned char ch) {
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
                return true;
        return ch != 0 && strchr("-._~!$'()*,;:@/?", ch);
}

static char *percent_encode(char *out, const char *in, size_t size, bool (*safe)(unsigned char)) {
        static const char hex[] = "0123456789ABCDEF";

        for (size_t i = 0; i < size; i++) {
                unsigned char ch = (unsigned char) in[i];

                if (safe(ch))
                        *out++ = (char) ch;
                else {
                        *out++ = '%';
                        *out++ = hex[ch >> 4];
                        *out++ = hex[ch & 15];
                }
        }
        return out;
}

static char *http_encode_path(const char *uri, size_t size) {
        char *ret, *e;

        ret = malloc(size * 3 + 1);
        if (!ret)
                return NULL;
        e = percent_encode(ret, uri, size, char_is_path_safe);
        *e = 0;
        return ret;
}

/* lws splits the query at '&' (and ';') into fragments it has decoded;
 * encode each again and join them with '&'. */
static int http_encode_query(struct lws *wsi, char **ret) {
        _cleanup_free_ char *frag = NULL, *q = NULL;
        int total;
        char *e;

        total = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_URI_ARGS);
        if (total <= 0) {
                *ret = NULL;
                return 0;
        }

        frag = malloc((size_t) total + 1);
        q = malloc((size_t) total * 3 + 1);
        if (!frag || !q)
                return -ENOMEM;

        e = q;
        for (int i = 0;; i++) {
                const char *eq;
                int n;

                n = lws_hdr_copy_fragment(wsi, frag, total + 1, WSI_TOKEN_HTTP_URI_ARGS, i);
                if (n < 0)
                        break;
                if (i > 0)
                        *e++ = '&';

                eq = memchr(frag, '=', (size_t) n);
                if (eq) {
                        e = percent_encode(e, frag, (size_t) (eq - frag), char_is_query_safe);
                        *e++ = '=';
                        e = percent_encode(e, eq + 1, (size_t) (n - (eq - frag) - 1), char_is_query_safe);
                } else
                        e = percent_encode(e, frag, (size_t) n, char_is_query_safe);
        }
        *e = 0;

        *ret = TAKE_PTR(q);
        return 0;
}

static char *http_hdr_dup(struct lws *wsi, enum lws_token_indexes token) {
        int n = lws_hdr_total_length(wsi, token);
        char *v;

        if (n <= 0)
                return NULL;
        v = malloc((size_t) n + 1);
        if (!v)
                return NULL;
        if (lws_hdr_copy(wsi, v, n + 1, token) < 0)
                return mfree(v);
        return v;
}

/* What lws kept of the request head: every known header (name + value) and
 * the request target. lws 4.1.6 has no way to enumerate the unknown ("custom")
 * headers; those only count against lws' own max_http_header_data. */
static size_t http_header_bytes(struct lws *wsi) {
        size_t total = 0;

        for (int i = 0; i < (int) WSI_TOKEN_COUNT; i++) {
                int n = lws_hdr_total_length(wsi, (enum lws_token_indexes) i);
                const unsigned char *name;

                if (n <= 0)
                        continue;
                name = lws_token_to_string((enum lws_token_indexes) i);
                total += (size_t) n + (name ? strlen((const char *) name) : 0) + 3;
        }
        return total;
}

static int parse_content_length(const char *s, size_t *ret) {
        size_t v = 0;

        if (!s || !*s)
                return -EINVAL;
        for (; *s; s++) {
                if (*s < '0' || *s > '9')
                        return -EINVAL;
                if (v > (SIZE_MAX - 9) / 10)
                        return -ERANGE;
                v = v * 10 + (size_t) (*s - '0');
        }
        *ret = v;
        return 0;
}

static void http_conn_stop_hup_watch(HttpConn *c) {
        c->hup_watch = sd_event_source_disable_unref(c->hup_watch);
        c->hup_fd = safe_close(c->hup_fd);
}

void http_conn_detach_responder(HttpConn *c) {
        HttpResponder *r = c->responder;

        http_conn_stop_hup_watch(c);
        c->responder = NULL;
        c->deferred_ready = false;
        c->deferred_body = json_decref_safe(c->deferred_body);
        if (!r)
                return;
        r->conn = NULL;
        /* The owner still holds r; the callback may complete (free) it. */
        if (r->gone)
                r->gone(r, r->gone_userdata);
}

void http_conn_reset_request(HttpConn *c) {
        http_conn_detach_responder(c);
        c->method = NULL;
        c->path = mfree(c->path);
        c->query = mfree(c->query);
        c->authorization = mfree(c->authorization);
        c->content_type = mfree(c->content_type);
        c->body = mfree(c->body);
        http_peer_release_body(c->peer, c->server, c->body_allocated);
        c->body_size = c->body_expected = c->body_allocated = 0;
        c->body_pending = false;
        c->body_deadline = sd_event_source_disable_unref(c->body_deadline);
        c->body_timed_out = false;
        c->head = false;
        c->resp = mfree(c->resp);
        c->resp_size = c->resp_sent = 0;
        c->resp_pending = false;
        c->resp_close = false;
        c->resp_direct = false;
        c->close_after = false;
}

/* Builds and writes the status line and headers. body_size is sent as
 * Content-Length unless the status forbids a body. */
/* Builds the status line and headers at *p, up to end; *p moves past them. */
static int http_build_headers(struct lws *wsi, int status, size_t body_size, bool close,
                              uint8_t **pp, uint8_t *end) {
        uint8_t *p = *pp;

        if (status == 204 || status == 304) {
                if (lws_add_http_header_status(wsi, (unsigned) status, &p, end) ||
                    lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE,
                                                 (const uint8_t *) "application/json", 16, &p, end))
                        return -ENOBUFS;
        } else if (lws_add_http_common_headers(wsi, (unsigned) status, "application/json",
                                               (lws_filepos_t) body_size, &p, end))
                return -ENOBUFS;

        if (lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
                                         (const uint8_t *) "no-store", 8, &p, end) ||
            lws_add_http_header_by_name(wsi, (const uint8_t *) "x-content-type-options:",
                                        (const uint8_t *) "nosniff", 7, &p, end))
                return -ENOBUFS;
        if (close && lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION,
                                                  (const uint8_t *) "close", 5, &p, end))
                return -ENOBUFS;

        if (lws_finalize_http_header(wsi, &p, end))
                return -ENOBUFS;
        *pp = p;
        return 0;
}

static int http_write_headers(struct lws *wsi, int status, size_t body_size, bool close) {
        uint8_t buf[LWS_PRE + 1024], *start = buf + LWS_PRE, *p = start, *end = buf + sizeof(buf) - 1;
        int r;

        r = http_build_headers(wsi, status, body_size, close, &p, end);
        if (r < 0)
                return r;
        if (lws_write(wsi, start, (size_t) (p - start), LWS_WRITE_HTTP_HEADERS) != (int) (p - start))
                return -EIO;
        return 0;
}

static int http_write_now(struct lws *wsi, int status, const char *body, bool close) {
        _cleanup_free_ char *buf = NULL, *text = NULL;
        size_t len;

        if (!body) {
                text = http_error_body(status);
                if (!text)
                        return -ENOMEM;
                body = text;
        }
        len = strlen(body);

        if (http_write_headers(wsi, status, len, close) < 0)
                return -EIO;

        buf = malloc(LWS_PRE + len);
        if (!buf)
                return -ENOMEM;
        memcpy(buf + LWS_PRE, body, len);
        if (lws_write(wsi, (uint8_t *) buf + LWS_PRE, len, LWS_WRITE_HTTP_FINAL) != (int) len)
                return -EIO;
        return 0;
}

/* Writes a small complete response at once, for callbacks that must answer
 * before returning (HTTP_CONFIRM_UPGRADE). */
int http_write_response_now(struct lws *wsi, int status, const char *body) {
        return http_write_now(wsi, status, body, false);
}

/* Whether lws holds bytes the client sent after the request just completed
 * with lws_http_transaction_completed(). lws 4.1.6 has no call for that, but
 * that function keeps the connection's header table only then (it drops it
 * otherwise), and lws_hdr_custom_copy() clears its buffer only when a header
 * table is attached. */
static bool http_lws_has_pipelined_input(struct lws *wsi) {
        char probe[2] = "x";

        (void) lws_hdr_custom_copy(wsi, probe, (int) sizeof(probe), "x-norn-probe:", 13);
        return probe[0] == 0;
}

/* The transaction is over: close, or wait for the next request. */
int http_conn_finish(HttpConn *c) {
        bool close = c->resp_close;

        http_conn_reset_request(c);
        if (close)
                return -1;
        if (lws_http_transaction_completed(c->wsi))
                return -1;
        c->pipelined = http_lws_has_pipelined_input(c->wsi);
        return 0;
}

/* The status and body text of an answer from a handler's status and JSON
 * body (taken): an invalid status or an unserializable body is a 500, an
 * error without a body gets the standard one, 204 and 304 have none.
 * -ENOMEM when there is nothing sensible left to say. */
static int answer_text(int *status, json_t *body, char **ret_text) {
        _cleanup_free_ char *text = NULL;

        if (*status < 200 || *status > 599) {
                log_debug("HTTP handler returned invalid status %i, sending 500.", *status);
                *status = 500;
                json_decref(TAKE_PTR(body));
        }
        if (body) {
                text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
                json_decref(body);
                if (!text) {
                        log_debug("Failed to serialize the JSON response body, sending 500.");
                        *status = 500;
                }
        }
        if (*status == 204 || *status == 304) {
                *ret_text = NULL;
                return 0;
        }
        if (!text)
                text = *status >= 400 ? http_error_body(*status) : strdup("{}");
        if (!text)
                return -ENOMEM;
        *ret_text = TAKE_PTR(text);
        return 0;
}

/* Takes ownership of body. Returns what the lws callback should return. */
static int http_conn_respond(HttpConn *c, int status, json_t *body, bool close) {
        _cleanup_free_ char *text = NULL;
        size_t len = 0;

        if (answer_text(&status, body, &text) < 0)
                return -1; /* OOM: nothing sensible left to say */
        len = text ? strlen(text) : 0;

        close = close || c->close_after;
        c->resp_close = close;
        if (http_write_headers(c->wsi, status, len, close) < 0)
                return -1;

        if (c->head || len == 0)
                return http_conn_finish(c);

        c->resp = malloc(LWS_PRE + len);
        if (!c->resp)
                return -1;
        memcpy(c->resp + LWS_PRE, text, len);
        c->resp_size = len;
        c->resp_sent = 0;
        c->resp_pending = true;
        lws_callback_on_writable(c->wsi);
        return 0;
}

static int http_conn_fail(HttpConn *c, int status) {
        /* The rest of the request (body or garbage) is not read: the
         * connection cannot be reused. */
        c->body_pending = false;
        return http_conn_respond(c, status, NULL, /* close= */ true);
}

/* Loopback (127.0.0.0/8, ::1, IPv4-mapped 127/8) or AF_UNIX. */
static bool http_peer_is_local(struct lws *wsi) {
        union {
                struct sockaddr sa;
                struct sockaddr_in in;
                struct sockaddr_in6 in6;
                struct sockaddr_storage ss;
        } sa = {};
        socklen_t salen = sizeof(sa);
        int fd = lws_get_socket_fd(wsi);

        if (fd < 0 || getpeername(fd, &sa.sa, &salen) < 0)
                return false;
        switch (sa.sa.sa_family) {
        case AF_UNIX:
                return true;
        case AF_INET:
                return (ntohl(sa.in.sin_addr.s_addr) >> 24) == 127;
        case AF_INET6:
                if (IN6_IS_ADDR_LOOPBACK(&sa.in6.sin6_addr))
                        return true;
                return IN6_IS_ADDR_V4MAPPED(&sa.in6.sin6_addr) && sa.in6.sin6_addr.s6_addr[12] == 127;
        default:
                return false;
        }
}

int http_conn_fill_request(HttpConn *c, HttpRequest *ret) {
        struct lws *wsi = c->wsi;
        char *uri = NULL;
        int m, len = 0, r;

        m = lws_http_get_uri_and_method(wsi, &uri, &len);
        if (m < 0 || m >= (int) ELEMENTSOF(method_names) || !uri || len < 0)
                return -EBADMSG;

        c->method = method_names[m];
        c->head = m == LWSHUMETH_HEAD;
        c->path = http_encode_path(uri, (size_t) len);
        if (!c->path)
                return -ENOMEM;
        r = http_encode_query(wsi, &c->query);
        if (r < 0)
                return r;
        c->authorization = http_hdr_dup(wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
        c->content_type = http_hdr_dup(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE);
        c->peer_local = http_peer_is_local(wsi);

        *ret = (HttpRequest) {
                .method = c->method,
                .path = c->path,
                .query = c->query,
                .authorization = c->authorization,
                .content_type = c->content_type,
                .body = c->body,
                .body_size = c->body_size,
                .peer_local = c->peer_local,
                .conn = c,
        };
        return 0;
}

/* While an answer is deferred lws 4.1.6 does not read the connection: a
 * client that hangs up would leave the socket readable forever (a busy loop)
 * and unnoticed. So reading stops (no POLLIN for lws) and sd-event watches a
 * dup of the socket: when the connection is reset or fails (EPOLLHUP,
 * EPOLLERR), the responder is detached at once and lws told to drop the
 * connection. The dup keeps the fd number from being reused under the watch.
 *
 * The end of the client's data (EPOLLRDHUP) is not the client leaving: after
 * a complete request, shutdown(SHUT_WR) is how "nc -N", some proxies and
 * HTTP/1.0-style clients say they are done sending, and they still read the
 * answer. A FIN cannot be told from a close() without sending, so the answer
 * is sent; writing it to a client that really left fails and cleans up, and
 * HTTP_DEFER_TIMEOUT_SEC bounds the wait. */
static void http_conn_flush_direct(HttpConn *c);

static int http_conn_on_hup(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        HttpConn *c = userdata;

        if (c->resp_direct && !(revents & (EPOLLHUP | EPOLLERR))) {
                http_conn_flush_direct(c);
                return 0;
        }
        if (!(revents & (EPOLLHUP | EPOLLERR))) {
                /* Half-closed: stop watching for that (it stays set), keep
                 * watching for a reset. */
                log_debug("HTTP client finished sending; its deferred answer is still sent.");
                if (sd_event_source_set_io_events(es, 0) < 0)
                        (void) sd_event_source_set_enabled(es, SD_EVENT_OFF);
                return 0;
        }

        log_debug("HTTP client left before its deferred answer.");
        http_conn_detach_responder(c);
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        uv_embed_kick(c->server->uv);
        return 0;
}

static void http_conn_kill(HttpConn *c) {
        http_conn_detach_responder(c);
        c->resp_direct = c->resp_pending = false;
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        uv_embed_kick(c->server->uv);
}

/* The deferred answer is out: the transaction ends as after any other, and
 * lws may read again. */
static void http_conn_direct_done(HttpConn *c) {
        bool close = c->resp_close;

        if (close)
                /* The client sees the end at once, whenever lws gets to
                 * closing its side. */
                (void) shutdown(c->hup_fd, SHUT_WR);
        http_conn_reset_request(c); /* also ends the watch on hup_fd */
        if (close || lws_http_transaction_completed(c->wsi)) {
                http_conn_kill(c);
                return;
        }
        c->pipelined = http_lws_has_pipelined_input(c->wsi);
        lws_rx_flow_control(c->wsi, 1);
        uv_embed_kick(c->server->uv);
}

static void http_conn_flush_direct(HttpConn *c) {
        while (c->resp_sent < c->resp_size) {
                ssize_t n = send(c->hup_fd, c->resp + c->resp_sent, c->resp_size - c->resp_sent,
                                 MSG_NOSIGNAL | MSG_DONTWAIT);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN) {
                        if (sd_event_source_set_io_events(c->hup_watch, EPOLLOUT) < 0)
                                break;
                        return; /* on to http_conn_on_hup() */
                }
                if (n <= 0) {
                        log_debug("Failed to send a deferred HTTP answer, closing: %s",
                                  n < 0 ? strerror(errno) : "nothing written");
                        http_conn_kill(c);
                        return;
                }
                c->resp_sent += (size_t) n;
        }
        if (c->resp_sent < c->resp_size) {
                http_conn_kill(c);
                return;
        }
        http_conn_direct_done(c);
}

/* Sends a deferred answer on the socket ourselves. While an answer is
 * deferred, lws may not read the connection (rx flow control); and lws 4.1.6
 * writes nothing on an HTTP/1 connection whose reading is held. Yet letting
 * it read again before the answer is out goes wrong when the client
 * pipelined: lws parses what it buffered against the head of the pending
 * request, dispatches that request again or, for one with a body, calls
 * LWS_CALLBACK_HTTP_BODY_COMPLETION without end (nornd frozen). So the answer
 * goes out here, with sd-event watching hup_fd for room, and lws reads on
 * only after the transaction is completed, from a fresh head. */
static void http_conn_send_direct(HttpConn *c, int status, json_t *body) {
        _cleanup_free_ char *text = NULL;
        uint8_t head[1024], *p = head;
        size_t len;

        if (c->hup_fd < 0 || !c->hup_watch) {
                json_decref(body);
                log_debug("No watch on the HTTP connection to send a deferred answer on, closing.");
                http_conn_kill(c);
                return;
        }

        if (answer_text(&status, body, &text) < 0) {
                http_conn_kill(c);
                return;
        }
        len = text ? strlen(text) : 0;

        if (http_build_headers(c->wsi, status, len, c->close_after, &p, head + sizeof(head) - 1) < 0) {
                http_conn_kill(c);
                return;
        }
        if (c->head)
                len = 0;

        c->resp = malloc((size_t) (p - head) + len);
        if (!c->resp) {
                http_conn_kill(c);
                return;
        }
        memcpy(c->resp, head, (size_t) (p - head));
        if (len > 0)
                memcpy(c->resp + (p - head), text, len);
        c->resp_size = (size_t) (p - head) + len;
        c->resp_sent = 0;
        c->resp_pending = c->resp_direct = true;
        c->resp_close = c->close_after;
        http_conn_flush_direct(c);
}

static void http_conn_watch_hup(HttpConn *c) {
        int fd = lws_get_socket_fd(c->wsi);

        lws_rx_flow_control(c->wsi, 0);
        if (fd < 0)
                return;
        c->hup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (c->hup_fd < 0) {
                c->hup_fd = -EBADF;
                return; /* then only the timeout ends a deserted request */
        }
        if (sd_event_add_io(c->server->event, &c->hup_watch, c->hup_fd, EPOLLRDHUP, http_conn_on_hup, c) < 0)
                c->hup_fd = safe_close(c->hup_fd);
}

static int http_conn_dispatch(HttpConn *c) {
        HttpServer *s = c->server;
        json_t *body = NULL;
        HttpRequest req = {
                .method = c->method,
                .path = c->path,
                .query = c->query,
                .authorization = c->authorization,
                .content_type = c->content_type,
                .body = c->body,
                .body_size = c->body_size,
                .peer_local = c->peer_local,
                .conn = c,
        };
        int status;

        c->in_handler = true;
        if (s->cb.handle_request)
                status = s->cb.handle_request(&req, &body, s->userdata);
        else
                status = 404;
        c->in_handler = false;

        if (c->raw_sent) {
                /* Headers are out and the body queued (http-raw.c). */
                json_decref(body);
                c->raw_sent = false;
                if (c->raw_failed)
                        return -1;
                return c->resp_pending ? 0 : http_conn_finish(c);
        }

        if (status == HTTP_DEFERRED && (c->responder || c->deferred_ready)) {
                json_decref(body);
                if (c->deferred_ready) {
                        /* Completed from within the handler already. */
                        status = c->deferred_status;
                        body = TAKE_PTR(c->deferred_body);
                        c->deferred_ready = false;
                        return http_conn_respond(c, status, body, false);
                }
                /* lws' own timers are for waiting on the peer; this one
                 * bounds waiting on ourselves. */
                lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, (int) HTTP_DEFER_TIMEOUT_SEC);
                http_conn_watch_hup(c);
                return 0;
        }
        if (c->responder) {
                log_debug("HTTP handler deferred the request but answered at once.");
                http_conn_detach_responder(c);
        }
        if (status == HTTP_DEFERRED) {
                log_debug("HTTP handler returned HTTP_DEFERRED without deferring, sending 500.");
                json_decref(TAKE_PTR(body));
                status = 500;
        }

        return http_conn_respond(c, status, body, false);
}

HttpResponder *http_request_defer(const HttpRequest *req) {
        HttpConn *c = req ? req->conn : NULL;
        HttpResponder *r;

        if (!c || !c->in_handler || c->responder || c->deferred_ready || c->ws)
                return NULL;
        r = calloc(1, sizeof(*r));
        if (!r)
                return NULL;
        r->conn = c;
        c->responder = r;
        return r;
}

void http_responder_complete(HttpResponder *r, int status, json_t *body) {
        HttpConn *c;

        if (!r) {
                json_decref(body);
                return;
        }
        c = r->conn;
        free(r);
        if (!c) {
                json_decref(body);
                return;
        }

        c->responder = NULL;
        c->deferred_status = status;
        json_decref(c->deferred_body);
        c->deferred_body = body;
        c->deferred_ready = true;
        if (c->in_handler)
                return; /* http_conn_dispatch() sends it */

        /* Bounds sending it, too. */
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, (int) HTTP_DEFER_TIMEOUT_SEC);
        c->deferred_ready = false;
        http_conn_send_direct(c, status, TAKE_PTR(c->deferred_body));
}

bool http_responder_connected(const HttpResponder *r) {
        return r && r->conn;
}

void http_responder_set_gone_callback(HttpResponder *r, HttpResponderGone cb, void *userdata) {
        if (!r)
                return;
        r->gone = cb;
        r->gone_userdata = userdata;
}

/* A header lws knows by name ("host:", "origin:"), or -1. */
static int http_known_token(const char *key, size_t k) {
        for (int i = 0; i < (int) WSI_TOKEN_COUNT; i++) {
                const char *t = (const char *) lws_token_to_string((enum lws_token_indexes) i);

                if (t && strlen(t) == k && strncasecmp(t, key, k) == 0)
                        return i;
        }
        return -1;
}

int http_request_get_header(const HttpRequest *req, const char *name, char **ret) {
        _cleanup_free_ char *key = NULL, *v = NULL;
        HttpConn *c = req ? req->conn : NULL;
        int n, k, token;

        if (!c || !c->wsi || !name || !ret)
                return -EINVAL;
        if (asprintf(&key, "%s:", name) < 0)
                return -ENOMEM;
        k = (int) strlen(key);

        /* lws keeps the headers it knows apart from the custom ones; of
         * those, an empty one cannot be told from an absent one. */
        token = http_known_token(key, (size_t) k);
        n = token >= 0 ? lws_hdr_total_length(c->wsi, (enum lws_token_indexes) token)
                       : lws_hdr_custom_length(c->wsi, key, k);
        if (n < 0 || (token >= 0 && n == 0))
                return -ENOENT;
        if ((size_t) n > HTTP_MAX_HEADER_SIZE)
                return -E2BIG;
        v = malloc((size_t) n + 1);
        if (!v)
                return -ENOMEM;
        if (token >= 0 ? lws_hdr_copy(c->wsi, v, n + 1, (enum lws_token_indexes) token) < 0
                       : lws_hdr_custom_copy(c->wsi, v, n + 1, key, k) < 0)
                return -ENOENT;
        v[n] = 0;
        *ret = TAKE_PTR(v);
        return 0;
}

/* A body trickled in to hold a connection and its buffer: cut off at the
 * deadline, whatever the rate so far. */
static int http_conn_on_body_deadline(sd_event_source *es, uint64_t usec, void *userdata) {
        HttpConn *c = userdata;

        c->body_deadline = sd_event_source_disable_unref(c->body_deadline);
        if (!c->body_pending)
                return 0;
        log_debug("HTTP request body not complete in time (%zu of %zu bytes), answering 408.",
                  c->body_size, c->body_expected);
        c->body_pending = false; /* the rest is not read: the connection closes */
        c->body_timed_out = true;
        lws_callback_on_writable(c->wsi);
        /* Should lws not get the 408 out, the connection goes anyway. */
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, HTTP_BODY_TIMEOUT_KILL_SEC);
        uv_embed_kick(c->server->uv);
        return 0;
}

static int http_conn_arm_body_deadline(HttpConn *c, uint64_t started_usec) {
        HttpServer *s = c->server;
        uint64_t now;
        int r;

        r = sd_event_now(s->event, CLOCK_MONOTONIC, &now);
        if (r < 0)
                return r;
        return sd_event_add_time(s->event, &c->body_deadline, CLOCK_MONOTONIC,
                                 (started_usec ?: now) + s->body_timeout_usec, 100 * 1000,
                                 http_conn_on_body_deadline, c);
}

int http_conn_on_http(HttpConn *c) {
        _cleanup_free_ char *cl = NULL, *te = NULL;
        uint64_t started = c->first_request_usec;
        bool pipelined = c->pipelined;
        HttpRequest req;
        size_t length = 0;
        int r;

        if (c->resp_pending || c->responder || c->deferred_ready) {
                /* lws parsing on while an answer is due (which must not
                 * happen, see http_conn_send_direct()): that answer would be
                 * lost or sent out of order. Drop the connection instead. */
                log_debug("HTTP request head while the previous answer is pending, closing.");
                return -1;
        }

        http_conn_reset_request(c);
        c->first_request_usec = 0; /* later requests count from their head */
        c->pipelined = false;

        if (pipelined) {
                /* The client sent this before it had read the previous answer
                 * (lws had buffered it). lws 4.1.6 cannot serve that safely:
                 * holding reading for a deferred answer with input buffered
                 * spins (it asks for POLLOUT, then ignores it), a pipelined
                 * POST, PUT or PATCH is read against the wrong bytes, and
                 * both froze nornd. So it gets a clear error at once, and the
                 * connection closes before lws goes on. */
                log_debug("Pipelined HTTP request, answering 400 and closing.");
                (void) http_write_now(c->wsi, 400, HTTP_PIPELINED_ERROR, /* close= */ true);
                return -1;
        }

        r = http_conn_fill_request(c, &req);
        if (r == -ENOMEM)
                return -1;
        if (r < 0)
                return http_conn_fail(c, 400);

        if (http_header_bytes(c->wsi) > HTTP_MAX_HEADER_SIZE)
                return http_conn_fail(c, 431);

        /* A WebSocket upgrade of /ws never gets here (see http-ws.c). */
        if (streq(c->path, "/ws"))
                return http_conn_fail(c, 426);

        te = http_hdr_dup(c->wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING);
        cl = http_hdr_dup(c->wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH);
        if (te) {
                /* lws 4.1.6 does not decode chunked request bodies (it would
                 * parse them as the next request): ask for a length. */
                if (cl)
                        return http_conn_fail(c, 400);
                return http_conn_fail(c, 411);
        }
        if (cl) {
                r = parse_content_length(cl, &length);
                if (r == -ERANGE)
                        return http_conn_fail(c, 413);
                if (r < 0)
                        return http_conn_fail(c, 400);
                if (length > HTTP_MAX_BODY_SIZE)
                        return http_conn_fail(c, 413);
        }

        /* lws 4.1.6 takes a POST, PUT or PATCH without Content-Length to
         * have a body up to the end of the connection (or 100 MiB); for us
         * it has none. Whatever the client sends next would be read as that
         * body: the connection closes after the answer. */
        if (!cl && (streq(c->method, "POST") || streq(c->method, "PUT") || streq(c->method, "PATCH")))
                c->close_after = true;

        if (length > 0 && c->server->cb.check_head) {
                json_t *body = NULL;
                int status;

                status = c->server->cb.check_head(&req, &body, c->server->userdata);
                if (status != 0) {
                        if (status < 0)
                                json_decref(TAKE_PTR(body));
                        return http_conn_respond(c, status < 0 ? 500 : status, body, /* close= */ true);
                }
                json_decref(body);
        }

        if (length > 0) {
                /* Nothing is reserved for what Content-Length announces, which
                 * costs a client nothing: the budget is charged as bytes
                 * arrive (http_conn_on_body()), and the body has a deadline. */
                if (http_conn_arm_body_deadline(c, started) < 0)
                        return -1;
                c->body_expected = length;
                c->body_pending = true;
                return 0; /* LWS_CALLBACK_HTTP_BODY & _COMPLETION follow */
        }

        return http_conn_dispatch(c);
}

int http_conn_on_body(HttpConn *c, const void *data, size_t size) {
        if (!c->body_pending)
                return 0; /* already answered, draining */

        /* lws stops at Content-Length; this is belt and braces. */
        if (size > c->body_expected - c->body_size || c->body_size + size > HTTP_MAX_BODY_SIZE)
                return http_conn_fail(c, 413);

        if (c->body_size + size > c->body_allocated) {
                size_t n = MAX(c->body_size + size,
                               MIN(MAX(c->body_allocated * 2, (size_t) HTTP_BODY_CHUNK_MIN), c->body_expected));
                char *p;
                int r;

                r = http_peer_charge_body(c->peer, c->server, n - c->body_allocated);
                if (r < 0) {
                        log_debug("HTTP request body refused with 503: %s.",
                                  r == -EDQUOT ? "its peer buffers too much already"
                                               : "all request bodies together are at the limit");
                        return http_conn_fail(c, 503);
                }
                p = realloc(c->body, n + 1); /* + the NUL of http_conn_on_body_complete() */
                if (!p) {
                        http_peer_release_body(c->peer, c->server, n - c->body_allocated);
                        return -1;
                }
                c->body = p;
                c->body_allocated = n;
        }

        memcpy(c->body + c->body_size, data, size);
        c->body_size += size;
        return 0;
}

int http_conn_on_body_complete(HttpConn *c) {
        if (!c->body_pending)
                return 0;

        c->body_pending = false;
        c->body_deadline = sd_event_source_disable_unref(c->body_deadline);
        if (!c->body)
                return http_conn_fail(c, 400); /* lws completed a body it never passed on */
        c->body[c->body_size] = 0;
        return http_conn_dispatch(c);
}

int http_conn_on_writeable(HttpConn *c) {
        size_t n;
        bool last;

        if (c->body_timed_out) {
                c->body_timed_out = false;
                return http_conn_fail(c, 408);
        }
        if (c->deferred_ready) {
                int status = c->deferred_status;

                c->deferred_ready = false;
                return http_conn_respond(c, status, TAKE_PTR(c->deferred_body), false);
        }
        if (!c->resp_pending)
                return 0;

        n = MIN(c->resp_size - c->resp_sent, (size_t) HTTP_WRITE_CHUNK);
        last = c->resp_sent + n == c->resp_size;

        /* The LWS_PRE bytes before each piece are already-sent data (or the
         * headroom for the first one): lws may scribble there. */
        if (lws_write(c->wsi, (uint8_t *) c->resp + LWS_PRE + c->resp_sent, n,
                      last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) != (int) n)
                return -1;
        c->resp_sent += n;

        if (!last) {
                lws_callback_on_writable(c->wsi);
                return 0;
        }
        return http_conn_finish(c);
}
