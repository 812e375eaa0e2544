/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "events.h"

typedef struct Manager Manager;

/* Hands a new event to every authenticated /ws client whose subscription
 * matches (events.c calls it once per event, in seq order). */
void api_ws_broadcast(Manager *m, const Event *e);
