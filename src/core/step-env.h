/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "deployment.h"

/* The environment a step's commands get: built from scratch, never nornd's
 * own (which holds NORN_GIT_TOKEN, NORN_API_TOKEN and the database URL of
 * Norn itself). Only what tools need is passed through. */
int step_env_new(const Deployment *d, char ***ret);

/* Adds DATABASE_URL and PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE for the
 * app's database on the server of NORN_APP_DATABASE_URL (default: the
 * server of NORN_DATABASE_URL). */
int step_env_add_database(const Deployment *d, const char *database, char ***env);
