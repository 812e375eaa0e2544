/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "deploy-state.h"

/* Settings come from the environment (names from DESIGN §3), so the unit
 * file, `systemctl set-environment` and the tests all configure nornd the
 * same way. Secrets (API token, git token) are held here and never logged. */
typedef struct NornConfig {
        bool user_mode;          /* session bus + user manager instead of system ones */
        char *bind_address;      /* NORN_BIND_ADDR, used when not socket-activated */
        uint16_t port;           /* NORN_PORT */
        char *database_url;      /* NORN_DATABASE_URL */
        char *app_database_url;  /* NORN_APP_DATABASE_URL: server and role of the apps' databases
                                  * (default: database_url, whose role migrations may not use) */
        char *apps_dir;          /* NORN_APPS_DIR */
        char *state_dir;         /* NORN_STATE_DIR: work dirs, snapshots */
        char *snapshot_dir;      /* NORN_SNAPSHOT_DIR (default <state>/snapshots) */
        char *registry_url;      /* NORN_REGISTRY_URL, may be NULL */
        bool registry_insecure;  /* NORN_REGISTRY_INSECURE=1: plain HTTP registry */
        char *api_token;         /* NORN_API_TOKEN, or read from NORN_API_TOKEN_FILE; may be NULL:
                                  * then only loopback clients may use the API */
        char *sql_dir;           /* NORN_SQL_DIR: schema files */
        char *dashboard_dir;     /* NORN_DASHBOARD_DIR: the web dashboard's files */

        char *builder;           /* NORN_BUILDER: docker (default), podman or buildah */
        char **builder_flags;    /* NORN_BUILDER_FLAGS: before the subcommand */
        char **build_flags;      /* NORN_BUILD_FLAGS: after "build" */
        char *git_token;         /* NORN_GIT_TOKEN: HTTPS clones, via GIT_ASKPASS only */
        char *git_ssh_key;       /* NORN_GIT_SSH_KEY: path of a private key */
        char *git_ssh_known_hosts; /* NORN_GIT_SSH_KNOWN_HOSTS: file; else accept-new */

        char *slice;             /* NORN_SLICE: where step scopes go (norn.slice) */
        uint64_t step_memory_max;      /* NORN_STEP_MEMORY_MAX, bytes */
        uint64_t step_tasks_max;       /* NORN_STEP_TASKS_MAX */
        uint64_t step_cpu_quota_usec;  /* NORN_STEP_CPU_QUOTA, percent -> usec per sec */
        uint64_t step_timeout_usec[_STEP_MAX]; /* NORN_TIMEOUT_<STEP>, seconds */
        uint64_t db_hold_timeout_usec; /* NORN_DB_HOLD_TIMEOUT, seconds: how long a deployment waits
                                        * at a step boundary for the database to record it */
        unsigned max_parallel;   /* NORN_MAX_PARALLEL: deploys of different apps at once */
        unsigned queue_max;      /* NORN_QUEUE_MAX: waiting deploys per app */
        uint64_t http_body_timeout_usec;      /* NORN_HTTP_BODY_TIMEOUT, seconds */
        unsigned http_peer_max_connections;   /* NORN_HTTP_PEER_MAX_CONNECTIONS */
        char *step_user;         /* NORN_STEP_USER: who app commands run as (norn-step) */
        bool step_isolated;      /* nornd is root: app commands switch to step_uid/step_gid */
        uid_t step_uid;
        gid_t step_gid;
        char **step_hide;        /* what app commands never see: state, apps, snapshots, NORN_CONFIG_DIR
                                  * and NORN_STEP_HIDE_PATHS (absolute paths) */
        bool has_admin_gid;      /* NORN_ADMIN_GROUP (name or number) is set: */
        gid_t admin_gid;         /* its members may deploy where polkit is absent */
} NornConfig;

/* The unit's EnvironmentFile= lives here: hidden from app commands. */
#define NORN_CONFIG_DIR "/etc/norn"
#define NORN_DEFAULT_BIND_ADDRESS "127.0.0.1"
#define API_TOKEN_MAX 4096U
#define NORN_DEFAULT_PORT 8800

int config_load(NornConfig *c, bool user_mode);
void config_done(NornConfig *c);

int parse_port(const char *s, uint16_t *ret);
/* 127.0.0.0/8 or ::1 (literals only, as NORN_BIND_ADDR takes them). */
bool address_is_loopback(const char *address);
int parse_uint64(const char *s, uint64_t *ret);
