-- Schema version 1: the warehouse tables filled by `sync` and read by analysts, `query`,
-- `export`, `status` and the views in sql/views/.
--
-- Conventions (README "Tables"):
-- * Times are TIMESTAMPTZ in UTC, calendar days are DATE.
-- * Ids are Pluvo UUIDs stored as VARCHAR (lower-case text as the API sends them), so that
--   Parquet readers and BI tools see text, not 16-byte binaries.
-- * Keys are enforced by the merge in src/store/duckdb/merge.rs (staging deduplicated by key,
--   then insert-if-absent / update-if-hash-differs), not by PRIMARY KEY constraints: DuckDB
--   keeps ART indexes in memory and turns an UPDATE of an indexed column into delete + insert,
--   so an index would make a sync's memory grow with the organisation. A test checks that no
--   key appears twice.
-- * Every data table ends with the same bookkeeping columns:
--     _hash          content hash of the non-key columns (first 64 bits of SHA-256 over a
--                    canonical, type-tagged encoding computed in Rust; stable across DuckDB
--                    versions). Same hash = no write.
--     _first_seen_at when this key was first loaded.
--     _updated_at    when the row was last inserted, changed, revived or soft-deleted.
--     _deleted_at    set when a complete scan no longer returned the key; NULL = present.
--                    A row returned again later is revived (_deleted_at back to NULL).
--     _run_id        the `_runs.run_id` that last wrote the row.
-- * `_seen_<table>` hold the keys returned so far by the scan in progress of a stream; they
--   are emptied when the scan finishes. Analysts can ignore them.

-- users: one row per Pluvo user (paginatedUsers), key `id`.
CREATE TABLE users (
    id             VARCHAR NOT NULL,  -- Pluvo user UUID; the key (ref may be NULL)
    ref            VARCHAR,           -- the organisation's own anchor for the user
    name           VARCHAR,
    email          VARCHAR,
    last_login     TIMESTAMPTZ,       -- NULL = never logged in
    archived       BOOLEAN,
    language       VARCHAR,
    roles          VARCHAR[],         -- OWNER, MANAGER, AUTHOR, TRAINER, USER
    extra_fields   JSON,              -- extraFields, keys sorted: {"<categoryRef>": value}
    _hash          UBIGINT NOT NULL,
    _first_seen_at TIMESTAMPTZ NOT NULL,
    _updated_at    TIMESTAMPTZ NOT NULL,
    _deleted_at    TIMESTAMPTZ,
    _run_id        BIGINT NOT NULL
);
-- Point lookups by ref (webhooks, push plans). Non-unique: Pluvo does not promise unique refs.
CREATE INDEX users_ref ON users (ref);

-- portfolio_items: one row per user x training or certificate item (portfolioReport).
-- The API node has no id. Key `item_key` = lower-case hex of the first 128 bits of SHA-256
-- over user_id, related_object_type, title, the issue date (certificates only) and
-- occurrence, joined by U+001F (store::tables::portfolio_item_key). `occurrence` (1, 2, ...)
-- tells apart items of one user with the same type and title (trainings) or the same title
-- and issue date (certificates); the stream numbers them in a stable order.
-- A renamed title is a new key: the old row is soft-deleted by the next complete scan.
CREATE TABLE portfolio_items (
    item_key            VARCHAR NOT NULL,
    user_id             VARCHAR NOT NULL,  -- users.id
    user_ref            VARCHAR,           -- users.ref at the time of the scan
    related_object_type VARCHAR NOT NULL,  -- 'TRAINING' or 'CERTIFICATE'
    title               VARCHAR NOT NULL,
    occurrence          BIGINT NOT NULL,   -- 1 unless the user has this title more than once
    progress            DOUBLE,            -- 0-100
    score               DOUBLE,            -- 0-100, NULL when not scored
    completion_date     DATE,              -- certificates: issue date
    end_date            DATE,              -- certificates: expiry date
    time_spent_seconds  BIGINT,            -- timeSpent.days * 86400 + timeSpent.seconds
    _hash               UBIGINT NOT NULL,
    _first_seen_at      TIMESTAMPTZ NOT NULL,
    _updated_at         TIMESTAMPTZ NOT NULL,
    _deleted_at         TIMESTAMPTZ,
    _run_id             BIGINT NOT NULL
);

-- portfolio_item_history: one row per version of a portfolio item's tracked values. A sync
-- that sees different values closes the current version (valid_to) and opens a new one; a
-- soft delete closes it. "Completed as of date X":
--   WHERE valid_from <= X AND (valid_to IS NULL OR valid_to > X) AND completion_date <= X
CREATE TABLE portfolio_item_history (
    item_key           VARCHAR NOT NULL,   -- portfolio_items.item_key
    progress           DOUBLE,
    score              DOUBLE,
    completion_date    DATE,
    end_date           DATE,
    time_spent_seconds BIGINT,
    valid_from         TIMESTAMPTZ NOT NULL,  -- when a sync first saw these values
    valid_to           TIMESTAMPTZ,           -- when they stopped being current; NULL = current
    _run_id            BIGINT NOT NULL
);

-- certificates: certificate templates (certificates query); issued certificates are
-- portfolio_items with related_object_type = 'CERTIFICATE'.
CREATE TABLE certificates (
    id             VARCHAR NOT NULL,
    name           VARCHAR,
    title          VARCHAR,
    _hash          UBIGINT NOT NULL,
    _first_seen_at TIMESTAMPTZ NOT NULL,
    _updated_at    TIMESTAMPTZ NOT NULL,
    _deleted_at    TIMESTAMPTZ,
    _run_id        BIGINT NOT NULL
);

-- groups: user groups (paginatedGroups), key `id`.
CREATE TABLE "groups" (
    id             VARCHAR NOT NULL,
    ref            VARCHAR,
    name           VARCHAR,
    user_count     BIGINT,           -- userCount as reported by Pluvo
    _hash          UBIGINT NOT NULL,
    _first_seen_at TIMESTAMPTZ NOT NULL,
    _updated_at    TIMESTAMPTZ NOT NULL,
    _deleted_at    TIMESTAMPTZ,
    _run_id        BIGINT NOT NULL
);

-- group_members: who is in which group, and how. Key (group_id, user_id, role).
CREATE TABLE group_members (
    group_id       VARCHAR NOT NULL,  -- groups.id
    user_id        VARCHAR NOT NULL,  -- users.id
    role           VARCHAR NOT NULL,  -- 'participant' or 'manager'
    group_ref      VARCHAR,
    user_ref       VARCHAR,
    _hash          UBIGINT NOT NULL,
    _first_seen_at TIMESTAMPTZ NOT NULL,
    _updated_at    TIMESTAMPTZ NOT NULL,
    _deleted_at    TIMESTAMPTZ,
    _run_id        BIGINT NOT NULL
);

-- trainings: paginatedTrainings, key `id`. Start and end are DateTime in the API.
CREATE TABLE trainings (
    id             VARCHAR NOT NULL,
    ref            VARCHAR,
    title          VARCHAR,
    is_active      BOOLEAN,
    archived       BOOLEAN,
    start_date     TIMESTAMPTZ,
    end_date       TIMESTAMPTZ,
    _hash          UBIGINT NOT NULL,
    _first_seen_at TIMESTAMPTZ NOT NULL,
    _updated_at    TIMESTAMPTZ NOT NULL,
    _deleted_at    TIMESTAMPTZ,
    _run_id        BIGINT NOT NULL
);

-- Keys returned by the scan in progress, per stream (see the header). Narrow on purpose:
-- a full portfolio scan writes one short row per item here instead of touching the item.
CREATE TABLE _seen_users           (stream VARCHAR NOT NULL, id VARCHAR NOT NULL);
CREATE TABLE _seen_portfolio_items (stream VARCHAR NOT NULL, item_key VARCHAR NOT NULL);
CREATE TABLE _seen_certificates    (stream VARCHAR NOT NULL, id VARCHAR NOT NULL);
CREATE TABLE _seen_groups          (stream VARCHAR NOT NULL, id VARCHAR NOT NULL);
CREATE TABLE _seen_group_members   (stream VARCHAR NOT NULL, group_id VARCHAR NOT NULL,
                                    user_id VARCHAR NOT NULL, role VARCHAR NOT NULL);
CREATE TABLE _seen_trainings       (stream VARCHAR NOT NULL, id VARCHAR NOT NULL);

-- _checkpoints: where each stream resumes. `state` is the stream's own JSON (a cursor, an
-- offset, a date window); it is written in the same transaction as the page it follows.
CREATE TABLE _checkpoints (
    stream     VARCHAR NOT NULL PRIMARY KEY,
    state      VARCHAR NOT NULL,
    run_id     BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

-- _runs: one row per `sync` (or other writing command). A run still 'running' when the next
-- writer opens the file was killed; it is then marked 'interrupted'.
CREATE TABLE _runs (
    run_id     BIGINT NOT NULL PRIMARY KEY,
    started_at TIMESTAMPTZ NOT NULL,
    ended_at   TIMESTAMPTZ,               -- NULL while running, or if interrupted
    status     VARCHAR NOT NULL,          -- running | succeeded | failed | interrupted
    streams    VARCHAR[] NOT NULL,        -- the streams the run was asked to sync
    error      VARCHAR
);

-- _run_streams: per run and stream, what the stream did.
CREATE TABLE _run_streams (
    run_id         BIGINT NOT NULL,
    stream         VARCHAR NOT NULL,
    rows_new       BIGINT NOT NULL,
    rows_changed   BIGINT NOT NULL,       -- includes revived rows
    rows_unchanged BIGINT NOT NULL,
    rows_deleted   BIGINT NOT NULL,       -- soft-deleted by this run's complete scan
    requests       BIGINT NOT NULL,
    retries        BIGINT NOT NULL,
    schema_drift   VARCHAR,               -- unknown or missing fields seen in answers
    error          VARCHAR,
    started_at     TIMESTAMPTZ NOT NULL,
    ended_at       TIMESTAMPTZ,
    PRIMARY KEY (run_id, stream)
);
