-- SPDX-License-Identifier: LGPL-2.1-or-later
-- A cron app's env values no longer live in the database, where any reader of
-- it (and a migration holding Norn's role) could see them: nornd keeps them in
-- a root-only file, recorded here by its path, and env keeps the names only
-- ("NAME="). Values recorded by an older nornd are removed; such apps need
-- one more deploy (nornd says so when it cannot re-create their timer).
ALTER TABLE cron_timers ADD COLUMN env_file text;
UPDATE cron_timers SET env = ARRAY(SELECT split_part(e, '=', 1) || '=' FROM unnest(env) AS e)
        WHERE cardinality(env) > 0;
