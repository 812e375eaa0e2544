/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* A small asynchronous Kubernetes client: the two calls the deploy step
 * needs, over libcurl's multi-socket API inside sd-event (curl-glue.h).
 *
 * Every call answers through its callback, exactly once, from the event
 * loop and never from inside the call itself, unless the request is
 * cancelled or the client freed first. Bad names (not DNS-1123 labels) are
 * refused before anything goes into a URL, and also answered through the
 * callback, so callers have one place to handle errors. Responses are bounded
 * (KUBE_RESPONSE_MAX), each request has an overall timeout, redirects are not
 * followed (the bearer token stays with the configured server). */

#include <stdint.h>
#include <systemd/sd-event.h>

#include "kube-config.h"
#include "macro.h"

#define KUBE_RESPONSE_MAX (4U * 1024U * 1024U)
#define KUBE_TIMEOUT_DEFAULT_USEC (30U * 1000000U)

typedef struct KubeClient KubeClient;
typedef struct KubeRequest KubeRequest;

typedef struct KubeContainer {
        char *name;
        char *image;
} KubeContainer;

/* What a Deployment says about its rollout. Counts missing from the object
 * are 0, except replicas: the API's default of 1. */
typedef struct KubeDeployment {
        char *namespace;
        char *name;
        char *resource_version;
        int64_t generation;             /* metadata.generation */
        int64_t observed_generation;    /* status.observedGeneration */
        int64_t replicas;               /* spec.replicas */
        int64_t status_replicas;        /* status.replicas */
        int64_t updated_replicas;       /* status.updatedReplicas */
        int64_t ready_replicas;         /* status.readyReplicas */
        int64_t available_replicas;     /* status.availableReplicas */
        char *progressing_status;       /* the Progressing condition: "True"/"False"/..., or NULL */
        char *progressing_reason;       /* e.g. "NewReplicaSetAvailable", "ProgressDeadlineExceeded" */
        char *progressing_message;
        char *image;                    /* the first container's image, or NULL */
        KubeContainer *containers;      /* spec.template.spec.containers */
        size_t n_containers;
} KubeDeployment;

typedef struct KubeResult {
        int error;              /* 0, or a negative errno (see below) */
        long http_status;       /* the HTTP status received; 0 when there was no response */
        const char *message;    /* NULL on success, else one sentence naming the deployment */
        int64_t generation;     /* on success: metadata.generation (after kube_set_image(): the new one) */
        const KubeDeployment *deployment;  /* on success: the Deployment as returned; else NULL */
} KubeResult;

/* Errors:
 *   -EINVAL       bad argument (invalid name or image), HTTP 400 or 422 (invalid)
 *   -EACCES       HTTP 401 (not authenticated)     -EPERM   HTTP 403 (forbidden)
 *   -ENOENT       HTTP 404 (not found)              -ESTALE  HTTP 409 (conflict)
 *   -EBUSY        HTTP 429 (throttled)              -EIO     HTTP 5xx, other transport errors
 *   -EPROTO       other HTTP status, HTTP 415
 *   -EBADMSG      the response is not the JSON expected
 *   -EFBIG        the response exceeds KUBE_RESPONSE_MAX
 *   -ETIMEDOUT    the request timed out
 *   -ECONNREFUSED / -EHOSTUNREACH   the server cannot be reached
 *   -EKEYREJECTED the server's certificate was not trusted
 *   -ENOKEY       the client certificate or key could not be used
 *   -ECONNRESET   other TLS failures; the server dropped the connection (a refused client
 *                 certificate shows up so with TLS 1.3)
 * The result and everything it points to are valid during the callback only. */
typedef void (*KubeCallback)(KubeClient *c, const KubeResult *result, void *userdata);

/* Takes ownership of config on success only. */
int kube_client_new(sd_event *event, KubeConfig *config, KubeClient **ret);

/* Pending requests are cancelled, their callbacks not called. May be called
 * from a callback. */
KubeClient *kube_client_free(KubeClient *c);

const KubeConfig *kube_client_get_config(KubeClient *c);

/* Overall time a request may take, connection included. 0: the default. */
void kube_client_set_timeout(KubeClient *c, uint64_t usec);

/* Set the image of one container of a Deployment: a strategic-merge PATCH
 * {"spec":{"template":{"spec":{"containers":[{"name":C,"image":I}]}}}}.
 * namespace NULL: the configuration's namespace. resource_version non-NULL:
 * only if the Deployment is still at that version (else -ESTALE, 409).
 * On success result->deployment->generation is the new metadata.generation.
 * ret_request (may be NULL) can cancel; it is valid until the callback ran. */
int kube_set_image(KubeClient *c, const char *namespace, const char *deployment,
                   const char *container, const char *image, const char *resource_version,
                   KubeCallback cb, void *userdata, KubeRequest **ret_request);

/* GET a Deployment (for waiting on its rollout). */
int kube_get_deployment(KubeClient *c, const char *namespace, const char *deployment,
                        KubeCallback cb, void *userdata, KubeRequest **ret_request);

/* Cancel: the callback is not called. Returns NULL. */
KubeRequest *kube_request_cancel(KubeRequest *r);

/* The message of an error response (a Status object) fit for an error
 * sentence: bounded, one line, token (should a server echo it) redacted;
 * "HTTP <status>" when there is none. NULL on OOM. Exposed for the fuzzer. */
char *kube_status_message(const char *response, size_t size, const char *token, long http_status);

/* A failed request worth trying again (the API server or the way to it was
 * away for a moment), as opposed to an answer that stands. */
bool kube_error_is_transient(int error);

/* Parse a Deployment object (exposed for tests). */
int kube_deployment_from_json(const char *json, size_t size, KubeDeployment **ret);
KubeDeployment *kube_deployment_free(KubeDeployment *d);

DEFINE_TRIVIAL_CLEANUP_FUNC(KubeClient *, kube_client_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(KubeDeployment *, kube_deployment_free);
