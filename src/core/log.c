/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <systemd/sd-journal.h>

#include "log.h"

static int max_level = LOG_INFO;
static bool use_journal;
static bool use_stderr = true;

/* Is stderr already connected to the journal (systemd's JOURNAL_STREAM)? */
static bool stderr_is_journal(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) < 0)
                return false;
        return (unsigned long long) st.st_dev == dev && (unsigned long long) st.st_ino == ino;
}

bool log_to_journal(void) {
        return use_journal;
}

void log_set_max_level(int level) {
        max_level = level;
}

int log_get_max_level(void) {
        return max_level;
}

void log_setup(LogTarget target, int level) {
        const char *e;

        max_level = level;
        switch (target) {
        case LOG_TARGET_JOURNAL:
                use_journal = true;
                use_stderr = false;
                break;
        case LOG_TARGET_STDERR:
                use_journal = false;
                use_stderr = true;
                break;
        default:
                /* Under systemd stderr already goes to the journal, but as
                 * plain text: talk to journald directly to keep the fields,
                 * and echo to stderr only when that is somewhere else. */
                use_journal = access("/run/systemd/journal/socket", W_OK) == 0;
                use_stderr = !use_journal || !stderr_is_journal();
        }

        e = getenv("NORN_LOG_LEVEL");
        if (e) {
                static const char *const names[] = { "emerg", "alert", "crit", "err",
                                                     "warning", "notice", "info", "debug" };
                for (size_t i = 0; i < ELEMENTSOF(names); i++)
                        if (streq(e, names[i]))
                                max_level = (int) i;
        }
}

int log_internal(int level, int error, const char *file, int line, const char *func,
                 const char *const *fields, const char *format, ...) {
        char message[4096];
        int saved_errno = error < 0 ? -error : error;
        va_list ap;

        if (level > max_level)
                return -saved_errno;

        /* Let "%m" print the passed error, not whatever errno happens to be. */
        errno = saved_errno;
        va_start(ap, format);
        vsnprintf(message, sizeof(message), format, ap);
        va_end(ap);

        if (use_journal) {
                struct iovec iov[32];
                char buf_msg[sizeof(message) + 16], buf_prio[32], buf_file[256], buf_line[32],
                        buf_func[128], buf_errno[32], buf_ident[64];
                size_t n = 0;

                snprintf(buf_msg, sizeof(buf_msg), "MESSAGE=%s", message);
                snprintf(buf_prio, sizeof(buf_prio), "PRIORITY=%i", level);
                snprintf(buf_file, sizeof(buf_file), "CODE_FILE=%s", file);
                snprintf(buf_line, sizeof(buf_line), "CODE_LINE=%i", line);
                snprintf(buf_func, sizeof(buf_func), "CODE_FUNC=%s", func);
                iov[n++] = (struct iovec) { buf_msg, strlen(buf_msg) };
                iov[n++] = (struct iovec) { buf_prio, strlen(buf_prio) };
                iov[n++] = (struct iovec) { buf_file, strlen(buf_file) };
                iov[n++] = (struct iovec) { buf_line, strlen(buf_line) };
                iov[n++] = (struct iovec) { buf_func, strlen(buf_func) };
                if (saved_errno > 0) {
                        snprintf(buf_errno, sizeof(buf_errno), "ERRNO=%i", saved_errno);
                        iov[n++] = (struct iovec) { buf_errno, strlen(buf_errno) };
                }
                snprintf(buf_ident, sizeof(buf_ident), "SYSLOG_IDENTIFIER=%s",
                         program_invocation_short_name);
                iov[n++] = (struct iovec) { buf_ident, strlen(buf_ident) };
                for (size_t i = 0; fields && fields[i] && n < ELEMENTSOF(iov); i++)
                        iov[n++] = (struct iovec) { (char *) fields[i], strlen(fields[i]) };

                if (sd_journal_sendv(iov, (int) n) < 0)
                        use_stderr = true; /* journald went away */
        }

        if (use_stderr)
                fprintf(stderr, "%s\n", message);

        errno = saved_errno;
        return -saved_errno;
}
