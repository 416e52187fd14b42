//! First loads (`Warehouse::expect_new_keys`): the promising stream's rows skip the diff
//! while the table was empty when promised; every other case goes through it.

use super::*;

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
/// seen keys. The promise is trusted: the same key merged twice is inserted twice, which is
/// why only a stream whose keys cannot repeat in a scan makes it (the portfolio's
/// occurrence numbering).
#[test]
fn a_promised_first_load_inserts_without_the_diff() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let mut w = open(&dir.path().join("w.duckdb"), &clock);
    let run = w.begin_run(&["portfolio"]).unwrap();
    assert!(w.expect_new_keys("portfolio", &PORTFOLIO_ITEMS).unwrap());
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
        4
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
    assert!(!w.expect_new_keys("portfolio", &PORTFOLIO_ITEMS).unwrap());
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
    assert!(w.expect_new_keys("portfolio", &PORTFOLIO_ITEMS).unwrap());
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
    w.finish_scan("portfolio", run, complete(&PORTFOLIO_ITEMS))
        .unwrap();

    clock.advance(60);
    let run = w.begin_run(&["portfolio"]).unwrap();
    let stats = w
        .commit_page(&PORTFOLIO_ITEMS, page(&["a", "c"]), "portfolio", "1", run)
        .unwrap();
    assert_eq!((stats.new, stats.unchanged), (1, 1), "the next scan's rows");
    assert_eq!(scalar::<i64>(&w, "SELECT count(*) FROM portfolio_items"), 3);
}

/// A merge in parts whose last part fails leaves the earlier parts written: the same rows
/// merged again are diffed, and nothing doubles.
#[test]
fn a_merge_that_failed_after_a_committed_part_ends_the_first_load() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let mut w = open(&dir.path().join("w.duckdb"), &clock);
    w.merge_part_rows = 2;
    let run = w.begin_run(&["portfolio"]).unwrap();
    assert!(w.expect_new_keys("portfolio", &PORTFOLIO_ITEMS).unwrap());
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
