//! Issue 20: `report` (one self-contained HTML file) and `export compliance --format xlsx`.
//! The numbers in the file are read back (the JSON the page carries and the labels drawn in
//! its SVG charts) and compared with SQL over the same warehouse; the workbook is opened with
//! openpyxl; a headless Chromium loads the page offline when one is installed.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use duckdb::{AccessMode, Connection};
use pluvo_warehouse::sim::Sim;
use pluvo_warehouse::store::duckdb_config;
use serde_json::Value;

use crate::support::{cli, config_file, python_with, sim, sync};

/// The simulator's "now" in `support::sim`.
const AS_OF: &str = "2026-06-01";

/// Three months later: the simulator issues no certificate that is expired at its "now", so
/// the expiry chart is checked at a later day, when some are.
const LATER: &str = "2026-09-01";

struct Org {
    sim: Sim,
    dir: tempfile::TempDir,
    db: PathBuf,
    config: PathBuf,
}

/// A fixed organisation (`support::sim`: seed 7, 2026-06-01), synced.
async fn synced(users: usize) -> Org {
    let sim = sim(users).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.duckdb");
    sync(&sim, &db, false).await;
    let config = config_file(&sim, dir.path());
    Org {
        sim,
        dir,
        db,
        config,
    }
}

impl Org {
    fn run(&self, args: &[&str]) -> Output {
        cli(&self.config, &self.db, self.sim.client_secret())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `report --as-of DAY --out <dir>/<name> ARGS`: the file's text and the command's stdout.
    fn report(&self, day: &str, name: &str, args: &[&str]) -> (String, String) {
        let out = self.dir.path().join(name);
        let run = self.run(
            &[
                &["report", "--as-of", day, "--out", out.to_str().unwrap()],
                args,
            ]
            .concat(),
        );
        assert!(run.status.success(), "{}", text(&run.stderr));
        (std::fs::read_to_string(&out).unwrap(), text(&run.stdout))
    }

    /// One-column integer answers of `sql` (with the views' variables `vars` set first).
    fn sql(&self, vars: &str, sql: &str) -> Vec<Vec<String>> {
        let conn =
            Connection::open_with_flags(&self.db, duckdb_config(AccessMode::ReadOnly).unwrap())
                .unwrap();
        conn.execute_batch(vars).unwrap();
        let mut stmt = conn.prepare(sql).unwrap();
        let mut rows = stmt.query([]).unwrap();
        let mut out = Vec::new();
        while let Some(row) = rows.next().unwrap() {
            let n = row.as_ref().column_count();
            out.push(
                (0..n)
                    .map(|i| match row.get_ref(i).unwrap().to_owned() {
                        duckdb::types::Value::Null => String::new(),
                        duckdb::types::Value::Text(t) => t,
                        duckdb::types::Value::BigInt(n) => n.to_string(),
                        duckdb::types::Value::Int(n) => n.to_string(),
                        duckdb::types::Value::Double(n) => format!("{n:.1}"),
                        other => format!("{other:?}"),
                    })
                    .collect(),
            );
        }
        out
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The figures the page carries as JSON.
fn data(html: &str) -> Value {
    let start = "<script type=\"application/json\" id=\"report-data\">";
    let from = html.find(start).expect("the page carries its data") + start.len();
    let to = from + html[from..].find("</script>").unwrap();
    serde_json::from_str(&html[from..to]).unwrap()
}

/// The text labels drawn in the SVG chart of section `id`.
fn labels(html: &str, id: &str) -> Vec<String> {
    let section = &html[html
        .find(&format!("<section id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no section `{id}`"))..];
    let svg = &section[section.find("<svg").expect("a chart")..section.find("</svg>").unwrap()];
    svg.split("<text")
        .skip(1)
        .map(|t| {
            let t = &t[t.find('>').unwrap() + 1..t.find("</text>").unwrap()];
            t.trim()
                .replace("&amp;", "&")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
        })
        .collect()
}

fn num(v: &Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// `(label, count)` of a bar chart's JSON.
fn bars(v: &Value) -> Vec<(String, i64)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|b| (b["label"].as_str().unwrap().to_string(), num(&b["count"])))
        .collect()
}

// Acceptance: every chart's values and the roster counts equal SQL over the warehouse, the
// charts draw those values, the roster lists the rows most at risk up to its cap and says so,
// and the file names nothing on the network.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_numbers_match_sql_over_the_warehouse() {
    let org = synced(300).await;
    let (html, stdout) = org.report(
        LATER,
        "r.html",
        &["--roster-limit", "7", "--chart-groups", "3"],
    );
    assert_eq!(
        stdout.trim(),
        org.dir.path().join("r.html").display().to_string()
    );
    let data = data(&html);
    assert_eq!(data["as_of"], LATER);
    let vars = format!("SET VARIABLE as_of = DATE '{LATER}'; SET VARIABLE days = 90;");

    // Users in scope.
    let users = org.sql(
        "",
        "SELECT count(*) FROM users WHERE _deleted_at IS NULL AND NOT archived",
    );
    assert_eq!(data["users"].to_string(), users[0][0]);

    // Completion per group: the whole view in the table data, the lowest three charted.
    let all = org.sql(
        "",
        "SELECT group_ref, members, training_items, completed, completion_pct FROM completion_by_group",
    );
    let got: Vec<Vec<String>> = data["completion"]["all"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            vec![
                g["group_ref"].as_str().unwrap().to_string(),
                g["members"].to_string(),
                g["training_items"].to_string(),
                g["completed"].to_string(),
                format!("{:.1}", g["completion_pct"].as_f64().unwrap()),
            ]
        })
        .collect();
    assert_eq!(got, all);
    assert!(all.len() > 3, "the cap is exercised: {all:?}");
    let lowest = org.sql(
        "",
        "SELECT group_name, completed, training_items, completion_pct FROM completion_by_group
         ORDER BY completion_pct, group_ref LIMIT 3",
    );
    let drawn = labels(&html, "completion");
    for g in &lowest {
        let label = format!("{}% ({} of {})", g[3], g[1], g[2]);
        assert!(drawn.contains(&g[0]), "{} drawn: {drawn:?}", g[0]);
        assert!(drawn.contains(&label), "{label} drawn: {drawn:?}");
    }
    assert_eq!(data["completion"]["charted"].as_array().unwrap().len(), 3);
    assert!(html.contains("The 3 groups with the lowest completion of"));

    // Expiry: per user and certificate the roster's held certificate, expired or by month
    // (written here with strftime, independent of the report's date_trunc).
    let expiry = org.sql(
        &vars,
        "SELECT 'expired', count(*) FROM compliance_roster WHERE status = 'expired'
         UNION ALL
         SELECT strftime(expires_on, '%Y-%m'), count(*) FROM compliance_roster
         WHERE expires_on >= DATE '2026-09-01' AND expires_on < DATE '2027-09-01'
         GROUP BY 1 ORDER BY 1",
    );
    let first: chrono::NaiveDate = LATER.parse().unwrap();
    let months: Vec<(String, String)> = (0..12)
        .map(|i| {
            let m = first + chrono::Months::new(i);
            (m.format("%b %Y").to_string(), m.format("%Y-%m").to_string())
        })
        .collect();
    let count_of = |key: &str| {
        expiry
            .iter()
            .find(|r| r[0] == key)
            .map_or(0, |r| r[1].parse::<i64>().unwrap())
    };
    let mut expected = vec![("expired".to_string(), count_of("expired"))];
    expected.extend(months.iter().map(|(l, k)| (l.clone(), count_of(k))));
    assert_eq!(bars(&data["expiry"]), expected);
    assert!(expected[0].1 > 0 && expected[1..].iter().any(|(_, n)| *n > 0));
    let drawn = labels(&html, "expiry");
    for (label, count) in &expected {
        assert!(drawn.contains(label), "{label} drawn: {drawn:?}");
        assert!(
            drawn.contains(&count.to_string()),
            "{count} drawn: {drawn:?}"
        );
    }

    // Inactivity: time since the last login at the start of LATER, straight from `users`.
    let buckets = org.sql(
        "",
        "WITH u AS (SELECT last_login::TIMESTAMP AS l FROM users WHERE _deleted_at IS NULL AND NOT archived),
              t AS (SELECT TIMESTAMP '2026-09-01 00:00:00' AS t)
         SELECT count(*) FILTER (WHERE l >= t - INTERVAL 30 DAY),
                count(*) FILTER (WHERE l < t - INTERVAL 30 DAY AND l >= t - INTERVAL 90 DAY),
                count(*) FILTER (WHERE l < t - INTERVAL 90 DAY AND l >= t - INTERVAL 180 DAY),
                count(*) FILTER (WHERE l < t - INTERVAL 180 DAY AND l >= t - INTERVAL 365 DAY),
                count(*) FILTER (WHERE l < t - INTERVAL 365 DAY),
                count(*) FILTER (WHERE l IS NULL)
         FROM u, t",
    );
    let labels_expected = [
        "under 30 days",
        "30–89 days",
        "90–179 days",
        "180–364 days",
        "365+ days",
        "never",
    ];
    let expected: Vec<(String, i64)> = labels_expected
        .iter()
        .zip(&buckets[0])
        .map(|(l, n)| (l.to_string(), n.parse().unwrap()))
        .collect();
    assert_eq!(bars(&data["inactivity"]), expected);
    let inactive = org.sql(
        &format!("SET VARIABLE as_of = DATE '{LATER}'; SET VARIABLE days = 180;"),
        "SELECT count(*) FROM inactive_users",
    );
    let alert: i64 = data["inactivity"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["alert"] == true)
        .map(|b| num(&b["count"]))
        .sum();
    assert_eq!(
        alert.to_string(),
        inactive[0][0],
        "inactive = the view's rows"
    );
    // Another threshold: the alert bars are still exactly the view's rows, and the users seen
    // within the smallest edge are never among them.
    let (other, _) = org.report(LATER, "r10.html", &["--inactive-days", "10"]);
    let other = self::data(&other);
    let bars10 = other["inactivity"].as_array().unwrap();
    assert_eq!(bars10[0]["label"], "under 10 days");
    assert_eq!(bars10[0]["alert"], false);
    let alert10: i64 = bars10
        .iter()
        .filter(|b| b["alert"] == true)
        .map(|b| num(&b["count"]))
        .sum();
    let inactive10 = org.sql(
        &format!("SET VARIABLE as_of = DATE '{LATER}'; SET VARIABLE days = 10;"),
        "SELECT count(*) FROM inactive_users",
    );
    assert_eq!(alert10.to_string(), inactive10[0][0]);
    let drawn = labels(&html, "inactivity");
    for (label, count) in &expected {
        assert!(drawn.contains(label), "{label} drawn: {drawn:?}");
        assert!(
            drawn.contains(&count.to_string()),
            "{count} drawn: {drawn:?}"
        );
    }

    // The roster: counts per certificate and status over every row.
    let counts = org.sql(
        &format!("{vars} SET VARIABLE certificates = NULL;"),
        "SELECT certificate,
                count(*) FILTER (WHERE status = 'valid'), count(*) FILTER (WHERE status = 'expiring'),
                count(*) FILTER (WHERE status = 'expired'), count(*) FILTER (WHERE status = 'missing')
         FROM compliance_roster GROUP BY 1 ORDER BY 1",
    );
    let got: Vec<Vec<String>> = data["roster"]["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            ["certificate", "valid", "expiring", "expired", "missing"]
                .iter()
                .map(|k| c[k].as_str().map_or(c[k].to_string(), str::to_string))
                .collect()
        })
        .collect();
    assert_eq!(got, counts);
    assert_eq!(counts.len(), 8, "every certificate template");
    // Listed: 7 per certificate, the most at risk first; the table has exactly those rows.
    let listed = data["roster"]["rows"].as_array().unwrap();
    assert_eq!(
        html.matches("<tr><td>").count() - html_rows_outside_roster(&html),
        listed.len()
    );
    for c in &counts {
        let n: Vec<i64> = c[1..].iter().map(|n| n.parse().unwrap()).collect();
        let (valid, expiring, expired, missing) = (n[0], n[1], n[2], n[3]);
        let rows: Vec<&Value> = listed.iter().filter(|r| r["certificate"] == c[0]).collect();
        assert_eq!(
            rows.len() as i64,
            (valid + expiring + expired + missing).min(7)
        );
        let statuses: Vec<&str> = rows.iter().map(|r| r["status"].as_str().unwrap()).collect();
        let mut want = vec!["expired"; expired.min(7) as usize];
        want.extend(vec![
            "expiring";
            expiring.min(7 - want.len() as i64) as usize
        ]);
        want.extend(vec!["missing"; missing.min(7 - want.len() as i64) as usize]);
        want.extend(vec!["valid"; valid.min(7 - want.len() as i64) as usize]);
        assert_eq!(statuses, want, "{}", c[0]);
    }
    assert!(html.contains("lists at most 7 users per certificate"));

    // Freshness: the end of each stream's last scan.
    let fresh = org.sql(
        "",
        "SELECT stream, strftime(max(ended_at)::TIMESTAMP, '%Y-%m-%d %H:%M UTC') FROM _run_streams
         WHERE error IS NULL GROUP BY 1 ORDER BY 1",
    );
    let mut got: Vec<Vec<String>> = data["freshness"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            vec![
                f["stream"].as_str().unwrap().to_string(),
                f["last_success"].as_str().unwrap().to_string(),
            ]
        })
        .collect();
    got.sort();
    assert_eq!(got, fresh);
    assert!(html.contains("<table id=\"freshness\">"));

    // Self-contained: nothing on the network, no external resource of any kind.
    for reference in [
        "http:", "https:", "//", "src=", "href=", "url(", "@import", "<link", "<img", "<iframe",
    ] {
        assert!(
            !html.contains(reference),
            "the report references `{reference}`"
        );
    }
}

/// Table rows of the page that are not roster rows (freshness, counts, groups).
fn html_rows_outside_roster(html: &str) -> usize {
    let roster = &html[html
        .find("<table class=\"sortable\" id=\"roster-table\">")
        .unwrap()..];
    html.matches("<tr><td>").count() - roster.matches("<tr><td>").count()
}

// --group: the report covers the group's participants only, from the warehouse or its
// published snapshot alike; an unknown ref or title is a usage error that names it and writes
// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_for_a_group_covers_its_participants() {
    let org = synced(200).await;
    let group = org.sql(
        "",
        "SELECT ref FROM \"groups\" WHERE _deleted_at IS NULL ORDER BY ref LIMIT 1",
    )[0][0]
        .clone();
    let (html, _) = org.report(AS_OF, "g.html", &["--group", &group]);
    let data = data(&html);
    let members = org.sql(
        "",
        &format!(
            "SELECT count(DISTINCT u.id) FROM users u JOIN group_members m ON m.user_id = u.id
             JOIN \"groups\" g ON g.id = m.group_id
             WHERE g.ref = '{group}' AND m.role = 'participant' AND m._deleted_at IS NULL
               AND u._deleted_at IS NULL AND NOT u.archived"
        ),
    );
    assert_eq!(data["users"].to_string(), members[0][0]);
    let all = data["completion"]["all"].as_array().unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["group_ref"], group.as_str());
    let per_certificate: i64 = num(&data["roster"]["certificates"][0]["valid"])
        + num(&data["roster"]["certificates"][0]["expiring"])
        + num(&data["roster"]["certificates"][0]["expired"])
        + num(&data["roster"]["certificates"][0]["missing"]);
    assert_eq!(per_certificate.to_string(), members[0][0]);
    let inactivity: i64 = data["inactivity"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| num(&b["count"]))
        .sum();
    assert_eq!(inactivity.to_string(), members[0][0]);

    // From the published snapshot: the same figures, and the header says where they came from.
    let (snap, _) = org.report(AS_OF, "s.html", &["--group", &group, "--snapshot"]);
    let snap = self::data(&snap);
    assert!(
        snap["source"]
            .as_str()
            .unwrap()
            .starts_with("the published snapshot"),
        "{}",
        snap["source"]
    );
    for key in ["users", "completion", "expiry", "inactivity", "roster"] {
        assert_eq!(snap[key], data[key], "{key} from the snapshot");
    }

    let out = org.dir.path().join("bad.html");
    let run = org.run(&[
        "report",
        "--group",
        "no-such-group",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(2), "{}", text(&run.stderr));
    let err = text(&run.stderr);
    assert!(
        err.contains("no group with ref `no-such-group`") && err.contains(&group),
        "{err}"
    );
    assert!(!out.exists());

    let run = org.run(&[
        "report",
        "--certificate",
        "Unicorn Riding",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(2), "{}", text(&run.stderr));
    let err = text(&run.stderr);
    assert!(
        err.contains("no certificate titled `Unicorn Riding`") && err.contains("BHV"),
        "{err}"
    );
    assert!(!out.exists());
}

// Acceptance: the workbook opens with openpyxl: a summary sheet and one per certificate, dates
// as real dates, frozen header and filters, the roster's row counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compliance_workbook_opens_with_openpyxl() {
    let org = synced(150).await;
    let out = org.dir.path().join("roster.xlsx");
    let run = org.run(&[
        "export",
        "compliance",
        "--certificate",
        "BHV",
        "--certificate",
        "First Aid Certificate",
        "--as-of",
        AS_OF,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let script = r#"
import json, sys, datetime, openpyxl
wb = openpyxl.load_workbook(sys.argv[1])
out = {"sheets": wb.sheetnames}
for ws in wb.worksheets:
    rows = list(ws.iter_rows(values_only=True))
    out[ws.title] = {
        "rows": len(rows),
        "header": list(rows[0]),
        "freeze": ws.freeze_panes,
        "filter": ws.auto_filter.ref,
        "types": sorted({type(v).__name__ for r in rows[1:] for v in r[5:7] if v is not None}),
        "status": {s: sum(1 for r in rows[1:] if r[4] == s) for s in ["valid", "expiring", "expired", "missing"]},
        "first": [str(v) for v in rows[1]] if len(rows) > 1 else [],
    }
print(json.dumps(out))
"#;
    let py = python_with(&["openpyxl==3.1.5"])
        .arg("-c")
        .arg(script)
        .arg(&out)
        .output()
        .unwrap();
    assert!(py.status.success(), "{}", text(&py.stderr));
    let book: Value = serde_json::from_slice(&py.stdout).unwrap();
    assert_eq!(
        book["sheets"],
        serde_json::json!(["Summary", "BHV", "First Aid Certificate"])
    );
    let vars = format!(
        "SET VARIABLE as_of = DATE '{AS_OF}'; SET VARIABLE days = 90; \
         SET VARIABLE certificates = ['BHV', 'First Aid Certificate'];"
    );
    let users = org.sql(
        "",
        "SELECT count(*) FROM users WHERE _deleted_at IS NULL AND NOT archived",
    )[0][0]
        .parse::<i64>()
        .unwrap();
    for title in ["BHV", "First Aid Certificate"] {
        let sheet = &book[title];
        assert_eq!(
            num(&sheet["rows"]),
            users + 1,
            "{title}: header + one row per user"
        );
        assert_eq!(
            sheet["header"],
            serde_json::json!([
                "user_ref",
                "user_id",
                "name",
                "email",
                "status",
                "issued_on",
                "expires_on",
                "days_left"
            ])
        );
        assert_eq!(sheet["freeze"], "A2");
        assert_eq!(sheet["filter"], format!("A1:H{}", users + 1));
        assert_eq!(
            sheet["types"],
            serde_json::json!(["datetime"]),
            "real dates"
        );
        let counts = org.sql(
            &vars,
            &format!(
                "SELECT status, count(*) FROM compliance_roster WHERE certificate = '{title}' GROUP BY 1"
            ),
        );
        for row in counts {
            assert_eq!(
                sheet["status"][&row[0]].to_string(),
                row[1],
                "{title} {}",
                row[0]
            );
        }
        let first = org.sql(
            &vars,
            &format!(
                "SELECT user_ref, status, coalesce(strftime(issued_on, '%Y-%m-%d 00:00:00'), 'None')
                 FROM compliance_roster WHERE certificate = '{title}' ORDER BY user_ref, user_id LIMIT 1"
            ),
        );
        assert_eq!(sheet["first"][0], first[0][0].as_str());
        assert_eq!(sheet["first"][4], first[0][1].as_str());
        assert_eq!(sheet["first"][5], first[0][2].as_str());
    }
    let summary = &book["Summary"];
    assert_eq!(summary["header"][0], "certificate");
    assert_eq!(summary["freeze"], "A2");
}

/// A Chromium from the distribution (`apt-get install chromium`), if installed.
fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Run headless Chromium on `page` with a fresh profile and every network path closed (a
/// proxy that does not exist), plus `args`.
fn headless(browser: &Path, page: &Path, args: &[&str]) -> Output {
    let profile = tempfile::tempdir().unwrap();
    std::process::Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--proxy-server=127.0.0.1:9",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

// Acceptance: a real browser loads the file with the network closed: the DOM it builds has
// the three charts and every roster row, and it draws a screenshot. Skipped (and says so) on a
// machine without Chromium.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_opens_offline_in_headless_chromium() {
    let Some(browser) = chromium() else {
        eprintln!("skipped: no chromium installed (apt-get install chromium)");
        return;
    };
    let org = synced(150).await;
    let (html, _) = org.report(LATER, "c.html", &[]);
    let page = org.dir.path().join("c.html");
    let dom = headless(&browser, &page, &["--dump-dom"]);
    assert!(dom.status.success(), "{}", text(&dom.stderr));
    let dom = text(&dom.stdout);
    assert_eq!(dom.matches("<svg").count(), 3, "three charts");
    let rows = data(&html)["roster"]["rows"].as_array().unwrap().len();
    let roster = &dom[dom.find("id=\"roster-table\"").unwrap()..];
    assert_eq!(roster.matches("<tr><td>").count(), rows);
    let shot = org.dir.path().join("c.png");
    let run = headless(
        &browser,
        &page,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1000,1400",
            "--hide-scrollbars",
        ],
    );
    assert!(run.status.success(), "{}", text(&run.stderr));
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a screenshot"
    );
}

/// The words of a shell command line: split at spaces, double quotes group.
fn words(line: &str) -> Vec<String> {
    let (mut out, mut word, mut quoted) = (Vec::new(), String::new(), false);
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

// docs/report.md: every command it shows runs as shown against a synced organisation and
// writes what the page says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docs_report_commands_run_as_shown() {
    let org = synced(150).await;
    let doc = include_str!("../docs/report.md");
    let commands: Vec<&str> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("pluvo-warehouse "))
        .collect();
    assert_eq!(commands.len(), 4, "{commands:?}");
    for command in commands {
        let args = words(command);
        let run = cli(&org.config, &org.db, org.sim.client_secret())
            .current_dir(org.dir.path())
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(run.status.success(), "`{command}`: {}", text(&run.stderr));
        let stdout = text(&run.stdout);
        if let Some(i) = args.iter().position(|a| a == "--out") {
            let out = org.dir.path().join(&args[i + 1]);
            let bytes = std::fs::read(&out).unwrap_or_else(|e| panic!("`{command}`: {e}"));
            if args[0] == "report" {
                assert_eq!(stdout.trim(), args[i + 1], "`{command}` prints the path");
                assert!(bytes.starts_with(b"<!DOCTYPE html>"));
            } else {
                assert!(bytes.starts_with(b"PK"), "`{command}` writes a zip (xlsx)");
            }
        } else {
            assert!(
                stdout.contains("html: median") && stdout.contains(" KB"),
                "`{command}`: {stdout}"
            );
        }
    }
    // The groups report has the two groups only.
    let html = std::fs::read_to_string(org.dir.path().join("groups.html")).unwrap();
    let data = data(&html);
    let refs: Vec<&str> = data["completion"]["all"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["group_ref"].as_str().unwrap())
        .collect();
    assert_eq!(refs.len(), 2);
    assert!(refs.contains(&"G0001") && refs.contains(&"G0002"));
}
