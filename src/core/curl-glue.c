/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/epoll.h>

#include "curl-glue.h"
#include "log.h"

typedef struct CurlTransfer CurlTransfer;
typedef struct CurlSocket CurlSocket;

/* One easy handle on the multi handle; found again through CURLOPT_PRIVATE. */
struct CurlTransfer {
        CurlGlue *glue;
        CURL *easy;
        CurlDoneCallback cb;
        void *userdata;
        CurlTransfer *prev, *next;
};

/* One socket curl asked us to watch; curl keeps it as the socket's "socketp"
 * (curl_multi_assign()), so lookups cost nothing. */
struct CurlSocket {
        CurlGlue *glue;
        curl_socket_t fd;
        int what;               /* CURL_POLL_* curl last asked for */
        sd_event_source *source;
        CurlSocket *prev, *next;
};

struct CurlGlue {
        sd_event *event;
        CURLM *multi;
        sd_event_source *timer;
        CurlTransfer *transfers;
        CurlSocket *sockets;
        unsigned n_transfers;
        unsigned dispatching;   /* > 0 while we are handing out results */
        bool free_requested;    /* curl_glue_free() was called from a callback */
        bool global_init;
};

#define LIST_PREPEND(head, item)                 \
        do {                                     \
                (item)->prev = NULL;             \
                (item)->next = (head);           \
                if (head)                        \
                        (head)->prev = (item);   \
                (head) = (item);                 \
        } while (0)

#define LIST_REMOVE(head, item)                          \
        do {                                             \
                if ((item)->next)                        \
                        (item)->next->prev = (item)->prev; \
                if ((item)->prev)                        \
                        (item)->prev->next = (item)->next; \
                else                                     \
                        (head) = (item)->next;           \
                (item)->prev = (item)->next = NULL;      \
        } while (0)

static void curl_socket_free(CurlSocket *s) {
        if (!s)
                return;
        LIST_REMOVE(s->glue->sockets, s);
        sd_event_source_disable_unref(s->source);
        free(s);
}

static void curl_transfer_detach(CurlTransfer *t) {
        CurlGlue *g = t->glue;

        (void) curl_multi_remove_handle(g->multi, t->easy);
        (void) curl_easy_setopt(t->easy, CURLOPT_PRIVATE, NULL);
        LIST_REMOVE(g->transfers, t);
        g->n_transfers--;
        free(t);
}

static CurlTransfer *curl_transfer_of(CurlGlue *g, CURL *easy) {
        char *p = NULL;
        CurlTransfer *t;

        if (curl_easy_getinfo(easy, CURLINFO_PRIVATE, &p) != CURLE_OK || !p)
                return NULL;
        t = (CurlTransfer *) p;
        return t->glue == g && t->easy == easy ? t : NULL;
}

static void curl_glue_destroy(CurlGlue *g) {
        /* Stop curl from calling back while we take things down, drop our io
         * sources while their fds are still open (curl closes them in
         * curl_multi_cleanup()), then let curl close its connections. */
        if (g->multi) {
                (void) curl_multi_setopt(g->multi, CURLMOPT_SOCKETFUNCTION, NULL);
                (void) curl_multi_setopt(g->multi, CURLMOPT_TIMERFUNCTION, NULL);
        }
        while (g->sockets)
                curl_socket_free(g->sockets);
        if (g->multi)
                (void) curl_multi_cleanup(g->multi);
        sd_event_source_disable_unref(g->timer);
        sd_event_unref(g->event);
        if (g->global_init)
                curl_global_cleanup();
        free(g);
}

/* Run curl on one socket (or on its timeout), then hand out whatever
 * finished. g may be gone when this returns. */
static void curl_glue_process(CurlGlue *g, curl_socket_t fd, int ev_bitmask) {
        int running = 0;
        CURLMcode mc;

        g->dispatching++;

        mc = curl_multi_socket_action(g->multi, fd, ev_bitmask, &running);
        if (mc != CURLM_OK)
                log_debug("curl_multi_socket_action() failed: %s", curl_multi_strerror(mc));

        while (!g->free_requested) {
                CurlDoneCallback cb;
                CurlTransfer *t;
                CURLcode result;
                void *userdata;
                CURLMsg *msg;
                CURL *easy;
                int left;

                msg = curl_multi_info_read(g->multi, &left);
                if (!msg)
                        break;
                if (msg->msg != CURLMSG_DONE)
                        continue;

                /* msg is invalid once the handle is removed: copy first. */
                easy = msg->easy_handle;
                result = msg->data.result;

                t = curl_transfer_of(g, easy);
                if (!t) {
                        (void) curl_multi_remove_handle(g->multi, easy);
                        continue;
                }

                cb = t->cb;
                userdata = t->userdata;
                curl_transfer_detach(t);

                if (cb)
                        cb(g, easy, result, userdata);
        }

        g->dispatching--;
        if (g->dispatching == 0 && g->free_requested)
                curl_glue_destroy(g);
}

static int curl_glue_on_io(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        CurlSocket *s = userdata;
        int ev = 0;

        if (revents & EPOLLIN)
                ev |= CURL_CSELECT_IN;
        if (revents & EPOLLOUT)
                ev |= CURL_CSELECT_OUT;
        if (revents & (EPOLLERR | EPOLLHUP)) {
                /* Let curl run what it waits for and find the error itself. */
                if (s->what & CURL_POLL_IN)
                        ev |= CURL_CSELECT_IN;
                if (s->what & CURL_POLL_OUT)
                        ev |= CURL_CSELECT_OUT;
                if (revents & EPOLLERR)
                        ev |= CURL_CSELECT_ERR;
        }

        /* s may be freed by curl (CURL_POLL_REMOVE) during this call. */
        curl_glue_process(s->glue, fd, ev);
        return 0;
}

static int curl_glue_socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
        CurlGlue *g = userp;
        CurlSocket *s = socketp;
        uint32_t events = 0;
        int r;

        if (what == CURL_POLL_REMOVE) {
                curl_socket_free(s);
                return 0;
        }

        if (what & CURL_POLL_IN)
                events |= EPOLLIN;
        if (what & CURL_POLL_OUT)
                events |= EPOLLOUT;

        if (!s) {
                s = calloc(1, sizeof(*s));
                if (!s)
                        return -1;
                *s = (CurlSocket) { .glue = g, .fd = fd, .what = what };

                r = sd_event_add_io(g->event, &s->source, fd, events, curl_glue_on_io, s);
                if (r < 0) {
                        log_debug_errno(r, "Cannot watch curl socket %d: %m", fd);
                        free(s);
                        return -1;
                }
                (void) sd_event_source_set_description(s->source, "curl-io");

                if (curl_multi_assign(g->multi, fd, s) != CURLM_OK) {
                        sd_event_source_disable_unref(s->source);
                        free(s);
                        return -1;
                }
                LIST_PREPEND(g->sockets, s);
        } else {
                s->what = what;
                r = sd_event_source_set_io_events(s->source, events);
                if (r < 0)
                        return -1;
        }

        /* CURL_POLL_NONE: curl wants nothing right now. Keep the socket but
         * do not listen, or a hang-up would wake us in a loop. */
        r = sd_event_source_set_enabled(s->source, events ? SD_EVENT_ON : SD_EVENT_OFF);
        return r < 0 ? -1 : 0;
}

static int curl_glue_on_timer(sd_event_source *source, uint64_t usec, void *userdata) {
        curl_glue_process(userdata, CURL_SOCKET_TIMEOUT, 0);
        return 0;
}

static int curl_glue_timer_cb(CURLM *multi, long timeout_ms, void *userp) {
        CurlGlue *g = userp;
        uint64_t now;
        int r;

        /* Only arm the timer here: curl must not be re-entered from its own
         * callback, so even a zero timeout waits for the next iteration. */
        if (timeout_ms < 0)
                return sd_event_source_set_enabled(g->timer, SD_EVENT_OFF) < 0 ? -1 : 0;

        r = sd_event_now(g->event, CLOCK_MONOTONIC, &now);
        if (r < 0)
                return -1;

        r = sd_event_source_set_time(g->timer, now + (uint64_t) timeout_ms * 1000U);
        if (r < 0)
                return -1;

        return sd_event_source_set_enabled(g->timer, SD_EVENT_ONESHOT) < 0 ? -1 : 0;
}

int curl_glue_new(sd_event *event, CurlGlue **ret) {
        CurlGlue *g;
        int r;

        if (!event || !ret)
                return -EINVAL;

        g = calloc(1, sizeof(*g));
        if (!g)
                return -ENOMEM;
        g->event = sd_event_ref(event);

        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
                r = -EIO;
                goto fail;
        }
        g->global_init = true;

        g->multi = curl_multi_init();
        if (!g->multi) {
                r = -ENOMEM;
                goto fail;
        }

        /* Disabled until curl asks for a timeout. Accuracy 1 ms: the default
         * of sd-event (250 ms) would delay every transfer step. */
        r = sd_event_add_time(event, &g->timer, CLOCK_MONOTONIC, UINT64_MAX, 1000,
                              curl_glue_on_timer, g);
        if (r < 0)
                goto fail;
        (void) sd_event_source_set_enabled(g->timer, SD_EVENT_OFF);
        (void) sd_event_source_set_description(g->timer, "curl-timer");

        if (curl_multi_setopt(g->multi, CURLMOPT_SOCKETFUNCTION, curl_glue_socket_cb) != CURLM_OK ||
            curl_multi_setopt(g->multi, CURLMOPT_SOCKETDATA, g) != CURLM_OK ||
            curl_multi_setopt(g->multi, CURLMOPT_TIMERFUNCTION, curl_glue_timer_cb) != CURLM_OK ||
            curl_multi_setopt(g->multi, CURLMOPT_TIMERDATA, g) != CURLM_OK) {
                r = -EIO;
                goto fail;
        }

        *ret = g;
        return 0;

fail:
        curl_glue_destroy(g);
        return r;
}

CurlGlue *curl_glue_free(CurlGlue *g) {
        if (!g)
                return NULL;

        while (g->transfers)
                curl_transfer_detach(g->transfers);

        if (g->dispatching > 0)
                /* Called from a done callback: curl_glue_process() is still
                 * using g and destroys it once it unwinds. */
                g->free_requested = true;
        else
                curl_glue_destroy(g);
        return NULL;
}

int curl_glue_add(CurlGlue *g, CURL *easy, CurlDoneCallback cb, void *userdata) {
        CurlTransfer *t;
        CURLMcode mc;

        if (!g || !easy || g->free_requested)
                return -EINVAL;
        if (curl_transfer_of(g, easy))
                return -EBUSY;

        t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        *t = (CurlTransfer) { .glue = g, .easy = easy, .cb = cb, .userdata = userdata };

        if (curl_easy_setopt(easy, CURLOPT_PRIVATE, t) != CURLE_OK) {
                free(t);
                return -EIO;
        }

        /* Arms our timer with a zero timeout: the transfer starts on the next
         * loop iteration, never inside this call. */
        mc = curl_multi_add_handle(g->multi, easy);
        if (mc != CURLM_OK) {
                (void) curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
                free(t);
                return mc == CURLM_OUT_OF_MEMORY ? -ENOMEM : -EIO;
        }

        LIST_PREPEND(g->transfers, t);
        g->n_transfers++;
        return 0;
}

void curl_glue_remove(CurlGlue *g, CURL *easy) {
        CurlTransfer *t;

        if (!g || !easy)
                return;
        t = curl_transfer_of(g, easy);
        if (t)
                curl_transfer_detach(t);
}

unsigned curl_glue_n_transfers(CurlGlue *g) {
        return g ? g->n_transfers : 0;
}
