/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl-bus.h"
#include "ctl-deployment.h"
#include "ctl-output.h"
#include "ctl-progress.h"
#include "manager-bus.h"

/* deploy, rollback and restore queue a deployment and follow it to its end
 * through nornd's signals; cancel stops one. */

typedef struct Follow {
        uint64_t id;            /* 0 until nornd answered */
        Progress progress;
        bool done, deployed, daemon_gone;
        char *app, *status, *error;
} Follow;

static void follow_done(Follow *f) {
        free(f->app);
        free(f->status);
        free(f->error);
}

static int on_step_changed(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Follow *f = userdata;
        const char *app, *step, *status;
        uint64_t id, duration;

        if (sd_bus_message_read(m, "tssst", &id, &app, &step, &status, &duration) < 0 || id != f->id || f->done)
                return 0;
        progress_step(&f->progress, step, status, duration);
        return 0;
}

static int on_log_line(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Follow *f = userdata;
        const char *app, *step, *stream, *line;
        uint64_t id;

        if (sd_bus_message_read(m, "tssss", &id, &app, &step, &stream, &line) < 0 || id != f->id || f->done)
                return 0;
        progress_log(&f->progress, line);
        return 0;
}

static int on_finished(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Follow *f = userdata;
        const char *app, *status, *err;
        uint64_t id;

        if (sd_bus_message_read(m, "tsss", &id, &app, &status, &err) < 0 || id != f->id || f->done)
                return 0;
        f->done = true;
        f->deployed = streq(status, "deployed");
        f->app = ctl_printable(app);
        f->status = ctl_printable(status);
        f->error = ctl_printable(err);
        return 0;
}

static int subscribe(sd_bus *bus, Follow *f) {
        static const struct {
                const char *member;
                sd_bus_message_handler_t handler;
        } signals[] = {
                { "StepChanged", on_step_changed },
                { "LogLine", on_log_line },
                { "DeploymentFinished", on_finished },
        };
        int r;

        for (size_t i = 0; i < ELEMENTSOF(signals); i++) {
                r = ctl_subscribe(bus, signals[i].member, signals[i].handler, f);
                if (r < 0)
                        return r;
        }
        return ctl_watch_nornd_gone(bus, &f->daemon_gone);
}

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig) {
        interrupted = 1;
}

static int wait_until_done(sd_bus *bus, Follow *f) {
        /* Ctrl-C stops following, not the deployment: say how to go on.
         * No SA_RESTART, so the wait returns -EINTR. */
        struct sigaction sa = { .sa_handler = on_sigint }, old;
        int r;

        (void) sigaction(SIGINT, &sa, &old);
        while (!f->done && !f->daemon_gone) {
                if (interrupted) {
                        progress_clear(&f->progress);
                        (void) sigaction(SIGINT, &old, NULL);
                        return ctl_error(-EINTR, "stopped following; deployment %" PRIu64 " goes on "
                                         "(nornctl logs %" PRIu64 " -f, nornctl cancel %" PRIu64 ")",
                                         f->id, f->id, f->id);
                }
                r = sd_bus_process(bus, NULL);
                if (r < 0)
                        return ctl_error(r, "lost the connection to nornd while following deployment %" PRIu64
                                         ": %s", f->id, strerror(-r));
                if (r > 0)
                        continue;
                /* On a terminal, wake up to redraw the elapsed time. */
                r = sd_bus_wait(bus, f->progress.fancy ? 100 * 1000 : UINT64_MAX);
                if (r < 0 && r != -EINTR)
                        return ctl_error(r, "lost the connection to nornd while following deployment %" PRIu64
                                         ": %s", f->id, strerror(-r));
                progress_tick(&f->progress);
        }
        progress_clear(&f->progress);
        (void) sigaction(SIGINT, &old, NULL);
        return 0;
}

/* --json: the finished deployment as `show --json` prints it. */
static int print_final_json(sd_bus *bus, const Follow *f) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(json_decrefp) json_t *j = NULL;
        DeploymentInfo d;
        int r;

        r = ctl_get_deployment(bus, f->id, &reply, &d);
        if (r < 0)
                return r;
        r = deployment_to_json_with_steps(&d, reply, &j);
        if (r < 0)
                return r;
        return ctl_json_print(TAKE_PTR(j));
}

/* Sends call (Deploy, Rollback, RestoreSnapshot: each answers with the new
 * deployment's object path) and, unless --no-follow, follows it. */
static int call_and_follow(sd_bus *bus, sd_bus_message *call, const char *what, const CtlOptions *o) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(follow_done) Follow f = {};
        const char *path, *slash;
        char *end;
        int r;

        progress_init(&f.progress, o->json);
        /* Subscribe first, so no event of the new deployment can be missed. */
        if (!o->no_follow) {
                r = subscribe(bus, &f);
                if (r < 0)
                        return r;
        }

        r = sd_bus_call(bus, call, 0, &error, &reply);
        if (r < 0)
                return ctl_call_error(&error, r);
        r = sd_bus_message_read(reply, "o", &path);
        if (r < 0)
                return ctl_bad_reply(r);
        slash = strrchr(path, '/');
        errno = 0;
        f.id = slash ? strtoull(slash + 1, &end, 10) : 0;
        if (f.id == 0 || errno != 0 || *end)
                return ctl_bad_reply(-EBADMSG);

        if (o->no_follow) {
                if (o->json)
                        return ctl_json_print(json_pack("{s:I, s:s, s:s}", "id", (json_int_t) f.id, "path", path,
                                                        "status", "queued"));
                printf("deployment %" PRIu64 " (%s) queued\n", f.id, what);
                return 0;
        }
        if (!o->json) {
                printf("deployment %" PRIu64 " (%s) queued\n", f.id, what);
                fflush(stdout);
        }

        r = wait_until_done(bus, &f);
        if (r < 0)
                return r;
        if (f.daemon_gone)
                return ctl_error(-ECONNRESET, "nornd went away while deployment %" PRIu64 " was running", f.id);

        if (o->json) {
                r = print_final_json(bus, &f);
                if (r < 0)
                        return r;
        } else if (f.deployed)
                printf("%sdeployment %" PRIu64 " of %s: deployed%s\n", ctl_ansi(ANSI_BOLD_GREEN), f.id,
                       strna(f.app), ctl_ansi(ANSI_NORMAL));
        else
                printf("%sdeployment %" PRIu64 " of %s: %s%s%s%s\n", ctl_ansi(ANSI_BOLD_RED), f.id, strna(f.app),
                       strna(f.status), f.error && *f.error ? ": " : "", f.error ?: "", ctl_ansi(ANSI_NORMAL));
        fflush(stdout);
        /* Exit 0 only when deployed. */
        return f.deployed ? 0 : 1;
}

static int new_call(sd_bus *bus, const char *method, sd_bus_message **ret) {
        int r = sd_bus_message_new_method_call(bus, ret, NORN_BUS_NAME, NORN_BUS_PATH, NORN_BUS_MANAGER_INTERFACE,
                                               method);
        if (r < 0)
                return ctl_error(r, "cannot build the %s call: %s", method, strerror(-r));
        return 0;
}

int ctl_deploy(sd_bus *bus, char **args, const CtlOptions *o) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL;
        _cleanup_free_ char *what = NULL;
        const char *app = args[0], *ref = args[1] ?: "HEAD";
        int r;

        /* app and ref were checked in main.c, before connecting. */
        if ((r = new_call(bus, "Deploy", &call)) < 0)
                return r;
        if ((r = sd_bus_message_append(call, "ss", app, ref)) < 0)
                return ctl_error(r, "cannot build the Deploy call: %s", strerror(-r));
        if (asprintf(&what, "deploy of %s at %s", app, ref) < 0)
                return -ENOMEM;
        return call_and_follow(bus, call, what, o);
}

int ctl_rollback(sd_bus *bus, char **args, const CtlOptions *o) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL;
        _cleanup_free_ char *what = NULL;
        int r;

        if ((r = new_call(bus, "Rollback", &call)) < 0)
                return r;
        if ((r = sd_bus_message_append(call, "stb", args[0], o->to, o->restore_db)) < 0)
                return ctl_error(r, "cannot build the Rollback call: %s", strerror(-r));
        if (asprintf(&what, "rollback of %s%s", args[0], o->restore_db ? " with database restore" : "") < 0)
                return -ENOMEM;
        return call_and_follow(bus, call, what, o);
}

int ctl_restore(sd_bus *bus, char **args, const CtlOptions *o) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL;
        _cleanup_free_ char *what = NULL;
        int r;

        if ((r = new_call(bus, "RestoreSnapshot", &call)) < 0)
                return r;
        if ((r = sd_bus_message_append(call, "ss", args[0], args[1])) < 0)
                return ctl_error(r, "cannot build the RestoreSnapshot call: %s", strerror(-r));
        if (asprintf(&what, "restore of %s from %s", args[0], args[1]) < 0)
                return -ENOMEM;
        return call_and_follow(bus, call, what, o);
}

int ctl_cancel(sd_bus *bus, char **args, const CtlOptions *o) {
        uint64_t id;
        int r;

        r = ctl_parse_id(args[0], &id);
        if (r < 0)
                return r;
        r = ctl_call(bus, "Cancel", NULL, "t", id);
        if (r < 0)
                return r;
        if (o->json)
                return ctl_json_print(json_pack("{s:I, s:b}", "id", (json_int_t) id, "cancelled", 1));
        printf("deployment %" PRIu64 " cancelled\n", id);
        return 0;
}
