/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "cron-timer.h"
#include "infraspec.h"
#include "kube.h"
#include "log.h"
#include "manager.h"
#include "recovery.h"
#include "rollout.h"
#include "scheduler.h"

/* Start-up reconciliation of deployments a killed nornd left in the deploy
 * step or after it, from what is true rather than a guess:
 *
 *   deploy step succeeded (killed in cleanup)   -> deployed; cleanup is
 *       best-effort and the work dirs go at start-up anyway;
 *   deploy step running, cron app               -> deployed when its timer
 *       record names this deployment (cron_timers: nornd re-creates the
 *       manager's timer from it at start), else failed;
 *   deploy step running, Kubernetes             -> the Deployment is read
 *       again: our image and a complete rollout is deployed; a rollout still
 *       going is followed (every POLL_USEC, up to NORN_ROLLOUT_TIMEOUT); a
 *       failed or timed-out one, or another image, is failed.
 *
 * The record says that nornd restarted meanwhile: in the error of a failed
 * one, in the step's output tail of a deployed one. Rows followed
 * asynchronously are listed in Manager.reconciling, so crash recovery leaves
 * them alone and no new deployment of their app starts before they end. */

#define POLL_USEC (1000U * 1000U)
#define NOTE_MAX 1024

typedef struct Reconcile {
        Manager *manager;
        int64_t id;
        char *app;
        char *image;            /* what the deployment set */
        int64_t rollback_of;
        uint64_t deadline;      /* CLOCK_MONOTONIC */
        KubeRequest *request;
        sd_event_source *timer;
        char *last_error;       /* last transient error reading the Deployment */
        struct Reconcile *next;
} Reconcile;

static Reconcile *reconcile_free(Reconcile *rc) {
        if (!rc)
                return NULL;
        kube_request_cancel(rc->request);
        sd_event_source_disable_unref(rc->timer);
        free(rc->app);
        free(rc->image);
        free(rc->last_error);
        return mfree(rc);
}

void recovery_reconcile_free_all(Manager *m) {
        while (m->reconciling) {
                Reconcile *rc = m->reconciling;

                m->reconciling = rc->next;
                reconcile_free(rc);
        }
}

bool recovery_app_reconciling(Manager *m, const char *app) {
        for (Reconcile *rc = m->reconciling; rc; rc = rc->next)
                if (streq(rc->app, app))
                        return true;
        return false;
}

void recovery_reconciling_ids(Manager *m, FILE *f) {
        for (Reconcile *rc = m->reconciling; rc; rc = rc->next)
                fprintf(f, "%s%" PRIi64, ftell(f) > 1 ? "," : "", rc->id);
}

static void on_recorded(Db *db, const PGresult *res, const char *error, void *userdata) {
        if (!res || PQresultStatus(res) != PGRES_TUPLES_OK)
                log_warning("Failed to record a reconciled deployment: %s", strna(error));
        else if (PQntuples(res) == 1)
                log_notice("Deployment %s of %s reconciled after a restart: %s.", PQgetvalue(res, 0, 0),
                           PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2));
}

/* The deployment's end as found: deployed (note goes to the deploy step's
 * output) or failed (note is the error). Cleanup did not run to its end: the
 * work dirs were removed at start-up. */
static int record(Manager *m, int64_t id, bool deployed, const char *note) {
        char id_s[32];
        const char *params[] = { id_s, deployed ? "deployed" : "failed", note };

        snprintf(id_s, sizeof(id_s), "%" PRIi64, id);
        return db_query(m->db,
                "WITH d AS (UPDATE deployments SET status = $2, finished_at = now(), "
                "                  error = CASE WHEN $2 = 'failed' THEN $3 END "
                "           WHERE id = $1::bigint AND status = 'deploying' RETURNING id, app, rollback_of), "
                "     s AS (UPDATE deployment_steps s SET "
                "                  status = CASE WHEN s.name = 'deploy' AND s.status = 'running' "
                "                                THEN (CASE WHEN $2 = 'deployed' THEN 'succeeded' ELSE 'failed' END) "
                "                                WHEN s.name = 'cleanup' THEN 'succeeded' ELSE s.status END, "
                "                  started_at = coalesce(s.started_at, now()), "
                "                  finished_at = coalesce(CASE WHEN s.status IN ('running', 'pending') "
                "                                         THEN now() END, s.finished_at), "
                "                  duration_ms = CASE WHEN s.status IN ('running', 'pending') THEN "
                "                                (extract(epoch FROM now() - coalesce(s.started_at, now())) "
                "                                 * 1000)::bigint ELSE s.duration_ms END, "
                "                  output_tail = concat_ws(E'\\n', s.output_tail, CASE "
                "                        WHEN s.name = 'deploy' AND s.status = 'running' THEN $3 "
                "                        WHEN s.name = 'cleanup' AND s.status IN ('running', 'pending') THEN "
                "                             'nornd restarted before cleanup ended; the work dir was removed "
                "when it started again' END) "
                "           FROM d WHERE s.deployment_id = d.id AND s.name IN ('deploy', 'cleanup') "
                "             AND s.status IN ('running', 'pending')), "
                "     r AS (UPDATE deployments SET status = 'rolled_back' "
                "           WHERE $2 = 'deployed' AND id = (SELECT rollback_of FROM d) AND status = 'deployed') "
                "SELECT id, app, $2 FROM d",
                3, params, on_recorded, NULL);
}

static void reconcile_end(Reconcile *rc, bool deployed, const char *format, ...) _printf_(3, 4);
static void reconcile_end(Reconcile *rc, bool deployed, const char *format, ...) {
        Manager *m = rc->manager;
        char note[NOTE_MAX];
        va_list ap;
        int r;

        va_start(ap, format);
        vsnprintf(note, sizeof(note), format, ap);
        va_end(ap);

        r = record(m, rc->id, deployed, note);
        if (r < 0)
                /* Left in flight: the next start of nornd reconciles it again. */
                log_warning_errno(r, "Cannot record deployment %" PRIi64 " of %s as %s: %m", rc->id, rc->app,
                                  deployed ? "deployed" : "failed");
        for (Reconcile **p = &m->reconciling; *p; p = &(*p)->next)
                if (*p == rc) {
                        *p = rc->next;
                        break;
                }
        reconcile_free(rc);
        scheduler_kick(m);
}

static int read_rollout(Reconcile *rc);

static int on_poll_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Reconcile *rc = userdata;

        if (read_rollout(rc) < 0)
                reconcile_end(rc, false, "nornd restarted while following the rollout of %s, and cannot read "
                              "deployment %s again", rc->image, rc->app);
        return 0;
}

static void poll_later(Reconcile *rc) {
        int r;

        r = sd_event_source_set_time_relative(rc->timer, POLL_USEC);
        if (r >= 0)
                r = sd_event_source_set_enabled(rc->timer, SD_EVENT_ONESHOT);
        if (r < 0)
                reconcile_end(rc, false, "nornd restarted while following the rollout of %s and cannot follow "
                              "it again: %s", rc->image, strerror(-r));
}

static void on_rollout_read(KubeClient *kc, const KubeResult *result, void *userdata) {
        Reconcile *rc = userdata;
        uint64_t now = 0;
        const KubeContainer *ct;
        RolloutProgress p;
        char progress[256], cond[512];

        rc->request = NULL;
        (void) sd_event_now(rc->manager->event, CLOCK_MONOTONIC, &now);

        if (result->error < 0) {
                const char *msg = result->message ?: "Kubernetes request failed";

                if (!kube_error_is_transient(result->error) || now >= rc->deadline)
                        return reconcile_end(rc, false, "nornd restarted while following the rollout of %s; "
                                             "reading it again failed: %s", rc->image, msg);
                if (!streq_ptr(rc->last_error, msg)) {
                        log_warning("Deployment %" PRIi64 " of %s: cannot read its rollout (%s); trying again.",
                                    rc->id, rc->app, msg);
                        free(rc->last_error);
                        rc->last_error = strdup(msg);
                }
                return poll_later(rc);
        }

        ct = rollout_find_container(result->deployment, rc->app);
        if (!ct || !streq_ptr(ct->image, rc->image))
                return reconcile_end(rc, false, "nornd restarted during the deploy step; deployment %s/%s runs "
                                     "image %s, not %s", strna(result->deployment->namespace), rc->app,
                                     ct ? strna(ct->image) : "(no container of that name)", rc->image);

        switch (rollout_evaluate(result->deployment, 0, &p)) {
        case ROLLOUT_COMPLETE:
                rollout_progress_format(&p, progress, sizeof(progress));
                return reconcile_end(rc, true, "nornd restarted while following the rollout of %s; checked "
                                     "again at start-up: complete (%s)", rc->image, progress);
        case ROLLOUT_FAILED:
                rollout_condition_format(result->deployment, cond, sizeof(cond));
                return reconcile_end(rc, false, "nornd restarted while following the rollout of %s; checked "
                                     "again at start-up: it did not complete: %s (the Deployment still has "
                                     "that image)", rc->image, cond);
        case ROLLOUT_WAITING:
                if (now < rc->deadline)
                        return poll_later(rc);
                rollout_progress_format(&p, progress, sizeof(progress));
                return reconcile_end(rc, false, "nornd restarted while following the rollout of %s; it did not "
                                     "complete within NORN_ROLLOUT_TIMEOUT after the restart: %s (the "
                                     "Deployment still has that image)", rc->image, progress);
        }
}

static int read_rollout(Reconcile *rc) {
        return kube_get_deployment(rc->manager->kube, NULL, rc->app, on_rollout_read, rc, &rc->request);
}

/* A Kubernetes app killed while its deploy step ran: follow its rollout again. */
static void reconcile_kube(Manager *m, int64_t id, const char *app, const char *image, int64_t rollback_of) {
        _cleanup_free_ char *error = NULL;
        uint64_t timeout, now = 0;
        Reconcile *rc;
        int r;

        if (rollout_timeout_usec(&timeout) < 0)
                timeout = ROLLOUT_TIMEOUT_DEFAULT_SEC * 1000000ULL;
        r = manager_kube_client(m, &error);
        if (r < 0) {
                char note[NOTE_MAX];

                snprintf(note, sizeof(note), "nornd restarted while following the rollout of %s, and cannot "
                         "check it: Kubernetes is not configured: %s", image, strna(error));
                (void) record(m, id, false, note);
                return;
        }

        rc = calloc(1, sizeof(*rc));
        if (!rc)
                return (void) log_oom();
        (void) sd_event_now(m->event, CLOCK_MONOTONIC, &now);
        *rc = (Reconcile) { .manager = m, .id = id, .rollback_of = rollback_of, .deadline = now + timeout };
        rc->app = strdup(app);
        rc->image = strdup(image);
        if (!rc->app || !rc->image) {
                reconcile_free(rc);
                return (void) log_oom();
        }
        r = sd_event_add_time_relative(m->event, &rc->timer, CLOCK_MONOTONIC, POLL_USEC, 0, on_poll_timer, rc);
        if (r >= 0)
                r = sd_event_source_set_enabled(rc->timer, SD_EVENT_OFF);
        if (r >= 0)
                r = read_rollout(rc);
        if (r < 0) {
                reconcile_free(rc);
                (void) record(m, id, false, "nornd restarted while following the rollout, and cannot read the "
                              "Deployment again");
                return;
        }
        rc->next = m->reconciling;
        m->reconciling = rc;
        log_notice("Deployment %" PRIi64 " of %s was following the rollout of %s when nornd stopped; checking it "
                   "again.", id, app, image);
}

static bool app_is_cron(Manager *m, const char *app, char **ret_error) {
        _cleanup_free_ char *path = NULL;
        InfraspecDiagnostics diags = {};
        Infraspec *spec = NULL;
        bool cron;

        if (asprintf(&path, "%s/%s/" INFRASPEC_FILE_NAME, m->config.apps_dir, app) < 0)
                return false;
        if (infraspec_load(path, app, &spec, &diags) < 0) {
                infraspec_diagnostics_done(&diags);
                *ret_error = strdup("its infraspec.yaml cannot be read");
                return false;
        }
        infraspec_diagnostics_done(&diags);
        cron = spec->role == APP_ROLE_CRON;
        infraspec_free(spec);
        return cron;
}

static void on_unrecorded_timer_removed(int r, const char *error, void *userdata) {
        _cleanup_free_ char *app = userdata;

        if (r < 0)
                log_warning("Cannot remove the unrecorded timer of %s: %s", app, strna(error));
        else
                log_info("Timer of %s checked against the manager: nothing of a deploy that was never "
                         "recorded is left.", app);
}

/* A first deploy killed before its timer was recorded: units the manager
 * made from requests the killed nornd had already sent would run an image
 * the record does not know, and the restore only re-creates recorded ones. */
static void remove_unrecorded_timer(Manager *m, const char *app) {
        char *a = strdup(app);
        int r;

        if (!a)
                return (void) log_oom();
        r = cron_timers_undeploy(m->cron, app, on_unrecorded_timer_removed, a, NULL);
        if (r < 0) {
                log_warning_errno(r, "Cannot check the timer of %s against the manager: %m", app);
                free(a);
        }
}

typedef struct ReconcileQuery {
        Manager *manager;
        void (*done)(Manager *m);
} ReconcileQuery;

static void on_candidates(Db *db, const PGresult *res, const char *error, void *userdata) {
        ReconcileQuery *q = userdata;
        Manager *m = q->manager;

        if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
                log_warning("Cannot look for deployments to reconcile: %s", strna(error));
                goto finish;
        }
        for (int i = 0; i < PQntuples(res); i++) {
                int64_t id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
                const char *app = PQgetvalue(res, i, 1), *image = PQgetvalue(res, i, 2),
                           *deploy = PQgetvalue(res, i, 4);
                int64_t rollback_of = PQgetisnull(res, i, 3) ? 0 : strtoll(PQgetvalue(res, i, 3), NULL, 10);
                _cleanup_free_ char *why = NULL;
                bool known = false;

                /* The database came back during an earlier pass: followed already. */
                for (Reconcile *rc = m->reconciling; rc; rc = rc->next)
                        known = known || rc->id == id;
                if (known)
                        continue;
                if (streq(deploy, "succeeded")) {
                        (void) record(m, id, true, "nornd restarted after the deploy step succeeded");
                        continue;
                }
                if (PQgetisnull(res, i, 2)) {
                        (void) record(m, id, false, "nornd restarted during the deploy step, before an image "
                                      "was named");
                        continue;
                }
                if (app_is_cron(m, app, &why)) {
                        /* The record is what nornd re-creates the timer from
                         * (cron_timers_restore(), at start). */
                        if (!PQgetisnull(res, i, 5))
                                (void) record(m, id, true, "nornd restarted while setting up the timer; its "
                                              "record names this deployment, so the timer runs this image");
                        else {
                                (void) record(m, id, false, "nornd restarted while setting up the timer, before "
                                              "it was recorded; the timer of the last good deploy stays");
                                if (PQgetisnull(res, i, 6))
                                        remove_unrecorded_timer(m, app);
                        }
                        continue;
                }
                if (why) {
                        char note[NOTE_MAX];

                        snprintf(note, sizeof(note), "nornd restarted during the deploy step; cannot check "
                                 "it: %s", why);
                        (void) record(m, id, false, note);
                        continue;
                }
                reconcile_kube(m, id, app, image, rollback_of);
        }
finish:
        q->done(m);
        free(q);
}

int recovery_reconcile_start(Manager *m, void (*done)(Manager *m)) {
        ReconcileQuery *q;
        int r;

        q = calloc(1, sizeof(*q));
        if (!q)
                return -ENOMEM;
        *q = (ReconcileQuery) { m, done };
        r = db_query(m->db,
                     "SELECT d.id, d.app, d.image_tag, d.rollback_of, s.status, ct.app, "
                     "       (SELECT c2.app FROM cron_timers c2 WHERE c2.app = d.app) "
                     "FROM deployments d JOIN deployment_steps s ON s.deployment_id = d.id AND s.name = 'deploy' "
                     "LEFT JOIN cron_timers ct ON ct.app = d.app AND ct.deployment_id = d.id "
                     "                        AND ct.image = d.image_tag "
                     "WHERE d.status = 'deploying' AND s.status IN ('running', 'succeeded') ORDER BY d.id",
                     0, NULL, on_candidates, q);
        if (r < 0)
                free(q);
        return r;
}
