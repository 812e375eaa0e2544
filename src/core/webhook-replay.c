/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <string.h>

#include "macro.h"
#include "webhook-replay.h"

typedef struct Delivery {
        char id[WEBHOOK_DELIVERY_ID_MAX + 1];
        uint8_t digest[WEBHOOK_DIGEST_SIZE];
        uint64_t at_usec;
} Delivery;

/* A ring: the oldest entry is overwritten. A linear search is enough: the
 * route is rate-limited well below what 4096 comparisons cost. */
static Delivery deliveries[WEBHOOK_REPLAY_MAX];
static size_t n_deliveries, next_delivery;

bool webhook_delivery_id_is_valid(const char *id) {
        size_t n;

        if (!id)
                return false;
        n = strlen(id);
        if (n == 0 || n > WEBHOOK_DELIVERY_ID_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if (id[i] <= ' ' || id[i] > '~')
                        return false;
        return true;
}

int webhook_replay_check_and_remember(const char *id, const uint8_t digest[WEBHOOK_DIGEST_SIZE],
                                      uint64_t now_usec) {
        Delivery *d;

        if (!webhook_delivery_id_is_valid(id))
                return -EINVAL;

        for (size_t i = 0; i < n_deliveries; i++) {
                d = deliveries + i;
                if (now_usec - d->at_usec >= WEBHOOK_REPLAY_KEEP_USEC)
                        continue;
                if (streq(d->id, id) || memcmp(d->digest, digest, WEBHOOK_DIGEST_SIZE) == 0)
                        return -EEXIST;
        }

        d = deliveries + next_delivery;
        strcpy(d->id, id);
        memcpy(d->digest, digest, WEBHOOK_DIGEST_SIZE);
        d->at_usec = now_usec;
        next_delivery = (next_delivery + 1) % WEBHOOK_REPLAY_MAX;
        if (n_deliveries < WEBHOOK_REPLAY_MAX)
                n_deliveries++;
        return 0;
}

void webhook_replay_forget_all(void) {
        memset(deliveries, 0, sizeof(deliveries));
        n_deliveries = next_delivery = 0;
}
