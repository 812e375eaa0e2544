/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* HTTP + WebSocket server: libwebsockets 4.1 on a libuv loop embedded in
 * sd-event (event-uv.h), single-threaded. Listening sockets stay in sd-event
 * (so they can come from socket activation); each accepted connection's first
 * request head is read and checked in sd-event, then the connection is handed
 * to lws.
 *
 * Every response is JSON: Content-Type: application/json, Content-Length (not
 * on 204/304) and Cache-Control: no-store; except one a handler sends with
 * http_request_respond_raw() (the dashboard's files). The WebSocket endpoint is exactly
 * /ws; every other path is plain HTTP and goes to the request handler (a plain
 * GET of /ws is answered 426).
 *
 * Refused by the server itself, with a JSON error body:
 *   431  request line + headers over HTTP_MAX_HEADER_SIZE
 *   413  Content-Length over HTTP_MAX_BODY_SIZE (checked before the body is read)
 *   411  Transfer-Encoding (chunked request bodies are not supported)
 *   400  malformed request line / header line / Content-Length
 *   501  a method other than GET POST PUT PATCH DELETE OPTIONS HEAD
 *   505  an HTTP version other than 1.0 / 1.1
 *   408  head not complete HTTP_HEAD_TIMEOUT_SEC after connecting (a silent
 *        connection is just closed)
 *   503  a body's bytes would take all connections together over
 *        HTTP_MAX_TOTAL_BODY_SIZE, or those of one peer (an IPv4 address, an
 *        IPv6 /64) over HTTP_PEER_MAX_BODY_SIZE; bodies are charged as their
 *        bytes arrive, never for what Content-Length announces
 *   408  a body not complete body_timeout after the connection's start (its
 *        first request) or its head (later requests)
 * These responses close the connection. Connections over
 * HTTP_MAX_CONNECTIONS, or over peer_max_connections of one peer, are closed
 * at once.
 *
 * Timeouts (lws' own past the first head): kept-alive connections idle for
 * 10 s, and a body not complete 20 s after the last data, are closed; a
 * body is answered 408 at its deadline (above) however steadily it comes;
 * WebSocket clients are pinged after 30 s of silence and dropped after 75 s
 * without a valid frame or pong.
 *
 * Caveat, from lws 4.1.6: the checks above apply in full to the first request
 * on a connection. Later requests on a kept-alive connection are parsed by lws
 * alone: there an oversized head gets 431 only when the excess is in the
 * request target or headers lws knows; unknown headers count against lws' own
 * 12 KiB buffer, past which lws closes the connection without a response; a
 * garbled request line or unknown method gets lws' own "403 Forbidden"
 * (text/html) and a close. */

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "macro.h"

#define HTTP_MAX_HEADER_SIZE      (8U * 1024U)
#define HTTP_MAX_BODY_SIZE        (1024U * 1024U)
#define HTTP_MAX_CONNECTIONS      2048U
#define HTTP_HEAD_TIMEOUT_SEC     10U
#define HTTP_WS_QUEUE_MAX_BYTES   (1024U * 1024U)
#define HTTP_WS_QUEUE_MAX_FRAMES  1024U
#define HTTP_WS_MAX_MESSAGE_SIZE  (64U * 1024U)
#define HTTP_WS_CLOSE_REASON_MAX  123U /* RFC 6455: control frames carry 125 bytes */
/* Across all connections / all clients: */
#define HTTP_MAX_TOTAL_BODY_SIZE       (64U * 1024U * 1024U) /* then 503 */
#define HTTP_WS_QUEUE_TOTAL_MAX_BYTES  (64U * 1024U * 1024U) /* then -ENOBUFS */
/* Of one peer (see http-peer.c): */
#define HTTP_PEER_MAX_BODY_SIZE        (16U * 1024U * 1024U) /* then 503 */
/* Defaults of http_server_set_limits(): */
#define HTTP_BODY_TIMEOUT_SEC          30U
#define HTTP_PEER_MAX_CONNECTIONS      256U

typedef struct HttpServer HttpServer;

typedef struct HttpRequest {
        const char *method;        /* "GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD" */
        const char *path;          /* URL path, no query string (see below) */
        const char *query;         /* query string without '?', or NULL (see below) */
        const char *authorization; /* Authorization header value or NULL */
        const char *content_type;  /* or NULL */
        const char *body;          /* request body (NUL-terminated copy), may be NULL */
        size_t body_size;
        bool peer_local;           /* the client connected over loopback or AF_UNIX */
        struct HttpConn *conn;     /* private to the server */
} HttpRequest;

/* About path and query: lws 4.1.6 hands out the request target already
 * percent-decoded and normalised ("//" and "/./" collapsed, "/../" resolved,
 * a literal '+' turned into a space, in the path too); the bytes as sent are
 * not available. The server percent-encodes the result again (everything but
 * RFC 3986 unreserved characters, sub-delims, ':', '@' and '/' in the path; in
 * each query argument also '&', '+', '%' and any '=' after the first), so a
 * target made of plain characters, such as "/api/apps/web?limit=10&x=a-b",
 * arrives byte for byte as sent, and anything else arrives in a canonical
 * encoded form that decodes to the same values ("/a%2Fb" arrives as "/a/b",
 * "?q=a+b" as "q=a%20b"). Percent-decode before use. */

/* Called once the whole request (including body) has arrived. Returns the HTTP
 * status code and sets *ret_body to a JSON value the server sends and then
 * frees (json_decref). A NULL body with status >= 400 makes the server send
 * {"error": "<reason phrase>", "code": "<snake_case>"}; a NULL body with a
 * status < 400 sends {} (204 and 304: no body). A status outside 200..599 is
 * answered 500. HEAD requests reach the handler as "HEAD"; only the headers of
 * its answer are sent. A NULL handler answers 404 to everything.
 * Called from within the server: do not free the server from here. */
typedef int (*HttpHandler)(const HttpRequest *req, json_t **ret_body, void *userdata);

/* Answering later. A handler that cannot answer at once (it waits for the
 * database, say) calls http_request_defer() and returns HTTP_DEFERRED; it
 * answers through the HttpResponder, from any later callback of the event
 * loop, with http_responder_complete(), exactly once. The strings of the
 * HttpRequest are only valid during the handler call: copy what is needed.
 * Meanwhile the connection stays open (no other request is read on it);
 * should the client go away first, or no answer come within
 * HTTP_DEFER_TIMEOUT_SEC, the connection is closed and the responder only
 * detached: http_responder_complete() then just frees it (and the body).
 * A gone callback, when set, is told at once (it may complete r there). */
#define HTTP_DEFERRED 1
#define HTTP_DEFER_TIMEOUT_SEC 120U

/* A response that is not JSON, from within the HttpHandler, which then
 * returns HTTP_SENT: status, Content-Type, extra headers (pairs of a name
 * ending in ':' and a value, NULL-terminated; values must not hold CR or LF)
 * and body (copied; not sent for HEAD, nor for 304). Content-Length is set
 * and X-Content-Type-Options: nosniff added. Only once per request; 0 or
 * negative errno (then return HTTP_SENT all the same: the connection is
 * closed). */
#define HTTP_SENT 2
int http_request_respond_raw(const HttpRequest *req, int status, const char *content_type,
                             const char *const *headers, const void *body, size_t size);

typedef struct HttpResponder HttpResponder;
typedef void (*HttpResponderGone)(HttpResponder *r, void *userdata);

/* Only from within the HttpHandler, once per request; NULL when out of
 * memory or the request cannot be deferred (then answer at once). */
HttpResponder *http_request_defer(const HttpRequest *req);
/* Sends status and body as a handler's return would (takes body, NULL
 * allowed) and frees r. */
void http_responder_complete(HttpResponder *r, int status, json_t *body);
/* false once the client is gone. */
bool http_responder_connected(const HttpResponder *r);
void http_responder_set_gone_callback(HttpResponder *r, HttpResponderGone cb, void *userdata);

/* A request header, by its name in lower case: one lws has no name for
 * (X-Hub-Signature-256 & co) or one it knows (host, origin; empty reads as
 * absent for those). Only from within the handler (or ws_connected).
 * -ENOENT when absent, -E2BIG when over HTTP_MAX_HEADER_SIZE. */
int http_request_get_header(const HttpRequest *req, const char *name, char **ret);

typedef struct HttpWsClient HttpWsClient;

typedef struct HttpServerCallbacks {
        HttpHandler handle_request;
        /* Optional: called when a head announces a body, before any of it is
         * read (req's body is empty). Returns 0 to read the body and go on to
         * handle_request, or a status (and *ret_body, as a handler) to answer
         * at once and close: a request that will be refused anyway (no
         * token) never gets its body buffered. */
        HttpHandler check_head;
        /* A client asks to upgrade /ws, before the 101 is sent (body and
         * body_size of upgrade_req are empty): return < 0 to refuse it
         * (-EACCES is answered 401, -EINVAL 400, any other error 403, unless
         * http_ws_client_refuse() said otherwise). May already send. */
        int (*ws_connected)(HttpWsClient *c, const HttpRequest *upgrade_req, void *userdata);
        /* One complete text message, NUL-terminated (binary messages close
         * the connection with 1003, messages over HTTP_WS_MAX_MESSAGE_SIZE
         * with 1009). */
        void (*ws_message)(HttpWsClient *c, const char *text, size_t size, void *userdata);
        /* Called exactly once for every client ws_connected accepted, when it
         * is gone (also from http_server_free()); c is invalid afterwards. */
        void (*ws_closed)(HttpWsClient *c, void *userdata);
} HttpServerCallbacks;

int http_server_new(sd_event *event, const HttpServerCallbacks *cb, void *userdata, HttpServer **ret);
HttpServer *http_server_free(HttpServer *s);

/* Takes ownership of fd (closed on failure too); fd is a listening stream
 * socket (made non-blocking here). */
int http_server_add_listen_fd(HttpServer *s, int fd);
/* bind + listen on an IPv4 or IPv6 literal address; port 0 picks a free port. */
int http_server_listen(HttpServer *s, const char *address, uint16_t port);
/* Port of the first listening socket. */
int http_server_get_port(HttpServer *s, uint16_t *ret);

unsigned http_server_n_ws_clients(HttpServer *s);
unsigned http_server_n_connections(HttpServer *s);
/* body_timeout_usec: a request's body must be complete this long after the
 * connection started (first request) or its head arrived (later ones), else
 * 408 and close. peer_max_connections: connections one peer may hold. */
void http_server_set_limits(HttpServer *s, uint64_t body_timeout_usec, unsigned peer_max_connections);

/* Queue a text frame (copied). -ENOBUFS when that client's queue is over its
 * bound (HTTP_WS_QUEUE_MAX_BYTES / _FRAMES), or all queues together are over
 * HTTP_WS_QUEUE_TOTAL_MAX_BYTES: the caller may drop the message, or close the
 * client. -ECONNRESET once the client is closing. */
int http_ws_client_send(HttpWsClient *c, const char *text, size_t size);
/* Drop what is still queued and close with status 1000 (after at most 5 s
 * for a client that does not read); ws_closed follows. */
void http_ws_client_close(HttpWsClient *c);
/* The same with a close status (1000..4999) and a reason (cut to
 * HTTP_WS_CLOSE_REASON_MAX bytes), e.g. 1008 for a policy violation. */
void http_ws_client_close_with(HttpWsClient *c, int status, const char *reason);
bool http_ws_client_is_closing(HttpWsClient *c);
/* The client's queue (or all queues together) is past half its bound: time
 * to shed what can be shed before http_ws_client_send() says -ENOBUFS. */
bool http_ws_client_congested(HttpWsClient *c);
/* From within ws_connected, before returning < 0: answer the upgrade with
 * this status (400..599) and JSON body (taken; NULL: the default body). */
void http_ws_client_refuse(HttpWsClient *c, int status, json_t *body);
void *http_ws_client_get_userdata(HttpWsClient *c);
void http_ws_client_set_userdata(HttpWsClient *c, void *u);

DEFINE_TRIVIAL_CLEANUP_FUNC(HttpServer *, http_server_free);
