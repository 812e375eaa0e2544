/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* config_load() (src/core/config.c): a setting refused after others were
 * read leaves nothing behind: no leak (LeakSanitizer in the sanitizer
 * suite; found there when nornd refused a public bind without a token), no
 * copy of the API token. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "macro.h"
#include "tap.h"

static bool is_empty(const NornConfig *c) {
        return !c->bind_address && !c->database_url && !c->apps_dir && !c->state_dir && !c->snapshot_dir &&
               !c->api_token && !c->sql_dir && !c->builder && !c->slice;
}

static void expect_refused(const char *what, const char *name, const char *value) {
        NornConfig c;
        int r;

        setenv(name, value, 1);
        memset(&c, 0x55, sizeof(c));
        r = config_load(&c, true);
        check(r < 0 && is_empty(&c), "%s: refused (%d), nothing kept", what, r);
        unsetenv(name);
}

int main(void) {
        NornConfig c;
        int r;

        log_setup(LOG_TARGET_STDERR, LOG_CRIT);
        setenv("NORN_DATABASE_URL", "postgresql:///norn-test", 1);
        setenv("NORN_STATE_DIR", "/nonexistent/norn-state", 1);
        unsetenv("NORN_API_TOKEN");
        unsetenv("NORN_API_TOKEN_FILE");

        r = config_load(&c, true);
        check(r == 0 && c.bind_address && streq(c.database_url, "postgresql:///norn-test"), "defaults load");
        config_done(&c);
        check(is_empty(&c), "config_done() clears");

        /* Each refused after the strings above were read. */
        expect_refused("a public bind without a token", "NORN_BIND_ADDR", "0.0.0.0");
        expect_refused("a git ssh key path with shell characters", "NORN_GIT_SSH_KEY", "/k;rm");
        expect_refused("NORN_MAX_PARALLEL=0", "NORN_MAX_PARALLEL", "0");
        setenv("NORN_API_TOKEN", "tok\x01en", 1);
        expect_refused("a token with a control character", "NORN_API_TOKEN_FILE", "/nonexistent");
        unsetenv("NORN_API_TOKEN");

        printf("1..%u\n", n_checks);
        return n_failed > 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
