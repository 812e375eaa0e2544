/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <systemd/sd-bus.h>

/* Introspection XML of our interfaces as the vtables define them, produced
 * without a bus daemon: the objects are served on one end of a socketpair and
 * introspected from the other. Only interfaces named prefix* are kept, so the
 * output is stable across sd-bus versions' standard interfaces. */
int bus_introspect(int (*add_objects)(sd_bus *bus), const char *const *paths, const char *prefix,
                   char **ret_xml);
