/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "config-build.h"
#include "log.h"

int parse_port(const char *s, uint16_t *ret) {
        char *end;
        unsigned long v;

        if (!s || !*s || *s == '-' || *s == '+')
                return -EINVAL;
        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno != 0 || *end != '\0' || v == 0 || v > 65535)
                return -EINVAL;
        *ret = (uint16_t) v;
        return 0;
}

static int env_dup(const char *name, const char *fallback, char **ret) {
        const char *v = getenv(name);
        char *s;

        if (!v || !*v)
                v = fallback;
        if (!v) {
                *ret = NULL;
                return 0;
        }
        s = strdup(v);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

/* The schema ships in the install tree; a build-tree binary falls back to the
 * source tree so tests and the demo need no install step. */
static const char *default_sql_dir(void) {
        struct stat st;

        if (stat(NORN_SQL_DIR, &st) == 0 && S_ISDIR(st.st_mode))
                return NORN_SQL_DIR;
        return NORN_SOURCE_SQL_DIR;
}

int config_load(NornConfig *c, bool user_mode) {
        const char *port;
        int r;

        *c = (NornConfig) { .user_mode = user_mode, .port = NORN_DEFAULT_PORT };

        port = getenv("NORN_PORT");
        if (port && *port && parse_port(port, &c->port) < 0)
                return log_error_errno(-EINVAL, "NORN_PORT=%s is not a port number (1-65535).", port);

        if ((r = env_dup("NORN_BIND_ADDR", NORN_DEFAULT_BIND_ADDRESS, &c->bind_address)) < 0 ||
            (r = env_dup("NORN_DATABASE_URL", "postgresql:///norn", &c->database_url)) < 0 ||
            (r = env_dup("NORN_APPS_DIR", user_mode ? "apps" : "/var/lib/norn/apps", &c->apps_dir)) < 0 ||
            (r = env_dup("NORN_REGISTRY_URL", NULL, &c->registry_url)) < 0 ||
            (r = env_dup("NORN_API_TOKEN", NULL, &c->api_token)) < 0 ||
            (r = env_dup("NORN_SQL_DIR", default_sql_dir(), &c->sql_dir)) < 0) {
                config_done(c);
                return log_oom();
        }
        return 0;
}

void config_done(NornConfig *c) {
        free(c->bind_address);
        free(c->database_url);
        free(c->apps_dir);
        free(c->registry_url);
        if (c->api_token)
                explicit_bzero(c->api_token, strlen(c->api_token));
        free(c->api_token);
        free(c->sql_dir);
        *c = (NornConfig) {};
}
