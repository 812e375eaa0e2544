/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "infraspec-internal.h"
#include "utf8.h"

/* The libyaml event stream becomes a small tree of SpecNodes. This is where
 * the hostile-input limits live: depth, entries per list/mapping, node
 * count, string size; anchors, aliases, unknown tags and second documents
 * are refused. The event API is used rather than yaml_parser_load() because
 * the document API resolves aliases silently (no way to refuse them) and
 * has no limits of its own. */

/* ---- Diagnostics ----------------------------------------------------- */

void ispec_diag(SpecParser *p, bool error, unsigned line, unsigned column, const char *format, ...) {
        InfraspecDiagnostics *d = p->diags;
        InfraspecDiagnostic *items;
        va_list ap;
        char *m;
        int k;

        if (error)
                d->n_errors++;
        if (d->n >= INFRASPEC_MAX_DIAGNOSTICS) {
                d->truncated = true;
                return;
        }

        va_start(ap, format);
        k = vasprintf(&m, format, ap);
        va_end(ap);
        if (k < 0) {
                p->oom = true;
                return;
        }
        /* Diagnostics quote the file and go into JSON and D-Bus strings:
         * whatever was quoted, they are UTF-8. */
        utf8_sanitize(m);

        items = reallocarray(d->items, d->n + 1, sizeof(*items));
        if (!items) {
                free(m);
                p->oom = true;
                return;
        }
        d->items = items;
        d->items[d->n++] = (InfraspecDiagnostic) {
                .error = error, .line = line, .column = column, .message = m,
        };
}

void infraspec_diagnostics_done(InfraspecDiagnostics *d) {
        if (!d)
                return;
        for (size_t i = 0; i < d->n; i++)
                free(d->items[i].message);
        free(d->items);
        free(d->file);
        *d = (InfraspecDiagnostics) {};
}

int ispec_diagnostics_reset(InfraspecDiagnostics *d, const char *file) {
        infraspec_diagnostics_done(d);
        d->file = strdup(file ?: INFRASPEC_FILE_NAME);
        return d->file ? 0 : -ENOMEM;
}

char *infraspec_diagnostic_format(const InfraspecDiagnostics *d, size_t i) {
        const InfraspecDiagnostic *x;
        const char *severity;
        char *s;
        int k;

        if (!d || i >= d->n)
                return NULL;
        x = d->items + i;
        severity = x->error ? "error" : "warning";
        if (x->line > 0)
                k = asprintf(&s, "%s:%u:%u: %s: %s", strna(d->file), x->line, x->column, severity, x->message);
        else
                k = asprintf(&s, "%s: %s: %s", strna(d->file), severity, x->message);
        return k < 0 ? NULL : s;
}

char *infraspec_first_error(const InfraspecDiagnostics *d) {
        for (size_t i = 0; d && i < d->n; i++)
                if (d->items[i].error)
                        return infraspec_diagnostic_format(d, i);
        return NULL;
}

/* ---- The tree --------------------------------------------------------- */

SpecNode *ispec_node_free(SpecNode *n) {
        if (!n)
                return NULL;
        for (size_t i = 0; i < n->n_items; i++)
                ispec_node_free(n->items[i]);
        free(n->items);
        if (n->value)
                explicit_bzero(n->value, n->length); /* may hold the webhook secret */
        free(n->value);
        free(n);
        return NULL;
}

bool ispec_node_is_null(const SpecNode *n) {
        if (!n)
                return true;
        if (n->type != NODE_SCALAR || !n->plain)
                return false;
        return n->length == 0 || streq(n->value, "~") || streq(n->value, "null") ||
                streq(n->value, "Null") || streq(n->value, "NULL");
}

/* Location of a byte offset, counted like libyaml does: lines and
 * characters (not bytes), 1-based. */
void ispec_offset_to_location(const SpecParser *p, size_t offset, unsigned *ret_line, unsigned *ret_column) {
        unsigned line = 1, column = 1;

        for (size_t i = 0; i < offset && i < p->size; i++) {
                unsigned char c = (unsigned char) p->data[i];

                if (c == '\n') {
                        line++;
                        column = 1;
                } else if ((c & 0xC0) != 0x80)
                        column++;
        }
        *ret_line = line;
        *ret_column = column;
}

static int yaml_error(SpecParser *p, const yaml_parser_t *yp) {
        unsigned line, column;

        switch (yp->error) {
        case YAML_MEMORY_ERROR:
                p->oom = true;
                return -ENOMEM;

        case YAML_READER_ERROR:
                /* libyaml leaves problem_mark unset for reader errors; only the
                 * byte offset is known. */
                ispec_offset_to_location(p, yp->problem_offset, &line, &column);
                if (yp->problem_value >= 0)
                        ispec_diag(p, true, line, column, "invalid input: %s (#%X)",
                                   strna(yp->problem), (unsigned) yp->problem_value);
                else
                        ispec_diag(p, true, line, column, "invalid input: %s", strna(yp->problem));
                return -EINVAL;

        default:
                if (yp->context)
                        ispec_diag(p, true, (unsigned) yp->problem_mark.line + 1,
                                   (unsigned) yp->problem_mark.column + 1,
                                   "YAML syntax error: %s (%s at line %zu, column %zu)",
                                   strna(yp->problem), yp->context,
                                   yp->context_mark.line + 1, yp->context_mark.column + 1);
                else
                        ispec_diag(p, true, (unsigned) yp->problem_mark.line + 1,
                                   (unsigned) yp->problem_mark.column + 1,
                                   "YAML syntax error: %s", strna(yp->problem));
                return -EINVAL;
        }
}

typedef struct TreeBuilder {
        SpecNode *root;
        SpecNode *stack[INFRASPEC_MAX_DEPTH];
        size_t depth;
        unsigned n_documents;
        bool done;
} TreeBuilder;

/* Checks what every node event has: no anchor, a tag we understand. */
static int node_properties_check(SpecParser *p, const yaml_event_t *ev, const yaml_char_t *anchor,
                                 const yaml_char_t *tag, bool *ret_str_tag) {
        unsigned line = (unsigned) ev->start_mark.line + 1, column = (unsigned) ev->start_mark.column + 1;
        const char *t = (const char *) tag;

        *ret_str_tag = false;
        if (anchor) {
                ispec_diag(p, true, line, column,
                           "YAML anchors and aliases are not supported (anchor \"&%.*s\")",
                           (int) utf8_prefix_len((const char *) anchor, 32), (const char *) anchor);
                return -EINVAL;
        }
        if (!t)
                return 0;
        if (streq(t, "!") || streq(t, "tag:yaml.org,2002:str")) {
                *ret_str_tag = true;
                return 0;
        }
        /* The core schema's tags only; "!!python/object:..." and friends are
         * in the same namespace but are not data. */
        static const char *const core_tags[] = {
                "tag:yaml.org,2002:int", "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null",
                "tag:yaml.org,2002:float", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq",
        };
        for (size_t i = 0; i < ELEMENTSOF(core_tags); i++)
                if (streq(t, core_tags[i]))
                        return 0;
        ispec_diag(p, true, line, column, "unsupported YAML tag \"%.*s\"", (int) utf8_prefix_len(t, 64), t);
        return -EINVAL;
}

/* Takes ownership of n. */
static int tree_attach(SpecParser *p, TreeBuilder *b, SpecNode *n) {
        SpecNode *parent, **items;
        size_t limit;

        if (++p->n_nodes > INFRASPEC_MAX_NODES) {
                ispec_diag(p, true, n->line, n->column, "document too large (more than %u values)", INFRASPEC_MAX_NODES);
                ispec_node_free(n);
                return -EINVAL;
        }

        if (b->depth == 0) {
                ispec_node_free(b->root);
                b->root = n;
                return 0;
        }

        parent = b->stack[b->depth - 1];
        limit = parent->type == NODE_MAPPING ? 2 * INFRASPEC_MAX_ITEMS : INFRASPEC_MAX_ITEMS;
        if (parent->n_items >= limit) {
                ispec_diag(p, true, parent->line, parent->column, "too many entries in this %s (at most %u)",
                           parent->type == NODE_MAPPING ? "mapping" : "list", INFRASPEC_MAX_ITEMS);
                ispec_node_free(n);
                return -EINVAL;
        }
        /* Grow in powers of two. */
        if ((parent->n_items & (parent->n_items - 1)) == 0) {
                items = reallocarray(parent->items, parent->n_items ? parent->n_items * 2 : 2, sizeof(SpecNode *));
                if (!items) {
                        ispec_node_free(n);
                        p->oom = true;
                        return -ENOMEM;
                }
                parent->items = items;
        }
        parent->items[parent->n_items++] = n;
        return 0;
}

static int tree_event(SpecParser *p, TreeBuilder *b, const yaml_event_t *ev) {
        unsigned line = (unsigned) ev->start_mark.line + 1, column = (unsigned) ev->start_mark.column + 1;
        bool str_tag;
        SpecNode *n;
        int r;

        switch (ev->type) {
        case YAML_STREAM_START_EVENT:
        case YAML_DOCUMENT_END_EVENT:
        case YAML_NO_EVENT:
                return 0;

        case YAML_STREAM_END_EVENT:
                b->done = true;
                return 0;

        case YAML_DOCUMENT_START_EVENT:
                if (b->n_documents++ > 0) {
                        ispec_diag(p, true, line, column, "only one YAML document is allowed");
                        return -EINVAL;
                }
                return 0;

        case YAML_ALIAS_EVENT:
                ispec_diag(p, true, line, column,
                           "YAML anchors and aliases are not supported (alias \"*%.*s\")",
                           (int) utf8_prefix_len((const char *) ev->data.alias.anchor, 32),
                           (const char *) ev->data.alias.anchor);
                return -EINVAL;

        case YAML_SCALAR_EVENT:
                r = node_properties_check(p, ev, ev->data.scalar.anchor, ev->data.scalar.tag, &str_tag);
                if (r < 0)
                        return r;
                if (ev->data.scalar.length > INFRASPEC_MAX_COMMAND) {
                        ispec_diag(p, true, line, column, "string too long (%zu bytes, at most %u)",
                                   ev->data.scalar.length, INFRASPEC_MAX_COMMAND);
                        return -EINVAL;
                }
                n = calloc(1, sizeof(SpecNode));
                if (!n)
                        goto oom;
                *n = (SpecNode) {
                        .type = NODE_SCALAR, .line = line, .column = column,
                        .plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !str_tag,
                        .length = ev->data.scalar.length,
                };
                n->value = malloc(n->length + 1);
                if (!n->value) {
                        free(n);
                        goto oom;
                }
                memcpy(n->value, ev->data.scalar.value, n->length);
                n->value[n->length] = '\0';
                return tree_attach(p, b, n);

        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT: {
                bool seq = ev->type == YAML_SEQUENCE_START_EVENT;

                r = node_properties_check(p, ev,
                                          seq ? ev->data.sequence_start.anchor : ev->data.mapping_start.anchor,
                                          seq ? ev->data.sequence_start.tag : ev->data.mapping_start.tag,
                                          &str_tag);
                if (r < 0)
                        return r;
                if (b->depth >= INFRASPEC_MAX_DEPTH) {
                        ispec_diag(p, true, line, column, "nested too deeply (at most %u levels)", INFRASPEC_MAX_DEPTH);
                        return -EINVAL;
                }
                n = calloc(1, sizeof(SpecNode));
                if (!n)
                        goto oom;
                *n = (SpecNode) { .type = seq ? NODE_SEQUENCE : NODE_MAPPING, .line = line, .column = column };
                r = tree_attach(p, b, n);
                if (r < 0)
                        return r;
                b->stack[b->depth++] = n;
                return 0;
        }

        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
                if (b->depth > 0)
                        b->depth--;
                return 0;
        }
        return 0;

oom:
        p->oom = true;
        return -ENOMEM;
}

int ispec_tree_build(SpecParser *p, SpecNode **ret_root) {
        TreeBuilder b = {};
        yaml_parser_t yp;
        int r = 0;

        if (!yaml_parser_initialize(&yp))
                return -ENOMEM;
        yaml_parser_set_input_string(&yp, (const unsigned char *) p->data, p->size);
        /* UTF-8 only: UTF-16 input then fails as invalid UTF-8. With the
         * encoding set, libyaml no longer consumes a BOM itself and counts it
         * as a column, so the caller strips it. */
        yaml_parser_set_encoding(&yp, YAML_UTF8_ENCODING);

        while (!b.done) {
                yaml_event_t ev;

                if (!yaml_parser_parse(&yp, &ev)) {
                        r = yaml_error(p, &yp);
                        break;
                }
                r = tree_event(p, &b, &ev);
                yaml_event_delete(&ev);
                if (r < 0)
                        break;
        }
        yaml_parser_delete(&yp);

        if (r < 0) {
                ispec_node_free(b.root);
                return r;
        }
        *ret_root = b.root;
        return 0;
}

/* ---- Turning nodes into values --------------------------------------- */

/* A short, printable rendering of a node for "got ..." in messages. */
char *ispec_node_describe(const SpecNode *n) {
        static const size_t max = 48;
        char *s, *q;

        if (n->type == NODE_SEQUENCE)
                return strdup("a list");
        if (n->type == NODE_MAPPING)
                return strdup("a mapping");
        if (ispec_node_is_null(n))
                return strdup("nothing (null)");

        s = malloc(max * 4 + 32);
        if (!s)
                return NULL;
        q = s;
        *q++ = '"';
        for (size_t i = 0; i < n->length; i++) {
                unsigned char c = (unsigned char) n->value[i];

                if (i >= max && ((c & 0xC0) != 0x80 || i >= max + 3)) {
                        q = stpcpy(q, "...");
                        break;
                }
                if (c == '"' || c == '\\') {
                        *q++ = '\\';
                        *q++ = (char) c;
                } else if (c < ' ' || c == 0x7f)
                        q += sprintf(q, "\\x%02x", c);
                else
                        *q++ = (char) c;
        }
        *q++ = '"';
        if (!n->plain)
                q = stpcpy(q, " (quoted)");
        *q = '\0';
        return s;
}

void ispec_error_got(SpecParser *p, const SpecNode *n, const char *path, const char *expected, bool secret) {
        _cleanup_free_ char *got = NULL;

        if (secret && n->type == NODE_SCALAR && !ispec_node_is_null(n)) {
                ispec_diag(p, true, n->line, n->column, "%s%sexpected %s", PFX(path), expected);
                return;
        }
        got = ispec_node_describe(n);
        if (!got) {
                p->oom = true;
                return;
        }
        ispec_diag(p, true, n->line, n->column, "%s%sexpected %s, got %s", PFX(path), expected, got);
}

/* 0 and *ret = copy (or NULL for null/empty: unset), -EINVAL after a diagnostic. */
int ispec_node_string(SpecParser *p, const SpecNode *n, const char *path, StringFlags flags, size_t max,
                      CheckFunc check, char **ret) {
        const char *expected;
        char *s;

        if (n->type != NODE_SCALAR) {
                ispec_error_got(p, n, path, "a string", flags & STRING_SECRET);
                return -EINVAL;
        }
        if (ispec_node_is_null(n) || (n->length == 0 && !(flags & STRING_KEEP_EMPTY))) {
                *ret = NULL;
                return 0;
        }
        if (n->length > max) {
                ispec_diag(p, true, n->line, n->column, "%s%sstring too long (%zu bytes, at most %zu)",
                           PFX(path), n->length, max);
                return -EINVAL;
        }
        for (size_t i = 0; i < n->length; i++) {
                unsigned char c = (unsigned char) n->value[i];

                if (c == '\0') {
                        ispec_diag(p, true, n->line, n->column, "%s%scontains a NUL character", PFX(path));
                        return -EINVAL;
                }
                if ((c < ' ' || c == 0x7f) &&
                    !((flags & STRING_MULTILINE) && (c == '\n' || c == '\t' || c == '\r'))) {
                        if (flags & STRING_SECRET)
                                ispec_diag(p, true, n->line, n->column, "%s%scontains a control character", PFX(path));
                        else
                                ispec_error_got(p, n, path, "a single line without control characters", false);
                        return -EINVAL;
                }
        }
        if (check && (expected = check(n->value))) {
                ispec_error_got(p, n, path, expected, flags & STRING_SECRET);
                return -EINVAL;
        }

        s = strndup(n->value, n->length);
        if (!s) {
                p->oom = true;
                return -ENOMEM;
        }
        *ret = s;
        return 0;
}

static bool is_decimal(const char *s) {
        if (*s == '+' || *s == '-')
                s++;
        if (s[0] == '0' && s[1] != '\0')  /* 010 is octal in YAML 1.1: refuse the ambiguity */
                return false;
        if (*s == '\0')
                return false;
        for (; *s; s++)
                if (*s < '0' || *s > '9')
                        return false;
        return true;
}

int ispec_node_uint(SpecParser *p, const SpecNode *n, const char *path, unsigned min, unsigned max, unsigned *ret) {
        _cleanup_free_ char *expected = NULL;
        long long v;
        char *end;

        if (ispec_node_is_null(n))
                return 0; /* unset: keep the default */

        if (n->type == NODE_SCALAR && n->plain && is_decimal(n->value)) {
                errno = 0;
                v = strtoll(n->value, &end, 10);
                if (errno == 0 && *end == '\0' && v >= (long long) min && v <= (long long) max) {
                        *ret = (unsigned) v;
                        return 0;
                }
        }

        if (asprintf(&expected, "an integer between %u and %u", min, max) < 0) {
                p->oom = true;
                return -ENOMEM;
        }
        ispec_error_got(p, n, path, expected, false);
        return -EINVAL;
}

int ispec_node_bool(SpecParser *p, const SpecNode *n, const char *path, bool *ret) {
        static const char *const yes[] = { "true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON" };
        static const char *const no[] = { "false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF" };

        if (ispec_node_is_null(n))
                return 0;
        if (n->type == NODE_SCALAR && n->plain)
                for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
                        if (streq(n->value, yes[i])) {
                                *ret = true;
                                return 0;
                        }
                        if (streq(n->value, no[i])) {
                                *ret = false;
                                return 0;
                        }
                }
        ispec_error_got(p, n, path, "true or false", false);
        return -EINVAL;
}

/* Keys must be scalars and unique within their mapping. */
bool ispec_mapping_key_ok(SpecParser *p, const SpecNode *map, size_t i, const char *path) {
        const SpecNode *key = map->items[i];

        if (key->type != NODE_SCALAR) {
                ispec_error_got(p, key, path, "a plain key", false);
                return false;
        }
        for (size_t j = 0; j < i; j += 2) {
                const SpecNode *other = map->items[j];

                if (other->type == NODE_SCALAR && other->length == key->length &&
                    memcmp(other->value, key->value, key->length) == 0) {
                        _cleanup_free_ char *k = ispec_node_describe(key);

                        ispec_diag(p, true, key->line, key->column, "%s%sduplicate key %s (first at line %u)",
                                   PFX(path), strna(k), other->line);
                        return false;
                }
        }
        return true;
}

const SpecNode *ispec_mapping_get(const SpecNode *map, const char *key) {
        if (!map || map->type != NODE_MAPPING)
                return NULL;
        for (size_t i = 0; i < map->n_items; i += 2)
                if (map->items[i]->type == NODE_SCALAR && map->items[i]->length == strlen(key) &&
                    streq(map->items[i]->value, key))
                        return map->items[i + 1];
        return NULL;
}

void ispec_path_join(char *buf, size_t size, const char *prefix, const char *key) {
        snprintf(buf, size, "%s%s%.*s", prefix, *prefix ? "." : "", (int) utf8_prefix_len(key, 64), key);
}
