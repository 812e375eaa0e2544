/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "bus-introspect.h"
#include "config-build.h"
#include "log.h"
#include "manager-bus.h"
#include "manager.h"

static bool arg_user;

static void help(void) {
        printf("%s [OPTIONS...]\n\n"
               "Norn deploy daemon.\n\n"
               "  -h --help            Show this help\n"
               "     --version         Show package version\n"
               "     --user            Use the session bus and the user's systemd manager\n"
               "     --system          Use the system bus and the system manager (default)\n"
               "     --bus-introspect  Print the D-Bus interface XML and exit\n\n"
               "Configuration is read from the environment: NORN_DATABASE_URL, NORN_APPS_DIR,\n"
               "NORN_REGISTRY_URL, NORN_API_TOKEN, NORN_BIND_ADDR, NORN_PORT, NORN_LOG_LEVEL.\n",
               program_invocation_short_name);
}

static int add_introspection_objects(sd_bus *bus) {
        return manager_bus_add_objects(bus, NULL);
}

static int print_introspection(void) {
        _cleanup_free_ char *xml = NULL;
        int r;

        static const char *const paths[] = { NORN_BUS_PATH, NORN_BUS_PATH "/deployment/1", NULL };

        r = bus_introspect(add_introspection_objects, paths, "org.norn.Norn1.", &xml);
        if (r < 0)
                return log_error_errno(r, "Failed to introspect our vtables: %m");
        fputs(xml, stdout);
        return 0;
}

/* Returns 1 when the daemon should run, 0 when an option was fully handled. */
static int parse_argv(int argc, char *argv[]) {
        enum { ARG_VERSION = 0x100, ARG_USER, ARG_SYSTEM, ARG_BUS_INTROSPECT };
        static const struct option options[] = {
                { "help",           no_argument, NULL, 'h' },
                { "version",        no_argument, NULL, ARG_VERSION },
                { "user",           no_argument, NULL, ARG_USER },
                { "system",         no_argument, NULL, ARG_SYSTEM },
                { "bus-introspect", no_argument, NULL, ARG_BUS_INTROSPECT },
                {}
        };
        int c, r;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("nornd %s\n", NORN_VERSION);
                        return 0;
                case ARG_USER:
                        arg_user = true;
                        break;
                case ARG_SYSTEM:
                        arg_user = false;
                        break;
                case ARG_BUS_INTROSPECT:
                        r = print_introspection();
                        return r < 0 ? r : 0;
                case '?':
                        return -EINVAL;
                default:
                        abort();
                }

        if (optind < argc) {
                log_error("%s takes no arguments.", program_invocation_short_name);
                return -EINVAL;
        }
        return 1;
}

int main(int argc, char *argv[]) {
        _cleanup_(manager_freep) Manager *m = NULL;
        NornConfig config;
        int r;

        /* Command line and configuration errors are for whoever started us. */
        log_setup(LOG_TARGET_STDERR, LOG_INFO);

        r = parse_argv(argc, argv);
        if (r <= 0)
                return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;

        r = config_load(&config, arg_user);
        if (r < 0)
                return EXIT_FAILURE;

        log_setup(LOG_TARGET_AUTO, LOG_INFO);

        r = manager_new(&config, &m);
        config_done(&config);
        if (r < 0)
                return EXIT_FAILURE;

        r = manager_start(m);
        if (r < 0)
                return EXIT_FAILURE;

        /* EXIT_FAILURE after losing the bus: Restart=on-failure starts us again. */
        r = manager_run(m);
        return r < 0 ? EXIT_FAILURE : r;
}
