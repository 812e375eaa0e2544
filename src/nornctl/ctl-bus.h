/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>

#include "ctl.h"

/* One clear line on stderr ("nornctl: ..."); returns r (a negative errno). */
int ctl_error(int r, const char *fmt, ...) _printf_(2, 3);

/* True for a -H argument that ssh can only take as a destination:
 * [USER@]HOST[:PORT], no leading '-', no spaces, quotes or shell or ssh
 * option syntax. */
bool ctl_host_is_valid(const char *host);

/* "invalid host ..." for -H, one line; returns -EINVAL. */
int ctl_host_error(const char *host);

/* The sd-bus address that runs ssh to HOST and systemd-stdio-bridge there,
 * pointed at the remote user's session bus (--user -H; libsystemd has
 * sd_bus_open_system_remote() for the system bus only). */
int ctl_remote_user_address(const char *host, char **ret);

/* Connects as the options say: system or session bus, here or over ssh. */
int ctl_connect(const CtlOptions *o, sd_bus **ret);

/* Says what went wrong with a call to nornd, in one line: unreachable,
 * unknown names, refusals (nornd's own message), lost connections. */
int ctl_call_error(const sd_bus_error *error, int r);

/* Calls a Manager method; on error prints it (ctl_call_error) and returns
 * it. types and the varargs as for sd_bus_call_method(). */
int ctl_call(sd_bus *bus, const char *method, sd_bus_message **ret_reply, const char *types, ...);

/* Following a deployment: handler for the Manager signal member, and
 * *ret_gone set true when nornd leaves the bus (NameOwnerChanged). Both
 * print the error. */
int ctl_subscribe(sd_bus *bus, const char *member, sd_bus_message_handler_t handler, void *userdata);
int ctl_watch_nornd_gone(sd_bus *bus, bool *ret_gone);

/* A reply that does not have the expected shape. */
int ctl_bad_reply(int r);

/* A deployment id: decimal, 1 .. 2^63-1. Prints the error. */
int ctl_parse_id(const char *s, uint64_t *ret);

/* Words from argv for nornd, checked as nornd checks them, before
 * connecting: an app id, a deploy ref (HEAD, SHA or branch), a snapshot
 * file name, a deployment status. Print the error, return -EINVAL. */
int ctl_check_app(const char *s);
int ctl_check_ref(const char *s);
int ctl_check_snapshot(const char *s);
int ctl_check_status(const char *s);
