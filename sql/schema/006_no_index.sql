-- Schema version 6: no index on `users`. An ART index lives in DuckDB's memory while the
-- table is written and grows with the organisation (39 MB for 1M refs, more than the whole
-- writer's cap used to be), so a large sync ran out of memory in unrelated statements.
-- Lookups by ref (webhooks, push plans) scan `users` instead: a few milliseconds at 1M rows.
-- No table of the warehouse has an index or a key constraint on its data (see 001_init.sql).
DROP INDEX IF EXISTS users_ref;
