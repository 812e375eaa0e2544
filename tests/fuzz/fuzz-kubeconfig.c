/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A kubeconfig (KUBECONFIG or ~/.kube/config): YAML with inline base64
 * certificates and keys, and names of files relative to its directory. */
#include <fcntl.h>
#include <unistd.h>

#include "fuzz.h"
#include "kube-config.h"
#include "utf8.h"

static char dir[] = "/tmp/norn-fuzz-kubeconfig-XXXXXX";
static char path[sizeof(dir) + 16];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        fuzz_quiet();
        if (!mkdtemp(dir))
                abort();
        snprintf(path, sizeof(path), "%s/config", dir);
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(kube_config_freep) KubeConfig *c = NULL;
        _cleanup_free_ char *error = NULL, *desc = NULL;
        int fd, r;

        if (size > 256 * 1024)
                return 0;
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || write(fd, data, size) != (ssize_t) size)
                abort();
        close(fd);

        r = kube_config_load_kubeconfig(path, "default", &c, &error);
        if (r < 0) {
                FUZZ_CHECK(!c);
                FUZZ_CHECK(error && *error && !strchr(error, '\n'));
                return 0;
        }
        FUZZ_CHECK(c && !error);
        FUZZ_CHECK(c->server && c->namespace && kube_name_is_valid(c->namespace));
        FUZZ_CHECK(strncmp(c->server, "https://", 8) == 0 || strncmp(c->server, "http://", 7) == 0);
        FUZZ_CHECK(c->server[strlen(c->server) - 1] != '/');

        r = kube_config_describe(c, &desc);
        FUZZ_CHECK(r >= 0 && desc);
        /* Nothing secret in the description. */
        if (c->token && strlen(c->token) >= 8)
                FUZZ_CHECK(!strstr(desc, c->token));
        return 0;
}
