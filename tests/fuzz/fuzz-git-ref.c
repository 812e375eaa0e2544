/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Branch names, refs asked for by a deploy (D-Bus, HTTP, webhooks) and
 * repository URLs: everything that ends up on a git command line. The
 * checks are the promises of git-ref.h that make such a string safe there. */
#include "fuzz.h"
#include "git-ref.h"
#include "step-driver.h"

static bool has_ctrl_or_space(const char *s) {
        for (; *s; s++)
                if ((unsigned char) *s <= ' ' || *s == 0x7f)
                        return true;
        return false;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        fuzz_quiet();
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *s = NULL;
        size_t n;

        if (size > 2 * GIT_URL_MAX)
                return 0;
        s = fuzz_strndup(data, size);
        n = strlen(s);

        if (git_ref_is_valid(s)) {
                FUZZ_CHECK(n > 0 && n <= GIT_REF_MAX);
                FUZZ_CHECK(s[0] != '-' && s[0] != '/' && s[n - 1] != '/' && s[n - 1] != '.');
                FUZZ_CHECK(!strstr(s, "..") && !strstr(s, "@{") && !strstr(s, "//") && !strstr(s, ".lock/"));
                FUZZ_CHECK(!has_ctrl_or_space(s) && !strpbrk(s, "~^:?*[\\"));
                FUZZ_CHECK(deploy_ref_is_valid(s));
        }
        if (ref_is_commit_sha(s))
                FUZZ_CHECK(deploy_ref_is_valid(s) && strspn(s, "0123456789abcdef") == n);
        if (deploy_ref_is_valid(s))
                FUZZ_CHECK(s[0] != '-' && !has_ctrl_or_space(s));

        if (git_url_is_valid(s)) {
                FUZZ_CHECK(n > 0 && n <= GIT_URL_MAX);
                FUZZ_CHECK(s[0] != '-' && !has_ctrl_or_space(s));
                /* Neither the authority git hands to ssh as one argument
                 * ([user@]host) nor its host may read as an option. */
                if (strncmp(s, "ssh://", 6) == 0) {
                        const char *auth = s + 6, *end = strchrnul(auth, '/'), *host = auth;

                        for (const char *p = auth; p < end; p++)
                                if (*p == '@')
                                        host = p + 1;
                        FUZZ_CHECK(auth[0] != '-' && host < end && host[0] != '-');
                }
        }
        return 0;
}
