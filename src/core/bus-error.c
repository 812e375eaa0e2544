/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "bus-error.h"
#include "infraspec.h"

const sd_bus_error_map norn_bus_error_map[] = {
        SD_BUS_ERROR_MAP(NORN_ERROR_NOT_FOUND, ENOENT),
        SD_BUS_ERROR_MAP(NORN_ERROR_BUSY, EBUSY),
        SD_BUS_ERROR_MAP(NORN_ERROR_INVALID_ARGUMENT, EINVAL),
        SD_BUS_ERROR_MAP(NORN_ERROR_UNAVAILABLE, ENOTCONN),
        SD_BUS_ERROR_MAP(NORN_ERROR_ALREADY_FINISHED, EALREADY),
        SD_BUS_ERROR_MAP(NORN_ERROR_NOTHING_TO_ROLL_BACK, ENODATA),
        SD_BUS_ERROR_MAP_END,
};

static const char *error_name(int r) {
        switch (-r) {
        case ENOENT:
                return NORN_ERROR_NOT_FOUND;
        case EBUSY:
                return NORN_ERROR_BUSY;
        case EINVAL:
                return NORN_ERROR_INVALID_ARGUMENT;
        case ENOTCONN:
        case ENOBUFS:
                return NORN_ERROR_UNAVAILABLE;
        case EALREADY:
                return NORN_ERROR_ALREADY_FINISHED;
        case ENODATA:
                return NORN_ERROR_NOTHING_TO_ROLL_BACK;
        default:
                return NULL;
        }
}

int bus_error_set_errno(sd_bus_error *error, int r, const char *message) {
        const char *name = error_name(r);

        if (r >= 0)
                r = -EIO;
        if (!name)
                (void) sd_bus_error_set(error, SD_BUS_ERROR_FAILED, "Internal error.");
        else
                (void) sd_bus_error_set(error, name, message ?: strerror(-r));
        return r;
}

int bus_error_set_errnof(sd_bus_error *error, int r, const char *format, ...) {
        char buf[512];
        va_list ap;

        va_start(ap, format);
        vsnprintf(buf, sizeof(buf), format, ap);
        va_end(ap);
        return bus_error_set_errno(error, r, buf);
}

int bus_reply_errno(sd_bus_message *call, int r, const char *message) {
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;

        bus_error_set_errno(&e, r, message);
        return sd_bus_reply_method_error(call, &e);
}

int bus_error_invalid_app(sd_bus_error *error) {
        return sd_bus_error_setf(error, NORN_ERROR_INVALID_ARGUMENT,
                                 "Invalid app name: must match ^[a-z0-9][a-z0-9-]*$, at most %u characters.",
                                 APP_ID_MAX);
}
