/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cron-internal.h"
#include "strv.h"
#include "utf8.h"

/* The job of a cron app: its checks, and the command line its service runs. */

bool cron_app_is_valid(const char *app) {
        size_t n;

        if (!app || !((app[0] >= 'a' && app[0] <= 'z') || (app[0] >= '0' && app[0] <= '9')))
                return false;
        n = strspn(app, "abcdefghijklmnopqrstuvwxyz0123456789-");
        return app[n] == 0 && n <= CRON_APP_MAX;
}

int cron_unit_name(const char *app, const char *suffix, char **ret) {
        if (!cron_app_is_valid(app) || !suffix || (!streq(suffix, ".timer") && !streq(suffix, ".service")))
                return -EINVAL;
        return asprintf(ret, CRON_UNIT_PREFIX "%s%s", app, suffix) < 0 ? -ENOMEM : 0;
}

const char *cron_runtime(void) {
        const char *e = getenv("NORN_CRON_RUNTIME");

        return e && *e ? e : "podman";
}

static const char *job_runtime(const CronJob *job) {
        return job->runtime && *job->runtime ? job->runtime : cron_runtime();
}

static bool chars_in(const char *s, const char *extra) {
        for (; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
                      strchr(extra, *s)))
                        return false;
        return true;
}

static int invalid(char **ret_error, const char *format, ...) _printf_(2, 3);
static int invalid(char **ret_error, const char *format, ...) {
        va_list ap;

        if (ret_error) {
                va_start(ap, format);
                if (vasprintf(ret_error, format, ap) < 0)
                        *ret_error = NULL;
                va_end(ap);
        }
        return -EINVAL;
}

int cron_job_validate(const CronJob *job, char **ret_error) {
        const char *runtime;
        size_t n;

        if (!job)
                return -EINVAL;
        if (!cron_app_is_valid(job->app))
                return invalid(ret_error, "app: not a valid app id (^[a-z0-9][a-z0-9-]*$, at most %u characters)",
                               CRON_APP_MAX);
        /* Not starting with '-': it must never be taken for an option of the runtime. */
        if (!job->image || !*job->image || strlen(job->image) > CRON_IMAGE_MAX || !chars_in(job->image, "._/:@+-") ||
            !chars_in((char[]) { job->image[0], 0 }, ""))
                return invalid(ret_error, "image: not a valid image reference");
        n = strv_length(job->oncalendar);
        if (n == 0 || n > CRON_CALENDARS_MAX)
                return invalid(ret_error, "schedule: expected 1 to %u OnCalendar= expressions", CRON_CALENDARS_MAX);
        for (size_t i = 0; i < n; i++)
                if (!*job->oncalendar[i] || strlen(job->oncalendar[i]) > 256 ||
                    !chars_in(job->oncalendar[i], " *-:.,/~"))
                        return invalid(ret_error, "schedule: not a calendar expression");
        if (!job->command || !*job->command)
                return invalid(ret_error, "command: required for cron apps");
        if (strlen(job->command) > CRON_COMMAND_MAX || !utf8_is_valid(job->command))
                return invalid(ret_error, "command: must be valid UTF-8 of at most %u bytes", CRON_COMMAND_MAX);
        if (strv_length(job->env) > CRON_ENV_MAX)
                return invalid(ret_error, "env: more than %u variables", CRON_ENV_MAX);
        for (char *const *e = job->env; e && *e; e++) {
                const char *eq = strchr(*e, '=');
                size_t k = eq ? (size_t) (eq - *e) : 0;

                if (k == 0 || k > 255 || (**e >= '0' && **e <= '9') || strspn(*e, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                                              "abcdefghijklmnopqrstuvwxyz"
                                                                              "0123456789_") != k)
                        return invalid(ret_error, "env: not a NAME=value assignment with a valid name");
                if (!utf8_is_valid(eq + 1) || strlen(eq + 1) > CRON_COMMAND_MAX)
                        return invalid(ret_error, "env: the value of %.*s must be valid UTF-8 of at most %u bytes",
                                       (int) k, *e, CRON_COMMAND_MAX);
        }
        runtime = job_runtime(job);
        if (strlen(runtime) > 255 || runtime[0] == '-' || runtime[0] == '.' ||
            !chars_in(runtime, runtime[0] == '/' ? "._/+-" : "._+-") || strstr(runtime, "/."))
                return invalid(ret_error, "runtime: not an absolute path or a command name");
        if (job->slice && (!*job->slice || strlen(job->slice) > 255 || !chars_in(job->slice, "._-:@")))
                return invalid(ret_error, "slice: not a unit name");
        return 0;
}

int cron_job_argv(const CronJob *job, char ***ret) {
        _cleanup_strv_free_ char **argv = NULL;
        int r;

        if (!job || !ret)
                return -EINVAL;
        r = strv_extend_many(&argv, job_runtime(job), "run", "--rm", NULL);
        for (char *const *e = job->env; r >= 0 && e && *e; e++)
                r = strv_extendf(&argv, "--env=%.*s", (int) strcspn(*e, "="), *e);
        if (r >= 0)
                r = strv_extend_many(&argv, job->image, "sh", "-c", job->command, NULL);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(argv);
        return 0;
}

/* ExecStart= as systemd gets it: each '$' doubled, so that its variable
 * expansion gives back the text as it was. */
int cron_argv_escape(char *const *argv, char ***ret) {
        _cleanup_strv_free_ char **l = calloc(strv_length(argv) + 1, sizeof(char *));

        if (!l)
                return -ENOMEM;
        for (size_t i = 0; argv[i]; i++) {
                size_t n = strlen(argv[i]), k = 0;
                char *s = malloc(2 * n + 1);

                if (!s)
                        return -ENOMEM;
                for (const char *p = argv[i]; *p; p++) {
                        s[k++] = *p;
                        if (*p == '$')
                                s[k++] = '$';
                }
                s[k] = 0;
                l[i] = s;
        }
        *ret = TAKE_PTR(l);
        return 0;
}

/* Changes when anything the units are made of changes (FNV-1a, 64 bits):
 * stored in the service, compared when checking units against records. */
void cron_job_fingerprint(const CronJob *job, char *const *argv, char ret[17]) {
        uint64_t h = UINT64_C(0xcbf29ce484222325);
        char timeout[16];
        const char *parts[] = { "argv", "env", "calendar", "timeout", "slice", "env_file", "user", "inaccessible" };

#define FNV(s) for (const char *_p = (s);; _p++) { h = (h ^ (unsigned char) *_p) * UINT64_C(0x100000001b3); if (!*_p) break; }
        (void) snprintf(timeout, sizeof(timeout), "%u", job->timeout_sec);
        for (size_t i = 0; i < ELEMENTSOF(parts); i++) {
                /* With an env file the values are not the units' (argv has the names):
                 * the fingerprint is public, in LogExtraFields=. */
                char *const *l = i == 0 ? argv : i == 1 ? (job->env_file ? NULL : job->env) :
                                 i == 2 ? job->oncalendar : i == 7 ? job->inaccessible : NULL;

                FNV(parts[i]);
                if (i == 3)
                        FNV(timeout);
                if (i == 4)
                        FNV(job->slice ?: "");
                if (i == 5)
                        FNV(job->env_file ?: "");
                if (i == 6)
                        FNV(job->user ?: "");
                for (; l && *l; l++)
                        FNV(*l);
        }
#undef FNV
        (void) snprintf(ret, 17, "%016" PRIx64, h);
}
