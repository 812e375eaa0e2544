/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "infraspec.h"
#include "manager.h"
#include "pipeline.h"
#include "step-driver.h"
#include "step-env.h"
#include "strv.h"

/* The build step: `<builder> build -t <image> -f <dockerfile> <workdir>`,
 * then push to NORN_REGISTRY_URL, or `minikube image load` when minikube is
 * installed. The image is <registry>/<app>:<sha12> or <app>:<sha12>. */

typedef enum BuildStage {
        BUILD_BUILD = 1,
        BUILD_PUSH,
        BUILD_LOAD,
} BuildStage;

/* "http://host:5000/" -> "host:5000": image names carry no scheme. */
static char *registry_prefix(const char *url) {
        const char *p = strstr(url, "://");
        size_t n;

        p = p ? p + 3 : url;
        n = strlen(p);
        while (n > 0 && p[n - 1] == '/')
                n--;
        return strndup(p, n);
}

int deployment_image_name(Deployment *d, char **ret) {
        const char *registry = d->manager->config.registry_url;
        _cleanup_free_ char *prefix = NULL;

        if (!d->commit_sha || strlen(d->commit_sha) < 12)
                return -EINVAL;
        if (registry) {
                prefix = registry_prefix(registry);
                if (!prefix)
                        return -ENOMEM;
                if (asprintf(ret, "%s/%s:%.12s", prefix, d->app, d->commit_sha) < 0)
                        return -ENOMEM;
        } else if (asprintf(ret, "%s:%.12s", d->app, d->commit_sha) < 0)
                return -ENOMEM;
        return 0;
}

static bool program_in_path(const char *name) {
        const char *path = getenv("PATH") ?: "/usr/bin:/bin";
        _cleanup_free_ char *copy = strdup(path);
        char *save = NULL;

        for (char *dir = copy ? strtok_r(copy, ":", &save) : NULL; dir; dir = strtok_r(NULL, ":", &save)) {
                char p[4096];
                snprintf(p, sizeof(p), "%s/%s", dir, name);
                if (access(p, X_OK) == 0)
                        return true;
        }
        return false;
}

static int run_builder(Deployment *d, BuildStage stage, const char *subcommand, char **args) {
        Manager *m = d->manager;
        _cleanup_strv_free_ char **argv = NULL, **env = NULL;

        if (strv_extend(&argv, m->config.builder) < 0)
                return deployment_fail(d, "out of memory");
        for (char **f = m->config.builder_flags; f && *f; f++)
                if (strv_extend(&argv, *f) < 0)
                        return deployment_fail(d, "out of memory");
        if (strv_extend(&argv, subcommand) < 0)
                return deployment_fail(d, "out of memory");
        for (char **a = args; a && *a; a++)
                if (strv_extend(&argv, *a) < 0)
                        return deployment_fail(d, "out of memory");
        if (step_env_new(d, &env) < 0)
                return deployment_fail(d, "out of memory");

        d->stage = stage;
        return pipeline_run_command(d, argv, env, d->workdir);
}

static int build_start(Deployment *d) {
        Manager *m = d->manager;
        _cleanup_strv_free_ char **args = NULL;
        _cleanup_free_ char *dockerfile = NULL;
        int r;

        /* Validated when the infraspec was read; checked again where it
         * becomes a path, since it decides what file the builder reads. */
        if (!infraspec_dockerfile_is_valid(d->spec->build.dockerfile))
                return deployment_fail(d, "build.dockerfile \"%s\" is not a relative path inside the app",
                                       d->spec->build.dockerfile);
        r = deployment_image_name(d, &d->image_tag);
        if (r < 0)
                return deployment_fail(d, "cannot name the image: %s", strerror(-r));
        if (asprintf(&dockerfile, "%s/%s", d->workdir, d->spec->build.dockerfile) < 0)
                return deployment_fail(d, "out of memory");

        for (char **f = m->config.build_flags; f && *f; f++)
                if (strv_extend(&args, *f) < 0)
                        return deployment_fail(d, "out of memory");
        if (strv_extend_many(&args, "-t", d->image_tag, "-f", dockerfile, "--", d->workdir, NULL) < 0)
                return deployment_fail(d, "out of memory");

        deployment_log(d, "building %s with %s", d->image_tag, m->config.builder);
        return run_builder(d, BUILD_BUILD, "build", args);
}

static int build_publish(Deployment *d) {
        Manager *m = d->manager;
        _cleanup_strv_free_ char **args = NULL;

        if (m->config.registry_url) {
                if (m->config.registry_insecure && !streq(m->config.builder, "docker") &&
                    strv_extend(&args, "--tls-verify=false") < 0)
                        return deployment_fail(d, "out of memory");
                if (strv_extend_many(&args, "--", d->image_tag, NULL) < 0)
                        return deployment_fail(d, "out of memory");
                deployment_log(d, "pushing %s", d->image_tag);
                return run_builder(d, BUILD_PUSH, "push", args);
        }

        if (program_in_path("minikube")) {
                _cleanup_strv_free_ char **env = NULL;
                char *const argv[] = { (char *) "minikube", (char *) "image", (char *) "load", d->image_tag, NULL };

                if (step_env_new(d, &env) < 0)
                        return deployment_fail(d, "out of memory");
                deployment_log(d, "loading %s into minikube", d->image_tag);
                d->stage = BUILD_LOAD;
                return pipeline_run_command(d, argv, env, d->workdir);
        }

        deployment_log(d, "no NORN_REGISTRY_URL and no minikube: %s stays in the local image store",
                       d->image_tag);
        return 0;
}

int step_build_next(Deployment *d, const StepRunResult *prev) {
        int r;

        if (!prev)
                return build_start(d);

        switch ((BuildStage) d->stage) {
        case BUILD_BUILD:
                r = step_command_check(d, prev, "image build");
                return r < 0 ? r : build_publish(d);
        case BUILD_PUSH:
                return step_command_check(d, prev, "image push");
        case BUILD_LOAD:
                return step_command_check(d, prev, "minikube image load");
        default:
                return deployment_fail(d, "internal error: build stage %d", d->stage);
        }
}
