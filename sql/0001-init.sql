-- SPDX-License-Identifier: LGPL-2.1-or-later
--
-- Norn schema, version 1.
--
-- Applied by nornd (src/core/schema.c) inside one transaction holding an advisory
-- lock, and recorded in norn_schema under this file's name. Do not edit a file once
-- it has shipped: add 0002-....sql instead. No BEGIN/COMMIT in here.

-- ---------------------------------------------------------------------------------
-- Deployments: one row per requested deploy (or rollback) of an app.
-- ---------------------------------------------------------------------------------
CREATE TABLE deployments (
        id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        app             text NOT NULL CHECK (app ~ '^[a-z0-9][a-z0-9-]*$'),
        ref             text NOT NULL CHECK (ref <> ''),          -- what was asked: branch, tag or SHA
        commit_sha      text CHECK (commit_sha ~ '^[0-9a-f]{40}([0-9a-f]{24})?$'), -- resolved (SHA-1 or SHA-256)
        image_tag       text,                                     -- <app>:<sha12> once built
        status          text NOT NULL DEFAULT 'queued' CHECK (status IN (
                                'queued', 'building', 'testing', 'snapshotting', 'migrating',
                                'deploying', 'deployed', 'failed', 'rolled_back')),
        step            text CHECK (step IN (
                                'clone', 'build', 'test', 'snapshot', 'migrate', 'deploy', 'cleanup')),
        error           text,
        requested_by    text,
        rollback_of     bigint REFERENCES deployments (id) ON DELETE SET NULL,
        queued_at       timestamptz NOT NULL DEFAULT now(),
        started_at      timestamptz,                              -- set when it leaves 'queued' to run
        finished_at     timestamptz                               -- set when it reaches deployed/failed
);

-- History of an app, newest first.
CREATE INDEX deployments_app_id_idx ON deployments (app, id DESC);

-- Crash recovery and "what is running" scan only the few rows still in flight.
CREATE INDEX deployments_in_flight_idx ON deployments (status)
        WHERE status NOT IN ('deployed', 'failed', 'rolled_back');

-- The per-app lock, enforced here too: at most one deployment of an app past
-- 'queued' and not finished. Any number may wait in 'queued'.
CREATE UNIQUE INDEX deployments_one_active_per_app_idx ON deployments (app)
        WHERE status IN ('building', 'testing', 'snapshotting', 'migrating', 'deploying');

CREATE INDEX deployments_rollback_of_idx ON deployments (rollback_of) WHERE rollback_of IS NOT NULL;

-- ---------------------------------------------------------------------------------
-- Steps of a deployment, in pipeline order (position 1..7 as in DESIGN section 1).
-- A skipped step is a row with status 'skipped', never a missing row.
-- ---------------------------------------------------------------------------------
CREATE TABLE deployment_steps (
        deployment_id   bigint NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
        name            text NOT NULL CHECK (name IN (
                                'clone', 'build', 'test', 'snapshot', 'migrate', 'deploy', 'cleanup')),
        position        smallint NOT NULL,
        status          text NOT NULL DEFAULT 'pending' CHECK (status IN (
                                'pending', 'running', 'succeeded', 'failed', 'skipped')),
        started_at      timestamptz,
        finished_at     timestamptz,
        duration_ms     bigint CHECK (duration_ms >= 0),
        exit_code       integer,
        scope_unit      text,                                     -- norn-....scope it ran in
        output_tail     text,                                     -- last lines of its output
        PRIMARY KEY (deployment_id, name),
        CONSTRAINT deployment_steps_position_check CHECK (position = array_position(
                ARRAY['clone', 'build', 'test', 'snapshot', 'migrate', 'deploy', 'cleanup'], name))
);

-- ---------------------------------------------------------------------------------
-- pg_dump snapshots taken before migrations (step 4).
-- ---------------------------------------------------------------------------------
CREATE TABLE snapshots (
        id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        app             text NOT NULL,
        database        text NOT NULL,
        file            text NOT NULL UNIQUE,                     -- <db>_<sha12>_<UTC timestamp>.dump
        size_bytes      bigint CHECK (size_bytes >= 0),
        commit_sha      text,
        deployment_id   bigint REFERENCES deployments (id) ON DELETE SET NULL,
        created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX snapshots_app_created_idx ON snapshots (app, created_at DESC);
CREATE INDEX snapshots_deployment_idx ON snapshots (deployment_id) WHERE deployment_id IS NOT NULL;

-- ---------------------------------------------------------------------------------
-- The state machine: the one table of legal status edges, checked in one place
-- (the trigger below).
--
--   queued       -> building      clone+build start (clone always runs, so every
--                                 pipeline run leaves 'queued' through 'building')
--   queued       -> deploying     a rollback (or redeploy) of an image that already
--                                 exists: nothing to clone, build, test or migrate
--   queued       -> failed        cancelled while waiting, or nornd restarted
--   building     -> testing | snapshotting | migrating | deploying
--                                 the next step that is not skipped (no test, no
--                                 services.postgres, no migrations.command)
--   testing      -> snapshotting | migrating | deploying     (same skips)
--   snapshotting -> migrating | deploying                    (postgres, no migrations)
--   migrating    -> deploying
--   deploying    -> deployed
--   building | testing | snapshotting | migrating | deploying -> failed
--                                 a step failed, a timeout, a cancel, or nornd restarted
--   deployed     -> rolled_back   a later rollback replaced it
--
-- Not legal: anything out of failed or rolled_back (final; a retry is a new row),
-- deployed -> anything but rolled_back, and going backwards (testing -> building, ...).
-- Cleanup (step 7) does not change the status.
-- An INSERT must start at 'queued'.
-- ---------------------------------------------------------------------------------
CREATE TABLE status_transitions (
        from_status     text NOT NULL CHECK (from_status IN (
                                'queued', 'building', 'testing', 'snapshotting', 'migrating',
                                'deploying', 'deployed', 'failed', 'rolled_back')),
        to_status       text NOT NULL CHECK (to_status IN (
                                'queued', 'building', 'testing', 'snapshotting', 'migrating',
                                'deploying', 'deployed', 'failed', 'rolled_back')),
        PRIMARY KEY (from_status, to_status)
);

INSERT INTO status_transitions (from_status, to_status) VALUES
        ('queued',       'building'),
        ('queued',       'deploying'),
        ('queued',       'failed'),
        ('building',     'testing'),
        ('building',     'snapshotting'),
        ('building',     'migrating'),
        ('building',     'deploying'),
        ('building',     'failed'),
        ('testing',      'snapshotting'),
        ('testing',      'migrating'),
        ('testing',      'deploying'),
        ('testing',      'failed'),
        ('snapshotting', 'migrating'),
        ('snapshotting', 'deploying'),
        ('snapshotting', 'failed'),
        ('migrating',    'deploying'),
        ('migrating',    'failed'),
        ('deploying',    'deployed'),
        ('deploying',    'failed'),
        ('deployed',     'rolled_back');

CREATE FUNCTION deployments_check_status() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
        IF TG_OP = 'INSERT' THEN
                IF NEW.status <> 'queued' THEN
                        RAISE EXCEPTION 'a new deployment must be queued, not %', NEW.status
                                USING ERRCODE = 'check_violation',
                                      CONSTRAINT = 'deployments_status_transition';
                END IF;
                RETURN NEW;
        END IF;

        IF NEW.status IS DISTINCT FROM OLD.status THEN
                IF NOT EXISTS (SELECT 1 FROM status_transitions
                               WHERE from_status = OLD.status AND to_status = NEW.status) THEN
                        RAISE EXCEPTION 'illegal status transition for deployment %: % -> %',
                                        OLD.id, OLD.status, NEW.status
                                USING ERRCODE = 'check_violation',
                                      CONSTRAINT = 'deployments_status_transition',
                                      HINT = 'The legal transitions are the rows of status_transitions.';
                END IF;

                -- Timestamps follow the status unless the caller set them.
                IF OLD.status = 'queued' AND NEW.status <> 'failed' THEN
                        NEW.started_at := coalesce(NEW.started_at, now());
                END IF;
                IF NEW.status IN ('deployed', 'failed') THEN
                        NEW.finished_at := coalesce(NEW.finished_at, now());
                END IF;
        END IF;
        RETURN NEW;
END
$$;

CREATE TRIGGER deployments_status_transition
        BEFORE INSERT OR UPDATE OF status ON deployments
        FOR EACH ROW EXECUTE FUNCTION deployments_check_status();
