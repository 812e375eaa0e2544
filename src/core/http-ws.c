/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* WebSocket clients of /ws: upgrade, bounded outgoing queue, message assembly. */
#include "http-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Not in the public enum lws_write_protocol of lws 4.1.6 ("handled by
 * lws_close_reason()"), but what lws itself writes close frames with. */
#define HTTP_WS_WRITE_CLOSE ((enum lws_write_protocol) 4)

typedef struct HttpWsFrame {
        struct HttpWsFrame *next;
        size_t size;
        char data[]; /* LWS_PRE bytes of headroom, then the payload */
} HttpWsFrame;

static void http_ws_client_drop_queue(HttpWsClient *c) {
        c->server->ws_queued_bytes -= c->queue_bytes;
        while (c->queue_head) {
                HttpWsFrame *f = c->queue_head;

                c->queue_head = f->next;
                free(f);
        }
        c->queue_tail = NULL;
        c->queue_bytes = 0;
        c->queue_len = 0;
}

static HttpWsClient *http_ws_client_free(HttpWsClient *c) {
        if (!c)
                return NULL;
        http_ws_client_drop_queue(c);
        free(c->rx);
        free(c->refusal_body);
        free(c);
        return NULL;
}

int http_ws_on_confirm_upgrade(HttpConn *conn, const char *protocol) {
        HttpServer *s = conn->server;
        HttpWsClient *c;
        HttpRequest req;
        int r;

        http_conn_reset_request(conn);

        r = http_conn_fill_request(conn, &req);
        if (r == -ENOMEM)
                return -1;
        if (r < 0)
                return -1; /* no request line lws accepted: just hang up */

        /* Answered here, with a body, then lws finishes the transaction. */
        if (!protocol || strcasecmp(protocol, "websocket") != 0)
                return http_write_response_now(conn->wsi, 400, NULL) < 0 ? -1 : 1;
        if (!streq(conn->path, "/ws"))
                return http_write_response_now(conn->wsi, 404, NULL) < 0 ? -1 : 1;
        if (conn->ws)
                return -1; /* a second upgrade on one connection? */

        c = calloc(1, sizeof(*c));
        if (!c)
                return -1;
        c->server = s;
        c->conn = conn;

        if (s->cb.ws_connected) {
                r = s->cb.ws_connected(c, &req, s->userdata);
                if (r < 0) {
                        _cleanup_free_ char *body = TAKE_PTR(c->refusal_body);
                        int status = c->refusal_status ?: r == -EACCES ? 401 : r == -EINVAL ? 400 : 403;

                        log_debug_errno(r, "WebSocket client refused with %i: %m", status);
                        http_ws_client_free(c);
                        http_conn_reset_request(conn);
                        return http_write_response_now(conn->wsi, status, body) < 0 ? -1 : 1;
                }
        }

        http_conn_reset_request(conn);
        conn->ws = c;
        s->n_ws_clients++;
        return 0;
}

/* Closing from our side, politely. lws 4.1.6 has no call for that outside of
 * LWS_CALLBACK_RECEIVE: returning nonzero from LWS_CALLBACK_SERVER_WRITEABLE
 * makes it treat the socket as failed, and a timeout kills it, both without a
 * close frame. So the close frame is written from the writeable callback like
 * any other frame, and the peer's answering close (see
 * http_ws_on_peer_close()) or the timeout ends the connection. */
static void http_ws_start_close(HttpWsClient *c) {
        /* Also covers a client that does not read: no writeable callback. */
        lws_set_timeout(c->conn->wsi, PENDING_TIMEOUT_CLOSE_SEND, 5);
        lws_callback_on_writable(c->conn->wsi);
        uv_embed_kick(c->server->uv);
}

int http_ws_on_established(HttpConn *conn) {
        HttpWsClient *c = conn->ws;

        if (!c)
                return -1;
        c->established = true;
        if (c->closing)
                http_ws_start_close(c); /* closed from within ws_connected */
        else if (c->queue_head)
                lws_callback_on_writable(conn->wsi);
        return 0;
}

int http_ws_on_receive(HttpConn *conn, const void *data, size_t size) {
        HttpWsClient *c = conn->ws;
        HttpServer *s = conn->server;
        char *p;

        if (!c)
                return -1;
        if (c->closing)
                return 0;

        if (lws_is_first_fragment(conn->wsi)) {
                c->rx_size = 0;
                c->rx_binary = lws_frame_is_binary(conn->wsi);
        }

        /* Also what the frame header announces: a huge frame is refused on
         * its first bytes, not after 64 KiB of it. */
        if (size > HTTP_WS_MAX_MESSAGE_SIZE - c->rx_size ||
            lws_remaining_packet_payload(conn->wsi) > HTTP_WS_MAX_MESSAGE_SIZE - c->rx_size - size) {
                lws_close_reason(conn->wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, NULL, 0);
                return -1;
        }

        p = realloc(c->rx, c->rx_size + size + 1);
        if (!p)
                return -1;
        c->rx = p;
        memcpy(c->rx + c->rx_size, data, size);
        c->rx_size += size;
        c->rx[c->rx_size] = 0;

        if (!lws_is_final_fragment(conn->wsi) || lws_remaining_packet_payload(conn->wsi) > 0)
                return 0;

        if (c->rx_binary) {
                lws_close_reason(conn->wsi, LWS_CLOSE_STATUS_UNACCEPTABLE_OPCODE, NULL, 0);
                return -1;
        }

        if (s->cb.ws_message)
                s->cb.ws_message(c, c->rx, c->rx_size, s->userdata);

        /* Do not keep a large buffer around for every idle client. */
        if (c->rx_size > 4096)
                c->rx = mfree(c->rx);
        c->rx_size = 0;
        return 0;
}

int http_ws_on_writeable(HttpConn *conn) {
        HttpWsClient *c = conn->ws;
        HttpWsFrame *f;

        if (!c)
                return -1;

        if (c->closing) {
                uint8_t frame[LWS_PRE + 2 + HTTP_WS_CLOSE_REASON_MAX];
                size_t n = 2 + c->close_reason_size;

                if (c->close_sent)
                        return 0;
                frame[LWS_PRE] = (uint8_t) (c->close_status >> 8);
                frame[LWS_PRE + 1] = (uint8_t) c->close_status;
                memcpy(frame + LWS_PRE + 2, c->close_reason, c->close_reason_size);
                if (lws_write(conn->wsi, frame + LWS_PRE, n, HTTP_WS_WRITE_CLOSE) < (int) n)
                        return -1;
                c->close_sent = true;
                lws_set_timeout(conn->wsi, PENDING_TIMEOUT_CLOSE_ACK, 5);
                return 0;
        }

        f = c->queue_head;
        if (!f)
                return 0;

        if (lws_write(conn->wsi, (uint8_t *) f->data + LWS_PRE, f->size, LWS_WRITE_TEXT) < (int) f->size)
                return -1;

        c->queue_head = f->next;
        if (!c->queue_head)
                c->queue_tail = NULL;
        c->queue_bytes -= f->size;
        c->queue_len--;
        c->server->ws_queued_bytes -= f->size;
        free(f);

        if (c->queue_head)
                lws_callback_on_writable(conn->wsi);
        return 0;
}

/* The peer sent a close frame: nonzero means hang up without answering it,
 * which is right when it answers ours. */
int http_ws_on_peer_close(HttpConn *conn) {
        return conn->ws && conn->ws->close_sent;
}

/* The wsi is going away (closed, handshake failed, or server freed). */
void http_ws_on_closed(HttpConn *conn) {
        HttpWsClient *c = conn->ws;
        HttpServer *s = conn->server;

        if (!c)
                return;

        conn->ws = NULL;
        s->n_ws_clients--;
        c->conn = NULL;
        if (s->cb.ws_closed)
                s->cb.ws_closed(c, s->userdata);
        http_ws_client_free(c);
}

int http_ws_client_send(HttpWsClient *c, const char *text, size_t size) {
        HttpWsFrame *f;

        if (!c || (!text && size > 0))
                return -EINVAL;
        if (c->closing || !c->conn)
                return -ECONNRESET;
        if (c->queue_len >= HTTP_WS_QUEUE_MAX_FRAMES ||
            size > HTTP_WS_QUEUE_MAX_BYTES - c->queue_bytes ||
            size > HTTP_WS_QUEUE_TOTAL_MAX_BYTES - c->server->ws_queued_bytes)
                return -ENOBUFS;

        f = malloc(sizeof(*f) + LWS_PRE + size);
        if (!f)
                return -ENOMEM;
        f->next = NULL;
        f->size = size;
        if (size > 0)
                memcpy(f->data + LWS_PRE, text, size);

        if (c->queue_tail)
                c->queue_tail->next = f;
        else
                c->queue_head = f;
        c->queue_tail = f;
        c->queue_bytes += size;
        c->queue_len++;
        c->server->ws_queued_bytes += size;

        if (c->established) {
                lws_callback_on_writable(c->conn->wsi);
                uv_embed_kick(c->server->uv);
        }
        return 0;
}

void http_ws_client_close(HttpWsClient *c) {
        http_ws_client_close_with(c, LWS_CLOSE_STATUS_NORMAL, NULL);
}

void http_ws_client_close_with(HttpWsClient *c, int status, const char *reason) {
        size_t n = reason ? strlen(reason) : 0;

        if (!c || c->closing || !c->conn)
                return;

        c->closing = true;
        c->close_status = status >= 1000 && status <= 4999 ? status : LWS_CLOSE_STATUS_NORMAL;
        /* Cut at a UTF-8 character boundary: the reason must stay valid. */
        if (n > HTTP_WS_CLOSE_REASON_MAX) {
                n = HTTP_WS_CLOSE_REASON_MAX;
                while (n > 0 && ((uint8_t) reason[n] & 0xc0) == 0x80)
                        n--;
        }
        if (n > 0)
                memcpy(c->close_reason, reason, n);
        c->close_reason_size = n;
        http_ws_client_drop_queue(c);

        if (c->established)
                http_ws_start_close(c);
}

void *http_ws_client_get_userdata(HttpWsClient *c) {
        return c ? c->userdata : NULL;
}

void http_ws_client_set_userdata(HttpWsClient *c, void *u) {
        if (c)
                c->userdata = u;
}

unsigned http_server_n_ws_clients(HttpServer *s) {
        return s ? s->n_ws_clients : 0;
}

bool http_ws_client_is_closing(HttpWsClient *c) {
        return !c || c->closing || !c->conn;
}

bool http_ws_client_congested(HttpWsClient *c) {
        if (!c)
                return true;
        return c->queue_bytes > HTTP_WS_QUEUE_MAX_BYTES / 2 ||
               c->queue_len > HTTP_WS_QUEUE_MAX_FRAMES * 3 / 4 ||
               c->server->ws_queued_bytes > HTTP_WS_QUEUE_TOTAL_MAX_BYTES / 2;
}

void http_ws_client_refuse(HttpWsClient *c, int status, json_t *body) {
        if (!c) {
                json_decref(body);
                return;
        }
        c->refusal_status = status >= 400 && status <= 599 ? status : 403;
        c->refusal_body = mfree(c->refusal_body);
        if (body)
                c->refusal_body = json_dumps(body, JSON_COMPACT);
        json_decref(body);
}
