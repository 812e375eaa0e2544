/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "deploy-store.h"
#include "log.h"
#include "manager.h"
#include "recovery.h"

#define USEC_PARAM(buf, v) (snprintf((buf), sizeof(buf), "%" PRIu64, (uint64_t) (v)), (buf))
#define TS(n) "to_timestamp($" #n "::bigint / 1e6)"

uint64_t now_realtime_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000ULL;
}

/* One write of a deployment's record. The params are copied, so the write
 * can wait (and be sent again) whatever happens to the deployment meanwhile;
 * d is NULL once the deployment is freed (only an in-flight write outlives
 * it, freed by its result). */
struct DeployWrite {
        DeployWrite *next;
        Deployment *d;
        char *sql;
        char **params;
        int n_params;
        DeployStoreDone done;
        bool holdable;          /* all but the INSERT: held while the database is away */
        bool in_flight;
};

static DeployWrite *write_free(DeployWrite *w) {
        if (!w)
                return NULL;
        for (int i = 0; i < w->n_params; i++)
                free(w->params[i]);
        free(w->params);
        free(w->sql);
        return mfree(w);
}

static void write_send(Deployment *d);

static void set_held(Deployment *d, bool held) {
        if (d->write_held == held)
                return;
        d->write_held = held;
        if (d->store_held)
                d->store_held(d, held);
}

static void on_result(Db *db, const PGresult *res, const char *error, void *userdata) {
        DeployWrite *w = userdata;
        Deployment *d = w->d;
        DeployStoreDone done;
        int r = 0;

        w->in_flight = false;
        if (!d) {
                write_free(w);
                return;
        }
        assert(d->writes == w);

        if (!res && w->holdable) {
                /* Connection lost: the statement may or may not have been
                 * committed; every write is idempotent, so it is sent again
                 * when the database is back (deploy_store_resume()). */
                log_debug("Recording deployment %" PRIi64 " of %s: %s; held until the database is back.",
                          d->id, d->app, strna(error));
                set_held(d, true);
                return;
        }
        if (!res || (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)) {
                log_warning("Failed to record deployment %" PRIi64 " of %s: %s", d->id, d->app, strna(error));
                r = res ? -EIO : -ENOTCONN;
        } else if (d->id == 0 && PQntuples(res) == 1) {
                /* The INSERT's RETURNING. */
                d->id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
                d->queued_usec = strtoull(PQgetvalue(res, 0, 1), NULL, 10);
        }

        d->writes = w->next;
        done = w->done;
        write_free(w);
        set_held(d, false);
        /* The next write goes out before done() may queue more behind it. */
        write_send(d);
        if (done)
                done(d, r);
}

static void write_send(Deployment *d) {
        DeployWrite *w = d->writes;
        int r;

        if (!w || w->in_flight)
                return;
        r = db_query(d->manager->db, w->sql, w->n_params, (const char *const *) w->params, on_result, w);
        if (r < 0) {
                /* Not connected (or the client's queue is full): wait for the database. */
                log_debug_errno(r, "Recording deployment %" PRIi64 " of %s held: %m", d->id, d->app);
                set_held(d, true);
                return;
        }
        w->in_flight = true;
}

static int store_full(Deployment *d, const char *sql, int n, const char *const *params, DeployStoreDone done,
                      bool holdable) {
        DeployWrite *w, **tail;
        int r;

        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        *w = (DeployWrite) { .d = d, .done = done, .holdable = holdable, .n_params = n };
        w->sql = strdup(sql);
        w->params = calloc((size_t) n + 1, sizeof(char *));
        if (!w->sql || !w->params) {
                write_free(w);
                return -ENOMEM;
        }
        for (int i = 0; i < n; i++)
                if (params[i] && !(w->params[i] = strdup(params[i]))) {
                        write_free(w);
                        return -ENOMEM;
                }

        if (!holdable) {
                /* The INSERT: the caller answers its client now, so no waiting. */
                assert(!d->writes);
                r = db_query(d->manager->db, w->sql, n, (const char *const *) w->params, on_result, w);
                if (r < 0) {
                        write_free(w);
                        return r;
                }
                w->in_flight = true;
                d->writes = w;
                return 0;
        }

        for (tail = &d->writes; *tail; tail = &(*tail)->next)
                ;
        *tail = w;
        if (d->writes == w && !d->write_held)
                write_send(d);
        return 0;
}

static int store(Deployment *d, const char *sql, int n, const char *const *params, DeployStoreDone done) {
        return store_full(d, sql, n, params, done, true);
}

bool deploy_store_pending(const Deployment *d) {
        return d->writes;
}

bool deploy_store_held(const Deployment *d) {
        return d->writes && d->write_held;
}

DeployStoreDone deploy_store_release(Deployment *d) {
        DeployStoreDone done = NULL;

        for (DeployWrite *w = d->writes; w; w = w->next)
                if (w->done) {
                        done = w->done;
                        w->done = NULL;
                        break;
                }
        return done;
}

static void resume_list(Deployment *l) {
        for (Deployment *d = l; d; d = d->next)
                if (d->writes && !d->writes->in_flight)
                        write_send(d);
}

void deploy_store_resume(Manager *m) {
        resume_list(m->deployments);
        resume_list(m->recent);
}

void deploy_store_drop(Deployment *d) {
        while (d->writes) {
                DeployWrite *w = d->writes;

                d->writes = w->next;
                if (w->in_flight) {
                        w->d = NULL;    /* its result frees it */
                        w->next = NULL;
                } else
                        write_free(w);
        }
}

int deploy_store_insert(Deployment *d, DeployStoreDone done) {
        char rollback[32];
        const char *params[] = { d->app, d->ref, d->requested_by,
                                 d->rollback_of > 0 ? USEC_PARAM(rollback, d->rollback_of) : NULL,
                                 d->commit_sha, d->image_tag };

        return store_full(d,
                     "WITH d AS (INSERT INTO deployments (app, ref, requested_by, rollback_of, commit_sha, image_tag) "
                     "           VALUES ($1, $2, $3, $4, $5, $6) RETURNING id, queued_at), "
                     "     s AS (INSERT INTO deployment_steps (deployment_id, name, position) "
                     "           SELECT d.id, n.name, n.pos FROM d, unnest(ARRAY['clone', 'build', 'test', "
                     "           'snapshot', 'migrate', 'deploy', 'cleanup']) WITH ORDINALITY AS n(name, pos)) "
                     "SELECT id, (extract(epoch FROM queued_at) * 1000000)::bigint FROM d",
                     6, params, done, false);
}

int deploy_store_start(Deployment *d, DeployStoreDone done) {
        char id[32], ts[32];
        const char *params[] = { USEC_PARAM(id, d->id), USEC_PARAM(ts, d->started_usec) };

        return store(d, "UPDATE deployments SET status = 'building', step = 'clone', started_at = " TS(2)
                        " WHERE id = $1",
                     2, params, done);
}

int deploy_store_step_begin(Deployment *d, StepId s, DeployStoreDone done) {
        const DeploymentStep *st = &d->steps[s];
        char id[32], ts[32];
        const char *params[] = { USEC_PARAM(id, d->id), deploy_status_to_string(d->status),
                                 step_to_string(s), step_status_to_string(st->status),
                                 USEC_PARAM(ts, st->started_usec ?: now_realtime_usec()) };

        return store(d,
                     "WITH d AS (UPDATE deployments SET status = $2, step = $3 WHERE id = $1) "
                     "UPDATE deployment_steps SET status = $4, "
                     "       started_at = CASE WHEN $4 = 'running' THEN " TS(5) " END "
                     " WHERE deployment_id = $1 AND name = $3",
                     5, params, done);
}

int deploy_store_step_end(Deployment *d, StepId s, DeployStoreDone done) {
        const DeploymentStep *st = &d->steps[s];
        _cleanup_free_ char *tail = output_tail_get(&st->tail);
        char id[32], ts[32], dur[32], code[32];
        const char *params[] = {
                USEC_PARAM(id, d->id), step_to_string(s), step_status_to_string(st->status),
                USEC_PARAM(ts, st->finished_usec),
                USEC_PARAM(dur, (st->finished_usec - st->started_usec) / 1000),
                st->exit_code >= 0 ? (snprintf(code, sizeof(code), "%d", st->exit_code), code) : NULL,
                st->unit, tail, d->commit_sha, d->image_tag, d->source,
        };

        if (!tail)
                return -ENOMEM;
        return store(d,
                     "WITH d AS (UPDATE deployments SET commit_sha = coalesce($9, commit_sha), "
                     "           image_tag = coalesce($10, image_tag), source = coalesce($11, source) "
                     "           WHERE id = $1) "
                     "UPDATE deployment_steps SET status = $3, finished_at = " TS(4) ", duration_ms = $5, "
                     "       exit_code = $6, scope_unit = $7, output_tail = $8 "
                     " WHERE deployment_id = $1 AND name = $2",
                     11, params, done);
}

int deploy_store_finish(Deployment *d, DeployStoreDone done) {
        char id[32], ts[32];
        const char *params[] = { USEC_PARAM(id, d->id), deploy_status_to_string(d->status), d->error,
                                 USEC_PARAM(ts, d->finished_usec) };

        return store(d, "UPDATE deployments SET status = $2, error = $3, finished_at = " TS(4)
                        " WHERE id = $1",
                     4, params, done);
}

int deploy_store_snapshot(Deployment *d, const char *database, const char *file, uint64_t size,
                          DeployStoreDone done) {
        char id[32], sz[32];
        const char *params[] = { d->app, database, file, USEC_PARAM(sz, size), d->commit_sha,
                                 USEC_PARAM(id, d->id) };

        return store(d, "INSERT INTO snapshots (app, database, file, size_bytes, commit_sha, deployment_id) "
                        "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (file) DO NOTHING",
                     6, params, done);
}

typedef struct OrphanQuery {
        Manager *manager;
        void (*done)(Manager *m, int n_failed);
} OrphanQuery;

static void on_orphans(Db *db, const PGresult *res, const char *error, void *userdata) {
        OrphanQuery *q = userdata;
        int n = -EIO;

        if (res && PQresultStatus(res) == PGRES_TUPLES_OK)
                n = PQntuples(res);
        else
                log_warning("Failed to mark interrupted deployments failed: %s", strna(error));
        if (q->done)
                q->done(q->manager, n);
        free(q);
}

int deploy_store_fail_orphans(Manager *m, const char *error, void (*done)(Manager *m, int n_failed)) {
        _cleanup_free_ char *active = NULL;
        size_t size = 0;
        FILE *f;
        OrphanQuery *q;
        int r;

        /* The ids this nornd is still driving, as a Postgres array literal. */
        f = open_memstream(&active, &size);
        if (!f)
                return -ENOMEM;
        fputc('{', f);
        for (Deployment *d = m->deployments; d; d = d->next)
                if (d->id > 0)
                        fprintf(f, "%s%" PRIi64, ftell(f) > 1 ? "," : "", d->id);
        recovery_reconciling_ids(m, f);
        /* Finished in memory, record still being written: ours too. */
        for (Deployment *d = m->recent; d; d = d->next)
                if (d->id > 0 && d->writes)
                        fprintf(f, "%s%" PRIi64, ftell(f) > 1 ? "," : "", d->id);
        fputc('}', f);
        if (fclose(f) != 0)
                return -ENOMEM;

        q = calloc(1, sizeof(*q));
        if (!q)
                return -ENOMEM;
        *q = (OrphanQuery) { m, done };

        const char *params[] = { error, active };
        r = db_query(m->db,
                     "WITH d AS (UPDATE deployments SET status = 'failed', error = $1, finished_at = now() "
                     "           WHERE status NOT IN ('deployed', 'failed', 'rolled_back') "
                     "             AND NOT (id = ANY($2::bigint[])) RETURNING id, app), "
                     "     s AS (UPDATE deployment_steps SET status = 'failed', finished_at = now() "
                     "           WHERE status = 'running' AND deployment_id IN (SELECT id FROM d)) "
                     "SELECT id, app FROM d",
                     2, params, on_orphans, q);
        if (r < 0)
                free(q);
        return r;
}

int deploy_store_mark_rolled_back(Deployment *d) {
        char buf[32];
        const char *params[] = { USEC_PARAM(buf, d->rollback_of) };

        /* After the rollback's own final status, in the same queue. */
        return store(d, "UPDATE deployments SET status = 'rolled_back' WHERE id = $1 AND status = 'deployed'",
                     1, params, NULL);
}
