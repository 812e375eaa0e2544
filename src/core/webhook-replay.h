/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* Replay protection of push webhooks: a verified delivery is remembered by
 * its delivery id (X-GitHub-Delivery, X-Gitea-Delivery) and by its
 * signature. The provider signs only the body, not the id, so the id alone
 * would let a captured body be replayed under a fresh id; the signature
 * (the HMAC of exactly that body) catches that. Memory only, the last
 * WEBHOOK_REPLAY_MAX deliveries of the last WEBHOOK_REPLAY_KEEP_USEC: it
 * does not survive a restart of nornd. */

#define WEBHOOK_REPLAY_MAX 4096U
#define WEBHOOK_REPLAY_KEEP_USEC (UINT64_C(24) * 3600U * 1000U * 1000U)
#define WEBHOOK_DELIVERY_ID_MAX 128U
#define WEBHOOK_DIGEST_SIZE 32U

/* 1..WEBHOOK_DELIVERY_ID_MAX printable ASCII characters, no space (GitHub
 * and Gitea send a UUID). */
bool webhook_delivery_id_is_valid(const char *id);

/* Remembers the delivery unless its id or digest is remembered already:
 * then -EEXIST and nothing changes. now_usec is CLOCK_MONOTONIC. */
int webhook_replay_check_and_remember(const char *id, const uint8_t digest[WEBHOOK_DIGEST_SIZE],
                                      uint64_t now_usec);

/* Forgets every delivery (tests). */
void webhook_replay_forget_all(void);
