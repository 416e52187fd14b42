-- Schema version 7: the text columns of the four large tables name their compression
-- (`USING COMPRESSION`), so that DuckDB's checkpoints compress them that way instead of
-- trying each method on every segment first. A checkpoint compresses every row a sync wrote,
-- and choosing a method was about a fifth of the writer's time in a first load; named, a
-- 100k-user first load took 6% less CPU and a 1M-user one 4% (issue 19). The methods named
-- are the ones DuckDB chose on its own for a simulated organisation:
-- * FSST (a string compressor that keeps each value apart) for text that is mostly distinct:
--   keys, ids, refs, names, e-mail addresses. It also does well on repeats.
-- * Dictionary for text of few distinct values a segment (types, titles, roles, languages,
--   group ids) and `portfolio_items.user_id`, whose rows come one user at a time.
-- Only the compression changes: columns, types, order and rows are copied as they were.
-- Other columns (numbers, times, lists, JSON) keep DuckDB's choice, which is cheap to make.
--
-- DuckDB cannot alter a column's compression, so the tables are rebuilt, and only while all
-- four are empty (a new warehouse): rebuilding a synced one would leave its file twice the
-- size (1M users: 485 → 964 MB; DuckDB does not give freed blocks back) to save a few
-- percent of a sync. A file with rows records version 7 and keeps DuckDB's own choice
-- (`Migration::only_if_empty` in src/store/schema.rs). The views in the catalog name the
-- tables and bind again at their next use.

CREATE TABLE _v7_users (
    id             VARCHAR USING COMPRESSION fsst NOT NULL,
    "ref"          VARCHAR USING COMPRESSION fsst,
    "name"         VARCHAR USING COMPRESSION fsst,
    email          VARCHAR USING COMPRESSION fsst,
    last_login     TIMESTAMP,
    archived       BOOLEAN,
    "language"     VARCHAR USING COMPRESSION dictionary,
    roles          VARCHAR[],
    extra_fields   JSON,
    _hash          UBIGINT NOT NULL,
    _first_seen_at TIMESTAMP NOT NULL,
    _updated_at    TIMESTAMP NOT NULL,
    _deleted_at    TIMESTAMP,
    _run_id        BIGINT NOT NULL
);
INSERT INTO _v7_users SELECT * FROM users;
DROP TABLE users;
ALTER TABLE _v7_users RENAME TO users;

CREATE TABLE _v7_portfolio_items (
    item_key            VARCHAR USING COMPRESSION fsst NOT NULL,
    user_id             VARCHAR USING COMPRESSION dictionary NOT NULL,
    user_ref            VARCHAR USING COMPRESSION fsst,
    related_object_type VARCHAR USING COMPRESSION dictionary NOT NULL,
    title               VARCHAR USING COMPRESSION dictionary NOT NULL,
    occurrence          BIGINT NOT NULL,
    progress            DOUBLE,
    score               DOUBLE,
    completion_date     DATE,
    end_date            DATE,
    time_spent_seconds  BIGINT,
    _hash               UBIGINT NOT NULL,
    _first_seen_at      TIMESTAMP NOT NULL,
    _updated_at         TIMESTAMP NOT NULL,
    _deleted_at         TIMESTAMP,
    _run_id             BIGINT NOT NULL
);
INSERT INTO _v7_portfolio_items SELECT * FROM portfolio_items;
DROP TABLE portfolio_items;
ALTER TABLE _v7_portfolio_items RENAME TO portfolio_items;

CREATE TABLE _v7_portfolio_item_history (
    item_key           VARCHAR USING COMPRESSION fsst NOT NULL,
    progress           DOUBLE,
    score              DOUBLE,
    completion_date    DATE,
    end_date           DATE,
    time_spent_seconds BIGINT,
    valid_from         TIMESTAMP NOT NULL,
    valid_to           TIMESTAMP,
    _run_id            BIGINT NOT NULL
);
INSERT INTO _v7_portfolio_item_history SELECT * FROM portfolio_item_history;
DROP TABLE portfolio_item_history;
ALTER TABLE _v7_portfolio_item_history RENAME TO portfolio_item_history;

CREATE TABLE _v7_group_members (
    group_id       VARCHAR USING COMPRESSION dictionary NOT NULL,
    user_id        VARCHAR USING COMPRESSION fsst NOT NULL,
    "role"         VARCHAR USING COMPRESSION dictionary NOT NULL,
    group_ref      VARCHAR USING COMPRESSION dictionary,
    user_ref       VARCHAR USING COMPRESSION fsst,
    _hash          UBIGINT NOT NULL,
    _first_seen_at TIMESTAMP NOT NULL,
    _updated_at    TIMESTAMP NOT NULL,
    _deleted_at    TIMESTAMP,
    _run_id        BIGINT NOT NULL
);
INSERT INTO _v7_group_members SELECT * FROM group_members;
DROP TABLE group_members;
ALTER TABLE _v7_group_members RENAME TO group_members;
