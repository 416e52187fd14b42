//! Merging pages: counts, no-change reloads, soft deletes and revivals, history, scopes, duplicate keys.

use super::*;

#[test]
fn counts_new_changed_unchanged_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let mut w = open(&dir.path().join("w.duckdb"), &clock);
    let run = w.begin_run(&["users"]).unwrap();
    let page = users_batch(&[user("u1", "a@x"), user("u2", "b@x"), user("u3", "c@x")]);
    let stats = w
        .commit_page(&USERS, page, "users", "{\"page\":1}", run)
        .unwrap();
    assert_eq!(
        stats,
        MergeStats {
            new: 3,
            ..MergeStats::default()
        }
    );
    assert_eq!(w.finish_scan("users", run, complete(&USERS)).unwrap(), 0);

    clock.advance(60);
    let run = w.begin_run(&["users"]).unwrap();
    let page = users_batch(&[user("u1", "a@x"), user("u2", "B@x"), user("u4", "d@x")]);
    let stats = w
        .commit_page(&USERS, page, "users", "{\"page\":1}", run)
        .unwrap();
    assert_eq!(
        stats,
        MergeStats {
            new: 1,
            changed: 1,
            unchanged: 1,
            duplicates: 0
        }
    );
    assert_eq!(w.finish_scan("users", run, complete(&USERS)).unwrap(), 1);
    let rows = dump(
        &w,
        "SELECT id, email, _deleted_at IS NOT NULL, _run_id FROM users ORDER BY id",
    );
    assert_eq!(
        rows,
        [
            r#"Text("u1") | Text("a@x") | Boolean(false) | BigInt(1)"#,
            r#"Text("u2") | Text("B@x") | Boolean(false) | BigInt(2)"#,
            r#"Text("u3") | Text("c@x") | Boolean(true) | BigInt(2)"#,
            r#"Text("u4") | Text("d@x") | Boolean(false) | BigInt(2)"#,
        ]
    );
    // The scan's bookkeeping is gone once it finished.
    assert_eq!(scalar::<i64>(&w, "SELECT count(*) FROM _seen_users"), 0);
    assert_eq!(w.checkpoint("users").unwrap(), None);
}

#[test]
fn identical_reload_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let mut w = open(&dir.path().join("w.duckdb"), &clock);
    let users: Vec<_> = (0..120)
        .map(|i| user(&format!("u{i:03}"), "same@x"))
        .collect();
    let items: Vec<_> = (0..120)
        .map(|i| item(&format!("u{i:03}"), "Safety", 50.0, None))
        .collect();
    let load = |w: &mut Warehouse| {
        let run = w.begin_run(&["users", "portfolio"]).unwrap();
        let mut total = (MergeStats::default(), MergeStats::default());
        for (n, (u, i)) in users.chunks(50).zip(items.chunks(50)).enumerate() {
            total.0 += w
                .commit_page(&USERS, users_batch(u), "users", &n.to_string(), run)
                .unwrap();
            total.1 += w
                .commit_page(
                    &PORTFOLIO_ITEMS,
                    items_batch(i),
                    "portfolio",
                    &n.to_string(),
                    run,
                )
                .unwrap();
        }
        let deleted = w.finish_scan("users", run, complete(&USERS)).unwrap()
            + w.finish_scan("portfolio", run, complete(&PORTFOLIO_ITEMS))
                .unwrap();
        w.finish_run(run, RunStatus::Succeeded, None).unwrap();
        (total, deleted)
    };
    let (first, _) = load(&mut w);
    assert_eq!((first.0.new, first.1.new), (120, 120));
    let before = content(&w);
    let stamps = "SELECT max(_updated_at)::VARCHAR, max(_run_id) FROM users";
    let stamp_before = dump(&w, stamps);
    let hist_before = scalar::<i64>(&w, "SELECT count(*) FROM portfolio_item_history");

    clock.advance(3600);
    let (second, deleted) = load(&mut w);
    let unchanged = |s: MergeStats| (s.new, s.changed, s.unchanged);
    assert_eq!(unchanged(second.0), (0, 0, 120));
    assert_eq!(unchanged(second.1), (0, 0, 120));
    assert_eq!(deleted, 0);
    assert_eq!(content(&w), before);
    assert_eq!(dump(&w, stamps), stamp_before, "no row was rewritten");
    assert_eq!(
        scalar::<i64>(&w, "SELECT count(*) FROM portfolio_item_history"),
        hist_before
    );
}

#[test]
fn soft_delete_only_on_complete_scans_and_revive() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let mut w = open(&dir.path().join("w.duckdb"), &clock);
    let run = w.begin_run(&["users"]).unwrap();
    let all = [user("u1", "a"), user("u2", "b"), user("u3", "c")];
    w.commit_page(&USERS, users_batch(&all), "users", "1", run)
        .unwrap();
    w.finish_scan("users", run, complete(&USERS)).unwrap();
    let first_seen = "SELECT _first_seen_at::VARCHAR FROM users WHERE id = 'u3'";
    let first_seen_before: String = scalar(&w, first_seen);

    // A partial scan (e.g. filtered by last login) that returned only u1 deletes nothing.
    clock.advance(60);
    w.commit_page(&USERS, users_batch(&all[..1]), "users", "1", run)
        .unwrap();
    let partial = ScanEnd {
        complete: false,
        ..complete(&USERS)
    };
    assert_eq!(w.finish_scan("users", run, partial).unwrap(), 0);
    assert_eq!(
        scalar::<i64>(&w, "SELECT count(*) FROM users WHERE _deleted_at IS NULL"),
        3
    );

    // A complete scan without u3 soft-deletes it; the row stays.
    clock.advance(60);
    w.commit_page(&USERS, users_batch(&all[..2]), "users", "1", run)
        .unwrap();
    assert_eq!(w.finish_scan("users", run, complete(&USERS)).unwrap(), 1);
    let deleted_at: String = scalar(&w, "SELECT _deleted_at::VARCHAR FROM users WHERE id = 'u3'");
    assert!(
        deleted_at.starts_with("2026-01-01 08:02:00"),
        "{deleted_at}"
    );

    // u3 returns unchanged: revived, counted as changed, first-seen time kept.
    clock.advance(60);
    let stats = w
        .commit_page(&USERS, users_batch(&all), "users", "1", run)
        .unwrap();
    assert_eq!((stats.new, stats.changed, stats.unchanged), (0, 1, 2));
    w.finish_scan("users", run, complete(&USERS)).unwrap();
    assert_eq!(
        scalar::<i64>(&w, "SELECT count(*) FROM users WHERE _deleted_at IS NULL"),
        3
    );
    assert_eq!(scalar::<String>(&w, first_seen), first_seen_before);
}

#[test]
fn the_end_of_scan_anti_join_in_parts_deletes_exactly_the_unseen_keys() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let mut w = open(&dir.path().join("w.duckdb"), &clock);
    let run = w.begin_run(&["users"]).unwrap();
    let all: Vec<_> = (0..40)
        .map(|i| user(&format!("u{i:02}"), &format!("n{i}")))
        .collect();
    w.commit_page(&USERS, users_batch(&all), "users", "1", run)
        .unwrap();
    w.finish_scan("users", run, complete(&USERS)).unwrap();

    // 30 of 40 seen again, the anti-join in parts of 4 keys (8 parts): the other 10 go.
    w.anti_join_keys = 4;
    clock.advance(60);
    let seen: Vec<_> = all
        .iter()
        .filter(|u| !u.0.ends_with('3'))
        .cloned()
        .collect();
    let seen: Vec<_> = seen.into_iter().take(30).collect();
    w.commit_page(&USERS, users_batch(&seen), "users", "1", run)
        .unwrap();
    assert_eq!(w.finish_scan("users", run, complete(&USERS)).unwrap(), 10);
    let mut expected: Vec<String> = all
        .iter()
        .filter(|u| !seen.contains(u))
        .map(|u| u.0.clone())
        .collect();
    expected.sort();
    let mut stmt = w
        .connection()
        .prepare("SELECT id FROM users WHERE _deleted_at IS NOT NULL ORDER BY id")
        .unwrap();
    let deleted: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(deleted, expected);
}

#[test]
fn history_versions_after_two_changes_delete_and_revive() {
    versions_after_two_changes_delete_and_revive(false);
}

/// The same history in a warehouse synced before schema version 8, whose open versions are
/// stored in the history table (`sql/schema/008_open_versions.sql`): each is closed in
/// place by the item's next version, which its row holds.
#[test]
fn stored_open_versions_close_as_held_ones_do() {
    versions_after_two_changes_delete_and_revive(true);
}

fn versions_after_two_changes_delete_and_revive(stored_open_versions: bool) {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let mut w = open(&dir.path().join("w.duckdb"), &clock);
    let run = w.begin_run(&["portfolio"]).unwrap();
    let done = NaiveDate::from_ymd_opt(2026, 1, 3);
    let load = |w: &mut Warehouse, items: &[Item], clock: &TestClock| {
        clock.advance(86_400);
        let s = w
            .commit_page(&PORTFOLIO_ITEMS, items_batch(items), "portfolio", "p", run)
            .unwrap();
        w.finish_scan("portfolio", run, complete(&PORTFOLIO_ITEMS))
            .unwrap();
        s
    };
    let other = item("u2", "Other", 0.0, None);
    load(
        &mut w,
        &[item("u1", "Safety", 10.0, None), other.clone()],
        &clock,
    ); // Jan 2
    let history = "SELECT * FROM portfolio_item_history ORDER BY ALL";
    let first = dump(&w, history);
    assert_eq!(first.len(), 2, "{first:?}");
    if stored_open_versions {
        // What migration 8 makes of a version-7 file synced to here.
        w.connection()
            .execute_batch(
                "INSERT INTO portfolio_item_versions
                 SELECT * FROM portfolio_item_history WHERE valid_to IS NULL;
                 UPDATE portfolio_items SET _version_from = NULL, _version_run_id = NULL;",
            )
            .unwrap();
        assert_eq!(dump(&w, history), first);
    } else {
        assert_eq!(
            scalar::<i64>(&w, "SELECT count(*) FROM portfolio_item_versions"),
            0,
            "a first load stores no version: its rows hold them"
        );
    }
    load(
        &mut w,
        &[item("u1", "Safety", 50.0, None), other.clone()],
        &clock,
    ); // Jan 3
    load(
        &mut w,
        &[item("u1", "Safety", 100.0, done), other.clone()],
        &clock,
    ); // Jan 4
    // A change of an untracked value (the user's ref) updates the row, no new version.
    let mut renamed = item("u1", "Safety", 100.0, done);
    renamed.user_ref = "new-ref".into();
    let s = load(&mut w, &[renamed.clone(), other.clone()], &clock); // Jan 5
    assert_eq!((s.changed, s.unchanged), (1, 1));
    load(&mut w, std::slice::from_ref(&other), &clock); // Jan 6: gone
    load(&mut w, &[renamed, other], &clock); // Jan 7: back

    let versions = dump(
        &w,
        "SELECT h.progress, h.completion_date::VARCHAR, strftime(valid_from, '%d'),
                coalesce(strftime(valid_to, '%d'), '-')
         FROM portfolio_item_history h JOIN portfolio_items i USING (item_key)
         WHERE i.user_id = 'u1' ORDER BY valid_from",
    );
    assert_eq!(
        versions,
        [
            r#"Double(10.0) | Null | Text("02") | Text("03")"#,
            r#"Double(50.0) | Null | Text("03") | Text("04")"#,
            r#"Double(100.0) | Text("2026-01-03") | Text("04") | Text("06")"#,
            r#"Double(100.0) | Text("2026-01-03") | Text("07") | Text("-")"#,
        ]
    );
    // The unchanged item has exactly one open version.
    assert_eq!(
        scalar::<i64>(
            &w,
            "SELECT count(*) FROM portfolio_item_history h JOIN portfolio_items i
             USING (item_key) WHERE i.user_id = 'u2'"
        ),
        1
    );
    assert_eq!(
        scalar::<String>(
            &w,
            "SELECT user_ref FROM portfolio_items WHERE user_id = 'u1'"
        ),
        "new-ref"
    );
}

#[test]
fn duplicate_keys_in_a_page_and_across_pages_make_one_row() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let mut w = open(&dir.path().join("w.duckdb"), &clock);
    let run = w.begin_run(&["users"]).unwrap();
    let page1 = users_batch(&[user("u1", "first"), user("u2", "x"), user("u1", "second")]);
    let s1 = w.commit_page(&USERS, page1, "users", "1", run).unwrap();
    assert_eq!((s1.new, s1.duplicates), (2, 1));
    // An offset pager over a moving set repeats u1 on the next page, with newer data.
    let page2 = users_batch(&[user("u1", "third"), user("u3", "y")]);
    let s2 = w.commit_page(&USERS, page2, "users", "2", run).unwrap();
    assert_eq!((s2.new, s2.changed), (1, 1));
    // ... and again unchanged.
    let page3 = users_batch(&[user("u1", "third")]);
    let s3 = w.commit_page(&USERS, page3, "users", "3", run).unwrap();
    assert_eq!(s3.unchanged, 1);
    assert_eq!(w.finish_scan("users", run, complete(&USERS)).unwrap(), 0);
    assert_eq!(
        dump(&w, "SELECT id, email FROM users ORDER BY id"),
        [
            r#"Text("u1") | Text("third")"#,
            r#"Text("u2") | Text("x")"#,
            r#"Text("u3") | Text("y")"#,
        ]
    );
    for spec in tables::ALL {
        let keys = key_names(spec);
        let dupes: i64 = scalar(
            &w,
            &format!(
                "SELECT count(*) FROM (SELECT {keys} FROM {} GROUP BY ALL HAVING count(*) > 1)",
                q(spec.table)
            ),
        );
        assert_eq!(dupes, 0, "{}", spec.table);
    }
}

#[test]
fn scope_limits_what_a_complete_scan_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let mut w = open(&dir.path().join("w.duckdb"), &clock);
    let run = w.begin_run(&["groups"]).unwrap();
    let all = [("g1", "u1"), ("g1", "u2"), ("g2", "u1"), ("g2", "u3")];
    w.commit_page(&GROUP_MEMBERS, member_batch(&all), "groups", "1", run)
        .unwrap();
    w.finish_scan("groups", run, complete(&GROUP_MEMBERS))
        .unwrap();

    // Only g1's members were re-read: u2 left g1; g2 is out of scope and untouched.
    w.commit_page(&GROUP_MEMBERS, member_batch(&all[..1]), "groups", "1", run)
        .unwrap();
    let g1 = vec!["g1".to_string()];
    let end = ScanEnd {
        complete: true,
        tables: vec![(
            &GROUP_MEMBERS,
            Scope::In {
                column: "group_id",
                values: &g1,
            },
        )],
        next_checkpoint: None,
    };
    assert_eq!(w.finish_scan("groups", run, end).unwrap(), 1);
    assert_eq!(
        dump(
            &w,
            "SELECT group_id, user_id FROM group_members WHERE _deleted_at IS NOT NULL"
        ),
        [r#"Text("g1") | Text("u2")"#]
    );

    // A completion-date window: only items completed in it can disappear.
    let jan = |d| NaiveDate::from_ymd_opt(2026, 1, d);
    let items = [
        item("u1", "A", 100.0, jan(5)),
        item("u1", "B", 100.0, jan(20)),
        item("u1", "C", 10.0, None),
    ];
    w.commit_page(&PORTFOLIO_ITEMS, items_batch(&items), "portfolio", "1", run)
        .unwrap();
    w.finish_scan("portfolio", run, complete(&PORTFOLIO_ITEMS))
        .unwrap();
    w.commit_page(&PORTFOLIO_ITEMS, items_batch(&[]), "portfolio", "1", run)
        .unwrap();
    let end = ScanEnd {
        complete: true,
        tables: vec![(
            &PORTFOLIO_ITEMS,
            Scope::Between {
                column: "completion_date",
                from: jan(1).unwrap(),
                to: jan(10).unwrap(),
            },
        )],
        next_checkpoint: Some(r#"{"completed_through":"2026-01-10"}"#),
    };
    assert_eq!(w.finish_scan("portfolio", run, end).unwrap(), 1);
    assert_eq!(
        dump(
            &w,
            "SELECT title FROM portfolio_items WHERE _deleted_at IS NOT NULL"
        ),
        [r#"Text("A")"#]
    );
    assert_eq!(
        w.checkpoint("portfolio").unwrap().as_deref(),
        Some(r#"{"completed_through":"2026-01-10"}"#)
    );

    // Both at once: titles B and C that were completed in January. C has no completion
    // date, so only B is in scope and gone.
    w.commit_page(&PORTFOLIO_ITEMS, items_batch(&[]), "portfolio", "1", run)
        .unwrap();
    let titles = vec!["B".to_string(), "C".to_string()];
    let end = ScanEnd {
        complete: true,
        tables: vec![(
            &PORTFOLIO_ITEMS,
            Scope::And(vec![
                Scope::In {
                    column: "title",
                    values: &titles,
                },
                Scope::Between {
                    column: "completion_date",
                    from: jan(1).unwrap(),
                    to: jan(31).unwrap(),
                },
            ]),
        )],
        next_checkpoint: None,
    };
    assert_eq!(w.finish_scan("portfolio", run, end).unwrap(), 1);
    assert_eq!(
        dump(
            &w,
            "SELECT title FROM portfolio_items WHERE _deleted_at IS NULL"
        ),
        [r#"Text("C")"#]
    );

    // A scope on a column the table lacks is refused before anything happens.
    let end = ScanEnd {
        complete: true,
        tables: vec![(
            &PORTFOLIO_ITEMS,
            Scope::In {
                column: "nope",
                values: &g1,
            },
        )],
        next_checkpoint: None,
    };
    let err = w
        .finish_scan("portfolio", run, end)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "scope column `nope` is not a column of `portfolio_items`"
    );
}

#[test]
fn reset_scan_forgets_keys_of_an_abandoned_scan() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let mut w = open(&dir.path().join("w.duckdb"), &clock);
    let run = w.begin_run(&["users"]).unwrap();
    w.commit_page(
        &USERS,
        users_batch(&[user("u1", "a"), user("u2", "b")]),
        "users",
        "1",
        run,
    )
    .unwrap();
    w.finish_scan("users", run, complete(&USERS)).unwrap();
    // A scan that saw u2 is abandoned (e.g. --full-refresh next run) ...
    w.commit_page(&USERS, users_batch(&[user("u2", "b")]), "users", "1", run)
        .unwrap();
    w.reset_scan("users").unwrap();
    assert_eq!(w.checkpoint("users").unwrap(), None);
    // ... so a new complete scan that returns only u1 must delete u2.
    w.commit_page(&USERS, users_batch(&[user("u1", "a")]), "users", "1", run)
        .unwrap();
    assert_eq!(w.finish_scan("users", run, complete(&USERS)).unwrap(), 1);
}

#[test]
fn empty_page_still_moves_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let mut w = open(&dir.path().join("w.duckdb"), &clock);
    let run = w.begin_run(&["users"]).unwrap();
    let s = w
        .commit_page(&USERS, users_batch(&[]), "users", "cursor-9", run)
        .unwrap();
    assert_eq!(s, MergeStats::default());
    assert_eq!(w.checkpoint("users").unwrap().as_deref(), Some("cursor-9"));
}

#[test]
fn batch_with_wrong_shape_is_refused_naming_the_column() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let mut w = open(&dir.path().join("w.duckdb"), &clock);
    let run = w.begin_run(&["users"]).unwrap();
    let err = w
        .commit_page(&USERS, member_batch(&[("g", "u")]), "users", "1", run)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("batch for `users` does not match its spec: columns are"),
        "{err}"
    );
    assert_eq!(w.checkpoint("users").unwrap(), None);
}

/// Staged pages (`Warehouse::stage`) reach the table only when merged, with the checkpoint
/// staged last; a key staged again merges what came before it first (the later row wins);
/// rows staged and never merged are lost with their checkpoint, not half-stored.
#[test]
fn staged_rows_merge_in_groups_with_their_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let mut w = open(&dir.path().join("w.duckdb"), &clock);
    w.merge_rows = 5;
    let run = w.begin_run(&["users"]).unwrap();
    let live = |w: &Warehouse| scalar::<i64>(w, "SELECT count(*) FROM users");

    let merged = w
        .stage(
            "users",
            run,
            "p1",
            vec![(&USERS, users_batch(&[user("u1", "a@x"), user("u2", "b@x")]))],
        )
        .unwrap();
    assert!(merged.is_empty(), "{merged:?}");
    assert_eq!(live(&w), 0, "staged rows are not in the table yet");
    assert_eq!(w.checkpoint("users").unwrap(), None);

    // u1 again, changed: what was staged merges first (with checkpoint p1), then u1 is staged.
    let merged = w
        .stage(
            "users",
            run,
            "p2",
            vec![(&USERS, users_batch(&[user("u1", "A@x"), user("u3", "c@x")]))],
        )
        .unwrap();
    assert_eq!(merged[USERS.table].new, 2);
    assert_eq!(live(&w), 2);
    assert_eq!(w.checkpoint("users").unwrap().as_deref(), Some("p1"));

    // Five rows staged: merged at once, with the checkpoint staged last.
    let merged = w
        .stage(
            "users",
            run,
            "p3",
            vec![(
                &USERS,
                users_batch(&[user("u4", "d@x"), user("u5", "e@x"), user("u6", "f@x")]),
            )],
        )
        .unwrap();
    assert_eq!(
        merged[USERS.table],
        MergeStats {
            new: 4,
            changed: 1,
            ..MergeStats::default()
        }
    );
    assert_eq!(w.checkpoint("users").unwrap().as_deref(), Some("p3"));
    assert_eq!(
        dump(&w, "SELECT id, email FROM users WHERE id = 'u1'"),
        [r#"Text("u1") | Text("A@x")"#]
    );

    // Staged and never merged (the process ends): neither the row nor its checkpoint.
    w.stage(
        "users",
        run,
        "p4",
        vec![(&USERS, users_batch(&[user("u7", "g@x")]))],
    )
    .unwrap();
    drop(w);
    let mut w = open(&dir.path().join("w.duckdb"), &clock);
    assert_eq!(live(&w), 6);
    assert_eq!(w.checkpoint("users").unwrap().as_deref(), Some("p3"));

    // The end of a scan merges what is staged before looking for missing rows.
    let run = w.begin_run(&["users"]).unwrap();
    w.reset_scan("users").unwrap();
    let all: Vec<_> = (1..=7).map(|i| user(&format!("u{i}"), "x@x")).collect();
    w.stage("users", run, "q1", vec![(&USERS, users_batch(&all))])
        .unwrap();
    assert_eq!(w.finish_scan("users", run, complete(&USERS)).unwrap(), 0);
    assert_eq!(
        scalar::<i64>(
            &w,
            "SELECT count(*) FROM users WHERE email = 'x@x' AND _deleted_at IS NULL"
        ),
        7
    );
}

/// A stage whose append fails merges nothing the stream staged: what the failed append left
/// in its staging table is unknown (after an appender commit ran out of memory, appending
/// again to the table stored misaligned rows), and the driver merges what is staged when a
/// stream fails. The rows come again from the last merged checkpoint. The failure is forced
/// here by dropping the staging table behind the writer's back.
#[test]
fn a_failed_append_discards_what_the_stream_staged() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let mut w = open(&dir.path().join("w.duckdb"), &clock);
    let run = w.begin_run(&["users"]).unwrap();
    let page = |ids: &[&str]| {
        let rows: Vec<_> = ids.iter().map(|id| user(id, "a@x")).collect();
        vec![(&USERS, users_batch(&rows))]
    };
    w.stage("users", run, "p1", page(&["u1", "u2"])).unwrap();
    let table: String = scalar(
        &w,
        "SELECT table_name FROM duckdb_tables() WHERE temporary AND table_name LIKE '_pending_%'",
    );
    w.connection()
        .execute_batch(&format!("DROP TABLE temp.{table}"))
        .unwrap();

    let err = w.stage("users", run, "p2", page(&["u3"])).unwrap_err();
    assert!(err.to_string().contains("users"), "{err}");
    assert!(
        w.flush("users").unwrap().is_empty(),
        "nothing left to merge"
    );
    assert_eq!(scalar::<i64>(&w, "SELECT count(*) FROM users"), 0);
    assert_eq!(w.checkpoint("users").unwrap(), None);

    // The stream stages again from its last checkpoint, into a fresh table.
    w.stage("users", run, "p1", page(&["u1", "u2"])).unwrap();
    assert_eq!(w.flush("users").unwrap()[USERS.table].new, 2);
    assert_eq!(w.checkpoint("users").unwrap().as_deref(), Some("p1"));
}

/// The end-of-scan anti-join runs in parts sized to the cap: 3.3M keys at the default 80 MB,
/// where DuckDB's hash join spills, and the cap over 512 bytes at the smallest caps.
#[test]
fn anti_join_parts_are_sized_to_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let mut w = open(&dir.path().join("w.duckdb"), &clock);
    let mut keys = |cap: &str| {
        w.set_memory_limit(cap).unwrap();
        w.anti_join_keys
    };
    assert_eq!(keys(WRITER_MEMORY_LIMIT), 3_333_333);
    assert_eq!(keys("60MB"), 1_666_666);
    assert_eq!(keys("41MB"), 83_333);
    assert_eq!(keys("20MB"), 39_062);
}

/// A stage far larger than the memory cap merges in parts, each its own transaction: here
/// 120k items at 20 MB, where the cap sizes a merge to 20k rows. In one transaction such a
/// merge ended in a DuckDB FATAL error at its checkpoint. Every row arrives, a reload with
/// every row changed updates them all (with history), and the checkpoint is the one staged
/// last.
#[test]
fn a_stage_far_larger_than_the_cap_merges_in_parts() {
    const ITEMS: usize = 120_000;
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let mut w = open(&dir.path().join("w.duckdb"), &clock);
    w.set_memory_limit("20MB").unwrap();
    assert!(
        w.merge_part_rows() * 5 < ITEMS as u64,
        "{}",
        w.merge_part_rows()
    );
    merge_two_rounds(&mut w, &clock, ITEMS, 5_000, false);
}

/// Stage `items` portfolio items with `progress` in pages of `page`, nothing merging before
/// the flush (but [`MERGE_AFTER`]), then flush them. Returns the stats of everything merged.
fn stage_items(
    w: &mut Warehouse,
    run: RunId,
    round: usize,
    progress: f64,
    (items, page): (usize, usize),
) -> Result<MergeStats> {
    w.merge_rows = u64::MAX;
    let mut stats = MergeStats::default();
    for p in 0..items / page {
        let batch: Vec<Item> = (p * page..(p + 1) * page)
            .map(|i| {
                item(
                    &format!("user-{:06}", i / 6),
                    &format!("Training {i}"),
                    progress,
                    None,
                )
            })
            .collect();
        let checkpoint = format!("round {round} page {p}");
        let batch = vec![(&PORTFOLIO_ITEMS, items_batch(&batch))];
        w.stage("portfolio", run, &checkpoint, batch)?
            .values()
            .for_each(|m| stats += *m);
    }
    w.flush("portfolio")?.values().for_each(|m| stats += *m);
    Ok(stats)
}

/// Merge `items` new portfolio items, then the same items all changed, each round one
/// merge ([`stage_items`]); with `scan`, each round a scan of its own (the first a first
/// load). Every row arrives once, every change is counted and opens a version, and the
/// checkpoint is the one staged last.
fn merge_two_rounds(w: &mut Warehouse, clock: &TestClock, items: usize, page: usize, scan: bool) {
    let run = w.begin_run(&["portfolio"]).unwrap();
    if scan {
        let first = w.start_scan("portfolio", &[&PORTFOLIO_ITEMS], Some(&PORTFOLIO_ITEMS));
        assert_eq!(first.unwrap(), ["portfolio_items"]);
    }
    for (round, progress) in [0.25, 0.75].into_iter().enumerate() {
        clock.advance(60);
        let stats = stage_items(w, run, round, progress, (items, page)).unwrap();
        let (new, changed) = if round == 0 { (items, 0) } else { (0, items) };
        assert_eq!(
            stats,
            MergeStats {
                new: new as u64,
                changed: changed as u64,
                ..MergeStats::default()
            },
            "round {round}"
        );
        assert_eq!(
            w.checkpoint("portfolio").unwrap().as_deref(),
            Some(format!("round {round} page {}", items / page - 1).as_str())
        );
        if scan {
            // The first load ends with its scan; the second round is diffed.
            w.finish_scan("portfolio", run, complete(&PORTFOLIO_ITEMS))
                .unwrap();
        }
    }
    assert_eq!(
        dump(
            w,
            "SELECT count(*), count(DISTINCT item_key), min(progress), max(progress) FROM portfolio_items"
        ),
        [format!(
            "BigInt({items}) | BigInt({items}) | Double(0.75) | Double(0.75)"
        )]
    );
    assert_eq!(
        dump(
            w,
            "SELECT count(*), count(valid_to) FROM portfolio_item_history"
        ),
        [format!("BigInt({}) | BigInt({items})", 2 * items)]
    );
}

#[test]
fn merge_parts_cut_tables_into_transactions_of_at_most_part_rows() {
    let staged = |rows: &[u64]| -> Vec<Staged<'static>> {
        rows.iter()
            .map(|&rows| Staged {
                spec: &USERS,
                stage: String::new(),
                rows,
                duplicates: 0,
                direct: false,
            })
            .collect()
    };
    let piece = |table, start, end| Piece { table, start, end };
    // Small tables share one transaction (a page of groups with its members).
    assert_eq!(
        merge_parts(&staged(&[3, 0, 4]), 10),
        [vec![piece(0, 0, 3), piece(1, 0, 0), piece(2, 0, 4)]]
    );
    // A large table is cut; the next table starts where the last piece left room.
    assert_eq!(
        merge_parts(&staged(&[25, 4]), 10),
        [
            vec![piece(0, 0, 10)],
            vec![piece(0, 10, 20)],
            vec![piece(0, 20, 25), piece(1, 0, 4)]
        ]
    );
    assert_eq!(merge_parts(&staged(&[]), 10), [Vec::<Piece>::new()]);
}

#[test]
fn halving_a_part_cuts_each_piece_at_its_middle() {
    let piece = |table, start, end| Piece { table, start, end };
    assert_eq!(
        halve(&[piece(0, 0, 5), piece(1, 0, 0), piece(2, 10, 11)]),
        Some((
            vec![piece(0, 0, 3), piece(1, 0, 0), piece(2, 10, 11)],
            vec![piece(0, 3, 5)]
        ))
    );
    assert_eq!(halve(&[piece(0, 7, 8), piece(1, 0, 0)]), None);
}

/// Not all of DuckDB's memory spills (an update holds the rows it changed until the next
/// checkpoint): a part of a merge that runs out of it is rolled back and merged again in
/// halves after a checkpoint. Here any piece over 1,500 rows fails as DuckDB fails it: the
/// 6,000 rows merge in four parts, once as a first load (no diff) and once as changes, and
/// every row is there once, with its history and the last page's checkpoint.
#[test]
fn a_merge_out_of_memory_is_merged_again_in_halves_after_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let mut w = open(&dir.path().join("w.duckdb"), &clock);
    // A first load's long transaction is not retried (`tests/bulk.rs`); below its cap.
    w.set_memory_limit("40MB").unwrap();
    w.out_of_memory_over = Some(1_500);
    merge_two_rounds(&mut w, &clock, 6_000, 1_000, true);
    // Each round: 6,000 rows fail, then each half of 3,000; the quarters of 1,500 pass.
    assert_eq!(w.retried_parts, 2 * 3);
}

/// A part that runs out of memory even when small is reported, not retried row by row, and
/// the merge leaves the table and the checkpoint where they were.
#[test]
fn a_merge_out_of_memory_at_any_size_fails_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let mut w = open(&dir.path().join("w.duckdb"), &clock);
    let run = w.begin_run(&["portfolio"]).unwrap();
    stage_items(&mut w, run, 0, 0.25, (6_000, 1_000)).unwrap();
    w.out_of_memory_over = Some(0);
    clock.advance(60);
    let err = stage_items(&mut w, run, 1, 0.75, (6_000, 1_000))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("merging a page into `portfolio_items`: Out of Memory Error"),
        "{err}"
    );
    // 6,000, 3,000 and 1,500 rows are merged again; 750 are too few to halve once more.
    assert_eq!(w.retried_parts, 3);
    assert_eq!(
        w.checkpoint("portfolio").unwrap().as_deref(),
        Some("round 0 page 5")
    );
    assert_eq!(
        dump(&w, "SELECT count(*), max(progress) FROM portfolio_items"),
        ["BigInt(6000) | Double(0.25)"]
    );
}

/// The writer checkpoints once the WAL has grown past its bound, not after every merge
/// (each checkpoint rewrites partly filled row groups: issue 19) and not never (committed
/// rows wait in memory until a checkpoint, and DuckDB's own checkpoint can fail under a
/// small cap). Twenty merges of 2,000 items: the first leaves its WAL in place, the WAL
/// never grows much past the bound, and it is written into the file several times.
#[test]
fn the_writer_checkpoints_when_the_wal_passes_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.duckdb");
    let wal = dir.path().join("w.duckdb.wal");
    let wal_size = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    let clock = TestClock::new();
    let mut w = open(&path, &clock);
    let run = w.begin_run(&["portfolio"]).unwrap();
    let page = |p: usize| {
        let items: Vec<Item> = (p * 2_000..(p + 1) * 2_000)
            .map(|i| item(&format!("user-{i:06}"), &format!("Training {i}"), 0.5, None))
            .collect();
        items_batch(&items)
    };
    let before = wal_size();
    w.commit_page(&PORTFOLIO_ITEMS, page(0), "portfolio", "p0", run)
        .unwrap();
    let one_merge = wal_size() - before;
    assert!(
        one_merge > 0,
        "a merge under the bound ({} bytes) is not checkpointed at once",
        w.wal_checkpoint_bytes
    );
    w.wal_checkpoint_bytes = 3 * one_merge;
    let (mut largest, mut checkpoints, mut last) = (wal_size(), 0, wal_size());
    for p in 1..20 {
        w.commit_page(
            &PORTFOLIO_ITEMS,
            page(p),
            "portfolio",
            &format!("p{p}"),
            run,
        )
        .unwrap();
        let size = wal_size();
        largest = largest.max(size);
        checkpoints += u32::from(size < last);
        last = size;
    }
    assert!(
        largest < w.wal_checkpoint_bytes + 2 * one_merge,
        "the WAL reached {largest} bytes; bound {} and one merge {one_merge}",
        w.wal_checkpoint_bytes
    );
    assert!(checkpoints >= 4, "{checkpoints} checkpoints in 19 merges");
    assert_eq!(
        scalar::<i64>(&w, "SELECT count(*) FROM portfolio_items"),
        40_000,
        "every row stored"
    );
}
