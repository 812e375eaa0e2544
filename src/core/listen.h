/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdint.h>

#include "http-server.h"

/* Hand the HTTP server its sockets: the ones systemd passed us named "http"
 * (socket activation), else a socket bound to address:port. */
int listen_setup(HttpServer *http, const char *address, uint16_t port);
