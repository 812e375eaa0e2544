/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Per-peer accounting of the HTTP server: how many connections one client
 * address holds and how many request body bytes they buffer together, so
 * that one peer cannot take the slots and the body budget everyone shares.
 *
 * A peer is an IPv4 address, an IPv6 /64 (what one host or customer usually
 * gets: single addresses cost an attacker nothing there) or all AF_UNIX
 * clients together. Connections hold a reference each (the first head in
 * http-listen.c, then the lws connection); the entry goes with the last. */
#include "http-internal.h"

#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct HttpPeer {
        HttpServer *server;
        HttpPeer *next, *prev;
        unsigned n_ref;    /* connections (head or lws), see above */
        size_t body_bytes; /* request body bytes buffered */
        int family;
        uint8_t addr[8];
};

static void peer_key(const struct sockaddr *sa, socklen_t len, int *ret_family, uint8_t ret_addr[static 8]) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *) sa;

        memset(ret_addr, 0, 8);
        if (sa && len >= (socklen_t) sizeof(struct sockaddr_in) && sa->sa_family == AF_INET) {
                *ret_family = AF_INET;
                memcpy(ret_addr, &((const struct sockaddr_in *) sa)->sin_addr, 4);
        } else if (sa && len >= (socklen_t) sizeof(struct sockaddr_in6) && sa->sa_family == AF_INET6) {
                if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
                        *ret_family = AF_INET;
                        memcpy(ret_addr, in6->sin6_addr.s6_addr + 12, 4);
                } else {
                        *ret_family = AF_INET6;
                        memcpy(ret_addr, in6->sin6_addr.s6_addr, 8); /* the /64 */
                }
        } else
                *ret_family = AF_UNIX; /* and anything else: one peer */
}

int http_peer_acquire(HttpServer *s, const struct sockaddr *sa, socklen_t len, HttpPeer **ret) {
        uint8_t addr[8];
        HttpPeer *p;
        int family;

        peer_key(sa, len, &family, addr);
        for (p = s->peers; p; p = p->next)
                if (p->family == family && memcmp(p->addr, addr, sizeof(addr)) == 0)
                        break;
        if (p) {
                if (p->n_ref >= s->peer_max_connections)
                        return -EBUSY;
                p->n_ref++;
                *ret = p;
                return 0;
        }

        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        *p = (HttpPeer) { .server = s, .n_ref = 1, .family = family, .next = s->peers };
        memcpy(p->addr, addr, sizeof(addr));
        if (s->peers)
                s->peers->prev = p;
        s->peers = p;
        *ret = p;
        return 0;
}

HttpPeer *http_peer_ref(HttpPeer *p) {
        if (p)
                p->n_ref++;
        return p;
}

HttpPeer *http_peer_unref(HttpPeer *p) {
        HttpServer *s;

        if (!p)
                return NULL;
        assert(p->n_ref > 0);
        if (--p->n_ref > 0)
                return NULL;

        s = p->server;
        if (p->prev)
                p->prev->next = p->next;
        else
                s->peers = p->next;
        if (p->next)
                p->next->prev = p->prev;
        free(p);
        return NULL;
}

int http_peer_charge_body(HttpPeer *p, HttpServer *s, size_t size) {
        if (size > HTTP_MAX_TOTAL_BODY_SIZE - s->body_bytes)
                return -ENOBUFS;
        if (p && size > HTTP_PEER_MAX_BODY_SIZE - p->body_bytes)
                return -EDQUOT;
        s->body_bytes += size;
        if (p)
                p->body_bytes += size;
        return 0;
}

void http_peer_release_body(HttpPeer *p, HttpServer *s, size_t size) {
        assert(s->body_bytes >= size);
        s->body_bytes -= size;
        if (p) {
                assert(p->body_bytes >= size);
                p->body_bytes -= size;
        }
}
