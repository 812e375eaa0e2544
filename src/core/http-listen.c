/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Listening sockets and the first request head of each connection, in
 * sd-event.
 *
 * A new connection is not handed to lws at once: its first request head
 * (request line + headers, up to HTTP_MAX_HEADER_SIZE) is looked at here
 * first, with MSG_PEEK and a deadline, and checked. Well-formed heads go to
 * lws untouched, still in the socket; the rest is answered here with a JSON
 * error and the connection closed. This is what makes an oversized head a 431
 * (lws 4.1.6 itself drops the connection without a word when a head overflows
 * its header buffer), a garbled request line a JSON 400 (lws answers those
 * with an HTML 403), an unknown method a 501, and a connection that sends
 * nothing, or too slowly, go away after HTTP_HEAD_TIMEOUT_USEC. Later
 * requests on a kept-alive connection are read by lws alone; see
 * http-request.c.
 *
 * Peeking rather than reading: lws can be given bytes already read
 * (lws_adopt_socket_vhost_readbuf()), but 4.1.6 then loops forever on
 * LWS_CALLBACK_HTTP_BODY_COMPLETION when a request body is in those bytes. */
#include "http-internal.h"
#include "string-util.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#define HTTP_HEAD_TIMEOUT_USEC (HTTP_HEAD_TIMEOUT_SEC * 1000U * 1000U)
/* After an error response: read and discard what the client still sends, so
 * that closing does not reset the connection before it read the response. */
#define HTTP_DRAIN_TIMEOUT_USEC (2U * 1000U * 1000U)
#define HTTP_DRAIN_MAX (4U * 1024U * 1024U)

/* Edge-triggered wakeups allowed before the head is complete: each one peeks
 * at up to HTTP_MAX_HEADER_SIZE bytes again. A client sending its head in
 * more pieces than this is dribbling on purpose. */
#define HTTP_HEAD_MAX_WAKEUPS 64U

#define ACCEPT_BURST 64U
#define ACCEPT_RESUME_USEC (100U * 1000U)

struct HttpListener {
        HttpServer *server;
        int fd;
        sd_event_source *source;
};

struct HttpHead {
        HttpServer *server;
        HttpHead *next, *prev;
        HttpPeer *peer;
        uint64_t started_usec;
        int fd;
        sd_event_source *io;
        sd_event_source *timer;
        size_t size;
        size_t scanned;
        unsigned wakeups;
        bool draining;
        size_t drained;
        char buf[HTTP_MAX_HEADER_SIZE];
};

/* keep_slot: the connection lives on in lws and keeps its place in
 * n_connections. */
static HttpHead *http_head_free_full(HttpHead *h, bool keep_slot) {
        HttpServer *s;

        if (!h)
                return NULL;

        s = h->server;
        if (h->prev)
                h->prev->next = h->next;
        else
                s->heads = h->next;
        if (h->next)
                h->next->prev = h->prev;
        if (!keep_slot)
                s->n_connections--;
        http_peer_unref(h->peer); /* the lws connection took its own */

        sd_event_source_disable_unref(h->io);
        sd_event_source_disable_unref(h->timer);
        safe_close(h->fd);
        free(h);
        return NULL;
}

HttpHead *http_head_free(HttpHead *h) {
        return http_head_free_full(h, false);
}

static bool is_tchar(char ch) {
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
                return true;
        return ch != 0 && strchr("!#$%&'*+-.^_`|~", ch);
}

static bool method_is_known(const char *m, size_t n) {
        /* What lws 4.1.6 parses; CONNECT it knows too, but for proxying. */
        static const char *const known[] = { "GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD" };

        for (size_t i = 0; i < ELEMENTSOF(known); i++)
                if (strlen(known[i]) == n && memcmp(known[i], m, n) == 0)
                        return true;
        return false;
}

/* Request line (without its LF): method SP origin-form-target SP HTTP-version.
 * Returns 0 or the HTTP status to refuse it with. */
static int http_request_line_check(const char *p, size_t n) {
        const char *le = p + n, *sp1, *sp2, *q;

        if (le > p && le[-1] == '\r')
                le--;

        sp1 = memchr(p, ' ', (size_t) (le - p));
        if (!sp1 || sp1 == p)
                return 400;
        for (q = p; q < sp1; q++)
                if (!is_tchar(*q))
                        return 400;

        sp2 = memchr(sp1 + 1, ' ', (size_t) (le - sp1 - 1));
        if (!sp2 || sp2 == sp1 + 1 || sp1[1] != '/')
                return 400;
        for (q = sp1 + 1; q < sp2; q++) {
                unsigned char ch = (unsigned char) *q;

                if (ch <= 0x20 || ch >= 0x7f)
                        return 400;
                if (ch == '%') {
                        int hi, lo;

                        if (sp2 - q < 3 || (hi = unhexchar(q[1])) < 0 || (lo = unhexchar(q[2])) < 0)
                                return 400;
                        /* lws hangs up on decoded control bytes */
                        if (hi * 16 + lo < 0x20 || hi * 16 + lo == 0x7f)
                                return 400;
                        q += 2;
                }
        }

        if (le - sp2 - 1 != 8 || memcmp(sp2 + 1, "HTTP/", 5) != 0 || sp2[7] != '.' ||
            sp2[6] < '0' || sp2[6] > '9' || sp2[8] < '0' || sp2[8] > '9')
                return 400;
        if (sp2[6] != '1' || (sp2[8] != '0' && sp2[8] != '1'))
                return 505;

        if (!method_is_known(p, (size_t) (sp1 - p)))
                return 501;

        return 0;
}

/* The start of a request line whose end has not arrived yet: refuse what
 * cannot become a request line at once rather than waiting for the deadline. */
static int http_request_line_prefix_check(const char *p, size_t n) {
        bool in_method = true;

        for (size_t i = 0; i < n; i++) {
                unsigned char ch = (unsigned char) p[i];

                if (ch == ' ')
                        in_method = false;
                else if (ch < 0x20 ? ch != '\r' : ch >= 0x7f)
                        return 400;
                else if (in_method && !is_tchar((char) ch))
                        return 400;
        }
        return 0;
}

/* Checks a complete head (ending in its empty line). Returns 0 or the HTTP
 * status to refuse it with. */
static int http_head_check(const char *p, size_t n) {
        const char *end = p + n, *eol, *le, *q;
        int r;

        if (memchr(p, 0, n))
                return 400;

        eol = memchr(p, '\n', n);
        if (!eol)
                return 400;
        r = http_request_line_check(p, (size_t) (eol - p));
        if (r != 0)
                return r;

        /* Header lines: name ":" value; no obsolete line folding. */
        for (p = eol + 1; p < end; p = eol + 1) {
                eol = memchr(p, '\n', (size_t) (end - p));
                if (!eol)
                        return 400;
                le = eol > p && eol[-1] == '\r' ? eol - 1 : eol;
                if (le == p)
                        break; /* the empty line */
                for (q = p; q < le && *q != ':'; q++)
                        if (!is_tchar(*q))
                                return 400;
                if (q == p || q == le)
                        return 400;
        }

        return 0;
}

/* Finds the end of the head (after "\n\n" or "\n\r\n"); 0 if not there yet. */
static size_t http_head_end(HttpHead *h) {
        size_t i = h->scanned > 2 ? h->scanned - 2 : 0;

        for (; i < h->size; i++) {
                if (h->buf[i] != '\n')
                        continue;
                if (i + 1 < h->size && h->buf[i + 1] == '\n')
                        return i + 2;
                if (i + 2 < h->size && h->buf[i + 1] == '\r' && h->buf[i + 2] == '\n')
                        return i + 3;
        }
        h->scanned = h->size;
        return 0;
}

static void http_head_drain(HttpHead *h);

static void http_head_refuse(HttpHead *h, int status) {
        _cleanup_free_ char *body = NULL;
        char response[512];
        uint64_t now;
        int n;

        body = http_error_body(status);
        n = snprintf(response, sizeof(response),
                     "HTTP/1.1 %i %s\r\n"
                     "Server: norn\r\n"
                     "Content-Type: application/json\r\n"
                     "Content-Length: %zu\r\n"
                     "Cache-Control: no-store\r\n"
                     "X-Content-Type-Options: nosniff\r\n"
                     "Connection: close\r\n"
                     "\r\n"
                     "%s",
                     status, http_status_reason(status), body ? strlen(body) : 2, body ?: "{}");
        if (n < 0 || (size_t) n >= sizeof(response)) {
                http_head_free(h);
                return;
        }

        log_debug("Refusing HTTP request with %i.", status);

        /* A fresh socket's send buffer takes this at once; if not, the client
         * is not worth waiting for. */
        if (send(h->fd, response, (size_t) n, MSG_NOSIGNAL | MSG_DONTWAIT) != n ||
            shutdown(h->fd, SHUT_WR) < 0 ||
            sd_event_now(h->server->event, CLOCK_MONOTONIC, &now) < 0 ||
            sd_event_source_set_time(h->timer, now + HTTP_DRAIN_TIMEOUT_USEC) < 0 ||
            /* again: after firing (the head timeout) a oneshot source is off */
            sd_event_source_set_enabled(h->timer, SD_EVENT_ONESHOT) < 0) {
                http_head_free(h);
                return;
        }

        h->draining = true;
        http_head_drain(h);
}

static void http_head_drain(HttpHead *h) {
        for (;;) {
                ssize_t n = recv(h->fd, h->buf, sizeof(h->buf), MSG_DONTWAIT);

                if (n < 0 && (errno == EAGAIN || errno == EINTR))
                        return;
                if (n <= 0) {
                        http_head_free(h); /* EOF or error: done */
                        return;
                }
                h->drained += (size_t) n;
                if (h->drained > HTTP_DRAIN_MAX) {
                        http_head_free(h);
                        return;
                }
        }
}

static int http_head_on_io(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        HttpHead *h = userdata;
        HttpServer *s = h->server;
        size_t end;
        ssize_t n;
        int status;

        if (h->draining) {
                http_head_drain(h);
                return 0;
        }

        /* Edge-triggered: woken once per arrival, the bytes stay queued. */
        n = recv(h->fd, h->buf, sizeof(h->buf), MSG_PEEK | MSG_DONTWAIT);
        if (n < 0) {
                if (errno == EAGAIN || errno == EINTR)
                        return 0;
                log_debug_errno(-errno, "Failed to read HTTP request head: %m");
                http_head_free(h);
                return 0;
        }
        if (n == 0) {
                http_head_free(h);
                return 0;
        }
        h->size = (size_t) n;

        end = http_head_end(h);
        if (end == 0) {
                const char *eol = memchr(h->buf, '\n', h->size);

                status = eol ? http_request_line_check(h->buf, (size_t) (eol - h->buf))
                             : http_request_line_prefix_check(h->buf, h->size);
                if (status == 0 && h->size == sizeof(h->buf))
                        status = 431;
                if (status == 0 && ++h->wakeups > HTTP_HEAD_MAX_WAKEUPS)
                        status = 408;
                if (status > 0)
                        http_head_refuse(h, status);
                return 0;
        }

        status = http_head_check(h->buf, end);
        if (status > 0) {
                http_head_refuse(h, status);
                return 0;
        }

        /* Hand the socket to lws, the head still unread in it. */
        h->io = sd_event_source_disable_unref(h->io);
        http_head_free_full(h, http_server_adopt(s, TAKE_FD(h->fd), h->peer, h->started_usec));

        /* lws registered new uv watchers: let libuv apply them. */
        uv_embed_kick(s->uv);
        return 0;
}

static int http_head_on_timer(sd_event_source *es, uint64_t usec, void *userdata) {
        HttpHead *h = userdata;

        if (h->draining || h->size == 0)
                http_head_free(h); /* silent idle connection: just close */
        else
                http_head_refuse(h, 408);
        return 0;
}

int http_head_new(HttpServer *s, int fd, HttpPeer *peer) {
        _cleanup_close_ int fd_close = fd;
        HttpHead *h;
        uint64_t now;
        int r;

        r = sd_event_now(s->event, CLOCK_MONOTONIC, &now);
        if (r < 0) {
                http_peer_unref(peer);
                return r;
        }
        h = malloc(sizeof(*h));
        if (!h) {
                http_peer_unref(peer);
                return -ENOMEM;
        }
        *h = (HttpHead) {
                .server = s,
                .peer = peer,
                .started_usec = now,
                .fd = TAKE_FD(fd_close),
                .next = s->heads,
        };
        if (s->heads)
                s->heads->prev = h;
        s->heads = h;
        s->n_connections++;

        r = sd_event_add_io(s->event, &h->io, h->fd, EPOLLIN | EPOLLET, http_head_on_io, h);
        if (r < 0)
                goto fail;
        r = sd_event_add_time(s->event, &h->timer, CLOCK_MONOTONIC, now + HTTP_HEAD_TIMEOUT_USEC,
                              10 * 1000, http_head_on_timer, h);
        if (r < 0)
                goto fail;
        return 0;

fail:
        http_head_free(h);
        return r;
}

HttpListener *http_listener_free(HttpListener *l) {
        if (!l)
                return NULL;
        sd_event_source_disable_unref(l->source);
        safe_close(l->fd);
        free(l);
        return NULL;
}

static void http_server_pause_accept(HttpServer *s, int error) {
        uint64_t now;

        /* A notable event: the daemon runs out of fds or memory. */
        log_warning_errno(error, "Failed to accept connection, pausing for 100ms: %m");

        for (size_t i = 0; i < s->n_listeners; i++)
                (void) sd_event_source_set_enabled(s->listeners[i]->source, SD_EVENT_OFF);

        if (sd_event_now(s->event, CLOCK_MONOTONIC, &now) < 0 ||
            sd_event_source_set_time(s->resume_accept, now + ACCEPT_RESUME_USEC) < 0 ||
            sd_event_source_set_enabled(s->resume_accept, SD_EVENT_ONESHOT) < 0)
                /* Without the timer we would never listen again: spin instead. */
                for (size_t i = 0; i < s->n_listeners; i++)
                        (void) sd_event_source_set_enabled(s->listeners[i]->source, SD_EVENT_ON);
}

static int http_server_on_resume_accept(sd_event_source *es, uint64_t usec, void *userdata) {
        HttpServer *s = userdata;

        for (size_t i = 0; i < s->n_listeners; i++)
                (void) sd_event_source_set_enabled(s->listeners[i]->source, SD_EVENT_ON);
        return 0;
}

static int http_listener_on_io(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        HttpListener *l = userdata;
        HttpServer *s = l->server;

        for (unsigned i = 0; i < ACCEPT_BURST; i++) {
                struct sockaddr_storage sa;
                socklen_t salen = sizeof(sa);
                HttpPeer *peer;
                int cfd, one = 1, r;

                cfd = accept4(fd, (struct sockaddr *) &sa, &salen, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (cfd < 0) {
                        int e = errno;

                        if (e == EAGAIN || e == EINTR)
                                break;
                        if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
                                http_server_pause_accept(s, -e);
                                break;
                        }
                        /* ECONNABORTED, EPROTO, network errors: that one
                         * connection is gone, the next may be fine. */
                        log_debug_errno(-e, "accept4() failed: %m");
                        continue;
                }

                if (s->n_connections >= HTTP_MAX_CONNECTIONS) {
                        log_debug("Connection limit (%u) reached, refusing connection.",
                                  HTTP_MAX_CONNECTIONS);
                        safe_close(cfd);
                        continue;
                }

                r = http_peer_acquire(s, (struct sockaddr *) &sa, salen, &peer);
                if (r < 0) {
                        log_debug_errno(r, "Refusing connection: %s",
                                        r == -EBUSY ? "its peer holds too many connections already"
                                                    : "out of memory");
                        safe_close(cfd);
                        continue;
                }

                /* Headers and body go out in separate writes: no Nagle
                 * delay. Fails harmlessly on AF_UNIX. */
                (void) setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

                r = http_head_new(s, cfd, peer);
                if (r < 0)
                        log_debug_errno(r, "Failed to set up connection: %m");
        }

        return 0;
}

int http_listener_add(HttpServer *s, int fd) {
        _cleanup_close_ int fd_close = fd;
        HttpListener *l, **a;
        int flags, r;

        if (!s->resume_accept) {
                r = sd_event_add_time(s->event, &s->resume_accept, CLOCK_MONOTONIC, 0, 10 * 1000,
                                      http_server_on_resume_accept, s);
                if (r < 0)
                        return r;
                r = sd_event_source_set_enabled(s->resume_accept, SD_EVENT_OFF);
                if (r < 0)
                        return r;
        }

        flags = fcntl(fd, F_GETFL);
        if (flags < 0)
                return -errno;
        if (!(flags & O_NONBLOCK) && fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
                return -errno;

        a = realloc(s->listeners, (s->n_listeners + 1) * sizeof(*a));
        if (!a)
                return -ENOMEM;
        s->listeners = a;

        l = calloc(1, sizeof(*l));
        if (!l)
                return -ENOMEM;
        l->server = s;
        l->fd = TAKE_FD(fd_close);

        r = sd_event_add_io(s->event, &l->source, l->fd, EPOLLIN, http_listener_on_io, l);
        if (r < 0) {
                http_listener_free(l);
                return log_debug_errno(r, "Failed to watch listening socket: %m");
        }
        (void) sd_event_source_set_description(l->source, "http-listen");

        s->listeners[s->n_listeners++] = l;
        return 0;
}

int http_server_get_port(HttpServer *s, uint16_t *ret) {
        union {
                struct sockaddr sa;
                struct sockaddr_in in;
                struct sockaddr_in6 in6;
        } sa = {};
        socklen_t salen = sizeof(sa);

        if (!s || !ret)
                return -EINVAL;
        if (s->n_listeners == 0)
                return -ENOENT;
        if (getsockname(s->listeners[0]->fd, &sa.sa, &salen) < 0)
                return -errno;

        if (sa.sa.sa_family == AF_INET)
                *ret = ntohs(sa.in.sin_port);
        else if (sa.sa.sa_family == AF_INET6)
                *ret = ntohs(sa.in6.sin6_port);
        else
                return -EAFNOSUPPORT;
        return 0;
}
