/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>

#include "deployment.h"

/* The environment a step's commands get: built from scratch, never nornd's
 * own (which holds NORN_GIT_TOKEN, NORN_API_TOKEN and the database URL of
 * Norn itself). Only what tools need is passed through. */
int step_env_new(const Deployment *d, char ***ret);
/* The same for a command from the app (build.test, the migration): less of
 * nornd's environment still (no builder, registry or runtime-dir settings),
 * and HOME=TMPDIR=/tmp, the sandbox's private /tmp, when it runs as the step
 * user. */
int step_env_new_app(const Deployment *d, char ***ret);

/* True when NORN_APP_DATABASE_URL would connect as Norn's own role on
 * Norn's own server (also when it is unset, or cannot be parsed). */
bool step_env_database_is_norns(const Manager *m);

/* Adds DATABASE_URL and PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE for the
 * app's database on the server, and with the role, of NORN_APP_DATABASE_URL
 * (default: those of NORN_DATABASE_URL, which only nornd's own pg_dump and
 * pg_restore may use). */
int step_env_add_database(const Deployment *d, const char *database, char ***env);
