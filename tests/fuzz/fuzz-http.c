/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Bytes a client sends to the HTTP server, through the real path: nornd's
 * own head check (http-listen.c), libwebsockets' parser, http-request.c's
 * request assembly and body handling, WebSocket upgrade and frames
 * (http-ws.c). One in-process server on a unix socket; each input is one
 * connection that sends the input, half-closes and reads what comes back.
 * The handler does what routes do with a request: headers, query, body. */
#include <errno.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>
#include <systemd/sd-event.h>

#include "api-internal.h"
#include "fuzz.h"
#include "http-internal.h"
#include "utf8.h"

static sd_event *event;
static HttpServer *server;
static struct sockaddr_un address = { .sun_family = AF_UNIX };
static socklen_t address_len;

/* Path and query reach handlers percent-encoded (http-server.h). */
static void check_encoded(const char *s) {
        for (; s && *s; s++)
                FUZZ_CHECK((unsigned char) *s > 0x20 && (unsigned char) *s < 0x7f);
}

static int handle_request(const HttpRequest *req, json_t **ret_body, void *userdata) {
        static const char *const allowed[] = { "limit", "before", "since", "appId", NULL };
        static const char *const headers[] = { "x-github-delivery", "x-hub-signature-256", "host", "origin", NULL };
        _cleanup_(api_query_done) ApiQuery q = {};
        json_t *obj = NULL;
        int status;

        FUZZ_CHECK(req->method && req->path && req->path[0] == '/');
        check_encoded(req->path);
        check_encoded(req->query);
        FUZZ_CHECK(!req->body || req->body[req->body_size] == 0);
        for (const char *const *h = headers; *h; h++) {
                char *v = NULL;
                int r = http_request_get_header(req, *h, &v);

                FUZZ_CHECK(r == 0 ? v != NULL : (r == -ENOENT || r == -E2BIG));
                free(v);
        }

        status = api_query_parse(req, allowed, &q, ret_body);
        if (status != 0)
                return status;
        if (streq(req->method, "POST")) {
                status = api_parse_body_object(req, (const char *const[]) { "ref", NULL }, &obj, ret_body);
                if (status != 0)
                        return status;
        }
        *ret_body = json_pack("{s:s, s:o}", "path", req->path, "body", obj ?: json_null());
        return 200;
}

static int ws_connected(HttpWsClient *c, const HttpRequest *req, void *userdata) {
        check_encoded(req->path);
        check_encoded(req->query);
        return req->query && strstr(req->query, "refuse") ? -EACCES : 0;
}

static void ws_message(HttpWsClient *c, const char *text, size_t size, void *userdata) {
        FUZZ_CHECK(text[size] == 0);
        (void) http_ws_client_send(c, text, size);
}

static void ws_closed(HttpWsClient *c, void *userdata) {
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        static const HttpServerCallbacks cb = {
                .handle_request = handle_request,
                .ws_connected = ws_connected,
                .ws_message = ws_message,
                .ws_closed = ws_closed,
        };
        int fd;

        fuzz_quiet();
        if (sd_event_new(&event) < 0 || http_server_new(event, &cb, NULL, &server) < 0)
                abort();
        /* An abstract socket: nothing on disk, gone with the process. */
        snprintf(address.sun_path + 1, sizeof(address.sun_path) - 1, "norn-fuzz-http-%d", (int) getpid());
        address_len = offsetof(struct sockaddr_un, sun_path) + 1 + strlen(address.sun_path + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *) &address, address_len) < 0 || listen(fd, 16) < 0 ||
            http_server_add_listen_fd(server, fd) < 0)
                abort();
        return 0;
}

/* Sends the input as the server takes it, half-closes, and runs the loop
 * until the server has answered and closed, or nothing has happened for a
 * few rounds (a kept-alive connection waiting for more). */
static void exchange(int fd, const uint8_t *data, size_t size) {
        size_t sent = 0;
        unsigned idle = 0;
        bool shut = false;
        char buf[16384];

        for (unsigned i = 0; i < 4000 && idle < 3; i++) {
                ssize_t n;
                int r;

                if (sent < size) {
                        n = send(fd, data + sent, size - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
                        if (n > 0)
                                sent += (size_t) n;
                        else if (n < 0 && errno != EAGAIN)
                                sent = size; /* the server hung up: it has said what it had to say */
                }
                if (sent == size && !shut) {
                        (void) shutdown(fd, SHUT_WR);
                        shut = true;
                }
                r = sd_event_run(event, 2000);
                FUZZ_CHECK(r >= 0);
                n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
                if (n == 0)
                        return;
                idle = shut && n < 0 ? idle + 1 : 0;
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        int fd;

        if (size > 128 * 1024)
                return 0;
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *) &address, address_len) < 0)
                abort();
        exchange(fd, data, size);
        close(fd);

        /* A head that never completed before the half-close waits for its
         * deadline (HTTP_HEAD_TIMEOUT_SEC, then 408): drop it now, as that
         * timer would, so that connections do not pile up across inputs.
         * Then let lws notice the close of the others and free them. */
        while (server->heads)
                http_head_free(server->heads);
        for (unsigned i = 0; i < 50 && http_server_n_connections(server) > 0; i++)
                FUZZ_CHECK(sd_event_run(event, 1000) >= 0);
        return 0;
}
