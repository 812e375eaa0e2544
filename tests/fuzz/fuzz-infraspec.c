/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* infraspec.yaml as an app's repository or apps dir holds it: parse, then
 * everything the API makes of the result (spec and diagnostics as JSON). */
#include "fuzz.h"
#include "infraspec.h"
#include "utf8.h"

static void check_string(const char *s, bool may_be_empty) {
        if (!s)
                return;
        FUZZ_CHECK(may_be_empty || *s);
        FUZZ_CHECK(utf8_is_valid(s));
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        fuzz_quiet();
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(infraspec_freep) Infraspec *spec = NULL;
        InfraspecDiagnostics diags = {};
        json_t *j;
        int r;

        if (size > INFRASPEC_MAX_FILE_SIZE)
                return 0;

        r = infraspec_parse("fuzz/infraspec.yaml", data, size, "web", &spec, &diags);
        FUZZ_CHECK(r == 0 || r == -EINVAL);
        FUZZ_CHECK((r == 0) == !!spec);
        FUZZ_CHECK(r == 0 ? diags.n_errors == 0 : diags.n_errors > 0);
        FUZZ_CHECK(diags.n <= INFRASPEC_MAX_DIAGNOSTICS);

        for (size_t i = 0; i < diags.n; i++) {
                char *line = infraspec_diagnostic_format(&diags, i);

                FUZZ_CHECK(line);
                /* Cut on character boundaries (issue 10 #5). */
                FUZZ_CHECK(utf8_is_valid(line));
                free(line);
        }
        j = infraspec_diagnostics_to_json(&diags);
        FUZZ_CHECK(j);
        json_decref(j);

        if (spec) {
                char *text;

                FUZZ_CHECK(streq(spec->app, "web"));
                FUZZ_CHECK(app_id_is_valid(spec->app));
                check_string(spec->healthcheck, false);
                check_string(spec->repo.url, false);
                check_string(spec->repo.branch, false);
                check_string(spec->schedule, false);
                check_string(spec->command, false);
                check_string(spec->build.test, false);
                check_string(spec->migrations.command, false);
                for (size_t i = 0; i < spec->n_env; i++) {
                        check_string(spec->env[i].name, false);
                        check_string(spec->env[i].value, true);
                }
                if (spec->build.dockerfile)
                        FUZZ_CHECK(infraspec_dockerfile_is_valid(spec->build.dockerfile));

                j = infraspec_to_json(spec);
                FUZZ_CHECK(j);
                text = json_dumps(j, 0);
                FUZZ_CHECK(text);
                /* The webhook secret never leaves the spec: "(set)" in its
                 * place. (Its text may still be the value of another field.) */
                if (spec->repo.webhook_secret)
                        FUZZ_CHECK(streq_ptr(json_string_value(json_object_get(json_object_get(j, "repo"),
                                                                               "webhookSecret")),
                                             "(set)"));
                free(text);
                json_decref(j);
        }
        infraspec_diagnostics_done(&diags);
        return 0;
}
