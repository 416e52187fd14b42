-- Safety bookkeeping (issue #16). Writers: `sync` (src/store/duckdb/scan.rs, src/streams/
-- identity.rs). Readers: the same, `status`, and analysts asking why a row is not deleted yet.

-- _organisation: which Pluvo organisation this warehouse holds (one row). Pluvo's API has no
-- organisation id (pluvo-api.md), so the identity is the base URL plus a fingerprint of user
-- ids the warehouse has seen there (UUIDs: another organisation never has the same ones).
-- A sync against another URL, or a URL whose users share no id with these, is refused
-- unless `--accept-organisation` is given.
CREATE TABLE _organisation (
    base_url     VARCHAR NOT NULL,   -- pluvo.url as used, without a trailing slash
    fingerprint  VARCHAR NOT NULL,   -- short hash of `anchor_ids`, shown in messages
    anchor_ids   VARCHAR[] NOT NULL, -- user ids first seen there (oldest first)
    anchor_refs  VARCHAR[] NOT NULL, -- their refs, to name the organisation to a person
    recorded_at  TIMESTAMP NOT NULL   -- UTC (see 004_utc_timestamps.sql)
);

-- _missing_<table>: rows a complete scan did not return, not yet recorded as deleted. A row
-- is soft-deleted only when the next complete scan covering it misses it again (offset pages
-- can shift under a scan, so one miss is not proof); a scan that returns it clears it.
-- `run_id` is the run that first missed it.
CREATE TABLE _missing_users           (id VARCHAR NOT NULL, run_id BIGINT NOT NULL);
CREATE TABLE _missing_portfolio_items (item_key VARCHAR NOT NULL, run_id BIGINT NOT NULL);
CREATE TABLE _missing_certificates    (id VARCHAR NOT NULL, run_id BIGINT NOT NULL);
CREATE TABLE _missing_groups          (id VARCHAR NOT NULL, run_id BIGINT NOT NULL);
CREATE TABLE _missing_group_members   (group_id VARCHAR NOT NULL, user_id VARCHAR NOT NULL,
                                       role VARCHAR NOT NULL, run_id BIGINT NOT NULL);
CREATE TABLE _missing_trainings       (id VARCHAR NOT NULL, run_id BIGINT NOT NULL);
