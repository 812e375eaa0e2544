/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <string.h>

#include "infraspec.h"
#include "manager.h"
#include "pipeline.h"
#include "snapshot-file.h"
#include "step-driver.h"
#include "step-env.h"
#include "strv.h"

static const StepNext drivers[_STEP_MAX] = {
        [STEP_CLONE] = step_clone_next,
        [STEP_BUILD] = step_build_next,
        [STEP_TEST] = step_test_next,
        [STEP_SNAPSHOT] = step_snapshot_next,
        [STEP_MIGRATE] = step_migrate_next,
        [STEP_DEPLOY] = step_deploy_next,
        [STEP_CLEANUP] = step_cleanup_next,
};

StepNext step_driver(StepId s) {
        return drivers[s];
}

bool step_is_skipped(const Deployment *d, StepId s) {
        /* Rollbacks and restores deploy an image that exists: nothing to
         * fetch, build, test or clean; migrate restores the database if asked. */
        if (d->prebuilt)
                return s == STEP_MIGRATE ? !d->restore_file : s != STEP_DEPLOY;

        switch (s) {
        case STEP_BUILD:
                return !infraspec_wants_build(d->spec);
        case STEP_TEST:
                return !infraspec_wants_test(d->spec);
        case STEP_SNAPSHOT:
                return !infraspec_wants_snapshot(d->spec);
        case STEP_MIGRATE:
                return !infraspec_wants_migrate(d->spec);
        default:
                return false;
        }
}

int step_command_check(Deployment *d, const StepRunResult *r, const char *what) {
        if (r->error)
                return deployment_fail(d, "%s: %s", what, r->error);
        if (r->signal > 0)
                return deployment_fail(d, "%s killed by signal %s", what, sigabbrev_np(r->signal) ?: "?");
        if (r->exit_code != 0)
                return deployment_fail(d, "%s exited with status %d", what, r->exit_code);
        return 0;
}

/* Test and migrate are one shell command each from the app's repository,
 * run in the work dir as the step user (pipeline_run_app_command()). */
static int run_shell(Deployment *d, const char *command, char *const *env) {
        char *const argv[] = { (char *) "sh", (char *) "-c", (char *) command, NULL };
        return pipeline_run_app_command(d, argv, env);
}

int step_test_next(Deployment *d, const StepRunResult *prev) {
        _cleanup_strv_free_ char **env = NULL;

        if (prev)
                return step_command_check(d, prev, "test command");
        if (step_env_new_app(d, &env) < 0)
                return deployment_fail(d, "out of memory");
        return run_shell(d, d->spec->build.test, env);
}

int step_migrate_next(Deployment *d, const StepRunResult *prev) {
        _cleanup_strv_free_ char **env = NULL;
        const char *db;
        int r;

        if (prev)
                return step_command_check(d, prev, d->restore_file ? "pg_restore" : "migration command");
        if (d->restore_file)
                return step_restore_start(d);

        db = d->spec->migrations.database ?: d->spec->services.postgres.database;
        if (!db)
                return deployment_fail(d, "migrations.command is set but neither migrations.database nor "
                                          "services.postgres.database names a database");
        /* App code never gets Norn's own role: it could rewrite deployments,
         * or cron_timers, which nornd turns into running units. */
        if (step_env_database_is_norns(d->manager))
                return deployment_fail(d, "refusing to run the migration of %s with Norn's own database role; "
                                          "give the apps a role of their own: set NORN_APP_DATABASE_URL to a "
                                          "role that may use the apps' databases but not Norn's (CREATE ROLE "
                                          "norn_apps LOGIN PASSWORD '...'; GRANT ALL ON DATABASE %s TO "
                                          "norn_apps; ALTER DATABASE %s OWNER TO norn_apps)",
                                       d->app, db, db);
        r = step_env_new_app(d, &env);
        if (r >= 0)
                r = step_env_add_database(d, db, &env);
        if (r < 0)
                return deployment_fail(d, "cannot build the database environment: %s", strerror(-r));
        return run_shell(d, d->spec->migrations.command, env);
}

int step_cleanup_next(Deployment *d, const StepRunResult *prev) {
        _cleanup_strv_free_ char **env = NULL;
        char *const argv[] = { (char *) "rm", (char *) "-rf", (char *) "--one-file-system", (char *) "--",
                               d->workdir, NULL };

        if (prev) {
                if (prev->exit_code != 0 || prev->error) {
                        /* Never fails the deploy: recorded on the step, logged. */
                        deployment_log(d, "cleanup could not remove %s (exit %d)", d->workdir,
                                       prev->exit_code);
                        return -EIO;
                }
                return 0;
        }
        /* A pg_dump cancelled or timed out in the snapshot step left its partial file. */
        (void) snapshot_partial_remove(d->snapshot_file);
        if (!d->workdir)
                return 0;
        if (step_env_new(d, &env) < 0)
                return -ENOMEM;
        return pipeline_run_command(d, argv, env, "/");
}
