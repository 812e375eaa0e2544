-- SPDX-License-Identifier: LGPL-2.1-or-later
-- Where the deployed source came from: the app's git repository, the local
-- app directory (apps without repo.url), or the local directory because the
-- clone failed ("local-fallback", visible so nobody mistakes it for the repo).
ALTER TABLE deployments
        ADD COLUMN source text CHECK (source IN ('git', 'local', 'local-fallback'));
