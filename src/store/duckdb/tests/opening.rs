//! Opening the file: one writer, lock errors, newer schemas, read-only and foreign files.

use super::*;

#[test]
fn second_writer_fails_at_once_naming_the_holder() {
    const TEST: &str =
        "store::duckdb::tests::opening::second_writer_fails_at_once_naming_the_holder";
    if let Ok(path) = std::env::var(CHILD_ENV) {
        // Child: hold the file open until the parent closes our stdin.
        let _w = Warehouse::open(&path).unwrap();
        println!("ready");
        std::io::stdout().flush().unwrap();
        let mut rest = String::new();
        let _ = std::io::stdin().read_line(&mut rest);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pluvo.duckdb");
    drop(Warehouse::open(&path).unwrap());
    let mut child = spawn_child(TEST, path.to_str().unwrap());
    let mut out = BufReader::new(child.stdout.take().unwrap());
    wait_for_line(&mut out, "ready").expect("child opened the file");

    let started = Instant::now();
    let err = Warehouse::open(&path).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "must not wait for the lock"
    );
    let pid = child.id();
    assert!(
        matches!(err, StoreError::Locked { pid: Some(p), .. } if p == pid),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "`{}` is in use by another process (PID {pid}, e.g. a running sync or an open \
             notebook); wait for it to finish or close it, then retry",
            path.display()
        )
    );
    // Readers are locked out too while a writer holds the file (DuckDB's rule): same message.
    let err = Warehouse::open_read_only(&path).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");

    drop(child.stdin.take()); // let the child exit
    child.wait().unwrap();
    Warehouse::open(&path).unwrap();
}

#[test]
fn lock_error_text_from_duckdb_is_mapped() {
    // Verbatim shape of DuckDB 2.0's message (local_file_system.cpp).
    let text = r#"IO Error: Could not set lock on file "/data/pluvo.duckdb": Conflicting lock is held in /usr/bin/python3.12 (PID 4242) by user ann. However, you would be able to open this database in read-only mode, e.g. by using the -readonly parameter in the CLI. See also https://duckdb.org/docs/current/connect/concurrency"#;
    assert_eq!(lock_holder_pid(text), Some(4242));
    let source = duckdb::Error::DuckDBFailure(duckdb::ffi::Error::new(1), Some(text.into()));
    let err = open_error(Path::new("pluvo.duckdb"), source);
    assert_eq!(
        err.to_string(),
        "`pluvo.duckdb` is in use by another process (PID 4242, e.g. a running sync or an open \
         notebook); wait for it to finish or close it, then retry"
    );
    let no_pid = r#"IO Error: Could not set lock on file "x": Lock is already held in current process, likely another DuckDB instance"#;
    assert_eq!(lock_holder_pid(no_pid), None);
}

#[test]
fn newer_schema_is_refused_by_writers_and_readers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pluvo.duckdb");
    let w = Warehouse::open(&path).unwrap();
    assert_eq!(w.schema_version(), SCHEMA_VERSION);
    w.connection()
        .execute_batch("INSERT INTO _schema VALUES (99, now(), '9.9.9')")
        .unwrap();
    drop(w);
    let want = format!(
        "`{}` has schema version 99, this pluvo-warehouse knows up to {SCHEMA_VERSION}; upgrade the tool",
        path.display()
    );
    assert_eq!(Warehouse::open(&path).unwrap_err().to_string(), want);
    assert_eq!(
        Warehouse::open_read_only(&path).unwrap_err().to_string(),
        want
    );
}

#[test]
fn read_only_open_reads_and_reports_missing_or_foreign_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pluvo.duckdb");
    let err = Warehouse::open_read_only(&path).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "`{}` does not exist; run `pluvo-warehouse sync` first",
            path.display()
        )
    );
    assert!(!path.exists(), "a reader must not create the file");

    let clock = TestClock::new();
    let mut w = open(&path, &clock);
    let run = w.begin_run(&["users"]).unwrap();
    w.commit_page(&USERS, users_batch(&[user("u1", "a")]), "users", "1", run)
        .unwrap();
    drop(w);
    let r = Warehouse::open_read_only(&path).unwrap();
    assert_eq!(scalar::<i64>(&r, "SELECT count(*) FROM users"), 1);
    assert!(r.connection().execute_batch("DELETE FROM users").is_err());

    let junk = dir.path().join("notes.duckdb");
    std::fs::write(
        &junk,
        b"this is not a database, just some text that is long enough",
    )
    .unwrap();
    let err = Warehouse::open(&junk).unwrap_err().to_string();
    assert!(err.contains("is not a pluvo-warehouse database"), "{err}");
}

/// The sync owns the warehouse in one writer task or thread and sends it pages.
#[test]
fn warehouse_can_move_to_a_writer_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<Warehouse>();
}

#[test]
fn a_memory_limit_that_is_not_an_amount_is_refused_before_opening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.duckdb");
    let err = Warehouse::open_with_memory_limit(&path, "lots").unwrap_err();
    assert!(
        matches!(&err, StoreError::Setting { setting: "memory_limit", value } if value == "lots"),
        "{err:?}"
    );
    assert!(!path.exists(), "nothing created");
}
