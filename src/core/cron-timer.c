/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cron-timer.h"
#include "log.h"
#include "strv.h"

#define SYSTEMD_DEST "org.freedesktop.systemd1"
#define SYSTEMD_PATH "/org/freedesktop/systemd1"
#define SYSTEMD_MANAGER SYSTEMD_DEST ".Manager"
#define SYSTEMD_UNIT SYSTEMD_DEST ".Unit"
#define SYSTEMD_SERVICE SYSTEMD_DEST ".Service"
#define UNIT_PATH_PREFIX SYSTEMD_PATH "/unit"
#define DBUS_PROPERTIES "org.freedesktop.DBus.Properties"

#define USEC_PER_MSEC UINT64_C(1000)
#define USEC_PER_SEC UINT64_C(1000000)
#define UNLOAD_POLL_USEC (250 * USEC_PER_MSEC)
/* Longest wait for the manager in one operation; covers stopping a job. */
#define OP_TIMEOUT_USEC ((CRON_TIMEOUT_STOP_SEC + 45) * USEC_PER_SEC)
#define OP_SLOTS 8
#define EARLY_JOBS_MAX 4

/* ---- The job, checked and turned into a command line ------------------------ */

bool cron_app_is_valid(const char *app) {
        size_t n;

        if (!app || !((app[0] >= 'a' && app[0] <= 'z') || (app[0] >= '0' && app[0] <= '9')))
                return false;
        n = strspn(app, "abcdefghijklmnopqrstuvwxyz0123456789-");
        return app[n] == 0 && n <= CRON_APP_MAX;
}

int cron_unit_name(const char *app, const char *suffix, char **ret) {
        if (!cron_app_is_valid(app) || !suffix || (!streq(suffix, ".timer") && !streq(suffix, ".service")))
                return -EINVAL;
        return asprintf(ret, CRON_UNIT_PREFIX "%s%s", app, suffix) < 0 ? -ENOMEM : 0;
}

const char *cron_runtime(void) {
        const char *e = getenv("NORN_CRON_RUNTIME");

        return e && *e ? e : "podman";
}

static const char *job_runtime(const CronJob *job) {
        return job->runtime && *job->runtime ? job->runtime : cron_runtime();
}

static bool utf8_is_valid(const char *s) {
        for (const unsigned char *p = (const unsigned char *) s; *p;) {
                unsigned n = *p < 0x80 ? 1 : *p >= 0xc2 && *p <= 0xdf ? 2 : *p >= 0xe0 && *p <= 0xef ? 3 :
                             *p >= 0xf0 && *p <= 0xf4 ? 4 : 0;
                uint32_t cp = n == 1 ? *p : n == 2 ? *p & 0x1fU : n == 3 ? *p & 0x0fU : *p & 0x07U;

                if (n == 0)
                        return false;
                for (unsigned i = 1; i < n; i++) {
                        if ((p[i] & 0xc0) != 0x80)
                                return false;
                        cp = (cp << 6) | (p[i] & 0x3fU);
                }
                if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
                    (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
                        return false;
                p += n;
        }
        return true;
}

static bool chars_in(const char *s, const char *extra) {
        for (; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
                      strchr(extra, *s)))
                        return false;
        return true;
}

static int invalid(char **ret_error, const char *format, ...) _printf_(2, 3);
static int invalid(char **ret_error, const char *format, ...) {
        va_list ap;

        if (ret_error) {
                va_start(ap, format);
                if (vasprintf(ret_error, format, ap) < 0)
                        *ret_error = NULL;
                va_end(ap);
        }
        return -EINVAL;
}

int cron_job_validate(const CronJob *job, char **ret_error) {
        const char *runtime;
        size_t n;

        if (!job)
                return -EINVAL;
        if (!cron_app_is_valid(job->app))
                return invalid(ret_error, "app: not a valid app id (^[a-z0-9][a-z0-9-]*$, at most %u characters)",
                               CRON_APP_MAX);
        /* Not starting with '-': it must never be taken for an option of the runtime. */
        if (!job->image || !*job->image || strlen(job->image) > CRON_IMAGE_MAX || !chars_in(job->image, "._/:@+-") ||
            !chars_in((char[]) { job->image[0], 0 }, ""))
                return invalid(ret_error, "image: not a valid image reference");
        n = strv_length(job->oncalendar);
        if (n == 0 || n > CRON_CALENDARS_MAX)
                return invalid(ret_error, "schedule: expected 1 to %u OnCalendar= expressions", CRON_CALENDARS_MAX);
        for (size_t i = 0; i < n; i++)
                if (!*job->oncalendar[i] || strlen(job->oncalendar[i]) > 256 ||
                    !chars_in(job->oncalendar[i], " *-:.,/~"))
                        return invalid(ret_error, "schedule: not a calendar expression");
        if (!job->command || !*job->command)
                return invalid(ret_error, "command: required for cron apps");
        if (strlen(job->command) > CRON_COMMAND_MAX || !utf8_is_valid(job->command))
                return invalid(ret_error, "command: must be valid UTF-8 of at most %u bytes", CRON_COMMAND_MAX);
        if (strv_length(job->env) > CRON_ENV_MAX)
                return invalid(ret_error, "env: more than %u variables", CRON_ENV_MAX);
        for (char *const *e = job->env; e && *e; e++) {
                const char *eq = strchr(*e, '=');
                size_t k = eq ? (size_t) (eq - *e) : 0;

                if (k == 0 || k > 255 || (**e >= '0' && **e <= '9') || strspn(*e, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                                              "abcdefghijklmnopqrstuvwxyz"
                                                                              "0123456789_") != k)
                        return invalid(ret_error, "env: not a NAME=value assignment with a valid name");
                if (!utf8_is_valid(eq + 1) || strlen(eq + 1) > CRON_COMMAND_MAX)
                        return invalid(ret_error, "env: the value of %.*s must be valid UTF-8 of at most %u bytes",
                                       (int) k, *e, CRON_COMMAND_MAX);
        }
        runtime = job_runtime(job);
        if (strlen(runtime) > 255 || runtime[0] == '-' || runtime[0] == '.' ||
            !chars_in(runtime, runtime[0] == '/' ? "._/+-" : "._+-") || strstr(runtime, "/."))
                return invalid(ret_error, "runtime: not an absolute path or a command name");
        if (job->slice && (!*job->slice || strlen(job->slice) > 255 || !chars_in(job->slice, "._-:@")))
                return invalid(ret_error, "slice: not a unit name");
        return 0;
}

int cron_job_argv(const CronJob *job, char ***ret) {
        _cleanup_strv_free_ char **argv = NULL;
        int r;

        if (!job || !ret)
                return -EINVAL;
        r = strv_extend_many(&argv, job_runtime(job), "run", "--rm", NULL);
        for (char *const *e = job->env; r >= 0 && e && *e; e++)
                r = strv_extendf(&argv, "--env=%.*s", (int) strcspn(*e, "="), *e);
        if (r >= 0)
                r = strv_extend_many(&argv, job->image, "sh", "-c", job->command, NULL);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(argv);
        return 0;
}

/* ExecStart= as systemd gets it: each '$' doubled, so that its variable
 * expansion gives back the text as it was. */
static int escape_argv(char *const *argv, char ***ret) {
        _cleanup_strv_free_ char **l = calloc(strv_length(argv) + 1, sizeof(char *));

        if (!l)
                return -ENOMEM;
        for (size_t i = 0; argv[i]; i++) {
                size_t n = strlen(argv[i]), k = 0;
                char *s = malloc(2 * n + 1);

                if (!s)
                        return -ENOMEM;
                for (const char *p = argv[i]; *p; p++) {
                        s[k++] = *p;
                        if (*p == '$')
                                s[k++] = '$';
                }
                s[k] = 0;
                l[i] = s;
        }
        *ret = TAKE_PTR(l);
        return 0;
}

/* Changes when anything the units are made of changes (FNV-1a, 64 bits):
 * stored in the service, compared when checking units against records. */
static void fingerprint(const CronJob *job, char *const *argv, char ret[17]) {
        uint64_t h = UINT64_C(0xcbf29ce484222325);
        char timeout[16];
        const char *parts[] = { "argv", "env", "calendar", "timeout", "slice" };

#define FNV(s) for (const char *_p = (s);; _p++) { h = (h ^ (unsigned char) *_p) * UINT64_C(0x100000001b3); if (!*_p) break; }
        (void) snprintf(timeout, sizeof(timeout), "%u", job->timeout_sec);
        for (size_t i = 0; i < ELEMENTSOF(parts); i++) {
                char *const *l = i == 0 ? argv : i == 1 ? job->env : i == 2 ? job->oncalendar : NULL;

                FNV(parts[i]);
                if (i == 3)
                        FNV(timeout);
                if (i == 4)
                        FNV(job->slice ?: "");
                for (; l && *l; l++)
                        FNV(*l);
        }
#undef FNV
        (void) snprintf(ret, 17, "%016" PRIx64, h);
}

/* ---- What the manager says about a unit ---------------------------------------- */

typedef struct UnitState {
        char *load_state;
        char *active_state;
        char invocation[33];            /* hex, "" when none */
        bool job;                       /* a job is queued for the unit (Job= is set) */
        char **exec_argv;               /* ExecStart=, first command */
        char **extra_fields;            /* LogExtraFields= */
        uint64_t start_usec, exit_usec; /* ExecMainStartTimestamp, ExecMainExitTimestamp */
        int32_t code, status;           /* ExecMainCode (CLD_*), ExecMainStatus */
        char *result;
} UnitState;

static void unit_state_done(UnitState *s) {
        free(s->load_state);
        free(s->active_state);
        strv_free(s->exec_argv);
        strv_free(s->extra_fields);
        free(s->result);
        *s = (UnitState) {};
}

static int read_string(sd_bus_message *m, char **ret) {
        const char *s;
        int r = sd_bus_message_read(m, "v", "s", &s);
        char *c;

        if (r < 0)
                return r;
        c = strdup(s);
        if (!c)
                return -ENOMEM;
        free(*ret);
        *ret = c;
        return 0;
}

static int read_invocation(sd_bus_message *m, char ret[33]) {
        const uint8_t *id;
        size_t n;
        int r;

        r = sd_bus_message_enter_container(m, 'v', "ay");
        if (r >= 0)
                r = sd_bus_message_read_array(m, 'y', (const void **) &id, &n);
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        if (r < 0)
                return r;
        ret[0] = 0;
        for (size_t i = 0; n == 16 && i < n; i++)
                (void) snprintf(ret + 2 * i, 3, "%02x", id[i]);
        return 0;
}

static int read_exec_start(sd_bus_message *m, UnitState *s) {
        const char *path;
        int r;

        r = sd_bus_message_enter_container(m, 'v', "a(sasbttttuii)");
        if (r >= 0)
                r = sd_bus_message_enter_container(m, 'a', "(sasbttttuii)");
        while (r >= 0 && (r = sd_bus_message_enter_container(m, 'r', "sasbttttuii")) > 0) {
                char **argv = NULL;

                r = sd_bus_message_read(m, "s", &path);
                if (r >= 0)
                        r = sd_bus_message_read_strv(m, &argv);
                if (r >= 0)
                        r = sd_bus_message_skip(m, "bttttuii");
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
                if (r >= 0 && !s->exec_argv)
                        s->exec_argv = TAKE_PTR(argv);
                strv_free(argv);
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        return r;
}

static int read_byte_strings(sd_bus_message *m, char ***ret) {
        const void *p;
        size_t n;
        int r;

        r = sd_bus_message_enter_container(m, 'v', "aay");
        if (r >= 0)
                r = sd_bus_message_enter_container(m, 'a', "ay");
        while (r >= 0 && (r = sd_bus_message_read_array(m, 'y', &p, &n)) > 0)
                if (strv_extendf(ret, "%.*s", (int) n, (const char *) p) < 0)
                        return -ENOMEM;
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        return r;
}

/* Reads the a{sv} of a GetAll() reply (Unit or Service interface) into s. */
static int unit_state_parse(sd_bus_message *m, UnitState *s) {
        const char *key;
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        while (r >= 0 && (r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                r = sd_bus_message_read(m, "s", &key);
                if (r < 0)
                        break;
                if (streq(key, "LoadState"))
                        r = read_string(m, &s->load_state);
                else if (streq(key, "ActiveState"))
                        r = read_string(m, &s->active_state);
                else if (streq(key, "Result"))
                        r = read_string(m, &s->result);
                else if (streq(key, "InvocationID"))
                        r = read_invocation(m, s->invocation);
                else if (streq(key, "Job")) {
                        uint32_t id;
                        const char *path;

                        r = sd_bus_message_read(m, "v", "(uo)", &id, &path);
                        s->job = s->job || id != 0;
                }
                else if (streq(key, "ExecStart"))
                        r = read_exec_start(m, s);
                else if (streq(key, "LogExtraFields"))
                        r = read_byte_strings(m, &s->extra_fields);
                else if (streq(key, "ExecMainStartTimestamp"))
                        r = sd_bus_message_read(m, "v", "t", &s->start_usec);
                else if (streq(key, "ExecMainExitTimestamp"))
                        r = sd_bus_message_read(m, "v", "t", &s->exit_usec);
                else if (streq(key, "ExecMainCode"))
                        r = sd_bus_message_read(m, "v", "i", &s->code);
                else if (streq(key, "ExecMainStatus"))
                        r = sd_bus_message_read(m, "v", "i", &s->status);
                else
                        r = sd_bus_message_skip(m, "v");
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        return r < 0 ? r : 0;
}

/* A job runs, and nobody is stopping it. */
static bool state_is_running(const char *s) {
        return s && (streq(s, "active") || streq(s, "activating") || streq(s, "reloading"));
}

static const char *extra_field(char *const *fields, const char *name) {
        size_t n = strlen(name);

        for (; fields && *fields; fields++)
                if (strncmp(*fields, name, n) == 0 && (*fields)[n] == '=')
                        return *fields + n + 1;
        return NULL;
}

static const char *bus_error_text(sd_bus_message *m) {
        const sd_bus_error *e = sd_bus_message_get_error(m);

        return e ? e->message ?: e->name : NULL;
}

static bool bus_error_is(sd_bus_message *m, const char *name) {
        const sd_bus_error *e = sd_bus_message_get_error(m);

        return e && sd_bus_error_has_name(e, name);
}

/* ---- Operations: install (check, stop, wait until unloaded, create) and remove ---- */

typedef enum OpSync {
        SYNC_NONE,      /* always (re)create */
        SYNC_REPLACE,   /* keep matching units, else re-create (stopping a running job) */
        SYNC_IDLE,      /* keep matching units; -EBUSY when they differ while the job runs */
} OpSync;

typedef enum OpPhase {
        PHASE_INSPECT,
        PHASE_STOP,
        PHASE_UNLOAD,
        PHASE_CREATE,
        PHASE_RECORD,
} OpPhase;

struct CronOp {
        sd_bus *bus;
        CronTimers *owner;              /* set for operations of a CronTimers */
        CronOp *next;                   /* in owner->ops */
        char *app, *timer, *service, *timer_path, *service_path;
        bool install;
        OpSync sync;
        OpPhase phase;
        sd_bus_message *create;         /* the StartTransientUnit call */
        char **argv;                    /* ExecStart= argv as sent (escaped) */
        char spec[17];

        sd_bus_slot *slots[OP_SLOTS];   /* outstanding method calls */
        unsigned pending;
        sd_bus_slot *removed_match, *jobs_match;
        sd_event_source *poll, *timeout;
        bool timer_gone, service_gone;
        char *job;
        struct { char *path, *result; } early[EARLY_JOBS_MAX];
        size_t n_early;
        UnitState timer_state, service_state;

        const char *record_sql;         /* PHASE_RECORD: statement and parameters */
        char *record_params[10];
        bool orphaned;                  /* cancelled while the record query runs */
        int result;

        CronDoneCallback done;
        void *userdata;
};

typedef struct Probe Probe;
typedef struct Restore Restore;

struct CronTimers {
        unsigned n_ref;
        bool dead;                      /* cron_timers_free() was called */
        sd_bus *bus;
        Db *db;
        char *slice;
        sd_bus_slot *changes_match, *reload_match;
        CronOp *ops;
        Probe *probes;
        Restore *restores;
        char **after_op;                /* apps to check again when their operation ends */
        char **after_job;               /* ... when their running job ends */
};

static void cron_timers_unref(CronTimers *c);
static void cron_timers_op_ended(CronTimers *c, const char *app, int r);
static void record_execution(CronTimers *c, const char *app, const char *unit, const UnitState *s);
static void probe_start(CronTimers *c, const char *app, const char *unit, const char *path);

static void op_unlink(CronOp *op);

static CronOp *op_free(CronOp *op) {
        if (!op)
                return NULL;
        op_unlink(op);
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
        free(op->job);
        free(op->app);
        free(op->timer);
        free(op->service);
        free(op->timer_path);
        free(op->service_path);
        sd_bus_unref(op->bus);
        return mfree(op);
}

DEFINE_TRIVIAL_CLEANUP_FUNC(CronOp *, op_free);

static int restore_start(CronTimers *c, const char *app, CronDoneCallback done, void *userdata);
static void on_restored(int r, const char *error, void *userdata);

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
        if (owner && !owner->dead && op->phase > PHASE_INSPECT && op->done != on_restored)
                app = TAKE_PTR(op->app);
        op_free(op);
        if (app)
                (void) restore_start(owner, app, NULL, NULL);
        return NULL;
}

static void op_record(CronOp *op);

static void op_unlink(CronOp *op) {
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
static void op_finish(CronOp *op, int r, const char *format, ...) _printf_(3, 4);
static void op_finish(CronOp *op, int r, const char *format, ...) {
        CronTimers *owner = op->owner;
        _cleanup_free_ char *error = NULL, *app = NULL;
        va_list ap;

        if (r >= 0 && op->record_sql && op->phase != PHASE_RECORD) {
                op->result = r;
                op_record(op);
                return;
        }
        if (owner) {
                op_unlink(op);
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
        op_free(op);
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

static int op_begin_replace(CronOp *op);
static void op_look(CronOp *op);

static int on_get_all(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        CronOp *op = userdata;
        bool in_place, busy;
        int r;

        op_reply_seen(op);
        if (sd_bus_message_is_method_error(m, NULL)) {
                op_finish(op, -EIO, "cannot read the state of %s: %s", op->timer, bus_error_text(m));
                return 0;
        }
        /* Replies arrive in call order: timer (Unit), service (Unit), service (Service). */
        r = unit_state_parse(m, op->pending == 2 ? &op->timer_state : &op->service_state);
        if (r < 0) {
                op_finish(op, r, "cannot parse the state of %s", op->service);
                return 0;
        }
        if (op->pending > 0)
                return 0;

        /* The last run, in case it ended while nobody watched (nornd was down). */
        if (op->owner)
                probe_start(op->owner, op->app, op->service, op->service_path);
        /* A queued job (a stop, say) would change them: not in place. */
        in_place = !op->timer_state.job && !op->service_state.job &&
                   streq_ptr(op->timer_state.load_state, "loaded") &&
                   streq_ptr(op->timer_state.active_state, "active") &&
                   streq_ptr(op->service_state.load_state, "loaded") && op->service_state.exec_argv &&
                   strv_length(op->service_state.exec_argv) == strv_length(op->argv) &&
                   streq_ptr(extra_field(op->service_state.extra_fields, "NORN_CRON_SPEC"), op->spec);
        for (size_t i = 0; in_place && op->argv[i]; i++)
                in_place = streq(op->service_state.exec_argv[i], op->argv[i]);
        if (in_place) {
                op_finish(op, 0, NULL);
                return 0;
        }
        busy = state_is_running(op->service_state.active_state);
        if (op->sync == SYNC_IDLE && busy) {
                op_finish(op, -EBUSY, "%s differs from its record while a job runs", op->service);
                return 0;
        }
        log_debug("cron %s: units %s, re-creating them", op->app,
                  streq_ptr(op->timer_state.load_state, "loaded") ? "differ from the record" : "missing");
        r = op_begin_replace(op);
        if (r < 0)
                op_finish(op, r, "cannot ask the service manager: %s", strerror(-r));
        return 0;
}

/* Reads the units' state; they are kept when they match (see on_get_all()). */
static int op_inspect(CronOp *op) {
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
                op_finish(op, 1, NULL);
        else
                op_finish(op, -EIO, "starting %s failed: job %s", op->timer, result);
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
                op_finish(op, -EIO, "cannot create %s and %s: %s", op->timer, op->service, bus_error_text(m));
                return 0;
        }
        if (sd_bus_message_read(m, "o", &job) < 0 || !(op->job = strdup(job))) {
                op_finish(op, -EIO, "cannot create %s: bad reply from the service manager", op->timer);
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
                op_finish(op, r, "cannot call StartTransientUnit: %s", strerror(-r));
        }
}

static void op_units_gone(CronOp *op) {
        op->poll = sd_event_source_disable_unref(op->poll);
        if (op->install)
                op_create(op);
        else
                op_finish(op, 0, NULL);
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
        if (sd_bus_message_is_method_error(m, NULL) && !bus_error_is(m, "org.freedesktop.systemd1.NoSuchUnit")) {
                op_finish(op, -EIO, "cannot look up %s: %s", unit, bus_error_text(m));
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
                op_finish(op, r, "cannot ask the service manager: %s", strerror(-r));
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
                op_finish(op, r, "cannot arm a timer: %s", strerror(-r));
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
        if (sd_bus_message_is_method_error(m, NULL) && !bus_error_is(m, "org.freedesktop.systemd1.NoSuchUnit")) {
                op_finish(op, -EIO, "cannot stop the units of %s: %s", op->app, bus_error_text(m));
                return 0;
        }
        if (op->pending == 0)
                op_look(op);
        return 0;
}

static int on_match_installed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        CronOp *op = userdata;

        if (sd_bus_message_is_method_error(m, NULL) && op->install && op->phase <= PHASE_CREATE)
                op_finish(op, -EIO, "cannot watch the service manager: %s", bus_error_text(m));
        return 0;
}

static int on_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        CronOp *op = userdata;

        op_finish(op, -ETIMEDOUT, "the service manager did not finish with %s in time (%s)", op->timer,
                  op->phase == PHASE_CREATE ? "starting the timer" : "waiting for the old units to go away");
        return 0;
}

/* Stop both units (a running job included), then wait until they are unloaded. */
static int op_begin_replace(CronOp *op) {
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

/* ---- Building the units ------------------------------------------------------- */

static int append_timer_properties(sd_bus_message *m, const CronJob *job, const char *description) {
        int r;

        r = sd_bus_message_open_container(m, 'a', "(sv)");
        if (r >= 0)
                r = sd_bus_message_append(m, "(sv)", "Description", "s", description);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'r', "sv");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", "TimersCalendar");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'v', "a(ss)");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "(ss)");
        for (char *const *c = job->oncalendar; r >= 0 && *c; c++)
                r = sd_bus_message_append(m, "(ss)", "OnCalendar", *c);
        for (unsigned i = 0; r >= 0 && i < 3; i++)
                r = sd_bus_message_close_container(m);
        /* The default accuracy is one minute: a job could run up to a minute late. */
        if (r >= 0)
                r = sd_bus_message_append(m, "(sv)", "AccuracyUSec", "t", USEC_PER_SEC);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        return r;
}

static int append_service_properties(sd_bus_message *m, const CronOp *op, const CronJob *job,
                                     const char *description) {
        _cleanup_free_ char *ident = NULL;
        char *fields[3] = {};
        int r;

        if (asprintf(&ident, CRON_UNIT_PREFIX "%s", job->app) < 0 ||
            asprintf(&fields[0], "NORN_APP=%s", job->app) < 0 ||
            asprintf(&fields[1], "NORN_CRON_IMAGE=%s", job->image) < 0 ||
            asprintf(&fields[2], "NORN_CRON_SPEC=%s", op->spec) < 0) {
                r = -ENOMEM;
                goto finish;
        }
        r = sd_bus_message_open_container(m, 'a', "(sv)");
        if (r >= 0)
                r = sd_bus_message_append(m, "(sv)", "Description", "s", description);
        if (r >= 0)
                r = sd_bus_message_append(m, "(sv)", "Type", "s", "exec");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'r', "sv");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", "ExecStart");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'v', "a(sasb)");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "(sasb)");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'r', "sasb");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", op->argv[0]);
        if (r >= 0)
                r = sd_bus_message_append_strv(m, op->argv);
        if (r >= 0)
                r = sd_bus_message_append(m, "b", 0);
        for (unsigned i = 0; r >= 0 && i < 4; i++)
                r = sd_bus_message_close_container(m);
        if (r >= 0) {
                r = sd_bus_message_open_container(m, 'r', "sv");
                if (r >= 0)
                        r = sd_bus_message_append(m, "s", "Environment");
                if (r >= 0)
                        r = sd_bus_message_open_container(m, 'v', "as");
                if (r >= 0)
                        r = sd_bus_message_append_strv(m, (char **) (job->env ?: (char *const[]) { NULL }));
                for (unsigned i = 0; r >= 0 && i < 2; i++)
                        r = sd_bus_message_close_container(m);
        }
        if (r >= 0 && job->timeout_sec > 0)
                r = sd_bus_message_append(m, "(sv)", "RuntimeMaxUSec", "t", job->timeout_sec * USEC_PER_SEC);
        if (r >= 0)
                r = sd_bus_message_append(m, "(sv)", "TimeoutStopUSec", "t", CRON_TIMEOUT_STOP_SEC * USEC_PER_SEC);
        if (r >= 0 && job->slice)
                r = sd_bus_message_append(m, "(sv)", "Slice", "s", job->slice);
        /* A failed run must not keep the unit loaded once the timer is gone. */
        if (r >= 0)
                r = sd_bus_message_append(m, "(sv)", "CollectMode", "s", "inactive-or-failed");
        if (r >= 0)
                r = sd_bus_message_append(m, "(sv)", "SyslogIdentifier", "s", ident);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'r', "sv");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", "LogExtraFields");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'v', "aay");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "ay");
        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(fields); i++)
                r = sd_bus_message_append_array(m, 'y', fields[i], strlen(fields[i]));
        for (unsigned i = 0; r >= 0 && i < 4; i++)
                r = sd_bus_message_close_container(m);
finish:
        for (size_t i = 0; i < ELEMENTSOF(fields); i++)
                free(fields[i]);
        return r;
}

static int op_new(sd_bus *bus, const char *app, bool install, CronDoneCallback done, void *userdata,
                  CronOp **ret) {
        _cleanup_(op_freep) CronOp *op = NULL;
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

/* Everything is checked and built here, so that bad input fails at once. */
static int op_new_install(sd_bus *bus, const CronJob *job, OpSync sync, CronDoneCallback done, void *userdata,
                          CronOp **ret, char **ret_error) {
        _cleanup_(op_freep) CronOp *op = NULL;
        _cleanup_strv_free_ char **argv = NULL;
        _cleanup_free_ char *timer_description = NULL, *service_description = NULL;
        sd_bus_message *m;
        int r;

        r = cron_job_validate(job, ret_error);
        if (r < 0)
                return r;
        r = op_new(bus, job->app, true, done, userdata, &op);
        if (r < 0)
                return r;
        op->sync = sync;
        r = cron_job_argv(job, &argv);
        if (r >= 0)
                r = escape_argv(argv, &op->argv);
        if (r < 0)
                return r;
        fingerprint(job, op->argv, op->spec);
        if (asprintf(&timer_description, "Norn cron timer of %s", job->app) < 0 ||
            asprintf(&service_description, "Norn cron job of %s (%s)", job->app, job->image) < 0)
                return -ENOMEM;

        /* StartTransientUnit(name, mode, properties, aux units): the timer, and
         * the service it triggers as the one auxiliary unit. "fail": never
         * replace a job queued for these names by someone else. */
        r = sd_bus_message_new_method_call(bus, &op->create, SYSTEMD_DEST, SYSTEMD_PATH, SYSTEMD_MANAGER,
                                           "StartTransientUnit");
        m = op->create;
        if (r >= 0)
                r = sd_bus_message_append(m, "ss", op->timer, "fail");
        if (r >= 0)
                r = append_timer_properties(m, job, timer_description);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "(sa(sv))");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'r', "sa(sv)");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", op->service);
        if (r >= 0)
                r = append_service_properties(m, op, job, service_description);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r < 0)
                return log_debug_errno(r, "Cannot build the units of %s: %m", job->app);
        *ret = TAKE_PTR(op);
        return 0;
}

int cron_timer_install(sd_bus *bus, const CronJob *job, CronDoneCallback done, void *userdata, CronOp **ret) {
        CronOp *op;
        int r;

        if (!done)
                return -EINVAL;
        r = op_new_install(bus, job, SYNC_NONE, done, userdata, &op, NULL);
        if (r < 0)
                return r;
        r = op_begin_replace(op);
        if (r < 0) {
                op_free(op);
                return r;
        }
        if (ret)
                *ret = op;
        return 0;
}

int cron_timer_remove(sd_bus *bus, const char *app, CronDoneCallback done, void *userdata, CronOp **ret) {
        CronOp *op;
        int r;

        if (!done)
                return -EINVAL;
        r = op_new(bus, app, false, done, userdata, &op);
        if (r < 0)
                return r;
        r = op_begin_replace(op);
        if (r < 0) {
                op_free(op);
                return r;
        }
        if (ret)
                *ret = op;
        return 0;
}

/* ---- Records ------------------------------------------------------------------ */

static const char sql_upsert_timer[] =
        "INSERT INTO cron_timers (app, image, schedule, oncalendar, command, env, runtime, timeout_sec, "
        "                         deployment_id, updated_at) "
        "VALUES ($1, $2, $3, ARRAY(SELECT json_array_elements_text($4::json)), $5, "
        "        ARRAY(SELECT json_array_elements_text($6::json)), $7, $8::integer, $9::bigint, now()) "
        "ON CONFLICT (app) DO UPDATE SET image = EXCLUDED.image, schedule = EXCLUDED.schedule, "
        "        oncalendar = EXCLUDED.oncalendar, command = EXCLUDED.command, env = EXCLUDED.env, "
        "        runtime = EXCLUDED.runtime, timeout_sec = EXCLUDED.timeout_sec, "
        "        deployment_id = EXCLUDED.deployment_id, updated_at = now()";

static const char sql_delete_timer[] = "DELETE FROM cron_timers WHERE app = $1";

static const char sql_select_timers[] =
        "SELECT app, image, command, runtime, timeout_sec, array_to_json(oncalendar)::text, "
        "       array_to_json(env)::text "
        "FROM cron_timers WHERE $1::text IS NULL OR app = $1 ORDER BY app";

/* Written when a run is seen starting, completed when it is seen ended; any
 * number of times (the same values). */
static const char sql_record_execution[] =
        "INSERT INTO cron_executions (app, invocation_id, unit, image, started_at, finished_at, result, "
        "                             exit_code, exit_signal) "
        "VALUES ($1, $2, $3, $4, to_timestamp($5::double precision / 1000000), "
        "        to_timestamp($6::double precision / 1000000), $7, $8::integer, $9::integer) "
        "ON CONFLICT (invocation_id) DO UPDATE SET "
        "        started_at = coalesce(cron_executions.started_at, EXCLUDED.started_at), "
        "        finished_at = coalesce(EXCLUDED.finished_at, cron_executions.finished_at), "
        "        result = coalesce(EXCLUDED.result, cron_executions.result), "
        "        exit_code = coalesce(EXCLUDED.exit_code, cron_executions.exit_code), "
        "        exit_signal = coalesce(EXCLUDED.exit_signal, cron_executions.exit_signal)";

static void on_recorded(Db *db, const PGresult *result, const char *error, void *userdata) {
        CronOp *op = userdata;

        if (op->orphaned) {
                op_free(op);
                return;
        }
        if (error)
                op_finish(op, -EIO, "the units of %s are %s, but the record could not be updated: %s", op->app,
                          op->install ? "in place" : "removed", error);
        else
                op_finish(op, op->result, NULL);
}

static void op_record(CronOp *op) {
        int r = -ENOTCONN;

        /* From here on only the query's answer ends the op. */
        op->phase = PHASE_RECORD;
        op->timeout = sd_event_source_disable_unref(op->timeout);
        if (op->owner && op->owner->db)
                r = db_query(op->owner->db, op->record_sql, op->record_sql == sql_upsert_timer ? 9 : 1,
                             (const char *const *) op->record_params, on_recorded, op);
        if (r < 0)
                op_finish(op, r, "the units of %s are %s, but the record could not be updated: %s", op->app,
                          op->install ? "in place" : "removed",
                          r == -ENOTCONN ? "the database is not connected" : strerror(-r));
}

static void record_execution(CronTimers *c, const char *app, const char *unit, const UnitState *s) {
        char start[24], exit_[24], status[16];
        bool finished = s->exit_usec > 0 && s->exit_usec >= s->start_usec;
        const char *params[9];
        int r;

        if (!c->db || !db_is_up(c->db) || !s->invocation[0] || s->start_usec == 0)
                return;
        (void) snprintf(start, sizeof(start), "%" PRIu64, s->start_usec);
        (void) snprintf(exit_, sizeof(exit_), "%" PRIu64, s->exit_usec);
        (void) snprintf(status, sizeof(status), "%" PRIi32, s->status);
        params[0] = app;
        params[1] = s->invocation;
        params[2] = unit;
        params[3] = extra_field(s->extra_fields, "NORN_CRON_IMAGE");
        params[4] = start;
        params[5] = finished ? exit_ : NULL;
        params[6] = finished ? s->result : NULL;
        params[7] = finished && s->code == CLD_EXITED ? status : NULL;
        params[8] = finished && (s->code == CLD_KILLED || s->code == CLD_DUMPED) ? status : NULL;
        r = db_query(c->db, sql_record_execution, 9, params, NULL, NULL);
        if (r < 0)
                log_warning_errno(r, "Cannot record a run of %s: %m", unit);
}

/* ---- Executions: runs are seen through the services' ActiveState ---------------- */

struct Probe {
        CronTimers *c;
        Probe *next;
        char *app, *unit;
        sd_bus_slot *slots[3];
        unsigned pending;
        char first[33];         /* InvocationID before and after reading the run: */
        char last[33];          /* a new run in between makes them differ */
        UnitState state;
};

static Probe *probe_free(Probe *p) {
        Probe **i;

        if (!p)
                return NULL;
        for (i = &p->c->probes; *i && *i != p; i = &(*i)->next)
                ;
        if (*i)
                *i = p->next;
        for (size_t k = 0; k < ELEMENTSOF(p->slots); k++)
                sd_bus_slot_unref(p->slots[k]);
        unit_state_done(&p->state);
        free(p->app);
        free(p->unit);
        return mfree(p);
}

static void probe_reply(Probe *p, sd_bus_message *m, int which) {
        int r = -EIO;

        p->slots[which] = sd_bus_slot_unref(p->slots[which]);
        p->pending--;
        if (!sd_bus_message_is_method_error(m, NULL))
                r = which == 1 ? unit_state_parse(m, &p->state) : read_invocation(m, which == 0 ? p->first : p->last);
        if (r < 0) {
                log_debug("Cannot read the last run of %s: %s", p->unit, strna(bus_error_text(m)));
                probe_free(p);
                return;
        }
        if (p->pending > 0)
                return;
        if (p->first[0] && streq(p->first, p->last)) {
                memcpy(p->state.invocation, p->first, sizeof(p->first));
                record_execution(p->c, p->app, p->unit, &p->state);
        }
        probe_free(p);
}

static int on_probe_first(sd_bus_message *m, void *userdata, sd_bus_error *e) {
        probe_reply(userdata, m, 0);
        return 0;
}

static int on_probe_service(sd_bus_message *m, void *userdata, sd_bus_error *e) {
        probe_reply(userdata, m, 1);
        return 0;
}

static int on_probe_last(sd_bus_message *m, void *userdata, sd_bus_error *e) {
        probe_reply(userdata, m, 2);
        return 0;
}

static void probe_start(CronTimers *c, const char *app, const char *unit, const char *path) {
        Probe *p;
        int r;

        if (!c->db)
                return;
        p = calloc(1, sizeof(*p));
        if (!p)
                return (void) log_oom();
        p->c = c;
        p->next = c->probes;
        c->probes = p;
        p->app = strdup(app);
        p->unit = strdup(unit);
        if (!p->app || !p->unit) {
                probe_free(p);
                return (void) log_oom();
        }
        r = sd_bus_call_method_async(c->bus, &p->slots[0], SYSTEMD_DEST, path, DBUS_PROPERTIES, "Get",
                                     on_probe_first, p, "ss", SYSTEMD_UNIT, "InvocationID");
        if (r >= 0)
                r = sd_bus_call_method_async(c->bus, &p->slots[1], SYSTEMD_DEST, path, DBUS_PROPERTIES, "GetAll",
                                             on_probe_service, p, "s", SYSTEMD_SERVICE);
        if (r >= 0)
                r = sd_bus_call_method_async(c->bus, &p->slots[2], SYSTEMD_DEST, path, DBUS_PROPERTIES, "Get",
                                             on_probe_last, p, "ss", SYSTEMD_UNIT, "InvocationID");
        if (r < 0) {
                log_debug_errno(r, "Cannot ask for the last run of %s: %m", unit);
                probe_free(p);
                return;
        }
        p->pending = 3;
}

static int strv_remove(char **l, const char *s) {
        for (size_t i = 0; l && l[i]; i++)
                if (streq(l[i], s)) {
                        free(l[i]);
                        memmove(l + i, l + i + 1, sizeof(char *) * (strv_length(l + i + 1) + 1));
                        return 1;
                }
        return 0;
}

static int on_unit_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        CronTimers *c = userdata;
        _cleanup_free_ char *unit = NULL, *app = NULL;
        const char *path = sd_bus_message_get_path(m), *key, *state = NULL;
        size_t n;
        int r;

        r = sd_bus_path_decode(path, UNIT_PATH_PREFIX, &unit);
        n = r > 0 ? strlen(unit) : 0;
        if (n <= strlen(CRON_UNIT_PREFIX ".service") || strncmp(unit, CRON_UNIT_PREFIX, strlen(CRON_UNIT_PREFIX)) != 0 ||
            !streq(unit + n - strlen(".service"), ".service"))
                return 0;
        app = strndup(unit + strlen(CRON_UNIT_PREFIX), n - strlen(CRON_UNIT_PREFIX ".service"));
        if (!app || !cron_app_is_valid(app))
                return 0;

        /* PropertiesChanged(s interface, a{sv} changed, as invalidated) */
        r = sd_bus_message_skip(m, "s");
        if (r >= 0)
                r = sd_bus_message_enter_container(m, 'a', "{sv}");
        while (r >= 0 && !state && (r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                r = sd_bus_message_read(m, "s", &key);
                if (r >= 0 && streq(key, "ActiveState"))
                        r = sd_bus_message_read(m, "v", "s", &state);
                else if (r >= 0)
                        r = sd_bus_message_skip(m, "v");
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
        }
        if (!state)
                return 0;

        log_debug("cron %s: %s is %s", app, unit, state);
        /* A run has started or ended (the manager may say so more than once). */
        if (streq(state, "active") || streq(state, "inactive") || streq(state, "failed"))
                probe_start(c, app, unit, path);
        if (!state_is_running(state) && strv_remove(c->after_job, app) > 0)
                (void) restore_start(c, app, NULL, NULL);
        return 0;
}

static int on_reloading(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        CronTimers *c = userdata;
        int active;

        if (sd_bus_message_read(m, "b", &active) < 0 || active)
                return 0;
        /* systemd 252 does not read back the '$' of our ExecStart= from the transient
         * unit files it re-reads: check every unit against its record. */
        log_debug("The service manager reloaded; checking the cron units.");
        (void) restore_start(c, NULL, NULL, NULL);
        return 0;
}

/* ---- Restoring units from the records ------------------------------------------ */

struct Restore {
        CronTimers *c;
        Restore *next;
        char *app;              /* NULL: all apps */
        bool querying;          /* the SELECT runs (it holds a reference on c) */
        unsigned pending;       /* operations started */
        int error;
        char *message;
        CronDoneCallback done;
        void *userdata;
};

static Restore *restore_free(Restore *rs) {
        Restore **i;

        if (!rs)
                return NULL;
        for (i = &rs->c->restores; *i && *i != rs; i = &(*i)->next)
                ;
        if (*i)
                *i = rs->next;
        free(rs->app);
        free(rs->message);
        return mfree(rs);
}

static void restore_fail(Restore *rs, int r, const char *app, const char *message) {
        log_warning("Cannot restore the cron timer of %s: %s", strna(app), strna(message));
        if (rs->error < 0)
                return;
        rs->error = r;
        if (asprintf(&rs->message, "%s: %s", strna(app), strna(message)) < 0)
                rs->message = NULL;
}

static void restore_maybe_end(Restore *rs) {
        if (rs->querying || rs->pending > 0)
                return;
        if (rs->done)
                rs->done(rs->error, rs->message, rs->userdata);
        restore_free(rs);
}

static void on_restored(int r, const char *error, void *userdata) {
        Restore *rs = userdata;

        rs->pending--;
        if (r < 0 && r != -EBUSY && r != -ECANCELED)
                restore_fail(rs, r, NULL, error);
        restore_maybe_end(rs);
}

static CronOp *find_op(CronTimers *c, const char *app) {
        for (CronOp *op = c->ops; op; op = op->next)
                if (streq_ptr(op->app, app))
                        return op;
        return NULL;
}

static int strv_from_json(const char *text, char ***ret) {
        json_t *a = json_loads(text, 0, NULL);
        _cleanup_strv_free_ char **l = calloc(1, sizeof(char *));
        size_t i;
        json_t *v;
        int r = 0;

        if (!json_is_array(a) || !l)
                r = a ? -EBADMSG : -ENOMEM;
        json_array_foreach(a, i, v)
                if (r >= 0)
                        r = json_is_string(v) ? strv_extend(&l, json_string_value(v)) : -EBADMSG;
        json_decref(a);
        if (r >= 0)
                *ret = TAKE_PTR(l);
        return r;
}

/* One recorded timer: keep its units if they match, else re-create them. */
static void restore_row(Restore *rs, const PGresult *res, int row) {
        CronTimers *c = rs->c;
        _cleanup_strv_free_ char **calendar = NULL, **env = NULL;
        _cleanup_free_ char *error = NULL;
        const char *app = PQgetvalue(res, row, 0);
        CronJob job = {
                .app = app,
                .image = PQgetvalue(res, row, 1),
                .command = PQgetvalue(res, row, 2),
                .runtime = PQgetisnull(res, row, 3) ? NULL : PQgetvalue(res, row, 3),
                .timeout_sec = (unsigned) strtoul(PQgetvalue(res, row, 4), NULL, 10),
                .slice = c->slice,
        };
        CronOp *op;
        int r;

        if (find_op(c, app)) {
                /* A deploy (or an earlier check) is at it: look again when it ends. */
                if (!strv_contains(c->after_op, app))
                        (void) strv_extend(&c->after_op, app);
                return;
        }
        r = strv_from_json(PQgetvalue(res, row, 5), &calendar);
        if (r >= 0)
                r = strv_from_json(PQgetvalue(res, row, 6), &env);
        if (r < 0)
                return restore_fail(rs, r, app, "unreadable record");
        job.oncalendar = calendar;
        job.env = env;
        r = op_new_install(c->bus, &job, SYNC_IDLE, on_restored, rs, &op, &error);
        if (r < 0)
                return restore_fail(rs, r, app, error ?: strerror(-r));
        op->owner = c;
        op->next = c->ops;
        c->ops = op;
        r = op_inspect(op);
        if (r < 0) {
                op_free(op);
                return restore_fail(rs, r, app, strerror(-r));
        }
        rs->pending++;
}

static void on_timer_rows(Db *db, const PGresult *res, const char *error, void *userdata) {
        Restore *rs = userdata;
        CronTimers *c = rs->c;

        rs->querying = false;
        if (c->dead) {
                restore_free(rs);
                cron_timers_unref(c);
                return;
        }
        if (error)
                restore_fail(rs, -EIO, rs->app ?: "cron apps", error);
        else
                for (int i = 0; i < PQntuples(res); i++)
                        restore_row(rs, res, i);
        restore_maybe_end(rs);
        cron_timers_unref(c);
}

static int restore_start(CronTimers *c, const char *app, CronDoneCallback done, void *userdata) {
        Restore *rs;
        int r;

        if (!c->db)
                return -ENOTCONN;
        rs = calloc(1, sizeof(*rs));
        if (!rs)
                return -ENOMEM;
        *rs = (Restore) { .c = c, .next = c->restores, .done = done, .userdata = userdata, .querying = true };
        c->restores = rs;
        if (app && !(rs->app = strdup(app))) {
                restore_free(rs);
                return -ENOMEM;
        }
        r = db_query(c->db, sql_select_timers, 1, (const char *const[]) { app }, on_timer_rows, rs);
        if (r < 0) {
                restore_free(rs);
                return log_debug_errno(r, "Cannot read the cron timers: %m");
        }
        c->n_ref++;
        return 0;
}

int cron_timers_restore(CronTimers *c, CronDoneCallback done, void *userdata) {
        if (!c || c->dead)
                return -EINVAL;
        return restore_start(c, NULL, done, userdata);
}

static void cron_timers_op_ended(CronTimers *c, const char *app, int r) {
        if (r == -EBUSY) {
                if (!strv_contains(c->after_job, app))
                        (void) strv_extend(&c->after_job, app);
                return;
        }
        if (strv_remove(c->after_op, app) > 0)
                (void) restore_start(c, app, NULL, NULL);
}

/* ---- Deploy, undeploy, life cycle --------------------------------------------- */

int cron_timers_deploy(CronTimers *c, const CronJob *job, const char *schedule, int64_t deployment_id,
                       CronDoneCallback done, void *userdata, CronOp **ret) {
        _cleanup_(op_freep) CronOp *op = NULL;
        _cleanup_free_ char *calendar = NULL, *env = NULL;
        CronJob j;
        json_t *a;
        CronOp *other;
        int r;

        if (!c || c->dead || !job || !done || !schedule)
                return -EINVAL;
        /* Never change units that could not be recorded. */
        if (!c->db || !db_is_up(c->db))
                return -ENOTCONN;
        /* The same slice as units re-created from the record get. */
        j = *job;
        j.slice = c->slice;
        job = &j;
        r = op_new_install(c->bus, job, SYNC_REPLACE, done, userdata, &op, NULL);
        if (r < 0)
                return r;
        other = find_op(c, job->app);
        if (other && other->done != on_restored)
                return -EBUSY;  /* another deploy of this app */
        if (other)              /* a check of the old record: this deploy supersedes it */
                op_finish(other, -ECANCELED, "superseded by a deploy");

        for (int i = 0; i < 2; i++) {
                a = json_array();
                for (char *const *l = i == 0 ? job->oncalendar : job->env; a && l && *l; l++)
                        if (json_array_append_new(a, json_string(*l)) < 0)
                                json_decref(TAKE_PTR(a));
                *(i == 0 ? &calendar : &env) = a ? json_dumps(a, JSON_COMPACT) : NULL;
                json_decref(a);
        }
        op->record_sql = sql_upsert_timer;
        if (!calendar || !env || !(op->record_params[0] = strdup(job->app)) ||
            !(op->record_params[1] = strdup(job->image)) || !(op->record_params[2] = strdup(schedule)) ||
            !(op->record_params[4] = strdup(job->command)) ||
            (job->runtime && *job->runtime && !(op->record_params[6] = strdup(job->runtime))) ||
            asprintf(&op->record_params[7], "%u", job->timeout_sec) < 0 ||
            (deployment_id > 0 && asprintf(&op->record_params[8], "%" PRIi64, deployment_id) < 0))
                return -ENOMEM;
        op->record_params[3] = TAKE_PTR(calendar);
        op->record_params[5] = TAKE_PTR(env);

        op->owner = c;
        op->next = c->ops;
        c->ops = op;
        r = op_inspect(op);
        if (r < 0)
                return r;
        if (ret)
                *ret = op;
        TAKE_PTR(op);
        return 0;
}

int cron_timers_undeploy(CronTimers *c, const char *app, CronDoneCallback done, void *userdata, CronOp **ret) {
        _cleanup_(op_freep) CronOp *op = NULL;
        CronOp *other;
        int r;

        if (!c || c->dead || !done)
                return -EINVAL;
        if (!c->db || !db_is_up(c->db))
                return -ENOTCONN;
        r = op_new(c->bus, app, false, done, userdata, &op);
        if (r < 0)
                return r;
        other = find_op(c, app);
        if (other && other->done != on_restored)
                return -EBUSY;
        if (other)
                op_finish(other, -ECANCELED, "superseded by an undeploy");
        op->record_sql = sql_delete_timer;
        op->record_params[0] = strdup(app);
        if (!op->record_params[0])
                return -ENOMEM;
        op->owner = c;
        op->next = c->ops;
        c->ops = op;
        r = op_begin_replace(op);
        if (r < 0)
                return r;
        if (ret)
                *ret = op;
        TAKE_PTR(op);
        return 0;
}

int cron_timers_new(sd_bus *bus, Db *db, const char *slice, CronTimers **ret) {
        _cleanup_(cron_timers_freep) CronTimers *c = NULL;
        int r;

        if (!bus || !ret)
                return -EINVAL;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->n_ref = 1;
        c->bus = sd_bus_ref(bus);
        c->db = db;
        if (slice && !(c->slice = strdup(slice)))
                return -ENOMEM;

        /* Without Subscribe the manager sends no PropertiesChanged for units at all. */
        r = sd_bus_call_method_async(bus, NULL, SYSTEMD_DEST, SYSTEMD_PATH, SYSTEMD_MANAGER, "Subscribe", NULL,
                                     NULL, NULL);
        if (r >= 0)
                r = sd_bus_add_match_async(bus, &c->changes_match,
                                           "type='signal',sender='" SYSTEMD_DEST "',"
                                           "interface='" DBUS_PROPERTIES "',member='PropertiesChanged',"
                                           "path_namespace='" UNIT_PATH_PREFIX "',arg0='" SYSTEMD_UNIT "'",
                                           on_unit_changed, NULL, c);
        if (r >= 0)
                r = sd_bus_add_match_async(bus, &c->reload_match,
                                           "type='signal',sender='" SYSTEMD_DEST "',path='" SYSTEMD_PATH "',"
                                           "interface='" SYSTEMD_MANAGER "',member='Reloading'",
                                           on_reloading, NULL, c);
        if (r < 0)
                return log_debug_errno(r, "Cannot watch the service manager for cron units: %m");
        *ret = TAKE_PTR(c);
        return 0;
}

static void cron_timers_unref(CronTimers *c) {
        if (!c || --c->n_ref > 0)
                return;
        sd_bus_unref(c->bus);
        free(c->slice);
        free(c);
}

CronTimers *cron_timers_free(CronTimers *c) {
        if (!c)
                return NULL;
        c->dead = true;
        c->changes_match = sd_bus_slot_unref(c->changes_match);
        c->reload_match = sd_bus_slot_unref(c->reload_match);
        /* Checks of records stop here; deploys and undeploys go on without us (their
         * callers may still cancel them), but cannot record anymore. */
        while (c->ops) {
                CronOp *op = c->ops;

                op_unlink(op);
                if (op->done == on_restored)
                        cron_op_cancel(op);
        }
        while (c->probes)
                probe_free(c->probes);
        /* A restore whose query runs frees itself when the answer comes. */
        for (Restore *rs = c->restores, *next; rs; rs = next) {
                next = rs->next;
                if (!rs->querying)
                        restore_free(rs);
        }
        c->after_op = strv_free(c->after_op);
        c->after_job = strv_free(c->after_job);
        cron_timers_unref(c);
        return NULL;
}
