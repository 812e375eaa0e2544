/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The untrusted parts of a push webhook (api-webhook.c), checked without any
 * daemon state: the signature and delivery headers, the JSON payload, and
 * repository URLs compared with an app's repo.url. */

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"
#include "webhook-replay.h"

typedef enum WebhookProvider {
        WEBHOOK_GITHUB,
        WEBHOOK_GITEA,
} WebhookProvider;

/* The header values as received (NULL: absent). */
typedef struct WebhookHeaders {
        const char *gitea_signature, *github_signature;
        const char *gitea_event, *github_event;
        const char *gitea_delivery, *github_delivery;
} WebhookHeaders;

typedef struct WebhookDelivery {
        WebhookProvider provider;
        uint8_t signature[WEBHOOK_DIGEST_SIZE];
        const char *event;      /* points into the headers; may be NULL */
        const char *delivery;   /* points into the headers; a valid delivery id */
} WebhookDelivery;

/* Gitea's signature wins over GitHub's. -EACCES (answer 401) with
 * *ret_error a sentence when unsigned or the signature is malformed; -EINVAL
 * (answer 400) when the delivery id is missing or invalid (ret->provider is
 * set then, for the message). */
int webhook_delivery_parse(const WebhookHeaders *h, WebhookDelivery *ret, const char **ret_error);

typedef struct WebhookPush {
        json_t *payload;        /* owns the rest */
        const char *branch;     /* the ref without "refs/heads/" */
        const char *after;      /* the pushed commit: 40 or 64 lower-case hex, not all zeros */
        json_t *repository;     /* an object */
} WebhookPush;

/* A push event's payload. Returns 0 for a push of a branch commit, 1 for a
 * valid payload that deploys nothing (a tag, a deletion), else the HTTP
 * status to refuse it with (415, 400), *ret_code and *ret_error set. */
int webhook_push_parse(const char *content_type, const char *body, size_t size, WebhookPush *ret,
                       const char **ret_code, const char **ret_error);
void webhook_push_done(WebhookPush *p);

/* A repository URL reduced to host[:port]/path in lower case, without
 * scheme, user, default port, trailing "/" or ".git"; NULL when empty, over
 * 4096 bytes, or OOM. */
char *webhook_url_normalize(const char *url);

/* spec_url equals (normalized) one of the repository's clone_url, ssh_url,
 * html_url, git_url or url. */
bool webhook_url_matches(const char *spec_url, json_t *repository);
