/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl-bus.h"
#include "ctl-output.h"
#include "deploy-state.h"
#include "infraspec.h"
#include "manager-bus.h"
#include "step-driver.h"
#include "utf8.h"

/* Where we are talking to, for error messages. */
static char where[320] = "the system bus";

int ctl_error(int r, const char *fmt, ...) {
        va_list ap;

        fflush(stdout);
        fprintf(stderr, "%s: ", program_invocation_short_name);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return r < 0 ? r : -EINVAL;
}

bool ctl_host_is_valid(const char *host) {
        const char *at, *name, *colon;
        size_t n;

        if (!host || !*host || strlen(host) > 253 + 1 + 64 + 6)
                return false;
        /* A leading '-' would make ssh read an option (-oProxyCommand=...). */
        if (host[0] == '-')
                return false;

        at = strchr(host, '@');
        if (at) {
                n = (size_t) (at - host);
                if (n == 0 || n > 64 || strspn(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                     "0123456789._-") != n || host[0] == '-')
                        return false;
                name = at + 1;
        } else
                name = host;

        if (name[0] == '[') {   /* [IPv6]:port */
                const char *close = strchr(name, ']');
                if (!close || close == name + 1 ||
                    strspn(name + 1, "0123456789abcdefABCDEF:.") != (size_t) (close - name - 1))
                        return false;
                colon = close[1] == ':' ? close + 1 : NULL;
                if (close[1] && !colon)
                        return false;
        } else {
                colon = strchr(name, ':');
                n = colon ? (size_t) (colon - name) : strlen(name);
                if (n == 0 || n > 253 || name[0] == '-' || name[0] == '.' ||
                    strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") != n)
                        return false;
        }
        if (colon) {
                n = strlen(colon + 1);
                if (n == 0 || n > 5 || strspn(colon + 1, "0123456789") != n || atoi(colon + 1) > 65535 ||
                    atoi(colon + 1) == 0)
                        return false;
        }
        return true;
}

/* D-Bus address values: everything but [-0-9A-Za-z_/.*] is %-escaped. */
static void append_escaped(FILE *f, const char *s) {
        for (; *s; s++)
                if (strchr("-_/.*", *s) || (*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') ||
                    (*s >= 'A' && *s <= 'Z'))
                        fputc(*s, f);
                else
                        fprintf(f, "%%%02x", (unsigned char) *s);
}

int ctl_remote_user_address(const char *host, char **ret) {
        _cleanup_free_ char *buf = NULL, *name = NULL;
        const char *port = NULL;
        size_t len = 0;
        unsigned argn = 1;
        FILE *f;

        if (!ctl_host_is_valid(host))
                return -EINVAL;
        name = strdup(host);
        if (!name)
                return -ENOMEM;
        /* HOST:PORT becomes ssh -p PORT; [IPv6] loses its brackets, as
         * sd_bus_open_system_remote() does it. */
        {
                char *at = strchr(name, '@'), *host_part = at ? at + 1 : name, *colon;

                if (host_part[0] == '[') {
                        char *close = strchr(host_part, ']');
                        colon = close[1] == ':' ? close + 1 : NULL;
                        *close = '\0';
                        memmove(host_part, host_part + 1, strlen(host_part + 1) + 1);
                } else
                        colon = strchr(host_part, ':');
                if (colon) {
                        *colon = '\0';
                        port = colon + 1;
                }
        }

        f = open_memstream(&buf, &len);
        if (!f)
                return -ENOMEM;
        /* ssh from $PATH, as libsystemd runs it for the system bus. */
        fprintf(f, "unixexec:path=ssh,argv%u=-xT", argn++);
        if (port) {
                fprintf(f, ",argv%u=-p,argv%u=", argn, argn + 1);
                argn += 2;
                append_escaped(f, port);
        }
        /* "--": whatever HOST is, ssh takes it as the destination. */
        fprintf(f, ",argv%u=--,argv%u=", argn, argn + 1);
        argn += 2;
        append_escaped(f, name);
        /* The remote user's session bus. systemd-stdio-bridge 252 ignores
         * --user without -M, so say where it is; the remote shell expands
         * $(id -u) (a fixed string: nothing of ours is in it). */
        fprintf(f, ",argv%u=systemd-stdio-bridge,argv%u=", argn, argn + 1);
        append_escaped(f, "--bus-path=unix:path=/run/user/$(id -u)/bus");
        if (fclose(f) != 0 || !buf)
                return -ENOMEM;
        *ret = TAKE_PTR(buf);
        return 0;
}

int ctl_connect(const CtlOptions *o, sd_bus **ret) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_free_ char *address = NULL;
        int r;

        if (!o->host) {
                snprintf(where, sizeof(where), "the %s bus", o->user ? "session" : "system");
                r = o->user ? sd_bus_open_user(ret) : sd_bus_open_system(ret);
                if (r < 0)
                        return ctl_error(r, "cannot connect to %s: %s", where, strerror(-r));
                /* As systemctl: someone at a terminal may be asked for a
                 * password by their polkit agent; scripts are not. */
                (void) sd_bus_set_allow_interactive_authorization(*ret, isatty(STDIN_FILENO));
                return 0;
        }

        /* Checked before anything runs: ssh never sees a hostile HOST. */
        if (!ctl_host_is_valid(o->host))
                return ctl_host_error(o->host);
        snprintf(where, sizeof(where), "%s (over ssh, %s bus)", o->host, o->user ? "session" : "system");

        if (!o->user) {
                /* As systemctl -H: ssh -xT [-p PORT] -- HOST systemd-stdio-bridge. */
                r = sd_bus_open_system_remote(ret, o->host);
                if (r < 0)
                        return ctl_error(r, "cannot connect to %s: %s", where, strerror(-r));
                return 0;
        }

        /* libsystemd 252 has no remote user bus: the same, by address. */
        r = ctl_remote_user_address(o->host, &address);
        if (r >= 0)
                r = sd_bus_new(&bus);
        if (r >= 0)
                r = sd_bus_set_address(bus, address);
        if (r >= 0)
                r = sd_bus_set_bus_client(bus, true);
        if (r >= 0)
                r = sd_bus_start(bus);
        if (r < 0)
                return ctl_error(r, "cannot connect to %s: %s", where, strerror(-r));
        *ret = TAKE_PTR(bus);
        return 0;
}

int ctl_call_error(const sd_bus_error *error, int r) {
        const char *message = error && error->message ? error->message : NULL;

        if (sd_bus_error_has_names(error, SD_BUS_ERROR_SERVICE_UNKNOWN, SD_BUS_ERROR_NAME_HAS_NO_OWNER,
                                   SD_BUS_ERROR_NO_REPLY, SD_BUS_ERROR_TIMEOUT, SD_BUS_ERROR_DISCONNECTED))
                return ctl_error(r, "nornd is not reachable on %s (%s): %s", where, NORN_BUS_NAME,
                                 message ?: error->name);
        if (sd_bus_error_has_names(error, SD_BUS_ERROR_UNKNOWN_METHOD, SD_BUS_ERROR_UNKNOWN_OBJECT,
                                   SD_BUS_ERROR_UNKNOWN_INTERFACE))
                return ctl_error(r, "this nornd does not offer that call (older version?): %s",
                                 message ?: error->name);
        if (sd_bus_error_has_name(error, SD_BUS_ERROR_ACCESS_DENIED))
                return ctl_error(r, "access denied: %s", message ?: "nornd refused the call");
        /* Errors of the connection itself (sd-bus names them System.Error.*):
         * ssh failed, the bridge or the bus went away. */
        if (r == -ECONNRESET || r == -ENOTCONN || r == -EPIPE || r == -ECONNREFUSED || r == -ENOENT)
                if (!error || !error->name || strncmp(error->name, "System.Error.", 13) == 0)
                        return ctl_error(r, "cannot reach nornd on %s: %s", where, strerror(-r));
        if (message)
                return ctl_error(r, "%s", message);
        return ctl_error(r, "%s", strerror(-r));
}

int ctl_call(sd_bus *bus, const char *method, sd_bus_message **ret_reply, const char *types, ...) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        va_list ap;
        int r;

        va_start(ap, types);
        r = sd_bus_call_methodv(bus, NORN_BUS_NAME, NORN_BUS_PATH, NORN_BUS_MANAGER_INTERFACE, method, &error,
                                ret_reply, types, ap);
        va_end(ap);
        if (r < 0)
                return ctl_call_error(&error, r);
        return 0;
}

int ctl_bad_reply(int r) {
        return ctl_error(r < 0 ? r : -EBADMSG, "malformed reply from nornd: %s", strerror(r < 0 ? -r : EBADMSG));
}

int ctl_parse_id(const char *s, uint64_t *ret) {
        uint64_t v;
        char *end;

        errno = 0;
        v = strtoull(s, &end, 10);
        if (!*s || *s < '0' || *s > '9' || *end || errno != 0 || v == 0 || v > INT64_MAX)
                return ctl_error(-EINVAL, "invalid deployment id '%.*s%s' (expected a number from 1)",
                                 (int) utf8_prefix_len(s, 64), s,
                                 strlen(s) > 64 ? "..." : "");
        *ret = v;
        return 0;
}

/* The word, printable and cut short, for an error message. */
static int word_error(const char *what, const char *s, const char *expected) {
        _cleanup_free_ char *p = ctl_printable(s);
        size_t n = strlen(s);

        if (n == 0)
                return ctl_error(-EINVAL, "invalid %s '': empty", what);
        if (n > 255)
                return ctl_error(-EINVAL, "invalid %s: too long (%zu bytes, at most 255)", what, n);
        return ctl_error(-EINVAL, "invalid %s '%.*s%s': expected %s", what,
                         (int) utf8_prefix_len(strna(p), 64), strna(p), n > 64 ? "..." : "",
                         expected);
}

int ctl_check_app(const char *s) {
        if (strlen(s) <= 255 && app_id_is_valid(s))
                return 0;
        return word_error("app name", s, "lower-case letters, digits and '-', at most 63");
}

int ctl_check_ref(const char *s) {
        if (strlen(s) <= 255 && deploy_ref_is_valid(s))
                return 0;
        return word_error("ref", s, "HEAD, a commit SHA or a branch name");
}

int ctl_check_snapshot(const char *s) {
        size_t n = strlen(s);

        /* As nornd checks it: a plain file name of the snapshots dir. */
        if (n > 0 && n <= 255 && s[0] != '.' && s[0] != '-' &&
            strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n)
                return 0;
        return word_error("snapshot name", s, "a file name as 'nornctl snapshots' lists it");
}

int ctl_check_status(const char *s) {
        if (strlen(s) <= 255 && deploy_status_from_string(s) >= 0)
                return 0;
        return word_error("status", s, "queued, building, testing, snapshotting, migrating, deploying, "
                          "deployed, failed or rolled_back");
}

int ctl_host_error(const char *host) {
        _cleanup_free_ char *p = ctl_printable(host);

        return ctl_error(-EINVAL, "invalid host '%.*s%s' for -H: expected [USER@]HOST[:PORT] (no leading '-', "
                         "no whitespace, control or shell characters)", (int) utf8_prefix_len(strna(p), 64), strna(p),
                         strlen(host) > 64 ? "..." : "");
}

int ctl_subscribe(sd_bus *bus, const char *member, sd_bus_message_handler_t handler, void *userdata) {
        int r;

        r = sd_bus_match_signal(bus, NULL, NORN_BUS_NAME, NORN_BUS_PATH, NORN_BUS_MANAGER_INTERFACE, member,
                                handler, userdata);
        if (r < 0)
                return ctl_error(r, "cannot subscribe to nornd's signals: %s", strerror(-r));
        return 0;
}

static int on_owner_changed(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        bool *gone = userdata;
        const char *name, *old_owner, *new_owner;

        if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) >= 0 && streq(name, NORN_BUS_NAME) &&
            !*new_owner)
                *gone = true;
        return 0;
}

int ctl_watch_nornd_gone(sd_bus *bus, bool *ret_gone) {
        int r;

        r = sd_bus_match_signal(bus, NULL, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                                "NameOwnerChanged", on_owner_changed, ret_gone);
        if (r < 0)
                return ctl_error(r, "cannot subscribe to nornd's signals: %s", strerror(-r));
        return 0;
}
