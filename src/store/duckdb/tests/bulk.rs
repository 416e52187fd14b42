//! A first load's long transaction (`bulk.rs`): committed every `bulk_commit_rows` rows and
//! at the end of its scan, with its checkpoint; what a killed sync leaves is the last commit;
//! a failure rolls it back to there and ends the load.

use super::*;

/// The portfolio's scan starts on an empty table, promising new keys.
fn start(w: &mut Warehouse) {
    let first = w.start_scan("portfolio", &[&PORTFOLIO_ITEMS], Some(&PORTFOLIO_ITEMS));
    assert_eq!(first.unwrap(), ["portfolio_items"]);
}

/// A warehouse in `dir` (`w.duckdb`) whose portfolio scan has started on the empty table.
fn loading(dir: &std::path::Path, clock: &TestClock) -> (Warehouse, RunId) {
    let mut w = open(&dir.join("w.duckdb"), clock);
    let run = w.begin_run(&["portfolio"]).unwrap();
    start(&mut w);
    (w, run)
}

/// Stage pages of 1,000 items (one user each), each merged at once; page `p`'s checkpoint is
/// `page p`. Returns what the merges counted.
fn stage_pages(w: &mut Warehouse, run: RunId, pages: std::ops::Range<usize>) -> Result<MergeStats> {
    w.merge_rows = 1_000;
    let mut stats = MergeStats::default();
    for p in pages {
        let items: Vec<Item> = (p * 1_000..(p + 1) * 1_000)
            .map(|i| item(&format!("user-{i:06}"), "T", 0.5, None))
            .collect();
        let batch = vec![(&PORTFOLIO_ITEMS, items_batch(&items))];
        for merged in w
            .stage("portfolio", run, &format!("page {p}"), batch)?
            .values()
        {
            stats += *merged;
        }
    }
    Ok(stats)
}

/// What another connection sees: the items committed, distinct keys, and the checkpoint.
fn committed(w: &Warehouse) -> (i64, i64, Option<String>) {
    let (rows, keys) = w
        .connection()
        .query_row(
            "SELECT count(*), count(DISTINCT item_key) FROM portfolio_items",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    (rows, keys, w.checkpoint("portfolio").unwrap())
}

#[test]
fn a_first_load_commits_every_few_row_groups_and_at_the_end_of_its_scan() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let (mut w, run) = loading(dir.path(), &clock);
    w.bulk_commit_rows = 2_500;
    stage_pages(&mut w, run, 0..2).unwrap();
    assert_eq!(committed(&w), (0, 0, None), "2,000 rows: not committed yet");
    stage_pages(&mut w, run, 2..3).unwrap();
    assert_eq!(committed(&w), (3_000, 3_000, Some("page 2".into())));
    stage_pages(&mut w, run, 3..5).unwrap();
    assert_eq!(committed(&w).0, 3_000);
    assert_eq!(
        w.finish_scan("portfolio", run, complete(&PORTFOLIO_ITEMS))
            .unwrap(),
        0
    );
    assert_eq!(committed(&w), (5_000, 5_000, None));
}

/// A sync killed inside a first load's transaction leaves its last commit: rows and the
/// checkpoint that covers them. Resumed, the scan is no first load any more (the table has
/// rows): it diffs, and no key doubles.
#[test]
fn a_sync_killed_in_a_first_load_keeps_its_last_commit() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let (mut w, run) = loading(dir.path(), &clock);
    w.bulk_commit_rows = 2_500;
    stage_pages(&mut w, run, 0..5).unwrap();
    drop(w); // killed: no close, no commit

    let mut w = open(&dir.path().join("w.duckdb"), &clock);
    assert_eq!(committed(&w), (3_000, 3_000, Some("page 2".into())));
    let run = w.begin_run(&["portfolio"]).unwrap();
    let first = w.start_scan("portfolio", &[&PORTFOLIO_ITEMS], Some(&PORTFOLIO_ITEMS));
    assert!(first.unwrap().is_empty());
    // Resumed one page early, as a shifting page may make it: that page is found unchanged.
    let stats = stage_pages(&mut w, run, 2..5).unwrap();
    assert_eq!((stats.new, stats.unchanged), (2_000, 1_000));
    assert_eq!(committed(&w), (5_000, 5_000, Some("page 4".into())));
}

/// A merge that fails inside a first load's transaction rolls it back to its last commit,
/// is not merged again in halves (the rows before it went with it), and the stream merges
/// nothing more until its scan starts again, which then diffs.
#[test]
fn a_failure_in_a_first_load_rolls_it_back_to_its_last_commit() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let (mut w, run) = loading(dir.path(), &clock);
    w.bulk_commit_rows = 2_500;
    stage_pages(&mut w, run, 0..4).unwrap();
    w.out_of_memory_over = Some(0);
    let err = stage_pages(&mut w, run, 4..5).unwrap_err().to_string();
    assert!(err.contains("Out of Memory"), "{err}");
    assert_eq!(w.retried_parts, 0);
    assert_eq!(committed(&w), (3_000, 3_000, Some("page 2".into())));
    w.out_of_memory_over = None;
    let err = stage_pages(&mut w, run, 5..6).unwrap_err().to_string();
    assert!(err.contains("rolled back"), "{err}");
    assert_eq!(committed(&w).0, 3_000);

    let first = w.start_scan("portfolio", &[&PORTFOLIO_ITEMS], Some(&PORTFOLIO_ITEMS));
    assert!(first.unwrap().is_empty());
    stage_pages(&mut w, run, 3..6).unwrap();
    w.flush("portfolio").unwrap();
    assert_eq!(committed(&w), (6_000, 6_000, Some("page 5".into())));
}

/// A merge larger than a transaction's part is merged whole in a first load's transaction:
/// the rows staged inside it have transaction-local row ids, which a part by `rowid` misses.
/// (The users' rows are staged; the portfolio's go into the table itself.)
#[test]
fn a_first_load_merges_staged_tables_whole() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let mut w = open(&dir.path().join("w.duckdb"), &clock);
    w.merge_part_rows = 300;
    w.merge_rows = 1_000;
    let run = w.begin_run(&["users"]).unwrap();
    assert_eq!(w.start_scan("users", &[&USERS], None).unwrap(), ["users"]);
    let mut new = 0;
    for p in 0..3 {
        let page: Vec<_> = (p * 1_000..(p + 1) * 1_000)
            .map(|i| user(&format!("u{i:05}"), "x@y"))
            .collect();
        let batch = vec![(&USERS, users_batch(&page))];
        for stats in w
            .stage("users", run, &p.to_string(), batch)
            .unwrap()
            .values()
        {
            new += stats.new;
        }
    }
    assert_eq!(new, 3_000);
    w.finish_scan("users", run, complete(&USERS)).unwrap();
    assert_eq!(
        scalar::<i64>(&w, "SELECT count(DISTINCT id) FROM users"),
        3_000
    );
}

/// The rows a first load appends into the table itself are the rows the usual insert would
/// have written: the same in every column, bookkeeping included.
#[test]
fn rows_appended_directly_are_the_rows_an_insert_writes() {
    let clock = TestClock::new();
    let load = |cap: &str| {
        let dir = tempfile::tempdir().unwrap();
        let mut w = open(&dir.path().join("w.duckdb"), &clock);
        w.set_memory_limit(cap).unwrap();
        let run = w.begin_run(&["portfolio"]).unwrap();
        start(&mut w);
        let direct = if cap == "80MB" {
            vec!["portfolio_items"]
        } else {
            vec![]
        };
        assert_eq!(w.direct_tables("portfolio"), direct);
        stage_pages(&mut w, run, 0..2).unwrap();
        w.finish_scan("portfolio", run, complete(&PORTFOLIO_ITEMS))
            .unwrap();
        dump(
            &w,
            "SELECT * EXCLUDE (item_key), item_key FROM portfolio_items ORDER BY item_key",
        )
    };
    let direct = load("80MB");
    assert_eq!(direct.len(), 2_000);
    assert_eq!(
        direct,
        load("40MB"),
        "40 MB: no long transaction, staged and inserted"
    );
}

/// Another stream merging into the table of a first load finds its rows: the long
/// transaction commits first.
#[test]
fn another_stream_merging_into_the_table_sees_the_first_load() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let (mut w, run) = loading(dir.path(), &clock);
    stage_pages(&mut w, run, 0..2).unwrap();
    assert_eq!(committed(&w).0, 0);
    let again = items_batch(&[item("user-000001", "T", 0.5, None)]);
    let stats = w
        .commit_page(&PORTFOLIO_ITEMS, again, "refresh", "1", run)
        .unwrap();
    assert_eq!((stats.new, stats.unchanged), (0, 1));
    assert_eq!(committed(&w), (2_000, 2_000, Some("page 1".into())));
}

/// Under a cap too small for a row group besides the staged rows, a first load commits
/// every merge, as any other stream.
#[test]
fn no_long_transaction_under_a_small_cap() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let mut w = open(&dir.path().join("w.duckdb"), &clock);
    w.set_memory_limit("40MB").unwrap();
    let run = w.begin_run(&["portfolio"]).unwrap();
    start(&mut w);
    stage_pages(&mut w, run, 0..2).unwrap();
    assert_eq!(committed(&w), (2_000, 2_000, Some("page 1".into())));
}

/// A first load that cannot promise new keys (users: a user can come twice) merges in a long
/// transaction too; a merge holding a key merged before it in that transaction finds it there
/// and diffs it.
#[test]
fn a_first_load_that_repeats_a_key_diffs_it_inside_its_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let mut w = open(&dir.path().join("w.duckdb"), &clock);
    let run = w.begin_run(&["users"]).unwrap();
    assert_eq!(w.start_scan("users", &[&USERS], None).unwrap(), ["users"]);
    w.merge_rows = 1;
    let first = vec![(&USERS, users_batch(&[user("a", "a@x"), user("b", "b@x")]))];
    let stats = w.stage("users", run, "1", first).unwrap()["users"];
    assert_eq!((stats.new, stats.changed), (2, 0));
    let second = vec![(&USERS, users_batch(&[user("b", "b@y"), user("c", "c@x")]))];
    let stats = w.stage("users", run, "2", second).unwrap()["users"];
    assert_eq!((stats.new, stats.changed), (1, 1));
    assert_eq!(
        scalar::<i64>(&w, "SELECT count(*) FROM users"),
        0,
        "not committed before the end of the scan"
    );
    assert_eq!(w.finish_scan("users", run, complete(&USERS)).unwrap(), 0);
    assert_eq!(
        dump(&w, "SELECT id, email FROM users ORDER BY id"),
        [
            "Text(\"a\") | Text(\"a@x\")",
            "Text(\"b\") | Text(\"b@y\")",
            "Text(\"c\") | Text(\"c@x\")",
        ]
    );
}
