//! The integration suite, one binary (DuckDB links once). Each module is one feature.

mod support;
