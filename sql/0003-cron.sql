-- SPDX-License-Identifier: LGPL-2.1-or-later
--
-- Cron apps (role: cron) run on systemd timers (src/core/cron-timer.c).
-- Transient units do not survive a reboot: nornd re-creates them from
-- cron_timers at start-up, and after every reload of the service manager.

-- The current timer of each cron app: what its last successful deploy installed.
CREATE TABLE cron_timers (
        app             text PRIMARY KEY CHECK (app ~ '^[a-z0-9][a-z0-9-]*$' AND length(app) <= 63),
        image           text NOT NULL CHECK (image <> ''),
        schedule        text NOT NULL,                            -- as written in infraspec.yaml
        oncalendar      text[] NOT NULL CHECK (cardinality(oncalendar) BETWEEN 1 AND 8),
        command         text NOT NULL CHECK (command <> ''),
        env             text[] NOT NULL DEFAULT '{}',             -- NAME=value
        runtime         text,                                     -- NULL: nornd's default
        timeout_sec     integer NOT NULL DEFAULT 300 CHECK (timeout_sec >= 0),
        deployment_id   bigint REFERENCES deployments (id) ON DELETE SET NULL,
        updated_at      timestamptz NOT NULL DEFAULT now()
);

-- One row per run of a cron job, keyed by the service's InvocationID.
-- Inserted when the run is seen starting, completed when it ends; a run that
-- started and ended while nornd was away is recorded once it is back (the
-- last one per app).
CREATE TABLE cron_executions (
        id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        app             text NOT NULL,
        invocation_id   text NOT NULL UNIQUE CHECK (invocation_id ~ '^[0-9a-f]{32}$'),
        unit            text NOT NULL,
        image           text,                                     -- what the unit ran
        started_at      timestamptz,
        finished_at     timestamptz,
        result          text,     -- systemd's Result: success, exit-code, signal, timeout, core-dump, ...
        exit_code       integer,  -- the main process exited with this status
        exit_signal     integer,  -- or was killed by this signal
        recorded_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX cron_executions_app_started_idx ON cron_executions (app, started_at DESC);
