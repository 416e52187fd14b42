-- Schema version 8: a portfolio item's current history version lives in its
-- `portfolio_items` row, and `portfolio_item_history` is a view with the columns and rows of
-- the table it replaces: the stored versions (`portfolio_item_versions`, that table renamed)
-- and the current version of each item not deleted.
--
-- Why (issue 19): a first load wrote every item twice, once as the item and once as its first
-- version, and most tracked values never change. Now a version is stored when it ends: a
-- change of tracked values (or a soft delete) copies the item's current version into
-- `portfolio_item_versions`, closed, and the item's new values start the next. A 100k-user
-- first load stores 500k fewer rows: its sync took 0.25 s less (3.3 → 3.05 s) and its file
-- is a fifth smaller (50 → 39 MiB).
--
-- The two columns are added by rebuilding `portfolio_items` (`add_columns` in
-- src/store/schema.rs runs every `ADD COLUMN`): DuckDB's own `ADD COLUMN` held the new
-- columns of every row in memory and failed under the default cap at 5M users. The rebuild
-- fits any cap; at 1M users it took 3.8 s and the file grew once by the table's size (486 →
-- 748 MB; DuckDB reuses the freed blocks for later writes).
--
-- A warehouse synced before keeps its stored current versions (valid_to NULL) and the new
-- columns are NULL in its rows, so the view shows each version once: a stored current
-- version is closed in place at the item's next change or soft delete, as before, and the
-- item's next version is held in its row.

-- portfolio_item_versions: the stored versions of portfolio_item_history: those that ended
-- (valid_to set), and the current ones of items last changed before migration 8. Query
-- portfolio_item_history, which adds each item's current version.
ALTER TABLE portfolio_item_history RENAME TO portfolio_item_versions;

ALTER TABLE portfolio_items ADD COLUMN _version_from TIMESTAMP; -- valid_from of the item's current version in portfolio_item_history; NULL when deleted or stored there (not exported)
ALTER TABLE portfolio_items ADD COLUMN _version_run_id BIGINT;  -- _run_id of that version (not exported)

-- portfolio_item_history: one row per version of a portfolio item's tracked values. A sync
-- that sees different values closes the current version (valid_to) and opens a new one; a
-- soft delete closes it. A view: the versions stored in portfolio_item_versions, and each
-- present item's current version, held in its portfolio_items row (`_version_from`).
-- "Completed as of date X":
--   WHERE valid_from <= X AND (valid_to IS NULL OR valid_to > X) AND completion_date <= X
CREATE VIEW portfolio_item_history AS
    SELECT item_key, progress, score, completion_date, end_date, time_spent_seconds,
           valid_from, valid_to, _run_id
    FROM portfolio_item_versions
    UNION ALL
    SELECT item_key, progress, score, completion_date, end_date, time_spent_seconds,
           _version_from, CAST(NULL AS TIMESTAMP), _version_run_id
    FROM portfolio_items
    WHERE _version_from IS NOT NULL AND _deleted_at IS NULL;
