/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A stand-in for polkitd on the sandbox's session bus, for tests of nornd's
 * authorization: it owns org.freedesktop.PolicyKit1, answers every
 * CheckAuthorization with the decision given on the command line and
 * appends what it was asked to a file, one line per call:
 *
 *     <action id> <subject kind> <subject name> <flags>
 *
 * Usage: fake-polkit yes|no|challenge RECORD-FILE
 * Not polkit: it decides nothing, and says so in its name. */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

static const char *answer;
static const char *record;

static int method_check(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        const char *kind, *key, *name = "", *action, *cancel;
        uint32_t flags;
        FILE *f;
        int r;

        r = sd_bus_message_enter_container(m, 'r', "sa{sv}");
        if (r < 0)
                return r;
        r = sd_bus_message_read(m, "s", &kind);
        if (r < 0)
                return r;
        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                r = sd_bus_message_read(m, "s", &key);
                if (r < 0)
                        return r;
                if (strcmp(key, "name") == 0)
                        r = sd_bus_message_read(m, "v", "s", &name);
                else
                        r = sd_bus_message_skip(m, "v");
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        if ((r = sd_bus_message_exit_container(m)) < 0 || (r = sd_bus_message_exit_container(m)) < 0)
                return r;
        r = sd_bus_message_read(m, "s", &action);
        if (r < 0)
                return r;
        r = sd_bus_message_skip(m, "a{ss}");
        if (r < 0)
                return r;
        r = sd_bus_message_read(m, "us", &flags, &cancel);
        if (r < 0)
                return r;

        f = fopen(record, "ae");
        if (f) {
                fprintf(f, "%s %s %s %" PRIu32 "\n", action, kind, name, flags);
                fclose(f);
        }
        return sd_bus_reply_method_return(m, "(bba{ss})", strcmp(answer, "yes") == 0,
                                          strcmp(answer, "challenge") == 0, 0);
}

static const sd_bus_vtable vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD("CheckAuthorization", "(sa{sv})sa{ss}us", "(bba{ss})", method_check,
                      SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END,
};

int main(int argc, char *argv[]) {
        sd_event *event = NULL;
        sd_bus *bus = NULL;
        int r;

        if (argc != 3 || (strcmp(argv[1], "yes") && strcmp(argv[1], "no") && strcmp(argv[1], "challenge"))) {
                fprintf(stderr, "usage: fake-polkit yes|no|challenge RECORD-FILE\n");
                return 2;
        }
        answer = argv[1];
        record = argv[2];

        r = sd_event_default(&event);
        if (r >= 0)
                r = sd_bus_open_user(&bus);
        if (r >= 0)
                r = sd_bus_add_object_vtable(bus, NULL, "/org/freedesktop/PolicyKit1/Authority",
                                             "org.freedesktop.PolicyKit1.Authority", vtable, NULL);
        if (r >= 0)
                r = sd_bus_request_name(bus, "org.freedesktop.PolicyKit1", 0);
        if (r >= 0)
                r = sd_bus_attach_event(bus, event, 0);
        if (r >= 0)
                r = sd_event_set_signal_exit(event, true);
        if (r >= 0) {
                printf("ready\n");
                fflush(stdout);
                r = sd_event_loop(event);
        }
        if (r < 0)
                fprintf(stderr, "fake-polkit: %s\n", strerror(-r));
        sd_bus_flush_close_unref(bus);
        sd_event_unref(event);
        return r < 0 ? 1 : 0;
}
