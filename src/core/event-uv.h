/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* A libuv loop embedded in sd-event, single-threaded.
 *
 * sd-event stays the outer loop. The uv loop's backend (an epoll fd) is
 * watched with an sd-event io source and its next timer with an sd-event
 * timer; each of them runs uv_run(UV_RUN_NOWAIT) and re-arms the timer from
 * uv_backend_timeout() (work that is due at once goes through an sd-event
 * defer source instead). Nothing ever blocks inside libuv.
 *
 * libuv only applies watcher changes (uv_poll_start() & co) and new timers
 * the next time it runs. Code that calls into a library living on the uv loop
 * from outside a uv callback (e.g. from an sd-event callback) must therefore
 * call uv_embed_kick() afterwards, which schedules one uv_run() pass at the
 * next sd-event iteration. */

#include "macro.h"

#include <systemd/sd-event.h>

/* From <uv.h>, which is not included here: it brings its own MIN/MAX. */
typedef struct uv_loop_s uv_loop_t;

typedef struct UvEmbed UvEmbed;

int uv_embed_new(sd_event *event, UvEmbed **ret);

/* Closes whatever handles are left on the loop, runs it until they are gone
 * (a bounded number of non-blocking passes) and closes it; a loop still busy
 * then is leaked rather than waited for. Free the users of the loop (the HTTP
 * server) first. */
UvEmbed *uv_embed_free(UvEmbed *u);

uv_loop_t *uv_embed_loop(UvEmbed *u);

/* Schedule one uv_run(UV_RUN_NOWAIT) pass plus timer re-arm soon. Cheap;
 * calling it several times before the pass runs costs nothing extra. */
void uv_embed_kick(UvEmbed *u);

/* Run one uv_run(UV_RUN_NOWAIT) pass now and re-arm. From within a uv
 * callback (libuv is not reentrant) it only kicks. */
int uv_embed_run(UvEmbed *u);

DEFINE_TRIVIAL_CLEANUP_FUNC(UvEmbed *, uv_embed_free);
