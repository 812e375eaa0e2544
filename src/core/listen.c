/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>

#include "listen.h"
#include "log.h"

static void strv_free(char **l) {
        for (char **i = l; i && *i; i++)
                free(*i);
        free(l);
}

int listen_setup(HttpServer *http, const char *address, uint16_t port) {
        char **names = NULL;
        int n, r, adopted = 0;

        n = sd_listen_fds_with_names(true, &names);
        if (n < 0)
                return log_error_errno(n, "Failed to read passed file descriptors: %m");

        for (int i = 0; i < n; i++) {
                int fd = SD_LISTEN_FDS_START + i;

                /* Without FileDescriptorName= systemd names them "unknown". */
                if (!streq(names[i], "http") && !streq(names[i], "unknown")) {
                        log_warning("Ignoring passed file descriptor named '%s'.", names[i]);
                        (void) close(fd);
                        continue;
                }
                if (sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0) {
                        log_warning("Passed file descriptor %d is not a listening stream socket, ignoring.", fd);
                        (void) close(fd);
                        continue;
                }
                r = http_server_add_listen_fd(http, fd);
                if (r < 0) {
                        strv_free(names);
                        return log_error_errno(r, "Failed to use passed socket: %m");
                }
                adopted++;
        }
        strv_free(names);

        if (adopted > 0) {
                log_info("Listening on %d socket(s) passed by systemd.", adopted);
                return 0;
        }

        r = http_server_listen(http, address, port);
        if (r < 0)
                return log_error_errno(r, "Failed to listen on %s:%u: %m", address, port);
        log_info("Listening on %s:%u.", address, port);
        return 0;
}
