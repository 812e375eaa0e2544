/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "cron.h"
#include "infraspec-internal.h"
#include "log.h"
#include "strv.h"
#include "utf8.h"

/* infraspec.yaml into an Infraspec: infraspec-yaml.c turns the file into a
 * bounded tree; here the tree is walked with one table of fields per
 * mapping, which turns nodes into typed values, reports every problem with
 * its line and column, and then the rules across fields are checked. */

/* ---- Field tables ------------------------------------------------------ */

typedef enum FieldKind {
        FIELD_STRING,    /* one line, INFRASPEC_MAX_STRING */
        FIELD_COMMAND,   /* shell text, multi-line, INFRASPEC_MAX_COMMAND */
        FIELD_SECRET,    /* like STRING, never echoed */
        FIELD_UINT,
        FIELD_BOOL,
        FIELD_ROLE,
        FIELD_STRV,      /* list of FIELD_STRING */
        FIELD_SECTION,   /* mapping described by .fields; offset is its 'present' flag */
        FIELD_ENV,
        FIELD_VOLUMES,
} FieldKind;

typedef struct Field {
        const char *key;
        FieldKind kind;
        size_t offset;          /* from the base passed to mapping_parse() */
        size_t count_offset;    /* FIELD_STRV: the size_t count */
        bool required;          /* string kinds and FIELD_ROLE */
        unsigned min, max;      /* FIELD_UINT */
        CheckFunc check;
        const struct Field *fields; /* FIELD_SECTION, NULL-key terminated */
} Field;

#define OFF(member) offsetof(Infraspec, member)
#define F_STRING(k, m, c)     { .key = k, .kind = FIELD_STRING, .offset = OFF(m), .check = c }
#define F_REQUIRED(k, m, c)   { .key = k, .kind = FIELD_STRING, .offset = OFF(m), .check = c, .required = true }
#define F_COMMAND(k, m)       { .key = k, .kind = FIELD_COMMAND, .offset = OFF(m) }
#define F_UINT(k, m, lo, hi)  { .key = k, .kind = FIELD_UINT, .offset = OFF(m), .min = lo, .max = hi }
#define F_BOOL(k, m)          { .key = k, .kind = FIELD_BOOL, .offset = OFF(m) }
#define F_STRV(k, m, n, c)    { .key = k, .kind = FIELD_STRV, .offset = OFF(m), .count_offset = OFF(n), .check = c }
#define F_SECTION(k, m, f)    { .key = k, .kind = FIELD_SECTION, .offset = OFF(m.present), .fields = f }

static const Field hosts_fields[] = {
        F_STRING("external", hosts.external, ispec_check_host),
        F_STRING("internal", hosts.internal, ispec_check_host),
        {}
};

static const Field build_fields[] = {
        F_STRING("dockerfile", build.dockerfile, ispec_check_dockerfile),
        F_COMMAND("test", build.test),
        {}
};

static const Field repo_fields[] = {
        F_REQUIRED("url", repo.url, ispec_check_git_url),
        F_STRING("branch", repo.branch, ispec_check_git_ref),
        F_BOOL("autoDeploy", repo.auto_deploy),
        F_STRING("repoWeb", repo.repo_web, ispec_check_web_url),
        { .key = "webhookSecret", .kind = FIELD_SECRET, .offset = OFF(repo.webhook_secret) },
        {}
};

static const Field postgres_fields[] = {
        F_REQUIRED("database", services.postgres.database, ispec_check_database),
        F_STRING("migrations", services.postgres.migrations, ispec_check_relative_path),
        {}
};

static const Field kv_fields[] = {
        F_STRING("namespace", services.kv.namespace, ispec_check_name),
        {}
};

static const Field events_fields[] = {
        F_STRV("topics", services.events.topics, services.events.n_topics, ispec_check_name),
        {}
};

static const Field storage_fields[] = {
        F_STRING("bucket", services.storage.bucket, ispec_check_name),
        F_STRING("provider", services.storage.provider, ispec_check_provider),
        {}
};

static const Field services_fields[] = {
        F_SECTION("postgres", services.postgres, postgres_fields),
        F_SECTION("kv", services.kv, kv_fields),
        F_SECTION("events", services.events, events_fields),
        F_SECTION("storage", services.storage, storage_fields),
        {}
};

static const Field migrations_fields[] = {
        F_COMMAND("command", migrations.command),
        F_STRING("database", migrations.database, ispec_check_database),
        {}
};

static const Field artifacts_fields[] = {
        F_UINT("retain", artifacts.retain, 1, 1000),
        {}
};

static const Field alerts_fields[] = {
        F_STRING("window", alerts.window, ispec_check_duration),
        F_UINT("threshold", alerts.threshold, 1, 1000000),
        {}
};

static const Field function_fields[] = {
        F_UINT("timeout", function.timeout, 1, 86400),
        F_STRING("trigger", function.trigger, ispec_check_name),
        F_STRING("memory", function.memory, ispec_check_memory),
        {}
};

/* Sections without a 'present' flag: .offset is unused (SIZE_MAX). */
#define F_GROUP(k, f) { .key = k, .kind = FIELD_SECTION, .offset = SIZE_MAX, .fields = f }

static const Field root_fields[] = {
        F_REQUIRED("app", app, ispec_check_app_id),
        { .key = "role", .kind = FIELD_ROLE, .offset = OFF(role), .required = true },
        F_BOOL("core", core),
        F_UINT("port", port, 1, 65535),
        F_STRING("healthcheck", healthcheck, ispec_check_url_path),
        F_UINT("replicas", replicas, 0, 1000),
        F_BOOL("deploy", deploy),
        F_SECTION("hosts", hosts, hosts_fields),
        F_SECTION("build", build, build_fields),
        F_SECTION("repo", repo, repo_fields),
        F_GROUP("services", services_fields),
        F_STRV("secrets", secrets, n_secrets, ispec_check_name),
        F_SECTION("migrations", migrations, migrations_fields),
        F_GROUP("artifacts", artifacts_fields),
        { .key = "volumes", .kind = FIELD_VOLUMES },
        { .key = "env", .kind = FIELD_ENV },
        F_GROUP("alerts", alerts_fields),
        F_STRING("schedule", schedule, ispec_check_cron),
        F_COMMAND("command", command),
        F_STRING("runtime", runtime, ispec_check_name),
        F_UINT("timeout", timeout, 1, 86400),
        F_GROUP("function", function_fields),
        {}
};

#define VOFF(member) offsetof(InfraspecVolume, member)
static const Field volume_fields[] = {
        { .key = "name", .kind = FIELD_STRING, .offset = VOFF(name), .check = ispec_check_volume_name, .required = true },
        { .key = "mountPath", .kind = FIELD_STRING, .offset = VOFF(mount_path), .check = ispec_check_absolute_path, .required = true },
        { .key = "size", .kind = FIELD_STRING, .offset = VOFF(size), .check = ispec_check_size },
        { .key = "hostPath", .kind = FIELD_STRING, .offset = VOFF(host_path), .check = ispec_check_absolute_path },
        {}
};

/* ---- The walk ---------------------------------------------------------- */

static void mapping_parse(SpecParser *p, const SpecNode *map, const char *path, const Field *fields, void *base);

static void strv_parse(SpecParser *p, const SpecNode *n, const char *path, const Field *f, void *base) {
        char ***strv = (char ***) ((char *) base + f->offset);
        size_t *count = (size_t *) ((char *) base + f->count_offset);
        char **l;

        if (ispec_node_is_null(n))
                return;
        if (n->type != NODE_SEQUENCE) {
                ispec_error_got(p, n, path, "a list of strings", false);
                return;
        }
        l = calloc(n->n_items + 1, sizeof(char *));
        if (!l) {
                p->oom = true;
                return;
        }
        for (size_t i = 0; i < n->n_items; i++) {
                char item_path[160];
                char *s = NULL;

                snprintf(item_path, sizeof(item_path), "%s[%zu]", path, i);
                if (ispec_node_is_null(n->items[i])) {
                        ispec_error_got(p, n->items[i], item_path, "a string", false);
                        continue;
                }
                if (ispec_node_string(p, n->items[i], item_path, 0, INFRASPEC_MAX_STRING, f->check, &s) < 0 || !s)
                        continue;
                l[(*count)++] = s;
        }
        *strv = l;
}

static void env_parse(SpecParser *p, const SpecNode *n, Infraspec *s) {
        if (ispec_node_is_null(n))
                return;
        if (n->type != NODE_MAPPING) {
                ispec_error_got(p, n, "env", "a mapping of variable names to strings", false);
                return;
        }
        s->env = calloc(n->n_items / 2 + 1, sizeof(InfraspecEnvVar));
        if (!s->env) {
                p->oom = true;
                return;
        }
        for (size_t i = 0; i < n->n_items; i += 2) {
                const SpecNode *key = n->items[i], *value = n->items[i + 1];
                char path[128];
                char *v = NULL, *k;

                if (!ispec_mapping_key_ok(p, n, i, "env"))
                        continue;
                if (!ispec_env_name_is_valid(key->value, key->length)) {
                        ispec_error_got(p, key, "env", "a variable name (letters, digits and '_', not starting with a digit)", false);
                        continue;
                }
                ispec_path_join(path, sizeof(path), "env", key->value);
                if (ispec_node_is_null(value)) {
                        ispec_error_got(p, value, path, "a string (write \"\" for an empty value)", false);
                        continue;
                }
                if (ispec_node_string(p, value, path, STRING_MULTILINE | STRING_KEEP_EMPTY,
                                      INFRASPEC_MAX_STRING, NULL, &v) < 0)
                        continue;
                k = strdup(key->value);
                if (!k) {
                        free(v);
                        p->oom = true;
                        return;
                }
                s->env[s->n_env++] = (InfraspecEnvVar) { .name = k, .value = v };
        }
}

static void volumes_parse(SpecParser *p, const SpecNode *n, Infraspec *s) {
        if (ispec_node_is_null(n))
                return;
        if (n->type != NODE_SEQUENCE) {
                ispec_error_got(p, n, "volumes", "a list of volumes", false);
                return;
        }
        s->volumes = calloc(n->n_items + 1, sizeof(InfraspecVolume));
        if (!s->volumes) {
                p->oom = true;
                return;
        }
        for (size_t i = 0; i < n->n_items; i++) {
                char path[64];

                snprintf(path, sizeof(path), "volumes[%zu]", i);
                if (n->items[i]->type != NODE_MAPPING) {
                        ispec_error_got(p, n->items[i], path, "a mapping with name and mountPath", false);
                        continue;
                }
                mapping_parse(p, n->items[i], path, volume_fields, &s->volumes[s->n_volumes++]);
        }
}

static void field_parse(SpecParser *p, const Field *f, const SpecNode *value, const char *path, void *base) {
        void *where = f->offset == SIZE_MAX ? NULL : (char *) base + f->offset;
        char *s = NULL;
        AppRole role;

        switch (f->kind) {
        case FIELD_STRING:
        case FIELD_COMMAND:
        case FIELD_SECRET:
                if (ispec_node_string(p, value, path,
                                      f->kind == FIELD_COMMAND ? STRING_MULTILINE : f->kind == FIELD_SECRET ? STRING_SECRET : 0,
                                      f->kind == FIELD_COMMAND ? INFRASPEC_MAX_COMMAND : INFRASPEC_MAX_STRING,
                                      f->check, &s) < 0 || !s)
                        return; /* unset keeps the default */
                free(*(char **) where);
                *(char **) where = s;
                return;

        case FIELD_UINT:
                (void) ispec_node_uint(p, value, path, f->min, f->max, where);
                return;

        case FIELD_BOOL:
                (void) ispec_node_bool(p, value, path, where);
                return;

        case FIELD_ROLE:
                if (ispec_node_is_null(value))
                        return; /* reported as missing */
                if (value->type == NODE_SCALAR &&
                    (role = app_role_from_string(value->value)) >= 0) {
                        *(AppRole *) where = role;
                        return;
                }
                ispec_error_got(p, value, path, "one of webserver, worker, cron, function", false);
                return;

        case FIELD_STRV:
                strv_parse(p, value, path, f, base);
                return;

        case FIELD_SECTION:
                if (where)
                        *(bool *) where = true;
                mapping_parse(p, value, path, f->fields, base);
                return;

        case FIELD_ENV:
                env_parse(p, value, base);
                return;

        case FIELD_VOLUMES:
                volumes_parse(p, value, base);
                return;
        }
}

static void required_check(SpecParser *p, const SpecNode *map, const char *path, const Field *fields, void *base) {
        for (const Field *f = fields; f->key; f++) {
                const SpecNode *value;
                bool missing;
                void *where;

                if (!f->required)
                        continue;
                where = (char *) base + f->offset;
                if (f->kind == FIELD_ROLE)
                        missing = *(AppRole *) where < 0;
                else
                        missing = !*(char **) where;
                if (!missing)
                        continue;
                /* A present but invalid value already has its own diagnostic. */
                value = ispec_mapping_get(map, f->key);
                if (ispec_node_is_null(value))
                        ispec_diag(p, true, map->line, map->column, "%s%smissing required key \"%s\"",
                                   PFX(path), f->key);
                else if (value->type == NODE_SCALAR && value->length == 0)
                        ispec_diag(p, true, value->line, value->column, "%s%s%s: must not be empty",
                                   path, *path ? "." : "", f->key);
        }
}

static void mapping_parse(SpecParser *p, const SpecNode *map, const char *path, const Field *fields, void *base) {
        if (!ispec_node_is_null(map) && map->type != NODE_MAPPING) {
                ispec_error_got(p, map, path, "a mapping", false);
                return;
        }

        for (size_t i = 0; map->type == NODE_MAPPING && i < map->n_items; i += 2) {
                const SpecNode *key = map->items[i], *value = map->items[i + 1];
                const Field *f, *similar = NULL;
                char field_path[128];

                if (!ispec_mapping_key_ok(p, map, i, path))
                        continue;

                for (f = fields; f->key; f++) {
                        if (strlen(f->key) == key->length && streq(f->key, key->value))
                                break;
                        if (strcasecmp(f->key, key->value) == 0)
                                similar = f;
                }
                if (!f->key) {
                        _cleanup_free_ char *k = ispec_node_describe(key);

                        if (similar)
                                ispec_diag(p, false, key->line, key->column,
                                           "%s%sunknown key %s (did you mean \"%s\"?), ignored",
                                           PFX(path), strna(k), similar->key);
                        else
                                ispec_diag(p, false, key->line, key->column, "%s%sunknown key %s, ignored",
                                           PFX(path), strna(k));
                        continue;
                }

                ispec_path_join(field_path, sizeof(field_path), path, f->key);
                field_parse(p, f, value, field_path, base);
        }

        required_check(p, map, path, fields, base);
}

/* ---- The spec ---------------------------------------------------------- */

static void free_erased(char *s) {
        if (s)
                explicit_bzero(s, strlen(s));
        free(s);
}

Infraspec *infraspec_free(Infraspec *s) {
        if (!s)
                return NULL;
        free(s->app);
        free(s->healthcheck);
        free(s->hosts.external);
        free(s->hosts.internal);
        free(s->build.dockerfile);
        free(s->build.test);
        free(s->repo.url);
        free(s->repo.branch);
        free(s->repo.repo_web);
        free_erased(s->repo.webhook_secret);
        free(s->services.postgres.database);
        free(s->services.postgres.migrations);
        free(s->services.kv.namespace);
        strv_free(s->services.events.topics);
        free(s->services.storage.bucket);
        free(s->services.storage.provider);
        strv_free(s->secrets);
        free(s->migrations.command);
        free(s->migrations.database);
        for (size_t i = 0; i < s->n_volumes; i++) {
                free(s->volumes[i].name);
                free(s->volumes[i].mount_path);
                free(s->volumes[i].size);
                free(s->volumes[i].host_path);
        }
        free(s->volumes);
        for (size_t i = 0; i < s->n_env; i++) {
                free(s->env[i].name);
                free_erased(s->env[i].value);
        }
        free(s->env);
        free(s->alerts.window);
        free(s->schedule);
        free(s->command);
        free(s->runtime);
        free(s->function.trigger);
        free(s->function.memory);
        free(s);
        return NULL;
}

static Infraspec *infraspec_new(void) {
        _cleanup_(infraspec_freep) Infraspec *s = calloc(1, sizeof(Infraspec));

        if (!s)
                return NULL;
        s->role = _APP_ROLE_INVALID;
        s->replicas = 1;
        s->artifacts.retain = 5;
        s->alerts.threshold = 3;
        s->timeout = 300;
        s->function.timeout = 30;
        s->build.dockerfile = strdup("Dockerfile");
        s->repo.branch = strdup("main");
        s->alerts.window = strdup("5m");
        s->function.trigger = strdup("http");
        s->function.memory = strdup("256m");
        if (!s->build.dockerfile || !s->repo.branch || !s->alerts.window ||
            !s->function.trigger || !s->function.memory)
                return NULL;
        return TAKE_PTR(s);
}

/* A schedule of the right shape may still be one a systemd timer cannot
 * express ("0 0 30 2 *", "5#3"): say so now rather than after a build. */
static void check_schedule_expressible(SpecParser *p, const SpecNode *node, const char *schedule) {
        _cleanup_strv_free_ char **calendar = NULL;
        _cleanup_free_ char *why = NULL;

        if (cron_to_oncalendar(schedule, &calendar, &why) == -EINVAL)
                ispec_diag(p, true, node->line, node->column, "schedule: %s", strna(why));
}

/* Rules across fields, once every field has been read. */
static void spec_check(SpecParser *p, const SpecNode *root, Infraspec *s, const char *expected_app) {
        const SpecNode *app = ispec_mapping_get(root, "app"), *role = ispec_mapping_get(root, "role");

        if (s->app && expected_app && !streq(s->app, expected_app))
                ispec_diag(p, true, app->line, app->column,
                           "app: \"%s\" does not match its directory name \"%.*s\"", s->app,
                           (int) utf8_prefix_len(expected_app, 64), expected_app);

        /* Required by role; a present but invalid value was reported already. */
        if (s->role == APP_ROLE_WEBSERVER && s->port == 0 && ispec_node_is_null(ispec_mapping_get(root, "port")))
                ispec_diag(p, true, role->line, role->column, "port: required for role webserver (1..65535)");
        if (s->role == APP_ROLE_CRON) {
                if (!s->schedule && ispec_node_is_null(ispec_mapping_get(root, "schedule")))
                        ispec_diag(p, true, role->line, role->column,
                                   "schedule: required for role cron (a cron expression like \"*/5 * * * *\")");
                if (!s->command && ispec_node_is_null(ispec_mapping_get(root, "command")))
                        ispec_diag(p, true, role->line, role->column, "command: required for role cron");
                if (s->schedule)
                        check_schedule_expressible(p, ispec_mapping_get(root, "schedule"), s->schedule);
        }

        if (s->migrations.command && !s->migrations.database && !s->services.postgres.database) {
                const SpecNode *m = ispec_mapping_get(root, "migrations");

                ispec_diag(p, false, m->line, m->column,
                           "migrations: no database (set migrations.database or services.postgres.database)");
        }
        if (s->repo.auto_deploy && !s->repo.webhook_secret) {
                const SpecNode *r = ispec_mapping_get(root, "repo");

                ispec_diag(p, false, r->line, r->column,
                           "repo: autoDeploy without webhookSecret; webhook deliveries cannot be verified");
        }
}

static int parse_buffer(SpecParser *p, const char *expected_app, Infraspec **ret_spec) {
        _cleanup_(ispec_node_freep) SpecNode *root = NULL;
        _cleanup_(infraspec_freep) Infraspec *s = NULL;
        int r;

        if (p->size > INFRASPEC_MAX_FILE_SIZE) {
                ispec_diag(p, true, 0, 0, "file too large (%zu bytes, at most %u)", p->size, INFRASPEC_MAX_FILE_SIZE);
                return -EINVAL;
        }
        /* libyaml would say "control characters are not allowed"; be clearer. */
        const char *nul = memchr(p->data, 0, p->size);
        if (nul) {
                unsigned line, column;

                ispec_offset_to_location(p, (size_t) (nul - p->data), &line, &column);
                ispec_diag(p, true, line, column, "file contains a NUL byte");
                return -EINVAL;
        }

        /* A UTF-8 byte order mark: skipped here (see ispec_tree_build()). */
        if (p->size >= 3 && memcmp(p->data, "\xef\xbb\xbf", 3) == 0) {
                p->data += 3;
                p->size -= 3;
        }

        r = ispec_tree_build(p, &root);
        if (r < 0)
                return r;

        if (ispec_node_is_null(root)) {
                ispec_diag(p, true, root ? root->line : 1, root ? root->column : 1,
                           "file is empty; expected a mapping with at least app and role");
                return -EINVAL;
        }
        if (root->type != NODE_MAPPING) {
                ispec_error_got(p, root, "", "a mapping (app: ..., role: ...) at the top level", false);
                return -EINVAL;
        }

        s = infraspec_new();
        if (!s)
                return -ENOMEM;
        mapping_parse(p, root, "", root_fields, s);
        if (p->oom)
                return -ENOMEM;
        spec_check(p, root, s, expected_app);
        if (p->oom)
                return -ENOMEM;
        if (p->diags->n_errors > 0)
                return -EINVAL;

        *ret_spec = TAKE_PTR(s);
        return 0;
}

/* In file order (stable: same place keeps the order found); those without
 * a location first. At most INFRASPEC_MAX_DIAGNOSTICS, so insertion sort. */
static void diagnostics_sort(InfraspecDiagnostics *d) {
        for (size_t i = 1; i < d->n; i++) {
                InfraspecDiagnostic x = d->items[i];
                size_t j = i;

                for (; j > 0 && (d->items[j - 1].line > x.line ||
                                 (d->items[j - 1].line == x.line && d->items[j - 1].column > x.column)); j--)
                        d->items[j] = d->items[j - 1];
                d->items[j] = x;
        }
}

int infraspec_parse(const char *filename, const void *data, size_t size, const char *expected_app,
                    Infraspec **ret_spec, InfraspecDiagnostics *diags) {
        InfraspecDiagnostics local = {};
        SpecParser p = { .diags = diags ?: &local, .data = data, .size = size };
        int r;

        r = ispec_diagnostics_reset(p.diags, filename);
        if (r >= 0)
                r = parse_buffer(&p, expected_app, ret_spec);
        diagnostics_sort(p.diags);
        if (p.oom)
                r = -ENOMEM;
        if (r < 0)
                log_debug_errno(r, "%s: %zu error(s) in app spec: %m", strna(p.diags->file), p.diags->n_errors);
        infraspec_diagnostics_done(&local);
        return r;
}

int infraspec_load_at(int dir_fd, const char *path, const char *display_name,
                      const char *expected_app, Infraspec **ret_spec, InfraspecDiagnostics *diags) {
        InfraspecDiagnostics local = {};
        SpecParser p = { .diags = diags ?: &local };
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *buf = NULL;
        size_t size = 0;
        struct stat st;
        int r;

        r = ispec_diagnostics_reset(p.diags, display_name ?: path);
        if (r < 0)
                goto finish;

        fd = openat(dir_fd, path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0) {
                r = -errno;
                if (r == -ELOOP)
                        ispec_diag(&p, true, 0, 0, "is a symbolic link, which is not followed");
                else
                        ispec_diag(&p, true, 0, 0, "cannot open: %s", strerror(-r));
                goto finish;
        }
        if (fstat(fd, &st) < 0) {
                r = -errno;
                ispec_diag(&p, true, 0, 0, "cannot stat: %s", strerror(-r));
                goto finish;
        }
        if (!S_ISREG(st.st_mode)) {
                r = -EINVAL;
                ispec_diag(&p, true, 0, 0, "not a regular file");
                goto finish;
        }
        if (st.st_size > (off_t) INFRASPEC_MAX_FILE_SIZE) {
                r = -EINVAL;
                ispec_diag(&p, true, 0, 0, "file too large (%lld bytes, at most %u)",
                           (long long) st.st_size, INFRASPEC_MAX_FILE_SIZE);
                goto finish;
        }

        /* Read at most one byte more than allowed: the file may grow. */
        buf = malloc(INFRASPEC_MAX_FILE_SIZE + 1);
        if (!buf) {
                r = -ENOMEM;
                goto finish;
        }
        for (;;) {
                ssize_t k = read(fd, buf + size, INFRASPEC_MAX_FILE_SIZE + 1 - size);

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        ispec_diag(&p, true, 0, 0, "cannot read: %s", strerror(-r));
                        goto finish;
                }
                if (k == 0 || (size += (size_t) k) > INFRASPEC_MAX_FILE_SIZE)
                        break;
        }

        p.data = buf;
        p.size = size;
        r = parse_buffer(&p, expected_app, ret_spec);
        diagnostics_sort(p.diags);

finish:
        if (p.oom)
                r = -ENOMEM;
        if (buf)
                explicit_bzero(buf, size);
        if (r < 0)
                log_debug_errno(r, "%s: cannot load app spec: %m", strna(p.diags->file));
        infraspec_diagnostics_done(&local);
        return r;
}

int infraspec_load(const char *path, const char *expected_app,
                   Infraspec **ret_spec, InfraspecDiagnostics *diags) {
        return infraspec_load_at(AT_FDCWD, path, path, expected_app, ret_spec, diags);
}
