/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Shared by infraspec*.c only: the bounded YAML tree (infraspec-yaml.c) and
 * the value checks (infraspec-validate.c) that infraspec.c's field tables
 * use. Not part of the library's interface. */

#include <stdbool.h>
#include <stddef.h>

#include "infraspec.h"
#include "macro.h"

typedef struct SpecParser {
        InfraspecDiagnostics *diags;
        const char *data;        /* the whole file */
        size_t size;
        size_t n_nodes;
        bool oom;
} SpecParser;

typedef enum NodeType {
        NODE_SCALAR,
        NODE_SEQUENCE,
        NODE_MAPPING,
} NodeType;

typedef struct SpecNode {
        NodeType type;
        unsigned line, column;   /* 1-based */
        bool plain;              /* scalar written without quotes or !!str */
        char *value;             /* scalar, NUL-terminated; may contain NUL from "\0" escapes */
        size_t length;
        struct SpecNode **items; /* sequence items; mapping: key, value, key, value, ... */
        size_t n_items;
} SpecNode;

/* "path: " or "" for the top level, for "%s%s". */
#define PFX(path) (path), (*(path) ? ": " : "")

typedef enum StringFlags {
        STRING_MULTILINE  = 1 << 0, /* tabs and newlines allowed */
        STRING_SECRET     = 1 << 1, /* never echoed */
        STRING_KEEP_EMPTY = 1 << 2, /* "" is a value, not "unset" */
} StringFlags;

/* Returns NULL when the value is fine, else what was expected ("an app id ..."). */
typedef const char *(*CheckFunc)(const char *value);

/* Diagnostics. Out of memory sets p->oom instead of failing. */
void ispec_diag(SpecParser *p, bool error, unsigned line, unsigned column, const char *format, ...) _printf_(5, 6);
int ispec_diagnostics_reset(InfraspecDiagnostics *d, const char *file);
void ispec_offset_to_location(const SpecParser *p, size_t offset, unsigned *ret_line, unsigned *ret_column);

/* The tree: p->data/p->size into *ret_root (NULL for a stream without a
 * document). Limits: INFRASPEC_MAX_DEPTH, _ITEMS, _NODES, _COMMAND; no
 * anchors, aliases, foreign tags or second documents. -EINVAL after a
 * diagnostic, -ENOMEM. */
int ispec_tree_build(SpecParser *p, SpecNode **ret_root);
SpecNode *ispec_node_free(SpecNode *n);
DEFINE_TRIVIAL_CLEANUP_FUNC(SpecNode *, ispec_node_free);
bool ispec_node_is_null(const SpecNode *n);
char *ispec_node_describe(const SpecNode *n);
const SpecNode *ispec_mapping_get(const SpecNode *map, const char *key);
bool ispec_mapping_key_ok(SpecParser *p, const SpecNode *map, size_t i, const char *path);
void ispec_path_join(char *buf, size_t size, const char *prefix, const char *key);

/* Typed access. Null keeps *ret as it is (the default) and returns 0; a
 * wrong value gets a diagnostic "<path>: expected ..., got ..." and
 * -EINVAL. ispec_node_string() sets *ret to a copy, or NULL for null/"". */
void ispec_error_got(SpecParser *p, const SpecNode *n, const char *path, const char *expected, bool secret);
int ispec_node_string(SpecParser *p, const SpecNode *n, const char *path, StringFlags flags, size_t max,
                      CheckFunc check, char **ret);
int ispec_node_uint(SpecParser *p, const SpecNode *n, const char *path, unsigned min, unsigned max, unsigned *ret);
int ispec_node_bool(SpecParser *p, const SpecNode *n, const char *path, bool *ret);

/* Value checks (CheckFunc). */
const char *ispec_check_app_id(const char *s);
const char *ispec_check_dockerfile(const char *s);
const char *ispec_check_relative_path(const char *s);
const char *ispec_check_absolute_path(const char *s);
const char *ispec_check_url_path(const char *s);
const char *ispec_check_git_url(const char *s);
const char *ispec_check_git_ref(const char *s);
const char *ispec_check_web_url(const char *s);
const char *ispec_check_host(const char *s);
const char *ispec_check_name(const char *s);
const char *ispec_check_database(const char *s);
const char *ispec_check_provider(const char *s);
const char *ispec_check_duration(const char *s);
const char *ispec_check_memory(const char *s);
const char *ispec_check_size(const char *s);
const char *ispec_check_volume_name(const char *s);
const char *ispec_check_cron(const char *s);
bool ispec_env_name_is_valid(const char *s, size_t n);
