/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "macro.h"
#include "scope.h"

#define SYSTEMD_SERVICE "org.freedesktop.systemd1"
#define SYSTEMD_PATH "/org/freedesktop/systemd1"
#define SYSTEMD_MANAGER SYSTEMD_SERVICE ".Manager"

/* JobRemoved signals for our unit that came before we knew our job's path. */
#define EARLY_JOBS_MAX 8

typedef enum ScopeState {
        SCOPE_STARTING,
        SCOPE_READY,
        SCOPE_FAILED,
} ScopeState;

typedef struct EarlyJob {
        char *path;
        char *result;
} EarlyJob;

struct Scope {
        sd_bus *bus;
        char *unit;
        ScopeCallback callback;
        void *userdata;

        sd_bus_slot *job_match;
        sd_bus_slot *unit_match;
        sd_bus_slot *start_call;
        sd_bus_slot *kill_call;

        ScopeState state;
        char *job;              /* job path from the StartTransientUnit reply */
        EarlyJob early[EARLY_JOBS_MAX];
        size_t n_early;
        bool created;           /* StartTransientUnit succeeded: the unit is ours */
        bool gone;              /* never created, or UnitRemoved seen */
};

bool unit_name_is_safe(const char *name, const char *suffix) {
        size_t n, k;

        if (!name || !suffix)
                return false;
        n = strlen(name);
        k = strlen(suffix);
        if (n <= k || n >= 256 || !streq(name + n - k, suffix))
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = name[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == ':' || c == '_' || c == '.' || c == '@' || c == '-'))
                        return false;
        }
        return true;
}

static void early_jobs_clear(Scope *s) {
        for (size_t i = 0; i < s->n_early; i++) {
                free(s->early[i].path);
                free(s->early[i].result);
        }
        s->n_early = 0;
}

Scope *scope_free(Scope *s) {
        if (!s)
                return NULL;
        sd_bus_slot_unref(s->job_match);
        sd_bus_slot_unref(s->unit_match);
        sd_bus_slot_unref(s->start_call);
        if (s->kill_call) {
                /* Let a pending KillUnit finish on its own, without us. */
                (void) sd_bus_slot_set_userdata(s->kill_call, NULL);
                (void) sd_bus_slot_set_floating(s->kill_call, 1);
                sd_bus_slot_unref(s->kill_call);
        }
        early_jobs_clear(s);
        free(s->job);
        free(s->unit);
        sd_bus_unref(s->bus);
        return mfree(s);
}

bool scope_is_gone(const Scope *s) {
        return !s || s->gone;
}

bool scope_is_pending(const Scope *s) {
        return s && s->start_call;
}

/* Everything below ends with at most one callback, as the very last thing
 * touching s: the callee may free it. */

static void scope_fail(Scope *s, const char *error) {
        if (s->state != SCOPE_STARTING)
                return;
        s->state = SCOPE_FAILED;
        s->job_match = sd_bus_slot_unref(s->job_match);
        early_jobs_clear(s);
        log_debug("scope %s: %s", s->unit, error);
        s->callback(s, SCOPE_EVENT_FAILED, error, s->userdata);
}

static void scope_job_finished(Scope *s, const char *result) {
        char error[256];

        if (streq(result, "done")) {
                s->state = SCOPE_READY;
                s->job_match = sd_bus_slot_unref(s->job_match);
                early_jobs_clear(s);
                log_debug("scope %s: start job done", s->unit);
                s->callback(s, SCOPE_EVENT_READY, NULL, s->userdata);
                return;
        }

        (void) snprintf(error, sizeof(error), "scope job failed: %s", result);
        scope_fail(s, error);
}

static void scope_unloaded(Scope *s) {
        s->gone = true;
        s->unit_match = sd_bus_slot_unref(s->unit_match);
        log_debug("scope %s: unit unloaded", s->unit);
        if (s->state == SCOPE_STARTING)
                scope_fail(s, "scope job failed: unit vanished");
        else
                s->callback(s, SCOPE_EVENT_GONE, NULL, s->userdata);
}

static int on_job_removed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Scope *s = userdata;
        const char *path, *unit, *result;
        uint32_t id;
        int r;

        r = sd_bus_message_read(m, "uoss", &id, &path, &unit, &result);
        if (r < 0) {
                log_debug_errno(r, "Failed to parse JobRemoved: %m");
                return 0;
        }
        if (s->state != SCOPE_STARTING || !streq(unit, s->unit))
                return 0;

        if (!s->job) {
                /* The signal overtook the reply (or belongs to an older unit of the same
                 * name): keep it until the reply tells us our job's path. */
                _cleanup_free_ char *p = strdup(path), *q = strdup(result);

                log_debug("scope %s: JobRemoved %s (%s) before the StartTransientUnit reply",
                          s->unit, path, result);
                if (!p || !q)
                        return 0;
                if (s->n_early == EARLY_JOBS_MAX) {
                        free(s->early[0].path);
                        free(s->early[0].result);
                        memmove(s->early, s->early + 1, sizeof(s->early[0]) * (EARLY_JOBS_MAX - 1));
                        s->n_early--;
                }
                s->early[s->n_early++] = (EarlyJob) { TAKE_PTR(p), TAKE_PTR(q) };
                return 0;
        }

        if (streq(path, s->job))
                scope_job_finished(s, result);
        return 0;
}

static int on_unit_removed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Scope *s = userdata;
        const char *unit, *path;
        int r;

        r = sd_bus_message_read(m, "so", &unit, &path);
        if (r < 0) {
                log_debug_errno(r, "Failed to parse UnitRemoved: %m");
                return 0;
        }
        /* Before our StartTransientUnit succeeded, this can only be an older unit of
         * the same name (ours cannot exist before the reply is sent, and the manager
         * sends its messages in order). */
        if (!streq(unit, s->unit) || !s->created || s->gone)
                return 0;

        scope_unloaded(s);
        return 0;
}

static int on_start_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Scope *s = userdata;
        const char *job;
        int r;

        s->start_call = sd_bus_slot_unref(s->start_call);

        if (sd_bus_message_is_method_error(m, NULL)) {
                const sd_bus_error *e = sd_bus_message_get_error(m);
                char error[512];

                (void) snprintf(error, sizeof(error), "failed to start scope %s: %s",
                                s->unit, e && e->message ? e->message : strna(e ? e->name : NULL));
                s->gone = true;
                s->unit_match = sd_bus_slot_unref(s->unit_match);
                scope_fail(s, error);
                return 0;
        }

        s->created = true;
        r = sd_bus_message_read(m, "o", &job);
        if (r < 0) {
                log_debug_errno(r, "Failed to parse the StartTransientUnit reply: %m");
                scope_fail(s, "failed to start scope: bad reply from the service manager");
                return 0;
        }
        s->job = strdup(job);
        if (!s->job) {
                scope_fail(s, "failed to start scope: out of memory");
                return 0;
        }
        log_debug("scope %s: start job %s queued", s->unit, job);

        for (size_t i = 0; i < s->n_early; i++)
                if (streq(s->early[i].path, job)) {
                        _cleanup_free_ char *result = TAKE_PTR(s->early[i].result);

                        early_jobs_clear(s);
                        scope_job_finished(s, result);
                        return 0;
                }
        early_jobs_clear(s);
        return 0;
}

static int on_job_match_installed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Scope *s = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(m);
        char error[512];

        if (!e)
                return 0;
        (void) snprintf(error, sizeof(error), "failed to watch the service manager's jobs: %s",
                        e->message ?: strna(e->name));
        scope_fail(s, error);
        return 0;
}

static int on_unit_match_installed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        const sd_bus_error *e = sd_bus_message_get_error(m);

        /* Not fatal: the caller stops waiting for the unit to go after a while. */
        if (e)
                log_debug("Failed to watch for UnitRemoved: %s", e->message ?: strna(e->name));
        return 0;
}

static int on_subscribe_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        const sd_bus_error *e = sd_bus_message_get_error(m);

        /* Every scope_start() subscribes; all but the first get AlreadySubscribed. */
        if (e && !sd_bus_error_has_name(e, "org.freedesktop.systemd1.AlreadySubscribed"))
                log_debug("Subscribe failed, scopes will be waited for longer: %s",
                          e->message ?: strna(e->name));
        return 0;
}

static int append_properties(sd_bus_message *m, const ScopeSpec *spec, pid_t pid) {
        int r;

        r = sd_bus_message_open_container(m, 'a', "(sv)");
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "(sv)", "Description", "s", spec->description ?: spec->unit);
        if (r >= 0 && spec->slice)
                r = sd_bus_message_append(m, "(sv)", "Slice", "s", spec->slice);
        if (r >= 0)
                r = sd_bus_message_append(m, "(sv)", "PIDs", "au", 1, (uint32_t) pid);
        /* A scope that failed (e.g. was killed) is unloaded like a clean one, so
         * the name is free again right away. */
        if (r >= 0)
                r = sd_bus_message_append(m, "(sv)", "CollectMode", "s", "inactive-or-failed");
        if (r >= 0 && spec->tasks_max > 0)
                r = sd_bus_message_append(m, "(sv)", "TasksMax", "t", spec->tasks_max);
        if (r >= 0 && spec->memory_max > 0)
                r = sd_bus_message_append(m, "(sv)", "MemoryMax", "t", spec->memory_max);
        if (r >= 0 && spec->cpu_quota_per_sec_usec > 0)
                r = sd_bus_message_append(m, "(sv)", "CPUQuotaPerSecUSec", "t",
                                          spec->cpu_quota_per_sec_usec);
        if (r < 0)
                return r;
        return sd_bus_message_close_container(m);
}

int scope_start(sd_bus *bus, const ScopeSpec *spec, pid_t pid,
                ScopeCallback callback, void *userdata, Scope **ret) {
        _cleanup_(scope_freep) Scope *s = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        char match[512];
        int r;

        if (!bus || !spec || pid <= 0 || !callback || !ret)
                return -EINVAL;
        if (!unit_name_is_safe(spec->unit, ".scope") ||
            (spec->slice && !unit_name_is_safe(spec->slice, ".slice")))
                return -EINVAL;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->bus = sd_bus_ref(bus);
        s->callback = callback;
        s->userdata = userdata;
        s->unit = strdup(spec->unit);
        if (!s->unit)
                return -ENOMEM;

        /* Everything below goes out in this order on one connection, so the
         * matches are in place before the manager can emit anything about the
         * job. Subscribe is what makes the manager emit UnitRemoved at all
         * (JobRemoved of our own job reaches us without it: the job tracks its
         * requester); a second Subscribe from the same connection only gets an
         * "already subscribed" error. */
        r = sd_bus_call_method_async(bus, NULL, SYSTEMD_SERVICE, SYSTEMD_PATH, SYSTEMD_MANAGER,
                                     "Subscribe", on_subscribe_reply, NULL, NULL);
        if (r < 0)
                return log_debug_errno(r, "Failed to call Subscribe: %m");

        /* No arg2='<unit>' here: sd-bus matches argN locally only when every
         * argument before it is a string, and JobRemoved starts with a "u", so
         * such a match never fires. We filter on the unit name ourselves, and
         * drop the match as soon as our job is done. */
        r = sd_bus_add_match_async(bus, &s->job_match,
                                   "type='signal',sender='" SYSTEMD_SERVICE "',path='" SYSTEMD_PATH "',"
                                   "interface='" SYSTEMD_MANAGER "',member='JobRemoved'",
                                   on_job_removed, on_job_match_installed, s);
        if (r < 0)
                return log_debug_errno(r, "Failed to watch JobRemoved: %m");

        (void) snprintf(match, sizeof(match),
                        "type='signal',sender='" SYSTEMD_SERVICE "',path='" SYSTEMD_PATH "',"
                        "interface='" SYSTEMD_MANAGER "',member='UnitRemoved',arg0='%s'", s->unit);
        r = sd_bus_add_match_async(bus, &s->unit_match, match, on_unit_removed,
                                   on_unit_match_installed, s);
        if (r < 0)
                return log_debug_errno(r, "Failed to watch UnitRemoved: %m");

        r = sd_bus_message_new_method_call(bus, &m, SYSTEMD_SERVICE, SYSTEMD_PATH, SYSTEMD_MANAGER,
                                           "StartTransientUnit");
        if (r < 0)
                return r;
        /* "fail": refuse rather than replace if a job for this name is queued. */
        r = sd_bus_message_append(m, "ss", s->unit, "fail");
        if (r < 0)
                return r;
        r = append_properties(m, spec, pid);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "a(sa(sv))", 0);   /* no auxiliary units */
        if (r < 0)
                return r;
        r = sd_bus_call_async(bus, &s->start_call, m, on_start_reply, s, 0);
        if (r < 0)
                return log_debug_errno(r, "Failed to call StartTransientUnit: %m");

        *ret = TAKE_PTR(s);
        return 0;
}

static int on_kill_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Scope *s = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(m);

        if (!s)
                return 0;       /* scope_free() let go of it */
        s->kill_call = sd_bus_slot_unref(s->kill_call);
        if (!e)
                return 0;
        log_debug("scope %s: KillUnit failed: %s", s->unit, e->message ?: strna(e->name));
        /* Our unit existed, and now it is not loaded: it was unloaded already
         * (UnitRemoved may not come: it needs a Subscribe that took effect). */
        if (s->created && !s->gone && sd_bus_error_has_name(e, "org.freedesktop.systemd1.NoSuchUnit"))
                scope_unloaded(s);
        return 0;
}

int scope_kill(Scope *s, int signo) {
        int r;

        if (!s || s->gone)
                return 0;
        /* Queued after StartTransientUnit on the same connection, so it works while
         * that call is still in flight too. A newer KillUnit replaces the wait for
         * an older one's reply. */
        s->kill_call = sd_bus_slot_unref(s->kill_call);
        r = sd_bus_call_method_async(s->bus, &s->kill_call, SYSTEMD_SERVICE, SYSTEMD_PATH,
                                     SYSTEMD_MANAGER, "KillUnit", on_kill_reply, s,
                                     "ssi", s->unit, "all", (int32_t) signo);
        if (r < 0)
                return log_debug_errno(r, "Failed to call KillUnit for %s: %m", s->unit);
        log_debug("scope %s: KillUnit all %d", s->unit, signo);
        return 0;
}
