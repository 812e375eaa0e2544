/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>

#include "git-ref.h"
#include "infraspec-internal.h"
#include "macro.h"

static const char *const app_role_table[_APP_ROLE_MAX] = {
        [APP_ROLE_WEBSERVER] = "webserver",
        [APP_ROLE_WORKER]    = "worker",
        [APP_ROLE_CRON]      = "cron",
        [APP_ROLE_FUNCTION]  = "function",
};

const char *app_role_to_string(AppRole r) {
        if (r < 0 || r >= _APP_ROLE_MAX)
                return NULL;
        return app_role_table[r];
}

AppRole app_role_from_string(const char *s) {
        if (!s)
                return _APP_ROLE_INVALID;
        for (size_t i = 0; i < ELEMENTSOF(app_role_table); i++)
                if (streq(app_role_table[i], s))
                        return (AppRole) i;
        return _APP_ROLE_INVALID;
}

bool app_id_is_valid(const char *id) {
        size_t n;

        if (!id)
                return false;
        n = strlen(id);
        if (n == 0 || n > APP_ID_MAX)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = id[i];

                if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
                        continue;
                if (c == '-' && i > 0)
                        continue;
                return false;
        }
        return true;
}

/* A path relative to the app's work dir that stays inside it: relative, no
 * ".." component, no leading '-' (it may end up as an argument), no
 * control characters. */
static bool path_is_inside(const char *path, size_t max, bool allow_dir) {
        const char *component;
        size_t n;

        if (!path)
                return false;
        n = strlen(path);
        if (n == 0 || n > max)
                return false;
        if (path[0] == '/' || path[0] == '-' || (!allow_dir && path[n - 1] == '/'))
                return false;

        for (const char *p = path; *p; p++)
                if ((unsigned char) *p < ' ' || *p == 0x7f)
                        return false;

        component = path;
        for (const char *p = path;; p++)
                if (*p == '/' || *p == '\0') {
                        if (p - component == 2 && component[0] == '.' && component[1] == '.')
                                return false;
                        if (*p == '\0')
                                break;
                        component = p + 1;
                }

        return true;
}

/* The Dockerfile is handed to the builder with -f, relative to the work dir. */
bool infraspec_dockerfile_is_valid(const char *path) {
        return path_is_inside(path, INFRASPEC_DOCKERFILE_MAX, false);
}

/* ---- Checks behind the field tables (CheckFunc: NULL or what was expected) ---- */

static bool char_is_name(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '-' || c == '_' || c == '.';
}

static bool name_is_valid(const char *s, const char *extra, size_t max) {
        size_t n = strlen(s);

        if (n == 0 || n > max || s[0] == '-' || s[0] == '.')
                return false;
        for (; *s; s++)
                if (!char_is_name(*s) && !strchr(extra, *s))
                        return false;
        return true;
}

const char *ispec_check_app_id(const char *s) {
        return app_id_is_valid(s) ? NULL :
                "an app id (lowercase letters, digits and '-', not starting with '-', at most 63 characters)";
}

const char *ispec_check_dockerfile(const char *s) {
        return infraspec_dockerfile_is_valid(s) ? NULL :
                "a relative path inside the app directory (no leading '/' or '-', no \"..\", at most 255 characters)";
}

const char *ispec_check_relative_path(const char *s) {
        return path_is_inside(s, INFRASPEC_MAX_STRING, true) ? NULL :
                "a relative path inside the app directory (no leading '/' or '-', no \"..\")";
}

const char *ispec_check_absolute_path(const char *s) {
        return s[0] == '/' && !strchr(s, ' ') ? NULL : "an absolute path (starting with '/')";
}

const char *ispec_check_url_path(const char *s) {
        return s[0] == '/' && !strpbrk(s, " \t") ? NULL : "a URL path starting with '/'";
}

const char *ispec_check_git_url(const char *s) {
        return git_url_is_valid(s) ? NULL :
                "a git URL (https://, http://, ssh://, file://, user@host:path or an absolute path)";
}

const char *ispec_check_git_ref(const char *s) {
        return git_ref_is_valid(s) ? NULL : "a valid git branch name";
}

const char *ispec_check_web_url(const char *s) {
        return (strncmp(s, "https://", 8) == 0 || strncmp(s, "http://", 7) == 0) && !strchr(s, ' ') ? NULL :
                "an http:// or https:// URL";
}

const char *ispec_check_host(const char *s) {
        return name_is_valid(s, ":*", 253) ? NULL : "a host name";
}

const char *ispec_check_name(const char *s) {
        return name_is_valid(s, "/:", 253) ? NULL :
                "a name (letters, digits, '-', '_', '.', '/', ':', not starting with '-' or '.')";
}

const char *ispec_check_database(const char *s) {
        return name_is_valid(s, "", 63) ? NULL :
                "a database name (letters, digits, '-', '_', '.', not starting with '-', at most 63 characters)";
}

const char *ispec_check_provider(const char *s) {
        static const char *const providers[] = { "minio", "r2", "s3", "gcs", "spaces" };

        for (size_t i = 0; i < ELEMENTSOF(providers); i++)
                if (streq(s, providers[i]))
                        return NULL;
        return "one of minio, r2, s3, gcs, spaces";
}

/* digits, then one unit out of 'units' (optional if unit_optional). */
static bool quantity_is_valid(const char *s, const char *units, bool unit_optional, bool binary_suffix) {
        size_t digits = strspn(s, "0123456789");

        if (digits == 0 || digits > 12 || s[0] == '0')
                return false;
        s += digits;
        if (*s == '\0')
                return unit_optional;
        if (!strchr(units, *s))
                return false;
        s++;
        if (binary_suffix && *s == 'i')
                s++;
        return *s == '\0';
}

const char *ispec_check_duration(const char *s) {
        return quantity_is_valid(s, "smhd", false, false) ? NULL : "a duration like 30s, 5m, 2h or 1d";
}

const char *ispec_check_memory(const char *s) {
        return quantity_is_valid(s, "bkmgBKMG", true, false) ? NULL : "a memory size like 256m or 1g";
}

const char *ispec_check_size(const char *s) {
        return quantity_is_valid(s, "kKMGTPE", true, true) ? NULL : "a size like 500Mi or 10Gi";
}

const char *ispec_check_volume_name(const char *s) {
        return app_id_is_valid(s) ? NULL : "a volume name (lowercase letters, digits and '-', at most 63 characters)";
}

static bool cron_field_is_valid(const char *s, size_t n) {
        for (size_t i = 0; i < n; i++) {
                char c = s[i];

                if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                      strchr("*/,-?#", c)))
                        return false;
        }
        return n > 0;
}

/* Five fields (minute hour day-of-month month day-of-week) or a macro.
 * Only the shape is checked here; the timer code converts it. */
const char *ispec_check_cron(const char *s) {
        static const char *const macros[] = {
                "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly",
        };
        static const char *const expected = "a cron expression (five fields like \"*/5 * * * *\" or @hourly, @daily, ...)";
        unsigned fields = 0;

        if (s[0] == '@') {
                for (size_t i = 0; i < ELEMENTSOF(macros); i++)
                        if (streq(s, macros[i]))
                                return NULL;
                return expected;
        }
        for (const char *p = s; *p;) {
                size_t n;

                p += strspn(p, " \t");
                n = strcspn(p, " \t");
                if (n == 0)
                        break;
                if (!cron_field_is_valid(p, n) || ++fields > 5)
                        return expected;
                p += n;
        }
        return fields == 5 ? NULL : expected;
}

bool ispec_env_name_is_valid(const char *s, size_t n) {
        if (n == 0 || n > 255 || (s[0] >= '0' && s[0] <= '9'))
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];

                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
                        return false;
        }
        return true;
}
