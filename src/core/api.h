/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "http-server.h"

typedef struct Manager Manager;

/* The HTTP API and the /ws endpoint; userdata is the Manager.
 *
 * JSON in and out; every error is {"error": message, "code": code}.
 * Open: GET /api/health, GET /api/version, POST /api/webhooks/push (signed
 * with the app's repo.webhookSecret instead), and every path outside /api/
 * (the dashboard's files, api-static.c; not JSON). Everything else needs
 * "Authorization: Bearer <token>" when a token is configured (401 when
 * missing or wrong), and a client on this host when none is (403). The
 * routes are listed in api.c; /ws (the same token, also as a first
 * message) is described in api-ws.c. */
int api_handle_request(const HttpRequest *req, json_t **ret_body, void *userdata);
/* The check_head callback: a request with a body that will not be
 * authorized is refused before its body is read. */
int api_check_head(const HttpRequest *req, json_t **ret_body, void *userdata);
int api_ws_connected(HttpWsClient *c, const HttpRequest *upgrade_req, void *userdata);
void api_ws_message(HttpWsClient *c, const char *text, size_t size, void *userdata);
void api_ws_closed(HttpWsClient *c, void *userdata);

/* {"error": message, "code": code} */
json_t *api_error(const char *code, const char *message);

/* For /ws and anything else that authenticates like the API: 0 when req may
 * use it, else the HTTP status (401, 403) with *ret_body set. */
int api_authorize(Manager *m, const HttpRequest *req, json_t **ret_body);
/* token (size bytes, e.g. from a query parameter) is the configured API
 * token; constant time. false when no token is configured. */
bool api_token_matches(Manager *m, const char *token, size_t size);
