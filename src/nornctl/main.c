/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-bus.h>
#include <time.h>
#include <unistd.h>

#include "config-build.h"
#include "macro.h"
#include "manager-bus.h"

static bool arg_user;

static void help(void) {
        printf("%s [OPTIONS...] COMMAND\n\n"
               "Control the Norn deploy daemon.\n\n"
               "Commands:\n"
               "  version        Show client and daemon versions\n"
               "  health         Show the daemon's health; exits 1 when degraded\n"
               "  deploy APP [REF]  Deploy APP at REF (default HEAD) and follow it to the end;\n"
               "                 exits 0 only when deployed\n"
               "  cancel ID      Cancel a queued or running deployment\n"
               "  rollback APP [--to ID] [--restore-db]\n"
               "                 Deploy the image of the last good deployment before the\n"
               "                 current one (or of ID) again; optionally restore the database\n"
               "  snapshots APP  List the database snapshots of APP\n"
               "  restore APP SNAPSHOT  Restore APP's database from SNAPSHOT, then redeploy\n\n"
               "Options:\n"
               "  -h --help      Show this help\n"
               "     --version   Show package version\n"
               "     --user      Talk to nornd on the session bus\n"
               "     --system    Talk to nornd on the system bus (default)\n",
               program_invocation_short_name);
}

/* One clear line on stderr; returns the exit status to use. */
static int fail(const char *fmt, ...) _printf_(1, 2);
static int fail(const char *fmt, ...) {
        va_list ap;

        fprintf(stderr, "%s: ", program_invocation_short_name);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return EXIT_FAILURE;
}

static const char *bus_kind(void) {
        return arg_user ? "session" : "system";
}

static int connect_bus(sd_bus **ret) {
        int r = arg_user ? sd_bus_open_user(ret) : sd_bus_open_system(ret);
        if (r < 0)
                return fail("cannot connect to the %s bus: %s", bus_kind(), strerror(-r));
        return 0;
}

static int fail_call(const sd_bus_error *error, int r) {
        if (sd_bus_error_has_names(error, SD_BUS_ERROR_SERVICE_UNKNOWN, SD_BUS_ERROR_NAME_HAS_NO_OWNER,
                                   SD_BUS_ERROR_NO_REPLY, SD_BUS_ERROR_TIMEOUT))
                return fail("nornd is not reachable on the %s bus (%s): %s", bus_kind(), NORN_BUS_NAME,
                            error->message ?: error->name);
        return fail("%s", error && error->message ? error->message : strerror(-r));
}

static int cmd_version(sd_bus *bus) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_free_ char *version = NULL;
        int r;

        printf("nornctl %s\n", NORN_VERSION);
        r = sd_bus_get_property_string(bus, NORN_BUS_NAME, NORN_BUS_PATH, NORN_BUS_MANAGER_INTERFACE,
                                       "Version", &error, &version);
        if (r < 0)
                return fail_call(&error, r);
        printf("nornd %s\n", version);
        return EXIT_SUCCESS;
}

static int cmd_health(sd_bus *bus) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        const char *status, *name, *detail;
        int up, r;

        r = sd_bus_call_method(bus, NORN_BUS_NAME, NORN_BUS_PATH, NORN_BUS_MANAGER_INTERFACE, "Health",
                               &error, &reply, NULL);
        if (r < 0)
                return fail_call(&error, r);

        r = sd_bus_message_read(reply, "s", &status);
        if (r < 0)
                return fail("malformed reply from nornd: %s", strerror(-r));
        printf("nornd: %s\n", status);

        r = sd_bus_message_enter_container(reply, 'a', "(sbs)");
        if (r < 0)
                return fail("malformed reply from nornd: %s", strerror(-r));
        while ((r = sd_bus_message_read(reply, "(sbs)", &name, &up, &detail)) > 0)
                printf("  %-11s %-5s %s\n", name, up ? "up" : "down", detail);
        if (r < 0)
                return fail("malformed reply from nornd: %s", strerror(-r));

        return streq(status, "ok") ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* --- deploy: queue, then follow the deployment's signals to its end --- */

typedef struct Follow {
        uint64_t id;
        bool done;
        bool deployed;
        bool color;
        bool daemon_gone;
} Follow;

static const char *paint(const Follow *f, const char *code) {
        return f->color ? code : "";
}

static int on_step_changed(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Follow *f = userdata;
        const char *app, *step, *status;
        uint64_t id, duration;

        if (sd_bus_message_read(m, "tssst", &id, &app, &step, &status, &duration) < 0 || id != f->id)
                return 0;
        if (streq(status, "running"))
                printf("%s\u25b6 %s%s\n", paint(f, "\033[1m"), step, paint(f, "\033[0m"));
        else if (streq(status, "succeeded"))
                printf("%s\u2713 %s%s (%.1fs)\n", paint(f, "\033[32m"), step, paint(f, "\033[0m"),
                       (double) duration / 1e6);
        else if (streq(status, "failed"))
                printf("%s\u2717 %s%s (%.1fs)\n", paint(f, "\033[31m"), step, paint(f, "\033[0m"),
                       (double) duration / 1e6);
        else if (streq(status, "skipped"))
                printf("%s- %s skipped%s\n", paint(f, "\033[2m"), step, paint(f, "\033[0m"));
        fflush(stdout);
        return 0;
}

static int on_log_line(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Follow *f = userdata;
        const char *app, *step, *stream, *line;
        uint64_t id;

        if (sd_bus_message_read(m, "tssss", &id, &app, &step, &stream, &line) < 0 || id != f->id)
                return 0;
        printf("    %s%s%s\n", paint(f, "\033[2m"), line, paint(f, "\033[0m"));
        fflush(stdout);
        return 0;
}

static int on_finished(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Follow *f = userdata;
        const char *app, *status, *err;
        uint64_t id;

        if (sd_bus_message_read(m, "tsss", &id, &app, &status, &err) < 0 || id != f->id)
                return 0;
        f->done = true;
        f->deployed = streq(status, "deployed");
        if (f->deployed)
                printf("%sdeployment %" PRIu64 " of %s: deployed%s\n", paint(f, "\033[1;32m"), id, app,
                       paint(f, "\033[0m"));
        else
                printf("%sdeployment %" PRIu64 " of %s: %s%s%s%s\n", paint(f, "\033[1;31m"), id, app, status,
                       *err ? ": " : "", err, paint(f, "\033[0m"));
        return 0;
}

static int on_owner_changed(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Follow *f = userdata;
        const char *name, *old_owner, *new_owner;

        if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) >= 0 && streq(name, NORN_BUS_NAME) &&
            !*new_owner) {
                f->daemon_gone = true;
                f->done = true;
        }
        return 0;
}

static int add_signal_match(sd_bus *bus, const char *member, sd_bus_message_handler_t cb, Follow *f) {
        return sd_bus_match_signal(bus, NULL, NORN_BUS_NAME, NORN_BUS_PATH, NORN_BUS_MANAGER_INTERFACE, member,
                                   cb, f);
}

/* Sends call (Deploy, Rollback, RestoreSnapshot: each answers with the new
 * deployment's path) and follows that deployment to its end. */
static int call_and_follow(sd_bus *bus, sd_bus_message *call, const char *what) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        Follow f = { .color = isatty(STDOUT_FILENO) };
        const char *path;
        int r;

        /* Subscribe first, so no event of the new deployment can be missed. */
        if ((r = add_signal_match(bus, "StepChanged", on_step_changed, &f)) < 0 ||
            (r = add_signal_match(bus, "LogLine", on_log_line, &f)) < 0 ||
            (r = add_signal_match(bus, "DeploymentFinished", on_finished, &f)) < 0 ||
            (r = sd_bus_match_signal(bus, NULL, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                     "org.freedesktop.DBus", "NameOwnerChanged", on_owner_changed, &f)) < 0)
                return fail("cannot subscribe to nornd's signals: %s", strerror(-r));

        r = sd_bus_call(bus, call, 0, &error, &reply);
        if (r < 0)
                return fail_call(&error, r);
        r = sd_bus_message_read(reply, "o", &path);
        if (r < 0 || !strrchr(path, '/') || sscanf(strrchr(path, '/') + 1, "%" SCNu64, &f.id) != 1)
                return fail("malformed reply from nornd");
        printf("deployment %" PRIu64 " (%s) queued\n", f.id, what);
        fflush(stdout);

        while (!f.done) {
                r = sd_bus_process(bus, NULL);
                if (r < 0)
                        return fail("lost the connection to the bus: %s", strerror(-r));
                if (r > 0)
                        continue;
                r = sd_bus_wait(bus, UINT64_MAX);
                if (r < 0 && r != -EINTR)
                        return fail("lost the connection to the bus: %s", strerror(-r));
        }
        if (f.daemon_gone)
                return fail("nornd went away while deployment %" PRIu64 " was running", f.id);
        return f.deployed ? EXIT_SUCCESS : EXIT_FAILURE;
}

static int new_call(sd_bus *bus, const char *method, sd_bus_message **ret) {
        int r = sd_bus_message_new_method_call(bus, ret, NORN_BUS_NAME, NORN_BUS_PATH, NORN_BUS_MANAGER_INTERFACE,
                                               method);
        if (r < 0)
                return fail("cannot build the %s call: %s", method, strerror(-r));
        return 0;
}

static int cmd_deploy(sd_bus *bus, char **args) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL;
        _cleanup_free_ char *what = NULL;
        const char *app = args[0], *ref = args[1] ?: "HEAD";

        if (new_call(bus, "Deploy", &call) != 0 || sd_bus_message_append(call, "ss", app, ref) < 0)
                return EXIT_FAILURE;
        if (asprintf(&what, "deploy of %s at %s", app, ref) < 0)
                return EXIT_FAILURE;
        return call_and_follow(bus, call, what);
}

static int parse_id(const char *s, uint64_t *ret) {
        char *end;

        errno = 0;
        *ret = strtoull(s, &end, 10);
        if (errno != 0 || *end || !*s || s[0] == '-' || *ret == 0)
                return fail("invalid deployment id '%s'", s);
        return 0;
}

static int cmd_rollback(sd_bus *bus, char **args) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL;
        _cleanup_free_ char *what = NULL;
        const char *app = NULL;
        uint64_t to = 0;
        bool restore = false;

        for (char **a = args; *a; a++) {
                if (streq(*a, "--restore-db"))
                        restore = true;
                else if (streq(*a, "--to")) {
                        if (!a[1])
                                return fail("--to needs a deployment id");
                        if (parse_id(*++a, &to) != 0)
                                return EXIT_FAILURE;
                } else if (strncmp(*a, "--to=", 5) == 0) {
                        if (parse_id(*a + 5, &to) != 0)
                                return EXIT_FAILURE;
                } else if (!app)
                        app = *a;
                else
                        return fail("unexpected argument '%s'; see --help", *a);
        }
        if (!app)
                return fail("'rollback' needs an app; see --help");
        if (new_call(bus, "Rollback", &call) != 0 || sd_bus_message_append(call, "stb", app, to, restore) < 0)
                return EXIT_FAILURE;
        if (asprintf(&what, "rollback of %s%s", app, restore ? " with database restore" : "") < 0)
                return EXIT_FAILURE;
        return call_and_follow(bus, call, what);
}

static int cmd_restore(sd_bus *bus, char **args) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL;
        _cleanup_free_ char *what = NULL;

        if (new_call(bus, "RestoreSnapshot", &call) != 0 || sd_bus_message_append(call, "ss", args[0], args[1]) < 0)
                return EXIT_FAILURE;
        if (asprintf(&what, "restore of %s from %s", args[0], args[1]) < 0)
                return EXIT_FAILURE;
        return call_and_follow(bus, call, what);
}

static int cmd_snapshots(sd_bus *bus, char **args) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        const char *database, *file;
        uint64_t id, size, created, deployment;
        int r;

        r = sd_bus_call_method(bus, NORN_BUS_NAME, NORN_BUS_PATH, NORN_BUS_MANAGER_INTERFACE, "ListSnapshots", &error,
                               &reply, "s", args[0]);
        if (r < 0)
                return fail_call(&error, r);
        r = sd_bus_message_enter_container(reply, 'a', "(tssttt)");
        if (r < 0)
                return fail("malformed reply from nornd");
        printf("%-6s %-12s %-10s %-20s %s\n", "ID", "DATABASE", "SIZE", "CREATED (UTC)", "SNAPSHOT (deployment)");
        while ((r = sd_bus_message_read(reply, "(tssttt)", &id, &database, &file, &size, &created, &deployment)) > 0) {
                char when[32] = "";
                time_t t = (time_t) (created / 1000000);
                struct tm tm;

                if (gmtime_r(&t, &tm))
                        strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
                printf("%-6" PRIu64 " %-12s %-10" PRIu64 " %-20s %s (%" PRIu64 ")\n", id, database, size, when, file,
                       deployment);
        }
        return r < 0 ? fail("malformed reply from nornd") : EXIT_SUCCESS;
}

static int cmd_cancel(sd_bus *bus, char **args) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t id;
        int r;

        if (parse_id(args[0], &id) != 0)
                return EXIT_FAILURE;
        r = sd_bus_call_method(bus, NORN_BUS_NAME, NORN_BUS_PATH, NORN_BUS_MANAGER_INTERFACE, "Cancel", &error,
                               NULL, "t", id);
        if (r < 0)
                return fail_call(&error, r);
        printf("deployment %" PRIu64 " cancelled\n", id);
        return EXIT_SUCCESS;
}

static int cmd_version_args(sd_bus *bus, char **args) {
        return cmd_version(bus);
}

static int cmd_health_args(sd_bus *bus, char **args) {
        return cmd_health(bus);
}

static const struct {
        const char *name;
        unsigned min_args, max_args;
        int (*run)(sd_bus *bus, char **args);
} commands[] = {
        { "version", 0, 0, cmd_version_args },
        { "health",  0, 0, cmd_health_args },
        { "deploy",  1, 2, cmd_deploy },
        { "cancel",  1, 1, cmd_cancel },
        { "rollback", 1, 4, cmd_rollback },
        { "snapshots", 1, 1, cmd_snapshots },
        { "restore", 2, 2, cmd_restore },
};

int main(int argc, char *argv[]) {
        enum { ARG_VERSION = 0x100, ARG_USER, ARG_SYSTEM };
        static const struct option options[] = {
                { "help",    no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "user",    no_argument, NULL, ARG_USER },
                { "system",  no_argument, NULL, ARG_SYSTEM },
                {}
        };
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        int c;

        /* "+": options end at the command, so "deploy -x" hands "-x" to nornd
         * (which refuses it as an app name) instead of parsing it here. */
        while ((c = getopt_long(argc, argv, "+h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return EXIT_SUCCESS;
                case ARG_VERSION:
                        printf("nornctl %s\n", NORN_VERSION);
                        return EXIT_SUCCESS;
                case ARG_USER:
                        arg_user = true;
                        break;
                case ARG_SYSTEM:
                        arg_user = false;
                        break;
                case '?':
                        return EXIT_FAILURE;
                default:
                        abort();
                }

        if (optind >= argc)
                return fail("missing command; see --help");

        for (size_t i = 0; i < ELEMENTSOF(commands); i++)
                if (streq(argv[optind], commands[i].name)) {
                        unsigned n = (unsigned) (argc - optind - 1);
                        if (n < commands[i].min_args)
                                return fail("'%s' needs more arguments; see --help", argv[optind]);
                        if (n > commands[i].max_args)
                                return fail("too many arguments for '%s'; see --help", argv[optind]);
                        if (connect_bus(&bus) != 0)
                                return EXIT_FAILURE;
                        return commands[i].run(bus, argv + optind + 1);
                }

        return fail("unknown command '%s'; see --help", argv[optind]);
}
