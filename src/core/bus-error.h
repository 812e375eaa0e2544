/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <systemd/sd-bus.h>

#include "macro.h"

/* The errors of org.norn.Norn1, in one place: their names, the errno each
 * stands for (the same errno the HTTP API maps to its status codes), and
 * the sd-bus map that lets clients turn a name back into that errno. */

#define NORN_ERROR_NOT_FOUND            "org.norn.Norn1.Error.NotFound"           /* ENOENT */
#define NORN_ERROR_BUSY                 "org.norn.Norn1.Error.Busy"               /* EBUSY */
#define NORN_ERROR_INVALID_ARGUMENT     "org.norn.Norn1.Error.InvalidArgument"    /* EINVAL */
#define NORN_ERROR_UNAVAILABLE          "org.norn.Norn1.Error.Unavailable"        /* ENOTCONN, ENOBUFS */
#define NORN_ERROR_ALREADY_FINISHED     "org.norn.Norn1.Error.AlreadyFinished"    /* EALREADY */
#define NORN_ERROR_NOTHING_TO_ROLL_BACK "org.norn.Norn1.Error.NothingToRollBack"  /* ENODATA */

extern const sd_bus_error_map norn_bus_error_map[];

/* Sets error to the Norn error for errno r with message (NULL: strerror).
 * Errors without a Norn name (ENOMEM, EIO, ...) become
 * org.freedesktop.DBus.Error.Failed with a generic message: internal
 * details stay in the log. Returns r (negative). */
int bus_error_set_errno(sd_bus_error *error, int r, const char *message);

/* As above, with a formatted message. */
int bus_error_set_errnof(sd_bus_error *error, int r, const char *format, ...) _printf_(3, 4);

/* Replies to call with the error of bus_error_set_errno(). */
int bus_reply_errno(sd_bus_message *call, int r, const char *message);

/* InvalidArgument for an app name that is no app id (app_id_is_valid()). */
int bus_error_invalid_app(sd_bus_error *error);
