/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config-build.h"
#include "ctl-bus.h"
#include "ctl-output.h"
#include "ctl.h"
#include "utf8.h"

#define EXIT_USAGE 2

/* nornctl: the command line, dispatched to the ctl-*.c commands. */

static void help(void) {
        printf("%s [OPTIONS...] COMMAND ...\n\n"
               "Control the Norn deploy daemon.\n\n"
               "Query commands (all take --json):\n"
               "  apps                      List the apps with their last deployment\n"
               "  status [APP]              Last deployment of every app, or APP's with its steps\n"
               "  history [APP] [--status S] [-n N]\n"
               "                            List deployments, newest first\n"
               "  show ID                   Show a deployment and its steps\n"
               "  logs ID [-f]              Show a deployment's output; -f follows it to the end\n"
               "  snapshots APP             List the database snapshots of APP\n"
               "  validate [APP]            Check the infraspec.yaml files; exits 1 on errors\n"
               "  health                    Show nornd's health; exits 1 when degraded\n"
               "  version                   Show client and daemon versions\n\n"
               "Deploy commands (follow the deployment; exit 0 only when deployed):\n"
               "  deploy APP [REF] [--no-follow]\n"
               "                            Deploy APP at REF (branch, tag or commit; default HEAD)\n"
               "  rollback APP [--to ID] [--restore-db]\n"
               "                            Deploy again the image of the last good deployment\n"
               "                            before the current one (or of ID); optionally restore\n"
               "                            the database snapshot taken before it\n"
               "  restore APP SNAPSHOT      Restore APP's database from SNAPSHOT, then redeploy\n"
               "  cancel ID                 Cancel a queued or running deployment\n\n"
               "Options:\n"
               "  -h --help                 Show this help\n"
               "     --version              Show package version\n"
               "     --system               Talk to the system nornd (default)\n"
               "     --user                 Talk to the user-mode nornd on the session bus\n"
               "  -H --host=[USER@]HOST[:PORT]\n"
               "                            Reach nornd on HOST over ssh and systemd-stdio-bridge\n"
               "                            (ssh from $PATH, as systemctl -H)\n"
               "     --json                 Print one JSON document (logs -f: one object a line)\n"
               "     --no-follow            deploy/rollback/restore: queue and return\n"
               "     --to=ID                rollback: to deployment ID\n"
               "     --restore-db           rollback: restore the database too\n"
               "     --status=STATUS        history: only deployments in STATUS\n"
               "  -n --limit=N              history: at most N deployments (default 50)\n"
               "  -f --follow               logs: follow until the deployment ends\n"
               "     --no-pager             Accepted for systemctl habits; nornctl never pages\n\n"
               "Colour, glyphs and the live progress line only when stdout is a terminal\n"
               "and $NO_COLOR is unset. 'list-app-names' prints app names for completion.\n"
               "Exit status: 0 done (deploy: deployed), 1 failed, 2 bad command line.\n",
               program_invocation_short_name);
}

typedef struct Verb {
        const char *name;
        unsigned min_args;
        const char *arg_kinds;  /* one letter an argument (also gives the maximum): A app,
                                 * R ref, S snapshot name, I deployment id */
        CtlCommand run;
        bool needs_authorization;  /* polkit may ask the user for a password */
} Verb;

static const Verb verbs[] = {
        { "apps",           0, "",   ctl_apps },
        { "list-app-names", 0, "",   ctl_list_app_names },
        { "status",         0, "A",  ctl_status },
        { "history",        0, "A",  ctl_history },
        { "show",           1, "I",  ctl_show },
        { "logs",           1, "I",  ctl_logs, true },
        { "snapshots",      1, "A",  ctl_snapshots },
        { "validate",       0, "A",  ctl_validate },
        { "health",         0, "",   ctl_health },
        { "version",        0, "",   ctl_version },
        { "deploy",         1, "AR", ctl_deploy, true },
        { "rollback",       1, "A",  ctl_rollback, true },
        { "restore",        2, "AS", ctl_restore, true },
        { "cancel",         1, "I",  ctl_cancel, true },
};

/* Each argument checked as nornd will check it: a wrong one is a usage
 * error here, before connecting (and nothing can reach git or ssh). */
static int check_args(const Verb *verb, char **args) {
        for (size_t i = 0; args[i]; i++) {
                uint64_t id;
                int r = 0;

                switch (verb->arg_kinds[i]) {
                case 'A':
                        r = ctl_check_app(args[i]);
                        break;
                case 'R':
                        r = ctl_check_ref(args[i]);
                        break;
                case 'S':
                        r = ctl_check_snapshot(args[i]);
                        break;
                case 'I':
                        r = ctl_parse_id(args[i], &id);
                        break;
                }
                if (r < 0)
                        return r;
        }
        return 0;
}

enum {
        OPT_HELP, OPT_VERSION, OPT_SYSTEM, OPT_USER, OPT_HOST, OPT_JSON, OPT_NO_PAGER,
        OPT_NO_FOLLOW, OPT_TO, OPT_RESTORE_DB, OPT_STATUS, OPT_LIMIT, OPT_FOLLOW,
};

typedef struct Option {
        int id;
        const char *long_name;
        char short_name;
        bool has_value;
        const char *verbs;      /* the commands it is for, " "-separated; NULL: all */
} Option;

static const Option options[] = {
        { OPT_HELP,       "help",       'h', false, NULL },
        { OPT_VERSION,    "version",    0,   false, NULL },
        { OPT_SYSTEM,     "system",     0,   false, NULL },
        { OPT_USER,       "user",       0,   false, NULL },
        { OPT_HOST,       "host",       'H', true,  NULL },
        { OPT_JSON,       "json",       0,   false, NULL },
        { OPT_NO_PAGER,   "no-pager",   0,   false, NULL },
        { OPT_NO_FOLLOW,  "no-follow",  0,   false, "deploy rollback restore" },
        { OPT_TO,         "to",         0,   true,  "rollback" },
        { OPT_RESTORE_DB, "restore-db", 0,   false, "rollback" },
        { OPT_STATUS,     "status",     0,   true,  "history" },
        { OPT_LIMIT,      "limit",      'n', true,  "history" },
        { OPT_FOLLOW,     "follow",     'f', false, "logs" },
};

static const Option *find_option(const char *arg, const char **ret_value) {
        *ret_value = NULL;
        if (arg[1] == '-') {
                const char *name = arg + 2, *eq = strchr(name, '=');
                size_t n = eq ? (size_t) (eq - name) : strlen(name);
                for (size_t i = 0; i < ELEMENTSOF(options); i++)
                        if (strlen(options[i].long_name) == n && strncmp(options[i].long_name, name, n) == 0) {
                                *ret_value = eq ? eq + 1 : NULL;
                                return &options[i];
                        }
                return NULL;
        }
        for (size_t i = 0; i < ELEMENTSOF(options); i++)
                if (options[i].short_name && options[i].short_name == arg[1]) {
                        /* -n5 and -Hhost, as getopt takes them. */
                        if (arg[2] && !options[i].has_value)
                                return NULL;
                        *ret_value = arg[2] ? arg + 2 : NULL;
                        return &options[i];
                }
        return NULL;
}

static bool option_is_for(const Option *opt, const char *verb) {
        const char *p;
        size_t n = strlen(verb);

        if (!opt->verbs)
                return true;
        for (p = opt->verbs; (p = strstr(p, verb)); p += n)
                if ((p == opt->verbs || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
                        return true;
        return false;
}

static int apply_option(const Option *opt, const char *value, CtlOptions *o, bool *ret_exit) {
        char *end;
        unsigned long long v;

        switch (opt->id) {
        case OPT_HELP:
                help();
                *ret_exit = true;
                return 0;
        case OPT_VERSION:
                printf("nornctl %s\n", NORN_VERSION);
                *ret_exit = true;
                return 0;
        case OPT_SYSTEM:
                o->user = false;
                return 0;
        case OPT_USER:
                o->user = true;
                return 0;
        case OPT_HOST:
                /* Checked here already: a hostile value never gets near ssh. */
                if (!ctl_host_is_valid(value))
                        return ctl_host_error(value);
                o->host = value;
                return 0;
        case OPT_JSON:
                o->json = true;
                return 0;
        case OPT_NO_PAGER:
                return 0;
        case OPT_NO_FOLLOW:
                o->no_follow = true;
                return 0;
        case OPT_TO:
                return ctl_parse_id(value, &o->to);
        case OPT_RESTORE_DB:
                o->restore_db = true;
                return 0;
        case OPT_STATUS:
                o->status = value;
                return ctl_check_status(value);
        case OPT_LIMIT:
                errno = 0;
                v = strtoull(value, &end, 10);
                if (!*value || *value < '0' || *value > '9' || *end || errno != 0 || v > UINT32_MAX) {
                        _cleanup_free_ char *p = ctl_printable(value);
                        return ctl_error(-EINVAL, "invalid limit '%.*s' (expected a number)",
                                         (int) utf8_prefix_len(strna(p), 32), strna(p));
                }
                o->limit = (uint32_t) v;
                return 0;
        case OPT_FOLLOW:
                o->follow = true;
                return 0;
        }
        abort();
}

/* Options may come before or after the command, as with systemctl. A word
 * that looks like an option but is none of ours ("--upload-pack=...") is
 * refused wherever it is; after "--" every word is an argument (and then
 * checked as one). */
static int parse_argv(int argc, char *argv[], CtlOptions *o, const Verb **ret_verb, char ***ret_args,
                      bool *ret_exit) {
        _cleanup_free_ char **args = calloc((size_t) argc + 1, sizeof(char *));
        const Verb *verb = NULL;
        unsigned used = 0;     /* bit per option id */
        size_t n_args = 0;
        bool positional_only = false;
        int r;

        if (!args)
                return -ENOMEM;
        for (int i = 1; i < argc; i++) {
                const char *a = argv[i], *value;
                const Option *opt;

                if (!positional_only && streq(a, "--")) {
                        positional_only = true;
                        continue;
                }
                if (positional_only || a[0] != '-' || a[1] == '\0') {
                        if (!verb) {
                                for (size_t k = 0; k < ELEMENTSOF(verbs) && !verb; k++)
                                        if (streq(a, verbs[k].name))
                                                verb = &verbs[k];
                                if (!verb) {
                                        _cleanup_free_ char *p = ctl_printable(a);
                                        return ctl_error(-EINVAL, "unknown command '%.*s%s'; see --help",
                                                         (int) utf8_prefix_len(strna(p), 64), strna(p),
                                                         strlen(a) > 64 ? "..." : "");
                                }
                        } else
                                args[n_args++] = argv[i];
                        continue;
                }

                opt = find_option(a, &value);
                if (!opt) {
                        _cleanup_free_ char *p = ctl_printable(a);
                        return ctl_error(-EINVAL, "unknown option '%.*s%s'; see --help",
                                         (int) utf8_prefix_len(strna(p), 64), strna(p), strlen(a) > 64 ? "..." : "");
                }
                if (opt->has_value && !value) {
                        if (i + 1 >= argc)
                                return ctl_error(-EINVAL, "option '%.*s' needs a value",
                                                 (int) utf8_prefix_len(a, 64), a);
                        value = argv[++i];
                } else if (!opt->has_value && value)
                        return ctl_error(-EINVAL, "option '--%s' takes no value", opt->long_name);
                r = apply_option(opt, value, o, ret_exit);
                if (r < 0 || *ret_exit)
                        return r;
                used |= 1u << opt->id;
        }

        if (!verb)
                return ctl_error(-EINVAL, "missing command; see --help");
        for (size_t k = 0; k < ELEMENTSOF(options); k++)
                if ((used & (1u << options[k].id)) && !option_is_for(&options[k], verb->name))
                        return ctl_error(-EINVAL, "option '--%s' is not for '%s'; see --help",
                                         options[k].long_name, verb->name);
        if (n_args < verb->min_args)
                return ctl_error(-EINVAL, "'%s' needs more arguments; see --help", verb->name);
        if (n_args > strlen(verb->arg_kinds))
                return ctl_error(-EINVAL, "too many arguments for '%s'; see --help", verb->name);
        r = check_args(verb, args);
        if (r < 0)
                return r;

        *ret_verb = verb;
        *ret_args = TAKE_PTR(args);
        return 0;
}

int main(int argc, char *argv[]) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_free_ char **args = NULL;
        CtlOptions o = {};
        const Verb *verb = NULL;
        bool exit_now = false;
        int r;

        /* Exit status: 0 done (deploy: deployed), 1 failed or answered "no",
         * 2 bad command line (nothing was sent anywhere). */
        r = parse_argv(argc, argv, &o, &verb, &args, &exit_now);
        if (r == -ENOMEM)
                return ctl_error(r, "out of memory"), EXIT_FAILURE;
        if (r < 0)
                return EXIT_USAGE;
        if (exit_now)
                return EXIT_SUCCESS;

        r = ctl_connect(&o, &bus);
        if (r < 0)
                return EXIT_FAILURE;
        if (verb->needs_authorization && !o.host)
                ctl_polkit_agent_open();
        r = verb->run(bus, args, &o);
        ctl_polkit_agent_close();
        if (r == -ENOMEM)
                ctl_error(r, "out of memory");
        return r < 0 ? EXIT_FAILURE : r;
}
