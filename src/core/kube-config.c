/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <yaml.h>

#include "kube-config.h"
#include "log.h"

#define YAML_DEPTH_MAX 32
#define YAML_NODES_MAX 200000
#define YAML_KEYS_MAX 1024      /* per mapping */
#define NAME_SHOWN_MAX 80

/* ---- errors ------------------------------------------------------------ */

typedef struct Ctx {
        const char *what;       /* "kubeconfig" or "in-cluster service account" */
        const char *path;
        char *error;
} Ctx;

static int fail(Ctx *ctx, int r, const char *fmt, ...) _printf_(3, 4);
static int fail(Ctx *ctx, int r, const char *fmt, ...) {
        _cleanup_free_ char *msg = NULL;
        va_list ap;
        int k;

        if (ctx->error)         /* the first error is the one that counts */
                return r;
        va_start(ap, fmt);
        k = vasprintf(&msg, fmt, ap);
        va_end(ap);
        if (k < 0)
                return -ENOMEM;
        if (asprintf(&ctx->error, "%s %s: %s", ctx->what, ctx->path, msg) < 0) {
                ctx->error = NULL;
                return -ENOMEM;
        }
        return r;
}

/* Names from the file go into messages: printable ASCII only, bounded. */
static const char *shown(const char *s, char buf[static NAME_SHOWN_MAX + 4]) {
        size_t i;

        for (i = 0; s[i] && i < NAME_SHOWN_MAX; i++)
                buf[i] = s[i] > 0x20 && s[i] < 0x7f ? s[i] : '?';
        if (s[i])
                buf[i++] = '.', buf[i++] = '.', buf[i++] = '.';
        buf[i] = 0;
        return buf;
}

#define SHOWN(s) shown((s), (char[NAME_SHOWN_MAX + 4]) {})

/* ---- small helpers ------------------------------------------------------ */

static void erase_and_free(void *p, size_t n) {
        if (p)
                explicit_bzero(p, n);
        free(p);
}

static void erase_string(char *s) {
        if (s)
                erase_and_free(s, strlen(s));
}

bool kube_name_is_valid(const char *s) {
        size_t n;

        if (!s)
                return false;
        n = strlen(s);
        if (n == 0 || n > KUBE_NAME_MAX || s[0] == '-' || s[n - 1] == '-')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
                        return false;
        return true;
}

static int b64_value(char c) {
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '+')
                return 62;
        if (c == '/')
                return 63;
        return -1;
}

int kube_base64_decode(const char *s, void **ret, size_t *ret_size) {
        _cleanup_free_ uint8_t *out = NULL;
        size_t n = 0, len = strlen(s), pad = 0, chars = 0;
        uint32_t acc = 0;

        out = malloc(len / 4 * 3 + 3);
        if (!out)
                return -ENOMEM;

        for (size_t i = 0; i < len; i++) {
                char c = s[i];
                int v;

                if (strchr(" \t\r\n", c))
                        continue;
                if (c == '=') {
                        pad++;
                        if (pad > 2)
                                return -EINVAL;
                        chars++;
                        continue;
                }
                if (pad > 0)            /* data after padding */
                        return -EINVAL;
                v = b64_value(c);
                if (v < 0)
                        return -EINVAL;
                acc = acc << 6 | (uint32_t) v;
                chars++;
                if (chars % 4 == 0) {
                        out[n++] = (uint8_t) (acc >> 16);
                        out[n++] = (uint8_t) (acc >> 8);
                        out[n++] = (uint8_t) acc;
                        acc = 0;
                }
        }

        if (chars == 0 || chars % 4 != 0)
                return -EINVAL;
        if (pad > 0) {
                /* the last quantum held 4 - pad characters */
                if (pad == 1) {
                        out[n++] = (uint8_t) (acc >> 10);
                        out[n++] = (uint8_t) (acc >> 2);
                        if (acc & 0x3)
                                return -EINVAL;
                } else {
                        out[n++] = (uint8_t) (acc >> 4);
                        if (acc & 0xf)
                                return -EINVAL;
                }
        }

        *ret = TAKE_PTR(out);
        *ret_size = n;
        return 0;
}

/* Read a regular file of at most max bytes, NUL-terminated. Never blocks on
 * a FIFO, never reads more than max+1 bytes of anything. */
static int read_bounded(const char *path, size_t max, char **ret, size_t *ret_size) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *buf = NULL;
        struct stat st;
        size_t n = 0;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (S_ISDIR(st.st_mode))
                return -EISDIR;
        if (!S_ISREG(st.st_mode))
                return -EBADFD;
        if ((uint64_t) st.st_size > max)
                return -EFBIG;

        buf = malloc(max + 2);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                ssize_t k = read(fd, buf + n, max + 1 - n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        break;
                n += (size_t) k;
                if (n > max)
                        return -EFBIG;
        }
        buf[n] = 0;
        *ret = TAKE_PTR(buf);
        *ret_size = n;
        return 0;
}

static const char *read_error(int r) {
        switch (r) {
        case -EFBIG:
                return "file is too large";
        case -EISDIR:
                return "is a directory";
        case -EBADFD:
                return "not a regular file";
        default:
                return strerror(-r);
        }
}

static void strip(char *s) {
        size_t n = strlen(s), b = strspn(s, " \t\r\n");

        while (n > b && strchr(" \t\r\n", s[n - 1]))
                n--;
        memmove(s, s + b, n - b);
        s[n - b] = 0;
}

/* A bearer token goes into an HTTP header: visible ASCII only. */
static bool token_is_valid(const char *t) {
        if (!*t)
                return false;
        for (; *t; t++)
                if (*t <= 0x20 || *t >= 0x7f)
                        return false;
        return true;
}

static int read_token(Ctx *ctx, const char *path, const char *owner, char **ret) {
        char *buf = NULL;
        size_t size;
        int r;

        r = read_bounded(path, KUBE_FILE_SIZE_MAX, &buf, &size);
        if (r < 0)
                return fail(ctx, r, "%stoken file %s cannot be read: %s", owner, path, read_error(r));
        if (memchr(buf, 0, size)) {
                erase_and_free(buf, size);
                return fail(ctx, -EINVAL, "%stoken in %s contains characters that cannot go into an HTTP header",
                            owner, path);
        }
        strip(buf);
        if (!*buf) {
                erase_and_free(buf, size);
                return fail(ctx, -EINVAL, "%stoken file %s is empty", owner, path);
        }
        if (!token_is_valid(buf)) {
                erase_and_free(buf, size);
                return fail(ctx, -EINVAL, "%stoken in %s contains characters that cannot go into an HTTP header",
                            owner, path);
        }
        *ret = buf;
        return 0;
}

/* Certificates and keys by path are handed to curl, which reads them on each
 * connection (so rotation works); check now that they can be read. */
static int check_file(Ctx *ctx, const char *path, const char *owner, const char *field) {
        _cleanup_free_ char *buf = NULL;
        size_t size;
        int r;

        r = read_bounded(path, KUBE_FILE_SIZE_MAX, &buf, &size);
        if (r < 0)
                return fail(ctx, r, "%s%s file %s cannot be read: %s", owner, field, path, read_error(r));
        r = strstr(buf, "-----BEGIN ") ? 0 : -EINVAL;
        erase_and_free(TAKE_PTR(buf), size);
        if (r < 0)
                return fail(ctx, r, "%s%s file %s is not in PEM format", owner, field, path);
        return 0;
}

/* ---- a small YAML tree: no aliases, bounded depth and size -------------- */

typedef enum YType { Y_SCALAR, Y_MAP, Y_SEQ } YType;

typedef struct YNode {
        YType type;
        bool plain;             /* plain scalar without a tag: may be a bool or null */
        char *value;
        size_t line, column;    /* 1-based */
        struct YNode **items;   /* map: key, value, key, value, ...; seq: items */
        size_t n_items, n_alloc;
} YNode;

static void ynode_free(YNode *n) {
        if (!n)
                return;
        for (size_t i = 0; i < n->n_items; i++)
                ynode_free(n->items[i]);
        free(n->items);
        if (n->value)
                erase_string(n->value);     /* may be a token */
        free(n);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(YNode *, ynode_free);

static bool ynode_is_null(const YNode *n) {
        return !n || (n->type == Y_SCALAR && n->plain &&
                      (!*n->value || streq(n->value, "~") || streq(n->value, "null") ||
                       streq(n->value, "Null") || streq(n->value, "NULL")));
}

static int ynode_append(YNode *parent, YNode *child) {
        if (parent->n_items == parent->n_alloc) {
                size_t k = parent->n_alloc ? parent->n_alloc * 2 : 8;
                YNode **p = realloc(parent->items, k * sizeof(YNode *));
                if (!p)
                        return -ENOMEM;
                parent->items = p;
                parent->n_alloc = k;
        }
        parent->items[parent->n_items++] = child;
        return 0;
}

static YNode *ymap_get(const YNode *map, const char *key) {
        if (!map || map->type != Y_MAP)
                return NULL;
        for (size_t i = 0; i + 1 < map->n_items; i += 2)
                if (streq(map->items[i]->value, key))
                        return map->items[i + 1];
        return NULL;
}

typedef struct YBuilder {
        YNode *root;
        YNode *stack[YAML_DEPTH_MAX];
        size_t depth, n_nodes, n_docs;
} YBuilder;

/* Attach the node of a scalar or collection-start event to the tree. */
static int yaml_add_node(Ctx *ctx, YBuilder *b, const yaml_event_t *ev) {
        _cleanup_(ynode_freep) YNode *node = NULL;
        YNode *parent = b->depth > 0 ? b->stack[b->depth - 1] : NULL, *n;
        size_t line = ev->start_mark.line + 1, column = ev->start_mark.column + 1;
        int r;

        if (++b->n_nodes > YAML_NODES_MAX)
                return fail(ctx, -E2BIG, "more than %d YAML nodes", YAML_NODES_MAX);
        if (!parent && b->root)
                return fail(ctx, -EBADMSG, "line %zu: unexpected content", line);
        if (ev->type != YAML_SCALAR_EVENT && b->depth >= YAML_DEPTH_MAX)
                return fail(ctx, -EBADMSG, "line %zu: nested too deeply", line);

        node = calloc(1, sizeof(YNode));
        if (!node)
                return -ENOMEM;
        node->line = line;
        node->column = column;
        if (ev->type == YAML_SCALAR_EVENT) {
                node->type = Y_SCALAR;
                node->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && ev->data.scalar.plain_implicit;
                node->value = strndup((const char *) ev->data.scalar.value, ev->data.scalar.length);
                if (!node->value)
                        return -ENOMEM;
                if (strlen(node->value) != ev->data.scalar.length)
                        return fail(ctx, -EBADMSG, "line %zu: a value contains a NUL character", line);
        } else
                node->type = ev->type == YAML_MAPPING_START_EVENT ? Y_MAP : Y_SEQ;

        if (parent && parent->type == Y_MAP && parent->n_items % 2 == 0) {
                /* a key: a string, once per mapping (the check is quadratic,
                 * hence the bound on keys) */
                if (node->type != Y_SCALAR)
                        return fail(ctx, -EBADMSG, "line %zu column %zu: mapping keys must be strings", line, column);
                if (parent->n_items / 2 >= YAML_KEYS_MAX)
                        return fail(ctx, -E2BIG, "line %zu: a mapping has more than %d keys", line, YAML_KEYS_MAX);
                if (ymap_get(parent, node->value))
                        return fail(ctx, -EBADMSG, "line %zu: duplicate key \"%s\"", line, SHOWN(node->value));
        }

        n = node;
        if (parent) {
                r = ynode_append(parent, n);
                if (r < 0)
                        return r;
        } else
                b->root = n;
        TAKE_PTR(node);

        if (n->type != Y_SCALAR)
                b->stack[b->depth++] = n;
        return 0;
}

static int yaml_load(Ctx *ctx, const char *buf, size_t size, YNode **ret) {
        YBuilder b = {};
        yaml_parser_t parser;
        int r = 0;

        if (!yaml_parser_initialize(&parser))
                return -ENOMEM;
        yaml_parser_set_input_string(&parser, (const unsigned char *) buf, size);

        for (bool done = false; !done && r >= 0;) {
                yaml_event_t ev;

                if (!yaml_parser_parse(&parser, &ev)) {
                        r = fail(ctx, -EBADMSG, "line %zu column %zu: %s%s%s",
                                 parser.problem_mark.line + 1, parser.problem_mark.column + 1,
                                 strna(parser.problem), parser.context ? " " : "", parser.context ?: "");
                        break;
                }

                switch (ev.type) {
                case YAML_STREAM_END_EVENT:
                        done = true;
                        break;
                case YAML_DOCUMENT_START_EVENT:
                        if (++b.n_docs > 1)
                                r = fail(ctx, -EBADMSG, "line %zu: more than one YAML document",
                                         ev.start_mark.line + 1);
                        break;
                case YAML_ALIAS_EVENT:
                        /* refused outright: no billion laughs, no shared nodes */
                        r = fail(ctx, -EBADMSG, "line %zu column %zu: YAML aliases are not allowed",
                                 ev.start_mark.line + 1, ev.start_mark.column + 1);
                        break;
                case YAML_SCALAR_EVENT:
                case YAML_SEQUENCE_START_EVENT:
                case YAML_MAPPING_START_EVENT:
                        r = yaml_add_node(ctx, &b, &ev);
                        break;
                case YAML_SEQUENCE_END_EVENT:
                case YAML_MAPPING_END_EVENT:
                        if (b.depth > 0)
                                b.depth--;
                        break;
                default:
                        break;
                }
                yaml_event_delete(&ev);
        }
        yaml_parser_delete(&parser);

        if (r >= 0 && ynode_is_null(b.root))
                r = fail(ctx, -ENODATA, "file is empty");
        else if (r >= 0 && b.root->type != Y_MAP)
                r = fail(ctx, -EBADMSG, "line %zu: the top level must be a mapping", b.root->line);
        if (r < 0) {
                ynode_free(b.root);
                return r;
        }
        *ret = b.root;
        return 0;
}

/* String field of a mapping: 0 and NULL when absent or null. */
static int get_string(Ctx *ctx, const YNode *map, const char *key, const char *owner, const char **ret) {
        const YNode *n = ymap_get(map, key);

        *ret = NULL;
        if (ynode_is_null(n))
                return 0;
        if (n->type != Y_SCALAR)
                return fail(ctx, -EBADMSG, "%s%s must be a string (line %zu)", owner, key, n->line);
        *ret = n->value;
        return 0;
}

static int get_bool(Ctx *ctx, const YNode *map, const char *key, const char *owner, bool *ret) {
        static const char *const yes[] = { "true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON" };
        static const char *const no[] = { "false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF" };
        const YNode *n = ymap_get(map, key);

        *ret = false;
        if (ynode_is_null(n))
                return 0;
        if (n->type == Y_SCALAR && n->plain) {
                for (size_t i = 0; i < ELEMENTSOF(yes); i++)
                        if (streq(n->value, yes[i]))
                                return *ret = true, 0;
                for (size_t i = 0; i < ELEMENTSOF(no); i++)
                        if (streq(n->value, no[i]))
                                return 0;
        }
        return fail(ctx, -EBADMSG, "%s%s must be true or false (line %zu)", owner, key, n->line);
}

static int get_map(Ctx *ctx, const YNode *map, const char *key, const char *owner, const YNode **ret) {
        const YNode *n = ymap_get(map, key);

        *ret = NULL;
        if (ynode_is_null(n))
                return 0;
        if (n->type != Y_MAP)
                return fail(ctx, -EBADMSG, "%s%s must be a mapping (line %zu)", owner, key, n->line);
        *ret = n;
        return 0;
}

/* clusters/contexts/users: a list of {name: N, <item>: {...}}. Finds the one
 * entry called name; two of them is an error, not a guess. */
static int find_named(Ctx *ctx, const YNode *root, const char *list, const char *item,
                      const char *name, const YNode **ret) {
        const YNode *l = ymap_get(root, list), *found = NULL;

        *ret = NULL;
        if (ynode_is_null(l))
                return 0;
        if (l->type != Y_SEQ)
                return fail(ctx, -EBADMSG, "%s must be a list (line %zu)", list, l->line);

        for (size_t i = 0; i < l->n_items; i++) {
                const YNode *e = l->items[i], *n;

                if (e->type != Y_MAP)
                        return fail(ctx, -EBADMSG, "%s[%zu] must be a mapping (line %zu)", list, i, e->line);
                n = ymap_get(e, "name");
                if (ynode_is_null(n) || n->type != Y_SCALAR)
                        return fail(ctx, -EBADMSG, "%s[%zu] has no name (line %zu)", list, i, e->line);
                if (!streq(n->value, name))
                        continue;
                if (found)
                        return fail(ctx, -EBADMSG, "%s \"%s\" is defined twice (lines %zu and %zu)",
                                    item, SHOWN(name), found->line, e->line);
                found = e;
        }
        if (!found)
                return 0;

        {
                const YNode *body;
                char owner[NAME_SHOWN_MAX + 64];
                int r;

                snprintf(owner, sizeof(owner), "%s \"%s\": ", item, SHOWN(name));
                r = get_map(ctx, found, item, owner, &body);
                if (r < 0)
                        return r;
                if (!body)
                        return fail(ctx, -EBADMSG, "%s \"%s\" has no %s section (line %zu)",
                                    item, SHOWN(name), item, found->line);
                *ret = body;
        }
        return 0;
}

/* ---- pieces of a configuration ----------------------------------------- */

/* Relative file names in a kubeconfig are relative to its directory. */
static int resolve_path(const char *config_path, const char *p, char **ret) {
        const char *slash;
        char *s;

        if (p[0] == '/' || !(slash = strrchr(config_path, '/')))
                s = strdup(p);
        else if (asprintf(&s, "%.*s/%s", (int) (slash - config_path), config_path, p) < 0)
                s = NULL;
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

static bool startswith_nocase(const char *s, const char *prefix) {
        return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

/* https://host[:port][/prefix]: no user info, query or fragment, nothing
 * that is not visible ASCII. Normalized: lowercase scheme, no trailing '/'. */
static int parse_server(Ctx *ctx, const char *url, const char *owner, char **ret) {
        const char *rest, *scheme;
        size_t host_len, n;
        char *s;

        if (startswith_nocase(url, "https://"))
                scheme = "https://";
        else if (startswith_nocase(url, "http://"))
                scheme = "http://";
        else
                return fail(ctx, -EINVAL, "%sserver must be an https:// or http:// URL", owner);

        rest = url + strlen(scheme);
        if (strlen(url) > 2048)
                return fail(ctx, -EINVAL, "%sserver URL is too long", owner);
        for (const char *p = rest; *p; p++)
                if (*p <= 0x20 || *p >= 0x7f || *p == '?' || *p == '#' || *p == '\\')
                        return fail(ctx, -EINVAL, "%sserver URL may contain only a host, a port and a path", owner);

        host_len = strcspn(rest, "/");
        if (memchr(rest, '@', host_len))
                return fail(ctx, -EINVAL, "%sserver URL must not contain user credentials", owner);
        if (host_len == 0 || rest[0] == ':')
                return fail(ctx, -EINVAL, "%sserver URL has no host", owner);

        n = strlen(rest);
        while (n > host_len && rest[n - 1] == '/')
                n--;
        if (asprintf(&s, "%s%.*s", scheme, (int) n, rest) < 0)
                return -ENOMEM;
        *ret = s;
        return 0;
}

static int decode_pem(Ctx *ctx, const char *b64, const char *owner, const char *field,
                      void **ret, size_t *ret_size) {
        void *data = NULL;
        size_t size = 0;
        int r;

        r = kube_base64_decode(b64, &data, &size);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return fail(ctx, r, "%sbad base64 in %s", owner, field);
        if (!memmem(data, size, "-----BEGIN ", 11)) {
                erase_and_free(data, size);
                return fail(ctx, -EINVAL, "%s%s does not hold PEM data (after base64 decoding)", owner, field);
        }
        *ret = data;
        *ret_size = size;
        return 0;
}

static int default_namespace_get(Ctx *ctx, const char *def, char **ret) {
        const char *e = NULL;
        char *s;

        if (!def) {
                e = getenv("NORN_KUBE_NAMESPACE");
                def = e && *e ? e : "default";
        }
        if (!kube_name_is_valid(def))
                return fail(ctx, -EINVAL, "%s \"%s\" is not a valid namespace name",
                            e && def == e ? "NORN_KUBE_NAMESPACE" : "default namespace", SHOWN(def));
        s = strdup(def);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

static int set_error(Ctx *ctx, int r, char **ret_error) {
        if (ret_error)
                *ret_error = TAKE_PTR(ctx->error);
        ctx->error = mfree(ctx->error);
        return r;
}

static int dup_to(char **dst, const char *s) {
        if (!s)
                return 0;
        *dst = strdup(s);
        return *dst ? 0 : -ENOMEM;
}

/* ---- kubeconfig ---------------------------------------------------------- */

static int load_cluster(Ctx *ctx, KubeConfig *c, const YNode *cluster) {
        const char *server, *ca, *ca_data, *proxy, *tls_name;
        char owner[NAME_SHOWN_MAX + 32];
        int r;

        snprintf(owner, sizeof(owner), "cluster \"%s\": ", SHOWN(c->cluster));

        if ((r = get_string(ctx, cluster, "server", owner, &server)) < 0 ||
            (r = get_string(ctx, cluster, "certificate-authority", owner, &ca)) < 0 ||
            (r = get_string(ctx, cluster, "certificate-authority-data", owner, &ca_data)) < 0 ||
            (r = get_string(ctx, cluster, "proxy-url", owner, &proxy)) < 0 ||
            (r = get_string(ctx, cluster, "tls-server-name", owner, &tls_name)) < 0 ||
            (r = get_bool(ctx, cluster, "insecure-skip-tls-verify", owner, &c->insecure_skip_tls_verify)) < 0)
                return r;

        if (!server)
                return fail(ctx, -EINVAL, "cluster \"%s\" has no server", SHOWN(c->cluster));
        r = parse_server(ctx, server, owner, &c->server);
        if (r < 0)
                return r;

        if (tls_name)
                return fail(ctx, -EOPNOTSUPP, "%stls-server-name is not supported", owner);
        if (ca && ca_data)
                return fail(ctx, -EINVAL, "%sboth certificate-authority and certificate-authority-data are set", owner);
        if ((ca || ca_data) && c->insecure_skip_tls_verify)
                return fail(ctx, -EINVAL, "%sa certificate authority together with insecure-skip-tls-verify is not allowed", owner);

        if (ca) {
                r = resolve_path(c->source, ca, &c->ca_file);
                if (r < 0)
                        return r;
                r = check_file(ctx, c->ca_file, owner, "certificate-authority");
                if (r < 0)
                        return r;
        } else if (ca_data) {
                r = decode_pem(ctx, ca_data, owner, "certificate-authority-data", &c->ca_data, &c->ca_size);
                if (r < 0)
                        return r;
        }

        if (proxy) {
                if (!startswith_nocase(proxy, "http://") && !startswith_nocase(proxy, "https://") &&
                    !startswith_nocase(proxy, "socks5://") && !startswith_nocase(proxy, "socks5h://"))
                        return fail(ctx, -EINVAL, "%sproxy-url must be an http://, https:// or socks5:// URL", owner);
                for (const char *p = proxy; *p; p++)
                        if (*p <= 0x20 || *p >= 0x7f)
                                return fail(ctx, -EINVAL, "%sproxy-url contains invalid characters", owner);
                r = dup_to(&c->proxy_url, proxy);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int load_user(Ctx *ctx, KubeConfig *c, const YNode *user) {
        static const char *const unsupported[] = {
                "exec", "auth-provider", "username", "password", "as", "as-groups", "as-uid", "as-user-extra",
        };
        const char *token, *token_file, *cert, *cert_data, *key, *key_data;
        char owner[NAME_SHOWN_MAX + 32];
        int r;

        snprintf(owner, sizeof(owner), "user \"%s\": ", SHOWN(c->user));

        for (size_t i = 0; i < ELEMENTSOF(unsupported); i++)
                if (!ynode_is_null(ymap_get(user, unsupported[i])))
                        return fail(ctx, -EOPNOTSUPP, "%s%s is not supported (use a token or a client certificate)",
                                    owner, unsupported[i]);

        if ((r = get_string(ctx, user, "token", owner, &token)) < 0 ||
            (r = get_string(ctx, user, "tokenFile", owner, &token_file)) < 0 ||
            (r = get_string(ctx, user, "client-certificate", owner, &cert)) < 0 ||
            (r = get_string(ctx, user, "client-certificate-data", owner, &cert_data)) < 0 ||
            (r = get_string(ctx, user, "client-key", owner, &key)) < 0 ||
            (r = get_string(ctx, user, "client-key-data", owner, &key_data)) < 0)
                return r;

        /* Like client-go: an inline token wins over tokenFile. */
        if (token) {
                if (!token_is_valid(token))
                        return fail(ctx, -EINVAL, "%stoken contains characters that cannot go into an HTTP header", owner);
                r = dup_to(&c->token, token);
                if (r < 0)
                        return r;
        } else if (token_file) {
                r = resolve_path(c->source, token_file, &c->token_file);
                if (r < 0)
                        return r;
                r = read_token(ctx, c->token_file, owner, &c->token);
                if (r < 0)
                        return r;
        }

        if (cert && cert_data)
                return fail(ctx, -EINVAL, "%sboth client-certificate and client-certificate-data are set", owner);
        if (key && key_data)
                return fail(ctx, -EINVAL, "%sboth client-key and client-key-data are set", owner);
        if ((cert || cert_data) != (key || key_data))
                return fail(ctx, -EINVAL, "%sa client certificate needs a client key and vice versa", owner);

        if (cert) {
                r = resolve_path(c->source, cert, &c->client_cert_file);
                if (r < 0)
                        return r;
                r = check_file(ctx, c->client_cert_file, owner, "client-certificate");
                if (r < 0)
                        return r;
        } else if (cert_data) {
                r = decode_pem(ctx, cert_data, owner, "client-certificate-data",
                               &c->client_cert_data, &c->client_cert_size);
                if (r < 0)
                        return r;
        }

        if (key) {
                r = resolve_path(c->source, key, &c->client_key_file);
                if (r < 0)
                        return r;
                r = check_file(ctx, c->client_key_file, owner, "client-key");
                if (r < 0)
                        return r;
        } else if (key_data) {
                r = decode_pem(ctx, key_data, owner, "client-key-data",
                               &c->client_key_data, &c->client_key_size);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int load_kubeconfig(Ctx *ctx, KubeConfig *c, const char *default_namespace) {
        _cleanup_(ynode_freep) YNode *root = NULL;
        const YNode *context, *cluster, *user;
        const char *current, *kind, *cluster_name, *user_name, *ns;
        char owner[NAME_SHOWN_MAX + 32];
        char *buf = NULL;
        size_t size;
        int r;

        r = read_bounded(c->source, KUBE_CONFIG_SIZE_MAX, &buf, &size);
        if (r == -EFBIG)
                return fail(ctx, r, "file is larger than %u MiB", KUBE_CONFIG_SIZE_MAX / 1024 / 1024);
        if (r < 0)
                return fail(ctx, r, "cannot be read: %s", read_error(r));
        r = yaml_load(ctx, buf, size, &root);
        erase_and_free(buf, size);     /* may hold tokens and keys */
        if (r < 0)
                return r;

        if ((r = get_string(ctx, root, "kind", "", &kind)) < 0)
                return r;
        if (kind && !streq(kind, "Config"))
                return fail(ctx, -EINVAL, "kind is \"%s\", not Config", SHOWN(kind));

        if ((r = get_string(ctx, root, "current-context", "", &current)) < 0)
                return r;
        if (!current)
                return fail(ctx, -ENOENT, "no current-context is set");
        if ((r = dup_to(&c->context, current)) < 0)
                return r;

        r = find_named(ctx, root, "contexts", "context", current, &context);
        if (r < 0)
                return r;
        if (!context)
                return fail(ctx, -ENOENT, "context \"%s\" (the current-context) not found", SHOWN(current));

        snprintf(owner, sizeof(owner), "context \"%s\": ", SHOWN(current));
        if ((r = get_string(ctx, context, "cluster", owner, &cluster_name)) < 0 ||
            (r = get_string(ctx, context, "user", owner, &user_name)) < 0 ||
            (r = get_string(ctx, context, "namespace", owner, &ns)) < 0)
                return r;
        if (!cluster_name)
                return fail(ctx, -EINVAL, "context \"%s\" names no cluster", SHOWN(current));

        if ((r = dup_to(&c->cluster, cluster_name)) < 0 ||
            (r = dup_to(&c->user, user_name)) < 0)
                return r;

        r = find_named(ctx, root, "clusters", "cluster", cluster_name, &cluster);
        if (r < 0)
                return r;
        if (!cluster)
                return fail(ctx, -ENOENT, "cluster \"%s\" (of context \"%s\") not found",
                            SHOWN(cluster_name), SHOWN(current));
        r = load_cluster(ctx, c, cluster);
        if (r < 0)
                return r;

        if (user_name) {
                r = find_named(ctx, root, "users", "user", user_name, &user);
                if (r < 0)
                        return r;
                if (!user)
                        return fail(ctx, -ENOENT, "user \"%s\" (of context \"%s\") not found",
                                    SHOWN(user_name), SHOWN(current));
                r = load_user(ctx, c, user);
                if (r < 0)
                        return r;
        }

        if (ns) {
                if (!kube_name_is_valid(ns))
                        return fail(ctx, -EINVAL, "%snamespace \"%s\" is not a valid namespace name", owner, SHOWN(ns));
                return dup_to(&c->namespace, ns);
        }
        return default_namespace_get(ctx, default_namespace, &c->namespace);
}

int kube_config_load_kubeconfig(const char *path, const char *default_namespace,
                                KubeConfig **ret, char **ret_error) {
        _cleanup_(kube_config_freep) KubeConfig *c = NULL;
        Ctx ctx = { .what = "kubeconfig", .path = path };
        int r;

        if (!path || !ret)
                return -EINVAL;

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->source = strdup(path);
        if (!c->source)
                return -ENOMEM;

        r = load_kubeconfig(&ctx, c, default_namespace);
        if (r < 0) {
                log_debug("Cannot use kubeconfig %s: %s", path, strna(ctx.error));
                return set_error(&ctx, r, ret_error);
        }
        *ret = TAKE_PTR(c);
        return 0;
}

/* ---- in-cluster ---------------------------------------------------------- */

static int load_in_cluster(Ctx *ctx, KubeConfig *c, const char *default_namespace) {
        _cleanup_free_ char *token_path = NULL, *ns_path = NULL, *ns = NULL;
        const char *host = getenv("KUBERNETES_SERVICE_HOST"), *port = getenv("KUBERNETES_SERVICE_PORT");
        unsigned long p;
        size_t size;
        char *end;
        int r;

        if (!host || !*host || !port || !*port)
                return fail(ctx, -ENOENT, "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set");
        if (strlen(host) > 253 || strspn(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:") != strlen(host))
                return fail(ctx, -EINVAL, "KUBERNETES_SERVICE_HOST is not a host name or address");
        errno = 0;
        p = strtoul(port, &end, 10);
        if (errno != 0 || *end || port[0] < '0' || port[0] > '9' || p == 0 || p > 65535)
                return fail(ctx, -EINVAL, "KUBERNETES_SERVICE_PORT is not a port number");

        if (asprintf(&c->server, strchr(host, ':') ? "https://[%s]:%lu" : "https://%s:%lu", host, p) < 0) {
                c->server = NULL;
                return -ENOMEM;
        }

        if (asprintf(&token_path, "%s/token", c->source) < 0 ||
            asprintf(&c->ca_file, "%s/ca.crt", c->source) < 0 ||
            asprintf(&ns_path, "%s/namespace", c->source) < 0)
                return -ENOMEM;

        r = read_token(ctx, token_path, "", &c->token);
        if (r < 0)
                return r;
        c->token_file = TAKE_PTR(token_path);

        r = check_file(ctx, c->ca_file, "", "ca.crt");
        if (r < 0)
                return r;

        r = read_bounded(ns_path, 4096, &ns, &size);
        if (r >= 0) {
                strip(ns);
                if (!kube_name_is_valid(ns))
                        return fail(ctx, -EINVAL, "namespace file %s does not hold a valid namespace name", ns_path);
                c->namespace = TAKE_PTR(ns);
                return 0;
        }
        if (r != -ENOENT)
                return fail(ctx, r, "namespace file %s cannot be read: %s", ns_path, read_error(r));
        return default_namespace_get(ctx, default_namespace, &c->namespace);
}

static const char *sa_dir_default(void) {
        const char *e = getenv("NORN_KUBE_SA_DIR");
        return e && *e ? e : KUBE_SA_DIR_DEFAULT;
}

int kube_config_load_in_cluster(const char *sa_dir, const char *default_namespace,
                                KubeConfig **ret, char **ret_error) {
        _cleanup_(kube_config_freep) KubeConfig *c = NULL;
        Ctx ctx = { .what = "in-cluster service account" };
        int r;

        if (!ret)
                return -EINVAL;
        ctx.path = sa_dir = sa_dir ?: sa_dir_default();

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->in_cluster = true;
        c->source = strdup(sa_dir);
        if (!c->source)
                return -ENOMEM;

        r = load_in_cluster(&ctx, c, default_namespace);
        if (r < 0) {
                log_debug("Cannot use the in-cluster service account: %s", strna(ctx.error));
                return set_error(&ctx, r, ret_error);
        }
        *ret = TAKE_PTR(c);
        return 0;
}

/* ---- choosing ------------------------------------------------------------ */

int kube_config_load(KubeConfig **ret, char **ret_error) {
        _cleanup_free_ char *token = NULL, *path = NULL;
        const char *sa_dir = sa_dir_default(), *kubeconfig, *home;

        if (!ret)
                return -EINVAL;

        if (getenv("KUBERNETES_SERVICE_HOST") && getenv("KUBERNETES_SERVICE_PORT")) {
                if (asprintf(&token, "%s/token", sa_dir) < 0)
                        return -ENOMEM;
                if (access(token, F_OK) == 0)
                        return kube_config_load_in_cluster(sa_dir, NULL, ret, ret_error);
        }

        /* Like kubectl: the first entry of the KUBECONFIG list. */
        kubeconfig = getenv("KUBECONFIG");
        if (kubeconfig) {
                kubeconfig += strspn(kubeconfig, ":");
                if (*kubeconfig)
                        path = strndup(kubeconfig, strcspn(kubeconfig, ":"));
        }
        if (!path) {
                home = getenv("HOME");
                if (!home || !*home) {
                        if (ret_error && !(*ret_error = strdup("no Kubernetes configuration: no service account, "
                                                               "KUBECONFIG is not set and neither is HOME")))
                                return -ENOMEM;
                        return -ENOENT;
                }
                if (asprintf(&path, "%s/.kube/config", home) < 0)
                        path = NULL;
        }
        if (!path)
                return -ENOMEM;

        return kube_config_load_kubeconfig(path, NULL, ret, ret_error);
}

KubeConfig *kube_config_free(KubeConfig *c) {
        if (!c)
                return NULL;
        free(c->source);
        free(c->context);
        free(c->cluster);
        free(c->user);
        free(c->server);
        free(c->namespace);
        free(c->proxy_url);
        free(c->ca_file);
        free(c->ca_data);
        erase_string(c->token);
        free(c->token_file);
        free(c->client_cert_file);
        free(c->client_cert_data);
        free(c->client_key_file);
        erase_and_free(c->client_key_data, c->client_key_size);
        return mfree(c);
}

int kube_config_describe(const KubeConfig *c, char **ret) {
        const char *auth;
        char *s;
        int k;

        if (!c || !ret)
                return -EINVAL;

        if (c->client_cert_file || c->client_cert_data)
                auth = c->token ? "client certificate and token" : "client certificate";
        else if (c->token)
                auth = c->token_file ? "token file" : "token";
        else
                auth = "none";

        if (c->in_cluster)
                k = asprintf(&s, "in-cluster service account %s, server %s, namespace %s, auth %s",
                             c->source, c->server, c->namespace, auth);
        else
                k = asprintf(&s, "kubeconfig %s, context %s, server %s, namespace %s, auth %s%s",
                             c->source, SHOWN(c->context), c->server, c->namespace, auth,
                             c->insecure_skip_tls_verify ? ", TLS verification off" : "");
        if (k < 0)
                return -ENOMEM;
        *ret = s;
        return 0;
}

int kube_config_reload_token(KubeConfig *c) {
        Ctx ctx = { .what = "token file" };
        char *token = NULL;
        int r;

        if (!c)
                return -EINVAL;
        if (!c->token_file)
                return 0;

        ctx.path = c->token_file;
        r = read_token(&ctx, c->token_file, "", &token);
        if (r < 0) {
                log_debug("Keeping the previous token: %s", strna(ctx.error));
                free(ctx.error);
                return r;
        }
        erase_string(c->token);
        c->token = token;
        return 1;
}
