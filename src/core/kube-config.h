/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Where the Kubernetes API is and how to authenticate to it.
 *
 * In a cluster (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT set, and
 * a service account token present): the API at https://HOST:PORT, the
 * service account's token, ca.crt and namespace from
 * /var/run/secrets/kubernetes.io/serviceaccount (NORN_KUBE_SA_DIR overrides
 * the directory). Elsewhere: the first file of KUBECONFIG (a ':' list), else
 * ~/.kube/config, read like kubectl does: current-context → context →
 * cluster + user. Relative file names in a kubeconfig are relative to its
 * directory; inline *-data is base64-decoded into memory.
 *
 * Errors come back as one sentence naming the file and what is wrong. Token
 * and key material never appear in an error, a log line or a description. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

#define KUBE_SA_DIR_DEFAULT "/var/run/secrets/kubernetes.io/serviceaccount"
#define KUBE_CONFIG_SIZE_MAX (4U * 1024U * 1024U)   /* a kubeconfig larger than this is refused */
#define KUBE_FILE_SIZE_MAX (1U * 1024U * 1024U)     /* certificates, keys, tokens */
#define KUBE_NAME_MAX 63                            /* DNS-1123 label */

typedef struct KubeConfig {
        bool in_cluster;
        char *source;           /* kubeconfig path, or the service account directory */
        char *context;          /* kubeconfig: the current-context; NULL in a cluster */
        char *cluster;          /* kubeconfig: the cluster's name; NULL in a cluster */
        char *user;             /* kubeconfig: the user's name; NULL in a cluster or without one */

        char *server;           /* "https://host:port[/prefix]", no trailing '/' */
        char *namespace;        /* context's, else NORN_KUBE_NAMESPACE, else "default" */
        char *proxy_url;        /* cluster's proxy-url, or NULL */

        bool insecure_skip_tls_verify;
        char *ca_file;          /* CA bundle by path, or NULL */
        void *ca_data;          /* CA bundle in memory (PEM), or NULL */
        size_t ca_size;

        char *token;            /* bearer token, or NULL. Secret. */
        char *token_file;       /* where the token is re-read from (rotation), or NULL */

        char *client_cert_file; /* client certificate by path (PEM), or NULL */
        void *client_cert_data; /* ... or in memory */
        size_t client_cert_size;
        char *client_key_file;  /* its key by path (PEM), or NULL */
        void *client_key_data;  /* ... or in memory. Secret. */
        size_t client_key_size;
} KubeConfig;

/* The in-cluster service account when there is one, else the kubeconfig.
 * On failure *ret_error (if not NULL) gets a malloc'ed sentence; on success
 * it is left alone. */
int kube_config_load(KubeConfig **ret, char **ret_error);

/* Read one kubeconfig file. default_namespace: used when the context has
 * none; NULL means NORN_KUBE_NAMESPACE, else "default". */
int kube_config_load_kubeconfig(const char *path, const char *default_namespace,
                                KubeConfig **ret, char **ret_error);

/* Use a service account directory (NULL: NORN_KUBE_SA_DIR, else the default)
 * and KUBERNETES_SERVICE_HOST/_PORT. */
int kube_config_load_in_cluster(const char *sa_dir, const char *default_namespace,
                                KubeConfig **ret, char **ret_error);

/* Clears the secrets before freeing. */
KubeConfig *kube_config_free(KubeConfig *c);

/* "kubeconfig /path, context X, server https://..., namespace N, auth token"
 * or "in-cluster service account /dir, server ..."; nothing secret. */
int kube_config_describe(const KubeConfig *c, char **ret);

/* Re-read the token from token_file (service account tokens are rotated).
 * 0 when there is nothing to re-read; the old token stays on failure. */
int kube_config_reload_token(KubeConfig *c);

/* DNS-1123 label: 1-63 of [a-z0-9-], starting and ending alphanumeric.
 * Namespaces, Deployment and container names must be one. */
bool kube_name_is_valid(const char *s);

/* Strict base64 (standard alphabet, padded; line breaks and blanks are
 * skipped). Returns -EINVAL on bad input. */
int kube_base64_decode(const char *s, void **ret, size_t *ret_size);

DEFINE_TRIVIAL_CLEANUP_FUNC(KubeConfig *, kube_config_free);
