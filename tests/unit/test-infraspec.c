/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* infraspec.yaml parsing, value checks, git ref/URL checks and app
 * discovery. Files are written into a mkdtemp() directory. Prints one
 * "ok N - ..." / "not ok N - ..." line per check; exits 1 if any failed. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "apps.h"
#include "git-ref.h"
#include "infraspec.h"
#include "macro.h"
#include "tap.h"
#include "utf8.h"

#define FILENAME "apps/web/infraspec.yaml"
#define SECRET "s3cr3t-hook-value"

static char tmpdir[] = "/tmp/test-infraspec-XXXXXX";

/* Test names with control characters, printable on one line. */
static const char *esc(const char *s) {
        static char buf[4][128];
        static unsigned k;
        char *b = buf[k++ % 4], *q = b;

        for (; *s && q < b + sizeof(buf[0]) - 5; s++)
                if ((unsigned char) *s < ' ' || *s == 0x7f)
                        q += sprintf(q, "\\x%02x", (unsigned char) *s);
                else
                        *q++ = *s;
        *q = '\0';
        return b;
}

static void dump(const InfraspecDiagnostics *d) {
        for (size_t i = 0; i < d->n; i++) {
                _cleanup_free_ char *s = infraspec_diagnostic_format(d, i);
                printf("#   %s\n", strna(s));
        }
}

/* Does any formatted diagnostic contain 'needle'? */
static bool has(const InfraspecDiagnostics *d, const char *needle) {
        for (size_t i = 0; i < d->n; i++) {
                _cleanup_free_ char *s = infraspec_diagnostic_format(d, i);
                if (s && strstr(s, needle))
                        return true;
        }
        return false;
}

static bool any_contains_secret(const InfraspecDiagnostics *d) {
        return has(d, SECRET) || has(d, "s3cr3t");
}

static int parse(const char *yaml, const char *expected_app, Infraspec **ret, InfraspecDiagnostics *d) {
        return infraspec_parse(FILENAME, yaml, strlen(yaml), expected_app, ret, d);
}

/* Parse, expect failure with a diagnostic containing 'needle'. */
static void expect_error(const char *name, const char *yaml, const char *needle) {
        _cleanup_(infraspec_freep) Infraspec *s = NULL;
        InfraspecDiagnostics d = {};
        int r;

        r = parse(yaml, NULL, &s, &d);
        if (!check(r == -EINVAL && !s && d.n_errors > 0 && has(&d, needle), "%s: error \"%s\"", name, needle)) {
                printf("#   r=%d\n", r);
                dump(&d);
        }
        infraspec_diagnostics_done(&d);
}

/* Parse, expect success (warnings allowed). */
static void expect_ok(const char *name, const char *yaml) {
        _cleanup_(infraspec_freep) Infraspec *s = NULL;
        InfraspecDiagnostics d = {};
        int r;

        r = parse(yaml, NULL, &s, &d);
        if (!check(r == 0 && s && d.n_errors == 0, "%s: accepted", name)) {
                printf("#   r=%d\n", r);
                dump(&d);
        }
        infraspec_diagnostics_done(&d);
}

static int write_file(const char *path, const char *content, size_t size) {
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

        if (fd < 0)
                return -errno;
        if (write(fd, content, size) != (ssize_t) size)
                return -EIO;
        return 0;
}

static const char full_spec[] =
        "# every field\n"
        "app: web\n"
        "role: webserver\n"
        "core: true\n"
        "port: 8080\n"
        "healthcheck: /healthz\n"
        "replicas: 3\n"
        "deploy: true\n"
        "hosts:\n"
        "  external: web.example.com\n"
        "  internal: web.internal\n"
        "build:\n"
        "  dockerfile: docker/Dockerfile.prod\n"
        "  test: make test\n"
        "repo:\n"
        "  url: https://git.example.com/org/web.git\n"
        "  branch: release/1.2\n"
        "  autoDeploy: true\n"
        "  repoWeb: https://git.example.com/org/web\n"
        "  webhookSecret: " SECRET "\n"
        "services:\n"
        "  postgres:\n"
        "    database: web_db\n"
        "    migrations: db/migrations/\n"
        "  kv:\n"
        "    namespace: web\n"
        "  events:\n"
        "    topics: [orders.created, orders.paid]\n"
        "  storage:\n"
        "    bucket: web-assets\n"
        "    provider: s3\n"
        "secrets:\n"
        "  - DATABASE_PASSWORD\n"
        "  - API_KEY\n"
        "migrations:\n"
        "  command: |\n"
        "    ./migrate up\n"
        "    echo done\n"
        "  database: web_db\n"
        "artifacts:\n"
        "  retain: 10\n"
        "volumes:\n"
        "  - name: data\n"
        "    mountPath: /var/lib/web\n"
        "    size: 10Gi\n"
        "  - name: cache\n"
        "    mountPath: /cache\n"
        "    hostPath: /srv/cache\n"
        "env:\n"
        "  ZED: last\n"
        "  APP_ENV: production\n"
        "  PORT: 8080\n"
        "  EMPTY: \"\"\n"
        "alerts:\n"
        "  window: 10m\n"
        "  threshold: 5\n"
        "schedule: \"*/5 * * * *\"\n"
        "command: ./run-job\n"
        "runtime: docker\n"
        "timeout: 600\n"
        "function:\n"
        "  timeout: 60\n"
        "  trigger: http\n"
        "  memory: 512m\n";

static void test_full_spec(void) {
        _cleanup_(infraspec_freep) Infraspec *s = NULL;
        InfraspecDiagnostics d = {};
        _cleanup_free_ char *dumped = NULL;
        json_t *j;
        int r;

        r = parse(full_spec, "web", &s, &d);
        if (!check(r == 0 && s, "full spec parses")) {
                dump(&d);
                infraspec_diagnostics_done(&d);
                return;
        }
        check(d.n == 0, "full spec: no diagnostics (got %zu)", d.n);
        check(streq(d.file, FILENAME), "diagnostics carry the file name");
        check(streq(s->app, "web") && s->role == APP_ROLE_WEBSERVER && s->core, "app, role, core");
        check(s->port == 8080 && streq(s->healthcheck, "/healthz") && s->replicas == 3 && s->deploy,
              "port, healthcheck, replicas, deploy");
        check(s->hosts.present && streq(s->hosts.external, "web.example.com") &&
              streq(s->hosts.internal, "web.internal"), "hosts");
        check(s->build.present && streq(s->build.dockerfile, "docker/Dockerfile.prod") &&
              streq(s->build.test, "make test"), "build");
        check(s->repo.present && streq(s->repo.url, "https://git.example.com/org/web.git") &&
              streq(s->repo.branch, "release/1.2") && s->repo.auto_deploy &&
              streq(s->repo.repo_web, "https://git.example.com/org/web") &&
              streq(s->repo.webhook_secret, SECRET), "repo");
        check(s->services.postgres.present && streq(s->services.postgres.database, "web_db") &&
              streq(s->services.postgres.migrations, "db/migrations/"), "services.postgres");
        check(s->services.kv.present && streq(s->services.kv.namespace, "web"), "services.kv");
        check(s->services.events.present && s->services.events.n_topics == 2 &&
              streq(s->services.events.topics[0], "orders.created") &&
              streq(s->services.events.topics[1], "orders.paid") && !s->services.events.topics[2],
              "services.events.topics");
        check(s->services.storage.present && streq(s->services.storage.bucket, "web-assets") &&
              streq(s->services.storage.provider, "s3"), "services.storage");
        check(s->n_secrets == 2 && streq(s->secrets[0], "DATABASE_PASSWORD") && streq(s->secrets[1], "API_KEY") &&
              !s->secrets[2], "secrets");
        check(s->migrations.present && streq(s->migrations.command, "./migrate up\necho done\n") &&
              streq(s->migrations.database, "web_db"), "migrations (block scalar keeps newlines)");
        check(s->artifacts.retain == 10, "artifacts.retain");
        check(s->n_volumes == 2 &&
              streq(s->volumes[0].name, "data") && streq(s->volumes[0].mount_path, "/var/lib/web") &&
              streq(s->volumes[0].size, "10Gi") && !s->volumes[0].host_path &&
              streq(s->volumes[1].name, "cache") && streq(s->volumes[1].mount_path, "/cache") &&
              streq(s->volumes[1].host_path, "/srv/cache") && !s->volumes[1].size, "volumes");
        check(s->n_env == 4 &&
              streq(s->env[0].name, "ZED") && streq(s->env[0].value, "last") &&
              streq(s->env[1].name, "APP_ENV") && streq(s->env[1].value, "production") &&
              streq(s->env[2].name, "PORT") && streq(s->env[2].value, "8080") &&
              streq(s->env[3].name, "EMPTY") && streq(s->env[3].value, ""), "env, in file order");
        check(streq(s->alerts.window, "10m") && s->alerts.threshold == 5, "alerts");
        check(streq(s->schedule, "*/5 * * * *") && streq(s->command, "./run-job") &&
              streq(s->runtime, "docker") && s->timeout == 600, "schedule, command, runtime, timeout");
        check(s->function.timeout == 60 && streq(s->function.trigger, "http") &&
              streq(s->function.memory, "512m"), "function");
        check(infraspec_wants_build(s) && infraspec_wants_test(s) && infraspec_wants_snapshot(s) &&
              infraspec_wants_migrate(s), "all pipeline steps wanted");

        j = infraspec_to_json(s);
        dumped = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        check(dumped && !strstr(dumped, SECRET) && strstr(dumped, "\"webhookSecret\":\"(set)\""),
              "JSON: webhookSecret shown as (set), value absent");
        check(dumped && strstr(dumped, "\"env\":{\"ZED\":\"last\",\"APP_ENV\":\"production\""),
              "JSON: env keeps file order");
        check(dumped && strstr(dumped, "\"dockerfile\":\"docker/Dockerfile.prod\"") &&
              strstr(dumped, "\"port\":8080") && strstr(dumped, "\"autoDeploy\":true"), "JSON: fields present");
        infraspec_diagnostics_done(&d);
}

static void test_defaults(void) {
        _cleanup_(infraspec_freep) Infraspec *s = NULL, *b = NULL;
        InfraspecDiagnostics d = {};
        _cleanup_free_ char *dumped = NULL;
        json_t *j;
        int r;

        r = parse("app: web\nrole: worker\n", "web", &s, &d);
        if (!check(r == 0 && s && d.n == 0, "minimal spec parses")) {
                dump(&d);
                infraspec_diagnostics_done(&d);
                return;
        }
        check(s->replicas == 1, "default replicas 1");
        check(!s->deploy && !s->core && s->port == 0, "default deploy false, core false, no port");
        check(streq(s->build.dockerfile, "Dockerfile") && !s->build.present, "default dockerfile, build absent");
        check(streq(s->repo.branch, "main") && !s->repo.present, "default branch main");
        check(s->artifacts.retain == 5, "default artifacts.retain 5");
        check(streq(s->alerts.window, "5m") && s->alerts.threshold == 3, "default alerts 5m/3");
        check(s->timeout == 300, "default timeout 300");
        check(s->function.timeout == 30 && streq(s->function.trigger, "http") && streq(s->function.memory, "256m"),
              "default function 30/http/256m");
        check(!infraspec_wants_build(s) && !infraspec_wants_test(s) && !infraspec_wants_snapshot(s) &&
              !infraspec_wants_migrate(s), "no section: every optional step skipped");
        check(s->n_env == 0 && s->n_volumes == 0 && s->n_secrets == 0 && !s->schedule && !s->runtime,
              "no env, volumes, secrets");

        j = infraspec_to_json(s);
        dumped = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        check(dumped && !strstr(dumped, "\"build\"") && !strstr(dumped, "\"repo\"") &&
              strstr(dumped, "\"replicas\":1"), "JSON of minimal spec: absent sections left out");
        infraspec_diagnostics_done(&d);

        r = parse("app: web\nrole: worker\nbuild:\nrepo:\n  url: /srv/git/web.git\n"
                  "services:\n  postgres: {database: web}\n", "web", &b, &d);
        check(r == 0 && b && infraspec_wants_build(b) && !infraspec_wants_test(b) &&
              streq(b->build.dockerfile, "Dockerfile") && streq(b->repo.branch, "main") &&
              infraspec_wants_snapshot(b) && !infraspec_wants_migrate(b),
              "empty build section: build with default Dockerfile; postgres: snapshot");
        infraspec_diagnostics_done(&d);

        expect_ok("yes/no style booleans", "app: web\nrole: worker\ndeploy: yes\ncore: Off\n");
        expect_ok("replicas 0", "app: web\nrole: worker\nreplicas: 0\n");
        expect_ok("null values keep defaults", "app: web\nrole: worker\nreplicas: ~\ntimeout: null\n");
        expect_ok("flow mapping", "{app: web, role: webserver, port: 80}");
        expect_ok("UTF-8 BOM", "\xef\xbb\xbf" "app: web\nrole: worker\n");
        expect_ok("explicit document markers", "---\napp: web\nrole: worker\n...\n");
        expect_ok("!!str tag", "app: !!str web\nrole: worker\n");
}

static void test_roles(void) {
        expect_error("webserver without port", "app: web\nrole: webserver\n",
                     FILENAME ":2:7: error: port: required for role webserver");
        expect_error("cron without schedule", "app: web\nrole: cron\ncommand: ./job\n",
                     ":2:7: error: schedule: required for role cron");
        expect_error("cron without command", "app: web\nrole: cron\nschedule: '@hourly'\n",
                     ":2:7: error: command: required for role cron");
        expect_ok("cron with schedule and command", "app: web\nrole: cron\nschedule: '0 3 * * MON-FRI'\ncommand: ./job\n");
        expect_ok("function needs no port", "app: fn\nrole: function\n");
        expect_error("unknown role", "app: web\nrole: web\n",
                     ":2:7: error: role: expected one of webserver, worker, cron, function, got \"web\"");
        expect_error("missing app", "role: worker\n", ":1:1: error: missing required key \"app\"");
        expect_error("missing role", "app: web\n", ":1:1: error: missing required key \"role\"");
        {
                InfraspecDiagnostics d = {};
                Infraspec *s = NULL;

                check(parse("app: web\nrole:\n", NULL, &s, &d) == -EINVAL && d.n_errors == 1 &&
                      has(&d, "missing required key \"role\""), "null role: reported once, as missing");
                infraspec_diagnostics_done(&d);
        }
        {
                static const char nul_key[] = "app: web\nrole: worker\n\"port\\0x\": 80\n";
                InfraspecDiagnostics d = {};
                Infraspec *s = NULL;

                check(parse(nul_key, NULL, &s, &d) == 0 && s && s->port == 0 &&
                      has(&d, "warning: unknown key \"port\\x00x\" (quoted)"), "key with escaped NUL is not \"port\"");
                infraspec_free(s);
                infraspec_diagnostics_done(&d);
        }
        expect_error("bad cron expression", "app: web\nrole: cron\nschedule: '* * *'\ncommand: x\n",
                     ":3:11: error: schedule: expected a cron expression");
        expect_error("cron schedule a timer cannot run", "app: web\nrole: cron\nschedule: '0 0 30 2 *'\ncommand: x\n",
                     "would never run");
        expect_error("cron schedule with nth weekday", "app: web\nrole: cron\nschedule: '0 12 * * 5#3'\ncommand: x\n",
                     ":3:11: error: schedule: ");
        expect_error("postgres without database", "app: web\nrole: worker\nservices:\n  postgres:\n    migrations: db\n",
                     ":5:5: error: services.postgres: missing required key \"database\"");
        expect_error("repo without url", "app: web\nrole: worker\nrepo:\n  branch: main\n",
                     "error: repo: missing required key \"url\"");
        expect_error("volume without mountPath", "app: web\nrole: worker\nvolumes:\n  - name: data\n",
                     ":4:5: error: volumes[0]: missing required key \"mountPath\"");
}

static void test_types(void) {
        static const char yaml[] =
                "app: web\n"                 /* 1 */
                "role: webserver\n"          /* 2 */
                "port: http\n"               /* 3 */
                "replicas: [1, 2]\n"         /* 4 */
                "build:\n"                   /* 5 */
                "  dockerfile:\n"            /* 6 */
                "    - a\n"                  /* 7 */
                "deploy: maybe\n"            /* 8 */
                "secrets: API_KEY\n"         /* 9 */
                "env: [a]\n"                 /* 10 */
                "hosts: web.example.com\n";  /* 11 */
        _cleanup_(infraspec_freep) Infraspec *s = NULL;
        InfraspecDiagnostics d = {};
        int r;

        r = parse(yaml, NULL, &s, &d);
        check(r == -EINVAL && !s, "wrong types: invalid");
        check(d.n_errors == 7, "wrong types: all 7 errors reported at once (got %zu)", d.n_errors);
        check(d.n == 7 && d.items[0].line == 3 && d.items[6].line == 11, "diagnostics in file order");
        if (!check(has(&d, FILENAME ":3:7: error: port: expected an integer between 1 and 65535, got \"http\""),
                   "port: \"http\" at 3:7"))
                dump(&d);
        check(has(&d, ":4:11: error: replicas: expected an integer between 0 and 1000, got a list"),
              "replicas: list at 4:11");
        check(has(&d, ":7:5: error: build.dockerfile: expected a string, got a list"), "build.dockerfile: list at 7:5");
        check(has(&d, ":8:9: error: deploy: expected true or false, got \"maybe\""), "deploy: maybe at 8:9");
        check(has(&d, ":9:10: error: secrets: expected a list of strings, got \"API_KEY\""), "secrets: scalar at 9:10");
        check(has(&d, ":10:6: error: env: expected a mapping"), "env: list at 10:6");
        check(has(&d, ":11:8: error: hosts: expected a mapping, got \"web.example.com\""), "hosts: scalar at 11:8");
        check(!has(&d, "port: required"), "an invalid port is not also reported as missing");
        infraspec_diagnostics_done(&d);

        expect_error("port out of range", "app: web\nrole: webserver\nport: 70000\n",
                     "port: expected an integer between 1 and 65535, got \"70000\"");
        expect_error("port 0", "app: web\nrole: webserver\nport: 0\n", "port: expected an integer between 1 and 65535");
        expect_error("negative port", "app: web\nrole: webserver\nport: -80\n", "got \"-80\"");
        expect_error("overflowing integer", "app: web\nrole: worker\nreplicas: 99999999999999999999999\n",
                     "replicas: expected an integer between 0 and 1000, got \"99999999999999999999999\"");
        expect_error("quoted integer", "app: web\nrole: webserver\nport: \"8080\"\n", "got \"8080\" (quoted)");
        expect_error("float", "app: web\nrole: worker\ntimeout: 1.5\n", "timeout: expected an integer between 1 and 86400");
        expect_error("hex integer", "app: web\nrole: worker\ntimeout: 0x10\n", "timeout: expected an integer");
        expect_error("octal-looking integer", "app: web\nrole: worker\ntimeout: 010\n", "timeout: expected an integer");
        expect_error("timeout 0", "app: web\nrole: worker\ntimeout: 0\n", "timeout: expected an integer between 1 and 86400");
        expect_error("timeout too large", "app: web\nrole: worker\ntimeout: 86401\n", "got \"86401\"");
        expect_error("replicas too large", "app: web\nrole: worker\nreplicas: 1001\n", "replicas: expected");
        expect_error("mapping as string", "app: {a: b}\nrole: worker\n", "1:6: error: app: expected a string, got a mapping");
        expect_error("duplicate key", "app: web\nrole: worker\napp: web\n",
                     ":3:1: error: duplicate key \"app\" (first at line 1)");
        expect_error("duplicate nested key", "app: web\nrole: worker\nbuild:\n  test: a\n  test: b\n",
                     ":5:3: error: build: duplicate key \"test\"");
        expect_error("duplicate env name", "app: web\nrole: worker\nenv:\n  A: 1\n  A: 2\n",
                     ":5:3: error: env: duplicate key \"A\"");
        expect_error("bad env name", "app: web\nrole: worker\nenv:\n  1A: x\n", "env: expected a variable name");
        expect_error("null env value", "app: web\nrole: worker\nenv:\n  A:\n", "env.A: expected a string");
        expect_error("complex key", "app: web\nrole: worker\n? [a]\n: b\n", "expected a plain key, got a list");
        expect_error("bad provider", "app: web\nrole: worker\nservices:\n  storage: {bucket: b, provider: dropbox}\n",
                     "services.storage.provider: expected one of minio, r2, s3, gcs, spaces, got \"dropbox\"");
        expect_error("bad healthcheck", "app: web\nrole: worker\nhealthcheck: healthz\n", "healthcheck: expected a URL path");
        expect_error("bad window", "app: web\nrole: worker\nalerts: {window: soon}\n", "alerts.window: expected a duration");
        expect_error("bad memory", "app: web\nrole: function\nfunction: {memory: lots}\n", "function.memory: expected a memory size");
        expect_error("relative mountPath", "app: web\nrole: worker\nvolumes:\n  - {name: d, mountPath: data}\n",
                     "volumes[0].mountPath: expected an absolute path");
        expect_error("bad repo url", "app: web\nrole: worker\nrepo:\n  url: ext::sh -c touch\n", "repo.url: expected a git URL");
        expect_error("bad branch", "app: web\nrole: worker\nrepo:\n  url: /srv/r.git\n  branch: --upload-pack=x\n",
                     "repo.branch: expected a valid git branch name");
        expect_error("newline in a one-line string", "app: web\nrole: worker\nruntime: |\n  docker\n",
                     "runtime: expected a single line without control characters, got \"docker\\x0a\"");
        expect_error("bad database name", "app: web\nrole: worker\nmigrations: {command: x, database: -h evil}\n",
                     "migrations.database: expected a database name");
        expect_error("top level list", "- app\n- web\n", ":1:1: error: expected a mapping (app: ..., role: ...) at the top level, got a list");
        expect_error("top level scalar", "hello\n", "got \"hello\"");
}

static void test_unknown_keys(void) {
        _cleanup_(infraspec_freep) Infraspec *s = NULL;
        InfraspecDiagnostics d = {};
        int r;

        r = parse("app: web\nrole: worker\nfoo: bar\nbuild:\n  dockerFile: x\n", NULL, &s, &d);
        check(r == 0 && s, "unknown keys: still valid");
        check(d.n == 2 && d.n_errors == 0, "unknown keys: two warnings, no error");
        check(has(&d, FILENAME ":3:1: warning: unknown key \"foo\", ignored"), "unknown key warning with location");
        check(has(&d, ":5:3: warning: build: unknown key \"dockerFile\" (did you mean \"dockerfile\"?), ignored"),
              "nested unknown key with suggestion");
        infraspec_diagnostics_done(&d);
        s = infraspec_free(s);

        /* A warning next to an error is kept. */
        r = parse("app: web\nrole: webserver\nfoo: 1\n", NULL, &s, &d);
        check(r == -EINVAL && d.n == 2 && d.n_errors == 1 && has(&d, "warning: unknown key"),
              "warnings are reported together with errors");
        check(d.items[0].line == 2 || d.items[1].line == 2, "diagnostic line numbers are 1-based");
        infraspec_diagnostics_done(&d);
}

static void test_syntax(void) {
        expect_error("syntax: mapping values", "app: web\n  role: x\n",
                     FILENAME ":2:7: error: YAML syntax error: mapping values are not allowed in this context");
        expect_error("syntax: unclosed flow", "app: web\nrole: [worker\n", "error: YAML syntax error: did not find expected");
        expect_error("syntax: bad indentation", "app: web\nrole: worker\n build: x\n", "error: YAML syntax error");
        expect_error("syntax: unterminated quote", "app: \"web\nrole: worker\n",
                     "YAML syntax error: found unexpected end of stream");
        expect_error("syntax: tab indentation", "app: web\nbuild:\n\ttest: x\n", "YAML syntax error");
        expect_error("two documents", "app: web\nrole: worker\n---\napp: x\n",
                     ":3:1: error: only one YAML document is allowed");
        expect_error("empty file", "", "error: file is empty");
        expect_error("comments only", "# nothing\n", "error: file is empty");
        {
                static const char nul[] = "app: web\nrole: wor\0ker\n";
                InfraspecDiagnostics d = {};
                Infraspec *s = NULL;
                int r = infraspec_parse("x", nul, sizeof(nul) - 1, NULL, &s, &d);

                check(r == -EINVAL && has(&d, "x:2:10: error: file contains a NUL byte"), "NUL byte with location");
                infraspec_diagnostics_done(&d);
        }
        expect_error("escaped NUL", "app: web\nrole: worker\nruntime: \"do\\0cker\"\n",
                     ":3:10: error: runtime: contains a NUL character");
        expect_error("invalid UTF-8", "app: web\nrole: w\xff\n", ":2:8: error: invalid input: invalid leading UTF-8 octet");
        expect_error("truncated UTF-8", "app: web\nrole: w\xc3", "error: invalid input: incomplete UTF-8 octet sequence");
        expect_error("control character", "app: web\nrole: w\x01x\n", ":2:8: error: invalid input: control characters are not allowed");
        expect_error("custom tag", "app: !evil web\nrole: worker\n", ":1:6: error: unsupported YAML tag \"!evil\"");
        expect_error("python tag", "app: !!python/object:os.system x\nrole: worker\n", "unsupported YAML tag");
}

/* Every diagnostic must be valid UTF-8: it goes into JSON and D-Bus strings. */
static bool all_utf8(const InfraspecDiagnostics *d) {
        for (size_t i = 0; i < d->n; i++) {
                _cleanup_free_ char *f = infraspec_diagnostic_format(d, i);

                if (!utf8_is_valid(d->items[i].message) || !f || !utf8_is_valid(f))
                        return false;
        }
        return true;
}

/* Tags that are long, multi-byte or percent-escaped to bytes that are not
 * UTF-8: the diagnostic quotes them cut on a character boundary, any byte
 * that is not UTF-8 replaced. */
static void test_tag_utf8(void) {
        /* A tag is URI characters: others come percent-escaped. */
        static const char *const chars[] = { "%c3%a9", "%e2%96%b6", "%f0%9f%98%80" };

        for (size_t c = 0; c < ELEMENTSOF(chars); c++)
                for (size_t pad = 60; pad <= 64; pad++) {
                        _cleanup_(infraspec_freep) Infraspec *s = NULL;
                        InfraspecDiagnostics d = {};
                        char yaml[256], tag[128];
                        int r;

                        memset(tag, 'x', pad);
                        snprintf(tag + pad, sizeof(tag) - pad, "%s%s", chars[c], chars[c]);
                        snprintf(yaml, sizeof(yaml), "app: !%s web\nrole: worker\n", tag);
                        r = parse(yaml, NULL, &s, &d);
                        if (!check(r == -EINVAL && has(&d, "unsupported YAML tag \"!xxxxxxxx") && all_utf8(&d),
                                   "tag of %zu ASCII + %zu-byte characters: cut on a character boundary", pad,
                                   strlen(chars[c]) / 3))
                                dump(&d);
                        infraspec_diagnostics_done(&d);
                }
        {
                _cleanup_(infraspec_freep) Infraspec *s = NULL;
                InfraspecDiagnostics d = {};
                int r = parse("app: !<!%ff%c3> web\nrole: worker\n", NULL, &s, &d);

                if (!check(r == -EINVAL && d.n_errors > 0 && all_utf8(&d),
                           "tag percent-escaped to bytes that are not UTF-8: the diagnostic is UTF-8"))
                        dump(&d);
                infraspec_diagnostics_done(&d);
        }
}

static void test_aliases(void) {
        expect_error("anchor refused", "base: &b\n  x: 1\napp: web\nrole: worker\n",
                     ":1:7: error: YAML anchors and aliases are not supported (anchor \"&b\")");
        expect_error("alias refused", "app: web\nrole: worker\nfoo: *b\n",
                     ":3:6: error: YAML anchors and aliases are not supported (alias \"*b\")");
        expect_error("billion laughs refused",
                     "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
                     "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
                     "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
                     "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
                     "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
                     "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
                     "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
                     "app: web\nrole: worker\n",
                     "YAML anchors and aliases are not supported");
        expect_error("merge key with alias refused", "app: web\nrole: worker\n<<: *x\n", "aliases are not supported");
}

static void test_limits(void) {
        _cleanup_free_ char *big = NULL, *deep = NULL, *longstr = NULL, *cmd = NULL, *huge = NULL, *many = NULL, *path = NULL;
        _cleanup_(infraspec_freep) Infraspec *s = NULL;
        InfraspecDiagnostics d = {};
        size_t n = INFRASPEC_MAX_FILE_SIZE + 100;
        FILE *f;
        int r;

        /* Huge file: in memory and on disk. */
        big = malloc(n + 1);
        if (!big)
                abort();
        memset(big, '#', n);
        memcpy(big, "app: web\nrole: worker\n", 22);
        big[22] = '#';
        big[n] = '\0';
        r = infraspec_parse("big.yaml", big, n, NULL, &s, &d);
        check(r == -EINVAL && has(&d, "big.yaml: error: file too large (262244 bytes, at most 262144)"),
              "huge buffer refused");
        infraspec_diagnostics_done(&d);

        if (asprintf(&path, "%s/big.yaml", tmpdir) < 0 || write_file(path, big, n) < 0)
                abort();
        r = infraspec_load(path, NULL, &s, &d);
        check(r == -EINVAL && !s && has(&d, "error: file too large (262244 bytes"), "huge file refused before reading");
        infraspec_diagnostics_done(&d);

        /* Long strings. */
        longstr = malloc(5000 + 64);
        if (!longstr)
                abort();
        strcpy(longstr, "app: web\nrole: worker\nruntime: ");
        memset(longstr + strlen(longstr), 'x', 5000);
        longstr[strlen("app: web\nrole: worker\nruntime: ") + 5000] = '\0';
        expect_error("string over 4096 bytes", longstr, ":3:10: error: runtime: string too long (5000 bytes, at most 4096)");

        cmd = malloc(5000 + 64);
        if (!cmd)
                abort();
        strcpy(cmd, "app: web\nrole: cron\nschedule: '@daily'\ncommand: ");
        memset(cmd + strlen(cmd), 'x', 5000);
        cmd[strlen("app: web\nrole: cron\nschedule: '@daily'\ncommand: ") + 5000] = '\0';
        expect_ok("5000-byte command allowed", cmd);

        huge = malloc(70000 + 64);
        if (!huge)
                abort();
        strcpy(huge, "app: web\nrole: cron\ncommand: ");
        memset(huge + strlen(huge), 'x', 70000);
        huge[strlen("app: web\nrole: cron\ncommand: ") + 70000] = '\0';
        expect_error("string over 64 KiB", huge, ":3:10: error: string too long (70000 bytes, at most 65536)");

        /* Deep nesting, flow and block. */
        deep = malloc(2 * 200 + 64);
        if (!deep)
                abort();
        strcpy(deep, "app: web\nrole: worker\nx: ");
        for (int i = 0; i < 200; i++)
                strcat(deep, "[");
        for (int i = 0; i < 200; i++)
                strcat(deep, "]");
        expect_error("deep flow nesting", deep, "error: nested too deeply (at most 16 levels)");
        {
                char block[2048] = "app: web\nrole: worker\n";

                for (int i = 0; i < 20; i++) {
                        size_t l = strlen(block);

                        memset(block + l, ' ', (size_t) i * 2);
                        sprintf(block + l + (size_t) i * 2, "k%d:\n", i);
                }
                expect_error("deep block nesting", block, "error: nested too deeply");
        }

        /* Long list. */
        many = malloc(300 * 4 + 64);
        if (!many)
                abort();
        strcpy(many, "app: web\nrole: worker\nsecrets: [");
        for (int i = 0; i < 300; i++)
                strcat(many, "a, ");
        strcat(many, "]\n");
        expect_error("list over 256 entries", many, ":3:10: error: too many entries in this list (at most 256)");

        /* Diagnostics are bounded. */
        big = mfree(big);
        f = open_memstream(&big, &n);
        if (!f)
                abort();
        fputs("app: web\nrole: worker\n", f);
        for (int i = 0; i < 100; i++)
                fprintf(f, "timeout%d: 1\n", i);
        for (int i = 0; i < 100; i++)
                fprintf(f, "env%d: [x]\n", i);
        fclose(f);
        r = infraspec_parse("many.yaml", big, n, NULL, &s, &d);
        check(r == 0 && d.n == INFRASPEC_MAX_DIAGNOSTICS && d.truncated,
              "200 warnings: list bounded to %u, marked truncated", INFRASPEC_MAX_DIAGNOSTICS);
        infraspec_diagnostics_done(&d);
        s = infraspec_free(s);
}

static void test_dockerfile(void) {
        static const char *const bad[] = {
                "../../etc/passwd", "/etc/passwd", "-f", "a/../../b", "..", "a/..", "", "dir/", "a\nb", "--file=x",
        };
        static const char *const good[] = {
                "Dockerfile", "docker/Dockerfile.prod", "./Dockerfile", "a..b/Dockerfile", "..Dockerfile", "my file",
        };
        char long_name[300];

        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                check(!infraspec_dockerfile_is_valid(bad[i]), "dockerfile \"%s\" refused", esc(bad[i]));
        for (size_t i = 0; i < ELEMENTSOF(good); i++)
                check(infraspec_dockerfile_is_valid(good[i]), "dockerfile \"%s\" accepted", good[i]);
        memset(long_name, 'a', 256);
        long_name[256] = '\0';
        check(!infraspec_dockerfile_is_valid(long_name), "dockerfile of 256 chars refused");
        long_name[255] = '\0';
        check(infraspec_dockerfile_is_valid(long_name), "dockerfile of 255 chars accepted");
        check(!infraspec_dockerfile_is_valid(NULL), "dockerfile NULL refused");

        expect_error("spec dockerfile ../../etc/passwd", "app: web\nrole: worker\nbuild:\n  dockerfile: ../../etc/passwd\n",
                     ":4:15: error: build.dockerfile: expected a relative path inside the app directory");
        expect_error("spec dockerfile /etc/passwd", "app: web\nrole: worker\nbuild:\n  dockerfile: /etc/passwd\n",
                     "build.dockerfile: expected a relative path");
        expect_error("spec dockerfile -f", "app: web\nrole: worker\nbuild:\n  dockerfile: -f\n",
                     "build.dockerfile: expected a relative path");
        expect_error("spec dockerfile a/../../b", "app: web\nrole: worker\nbuild:\n  dockerfile: a/../../b\n",
                     "got \"a/../../b\"");
        expect_ok("spec dockerfile docker/Dockerfile.prod", "app: web\nrole: worker\nbuild:\n  dockerfile: docker/Dockerfile.prod\n");
}

static void test_app_ids(void) {
        static const char *const bad[] = { "../x", "A", "-a", "a_b", "", "a.b", "a/b", "web ", "é" };
        static const char *const good[] = { "web", "a", "0", "my-app-2", "a-" };
        char id[80];

        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                check(!app_id_is_valid(bad[i]), "app id \"%s\" refused", bad[i]);
        for (size_t i = 0; i < ELEMENTSOF(good); i++)
                check(app_id_is_valid(good[i]), "app id \"%s\" accepted", good[i]);
        memset(id, 'a', 64);
        id[64] = '\0';
        check(!app_id_is_valid(id), "app id of 64 chars refused");
        id[63] = '\0';
        check(app_id_is_valid(id), "app id of 63 chars accepted");
        check(!app_id_is_valid(NULL), "app id NULL refused");

        {
                _cleanup_(infraspec_freep) Infraspec *s = NULL;
                InfraspecDiagnostics d = {};
                int r = parse("app: web\nrole: worker\n", "api", &s, &d);

                check(r == -EINVAL && !s &&
                      has(&d, FILENAME ":1:6: error: app: \"web\" does not match its directory name \"api\""),
                      "app id must equal the directory name");
                infraspec_diagnostics_done(&d);
        }
        expect_error("app id A in spec", "app: A\nrole: worker\n", ":1:6: error: app: expected an app id");
        expect_error("app id ../x in spec", "app: ../x\nrole: worker\n", "app: expected an app id");
        expect_error("empty app", "app: \"\"\nrole: worker\n", ":1:6: error: app: must not be empty");
}

static void test_git_refs(void) {
        static const char *const good[] = {
                "main", "release/1.2", "feature/foo-bar", "v1.0.0", "a.b", "HEAD", "user@host", "x-lock",
        };
        static const char *const bad[] = {
                "--upload-pack=touch /tmp/x", "a..b", "x.lock", "refs/x.lock/y", "@{u}", "main@{1}", "@", "",
                "-x", "a/", "/a", "a//b", ".hidden", "a/.b", "a.", "a b", "a~1", "a^", "a:b", "a?", "a*", "a[",
                "a\\b", "a\x01", "a\x7f", "a\tb",
        };
        char long_ref[300];

        for (size_t i = 0; i < ELEMENTSOF(good); i++)
                check(git_ref_is_valid(good[i]), "git ref \"%s\" accepted", good[i]);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                check(!git_ref_is_valid(bad[i]), "git ref \"%s\" refused", esc(bad[i]));
        memset(long_ref, 'a', 256);
        long_ref[256] = '\0';
        check(!git_ref_is_valid(long_ref), "git ref of 256 chars refused");
        check(!git_ref_is_valid(NULL), "git ref NULL refused");
}

static void test_git_urls(void) {
        static const char *const good[] = {
                "https://github.com/org/repo.git", "http://localhost:8080/r.git", "ssh://git@host:22/org/r.git",
                "ssh://host/r.git", "git@github.com:org/repo.git", "file:///srv/git/r.git", "/srv/git/r.git",
                "https://user@git.example.com/r.git",
        };
        static const char *const bad[] = {
                "", "-oProxyCommand=x", "ssh://-oProxyCommand=touch/x", "ssh://user@-oProxy/x",
                /* found by fuzz-git-ref: the user part is the start of ssh's argument too */
                "ssh://-oProxyCommand=x@host/r", "ssh://-x@y@host/r", "https://-u@host/r",
                "ext::sh -c touch% /tmp/x", "ext::sh", "fd::17", "https://host/a b", "git://host/r",
                "file://relative", "relative/path", "host:path", "git@-host:x", "git@host:", "git@host:-x",
                "https://", "https:///path", "a\nb", "https://host/\x01", "ftp://host/r",
        };

        for (size_t i = 0; i < ELEMENTSOF(good); i++)
                check(git_url_is_valid(good[i]), "git url \"%s\" accepted", good[i]);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                check(!git_url_is_valid(bad[i]), "git url \"%s\" refused", esc(bad[i]));
        check(!git_url_is_valid(NULL), "git url NULL refused");
}

static void test_secret(void) {
        static const char *const cases[] = {
                "app: web\nrole: worker\nrepo:\n  url: /r\n  webhookSecret: [" SECRET "]\n",
                "app: web\nrole: worker\nrepo:\n  url: /r\n  webhookSecret: \"" SECRET "\\x01\"\n",
                "app: web\nrole: worker\nrepo:\n  url: /r\n  webhookSecret: {" SECRET ": 1}\n",
                "app: web\nrole: webserver\nrepo:\n  url: /r\n  webhookSecret: " SECRET "\n  webhookSecret: " SECRET "\n",
                "app: web\nrole: worker\nrepo:\n  url: /r\n  webhookSecret: " SECRET ": x\n",
                "app: web\nrole: worker\nrepo:\n  url: /r\n  webhookSecret: \"" SECRET "\n",
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_(infraspec_freep) Infraspec *s = NULL;
                InfraspecDiagnostics d = {};
                json_t *j;
                char *text;
                int r;

                r = parse(cases[i], NULL, &s, &d);
                j = infraspec_diagnostics_to_json(&d);
                text = j ? json_dumps(j, 0) : NULL;
                if (!check(r == -EINVAL && d.n > 0 && !any_contains_secret(&d) && text && !strstr(text, "s3cr3t"),
                           "webhook secret not in diagnostics (case %zu)", i))
                        dump(&d);
                free(text);
                json_decref(j);
                infraspec_diagnostics_done(&d);
        }

        {
                _cleanup_(infraspec_freep) Infraspec *s = NULL;
                InfraspecDiagnostics d = {};
                int r;

                r = parse("app: web\nrole: worker\nrepo:\n  url: /r\n  autoDeploy: true\n", NULL, &s, &d);
                check(r == 0 && has(&d, "warning: repo: autoDeploy without webhookSecret"),
                      "autoDeploy without webhookSecret: warning");
                infraspec_diagnostics_done(&d);
        }
}

static void mkdir_p(const char *path) {
        if (mkdir(path, 0755) < 0 && errno != EEXIST)
                abort();
}

static void put(const char *apps, const char *rel, const char *content) {
        _cleanup_free_ char *p = NULL;

        if (asprintf(&p, "%s/%s", apps, rel) < 0 || write_file(p, content, strlen(content)) < 0)
                abort();
}

static void test_discovery(void) {
        _cleanup_(app_list_freep) AppList *l = NULL;
        _cleanup_free_ char *apps = NULL, *p = NULL, *q = NULL;
        const AppEntry *e;
        int r;

        if (asprintf(&apps, "%s/apps", tmpdir) < 0)
                abort();
        mkdir_p(apps);
#define DIR_(name) do { free(p); if (asprintf(&p, "%s/%s", apps, name) < 0) abort(); mkdir_p(p); } while (0)
        DIR_("good");
        put(apps, "good/infraspec.yaml",
            "app: good\nrole: webserver\nport: 8080\ndeploy: true\nrepo:\n  url: /srv/r.git\n  webhookSecret: " SECRET "\n");
        DIR_("broken");
        put(apps, "broken/infraspec.yaml", "app: broken\nrole: [worker\n");
        DIR_("off");
        put(apps, "off/infraspec.yaml", "app: off\nrole: worker\ndeploy: false\n");
        DIR_("Bad_Name");
        put(apps, "Bad_Name/infraspec.yaml", "app: bad-name\nrole: worker\ndeploy: true\n");
        DIR_("mismatch");
        put(apps, "mismatch/infraspec.yaml", "app: other\nrole: worker\ndeploy: true\n");
        DIR_(".hidden");
        put(apps, ".hidden/infraspec.yaml", "app: hidden\nrole: worker\ndeploy: true\n");
        DIR_("no-spec");
        put(apps, "no-spec/README", "not an app\n");
        put(apps, "plain-file", "app: plain-file\nrole: worker\n");
        DIR_("evil");
        free(p);
        if (asprintf(&p, "%s/evil/infraspec.yaml", apps) < 0 || symlink("../good/infraspec.yaml", p) < 0)
                abort();
        if (asprintf(&q, "%s/linked", apps) < 0 || symlink("good", q) < 0)
                abort();
        DIR_("dirspec");
        DIR_("dirspec/infraspec.yaml");
#undef DIR_

        r = apps_discover(apps, &l);
        if (!check(r == 0 && l, "discovery succeeds"))
                return;
        for (size_t i = 0; i < l->n; i++) {
                printf("#   %s valid=%d deployable=%d\n", l->entries[i].id, !!l->entries[i].spec, l->entries[i].deployable);
                dump(&l->entries[i].diagnostics);
        }
        check(l->n == 8, "8 entries (got %zu)", l->n);
        check(l->n == 8 && streq(l->entries[0].id, "Bad_Name") && streq(l->entries[1].id, "broken") &&
              streq(l->entries[2].id, "dirspec") && streq(l->entries[3].id, "evil") &&
              streq(l->entries[4].id, "good") && streq(l->entries[5].id, "linked") &&
              streq(l->entries[6].id, "mismatch") && streq(l->entries[7].id, "off"), "sorted by id");

        e = app_list_find(l, "good");
        check(e && e->spec && e->deployable && e->diagnostics.n_errors == 0 && streq(e->spec->app, "good"),
              "good app found and deployable");
        e = app_list_find(l, "off");
        check(e && e->spec && !e->deployable, "deploy: false app listed, not deployable");
        e = app_list_find(l, "broken");
        check(e && !e->spec && !e->deployable && e->diagnostics.n_errors > 0 &&
              has(&e->diagnostics, "/apps/broken/infraspec.yaml:3:1: error: YAML syntax error: did not find expected ',' or ']'"),
              "broken app reported with file:line:col");
        e = app_list_find(l, "Bad_Name");
        check(e && !e->spec && !e->deployable && has(&e->diagnostics, "is not a valid app id"),
              "bad directory name reported as an error entry");
        e = app_list_find(l, "mismatch");
        check(e && !e->spec && has(&e->diagnostics, "does not match its directory name \"mismatch\""),
              "app id differing from directory reported");
        e = app_list_find(l, "evil");
        check(e && !e->spec && has(&e->diagnostics, "is a symbolic link"), "symlinked infraspec.yaml not followed");
        e = app_list_find(l, "linked");
        check(e && !e->spec && has(&e->diagnostics, "symbolic link"), "symlinked app directory not followed");
        e = app_list_find(l, "dirspec");
        check(e && !e->spec && has(&e->diagnostics, "not a regular file"), "infraspec.yaml that is a directory reported");
        check(!app_list_find(l, "plain-file") && !app_list_find(l, ".hidden") && !app_list_find(l, "no-spec"),
              "plain files, dot dirs and dirs without infraspec.yaml are not apps");

        for (size_t i = 0; i < l->n; i++) {
                json_t *j = app_entry_to_json(l->entries + i);
                char *text = j ? json_dumps(j, 0) : NULL;

                check(text && !strstr(text, SECRET), "app entry %s as JSON, no secret", l->entries[i].id);
                if (streq(l->entries[i].id, "good"))
                        check(text && strstr(text, "\"webhookSecret\": \"(set)\"") && strstr(text, "\"deployable\": true"),
                              "good app JSON shows (set) and deployable");
                free(text);
                json_decref(j);
        }

        check(apps_discover("/nonexistent/norn-apps", &l) == -ENOENT, "missing apps dir: -ENOENT");
}

static void test_load(void) {
        _cleanup_(infraspec_freep) Infraspec *s = NULL;
        _cleanup_free_ char *path = NULL, *link = NULL;
        InfraspecDiagnostics d = {};
        int r;

        if (asprintf(&path, "%s/web.yaml", tmpdir) < 0 || asprintf(&link, "%s/link.yaml", tmpdir) < 0)
                abort();
        if (write_file(path, full_spec, strlen(full_spec)) < 0 || symlink(path, link) < 0)
                abort();
        r = infraspec_load(path, "web", &s, &d);
        check(r == 0 && s && streq(s->repo.webhook_secret, SECRET) && streq(d.file, path), "load from file");
        infraspec_diagnostics_done(&d);
        s = infraspec_free(s);

        r = infraspec_load(link, "web", &s, &d);
        check(r == -ELOOP && !s && has(&d, "is a symbolic link"), "load refuses a symlink");
        infraspec_diagnostics_done(&d);

        r = infraspec_load("/nonexistent/infraspec.yaml", NULL, &s, &d);
        check(r == -ENOENT && has(&d, "/nonexistent/infraspec.yaml: error: cannot open: No such file or directory"),
              "missing file: -ENOENT with a diagnostic");
        infraspec_diagnostics_done(&d);

        r = infraspec_load(path, "web", &s, NULL);
        check(r == 0 && s, "diagnostics are optional");
        s = infraspec_free(s);

        {
                _cleanup_free_ char *first = NULL;

                r = parse("app: web\nrole: webserver\nfoo: 1\n", NULL, &s, &d);
                first = infraspec_first_error(&d);
                check(r == -EINVAL && first && strstr(first, "error: port: required"), "first error formatted");
                infraspec_diagnostics_done(&d);
        }
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path) < 0 ? -1 : 0;
}

int main(void) {
        if (!mkdtemp(tmpdir)) {
                perror("mkdtemp");
                return 1;
        }

        test_full_spec();
        test_defaults();
        test_roles();
        test_types();
        test_unknown_keys();
        test_syntax();
        test_tag_utf8();
        test_aliases();
        test_limits();
        test_dockerfile();
        test_app_ids();
        test_git_refs();
        test_git_urls();
        test_secret();
        test_discovery();
        test_load();

        (void) nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);

        printf("1..%u\n", n_checks);
        if (n_failed > 0) {
                printf("# %u of %u checks failed\n", n_failed, n_checks);
                return 1;
        }
        return 0;
}
