/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <systemd/sd-id128.h>

#include "bus-introspect.h"
#include "macro.h"

typedef struct IntrospectReply {
        bool done;
        int error;
        char *xml;
} IntrospectReply;

static int on_introspect_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        IntrospectReply *reply = userdata;
        const char *xml;
        int r;

        reply->done = true;
        if (sd_bus_message_is_method_error(m, NULL)) {
                reply->error = -sd_bus_message_get_errno(m) ?: -EIO;
                return 0;
        }
        r = sd_bus_message_read(m, "s", &xml);
        if (r < 0) {
                reply->error = r;
                return 0;
        }
        reply->xml = strdup(xml);
        reply->error = reply->xml ? 0 : -ENOMEM;
        return 0;
}

/* Keep only <interface name="prefix..."> ... </interface> blocks. */
static int filter_interfaces(const char *xml, const char *prefix, char **ret) {
        _cleanup_free_ char *needle = NULL;
        char *buf = NULL;
        size_t size = 0;
        FILE *f;

        if (asprintf(&needle, "<interface name=\"%s", prefix) < 0)
                return -ENOMEM;
        f = open_memstream(&buf, &size);
        if (!f)
                return -ENOMEM;

        fputs("<!DOCTYPE node PUBLIC \"-//freedesktop//DTD D-BUS Object Introspection 1.0//EN\"\n"
              "\"http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd\">\n<node>\n", f);
        for (const char *p = strstr(xml, needle); p; p = strstr(p, needle)) {
                const char *end = strstr(p, "</interface>");
                if (!end)
                        break;
                end += strlen("</interface>");
                fprintf(f, " %.*s\n", (int) (end - p), p);
                p = end;
        }
        fputs("</node>\n", f);
        if (fclose(f) != 0) {
                free(buf);
                return -ENOMEM;
        }
        *ret = buf;
        return 0;
}

static int introspect_path(sd_bus *server, sd_bus *client, const char *path, char **ret_xml) {
        _cleanup_(sd_bus_slot_unrefp) sd_bus_slot *slot = NULL;
        IntrospectReply reply = {};
        int r;

        r = sd_bus_call_method_async(client, &slot, NULL, path, "org.freedesktop.DBus.Introspectable",
                                     "Introspect", on_introspect_reply, &reply, NULL);
        if (r < 0)
                return r;

        while (!reply.done) {
                int a = sd_bus_process(server, NULL), b = sd_bus_process(client, NULL);
                if (a < 0)
                        return a;
                if (b < 0)
                        return b;
                if (a == 0 && b == 0) {
                        struct pollfd p[2] = {
                                { .fd = sd_bus_get_fd(server), .events = (short) sd_bus_get_events(server) },
                                { .fd = sd_bus_get_fd(client), .events = (short) sd_bus_get_events(client) },
                        };
                        if (poll(p, 2, 5000) == 0)
                                return -ETIMEDOUT;
                }
        }
        if (reply.error < 0)
                return reply.error;
        *ret_xml = reply.xml;
        return 0;
}

int bus_introspect(int (*add_objects)(sd_bus *bus), const char *const *paths, const char *prefix,
                   char **ret_xml) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *server = NULL, *client = NULL;
        _cleanup_free_ char *all = NULL;
        sd_id128_t id;
        int fds[2], r;

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds) < 0)
                return -errno;

        if ((r = sd_bus_new(&server)) < 0 || (r = sd_bus_new(&client)) < 0) {
                safe_close(fds[0]);
                safe_close(fds[1]);
                return r;
        }
        r = sd_bus_set_fd(server, fds[0], fds[0]);
        if (r < 0) {
                safe_close(fds[0]);
                safe_close(fds[1]);
                return r;
        }
        r = sd_bus_set_fd(client, fds[1], fds[1]);
        if (r < 0) {
                safe_close(fds[1]);
                return r;
        }

        if ((r = sd_id128_randomize(&id)) < 0 ||
            (r = sd_bus_set_server(server, 1, id)) < 0 ||
            (r = add_objects(server)) < 0 ||
            (r = sd_bus_start(server)) < 0 ||
            (r = sd_bus_start(client)) < 0)
                return r;

        for (const char *const *p = paths; *p; p++) {
                _cleanup_free_ char *xml = NULL;

                r = introspect_path(server, client, *p, &xml);
                if (r < 0)
                        return r;
                if (!all)
                        all = TAKE_PTR(xml);
                else {
                        /* Concatenated documents: filter_interfaces() picks
                         * the interface blocks out of all of them. */
                        char *joined;
                        if (asprintf(&joined, "%s%s", all, xml) < 0)
                                return -ENOMEM;
                        free(all);
                        all = joined;
                }
        }

        return filter_interfaces(all, prefix, ret_xml);
}
