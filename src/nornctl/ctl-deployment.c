/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "ctl-bus.h"
#include "ctl-deployment.h"
#include "ctl-output.h"
#include "manager-bus.h"

int deployment_info_read(sd_bus_message *m, DeploymentInfo *ret) {
        DeploymentInfo d = {};
        int r;

        r = sd_bus_message_read(m, DEPLOYMENT_INFO_SIGNATURE, &d.id, &d.app, &d.ref, &d.commit_sha, &d.image_tag,
                                &d.status, &d.step, &d.error, &d.queued_usec, &d.started_usec, &d.finished_usec,
                                &d.requested_by);
        if (r > 0)
                *ret = d;
        return r;
}

int step_info_read(sd_bus_message *m, StepInfo *ret) {
        StepInfo s = {};
        int r;

        r = sd_bus_message_read(m, STEP_INFO_SIGNATURE, &s.name, &s.status, &s.started_usec, &s.finished_usec,
                                &s.exit_code, &s.unit);
        if (r > 0)
                *ret = s;
        return r;
}

json_t *deployment_info_to_json(const DeploymentInfo *d) {
        return json_pack("{s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
                         "id", (json_int_t) d->id,
                         "app", ctl_json_string(d->app),
                         "ref", ctl_json_string(d->ref),
                         "commitSha", ctl_json_string(d->commit_sha),
                         "imageTag", ctl_json_string(d->image_tag),
                         "status", ctl_json_string(d->status),
                         "step", ctl_json_string(d->step),
                         "error", ctl_json_string(d->error),
                         "queuedAt", ctl_json_time(d->queued_usec),
                         "startedAt", ctl_json_time(d->started_usec),
                         "finishedAt", ctl_json_time(d->finished_usec),
                         "requestedBy", ctl_json_string(d->requested_by));
}

json_t *step_info_to_json(const StepInfo *s) {
        bool ran = s->started_usec > 0 && s->finished_usec >= s->started_usec;

        return json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
                         "step", ctl_json_string(s->name),
                         "status", ctl_json_string(s->status),
                         "startedAt", ctl_json_time(s->started_usec),
                         "finishedAt", ctl_json_time(s->finished_usec),
                         "durationMs", ran ? json_integer((json_int_t) ((s->finished_usec - s->started_usec) / 1000))
                                           : json_null(),
                         /* nornd sends -1 for "no exit code" (a step without a command). */
                         "exitCode", ran && s->exit_code >= 0 ? json_integer(s->exit_code) : json_null(),
                         "unit", ctl_json_string(s->unit));
}

int ctl_get_deployment(sd_bus *bus, uint64_t id, sd_bus_message **ret_reply, DeploymentInfo *ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;

        r = sd_bus_call_method(bus, NORN_BUS_NAME, NORN_BUS_PATH, NORN_BUS_MANAGER_INTERFACE, "GetDeployment",
                               &error, &reply, "t", id);
        /* Said the same way whatever words nornd uses. */
        if (r < 0 && sd_bus_error_has_name(&error, NORN_BUS_ERROR_PREFIX "NotFound"))
                return ctl_error(r, "no deployment %" PRIu64 " (see 'nornctl history')", id);
        if (r < 0)
                return ctl_call_error(&error, r);
        r = deployment_info_read(reply, ret);
        if (r <= 0)
                return ctl_bad_reply(r);
        *ret_reply = TAKE_PTR(reply);
        return 0;
}

static int steps_to_json(sd_bus_message *reply, json_t **ret) {
        _cleanup_(json_decrefp) json_t *steps = json_array();
        StepInfo s;
        int r;

        if (!steps)
                return -ENOMEM;
        r = sd_bus_message_enter_container(reply, 'a', STEP_INFO_SIGNATURE);
        if (r < 0)
                return ctl_bad_reply(r);
        while ((r = step_info_read(reply, &s)) > 0)
                if (json_array_append_new(steps, step_info_to_json(&s)) < 0)
                        return -ENOMEM;
        if (r < 0)
                return ctl_bad_reply(r);
        *ret = TAKE_PTR(steps);
        return 0;
}

int deployment_to_json_with_steps(const DeploymentInfo *d, sd_bus_message *reply, json_t **ret) {
        _cleanup_(json_decrefp) json_t *j = deployment_info_to_json(d);
        json_t *steps = NULL;
        int r;

        if (!j)
                return -ENOMEM;
        r = steps_to_json(reply, &steps);
        if (r < 0)
                return r;
        if (json_object_set_new(j, "steps", steps) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(j);
        return 0;
}

bool deployment_status_is_final(const char *status) {
        return streq(status, "deployed") || streq(status, "failed") || streq(status, "rolled_back");
}

static void field(const char *name, const char *value) {
        if (!value || !*value)
                return;
        printf("%11s: ", name);
        ctl_fputs_printable(value, stdout);
        fputc('\n', stdout);
}

int deployment_print(const DeploymentInfo *d, sd_bus_message *steps_reply) {
        _cleanup_(table_freep) Table *t = NULL;
        char a[32], b[32], line[96];
        StepInfo s;
        bool fancy;
        int r;

        printf("%s%s%s deployment %" PRIu64 " of ", ctl_status_color(d->status),
               ctl_fancy() ? "\u25cf" : "*", ctl_ansi(ANSI_NORMAL), d->id);
        ctl_fputs_printable(d->app, stdout);
        printf(": %s%s%s\n", ctl_status_color(d->status), d->status, ctl_ansi(ANSI_NORMAL));
        field("Ref", d->ref);
        field("Commit", d->commit_sha);
        field("Image", d->image_tag);
        if (!deployment_status_is_final(d->status))
                field("Step", d->step);
        snprintf(line, sizeof(line), "%s UTC", ctl_format_time(a, d->queued_usec));
        field("Queued", line);
        if (d->started_usec) {
                snprintf(line, sizeof(line), "%s UTC", ctl_format_time(a, d->started_usec));
                field("Started", line);
        }
        if (d->finished_usec) {
                snprintf(line, sizeof(line), "%s UTC (took %s)", ctl_format_time(a, d->finished_usec),
                         ctl_format_span(b, d->started_usec ?: d->queued_usec, d->finished_usec));
                field("Finished", line);
        }
        field("Requested", d->requested_by);
        if (d->error && *d->error) {
                fputs(ctl_ansi(ANSI_RED), stdout);
                field("Error", d->error);
                fputs(ctl_ansi(ANSI_NORMAL), stdout);
        }

        r = sd_bus_message_enter_container(steps_reply, 'a', STEP_INFO_SIGNATURE);
        if (r < 0)
                return ctl_bad_reply(r);
        /* The glyph column only on a terminal: piped output stays plain words. */
        fancy = ctl_fancy();
        t = fancy ? table_new(5, "", "STEP", "STATUS", "TIME", "UNIT") : table_new(4, "STEP", "STATUS", "TIME", "UNIT");
        if (!t)
                return -ENOMEM;
        while ((r = step_info_read(steps_reply, &s)) > 0) {
                char exit_code[48] = "";
                if (streq(s.status, "failed") && s.exit_code > 0)
                        snprintf(exit_code, sizeof(exit_code), "%s (exit %" PRIi32 ")", s.unit, s.exit_code);
                const char *span = ctl_format_span(a, s.started_usec, s.finished_usec),
                           *unit = *exit_code ? exit_code : s.unit;
                r = fancy ? table_add_row(t, ctl_step_glyph(s.status), s.name, s.status, span, unit)
                          : table_add_row(t, s.name, s.status, span, unit);
                if (r < 0)
                        return r;
                table_set_color(t, 0, ctl_status_color(s.status));
                table_set_color(t, fancy ? 2 : 1, ctl_status_color(s.status));
        }
        if (r < 0)
                return ctl_bad_reply(r);
        if (table_rows(t) > 0) {
                printf("%11s:\n", "Steps");
                table_print(t, false, 13);
        }
        return 0;
}
