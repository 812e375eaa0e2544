/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>

/* Checks for what ends up on a git command line (the clone step and the
 * infraspec parser both use them). They are conservative: a "false" means
 * "not something Norn hands to git", never "git would reject it". */

#define GIT_REF_MAX 255U
#define GIT_URL_MAX 4096U

/* A branch name per `git check-ref-format --branch` (one level allowed):
 * no component starting with '.' or ending in ".lock", no "..", no "@{",
 * not "@", no control characters, space, ~ ^ : ? * [ or '\', no leading,
 * trailing or doubled '/', not ending in '.', and, so it can never be read
 * as an option, no leading '-'. At most GIT_REF_MAX bytes. */
bool git_ref_is_valid(const char *ref);

/* https://, http://, ssh://host/..., file:///abs, user@host:path (scp
 * style) or an absolute local path. No whitespace or control characters,
 * no leading '-' and no user or host starting with '-' (ssh option injection).
 * At most GIT_URL_MAX bytes. */
bool git_url_is_valid(const char *url);
