/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cron-internal.h"
#include "strv.h"

/* What the service manager says about a unit, read from GetAll() replies. */

void unit_state_done(UnitState *s) {
        free(s->load_state);
        free(s->active_state);
        strv_free(s->exec_argv);
        strv_free(s->extra_fields);
        free(s->result);
        *s = (UnitState) {};
}

static int read_string(sd_bus_message *m, char **ret) {
        const char *s;
        int r = sd_bus_message_read(m, "v", "s", &s);
        char *c;

        if (r < 0)
                return r;
        c = strdup(s);
        if (!c)
                return -ENOMEM;
        free(*ret);
        *ret = c;
        return 0;
}

int unit_state_read_invocation(sd_bus_message *m, char ret[33]) {
        const uint8_t *id;
        size_t n;
        int r;

        r = sd_bus_message_enter_container(m, 'v', "ay");
        if (r >= 0)
                r = sd_bus_message_read_array(m, 'y', (const void **) &id, &n);
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        if (r < 0)
                return r;
        ret[0] = 0;
        for (size_t i = 0; n == 16 && i < n; i++)
                (void) snprintf(ret + 2 * i, 3, "%02x", id[i]);
        return 0;
}

static int read_exec_start(sd_bus_message *m, UnitState *s) {
        const char *path;
        int r;

        r = sd_bus_message_enter_container(m, 'v', "a(sasbttttuii)");
        if (r >= 0)
                r = sd_bus_message_enter_container(m, 'a', "(sasbttttuii)");
        while (r >= 0 && (r = sd_bus_message_enter_container(m, 'r', "sasbttttuii")) > 0) {
                char **argv = NULL;

                r = sd_bus_message_read(m, "s", &path);
                if (r >= 0)
                        r = sd_bus_message_read_strv(m, &argv);
                if (r >= 0)
                        r = sd_bus_message_skip(m, "bttttuii");
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
                if (r >= 0 && !s->exec_argv)
                        s->exec_argv = TAKE_PTR(argv);
                strv_free(argv);
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        return r;
}

static int read_byte_strings(sd_bus_message *m, char ***ret) {
        const void *p;
        size_t n;
        int r;

        r = sd_bus_message_enter_container(m, 'v', "aay");
        if (r >= 0)
                r = sd_bus_message_enter_container(m, 'a', "ay");
        while (r >= 0 && (r = sd_bus_message_read_array(m, 'y', &p, &n)) > 0)
                if (strv_extendf(ret, "%.*s", (int) n, (const char *) p) < 0)
                        return -ENOMEM;
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        return r;
}

/* Reads the a{sv} of a GetAll() reply (Unit or Service interface) into s. */
int unit_state_parse(sd_bus_message *m, UnitState *s) {
        const char *key;
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        while (r >= 0 && (r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                r = sd_bus_message_read(m, "s", &key);
                if (r < 0)
                        break;
                if (streq(key, "LoadState"))
                        r = read_string(m, &s->load_state);
                else if (streq(key, "ActiveState"))
                        r = read_string(m, &s->active_state);
                else if (streq(key, "Result"))
                        r = read_string(m, &s->result);
                else if (streq(key, "InvocationID"))
                        r = unit_state_read_invocation(m, s->invocation);
                else if (streq(key, "Job")) {
                        uint32_t id;
                        const char *path;

                        r = sd_bus_message_read(m, "v", "(uo)", &id, &path);
                        s->job = s->job || id != 0;
                }
                else if (streq(key, "ExecStart"))
                        r = read_exec_start(m, s);
                else if (streq(key, "LogExtraFields"))
                        r = read_byte_strings(m, &s->extra_fields);
                else if (streq(key, "ExecMainStartTimestamp"))
                        r = sd_bus_message_read(m, "v", "t", &s->start_usec);
                else if (streq(key, "ExecMainExitTimestamp"))
                        r = sd_bus_message_read(m, "v", "t", &s->exit_usec);
                else if (streq(key, "ExecMainCode"))
                        r = sd_bus_message_read(m, "v", "i", &s->code);
                else if (streq(key, "ExecMainStatus"))
                        r = sd_bus_message_read(m, "v", "i", &s->status);
                else
                        r = sd_bus_message_skip(m, "v");
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        return r < 0 ? r : 0;
}

/* A job runs, and nobody is stopping it. */
bool unit_active_state_is_running(const char *s) {
        return s && (streq(s, "active") || streq(s, "activating") || streq(s, "reloading"));
}

const char *unit_extra_field(char *const *fields, const char *name) {
        size_t n = strlen(name);

        for (; fields && *fields; fields++)
                if (strncmp(*fields, name, n) == 0 && (*fields)[n] == '=')
                        return *fields + n + 1;
        return NULL;
}

const char *bus_reply_error_text(sd_bus_message *m) {
        const sd_bus_error *e = sd_bus_message_get_error(m);

        return e ? e->message ?: e->name : NULL;
}

bool bus_reply_error_is(sd_bus_message *m, const char *name) {
        const sd_bus_error *e = sd_bus_message_get_error(m);

        return e && sd_bus_error_has_name(e, name);
}

