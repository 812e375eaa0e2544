/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What the Kubernetes API server (or anything between it and nornd when the
 * server is plain http) answers: a Deployment, read by the rollout logic, or
 * a Status object whose message goes into an error sentence. */
#include <jansson.h>

#include "fuzz.h"
#include "kube.h"
#include "rollout.h"
#include "utf8.h"

#define TOKEN "fuzz-secret-token-0123456789"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        fuzz_quiet();
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(kube_deployment_freep) KubeDeployment *d = NULL;
        char buf[512];
        int r;

        if (size > KUBE_RESPONSE_MAX)
                return 0;

        r = kube_deployment_from_json((const char *) data, size, &d);
        FUZZ_CHECK(r == 0 || r == -EBADMSG);
        if (r == 0) {
                RolloutProgress p = {}, p2 = {};
                RolloutState st;

                for (int64_t gen = 0; gen <= 2; gen++) {
                        st = rollout_evaluate(d, gen, &p);
                        FUZZ_CHECK(st == ROLLOUT_WAITING || st == ROLLOUT_COMPLETE || st == ROLLOUT_FAILED);
                        (void) rollout_evaluate(d, gen, &p2);
                        FUZZ_CHECK(rollout_progress_equal(&p, &p2));
                        rollout_progress_format(&p, buf, sizeof(buf));
                        FUZZ_CHECK(strlen(buf) < sizeof(buf));
                }
                rollout_condition_format(d, buf, sizeof(buf));
                FUZZ_CHECK(strlen(buf) < sizeof(buf) && !strchr(buf, '\n') && utf8_is_valid(buf));
                rollout_condition_format(d, buf, 8);
                FUZZ_CHECK(strlen(buf) < 8);
                for (size_t i = 0; i < d->n_containers; i++)
                        FUZZ_CHECK(rollout_find_container(d, d->containers[i].name));
        }

        char *m = kube_status_message((const char *) data, size, TOKEN, 422);

        FUZZ_CHECK(m);
        FUZZ_CHECK(!strstr(m, TOKEN));
        for (const char *p = m; *p; p++)
                FUZZ_CHECK((unsigned char) *p >= 0x20 && *p != 0x7f);
        FUZZ_CHECK(strlen(m) <= 512 + 3 && utf8_is_valid(m));
        free(m);
        return 0;
}
