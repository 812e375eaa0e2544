/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <systemd/sd-event.h>

#include "bus-auth.h"
#include "bus-error.h"
#include "log.h"
#include "manager.h"

#define POLKIT_NAME "org.freedesktop.PolicyKit1"
#define POLKIT_PATH "/org/freedesktop/PolicyKit1/Authority"
#define POLKIT_INTERFACE "org.freedesktop.PolicyKit1.Authority"
#define POLKIT_ALLOW_USER_INTERACTION 1U

/* One authorization in flight: first the bus daemon is asked who the caller
 * is, then (unless that already decides) polkit. The query owns its pending
 * call's slot and is freed by whoever ends it: the reply callback that
 * answers the call, or the event loop's exit. Not a floating slot freed with
 * the bus: q->call pins the bus, so the bus would never be freed and neither
 * would a query still pending at shutdown. */
typedef struct AuthQuery {
        Manager *manager;
        sd_bus_message *call;
        sd_bus_slot *slot;              /* the question asked now */
        sd_event_source *exit_source;   /* answers and frees it when nornd exits first */
        BusAuthorizedFunc fn;
        BusCaller caller;        /* asked once, passed on to fn and the denial */
        char *action;
        bool fallback_allows;    /* what the answer is when polkit is absent */
        bool interactive;        /* the caller allowed interactive authorization */
} AuthQuery;

static void auth_query_free(AuthQuery *q) {
        if (!q)
                return;
        /* Dropping the slot forgets a pending question; its reply is ignored. */
        sd_bus_slot_unref(q->slot);
        sd_event_source_disable_unref(q->exit_source);
        sd_bus_message_unref(q->call);
        free(q->caller.gids);
        free(q->action);
        free(q);
}

static const char *action_verb(const char *action) {
        if (streq(action, NORN_ACTION_DEPLOY))
                return "deploy or cancel";
        if (streq(action, NORN_ACTION_ROLLBACK))
                return "roll back or restore";
        return "read deployment logs";
}

static int deny(sd_bus_error *error, const char *action, uid_t uid, const char *why) {
        return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                 "Access denied: uid %u is not allowed to %s (polkit action %s): %s.", (unsigned) uid,
                                 action_verb(action), action, why);
}

static int read_gids(sd_bus_message *reply, BusCaller *caller) {
        const uint32_t *gids;
        size_t size;
        int r;

        r = sd_bus_message_enter_container(reply, 'v', "au");
        if (r < 0)
                return r;
        r = sd_bus_message_read_array(reply, 'u', (const void **) &gids, &size);
        if (r < 0)
                return r;
        free(caller->gids);
        caller->n_gids = size / sizeof(uint32_t);
        caller->gids = calloc(caller->n_gids ?: 1, sizeof(gid_t));
        if (!caller->gids)
                return -ENOMEM;
        for (size_t i = 0; i < caller->n_gids; i++)
                caller->gids[i] = (gid_t) gids[i];
        caller->gids_known = true;
        return sd_bus_message_exit_container(reply);
}

/* The sender's uid and groups from the bus daemon's GetConnectionCredentials
 * answer. Not sd_bus_query_sender_creds(): libsystemd reads only UnixUserID
 * from the bus, and groups asked with SD_BUS_CREDS_AUGMENT come from
 * /proc/<pid>, which another process may have taken by the time it is read.
 * dbus-daemon (since 1.12) and dbus-broker answer UnixGroupIDs from the
 * socket. */
static int caller_parse(sd_bus_message *reply, BusCaller *ret) {
        BusCaller c = { .uid = (uid_t) -1 };
        bool has_uid = false;
        int r;

        r = sd_bus_message_enter_container(reply, 'a', "{sv}");
        while (r >= 0) {
                const char *key;

                r = sd_bus_message_enter_container(reply, 'e', "sv");
                if (r <= 0)
                        break;
                r = sd_bus_message_read(reply, "s", &key);
                if (r < 0)
                        break;
                if (streq(key, "UnixUserID")) {
                        uint32_t u;

                        r = sd_bus_message_read(reply, "v", "u", &u);
                        c.uid = (uid_t) u;
                        has_uid = r >= 0;
                } else if (streq(key, "UnixGroupIDs"))
                        r = read_gids(reply, &c);
                else
                        r = sd_bus_message_skip(reply, "v");
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(reply);
        if (r >= 0 && !has_uid)
                r = -ENODATA;
        if (r < 0) {
                free(c.gids);
                return r;
        }
        *ret = c;
        return 0;
}

static bool caller_in_group(const BusCaller *caller, gid_t gid) {
        for (size_t i = 0; i < caller->n_gids; i++)
                if (caller->gids[i] == gid)
                        return true;
        return false;
}

/* Runs fn from a reply callback: its error becomes the call's answer. */
static void run_authorized(AuthQuery *q) {
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        int r;

        r = q->fn(q->manager, q->call, &q->caller, &e);
        if (sd_bus_error_is_set(&e))
                (void) sd_bus_reply_method_error(q->call, &e);
        else if (r < 0)
                (void) sd_bus_reply_method_errno(q->call, r, NULL);
}

static void reply_denied(AuthQuery *q, const char *why) {
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;

        deny(&e, q->action, q->caller.uid, why);
        (void) sd_bus_reply_method_error(q->call, &e);
}

static void polkit_answer(AuthQuery *q, sd_bus_message *reply) {
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
                        return;
                }
                log_warning("polkit CheckAuthorization for %s failed: %s", q->action, strna(e->message));
                reply_denied(q, "polkit could not be asked");
                return;
        }

        r = sd_bus_message_enter_container(reply, 'r', "bba{ss}");
        if (r >= 0)
                r = sd_bus_message_read(reply, "bb", &authorized, &challenge);
        if (r < 0) {
                log_warning_errno(r, "Malformed answer from polkit: %m");
                reply_denied(q, "polkit gave a malformed answer");
                return;
        }
        if (authorized)
                run_authorized(q);
        else if (challenge && !q->interactive)
                (void) sd_bus_reply_method_errorf(q->call, SD_BUS_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED,
                                                  "Authentication is required to %s (polkit action %s); "
                                                  "allow interactive authorization.",
                                                  action_verb(q->action), q->action);
        else if (challenge)
                /* Interaction was allowed, yet polkit still wants a challenge: it
                 * found no authentication agent for the caller to ask. */
                reply_denied(q, "polkit requires authentication, but no polkit authentication agent "
                                "is running for the caller");
        else
                reply_denied(q, "polkit refused");
}

static int on_polkit_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        AuthQuery *q = userdata;

        q->slot = sd_bus_slot_unref(q->slot);
        polkit_answer(q, reply);
        auth_query_free(q);
        return 0;
}

/* The caller is neither root nor us: polkit decides, the admin group only
 * where polkit is absent. */
static int ask_polkit(AuthQuery *q) {
        int r;

        /* Groups the bus did not vouch for allow nothing. */
        q->fallback_allows = q->manager->config.has_admin_gid && q->caller.gids_known &&
                             caller_in_group(&q->caller, q->manager->config.admin_gid);

        r = sd_bus_call_method_async(sd_bus_message_get_bus(q->call), &q->slot, POLKIT_NAME, POLKIT_PATH,
                                     POLKIT_INTERFACE, "CheckAuthorization", on_polkit_reply, q,
                                     "(sa{sv})sa{ss}us", "system-bus-name", 1, "name", "s",
                                     sd_bus_message_get_sender(q->call), q->action, 0,
                                     q->interactive ? POLKIT_ALLOW_USER_INTERACTION : 0U, "");
        if (r < 0)
                return log_warning_errno(r, "Cannot ask polkit: %m");
        return 0;
}

/* Decides on the bus daemon's answer. Returns > 0 when polkit was asked (the
 * query lives on), 0 when the call was answered here. */
static int creds_answer(AuthQuery *q, sd_bus_message *reply) {
        const sd_bus_error *e;
        int r;

        e = sd_bus_message_get_error(reply);
        if (e) {
                log_debug("Cannot get the credentials of %s: %s", strna(sd_bus_message_get_sender(q->call)),
                          strna(e->message));
                (void) sd_bus_reply_method_errorf(q->call, SD_BUS_ERROR_ACCESS_DENIED, "Cannot tell who the caller is.");
                return 0;
        }
        r = caller_parse(reply, &q->caller);
        if (r == -ENOMEM) {
                (void) sd_bus_reply_method_errno(q->call, r, NULL);
                return 0;
        }
        if (r < 0) {
                log_debug_errno(r, "Malformed credentials of %s from the bus: %m",
                                strna(sd_bus_message_get_sender(q->call)));
                (void) sd_bus_reply_method_errorf(q->call, SD_BUS_ERROR_ACCESS_DENIED, "Cannot tell who the caller is.");
                return 0;
        }

        if (q->caller.uid == 0 || (q->manager->config.user_mode && q->caller.uid == geteuid())) {
                run_authorized(q);
                return 0;
        }

        if (ask_polkit(q) < 0) {
                reply_denied(q, "polkit could not be asked");
                return 0;
        }
        return 1;
}

static int on_creds_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        AuthQuery *q = userdata;

        q->slot = sd_bus_slot_unref(q->slot);
        if (creds_answer(q, reply) == 0)
                auth_query_free(q);
        return 0;
}

static int on_nornd_exit(sd_event_source *s, void *userdata) {
        AuthQuery *q = userdata;

        /* Runs before the bus is flushed and closed, so the caller hears why. */
        (void) sd_bus_reply_method_errorf(q->call, NORN_ERROR_UNAVAILABLE,
                                          "nornd is shutting down; the call was not authorized.");
        auth_query_free(q);
        return 0;
}

int bus_authorize(Manager *m, sd_bus_message *call, const char *action, BusAuthorizedFunc fn,
                  sd_bus_error *error) {
        const char *sender;
        AuthQuery *q;
        int r;

        sender = sd_bus_message_get_sender(call);
        if (!sender)
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED, "Cannot tell who the caller is.");

        q = calloc(1, sizeof(*q));
        if (!q)
                return -ENOMEM;
        q->manager = m;
        q->fn = fn;
        q->call = sd_bus_message_ref(call);
        q->caller.uid = (uid_t) -1;
        q->interactive = sd_bus_message_get_allow_interactive_authorization(call) > 0;
        q->action = strdup(action);
        if (!q->action) {
                auth_query_free(q);
                return -ENOMEM;
        }
        r = sd_event_add_exit(m->event, &q->exit_source, on_nornd_exit, q);
        if (r >= 0)
                /* Before sd-bus's own exit source flushes and closes the bus. */
                r = sd_event_source_set_priority(q->exit_source, SD_EVENT_PRIORITY_IMPORTANT);
        if (r < 0) {
                auth_query_free(q);
                return r;
        }

        /* Asked without waiting: the bus daemon answers from its own loop,
         * and nornd's must keep serving everything else meanwhile. */
        r = sd_bus_call_method_async(sd_bus_message_get_bus(call), &q->slot, "org.freedesktop.DBus",
                                     "/org/freedesktop/DBus", "org.freedesktop.DBus", "GetConnectionCredentials",
                                     on_creds_reply, q, "s", sender);
        if (r < 0) {
                auth_query_free(q);
                return log_warning_errno(r, "Cannot ask the bus for the credentials of %s: %m", sender);
        }
        return 1;
}

int bus_caller_describe(const BusCaller *caller, sd_bus_message *call, char **ret) {
        if (asprintf(ret, "uid %u (D-Bus %s)", (unsigned) caller->uid, strna(sd_bus_message_get_sender(call))) < 0)
                return -ENOMEM;
        return 0;
}
