/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Private to http-server.c, http-listen.c, http-request.c and http-ws.c. */

/* macro.h before <libwebsockets.h>: see event-uv.c. */
#include "event-uv.h"
#include "http-server.h"
#include "log.h"

#include <libwebsockets.h>
#include <stdbool.h>

typedef struct HttpListener HttpListener;
typedef struct HttpHead HttpHead;
typedef struct HttpPeer HttpPeer;

struct HttpServer {
        sd_event *event;
        UvEmbed *uv;
        struct lws_context *context;
        struct lws_vhost *vhost;
        HttpServerCallbacks cb;
        void *userdata;

        HttpListener **listeners;
        size_t n_listeners;
        sd_event_source *resume_accept; /* after EMFILE & co */

        HttpHead *heads; /* connections whose first request head is being read */

        unsigned n_connections; /* heads + adopted */
        size_t body_bytes;      /* request body buffers, all connections */
        HttpPeer *peers;        /* http-peer.c */

        /* http_server_set_limits() */
        uint64_t body_timeout_usec;
        unsigned peer_max_connections;
        size_t ws_queued_bytes; /* WebSocket frames waiting, all clients */
        unsigned n_ws_clients;  /* accepted by ws_connected, not yet closed */

        /* See http_server_adopt(): should lws destroy the new wsi inside
         * the adoption call already, the callback must not free c twice. */
        struct HttpConn *adopting;
        bool adopting_destroyed;
};

/* One per adopted connection (lws "opaque user data" of the wsi). */
typedef struct HttpConn {
        HttpServer *server;
        struct lws *wsi;
        HttpPeer *peer;

        /* When the request being received started: the connection's start
         * for its first request, the head's arrival for later ones. */
        uint64_t first_request_usec;
        sd_event_source *body_deadline;
        bool body_timed_out;      /* 408 goes out from the writeable callback */

        /* The request being received. */
        const char *method;
        char *path;
        char *query;
        char *authorization;
        char *content_type;
        char *body;
        size_t body_size;
        size_t body_allocated;    /* body's room (+ 1 for a NUL), charged to the server's and the peer's budget */
        size_t body_expected;
        bool body_pending;
        bool head;
        bool peer_local;
        bool pipelined;           /* lws held more bytes when the last answer was out */

        /* The response being sent: body with LWS_PRE bytes of headroom. */
        char *resp;
        size_t resp_size;
        size_t resp_sent;
        bool resp_pending;
        bool resp_close;
        bool close_after;         /* the connection closes after this answer (http_conn_on_http()) */
        bool resp_direct;         /* resp is sent by us on hup_fd, not by lws (http_conn_send_direct()) */

        /* A deferred answer (http_request_defer()). */
        bool in_handler;
        HttpResponder *responder; /* the handler's handle, until completed */
        bool deferred_ready;      /* completed: goes out from the writeable callback */
        int deferred_status;
        json_t *deferred_body;
        int hup_fd;               /* a dup of the socket, watched for the client leaving */
        sd_event_source *hup_watch;

        HttpWsClient *ws;

        /* http_request_respond_raw() answered from within the handler. */
        bool raw_sent;
        bool raw_failed;
} HttpConn;

struct HttpResponder {
        HttpConn *conn;           /* NULL once the connection is gone */
        HttpResponderGone gone;
        void *gone_userdata;
};

struct HttpWsClient {
        HttpServer *server;
        HttpConn *conn;
        void *userdata;

        struct HttpWsFrame *queue_head, *queue_tail;
        size_t queue_bytes;
        unsigned queue_len;

        char *rx;
        size_t rx_size;
        bool rx_binary;

        bool established;
        bool closing;
        bool close_sent;
        int close_status;
        char close_reason[HTTP_WS_CLOSE_REASON_MAX];
        size_t close_reason_size;

        /* Set by http_ws_client_refuse() from within ws_connected. */
        int refusal_status;
        char *refusal_body;
};

/* http-server.c */
/* Takes fd in any case; true if a live lws connection now holds it (and a
 * reference on peer). started_usec: when the connection was accepted. */
bool http_server_adopt(HttpServer *s, int fd, HttpPeer *peer, uint64_t started_usec);

/* http-peer.c */
/* A reference on the peer of address sa; -EBUSY when it holds
 * peer_max_connections already. */
int http_peer_acquire(HttpServer *s, const struct sockaddr *sa, socklen_t len, HttpPeer **ret);
HttpPeer *http_peer_ref(HttpPeer *p);
HttpPeer *http_peer_unref(HttpPeer *p);
/* Charges size bytes of request body to the server and the peer (may be
 * NULL): -ENOBUFS over HTTP_MAX_TOTAL_BODY_SIZE, -EDQUOT over
 * HTTP_PEER_MAX_BODY_SIZE. */
int http_peer_charge_body(HttpPeer *p, HttpServer *s, size_t size);
void http_peer_release_body(HttpPeer *p, HttpServer *s, size_t size);

/* http-listen.c */
/* Takes fd and the reference on peer in any case. */
int http_head_new(HttpServer *s, int fd, HttpPeer *peer);
HttpHead *http_head_free(HttpHead *h);
int http_listener_add(HttpServer *s, int fd);
HttpListener *http_listener_free(HttpListener *l);

/* http-request.c */
const char *http_status_reason(int status);
char *http_error_body(int status);
void http_conn_reset_request(HttpConn *c);
void http_conn_detach_responder(HttpConn *c);
int http_conn_on_http(HttpConn *c);
int http_conn_on_body(HttpConn *c, const void *data, size_t size);
int http_conn_on_body_complete(HttpConn *c);
int http_conn_on_writeable(HttpConn *c);
int http_conn_fill_request(HttpConn *c, HttpRequest *ret);
int http_write_response_now(struct lws *wsi, int status, const char *body);
int http_conn_finish(HttpConn *c);

/* http-ws.c */
int http_ws_on_confirm_upgrade(HttpConn *c, const char *protocol);
int http_ws_on_established(HttpConn *c);
int http_ws_on_receive(HttpConn *c, const void *data, size_t size);
int http_ws_on_writeable(HttpConn *c);
int http_ws_on_peer_close(HttpConn *c);
void http_ws_on_closed(HttpConn *c);
