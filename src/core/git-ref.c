/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>

#include "git-ref.h"

static bool startswith(const char *s, const char *prefix) {
        return strncmp(s, prefix, strlen(prefix)) == 0;
}

static bool char_is_ctrl_or_space(unsigned char c) {
        return c <= ' ' || c == 0x7f;
}

/* One '/'-separated component of a ref, [s, s+n). */
static bool ref_component_is_valid(const char *s, size_t n) {
        if (n == 0)             /* leading, trailing or doubled '/' */
                return false;
        if (s[0] == '.')
                return false;
        if (n >= 5 && memcmp(s + n - 5, ".lock", 5) == 0)
                return false;
        return true;
}

bool git_ref_is_valid(const char *ref) {
        const char *component;
        size_t n;

        if (!ref)
                return false;
        n = strlen(ref);
        if (n == 0 || n > GIT_REF_MAX)
                return false;
        if (ref[0] == '-' || strcmp(ref, "@") == 0)
                return false;
        if (ref[n - 1] == '.')
                return false;
        if (strstr(ref, "..") || strstr(ref, "@{"))
                return false;

        for (const char *p = ref; *p; p++) {
                unsigned char c = (unsigned char) *p;

                if (char_is_ctrl_or_space(c) || strchr("~^:?*[\\", c))
                        return false;
        }

        component = ref;
        for (const char *p = ref;; p++)
                if (*p == '/' || *p == '\0') {
                        if (!ref_component_is_valid(component, (size_t) (p - component)))
                                return false;
                        if (*p == '\0')
                                break;
                        component = p + 1;
                }

        return true;
}

/* [user@]host[:port] up to the first '/', as in "https://user@host:443/x".
 * git hands "user@host" to ssh as one argument: neither it nor the host may
 * start with '-'. */
static bool url_authority_is_valid(const char *s) {
        const char *end = strchrnul(s, '/'), *host = s;

        if (*s == '-')
                return false;

        for (const char *p = s; p < end; p++)
                if (*p == '@')
                        host = p + 1;
        if (host >= end || *host == '-' || *host == ':')
                return false;
        return true;
}

static bool scp_part_is_valid(const char *s, size_t n) {
        if (n == 0 || s[0] == '-')
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];

                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                      (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_'))
                        return false;
        }
        return true;
}

bool git_url_is_valid(const char *url) {
        static const char *const schemes[] = { "https://", "http://", "ssh://" };
        const char *at, *colon;
        size_t n;

        if (!url)
                return false;
        n = strlen(url);
        if (n == 0 || n > GIT_URL_MAX || url[0] == '-')
                return false;
        for (const char *p = url; *p; p++)
                if (char_is_ctrl_or_space((unsigned char) *p))
                        return false;

        for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
                if (startswith(url, schemes[i]))
                        return url_authority_is_valid(url + strlen(schemes[i]));

        if (startswith(url, "file://"))
                return url[strlen("file://")] == '/';

        if (url[0] == '/')
                return true;

        /* scp-like: user@host:path. Anything else with "://" is some other
         * transport (ext::, fd::, git://...) that we do not hand to git. */
        if (strstr(url, "://") || strstr(url, "::"))
                return false;
        at = strchr(url, '@');
        colon = strchr(url, ':');
        if (!at || !colon || at > colon)
                return false;
        if (!scp_part_is_valid(url, (size_t) (at - url)) ||
            !scp_part_is_valid(at + 1, (size_t) (colon - at - 1)))
                return false;
        return colon[1] != '\0' && colon[1] != '-';
}
