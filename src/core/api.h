/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "http-server.h"

/* The HTTP API and the /ws endpoint; userdata is the Manager. */
int api_handle_request(const HttpRequest *req, json_t **ret_body, void *userdata);
int api_ws_connected(HttpWsClient *c, const HttpRequest *upgrade_req, void *userdata);
void api_ws_message(HttpWsClient *c, const char *text, size_t size, void *userdata);
void api_ws_closed(HttpWsClient *c, void *userdata);

/* {"error": message, "code": code} */
json_t *api_error(const char *code, const char *message);
