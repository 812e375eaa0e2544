/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* step-run against a real systemd --user manager (run inside tools/norn-sandbox).
 * One line per check; exits 1 if any check failed. The manager must be
 * reachable: without it this fails, it does not skip. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>
#include <systemd/sd-id128.h>

#include "line-split.h"
#include "log.h"
#include "macro.h"
#include "step-run.h"
#include "tap.h"

#define MAX_LINES 256
#define SLICE "norn-test.slice"

static sd_event *event;
static sd_bus *bus;     /* the one step-run uses */
static sd_bus *qbus;    /* a second connection for synchronous queries */
static char unit_prefix[64];

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000ULL;
}

static char *unit_name(const char *what) {
        char *u;

        if (asprintf(&u, "%s-%s.scope", unit_prefix, what) < 0)
                abort();
        return u;
}

/* ---- running one step ---------------------------------------------------- */

typedef struct Run Run;
struct Run {
        StepRun *run;
        bool done;
        StepRunResult result;
        char *error;
        char *lines[MAX_LINES];
        bool is_stderr[MAX_LINES];
        size_t n_lines;
        size_t n_dropped;
        uint64_t started, finished;
        pid_t pid;
        /* hooks */
        size_t cancel_after;            /* cancel when this many lines arrived (0 = never) */
        void (*on_line)(Run *t, const char *line);
        void *data;
};

static void run_on_line(StepRun *r, const char *line, bool is_stderr, void *userdata) {
        Run *t = userdata;

        if (t->n_lines < MAX_LINES) {
                t->lines[t->n_lines] = strdup(line);
                t->is_stderr[t->n_lines] = is_stderr;
                t->n_lines++;
        } else
                t->n_dropped++;
        if (t->on_line)
                t->on_line(t, line);
        if (t->cancel_after > 0 && t->n_lines == t->cancel_after)
                (void) step_run_cancel(r);
}

static void run_on_done(StepRun *r, const StepRunResult *result, void *userdata) {
        Run *t = userdata;

        t->done = true;
        t->finished = now_usec();
        t->result = *result;
        t->error = result->error ? strdup(result->error) : NULL;
        t->result.error = t->error;
}

static void run_clear(Run *t) {
        step_run_free(t->run);
        for (size_t i = 0; i < t->n_lines && i < MAX_LINES; i++)
                free(t->lines[i]);
        free(t->error);
        *t = (Run) {};
}

static int run_start(Run *t, sd_bus *b, const StepRunSpec *spec) {
        int r;

        t->started = now_usec();
        r = step_run_start(event, b, spec, run_on_line, run_on_done, t, &t->run);
        if (r >= 0)
                t->pid = step_run_pid(t->run);
        return r;
}

/* Runs the loop until t is done or timeout; true when done. */
static bool run_wait(Run *t, uint64_t timeout_usec) {
        uint64_t deadline = now_usec() + timeout_usec;

        while (!t->done && now_usec() < deadline)
                if (sd_event_run(event, 100 * 1000) < 0)
                        return false;
        return t->done;
}

static bool run_simple(Run *t, sd_bus *b, const StepRunSpec *spec) {
        int r = run_start(t, b, spec);

        if (r < 0) {
                printf("# step_run_start: %s\n", strerror(-r));
                return false;
        }
        return run_wait(t, 20 * 1000 * 1000);
}

#define ARGV(...) ((char *const[]) { __VA_ARGS__, NULL })
#define SH(script) ARGV("sh", "-c", script)

/* ---- process and unit state ---------------------------------------------- */

/* Gone, or a zombie nobody reaped yet: not running anymore. */
static bool pid_dead(pid_t pid) {
        char path[64], buf[512], *p;
        FILE *f;
        bool dead = true;

        if (pid <= 0)
                return false;
        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        f = fopen(path, "re");
        if (!f)
                return true;
        if (fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')')) && p[1] == ' ')
                dead = p[2] == 'Z' || p[2] == 'X';
        else
                dead = false;
        fclose(f);
        return dead;
}

static bool pids_dead_within(const pid_t *pids, size_t n, uint64_t usec) {
        uint64_t deadline = now_usec() + usec;

        for (;;) {
                bool all = true;
                for (size_t i = 0; i < n; i++)
                        all = all && pid_dead(pids[i]);
                if (all)
                        return true;
                if (now_usec() > deadline)
                        return false;
                usleep(10 * 1000);
        }
}

static int unit_path(const char *unit, char **ret) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        const char *path;
        int r;

        r = sd_bus_call_method(qbus, "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                               "org.freedesktop.systemd1.Manager", "GetUnit", &error, &reply,
                               "s", unit);
        if (r < 0)
                return r;
        r = sd_bus_message_read(reply, "o", &path);
        if (r < 0)
                return r;
        *ret = strdup(path);
        return *ret ? 0 : -ENOMEM;
}

static int unit_get_u64(const char *path, const char *iface, const char *prop, uint64_t *ret) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;

        return sd_bus_get_property_trivial(qbus, "org.freedesktop.systemd1", path, iface, prop,
                                           &error, 't', ret);
}

static int unit_get_string(const char *path, const char *iface, const char *prop, char **ret) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;

        return sd_bus_get_property_string(qbus, "org.freedesktop.systemd1", path, iface, prop,
                                          &error, ret);
}

/* The cgroup path of pid in the hierarchy holding controller (v1), or the
 * unified one (controller == NULL, or when there is no such v1 hierarchy). */
static char *pid_cgroup(pid_t pid, const char *controller, bool *ret_v1) {
        char path[64], line[1024], *unified = NULL, *found = NULL;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/cgroup", (int) pid);
        f = fopen(path, "re");
        if (!f)
                return NULL;
        while (fgets(line, sizeof(line), f)) {
                char *ctl = strchr(line, ':'), *p;
                if (!ctl)
                        continue;
                ctl++;
                p = strchr(ctl, ':');
                if (!p)
                        continue;
                *p++ = 0;
                p[strcspn(p, "\n")] = 0;
                if (*ctl == 0 && !unified)
                        unified = strdup(p);
                else if (controller) {
                        char *tok, *save = NULL;
                        for (tok = strtok_r(ctl, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
                                if (streq(tok, controller) && !found)
                                        found = strdup(p);
                }
        }
        fclose(f);
        *ret_v1 = found != NULL;
        if (found) {
                free(unified);
                return found;
        }
        return unified;
}

static char *read_line_file(const char *fmt, ...) _printf_(1, 2);
static char *read_line_file(const char *fmt, ...) {
        char path[1024], buf[256];
        va_list ap;
        FILE *f;

        va_start(ap, fmt);
        vsnprintf(path, sizeof(path), fmt, ap);
        va_end(ap);
        f = fopen(path, "re");
        if (!f)
                return NULL;
        if (!fgets(buf, sizeof(buf), f))
                buf[0] = 0;
        fclose(f);
        buf[strcspn(buf, "\n")] = 0;
        return strdup(buf);
}

static bool lines_are(const Run *t, size_t n, const char *const *want, const bool *want_err) {
        if (t->n_lines != n)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!streq(t->lines[i], want[i]) || t->is_stderr[i] != want_err[i])
                        return false;
        return true;
}

static void dump_lines(const Run *t) {
        for (size_t i = 0; i < t->n_lines && i < 20; i++)
                printf("#   %s: %.100s\n", t->is_stderr[i] ? "err" : "out", t->lines[i]);
        if (t->error)
                printf("#   error: %s\n", t->error);
        printf("#   exit %d signal %d%s%s\n", t->result.exit_code, t->result.signal,
               t->result.timed_out ? " timed-out" : "", t->result.cancelled ? " cancelled" : "");
}

/* ---- the line splitter alone ---------------------------------------------- */

typedef struct Collected {
        char *lines[32];
        size_t n;
} Collected;

static void collect(const char *line, size_t len, void *userdata) {
        Collected *c = userdata;

        if (c->n < ELEMENTSOF(c->lines) && strlen(line) == len)
                c->lines[c->n++] = strdup(line);
}

static void collected_clear(Collected *c) {
        for (size_t i = 0; i < c->n; i++)
                free(c->lines[i]);
        c->n = 0;
}

static void test_line_split(void) {
        static LineSplit s;
        Collected c = {};
        char *big;
        bool ok;

        s = (LineSplit) {};
        line_split_feed(&s, "ab", 2, collect, &c);
        line_split_feed(&s, "c\r\nd\re\n\nf", 9, collect, &c);
        line_split_flush(&s, collect, &c);
        check(c.n == 4 && streq(c.lines[0], "abc") && streq(c.lines[1], "d\re") &&
              streq(c.lines[2], "") && streq(c.lines[3], "f"),
              "line-split: lines across reads, CRLF, lone CR kept, empty line, final partial line");
        collected_clear(&c);

        /* 8191 'a' then "é": the cut must not split the two bytes of é. */
        big = malloc(LINE_SPLIT_MAX + 8);
        memset(big, 'a', LINE_SPLIT_MAX - 1);
        memcpy(big + LINE_SPLIT_MAX - 1, "\xc3\xa9z\n", 4);
        s = (LineSplit) {};
        line_split_feed(&s, big, LINE_SPLIT_MAX + 3, collect, &c);
        ok = c.n == 2 && strlen(c.lines[0]) == LINE_SPLIT_MAX - 1 && streq(c.lines[1], "\xc3\xa9z");
        check(ok, "line-split: an over-long line is cut at %d bytes, not inside a UTF-8 sequence",
              LINE_SPLIT_MAX);
        collected_clear(&c);
        free(big);

        s = (LineSplit) {};
        line_split_feed(&s, "x\0y\xff\n", 5, collect, &c);
        check(c.n == 1 && streq(c.lines[0], "x\xef\xbf\xbdy\xff"),
              "line-split: NUL becomes U+FFFD, other bytes pass through");
        collected_clear(&c);
}

/* ---- the checks ----------------------------------------------------------- */

static void test_output(void) {
        _cleanup_free_ char *unit = unit_name("output");
        Run t = {};
        StepRunSpec spec = {
                /* Sleeps between streams: two pipes order lines within a stream only. */
                .argv = SH("echo out1; echo out2; sleep 0.2; echo err1 >&2; sleep 0.2; "
                           "echo out3; printf partial"),
                .unit = unit, .slice = SLICE, .stdin_fd = -1,
        };
        static const char *const want[] = { "out1", "out2", "err1", "out3", "partial" };
        static const bool want_err[] = { false, false, true, false, false };
        bool done = run_simple(&t, bus, &spec);

        if (!check(done && lines_are(&t, 5, want, want_err),
                   "stdout and stderr lines arrive in order with the right stderr flag"))
                dump_lines(&t);
        check(done && t.n_lines == 5 && streq(t.lines[4], "partial"),
              "a final line without newline is flushed at EOF");
        check(done && t.result.exit_code == 0 && t.result.signal == 0 && !t.error &&
              !t.result.timed_out && !t.result.cancelled, "a successful command reports exit 0");
        run_clear(&t);
}

static void test_long_line(void) {
        _cleanup_free_ char *unit = unit_name("long");
        Run t = {};
        StepRunSpec spec = {
                .argv = SH("head -c 102400 /dev/zero | tr '\\0' a; echo; echo after"),
                .unit = unit, .slice = SLICE, .stdin_fd = -1,
        };
        size_t total = 0, max = 0;
        bool all_a = true, done = run_simple(&t, bus, &spec);

        for (size_t i = 0; done && i + 1 < t.n_lines; i++) {
                size_t n = strlen(t.lines[i]);
                total += n;
                max = MAX(max, n);
                all_a = all_a && strspn(t.lines[i], "a") == n;
        }
        if (!check(done && total == 102400 && max == LINE_SPLIT_MAX && all_a &&
                   t.n_lines == (102400 + LINE_SPLIT_MAX - 1) / LINE_SPLIT_MAX + 1 &&
                   streq(t.lines[t.n_lines - 1], "after"),
                   "a 100 KiB line is cut into %d-byte pieces, nothing lost", LINE_SPLIT_MAX))
                printf("#   %zu lines, %zu bytes, longest %zu\n", t.n_lines, total, max);
        run_clear(&t);
}

static void test_binary(void) {
        _cleanup_free_ char *unit = unit_name("binary");
        Run t = {};
        StepRunSpec spec = {
                .argv = ARGV("printf", "a\\000b\\n\\377\\n"),
                .unit = unit, .slice = SLICE, .stdin_fd = -1,
        };
        bool done = run_simple(&t, bus, &spec);

        if (!check(done && t.n_lines == 2 && streq(t.lines[0], "a\xef\xbf\xbd" "b") &&
                   streq(t.lines[1], "\xff"),
                   "NUL bytes are replaced, non-UTF-8 bytes passed through"))
                dump_lines(&t);
        run_clear(&t);
}

static void test_exit_code(void) {
        _cleanup_free_ char *unit = unit_name("exit");
        Run t = {};
        StepRunSpec spec = { .argv = SH("exit 7"), .unit = unit, .slice = SLICE, .stdin_fd = -1 };
        bool done = run_simple(&t, bus, &spec);

        if (!check(done && t.result.exit_code == 7 && t.result.signal == 0 && !t.error,
                   "the exit code is propagated (7)"))
                dump_lines(&t);
        run_clear(&t);
}

static void test_missing_binary(void) {
        _cleanup_free_ char *unit = unit_name("missing");
        Run t = {}, u = {};
        StepRunSpec spec = {
                .argv = ARGV("norn-test-no-such-binary", "x"),
                .unit = unit, .slice = SLICE, .stdin_fd = -1,
        };
        bool done = run_simple(&t, bus, &spec);

        if (!check(done && t.error &&
                   streq(t.error, "failed to execute norn-test-no-such-binary: No such file or directory") &&
                   t.result.exit_code == -1 && t.n_lines == 0,
                   "a missing binary reports \"failed to execute X: No such file or directory\""))
                dump_lines(&t);
        run_clear(&t);

        spec.argv = ARGV("true");
        spec.cwd = "/nonexistent/norn-test-dir";
        done = run_simple(&u, bus, &spec);
        if (!check(done && u.error &&
                   streq(u.error, "failed to change to directory /nonexistent/norn-test-dir: "
                                  "No such file or directory"),
                   "a missing working directory is reported clearly"))
                dump_lines(&u);
        run_clear(&u);
}

static void test_in_scope(void) {
        _cleanup_free_ char *unit = unit_name("cgroup"), *suffix = NULL;
        Run t = {};
        StepRunSpec spec = {
                .argv = ARGV("cat", "/proc/self/cgroup"),
                .unit = unit, .slice = SLICE, .stdin_fd = -1,
        };
        bool done = run_simple(&t, bus, &spec), unified = false, named = false;

        if (asprintf(&suffix, "/" SLICE "/%s", unit) < 0)
                abort();
        for (size_t i = 0; done && i < t.n_lines; i++) {
                const char *l = t.lines[i], *p = strrchr(l, ':');
                size_t n = strlen(l), k = strlen(suffix);
                bool in = p && n >= k && streq(l + n - k, suffix);

                printf("#   %s\n", l);
                if (in && strncmp(l, "0::", 3) == 0)
                        unified = true;
                if (in && strstr(l, ":name=systemd:"))
                        named = true;
        }
        check(done && !t.error && (unified || named),
              "the command runs inside its scope (%s/%s; unified tree: %s, name=systemd tree: %s)",
              SLICE, unit, unified ? "yes" : "no", named ? "yes" : "no");
        run_clear(&t);
}

typedef struct PropCheck {
        bool queried;
        uint64_t tasks_max, memory_max, cpu_quota;
        char *slice, *collect_mode, *description, *active_state;
        char *pids_max, *memory_limit;
} PropCheck;

static void props_on_line(Run *t, const char *line) {
        PropCheck *pc = t->data;
        _cleanup_free_ char *path = NULL;
        bool v1;
        char *cg;

        if (!streq(line, "ready") || pc->queried)
                return;
        pc->queried = true;
        if (unit_path(step_run_unit(t->run), &path) >= 0) {
                (void) unit_get_u64(path, "org.freedesktop.systemd1.Scope", "TasksMax", &pc->tasks_max);
                (void) unit_get_u64(path, "org.freedesktop.systemd1.Scope", "MemoryMax", &pc->memory_max);
                (void) unit_get_u64(path, "org.freedesktop.systemd1.Scope", "CPUQuotaPerSecUSec",
                                    &pc->cpu_quota);
                (void) unit_get_string(path, "org.freedesktop.systemd1.Scope", "Slice", &pc->slice);
                (void) unit_get_string(path, "org.freedesktop.systemd1.Unit", "CollectMode",
                                       &pc->collect_mode);
                (void) unit_get_string(path, "org.freedesktop.systemd1.Unit", "Description",
                                       &pc->description);
                (void) unit_get_string(path, "org.freedesktop.systemd1.Unit", "ActiveState",
                                       &pc->active_state);
        }
        /* What the kernel enforces, wherever the controllers are mounted. */
        cg = pid_cgroup(t->pid, "pids", &v1);
        if (cg)
                pc->pids_max = read_line_file(v1 ? "/sys/fs/cgroup/pids%s/pids.max" :
                                              "/sys/fs/cgroup%s/pids.max", cg);
        free(cg);
        cg = pid_cgroup(t->pid, "memory", &v1);
        if (cg)
                pc->memory_limit = read_line_file(v1 ? "/sys/fs/cgroup/memory%s/memory.limit_in_bytes" :
                                                  "/sys/fs/cgroup%s/memory.max", cg);
        free(cg);
        (void) step_run_cancel(t->run);
}

static void test_properties(void) {
        _cleanup_free_ char *unit = unit_name("props");
        PropCheck pc = {};
        Run t = { .on_line = props_on_line, .data = &pc };
        StepRunSpec spec = {
                .argv = SH("echo ready; exec sleep 1000"),
                .unit = unit, .slice = SLICE, .stdin_fd = -1,
                .tasks_max = 32, .memory_max = 64 * 1024 * 1024, .cpu_quota_per_sec_usec = 500000,
                .description = "Norn test step",
        };
        bool done = run_simple(&t, bus, &spec);

        if (!check(done && pc.queried && pc.tasks_max == 32 && pc.memory_max == 64 * 1024 * 1024 &&
                   pc.cpu_quota == 500000,
                   "the scope has TasksMax=32, MemoryMax=64M, CPUQuotaPerSecUSec=500ms"))
                printf("#   TasksMax %" PRIu64 " MemoryMax %" PRIu64 " CPUQuotaPerSecUSec %" PRIu64 "\n",
                       pc.tasks_max, pc.memory_max, pc.cpu_quota);
        if (!check(pc.slice && streq(pc.slice, SLICE) && pc.collect_mode &&
                   streq(pc.collect_mode, "inactive-or-failed") && pc.description &&
                   streq(pc.description, "Norn test step") && pc.active_state &&
                   streq(pc.active_state, "active"),
                   "the scope is active in " SLICE " with CollectMode=inactive-or-failed and the Description"))
                printf("#   Slice %s CollectMode %s Description %s ActiveState %s\n", strna(pc.slice),
                       strna(pc.collect_mode), strna(pc.description), strna(pc.active_state));
        if (!check(pc.pids_max && streq(pc.pids_max, "32") && pc.memory_limit &&
                   streq(pc.memory_limit, "67108864"),
                   "the kernel enforces them (pids.max 32, memory limit 64M)"))
                printf("#   pids.max %s memory limit %s\n", strna(pc.pids_max), strna(pc.memory_limit));
        check(done && t.result.cancelled && t.result.signal == SIGKILL && t.result.exit_code == -1 &&
              !t.error && pid_dead(t.pid), "cancel kills the step: cancelled, SIGKILL");
        free(pc.slice);
        free(pc.collect_mode);
        free(pc.description);
        free(pc.active_state);
        free(pc.pids_max);
        free(pc.memory_limit);
        run_clear(&t);
}

static void test_timeout(void) {
        _cleanup_free_ char *unit = unit_name("timeout");
        Run t = {};
        StepRunSpec spec = {
                .argv = ARGV("sleep", "1000"),
                .unit = unit, .slice = SLICE, .stdin_fd = -1,
                .timeout_usec = 300 * 1000,
        };
        bool done = run_simple(&t, bus, &spec);
        uint64_t ms = (t.finished - t.started) / 1000;

        if (!check(done && t.result.timed_out && !t.result.cancelled && t.result.signal == SIGKILL &&
                   !t.error && pid_dead(t.pid) && ms >= 300 && ms < 5000,
                   "a timeout kills `sleep 1000` and reports timed_out (done after %" PRIu64 " ms)", ms))
                dump_lines(&t);
        run_clear(&t);
}

static void collect_pid(Run *t, const char *line) {
        pid_t *pids = t->data;
        int pid = atoi(line);

        for (size_t i = 0; i < 4; i++)
                if (pids[i] == 0) {
                        pids[i] = pid;
                        break;
                }
}

static void test_cancel_tree(sd_bus *b, const char *what) {
        _cleanup_free_ char *unit = b ? unit_name("tree") : NULL;
        pid_t pids[4] = {};
        Run t = { .cancel_after = 2, .on_line = collect_pid, .data = pids };
        StepRunSpec spec = {
                .argv = SH("sleep 1000 & echo $!; sleep 1000 & echo $!; wait"),
                .unit = unit, .slice = SLICE, .stdin_fd = -1,
        };
        bool done = run_simple(&t, b, &spec);

        pids[2] = t.pid;
        if (!check(done && t.result.cancelled && pids[0] > 0 && pids[1] > 0 &&
                   pids_dead_within(pids, 3, 2 * 1000 * 1000),
                   "%s: cancel kills the whole tree (sh %d, sleep %d, sleep %d gone)", what,
                   (int) pids[2], (int) pids[0], (int) pids[1]))
                dump_lines(&t);
        run_clear(&t);
}

static void test_same_unit_twice(void) {
        _cleanup_free_ char *unit = unit_name("twice"), *path = NULL;
        Run t = {}, u = {};
        StepRunSpec spec = { .argv = ARGV("true"), .unit = unit, .slice = SLICE, .stdin_fd = -1 };
        bool done1, done2;
        int r;

        done1 = run_simple(&t, bus, &spec);
        /* done means the unit is unloaded already */
        r = unit_path(unit, &path);
        check(done1 && !t.error && r < 0,
              "after the done callback the scope is gone (GetUnit: %s; run took %" PRIu64 " ms)",
              r < 0 ? strerror(-r) : "still there", (t.finished - t.started) / 1000);
        done2 = run_simple(&u, bus, &spec);
        if (!check(done1 && done2 && !t.error && !u.error && t.result.exit_code == 0 &&
                   u.result.exit_code == 0, "the same unit name works twice in a row")) {
                dump_lines(&t);
                dump_lines(&u);
        }
        run_clear(&t);
        run_clear(&u);
}

typedef struct Clash {
        Run *second;
        const StepRunSpec *spec;
        int r;
} Clash;

static void clash_on_line(Run *t, const char *line) {
        Clash *c = t->data;

        if (streq(line, "ready"))
                c->r = run_start(c->second, bus, c->spec);
}

static void test_unit_exists(void) {
        _cleanup_free_ char *unit = unit_name("clash"), *marker = NULL;
        Run t = {}, u = {};
        StepRunSpec spec1 = { .argv = SH("echo ready; exec sleep 1000"), .unit = unit,
                              .slice = SLICE, .stdin_fd = -1 };
        StepRunSpec spec2 = { .unit = unit, .slice = SLICE, .stdin_fd = -1 };
        Clash c = { .second = &u, .spec = &spec2, .r = 1 };
        bool done;

        if (asprintf(&marker, "/tmp/%s.marker", unit) < 0)
                abort();
        spec2.argv = ARGV("touch", marker);
        t.on_line = clash_on_line;
        t.data = &c;

        if (run_start(&t, bus, &spec1) < 0 || !run_wait(&u, 10 * 1000 * 1000)) {
                check(false, "a second scope of a running name fails, its command never runs");
                dump_lines(&t);
        } else {
                if (!check(c.r == 0 && u.error && strstr(u.error, "failed to start scope") &&
                           access(marker, F_OK) < 0 && u.n_lines == 0,
                           "a second scope of a running name fails, its command never runs"))
                        dump_lines(&u);
                else
                        printf("#   %s\n", u.error);
        }
        (void) step_run_cancel(t.run);
        done = run_wait(&t, 10 * 1000 * 1000);
        check(done && t.result.cancelled, "the first one still cancels cleanly");
        (void) unlink(marker);
        run_clear(&t);
        run_clear(&u);
}

static void test_cancel_before_release(void) {
        _cleanup_free_ char *unit = unit_name("early"), *marker = NULL;
        Run t = {};
        StepRunSpec spec = { .unit = unit, .slice = SLICE, .stdin_fd = -1 };
        bool done = false;

        if (asprintf(&marker, "/tmp/%s.marker", unit) < 0)
                abort();
        spec.argv = ARGV("touch", marker);
        if (run_start(&t, bus, &spec) >= 0) {
                (void) step_run_cancel(t.run);
                done = run_wait(&t, 10 * 1000 * 1000);
        }
        if (!check(done && t.result.cancelled && !t.error && access(marker, F_OK) < 0,
                   "cancelled before the scope is ready: the command never runs"))
                dump_lines(&t);
        (void) unlink(marker);
        run_clear(&t);
}

static void test_leftover(void) {
        _cleanup_free_ char *unit = unit_name("leftover");
        pid_t pids[4] = {};
        Run t = { .on_line = collect_pid, .data = pids };
        StepRunSpec spec = { .argv = SH("sleep 1000 & echo $!"), .unit = unit, .slice = SLICE,
                             .stdin_fd = -1 };
        bool done = run_simple(&t, bus, &spec);
        uint64_t ms = (t.finished - t.started) / 1000;

        if (!check(done && t.result.exit_code == 0 && !t.error && pids[0] > 0 &&
                   pids_dead_within(pids, 1, 2 * 1000 * 1000) && ms < 5000,
                   "a background process holding the output is killed %llu ms after the step "
                   "exits (done after %" PRIu64 " ms)", STEP_RUN_EOF_GRACE_USEC / 1000, ms))
                dump_lines(&t);
        run_clear(&t);
}

static void test_no_manager(void) {
        Run t = {};
        StepRunSpec spec = {
                .argv = SH("echo hi; sleep 0.1; echo oops >&2; exit 3"),
                .unit = "ignored.scope", .stdin_fd = -1,
        };
        static const char *const want[] = { "hi", "oops" };
        static const bool want_err[] = { false, true };
        bool done = run_simple(&t, NULL, &spec);

        if (!check(done && lines_are(&t, 2, want, want_err) && t.result.exit_code == 3 && !t.error &&
                   step_run_unit(t.run) == NULL,
                   "without a manager: output and exit code, no unit"))
                dump_lines(&t);
        run_clear(&t);

        test_cancel_tree(NULL, "without a manager");
}

static void test_env_stdin_cwd(void) {
        _cleanup_free_ char *unit = unit_name("env");
        Run t = {};
        int fds[2];
        StepRunSpec spec = {
                .argv = SH("echo \"$NORN_TEST_VAR\"; pwd; cat"),
                .env = ARGV("NORN_TEST_VAR=from env", "PATH=/usr/bin:/bin"),
                .cwd = "/usr",
                .unit = unit, .slice = SLICE,
        };
        bool done;

        if (pipe2(fds, O_CLOEXEC) < 0 || write(fds[1], "from stdin\n", 11) != 11)
                abort();
        close(fds[1]);
        spec.stdin_fd = fds[0];
        done = run_simple(&t, bus, &spec);
        close(fds[0]);
        if (!check(done && !t.error && t.n_lines == 3 && streq(t.lines[0], "from env") &&
                   streq(t.lines[1], "/usr") && streq(t.lines[2], "from stdin"),
                   "the child gets the given environment, working directory and stdin"))
                dump_lines(&t);
        run_clear(&t);
}

static bool free_and(char **p) {
        *p = mfree(*p);
        return false;
}

/* An app's command: another uid, its work dir the only writable place, the
 * hidden dirs empty, a PID namespace of its own; the clone's files given to
 * it, never what a symlink in them points to. */
static void test_sandbox(void) {
        _cleanup_free_ char *unit = unit_name("sandbox"), *base = NULL, *work = NULL, *hidden = NULL,
                            *path = NULL;
        const char *tmp = getenv("TMPDIR");
        Run t = {}, u = {};
        struct stat st, link, passwd;
        bool done;

        if (asprintf(&base, "%s/norn-test-sandbox-XXXXXX", tmp && *tmp ? tmp : "/var/tmp") < 0 || !mkdtemp(base) ||
            chmod(base, 0755) < 0 || asprintf(&hidden, "%s/state", base) < 0 || mkdir(hidden, 0755) < 0 ||
            asprintf(&work, "%s/state/work", base) < 0 || mkdir(work, 0750) < 0 || free_and(&work) ||
            asprintf(&work, "%s/state/work/app-1", base) < 0 || mkdir(work, 0755) < 0 ||
            asprintf(&path, "%s/secret", hidden) < 0)
                abort();
        if (close(open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644)) < 0)
                abort();
        free(path);
        if (asprintf(&path, "%s/from-clone", work) < 0 || close(open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644)) < 0)
                abort();
        free(path);
        if (asprintf(&path, "%s/evil", work) < 0 || symlink("/etc/passwd", path) < 0)
                abort();

        StepSandbox sandbox = { .uid = 65534, .gid = 65534, .workdir = work, .hide = ARGV(hidden) };
        StepRunSpec spec = {
                .argv = SH("id -u; cat ../../secret 2>/dev/null || echo hidden; echo x >new && echo writes; "
                           "touch ../../../outside 2>/dev/null || echo read-only; ls /proc | grep -c '^[0-9]'"),
                .env = ARGV("PATH=/usr/bin:/bin"),
                .cwd = work, .unit = unit, .slice = SLICE, .stdin_fd = -1, .sandbox = &sandbox,
        };
        /* nornd's unit has UMask=0027: the path made to the work dir must still be searchable. */
        mode_t mask = umask(0027);
        done = run_simple(&t, bus, &spec);
        (void) umask(mask);
        if (!check(done && !t.error && t.result.exit_code == 0 && t.n_lines == 5 && streq(t.lines[0], "65534") &&
                   streq(t.lines[1], "hidden") && streq(t.lines[2], "writes") && streq(t.lines[3], "read-only") &&
                   atoi(t.lines[4]) >= 1 && atoi(t.lines[4]) <= 4,
                   "sandbox: runs as the given uid, sees no hidden file, writes only its work dir, "
                   "sees only its own processes"))
                dump_lines(&t);
        run_clear(&t);

        check(stat(path, &st) == 0 && lstat(path, &link) == 0 && stat("/etc/passwd", &passwd) == 0 &&
              link.st_uid == 65534 && passwd.st_uid == 0,
              "sandbox: the work dir's symlinks are given to the uid, never what they point to");
        free(path);
        check(asprintf(&path, "%s/from-clone", work) >= 0 && stat(path, &st) == 0 && st.st_uid == 65534 &&
              st.st_gid == 65534, "sandbox: the files nornd made in the work dir are given to the uid");
        free(path);
        check(asprintf(&path, "%s/outside", base) >= 0 && access(path, F_OK) < 0,
              "sandbox: nothing was written outside the work dir");

        sandbox.workdir = "/nonexistent/norn-test-work";
        done = run_simple(&u, bus, &spec);
        if (!check(done && u.error && streq(u.error, "failed to isolate sh (step user, namespaces): "
                                                     "No such file or directory"),
                   "sandbox: a failure to isolate is reported, the command does not run"))
                dump_lines(&u);
        run_clear(&u);

        free(path);
        if (asprintf(&path, "rm -rf -- '%s'", base) >= 0)
                (void) !system(path);
}

/* Asked again and again while waiting: each answer is freed (it leaked,
 * found by LeakSanitizer in a gcc -fsanitize=address build). */
static bool unit_gone(const char *unit) {
        _cleanup_free_ char *path = NULL;

        return unit_path(unit, &path) < 0;
}

static bool exists_below(const char *base, const char *rel) {
        _cleanup_free_ char *p = NULL;

        if (asprintf(&p, "%s/%s", base, rel) < 0)
                abort();
        return access(p, F_OK) >= 0;
}

static void submounts_run(const char *what, const char *base) {
        _cleanup_free_ char *unit = unit_name("submounts"), *work = NULL;
        Run t = {};
        bool done;

        if (asprintf(&work, "%s/work", base) < 0)
                abort();
        StepSandbox sandbox = { .uid = 65534, .gid = 65534, .workdir = work };
        StepRunSpec spec = {
                .argv = SH("echo x >new && echo work; echo x >/tmp/x && echo tmp; "
                           "for d in tmpfs tmpfs/inner ovl; do { echo x >../$d/x; } 2>/dev/null || echo ro $d; done"),
                .env = ARGV("PATH=/usr/bin:/bin"),
                .cwd = work, .unit = unit, .slice = SLICE, .stdin_fd = -1, .sandbox = &sandbox,
        };
        done = run_simple(&t, bus, &spec);
        if (!check(done && !t.error && t.result.exit_code == 0 && t.n_lines == 5 && streq(t.lines[0], "work") &&
                   streq(t.lines[1], "tmp") && streq(t.lines[2], "ro tmpfs") && streq(t.lines[3], "ro tmpfs/inner") &&
                   streq(t.lines[4], "ro ovl"),
                   "%s: every mount below / is read-only for the command, submounts and overlays too", what))
                dump_lines(&t);
        run_clear(&t);
        check(!exists_below(base, "tmpfs/x") && !exists_below(base, "tmpfs/inner/x") &&
              !exists_below(base, "upper/x"), "%s: nothing was written to the submounts", what);
}

/* Writable mounts below / (world-writable, so only the mount can say no):
 * a tmpfs, a tmpfs inside it, an overlay like tools/norn-sandbox's /usr. The
 * command writes its work dir and /tmp, and none of them. */
static void test_sandbox_submounts(const char *what) {
        static const char *const dirs[] = { "work", "tmpfs", "lower", "upper", "ovlwork", "ovl" };
        _cleanup_free_ char *base = NULL, *path = NULL, *ovl = NULL, *opts = NULL;
        const char *tmp = getenv("TMPDIR");
        bool mounted;

        if (asprintf(&base, "%s/norn-test-submounts-XXXXXX", tmp && *tmp ? tmp : "/var/tmp") < 0 || !mkdtemp(base) ||
            chmod(base, 0755) < 0)
                abort();
        for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
                free(path);
                if (asprintf(&path, "%s/%s", base, dirs[i]) < 0 || mkdir(path, 0777) < 0 || chmod(path, 0777) < 0)
                        abort();
        }
        free(path);
        if (asprintf(&path, "%s/tmpfs", base) < 0 || asprintf(&ovl, "%s/ovl", base) < 0 ||
            asprintf(&opts, "lowerdir=%s/lower,upperdir=%s/upper,workdir=%s/ovlwork", base, base, base) < 0)
                abort();
        mounted = mount("norn-test", path, "tmpfs", 0, "mode=1777") >= 0;
        free(path);
        if (asprintf(&path, "%s/tmpfs/inner", base) < 0)
                abort();
        mounted = mounted && mkdir(path, 0755) >= 0 && mount("norn-test", path, "tmpfs", 0, "mode=1777") >= 0 &&
                  mount("norn-test", ovl, "overlay", 0, opts) >= 0;
        if (check(mounted, "%s: the test's submounts are mounted (%s)", what, mounted ? "yes" : strerror(errno)))
                submounts_run(what, base);

        free(path);
        if (asprintf(&path, "umount -R '%s' '%s/tmpfs' 2>/dev/null; rm -rf -- '%s'", ovl, base, base) >= 0)
                (void) !system(path);
}

/* Refuses mount_setattr() with ENOSYS, as a kernel before 5.12 or a seccomp
 * policy would: the step sandbox falls back to remounting each mount. For
 * good, in this process: run it last. */
static bool refuse_mount_setattr(void) {
        struct sock_filter filter[] = {
                BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
                BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_mount_setattr, 0, 1),
                BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
                BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        };
        struct sock_fprog prog = { .len = ELEMENTSOF(filter), .filter = filter };

        return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) >= 0;
}

static void set_flag(Run *t, const char *line) {
        if (streq(line, "ready"))
                *(bool *) t->data = true;
}

static void test_free_running(sd_bus *b, const char *what) {
        _cleanup_free_ char *unit = b ? unit_name("free") : NULL;
        bool ready = false;
        Run t = { .on_line = set_flag, .data = &ready };
        StepRunSpec spec = { .argv = SH("echo ready; exec sleep 1000"), .unit = unit, .slice = SLICE,
                             .stdin_fd = -1 };
        uint64_t deadline = now_usec() + 5 * 1000 * 1000;
        pid_t pid;
        bool gone = b == NULL;

        if (run_start(&t, b, &spec) < 0) {
                check(false, "%s: freeing a running step kills it", what);
                return;
        }
        while (!ready && now_usec() < deadline)
                (void) sd_event_run(event, 100 * 1000);
        pid = t.pid;
        t.run = step_run_free(t.run);
        /* let the KillUnit go out and the orphan be reaped */
        while (now_usec() < deadline && !(pid_dead(pid) && (gone = gone || unit_gone(unit))))
                (void) sd_event_run(event, 20 * 1000);
        check(ready && !t.done && pid_dead(pid) && gone,
              "%s: freeing a running step kills it without calling back%s", what,
              b ? ", the scope goes away" : "");
        run_clear(&t);
}

static int on_tick(sd_event_source *s, uint64_t usec, void *userdata) {
        unsigned *ticks = userdata;

        (*ticks)++;
        return sd_event_source_set_time_relative(s, 20 * 1000);
}

static void test_loop_not_blocked(void) {
        _cleanup_free_ char *unit = unit_name("ticks");
        _cleanup_(sd_event_source_unrefp) sd_event_source *timer = NULL;
        unsigned ticks = 0;
        Run t = {};
        StepRunSpec spec = { .argv = ARGV("sleep", "1"), .unit = unit, .slice = SLICE,
                             .stdin_fd = -1 };
        bool done;

        /* accuracy 1 µs: the default (250 ms) would let sd-event coalesce the ticks */
        if (sd_event_add_time_relative(event, &timer, CLOCK_MONOTONIC, 20 * 1000, 1, on_tick,
                                       &ticks) < 0 ||
            sd_event_source_set_enabled(timer, SD_EVENT_ON) < 0)
                abort();
        done = run_simple(&t, bus, &spec);
        check(done && !t.error && t.result.exit_code == 0 && ticks >= 30,
              "a 20 ms timer keeps ticking while a step runs (%u ticks during `sleep 1`)", ticks);
        run_clear(&t);
}

/* ---- a fake manager on a private bus ---------------------------------------
 * For what the real manager does not do on demand: JobRemoved overtaking the
 * StartTransientUnit reply, and a failing start job. It owns
 * org.freedesktop.systemd1 on a private dbus-daemon and runs in this process's
 * event loop. */

typedef struct FakeManager {
        sd_bus *bus;
        bool signal_first;              /* JobRemoved before the method reply */
        const char *job_result;         /* "done", "failed", ... */
        unsigned next_job;
        pid_t pid;                      /* from PIDs= */
        char unit[256], slice[256], collect_mode[64];
        sd_event_source *pidfd_source;
} FakeManager;

static int fake_unit_removed(FakeManager *f) {
        _cleanup_free_ char *path = NULL;
        int r;

        r = sd_bus_path_encode("/org/freedesktop/systemd1/unit", f->unit, &path);
        if (r < 0)
                return r;
        return sd_bus_emit_signal(f->bus, "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager",
                                  "UnitRemoved", "so", f->unit, path);
}

static int fake_on_pid_exit(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        FakeManager *f = userdata;

        f->pidfd_source = sd_event_source_disable_unref(f->pidfd_source);
        (void) close(fd);
        return fake_unit_removed(f);
}

static int fake_read_properties(FakeManager *f, sd_bus_message *m) {
        const char *name, *value;
        uint32_t pid;
        int r;

        r = sd_bus_message_enter_container(m, 'a', "(sv)");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, 'r', "sv")) > 0) {
                r = sd_bus_message_read(m, "s", &name);
                if (r < 0)
                        return r;
                if (streq(name, "PIDs")) {
                        r = sd_bus_message_read(m, "v", "au", 1, &pid);
                        f->pid = (pid_t) pid;
                } else if (streq(name, "Slice")) {
                        r = sd_bus_message_read(m, "v", "s", &value);
                        if (r >= 0)
                                snprintf(f->slice, sizeof(f->slice), "%s", value);
                } else if (streq(name, "CollectMode")) {
                        r = sd_bus_message_read(m, "v", "s", &value);
                        if (r >= 0)
                                snprintf(f->collect_mode, sizeof(f->collect_mode), "%s", value);
                } else
                        r = sd_bus_message_skip(m, "v");
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(m);
}

static int fake_job_removed(FakeManager *f, uint32_t id, const char *job) {
        return sd_bus_emit_signal(f->bus, "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager",
                                  "JobRemoved", "uoss", id, job, f->unit, f->job_result);
}

static int fake_method(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        FakeManager *f = userdata;
        const char *member = sd_bus_message_get_member(m), *unit, *mode;
        char job[64];
        uint32_t id;
        int r, fd;

        if (!sd_bus_message_is_method_call(m, "org.freedesktop.systemd1.Manager", NULL))
                return 0;
        if (streq(member, "Subscribe") || streq(member, "KillUnit"))
                return sd_bus_reply_method_return(m, NULL);
        if (!streq(member, "StartTransientUnit"))
                return 0;

        r = sd_bus_message_read(m, "ss", &unit, &mode);
        if (r < 0)
                return r;
        snprintf(f->unit, sizeof(f->unit), "%s", unit);
        r = fake_read_properties(f, m);
        if (r < 0)
                return r;

        id = ++f->next_job;
        snprintf(job, sizeof(job), "/org/freedesktop/systemd1/job/%u", id);
        if (f->signal_first) {
                r = fake_job_removed(f, id, job);
                if (r >= 0)
                        r = sd_bus_reply_method_return(m, "o", job);
        } else {
                r = sd_bus_reply_method_return(m, "o", job);
                if (r >= 0)
                        r = fake_job_removed(f, id, job);
        }
        if (r < 0)
                return r;

        if (!streq(f->job_result, "done"))
                return fake_unit_removed(f);    /* a failed unit is collected */
        /* A running one goes when its process does. */
        fd = (int) syscall(SYS_pidfd_open, f->pid, 0);
        if (fd < 0)
                return -errno;
        return sd_event_add_io(event, &f->pidfd_source, fd, EPOLLIN, fake_on_pid_exit, f);
}

static pid_t private_bus_start(char *dir, char **ret_address) {
        char path[256];
        pid_t pid;

        if (!mkdtemp(dir))
                return -1;
        snprintf(path, sizeof(path), "%s/bus", dir);
        if (asprintf(ret_address, "unix:path=%s", path) < 0)
                return -1;
        pid = fork();
        if (pid == 0) {
                char arg[300];
                int null = open("/dev/null", O_RDWR | O_CLOEXEC);

                /* quiet: it warns that it cannot raise its fd limit */
                if (null >= 0 && (dup2(null, STDOUT_FILENO) < 0 || dup2(null, STDERR_FILENO) < 0))
                        _exit(127);
                snprintf(arg, sizeof(arg), "--address=%s", *ret_address);
                execlp("dbus-daemon", "dbus-daemon", "--session", "--nofork", "--nopidfile", arg,
                       (char *) NULL);
                _exit(127);
        }
        for (int i = 0; pid > 0 && i < 500 && access(path, F_OK) < 0; i++)
                usleep(10 * 1000);
        return pid;
}

static int private_bus_connect(const char *address, sd_bus **ret) {
        _cleanup_(sd_bus_unrefp) sd_bus *b = NULL;
        int r;

        r = sd_bus_new(&b);
        if (r >= 0)
                r = sd_bus_set_address(b, address);
        if (r >= 0)
                r = sd_bus_set_bus_client(b, 1);
        if (r >= 0)
                r = sd_bus_start(b);
        if (r >= 0)
                r = sd_bus_attach_event(b, event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(b);
        return 0;
}

static void test_fake_manager(void) {
        char dir[] = "/tmp/norn-test-bus.XXXXXX";
        _cleanup_free_ char *address = NULL, *marker = NULL;
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *client = NULL;
        FakeManager f = { .signal_first = true, .job_result = "done" };
        Run t = {}, u = {};
        StepRunSpec spec = { .argv = SH("echo hello"), .unit = "norn-fake-early.scope",
                             .slice = "norn.slice", .stdin_fd = -1 };
        pid_t daemon = private_bus_start(dir, &address);
        bool done;
        int r = daemon > 0 ? 0 : -ECHILD;

        if (r >= 0)
                r = private_bus_connect(address, &f.bus);
        if (r >= 0)
                r = sd_bus_request_name(f.bus, "org.freedesktop.systemd1", 0);
        if (r >= 0)
                r = sd_bus_add_object(f.bus, NULL, "/org/freedesktop/systemd1", fake_method, &f);
        if (r >= 0)
                r = private_bus_connect(address, &client);
        if (!check(r >= 0, "a fake manager on a private bus (%s)", r < 0 ? strerror(-r) : address))
                goto finish;

        done = run_simple(&t, client, &spec);
        if (!check(done && !t.error && t.result.exit_code == 0 && t.n_lines == 1 &&
                   streq(t.lines[0], "hello"),
                   "JobRemoved before the StartTransientUnit reply: the job is still matched, the command runs"))
                dump_lines(&t);
        check(f.pid == t.pid && streq(f.slice, "norn.slice") &&
              streq(f.collect_mode, "inactive-or-failed"),
              "StartTransientUnit carried PIDs=[%d], Slice=norn.slice, CollectMode=inactive-or-failed",
              (int) t.pid);

        if (asprintf(&marker, "%s/marker", dir) < 0)
                abort();
        f.signal_first = false;
        f.job_result = "failed";
        spec.unit = "norn-fake-failed.scope";
        spec.argv = ARGV("touch", marker);
        done = run_simple(&u, client, &spec);
        if (!check(done && u.error && streq(u.error, "scope job failed: failed") &&
                   u.result.exit_code == -1 && access(marker, F_OK) < 0,
                   "a failed start job reports \"scope job failed: failed\", the command never runs"))
                dump_lines(&u);
        (void) unlink(marker);

finish:
        run_clear(&t);
        run_clear(&u);
        f.pidfd_source = sd_event_source_disable_unref(f.pidfd_source);
        f.bus = sd_bus_flush_close_unref(f.bus);
        if (daemon > 0) {
                (void) kill(daemon, SIGTERM);
                (void) waitpid(daemon, NULL, 0);
        }
        if (address) {
                char path[300];
                snprintf(path, sizeof(path), "%s/bus", dir);
                (void) unlink(path);
                (void) rmdir(dir);
        }
}

int main(void) {
        _cleanup_free_ char *version = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_id128_t id;
        sigset_t mask;
        int r;

        log_setup(LOG_TARGET_STDERR, LOG_INFO);
        setvbuf(stdout, NULL, _IOLBF, 0);

        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0 || sd_event_new(&event) < 0)
                return 1;
        if (sd_id128_randomize(&id) < 0)
                return 1;
        /* Random: sandboxes running side by side share the cgroup tree's names. */
        snprintf(unit_prefix, sizeof(unit_prefix), "norn-test-%08" PRIx32,
                 (uint32_t) (id.qwords[0] & 0xffffffffu));

        test_line_split();

        r = sd_bus_open_user(&bus);
        if (r >= 0)
                r = sd_bus_open_user(&qbus);
        if (r >= 0)
                r = sd_bus_get_property_string(qbus, "org.freedesktop.systemd1",
                                               "/org/freedesktop/systemd1",
                                               "org.freedesktop.systemd1.Manager", "Version",
                                               &error, &version);
        if (!check(r >= 0, "the systemd user manager is reachable (%s)",
                   r >= 0 ? version : error.message ?: strerror(-r))) {
                printf("# run this inside tools/norn-sandbox\n");
                return 1;
        }
        if (sd_bus_attach_event(bus, event, SD_EVENT_PRIORITY_NORMAL) < 0)
                return 1;

        test_output();
        test_long_line();
        test_binary();
        test_exit_code();
        test_missing_binary();
        test_in_scope();
        test_properties();
        test_timeout();
        test_cancel_tree(bus, "with a scope");
        test_cancel_before_release();
        test_same_unit_twice();
        test_unit_exists();
        test_leftover();
        test_no_manager();
        test_env_stdin_cwd();
        test_sandbox();
        test_free_running(bus, "with a scope");
        test_free_running(NULL, "without a manager");
        test_loop_not_blocked();
        test_fake_manager();
        test_sandbox_submounts("sandbox");
        if (check(refuse_mount_setattr(), "mount_setattr() refused from here on"))
                test_sandbox_submounts("sandbox without mount_setattr");

        sd_bus_flush_close_unref(bus);
        sd_bus_flush_close_unref(qbus);
        sd_event_unref(event);
        printf("# %u checks, %u failed\n", n_checks, n_failed);
        return n_failed > 0 ? 1 : 0;
}
