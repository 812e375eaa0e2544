/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config-build.h"
#include "config.h"
#include "http-server.h"
#include "log.h"
#include "strv.h"

/* Defaults per step, in seconds: builds may be long, cleanup is quick. */
static const uint64_t default_step_timeout_sec[_STEP_MAX] = {
        [STEP_CLONE] = 600,   [STEP_BUILD] = 1800,  [STEP_TEST] = 900, [STEP_SNAPSHOT] = 900,
        [STEP_MIGRATE] = 900, [STEP_DEPLOY] = 600,  [STEP_CLEANUP] = 120,
};

int parse_uint64(const char *s, uint64_t *ret) {
        char *end;
        unsigned long long v;

        if (!s || !isdigit((unsigned char) *s))
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno != 0 || *end != '\0')
                return -EINVAL;
        *ret = v;
        return 0;
}

int parse_port(const char *s, uint16_t *ret) {
        uint64_t v;

        if (parse_uint64(s, &v) < 0 || v == 0 || v > 65535)
                return -EINVAL;
        *ret = (uint16_t) v;
        return 0;
}

static int env_dup(const char *name, const char *fallback, char **ret) {
        const char *v = getenv(name);

        if (!v || !*v)
                v = fallback;
        *ret = NULL;
        if (v && !(*ret = strdup(v)))
                return -ENOMEM;
        return 0;
}

/* Reads NAME as an unsigned number in [min, max]; unset keeps *value. */
static int env_uint(const char *name, uint64_t min, uint64_t max, uint64_t *value) {
        const char *v = getenv(name);
        uint64_t n;

        if (!v || !*v)
                return 0;
        if (parse_uint64(v, &n) < 0 || n < min || n > max)
                return log_error_errno(-EINVAL, "%s=%s is not a number between %llu and %llu.", name, v,
                                       (unsigned long long) min, (unsigned long long) max);
        *value = n;
        return 0;
}

/* Whitespace-separated words; these are administrator settings, not input
 * from apps, and no shell ever sees them. */
static int env_words(const char *name, char ***ret) {
        const char *v = getenv(name);
        _cleanup_free_ char *copy = NULL;
        char **l = calloc(1, sizeof(char *)), *save = NULL;

        if (!l)
                return -ENOMEM;
        if (v && *v) {
                copy = strdup(v);
                if (!copy)
                        return -ENOMEM;
                for (char *w = strtok_r(copy, " \t\n", &save); w; w = strtok_r(NULL, " \t\n", &save))
                        if (strv_extend(&l, w) < 0) {
                                strv_free(l);
                                return -ENOMEM;
                        }
        }
        *ret = l;
        return 0;
}

/* The schema ships in the install tree; a build-tree binary falls back to the
 * source tree so tests and the demo need no install step. */
static const char *default_dashboard_dir(void) {
        struct stat st;

        if (stat(NORN_DASHBOARD_DIR, &st) == 0 && S_ISDIR(st.st_mode))
                return NORN_DASHBOARD_DIR;
        return NORN_SOURCE_DASHBOARD_DIR;
}

static const char *default_sql_dir(void) {
        struct stat st;

        if (stat(NORN_SQL_DIR, &st) == 0 && S_ISDIR(st.st_mode))
                return NORN_SQL_DIR;
        return NORN_SOURCE_SQL_DIR;
}

static int default_state_dir(bool user_mode, char **ret) {
        const char *e = getenv("STATE_DIRECTORY"), *home;

        /* systemd's StateDirectory= may list several; the first is ours. */
        if (e && *e)
                return (*ret = strndup(e, strcspn(e, ":"))) ? 0 : -ENOMEM;
        if (!user_mode)
                return (*ret = strdup("/var/lib/norn")) ? 0 : -ENOMEM;
        e = getenv("XDG_STATE_HOME");
        if (e && *e)
                return asprintf(ret, "%s/norn", e) < 0 ? -ENOMEM : 0;
        home = getenv("HOME");
        return asprintf(ret, "%s/.local/state/norn", home ?: "/root") < 0 ? -ENOMEM : 0;
}

static int load_steps(NornConfig *c) {
        uint64_t quota = 0, secs;
        int r;

        c->step_tasks_max = 4096;
        if ((r = env_uint("NORN_STEP_MEMORY_MAX", 0, UINT64_MAX, &c->step_memory_max)) < 0 ||
            (r = env_uint("NORN_STEP_TASKS_MAX", 0, UINT32_MAX, &c->step_tasks_max)) < 0 ||
            (r = env_uint("NORN_STEP_CPU_QUOTA", 0, 100000, &quota)) < 0)
                return r;
        c->step_cpu_quota_usec = quota * 10000; /* percent of one CPU per second */

        for (StepId s = 0; s < _STEP_MAX; s++) {
                char name[64];

                snprintf(name, sizeof(name), "NORN_TIMEOUT_%s", step_to_string(s));
                for (char *p = name; *p; p++)
                        *p = (char) toupper((unsigned char) *p);
                secs = default_step_timeout_sec[s];
                if ((r = env_uint(name, 1, 7 * 24 * 3600, &secs)) < 0)
                        return r;
                c->step_timeout_usec[s] = secs * 1000000ULL;
        }
        return 0;
}

bool address_is_loopback(const char *address) {
        struct in_addr in;
        struct in6_addr in6;

        if (!address)
                return false;
        if (inet_pton(AF_INET, address, &in) == 1)
                return (ntohl(in.s_addr) >> 24) == 127;
        if (inet_pton(AF_INET6, address, &in6) == 1)
                return IN6_IS_ADDR_LOOPBACK(&in6);
        return false;
}

/* A token goes into an HTTP header: visible ASCII, no spaces. */
static bool api_token_is_valid(const char *t) {
        size_t n = strlen(t);

        if (n == 0 || n > API_TOKEN_MAX)
                return false;
        for (const char *p = t; *p; p++)
                if (*p < 0x21 || *p > 0x7e)
                        return false;
        return true;
}

/* NORN_API_TOKEN_FILE: read once, here (e.g. a systemd credential). One
 * line; surrounding whitespace and the final newline are not part of it. */
static int read_api_token_file(const char *path, char **ret) {
        _cleanup_close_ int fd = -EBADF;
        char buf[API_TOKEN_MAX + 64];
        size_t n = 0, start = 0;
        struct stat st;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return log_error_errno(-errno, "NORN_API_TOKEN_FILE=%s cannot be opened: %m", path);
        if (fstat(fd, &st) < 0)
                return log_error_errno(-errno, "NORN_API_TOKEN_FILE=%s: %m", path);
        if (!S_ISREG(st.st_mode))
                return log_error_errno(-EINVAL, "NORN_API_TOKEN_FILE=%s is not a regular file.", path);
        if (st.st_mode & 0077)
                log_warning("NORN_API_TOKEN_FILE=%s can be read by other users; it should be mode 0600 or 0400.",
                            path);
        for (;;) {
                ssize_t k = read(fd, buf + n, sizeof(buf) - 1 - n);

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return log_error_errno(-errno, "NORN_API_TOKEN_FILE=%s cannot be read: %m", path);
                }
                if (k == 0)
                        break;
                n += (size_t) k;
                if (n >= sizeof(buf) - 1) {
                        explicit_bzero(buf, sizeof(buf));
                        return log_error_errno(-EINVAL, "NORN_API_TOKEN_FILE=%s is too long for a token "
                                               "(at most %u characters).", path, API_TOKEN_MAX);
                }
        }
        while (n > 0 && isspace((unsigned char) buf[n - 1]))
                n--;
        while (start < n && isspace((unsigned char) buf[start]))
                start++;
        buf[n] = 0;
        *ret = strdup(buf + start);
        explicit_bzero(buf, sizeof(buf));
        return *ret ? 0 : log_oom();
}

/* The API token and what its absence means (DESIGN §3, issue 5): without
 * one, the API is for local clients only, so an explicitly non-loopback
 * NORN_BIND_ADDR is refused rather than quietly narrowed. Sockets passed by
 * systemd are not known yet here: api.c refuses non-local clients then. */
static int load_api_token(NornConfig *c) {
        const char *file = getenv("NORN_API_TOKEN_FILE");
        int r;

        if (file && *file) {
                if (c->api_token)
                        return log_error_errno(-EINVAL, "Both NORN_API_TOKEN and NORN_API_TOKEN_FILE are set; "
                                               "set only one.");
                r = read_api_token_file(file, &c->api_token);
                if (r < 0)
                        return r;
                if (!*c->api_token)
                        return log_error_errno(-EINVAL, "NORN_API_TOKEN_FILE=%s is empty.", file);
        }
        if (c->api_token) {
                /* Never the token itself in a message. */
                if (!api_token_is_valid(c->api_token))
                        return log_error_errno(-EINVAL, "The API token (%s) must be 1 to %u visible ASCII "
                                               "characters without spaces.",
                                               file && *file ? "NORN_API_TOKEN_FILE" : "NORN_API_TOKEN",
                                               API_TOKEN_MAX);
                if (strlen(c->api_token) < 16)
                        log_warning("The API token is shorter than 16 characters; use a long random one.");
                return 0;
        }

        if (!address_is_loopback(c->bind_address))
                return log_error_errno(-EINVAL, "NORN_BIND_ADDR=%s is not a loopback address, and no API token "
                                       "is set: refusing to serve the HTTP API without authentication beyond "
                                       "this host. Set NORN_API_TOKEN or NORN_API_TOKEN_FILE, or bind to "
                                       "127.0.0.1 or ::1.", c->bind_address);
        log_notice("No API token is set (NORN_API_TOKEN, NORN_API_TOKEN_FILE): the HTTP API only answers "
                   "clients on this host (loopback); requests from other addresses are refused.");
        return 0;
}

/* Resolved once at start-up: a typo must not silently lock everyone out
 * (or let the wrong group in) at the first Deploy. */
static int load_admin_group(NornConfig *c) {
        const char *v = getenv("NORN_ADMIN_GROUP");
        struct group grp, *res = NULL;
        char buf[16384];
        uint64_t n;
        int r;

        if (!v || !*v)
                return 0;
        if (parse_uint64(v, &n) == 0) {
                if (n == 0 || n >= (uint64_t) (gid_t) -1)
                        return log_error_errno(-EINVAL, "NORN_ADMIN_GROUP=%s: not a usable group id.", v);
                c->admin_gid = (gid_t) n;
                c->has_admin_gid = true;
                return 0;
        }
        r = getgrnam_r(v, &grp, buf, sizeof(buf), &res);
        if (r != 0 || !res)
                return log_error_errno(r > 0 ? -r : -ENOENT, "NORN_ADMIN_GROUP=%s: no such group.", v);
        if (res->gr_gid == 0)
                return log_error_errno(-EINVAL, "NORN_ADMIN_GROUP=%s: the root group is not allowed.", v);
        c->admin_gid = res->gr_gid;
        c->has_admin_gid = true;
        return 0;
}

/* The identity app commands (build.test, migrations, cron jobs) run as,
 * resolved once at start-up. Only root can switch to it; a nornd of another
 * user runs them as itself (there is nothing it could give away). */
static int load_step_user(NornConfig *c) {
        struct passwd pw, *res = NULL;
        char buf[16384];
        int r;

        if (geteuid() != 0) {
                log_notice("nornd does not run as root: app commands (build.test, migrations, cron jobs) run as "
                           "uid %u, nornd's own, without the isolation of %s.", (unsigned) geteuid(),
                           c->step_user);
                return 0;
        }
        r = getpwnam_r(c->step_user, &pw, buf, sizeof(buf), &res);
        if (r != 0 || !res)
                return log_error_errno(r > 0 ? -r : -ENOENT, "NORN_STEP_USER=%s: no such user. App commands "
                                       "run as this unprivileged user; create it with systemd-sysusers "
                                       "(sysusers.d/norn.conf, installed with Norn) or name another one.",
                                       c->step_user);
        if (res->pw_uid == 0 || res->pw_gid == 0)
                return log_error_errno(-EINVAL, "NORN_STEP_USER=%s: must not be root or in the root group.",
                                       c->step_user);
        c->step_uid = res->pw_uid;
        c->step_gid = res->pw_gid;
        c->step_isolated = true;
        return 0;
}

static int load_step_hide(NornConfig *c) {
        _cleanup_strv_free_ char **extra = NULL;
        int r;

        r = env_words("NORN_STEP_HIDE_PATHS", &extra);
        if (r < 0)
                return log_oom();
        for (char **p = extra; *p; p++)
                if ((*p)[0] != '/')
                        return log_error_errno(-EINVAL, "NORN_STEP_HIDE_PATHS: %s is not an absolute path.", *p);
        r = strv_extend_many(&c->step_hide, c->state_dir, c->apps_dir, c->snapshot_dir, NORN_CONFIG_DIR, NULL);
        for (char **p = extra; r >= 0 && *p; p++)
                r = strv_extend(&c->step_hide, *p);
        return r < 0 ? log_oom() : 0;
}

static int config_load_all(NornConfig *c, bool user_mode) {
        const char *port, *builder, *insecure;
        uint64_t n;
        int r;

        *c = (NornConfig) { .user_mode = user_mode, .port = NORN_DEFAULT_PORT };

        port = getenv("NORN_PORT");
        if (port && *port && parse_port(port, &c->port) < 0)
                return log_error_errno(-EINVAL, "NORN_PORT=%s is not a port number (1-65535).", port);

        builder = getenv("NORN_BUILDER");
        if (builder && *builder && !streq(builder, "docker") && !streq(builder, "podman") &&
            !streq(builder, "buildah"))
                return log_error_errno(-EINVAL, "NORN_BUILDER=%s: must be docker, podman or buildah.", builder);
        insecure = getenv("NORN_REGISTRY_INSECURE");
        c->registry_insecure = insecure && (streq(insecure, "1") || streq(insecure, "yes") ||
                                            streq(insecure, "true"));

        if ((r = env_dup("NORN_BIND_ADDR", NORN_DEFAULT_BIND_ADDRESS, &c->bind_address)) < 0 ||
            (r = env_dup("NORN_DATABASE_URL", "postgresql:///norn", &c->database_url)) < 0 ||
            (r = env_dup("NORN_STEP_USER", "norn-step", &c->step_user)) < 0 ||
            (r = env_dup("NORN_REGISTRY_URL", NULL, &c->registry_url)) < 0 ||
            (r = env_dup("NORN_API_TOKEN", NULL, &c->api_token)) < 0 ||
            (r = env_dup("NORN_SQL_DIR", default_sql_dir(), &c->sql_dir)) < 0 ||
            (r = env_dup("NORN_DASHBOARD_DIR", default_dashboard_dir(), &c->dashboard_dir)) < 0 ||
            (r = env_dup("NORN_BUILDER", "docker", &c->builder)) < 0 ||
            (r = env_dup("NORN_GIT_TOKEN", NULL, &c->git_token)) < 0 ||
            (r = env_dup("NORN_GIT_SSH_KEY", NULL, &c->git_ssh_key)) < 0 ||
            (r = env_dup("NORN_GIT_SSH_KNOWN_HOSTS", NULL, &c->git_ssh_known_hosts)) < 0 ||
            (r = env_dup("NORN_SLICE", "norn.slice", &c->slice)) < 0 ||
            (r = env_dup("NORN_STATE_DIR", NULL, &c->state_dir)) < 0 ||
            (r = env_dup("NORN_SNAPSHOT_DIR", NULL, &c->snapshot_dir)) < 0 ||
            (r = env_words("NORN_BUILDER_FLAGS", &c->builder_flags)) < 0 ||
            (r = env_words("NORN_BUILD_FLAGS", &c->build_flags)) < 0)
                goto oom;

        if ((r = env_dup("NORN_APP_DATABASE_URL", c->database_url, &c->app_database_url)) < 0)
                goto oom;
        if (!c->state_dir && (r = default_state_dir(user_mode, &c->state_dir)) < 0)
                goto oom;
        if (!c->snapshot_dir && asprintf(&c->snapshot_dir, "%s/snapshots", c->state_dir) < 0) {
                c->snapshot_dir = NULL;
                goto oom;
        }
        r = env_dup("NORN_APPS_DIR", NULL, &c->apps_dir);
        if (r < 0 || (!c->apps_dir && asprintf(&c->apps_dir, "%s/apps", c->state_dir) < 0))
                goto oom;

        /* ssh reads GIT_SSH_COMMAND through a shell: the key path must be plain. */
        if (c->git_ssh_key && (c->git_ssh_key[0] != '/' || strpbrk(c->git_ssh_key, " \t\n'\"\\$`;&|<>(){}*?")))
                return log_error_errno(-EINVAL, "NORN_GIT_SSH_KEY must be an absolute path without spaces "
                                       "or shell characters.");
        if (c->git_ssh_known_hosts &&
            (c->git_ssh_known_hosts[0] != '/' || strpbrk(c->git_ssh_known_hosts, " \t\n'\"\\$`;&|<>(){}*?")))
                return log_error_errno(-EINVAL, "NORN_GIT_SSH_KNOWN_HOSTS must be an absolute path without "
                                       "spaces or shell characters.");

        if ((r = load_api_token(c)) < 0 || (r = load_steps(c)) < 0 || (r = load_step_user(c)) < 0 ||
            (r = load_step_hide(c)) < 0)
                return r;
        n = 2;
        if ((r = env_uint("NORN_MAX_PARALLEL", 1, 1024, &n)) < 0)
                return r;
        c->max_parallel = (unsigned) n;
        n = 5;
        if ((r = env_uint("NORN_QUEUE_MAX", 0, 1000, &n)) < 0)
                return r;
        c->queue_max = (unsigned) n;
        n = HTTP_BODY_TIMEOUT_SEC;
        if ((r = env_uint("NORN_HTTP_BODY_TIMEOUT", 1, 3600, &n)) < 0)
                return r;
        c->http_body_timeout_usec = n * 1000U * 1000U;
        n = HTTP_PEER_MAX_CONNECTIONS;
        if ((r = env_uint("NORN_HTTP_PEER_MAX_CONNECTIONS", 1, HTTP_MAX_CONNECTIONS, &n)) < 0)
                return r;
        c->http_peer_max_connections = (unsigned) n;
        n = 300;
        if ((r = env_uint("NORN_DB_HOLD_TIMEOUT", 1, 7 * 24 * 3600, &n)) < 0)
                return r;
        c->db_hold_timeout_usec = n * 1000000ULL;
        return load_admin_group(c);

oom:
        config_done(c);
        return log_oom();
}

int config_load(NornConfig *c, bool user_mode) {
        int r = config_load_all(c, user_mode);

        /* A setting refused after others were read (the API token among
         * them): free and wipe what was read. */
        if (r < 0)
                config_done(c);
        return r;
}

static void free_secret(char *s) {
        if (s)
                explicit_bzero(s, strlen(s));
        free(s);
}

void config_done(NornConfig *c) {
        free(c->bind_address);
        free_secret(c->database_url);
        free_secret(c->app_database_url);
        free(c->step_user);
        strv_free(c->step_hide);
        free(c->apps_dir);
        free(c->state_dir);
        free(c->snapshot_dir);
        free(c->registry_url);
        free_secret(c->api_token);
        free_secret(c->git_token);
        free(c->sql_dir);
        free(c->dashboard_dir);
        free(c->builder);
        strv_free(c->builder_flags);
        strv_free(c->build_flags);
        free(c->git_ssh_key);
        free(c->git_ssh_known_hosts);
        free(c->slice);
        *c = (NornConfig) {};
}
