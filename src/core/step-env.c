/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "manager.h"
#include "step-env.h"
#include "strv.h"

extern char **environ;

/* Variables a builder, git or psql may legitimately need from our environment. */
static bool passed_through(const char *entry) {
        static const char *const exact[] = { "PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR",
                                             "XDG_RUNTIME_DIR", "DOCKER_HOST", "DOCKER_CONFIG",
                                             "REGISTRY_AUTH_FILE", "SSL_CERT_FILE", "GIT_SSL_CAINFO",
                                             "MINIKUBE_HOME" };
        static const char *const prefixes[] = { "CONTAINERS_", "BUILDAH_", "STORAGE_" };
        size_t n = strcspn(entry, "=");

        for (size_t i = 0; i < ELEMENTSOF(exact); i++)
                if (strlen(exact[i]) == n && strncmp(entry, exact[i], n) == 0)
                        return true;
        for (size_t i = 0; i < ELEMENTSOF(prefixes); i++)
                if (strncmp(entry, prefixes[i], strlen(prefixes[i])) == 0)
                        return true;
        return false;
}

/* What an app's own command may have of ours: nothing about builders,
 * registries or nornd's runtime dir. */
static bool passed_to_app(const char *entry) {
        static const char *const exact[] = { "PATH", "LANG", "LC_ALL", "TZ", "SSL_CERT_FILE" };
        size_t n = strcspn(entry, "=");

        for (size_t i = 0; i < ELEMENTSOF(exact); i++)
                if (strlen(exact[i]) == n && strncmp(entry, exact[i], n) == 0)
                        return true;
        return false;
}

static int env_new(const Deployment *d, bool app, char ***ret) {
        _cleanup_strv_free_ char **env = calloc(1, sizeof(char *));
        char id[32];

        if (!env)
                return -ENOMEM;
        for (char **e = environ; e && *e; e++)
                if ((app ? passed_to_app(*e) : passed_through(*e)) && strv_extend(&env, *e) < 0)
                        return -ENOMEM;
        if (!strv_env_get(env, "PATH") && strv_env_set(&env, "PATH", "/usr/local/bin:/usr/bin:/bin") < 0)
                return -ENOMEM;
        /* The sandbox's private /tmp is the only other place it can write. */
        if (app && d->manager->config.step_isolated &&
            (strv_env_set(&env, "HOME", "/tmp") < 0 || strv_env_set(&env, "TMPDIR", "/tmp") < 0))
                return -ENOMEM;

        snprintf(id, sizeof(id), "%" PRIi64, d->id);
        if (strv_env_set(&env, "NORN_APP", d->app) < 0 || strv_env_set(&env, "NORN_DEPLOY_ID", id) < 0 ||
            (d->commit_sha && strv_env_set(&env, "NORN_COMMIT_SHA", d->commit_sha) < 0))
                return -ENOMEM;

        *ret = TAKE_PTR(env);
        return 0;
}

int step_env_new(const Deployment *d, char ***ret) {
        return env_new(d, false, ret);
}

int step_env_new_app(const Deployment *d, char ***ret) {
        return env_new(d, true, ret);
}

/* keyword's value in the URL, else libpq's default (PG* variables, the OS
 * user name, the default socket). */
static const char *conninfo_value(PQconninfoOption *opts, PQconninfoOption *defaults, const char *keyword) {
        for (PQconninfoOption *o = opts; o && o->keyword; o++)
                if (streq(o->keyword, keyword) && o->val && *o->val)
                        return o->val;
        for (PQconninfoOption *o = defaults; o && o->keyword; o++)
                if (streq(o->keyword, keyword) && o->val && *o->val)
                        return o->val;
        return "";
}

bool step_env_database_is_norns(const Manager *m) {
        PQconninfoOption *norn, *app, *defaults;
        bool same = true;       /* when in doubt, it is */

        norn = PQconninfoParse(m->config.database_url, NULL);
        app = PQconninfoParse(m->config.app_database_url, NULL);
        defaults = PQconndefaults();
        if (norn && app && defaults)
                same = streq(conninfo_value(norn, defaults, "user"), conninfo_value(app, defaults, "user")) &&
                       streq(conninfo_value(norn, defaults, "host"), conninfo_value(app, defaults, "host")) &&
                       streq(conninfo_value(norn, defaults, "port"), conninfo_value(app, defaults, "port"));
        PQconninfoFree(norn);
        PQconninfoFree(app);
        PQconninfoFree(defaults);
        return same;
}

/* Percent-encode for a URI component. */
static int uri_encode(FILE *f, const char *s) {
        for (; *s; s++) {
                unsigned char c = (unsigned char) *s;
                if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    strchr("-._~", c))
                        fputc(c, f);
                else
                        fprintf(f, "%%%02X", c);
        }
        return 0;
}

int step_env_add_database(const Deployment *d, const char *database, char ***env) {
        const Manager *m = d->manager;
        const char *server = m->config.app_database_url;
        const char *host = NULL, *port = NULL, *user = NULL, *password = NULL, *sslmode = NULL;
        PQconninfoOption *opts;
        char *uri = NULL, *err = NULL;
        size_t size = 0;
        FILE *f;
        int r = 0;

        opts = PQconninfoParse(server, &err);
        if (!opts) {
                PQfreemem(err); /* may quote the URL: not shown */
                return -EINVAL;
        }
        for (PQconninfoOption *o = opts; o->keyword; o++) {
                if (!o->val || !*o->val)
                        continue;
                if (streq(o->keyword, "host"))
                        host = o->val;
                else if (streq(o->keyword, "port"))
                        port = o->val;
                else if (streq(o->keyword, "user"))
                        user = o->val;
                else if (streq(o->keyword, "password"))
                        password = o->val;
                else if (streq(o->keyword, "sslmode"))
                        sslmode = o->val;
        }

        f = open_memstream(&uri, &size);
        if (!f) {
                r = -ENOMEM;
                goto finish;
        }
        fputs("postgresql://", f);
        if (user) {
                uri_encode(f, user);
                if (password) {
                        fputc(':', f);
                        uri_encode(f, password);
                }
                fputc('@', f);
        }
        if (host && host[0] != '/')
                uri_encode(f, host);
        if (port)
                fprintf(f, ":%s", port);
        fputc('/', f);
        uri_encode(f, database);
        if (host && host[0] == '/') {
                fputs("?host=", f);
                uri_encode(f, host);
        }
        if (fclose(f) != 0) {
                r = -ENOMEM;
                goto finish;
        }

        if (strv_env_set(env, "DATABASE_URL", uri) < 0 || strv_env_set(env, "PGDATABASE", database) < 0 ||
            (host && strv_env_set(env, "PGHOST", host) < 0) ||
            (port && strv_env_set(env, "PGPORT", port) < 0) ||
            (user && strv_env_set(env, "PGUSER", user) < 0) ||
            (password && strv_env_set(env, "PGPASSWORD", password) < 0) ||
            (sslmode && strv_env_set(env, "PGSSLMODE", sslmode) < 0))
                r = -ENOMEM;
finish:
        if (uri)
                explicit_bzero(uri, strlen(uri));
        free(uri);
        PQconninfoFree(opts);
        return r;
}
