//! Column types round-trip, and the table specs match the DDL.

use super::*;

#[test]
fn dates_timestamps_lists_and_json_round_trip_with_real_types() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let mut w = open(&dir.path().join("w.duckdb"), &clock);
    let run = w.begin_run(&["users", "portfolio"]).unwrap();
    w.commit_page(&USERS, users_batch(&[user("u1", "a")]), "users", "1", run)
        .unwrap();
    let leap = NaiveDate::from_ymd_opt(2024, 2, 29);
    w.commit_page(
        &PORTFOLIO_ITEMS,
        items_batch(&[item("u1", "A", 100.0, leap)]),
        "portfolio",
        "1",
        run,
    )
    .unwrap();
    let row = dump(
        &w,
        "SELECT typeof(last_login), epoch_us(last_login), typeof(roles), roles[2],
                typeof(extra_fields), extra_fields::VARCHAR, extra_fields->>'team',
                typeof(_first_seen_at), epoch_us(_first_seen_at)
         FROM users",
    );
    let login = (Utc.with_ymd_and_hms(2025, 12, 24, 18, 30, 15).unwrap()
        + chrono::Duration::microseconds(123_456))
    .timestamp_micros();
    assert_eq!(
        row,
        [format!(
            r#"Text("TIMESTAMP") | BigInt({login}) | Text("VARCHAR[]") | Text("TRAINER") | Text("JSON") | Text("{{\"cost_center\":42,\"team\":\"blue\"}}") | Text("blue") | Text("TIMESTAMP") | BigInt({})"#,
            clock.at().timestamp_micros()
        )]
    );
    let row = dump(
        &w,
        "SELECT typeof(completion_date), completion_date::VARCHAR, end_date::VARCHAR,
                typeof(progress), typeof(score), score IS NULL, typeof(time_spent_seconds)
         FROM portfolio_items",
    );
    assert_eq!(
        row,
        [
            r#"Text("DATE") | Text("2024-02-29") | Text("2025-02-28") | Text("DOUBLE") | Text("DOUBLE") | Boolean(true) | Text("BIGINT")"#
        ]
    );
    // Read back through duckdb-rs's chrono conversions too.
    let (login_back, date_back): (DateTime<Utc>, NaiveDate) = w
        .connection()
        .query_row(
            "SELECT last_login, completion_date FROM users, portfolio_items",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(login_back.timestamp_micros(), login);
    assert_eq!(Some(date_back), leap);
}

/// The DDL in sql/schema and the specs in tables.rs describe the same tables.
#[test]
fn specs_match_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let w = open(&dir.path().join("w.duckdb"), &TestClock::new());
    let columns = |table: &str| {
        dump(
            &w,
            &format!(
                "SELECT column_name, data_type FROM duckdb_columns()
                 WHERE table_name = '{table}' AND NOT internal ORDER BY column_index"
            ),
        )
    };
    let line = |name: &str, ty: &str| format!(r#"Text("{name}") | Text("{ty}")"#);
    for spec in tables::ALL {
        let mut want: Vec<String> = spec.columns().map(|c| line(c.name, c.ty.sql())).collect();
        for (name, ty) in [
            ("_hash", "UBIGINT"),
            ("_first_seen_at", "TIMESTAMP"),
            ("_updated_at", "TIMESTAMP"),
            ("_deleted_at", "TIMESTAMP"),
            ("_run_id", "BIGINT"),
        ] {
            want.push(line(name, ty));
        }
        if spec.history.is_some() {
            want.push(line("_version_from", "TIMESTAMP"));
            want.push(line("_version_run_id", "BIGINT"));
        }
        assert_eq!(columns(spec.table), want, "{}", spec.table);
        let mut seen = vec![line("stream", "VARCHAR")];
        seen.extend(spec.key.iter().map(|c| line(c.name, c.ty.sql())));
        assert_eq!(columns(&spec.seen_table()), seen, "{}", spec.seen_table());
        if let Some(history) = spec.history {
            let mut want: Vec<String> = spec.key.iter().map(|c| line(c.name, c.ty.sql())).collect();
            for name in history.tracked {
                want.push(line(name, spec.column(name).unwrap().ty.sql()));
            }
            want.push(line("valid_from", "TIMESTAMP"));
            want.push(line("valid_to", "TIMESTAMP"));
            want.push(line("_run_id", "BIGINT"));
            assert_eq!(columns(history.table), want, "{}", history.table);
            assert_eq!(columns(history.view), want, "{}", history.view);
        }
    }
}
