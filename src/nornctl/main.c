/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-bus.h>
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
               "  health         Show the daemon's health; exits 1 when degraded\n\n"
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

static const struct {
        const char *name;
        int (*run)(sd_bus *bus);
} commands[] = {
        { "version", cmd_version },
        { "health",  cmd_health },
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

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
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
        if (optind + 1 < argc)
                return fail("too many arguments for '%s'; see --help", argv[optind]);

        for (size_t i = 0; i < ELEMENTSOF(commands); i++)
                if (streq(argv[optind], commands[i].name)) {
                        if (connect_bus(&bus) != 0)
                                return EXIT_FAILURE;
                        return commands[i].run(bus);
                }

        return fail("unknown command '%s'; see --help", argv[optind]);
}
