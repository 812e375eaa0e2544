/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <jansson.h>

#include "infraspec.h"
#include "macro.h"

/* The spec as the API shows it: the file's camelCase names, defaults filled
 * in, sections that are absent left out. repo.webhookSecret never leaves the
 * process: it is shown as "(set)". */

/* Each helper returns -1 on OOM; set_str() skips NULL strings, set_new()
 * takes a NULL value for an allocation that failed. */
static int set_new(json_t *o, const char *key, json_t *v) {
        return v ? json_object_set_new(o, key, v) : -1;
}

static int set_str(json_t *o, const char *key, const char *s) {
        return s ? set_new(o, key, json_string(s)) : 0;
}

static int set_uint(json_t *o, const char *key, unsigned v) {
        return set_new(o, key, json_integer((json_int_t) v));
}

static int set_bool(json_t *o, const char *key, bool v) {
        return set_new(o, key, json_boolean(v));
}

static int set_strv(json_t *o, const char *key, char *const *l, size_t n) {
        _cleanup_(json_decrefp) json_t *a = json_array();

        if (!a)
                return -1;
        for (size_t i = 0; i < n; i++)
                if (json_array_append_new(a, json_string(l[i])) < 0)
                        return -1;
        return json_object_set_new(o, key, TAKE_PTR(a));
}

static json_t *volumes_to_json(const Infraspec *s) {
        _cleanup_(json_decrefp) json_t *a = json_array();

        if (!a)
                return NULL;
        for (size_t i = 0; i < s->n_volumes; i++) {
                const InfraspecVolume *v = s->volumes + i;
                _cleanup_(json_decrefp) json_t *o = json_object();

                if (!o ||
                    set_str(o, "name", v->name) < 0 ||
                    set_str(o, "mountPath", v->mount_path) < 0 ||
                    set_str(o, "size", v->size) < 0 ||
                    set_str(o, "hostPath", v->host_path) < 0 ||
                    json_array_append_new(a, TAKE_PTR(o)) < 0)
                        return NULL;
        }
        return TAKE_PTR(a);
}

static json_t *env_to_json(const Infraspec *s) {
        _cleanup_(json_decrefp) json_t *o = json_object();

        if (!o)
                return NULL;
        for (size_t i = 0; i < s->n_env; i++) /* jansson keeps insertion order */
                if (set_str(o, s->env[i].name, s->env[i].value) < 0)
                        return NULL;
        return TAKE_PTR(o);
}

static json_t *services_to_json(const Infraspec *s) {
        _cleanup_(json_decrefp) json_t *o = json_object(), *pg = NULL, *kv = NULL, *ev = NULL, *st = NULL;

        if (!o)
                return NULL;
        if (s->services.postgres.present) {
                pg = json_object();
                if (!pg ||
                    set_str(pg, "database", s->services.postgres.database) < 0 ||
                    set_str(pg, "migrations", s->services.postgres.migrations) < 0 ||
                    json_object_set_new(o, "postgres", TAKE_PTR(pg)) < 0)
                        return NULL;
        }
        if (s->services.kv.present) {
                kv = json_object();
                if (!kv ||
                    set_str(kv, "namespace", s->services.kv.namespace) < 0 ||
                    json_object_set_new(o, "kv", TAKE_PTR(kv)) < 0)
                        return NULL;
        }
        if (s->services.events.present) {
                ev = json_object();
                if (!ev ||
                    set_strv(ev, "topics", s->services.events.topics, s->services.events.n_topics) < 0 ||
                    json_object_set_new(o, "events", TAKE_PTR(ev)) < 0)
                        return NULL;
        }
        if (s->services.storage.present) {
                st = json_object();
                if (!st ||
                    set_str(st, "bucket", s->services.storage.bucket) < 0 ||
                    set_str(st, "provider", s->services.storage.provider) < 0 ||
                    json_object_set_new(o, "storage", TAKE_PTR(st)) < 0)
                        return NULL;
        }
        return TAKE_PTR(o);
}

static int sections_to_json(json_t *o, const Infraspec *s) {
        _cleanup_(json_decrefp) json_t *x = NULL;

        if (s->hosts.present) {
                x = json_object();
                if (!x ||
                    set_str(x, "external", s->hosts.external) < 0 ||
                    set_str(x, "internal", s->hosts.internal) < 0 ||
                    json_object_set_new(o, "hosts", TAKE_PTR(x)) < 0)
                        return -1;
        }
        if (s->build.present) {
                x = json_object();
                if (!x ||
                    set_str(x, "dockerfile", s->build.dockerfile) < 0 ||
                    set_str(x, "test", s->build.test) < 0 ||
                    json_object_set_new(o, "build", TAKE_PTR(x)) < 0)
                        return -1;
        }
        if (s->repo.present) {
                x = json_object();
                if (!x ||
                    set_str(x, "url", s->repo.url) < 0 ||
                    set_str(x, "branch", s->repo.branch) < 0 ||
                    set_bool(x, "autoDeploy", s->repo.auto_deploy) < 0 ||
                    set_str(x, "repoWeb", s->repo.repo_web) < 0 ||
                    set_str(x, "webhookSecret", s->repo.webhook_secret ? "(set)" : NULL) < 0 ||
                    json_object_set_new(o, "repo", TAKE_PTR(x)) < 0)
                        return -1;
        }
        if (s->migrations.present) {
                x = json_object();
                if (!x ||
                    set_str(x, "command", s->migrations.command) < 0 ||
                    set_str(x, "database", s->migrations.database) < 0 ||
                    json_object_set_new(o, "migrations", TAKE_PTR(x)) < 0)
                        return -1;
        }
        return 0;
}

json_t *infraspec_to_json(const Infraspec *s) {
        _cleanup_(json_decrefp) json_t *o = json_object();

        if (!o || !s)
                return NULL;

        if (set_str(o, "app", s->app) < 0 ||
            set_str(o, "role", app_role_to_string(s->role)) < 0 ||
            set_bool(o, "core", s->core) < 0 ||
            (s->port > 0 && set_uint(o, "port", s->port) < 0) ||
            set_str(o, "healthcheck", s->healthcheck) < 0 ||
            set_uint(o, "replicas", s->replicas) < 0 ||
            set_bool(o, "deploy", s->deploy) < 0 ||
            sections_to_json(o, s) < 0 ||
            set_new(o, "services", services_to_json(s)) < 0 ||
            set_strv(o, "secrets", s->secrets, s->n_secrets) < 0 ||
            set_new(o, "artifacts", json_pack("{s:I}", "retain", (json_int_t) s->artifacts.retain)) < 0 ||
            set_new(o, "volumes", volumes_to_json(s)) < 0 ||
            set_new(o, "env", env_to_json(s)) < 0 ||
            set_new(o, "alerts", json_pack("{s:s, s:I}", "window", s->alerts.window,
                                            "threshold", (json_int_t) s->alerts.threshold)) < 0 ||
            set_str(o, "schedule", s->schedule) < 0 ||
            set_str(o, "command", s->command) < 0 ||
            set_str(o, "runtime", s->runtime) < 0 ||
            set_uint(o, "timeout", s->timeout) < 0 ||
            set_new(o, "function", json_pack("{s:I, s:s, s:s}",
                                              "timeout", (json_int_t) s->function.timeout,
                                              "trigger", s->function.trigger,
                                              "memory", s->function.memory)) < 0)
                return NULL;

        return TAKE_PTR(o);
}

json_t *infraspec_diagnostics_to_json(const InfraspecDiagnostics *d) {
        _cleanup_(json_decrefp) json_t *a = json_array();

        if (!a)
                return NULL;
        for (size_t i = 0; d && i < d->n; i++) {
                const InfraspecDiagnostic *x = d->items + i;
                json_t *o = json_pack("{s:s, s:I, s:I, s:s}",
                                      "severity", x->error ? "error" : "warning",
                                      "line", (json_int_t) x->line,
                                      "column", (json_int_t) x->column,
                                      "message", x->message);

                if (!o || json_array_append_new(a, o) < 0)
                        return NULL;
        }
        return TAKE_PTR(a);
}
