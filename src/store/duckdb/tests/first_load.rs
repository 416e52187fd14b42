//! First loads (`Warehouse::start_scan`): a scan that starts on an empty table records no
//! seen keys there and finds no row of it missing at its end; the promising stream's rows
//! also skip the diff. Every other case goes through both.

use super::*;

/// The portfolio's scan starts, promising new keys in its table; returns the first loads.
fn start(w: &mut Warehouse, stream: &str) -> Vec<&'static str> {
    w.start_scan(stream, &[&PORTFOLIO_ITEMS], Some(&PORTFOLIO_ITEMS))
        .unwrap()
}

fn items(w: &Warehouse) -> Vec<String> {
    dump(
        w,
        "SELECT user_id, progress, _deleted_at IS NULL FROM portfolio_items ORDER BY ALL",
    )
}

fn page(users: &[&str]) -> RecordBatch {
    let rows: Vec<Item> = users.iter().map(|u| item(u, "T", 0.5, None)).collect();
    items_batch(&rows)
}

/// Promised on an empty table, the stream's rows are inserted as they are, with history and
/// without seen keys. The promise is trusted: the same key merged twice is inserted twice, which is
/// why only a stream whose keys cannot repeat in a scan makes it (the portfolio's
/// occurrence numbering).
#[test]
fn a_promised_first_load_inserts_without_the_diff() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let mut w = open(&dir.path().join("w.duckdb"), &clock);
    let run = w.begin_run(&["portfolio"]).unwrap();
    assert_eq!(start(&mut w, "portfolio"), ["portfolio_items"]);
    let stats = w
        .commit_page(&PORTFOLIO_ITEMS, page(&["a", "b"]), "portfolio", "1", run)
        .unwrap();
    assert_eq!((stats.new, stats.changed, stats.unchanged), (2, 0, 0));
    let stats = w
        .commit_page(&PORTFOLIO_ITEMS, page(&["c", "a"]), "portfolio", "2", run)
        .unwrap();
    assert_eq!(stats.new, 2, "no diff: `a` again is not found");
    assert_eq!(scalar::<i64>(&w, "SELECT count(*) FROM portfolio_items"), 4);
    assert_eq!(
        dump(
            &w,
            "SELECT count(*), count(valid_to) FROM portfolio_item_history"
        ),
        ["BigInt(4) | BigInt(0)"]
    );
    assert_eq!(
        scalar::<i64>(&w, "SELECT count(*) FROM _seen_portfolio_items"),
        0
    );
}

/// A table holding rows is no first load: its rows are diffed, promise or not.
#[test]
fn a_table_with_rows_is_diffed_whatever_the_promise() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let mut w = open(&dir.path().join("w.duckdb"), &clock);
    let run = w.begin_run(&["portfolio"]).unwrap();
    w.commit_page(&PORTFOLIO_ITEMS, page(&["a"]), "portfolio", "1", run)
        .unwrap();
    assert!(start(&mut w, "portfolio").is_empty());
    let stats = w
        .commit_page(&PORTFOLIO_ITEMS, page(&["a", "b"]), "portfolio", "2", run)
        .unwrap();
    assert_eq!((stats.new, stats.unchanged), (1, 1));
    assert_eq!(
        items(&w),
        [
            "Text(\"a\") | Double(0.5) | Boolean(true)",
            "Text(\"b\") | Double(0.5) | Boolean(true)",
        ]
    );
}

/// Only the promising stream's rows skip the diff, and only until its scan ends.
#[test]
fn other_streams_and_later_scans_are_diffed() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let mut w = open(&dir.path().join("w.duckdb"), &clock);
    let run = w.begin_run(&["portfolio"]).unwrap();
    assert_eq!(start(&mut w, "portfolio"), ["portfolio_items"]);
    w.commit_page(&PORTFOLIO_ITEMS, page(&["a"]), "portfolio", "1", run)
        .unwrap();
    let stats = w
        .commit_page(&PORTFOLIO_ITEMS, page(&["a", "b"]), "refresh", "1", run)
        .unwrap();
    assert_eq!(
        (stats.new, stats.unchanged),
        (1, 1),
        "another stream's rows"
    );
    assert_eq!(
        scalar::<i64>(&w, "SELECT count(*) FROM _seen_portfolio_items"),
        2,
        "another stream's keys are recorded"
    );
    // `b`, merged by another stream during the first load, is as fresh as the scan: it
    // is not missing.
    assert_eq!(
        w.finish_scan("portfolio", run, complete(&PORTFOLIO_ITEMS))
            .unwrap(),
        0
    );

    clock.advance(60);
    let run = w.begin_run(&["portfolio"]).unwrap();
    let stats = w
        .commit_page(&PORTFOLIO_ITEMS, page(&["a", "c"]), "portfolio", "1", run)
        .unwrap();
    assert_eq!((stats.new, stats.unchanged), (1, 1), "the next scan's rows");
    assert_eq!(
        scalar::<i64>(
            &w,
            "SELECT count(*) FROM _seen_portfolio_items WHERE stream = 'portfolio'"
        ),
        2,
        "the next scan records its keys"
    );
    assert_eq!(
        w.finish_scan("portfolio", run, complete(&PORTFOLIO_ITEMS))
            .unwrap(),
        1,
        "`b` is missing from the next scan"
    );
    assert_eq!(
        items(&w),
        [
            "Text(\"a\") | Double(0.5) | Boolean(true)",
            "Text(\"b\") | Double(0.5) | Boolean(false)",
            "Text(\"c\") | Double(0.5) | Boolean(true)",
        ]
    );
}

/// A first load without a promise (users: a shifting page repeats a key) records no seen
/// keys and finds no row missing at the end of its scan, but a merge whose keys the table
/// already has diffs: a key merged twice is one row, the later one, beside the merge's new
/// rows. A scan that starts again (resumed or not) on the filled table records and checks
/// as any other.
#[test]
fn a_first_load_records_no_seen_keys_and_misses_no_row() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let mut w = open(&dir.path().join("w.duckdb"), &clock);
    let run = w.begin_run(&["users"]).unwrap();
    assert_eq!(
        w.start_scan("users", &[&USERS, &GROUP_MEMBERS], None)
            .unwrap(),
        ["users", "group_members"]
    );
    let a = user("a", "a@x");
    let b = user("b", "b@x");
    w.commit_page(
        &USERS,
        users_batch(&[a.clone(), b.clone()]),
        "users",
        "1",
        run,
    )
    .unwrap();
    let page = users_batch(&[user("b", "b@y"), user("c", "c@x")]);
    let stats = w.commit_page(&USERS, page, "users", "2", run).unwrap();
    assert_eq!((stats.new, stats.changed), (1, 1), "diffed");
    assert_eq!(scalar::<i64>(&w, "SELECT count(*) FROM _seen_users"), 0);
    assert_eq!(w.finish_scan("users", run, complete(&USERS)).unwrap(), 0);
    assert_eq!(
        dump(
            &w,
            "SELECT id, email, _deleted_at IS NULL FROM users ORDER BY id"
        ),
        [
            "Text(\"a\") | Text(\"a@x\") | Boolean(true)",
            "Text(\"b\") | Text(\"b@y\") | Boolean(true)",
            "Text(\"c\") | Text(\"c@x\") | Boolean(true)",
        ]
    );

    clock.advance(60);
    let run = w.begin_run(&["users"]).unwrap();
    assert_eq!(
        w.start_scan("users", &[&USERS, &GROUP_MEMBERS], None)
            .unwrap(),
        ["group_members"],
        "users has rows now"
    );
    w.commit_page(&USERS, users_batch(&[a]), "users", "1", run)
        .unwrap();
    assert_eq!(scalar::<i64>(&w, "SELECT count(*) FROM _seen_users"), 1);
    assert_eq!(w.finish_scan("users", run, complete(&USERS)).unwrap(), 2);
    assert_eq!(
        scalar::<i64>(
            &w,
            "SELECT count(*) FROM users WHERE _deleted_at IS NOT NULL"
        ),
        2
    );
}

/// Starting a scan again, or resetting it, ends a first load: the scan that starts
/// anew on a table filled meanwhile records its keys.
#[test]
fn a_reset_scan_ends_the_first_load() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let mut w = open(&dir.path().join("w.duckdb"), &clock);
    let run = w.begin_run(&["users"]).unwrap();
    w.start_scan("users", &[&USERS], None).unwrap();
    w.commit_page(&USERS, users_batch(&[user("a", "a@x")]), "users", "1", run)
        .unwrap();
    w.reset_scan("users").unwrap();
    w.commit_page(&USERS, users_batch(&[user("b", "b@x")]), "users", "1", run)
        .unwrap();
    assert_eq!(scalar::<i64>(&w, "SELECT count(*) FROM _seen_users"), 1);
    assert_eq!(w.finish_scan("users", run, complete(&USERS)).unwrap(), 1);
}

/// A merge in parts whose last part fails leaves the earlier parts written: the same rows
/// merged again are diffed, and nothing doubles. (Under a cap too small for a first load's
/// long transaction, which rolls back to its last commit instead: `tests/bulk.rs`.)
#[test]
fn a_merge_that_failed_after_a_committed_part_ends_the_first_load() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let mut w = open(&dir.path().join("w.duckdb"), &clock);
    w.set_memory_limit("40MB").unwrap();
    w.merge_part_rows = 2;
    let run = w.begin_run(&["portfolio"]).unwrap();
    assert_eq!(start(&mut w, "portfolio"), ["portfolio_items"]);
    w.fail_before_commit = true;
    assert!(
        w.commit_page(
            &PORTFOLIO_ITEMS,
            page(&["a", "b", "c"]),
            "portfolio",
            "1",
            run
        )
        .is_err()
    );
    assert_eq!(scalar::<i64>(&w, "SELECT count(*) FROM portfolio_items"), 2);
    w.fail_before_commit = false;
    let stats = w
        .commit_page(
            &PORTFOLIO_ITEMS,
            page(&["a", "b", "c"]),
            "portfolio",
            "1",
            run,
        )
        .unwrap();
    assert_eq!((stats.new, stats.unchanged), (1, 2));
    assert_eq!(
        scalar::<i64>(&w, "SELECT count(*) FROM portfolio_items"),
        3,
        "no key twice"
    );
}
