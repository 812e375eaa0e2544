/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "ctl-bus.h"
#include "ctl-deployment.h"
#include "ctl-output.h"
#include "manager-bus.h"
#include "utf8.h"

/* apps, status, history, show: reading nornd's state, for people or (with
 * --json) for programs. */

/* One app of ListApps: a(sssbtsst). */
typedef struct AppInfo {
        const char *id, *role, *branch;
        int auto_deploy;
        uint64_t last_id;
        const char *last_status, *last_commit;
        uint64_t last_finished_usec;
} AppInfo;
#define APP_INFO_SIGNATURE "(sssbtsst)"

static int app_info_read(sd_bus_message *m, AppInfo *ret) {
        AppInfo a = {};
        int r;

        r = sd_bus_message_read(m, APP_INFO_SIGNATURE, &a.id, &a.role, &a.branch, &a.auto_deploy, &a.last_id,
                                &a.last_status, &a.last_commit, &a.last_finished_usec);
        if (r > 0)
                *ret = a;
        return r;
}

static json_t *app_info_to_json(const AppInfo *a) {
        json_t *last = a->last_id == 0 ? json_null()
                     : json_pack("{s:I, s:o, s:o, s:o}", "id", (json_int_t) a->last_id,
                                 "status", ctl_json_string(a->last_status),
                                 "commitSha", ctl_json_string(a->last_commit),
                                 /* nornd sends the queue time while it runs. */
                                 "finishedAt", deployment_status_is_final(a->last_status)
                                                       ? ctl_json_time(a->last_finished_usec) : json_null());
        return json_pack("{s:o, s:o, s:o, s:b, s:o}", "id", ctl_json_string(a->id), "role", ctl_json_string(a->role),
                         "branch", ctl_json_string(a->branch), "autoDeploy", a->auto_deploy, "lastDeployment", last);
}

/* Calls ListApps and leaves the reply inside its array. */
static int list_apps(sd_bus *bus, sd_bus_message **ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        r = ctl_call(bus, "ListApps", &reply, NULL);
        if (r < 0)
                return r;
        r = sd_bus_message_enter_container(reply, 'a', APP_INFO_SIGNATURE);
        if (r < 0)
                return ctl_bad_reply(r);
        *ret = TAKE_PTR(reply);
        return 0;
}

/* Finds app in ListApps; -ENOENT (printed) when nornd does not know it. */
static int find_app(sd_bus *bus, const char *app, sd_bus_message **ret_reply, AppInfo *ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        AppInfo a;
        int r;

        r = list_apps(bus, &reply);
        if (r < 0)
                return r;
        while ((r = app_info_read(reply, &a)) > 0)
                if (streq(a.id, app)) {
                        *ret = a;
                        *ret_reply = TAKE_PTR(reply);
                        return 0;
                }
        if (r < 0)
                return ctl_bad_reply(r);
        _cleanup_free_ char *printable = ctl_printable(app);
        return ctl_error(-ENOENT, "unknown app '%.*s' (see 'nornctl apps')",
                         (int) utf8_prefix_len(strna(printable), 64), strna(printable));
}

static int print_apps(sd_bus *bus, const CtlOptions *o, bool status_view) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(json_decrefp) json_t *list = NULL;
        _cleanup_(table_freep) Table *t = NULL;
        char id[32], when[32];
        AppInfo a;
        int r;

        r = list_apps(bus, &reply);
        if (r < 0)
                return r;
        if (o->json)
                list = json_array();
        else if (status_view)
                t = table_new(5, "APP", "STATUS", "DEPLOYMENT", "COMMIT", "SINCE (UTC)");
        else
                t = table_new(7, "APP", "ROLE", "BRANCH", "AUTO-DEPLOY", "LAST", "STATUS", "COMMIT");
        if (!list && !t)
                return -ENOMEM;

        while ((r = app_info_read(reply, &a)) > 0) {
                char commit[13];

                snprintf(id, sizeof(id), "%" PRIu64, a.last_id);
                snprintf(commit, sizeof(commit), "%s", a.last_commit);
                if (list)
                        r = json_array_append_new(list, app_info_to_json(&a)) < 0 ? -ENOMEM : 0;
                else if (status_view)
                        r = table_add_row(t, a.id, a.last_id ? a.last_status : "never deployed", a.last_id ? id : NULL,
                                          commit, ctl_format_time(when, a.last_finished_usec));
                else
                        r = table_add_row(t, a.id, a.role, a.branch, a.auto_deploy ? "yes" : "no",
                                          a.last_id ? id : NULL, a.last_status, commit);
                if (r < 0)
                        return r;
                if (t)
                        table_set_color(t, status_view ? 1 : 5, ctl_status_color(a.last_status));
        }
        if (r < 0)
                return ctl_bad_reply(r);

        if (list)
                return ctl_json_print(json_pack("{s:O}", "apps", list));
        if (table_rows(t) == 0) {
                printf("no apps (nornd reads NORN_APPS_DIR/<app>/infraspec.yaml with deploy: true)\n");
                return 0;
        }
        table_print(t, true, 0);
        return 0;
}

int ctl_apps(sd_bus *bus, char **args, const CtlOptions *o) {
        return print_apps(bus, o, false);
}

/* For shell completion: app names, one a line, nothing else. */
int ctl_list_app_names(sd_bus *bus, char **args, const CtlOptions *o) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        AppInfo a;
        int r;

        r = list_apps(bus, &reply);
        if (r < 0)
                return r;
        while ((r = app_info_read(reply, &a)) > 0)
                puts(a.id);
        return r < 0 ? ctl_bad_reply(r) : 0;
}

static int show_deployment(sd_bus *bus, uint64_t id, const CtlOptions *o, const char *wrap_key) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(json_decrefp) json_t *j = NULL;
        DeploymentInfo d;
        int r;

        r = ctl_get_deployment(bus, id, &reply, &d);
        if (r < 0)
                return r;
        if (!o->json)
                return deployment_print(&d, reply);

        r = deployment_to_json_with_steps(&d, reply, &j);
        if (r < 0)
                return r;
        if (wrap_key)
                return ctl_json_print(json_pack("{s:s, s:O}", "app", d.app, wrap_key, j));
        return ctl_json_print(TAKE_PTR(j));
}

int ctl_status(sd_bus *bus, char **args, const CtlOptions *o) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        AppInfo a;
        int r;

        if (!args[0])
                return print_apps(bus, o, true);

        r = find_app(bus, args[0], &reply, &a);
        if (r < 0)
                return r;
        if (a.last_id == 0) {
                if (o->json)
                        return ctl_json_print(json_pack("{s:s, s:n}", "app", a.id, "deployment"));
                printf("%s: never deployed\n", a.id);
                return 0;
        }
        return show_deployment(bus, a.last_id, o, "deployment");
}

int ctl_show(sd_bus *bus, char **args, const CtlOptions *o) {
        uint64_t id;
        int r;

        r = ctl_parse_id(args[0], &id);
        if (r < 0)
                return r;
        return show_deployment(bus, id, o, NULL);
}

int ctl_history(sd_bus *bus, char **args, const CtlOptions *o) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL, *apps = NULL;
        _cleanup_(json_decrefp) json_t *list = NULL;
        _cleanup_(table_freep) Table *t = NULL;
        const char *app = args[0] ?: "", *status = o->status ?: "";
        DeploymentInfo d;
        int r;

        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;

        r = sd_bus_call_method(bus, NORN_BUS_NAME, NORN_BUS_PATH, NORN_BUS_MANAGER_INTERFACE, "ListDeployments",
                               &error, &reply, "ssu", app, status, o->limit);
        if (r < 0 && *app && sd_bus_error_has_name(&error, NORN_BUS_ERROR_PREFIX "NotFound"))
                return ctl_error(r, "unknown app '%s' (see 'nornctl apps')", app);
        if (r < 0)
                return ctl_call_error(&error, r);
        r = sd_bus_message_enter_container(reply, 'a', DEPLOYMENT_INFO_SIGNATURE);
        if (r < 0)
                return ctl_bad_reply(r);

        if (o->json)
                list = json_array();
        else
                t = table_new(8, "ID", "APP", "STATUS", "REF", "COMMIT", "QUEUED (UTC)", "TOOK", "ERROR");
        if (!list && !t)
                return -ENOMEM;
        while ((r = deployment_info_read(reply, &d)) > 0) {
                char id[32], commit[13], queued[32], took[32];

                if (list) {
                        if (json_array_append_new(list, deployment_info_to_json(&d)) < 0)
                                return -ENOMEM;
                        continue;
                }
                snprintf(id, sizeof(id), "%" PRIu64, d.id);
                snprintf(commit, sizeof(commit), "%s", d.commit_sha);
                r = table_add_row(t, id, d.app, d.status, d.ref, commit, ctl_format_time(queued, d.queued_usec),
                                  ctl_format_span(took, d.started_usec, d.finished_usec), d.error);
                if (r < 0)
                        return r;
                table_set_color(t, 2, ctl_status_color(d.status));
        }
        if (r < 0)
                return ctl_bad_reply(r);

        /* An empty answer for a name nornd does not know: say so. */
        if ((list ? json_array_size(list) : table_rows(t)) == 0 && *app) {
                AppInfo a;
                r = find_app(bus, app, &apps, &a);
                if (r < 0)
                        return r;
        }
        if (list)
                return ctl_json_print(json_pack("{s:O}", "deployments", list));
        if (table_rows(t) == 0)
                printf("no deployments\n");
        else
                table_print(t, true, 0);
        return 0;
}
