-- Schema version 4: every time is a TIMESTAMP holding UTC wall-clock time (it was
-- TIMESTAMPTZ). Why (README "Contributing", "Times and time zones"): the bundled DuckDB has no
-- ICU extension, so TIMESTAMPTZ arithmetic, casts to DATE, date_trunc and extract failed in the
-- tool, and in DuckDB builds that have ICU their answers depended on the reader's TimeZone
-- setting. A naive UTC TIMESTAMP gives the same answer in every DuckDB and every time zone;
-- the tool defines now(), current_date, today() and current_timestamp per connection to
-- return UTC TIMESTAMP/DATE to match (src/store/sqltime.rs).
--
-- The cast TIMESTAMPTZ -> TIMESTAMP is UTC in this build (no ICU, so no session time zone).
-- It is DuckDB's core cast, not a function of the core_functions extension: an ALTER is
-- replayed from the WAL before extensions load, and a function there would fail the replay.
-- DuckDB alters no table that an index depends on: users_ref is dropped, and not rebuilt
-- (an in-memory ART index grows with the organisation; see 006_no_index.sql).
DROP INDEX IF EXISTS users_ref;
ALTER TABLE users ALTER COLUMN last_login SET DATA TYPE TIMESTAMP USING CAST(last_login AS TIMESTAMP);
ALTER TABLE users ALTER COLUMN _first_seen_at SET DATA TYPE TIMESTAMP USING CAST(_first_seen_at AS TIMESTAMP);
ALTER TABLE users ALTER COLUMN _updated_at SET DATA TYPE TIMESTAMP USING CAST(_updated_at AS TIMESTAMP);
ALTER TABLE users ALTER COLUMN _deleted_at SET DATA TYPE TIMESTAMP USING CAST(_deleted_at AS TIMESTAMP);
ALTER TABLE portfolio_items ALTER COLUMN _first_seen_at SET DATA TYPE TIMESTAMP USING CAST(_first_seen_at AS TIMESTAMP);
ALTER TABLE portfolio_items ALTER COLUMN _updated_at SET DATA TYPE TIMESTAMP USING CAST(_updated_at AS TIMESTAMP);
ALTER TABLE portfolio_items ALTER COLUMN _deleted_at SET DATA TYPE TIMESTAMP USING CAST(_deleted_at AS TIMESTAMP);
ALTER TABLE portfolio_item_history ALTER COLUMN valid_from SET DATA TYPE TIMESTAMP USING CAST(valid_from AS TIMESTAMP);
ALTER TABLE portfolio_item_history ALTER COLUMN valid_to SET DATA TYPE TIMESTAMP USING CAST(valid_to AS TIMESTAMP);
ALTER TABLE certificates ALTER COLUMN _first_seen_at SET DATA TYPE TIMESTAMP USING CAST(_first_seen_at AS TIMESTAMP);
ALTER TABLE certificates ALTER COLUMN _updated_at SET DATA TYPE TIMESTAMP USING CAST(_updated_at AS TIMESTAMP);
ALTER TABLE certificates ALTER COLUMN _deleted_at SET DATA TYPE TIMESTAMP USING CAST(_deleted_at AS TIMESTAMP);
ALTER TABLE "groups" ALTER COLUMN _first_seen_at SET DATA TYPE TIMESTAMP USING CAST(_first_seen_at AS TIMESTAMP);
ALTER TABLE "groups" ALTER COLUMN _updated_at SET DATA TYPE TIMESTAMP USING CAST(_updated_at AS TIMESTAMP);
ALTER TABLE "groups" ALTER COLUMN _deleted_at SET DATA TYPE TIMESTAMP USING CAST(_deleted_at AS TIMESTAMP);
ALTER TABLE group_members ALTER COLUMN _first_seen_at SET DATA TYPE TIMESTAMP USING CAST(_first_seen_at AS TIMESTAMP);
ALTER TABLE group_members ALTER COLUMN _updated_at SET DATA TYPE TIMESTAMP USING CAST(_updated_at AS TIMESTAMP);
ALTER TABLE group_members ALTER COLUMN _deleted_at SET DATA TYPE TIMESTAMP USING CAST(_deleted_at AS TIMESTAMP);
ALTER TABLE trainings ALTER COLUMN start_date SET DATA TYPE TIMESTAMP USING CAST(start_date AS TIMESTAMP);
ALTER TABLE trainings ALTER COLUMN end_date SET DATA TYPE TIMESTAMP USING CAST(end_date AS TIMESTAMP);
ALTER TABLE trainings ALTER COLUMN _first_seen_at SET DATA TYPE TIMESTAMP USING CAST(_first_seen_at AS TIMESTAMP);
ALTER TABLE trainings ALTER COLUMN _updated_at SET DATA TYPE TIMESTAMP USING CAST(_updated_at AS TIMESTAMP);
ALTER TABLE trainings ALTER COLUMN _deleted_at SET DATA TYPE TIMESTAMP USING CAST(_deleted_at AS TIMESTAMP);
ALTER TABLE _checkpoints ALTER COLUMN updated_at SET DATA TYPE TIMESTAMP USING CAST(updated_at AS TIMESTAMP);
ALTER TABLE _runs ALTER COLUMN started_at SET DATA TYPE TIMESTAMP USING CAST(started_at AS TIMESTAMP);
ALTER TABLE _runs ALTER COLUMN ended_at SET DATA TYPE TIMESTAMP USING CAST(ended_at AS TIMESTAMP);
ALTER TABLE _run_streams ALTER COLUMN started_at SET DATA TYPE TIMESTAMP USING CAST(started_at AS TIMESTAMP);
ALTER TABLE _run_streams ALTER COLUMN ended_at SET DATA TYPE TIMESTAMP USING CAST(ended_at AS TIMESTAMP);
ALTER TABLE _push_plans ALTER COLUMN created_at SET DATA TYPE TIMESTAMP USING CAST(created_at AS TIMESTAMP);
ALTER TABLE _push_plans ALTER COLUMN applied_at SET DATA TYPE TIMESTAMP USING CAST(applied_at AS TIMESTAMP);
ALTER TABLE _push_plans ALTER COLUMN finished_at SET DATA TYPE TIMESTAMP USING CAST(finished_at AS TIMESTAMP);
ALTER TABLE _push_ledger ALTER COLUMN sent_at SET DATA TYPE TIMESTAMP USING CAST(sent_at AS TIMESTAMP);
ALTER TABLE _push_ledger ALTER COLUMN finished_at SET DATA TYPE TIMESTAMP USING CAST(finished_at AS TIMESTAMP);
ALTER TABLE webhook_events ALTER COLUMN received_at SET DATA TYPE TIMESTAMP USING CAST(received_at AS TIMESTAMP);
ALTER TABLE webhook_events ALTER COLUMN sent_date SET DATA TYPE TIMESTAMP USING CAST(sent_date AS TIMESTAMP);
