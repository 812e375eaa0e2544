/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "rollout.h"
#include "utf8.h"

#define CONDITION_MESSAGE_MAX 300

RolloutState rollout_evaluate(const KubeDeployment *k, int64_t generation, RolloutProgress *ret) {
        RolloutProgress p = {
                .generation = MAX(generation, k->generation),
                .observed_generation = k->observed_generation,
                .replicas = k->replicas,
                .total = k->status_replicas,
                .updated = k->updated_replicas,
                .ready = k->ready_replicas,
                .available = k->available_replicas,
        };

        p.observed = p.observed_generation >= p.generation;
        *ret = p;

        /* Like kubectl: the status says nothing about our change before the
         * controller has observed it; a deadline exceeded before then was
         * an earlier rollout's. */
        if (!p.observed)
                return ROLLOUT_WAITING;
        if (streq_ptr(k->progressing_reason, "ProgressDeadlineExceeded"))
                return ROLLOUT_FAILED;
        if (p.updated < p.replicas ||          /* new pods still to be created */
            p.total > p.updated ||             /* old pods still to be terminated */
            p.ready < p.replicas ||
            p.available < p.replicas)
                return ROLLOUT_WAITING;
        return ROLLOUT_COMPLETE;
}

bool rollout_progress_equal(const RolloutProgress *a, const RolloutProgress *b) {
        return a->observed == b->observed && a->generation == b->generation &&
                a->observed_generation == b->observed_generation && a->replicas == b->replicas &&
                a->total == b->total && a->updated == b->updated && a->ready == b->ready &&
                a->available == b->available;
}

void rollout_progress_format(const RolloutProgress *p, char *buf, size_t size) {
        int n;

        if (!p->observed) {
                snprintf(buf, size, "waiting for generation %" PRIi64 " to be observed (at %" PRIi64 ")",
                         p->generation, p->observed_generation);
                return;
        }
        n = snprintf(buf, size, "%" PRIi64 " of %" PRIi64 " updated, %" PRIi64 " available",
                     p->updated, p->replicas, p->available);
        if (n >= 0 && (size_t) n < size && p->ready != p->available)
                n += snprintf(buf + n, size - n, ", %" PRIi64 " ready", p->ready);
        if (n >= 0 && (size_t) n < size && p->total > p->updated)
                snprintf(buf + n, size - n, ", %" PRIi64 " old still running", p->total - p->updated);
}

void rollout_condition_format(const KubeDeployment *k, char *buf, size_t size) {
        const char *reason = k->progressing_reason ?: "no Progressing condition";
        const char *message = k->progressing_message;
        char *p;

        if (message && *message)
                snprintf(buf, size, "%.*s: %.*s", (int) utf8_prefix_len(reason, 64), reason,
                         (int) utf8_prefix_len(message, CONDITION_MESSAGE_MAX), message);
        else
                snprintf(buf, size, "%.*s", (int) utf8_prefix_len(reason, 64), reason);
        /* From the API server: one line, no control characters, and still
         * UTF-8 where the cut fell inside a character. */
        for (p = buf; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f)
                        *p = ' ';
        utf8_sanitize(buf);
}

const KubeContainer *rollout_find_container(const KubeDeployment *k, const char *name) {
        for (size_t i = 0; i < k->n_containers; i++)
                if (streq_ptr(k->containers[i].name, name))
                        return &k->containers[i];
        return NULL;
}

int rollout_timeout_usec(uint64_t *ret) {
        const char *e = getenv("NORN_ROLLOUT_TIMEOUT");
        uint64_t secs = ROLLOUT_TIMEOUT_DEFAULT_SEC;

        if (e && *e && (parse_uint64(e, &secs) < 0 || secs < 1 || secs > ROLLOUT_TIMEOUT_MAX_SEC))
                return -EINVAL;
        *ret = secs * 1000000U;
        return 0;
}
