/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The HTTP/WebSocket server, end to end: the server runs on sd-event in the
 * main thread, a client thread speaks raw HTTP and WebSocket over loopback
 * sockets and checks the answers byte by byte. Server-side state is checked
 * through a /test/stats route, answered by the handler in the main thread. */
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <systemd/sd-event.h>
#include <time.h>
#include <unistd.h>

#include "http-server.h"
#include "log.h"
#include "tap.h"

/* RFC 6455 section 1.3: the key and the accept value that goes with it. */
#define WS_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define WS_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

static uint16_t port, port2;
static int done_fd = -EBADF;
/* Main-thread state, read by the client only through /test/stats. */
static HttpServer *server;
static sd_event *server_event;
static unsigned ws_closed_count;
static int flood_accepted = -1, flood_error;
static unsigned defer_gone_count, defer_completed_count;

/* ---- main thread: deferred answers ---- */

typedef struct Deferred {
        HttpResponder *responder;
        sd_event_source *timer;
        char *value;
} Deferred;

static Deferred *deferred_free(Deferred *d) {
        if (!d)
                return NULL;
        sd_event_source_disable_unref(d->timer);
        free(d->value);
        free(d);
        return NULL;
}

static int on_deferred_timer(sd_event_source *es, uint64_t usec, void *userdata) {
        Deferred *d = userdata;
        bool connected = http_responder_connected(d->responder);

        http_responder_complete(d->responder, 202, json_pack("{s:b, s:s?}", "deferred", 1, "value", d->value));
        if (connected)
                defer_completed_count++;
        deferred_free(d);
        return 0;
}

static void on_deferred_gone(HttpResponder *r, void *userdata) {
        Deferred *d = userdata;

        defer_gone_count++;
        http_responder_complete(r, 500, NULL); /* just frees r */
        deferred_free(d);
}

/* Answers 202 after delay_ms, from a timer; with watch_gone, a client that
 * leaves first is counted and the answer dropped. */
static int handle_deferred(const HttpRequest *req, unsigned delay_ms, bool watch_gone) {
        Deferred *d = calloc(1, sizeof(*d));

        if (!d)
                return 500;
        (void) http_request_get_header(req, "x-test-value", &d->value);
        d->responder = http_request_defer(req);
        if (!d->responder || (http_request_defer(req) != NULL) ||
            sd_event_add_time_relative(server_event, &d->timer, CLOCK_MONOTONIC, delay_ms * 1000ULL, 0,
                                       on_deferred_timer, d) < 0) {
                http_responder_complete(d->responder, 500, NULL);
                deferred_free(d);
                return 500;
        }
        if (watch_gone)
                http_responder_set_gone_callback(d->responder, on_deferred_gone, d);
        return HTTP_DEFERRED;
}

/* ---- main thread: the server side ---- */

typedef struct WsPeer {
        char *query;
        char *authorization;
} WsPeer;

static int handle_request(const HttpRequest *req, json_t **ret_body, void *userdata) {
        if (streq(req->path, "/api/echo")) {
                if (streq(req->method, "DELETE"))
                        return 405;
                *ret_body = json_pack("{s:s, s:s, s:s?, s:s?, s:s?, s:s?, s:I}",
                                      "method", req->method,
                                      "path", req->path,
                                      "query", req->query,
                                      "authorization", req->authorization,
                                      "content_type", req->content_type,
                                      "body", req->body,
                                      "body_size", (json_int_t) req->body_size);
                return 200;
        }

        if (streq(req->path, "/api/big")) {
                /* Larger than one write: goes out over several writeable callbacks. */
                _cleanup_free_ char *s = malloc(300001);

                if (!s)
                        return 500;
                for (size_t i = 0; i < 300000; i++)
                        s[i] = (char) ('a' + i % 26);
                s[300000] = 0;
                *ret_body = json_pack("{s:s}", "data", s);
                return 200;
        }

        if (streq(req->path, "/api/created"))
                return 201; /* NULL body: {} */

        if (streq(req->path, "/api/deferred"))
                return handle_deferred(req, 50, false);
        if (streq(req->path, "/api/deferred-slow"))
                return handle_deferred(req, 1500, true);
        if (streq(req->path, "/api/deferred-now")) {
                /* Completed from within the handler: goes out at once. */
                HttpResponder *r = http_request_defer(req);

                if (!r)
                        return 500;
                http_responder_complete(r, 201, json_pack("{s:b}", "now", 1));
                return HTTP_DEFERRED;
        }
        if (streq(req->path, "/api/deferred-bogus"))
                return HTTP_DEFERRED; /* without deferring: 500 */

        if (streq(req->path, "/test/stats")) {
                *ret_body = json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:i}",
                                      "ws_clients", (int) http_server_n_ws_clients(server),
                                      "connections", (int) http_server_n_connections(server),
                                      "ws_closed", (int) ws_closed_count,
                                      "flood_accepted", flood_accepted,
                                      "flood_error", flood_error,
                                      "defer_gone", (int) defer_gone_count,
                                      "defer_completed", (int) defer_completed_count);
                return 200;
        }

        return 404; /* NULL body: the server's error JSON */
}

static int ws_connected(HttpWsClient *c, const HttpRequest *req, void *userdata) {
        WsPeer *p;

        if (req->query && strstr(req->query, "deny"))
                return -EACCES;

        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->query = req->query ? strdup(req->query) : NULL;
        p->authorization = req->authorization ? strdup(req->authorization) : NULL;
        http_ws_client_set_userdata(c, p);
        return 0;
}

static void ws_message(HttpWsClient *c, const char *text, size_t size, void *userdata) {
        WsPeer *p = http_ws_client_get_userdata(c);

        if (streq(text, "whoami")) {
                json_t *j = json_pack("{s:s?, s:s?}", "query", p ? p->query : NULL,
                                      "authorization", p ? p->authorization : NULL);
                _cleanup_free_ char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;

                json_decref(j);
                if (s)
                        (void) http_ws_client_send(c, s, strlen(s));
                return;
        }

        if (streq(text, "flood")) {
                /* Nothing is written before this callback returns, so the
                 * per-client bound must refuse part of it. */
                char msg[1024];
                int r = 0, n;

                memset(msg, 'f', sizeof(msg));
                for (n = 0; n < 5000; n++) {
                        r = http_ws_client_send(c, msg, sizeof(msg));
                        if (r < 0)
                                break;
                }
                flood_accepted = n;
                flood_error = r;
                return;
        }

        if (streq(text, "bye")) {
                http_ws_client_close(c);
                return;
        }

        (void) http_ws_client_send(c, text, size);
}

static void ws_closed(HttpWsClient *c, void *userdata) {
        WsPeer *p = http_ws_client_get_userdata(c);

        if (p) {
                free(p->query);
                free(p->authorization);
                free(p);
        }
        ws_closed_count++;
}

static int on_done(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        return sd_event_exit(sd_event_source_get_event(s), 0);
}

static int on_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        printf("# deadline hit: the client thread hangs\n");
        n_failed++;
        return sd_event_exit(sd_event_source_get_event(s), 1);
}

/* ---- client thread: raw sockets ---- */

static uint64_t now_msec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000U + (uint64_t) ts.tv_nsec / 1000000U;
}

static int connect_to(uint16_t p) {
        struct sockaddr_in sa = {
                .sin_family = AF_INET,
                .sin_port = htons(p),
                .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
        };
        struct timeval tv = { .tv_sec = 5 };
        int fd;

        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        (void) setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        (void) setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

static int send_all(int fd, const void *p, size_t n) {
        while (n > 0) {
                ssize_t k = send(fd, p, n, MSG_NOSIGNAL);

                if (k < 0)
                        return -errno;
                p = (const char *) p + k;
                n -= (size_t) k;
        }
        return 0;
}

static int send_str(int fd, const char *s) {
        return send_all(fd, s, strlen(s));
}

/* Waits until fd is readable or the deadline (now_msec() time) passed. */
static bool wait_readable(int fd, uint64_t deadline) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        uint64_t now = now_msec();

        return poll(&pfd, 1, now < deadline ? (int) (deadline - now) : 0) > 0;
}

/* Waits up to timeout_ms for the peer to close, discarding what it sends;
 * true if it did (EOF or reset). */
static bool wait_closed(int fd, int timeout_ms) {
        uint64_t end = now_msec() + (uint64_t) (timeout_ms > 0 ? timeout_ms : 0);
        char buf[4096];

        while (wait_readable(fd, end)) {
                ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

                if (n == 0 || (n < 0 && errno != EAGAIN))
                        return true;
        }
        return false;
}

typedef struct Response {
        int status;
        char head[8192];
        char *body;
        size_t body_size;
        bool has_length;
} Response;

static void response_done(Response *r) {
        free(r->body);
        *r = (Response) {};
}

static bool response_header(const Response *r, const char *name, char *value, size_t size) {
        size_t n = strlen(name);

        for (const char *l = strstr(r->head, "\r\n"); l && l[2]; l = strstr(l + 2, "\r\n")) {
                const char *h = l + 2, *e = strstr(h, "\r\n");

                if (e && strncasecmp(h, name, n) == 0 && h[n] == ':') {
                        const char *v = h + n + 1;

                        while (*v == ' ')
                                v++;
                        snprintf(value, size, "%.*s", (int) (e - v), v);
                        return true;
                }
        }
        return false;
}

/* Reads one response: head, then Content-Length bytes of body (none for HEAD).
 * Returns 0, or < 0 when the connection ended or timed out first. */
static int read_response(int fd, Response *r, bool head_only) {
        size_t have = 0, need = 0;
        char *sep = NULL, value[64];

        *r = (Response) {};
        while (!sep) {
                ssize_t n;

                if (have + 1 >= sizeof(r->head))
                        return -E2BIG;
                n = recv(fd, r->head + have, 1, 0); /* byte by byte: keep the next response unread */
                if (n <= 0)
                        return n == 0 ? -ECONNRESET : -errno;
                have += (size_t) n;
                r->head[have] = 0;
                sep = strstr(r->head, "\r\n\r\n");
        }
        sep[2] = 0; /* keep the last header's CRLF for response_header() */

        if (sscanf(r->head, "HTTP/1.%*c %d", &r->status) != 1)
                return -EBADMSG;

        if (response_header(r, "Content-Length", value, sizeof(value))) {
                r->has_length = true;
                need = strtoul(value, NULL, 10);
        }
        if (head_only)
                need = 0;

        r->body = malloc(need + 1);
        if (!r->body)
                return -ENOMEM;
        while (r->body_size < need) {
                ssize_t n = recv(fd, r->body + r->body_size, need - r->body_size, 0);

                if (n <= 0)
                        return n == 0 ? -ECONNRESET : -errno;
                r->body_size += (size_t) n;
        }
        r->body[r->body_size] = 0;
        return 0;
}

/* One request on a new connection; closes it unless ret_fd is given. */
static int request(uint16_t p, const char *data, size_t size, Response *r, int *ret_fd) {
        int fd, k;

        fd = connect_to(p);
        if (fd < 0)
                return fd;
        k = send_all(fd, data, size);
        if (k >= 0)
                k = read_response(fd, r, strncmp(data, "HEAD ", 5) == 0);
        if (ret_fd && k >= 0)
                *ret_fd = fd;
        else
                close(fd);
        return k;
}

static int request_str(const char *data, Response *r) {
        return request(port, data, strlen(data), r, NULL);
}

static json_t *response_json(const Response *r) {
        return r->body ? json_loadb(r->body, r->body_size, 0, NULL) : NULL;
}

static bool json_str_eq(json_t *o, const char *key, const char *want) {
        json_t *v = json_object_get(o, key);

        if (!want)
                return json_is_null(v);
        return json_is_string(v) && streq(json_string_value(v), want);
}

/* The headers every response must carry. */
static bool response_is_json(const Response *r) {
        char v[128];

        return response_header(r, "Content-Type", v, sizeof(v)) && streq(v, "application/json") &&
               response_header(r, "Cache-Control", v, sizeof(v)) && streq(v, "no-store") &&
               r->has_length;
}

static bool error_body_is(const Response *r, const char *code) {
        json_t *j = response_json(r);
        bool ok = j && json_str_eq(j, "code", code) && json_is_string(json_object_get(j, "error"));

        json_decref(j);
        return ok;
}

static int stats_get(const char *key) {
        Response r;
        json_t *j;
        int v = -1;

        if (request_str("GET /test/stats HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &r) >= 0 &&
            (j = response_json(&r))) {
                v = (int) json_integer_value(json_object_get(j, key));
                json_decref(j);
        }
        response_done(&r);
        return v;
}

/* Polls /test/stats until key == want or 3 s passed. */
static bool stats_wait(const char *key, int want) {
        uint64_t end = now_msec() + 3000;

        for (;;) {
                if (stats_get(key) == want)
                        return true;
                if (now_msec() > end)
                        return false;
                usleep(20 * 1000);
        }
}

static int ws_send_frame(int fd, int opcode, const void *payload, size_t n) {
        static const uint8_t mask[4] = { 0x12, 0x34, 0x56, 0x78 };
        _cleanup_free_ uint8_t *f = malloc(n + 14);
        size_t l = 0;

        if (!f)
                return -ENOMEM;
        f[l++] = (uint8_t) (0x80 | opcode);
        if (n < 126)
                f[l++] = (uint8_t) (0x80 | n);
        else if (n < 65536) {
                f[l++] = 0x80 | 126;
                f[l++] = (uint8_t) (n >> 8);
                f[l++] = (uint8_t) n;
        } else {
                f[l++] = 0x80 | 127;
                for (int i = 7; i >= 0; i--)
                        f[l++] = (uint8_t) ((uint64_t) n >> (8 * i));
        }
        memcpy(f + l, mask, 4);
        l += 4;
        for (size_t i = 0; i < n; i++)
                f[l++] = ((const uint8_t *) payload)[i] ^ mask[i % 4];
        return send_all(fd, f, l);
}

static int recv_exact(int fd, void *p, size_t n) {
        while (n > 0) {
                ssize_t k = recv(fd, p, n, 0);

                if (k <= 0)
                        return k == 0 ? -ECONNRESET : -errno;
                p = (char *) p + k;
                n -= (size_t) k;
        }
        return 0;
}

/* Reads one (unfragmented, unmasked) server frame. */
static int ws_recv_frame(int fd, int *ret_opcode, char **ret_payload, size_t *ret_size) {
        uint8_t h[2], ext[8];
        uint64_t n;
        char *p;
        int r;

        r = recv_exact(fd, h, 2);
        if (r < 0)
                return r;
        n = h[1] & 0x7f;
        if (n == 126) {
                r = recv_exact(fd, ext, 2);
                n = (uint64_t) ext[0] << 8 | ext[1];
        } else if (n == 127) {
                r = recv_exact(fd, ext, 8);
                n = 0;
                for (int i = 0; i < 8; i++)
                        n = n << 8 | ext[i];
        }
        if (r < 0)
                return r;
        if (n > 16 * 1024 * 1024)
                return -EFBIG;
        p = malloc(n + 1);
        if (!p)
                return -ENOMEM;
        r = recv_exact(fd, p, n);
        if (r < 0) {
                free(p);
                return r;
        }
        p[n] = 0;
        *ret_opcode = h[0] & 0x0f;
        *ret_payload = p;
        *ret_size = n;
        return 0;
}

static int ws_open(const char *target, const char *extra, Response *r) {
        char req[1024];
        int fd = -EBADF, k;

        snprintf(req, sizeof(req),
                 "GET %s HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: " WS_KEY "\r\nSec-WebSocket-Version: 13\r\n%s\r\n",
                 target, extra ?: "");
        k = request(port, req, strlen(req), r, &fd);
        return k < 0 ? k : fd;
}

static void test_http(void) {
        Response r;
        json_t *j;
        char v[256];
        int k;

        k = request_str("GET /api/echo?x=1&name=two HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &r);
        j = response_json(&r);
        check(k >= 0 && r.status == 200 && response_is_json(&r) && j &&
              json_str_eq(j, "method", "GET") && json_str_eq(j, "path", "/api/echo") &&
              json_str_eq(j, "query", "x=1&name=two") && json_str_eq(j, "body", NULL),
              "GET is routed to the handler, query split from path, JSON back");
        check(k >= 0 && response_header(&r, "Content-Length", v, sizeof(v)) &&
              strtoul(v, NULL, 10) == r.body_size && r.body_size > 0,
              "Content-Length matches the body");
        json_decref(j);
        response_done(&r);

        k = request_str("GET /api/echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &r);
        j = response_json(&r);
        check(k >= 0 && r.status == 200 && j && json_str_eq(j, "query", NULL),
              "no query string: query is NULL");
        json_decref(j);
        response_done(&r);

        /* lws decodes and normalises the target; it arrives re-encoded. */
        k = request_str("GET /api//./echo?q=a+b&amp=%26&eq=1%3D2&u=%7e HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &r);
        j = response_json(&r);
        check(k >= 0 && r.status == 200 && j && json_str_eq(j, "path", "/api/echo") &&
              json_str_eq(j, "query", "q=a%20b&amp=%26&eq=1%3D2&u=~"),
              "encoded target arrives in canonical encoded form");
        json_decref(j);
        response_done(&r);

        {
                static const char req[] =
                        "POST /api/echo HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer s3cret\r\n"
                        "Content-Type: application/json\r\nContent-Length: 13\r\nConnection: close\r\n\r\n"
                        "{\"app\":\"web\"}";

                k = request_str(req, &r);
                j = response_json(&r);
                check(k >= 0 && r.status == 200 && j && json_str_eq(j, "method", "POST") &&
                      json_str_eq(j, "body", "{\"app\":\"web\"}") &&
                      json_integer_value(json_object_get(j, "body_size")) == 13 &&
                      json_str_eq(j, "authorization", "Bearer s3cret") &&
                      json_str_eq(j, "content_type", "application/json"),
                      "POST body, Authorization and Content-Type reach the handler");
                json_decref(j);
                response_done(&r);
        }

        {
                /* Body sent after a pause: arrives through LWS_CALLBACK_HTTP_BODY. */
                int fd = connect_to(port);

                k = fd < 0 ? fd : send_str(fd, "PUT /api/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\nab");
                if (k >= 0) {
                        usleep(100 * 1000);
                        k = send_str(fd, "cdef");
                }
                if (k >= 0)
                        k = read_response(fd, &r, false);
                j = response_json(&r);
                check(k >= 0 && r.status == 200 && j && json_str_eq(j, "method", "PUT") &&
                      json_str_eq(j, "body", "abcdef"),
                      "body arriving in pieces is assembled");
                json_decref(j);
                response_done(&r);
                if (fd >= 0)
                        close(fd);
        }

        k = request_str("GET /nope HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &r);
        check(k >= 0 && r.status == 404 && response_is_json(&r) && error_body_is(&r, "not_found"),
              "unknown path: the handler's 404, as error JSON");
        response_done(&r);

        k = request_str("DELETE /api/echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &r);
        check(k >= 0 && r.status == 405 && response_is_json(&r) && error_body_is(&r, "method_not_allowed"),
              "DELETE reaches the handler (405)");
        response_done(&r);

        k = request_str("GET /api/created HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &r);
        check(k >= 0 && r.status == 201 && response_is_json(&r) && streq(r.body, "{}"),
              "NULL body below 400 sends {}");
        response_done(&r);

        k = request_str("HEAD /api/echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &r);
        check(k >= 0 && r.status == 200 && response_header(&r, "Content-Length", v, sizeof(v)) &&
              strtoul(v, NULL, 10) > 0 && r.body_size == 0,
              "HEAD: headers with Content-Length, no body");
        response_done(&r);

        k = request_str("GET /api/big HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &r);
        j = response_json(&r);
        check(k >= 0 && r.status == 200 && j &&
              json_string_length(json_object_get(j, "data")) == 300000 &&
              json_string_value(json_object_get(j, "data"))[299999] == (char) ('a' + 299999 % 26),
              "a 300 KB response arrives whole");
        json_decref(j);
        response_done(&r);

        {
                /* Two requests in one write, on one connection. */
                static const char req[] =
                        "GET /api/echo?n=1 HTTP/1.1\r\nHost: t\r\n\r\n"
                        "GET /api/echo?n=2 HTTP/1.1\r\nHost: t\r\n\r\n";
                Response r2 = {};
                int fd = -EBADF;
                json_t *j2 = NULL;

                k = request(port, req, sizeof(req) - 1, &r, &fd);
                if (k >= 0)
                        k = read_response(fd, &r2, false);
                j = response_json(&r);
                j2 = response_json(&r2);
                check(k >= 0 && r.status == 200 && r2.status == 400 && j && j2 &&
                      json_str_eq(j, "query", "n=1") && json_str_eq(j2, "code", "pipelining_unsupported"),
                      "pipelined requests on one connection: the first answered, the second refused (400)");
                json_decref(j);
                json_decref(j2);
                response_done(&r);
                response_done(&r2);
                if (fd >= 0)
                        close(fd);
        }
}

static void test_limits(void) {
        _cleanup_free_ char *big = NULL;
        Response r;
        int k, fd = -EBADF;
        size_t l;

        /* 10 KiB of headers, in a header lws does not know. */
        big = malloc(11000);
        if (!big)
                abort();
        strcpy(big, "GET /api/echo HTTP/1.1\r\nHost: t\r\nX-Big: ");
        l = strlen(big);
        memset(big + l, 'a', 10240);
        strcpy(big + l + 10240, "\r\n\r\n");
        k = request(port, big, strlen(big), &r, &fd);
        check(k >= 0 && r.status == 431 && response_is_json(&r) &&
              error_body_is(&r, "request_header_fields_too_large") && wait_closed(fd, 2000),
              "10 KiB of headers: 431 and the connection is closed");
        response_done(&r);
        if (fd >= 0)
                close(fd);
        fd = -EBADF;

        /* Over the limit in the request target. */
        strcpy(big, "GET /");
        memset(big + 5, 'p', 9000);
        strcpy(big + 9005, " HTTP/1.1\r\nHost: t\r\n\r\n");
        k = request(port, big, strlen(big), &r, NULL);
        check(k >= 0 && r.status == 431, "9 KB request target: 431");
        response_done(&r);

        k = request_str("POST /api/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2097152\r\n\r\n", &r);
        check(k >= 0 && r.status == 413 && response_is_json(&r) && error_body_is(&r, "payload_too_large"),
              "Content-Length of 2 MiB: 413 before any body is sent");
        response_done(&r);

        {
                /* Streams a body behind a 64 MiB Content-Length until the
                 * answer shows up: the 413 must come long before the end,
                 * even though the server may reset the connection (making a
                 * send fail) once it answered. */
                static char chunk[65536];
                size_t sent = 0;

                memset(chunk, 'x', sizeof(chunk));
                fd = connect_to(port);
                k = fd < 0 ? fd : send_str(fd, "POST /api/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 67108864\r\n\r\n");
                while (k >= 0 && sent < 67108864) {
                        if (wait_readable(fd, 0))
                                break; /* the answer is there */
                        k = send_all(fd, chunk, sizeof(chunk));
                        sent += sizeof(chunk);
                }
                k = fd < 0 ? fd : read_response(fd, &r, false);
                check(k >= 0 && r.status == 413 && error_body_is(&r, "payload_too_large") &&
                      sent < 67108864,
                      "streamed over-limit body: 413 (after %zu bytes sent)", sent);
                response_done(&r);
                if (fd >= 0)
                        close(fd);
        }

        k = request_str("POST /api/echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", &r);
        check(k >= 0 && r.status == 411 && response_is_json(&r), "chunked request body: 411");
        response_done(&r);

        k = request_str("POST /api/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 12x\r\n\r\n", &r);
        check(k >= 0 && r.status == 400 && response_is_json(&r), "bad Content-Length: 400");
        response_done(&r);
}

static void test_malformed(void) {
        static const struct {
                const char *data;
                int status;
                const char *name;
        } cases[] = {
                { "GARBAGE\r\n\r\n", 400, "request line without target and version" },
                { "GET /x\r\n\r\n", 400, "request line without version" },
                { "GET x HTTP/1.1\r\n\r\n", 400, "target not starting with /" },
                { "GET /a%zz HTTP/1.1\r\nHost: t\r\n\r\n", 400, "bad percent escape" },
                { "GET /a%00b HTTP/1.1\r\nHost: t\r\n\r\n", 400, "encoded NUL in target" },
                { "GET / HTTP/1.1\r\nNo colon here\r\n\r\n", 400, "header line without colon" },
                { "GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505, "HTTP/2.0 request line" },
                { "BREW /pot HTTP/1.1\r\nHost: t\r\n\r\n", 501, "unknown method" },
                { "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400, "TLS hello on the plain port" },
        };
        Response r;
        int k;

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                int fd = -EBADF;

                k = request(port, cases[i].data, strlen(cases[i].data), &r, &fd);
                check(k >= 0 && r.status == cases[i].status && response_is_json(&r) &&
                      fd >= 0 && wait_closed(fd, 2000),
                      "malformed: %s -> %i, closed (got %i)", cases[i].name, cases[i].status, r.status);
                response_done(&r);
                if (fd >= 0)
                        close(fd);
        }

        {
                /* Random bytes without a line end: nothing to wait for. */
                char junk[512];
                int fd;

                for (size_t i = 0; i < sizeof(junk); i++)
                        junk[i] = (char) (1 + (i * 7919) % 250);
                for (size_t i = 0; i < sizeof(junk); i++)
                        if (junk[i] == '\n')
                                junk[i] = 'x';
                fd = connect_to(port);
                k = fd < 0 ? fd : send_all(fd, junk, sizeof(junk));
                k = k < 0 ? k : read_response(fd, &r, false);
                check(k >= 0 && r.status == 400 && wait_closed(fd, 2000),
                      "binary junk: 400 at once, closed");
                response_done(&r);
                if (fd >= 0)
                        close(fd);
        }

        k = request_str("GET /api/echo?after=junk HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &r);
        check(k >= 0 && r.status == 200, "the server still answers after all that");
        response_done(&r);
}

static void test_websocket(void) {
        Response r;
        char v[256], *payload = NULL;
        size_t size = 0;
        int fd, k, opcode = -1;
        json_t *j;

        fd = ws_open("/ws?token=abc", "Authorization: Bearer wstok\r\n", &r);
        check(fd >= 0 && r.status == 101 && response_header(&r, "Sec-WebSocket-Accept", v, sizeof(v)) &&
              streq(v, WS_ACCEPT),
              "WebSocket handshake on /ws: 101 with the right Sec-WebSocket-Accept");
        response_done(&r);
        if (fd < 0)
                return;

        k = ws_send_frame(fd, 1, "hello", 5);
        k = k < 0 ? k : ws_recv_frame(fd, &opcode, &payload, &size);
        check(k >= 0 && opcode == 1 && size == 5 && memcmp(payload, "hello", 5) == 0,
              "text frame echoed through ws_message -> http_ws_client_send");
        payload = mfree(payload);

        k = ws_send_frame(fd, 1, "whoami", 6);
        k = k < 0 ? k : ws_recv_frame(fd, &opcode, &payload, &size);
        j = k >= 0 ? json_loadb(payload, size, 0, NULL) : NULL;
        check(j && json_str_eq(j, "query", "token=abc") && json_str_eq(j, "authorization", "Bearer wstok"),
              "ws_connected saw the upgrade request (query, Authorization); userdata kept");
        json_decref(j);
        payload = mfree(payload);

        {
                /* 40 KB: a 16-bit length frame, bigger than one rx buffer. */
                _cleanup_free_ char *big = malloc(40000);

                if (!big)
                        abort();
                for (size_t i = 0; i < 40000; i++)
                        big[i] = (char) ('A' + i % 26);
                k = ws_send_frame(fd, 1, big, 40000);
                k = k < 0 ? k : ws_recv_frame(fd, &opcode, &payload, &size);
                check(k >= 0 && size == 40000 && memcmp(payload, big, 40000) == 0,
                      "40 KB message assembled and echoed");
                payload = mfree(payload);
        }

        check(stats_get("ws_clients") == 1, "one WebSocket client counted");

        k = ws_send_frame(fd, 1, "bye", 3);
        k = k < 0 ? k : ws_recv_frame(fd, &opcode, &payload, &size);
        check(k >= 0 && opcode == 8 && size >= 2 && (((uint8_t) payload[0] << 8) | (uint8_t) payload[1]) == 1000,
              "http_ws_client_close sends close 1000");
        payload = mfree(payload);
        close(fd);
        check(stats_wait("ws_clients", 0) && stats_get("ws_closed") == 1,
              "ws_closed called once, client count back to 0");

        /* A client that never reads: the queue bound refuses the flood. */
        fd = ws_open("/ws", NULL, &r);
        response_done(&r);
        k = fd < 0 ? fd : ws_send_frame(fd, 1, "flood", 5);
        check(k >= 0 && stats_wait("flood_error", -ENOBUFS) &&
              stats_get("flood_accepted") == (int) HTTP_WS_QUEUE_MAX_FRAMES,
              "per-client queue bound: -ENOBUFS after %u queued messages", HTTP_WS_QUEUE_MAX_FRAMES);
        if (fd >= 0)
                close(fd);
        check(stats_wait("ws_clients", 0), "flooded client gone after disconnect");

        fd = ws_open("/ws", NULL, &r);
        response_done(&r);
        k = fd < 0 ? fd : ws_send_frame(fd, 2, "\x01\x02", 2);
        k = k < 0 ? k : ws_recv_frame(fd, &opcode, &payload, &size);
        check(k >= 0 && opcode == 8 && size >= 2 && (((uint8_t) payload[0] << 8) | (uint8_t) payload[1]) == 1003,
              "binary message: closed with 1003");
        payload = mfree(payload);
        if (fd >= 0)
                close(fd);

        fd = ws_open("/ws?deny=1", NULL, &r);
        check(fd >= 0 && r.status == 401 && response_is_json(&r) && error_body_is(&r, "unauthorized"),
              "ws_connected returning -EACCES: 401, no upgrade");
        response_done(&r);
        if (fd >= 0)
                close(fd);

        fd = ws_open("/api/echo", NULL, &r);
        check(fd >= 0 && r.status == 404 && response_is_json(&r) &&
              !response_header(&r, "Sec-WebSocket-Accept", v, sizeof(v)),
              "upgrade of a path other than /ws refused (404)");
        response_done(&r);
        if (fd >= 0)
                close(fd);

        k = request_str("GET /ws HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &r);
        check(k >= 0 && r.status == 426 && response_is_json(&r), "plain GET /ws: 426");
        response_done(&r);

        check(stats_wait("ws_clients", 0), "no WebSocket client left");
}

static void test_deferred(void) {
        Response r, r2;
        json_t *j;
        int k, fd = -EBADF;

        /* Answered 50 ms later from a timer; a custom header read by the
         * handler, sent in mixed case, with a body. */
        static const char req[] = "POST /api/deferred HTTP/1.1\r\nHost: t\r\nX-Test-Value: abc123\r\n"
                                  "Content-Length: 4\r\n\r\nbody";
        k = request(port, req, sizeof(req) - 1, &r, &fd);
        j = response_json(&r);
        check(k >= 0 && r.status == 202 && response_is_json(&r) && j &&
              json_is_true(json_object_get(j, "deferred")) && json_str_eq(j, "value", "abc123"),
              "deferred answer: 202 from a timer, custom header read after the body");
        json_decref(j);
        response_done(&r);

        /* The connection is kept alive and serves the next request. */
        static const char req2[] = "GET /api/deferred HTTP/1.1\r\nHost: t\r\n\r\n";
        k = fd >= 0 ? send_all(fd, req2, sizeof(req2) - 1) : -EBADF;
        if (k >= 0)
                k = read_response(fd, &r2, false);
        j = response_json(&r2);
        check(k >= 0 && r2.status == 202 && j && json_str_eq(j, "value", NULL),
              "a second deferred request on the same connection (no header: null)");
        json_decref(j);
        response_done(&r2);
        if (fd >= 0)
                close(fd);

        k = request_str("HEAD /api/deferred HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &r);
        check(k >= 0 && r.status == 202 && r.body_size == 0, "deferred HEAD: headers only");
        response_done(&r);

        k = request_str("GET /api/deferred-now HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &r);
        check(k >= 0 && r.status == 201 && response_is_json(&r) && strstr(r.body, "\"now\":true"),
              "completed from within the handler: sent at once");
        response_done(&r);

        k = request_str("GET /api/deferred-bogus HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &r);
        check(k >= 0 && r.status == 500 && error_body_is(&r, "internal_server_error"),
              "HTTP_DEFERRED without a responder: 500");
        response_done(&r);

        /* The client is done sending (shutdown(SHUT_WR), as nc -N does)
         * before the answer: it still gets it. */
        fd = connect_to(port);
        k = fd >= 0 ? send_str(fd, "GET /api/deferred-slow HTTP/1.1\r\nHost: t\r\n\r\n") : -EBADF;
        if (k >= 0 && shutdown(fd, SHUT_WR) < 0)
                k = -errno;
        if (k >= 0)
                k = read_response(fd, &r, false);
        check(k >= 0 && r.status == 202 && stats_get("defer_completed") == 4 && stats_get("defer_gone") == 0,
              "a client that half-closed after its request gets the deferred answer");
        response_done(&r);
        if (fd >= 0)
                close(fd);

        /* The client resets the connection before the answer: the gone
         * callback runs at once and the connection is released. */
        fd = connect_to(port);
        k = fd >= 0 ? send_str(fd, "GET /api/deferred-slow HTTP/1.1\r\nHost: t\r\n\r\n") : -EBADF;
        usleep(200 * 1000);
        if (fd >= 0) {
                struct linger reset = { .l_onoff = 1, .l_linger = 0 };

                if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset)) < 0)
                        k = -errno;
                close(fd);
        }
        check(k >= 0 && stats_wait("defer_gone", 1) && stats_get("defer_completed") == 4,
              "a client gone (reset) before the deferred answer: gone callback, nothing sent");
}

/* A pipelining client: all of data in one send() on a new connection, with a
 * receive timeout, so that a frozen server fails the test instead of hanging
 * it. */
static int pipeline_send(const char *data, size_t size) {
        struct timeval tv = { .tv_sec = 15 };
        int fd, k;

        fd = connect_to(port);
        if (fd < 0)
                return fd;
        if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0) {
                k = -errno;
                close(fd);
                return k;
        }
        k = send_all(fd, data, size);
        if (k < 0) {
                close(fd);
                return k;
        }
        return fd;
}

/* Reads the next response and checks status and a "path" or "value" in it. */
static int pipeline_send_str(const char *data) {
        return pipeline_send(data, strlen(data));
}

static bool pipeline_expect(int fd, int status, const char *key, const char *want) {
        Response r;
        json_t *j;
        bool ok;
        int k;

        k = fd >= 0 ? read_response(fd, &r, false) : fd;
        j = k >= 0 ? response_json(&r) : NULL;
        ok = k >= 0 && r.status == status && (!key || (j && json_str_eq(j, key, want)));
        if (!ok)
                printf("# got %d status %d body %s\n", k, k >= 0 ? r.status : 0, k >= 0 && r.body ? r.body : "");
        json_decref(j);
        if (k >= 0)
                response_done(&r);
        return ok;
}

static size_t ws_frame(uint8_t *f, int opcode, const char *payload) {
        static const uint8_t mask[4] = { 0x21, 0x43, 0x65, 0x07 };
        size_t n = strlen(payload), l = 0;

        if (n >= 126)
                abort(); /* small frames only */
        f[l++] = (uint8_t) (0x80 | opcode);
        f[l++] = (uint8_t) (0x80 | n);
        memcpy(f + l, mask, 4);
        l += 4;
        for (size_t i = 0; i < n; i++)
                f[l++] = (uint8_t) payload[i] ^ mask[i % 4];
        return l;
}

/* The first request is answered, the pipelined one after it refused with
 * 400 pipelining_unsupported, and the connection closed. */
static bool pipeline_refused(int fd) {
        Response r;
        int k = fd >= 0 ? read_response(fd, &r, false) : fd;
        bool ok = k >= 0 && r.status == 400 && error_body_is(&r, "pipelining_unsupported");

        if (!ok)
                printf("# got %d status %d\n", k, k >= 0 ? r.status : 0);
        if (k >= 0)
                response_done(&r);
        return ok && wait_closed(fd, 5000);
}

static void test_pipelining(void) {
        int completed = stats_get("defer_completed");
        int fd;

        /* lws 4.1.6 cannot serve pipelined requests safely (see
         * http_conn_on_http()): each kind below once froze nornd or lost
         * answers. Now the first request is answered, the next refused. */
        static const char *const firsts[] = {
                "GET /api/echo?n=1 HTTP/1.1\r\nHost: t\r\n\r\n",
                "GET /api/deferred HTTP/1.1\r\nHost: t\r\nX-Test-Value: first\r\n\r\n",
                ("POST /api/deferred HTTP/1.1\r\nHost: t\r\nX-Test-Value: first\r\n"
                 "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"),
                "POST /api/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
        };
        static const char *const nexts[] = {
                "GET /api/echo?n=2 HTTP/1.1\r\nHost: t\r\n\r\n",
                "GET /api/deferred HTTP/1.1\r\nHost: t\r\n\r\n",
                "POST /api/deferred HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
                "POST /api/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nbody",
                "HEAD /api/echo HTTP/1.1\r\nHost: t\r\n\r\nGET /api/echo HTTP/1.1\r\nHost: t\r\n\r\n",
        };
        int n_deferred = 0;

        for (size_t a = 0; a < ELEMENTSOF(firsts); a++)
                for (size_t b = 0; b < ELEMENTSOF(nexts); b++) {
                        _cleanup_free_ char *both = NULL;
                        bool deferred = strstr(firsts[a], "/api/deferred");
                        bool ok;

                        if (asprintf(&both, "%s%s", firsts[a], nexts[b]) < 0)
                                abort();
                        fd = pipeline_send_str(both);
                        ok = deferred ? pipeline_expect(fd, 202, "value", "first")
                                      : pipeline_expect(fd, 200, "method", a == 0 ? "GET" : "POST");
                        ok = ok && pipeline_refused(fd);
                        check(ok, "pipelined pair %zu/%zu: first answered, second refused with 400, closed", a, b);
                        if (fd >= 0)
                                close(fd);
                        n_deferred += deferred;
                }

        /* A request and the start of the next: the rest, sent before the
         * answer was read, is refused too. */
        fd = pipeline_send_str("GET /api/deferred HTTP/1.1\r\nHost: t\r\nX-Test-Value: first\r\n\r\n"
                               "GET /api/echo?n=2 HTTP/1.1\r\nHo");
        check(pipeline_expect(fd, 202, "value", "first") && send_str(fd, "st: t\r\n\r\n") >= 0 && pipeline_refused(fd),
              "a request with half the next: the first answered, the second refused once complete");
        if (fd >= 0)
                close(fd);
        n_deferred++;

        /* A POST without Content-Length: lws 4.1.6 would read what follows
         * as its body; it is answered, and the connection closed after. */
        fd = pipeline_send_str("POST /api/deferred HTTP/1.1\r\nHost: t\r\nX-Test-Value: first\r\n\r\n");
        check(pipeline_expect(fd, 202, "value", "first") && wait_closed(fd, 5000),
              "a deferred POST without Content-Length: answered, then the connection closed");
        if (fd >= 0)
                close(fd);
        n_deferred++;

        /* Garbage after a request: the request answered, the connection
         * closed (refused like a pipelined request). */
        fd = pipeline_send_str("GET /api/deferred HTTP/1.1\r\nHost: t\r\nX-Test-Value: first\r\n\r\n"
                               "\x01\x02 garbage \xff\r\n\r\n");
        check(pipeline_expect(fd, 202, "value", "first") && wait_closed(fd, 15000),
              "garbage after a request: the request answered, then the connection closed");
        if (fd >= 0)
                close(fd);
        n_deferred++;

        /* Requests sent one after the other on one connection still work. */
        fd = pipeline_send_str("GET /api/deferred HTTP/1.1\r\nHost: t\r\nX-Test-Value: first\r\n\r\n");
        check(pipeline_expect(fd, 202, "value", "first") &&
              send_str(fd, "POST /api/deferred HTTP/1.1\r\nHost: t\r\nX-Test-Value: first\r\nContent-Length: 0\r\n\r\n") >= 0 &&
              pipeline_expect(fd, 202, "value", "first") &&
              send_str(fd, "GET /api/echo?n=3 HTTP/1.1\r\nHost: t\r\n\r\n") >= 0 &&
              pipeline_expect(fd, 200, "query", "n=3"),
              "keep-alive without pipelining: deferred, deferred POST and immediate answers in turn");
        if (fd >= 0)
                close(fd);
        n_deferred += 2;

        /* A WebSocket upgrade and a first frame in one packet. */
        {
                char buf[1024];
                size_t l;
                Response r;
                char *payload = NULL;
                size_t size = 0;
                int k, opcode = -1;

                l = (size_t) snprintf(buf, sizeof(buf),
                                      "GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                      "Sec-WebSocket-Key: " WS_KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n");
                l += ws_frame((uint8_t *) buf + l, 1, "early");
                fd = pipeline_send(buf, l);
                k = fd >= 0 ? read_response(fd, &r, true) : fd;
                check(k >= 0 && r.status == 101, "upgrade with a frame in the same packet: 101");
                if (k >= 0)
                        response_done(&r);
                k = k < 0 ? k : ws_recv_frame(fd, &opcode, &payload, &size);
                check(k >= 0 && opcode == 1 && size == 5 && memcmp(payload, "early", 5) == 0,
                      "... and the frame is echoed");
                free(payload);
                if (fd >= 0)
                        close(fd);
        }

        check(stats_wait("defer_completed", completed + n_deferred) && stats_wait("ws_clients", 0),
              "after the pipelining clients: still serving, every deferred answer completed");
}

static void test_listen_fd(void) {
        Response r;
        int k;

        static const char req[] = "GET /api/echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

        k = request(port2, req, sizeof(req) - 1, &r, NULL);
        check(k >= 0 && r.status == 200, "a socket passed with http_server_add_listen_fd() serves too");
        response_done(&r);
}

static void *client_main(void *arg) {
        uint64_t start = now_msec();
        uint64_t one = 1;
        int silent, slow, k;

        /* Opened first, checked last: they must be gone by then. */
        silent = connect_to(port);
        slow = connect_to(port);
        k = slow < 0 ? slow : send_str(slow, "GET /api/echo HTTP/1.1\r\nHost: t\r\n");

        test_http();
        test_limits();
        test_malformed();
        test_websocket();
        test_deferred();
        test_pipelining();
        test_listen_fd();

        /* The head timeout is 10 s. */
        check(silent >= 0 && wait_closed(silent, (int) (start + 13000 - MIN(now_msec(), start + 13000))),
              "a connection that sends nothing is closed after the head timeout");
        {
                Response r = {};
                bool got_408 = false;

                if (k >= 0 && wait_readable(slow, start + 13000) && read_response(slow, &r, false) >= 0)
                        got_408 = r.status == 408;
                check(got_408 && wait_closed(slow, 2000),
                      "a head that never completes gets 408 and a close");
                response_done(&r);
        }
        if (silent >= 0)
                close(silent);
        if (slow >= 0)
                close(slow);

        check(stats_wait("connections", 1), "every connection is released (only the stats one left)");

        if (write(done_fd, &one, sizeof(one)) != sizeof(one))
                abort(); /* an eventfd write of 8 bytes does not fail */
        return NULL;
}

int main(int argc, char *argv[]) {
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        static const HttpServerCallbacks cb = {
                .handle_request = handle_request,
                .ws_connected = ws_connected,
                .ws_message = ws_message,
                .ws_closed = ws_closed,
        };
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t salen = sizeof(sa);
        pthread_t thread;
        int r, fd;

        log_setup(LOG_TARGET_STDERR, LOG_INFO);
        signal(SIGPIPE, SIG_IGN);

        if (sd_event_new(&event) < 0)
                return 1;
        server_event = event;

        r = http_server_new(event, &cb, NULL, &server);
        if (r < 0) {
                printf("Bail out! http_server_new: %s\n", strerror(-r));
                return 1;
        }

        r = http_server_listen(server, "127.0.0.1", 0);
        if (r >= 0)
                r = http_server_get_port(server, &port);
        if (r < 0 || port == 0) {
                printf("Bail out! listen: %s\n", strerror(-r));
                return 1;
        }

        /* A second socket, set up by us, as socket activation would. */
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(fd, 16) < 0 ||
            getsockname(fd, (struct sockaddr *) &sa, &salen) < 0) {
                printf("Bail out! second socket: %m\n");
                return 1;
        }
        port2 = ntohs(sa.sin_port);
        r = http_server_add_listen_fd(server, fd);
        if (r < 0) {
                printf("Bail out! http_server_add_listen_fd: %s\n", strerror(-r));
                return 1;
        }

        done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (done_fd < 0 ||
            sd_event_add_io(event, NULL, done_fd, EPOLLIN, on_done, NULL) < 0 ||
            sd_event_add_time_relative(event, NULL, CLOCK_MONOTONIC, 90 * 1000000ULL, 0, on_deadline, NULL) < 0) {
                printf("Bail out! event sources\n");
                return 1;
        }

        printf("# server on 127.0.0.1:%u and :%u\n", port, port2);
        if (pthread_create(&thread, NULL, client_main, NULL) != 0) {
                printf("Bail out! pthread_create\n");
                return 1;
        }

        r = sd_event_loop(event);
        if (r != 0) {
                /* The client hangs: do not wait for it. */
                printf("# %u passed, %u failed\n", n_checks - n_failed, n_failed);
                fflush(stdout);
                _exit(1);
        }
        pthread_join(thread, NULL);

        server = http_server_free(server);

        printf("%u passed, %u failed\n", n_checks - n_failed, n_failed);
        return n_failed > 0 || n_checks == 0 ? 1 : 0;
}
