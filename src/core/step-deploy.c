/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "infraspec.h"
#include "kube.h"
#include "manager.h"
#include "pipeline.h"
#include "step-driver.h"

/* The deploy step: set the image of the app's Deployment (container named
 * after the app). The Deployment is read first: a real API server would add
 * a container that does not exist instead of refusing the patch, so the
 * container is checked here, and the PATCH carries the resourceVersion read,
 * so a concurrent change is a clear conflict rather than a lost update. */

enum { DEPLOY_GET = 1, DEPLOY_PATCH };

static void kube_done(Deployment *d, int error) {
        StepRunResult r = { .exit_code = error < 0 ? 1 : 0 };

        d->kube = NULL;
        pipeline_step_continue(d, &r);
}

static void on_image_set(KubeClient *c, const KubeResult *result, void *userdata) {
        Deployment *d = userdata;

        if (result->error < 0)
                deployment_fail(d, "%s", result->message ?: "Kubernetes request failed");
        else
                deployment_log(d, "Deployment %s is at generation %lld with image %s", d->app,
                               (long long) result->generation, d->image_tag);
        kube_done(d, result->error);
}

static void on_deployment_read(KubeClient *c, const KubeResult *result, void *userdata) {
        Deployment *d = userdata;
        const KubeDeployment *k = result->deployment;
        bool found = false;
        int r;

        if (result->error < 0) {
                deployment_fail(d, "%s", result->message ?: "Kubernetes request failed");
                return kube_done(d, result->error);
        }
        for (size_t i = 0; i < k->n_containers && !found; i++)
                found = streq_ptr(k->containers[i].name, d->app);
        if (!found) {
                deployment_fail(d, "deployment %s/%s has no container named %s", k->namespace, k->name, d->app);
                return kube_done(d, -ENOENT);
        }

        d->stage = DEPLOY_PATCH;
        deployment_log(d, "setting image of %s/%s to %s", k->namespace, k->name, d->image_tag);
        r = kube_set_image(c, k->namespace, d->app, d->app, d->image_tag, k->resource_version, on_image_set, d,
                           &d->kube);
        if (r < 0) {
                deployment_fail(d, "cannot start the Kubernetes request: %s", strerror(-r));
                kube_done(d, r);
        }
}

int step_deploy_next(Deployment *d, const StepRunResult *prev) {
        Manager *m = d->manager;
        int r;

        if (prev)
                return prev->exit_code == 0 ? 0 : -EIO;

        if (d->spec->role == APP_ROLE_CRON)
                return deployment_fail(d, "cron apps deploy to systemd timers, which this nornd does not do yet");

        if (!d->image_tag) {
                r = deployment_image_name(d, &d->image_tag);
                if (r < 0)
                        return deployment_fail(d, "cannot name the image: %s", strerror(-r));
        }

        r = manager_kube_client(m, &d->kube_client_error);
        if (r < 0)
                return deployment_fail(d, "Kubernetes is not configured: %s", strna(d->kube_client_error));

        d->stage = DEPLOY_GET;
        r = kube_get_deployment(m->kube, NULL, d->app, on_deployment_read, d, &d->kube);
        if (r < 0)
                return deployment_fail(d, "cannot start the Kubernetes request: %s", strerror(-r));
        return 1;
}

void step_deploy_cancel(Deployment *d) {
        StepRunResult r = { .exit_code = -1, .cancelled = true };

        d->kube = kube_request_cancel(d->kube);
        pipeline_step_continue(d, &r);
}
