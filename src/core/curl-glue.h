/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* libcurl's multi-socket API driven by sd-event; nothing ever blocks.
 *
 * curl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION: one sd-event
 * io source per socket, its events updated when curl asks) and when to wake
 * it up (CURLMOPT_TIMERFUNCTION: one sd-event timer). Activity on either runs
 * curl_multi_socket_action(); finished transfers are then collected with
 * curl_multi_info_read() and handed to their callbacks.
 *
 * The caller configures and owns the easy handles. The glue uses the easy
 * handle's CURLOPT_PRIVATE for its own bookkeeping: leave it alone. Name
 * resolution must not block either: libcurl's threaded resolver (Debian's
 * build) does that off the loop. */

#include <curl/curl.h>
#include <systemd/sd-event.h>

#include "macro.h"

typedef struct CurlGlue CurlGlue;

/* Called once per transfer when it is done (result CURLE_OK or the error).
 * The easy handle has already been taken off the glue: the callback may clean
 * it up, add new transfers, remove others, or free the glue itself. */
typedef void (*CurlDoneCallback)(CurlGlue *g, CURL *easy, CURLcode result, void *userdata);

int curl_glue_new(sd_event *event, CurlGlue **ret);

/* Transfers still running are taken off (their callbacks are not called);
 * their easy handles stay with their owners. Safe from a done callback. */
CurlGlue *curl_glue_free(CurlGlue *g);

/* Start a configured easy handle. It stays owned by the caller, who must not
 * clean it up before the callback ran or curl_glue_remove() was called. */
int curl_glue_add(CurlGlue *g, CURL *easy, CurlDoneCallback cb, void *userdata);

/* Cancel a transfer: taken off at once, the callback is not called. A no-op
 * for a handle that is not (or no longer) on the glue. */
void curl_glue_remove(CurlGlue *g, CURL *easy);

/* Number of transfers running. */
unsigned curl_glue_n_transfers(CurlGlue *g);

DEFINE_TRIVIAL_CLEANUP_FUNC(CurlGlue *, curl_glue_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(CURL *, curl_easy_cleanup);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct curl_slist *, curl_slist_free_all);
