/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A push webhook as a stranger may send it, before and after its signature
 * is checked: the signature and delivery headers, the payload, and the
 * repository URLs compared with an app's repo.url. Input: six header lines
 * (Gitea and GitHub signature, event, delivery; an empty line is an absent
 * header), an app's repo.url line, then the body. */
#include "fuzz.h"
#include "utf8.h"
#include "webhook-payload.h"

#define N_LINES 7

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        fuzz_quiet();
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *lines[N_LINES] = {};
        _cleanup_free_ char *input = NULL, *norm = NULL;
        _cleanup_(webhook_push_done) WebhookPush push = {};
        WebhookDelivery d = {};
        const char *p, *error = NULL, *code = NULL, *body;
        size_t body_size;
        int r;

        if (size > 256 * 1024)
                return 0;
        input = malloc(size + 1);
        FUZZ_CHECK(input);
        memcpy(input, data, size);
        input[size] = 0;

        p = input;
        for (size_t i = 0; i < N_LINES; i++) {
                char *nl = memchr(p, '\n', size - (size_t) (p - input));

                if (!nl)
                        return 0;
                *nl = 0;
                lines[i] = *p ? (char *) p : NULL;
                p = nl + 1;
        }
        body = p;
        body_size = size - (size_t) (p - input);

        r = webhook_delivery_parse(&(const WebhookHeaders) {
                                           .gitea_signature = lines[0], .github_signature = lines[1],
                                           .gitea_event = lines[2], .github_event = lines[3],
                                           .gitea_delivery = lines[4], .github_delivery = lines[5],
                                   }, &d, &error);
        if (r == -EACCES)
                FUZZ_CHECK(error);
        else if (r == 0) {
                FUZZ_CHECK(webhook_delivery_id_is_valid(d.delivery));
                FUZZ_CHECK(d.provider == (lines[0] ? WEBHOOK_GITEA : WEBHOOK_GITHUB));
        } else
                FUZZ_CHECK(r == -EINVAL);

        r = webhook_push_parse("application/json", body, body_size, &push, &code, &error);
        if (r == 0) {
                FUZZ_CHECK(push.payload && json_is_object(push.repository));
                FUZZ_CHECK(strlen(push.after) == 40 || strlen(push.after) == 64);
                FUZZ_CHECK(strspn(push.after, "0123456789abcdef") == strlen(push.after));
                (void) webhook_url_matches(lines[6], push.repository);
        } else if (r != 1)
                FUZZ_CHECK((r == 400 || r == 415) && code && error);

        norm = webhook_url_normalize(lines[6]);
        if (norm) {
                FUZZ_CHECK(strlen(norm) <= strlen(lines[6]));
                /* A URL always matches a repository that has the same URL. */
                json_t *repo = json_pack("{s:s}", "clone_url", lines[6]);
                if (repo && *norm)
                        FUZZ_CHECK(webhook_url_matches(lines[6], repo));
                json_decref(repo);
        }
        return 0;
}
