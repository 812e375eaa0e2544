/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cron-internal.h"
#include "log.h"
#include "strv.h"

/* One operation on an app's pair of units, asynchronous from end to end:
 * install (inspect, stop, wait until unloaded, create) and remove (stop,
 * wait until unloaded). An operation of a CronTimers then records what it
 * did (cron-record.c) before it calls done(). */

#define UNLOAD_POLL_USEC (250 * CRON_USEC_PER_MSEC)
/* Longest wait for the manager in one operation; covers stopping a job. */
#define OP_TIMEOUT_USEC ((CRON_TIMEOUT_STOP_SEC + 45) * CRON_USEC_PER_SEC)

CronOp *cron_op_free(CronOp *op) {
        if (!op)
                return NULL;
        cron_op_unlink(op);
        for (size_t i = 0; i < OP_SLOTS; i++)
                sd_bus_slot_unref(op->slots[i]);
        sd_bus_slot_unref(op->removed_match);
        sd_bus_slot_unref(op->jobs_match);
        sd_event_source_disable_unref(op->poll);
        sd_event_source_disable_unref(op->timeout);
        sd_bus_message_unref(op->create);
        for (size_t i = 0; i < op->n_early; i++) {
                free(op->early[i].path);
                free(op->early[i].result);
        }
        unit_state_done(&op->timer_state);
        unit_state_done(&op->service_state);
        for (size_t i = 0; i < ELEMENTSOF(op->record_params); i++)
                free(op->record_params[i]);
        strv_free(op->argv);
        free(op->env_file);
        free(op->job);
        free(op->app);
        free(op->timer);
        free(op->service);
        free(op->timer_path);
        free(op->service_path);
        sd_bus_unref(op->bus);
        return mfree(op);
}

CronOp *cron_op_cancel(CronOp *op) {
        CronTimers *owner;
        _cleanup_free_ char *app = NULL;

        if (!op)
                return NULL;
        if (op->phase == PHASE_RECORD) {
                /* The query's callback frees it; the units are the new ones, the record
                 * will say so (or not, and the next check puts the recorded ones back). */
                op->orphaned = true;
                op->done = NULL;
                return NULL;
        }
        /* A deploy stopped half-way may have left the app without units: put the
         * recorded ones back (the record is still the last good deploy's). */
        owner = op->owner;
        if (owner && !owner->dead && op->phase > PHASE_INSPECT && !op->check)
                app = TAKE_PTR(op->app);
        cron_op_free(op);
        if (app)
                (void) cron_restore_start(owner, app, NULL, NULL);
        return NULL;
}

void cron_op_link(CronOp *op, CronTimers *c) {
        op->owner = c;
        op->next = c->ops;
        c->ops = op;
}

void cron_op_unlink(CronOp *op) {
        CronOp **p;

        if (!op->owner)
                return;
        for (p = &op->owner->ops; *p && *p != op; p = &(*p)->next)
                ;
        if (*p)
                *p = op->next;
        op->owner = NULL;
        op->next = NULL;
}

/* The end: exactly one done() call, then the op is gone. done() may free
 * the op's CronTimers: the op leaves it first, and a reference keeps it. */
void cron_op_finish(CronOp *op, int r, const char *format, ...) {
        CronTimers *owner = op->owner;
        _cleanup_free_ char *error = NULL, *app = NULL;
        va_list ap;

        if (r >= 0 && op->record_sql && op->phase != PHASE_RECORD) {
                op->result = r;
                cron_op_record(op);
                return;
        }
        if (owner) {
                cron_op_unlink(op);
                owner->n_ref++;
        }
        if (format) {
                va_start(ap, format);
                if (vasprintf(&error, format, ap) < 0)
                        error = NULL;
                va_end(ap);
        }
        if (r < 0)
                log_debug("cron %s: failed: %s", op->app, strna(error));
        else
                log_debug("cron %s: units %s", op->app, r > 0 ? "created" : op->install ? "in place" : "removed");
        if (op->done)
                op->done(r, r < 0 ? error ?: "out of memory" : error, op->userdata);
        app = TAKE_PTR(op->app);
        cron_op_free(op);
        if (owner) {
                if (!owner->dead && app)
                        cron_timers_op_ended(owner, app, r);
                cron_timers_unref(owner);
        }
}

static sd_bus_slot **op_slot(CronOp *op) {
        for (size_t i = 0; i < OP_SLOTS; i++)
                if (!op->slots[i]) {
                        op->pending++;
                        return &op->slots[i];
                }
        return NULL;
}

/* In a method reply callback: forget the call's slot. */
static void op_reply_seen(CronOp *op) {
        sd_bus_slot *current = sd_bus_get_current_slot(op->bus);

        for (size_t i = 0; i < OP_SLOTS; i++)
                if (op->slots[i] && op->slots[i] == current) {
                        op->slots[i] = sd_bus_slot_unref(op->slots[i]);
                        op->pending--;
                        return;
                }
}

static int op_call(CronOp *op, sd_bus_message_handler_t handler, const char *path, const char *interface,
                   const char *member, const char *types, ...) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        sd_bus_slot **slot = op_slot(op);
        va_list ap;
        int r;

        if (!slot)
                return -ENOBUFS;
        r = sd_bus_message_new_method_call(op->bus, &m, SYSTEMD_DEST, path, interface, member);
        if (r >= 0 && types) {
                va_start(ap, types);
                r = sd_bus_message_appendv(m, types, ap);
                va_end(ap);
        }
        if (r >= 0)
                r = sd_bus_call_async(op->bus, slot, m, handler, op, 0);
        if (r < 0)
                op->pending--;
        return r;
}

static void op_look(CronOp *op);

static int on_get_all(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        CronOp *op = userdata;
        bool in_place, busy;
        int r;

        op_reply_seen(op);
        if (sd_bus_message_is_method_error(m, NULL)) {
                cron_op_finish(op, -EIO, "cannot read the state of %s: %s", op->timer, bus_reply_error_text(m));
                return 0;
        }
        /* Replies arrive in call order: timer (Unit), service (Unit), service (Service). */
        r = unit_state_parse(m, op->pending == 2 ? &op->timer_state : &op->service_state);
        if (r < 0) {
                cron_op_finish(op, r, "cannot parse the state of %s", op->service);
                return 0;
        }
        if (op->pending > 0)
                return 0;

        /* The last run, in case it ended while nobody watched (nornd was down). */
        if (op->owner)
                cron_probe_start(op->owner, op->app, op->service, op->service_path);
        /* A queued job (a stop, say) would change them: not in place. */
        in_place = !op->timer_state.job && !op->service_state.job &&
                   streq_ptr(op->timer_state.load_state, "loaded") &&
                   streq_ptr(op->timer_state.active_state, "active") &&
                   streq_ptr(op->service_state.load_state, "loaded") && op->service_state.exec_argv &&
                   strv_length(op->service_state.exec_argv) == strv_length(op->argv) &&
                   streq_ptr(unit_extra_field(op->service_state.extra_fields, "NORN_CRON_SPEC"), op->spec);
        for (size_t i = 0; in_place && op->argv[i]; i++)
                in_place = streq(op->service_state.exec_argv[i], op->argv[i]);
        if (in_place) {
                cron_op_finish(op, 0, NULL);
                return 0;
        }
        busy = unit_active_state_is_running(op->service_state.active_state);
        if (op->sync == SYNC_IDLE && busy) {
                cron_op_finish(op, -EBUSY, "%s differs from its record while a job runs", op->service);
                return 0;
        }
        log_debug("cron %s: units %s, re-creating them", op->app,
                  streq_ptr(op->timer_state.load_state, "loaded") ? "differ from the record" : "missing");
        r = cron_op_begin_replace(op);
        if (r < 0)
                cron_op_finish(op, r, "cannot ask the service manager: %s", strerror(-r));
        return 0;
}

/* The units are kept when they match (see on_get_all()). */
int cron_op_inspect(CronOp *op) {
        int r;

        op->phase = PHASE_INSPECT;
        r = op_call(op, on_get_all, op->timer_path, DBUS_PROPERTIES, "GetAll", "s", SYSTEMD_UNIT);
        if (r >= 0)
                r = op_call(op, on_get_all, op->service_path, DBUS_PROPERTIES, "GetAll", "s", SYSTEMD_UNIT);
        if (r >= 0)
                r = op_call(op, on_get_all, op->service_path, DBUS_PROPERTIES, "GetAll", "s", SYSTEMD_SERVICE);
        return r;
}

static void op_job_finished(CronOp *op, const char *result) {
        if (streq(result, "done"))
                cron_op_finish(op, 1, NULL);
        else
                cron_op_finish(op, -EIO, "starting %s failed: job %s", op->timer, result);
}

static int on_job_removed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        CronOp *op = userdata;
        const char *path, *unit, *result;
        uint32_t id;

        if (op->phase != PHASE_CREATE || sd_bus_message_read(m, "uoss", &id, &path, &unit, &result) < 0 ||
            !streq(unit, op->timer))
                return 0;
        if (op->job) {
                if (streq(path, op->job))
                        op_job_finished(op, result);
                return 0;
        }
        /* Before the StartTransientUnit reply: keep it until we know our job. */
        if (op->n_early == EARLY_JOBS_MAX)
                return 0;
        op->early[op->n_early].path = strdup(path);
        op->early[op->n_early].result = strdup(result);
        op->n_early++;
        return 0;
}

static int on_created(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        CronOp *op = userdata;
        const char *job;

        op_reply_seen(op);
        if (sd_bus_message_is_method_error(m, NULL)) {
                cron_op_finish(op, -EIO, "cannot create %s and %s: %s", op->timer, op->service,
                               bus_reply_error_text(m));
                return 0;
        }
        if (sd_bus_message_read(m, "o", &job) < 0 || !(op->job = strdup(job))) {
                cron_op_finish(op, -EIO, "cannot create %s: bad reply from the service manager", op->timer);
                return 0;
        }
        for (size_t i = 0; i < op->n_early; i++)
                if (streq_ptr(op->early[i].path, job)) {
                        op_job_finished(op, strna(op->early[i].result));
                        return 0;
                }
        return 0;
}

static void op_create(CronOp *op) {
        sd_bus_slot **slot;
        int r;

        op->phase = PHASE_CREATE;
        slot = op_slot(op);
        r = slot ? sd_bus_call_async(op->bus, slot, op->create, on_created, op, 0) : -ENOBUFS;
        if (r < 0) {
                if (slot)
                        op->pending--;
                cron_op_finish(op, r, "cannot call StartTransientUnit: %s", strerror(-r));
        }
}

static void op_units_gone(CronOp *op) {
        op->poll = sd_event_source_disable_unref(op->poll);
        if (op->install)
                op_create(op);
        else
                cron_op_finish(op, 0, NULL);
}

static void op_looked(CronOp *op);

static int on_poll(sd_event_source *s, uint64_t usec, void *userdata) {
        CronOp *op = userdata;

        op->poll = sd_event_source_disable_unref(op->poll);
        op_look(op);
        return 0;
}

static void on_get_unit(CronOp *op, sd_bus_message *m, const char *unit, bool *gone) {
        op_reply_seen(op);
        if (sd_bus_message_is_method_error(m, NULL) && !bus_reply_error_is(m, "org.freedesktop.systemd1.NoSuchUnit")) {
                cron_op_finish(op, -EIO, "cannot look up %s: %s", unit, bus_reply_error_text(m));
                return;
        }
        /* Messages of the manager arrive in order: this answer is newer than any
         * UnitRemoved seen before it. */
        *gone = sd_bus_message_is_method_error(m, NULL);
        op_looked(op);
}

static int on_get_timer(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        CronOp *op = userdata;

        on_get_unit(op, m, op->timer, &op->timer_gone);
        return 0;
}

static int on_get_service(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        CronOp *op = userdata;

        on_get_unit(op, m, op->service, &op->service_gone);
        return 0;
}

static void reset_failed(CronOp *op, const char *unit) {
        /* A failed unit without CollectMode=inactive-or-failed (made by someone
         * else) would stay loaded; the answer does not matter. */
        (void) sd_bus_call_method_async(op->bus, NULL, SYSTEMD_DEST, SYSTEMD_PATH, SYSTEMD_MANAGER,
                                        "ResetFailedUnit", NULL, NULL, "s", unit);
}

/* Are the units still loaded? Asked after the stop, then every UNLOAD_POLL_USEC
 * until both are gone (UnitRemoved may tell us earlier). */
static void op_look(CronOp *op) {
        int r = 0;

        op->phase = PHASE_UNLOAD;
        if (!op->timer_gone) {
                reset_failed(op, op->timer);
                r = op_call(op, on_get_timer, SYSTEMD_PATH, SYSTEMD_MANAGER, "GetUnit", "s", op->timer);
        }
        if (r >= 0 && !op->service_gone) {
                reset_failed(op, op->service);
                r = op_call(op, on_get_service, SYSTEMD_PATH, SYSTEMD_MANAGER, "GetUnit", "s", op->service);
        }
        if (r < 0)
                cron_op_finish(op, r, "cannot ask the service manager: %s", strerror(-r));
        else if (op->pending == 0)
                op_looked(op);
}

static void op_looked(CronOp *op) {
        int r;

        if (op->pending > 0)
                return;
        if (op->timer_gone && op->service_gone) {
                op_units_gone(op);
                return;
        }
        if (op->poll)
                return;
        r = sd_event_add_time_relative(sd_bus_get_event(op->bus), &op->poll, CLOCK_MONOTONIC, UNLOAD_POLL_USEC, 0,
                                       on_poll, op);
        if (r < 0)
                cron_op_finish(op, r, "cannot arm a timer: %s", strerror(-r));
}

static int on_unit_removed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        CronOp *op = userdata;
        const char *unit;

        if ((op->phase != PHASE_STOP && op->phase != PHASE_UNLOAD) || sd_bus_message_read(m, "s", &unit) < 0)
                return 0;
        if (streq(unit, op->timer))
                op->timer_gone = true;
        else if (streq(unit, op->service))
                op->service_gone = true;
        else
                return 0;
        if (op->phase == PHASE_UNLOAD && op->pending == 0 && op->timer_gone && op->service_gone)
                op_units_gone(op);
        return 0;
}

static int on_stopped(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        CronOp *op = userdata;

        op_reply_seen(op);
        /* NoSuchUnit: it is not loaded, nothing to stop. */
        if (sd_bus_message_is_method_error(m, NULL) && !bus_reply_error_is(m, "org.freedesktop.systemd1.NoSuchUnit")) {
                cron_op_finish(op, -EIO, "cannot stop the units of %s: %s", op->app, bus_reply_error_text(m));
                return 0;
        }
        if (op->pending == 0)
                op_look(op);
        return 0;
}

static int on_match_installed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        CronOp *op = userdata;

        if (sd_bus_message_is_method_error(m, NULL) && op->install && op->phase <= PHASE_CREATE)
                cron_op_finish(op, -EIO, "cannot watch the service manager: %s", bus_reply_error_text(m));
        return 0;
}

static int on_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        CronOp *op = userdata;

        cron_op_finish(op, -ETIMEDOUT, "the service manager did not finish with %s in time (%s)", op->timer,
                       op->phase == PHASE_CREATE ? "starting the timer" : "waiting for the old units to go away");
        return 0;
}

int cron_op_begin_replace(CronOp *op) {
        int r;

        op->phase = PHASE_STOP;
        /* Subscribe makes the manager send UnitRemoved (and JobRemoved of jobs not
         * ours); repeated calls from one connection only get AlreadySubscribed. The
         * matches are in place before the manager gets the calls below. */
        r = sd_bus_call_method_async(op->bus, NULL, SYSTEMD_DEST, SYSTEMD_PATH, SYSTEMD_MANAGER, "Subscribe",
                                     NULL, NULL, NULL);
        if (r >= 0)
                r = sd_bus_add_match_async(op->bus, &op->removed_match,
                                           "type='signal',sender='" SYSTEMD_DEST "',path='" SYSTEMD_PATH "',"
                                           "interface='" SYSTEMD_MANAGER "',member='UnitRemoved'",
                                           on_unit_removed, on_match_installed, op);
        /* No argN filter on JobRemoved: it starts with a "u", and sd-bus only
         * matches argN locally when all arguments before it are strings. */
        if (r >= 0 && op->install)
                r = sd_bus_add_match_async(op->bus, &op->jobs_match,
                                           "type='signal',sender='" SYSTEMD_DEST "',path='" SYSTEMD_PATH "',"
                                           "interface='" SYSTEMD_MANAGER "',member='JobRemoved'",
                                           on_job_removed, on_match_installed, op);
        if (r >= 0)
                r = op_call(op, on_stopped, SYSTEMD_PATH, SYSTEMD_MANAGER, "StopUnit", "ss", op->timer, "replace");
        if (r >= 0)
                r = op_call(op, on_stopped, SYSTEMD_PATH, SYSTEMD_MANAGER, "StopUnit", "ss", op->service, "replace");
        return r;
}

int cron_op_new(sd_bus *bus, const char *app, bool install, CronDoneCallback done, void *userdata, CronOp **ret) {
        _cleanup_(cron_op_freep) CronOp *op = NULL;
        int r;

        if (!bus || !cron_app_is_valid(app))
                return -EINVAL;
        if (!sd_bus_get_event(bus))
                return -ENXIO;  /* needs an event loop for its timers */
        op = calloc(1, sizeof(*op));
        if (!op)
                return -ENOMEM;
        op->bus = sd_bus_ref(bus);
        op->install = install;
        op->done = done;
        op->userdata = userdata;
        op->app = strdup(app);
        if (!op->app || cron_unit_name(app, ".timer", &op->timer) < 0 ||
            cron_unit_name(app, ".service", &op->service) < 0)
                return -ENOMEM;
        r = sd_bus_path_encode(UNIT_PATH_PREFIX, op->timer, &op->timer_path);
        if (r >= 0)
                r = sd_bus_path_encode(UNIT_PATH_PREFIX, op->service, &op->service_path);
        if (r >= 0)
                r = sd_event_add_time_relative(sd_bus_get_event(bus), &op->timeout, CLOCK_MONOTONIC,
                                               OP_TIMEOUT_USEC, 0, on_timeout, op);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(op);
        return 0;
}

/* Starts a made op, or frees it: the common end of install and remove. */
static int cron_op_start(CronOp *op, CronOp **ret) {
        int r;

        r = cron_op_begin_replace(op);
        if (r < 0) {
                cron_op_free(op);
                return r;
        }
        if (ret)
                *ret = op;
        return 0;
}

int cron_timer_install(sd_bus *bus, const CronJob *job, CronDoneCallback done, void *userdata, CronOp **ret) {
        CronOp *op;
        int r;

        if (!done)
                return -EINVAL;
        r = cron_op_new_install(bus, job, SYNC_NONE, done, userdata, &op, NULL);
        if (r < 0)
                return r;
        return cron_op_start(op, ret);
}

int cron_timer_remove(sd_bus *bus, const char *app, CronDoneCallback done, void *userdata, CronOp **ret) {
        CronOp *op;
        int r;

        if (!done)
                return -EINVAL;
        r = cron_op_new(bus, app, false, done, userdata, &op);
        if (r < 0)
                return r;
        return cron_op_start(op, ret);
}
