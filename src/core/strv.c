/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strv.h"

char **strv_free(char **l) {
        for (char **i = l; i && *i; i++)
                free(*i);
        free(l);
        return NULL;
}

size_t strv_length(char *const *l) {
        size_t n = 0;
        while (l && l[n])
                n++;
        return n;
}

static int strv_push(char ***l, char *s) {
        size_t n = strv_length(*l);
        char **c = realloc(*l, sizeof(char *) * (n + 2));
        if (!c)
                return -ENOMEM;
        c[n] = s;
        c[n + 1] = NULL;
        *l = c;
        return 0;
}

int strv_extend(char ***l, const char *s) {
        char *c = strdup(s);
        if (!c || strv_push(l, c) < 0) {
                free(c);
                return -ENOMEM;
        }
        return 0;
}

int strv_extendf(char ***l, const char *format, ...) {
        va_list ap;
        char *c;
        int r;

        va_start(ap, format);
        r = vasprintf(&c, format, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        if (strv_push(l, c) < 0) {
                free(c);
                return -ENOMEM;
        }
        return 0;
}

int strv_extend_many(char ***l, ...) {
        va_list ap;
        const char *s;
        int r = 0;

        va_start(ap, l);
        while ((s = va_arg(ap, const char *)))
                if ((r = strv_extend(l, s)) < 0)
                        break;
        va_end(ap);
        return r;
}

char **strv_copy(char *const *l) {
        char **c = calloc(1, sizeof(char *));
        if (!c)
                return NULL;
        for (size_t i = 0; l && l[i]; i++)
                if (strv_extend(&c, l[i]) < 0)
                        return strv_free(c);
        return c;
}

bool strv_contains(char *const *l, const char *s) {
        for (size_t i = 0; l && l[i]; i++)
                if (streq(l[i], s))
                        return true;
        return false;
}

static char **env_find(char **env, const char *name) {
        size_t n = strlen(name);
        for (char **i = env; i && *i; i++)
                if (strncmp(*i, name, n) == 0 && (*i)[n] == '=')
                        return i;
        return NULL;
}

int strv_env_set(char ***env, const char *name, const char *value) {
        char **slot = env_find(*env, name), *c;

        if (asprintf(&c, "%s=%s", name, value) < 0)
                return -ENOMEM;
        if (slot) {
                free(*slot);
                *slot = c;
                return 0;
        }
        if (strv_push(env, c) < 0) {
                free(c);
                return -ENOMEM;
        }
        return 0;
}

const char *strv_env_get(char *const *env, const char *name) {
        char **slot = env_find((char **) env, name);
        return slot ? *slot + strlen(name) + 1 : NULL;
}
