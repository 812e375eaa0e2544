/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The server: lws context on the embedded uv loop, adoption of connections
 * into lws, the lws protocol callback. Listening and the first request head
 * are in http-listen.c, HTTP transactions in http-request.c, WebSocket
 * clients in http-ws.c. */
#include "http-internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <uv.h>

/* What lws may store of one request head (target, header values, names and
 * values of unknown headers), allocated per connection while a head is being
 * parsed. It only matters for the second and later requests on a kept-alive
 * connection (the first head is checked in http-listen.c): above it lws 4.1.6
 * drops the connection without a response; below it http-request.c answers
 * 431 when the headers it can see exceed HTTP_MAX_HEADER_SIZE. */
#define LWS_HEADER_DATA_MAX (12U * 1024U)

static void http_lws_log(int level, const char *line) {
        size_t n = strlen(line);

        /* lws lines end in a newline; the journal does not want it. */
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
                n--;
        log_debug("lws: %.*s", (int) n, line);
}

static HttpConn *http_conn_free(HttpConn *c) {
        if (!c)
                return NULL;
        http_ws_on_closed(c);
        http_conn_reset_request(c);
        http_peer_unref(c->peer);
        free(c);
        return NULL;
}

static int http_lws_callback(struct lws *wsi, enum lws_callback_reasons reason,
                             void *user, void *in, size_t len) {
        HttpConn *c;

        if (!wsi)
                return 0;

        c = lws_get_opaque_user_data(wsi);

        /* lws' own wsis (the cancel pipe, vhost init) carry no HttpConn:
         * nothing to do for them. */
        if (!c)
                return 0;
        c->wsi = wsi;

        switch (reason) {

        case LWS_CALLBACK_HTTP:
                return http_conn_on_http(c);

        case LWS_CALLBACK_HTTP_BODY:
                return http_conn_on_body(c, in, len);

        case LWS_CALLBACK_HTTP_BODY_COMPLETION:
                return http_conn_on_body_complete(c);

        case LWS_CALLBACK_HTTP_WRITEABLE:
                return http_conn_on_writeable(c);

        case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
                return http_ws_on_confirm_upgrade(c, in);

        case LWS_CALLBACK_ESTABLISHED:
                return http_ws_on_established(c);

        case LWS_CALLBACK_RECEIVE:
                return http_ws_on_receive(c, in, len);

        case LWS_CALLBACK_SERVER_WRITEABLE:
                return http_ws_on_writeable(c);

        case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
                return http_ws_on_peer_close(c);

        case LWS_CALLBACK_CLOSED:
                http_ws_on_closed(c);
                return 0;

        case LWS_CALLBACK_WSI_DESTROY: {
                HttpServer *s = c->server;

                lws_set_opaque_user_data(wsi, NULL);
                if (s->adopting == c)
                        /* Still inside the adoption call, which cleans up. */
                        s->adopting_destroyed = true;
                else
                        s->n_connections--;
                http_conn_free(c);
                return 0;
        }

        default:
                return 0;
        }
}

static const struct lws_protocols http_protocols[] = {
        {
                .name = "norn",
                .callback = http_lws_callback,
                .per_session_data_size = 0,
                .rx_buffer_size = 16 * 1024,
        },
        { 0 }
};

/* WebSocket keepalive: ping after 30 s of silence, hang up after 75 s. */
static const lws_retry_bo_t http_ws_idle_policy = {
        .secs_since_valid_ping = 30,
        .secs_since_valid_hangup = 75,
};

bool http_server_adopt(HttpServer *s, int fd, HttpPeer *peer, uint64_t started_usec) {
        HttpConn *c;
        struct lws *wsi;

        c = calloc(1, sizeof(*c));
        if (!c) {
                log_oom();
                safe_close(fd);
                return false;
        }
        c->server = s;
        c->hup_fd = -EBADF;
        c->peer = http_peer_ref(peer);
        c->first_request_usec = started_usec;

        s->adopting = c;
        s->adopting_destroyed = false;
        wsi = lws_adopt_descriptor_vhost_via_info(&(lws_adopt_desc_t) {
                .vh = s->vhost,
                .type = LWS_ADOPT_SOCKET | LWS_ADOPT_HTTP,
                .fd.sockfd = fd,
                .opaque = c,
        });
        s->adopting = NULL;

        if (s->adopting_destroyed)
                return false; /* c went with the wsi */
        if (!wsi) {
                /* lws closed fd. */
                log_debug("lws did not adopt connection.");
                http_conn_free(c);
                return false;
        }

        c->wsi = wsi;
        return true;
}

int http_server_add_listen_fd(HttpServer *s, int fd) {
        if (!s || fd < 0) {
                safe_close(fd);
                return -EINVAL;
        }
        return http_listener_add(s, fd);
}

int http_server_listen(HttpServer *s, const char *address, uint16_t port) {
        union {
                struct sockaddr sa;
                struct sockaddr_in in;
                struct sockaddr_in6 in6;
        } sa = {};
        _cleanup_close_ int fd = -EBADF;
        socklen_t salen;
        int one = 1;

        if (!s || !address)
                return -EINVAL;

        if (inet_pton(AF_INET, address, &sa.in.sin_addr) == 1) {
                sa.in.sin_family = AF_INET;
                sa.in.sin_port = htons(port);
                salen = sizeof(sa.in);
        } else if (inet_pton(AF_INET6, address, &sa.in6.sin6_addr) == 1) {
                sa.in6.sin6_family = AF_INET6;
                sa.in6.sin6_port = htons(port);
                salen = sizeof(sa.in6);
        } else
                return log_debug_errno(-EINVAL, "Not an IP address literal: %s", address);

        fd = socket(sa.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
                return -errno;
        if (sa.sa.sa_family == AF_INET6 &&
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
                return -errno;
        if (bind(fd, &sa.sa, salen) < 0)
                return log_debug_errno(-errno, "Failed to bind %s:%u: %m", address, port);
        if (listen(fd, SOMAXCONN) < 0)
                return -errno;

        return http_listener_add(s, TAKE_FD(fd));
}

unsigned http_server_n_connections(HttpServer *s) {
        return s ? s->n_connections : 0;
}

void http_server_set_limits(HttpServer *s, uint64_t body_timeout_usec, unsigned peer_max_connections) {
        if (!s)
                return;
        if (body_timeout_usec > 0)
                s->body_timeout_usec = body_timeout_usec;
        if (peer_max_connections > 0)
                s->peer_max_connections = peer_max_connections;
}

int http_server_new(sd_event *event, const HttpServerCallbacks *cb, void *userdata, HttpServer **ret) {
        _cleanup_(http_server_freep) HttpServer *s = NULL;
        struct lws_context_creation_info info;
        void *foreign_loops[1];
        int r;

        if (!event || !ret)
                return -EINVAL;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->event = sd_event_ref(event);
        if (cb)
                s->cb = *cb;
        s->userdata = userdata;
        s->body_timeout_usec = HTTP_BODY_TIMEOUT_SEC * 1000U * 1000U;
        s->peer_max_connections = HTTP_PEER_MAX_CONNECTIONS;

        r = uv_embed_new(event, &s->uv);
        if (r < 0)
                return r;

        /* lws logging is process-wide; route it to ours, at debug. */
        lws_set_log_level(log_get_max_level() >= LOG_DEBUG ? LLL_ERR | LLL_WARN | LLL_NOTICE : 0,
                          http_lws_log);

        foreign_loops[0] = uv_embed_loop(s->uv);
        info = (struct lws_context_creation_info) {
                .options = LWS_SERVER_OPTION_LIBUV |
                           LWS_SERVER_OPTION_EXPLICIT_VHOSTS |
                           LWS_SERVER_OPTION_UV_NO_SIGSEGV_SIGFPE_SPIN |
                           LWS_SERVER_OPTION_VALIDATE_UTF8,
                .foreign_loops = foreign_loops,
                .user = s,
                .pcontext = &s->context,
                .max_http_header_data2 = LWS_HEADER_DATA_MAX,
                .max_http_header_pool = HTTP_MAX_CONNECTIONS,
                .fd_limit_per_thread = HTTP_MAX_CONNECTIONS + 64,
                .server_string = "norn",
                .gid = -1,
                .uid = -1,
        };

        s->context = lws_create_context(&info);
        if (!s->context)
                return log_debug_errno(-EIO, "Failed to create lws context.");

        info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
        info.protocols = http_protocols;
        info.vhost_name = "norn";
        info.keepalive_timeout = 10;    /* idle kept-alive connections */
        info.timeout_secs = 20;         /* waiting on the peer, e.g. for a body */
        info.timeout_secs_ah_idle = 10; /* later request heads must be in by then */
        info.retry_and_idle_policy = &http_ws_idle_policy;

        s->vhost = lws_create_vhost(s->context, &info);
        if (!s->vhost)
                return log_debug_errno(-EIO, "Failed to create lws vhost.");

        /* lws set up its uv handles outside of any uv callback. */
        uv_embed_kick(s->uv);

        *ret = TAKE_PTR(s);
        return 0;
}

HttpServer *http_server_free(HttpServer *s) {
        if (!s)
                return NULL;

        for (size_t i = 0; i < s->n_listeners; i++)
                http_listener_free(s->listeners[i]);
        s->listeners = mfree(s->listeners);
        s->n_listeners = 0;
        s->resume_accept = sd_event_source_disable_unref(s->resume_accept);
        while (s->heads)
                http_head_free(s->heads);

        if (s->context) {
                /* With a foreign loop, lws 4.1.6 destroys in two steps: the
                 * first call closes every connection (ws_closed is called for
                 * the WebSocket clients) and starts closing its uv handles;
                 * once the loop ran their close callbacks, a second call frees
                 * the context, and lws clears s->context (info.pcontext). */
                lws_context_destroy(s->context);
                for (unsigned i = 0; i < 1000 && uv_loop_alive(uv_embed_loop(s->uv)); i++)
                        (void) uv_embed_run(s->uv);
                if (s->context)
                        lws_context_destroy(s->context);
                for (unsigned i = 0; i < 1000 && uv_loop_alive(uv_embed_loop(s->uv)); i++)
                        (void) uv_embed_run(s->uv);
                if (s->context)
                        log_debug("lws context destruction did not finish.");
        }

        s->uv = uv_embed_free(s->uv);
        sd_event_unref(s->event);
        free(s);
        return NULL;
}
