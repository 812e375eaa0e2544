/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Kubernetes client against tests/k8s-standin.py (a stand-in, not
 * Kubernetes), on a real sd-event loop, over HTTPS with certificates made
 * here with the openssl CLI. One line per check; exit 1 on any failure. */

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <jansson.h>

#include "curl-glue.h"
#include "kube-config.h"
#include "kube.h"
#include "tap.h"
#include "utf8.h"

#define TOKEN "t0ken-S3CRET-never-in-errors"
#define WRONG_TOKEN "wr0ng-S3CRET-never-in-errors"
#define RO_TOKEN "r3adonly-S3CRET-never-in-errors"

static char dir[PATH_MAX];
static char source_dir[PATH_MAX];
static sd_event *event;

static void diag(const char *fmt, ...) _printf_(1, 2);
static void diag(const char *fmt, ...) {
        va_list ap;

        fputs("# ", stdout);
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        putchar('\n');
        fflush(stdout);
}

static _Noreturn void bail(const char *what) {
        printf("not ok %u - %s\n", ++n_checks, what);
        printf("Bail out!\n");
        exit(1);
}

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000U + (uint64_t) ts.tv_nsec / 1000U;
}

/* Nothing secret may ever be in an error or a description. */
static char key_fragment[33];   /* a piece of the client key's base64 */

static int secret_free(const char *s) {
        if (!s)
                return 1;
        if (strstr(s, TOKEN) || strstr(s, WRONG_TOKEN) || strstr(s, RO_TOKEN) || strstr(s, "PRIVATE KEY"))
                return 0;
        if (key_fragment[0] && strstr(s, key_fragment))
                return 0;
        return 1;
}

static char *path_in_dir(const char *name) {
        char *p;

        if (asprintf(&p, "%s/%s", dir, name) < 0)
                bail("out of memory");
        return p;
}

static void write_file(const char *path, const char *content, size_t size) {
        FILE *f = fopen(path, "we");

        if (!f || fwrite(content, 1, size, f) != size || fclose(f) != 0)
                bail("cannot write a test file");
}

static char *read_all(const char *path) {
        FILE *f = fopen(path, "re");
        char *buf = NULL;
        size_t n = 0;

        if (!f)
                return NULL;
        if (getdelim(&buf, &n, '\0', f) < 0) {
                free(buf);
                buf = NULL;
        }
        fclose(f);
        return buf;
}

static char *b64(const void *data, size_t size) {
        static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        const unsigned char *p = data;
        char *out = malloc(size / 3 * 4 + 5), *o = out;

        if (!out)
                bail("out of memory");
        for (size_t i = 0; i < size; i += 3) {
                uint32_t v = (uint32_t) p[i] << 16 | (i + 1 < size ? (uint32_t) p[i + 1] << 8 : 0) |
                             (i + 2 < size ? p[i + 2] : 0);
                *o++ = tbl[v >> 18 & 63];
                *o++ = tbl[v >> 12 & 63];
                *o++ = i + 1 < size ? tbl[v >> 6 & 63] : '=';
                *o++ = i + 2 < size ? tbl[v & 63] : '=';
        }
        *o = 0;
        return out;
}

static char *b64_file(const char *name) {
        _cleanup_free_ char *p = path_in_dir(name), *c = read_all(p);

        if (!c)
                bail("cannot read a generated certificate");
        return b64(c, strlen(c));
}

static int run(const char *cmd) {
        _cleanup_free_ char *full = NULL;

        if (asprintf(&full, "cd '%s' && ( %s ) >/dev/null 2>&1", dir, cmd) < 0)
                bail("out of memory");
        return system(full) == 0;
}

/* ---- certificates -------------------------------------------------------- */

#define EC "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"

static void make_ca(const char *name, const char *cn) {
        char cmd[1024];

        snprintf(cmd, sizeof(cmd), "openssl req -x509 " EC " -keyout %s.key -out %s.crt -days 2 -subj /CN=%s "
                 "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign",
                 name, name, cn);
        if (!run(cmd))
                bail("openssl: cannot make a CA");
}

static void make_cert(const char *name, const char *ca, const char *subj, const char *ext) {
        _cleanup_free_ char *extpath = NULL, *extname = NULL;
        char cmd[1024];

        if (asprintf(&extname, "%s.ext", name) < 0)
                bail("out of memory");
        extpath = path_in_dir(extname);
        write_file(extpath, ext, strlen(ext));
        snprintf(cmd, sizeof(cmd), "openssl req " EC " -keyout %s.key -out %s.csr -subj %s && "
                 "openssl x509 -req -in %s.csr -CA %s.crt -CAkey %s.key -CAcreateserial -days 2 -out %s.crt "
                 "-extfile %s.ext", name, name, subj, name, ca, ca, name, name);
        if (!run(cmd))
                bail("openssl: cannot make a certificate");
}

static void make_certificates(void) {
        make_ca("ca", "norn-test-ca");
        make_ca("other-ca", "untrusted-ca");
        make_cert("server", "ca", "/CN=127.0.0.1",
                  "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
        make_cert("client", "ca", "/O=system:masters/CN=norn-client",
                  "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n");
        make_cert("rogue-client", "other-ca", "/CN=rogue",
                  "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n");
}

/* ---- the stand-in -------------------------------------------------------- */

typedef struct Standin {
        pid_t pid;
        int port;
} Standin;

static Standin standins[4];
static size_t n_standins;

static void stop_standins(void) {
        for (size_t i = 0; i < n_standins; i++)
                if (standins[i].pid > 0) {
                        kill(standins[i].pid, SIGTERM);
                        (void) waitpid(standins[i].pid, NULL, 0);
                        standins[i].pid = 0;
                }
}

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(p) < 0 ? 0 : 0;
}

static void cleanup(void) {
        stop_standins();
        if (dir[0] && !getenv("NORN_TEST_KEEP"))
                (void) nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static Standin *standin_start(const char *name, const char *const *args) {
        _cleanup_free_ char *script = NULL, *port_file = NULL, *pf_name = NULL;
        const char *argv[40] = { "python3", NULL, "--port", "0", "--port-file", NULL };
        size_t n = 6;
        Standin *s;
        pid_t pid;

        if (asprintf(&script, "%s/tests/k8s-standin.py", source_dir) < 0 || asprintf(&pf_name, "%s.port", name) < 0)
                bail("out of memory");
        port_file = path_in_dir(pf_name);
        argv[1] = script;
        argv[5] = port_file;
        for (; *args && n < ELEMENTSOF(argv) - 1; args++)
                argv[n++] = *args;
        argv[n] = NULL;

        fflush(NULL);
        pid = fork();
        if (pid < 0)
                bail("fork");
        if (pid == 0) {
                /* its "port N" line must not mix with ours; and it must
                 * not outlive us, even when we are killed */
                if (dup2(STDERR_FILENO, STDOUT_FILENO) < 0 || prctl(PR_SET_PDEATHSIG, SIGTERM) < 0)
                        _exit(127);
                execv("/usr/bin/python3", (char *const *) argv);
                _exit(127);
        }
        s = &standins[n_standins++];
        s->pid = pid;

        for (int i = 0; i < 200; i++) {
                _cleanup_free_ char *c = read_all(port_file);
                int status;

                if (c && atoi(c) > 0) {
                        s->port = atoi(c);
                        return s;
                }
                if (waitpid(pid, &status, WNOHANG) == pid) {
                        s->pid = 0;
                        bail("the stand-in exited at start");
                }
                usleep(50 * 1000);
        }
        bail("the stand-in did not start within 10 s");
}

static size_t discard(char *data, size_t size, size_t n, void *userdata) {
        return size * n;
}

/* A control request to the stand-in (test set-up only: may block). */
static int standin_control(Standin *s, const char *path) {
        _cleanup_(curl_easy_cleanupp) CURL *e = curl_easy_init();
        char url[512];
        long code = 0;

        snprintf(url, sizeof(url), "https://127.0.0.1:%d%s", s->port, path);
        if (!e)
                return 0;
        _cleanup_free_ char *ca = path_in_dir("ca.crt");
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_CAINFO, ca);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
        if (curl_easy_perform(e) != CURLE_OK)
                return 0;
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
        return code == 200;
}

/* The deny control: the next PATCH of ns/name gets a Status with this message. */
static int standin_deny(Standin *s, const char *ns, const char *name, const char *message) {
        _cleanup_(curl_easy_cleanupp) CURL *e = curl_easy_init();
        _cleanup_free_ char *ca = path_in_dir("ca.crt"), *body = NULL;
        json_t *j;
        char url[512];
        long code = 0;

        if (!e)
                return 0;
        j = json_pack("{s:s, s:i}", "message", message, "code", 400);
        body = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        if (!body)
                return 0;
        snprintf(url, sizeof(url), "https://127.0.0.1:%d/_standin/deployments/%s/%s/deny", s->port, ns, name);
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_CAINFO, ca);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
        if (curl_easy_perform(e) != CURLE_OK)
                return 0;
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
        return code == 200;
}

/* ---- running requests ---------------------------------------------------- */

typedef struct Outcome {
        int calls;
        int error;
        long http;
        char *message;
        int64_t generation, observed, replicas, status_replicas, updated, ready, available;
        char *image, *second_image, *reason, *rv;
        size_t n_containers;
} Outcome;

static void outcome_clear(Outcome *o) {
        free(o->message);
        free(o->image);
        free(o->second_image);
        free(o->reason);
        free(o->rv);
        *o = (Outcome) {};
}

static char *dup_or_null(const char *s) {
        return s ? strdup(s) : NULL;
}

static void on_result(KubeClient *c, const KubeResult *r, void *userdata) {
        Outcome *o = userdata;
        const KubeDeployment *d = r->deployment;

        o->calls++;
        o->error = r->error;
        o->http = r->http_status;
        o->message = dup_or_null(r->message);
        o->generation = r->generation;
        if (d) {
                o->observed = d->observed_generation;
                o->replicas = d->replicas;
                o->status_replicas = d->status_replicas;
                o->updated = d->updated_replicas;
                o->ready = d->ready_replicas;
                o->available = d->available_replicas;
                o->image = dup_or_null(d->image);
                o->second_image = d->n_containers > 1 ? dup_or_null(d->containers[1].image) : NULL;
                o->reason = dup_or_null(d->progressing_reason);
                o->rv = dup_or_null(d->resource_version);
                o->n_containers = d->n_containers;
        }
}

static void run_until(int *calls, int want, uint64_t timeout_usec) {
        uint64_t end = now_usec() + timeout_usec;

        while (*calls < want && now_usec() < end)
                if (sd_event_run(event, 100 * 1000) < 0)
                        bail("sd_event_run failed");
}

static void do_patch(KubeClient *c, const char *ns, const char *name, const char *container,
                     const char *image, const char *rv, Outcome *o) {
        int r;

        outcome_clear(o);
        r = kube_set_image(c, ns, name, container, image, rv, on_result, o, NULL);
        if (r < 0) {
                o->error = r;
                o->calls = -1;
                return;
        }
        if (o->calls != 0)
                bail("the callback ran inside kube_set_image()");
        run_until(&o->calls, 1, 20 * 1000 * 1000);
}

static void do_get(KubeClient *c, const char *ns, const char *name, Outcome *o) {
        int r;

        outcome_clear(o);
        r = kube_get_deployment(c, ns, name, on_result, o, NULL);
        if (r < 0) {
                o->error = r;
                o->calls = -1;
                return;
        }
        run_until(&o->calls, 1, 20 * 1000 * 1000);
}

static int has(const char *s, const char *sub) {
        return s && strstr(s, sub);
}

/* ---- kubeconfigs --------------------------------------------------------- */

static char *kubeconfig(const char *name, const char *fmt, ...) _printf_(2, 3);
static char *kubeconfig(const char *name, const char *fmt, ...) {
        _cleanup_free_ char *text = NULL;
        char *path = path_in_dir(name);
        va_list ap;
        int k;

        va_start(ap, fmt);
        k = vasprintf(&text, fmt, ap);
        va_end(ap);
        if (k < 0)
                bail("out of memory");
        write_file(path, text, strlen(text));
        return path;
}

/* A complete kubeconfig: one context "test" → cluster "c" (cluster body
 * given) → user "u" (user body given). */
static char *kubeconfig_simple(const char *name, const char *cluster, const char *user) {
        return kubeconfig(name,
                          "apiVersion: v1\nkind: Config\ncurrent-context: test\n"
                          "contexts:\n- name: test\n  context:\n    cluster: c\n    user: u\n"
                          "clusters:\n- name: c\n  cluster:\n%s"
                          "users:\n- name: u\n  user:\n%s",
                          cluster, user);
}

static KubeClient *client_for(const char *path, const char *what) {
        _cleanup_free_ char *error = NULL;
        KubeConfig *cfg = NULL;
        KubeClient *c = NULL;
        int r;

        r = kube_config_load_kubeconfig(path, NULL, &cfg, &error);
        check(r >= 0, "%s: kubeconfig loads%s%s", what, error ? ": " : "", error ?: "");
        if (r < 0)
                return NULL;
        r = kube_client_new(event, cfg, &c);
        if (r < 0) {
                kube_config_free(cfg);
                bail("kube_client_new");
        }
        return c;
}

static void expect_config_error(const char *path, const char *what, const char *expect) {
        _cleanup_free_ char *error = NULL;
        KubeConfig *cfg = NULL;
        int r;

        r = kube_config_load_kubeconfig(path, NULL, &cfg, &error);
        check(r < 0 && has(error, expect) && has(error, path) && secret_free(error),
              "kubeconfig %s: refused with \"%s\" (got %d: %s)", what, expect, r, error ?: "(none)");
        kube_config_free(cfg);
}

static void test_kubeconfig_errors(int port) {
        char server[128], ca_line[PATH_MAX + 64];
        _cleanup_free_ char *ca = path_in_dir("ca.crt"), *huge = NULL, *big_path = NULL, *fifo = NULL;
        const char *tok = "    token: " TOKEN "\n";
        char *p;

        snprintf(server, sizeof(server), "    server: https://127.0.0.1:%d\n", port);
        snprintf(ca_line, sizeof(ca_line), "%s    certificate-authority: %s\n", server, ca);

        p = path_in_dir("does-not-exist");
        expect_config_error(p, "missing file", "cannot be read: No such file or directory");
        free(p);

        p = kubeconfig("k-empty", "\n# nothing\n");
        expect_config_error(p, "empty", "file is empty");
        free(p);

        p = kubeconfig("k-nocurrent", "apiVersion: v1\nkind: Config\nusers:\n- name: u\n  user:\n    token: %s\n", TOKEN);
        expect_config_error(p, "without current-context", "no current-context is set");
        free(p);

        p = kubeconfig("k-nocontext", "current-context: nope\ncontexts:\n- name: other\n  context: {cluster: c}\n"
                       "users:\n- name: u\n  user:\n    token: %s\n", TOKEN);
        expect_config_error(p, "missing context", "context \"nope\" (the current-context) not found");
        free(p);

        p = kubeconfig("k-nocluster", "current-context: test\ncontexts:\n- name: test\n  context: {cluster: gone, user: u}\n"
                       "clusters: []\nusers:\n- name: u\n  user:\n    token: %s\n", TOKEN);
        expect_config_error(p, "missing cluster", "cluster \"gone\" (of context \"test\") not found");
        free(p);

        p = kubeconfig_simple("k-noserver", "    insecure-skip-tls-verify: true\n", tok);
        expect_config_error(p, "cluster without server", "cluster \"c\" has no server");
        free(p);

        p = kubeconfig_simple("k-nouser", ca_line, tok);
        {
                /* context names a user that is not there */
                _cleanup_free_ char *t = read_all(p);
                char *q = strstr(t, "user: u\n");
                memcpy(q, "user: x\n", 8);
                write_file(p, t, strlen(t));
        }
        expect_config_error(p, "missing user", "user \"x\" (of context \"test\") not found");
        free(p);

        p = kubeconfig_simple("k-badb64", "    server: https://127.0.0.1:1\n    certificate-authority-data: 'bm90!!base64'\n", tok);
        expect_config_error(p, "bad base64", "cluster \"c\": bad base64 in certificate-authority-data");
        free(p);

        p = kubeconfig_simple("k-notpem", "    server: https://127.0.0.1:1\n    certificate-authority-data: aGVsbG8gd29ybGQ=\n", tok);
        expect_config_error(p, "CA data that is not PEM", "certificate-authority-data does not hold PEM data");
        free(p);

        p = kubeconfig_simple("k-ftp", "    server: ftp://127.0.0.1/\n", tok);
        expect_config_error(p, "ftp:// server", "server must be an https:// or http:// URL");
        free(p);

        p = kubeconfig_simple("k-userinfo", "    server: https://admin:" TOKEN "@127.0.0.1:1\n", tok);
        expect_config_error(p, "credentials in the server URL", "must not contain user credentials");
        free(p);

        p = kubeconfig_simple("k-query", "    server: https://127.0.0.1:1/?x=1\n", tok);
        expect_config_error(p, "query in the server URL", "server URL may contain only a host, a port and a path");
        free(p);

        /* 5 MiB: refused by size before it is parsed */
        huge = malloc(5 * 1024 * 1024 + 1);
        memset(huge, '#', 5 * 1024 * 1024);
        huge[0] = '#';
        big_path = path_in_dir("k-huge");
        write_file(big_path, huge, 5 * 1024 * 1024);
        expect_config_error(big_path, "huge file", "file is larger than 4 MiB");

        p = kubeconfig("k-alias", "current-context: test\ncontexts:\n- name: test\n  context: &ctx {cluster: c, user: u}\n"
                       "- name: again\n  context: *ctx\n"
                       "clusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\n"
                       "users:\n- name: u\n  user:\n    token: %s\n", TOKEN);
        expect_config_error(p, "aliases", "YAML aliases are not allowed");
        free(p);

        p = kubeconfig("k-laughs", "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
                       "c: [*b, *b, *b, *b, *b, *b, *b, *b]\ncurrent-context: test\n");
        expect_config_error(p, "billion laughs", "YAML aliases are not allowed");
        free(p);

        p = kubeconfig("k-clusters-type", "current-context: test\ncontexts:\n- name: test\n  context: {cluster: c}\n"
                       "clusters: oops\n");
        expect_config_error(p, "clusters as a string", "clusters must be a list");
        free(p);

        p = kubeconfig_simple("k-server-type", "    server: [https://127.0.0.1:1]\n", tok);
        expect_config_error(p, "server as a list", "cluster \"c\": server must be a string");
        free(p);

        p = kubeconfig_simple("k-bool", "    server: https://127.0.0.1:1\n    insecure-skip-tls-verify: maybe\n", tok);
        expect_config_error(p, "non-boolean insecure-skip-tls-verify", "insecure-skip-tls-verify must be true or false");
        free(p);

        p = kubeconfig_simple("k-dupkey", "    server: https://127.0.0.1:1\n    server: https://evil.example:1\n", tok);
        expect_config_error(p, "duplicate key", "duplicate key \"server\"");
        free(p);

        p = kubeconfig("k-dupname", "current-context: test\ncontexts:\n- name: test\n  context: {cluster: c}\n"
                       "- name: test\n  context: {cluster: d}\n");
        expect_config_error(p, "two contexts of one name", "context \"test\" is defined twice");
        free(p);

        p = kubeconfig_simple("k-exec", server, "    exec:\n      command: aws\n      apiVersion: client.authentication.k8s.io/v1\n");
        expect_config_error(p, "exec credential plugin", "user \"u\": exec is not supported");
        free(p);

        p = kubeconfig_simple("k-badca", "    server: https://127.0.0.1:1\n    certificate-authority: /nonexistent/ca.crt\n", tok);
        expect_config_error(p, "unreadable CA file", "certificate-authority file /nonexistent/ca.crt cannot be read");
        free(p);

        p = kubeconfig_simple("k-nokey", ca_line, "    client-certificate-data: aGVsbG8=\n");
        expect_config_error(p, "certificate without key", "a client certificate needs a client key");
        free(p);

        p = kubeconfig_simple("k-insecure-ca", "    server: https://127.0.0.1:1\n    insecure-skip-tls-verify: true\n"
                              "    certificate-authority-data: aGVsbG8=\n", tok);
        expect_config_error(p, "CA with insecure-skip-tls-verify", "together with insecure-skip-tls-verify is not allowed");
        free(p);

        p = kubeconfig_simple("k-token-nl", ca_line, "    token: \"" TOKEN "\\r\\nX-Evil: 1\"\n");
        expect_config_error(p, "token with a line break", "token contains characters that cannot go into an HTTP header");
        free(p);

        p = kubeconfig("k-syntax", "current-context: test\nclusters:\n  - name: c\n   bad: [\n");
        expect_config_error(p, "broken YAML", "line ");
        free(p);

        p = kubeconfig("k-toplist", "- current-context\n- test\n");
        expect_config_error(p, "a list at the top", "the top level must be a mapping");
        free(p);

        p = kubeconfig("k-twodocs", "current-context: test\n---\ncurrent-context: other\n");
        expect_config_error(p, "two YAML documents", "more than one YAML document");
        free(p);

        {
                _cleanup_free_ char *deep = malloc(200);
                memset(deep, '[', 100);
                memset(deep + 100, ']', 99);
                deep[199] = 0;
                p = kubeconfig("k-deep", "current-context: test\nx: %s\n", deep);
                expect_config_error(p, "deep nesting", "nested too deeply");
                free(p);
        }

        {
                /* big but under the size limit: bounded work, clear refusals */
                size_t n = 0, cap = 4 * 1024 * 1024;
                _cleanup_free_ char *t = malloc(cap);
                uint64_t start;

                n += (size_t) snprintf(t, cap, "current-context: test\nx:\n");
                while (n + 16 < cap - 1024)
                        n += (size_t) snprintf(t + n, cap - n, "- a\n");
                p = path_in_dir("k-nodes");
                write_file(p, t, n);
                start = now_usec();
                expect_config_error(p, "a million list items", "more than 200000 YAML nodes");
                check(now_usec() - start < TEST_SLOWDOWN * 2000 * 1000, "... refused in %.2f s",
                      (now_usec() - start) / 1e6);
                free(p);

                n = (size_t) snprintf(t, cap, "current-context: test\nx:\n");
                for (int i = 0; i < 5000; i++)
                        n += (size_t) snprintf(t + n, cap - n, "  k%d: v\n", i);
                p = path_in_dir("k-keys");
                write_file(p, t, n);
                expect_config_error(p, "a mapping of 5000 keys", "a mapping has more than 1024 keys");
                free(p);
        }

        p = kubeconfig("k-kind", "kind: Pod\ncurrent-context: test\n");
        expect_config_error(p, "kind other than Config", "kind is \"Pod\", not Config");
        free(p);

        /* A FIFO must not block the reader. */
        fifo = path_in_dir("k-fifo");
        if (mkfifo(fifo, 0600) < 0)
                bail("mkfifo");
        expect_config_error(fifo, "FIFO instead of a file", "not a regular file");

        p = path_in_dir("");
        p[strlen(p) - 1] = 0;
        expect_config_error(p, "directory instead of a file", "is a directory");
        free(p);

        p = kubeconfig("k-badns", "current-context: test\ncontexts:\n- name: test\n  context: {cluster: c, namespace: Bad_NS}\n"
                       "clusters:\n- name: c\n  cluster:\n%s", server);
        expect_config_error(p, "invalid namespace", "namespace \"Bad_NS\" is not a valid namespace name");
        free(p);
}

static void test_kubeconfig_good(int port) {
        _cleanup_free_ char *ca = path_in_dir("ca.crt"), *desc = NULL, *error = NULL, *home = NULL, *kdir = NULL,
                            *rel = NULL, *list = NULL, *tokfile = NULL;
        _cleanup_(kube_config_freep) KubeConfig *cfg = NULL;
        char cluster[PATH_MAX + 128];
        int r;

        snprintf(cluster, sizeof(cluster), "    server: https://127.0.0.1:%d/\n    certificate-authority: %s\n", port, ca);
        _cleanup_free_ char *p = kubeconfig_simple("k-good", cluster, "    token: " TOKEN "\n");

        r = kube_config_load_kubeconfig(p, NULL, &cfg, &error);
        check(r >= 0, "kubeconfig with token and CA file loads (%s)", error ?: "no error");
        if (r < 0)
                return;
        check(cfg->server && strcmp(cfg->server, "https://127.0.0.1") > 0 && cfg->server[strlen(cfg->server) - 1] != '/',
              "server kept without the trailing slash: %s", cfg->server);
        check(streq_ptr(cfg->namespace, "default"), "namespace defaults to \"default\"");
        check(streq_ptr(cfg->token, TOKEN) && streq_ptr(cfg->ca_file, ca), "token and CA file taken");
        r = kube_config_describe(cfg, &desc);
        check(r >= 0 && has(desc, p) && has(desc, "context test") && has(desc, "server https://127.0.0.1:") &&
              secret_free(desc), "describe: %s", desc ?: "(null)");
        cfg = kube_config_free(cfg);

        /* relative file names are relative to the kubeconfig's directory */
        kdir = path_in_dir("kube");
        mkdir(kdir, 0700);
        snprintf(cluster, sizeof(cluster), "    server: https://127.0.0.1:%d\n    certificate-authority: ../ca.crt\n", port);
        tokfile = path_in_dir("kube/token");
        write_file(tokfile, "  " TOKEN "\n", strlen(TOKEN) + 3);
        rel = kubeconfig_simple("kube/config", cluster, "    tokenFile: token\n");
        free(error), error = NULL;
        r = kube_config_load_kubeconfig(rel, NULL, &cfg, &error);
        check(r >= 0 && has(cfg->ca_file, "/kube/../ca.crt") && streq_ptr(cfg->token, TOKEN) &&
              has(cfg->token_file, "/kube/token"),
              "relative certificate-authority and tokenFile resolved next to the kubeconfig (%s)", error ?: "ok");
        cfg = kube_config_free(cfg);

        /* KUBECONFIG: the first entry of the list; then HOME */
        if (asprintf(&list, ":%s:%s/nonexistent", rel, dir) < 0)
                bail("oom");
        setenv("KUBECONFIG", list, 1);
        unsetenv("KUBERNETES_SERVICE_HOST");
        free(error), error = NULL;
        r = kube_config_load(&cfg, &error);
        check(r >= 0 && streq_ptr(cfg->source, rel), "KUBECONFIG list: first entry used (%s)", error ?: "ok");
        cfg = kube_config_free(cfg);

        unsetenv("KUBECONFIG");
        home = path_in_dir("home");
        mkdir(home, 0700);
        setenv("HOME", home, 1);
        free(error), error = NULL;
        r = kube_config_load(&cfg, &error);
        check(r == -ENOENT && has(error, "/home/.kube/config") && has(error, "No such file"),
              "no KUBECONFIG, no ~/.kube/config: %s", error ?: "(none)");
        cfg = kube_config_free(cfg);

        {
                _cleanup_free_ char *kd = path_in_dir("home/.kube"), *kc = path_in_dir("home/.kube/config");
                _cleanup_free_ char *t = read_all(p);
                mkdir(kd, 0700);
                write_file(kc, t, strlen(t));
                free(error), error = NULL;
                r = kube_config_load(&cfg, &error);
                check(r >= 0 && streq_ptr(cfg->source, kc), "~/.kube/config used without KUBECONFIG");
                cfg = kube_config_free(cfg);
        }

        /* namespace: context, else NORN_KUBE_NAMESPACE, else "default" */
        setenv("NORN_KUBE_NAMESPACE", "team-b", 1);
        r = kube_config_load_kubeconfig(p, NULL, &cfg, NULL);
        check(r >= 0 && streq_ptr(cfg->namespace, "team-b"), "NORN_KUBE_NAMESPACE is the default namespace");
        cfg = kube_config_free(cfg);
        setenv("NORN_KUBE_NAMESPACE", "Not Valid", 1);
        free(error), error = NULL;
        r = kube_config_load_kubeconfig(p, NULL, &cfg, &error);
        check(r < 0 && has(error, "NORN_KUBE_NAMESPACE"), "an invalid NORN_KUBE_NAMESPACE is refused: %s", error ?: "");
        unsetenv("NORN_KUBE_NAMESPACE");
        {
                _cleanup_free_ char *t = NULL, *q = NULL;
                if (asprintf(&t, "apiVersion: v1\ncurrent-context: test\ncontexts:\n- name: test\n  context:\n"
                             "    cluster: c\n    user: u\n    namespace: team-a\nclusters:\n- name: c\n  cluster:\n"
                             "    server: https://127.0.0.1:%d\n    certificate-authority: %s\n"
                             "users:\n- name: u\n  user:\n    token: %s\npreferences: {}\n", port, ca, TOKEN) < 0)
                        bail("oom");
                q = kubeconfig("k-ns", "%s", t);
                r = kube_config_load_kubeconfig(q, NULL, &cfg, NULL);
                check(r >= 0 && streq_ptr(cfg->namespace, "team-a"), "the context's namespace wins");
                cfg = kube_config_free(cfg);
        }

        /* http:// is allowed (kubectl allows it too) */
        {
                _cleanup_free_ char *q = kubeconfig_simple("k-http", "    server: HTTP://127.0.0.1:8080\n", "    token: x\n");
                r = kube_config_load_kubeconfig(q, NULL, &cfg, NULL);
                check(r >= 0 && streq_ptr(cfg->server, "http://127.0.0.1:8080"), "http:// server accepted");
                cfg = kube_config_free(cfg);
        }

        /* base64 itself */
        {
                void *d = NULL;
                size_t n = 0;
                check(kube_base64_decode("aGVs\nbG8=", &d, &n) == 0 && n == 5 && memcmp(d, "hello", 5) == 0,
                      "base64 decodes across line breaks");
                free(d);
                check(kube_base64_decode("aGVsbG8", &d, &n) == -EINVAL, "base64 without padding refused");
                check(kube_base64_decode("aGV=bG8=", &d, &n) == -EINVAL, "base64 with data after '=' refused");
                check(kube_base64_decode("", &d, &n) == -EINVAL, "empty base64 refused");
        }
}

static void test_in_cluster(Standin *a) {
        _cleanup_free_ char *sa = path_in_dir("sa"), *t = path_in_dir("sa/token"), *ca = path_in_dir("sa/ca.crt"),
                            *ns = path_in_dir("sa/namespace"), *ca_src = path_in_dir("ca.crt"), *pem = read_all(ca_src),
                            *error = NULL, *desc = NULL;
        KubeConfig *cfg = NULL;
        KubeClient *c = NULL;
        Outcome o = {};
        char port[16];
        int r;

        mkdir(sa, 0700);
        write_file(t, TOKEN "\n", strlen(TOKEN) + 1);
        write_file(ns, "team-a\n", 7);
        snprintf(port, sizeof(port), "%d", a->port);
        setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1", 1);
        setenv("KUBERNETES_SERVICE_PORT", port, 1);
        setenv("NORN_KUBE_SA_DIR", sa, 1);

        r = kube_config_load(&cfg, &error);
        check(r < 0 && has(error, "ca.crt") && has(error, sa) && secret_free(error),
              "in-cluster without ca.crt: %s", error ?: "(loaded)");
        kube_config_free(cfg), cfg = NULL;

        write_file(ca, pem, strlen(pem));
        free(error), error = NULL;
        r = kube_config_load(&cfg, &error);
        check(r >= 0 && cfg->in_cluster && streq_ptr(cfg->namespace, "team-a") && streq_ptr(cfg->token, TOKEN),
              "in-cluster service account via NORN_KUBE_SA_DIR (%s)", error ?: "ok");
        if (r < 0)
                goto finish;
        r = kube_config_describe(cfg, &desc);
        check(r >= 0 && has(desc, "in-cluster service account") && secret_free(desc), "describe: %s", desc);

        r = kube_client_new(event, cfg, &c);
        if (r < 0)
                bail("kube_client_new");
        do_patch(c, NULL, "api", "api", "registry.example/api:v7", NULL, &o);
        check(o.calls == 1 && o.error == 0 && o.generation == 2 && streq_ptr(o.image, "registry.example/api:v7"),
              "in-cluster: PATCH team-a/api (namespace from the service account) -> generation %lld (%s)",
              (long long) o.generation, o.message ?: "ok");
        c = kube_client_free(c);

finish:
        unsetenv("KUBERNETES_SERVICE_HOST");
        unsetenv("KUBERNETES_SERVICE_PORT");
        unsetenv("NORN_KUBE_SA_DIR");
        outcome_clear(&o);
}

/* ---- the client ---------------------------------------------------------- */

static void expect_failure(Outcome *o, const char *what, int error, long http, const char *expect) {
        check(o->calls == 1 && o->error == error && o->http == http && has(o->message, expect) && secret_free(o->message),
              "%s: error %d, HTTP %ld, \"%s\" (got %d calls, %d, %ld: %s)", what, error, http, expect,
              o->calls, o->error, o->http, o->message ?: "(none)");
}

static int on_tick(sd_event_source *s, uint64_t usec, void *userdata) {
        unsigned *ticks = userdata;

        (*ticks)++;
        sd_event_source_set_time(s, usec + 20 * 1000);
        return 0;
}

static void free_client_cb(KubeClient *c, const KubeResult *r, void *userdata) {
        int *calls = userdata;

        (*calls)++;
        kube_client_free(c);
}

static void test_client(Standin *a, Standin *slow) {
        _cleanup_free_ char *ca = path_in_dir("ca.crt"), *other = path_in_dir("other-ca.crt"),
                            *cert = path_in_dir("client.crt"), *key = path_in_dir("client.key"),
                            *rogue_cert = path_in_dir("rogue-client.crt"), *rogue_key = path_in_dir("rogue-client.key"),
                            *ca64 = b64_file("ca.crt"), *cert64 = b64_file("client.crt"), *key64 = b64_file("client.key"),
                            *state = path_in_dir("a.json"), *st = NULL;
        char srv[256], cl[PATH_MAX + 512], us[PATH_MAX * 2 + 128];
        KubeClient *c;
        Outcome o = {};

        if (strlen(key64) > 72)
                memcpy(key_fragment, key64 + 40, 32);
        snprintf(srv, sizeof(srv), "    server: https://127.0.0.1:%d\n", a->port);

        /* token + CA file */
        snprintf(cl, sizeof(cl), "%s    certificate-authority: %s\n", srv, ca);
        _cleanup_free_ char *kc = kubeconfig_simple("c-token", cl, "    token: " TOKEN "\n");
        c = client_for(kc, "token + CA file");
        if (!c)
                return;

        do_get(c, NULL, "web", &o);
        check(o.calls == 1 && o.error == 0 && o.generation == 1 && streq_ptr(o.image, "registry.example/web:v1") &&
              o.replicas == 2 && o.observed == 1 && streq_ptr(o.reason, "NewReplicaSetAvailable"),
              "GET default/web before: generation 1, image v1, 2 replicas (%s)", o.message ?: "ok");

        do_patch(c, NULL, "web", "web", "registry.example/web:v2", NULL, &o);
        check(o.calls == 1 && o.error == 0 && o.http == 200 && o.generation == 2, "PATCH image: success, new generation %lld (%s)",
              (long long) o.generation, o.message ?: "ok");
        check(streq_ptr(o.image, "registry.example/web:v2") && streq_ptr(o.second_image, "envoy:1.29") && o.n_containers == 2,
              "strategic merge: only container web changed, sidecar kept (%s, %s)", o.image, o.second_image);

        do_get(c, "default", "web", &o);
        check(o.error == 0 && o.generation == 2 && streq_ptr(o.image, "registry.example/web:v2"),
              "GET after PATCH: image v2, generation 2");

        {
                uint64_t end = now_usec() + 10 * 1000 * 1000;
                int done = 0;
                while (!done && now_usec() < end) {
                        do_get(c, NULL, "web", &o);
                        done = o.error == 0 && o.observed >= o.generation && o.updated == o.replicas &&
                               o.available == o.replicas && o.status_replicas == o.replicas &&
                               streq_ptr(o.reason, "NewReplicaSetAvailable");
                        if (!done) {
                                uint64_t t = now_usec() + 100 * 1000;
                                while (now_usec() < t)
                                        sd_event_run(event, 20 * 1000);
                        }
                }
                check(done, "rollout completes: observedGeneration %lld, updated %lld, available %lld of %lld",
                      (long long) o.observed, (long long) o.updated, (long long) o.available, (long long) o.replicas);
        }

        st = read_all(state);
        check(has(st, "registry.example/web:v2"), "the stand-in's state file has the new image");

        /* optimistic concurrency */
        {
                _cleanup_free_ char *rv = NULL;
                do_get(c, NULL, "web", &o);
                rv = dup_or_null(o.rv);
                do_patch(c, NULL, "web", "web", "registry.example/web:v3", rv, &o);
                check(o.error == 0 && o.generation == 3, "PATCH with the current resourceVersion succeeds");
                do_patch(c, NULL, "web", "web", "registry.example/web:v4", rv, &o);
                expect_failure(&o, "PATCH with a stale resourceVersion", -ESTALE, 409, "conflict: deployment default/web");
        }

        do_patch(c, NULL, "nope", "web", "x:1", NULL, &o);
        expect_failure(&o, "unknown deployment", -ENOENT, 404, "deployment default/nope not found");
        do_get(c, "team-a", "nope", &o);
        expect_failure(&o, "GET of an unknown deployment", -ENOENT, 404, "deployment team-a/nope not found");

        do_patch(c, NULL, "web", "nosuch", "x:1", NULL, &o);
        expect_failure(&o, "container not in the pod spec", -EINVAL, 422, "invalid patch of deployment default/web: "
                       "Deployment.apps \"web\" is invalid: spec.template.spec.containers[2].name: Not found");

        /* Status messages around the 512-byte cut (an admission webhook's
         * denial text): ASCII, and a 2-, 3- or 4-byte character across the
         * cut; each kept whole up to 512 bytes, else cut on a character
         * boundary with "..." (an ASan build caught a heap overflow here). */
        for (size_t len = 511; len <= 515; len++) {
                static const char *const chars[] = { "", "\xc3\xa9", "\xe2\x96\xb6", "\xf0\x9f\x98\x80" };

                for (size_t k = 0; k < ELEMENTSOF(chars); k++) {
                        size_t clen = strlen(chars[k]), at = clen ? 511 : len, keep;
                        char msg[600], want[600];
                        const char *got;

                        /* the character starts at byte 511: it straddles the cut when longer than one byte */
                        if (clen && at + clen > len)
                                continue;
                        memset(msg, 'm', len);
                        memcpy(msg + at, chars[k], clen);
                        msg[len] = 0;
                        keep = len <= 512 ? len : (clen > 1 ? 511 : 512);
                        snprintf(want, sizeof(want), "%.*s%s", (int) keep, msg, len <= 512 ? "" : "...");

                        if (!standin_deny(a, "default", "web", msg)) {
                                check(false, "deny control for a %zu-byte message", len);
                                continue;
                        }
                        do_patch(c, NULL, "web", "web", "registry.example/web:denied", NULL, &o);
                        got = o.message ? strstr(o.message, "default/web: ") : NULL;
                        got = got ? got + strlen("default/web: ") : NULL;
                        check(o.error == -EINVAL && o.http == 400 && got && streq(got, want) &&
                              utf8_is_valid(o.message),
                              "%zu-byte Status message, %s at byte 511: passed on as %zu bytes%s",
                              len, (const char *const[]) { "ASCII", "a 2-byte character", "a 3-byte character",
                                                           "a 4-byte character" }[k], got ? strlen(got) : 0, got && strlen(got) > keep ? " + \"...\"" : "");
                }
        }

        /* refused before anything is sent: answered from the loop, never inside the call */
        do_patch(c, NULL, "Web", "web", "x:1", NULL, &o);
        expect_failure(&o, "uppercase deployment name", -EINVAL, 0, "invalid deployment name \"Web\"");
        do_patch(c, NULL, "../../api/v1/secrets", "web", "x:1", NULL, &o);
        expect_failure(&o, "path in deployment name", -EINVAL, 0, "invalid deployment name");
        do_patch(c, "default/x", "web", "web", "x:1", NULL, &o);
        expect_failure(&o, "slash in namespace", -EINVAL, 0, "invalid namespace \"default/x\"");
        do_patch(c, NULL, "a234567890123456789012345678901234567890123456789012345678901234", "web", "x:1", NULL, &o);
        expect_failure(&o, "64-character name", -EINVAL, 0, "invalid deployment name");
        do_patch(c, NULL, "web", "Web_1", "x:1", NULL, &o);
        expect_failure(&o, "invalid container name", -EINVAL, 0, "invalid container name \"Web_1\"");
        do_patch(c, NULL, "web", "web", "", NULL, &o);
        expect_failure(&o, "empty image", -EINVAL, 0, "invalid image for container web");
        do_patch(c, NULL, "web", "web", "x:1\r\nX-Evil: 1", NULL, &o);
        expect_failure(&o, "image with a line break", -EINVAL, 0, "invalid image");

        do_get(c, NULL, "huge", &o);
        expect_failure(&o, "response larger than 4 MiB", -EFBIG, 0, "larger than 4 MiB");

        /* a rollout that never becomes ready */
        do_patch(c, NULL, "stuck", "app", "registry.example/app:bad", NULL, &o);
        check(o.error == 0, "PATCH of never-ready default/stuck accepted");
        {
                uint64_t end = now_usec() + 10 * 1000 * 1000;
                do {
                        uint64_t t = now_usec() + 200 * 1000;
                        while (now_usec() < t)
                                sd_event_run(event, 50 * 1000);
                        do_get(c, NULL, "stuck", &o);
                } while (!streq_ptr(o.reason, "ProgressDeadlineExceeded") && now_usec() < end);
                check(streq_ptr(o.reason, "ProgressDeadlineExceeded") && o.observed == o.generation &&
                      o.status_replicas == 2 && o.updated == 1 && o.available == 1,
                      "never-ready rollout: Progressing reason %s; replicas %lld, updated %lld, available %lld "
                      "(the old pod serves, the new one never gets ready)",
                      o.reason ?: "(none)", (long long) o.status_replicas, (long long) o.updated,
                      (long long) o.available);
        }
        check(standin_control(a, "/_standin/deployments/default/flaky/fail"), "control endpoint marks default/flaky failing");
        do_patch(c, NULL, "flaky", "app", "registry.example/app:v2", NULL, &o);
        {
                uint64_t end = now_usec() + 10 * 1000 * 1000;
                do {
                        uint64_t t = now_usec() + 200 * 1000;
                        while (now_usec() < t)
                                sd_event_run(event, 50 * 1000);
                        do_get(c, NULL, "flaky", &o);
                } while (!streq_ptr(o.reason, "ProgressDeadlineExceeded") && now_usec() < end);
                check(streq_ptr(o.reason, "ProgressDeadlineExceeded"), "failing rollout of default/flaky: %s",
                      o.reason ?: "(none)");
        }

        /* cancel: no callback */
        {
                KubeRequest *req = NULL;
                outcome_clear(&o);
                if (kube_get_deployment(c, NULL, "web", on_result, &o, &req) < 0)
                        bail("kube_get_deployment");
                kube_request_cancel(req);
                uint64_t t = now_usec() + 300 * 1000;
                while (now_usec() < t)
                        sd_event_run(event, 50 * 1000);
                check(o.calls == 0, "a cancelled request never calls back");
        }

        /* freeing the client with requests in flight: no callbacks */
        outcome_clear(&o);
        for (int i = 0; i < 3; i++)
                kube_get_deployment(c, NULL, "web", on_result, &o, NULL);
        kube_set_image(c, NULL, "BAD", "web", "x", NULL, on_result, &o, NULL);
        c = kube_client_free(c);
        {
                uint64_t t = now_usec() + 300 * 1000;
                while (now_usec() < t)
                        sd_event_run(event, 50 * 1000);
                check(o.calls == 0, "freeing the client cancels its requests without callbacks");
        }

        /* a callback may free the client */
        {
                int calls = 0;
                c = client_for(kc, "client freed from its callback");
                kube_get_deployment(c, NULL, "web", free_client_cb, &calls, NULL);
                kube_get_deployment(c, NULL, "web", free_client_cb, &calls, NULL);
                uint64_t t = now_usec() + 2 * 1000 * 1000;
                while (calls == 0 && now_usec() < t)
                        sd_event_run(event, 50 * 1000);
                t = now_usec() + 300 * 1000;
                while (now_usec() < t)
                        sd_event_run(event, 50 * 1000);
                check(calls == 1, "a callback freed the client; the other request was dropped (%d calls)", calls);
                c = NULL;
        }

        /* wrong token: 401 naming the deployment, no token anywhere */
        _cleanup_free_ char *kw = kubeconfig_simple("c-wrong", cl, "    token: " WRONG_TOKEN "\n");
        if ((c = client_for(kw, "wrong token"))) {
                do_patch(c, NULL, "web", "web", "x:1", NULL, &o);
                expect_failure(&o, "wrong token", -EACCES, 401, "not authorized to patch deployment default/web: Unauthorized");
                c = kube_client_free(c);
        }

        _cleanup_free_ char *kr = kubeconfig_simple("c-ro", cl, "    token: " RO_TOKEN "\n");
        if ((c = client_for(kr, "read-only token"))) {
                do_get(c, NULL, "web", &o);
                check(o.error == 0, "read-only token: GET allowed");
                do_patch(c, NULL, "web", "web", "x:1", NULL, &o);
                expect_failure(&o, "read-only token PATCH", -EPERM, 403,
                               "not authorized to patch deployment default/web: deployments.apps \"web\" is forbidden: "
                               "User \"readonly\" cannot patch");
                c = kube_client_free(c);
        }

        _cleanup_free_ char *kn = kubeconfig_simple("c-anon", cl, "    {}\n");
        if ((c = client_for(kn, "no credentials"))) {
                do_get(c, NULL, "web", &o);
                expect_failure(&o, "no credentials", -EACCES, 401, "not authorized to get deployment default/web");
                c = kube_client_free(c);
        }

        /* client certificates, inline and by file (no token) */
        snprintf(us, sizeof(us), "    client-certificate-data: %s\n    client-key-data: %s\n", cert64, key64);
        _cleanup_free_ char *kci = kubeconfig_simple("c-cert-inline", cl, us);
        if ((c = client_for(kci, "client certificate inline"))) {
                do_patch(c, NULL, "web", "web", "registry.example/web:cert-inline", NULL, &o);
                check(o.error == 0 && streq_ptr(o.image, "registry.example/web:cert-inline"),
                      "client certificate from client-certificate-data/client-key-data (%s)", o.message ?: "ok");
                c = kube_client_free(c);
        }
        snprintf(us, sizeof(us), "    client-certificate: %s\n    client-key: %s\n", cert, key);
        _cleanup_free_ char *kcf = kubeconfig_simple("c-cert-file", cl, us);
        if ((c = client_for(kcf, "client certificate files"))) {
                do_patch(c, NULL, "web", "web", "registry.example/web:cert-file", NULL, &o);
                check(o.error == 0 && streq_ptr(o.image, "registry.example/web:cert-file"),
                      "client certificate from client-certificate/client-key files (%s)", o.message ?: "ok");
                c = kube_client_free(c);
        }
        snprintf(us, sizeof(us), "    client-certificate: %s\n    client-key: %s\n", rogue_cert, rogue_key);
        _cleanup_free_ char *kcr = kubeconfig_simple("c-cert-rogue", cl, us);
        if ((c = client_for(kcr, "client certificate of another CA"))) {
                do_get(c, NULL, "web", &o);
                check(o.calls == 1 && o.error == -ECONNRESET && o.http == 0 &&
                      has(o.message, "does it accept the client certificate?") &&
                      secret_free(o.message), "client certificate of an unknown CA is rejected: %s", o.message ?: "");
                c = kube_client_free(c);
        }

        /* CA inline, no verification, wrong CA, system CAs */
        snprintf(cl, sizeof(cl), "%s    certificate-authority-data: %s\n", srv, ca64);
        _cleanup_free_ char *kca = kubeconfig_simple("c-ca-inline", cl, "    token: " TOKEN "\n");
        if ((c = client_for(kca, "CA inline"))) {
                do_get(c, NULL, "web", &o);
                check(o.error == 0 && streq_ptr(o.image, "registry.example/web:cert-file"),
                      "CA from certificate-authority-data (%s)", o.message ?: "ok");
                c = kube_client_free(c);
        }
        snprintf(cl, sizeof(cl), "%s    insecure-skip-tls-verify: true\n", srv);
        _cleanup_free_ char *kin = kubeconfig_simple("c-insecure", cl, "    token: " TOKEN "\n");
        if ((c = client_for(kin, "insecure-skip-tls-verify"))) {
                do_get(c, NULL, "web", &o);
                check(o.error == 0, "insecure-skip-tls-verify: no verification (%s)", o.message ?: "ok");
                c = kube_client_free(c);
        }
        snprintf(cl, sizeof(cl), "%s    certificate-authority: %s\n", srv, other);
        _cleanup_free_ char *kuc = kubeconfig_simple("c-untrusted", cl, "    token: " TOKEN "\n");
        if ((c = client_for(kuc, "untrusted CA"))) {
                do_patch(c, NULL, "web", "web", "x:1", NULL, &o);
                expect_failure(&o, "server certificate from another CA", -EKEYREJECTED, 0,
                               "TLS: the certificate of the Kubernetes API server https://127.0.0.1:");
                c = kube_client_free(c);
        }
        _cleanup_free_ char *ksys = kubeconfig_simple("c-system-ca", srv, "    token: " TOKEN "\n");
        if ((c = client_for(ksys, "no CA (system store)"))) {
                do_get(c, NULL, "web", &o);
                expect_failure(&o, "no CA configured: the system store does not trust the test CA", -EKEYREJECTED, 0,
                               "is not trusted");
                c = kube_client_free(c);
        }

        /* nobody listening */
        {
                char s2[128];
                snprintf(s2, sizeof(s2), "    server: http://127.0.0.1:1\n");
                _cleanup_free_ char *kd = kubeconfig_simple("c-down", s2, "    token: " TOKEN "\n");
                if ((c = client_for(kd, "server down"))) {
                        do_get(c, NULL, "web", &o);
                        expect_failure(&o, "connection refused", -ECONNREFUSED, 0,
                                       "cannot connect to the Kubernetes API server http://127.0.0.1:1");
                        c = kube_client_free(c);
                }
        }

        /* plain HTTP, slow server: the loop keeps running */
        snprintf(srv, sizeof(srv), "    server: http://127.0.0.1:%d\n", slow->port);
        _cleanup_free_ char *kh = kubeconfig_simple("c-http", srv, "    token: " TOKEN "\n");
        if ((c = client_for(kh, "http:// server"))) {
                _cleanup_(sd_event_source_unrefp) sd_event_source *timer = NULL;
                unsigned ticks = 0;
                uint64_t start;
                Outcome many[5] = {};

                if (sd_event_add_time_relative(event, &timer, CLOCK_MONOTONIC, 20 * 1000, 1000, on_tick, &ticks) < 0)
                        bail("timer");
                sd_event_source_set_enabled(timer, SD_EVENT_ON);

                start = now_usec();
                do_patch(c, NULL, "web", "web", "registry.example/web:http", NULL, &o);
                check(o.error == 0 && streq_ptr(o.image, "registry.example/web:http"),
                      "PATCH over http:// (%s)", o.message ?: "ok");
                check(now_usec() - start >= 900 * 1000 && ticks >= 20,
                      "the loop never blocks: %u timer ticks during a %.2f s request", ticks,
                      (now_usec() - start) / 1e6);

                start = now_usec();
                int calls = 0;
                for (size_t i = 0; i < ELEMENTSOF(many); i++)
                        kube_get_deployment(c, NULL, "web", on_result, &many[i], NULL);
                while (calls < (int) ELEMENTSOF(many) && now_usec() - start < 10 * 1000 * 1000) {
                        sd_event_run(event, 50 * 1000);
                        calls = 0;
                        for (size_t i = 0; i < ELEMENTSOF(many); i++)
                                calls += many[i].calls;
                }
                int ok = calls == (int) ELEMENTSOF(many);
                for (size_t i = 0; i < ELEMENTSOF(many); i++) {
                        ok = ok && many[i].error == 0;
                        outcome_clear(&many[i]);
                }
                check(ok && now_usec() - start < 2500 * 1000, "5 requests in flight at once finish together in %.2f s",
                      (now_usec() - start) / 1e6);

                kube_client_set_timeout(c, 300 * 1000);
                start = now_usec();
                do_get(c, NULL, "web", &o);
                expect_failure(&o, "request slower than the timeout", -ETIMEDOUT, 0,
                               "request to get deployment default/web timed out after 0.3 s");
                check(now_usec() - start < 900 * 1000, "the timeout fired on time (%.2f s)", (now_usec() - start) / 1e6);
                c = kube_client_free(c);
        }

        outcome_clear(&o);
}

static void write_state(const char *name, bool with_huge) {
        _cleanup_free_ char *p = path_in_dir(name), *big = NULL, *json = NULL;
        size_t n = with_huge ? 5 * 1024 * 1024 : 10;

        big = malloc(n + 1);
        memset(big, 'x', n);
        big[n] = 0;
        if (asprintf(&json,
                     "{\"deployments\": ["
                     "{\"metadata\": {\"name\": \"web\", \"namespace\": \"default\"},"
                     " \"spec\": {\"replicas\": 2, \"template\": {\"spec\": {\"containers\": ["
                     "  {\"name\": \"web\", \"image\": \"registry.example/web:v1\"},"
                     "  {\"name\": \"envoy\", \"image\": \"envoy:1.29\"}]}}}},"
                     "{\"metadata\": {\"name\": \"stuck\", \"namespace\": \"default\","
                     "   \"annotations\": {\"standin.norn.dev/never-ready\": \"true\"}},"
                     " \"spec\": {\"replicas\": 1, \"progressDeadlineSeconds\": 1, \"template\": {\"spec\": {\"containers\": ["
                     "  {\"name\": \"app\", \"image\": \"registry.example/app:v1\"}]}}}},"
                     "{\"metadata\": {\"name\": \"flaky\", \"namespace\": \"default\"},"
                     " \"spec\": {\"replicas\": 1, \"progressDeadlineSeconds\": 1, \"template\": {\"spec\": {\"containers\": ["
                     "  {\"name\": \"app\", \"image\": \"registry.example/app:v1\"}]}}}},"
                     "{\"metadata\": {\"name\": \"api\", \"namespace\": \"team-a\"},"
                     " \"spec\": {\"replicas\": 3, \"template\": {\"spec\": {\"containers\": ["
                     "  {\"name\": \"api\", \"image\": \"registry.example/api:v6\"}]}}}},"
                     "{\"metadata\": {\"name\": \"huge\", \"namespace\": \"default\", \"annotations\": {\"big\": \"%s\"}},"
                     " \"spec\": {\"template\": {\"spec\": {\"containers\": [{\"name\": \"h\", \"image\": \"h:1\"}]}}}}"
                     "]}\n", big) < 0)
                bail("oom");
        write_file(p, json, strlen(json));
}

static void find_source_dir(void) {
        const char *e = getenv("NORN_SOURCE_DIR");
        char buf[PATH_MAX], *p;
        struct stat st;

        if (e && *e)
                snprintf(buf, sizeof(buf), "%s", e);
        else {
                /* meson runs tests in the build directory; __FILE__ is relative to it */
                snprintf(buf, sizeof(buf), "%s", __FILE__);
                p = strstr(buf, "tests/unit/test-kube.c");
                if (!p)
                        bail("cannot find the source directory: set NORN_SOURCE_DIR");
                *p = 0;
                if (!*buf)
                        strcpy(buf, ".");
        }
        if (!realpath(buf, source_dir))
                bail("cannot find the source directory: set NORN_SOURCE_DIR");
        _cleanup_free_ char *script = NULL;
        if (asprintf(&script, "%s/tests/k8s-standin.py", source_dir) < 0)
                bail("out of memory");
        if (stat(script, &st) < 0)
                bail("tests/k8s-standin.py not found: set NORN_SOURCE_DIR");
}

int main(void) {
        _cleanup_free_ char *cert = NULL, *key = NULL, *state = NULL, *ca = NULL, *slow_state = NULL;
        Standin *a, *slow;

        setvbuf(stdout, NULL, _IOLBF, 0);
        find_source_dir();

        /* straight to 127.0.0.1, whatever the environment says */
        for (const char *const *v = (const char *const[]) { "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                                                              "ALL_PROXY", "all_proxy", "KUBECONFIG", NULL }; *v; v++)
                unsetenv(*v);
        unsetenv("KUBERNETES_SERVICE_HOST");
        unsetenv("NORN_KUBE_SA_DIR");
        unsetenv("NORN_KUBE_NAMESPACE");

        snprintf(dir, sizeof(dir), "/tmp/test-kube-XXXXXX");
        if (!mkdtemp(dir))
                bail("mkdtemp");
        atexit(cleanup);
        signal(SIGPIPE, SIG_IGN);

        make_certificates();
        write_state("a.json", true);
        write_state("slow.json", false);
        cert = path_in_dir("server.crt");
        key = path_in_dir("server.key");
        ca = path_in_dir("ca.crt");
        state = path_in_dir("a.json");
        slow_state = path_in_dir("slow.json");

        a = standin_start("a", (const char *const[]) {
                "--tls-cert", cert, "--tls-key", key, "--client-ca", ca, "--token", TOKEN,
                "--readonly-token", RO_TOKEN, "--state", state, "--rollout-seconds", "0.5", NULL });
        slow = standin_start("slow", (const char *const[]) {
                "--token", TOKEN, "--delay", "1", "--state", slow_state, NULL });
        diag("stand-ins on ports %d (https) and %d (http, 1 s delay); files in %s", a->port, slow->port, dir);

        if (sd_event_new(&event) < 0)
                bail("sd_event_new");

        test_kubeconfig_errors(a->port);
        test_kubeconfig_good(a->port);
        test_in_cluster(a);
        test_client(a, slow);

        event = sd_event_unref(event);
        stop_standins();
        printf("1..%u\n", n_checks);
        if (n_failed > 0) {
                printf("# %u of %u checks failed\n", n_failed, n_checks);
                return 1;
        }
        return 0;
}
