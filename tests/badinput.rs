//! The bad-input catalogue (issue #10): one table of bad inputs across configuration,
//! credentials, network, SQL, input files, push arguments, webhook deliveries and database
//! files. Each row runs the real binary and asserts its exit code, that its output names the
//! problem and the fix, that no secret is printed, and that nothing changed: every table of
//! every database file in the case's folder (or the bytes of any other file), the folder's
//! file list, and the simulator's mutations and data.
//!
//! One synced warehouse is the template (copied per case) and one simulator serves all rows.
//! Also here: `NO_COLOR` turns the log's colours off on a terminal.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pluvo_warehouse::sim::Sim;
use pluvo_warehouse::sim::webhooks::sign;
use tokio::io::AsyncBufReadExt;

use crate::support::{self, Run};

/// The webhook key `webhook serve` rows run with.
const KEY: &str = "catalogue-webhook-key";
/// Secrets that rows put in a file, a URL or the environment; none may be printed.
const PLANTED: &[&str] = &["hunter2-in-file", "pw-in-url-77", "wrong-secret-5150"];

/// A configuration file that works: the secret comes from the environment.
const GOOD: &str = "[pluvo]\nurl = \"{url}\"\nclient_id = \"{client_id}\"\n";

/// What the warehouse file is before the command runs.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Db {
    /// A copy of the synced template.
    Synced,
    /// No file.
    Missing,
    /// A text file where the database should be.
    Garbage,
    /// The template cut after 100 kB.
    Truncated,
    /// A DuckDB file with other tables and no `_schema`.
    Foreign,
    /// The template with a schema version from the future.
    Newer,
    /// The template, held open for writing by this process during the run.
    Locked,
    /// The template in a folder that cannot be written.
    ReadOnlyDir,
}

/// A webhook delivery posted to `webhook serve`, and the HTTP status it must get.
#[derive(Debug, Clone, Copy)]
enum Signature {
    Good,
    WrongKey,
    Missing,
}

#[derive(Debug, Clone, Copy)]
struct Delivery {
    body: &'static [u8],
    signature: Signature,
    status: u16,
}

/// One row of the catalogue. In `args`, `config`, `env` and the expectations, `{url}` is the
/// simulator, `{refused}` a port nothing listens on, `{silent}` a listener that never answers,
/// `{tls}` https:// to the simulator's plain-http port, `{dir}` the case's folder, `{pid}`
/// this process (the lock holder).
#[derive(Debug, Clone, Copy)]
struct Case {
    name: &'static str,
    /// After `--config FILE --db FILE`.
    args: &'static [&'static str],
    /// The configuration file's text; `None`: no file (while `--config` names it).
    config: Option<&'static str>,
    /// Environment beyond the client secret (an empty value unsets a variable).
    env: &'static [(&'static str, &'static str)],
    files: &'static [(&'static str, &'static [u8])],
    db: Db,
    delivery: Option<Delivery>,
    code: i32,
    /// The output (stderr, then stdout, then a webhook answer) names the problem...
    problem: &'static [&'static str],
    /// ...and what to do about it.
    fix: &'static [&'static str],
    /// Tables a failing run may legitimately write (its own run record), else none.
    may_change: &'static [&'static str],
}

const BASE: Case = Case {
    name: "",
    args: &[],
    config: Some(GOOD),
    env: &[],
    files: &[],
    db: Db::Synced,
    delivery: None,
    code: 2,
    problem: &[],
    fix: &[],
    may_change: &[],
};

const SERVE: &[&str] = &[
    "webhook",
    "serve",
    "--bind",
    "127.0.0.1:0",
    "--max-body",
    "1024",
];
const EVENT: &[u8] =
    br#"{"event":"USER_UPDATED","id":"u1","ref":"EMP0000001","sentDate":"2026-06-01T10:00:00.000Z"}"#;
const SIGNATURE_MISMATCH: &str = "`X-Signature` does not match the body";
const ARCHIVE_ALL: &[&str] = &["push", "archive-users", "--query", "SELECT ref FROM users"];
const REFS: &str = "SELECT ref FROM users ORDER BY ref LIMIT 3";

const CASES: &[Case] = &[
    // ------------------------------------------------------------------ configuration
    Case {
        name: "bench memory limit below the smallest",
        args: &["bench", "sync", "--memory-limit", "5MB"],
        problem: &["`5MB` is not a memory amount of at least 20MB"],
        fix: &["like \"64MB\""],
        ..BASE
    },
    Case {
        name: "config file missing",
        config: None,
        args: &["sync"],
        problem: &["configuration file", "not found"],
        fix: &["pluvo-warehouse init", "--config"],
        ..BASE
    },
    Case {
        name: "config file not TOML",
        config: Some("[pluvo\nurl = \"{url}\"\n"),
        args: &["sync"],
        problem: &["is not valid TOML", "line 1"],
        fix: &["expected `]`"],
        ..BASE
    },
    Case {
        name: "config key misspelt",
        config: Some("[pluvo]\nurll = \"{url}\"\n"),
        args: &["sync"],
        problem: &["unknown field `urll`"],
        fix: &["expected one of `url`"],
        ..BASE
    },
    Case {
        name: "config value of the wrong type",
        config: Some("[pluvo]\nurl = 3\n"),
        args: &["sync"],
        problem: &["invalid type: integer `3`", "line 2"],
        fix: &["expected a string"],
        ..BASE
    },
    Case {
        name: "url missing",
        config: Some("[pluvo]\nclient_id = \"{client_id}\"\n"),
        args: &["sync"],
        problem: &["`pluvo.url` is not set"],
        fix: &["export PLUVO_URL"],
        ..BASE
    },
    Case {
        name: "client id missing",
        config: Some("[pluvo]\nurl = \"{url}\"\n"),
        args: &["sync"],
        problem: &["`pluvo.client_id` is not set"],
        fix: &["export PLUVO_CLIENT_ID"],
        ..BASE
    },
    Case {
        name: "url without a scheme",
        env: &[("PLUVO_URL", "acme.pluvo.com")],
        args: &["sync"],
        problem: &[
            "from environment variable `PLUVO_URL` is invalid",
            "is not a URL",
        ],
        fix: &["expected something like https://acme.pluvo.com"],
        ..BASE
    },
    Case {
        name: "url with plain http to a remote host",
        args: &["--url", "http://acme.pluvo.com", "sync"],
        problem: &[
            "from flag `--url` is invalid",
            "would send the token unencrypted",
        ],
        fix: &["use https://"],
        ..BASE
    },
    Case {
        name: "url with plain http to a host that only starts like 127. (issue 17)",
        args: &["--url", "http://127.evil.example", "sync"],
        problem: &[
            "from flag `--url` is invalid",
            "would send the token unencrypted",
        ],
        fix: &["use https://"],
        ..BASE
    },
    Case {
        name: "url with another scheme",
        args: &["--url", "ftp://acme.pluvo.com", "sync"],
        problem: &["scheme `ftp` is not supported"],
        fix: &["use https://"],
        ..BASE
    },
    Case {
        name: "url with credentials in it",
        args: &["--url", "https://admin:pw-in-url-77@acme.pluvo.com", "sync"],
        problem: &["the URL contains credentials"],
        fix: &["PLUVO_CLIENT_SECRET"],
        ..BASE
    },
    Case {
        name: "url with a query string",
        args: &["--url", "https://acme.pluvo.com/?org=acme", "sync"],
        problem: &["has a query or fragment"],
        fix: &["give only the base URL"],
        ..BASE
    },
    Case {
        name: "url pasted as the endpoint, no trailing slash: accepted",
        args: &["--url", "{url}/graphql", "doctor"],
        code: 0,
        problem: &["{url}/oauth/token/"],
        fix: &["all checks passed"],
        ..BASE
    },
    Case {
        name: "url with a path Pluvo does not have",
        args: &["--url", "{url}/api", "sync"],
        code: 1,
        problem: &["{url}/api/oauth/token/", "refused (http 404)"],
        fix: &["is `pluvo.url` the organisation's base URL"],
        ..BASE
    },
    Case {
        name: "http timeout out of range",
        config: Some("[pluvo]\nurl = \"{url}\"\n[http]\ntimeout_secs = -1\n"),
        args: &["sync"],
        problem: &["`http.timeout_secs` from file", "is invalid"],
        fix: &["between 0 and 86400"],
        ..BASE
    },
    Case {
        name: "http attempts zero",
        config: Some("[http]\nmax_attempts = 0\n"),
        args: &["sync"],
        problem: &["`http.max_attempts`"],
        fix: &["is not between 1 and 100"],
        ..BASE
    },
    Case {
        name: "client secret in the file",
        config: Some("[pluvo]\nurl = \"{url}\"\nclient_secret = \"hunter2-in-file\"\n"),
        args: &["sync"],
        problem: &["`pluvo.client_secret` must not be in"],
        fix: &["remove it and export PLUVO_CLIENT_SECRET"],
        ..BASE
    },
    Case {
        name: "webhook key in the file",
        config: Some("[pluvo]\nwebhook_key = \"hunter2-in-file\"\n"),
        args: &["query", "SELECT 1"],
        problem: &["`pluvo.webhook_key` must not be in"],
        fix: &["export PLUVO_WEBHOOK_KEY"],
        ..BASE
    },
    Case {
        name: "unknown stream",
        args: &["sync", "--streams", "users,bogus"],
        problem: &["unknown stream `bogus`"],
        fix: &["streams are: users, portfolio"],
        ..BASE
    },
    // ------------------------------------------------------------------ credentials
    Case {
        name: "client secret not set",
        env: &[("PLUVO_CLIENT_SECRET", "")],
        args: &["sync"],
        problem: &["the client secret is not set"],
        fix: &["export PLUVO_CLIENT_SECRET"],
        ..BASE
    },
    Case {
        name: "wrong client secret (sync)",
        env: &[("PLUVO_CLIENT_SECRET", "wrong-secret-5150")],
        args: &["sync"],
        problem: &["{url}/oauth/token/", "refused: invalid client"],
        fix: &["check PLUVO_CLIENT_ID and PLUVO_CLIENT_SECRET"],
        ..BASE
    },
    Case {
        name: "wrong client id",
        env: &[("PLUVO_CLIENT_ID", "nobody")],
        args: &["sync", "--streams", "users"],
        problem: &["refused: invalid client"],
        fix: &["check PLUVO_CLIENT_ID and PLUVO_CLIENT_SECRET"],
        ..BASE
    },
    Case {
        name: "wrong client secret (push --apply stores no plan)",
        env: &[("PLUVO_CLIENT_SECRET", "wrong-secret-5150")],
        args: &["push", "archive-users", "--query", REFS, "--apply"],
        problem: &["refused: invalid client"],
        fix: &["check PLUVO_CLIENT_ID and PLUVO_CLIENT_SECRET"],
        ..BASE
    },
    Case {
        name: "scope missing for a stream",
        env: &[("PLUVO_SCOPE", "users.read")],
        args: &["sync", "--streams", "groups"],
        code: 1,
        problem: &[
            "1 of 1 streams failed",
            "stream `groups`",
            "PermissionDenied",
        ],
        fix: &["may lack a scope", "pluvo-warehouse doctor", "PLUVO_SCOPE"],
        may_change: &["_runs", "_run_streams"],
        ..BASE
    },
    // ------------------------------------------------------------------ network
    Case {
        name: "connection refused",
        args: &["--url", "{refused}", "sync"],
        code: 1,
        problem: &[
            "cannot reach `{refused}/oauth/token/`",
            "Connection refused",
        ],
        fix: &["check `pluvo.url` (PLUVO_URL, --url)"],
        ..BASE
    },
    Case {
        name: "connection refused (push --apply stores no plan)",
        args: &[
            "--url",
            "{refused}",
            "push",
            "archive-users",
            "--query",
            REFS,
            "--apply",
        ],
        code: 1,
        problem: &["cannot reach", "Connection refused"],
        fix: &["check `pluvo.url`"],
        ..BASE
    },
    Case {
        name: "server never answers",
        config: Some(
            "[pluvo]\nurl = \"{silent}\"\nclient_id = \"{client_id}\"\n[http]\ntimeout_secs = 1\nconnect_timeout_secs = 1\n",
        ),
        args: &["sync"],
        code: 1,
        problem: &[
            "cannot reach `{silent}/oauth/token/`",
            "no answer within 1s",
        ],
        fix: &["`http.timeout_secs`"],
        ..BASE
    },
    Case {
        name: "https to a plain-http server",
        args: &["--url", "{tls}", "sync"],
        code: 1,
        problem: &["TLS handshake failed"],
        fix: &["may not speak https://", "check `pluvo.url`"],
        ..BASE
    },
    // ------------------------------------------------------------------ SQL (query)
    Case {
        name: "query syntax error",
        args: &["query", "SELEC ref FROM users"],
        code: 1,
        problem: &["Parser Error", "SELEC"],
        fix: &["LINE 1"],
        ..BASE
    },
    Case {
        name: "query missing column",
        args: &["query", "SELECT nope FROM users"],
        code: 1,
        problem: &["Referenced column \"nope\" not found"],
        fix: &["Candidate bindings"],
        ..BASE
    },
    Case {
        name: "query missing table",
        args: &["query", "SELECT *\nFROM userz"],
        code: 1,
        problem: &["Table with name userz does not exist"],
        fix: &["users", "LINE 2"],
        ..BASE
    },
    Case {
        name: "query wrong type",
        args: &["query", "SELECT ref::INTEGER FROM users"],
        code: 1,
        problem: &["Could not convert string 'EMP"],
        fix: &["LINE 1"],
        ..BASE
    },
    Case {
        name: "query: a write statement between two SELECTs (issue 17)",
        args: &["query", "SELECT 1; COPY users TO 'leak.csv'; SELECT 1"],
        problem: &[
            "`query` only reads the warehouse",
            "`COPY`",
            "nothing was run",
        ],
        fix: &["Write a SELECT"],
        ..BASE
    },
    Case {
        name: "query write statement",
        args: &["query", "DELETE FROM users"],
        problem: &["`query` only reads the warehouse", "`DELETE`"],
        fix: &["Write a SELECT"],
        ..BASE
    },
    Case {
        name: "query empty result: exit 0, header only, said on stderr",
        args: &["query", "SELECT ref FROM users WHERE false"],
        code: 0,
        problem: &["The query returned no rows."],
        fix: &["ref\n"],
        ..BASE
    },
    Case {
        name: "query parameter without a value",
        args: &["query", "SELECT 1", "--param", "days"],
        problem: &["`--param days` must be NAME=VALUE"],
        fix: &["e.g. `--param days=30`"],
        ..BASE
    },
    Case {
        name: "query file missing",
        args: &["query", "--file", "{dir}/nope.sql"],
        problem: &["cannot read the SQL file `{dir}/nope.sql`", "No such file"],
        fix: &["{dir}/nope.sql"],
        ..BASE
    },
    Case {
        name: "query parquet to stdout",
        args: &["query", "SELECT 1", "--format", "parquet"],
        problem: &["Parquet is a binary file format"],
        fix: &["pass --out FILE.parquet"],
        ..BASE
    },
    // ------------------------------------------------------------------ input files (push)
    Case {
        name: "csv not utf-8",
        files: &[("people.csv", b"ref,name\nEMP0000001,Jos\xe9\n")],
        args: &[
            "push",
            "archive-users",
            "--query",
            "SELECT * FROM '{dir}/people.csv'",
        ],
        problem: &["the selection failed in DuckDB", "not utf-8 encoded"],
        fix: &["encoding="],
        ..BASE
    },
    Case {
        name: "csv with duplicate refs",
        files: &[("people.csv", b"ref\nEMP0000001\nEMP0000002\nEMP0000001\n")],
        args: &[
            "push",
            "archive-users",
            "--query",
            "SELECT * FROM '{dir}/people.csv'",
        ],
        problem: &["1 refs appear more than once", "`EMP0000001`"],
        fix: &["each user may appear once"],
        ..BASE
    },
    Case {
        name: "csv with an empty ref",
        files: &[("people.csv", b"ref,note\nEMP0000001,a\n,b\nEMP0000002,c\n")],
        args: &[
            "push",
            "archive-users",
            "--query",
            "SELECT * FROM '{dir}/people.csv'",
        ],
        problem: &["column `ref` is null or empty in 1 rows (first rows: 2)"],
        fix: &["filter them out in the SQL"],
        ..BASE
    },
    Case {
        name: "csv without a ref column",
        files: &[("people.csv", b"id,name\n1,Ann\n")],
        args: &[
            "push",
            "archive-users",
            "--query",
            "SELECT * FROM '{dir}/people.csv'",
        ],
        problem: &["needs a column `ref` in the selection, which has: id, name"],
        fix: &["rename a column with `AS ref`"],
        ..BASE
    },
    Case {
        name: "csv missing",
        args: &[
            "push",
            "archive-users",
            "--query",
            "SELECT * FROM '{dir}/nope.csv'",
        ],
        problem: &["the selection failed in DuckDB", "No files found"],
        fix: &["{dir}/nope.csv"],
        ..BASE
    },
    Case {
        name: "csv with a header only: nothing to do, no plan",
        files: &[("people.csv", b"ref\n")],
        args: &[
            "push",
            "archive-users",
            "--query",
            "SELECT * FROM '{dir}/people.csv'",
        ],
        code: 0,
        problem: &["the selection returned no rows"],
        fix: &["no plan was stored"],
        ..BASE
    },
    // ------------------------------------------------------------------ push arguments
    Case {
        name: "push unknown action",
        args: &["push", "frobnicate", "--query", "SELECT 1"],
        problem: &["unrecognized subcommand 'frobnicate'"],
        fix: &["--help"],
        ..BASE
    },
    Case {
        name: "push required argument missing",
        args: &["push", "add-to-group", "--query", "SELECT ref FROM users"],
        problem: &["required arguments were not provided"],
        fix: &["--group <GROUP>"],
        ..BASE
    },
    Case {
        name: "push unknown group",
        args: &[
            "push",
            "add-to-group",
            "--group",
            "NO-SUCH-GROUP",
            "--query",
            REFS,
        ],
        problem: &["group `NO-SUCH-GROUP` is not in the warehouse table `groups`"],
        fix: &["run `pluvo-warehouse sync` if it is new"],
        ..BASE
    },
    Case {
        name: "push unknown training",
        args: &[
            "push",
            "add-to-training",
            "--training",
            "NO-SUCH",
            "--query",
            REFS,
        ],
        problem: &["training `NO-SUCH` is not in the warehouse table `trainings`"],
        fix: &["run `pluvo-warehouse sync` if it is new"],
        ..BASE
    },
    Case {
        name: "push unknown certificate template",
        args: &[
            "push",
            "generate-certificate",
            "--certificate",
            "NO-SUCH",
            "--query",
            REFS,
        ],
        problem: &["certificate template `NO-SUCH` is not in the warehouse table `certificates`"],
        fix: &["run `pluvo-warehouse sync` if it is new"],
        ..BASE
    },
    Case {
        name: "push value column missing",
        args: &[
            "push",
            "set-extra-field",
            "--category",
            "dept",
            "--query",
            REFS,
        ],
        problem: &["`set-extra-field` needs a column `value`", "which has: ref"],
        fix: &["`AS value`"],
        ..BASE
    },
    Case {
        name: "push ref of the wrong type",
        args: &[
            "push",
            "archive-users",
            "--query",
            "SELECT last_login AS ref FROM users",
        ],
        problem: &["column `ref` is TIMESTAMP; it must be text"],
        fix: &["cast it in the SQL"],
        ..BASE
    },
    Case {
        name: "push selection fails in DuckDB",
        args: &[
            "push",
            "archive-users",
            "--query",
            "SELECT ref FROM no_such_table",
        ],
        problem: &[
            "the selection failed in DuckDB",
            "no_such_table does not exist",
        ],
        fix: &["Did you mean"],
        ..BASE
    },
    Case {
        name: "push more rows than --max-rows (the plan is kept)",
        args: &[
            "push",
            "archive-users",
            "--query",
            "SELECT ref FROM users",
            "--apply",
            "--max-rows",
            "5",
        ],
        problem: &["more than --max-rows 5; nothing was sent"],
        fix: &["pass --max-rows"],
        may_change: &["_push_plans", "_push_ledger"],
        ..BASE
    },
    Case {
        name: "push apply of an unknown plan",
        args: &["push", "apply", "999"],
        problem: &["there is no push plan 999 in this warehouse"],
        fix: &["`push status` lists the plans"],
        ..BASE
    },
    Case {
        name: "push --sql that is neither file nor SQL",
        args: &["push", "archive-users", "--sql", "{dir}/nope.sql"],
        problem: &["is neither a file nor SQL text"],
        fix: &["pass a .sql file or a query"],
        ..BASE
    },
    Case {
        name: "push parameter without a value",
        args: &["push", "archive-users", "--query", REFS, "--param", "days"],
        // The same parser (and message) as `query --param`.
        problem: &["`--param days` must be NAME=VALUE"],
        fix: &["`--param days=30`"],
        ..BASE
    },
    Case {
        name: "push on a missing warehouse",
        db: Db::Missing,
        args: ARCHIVE_ALL,
        code: 1,
        problem: &["w.duckdb` does not exist"],
        fix: &["run `pluvo-warehouse sync` first"],
        ..BASE
    },
    // ------------------------------------------------------------------ webhooks
    Case {
        name: "webhook key not set",
        env: &[("PLUVO_WEBHOOK_KEY", "")],
        args: SERVE,
        problem: &["no webhook key"],
        fix: &["set PLUVO_WEBHOOK_KEY"],
        ..BASE
    },
    Case {
        name: "webhook path without a slash",
        args: &[
            "webhook",
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--path",
            "hook",
        ],
        problem: &["`--path` must start with `/`"],
        fix: &["got `hook`"],
        ..BASE
    },
    Case {
        name: "webhook address in use",
        args: &["webhook", "serve", "--bind", "{silent_addr}"],
        code: 1,
        problem: &["cannot listen on `{silent_addr}`", "in use"],
        fix: &["pass another address or port with --bind"],
        ..BASE
    },
    Case {
        name: "webhook signed with another key",
        args: SERVE,
        delivery: Some(Delivery {
            body: EVENT,
            signature: Signature::WrongKey,
            status: 401,
        }),
        code: 0,
        problem: &["Webhook refused (401)", SIGNATURE_MISMATCH],
        fix: &["check that PLUVO_WEBHOOK_KEY is the key in Pluvo's webhook settings"],
        ..BASE
    },
    Case {
        name: "webhook without a signature",
        args: SERVE,
        delivery: Some(Delivery {
            body: EVENT,
            signature: Signature::Missing,
            status: 401,
        }),
        code: 0,
        problem: &["Webhook refused (401)", "no `X-Signature` header"],
        fix: &["PLUVO_WEBHOOK_KEY"],
        ..BASE
    },
    Case {
        name: "webhook body not JSON",
        args: SERVE,
        delivery: Some(Delivery {
            body: b"event=USER_UPDATED&id=u1",
            signature: Signature::Good,
            status: 400,
        }),
        code: 0,
        problem: &["Webhook refused (400)", "the body is not JSON"],
        fix: &["nothing was stored, the sender must fix it"],
        ..BASE
    },
    Case {
        name: "webhook body without an event",
        args: SERVE,
        delivery: Some(Delivery {
            body: br#"{"id":"u1","ref":"EMP0000001"}"#,
            signature: Signature::Good,
            status: 400,
        }),
        code: 0,
        problem: &["Webhook refused (400)", "no `event` string"],
        fix: &["the sender must fix it"],
        ..BASE
    },
    Case {
        name: "webhook body over --max-body",
        args: SERVE,
        delivery: Some(Delivery {
            body: &[b' '; 4096],
            signature: Signature::Good,
            status: 413,
        }),
        code: 0,
        problem: &["Webhook refused (413)", "length limit exceeded"],
        fix: &["raise --max-body"],
        ..BASE
    },
    // ------------------------------------------------------------------ database files
    Case {
        name: "database missing (status)",
        db: Db::Missing,
        args: &["status"],
        code: 1,
        problem: &["w.duckdb` does not exist"],
        fix: &["run `pluvo-warehouse sync` first"],
        ..BASE
    },
    Case {
        name: "database is not a DuckDB file (sync)",
        db: Db::Garbage,
        args: &["sync"],
        code: 1,
        problem: &[
            "is not a pluvo-warehouse database",
            "not a DuckDB file, or it is damaged",
        ],
        fix: &["pass another --db"],
        ..BASE
    },
    Case {
        name: "database is not a DuckDB file (query)",
        db: Db::Garbage,
        args: &["query", "SELECT 1"],
        code: 1,
        problem: &["not a DuckDB file, or it is damaged"],
        fix: &["pass another --db"],
        ..BASE
    },
    Case {
        name: "database truncated",
        db: Db::Truncated,
        args: &["status"],
        code: 1,
        problem: &["cannot open", "Could not read enough bytes"],
        fix: &[
            "restore it from a backup",
            "run `pluvo-warehouse sync` to build a new one",
        ],
        ..BASE
    },
    Case {
        name: "database of another program",
        db: Db::Foreign,
        args: &["push", "archive-users", "--query", "SELECT 'x' AS ref"],
        code: 1,
        problem: &["is not a pluvo-warehouse database", "no `_schema` table"],
        fix: &["pass another --db"],
        ..BASE
    },
    Case {
        name: "database from a newer version (status)",
        db: Db::Newer,
        args: &["status"],
        code: 1,
        problem: &["has schema version 99, this pluvo-warehouse knows up to"],
        fix: &["upgrade the tool"],
        ..BASE
    },
    Case {
        name: "database from a newer version (sync)",
        db: Db::Newer,
        args: &["sync"],
        code: 1,
        problem: &["has schema version 99"],
        fix: &["upgrade the tool"],
        ..BASE
    },
    Case {
        name: "database locked (sync)",
        db: Db::Locked,
        args: &["sync"],
        code: 1,
        problem: &["is in use by another process (PID {pid}"],
        fix: &["wait for it to finish or close it, then retry"],
        ..BASE
    },
    Case {
        name: "database locked (push --apply)",
        db: Db::Locked,
        args: &["push", "archive-users", "--query", REFS, "--apply"],
        code: 1,
        problem: &["is in use by another process (PID {pid}"],
        fix: &["wait for it to finish or close it"],
        ..BASE
    },
    Case {
        name: "database in a read-only folder (sync)",
        db: Db::ReadOnlyDir,
        args: &["sync"],
        code: 1,
        problem: &["cannot write the warehouse", "is not writable"],
        fix: &["Make the folder writable, or pass --db in a writable folder"],
        ..BASE
    },
    Case {
        name: "database in a read-only folder (push)",
        db: Db::ReadOnlyDir,
        args: &["push", "archive-users", "--query", REFS],
        code: 1,
        problem: &["cannot write the warehouse", "is not writable"],
        fix: &["Make the folder writable"],
        ..BASE
    },
    Case {
        name: "export into a read-only folder",
        db: Db::ReadOnlyDir,
        args: &["export"],
        code: 1,
        problem: &["cannot create the export folder"],
        fix: &["set `warehouse.export_dir`"],
        ..BASE
    },
];

/// What every row shares: the simulator, the synced template and the network fakes.
struct Bench {
    sim: Sim,
    template: PathBuf,
    _template_dir: tempfile::TempDir,
    refused: String,
    silent: std::net::SocketAddr,
}

impl Bench {
    async fn start() -> Bench {
        let sim = support::sim(40).await;
        let template_dir = tempfile::tempdir().unwrap();
        let template = template_dir.path().join("w.duckdb");
        support::sync(&sim, &template, false).await;
        let refused = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", listener.local_addr().unwrap())
        };
        // Accepts connections and never answers (holds them until the test ends).
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        Bench {
            sim,
            template,
            _template_dir: template_dir,
            refused,
            silent,
        }
    }

    fn fill(&self, text: &str, dir: &Path) -> String {
        text.replace("{url}", &self.sim.url())
            .replace("{client_id}", self.sim.client_id())
            .replace("{refused}", &self.refused)
            .replace("{silent_addr}", &self.silent.to_string())
            .replace("{silent}", &format!("http://{}", self.silent))
            .replace("{tls}", &self.sim.url().replace("http://", "https://"))
            .replace("{dir}", &dir.display().to_string())
            .replace("{pid}", &std::process::id().to_string())
    }

    /// The simulator's state: mutations processed and applied, changes, and all its data.
    fn sim_state(&self) -> (String, u64) {
        let c = self.sim.counters();
        let state = format!(
            "{:?} {:?} {}",
            c.mutations,
            c.applied,
            self.sim.changes().len()
        );
        (state, digest(format!("{:?}", self.sim.data()).as_bytes()))
    }
}

fn digest(bytes: &[u8]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

/// Every file under `dir`: a database by its tables' rows (table → count and digest),
/// anything else by its bytes.
fn fingerprint(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            let name = path.strip_prefix(dir).unwrap().display().to_string();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            match tables(&path) {
                Some(tables) => {
                    out.extend(tables.into_iter().map(|(t, v)| (format!("{name}:{t}"), v)))
                }
                None => {
                    out.insert(name, digest(&std::fs::read(&path).unwrap()).to_string());
                }
            }
        }
    }
    out
}

/// Each table of a DuckDB file as `count digest`, or `None` if it is not one DuckDB opens.
fn tables(path: &Path) -> Option<BTreeMap<String, String>> {
    let config = pluvo_warehouse::store::duckdb_config(duckdb::AccessMode::ReadOnly).ok()?;
    let conn = duckdb::Connection::open_with_flags(path, config).ok()?;
    let names: Vec<String> = {
        let mut stmt = conn
            .prepare("SELECT table_name FROM duckdb_tables() WHERE NOT temporary ORDER BY 1")
            .ok()?;
        stmt.query_map([], |r| r.get(0))
            .ok()?
            .collect::<Result<_, _>>()
            .ok()?
    };
    let mut out = BTreeMap::new();
    for name in names {
        let sql = format!(
            "SELECT count(*)::VARCHAR || ' ' || coalesce(md5(string_agg(t::VARCHAR, '|' ORDER BY t::VARCHAR)), '')
             FROM \"{name}\" t"
        );
        out.insert(name, conn.query_row(&sql, [], |r| r.get(0)).ok()?);
    }
    Some(out)
}

/// A folder the binary cannot write into, undone on drop. `chmod` does not stop root, so
/// then the folder is made immutable (`chattr +i`, ext4 and the like).
struct ReadOnly(PathBuf);

impl ReadOnly {
    fn new(dir: &Path) -> ReadOnly {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
        let guard = ReadOnly(dir.to_path_buf());
        if writable(dir) {
            let _ = std::process::Command::new("chattr")
                .arg("+i")
                .arg(dir)
                .status();
        }
        assert!(
            !writable(dir),
            "cannot make `{}` read-only here",
            dir.display()
        );
        guard
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .status();
        let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o755));
    }
}

fn writable(dir: &Path) -> bool {
    let probe = dir.join(".probe");
    let ok = std::fs::write(&probe, b"").is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}

/// The warehouse of a case in `dir`, as `case.db` says; returns its path.
fn prepare_db(bench: &Bench, db: Db, dir: &Path) -> PathBuf {
    let path = match db {
        Db::ReadOnlyDir => {
            std::fs::create_dir(dir.join("ro")).unwrap();
            dir.join("ro").join("w.duckdb")
        }
        _ => dir.join("w.duckdb"),
    };
    match db {
        Db::Missing => {}
        Db::Garbage => std::fs::write(&path, "ref,name\nEMP0000001,Ann\n").unwrap(),
        Db::Truncated => {
            let bytes = std::fs::read(&bench.template).unwrap();
            std::fs::write(&path, &bytes[..100_000]).unwrap();
        }
        Db::Foreign => {
            let conn = duckdb::Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE notes (id INTEGER, text VARCHAR); INSERT INTO notes VALUES (1, 'a')",
            )
            .unwrap();
        }
        Db::Synced | Db::Newer | Db::Locked | Db::ReadOnlyDir => {
            std::fs::copy(&bench.template, &path).unwrap();
        }
    }
    if db == Db::Newer {
        let conn = duckdb::Connection::open(&path).unwrap();
        conn.execute_batch("INSERT INTO _schema VALUES (99, now(), '99.0.0')")
            .unwrap();
    }
    path
}

/// Run `pluvo-warehouse webhook serve ...`, post `delivery`, stop it with SIGTERM. Returns the
/// run (its stderr followed by the HTTP answer's body) and the answer's status.
async fn serve_and_post(
    dir: &Path,
    args: &[String],
    env: &[(String, String)],
    delivery: Delivery,
) -> (Run, u16) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_pluvo-warehouse"));
    cmd.current_dir(dir)
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("PLUVO_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for var in pluvo_warehouse::config::ENV_VARS {
        cmd.env_remove(var.name);
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let mut child = cmd.spawn().expect("the binary runs");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the receiver prints its URL")
        .unwrap()
        .expect("a URL line");
    let mut request = support::http().post(&url).body(delivery.body.to_vec());
    let salt = "salt-1";
    let signature = match delivery.signature {
        Signature::Good => Some(sign(KEY, salt, delivery.body)),
        Signature::WrongKey => Some(sign("another-key", salt, delivery.body)),
        Signature::Missing => None,
    };
    request = request.header("X-Signature-Salt", salt);
    if let Some(signature) = signature {
        request = request.header("X-Signature", signature);
    }
    let answer = request.send().await.unwrap();
    let status = answer.status().as_u16();
    let body = answer.text().await.unwrap();
    // SAFETY: kill(2) on our own child's PID; it has not been waited for, so it is still ours.
    unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().await.unwrap();
    let run = Run {
        code: out.status.code(),
        stdout: url,
        stderr: format!("{}\n{body}", String::from_utf8_lossy(&out.stderr)),
    };
    (run, status)
}

/// Run one row; returns what is wrong with the outcome (empty when the row passes).
async fn check(bench: &Bench, case: &Case) -> Vec<String> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let fill = |text: &str| bench.fill(text, dir);
    let config = dir.join("pluvo-warehouse.toml");
    if let Some(text) = case.config {
        std::fs::write(&config, fill(text)).unwrap();
    }
    for (name, bytes) in case.files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let db = prepare_db(bench, case.db, dir);
    let before = (fingerprint(dir), bench.sim_state());
    let read_only = (case.db == Db::ReadOnlyDir).then(|| ReadOnly::new(db.parent().unwrap()));
    let lock =
        (case.db == Db::Locked).then(|| pluvo_warehouse::store::Warehouse::open(&db).unwrap());

    let mut args = vec![
        "--config".to_string(),
        config.display().to_string(),
        "--db".to_string(),
        db.display().to_string(),
    ];
    args.extend(case.args.iter().map(|a| fill(a)));
    let mut env = vec![
        (
            "PLUVO_CLIENT_SECRET".to_string(),
            bench.sim.client_secret().to_string(),
        ),
        ("PLUVO_WEBHOOK_KEY".to_string(), KEY.to_string()),
    ];
    for (name, value) in case.env {
        env.retain(|(n, _)| n != name);
        env.push((name.to_string(), fill(value)));
    }
    let (run, status) = match case.delivery {
        Some(delivery) => {
            let (run, status) = serve_and_post(dir, &args, &env, delivery).await;
            (run, Some((status, delivery.status)))
        }
        None => {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let env: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            (support::run_bin(dir, &args, &env).await, None)
        }
    };
    if let Some(writer) = lock {
        writer.close().unwrap();
    }
    drop(read_only);
    let after = (fingerprint(dir), bench.sim_state());

    let mut wrong = Vec::new();
    if run.code != Some(case.code) {
        wrong.push(format!("exit {:?}, expected {}", run.code, case.code));
    }
    if let Some((got, expected)) = status
        && got != expected
    {
        wrong.push(format!("HTTP {got}, expected {expected}"));
    }
    let output = format!("{}\n{}", run.stderr, run.stdout);
    for (what, expected) in [("problem", case.problem), ("fix", case.fix)] {
        for text in expected.iter().map(|t| fill(t)) {
            if !output.contains(&text) {
                wrong.push(format!("the {what} `{text}` is not named"));
            }
        }
    }
    let secrets = [bench.sim.client_secret(), KEY]
        .into_iter()
        .chain(PLANTED.iter().copied());
    for secret in secrets {
        if output.contains(secret) {
            wrong.push(format!("the secret `{secret}` is printed"));
        }
    }
    let allowed = |key: &String| {
        case.may_change
            .iter()
            .any(|t| key.ends_with(&format!(":{t}")))
    };
    let changed: std::collections::BTreeSet<&String> = before
        .0
        .keys()
        .chain(after.0.keys())
        .filter(|k| before.0.get(*k) != after.0.get(*k) && !allowed(k))
        .collect();
    if !changed.is_empty() {
        wrong.push(format!("the warehouse folder changed: {changed:?}"));
    }
    if before.1 != after.1 {
        wrong.push(format!(
            "the simulator changed: {:?} → {:?}",
            before.1, after.1
        ));
    }
    if !wrong.is_empty() {
        wrong.push(format!(
            "exit {:?}\n--- stderr\n{}\n--- stdout\n{}",
            run.code, run.stderr, run.stdout
        ));
    }
    wrong
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_10_every_bad_input_names_problem_and_fix_and_changes_nothing() {
    let bench = Bench::start().await;
    let started = Instant::now();
    let mut failures = Vec::new();
    for case in CASES {
        let wrong = check(&bench, case).await;
        if !wrong.is_empty() {
            failures.push(format!("[{}]\n  {}", case.name, wrong.join("\n  ")));
        }
    }
    eprintln!(
        "{} bad inputs checked in {:.1}s",
        CASES.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(CASES.len() >= 40, "the catalogue has {} rows", CASES.len());
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

/// `sync` of a stream the client has no scope for (a WARN line), stderr on a terminal.
async fn warning_on_a_terminal(sim: &Sim, dir: &Path, no_color: bool) -> String {
    let config = support::config_file(sim, dir);
    let (controller, terminal) = support::pty();
    let mut child = {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pluvo-warehouse"));
        cmd.arg("--config")
            .arg(&config)
            .arg("--db")
            .arg(dir.join("w.duckdb"))
            .args(["sync", "--streams", "groups"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(terminal);
        for var in pluvo_warehouse::config::ENV_VARS {
            cmd.env_remove(var.name);
        }
        cmd.env("PLUVO_CLIENT_SECRET", sim.client_secret())
            .env("PLUVO_SCOPE", "users.read")
            .env_remove("PLUVO_LOG")
            .env_remove("NO_COLOR");
        if no_color {
            cmd.env("NO_COLOR", "1");
        }
        cmd.spawn().expect("the binary starts")
    };
    let reader = support::read_terminal(controller);
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(1));
    String::from_utf8_lossy(&reader.join().unwrap()).into_owned()
}

/// An SGR (colour) sequence: ESC `[`, digits and `;`, then `m`. Cursor movements of the
/// progress bars are other escapes and do not count.
fn has_colour(screen: &str) -> bool {
    screen.split('\u{1b}').skip(1).any(|rest| {
        rest.strip_prefix('[').is_some_and(|params| {
            let end = params.trim_start_matches(|c: char| c.is_ascii_digit() || c == ';');
            end.starts_with('m')
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_color_turns_colours_off_on_a_terminal() {
    let sim = support::sim(20).await;
    let dir = tempfile::tempdir().unwrap();
    let coloured = warning_on_a_terminal(&sim, dir.path(), false).await;
    assert!(coloured.contains("Stream failed"), "{coloured:?}");
    assert!(has_colour(&coloured), "colours on a terminal: {coloured:?}");
    let plain = warning_on_a_terminal(&sim, dir.path(), true).await;
    assert!(plain.contains("Stream failed"), "{plain:?}");
    assert!(!has_colour(&plain), "NO_COLOR=1: {plain:?}");
}
