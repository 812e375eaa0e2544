/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infraspec.h"
#include "kube.h"
#include "log.h"
#include "manager.h"
#include "pipeline.h"
#include "rollout.h"
#include "step-deploy-cron.h"
#include "step-driver.h"
#include "string-util.h"
#include "utf8.h"

/* The deploy step: set the image of the app's Deployment (container named
 * after the app) and wait for the rollout, as `kubectl rollout status` does.
 *
 * The Deployment is read first: a real API server would add a container that
 * does not exist instead of refusing the patch, so the container is checked
 * here; the image it had is kept to return to. The PATCH carries the
 * resourceVersion read, so a concurrent change is a conflict (409) rather than
 * a lost update: the Deployment is read again and the PATCH retried, a few
 * times. Then the Deployment is polled (GET every POLL_USEC on a timer, never
 * blocking) until the controller observed our generation and every replica is
 * updated and available with the old ones gone; progress goes to the step's
 * log whenever the counts change.
 *
 * A rollout that fails (Progressing: ProgressDeadlineExceeded) or does not
 * complete within NORN_ROLLOUT_TIMEOUT seconds (default 600; see
 * rollout_timeout_usec()) is undone: the previous image is set back the same
 * way (read, PATCH with resourceVersion, 409 retried), its rollout is waited
 * for (bounded by NORN_ROLLOUT_TIMEOUT again) and the outcome logged; the
 * deployment ends failed with an error that says both. A cancel while our
 * image is (or may be) set also sets the previous one back, without waiting.
 *
 * The step's state lives in a DeployRun owned by the poll timer, which is kept
 * in d->defer: deployment_free() releases both, and the request in flight is
 * d->kube. pipeline_cancel() only calls step_deploy_cancel() while a request
 * is in flight, so a cancel that arrives while the timer is armed is noticed
 * when it fires (within POLL_USEC).
 *
 * Cron apps deploy to a systemd timer instead: step-deploy-cron.c. */

typedef enum DeployStage {
        DEPLOY_GET = 1,         /* read the Deployment: container, image, resourceVersion */
        DEPLOY_PATCH,           /* set our image */
        DEPLOY_WAIT,            /* follow its rollout */
        REVERT_GET,             /* the rollout failed: read the Deployment again */
        REVERT_PATCH,           /* set the previous image back */
        REVERT_WAIT,            /* follow that rollout */
} DeployStage;

#define PATCH_ATTEMPTS 3
#define POLL_USEC (500U * 1000U)
#define ERROR_MAX 1024

typedef struct DeployRun {
        Deployment *d;
        char *namespace;        /* as the API server named it */
        char *previous_image;   /* before our PATCH: what a failed rollout returns to */
        unsigned attempts;      /* PATCHes sent in this direction (409 retries) */
        uint64_t timeout_usec;  /* NORN_ROLLOUT_TIMEOUT */
        uint64_t wait_started;  /* CLOCK_MONOTONIC */
        int64_t generation;     /* metadata.generation our last PATCH produced */
        RolloutProgress last;   /* last progress logged */
        bool logged;
        char *poll_error;       /* last transient error logged while polling */
        char *failure;          /* why our rollout failed: the start of the step's error */
        char *revert_failure;   /* why the rollback's rollout did not complete */
} DeployRun;

static void deploy_run_free(void *userdata) {
        DeployRun *c = userdata;

        if (!c)
                return;
        free(c->namespace);
        free(c->previous_image);
        free(c->poll_error);
        free(c->failure);
        free(c->revert_failure);
        free(c);
}

static DeployRun *deploy_run_get(Deployment *d) {
        return d->defer ? sd_event_source_get_userdata(d->defer) : NULL;
}

static bool reverting(const Deployment *d) {
        return d->stage >= REVERT_GET;
}

/* The image the current stage rolls out. */
static const char *target_image(const DeployRun *c) {
        return reverting(c->d) ? c->previous_image : c->d->image_tag;
}

/* The step is over. Nothing may touch c or d afterwards: d may be gone. */
static void deploy_end(Deployment *d, int error) {
        StepRunResult r = { .exit_code = error < 0 ? 1 : 0 };

        d->kube = NULL;         /* finished, or freed by the caller */
        d->defer = sd_event_source_disable_unref(d->defer);
        pipeline_step_continue(d, &r);
}

static int deploy_fail_end(Deployment *d, int error, const char *format, ...) _printf_(3, 4);
static int deploy_fail_end(Deployment *d, int error, const char *format, ...) {
        char buf[ERROR_MAX];
        va_list ap;

        va_start(ap, format);
        vsnprintf(buf, sizeof(buf), format, ap);
        va_end(ap);
        utf8_sanitize(buf);     /* a cut may fall inside a character */
        deployment_fail(d, "%s", buf);
        deploy_end(d, error < 0 ? error : -EIO);
        return error;
}

/* The revert is over (or could not happen): the error says what was tried,
 * then what became of the rollback. */
static void revert_end(DeployRun *c, const char *outcome_format, ...) _printf_(2, 3);
static void revert_end(DeployRun *c, const char *outcome_format, ...) {
        char outcome[ERROR_MAX];
        va_list ap;

        va_start(ap, outcome_format);
        vsnprintf(outcome, sizeof(outcome), outcome_format, ap);
        va_end(ap);
        deployment_log(c->d, "%s", outcome);
        deploy_fail_end(c->d, -EIO, "%s; %s", strna(c->failure), outcome);
}

static int read_deployment(DeployRun *c, DeployStage stage);
static void on_image_set(KubeClient *kc, const KubeResult *result, void *userdata);
static void start_wait(DeployRun *c, DeployStage stage);
static void start_revert(DeployRun *c);

static void set_image(DeployRun *c, DeployStage stage, const KubeDeployment *k) {
        Deployment *d = c->d;
        const char *image = stage == DEPLOY_PATCH ? d->image_tag : c->previous_image;
        int r;

        d->stage = stage;
        c->attempts++;
        if (c->attempts == 1)
                deployment_log(d, "setting image of %s/%s to %s", c->namespace, d->app, image);
        r = kube_set_image(d->manager->kube, c->namespace, d->app, d->app, image, k->resource_version,
                           on_image_set, c, &d->kube);
        if (r < 0) {
                if (stage == DEPLOY_PATCH)
                        deploy_fail_end(d, r, "cannot start the Kubernetes request: %s", strerror(-r));
                else
                        revert_end(c, "rolling back to image %s failed: cannot start the Kubernetes request: %s",
                                   image, strerror(-r));
        }
}

static void on_image_set(KubeClient *kc, const KubeResult *result, void *userdata) {
        DeployRun *c = userdata;
        Deployment *d = c->d;
        bool revert = reverting(d);

        d->kube = NULL;         /* freed by kube.c once we return */

        if (result->error == -ESTALE && c->attempts < PATCH_ATTEMPTS) {
                deployment_log(d, "%s; reading it again (attempt %u of %u)", result->message, c->attempts + 1,
                               PATCH_ATTEMPTS);
                (void) read_deployment(c, revert ? REVERT_GET : DEPLOY_GET);
                return;
        }
        if (result->error < 0) {
                const char *msg = result->message ?: "Kubernetes request failed";
                char tries[64] = "";

                if (result->error == -ESTALE)
                        snprintf(tries, sizeof(tries), " (gave up after %u attempts)", c->attempts);
                if (!revert)
                        deploy_fail_end(d, result->error, "%s%s", msg, tries);
                else
                        revert_end(c, "rolling back to image %s failed: %s%s", c->previous_image, msg, tries);
                return;
        }

        c->generation = result->generation;
        deployment_log(d, "Deployment %s/%s is at generation %" PRIi64 " with image %s", c->namespace, d->app,
                       result->generation, target_image(c));
        start_wait(c, revert ? REVERT_WAIT : DEPLOY_WAIT);
}

static void on_deployment_read(KubeClient *kc, const KubeResult *result, void *userdata) {
        DeployRun *c = userdata;
        Deployment *d = c->d;
        const KubeDeployment *k = result->deployment;
        const KubeContainer *ct;

        d->kube = NULL;

        if (result->error < 0) {
                const char *msg = result->message ?: "Kubernetes request failed";
                if (!reverting(d))
                        deploy_fail_end(d, result->error, "%s", msg);
                else
                        revert_end(c, "rolling back to image %s failed: %s", c->previous_image, msg);
                return;
        }

        if (!c->namespace || !streq(c->namespace, strna(k->namespace))) {
                free(c->namespace);
                c->namespace = strdup(strna(k->namespace));
                if (!c->namespace) {
                        deploy_fail_end(d, -ENOMEM, "out of memory");
                        return;
                }
        }

        ct = rollout_find_container(k, d->app);
        if (!ct || !ct->image) {
                if (!reverting(d))
                        deploy_fail_end(d, -ENOENT, "deployment %s/%s has no container named %s", c->namespace,
                                        d->app, d->app);
                else
                        revert_end(c, "not rolled back: deployment %s/%s no longer has a container named %s",
                                   c->namespace, d->app, d->app);
                return;
        }

        if (!reverting(d)) {
                /* After a conflict, whatever is there now is what we replace. */
                free(c->previous_image);
                c->previous_image = strdup(ct->image);
                if (!c->previous_image) {
                        deploy_fail_end(d, -ENOMEM, "out of memory");
                        return;
                }
                if (c->attempts == 0)
                        deployment_log(d, "deployment %s/%s runs image %s", c->namespace, d->app, ct->image);
                set_image(c, DEPLOY_PATCH, k);
                return;
        }

        /* Undo our change only: if someone set another image meanwhile, it is theirs. */
        if (!streq(ct->image, d->image_tag)) {
                revert_end(c, "not rolled back: deployment %s/%s now has image %s, set by someone else",
                           c->namespace, d->app, ct->image);
                return;
        }
        set_image(c, REVERT_PATCH, k);
}

static int read_deployment(DeployRun *c, DeployStage stage) {
        Deployment *d = c->d;
        int r;

        d->stage = stage;
        r = kube_get_deployment(d->manager->kube, c->namespace, d->app, on_deployment_read, c, &d->kube);
        if (r < 0) {
                if (stage == DEPLOY_GET)
                        return deploy_fail_end(d, r, "cannot start the Kubernetes request: %s", strerror(-r));
                revert_end(c, "rolling back to image %s failed: cannot start the Kubernetes request: %s",
                           c->previous_image, strerror(-r));
                return r;
        }
        return 0;
}

/* ---- following a rollout --------------------------------------------- */

static uint64_t now_usec(Deployment *d) {
        uint64_t t = 0;

        (void) sd_event_now(d->manager->event, CLOCK_MONOTONIC, &t);
        return t;
}

static double elapsed_sec(DeployRun *c) {
        return (double) (now_usec(c->d) - c->wait_started) / 1e6;
}

static void poll_later(DeployRun *c) {
        Deployment *d = c->d;
        int r;

        r = sd_event_source_set_time_relative(d->defer, POLL_USEC);
        if (r >= 0)
                r = sd_event_source_set_enabled(d->defer, SD_EVENT_ONESHOT);
        if (r < 0) {
                /* Cannot happen short of memory; a failure to follow is no
                 * reason to undo a rollout that may be fine. */
                if (!reverting(d))
                        deploy_fail_end(d, r, "cannot follow the rollout of %s: %s", d->image_tag, strerror(-r));
                else
                        revert_end(c, "set image %s back, but cannot follow its rollout: %s", c->previous_image,
                                   strerror(-r));
        }
}

/* Our rollout failed or timed out: c->failure says how. */
static void rollout_failed(DeployRun *c) {
        Deployment *d = c->d;

        if (!reverting(d)) {
                start_revert(c);
                return;
        }
        revert_end(c, "rolled back to image %s, but that rollout did not complete either: %s", c->previous_image,
                   c->revert_failure ?: "out of memory");
}

static void on_rollout_read(KubeClient *kc, const KubeResult *result, void *userdata) {
        DeployRun *c = userdata;
        Deployment *d = c->d;
        const char *image = target_image(c);
        const KubeDeployment *k = result->deployment;
        const KubeContainer *ct;
        char progress[256], cond[512];
        RolloutProgress p;
        RolloutState state;
        bool timed_out;

        d->kube = NULL;
        timed_out = now_usec(d) - c->wait_started >= c->timeout_usec;

        if (result->error < 0) {
                const char *msg = result->message ?: "Kubernetes request failed";

                if (!kube_error_is_transient(result->error)) {
                        if (!reverting(d))
                                deploy_fail_end(d, result->error, "cannot follow the rollout of %s: %s", image, msg);
                        else
                                revert_end(c, "set image %s back, but cannot follow its rollout: %s", image, msg);
                        return;
                }
                if (!streq_ptr(c->poll_error, msg)) {
                        deployment_log(d, "rollout: cannot read its status (%s); trying again", msg);
                        free(c->poll_error);
                        c->poll_error = strdup(msg);
                }
                if (!timed_out) {
                        poll_later(c);
                        return;
                }
                p = c->last;
                snprintf(progress, sizeof(progress), "status unknown: %s", msg);
                state = ROLLOUT_WAITING;
        } else {
                c->poll_error = mfree(c->poll_error);
                ct = rollout_find_container(k, d->app);
                if (!ct || !streq_ptr(ct->image, image)) {
                        /* Someone else changed the Deployment: it is theirs now. */
                        if (!reverting(d))
                                deploy_fail_end(d, -EBUSY, "rollout of %s interrupted: deployment %s/%s now has "
                                                "image %s, set by someone else; not rolled back", image,
                                                c->namespace, d->app, ct ? strna(ct->image) : "(no container)");
                        else
                                revert_end(c, "rollback to image %s interrupted: deployment %s/%s now has image "
                                           "%s, set by someone else", image, c->namespace, d->app,
                                           ct ? strna(ct->image) : "(no container)");
                        return;
                }
                state = rollout_evaluate(k, c->generation, &p);
                rollout_progress_format(&p, progress, sizeof(progress));
                if (!c->logged || !rollout_progress_equal(&p, &c->last)) {
                        deployment_log(d, "%s: %s", reverting(d) ? "rollback rollout" : "rollout", progress);
                        c->last = p;
                        c->logged = true;
                }
        }

        switch (state) {
        case ROLLOUT_COMPLETE:
                if (!reverting(d)) {
                        deployment_log(d, "rollout of %s complete: %s (%.1f s)", image, progress, elapsed_sec(c));
                        deploy_end(d, 0);
                } else
                        revert_end(c, "rolled back to image %s (its rollout completed in %.1f s)", image,
                                   elapsed_sec(c));
                return;

        case ROLLOUT_FAILED:
                rollout_condition_format(k, cond, sizeof(cond));
                if (!reverting(d)) {
                        free(c->failure);
                        c->failure = strdup_printf("rollout of %s did not complete: %s (%s)", image, cond, progress);
                } else {
                        free(c->revert_failure);
                        c->revert_failure = strdup_printf("%s (%s)", cond, progress);
                }
                rollout_failed(c);
                return;

        case ROLLOUT_WAITING:
                if (!timed_out) {
                        poll_later(c);
                        return;
                }
                if (!reverting(d)) {
                        free(c->failure);
                        c->failure = strdup_printf("rollout of %s did not complete within %.0f s "
                                                   "(NORN_ROLLOUT_TIMEOUT): %s", image,
                                                   (double) c->timeout_usec / 1e6, progress);
                } else {
                        free(c->revert_failure);
                        c->revert_failure = strdup_printf("not complete within %.0f s: %s",
                                                          (double) c->timeout_usec / 1e6, progress);
                }
                rollout_failed(c);
                return;
        }
}

static void poll_rollout(DeployRun *c) {
        Deployment *d = c->d;
        int r;

        r = kube_get_deployment(d->manager->kube, c->namespace, d->app, on_rollout_read, c, &d->kube);
        if (r < 0) {
                if (!reverting(d))
                        deploy_fail_end(d, r, "cannot follow the rollout of %s: %s", d->image_tag, strerror(-r));
                else
                        revert_end(c, "set image %s back, but cannot follow its rollout: %s", c->previous_image,
                                   strerror(-r));
        }
}

static int on_poll_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        DeployRun *c = userdata;

        if (c->d->cancel_requested) {
                step_deploy_cancel(c->d);
                return 0;
        }
        poll_rollout(c);
        return 0;
}

static void start_wait(DeployRun *c, DeployStage stage) {
        c->d->stage = stage;
        c->wait_started = now_usec(c->d);
        c->logged = false;
        c->poll_error = mfree(c->poll_error);
        poll_rollout(c);
}

static void start_revert(DeployRun *c) {
        Deployment *d = c->d;

        if (!c->failure) {
                deploy_fail_end(d, -ENOMEM, "out of memory");
                return;
        }
        deployment_log(d, "%s", c->failure);
        if (streq_ptr(c->previous_image, d->image_tag)) {
                deploy_fail_end(d, -EIO, "%s; not rolled back: the deployment had this image before", c->failure);
                return;
        }
        deployment_log(d, "rolling back to image %s", c->previous_image);
        c->attempts = 0;
        (void) read_deployment(c, REVERT_GET);
}

/* ---- the step -------------------------------------------------------- */

int step_deploy_next(Deployment *d, const StepRunResult *prev) {
        Manager *m = d->manager;
        _cleanup_(sd_event_source_unrefp) sd_event_source *timer = NULL;
        DeployRun *c;
        uint64_t timeout;
        int r;

        if (prev)
                return prev->exit_code == 0 ? 0 : -EIO;

        if (d->spec->role == APP_ROLE_CRON)
                return step_deploy_cron_start(d);

        if (rollout_timeout_usec(&timeout) < 0)
                return deployment_fail(d, "NORN_ROLLOUT_TIMEOUT must be a number of seconds from 1 to %u",
                                       ROLLOUT_TIMEOUT_MAX_SEC);

        if (!d->image_tag) {
                r = deployment_image_name(d, &d->image_tag);
                if (r < 0)
                        return deployment_fail(d, "cannot name the image: %s", strerror(-r));
        }

        r = manager_kube_client(m, &d->kube_client_error);
        if (r < 0)
                return deployment_fail(d, "Kubernetes is not configured: %s", strna(d->kube_client_error));

        c = calloc(1, sizeof(*c));
        if (!c)
                return deployment_fail(d, "out of memory");
        *c = (DeployRun) { .d = d, .timeout_usec = timeout };

        /* The poll timer owns the run; it is armed only while waiting. */
        r = sd_event_add_time_relative(m->event, &timer, CLOCK_MONOTONIC, POLL_USEC, 0, on_poll_timer, c);
        if (r < 0) {
                free(c);
                return deployment_fail(d, "cannot set up the rollout timer: %s", strerror(-r));
        }
        (void) sd_event_source_set_destroy_callback(timer, deploy_run_free);
        (void) sd_event_source_set_description(timer, "deploy-rollout");
        r = sd_event_source_set_enabled(timer, SD_EVENT_OFF);
        if (r < 0)
                return deployment_fail(d, "cannot set up the rollout timer: %s", strerror(-r));
        sd_event_source_disable_unref(d->defer);
        d->defer = TAKE_PTR(timer);

        d->stage = DEPLOY_GET;
        r = kube_get_deployment(m->kube, NULL, d->app, on_deployment_read, c, &d->kube);
        if (r < 0) {
                d->defer = sd_event_source_disable_unref(d->defer);
                return deployment_fail(d, "cannot start the Kubernetes request: %s", strerror(-r));
        }
        return 1;
}

/* A cancel after our PATCH was sent: the image may be ours now. Set the
 * previous one back without waiting; the outcome goes to the journal. */
static void on_cancel_revert(KubeClient *kc, const KubeResult *result, void *userdata) {
        const KubeDeployment *k = result->deployment;
        const KubeContainer *ct;

        if (result->error < 0) {
                log_warning("After a cancelled deploy, setting the previous image back failed: %s",
                            strna(result->message));
                return;
        }
        /* The container is named after the app, as is the Deployment. */
        ct = rollout_find_container(k, k->name);
        log_info("After a cancelled deploy, deployment %s/%s is back at image %s (generation %" PRIi64 ").",
                 strna(k->namespace), strna(k->name), ct ? strna(ct->image) : "n/a", result->generation);
}

void step_deploy_cancel(Deployment *d) {
        StepRunResult r = { .exit_code = -1, .cancelled = true };
        DeployRun *c;
        int k;

        /* A cron app: d->defer holds no DeployRun, but the step's deadline. */
        if (d->spec && d->spec->role == APP_ROLE_CRON) {
                step_deploy_cron_cancel(d);
                return;
        }
        c = deploy_run_get(d);
        d->kube = kube_request_cancel(d->kube);

        if (c && c->previous_image && d->image_tag && !streq(c->previous_image, d->image_tag) &&
            d->stage >= DEPLOY_PATCH && d->stage <= REVERT_PATCH) {
                /* Unconditional (no resourceVersion): the cancel wins. */
                k = kube_set_image(d->manager->kube, c->namespace, d->app, d->app, c->previous_image, NULL,
                                   on_cancel_revert, NULL, NULL);
                if (k < 0)
                        deployment_log(d, "cancelled: cannot set image %s back: %s", c->previous_image, strerror(-k));
                else
                        deployment_log(d, "cancelled: setting image %s back (not waiting for its rollout)",
                                       c->previous_image);
        }

        d->defer = sd_event_source_disable_unref(d->defer);
        pipeline_step_continue(d, &r);
}
