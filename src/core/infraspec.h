/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

/* infraspec.yaml, one per app: NORN_APPS_DIR/<app>/infraspec.yaml (DESIGN §2).
 *
 * The file is untrusted input. It is read with a size limit, parsed with the
 * libyaml event API into a small bounded tree (no anchors/aliases, limited
 * depth, list length and string length), then checked field by field. Every
 * problem becomes a diagnostic with file, line and column; unknown keys are
 * warnings. Strings in the result are NULL or non-empty (env values may be
 * ""), valid UTF-8, without NUL bytes. */

#define INFRASPEC_FILE_NAME        "infraspec.yaml"
#define INFRASPEC_MAX_FILE_SIZE    (256U * 1024U)
#define INFRASPEC_MAX_DEPTH        16U           /* nested lists/mappings */
#define INFRASPEC_MAX_ITEMS        256U          /* entries of one list or mapping */
#define INFRASPEC_MAX_NODES        16384U        /* in the whole document */
#define INFRASPEC_MAX_STRING       4096U         /* bytes, most strings */
#define INFRASPEC_MAX_COMMAND      (64U * 1024U) /* bytes, command, build.test, migrations.command */
#define INFRASPEC_MAX_DIAGNOSTICS  64U
#define INFRASPEC_DOCKERFILE_MAX   255U
#define APP_ID_MAX                 63U

typedef enum AppRole {
        APP_ROLE_WEBSERVER,
        APP_ROLE_WORKER,
        APP_ROLE_CRON,
        APP_ROLE_FUNCTION,
        _APP_ROLE_MAX,
        _APP_ROLE_INVALID = -1,
} AppRole;

const char *app_role_to_string(AppRole r);
AppRole app_role_from_string(const char *s);

typedef struct InfraspecVolume {
        char *name;              /* required */
        char *mount_path;        /* mountPath, required, absolute */
        char *size;              /* e.g. "1Gi", for a PVC */
        char *host_path;         /* hostPath, absolute, for host mounts */
} InfraspecVolume;

typedef struct InfraspecEnvVar {
        char *name;
        char *value;             /* may be "" */
} InfraspecEnvVar;

typedef struct Infraspec {
        char *app;               /* required, == directory name */
        AppRole role;            /* required */
        bool core;
        unsigned port;           /* 0 = unset; required (1..65535) for webserver */
        char *healthcheck;       /* path starting with '/' */
        unsigned replicas;       /* default 1, 0..1000 */
        bool deploy;             /* only deploy: true apps are deployable */

        struct {
                bool present;
                char *external;
                char *internal;
        } hosts;

        struct {
                bool present;    /* present → build step runs */
                char *dockerfile;/* default "Dockerfile", relative, inside the work dir */
                char *test;      /* set → test step runs (sh -c) */
        } build;

        struct {
                bool present;
                char *url;       /* required when present; git_url_is_valid() */
                char *branch;    /* default "main"; git_ref_is_valid() */
                bool auto_deploy;
                char *repo_web;
                char *webhook_secret; /* never in diagnostics or JSON */
        } repo;

        struct {
                struct {
                        bool present;    /* present → snapshot step runs */
                        char *database;  /* required when present */
                        char *migrations;
                } postgres;
                struct {
                        bool present;
                        char *namespace;
                } kv;
                struct {
                        bool present;
                        char **topics;   /* NULL-terminated, n_topics entries */
                        size_t n_topics;
                } events;
                struct {
                        bool present;
                        char *bucket;
                        char *provider;  /* minio, r2, s3, gcs or spaces */
                } storage;
        } services;

        char **secrets;          /* NULL-terminated, n_secrets entries */
        size_t n_secrets;

        struct {
                bool present;
                char *command;   /* set → migrate step runs (sh -c) */
                char *database;
        } migrations;

        struct {
                unsigned retain; /* default 5, 1..1000 */
        } artifacts;

        InfraspecVolume *volumes;
        size_t n_volumes;

        InfraspecEnvVar *env;    /* in file order, names unique */
        size_t n_env;

        struct {
                char *window;    /* default "5m" */
                unsigned threshold; /* default 3 */
        } alerts;

        char *schedule;          /* cron expression; required for cron */
        char *command;           /* required for cron */
        char *runtime;
        unsigned timeout;        /* seconds, default 300, 1..86400 */

        struct {
                unsigned timeout;/* seconds, default 30, 1..86400 */
                char *trigger;   /* default "http" */
                char *memory;    /* default "256m" */
        } function;
} Infraspec;

/* Which pipeline steps the spec asks for (DESIGN §1 skips). */
static inline bool infraspec_wants_build(const Infraspec *s) { return s->build.present; }
static inline bool infraspec_wants_test(const Infraspec *s) { return s->build.present && s->build.test; }
static inline bool infraspec_wants_snapshot(const Infraspec *s) { return s->services.postgres.present; }
static inline bool infraspec_wants_migrate(const Infraspec *s) { return s->migrations.command; }

typedef struct InfraspecDiagnostic {
        bool error;              /* else a warning */
        unsigned line, column;   /* 1-based; 0 when not tied to a place in the file */
        char *message;           /* "port: expected an integer between 1 and 65535, got \"http\"" */
} InfraspecDiagnostic;

typedef struct InfraspecDiagnostics {
        char *file;              /* as given to the loader */
        InfraspecDiagnostic *items;
        size_t n;                /* at most INFRASPEC_MAX_DIAGNOSTICS */
        size_t n_errors;         /* all errors, also those past the limit */
        bool truncated;          /* more diagnostics than kept */
} InfraspecDiagnostics;

/* Parse a buffer. 'filename' is only used in diagnostics; 'expected_app'
 * (the directory name) may be NULL to skip that check. Returns 0 and a spec
 * (warnings may be in diags), -EINVAL when the content is invalid (errors in
 * diags), -ENOMEM. diags may be NULL; else it is reset first and must be
 * released with infraspec_diagnostics_done(). */
int infraspec_parse(const char *filename, const void *data, size_t size, const char *expected_app,
                    Infraspec **ret_spec, InfraspecDiagnostics *diags);

/* Read and parse a file: opened with O_NOFOLLOW, must be a regular file of
 * at most INFRASPEC_MAX_FILE_SIZE bytes (checked before reading). 'path' is
 * relative to dir_fd (AT_FDCWD ok); 'display_name' (NULL: path) is what
 * diagnostics show. Returns as infraspec_parse(); besides, -ELOOP for a
 * symlink, -errno when it cannot be opened or read, each also recorded as a
 * diagnostic (line 0); not a regular file or too large: -EINVAL. */
int infraspec_load_at(int dir_fd, const char *path, const char *display_name,
                      const char *expected_app, Infraspec **ret_spec, InfraspecDiagnostics *diags);
int infraspec_load(const char *path, const char *expected_app,
                   Infraspec **ret_spec, InfraspecDiagnostics *diags);

Infraspec *infraspec_free(Infraspec *s);
static inline void infraspec_freep(Infraspec **s) { infraspec_free(*s); }

void infraspec_diagnostics_done(InfraspecDiagnostics *d);

/* "file:line:col: error: message" ("file: error: message" without a
 * location). Returns NULL when out of memory or i is out of range. */
char *infraspec_diagnostic_format(const InfraspecDiagnostics *d, size_t i);

/* The first error, formatted as above; NULL when there is none or on OOM. */
char *infraspec_first_error(const InfraspecDiagnostics *d);

/* Diagnostics as [{"severity","line","column","message"}], NULL on OOM. */
json_t *infraspec_diagnostics_to_json(const InfraspecDiagnostics *d);

/* The spec as the API shows it (camelCase names of the file, defaults
 * filled in). repo.webhookSecret is never included: "(set)" when set.
 * NULL on OOM. */
json_t *infraspec_to_json(const Infraspec *s);

/* Value checks, shared with the pipeline. */
bool app_id_is_valid(const char *id);             /* ^[a-z0-9][a-z0-9-]*$, at most 63 */
bool infraspec_dockerfile_is_valid(const char *path); /* relative, no "..", no leading '-' */
