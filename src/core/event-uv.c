/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Our headers first: macro.h defines MIN/MAX, which <uv.h> (through
 * <sys/param.h>) redefines identically, silently as a system header. */
#include "event-uv.h"
#include "log.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <uv.h>

#if UV_VERSION_MAJOR != 1
#error "event-uv.c knows the loop internals of libuv 1.x only"
#endif

struct UvEmbed {
        sd_event *event;
        sd_event_source *io;    /* uv_backend_fd() readable */
        sd_event_source *timer; /* next uv timer, from uv_backend_timeout() */
        sd_event_source *defer; /* uv_embed_kick() */
        bool loop_initialized;
        bool running;
        uv_loop_t loop;
};

/* libuv applies watcher changes made with uv__io_start()/uv__io_stop() (what
 * uv_poll_start() & co do) only in its next poll phase: they wait on the
 * loop's watcher_queue, which uv_backend_timeout() does not look at. When a
 * uv callback changed watchers during our UV_RUN_NOWAIT pass, another pass is
 * needed soon, or the epoll set behind uv_backend_fd() stays stale and the
 * connection stalls. The queue head is public in uv_loop_t (unix); it is an
 * empty circular list when its first pointer points at itself, both with the
 * old "void *[2]" QUEUE and the newer struct uv__queue. */
static bool uv_loop_has_pending_watchers(uv_loop_t *loop) {
        void *head = (void *) &loop->watcher_queue;

        return *(void **) head != head;
}

static int uv_embed_rearm(UvEmbed *u) {
        uint64_t now;
        int timeout, r;

        if (!uv_loop_alive(&u->loop))
                /* Nothing on the loop: uv_backend_timeout() says 0 then, which
                 * would spin. Wait for someone to put work on it and kick. */
                return sd_event_source_set_enabled(u->timer, SD_EVENT_OFF);

        timeout = uv_loop_has_pending_watchers(&u->loop) ? 0 : uv_backend_timeout(&u->loop);
        if (timeout == 0) {
                /* Due now: the defer source runs in the very next iteration,
                 * a timer would wait for its accuracy window (up to 1 ms). */
                uv_embed_kick(u);
                return sd_event_source_set_enabled(u->timer, SD_EVENT_OFF);
        }
        if (timeout < 0)
                return sd_event_source_set_enabled(u->timer, SD_EVENT_OFF);

        r = sd_event_now(u->event, CLOCK_MONOTONIC, &now);
        if (r < 0)
                return r;

        r = sd_event_source_set_time(u->timer, now + (uint64_t) timeout * 1000U);
        if (r < 0)
                return r;

        return sd_event_source_set_enabled(u->timer, SD_EVENT_ONESHOT);
}

int uv_embed_run(UvEmbed *u) {
        int r;

        if (!u)
                return -EINVAL;

        if (u->running) {
                /* Called from inside a uv callback: libuv is not reentrant. */
                uv_embed_kick(u);
                return 0;
        }

        u->running = true;
        (void) uv_run(&u->loop, UV_RUN_NOWAIT);
        u->running = false;

        r = uv_embed_rearm(u);
        if (r == -ESTALE)
                return 0; /* sd-event loop finished (we are being freed): nothing to arm */
        if (r < 0)
                return log_debug_errno(r, "Failed to re-arm the uv timer: %m");
        return 0;
}

static int uv_embed_on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        (void) uv_embed_run(userdata);
        return 0;
}

static int uv_embed_on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        (void) uv_embed_run(userdata);
        return 0;
}

static int uv_embed_on_defer(sd_event_source *s, void *userdata) {
        (void) uv_embed_run(userdata);
        return 0;
}

void uv_embed_kick(UvEmbed *u) {
        if (!u || !u->defer)
                return;

        (void) sd_event_source_set_enabled(u->defer, SD_EVENT_ONESHOT);
}

uv_loop_t *uv_embed_loop(UvEmbed *u) {
        return u ? &u->loop : NULL;
}

int uv_embed_new(sd_event *event, UvEmbed **ret) {
        _cleanup_(uv_embed_freep) UvEmbed *u = NULL;
        int r;

        if (!event || !ret)
                return -EINVAL;

        u = calloc(1, sizeof(*u));
        if (!u)
                return -ENOMEM;
        u->event = sd_event_ref(event);

        r = uv_loop_init(&u->loop);
        if (r < 0)
                return log_debug_errno(r, "Failed to initialize uv loop: %s", uv_strerror(r));
        u->loop_initialized = true;

        r = sd_event_add_io(event, &u->io, uv_backend_fd(&u->loop), EPOLLIN, uv_embed_on_io, u);
        if (r < 0)
                return log_debug_errno(r, "Failed to watch the uv backend fd: %m");
        (void) sd_event_source_set_description(u->io, "uv-backend");

        /* 1 ms accuracy: the sd-event default (250 ms) would delay lws timers. */
        r = sd_event_add_time(event, &u->timer, CLOCK_MONOTONIC, 0, 1000, uv_embed_on_timer, u);
        if (r < 0)
                return log_debug_errno(r, "Failed to add the uv timer: %m");
        (void) sd_event_source_set_description(u->timer, "uv-timer");
        r = sd_event_source_set_enabled(u->timer, SD_EVENT_OFF);
        if (r < 0)
                return r;

        r = sd_event_add_defer(event, &u->defer, uv_embed_on_defer, u);
        if (r < 0)
                return log_debug_errno(r, "Failed to add the uv kick source: %m");
        (void) sd_event_source_set_description(u->defer, "uv-kick");
        r = sd_event_source_set_enabled(u->defer, SD_EVENT_OFF);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(u);
        return 0;
}

static void uv_embed_close_walk(uv_handle_t *h, void *arg) {
        if (!uv_is_closing(h))
                uv_close(h, NULL);
}

UvEmbed *uv_embed_free(UvEmbed *u) {
        if (!u)
                return NULL;

        u->io = sd_event_source_disable_unref(u->io);
        u->timer = sd_event_source_disable_unref(u->timer);
        u->defer = sd_event_source_disable_unref(u->defer);

        if (u->loop_initialized) {
                int r;

                uv_walk(&u->loop, uv_embed_close_walk, NULL);
                /* Run the close callbacks. Not UV_RUN_DEFAULT: should anything
                 * stay active, that would block for good. */
                for (unsigned i = 0; i < 1000 && uv_loop_alive(&u->loop); i++)
                        (void) uv_run(&u->loop, UV_RUN_NOWAIT);

                r = uv_loop_close(&u->loop);
                if (r < 0) {
                        /* Something still references the loop memory:
                         * leaking it beats a use-after-free. */
                        log_debug("uv loop still busy on close (%s), leaking it.", uv_strerror(r));
                        u->event = sd_event_unref(u->event);
                        return NULL;
                }
        }

        sd_event_unref(u->event);
        free(u);
        return NULL;
}
