//! The DuckDB warehouse: schema and migrations, staging + merge by `ref`, checkpoints, runs.
//! Never calls HTTP.
