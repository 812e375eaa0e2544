/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "deploy-store.h"
#include "fs-util.h"
#include "infraspec.h"
#include "manager.h"
#include "pipeline.h"
#include "snapshot-file.h"
#include "step-driver.h"
#include "step-env.h"
#include "strv.h"

/* The snapshot step: pg_dump -Fc of services.postgres.database into
 * <snapshot dir>/<app>/<db>_<sha12>_<UTC timestamp, us>.dump, then a row in
 * snapshots. The database name reaches pg_dump through PGDATABASE only.
 * pg_dump writes <file>.partial, renamed once it succeeded (snapshot-file.h). */

enum { SNAPSHOT_DUMP = 1, SNAPSHOT_RECORD };

static void on_snapshot_recorded(Deployment *d, int r) {
        StepRunResult result = { .exit_code = r < 0 ? 1 : 0 };

        if (r < 0) {
                deployment_fail(d, "could not record the snapshot in the database");
                /* No row, no file: nothing could restore from it. */
                if (d->snapshot_file && unlink(d->snapshot_file) < 0 && errno != ENOENT)
                        deployment_log(d, "cannot remove unrecorded snapshot %s: %s", d->snapshot_file,
                                       strerror(errno));
        }
        pipeline_step_continue(d, &result);
}

int step_snapshot_next(Deployment *d, const StepRunResult *prev) {
        const char *db = d->spec->services.postgres.database;
        _cleanup_strv_free_ char **env = NULL;
        _cleanup_free_ char *dir = NULL, *partial = NULL;
        struct stat st;
        char stamp[48];
        time_t now;
        uint64_t usec;
        struct tm tm;
        int r;

        if (prev && d->stage == SNAPSHOT_RECORD)
                return prev->exit_code == 0 ? 0 : -EIO;
        if (prev) {
                r = step_command_check(d, prev, "pg_dump");
                if (r >= 0) {
                        partial = snapshot_partial_path(d->snapshot_file);
                        if (!partial)
                                r = deployment_fail(d, "out of memory");
                        else if (stat(partial, &st) < 0)
                                r = deployment_fail(d, "pg_dump wrote no file");
                        else if ((r = snapshot_partial_commit(d->snapshot_file)) < 0)
                                r = deployment_fail(d, "cannot rename %s to %s: %s", partial, d->snapshot_file,
                                                    strerror(-r));
                }
                if (r < 0) {
                        (void) snapshot_partial_remove(d->snapshot_file);
                        return r;
                }
                deployment_log(d, "snapshot %s (%lld bytes)", d->snapshot_file, (long long) st.st_size);
                d->stage = SNAPSHOT_RECORD;
                r = deploy_store_snapshot(d, db, d->snapshot_file, (uint64_t) st.st_size, on_snapshot_recorded);
                if (r < 0)
                        return deployment_fail(d, "could not record the snapshot: %s", strerror(-r));
                return 1;
        }

        if (asprintf(&dir, "%s/%s", d->manager->config.snapshot_dir, d->app) < 0)
                return deployment_fail(d, "out of memory");
        r = mkdir_p(dir, 0750);
        if (r < 0)
                return deployment_fail(d, "cannot create %s: %s", dir, strerror(-r));

        /* Microseconds: two deploys of one commit in the same second must
         * not share (and overwrite) a dump. */
        usec = now_realtime_usec();
        now = (time_t) (usec / 1000000);
        gmtime_r(&now, &tm);
        strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%S", &tm);
        snprintf(stamp + strlen(stamp), sizeof(stamp) - strlen(stamp), ".%06uZ", (unsigned) (usec % 1000000));
        free(d->snapshot_file);
        if (asprintf(&d->snapshot_file, "%s/%s_%.12s_%s.dump", dir, db, d->commit_sha, stamp) < 0) {
                d->snapshot_file = NULL;
                return deployment_fail(d, "out of memory");
        }

        r = step_env_new(d, &env);
        if (r >= 0)
                r = step_env_add_database(d, db, &env);
        if (r < 0)
                return deployment_fail(d, "cannot build the database environment: %s", strerror(-r));

        partial = snapshot_partial_path(d->snapshot_file);
        if (!partial)
                return deployment_fail(d, "out of memory");
        char *const argv[] = { (char *) "pg_dump", (char *) "-Fc", (char *) "--no-password", (char *) "-f",
                               partial, NULL };
        d->stage = SNAPSHOT_DUMP;
        return pipeline_run_command(d, argv, env, d->workdir);
}

/* A rollback's database restore: pg_restore --clean --if-exists of the
 * snapshot into the app's database (its name as the infraspec gives it,
 * validated as a database name; the server and credentials come from PG*). */
int step_restore_start(Deployment *d) {
        const char *db = d->spec->services.postgres.database;
        _cleanup_strv_free_ char **env = NULL;
        _cleanup_free_ char *dbname = NULL;
        int r;

        r = step_env_new(d, &env);
        if (r >= 0)
                r = step_env_add_database(d, db, &env);
        if (r < 0)
                return deployment_fail(d, "cannot build the database environment: %s", strerror(-r));
        if (asprintf(&dbname, "--dbname=%s", db) < 0)
                return deployment_fail(d, "out of memory");

        deployment_log(d, "restoring %s from %s", db, d->restore_file);
        char *const argv[] = { (char *) "pg_restore", (char *) "--clean", (char *) "--if-exists",
                               (char *) "--no-owner", (char *) "--no-password", (char *) "--single-transaction",
                               dbname, (char *) "--", d->restore_file, NULL };
        return pipeline_run_command(d, argv, env, "/");
}
