/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "config-build.h"
#include "ctl-bus.h"
#include "ctl-output.h"
#include "manager-bus.h"

/* version, health, validate, snapshots: nornd itself and the apps' files. */

int ctl_version(sd_bus *bus, char **args, const CtlOptions *o) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_free_ char *version = NULL;
        int r;

        r = sd_bus_get_property_string(bus, NORN_BUS_NAME, NORN_BUS_PATH, NORN_BUS_MANAGER_INTERFACE, "Version",
                                       &error, &version);
        if (r < 0)
                return ctl_call_error(&error, r);
        if (o->json)
                return ctl_json_print(json_pack("{s:s, s:o}", "nornctl", NORN_VERSION, "nornd",
                                                ctl_json_string(version)));
        printf("nornctl %s\n", NORN_VERSION);
        printf("nornd ");
        ctl_fputs_printable(version, stdout);
        printf("\n");
        return 0;
}

int ctl_health(sd_bus *bus, char **args, const CtlOptions *o) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(json_decrefp) json_t *components = NULL;
        _cleanup_(table_freep) Table *t = NULL;
        const char *status, *name, *detail;
        int up, r;

        r = ctl_call(bus, "Health", &reply, NULL);
        if (r < 0)
                return r;
        r = sd_bus_message_read(reply, "s", &status);
        if (r < 0)
                return ctl_bad_reply(r);
        r = sd_bus_message_enter_container(reply, 'a', "(sbs)");
        if (r < 0)
                return ctl_bad_reply(r);
        if (o->json ? !(components = json_object()) : !(t = table_new(3, "", "", "")))
                return -ENOMEM;
        while ((r = sd_bus_message_read(reply, "(sbs)", &name, &up, &detail)) > 0) {
                if (components)
                        r = json_object_set_new(components, name,
                                                json_pack("{s:s, s:o}", "status", up ? "up" : "down", "detail",
                                                          ctl_json_string(detail)));
                else if ((r = table_add_row(t, name, up ? "up" : "down", detail)) >= 0)
                        table_set_color(t, 1, ctl_ansi(up ? ANSI_GREEN : ANSI_RED));
                if (r < 0)
                        return -ENOMEM;
        }
        if (r < 0)
                return ctl_bad_reply(r);

        if (components) {
                r = ctl_json_print(json_pack("{s:s, s:O}", "status", status, "components", components));
                if (r < 0)
                        return r;
        } else {
                printf("nornd: %s%s%s\n", ctl_ansi(streq(status, "ok") ? ANSI_GREEN : ANSI_RED), status,
                       ctl_ansi(ANSI_NORMAL));
                table_print(t, false, 2);
        }
        /* Exit 1 when degraded, as a health check should. */
        return streq(status, "ok") ? 0 : 1;
}

int ctl_validate(sd_bus *bus, char **args, const CtlOptions *o) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(json_decrefp) json_t *list = NULL;
        const char *app = args[0] ?: "", *file, *severity, *message, *papp;
        unsigned errors = 0, warnings = 0;
        uint32_t line, column;
        int r;

        r = ctl_call(bus, "Validate", &reply, "s", app);
        if (r < 0)
                return r;
        r = sd_bus_message_enter_container(reply, 'a', "(sssuus)");
        if (r < 0)
                return ctl_bad_reply(r);
        if (o->json && !(list = json_array()))
                return -ENOMEM;
        while ((r = sd_bus_message_read(reply, "(sssuus)", &papp, &file, &severity, &line, &column, &message)) > 0) {
                bool error = streq(severity, "error");

                errors += error;
                warnings += !error;
                if (list) {
                        if (json_array_append_new(list, json_pack("{s:o, s:o, s:o, s:I, s:I, s:o}",
                                                                  "app", ctl_json_string(papp),
                                                                  "file", ctl_json_string(file),
                                                                  "severity", ctl_json_string(severity),
                                                                  "line", (json_int_t) line,
                                                                  "column", (json_int_t) column,
                                                                  "message", ctl_json_string(message))) < 0)
                                return -ENOMEM;
                        continue;
                }
                /* file:line:column: severity: message, as compilers say it. */
                ctl_fputs_printable(*file ? file : papp, stdout);
                if (line > 0)
                        printf(":%" PRIu32, line);
                if (line > 0 && column > 0)
                        printf(":%" PRIu32, column);
                printf(": %s%s%s: ", ctl_ansi(error ? ANSI_BOLD_RED : ANSI_YELLOW), severity, ctl_ansi(ANSI_NORMAL));
                ctl_fputs_printable(message, stdout);
                fputc('\n', stdout);
        }
        if (r < 0)
                return ctl_bad_reply(r);

        if (list)
                r = ctl_json_print(json_pack("{s:b, s:I, s:I, s:O}", "valid", errors == 0, "errors",
                                             (json_int_t) errors, "warnings", (json_int_t) warnings, "problems", list));
        else if (errors + warnings == 0)
                printf("%s: valid\n", *app ? app : "all apps");
        else
                printf("%u error%s, %u warning%s\n", errors, errors == 1 ? "" : "s", warnings,
                       warnings == 1 ? "" : "s");
        if (r < 0)
                return r;
        /* Exit 1 when any definition has an error; warnings pass. */
        return errors > 0 ? 1 : 0;
}

int ctl_snapshots(sd_bus *bus, char **args, const CtlOptions *o) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(json_decrefp) json_t *list = NULL;
        _cleanup_(table_freep) Table *t = NULL;
        const char *database, *file;
        uint64_t id, size, created, deployment;
        int r;

        r = ctl_call(bus, "ListSnapshots", &reply, "s", args[0]);
        if (r < 0)
                return r;
        r = sd_bus_message_enter_container(reply, 'a', "(tssttt)");
        if (r < 0)
                return ctl_bad_reply(r);
        if (o->json ? !(list = json_array())
                    : !(t = table_new(6, "ID", "DATABASE", "SIZE", "CREATED (UTC)", "SNAPSHOT", "DEPLOYMENT")))
                return -ENOMEM;
        while ((r = sd_bus_message_read(reply, "(tssttt)", &id, &database, &file, &size, &created, &deployment)) > 0) {
                char ids[32], sizes[32], when[32], dep[32];

                if (list) {
                        if (json_array_append_new(list, json_pack("{s:I, s:o, s:o, s:I, s:o, s:o}",
                                                                  "id", (json_int_t) id,
                                                                  "database", ctl_json_string(database),
                                                                  "name", ctl_json_string(file),
                                                                  "sizeBytes", (json_int_t) size,
                                                                  "createdAt", ctl_json_time(created),
                                                                  "deploymentId", deployment
                                                                          ? json_integer((json_int_t) deployment)
                                                                          : json_null())) < 0)
                                return -ENOMEM;
                        continue;
                }
                snprintf(ids, sizeof(ids), "%" PRIu64, id);
                snprintf(sizes, sizeof(sizes), "%" PRIu64, size);
                snprintf(dep, sizeof(dep), "%" PRIu64, deployment);
                r = table_add_row(t, ids, database, sizes, ctl_format_time(when, created), file,
                                  deployment ? dep : NULL);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return ctl_bad_reply(r);
        if (list)
                return ctl_json_print(json_pack("{s:O}", "snapshots", list));
        if (table_rows(t) == 0)
                printf("no snapshots of %s\n", args[0]);
        else
                table_print(t, true, 0);
        return 0;
}
