/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bus-calls — D-Bus call latency for tools/bench-api, on one connection to
 * the user bus (no process start per call, so the figure is nornd's).
 *
 *   bus-calls get ID_LO ID_HI COUNT     GetDeployment(id), ids spread over [ID_LO, ID_HI]
 *   bus-calls list APP LIMIT COUNT      ListDeployments(APP, "", LIMIT)
 *
 * Prints one line per call: its latency in µs (CLOCK_MONOTONIC); exits 1 on
 * the first failed call. Not installed.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-bus.h>
#include <time.h>

static int64_t now_us(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int call(sd_bus *bus, const char *mode, const char *app, uint64_t id, uint32_t limit) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        int r;

        if (strcmp(mode, "get") == 0)
                r = sd_bus_call_method(bus, "org.norn.Norn1", "/org/norn/Norn1", "org.norn.Norn1.Manager",
                                       "GetDeployment", &error, &reply, "t", id);
        else
                r = sd_bus_call_method(bus, "org.norn.Norn1", "/org/norn/Norn1", "org.norn.Norn1.Manager",
                                       "ListDeployments", &error, &reply, "ssu", app, "", limit);
        if (r < 0)
                fprintf(stderr, "bus-calls: %s: %s\n", mode, error.message ?: strerror(-r));
        sd_bus_error_free(&error);
        sd_bus_message_unref(reply);
        return r;
}

int main(int argc, char *argv[]) {
        sd_bus *bus = NULL;
        uint64_t lo = 0, hi = 0, seed = 88172645463325252ULL;
        unsigned long count;
        const char *app = NULL;
        uint32_t limit = 0;
        int r;

        if (argc != 5 || (strcmp(argv[1], "get") != 0 && strcmp(argv[1], "list") != 0)) {
                fprintf(stderr, "usage: bus-calls get ID_LO ID_HI COUNT | bus-calls list APP LIMIT COUNT\n");
                return 2;
        }
        if (strcmp(argv[1], "get") == 0) {
                lo = strtoull(argv[2], NULL, 10);
                hi = strtoull(argv[3], NULL, 10);
                if (hi < lo)
                        return 2;
        } else {
                app = argv[2];
                limit = (uint32_t) strtoul(argv[3], NULL, 10);
        }
        count = strtoul(argv[4], NULL, 10);

        r = sd_bus_open_user(&bus);
        if (r < 0) {
                fprintf(stderr, "bus-calls: cannot connect to the user bus: %s\n", strerror(-r));
                return 1;
        }
        for (unsigned long i = 0; i < count; i++) {
                int64_t t;

                /* xorshift: ids spread over the range, the same in every run */
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                t = now_us();
                r = call(bus, argv[1], app, lo + seed % (hi - lo + 1), limit);
                if (r < 0)
                        break;
                printf("%" PRId64 "\n", now_us() - t);
        }
        sd_bus_flush_close_unref(bus);
        return r < 0 ? 1 : 0;
}
