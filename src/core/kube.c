/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "config-build.h"
#include "string-util.h"
#include "curl-glue.h"
#include "kube.h"
#include "log.h"
#include "utf8.h"

#define MESSAGE_MAX 512                         /* of a Status message we pass on */
#define TOKEN_RELOAD_USEC (60U * 1000000U)     /* re-read a token file this often */
#define IMAGE_MAX 1024
#define RESOURCE_VERSION_MAX 128

typedef enum KubeOp {
        KUBE_OP_PATCH,
        KUBE_OP_GET,
} KubeOp;

struct KubeRequest {
        KubeClient *client;     /* NULL once unlinked */
        KubeOp op;
        char *namespace;
        char *name;
        CURL *easy;
        struct curl_slist *headers;
        char *response;
        size_t response_size;
        bool too_large;
        char errbuf[CURL_ERROR_SIZE];
        sd_event_source *defer; /* answers a request refused before it was sent */
        int early_error;
        char *early_message;
        KubeCallback cb;
        void *userdata;
        KubeRequest *prev, *next;
};

struct KubeClient {
        sd_event *event;
        KubeConfig *config;
        CurlGlue *glue;
        uint64_t timeout_usec;
        uint64_t token_loaded_usec;
        KubeRequest *requests;
};

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000U + (uint64_t) ts.tv_nsec / 1000U;
}

static const char *op_verb(KubeOp op) {
        return op == KUBE_OP_PATCH ? "patch" : "get";
}

/* ---- Deployment objects ---------------------------------------------- */

KubeDeployment *kube_deployment_free(KubeDeployment *d) {
        if (!d)
                return NULL;
        free(d->namespace);
        free(d->name);
        free(d->resource_version);
        free(d->progressing_status);
        free(d->progressing_reason);
        free(d->progressing_message);
        free(d->image);
        for (size_t i = 0; i < d->n_containers; i++) {
                free(d->containers[i].name);
                free(d->containers[i].image);
        }
        free(d->containers);
        return mfree(d);
}

static int json_get_int(json_t *obj, const char *key, int64_t def, int64_t *ret) {
        json_t *v = json_object_get(obj, key);

        if (!v || json_is_null(v)) {
                *ret = def;
                return 0;
        }
        if (!json_is_integer(v))
                return -EBADMSG;
        *ret = json_integer_value(v);
        return 0;
}

static int json_get_str(json_t *obj, const char *key, char **ret) {
        json_t *v = json_object_get(obj, key);

        *ret = NULL;
        if (!v || json_is_null(v))
                return 0;
        if (!json_is_string(v))
                return -EBADMSG;
        *ret = strdup(json_string_value(v));
        return *ret ? 0 : -ENOMEM;
}

static int deployment_from_json(json_t *root, KubeDeployment **ret) {
        _cleanup_(kube_deployment_freep) KubeDeployment *d = NULL;
        json_t *metadata, *spec, *status, *containers, *conditions, *v;
        size_t i;
        int r;

        if (!json_is_object(root))
                return -EBADMSG;
        v = json_object_get(root, "kind");
        if (v && !(json_is_string(v) && streq(json_string_value(v), "Deployment")))
                return -EBADMSG;
        metadata = json_object_get(root, "metadata");
        spec = json_object_get(root, "spec");
        status = json_object_get(root, "status");
        if (!json_is_object(metadata) || !json_is_object(spec) || (status && !json_is_object(status)))
                return -EBADMSG;
        if (!json_is_integer(json_object_get(metadata, "generation")))
                return -EBADMSG;

        d = calloc(1, sizeof(*d));
        if (!d)
                return -ENOMEM;

        if ((r = json_get_str(metadata, "namespace", &d->namespace)) < 0 ||
            (r = json_get_str(metadata, "name", &d->name)) < 0 ||
            (r = json_get_str(metadata, "resourceVersion", &d->resource_version)) < 0 ||
            (r = json_get_int(metadata, "generation", 0, &d->generation)) < 0 ||
            (r = json_get_int(spec, "replicas", 1, &d->replicas)) < 0 ||
            (r = json_get_int(status, "observedGeneration", 0, &d->observed_generation)) < 0 ||
            (r = json_get_int(status, "replicas", 0, &d->status_replicas)) < 0 ||
            (r = json_get_int(status, "updatedReplicas", 0, &d->updated_replicas)) < 0 ||
            (r = json_get_int(status, "readyReplicas", 0, &d->ready_replicas)) < 0 ||
            (r = json_get_int(status, "availableReplicas", 0, &d->available_replicas)) < 0)
                return r;

        conditions = json_object_get(status, "conditions");
        if (conditions && !json_is_null(conditions)) {
                if (!json_is_array(conditions))
                        return -EBADMSG;
                json_array_foreach(conditions, i, v) {
                        json_t *type = json_object_get(v, "type");

                        if (!json_is_string(type) || !streq(json_string_value(type), "Progressing"))
                                continue;
                        if ((r = json_get_str(v, "status", &d->progressing_status)) < 0 ||
                            (r = json_get_str(v, "reason", &d->progressing_reason)) < 0 ||
                            (r = json_get_str(v, "message", &d->progressing_message)) < 0)
                                return r;
                        break;
                }
        }

        containers = json_object_get(json_object_get(json_object_get(spec, "template"), "spec"), "containers");
        if (containers && !json_is_null(containers)) {
                if (!json_is_array(containers))
                        return -EBADMSG;
                d->containers = calloc(json_array_size(containers) ?: 1, sizeof(KubeContainer));
                if (!d->containers)
                        return -ENOMEM;
                json_array_foreach(containers, i, v) {
                        KubeContainer *k = &d->containers[d->n_containers++];

                        if (!json_is_object(v))
                                return -EBADMSG;
                        if ((r = json_get_str(v, "name", &k->name)) < 0 ||
                            (r = json_get_str(v, "image", &k->image)) < 0)
                                return r;
                }
                if (d->n_containers > 0 && d->containers[0].image) {
                        d->image = strdup(d->containers[0].image);
                        if (!d->image)
                                return -ENOMEM;
                }
        }

        *ret = TAKE_PTR(d);
        return 0;
}

int kube_deployment_from_json(const char *json, size_t size, KubeDeployment **ret) {
        json_t *root;
        int r;

        if (!json || !ret)
                return -EINVAL;
        root = json_loadb(json, size, 0, NULL);
        if (!root)
                return -EBADMSG;
        r = deployment_from_json(root, ret);
        json_decref(root);
        return r;
}

/* ---- requests ---------------------------------------------------------- */

static void erase_headers(struct curl_slist *l) {
        for (; l; l = l->next)
                explicit_bzero(l->data, strlen(l->data));
}

/* Take the request off its client (and curl). Its callback will not be
 * reached through the client any more. */
static void request_unlink(KubeRequest *r) {
        KubeClient *c = r->client;

        if (!c)
                return;
        if (r->easy)
                curl_glue_remove(c->glue, r->easy);
        if (r->next)
                r->next->prev = r->prev;
        if (r->prev)
                r->prev->next = r->next;
        else
                c->requests = r->next;
        r->prev = r->next = NULL;
        r->client = NULL;
}

static void request_free(KubeRequest *r) {
        if (!r)
                return;
        request_unlink(r);
        if (r->easy)
                curl_easy_cleanup(r->easy);
        erase_headers(r->headers);
        curl_slist_free_all(r->headers);
        sd_event_source_disable_unref(r->defer);
        free(r->response);
        free(r->early_message);
        free(r->namespace);
        free(r->name);
        free(r);
}

KubeRequest *kube_request_cancel(KubeRequest *r) {
        request_free(r);
        return NULL;
}

/* Hand the result to the caller, then drop the request. The callback may
 * free the client: the request is no longer on it by then. */
static void request_finish(KubeRequest *r, int error, long http_status, const char *message,
                           const KubeDeployment *d) {
        KubeClient *c = r->client;
        KubeResult result = {
                .error = error,
                .http_status = http_status,
                .message = error < 0 ? (message ?: "out of memory") : NULL,
                .generation = d ? d->generation : 0,
                .deployment = error < 0 ? NULL : d,
        };

        if (error < 0)
                log_debug("Kubernetes request failed: %s", result.message);
        request_unlink(r);
        if (r->cb)
                r->cb(c, &result, r->userdata);
        request_free(r);
}

bool kube_error_is_transient(int error) {
        switch (error) {
        case -EIO:
        case -ETIMEDOUT:
        case -ECONNREFUSED:
        case -ECONNRESET:
        case -EHOSTUNREACH:
        case -EBUSY:
                return true;
        default:
                return false;
        }
}

char *kube_status_message(const char *response, size_t size, const char *token, long http_status) {
        _cleanup_free_ char *s = NULL;
        json_t *root, *m;
        size_t n;
        char *p;

        root = json_loadb(response ?: "", size, 0, NULL);
        m = json_object_get(root, "message");
        if (!json_is_string(m) || !*json_string_value(m))
                m = json_object_get(root, "reason");
        if (json_is_string(m) && *json_string_value(m))
                s = strdup(json_string_value(m));
        else
                s = strdup_printf("HTTP %ld", http_status);
        json_decref(root);
        if (!s)
                return NULL;

        if (token && *token)
                while ((p = strstr(s, token)))
                        memset(p, '*', strlen(token));
        for (p = s; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f)
                        *p = ' ';
        n = utf8_prefix_len(s, MESSAGE_MAX);
        if (s[n]) /* cut, on a character boundary, into a buffer with room for the "..." */
                return strdup_printf("%.*s...", (int) n, s);
        return TAKE_PTR(s);
}

static void request_http_error(KubeRequest *r, long status) {
        _cleanup_free_ char *msg = NULL, *text = NULL;
        const char *verb = op_verb(r->op), *ns = r->namespace, *name = r->name;
        int error;

        text = kube_status_message(r->response, r->response_size, r->client->config->token, status);
        if (!text) {
                request_finish(r, -ENOMEM, status, NULL, NULL);
                return;
        }

        switch (status) {
        case 401:
        case 403:
                error = status == 401 ? -EACCES : -EPERM;
                msg = strdup_printf("not authorized to %s deployment %s/%s: %s", verb, ns, name, text);
                break;
        case 404:
                error = -ENOENT;
                msg = strdup_printf("deployment %s/%s not found", ns, name);
                break;
        case 409:
                error = -ESTALE;
                msg = strdup_printf("conflict: deployment %s/%s was changed meanwhile: %s", ns, name, text);
                break;
        case 400:
        case 422:
                error = -EINVAL;
                msg = strdup_printf("invalid %s of deployment %s/%s: %s",
                                    r->op == KUBE_OP_PATCH ? "patch" : "request", ns, name, text);
                break;
        case 415:
                error = -EPROTO;
                msg = strdup_printf("the API server does not accept this patch format for deployment %s/%s: %s",
                                    ns, name, text);
                break;
        case 429:
                error = -EBUSY;
                msg = strdup_printf("the API server is throttling requests (HTTP 429); could not %s deployment %s/%s",
                                    verb, ns, name);
                break;
        default:
                error = status >= 500 ? -EIO : -EPROTO;
                msg = strdup_printf("could not %s deployment %s/%s: HTTP %ld: %s", verb, ns, name, status, text);
                break;
        }
        request_finish(r, msg ? error : -ENOMEM, status, msg, NULL);
}

static void request_transport_error(KubeRequest *r, CURLcode code) {
        const KubeConfig *cfg = r->client->config;
        const char *server = cfg->server, *verb = op_verb(r->op);
        _cleanup_free_ char *msg = NULL, *detail = NULL;
        int error;

        /* curl keeps the first message of a transfer, which is not always the
         * one that explains the failure: give its summary as well. */
        if (!r->errbuf[0] || streq(r->errbuf, curl_easy_strerror(code)))
                detail = strdup(curl_easy_strerror(code));
        else
                detail = strdup_printf("%s: %s", curl_easy_strerror(code), r->errbuf);
        if (!detail) {
                request_finish(r, -ENOMEM, 0, NULL, NULL);
                return;
        }

        if (code == CURLE_WRITE_ERROR && r->too_large) {
                msg = strdup_printf("the response to %s deployment %s/%s is larger than %u MiB",
                                    verb, r->namespace, r->name, KUBE_RESPONSE_MAX / 1024 / 1024);
                request_finish(r, msg ? -EFBIG : -ENOMEM, 0, msg, NULL);
                return;
        }

        switch (code) {
        default:
                error = -EIO;
                msg = strdup_printf("request to %s deployment %s/%s failed: %s", verb, r->namespace, r->name, detail);
                break;
        case CURLE_OPERATION_TIMEDOUT:
                error = -ETIMEDOUT;
                msg = strdup_printf("request to %s deployment %s/%s timed out after %.1f s (%s)", verb,
                                    r->namespace, r->name, r->client->timeout_usec / 1e6, detail);
                break;
        case CURLE_COULDNT_CONNECT:
                error = -ECONNREFUSED;
                msg = strdup_printf("cannot connect to the Kubernetes API server %s: %s", server, detail);
                break;
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
                error = -EHOSTUNREACH;
                msg = strdup_printf("cannot resolve the Kubernetes API server %s: %s", server, detail);
                break;
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
                error = -EKEYREJECTED;
                msg = strdup_printf("TLS: the certificate of the Kubernetes API server %s is not trusted: %s",
                                    server, detail);
                break;
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_ENGINE_NOTFOUND:
        case CURLE_SSL_ENGINE_SETFAILED:
                error = -ENOKEY;
                msg = strdup_printf("TLS: the client certificate or key for %s cannot be used: %s", server, detail);
                break;
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_SSL_SHUTDOWN_FAILED:
        case CURLE_SSL_CIPHER:
                error = -ECONNRESET;
                msg = strdup_printf("TLS handshake with the Kubernetes API server %s failed%s: %s", server,
                                    cfg->client_cert_file || cfg->client_cert_data
                                    ? " (does it accept the client certificate?)" : "", detail);
                break;
        case CURLE_RECV_ERROR:
        case CURLE_SEND_ERROR:
        case CURLE_GOT_NOTHING:
                /* With TLS 1.3 a refused client certificate shows up here,
                 * after the handshake. */
                error = -ECONNRESET;
                msg = strdup_printf("the Kubernetes API server %s dropped the connection%s: %s", server,
                                    cfg->client_cert_file || cfg->client_cert_data
                                    ? " (does it accept the client certificate?)" : "", detail);
                break;
        }
        request_finish(r, msg ? error : -ENOMEM, 0, msg, NULL);
}

static void request_done(CurlGlue *g, CURL *easy, CURLcode code, void *userdata) {
        _cleanup_(kube_deployment_freep) KubeDeployment *d = NULL;
        _cleanup_free_ char *msg = NULL;
        KubeRequest *r = userdata;
        long status = 0;
        int k;

        if (code != CURLE_OK) {
                request_transport_error(r, code);
                return;
        }

        (void) curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
        if (status < 200 || status > 299) {
                request_http_error(r, status);
                return;
        }

        k = kube_deployment_from_json(r->response ?: "", r->response_size, &d);
        if (k == -ENOMEM) {
                request_finish(r, k, status, NULL, NULL);
                return;
        }
        if (k < 0) {
                msg = strdup_printf("unexpected answer to %s deployment %s/%s: not a Deployment object",
                                    op_verb(r->op), r->namespace, r->name);
                request_finish(r, msg ? k : -ENOMEM, status, msg, NULL);
                return;
        }
        request_finish(r, 0, status, NULL, d);
}

static int request_on_defer(sd_event_source *s, void *userdata) {
        KubeRequest *r = userdata;

        request_finish(r, r->early_error, 0, r->early_message, NULL);
        return 0;
}

static size_t request_write(char *data, size_t size, size_t nmemb, void *userdata) {
        KubeRequest *r = userdata;
        size_t n = size * nmemb;
        char *p;

        if (n > KUBE_RESPONSE_MAX - r->response_size) {
                r->too_large = true;
                return 0;       /* curl aborts with CURLE_WRITE_ERROR */
        }
        p = realloc(r->response, r->response_size + n + 1);
        if (!p)
                return 0;
        memcpy(p + r->response_size, data, n);
        r->response = p;
        r->response_size += n;
        p[r->response_size] = 0;
        return n;
}

static bool image_is_valid(const char *s) {
        size_t n = s ? strlen(s) : 0;

        if (n == 0 || n > IMAGE_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if (s[i] <= 0x20 || s[i] >= 0x7f)
                        return false;
        return true;
}

/* Names go into messages before they are known to be valid. */
static const char *shown(const char *s, char buf[static 68]) {
        size_t i;

        if (!s)
                return "(null)";
        for (i = 0; s[i] && i < 64; i++)
                buf[i] = s[i] > 0x20 && s[i] < 0x7f ? s[i] : '?';
        buf[i] = 0;
        if (s[i])
                strcpy(buf + 61, "...");
        return buf;
}
#define SHOWN(s) shown((s), (char[68]) {})

static int request_new(KubeClient *c, KubeOp op, const char *ns, const char *name,
                       KubeCallback cb, void *userdata, KubeRequest **ret) {
        KubeRequest *r;

        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        *r = (KubeRequest) { .client = c, .op = op, .cb = cb, .userdata = userdata };
        r->namespace = strdup(SHOWN(ns));
        r->name = strdup(SHOWN(name));
        if (!r->namespace || !r->name) {
                request_free(r);
                return -ENOMEM;
        }
        r->next = c->requests;
        if (c->requests)
                c->requests->prev = r;
        c->requests = r;
        *ret = r;
        return 0;
}

/* Refuse the request, answering from the loop like any other failure. */
static int request_refuse(KubeRequest *r, int error, char *message) {
        int k;

        r->early_error = error;
        r->early_message = message;
        if (!message)
                return -ENOMEM;
        k = sd_event_add_defer(r->client->event, &r->defer, request_on_defer, r);
        if (k < 0)
                return k;
        (void) sd_event_source_set_description(r->defer, "kube-refused");
        return 0;
}

#define SETOPT(easy, opt, val)                                                  \
        do {                                                                    \
                if (curl_easy_setopt((easy), (opt), (val)) != CURLE_OK)         \
                        return -EIO;                                            \
        } while (0)

static int request_setup(KubeRequest *r, const char *body) {
        KubeClient *c = r->client;
        KubeConfig *cfg = c->config;
        _cleanup_free_ char *url = NULL, *auth = NULL;
        struct curl_slist *l;
        uint64_t now = now_usec();

        if (cfg->token_file && now - c->token_loaded_usec >= TOKEN_RELOAD_USEC) {
                (void) kube_config_reload_token(cfg);
                c->token_loaded_usec = now;
        }

        url = strdup_printf("%s/apis/apps/v1/namespaces/%s/deployments/%s", cfg->server, r->namespace, r->name);
        if (!url)
                return -ENOMEM;

        r->easy = curl_easy_init();
        if (!r->easy)
                return -ENOMEM;

        SETOPT(r->easy, CURLOPT_URL, url);
        SETOPT(r->easy, CURLOPT_PROTOCOLS_STR, "http,https");
        SETOPT(r->easy, CURLOPT_FOLLOWLOCATION, 0L);
        SETOPT(r->easy, CURLOPT_NOSIGNAL, 1L);
        SETOPT(r->easy, CURLOPT_TIMEOUT_MS, (long) (c->timeout_usec / 1000U));
        SETOPT(r->easy, CURLOPT_TCP_KEEPALIVE, 1L);
        SETOPT(r->easy, CURLOPT_ERRORBUFFER, r->errbuf);
        SETOPT(r->easy, CURLOPT_WRITEFUNCTION, request_write);
        SETOPT(r->easy, CURLOPT_WRITEDATA, r);
        SETOPT(r->easy, CURLOPT_USERAGENT, "norn/" NORN_VERSION);
        SETOPT(r->easy, CURLOPT_ACCEPT_ENCODING, "");

        if (cfg->proxy_url)
                SETOPT(r->easy, CURLOPT_PROXY, cfg->proxy_url);

        if (cfg->insecure_skip_tls_verify) {
                SETOPT(r->easy, CURLOPT_SSL_VERIFYPEER, 0L);
                SETOPT(r->easy, CURLOPT_SSL_VERIFYHOST, 0L);
        } else if (cfg->ca_file || cfg->ca_data) {
                /* The cluster's CA only, not the system's as well. */
                SETOPT(r->easy, CURLOPT_CAPATH, NULL);
                if (cfg->ca_file)
                        SETOPT(r->easy, CURLOPT_CAINFO, cfg->ca_file);
                else {
                        struct curl_blob b = { .data = cfg->ca_data, .len = cfg->ca_size, .flags = CURL_BLOB_COPY };
                        SETOPT(r->easy, CURLOPT_CAINFO_BLOB, &b);
                }
        }

        if (cfg->client_cert_file)
                SETOPT(r->easy, CURLOPT_SSLCERT, cfg->client_cert_file);
        else if (cfg->client_cert_data) {
                struct curl_blob b = { .data = cfg->client_cert_data, .len = cfg->client_cert_size,
                                       .flags = CURL_BLOB_COPY };
                SETOPT(r->easy, CURLOPT_SSLCERT_BLOB, &b);
        }
        if (cfg->client_key_file)
                SETOPT(r->easy, CURLOPT_SSLKEY, cfg->client_key_file);
        else if (cfg->client_key_data) {
                struct curl_blob b = { .data = cfg->client_key_data, .len = cfg->client_key_size,
                                       .flags = CURL_BLOB_COPY };
                SETOPT(r->easy, CURLOPT_SSLKEY_BLOB, &b);
        }

        if (!(l = curl_slist_append(NULL, "Accept: application/json")))
                return -ENOMEM;
        r->headers = l;
        if (!(l = curl_slist_append(r->headers, "Expect:")))
                return -ENOMEM;
        if (body && !(l = curl_slist_append(r->headers, "Content-Type: application/strategic-merge-patch+json")))
                return -ENOMEM;
        if (cfg->token) {
                auth = strdup_printf("Authorization: Bearer %s", cfg->token);
                if (!auth)
                        return -ENOMEM;
                l = curl_slist_append(r->headers, auth);
                explicit_bzero(auth, strlen(auth));
                if (!l)
                        return -ENOMEM;
        }
        SETOPT(r->easy, CURLOPT_HTTPHEADER, r->headers);

        if (body) {
                SETOPT(r->easy, CURLOPT_CUSTOMREQUEST, "PATCH");
                SETOPT(r->easy, CURLOPT_POSTFIELDSIZE, (long) strlen(body));
                SETOPT(r->easy, CURLOPT_COPYPOSTFIELDS, body);
        } else
                SETOPT(r->easy, CURLOPT_HTTPGET, 1L);

        return curl_glue_add(c->glue, r->easy, request_done, r);
}

/* Whatever goes into a URL or a patch is checked first. Returns true when
 * the request must be refused; *ret_message is NULL then only on OOM. */
static bool request_refusal(KubeOp op, const char *ns, const char *name, const char *container,
                            const char *image, const char *resource_version, char **ret_message) {
        const char *label = "must be a DNS-1123 label (at most 63 lowercase letters, digits and '-')";

        if (!kube_name_is_valid(ns))
                *ret_message = strdup_printf("invalid namespace \"%s\": %s", SHOWN(ns), label);
        else if (!kube_name_is_valid(name))
                *ret_message = strdup_printf("invalid deployment name \"%s\": %s", SHOWN(name), label);
        else if (op != KUBE_OP_PATCH)
                return false;
        else if (!kube_name_is_valid(container))
                *ret_message = strdup_printf("invalid container name \"%s\" for deployment %s/%s: %s",
                                             SHOWN(container), ns, name, label);
        else if (!image_is_valid(image))
                *ret_message = strdup_printf("invalid image for container %s of deployment %s/%s: must be 1-%d "
                                             "visible ASCII characters", container, ns, name, IMAGE_MAX);
        else if (resource_version && (!image_is_valid(resource_version) ||
                                      strlen(resource_version) > RESOURCE_VERSION_MAX))
                *ret_message = strdup_printf("invalid resourceVersion for deployment %s/%s", ns, name);
        else
                return false;
        return true;
}

static int request_start(KubeClient *c, KubeOp op, const char *ns, const char *name,
                         const char *container, const char *image, const char *resource_version,
                         KubeCallback cb, void *userdata, KubeRequest **ret_request) {
        _cleanup_free_ char *refusal = NULL, *body = NULL;
        KubeRequest *r;
        json_t *patch;
        int k;

        if (!c || !cb)
                return -EINVAL;
        ns = ns ?: c->config->namespace;

        k = request_new(c, op, ns, name, cb, userdata, &r);
        if (k < 0)
                return k;

        if (request_refusal(op, ns, name, container, image, resource_version, &refusal)) {
                k = request_refuse(r, -EINVAL, TAKE_PTR(refusal));
                goto finish;
        }

        if (op == KUBE_OP_PATCH) {
                patch = json_pack("{s:{s:{s:{s:[{s:s, s:s}]}}}}", "spec", "template", "spec", "containers",
                                  "name", container, "image", image);
                if (patch && resource_version &&
                    json_object_set_new(patch, "metadata", json_pack("{s:s}", "resourceVersion", resource_version)) < 0)
                        patch = (json_decref(patch), NULL);
                body = patch ? json_dumps(patch, JSON_COMPACT) : NULL;
                json_decref(patch);
                if (!body) {
                        /* not UTF-8, for instance */
                        k = request_refuse(r, -EINVAL, strdup_printf("cannot encode the patch for deployment %s/%s",
                                                                      ns, name));
                        goto finish;
                }
        }

        k = request_setup(r, body);

finish:
        if (k < 0) {
                request_free(r);
                return k;
        }
        if (ret_request)
                *ret_request = r;
        return 0;
}

int kube_set_image(KubeClient *c, const char *namespace, const char *deployment,
                   const char *container, const char *image, const char *resource_version,
                   KubeCallback cb, void *userdata, KubeRequest **ret_request) {
        return request_start(c, KUBE_OP_PATCH, namespace, deployment, container, image, resource_version,
                             cb, userdata, ret_request);
}

int kube_get_deployment(KubeClient *c, const char *namespace, const char *deployment,
                        KubeCallback cb, void *userdata, KubeRequest **ret_request) {
        return request_start(c, KUBE_OP_GET, namespace, deployment, NULL, NULL, NULL, cb, userdata, ret_request);
}

/* ---- the client -------------------------------------------------------- */

int kube_client_new(sd_event *event, KubeConfig *config, KubeClient **ret) {
        KubeClient *c;
        int r;

        if (!event || !config || !config->server || !config->namespace || !ret)
                return -EINVAL;

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;

        r = curl_glue_new(event, &c->glue);
        if (r < 0) {
                free(c);
                return r;
        }
        c->event = sd_event_ref(event);
        c->config = config;
        c->timeout_usec = KUBE_TIMEOUT_DEFAULT_USEC;
        c->token_loaded_usec = now_usec();
        *ret = c;
        return 0;
}

KubeClient *kube_client_free(KubeClient *c) {
        if (!c)
                return NULL;
        while (c->requests)
                request_free(c->requests);
        curl_glue_free(c->glue);
        kube_config_free(c->config);
        sd_event_unref(c->event);
        return mfree(c);
}

const KubeConfig *kube_client_get_config(KubeClient *c) {
        return c ? c->config : NULL;
}

void kube_client_set_timeout(KubeClient *c, uint64_t usec) {
        if (c)
                c->timeout_usec = usec > 0 ? MAX(usec, 1000U) : KUBE_TIMEOUT_DEFAULT_USEC;
}
