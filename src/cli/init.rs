//! `init`: write a commented `pluvo-warehouse.toml` with every key the configuration loader
//! accepts (its environment variable and default beside it), and print the OAuth scopes the
//! API client needs. Never writes a secret: the client secret and webhook key are read from
//! the environment only ([`crate::config`] refuses them in the file).

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::output::Table;
use crate::config::{
    self, DEFAULT_CONFIG_FILE, DEFAULT_DB_FILE, DEFAULT_SCOPE, ENV_VARS, Flags, HttpSettings,
    PLUVO_CLIENT_SECRET, PLUVO_WEBHOOK_KEY, PUSH_SCOPES,
};
use crate::error::{Exit, UsageError};

/// Arguments of `init`.
#[derive(Debug, Clone, Args)]
pub struct InitArgs {
    /// Where to write the configuration
    #[arg(long, default_value = DEFAULT_CONFIG_FILE)]
    pub path: PathBuf,
    /// Overwrite an existing file
    #[arg(long)]
    pub force: bool,
    /// OAuth client id to write (else a commented placeholder)
    #[arg(long)]
    pub client_id: Option<String>,
}

/// `init`: write the file (refusing to overwrite without `--force`), then print the scopes.
pub fn run(args: &InitArgs, flags: &Flags) -> Result<Exit> {
    if args.path.exists() && !args.force {
        return Err(UsageError::new(format!(
            "`{}` already exists; pass --force to overwrite it, or --path to write elsewhere",
            args.path.display()
        ))
        .into());
    }
    let text = template(flags.url.as_deref(), args.client_id.as_deref());
    std::fs::write(&args.path, text)
        .with_context(|| format!("writing `{}`", args.path.display()))?;
    println!("Wrote {}.", args.path.display());
    print!("{}", next_steps());
    Ok(Exit::Ok)
}

/// A TOML string literal.
fn quoted(value: &str) -> String {
    toml::Value::String(value.to_string()).to_string()
}

/// The default of a key as a TOML value, or `None` when it has none (or is derived).
fn default_of(key: &str) -> Option<String> {
    let http = HttpSettings::default();
    Some(match key {
        "pluvo.scope" => quoted(DEFAULT_SCOPE),
        "warehouse.db" => quoted(DEFAULT_DB_FILE),
        "warehouse.memory_limit" => quoted(crate::store::WRITER_MEMORY_LIMIT),
        "http.timeout_secs" => http.timeout.as_secs().to_string(),
        "http.connect_timeout_secs" => http.connect_timeout.as_secs().to_string(),
        "http.max_attempts" => http.max_attempts.to_string(),
        "http.max_retry_secs" => http.max_retry_time.as_secs().to_string(),
        "http.max_reply_mb" => (http.max_reply_bytes / (1024 * 1024)).to_string(),
        "warehouse.external_access" => "true".into(),
        "warehouse.export_group_readable" => "false".into(),
        _ => return None,
    })
}

/// The commented configuration file: every documented key, grouped by table. Keys with a
/// default are written with it; the others as a commented example, unless given.
pub fn template(url: Option<&str>, client_id: Option<&str>) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(
        w,
        "# pluvo-warehouse configuration (written by `pluvo-warehouse init`).\n\
         # Precedence: command-line flags > environment variables > this file > defaults.\n\
         #\n\
         # Secrets are NEVER read from this file. Set them in the environment:\n\
         #   export {}=...   ({})\n\
         #   export {}=...     ({})",
        PLUVO_CLIENT_SECRET.name,
        PLUVO_CLIENT_SECRET.doc,
        PLUVO_WEBHOOK_KEY.name,
        PLUVO_WEBHOOK_KEY.doc
    );
    let mut section = "";
    for (key, doc) in keys_in_order() {
        let (table, name) = key.split_once('.').expect("keys are table.name");
        if table != section {
            let _ = writeln!(w, "\n[{table}]");
            section = table;
        }
        let env = ENV_VARS
            .iter()
            .find(|v| v.key == Some(key))
            .map(|v| format!("env {}", v.name))
            .unwrap_or_else(|| "no environment variable".into());
        let given = match key {
            "pluvo.url" => url.map(quoted),
            "pluvo.client_id" => client_id.map(quoted),
            _ => None,
        };
        let default = default_of(key);
        let default_note = match (key, &default) {
            ("warehouse.export_dir", _) => "default: `<db name>-export` beside the database".into(),
            ("export.to", _) => {
                "no default: the snapshot is published locally only; credentials from the \
                 environment (AWS_*, GOOGLE_*, AZURE_*)"
                    .into()
            }
            (_, Some(d)) => format!("default: {d}"),
            (_, None) => "no default; required by sync, push and doctor".into(),
        };
        let _ = writeln!(w, "# {doc}\n# ({env}; {default_note})");
        match (given, default) {
            (Some(value), _) | (None, Some(value)) => {
                let _ = writeln!(w, "{name} = {value}");
            }
            (None, None) => {
                let example = match key {
                    "pluvo.url" => quoted("https://acme.pluvo.com"),
                    "pluvo.client_id" => quoted("your-client-id"),
                    "export.to" => quoted("s3://my-bucket/pluvo"),
                    _ => quoted("pluvo-export"),
                };
                let _ = writeln!(w, "# {name} = {example}");
            }
        }
    }
    out
}

/// The documented keys, `[pluvo]` first, then `[warehouse]`, `[export]` and `[http]`.
fn keys_in_order() -> Vec<(&'static str, &'static str)> {
    let keys = config::documented_keys();
    ["pluvo.", "warehouse.", "export.", "http."]
        .iter()
        .flat_map(|table| {
            keys.iter()
                .filter(move |(k, _)| k.starts_with(*table))
                .map(|(k, d)| (*k, *d))
        })
        .collect()
}

/// What to do after `init`: the secret, the scopes to grant, then `doctor`.
pub fn next_steps() -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(
        w,
        "\nSet the client secret in the environment (never in the file):\n  export {}=...",
        PLUVO_CLIENT_SECRET.name
    );
    let _ = writeln!(
        w,
        "\nOAuth scopes the API client needs (grant them in Pluvo; `pluvo.scope` requests them):"
    );
    let mut table = Table::new(&["scope", "used by"]);
    let stream_scopes: Vec<(&str, &'static str)> = crate::streams::ALL
        .iter()
        .map(|s| (s.name, s.scope))
        .collect();
    for (scope, users) in grouped(&stream_scopes, "sync ")
        .into_iter()
        .chain(grouped(PUSH_SCOPES, "push: "))
    {
        table.row([scope.to_string(), users]);
    }
    for line in table.to_string().lines() {
        let _ = writeln!(w, "  {line}");
    }
    let _ = writeln!(
        w,
        "  (portfolio and certificates: assumed `trainings.read`, not documented by Pluvo)"
    );
    let _ = writeln!(w, "\n{}", scopes_per_command());
    let _ = writeln!(w, "Then check everything with: pluvo-warehouse doctor");
    out
}

/// Which scopes each command requests (also printed by `doctor`).
pub fn scopes_per_command() -> String {
    let mut table = Table::new(&["command", "scopes requested"]);
    table
        .row([
            "sync, doctor, webhook serve --refresh",
            crate::config::READ_SCOPE,
        ])
        .row(["push", DEFAULT_SCOPE])
        .row([
            "query, export, status, views, webhook serve",
            "none (no API call)",
        ]);
    let mut out = "Scopes each command requests (the configured `pluvo.scope` less its *.write \
                   scopes for the reading ones):\n"
        .to_string();
    for line in table.to_string().lines() {
        let _ = writeln!(out, "  {line}");
    }
    out
}

/// `(what, scope)` pairs → one line per scope, in first-seen order: `sync users, portfolio`.
fn grouped(pairs: &[(&str, &'static str)], prefix: &str) -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, Vec<&str>)> = Vec::new();
    for (what, scope) in pairs {
        match out.iter_mut().find(|(s, _)| *s == *scope) {
            Some((_, users)) => users.push(*what),
            None => out.push((*scope, vec![*what])),
        }
    }
    out.into_iter()
        .map(|(scope, users)| (scope, format!("{prefix}{}", users.join(", "))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawConfig;

    #[test]
    fn every_documented_key_is_in_the_template_and_accepted_when_uncommented() {
        let text = template(None, None);
        let uncommented: String = text
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest)
                    if rest
                        .split_once(" = ")
                        .is_some_and(|(k, _)| !k.contains(' ')) =>
                {
                    rest
                }
                _ => l,
            })
            .map(|l| format!("{l}\n"))
            .collect();
        // `deny_unknown_fields`: an unknown key would fail here.
        let raw: RawConfig = toml::from_str(&uncommented).expect("the template parses");
        assert_eq!(raw.pluvo.url.as_deref(), Some("https://acme.pluvo.com"));
        assert_eq!(raw.pluvo.client_id.as_deref(), Some("your-client-id"));
        assert_eq!(
            raw.warehouse.export_dir,
            Some(PathBuf::from("pluvo-export"))
        );
        assert!(raw.pluvo.client_secret.is_none() && raw.pluvo.webhook_key.is_none());
        for key in config::documented_keys().keys() {
            let name = key.split_once('.').unwrap().1;
            assert!(
                text.contains(&format!("{name} = ")),
                "`{key}` missing:\n{text}"
            );
        }
        assert!(text.contains("env PLUVO_URL") && text.contains("env PLUVO_DB"));
    }

    #[test]
    fn scopes_are_listed_per_stream_and_push_operation() {
        let text = next_steps();
        // One row per scope: the scope, then who uses it.
        let row = |scope: &str, users: &str| {
            text.lines().any(|l| {
                l.trim()
                    .strip_prefix(scope)
                    .is_some_and(|rest| rest.starts_with(' ') && rest.trim() == users)
            })
        };
        assert!(row("users.read", "sync users"), "{text}");
        assert!(
            row("trainings.read", "sync portfolio, certificates, trainings"),
            "{text}"
        );
        assert!(
            row(
                "groups.write",
                "push: addUsersToGroup, removeUsersFromGroup"
            ),
            "{text}"
        );
    }
}
