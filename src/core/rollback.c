/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deployment.h"
#include "infraspec.h"
#include "log.h"
#include "manager.h"
#include "rollback.h"

typedef struct RollbackRequest {
        Manager *manager;
        Deployment *deployment;  /* prepared, not yet queued */
        int64_t to_id;
        bool restore_db;
        SchedulerDone done;
        void *userdata;
} RollbackRequest;

static void request_fail(RollbackRequest *q, int r, const char *format, ...) _printf_(3, 4);
static void request_fail(RollbackRequest *q, int r, const char *format, ...) {
        _cleanup_free_ char *msg = NULL;
        va_list ap;

        va_start(ap, format);
        if (vasprintf(&msg, format, ap) < 0)
                msg = NULL;
        va_end(ap);
        q->done(NULL, r, msg ?: "out of memory", q->userdata);
}

static void on_candidates(Db *db, const PGresult *res, const char *error, void *userdata) {
        RollbackRequest *q = userdata;
        Deployment *d = q->deployment;
        _cleanup_free_ char *why = NULL;
        int r;

        if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
                request_fail(q, -ENOTCONN, "cannot look up deployments of %s: %s", d->app, strna(error));
                goto finish;
        }
        if (PQntuples(res) == 0) {
                request_fail(q, -ENODATA, "nothing to roll back: %s has no successful deployment", d->app);
                goto finish;
        }
        if (PQgetisnull(res, 0, 1)) {
                if (q->to_id > 0)
                        request_fail(q, -ENOENT, "deployment %" PRIi64 " is not an earlier successful deployment "
                                                 "of %s with another image", q->to_id, d->app);
                else
                        request_fail(q, -ENODATA, "nothing to roll back to: %s has no earlier successful "
                                                 "deployment with another image", d->app);
                goto finish;
        }
        if (q->restore_db && PQgetisnull(res, 0, 4)) {
                request_fail(q, -ENOENT, "no snapshot of %s was taken after deployment %s: nothing to restore",
                             d->app, PQgetvalue(res, 0, 1));
                goto finish;
        }
        /* Checked again now: a deploy may have been queued meanwhile. */
        if (scheduler_app_busy(q->manager, d->app)) {
                request_fail(q, -EBUSY, "a deployment of %s is queued or running; roll back when it has ended",
                             d->app);
                goto finish;
        }

        d->rollback_of = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        d->prebuilt = true;
        free(d->ref);
        d->ref = strdup(PQgetvalue(res, 0, 2));
        d->commit_sha = strdup(PQgetvalue(res, 0, 2));
        d->image_tag = strdup(PQgetvalue(res, 0, 3));
        if (q->restore_db)
                d->restore_file = strdup(PQgetvalue(res, 0, 4));
        if (!d->ref || !d->commit_sha || !d->image_tag || (q->restore_db && !d->restore_file)) {
                request_fail(q, -ENOMEM, "out of memory");
                goto finish;
        }
        log_info("Rolling %s back from deployment %" PRIi64 " to deployment %s (%s)%s.", d->app, d->rollback_of,
                 PQgetvalue(res, 0, 1), d->image_tag, q->restore_db ? " with a database restore" : "");

        r = scheduler_enqueue(q->manager, d, q->done, q->userdata, &why);
        if (r < 0) {
                request_fail(q, r, "%s", why ?: strerror(-r));
                goto finish;
        }
        q->deployment = NULL; /* the scheduler has it */
finish:
        deployment_free(q->deployment);
        free(q);
}

/* What to roll back to is read from rows start-up recovery may still change:
 * refused, clearly, until it has ended (a deploy waits for it instead). */
static int refuse_while_recovering(Manager *m, char **ret_error) {
        if (m->recovered)
                return 0;
        *ret_error = strdup("nornd is still recovering the deployments its previous run left unfinished; "
                            "try again in a moment");
        return -ENOTCONN;
}

int rollback_submit(Manager *m, const char *app, int64_t to_id, bool restore_db, const char *requested_by,
                    SchedulerDone done, void *userdata, char **ret_error) {
        _cleanup_(deployment_freep) Deployment *d = NULL;
        RollbackRequest *q;
        char to[32];
        int r;

        if (to_id < 0) {
                *ret_error = strdup("invalid deployment id");
                return -EINVAL;
        }
        r = scheduler_prepare(m, app, "HEAD", requested_by, &d, ret_error);
        if (r < 0)
                return r;
        if (scheduler_app_busy(m, app)) {
                if (asprintf(ret_error, "a deployment of %s is queued or running; roll back when it has ended",
                             app) < 0)
                        *ret_error = NULL;
                return -EBUSY;
        }
        r = refuse_while_recovering(m, ret_error);
        if (r < 0)
                return r;
        if (restore_db && !d->spec->services.postgres.present) {
                if (asprintf(ret_error, "%s has no services.postgres database to restore", app) < 0)
                        *ret_error = NULL;
                return -EINVAL;
        }

        q = calloc(1, sizeof(*q));
        if (!q)
                return -ENOMEM;
        *q = (RollbackRequest) { m, d, to_id, restore_db, done, userdata };

        /* current: the newest deployed; target: the newest deployed before it
         * with another image (or the one asked for); snapshot: the first one
         * taken after the target, i.e. the database as the target left it. */
        snprintf(to, sizeof(to), "%" PRIi64, to_id);
        const char *params[] = { app, to };
        r = db_query(m->db,
                     "WITH cur AS (SELECT id, image_tag FROM deployments WHERE app = $1 AND status = 'deployed' "
                     "             ORDER BY id DESC LIMIT 1), "
                     "     tgt AS (SELECT d.id, d.commit_sha, d.image_tag FROM deployments d, cur "
                     "             WHERE d.app = $1 AND d.status = 'deployed' AND d.id < cur.id "
                     "               AND d.image_tag IS NOT NULL AND d.image_tag IS DISTINCT FROM cur.image_tag "
                     "               AND ($2::bigint = 0 OR d.id = $2::bigint) "
                     "             ORDER BY d.id DESC LIMIT 1) "
                     "SELECT cur.id, tgt.id, tgt.commit_sha, tgt.image_tag, "
                     "       (SELECT s.file FROM snapshots s WHERE s.app = $1 AND s.deployment_id > tgt.id "
                     "        ORDER BY s.deployment_id, s.id LIMIT 1) "
                     "FROM cur LEFT JOIN tgt ON true",
                     2, params, on_candidates, q);
        if (r < 0) {
                free(q);
                *ret_error = strdup("the database is unavailable");
                return r;
        }
        TAKE_PTR(d);
        return 0;
}

static bool snapshot_name_is_valid(const char *s) {
        size_t n = strlen(s);
        return n > 0 && n <= 255 && s[0] != '.' && s[0] != '-' &&
               strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

static void on_snapshot_found(Db *db, const PGresult *res, const char *error, void *userdata) {
        RollbackRequest *q = userdata;
        Deployment *d = q->deployment;
        _cleanup_free_ char *why = NULL;
        int r;

        if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
                request_fail(q, -ENOTCONN, "cannot look up snapshots of %s: %s", d->app, strna(error));
                goto finish;
        }
        if (PQntuples(res) == 0) {
                request_fail(q, -ENOENT, "no snapshot named %s for %s", d->ref, d->app);
                goto finish;
        }
        if (PQgetisnull(res, 0, 2)) {
                request_fail(q, -ENOENT, "%s has no successful deployment to run after the restore", d->app);
                goto finish;
        }
        if (scheduler_app_busy(q->manager, d->app)) {
                request_fail(q, -EBUSY, "a deployment of %s is queued or running; restore when it has ended",
                             d->app);
                goto finish;
        }

        d->prebuilt = true;
        d->restore_file = strdup(PQgetvalue(res, 0, 0));
        free(d->ref);
        d->ref = strdup(PQgetvalue(res, 0, 1));
        d->commit_sha = strdup(PQgetvalue(res, 0, 1));
        d->image_tag = strdup(PQgetvalue(res, 0, 2));
        if (!d->restore_file || !d->ref || !d->commit_sha || !d->image_tag) {
                request_fail(q, -ENOMEM, "out of memory");
                goto finish;
        }
        log_info("Restoring %s from %s, then redeploying %s.", d->app, d->restore_file, d->image_tag);

        r = scheduler_enqueue(q->manager, d, q->done, q->userdata, &why);
        if (r < 0) {
                request_fail(q, r, "%s", why ?: strerror(-r));
                goto finish;
        }
        q->deployment = NULL;
finish:
        deployment_free(q->deployment);
        free(q);
}

int restore_submit(Manager *m, const char *app, const char *snapshot, const char *requested_by,
                   SchedulerDone done, void *userdata, char **ret_error) {
        _cleanup_(deployment_freep) Deployment *d = NULL;
        RollbackRequest *q;
        int r;

        if (!snapshot_name_is_valid(snapshot)) {
                *ret_error = strdup("invalid snapshot name: expected the file name nornctl snapshots shows");
                return -EINVAL;
        }
        r = scheduler_prepare(m, app, "HEAD", requested_by, &d, ret_error);
        if (r < 0)
                return r;
        if (scheduler_app_busy(m, app)) {
                if (asprintf(ret_error, "a deployment of %s is queued or running; restore when it has ended",
                             app) < 0)
                        *ret_error = NULL;
                return -EBUSY;
        }
        r = refuse_while_recovering(m, ret_error);
        if (r < 0)
                return r;
        if (!d->spec->services.postgres.present) {
                if (asprintf(ret_error, "%s has no services.postgres database to restore", app) < 0)
                        *ret_error = NULL;
                return -EINVAL;
        }
        free(d->ref);
        d->ref = strdup(snapshot); /* for messages until the row is made */
        if (!d->ref)
                return -ENOMEM;

        q = calloc(1, sizeof(*q));
        if (!q)
                return -ENOMEM;
        *q = (RollbackRequest) { .manager = m, .deployment = d, .done = done, .userdata = userdata };

        /* Matched by file name, never turned into a path: only files nornd
         * recorded can be restored. */
        const char *params[] = { app, snapshot };
        r = db_query(m->db,
                     "SELECT s.file, cur.commit_sha, cur.image_tag FROM snapshots s "
                     "LEFT JOIN LATERAL (SELECT commit_sha, image_tag FROM deployments "
                     "                   WHERE app = $1 AND status = 'deployed' ORDER BY id DESC LIMIT 1) cur ON true "
                     "WHERE s.app = $1 AND regexp_replace(s.file, '^.*/', '') = $2",
                     2, params, on_snapshot_found, q);
        if (r < 0) {
                free(q);
                *ret_error = strdup("the database is unavailable");
                return r;
        }
        TAKE_PTR(d);
        return 0;
}
