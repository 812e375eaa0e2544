-- SPDX-License-Identifier: LGPL-2.1-or-later
-- A rollback with a database restore starts at its restore (run as the
-- migrate step, the reverse of a migration) and then deploys:
--   queued -> migrating -> deploying -> deployed
INSERT INTO status_transitions (from_status, to_status) VALUES ('queued', 'migrating');
