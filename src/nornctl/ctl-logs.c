/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl-bus.h"
#include "ctl-deployment.h"
#include "ctl-output.h"
#include "manager-bus.h"

/* logs ID [-f]: a deployment's output as nornd reads it from the journal
 * (GetLogs pages through it with a cursor). -f keeps reading until the
 * deployment has ended, woken by nornd's signals for that deployment. */

#define LOGS_PAGE 1000u

typedef struct LogsFollow {
        uint64_t id;
        bool finished, daemon_gone, woken;
} LogsFollow;

static int on_deployment_signal(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        LogsFollow *f = userdata;
        uint64_t id;

        if (sd_bus_message_read(m, "t", &id) < 0 || id != f->id)
                return 0;
        f->woken = true;
        if (streq(sd_bus_message_get_member(m), "DeploymentFinished"))
                f->finished = true;
        return 0;
}

static void print_line(uint64_t realtime, const char *step, const char *message, json_t *list, bool follow_json) {
        char when[40];
        struct tm tm;
        time_t t = (time_t) (realtime / 1000000);

        if (list || follow_json) {
                json_t *j = json_pack("{s:o, s:o, s:o}", "time", ctl_json_time(realtime), "step",
                                      ctl_json_string(step), "message", ctl_json_string(message));
                if (list)
                        json_array_append_new(list, j);
                else if (j) {
                        /* -f --json: one object a line, as they come. */
                        json_dumpf(j, stdout, JSON_COMPACT | JSON_ENSURE_ASCII);
                        fputc('\n', stdout);
                        json_decref(j);
                }
                return;
        }
        if (!gmtime_r(&t, &tm) || strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm) == 0)
                snprintf(when, sizeof(when), "-");
        printf("%s%s.%03u%s %-8s ", ctl_ansi(ANSI_DIM), when, (unsigned) (realtime % 1000000 / 1000),
               ctl_ansi(ANSI_NORMAL), *step ? step : "-");
        ctl_fputs_printable(message, stdout);
        fputc('\n', stdout);
}

/* Reads and prints every line after *cursor; moves *cursor on. Returns the
 * number of lines printed. */
static int drain(sd_bus *bus, uint64_t id, char **cursor, json_t *list, bool follow_json) {
        int total = 0, r;

        for (;;) {
                _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
                const char *step, *message, *next;
                uint64_t realtime;
                unsigned n = 0;

                r = ctl_call(bus, "GetLogs", &reply, "tsu", id, *cursor ?: "", LOGS_PAGE);
                if (r < 0)
                        return r;
                r = sd_bus_message_enter_container(reply, 'a', "(tss)");
                if (r < 0)
                        return ctl_bad_reply(r);
                while ((r = sd_bus_message_read(reply, "(tss)", &realtime, &step, &message)) > 0) {
                        print_line(realtime, step, message, list, follow_json);
                        n++;
                }
                if (r < 0 || (r = sd_bus_message_exit_container(reply)) < 0 ||
                    (r = sd_bus_message_read(reply, "s", &next)) < 0)
                        return ctl_bad_reply(r);
                if (*next) {
                        char *c = strdup(next);
                        if (!c)
                                return -ENOMEM;
                        free(*cursor);
                        *cursor = c;
                }
                total += (int) n;
                fflush(stdout);
                if (n < LOGS_PAGE || !*next)
                        return total;
        }
}

static int subscribe(sd_bus *bus, LogsFollow *f) {
        static const char *const members[] = { "LogLine", "StepChanged", "DeploymentFinished" };
        int r;

        for (size_t i = 0; i < ELEMENTSOF(members); i++) {
                r = ctl_subscribe(bus, members[i], on_deployment_signal, f);
                if (r < 0)
                        return r;
        }
        return ctl_watch_nornd_gone(bus, &f->daemon_gone);
}

/* Waits for a signal of the deployment, at most timeout. */
static int wait_for(sd_bus *bus, LogsFollow *f, uint64_t timeout_usec) {
        struct timespec ts;
        uint64_t now, until;
        int r;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        until = (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000 + timeout_usec;
        f->woken = false;
        for (;;) {
                r = sd_bus_process(bus, NULL);
                if (r < 0)
                        return ctl_error(r, "lost the connection to nornd: %s", strerror(-r));
                if (f->woken || f->daemon_gone)
                        return 0;
                if (r > 0)
                        continue;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                now = (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
                if (now >= until)
                        return 0;
                r = sd_bus_wait(bus, until - now);
                if (r < 0 && r != -EINTR)
                        return ctl_error(r, "lost the connection to nornd: %s", strerror(-r));
        }
}

int ctl_logs(sd_bus *bus, char **args, const CtlOptions *o) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(json_decrefp) json_t *list = NULL;
        _cleanup_free_ char *cursor = NULL;
        LogsFollow f = {};
        DeploymentInfo d;
        int r;

        r = ctl_parse_id(args[0], &f.id);
        if (r < 0)
                return r;
        if (o->follow) {
                /* Subscribe before reading, so the end cannot slip between. */
                r = subscribe(bus, &f);
                if (r < 0)
                        return r;
        }
        /* Also says "no such deployment" clearly, before any line. */
        r = ctl_get_deployment(bus, f.id, &reply, &d);
        if (r < 0)
                return r;
        f.finished = deployment_status_is_final(d.status);

        if (!o->follow) {
                if (o->json && !(list = json_array()))
                        return -ENOMEM;
                r = drain(bus, f.id, &cursor, list, false);
                if (r < 0)
                        return r;
                if (list)
                        return ctl_json_print(json_pack("{s:I, s:O, s:o}", "id", (json_int_t) f.id, "lines", list,
                                                        "cursor", ctl_json_string(cursor)));
                return 0;
        }

        for (;;) {
                bool was_finished = f.finished;

                r = drain(bus, f.id, &cursor, NULL, o->json);
                if (r < 0)
                        return r;
                if (f.daemon_gone)
                        return ctl_error(-ECONNRESET, "nornd went away while following deployment %" PRIu64, f.id);
                if (was_finished) {
                        /* The journal stores the last lines a moment after they
                         * were sent: one more look, then done. */
                        r = wait_for(bus, &f, 300 * 1000);
                        if (r >= 0)
                                r = drain(bus, f.id, &cursor, NULL, o->json);
                        return r < 0 ? r : 0;
                }
                /* Woken by the deployment's signals; a periodic look too, in
                 * case a signal was missed (nornd restarted). */
                r = wait_for(bus, &f, 1000 * 1000);
                if (r < 0)
                        return r;
                if (!f.finished && !f.woken && !f.daemon_gone) {
                        sd_bus_message_unref(TAKE_PTR(reply));
                        r = ctl_get_deployment(bus, f.id, &reply, &d);
                        if (r < 0)
                                return r;
                        f.finished = deployment_status_is_final(d.status);
                }
        }
}
