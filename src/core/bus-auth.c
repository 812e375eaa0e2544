/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bus-auth.h"
#include "log.h"
#include "manager.h"

#define POLKIT_NAME "org.freedesktop.PolicyKit1"
#define POLKIT_PATH "/org/freedesktop/PolicyKit1/Authority"
#define POLKIT_INTERFACE "org.freedesktop.PolicyKit1.Authority"
#define POLKIT_ALLOW_USER_INTERACTION 1U

typedef struct AuthQuery {
        Manager *manager;
        sd_bus_message *call;
        BusAuthorizedFunc fn;
        char *action;
        bool fallback_allows;    /* what the answer is when polkit is absent */
        bool interactive;        /* the caller allowed interactive authorization */
} AuthQuery;

static void auth_query_free(void *userdata) {
        AuthQuery *q = userdata;

        sd_bus_message_unref(q->call);
        free(q->action);
        free(q);
}

static int deny(sd_bus_error *error, const char *action, uid_t uid, const char *why) {
        return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                 "Access denied: uid %u is not allowed to %s (polkit action %s): %s.", (unsigned) uid,
                                 streq(action, NORN_ACTION_DEPLOY) ? "deploy or cancel"
                                                                   : "roll back or restore",
                                 action, why);
}

static bool creds_in_group(sd_bus_creds *creds, gid_t gid) {
        const gid_t *gids;
        gid_t g;
        int n;

        if (sd_bus_creds_get_egid(creds, &g) >= 0 && g == gid)
                return true;
        if (sd_bus_creds_get_gid(creds, &g) >= 0 && g == gid)
                return true;
        n = sd_bus_creds_get_supplementary_gids(creds, &gids);
        for (int i = 0; i < n; i++)
                if (gids[i] == gid)
                        return true;
        return false;
}

/* Runs fn from a reply callback: its error becomes the call's answer. */
static void run_authorized(AuthQuery *q) {
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        int r;

        r = q->fn(q->manager, q->call, &e);
        if (sd_bus_error_is_set(&e))
                (void) sd_bus_reply_method_error(q->call, &e);
        else if (r < 0)
                (void) sd_bus_reply_method_errno(q->call, r, NULL);
}

static void reply_denied(AuthQuery *q, const char *why) {
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *creds = NULL;
        uid_t uid = (uid_t) -1;

        if (sd_bus_query_sender_creds(q->call, SD_BUS_CREDS_EUID, &creds) >= 0)
                (void) sd_bus_creds_get_euid(creds, &uid);
        deny(&e, q->action, uid, why);
        (void) sd_bus_reply_method_error(q->call, &e);
}

static int on_polkit_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        AuthQuery *q = userdata;
        const sd_bus_error *e;
        int authorized, challenge, r;

        e = sd_bus_message_get_error(reply);
        if (e) {
                /* No polkit on this bus: the configured fallback decides. */
                if (sd_bus_error_has_names(e, SD_BUS_ERROR_SERVICE_UNKNOWN, SD_BUS_ERROR_NAME_HAS_NO_OWNER)) {
                        if (q->fallback_allows)
                                run_authorized(q);
                        else
                                reply_denied(q, "polkit is not running, and the caller is neither root "
                                                "nor in NORN_ADMIN_GROUP");
                        return 0;
                }
                log_warning("polkit CheckAuthorization for %s failed: %s", q->action, strna(e->message));
                reply_denied(q, "polkit could not be asked");
                return 0;
        }

        r = sd_bus_message_enter_container(reply, 'r', "bba{ss}");
        if (r >= 0)
                r = sd_bus_message_read(reply, "bb", &authorized, &challenge);
        if (r < 0) {
                log_warning_errno(r, "Malformed answer from polkit: %m");
                reply_denied(q, "polkit gave a malformed answer");
                return 0;
        }
        if (authorized)
                run_authorized(q);
        else if (challenge && !q->interactive)
                (void) sd_bus_reply_method_errorf(q->call, SD_BUS_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED,
                                                  "Authentication is required to %s (polkit action %s); "
                                                  "allow interactive authorization.",
                                                  streq(q->action, NORN_ACTION_DEPLOY) ? "deploy or cancel"
                                                                                       : "roll back or restore",
                                                  q->action);
        else if (challenge)
                /* Interaction was allowed, yet polkit still wants a challenge: it
                 * found no authentication agent for the caller to ask. */
                reply_denied(q, "polkit requires authentication, but no polkit authentication agent "
                                "is running for the caller");
        else
                reply_denied(q, "polkit refused");
        return 0;
}

int bus_authorize(Manager *m, sd_bus_message *call, const char *action, BusAuthorizedFunc fn,
                  sd_bus_error *error) {
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *creds = NULL;
        _cleanup_(sd_bus_slot_unrefp) sd_bus_slot *slot = NULL;
        const char *sender;
        AuthQuery *q;
        uid_t uid;
        int r;

        r = sd_bus_query_sender_creds(call, SD_BUS_CREDS_EUID | SD_BUS_CREDS_EGID | SD_BUS_CREDS_GID |
                                                    SD_BUS_CREDS_SUPPLEMENTARY_GIDS | SD_BUS_CREDS_AUGMENT,
                                      &creds);
        if (r < 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED, "Cannot tell who the caller is.");
        r = sd_bus_creds_get_euid(creds, &uid);
        if (r < 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED, "Cannot tell who the caller is.");

        if (uid == 0 || (m->config.user_mode && uid == geteuid()))
                return fn(m, call, error);

        sender = sd_bus_message_get_sender(call);
        if (!sender)
                return deny(error, action, uid, "no sender name");

        q = calloc(1, sizeof(*q));
        if (!q)
                return -ENOMEM;
        q->manager = m;
        q->fn = fn;
        q->call = sd_bus_message_ref(call);
        q->fallback_allows = m->config.has_admin_gid && creds_in_group(creds, m->config.admin_gid);
        q->interactive = sd_bus_message_get_allow_interactive_authorization(call) > 0;
        q->action = strdup(action);
        if (!q->action) {
                auth_query_free(q);
                return -ENOMEM;
        }

        r = sd_bus_call_method_async(sd_bus_message_get_bus(call), &slot, POLKIT_NAME, POLKIT_PATH,
                                     POLKIT_INTERFACE, "CheckAuthorization", on_polkit_reply, q,
                                     "(sa{sv})sa{ss}us", "system-bus-name", 1, "name", "s", sender, action, 0,
                                     q->interactive ? POLKIT_ALLOW_USER_INTERACTION : 0U, "");
        if (r < 0) {
                auth_query_free(q);
                return log_warning_errno(r, "Cannot ask polkit: %m");
        }
        /* The query lives as long as the pending call: freed after the reply
         * callback, or when the bus goes away first. */
        (void) sd_bus_slot_set_destroy_callback(slot, auth_query_free);
        (void) sd_bus_slot_set_floating(slot, 1);
        return 1;
}

int bus_caller_describe(sd_bus_message *call, char **ret) {
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *creds = NULL;
        uid_t uid;
        int r;

        r = sd_bus_query_sender_creds(call, SD_BUS_CREDS_EUID, &creds);
        if (r >= 0)
                r = sd_bus_creds_get_euid(creds, &uid);
        if (r < 0)
                return r;
        if (asprintf(ret, "uid %u (D-Bus %s)", (unsigned) uid, strna(sd_bus_message_get_sender(call))) < 0)
                return -ENOMEM;
        return 0;
}
