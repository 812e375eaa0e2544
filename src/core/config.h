/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* Settings come from the environment (names from DESIGN §3), so the unit
 * file, `systemctl set-environment` and the tests all configure nornd the
 * same way. Secrets (API token, git token) are held here and never logged. */
typedef struct NornConfig {
        bool user_mode;          /* session bus + user manager instead of system ones */
        char *bind_address;      /* NORN_BIND_ADDR, used when not socket-activated */
        uint16_t port;           /* NORN_PORT */
        char *database_url;      /* NORN_DATABASE_URL */
        char *apps_dir;          /* NORN_APPS_DIR */
        char *registry_url;      /* NORN_REGISTRY_URL, may be NULL */
        char *api_token;         /* NORN_API_TOKEN, may be NULL */
        char *sql_dir;           /* NORN_SQL_DIR: schema files */
} NornConfig;

#define NORN_DEFAULT_BIND_ADDRESS "127.0.0.1"
#define NORN_DEFAULT_PORT 8800

int config_load(NornConfig *c, bool user_mode);
void config_done(NornConfig *c);

int parse_port(const char *s, uint16_t *ret);
