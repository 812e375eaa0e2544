/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdint.h>

#include "apps.h"

/* The apps as the unauthenticated webhook route sees them. apps_discover()
 * re-reads and parses every infraspec, too much work for each request a
 * stranger can send, so the list is kept and discovered again only when the
 * apps directory looks different: at most once per
 * WEBHOOK_APPS_CHECK_USEC, a cheap walk stats the apps directory, each
 * entry and each <app>/infraspec.yaml, and only a changed result (or a file
 * changed too recently for its timestamps to be trusted) rediscovers. A new
 * app or a changed webhookSecret thus takes effect within about a second. */

#define WEBHOOK_APPS_CHECK_USEC (1000U * 1000U)

/* *ret is borrowed: valid until the next call. now_usec is CLOCK_MONOTONIC.
 * -errno when apps_dir cannot be read. */
int webhook_apps_get(const char *apps_dir, uint64_t now_usec, const AppList **ret);

/* Drops the cached list (tests, shutdown). */
void webhook_apps_flush(void);
