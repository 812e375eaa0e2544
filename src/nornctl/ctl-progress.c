/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ctl-output.h"
#include "ctl-progress.h"

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

void progress_init(Progress *p, bool quiet) {
        *p = (Progress) { .fancy = ctl_fancy() && !quiet, .quiet = quiet };
}

void progress_clear(Progress *p) {
        if (!p->live_shown)
                return;
        /* Back to the start of the live line and erase it. */
        fputs("\r\033[K", stdout);
        p->live_shown = false;
}

void progress_tick(Progress *p) {
        static const char *const spinner[] = { "\u280b", "\u2819", "\u2839", "\u2838", "\u283c",
                                               "\u2834", "\u2826", "\u2827", "\u2807", "\u280f" };
        char d[32];

        if (!p->fancy || !p->step[0])
                return;
        progress_clear(p);
        printf("%s%s %s %s%s", ctl_ansi(ANSI_YELLOW), spinner[p->spin++ % ELEMENTSOF(spinner)], p->step,
               ctl_format_duration(d, now_usec() - p->step_started), ctl_ansi(ANSI_NORMAL));
        p->live_shown = true;
        fflush(stdout);
}

void progress_step(Progress *p, const char *step, const char *status, uint64_t duration_usec) {
        char d[32];

        if (p->quiet)
                return;
        progress_clear(p);
        if (streq(status, "running")) {
                printf("%s\u25b6 %s%s\n", ctl_ansi(ANSI_BOLD), step, ctl_ansi(ANSI_NORMAL));
                snprintf(p->step, sizeof(p->step), "%s", step);
                p->step_started = now_usec();
        } else {
                if (streq(status, "succeeded") || streq(status, "failed"))
                        printf("%s%s %s%s (%s)\n", ctl_status_color(status), ctl_step_glyph(status), step,
                               ctl_ansi(ANSI_NORMAL), ctl_format_duration(d, duration_usec));
                else if (streq(status, "skipped"))
                        printf("%s- %s skipped%s\n", ctl_ansi(ANSI_DIM), step, ctl_ansi(ANSI_NORMAL));
                else
                        printf("%s %s: %s\n", ctl_step_glyph(status), step, status);
                if (streq(p->step, step))
                        p->step[0] = '\0';
        }
        fflush(stdout);
        progress_tick(p);
}

void progress_log(Progress *p, const char *line) {
        if (p->quiet)
                return;
        progress_clear(p);
        printf("    %s", ctl_ansi(ANSI_DIM));
        ctl_fputs_printable(line, stdout);
        printf("%s\n", ctl_ansi(ANSI_NORMAL));
        fflush(stdout);
        progress_tick(p);
}
