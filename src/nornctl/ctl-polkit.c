/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A polkit text agent for the person at the terminal, as systemctl starts
 * one: when nornd asks polkit whether this user may deploy and the policy
 * says "authenticate", pkttyagent asks for the password on this tty. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctl.h"

#define PKTTYAGENT "pkttyagent"

static pid_t agent_pid;

void ctl_polkit_agent_open(void) {
        char fd_arg[16];
        int pipefd[2];
        pid_t pid;

        /* Root needs no authentication; nobody at a terminal, no agent. */
        if (agent_pid > 0 || geteuid() == 0 || !isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO))
                return;
        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return;

        pid = fork();
        if (pid < 0) {
                close(pipefd[0]);
                close(pipefd[1]);
                return;
        }
        if (pid == 0) {
                /* The agent closes the notify fd once it is registered. */
                if (fcntl(pipefd[1], F_SETFD, 0) < 0)
                        _exit(EXIT_FAILURE);
                snprintf(fd_arg, sizeof(fd_arg), "%d", pipefd[1]);
                execlp(PKTTYAGENT, PKTTYAGENT, "--notify-fd", fd_arg, "--fallback", (char *) NULL);
                _exit(EXIT_FAILURE); /* no polkit here: the call is simply refused */
        }

        close(pipefd[1]);
        agent_pid = pid;
        /* Wait until it is registered (or gone), so the call that follows
         * finds it; EOF comes either way. No timeout, as systemctl does: on a
         * busy machine registering can take seconds, and a call made before
         * it is refused without the password ever being asked. */
        while (poll(&(struct pollfd) { .fd = pipefd[0], .events = POLLIN }, 1, -1) < 0 && errno == EINTR)
                ;
        close(pipefd[0]);
}

void ctl_polkit_agent_close(void) {
        if (agent_pid <= 0)
                return;
        (void) kill(agent_pid, SIGTERM);
        (void) waitpid(agent_pid, NULL, 0);
        agent_pid = 0;
}
