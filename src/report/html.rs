//! The page: [`Data`] and its charts as one HTML file with its style, a few lines of script
//! (sorting the roster table) and the figures as JSON, all inline. Nothing is fetched: no
//! URL appears in the file.

use std::fmt::Write as _;

use super::Error;
use super::charts::{self, html_escape as esc};
use super::data::{Data, RosterRow};

const STYLE: &str = r#"
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: #222; background: #fff; margin: 0 auto; max-width: 960px; padding: 1.5rem; line-height: 1.4; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; }
h2 { font-size: 1.25rem; margin: 2rem 0 .5rem; border-bottom: 2px solid #0072b2; padding-bottom: .2rem; }
p.meta { margin: 0 0 .75rem; color: #444; }
.note { color: #444; font-size: .92rem; }
figure { margin: 0; }
svg.chart { width: 100%; height: auto; display: block; }
figcaption { font-size: .92rem; color: #444; margin-top: .25rem; }
table { border-collapse: collapse; width: 100%; font-size: .88rem; margin: .5rem 0; }
th, td { text-align: left; padding: .25rem .5rem; border-bottom: 1px solid #ddd; vertical-align: top; }
caption { text-align: left; }
td.d, td.s { white-space: nowrap; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
thead th { background: #f2f2f2; }
th button { font: inherit; font-weight: bold; background: none; border: 0; padding: 0; cursor: pointer; color: inherit; }
th button::after { content: " \2195"; color: #888; }
th[aria-sort="ascending"] button::after { content: " \2191"; color: #222; }
th[aria-sort="descending"] button::after { content: " \2193"; color: #222; }
.s-expired { color: #a33a00; font-weight: bold; }
.s-expiring { color: #7a5200; font-weight: bold; }
.s-missing { color: #444; }
.s-valid { color: #00694d; }
.key { -webkit-print-color-adjust: exact; print-color-adjust: exact; display: inline-block; width: .9em; height: .9em; vertical-align: -.1em; margin-right: .3em; }
details summary { cursor: pointer; color: #0059a0; }
@media print {
  body { max-width: none; padding: 0; font-size: 10pt; }
  h2 { break-after: avoid; }
  figure, tr { break-inside: avoid; }
  details > *:not(summary) { display: revert; }
  th button::after { content: ""; }
}
"#;

/// Sorting the roster by a column: numbers and dates by their `data-v`, text by itself.
const SCRIPT: &str = r#"
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("thead th").forEach(function (th, col) {
    var button = th.querySelector("button");
    if (!button) return;
    button.addEventListener("click", function () {
      var asc = th.getAttribute("aria-sort") !== "ascending";
      table.querySelectorAll("thead th").forEach(function (o) { o.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var key = function (row) {
        var cell = row.cells[col];
        var v = cell.getAttribute("data-v");
        return v === null ? cell.textContent : (v === "" ? null : Number(v));
      };
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === y) return 0;
        if (x === null) return 1;
        if (y === null) return -1;
        var c = typeof x === "number" ? x - y : String(x).localeCompare(String(y));
        return asc ? c : -c;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"#;

fn opt(text: &Option<String>) -> String {
    text.as_deref().map(esc).unwrap_or_default()
}

fn status_cell(status: &str) -> String {
    let mark = match status {
        "expired" => "✖",
        "expiring" => "⚠",
        "missing" => "–",
        _ => "✔",
    };
    format!("<td class=\"s s-{0}\">{mark} {0}</td>", esc(status))
}

fn date_cell(date: Option<chrono::NaiveDate>) -> String {
    match date {
        Some(d) => format!(
            "<td class=\"d\" data-v=\"{}\">{d}</td>",
            d.signed_duration_since(chrono::NaiveDate::default())
                .num_days()
        ),
        None => "<td data-v=\"\"></td>".into(),
    }
}

fn roster_row(out: &mut String, r: &RosterRow) {
    let days = r.days_left.map(|d| d.to_string()).unwrap_or_default();
    let _ = writeln!(
        out,
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td>{}{}{}<td class=\"n\" data-v=\"{days}\">{days}</td></tr>",
        esc(&r.certificate),
        opt(&r.user_ref),
        opt(&r.name),
        opt(&r.email),
        status_cell(&r.status),
        date_cell(r.issued_on),
        date_cell(r.expires_on),
    );
}

/// The whole page.
pub fn render(data: &Data) -> Result<String, Error> {
    let mut out = String::with_capacity(64 * 1024 + data.roster.rows.len() * 300);
    let scope = if data.groups.is_empty() {
        "all users".to_string()
    } else {
        format!(
            "participants of group{} {}",
            if data.groups.len() == 1 { "" } else { "s" },
            data.groups
                .iter()
                .map(|g| format!("<code>{}</code>", esc(g)))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let title = format!("Training and compliance report, as of {}", data.as_of);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"pluvo-warehouse report\">\n\
         <title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<header>\n\
         <h1>{title}</h1>\n\
         <p class=\"meta\">{users} users (not archived), {scope}. Generated {generated} from {source}{run}.</p>\n",
        title = esc(&title),
        users = data.users,
        generated = esc(&data.generated_at),
        source = esc(&data.source),
        run = data
            .run_id
            .map(|r| format!(", sync run {r}"))
            .unwrap_or_default(),
    );

    // Freshness: how old each number on the page is.
    out.push_str(
        "<table id=\"freshness\"><caption class=\"note\">Data freshness: the last complete sync of each stream</caption>\n\
         <thead><tr><th>stream</th><th>last successful sync</th><th>newest run</th></tr></thead><tbody>\n",
    );
    if data.freshness.is_empty() {
        out.push_str("<tr><td colspan=\"3\">no sync has run yet</td></tr>\n");
    }
    for f in &data.freshness {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&f.stream),
            f.last_success.as_deref().map(esc).unwrap_or("never".into()),
            esc(&f.last_status)
        );
    }
    out.push_str("</tbody></table>\n</header>\n");

    // Completion per group.
    let all_groups = data.completion.all.len();
    let charted = data.completion.charted.len();
    let _ = writeln!(
        out,
        "<section id=\"completion\">\n<h2>Completion per group</h2>\n<figure>\n{}\n<figcaption>{}</figcaption>\n</figure>",
        if charted == 0 {
            "<p>No group has participants with training items.</p>".to_string()
        } else {
            charts::completion(
                &data.completion.charted,
                "Completion per group, lowest first",
            )?
        },
        if charted < all_groups {
            format!(
                "The {charted} groups with the lowest completion of {all_groups}, lowest first; every group is in the table below. \
                 Share of the training items of each group's participants that are completed (progress 100 or a completion date), \
                 as of the last sync. Source: view <code>completion_by_group</code>."
            )
        } else {
            "Lowest first. Share of the training items of each group's participants that are completed (progress 100 or a \
             completion date), as of the last sync. Source: view <code>completion_by_group</code>."
                .to_string()
        }
    );
    let _ = writeln!(
        out,
        "<details><summary>All {all_groups} groups</summary>\n<table class=\"sortable\" id=\"groups\"><thead><tr>\
         <th><button type=\"button\">group</button></th><th><button type=\"button\">ref</button></th>\
         <th class=\"n\"><button type=\"button\">participants</button></th><th class=\"n\"><button type=\"button\">items</button></th>\
         <th class=\"n\"><button type=\"button\">completed</button></th><th class=\"n\"><button type=\"button\">completion %</button></th>\
         <th class=\"n\"><button type=\"button\">avg score</button></th></tr></thead><tbody>"
    );
    for g in &data.completion.all {
        let pct = g
            .completion_pct
            .map(|p| format!("{p:.1}"))
            .unwrap_or_default();
        let score = g.avg_score.map(|p| format!("{p:.1}")).unwrap_or_default();
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td class=\"n\" data-v=\"{m}\">{m}</td><td class=\"n\" data-v=\"{t}\">{t}</td>\
             <td class=\"n\" data-v=\"{c}\">{c}</td><td class=\"n\" data-v=\"{pct}\">{pct}</td><td class=\"n\" data-v=\"{score}\">{score}</td></tr>",
            opt(&g.group_name),
            opt(&g.group_ref),
            m = g.members,
            t = g.training_items,
            c = g.completed,
        );
    }
    out.push_str("</tbody></table></details>\n</section>\n");

    // Certificates expiring.
    let _ = writeln!(
        out,
        "<section id=\"expiry\">\n<h2>Certificates expiring</h2>\n<figure>\n{}\n<figcaption>\
         <span class=\"key\" style=\"background:#d55e00\"></span>already expired and not renewed \
         <span class=\"key\" style=\"background:#0072b2\"></span>expiring in that month, from {} on. \
         One count per user and certificate: the certificate with the latest expiry, as in view <code>compliance_roster</code>.</figcaption>\n</figure>\n</section>",
        charts::bars(
            "expiry",
            &data.expiry,
            "Certificates already expired, and expiring per month for the next 12 months",
            "certificates",
        )?,
        data.as_of
    );

    // Inactive users.
    let inactive: i64 = data
        .inactivity
        .iter()
        .filter(|b| b.alert)
        .map(|b| b.count)
        .sum();
    let _ = writeln!(
        out,
        "<section id=\"inactivity\">\n<h2>Time since last login</h2>\n<figure>\n{}\n<figcaption>\
         <span class=\"key\" style=\"background:#d55e00\"></span>inactive: no login for {} days or more, or never ({inactive} users, \
         view <code>inactive_users</code>) <span class=\"key\" style=\"background:#0072b2\"></span>active. \
         Counted at the start of {} (UTC).</figcaption>\n</figure>\n</section>",
        charts::bars(
            "inactivity",
            &data.inactivity,
            "Users by time since their last login",
            "users",
        )?,
        data.inactive_days,
        data.as_of
    );

    // The roster.
    let _ = writeln!(
        out,
        "<section id=\"roster\">\n<h2>Compliance roster</h2>\n\
         <p class=\"note\">Who holds, lacks or is about to lose each certificate, as of {as_of}: <em>expiring</em> = expires within \
         {days} days; the rules of view <code>compliance_roster</code>.</p>\n\
         <table id=\"roster-counts\"><thead><tr><th>certificate</th><th class=\"n\">valid</th><th class=\"n\">expiring</th>\
         <th class=\"n\">expired</th><th class=\"n\">missing</th><th class=\"n\">users</th><th class=\"n\">listed below</th></tr></thead><tbody>",
        as_of = data.as_of,
        days = data.days
    );
    let mut capped = false;
    for c in &data.roster.certificates {
        capped |= c.shown < c.total();
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(&c.certificate),
            c.valid,
            c.expiring,
            c.expired,
            c.missing,
            c.total(),
            c.shown
        );
    }
    out.push_str("</tbody></table>\n");
    if capped {
        let _ = writeln!(
            out,
            "<p class=\"note\" id=\"roster-cap\">To keep this file small enough to e-mail, the table lists at most {} users per \
             certificate, the most at risk first (expired, then expiring soonest, then missing, then valid). \
             The full roster: <code>pluvo-warehouse export compliance --format xlsx</code>.</p>",
            data.roster.limit
        );
    }
    out.push_str(
        "<table class=\"sortable\" id=\"roster-table\"><thead><tr>\
         <th><button type=\"button\">certificate</button></th><th><button type=\"button\">user ref</button></th>\
         <th><button type=\"button\">name</button></th><th><button type=\"button\">e-mail</button></th>\
         <th><button type=\"button\">status</button></th><th><button type=\"button\">issued</button></th>\
         <th><button type=\"button\">expires</button></th><th class=\"n\"><button type=\"button\">days left</button></th>\
         </tr></thead><tbody>\n",
    );
    for r in &data.roster.rows {
        roster_row(&mut out, r);
    }
    out.push_str("</tbody></table>\n</section>\n");

    // The figures, machine-readable. `<` is escaped so no text in the data can end the script.
    let json = serde_json::to_string(data)
        .map_err(|e| Error::Chart {
            chart: "data",
            cause: e.to_string(),
        })?
        .replace('<', "\\u003c");
    let _ = write!(
        out,
        "<script type=\"application/json\" id=\"report-data\">{json}</script>\n<script>{SCRIPT}</script>\n</body>\n</html>\n"
    );
    Ok(out)
}
