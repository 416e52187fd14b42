//! `doctor`: checks, in order, what a sync needs — the configuration, the token endpoint,
//! the credentials, the scope of every stream (one `first: 1` query each) and the database
//! file — each `ok` or `FAIL` with a one-line fix (`cli/doctor.rs` prints them). The scope
//! probes come from the stream registry ([`crate::streams::ALL`]). Every organisation of
//! `[orgs]` is checked the same way, its checks named `NAME: …`; a file of only `[orgs]` has
//! no `[pluvo]` organisation to check.
//!
//! It goes through the same [`Client`] as `sync` (so it sees what a sync would see) and opens
//! the warehouse read-only; it writes nothing anywhere. Later checks that depend on a failed
//! one are shown as `skip`.

use serde_json::{Value, json};

use crate::api::{Client, ClientOptions, Error as ApiError};
use crate::config::{ApiConfig, Config, Flags, redact_url};
use crate::store::{StoreError, Warehouse};

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Ok(String),
    Fail {
        problem: String,
        fix: String,
    },
    /// Not run because an earlier check failed.
    Skip(String),
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub verdict: Verdict,
}

impl Check {
    fn ok(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            verdict: Verdict::Ok(detail.into()),
        }
    }
    fn fail(name: impl Into<String>, problem: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            verdict: Verdict::Fail {
                problem: problem.into(),
                fix: fix.into(),
            },
        }
    }
    fn skip(name: impl Into<String>, why: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            verdict: Verdict::Skip(why.into()),
        }
    }
    pub fn is_ok(&self) -> bool {
        matches!(self.verdict, Verdict::Ok(_))
    }
}

/// A configuration that does not load: its failure, and the API check it rules out.
fn unusable_configuration(problem: String, fix: &'static str) -> [Check; 2] {
    [
        Check::fail("configuration", problem, fix),
        Check::skip("api", "needs the configuration"),
    ]
}

/// Every check, in order, with the environment injected (tests).
pub async fn check_all(flags: &Flags, env: impl Fn(&str) -> Option<String>) -> Vec<Check> {
    let mut checks = Vec::new();
    let config = match Config::load_with(flags, env) {
        Ok(config) => config,
        Err(err) => {
            checks.extend(unusable_configuration(
                err.to_string(),
                "fix the key named above (`pluvo-warehouse init` writes a commented file)",
            ));
            checks.push(Check::skip("database", "needs the configuration"));
            return checks;
        }
    };
    let file = if config.file.exists() {
        format!("file `{}`", config.file.display())
    } else {
        format!(
            "no file `{}` (environment and defaults)",
            config.file.display()
        )
    };
    if !config.has_url() && !config.orgs.is_empty() {
        // Only `[orgs]`: there is no `[pluvo]` organisation to check, only those.
        checks.push(Check::ok(
            "configuration",
            format!("{file}; organisations {}", config.org_names().join(", ")),
        ));
    } else {
        check_organisation(&config, &file, &mut checks).await;
    }
    for name in config.org_names() {
        let mut org_checks = Vec::new();
        match config.org(&name) {
            Ok(org) => check_organisation(&org, &file, &mut org_checks).await,
            Err(err) => org_checks.extend(unusable_configuration(
                err.to_string(),
                "set it as the message says (docs/configuration.md, \"Several organisations\")",
            )),
        }
        checks.extend(org_checks.into_iter().map(|c| Check {
            name: format!("{name}: {}", c.name),
            ..c
        }));
    }
    checks
}

/// The checks of one organisation (`[pluvo]` or one of `[orgs]`): its configuration, its API
/// and its warehouse file.
async fn check_organisation(config: &Config, file: &str, checks: &mut Vec<Check>) {
    match config.api(crate::config::Access::Read) {
        Ok(api) => {
            checks.push(Check::ok(
                "configuration",
                format!(
                    "{file}; url {}, client_id `{}`",
                    redact_url(&api.base_url),
                    api.client_id
                ),
            ));
            check_api(&api, checks).await;
        }
        Err(err) => {
            checks.push(Check::fail(
                "configuration",
                err.to_string(),
                "set it as the message says (`pluvo-warehouse init` writes a commented file)",
            ));
            checks.push(Check::skip(
                "api",
                "needs `pluvo.url`, client id and secret",
            ));
        }
    }
    checks.push(check_database(config));
}

/// Token endpoint, credentials, then one query per stream. The first query fetches the token,
/// so its error tells which of the three failed.
async fn check_api(api: &ApiConfig, checks: &mut Vec<Check>) {
    let token_url = redact_url(&api.token_url());
    let client = match Client::new(
        api,
        ClientOptions {
            concurrency: 1,
            ..ClientOptions::default()
        },
    ) {
        Ok(client) => client,
        Err(err) => {
            checks.push(Check::fail(
                "token endpoint",
                err.to_string(),
                "report this: the HTTP client could not be built",
            ));
            return;
        }
    };
    let mut token_checked = false;
    for spec in crate::streams::ALL {
        let (stream, scope) = (spec.name, spec.scope);
        let name = format!("scope for {stream}");
        let result = client
            .query::<Value>(spec.probe, json!({ "first": 1 }))
            .await;
        if !token_checked {
            match token_failure(&result, api, &token_url) {
                Some(mut failed) => {
                    checks.append(&mut failed);
                    checks.push(Check::skip("scopes", "needs a token"));
                    return;
                }
                None => {
                    token_checked = true;
                    checks.push(Check::ok(
                        "token endpoint",
                        format!("`{token_url}` answered"),
                    ));
                    checks.push(Check::ok(
                        "credentials",
                        format!("client_id `{}` got a token", api.client_id),
                    ));
                }
            }
        }
        checks.push(match result {
            Ok(_) => Check::ok(name, format!("`{scope}` granted")),
            Err(ApiError::GraphQl { errors, .. })
                if errors.iter().any(|e| {
                    e.code() == Some("PermissionDenied") || e.message.contains("permission")
                }) =>
            {
                Check::fail(
                    name,
                    format!(
                        "stream `{stream}` was refused: its queries need scope `{scope}` ({})",
                        errors[0].message
                    ),
                    if api.scope.split_whitespace().any(|s| s == scope) {
                        format!(
                            "grant `{scope}` to client `{}` in Pluvo's API settings",
                            api.client_id
                        )
                    } else {
                        format!(
                            "add `{scope}` to pluvo.scope or PLUVO_SCOPE (requested: {}) and grant it to client `{}` in Pluvo",
                            api.scope, api.client_id
                        )
                    },
                )
            }
            Err(err) => Check::fail(
                name,
                format!("stream `{stream}`: {err}"),
                "see the message; `pluvo-warehouse -v doctor` shows each request",
            ),
        });
    }
}

/// When the first query failed before it reached GraphQL: the failed token-endpoint or
/// credentials check (and the ones after it, skipped).
fn token_failure(
    result: &Result<Value, ApiError>,
    api: &ApiConfig,
    token_url: &str,
) -> Option<Vec<Check>> {
    let reachable = Check::ok("token endpoint", format!("`{token_url}` answered"));
    let err = result.as_ref().err()?;
    Some(match err {
        ApiError::Unreachable { url, reason, .. } => vec![
            Check::fail(
                "token endpoint",
                format!("cannot reach `{url}`: {reason}"),
                "check pluvo.url / PLUVO_URL (the organisation's base URL, e.g. https://acme.pluvo.com), the network, proxy and TLS",
            ),
            Check::skip("credentials", "needs the token endpoint"),
        ],
        ApiError::InvalidClient { detail, .. }
        | ApiError::CredentialsRejected { reason: detail, .. } => vec![
            reachable,
            Check::fail(
                "credentials",
                format!(
                    "the token endpoint rejected client_id `{}` ({detail})",
                    api.client_id
                ),
                if api.credentials == crate::config::DEFAULT_CREDENTIALS {
                    "check PLUVO_CLIENT_SECRET (and pluvo.client_id / PLUVO_CLIENT_ID)".to_string()
                } else {
                    format!("check {}", api.credentials)
                },
            ),
        ],
        ApiError::Token { reason, .. } if reason.contains("invalid_scope") => vec![
            reachable,
            Check::fail(
                "credentials",
                format!(
                    "the token endpoint refused the requested scopes `{}` for client_id `{}` ({reason})",
                    api.scope, api.client_id
                ),
                "request only the scopes the client is granted (pluvo.scope / PLUVO_SCOPE), or grant the missing ones in Pluvo; `pluvo-warehouse init` lists which each stream needs",
            ),
        ],
        ApiError::Token { url, reason } => vec![
            Check::fail(
                "token endpoint",
                format!("`{url}` did not issue a token: {reason}"),
                "check pluvo.url / PLUVO_URL: it must be the organisation's base URL, e.g. https://acme.pluvo.com",
            ),
            Check::skip("credentials", "needs the token endpoint"),
        ],
        _ => return None,
    })
}

/// The database file: absent is fine; locked, newer or foreign is not.
fn check_database(config: &Config) -> Check {
    let path = &config.db;
    if !path.exists() {
        return Check::ok(
            "database",
            format!(
                "`{}` does not exist yet; the first sync will create it",
                path.display()
            ),
        );
    }
    match Warehouse::open_read_only(path) {
        Ok(warehouse) => {
            let last = crate::status::collect(&warehouse)
                .ok()
                .and_then(|s| s.last_run)
                .map(|r| format!(", last run {} {} at {}", r.run_id, r.status, r.started_at))
                .unwrap_or_default();
            Check::ok(
                "database",
                format!(
                    "`{}`: schema version {}{last}",
                    path.display(),
                    warehouse.schema_version()
                ),
            )
        }
        Err(err) => {
            let fix = match &err {
                StoreError::Locked { pid: Some(pid), .. } => format!(
                    "wait for process {pid} (a running sync?) to finish, or stop it; the file has one user at a time"
                ),
                StoreError::Locked { pid: None, .. } => {
                    "wait for the other process to finish, or stop it".into()
                }
                StoreError::NewerSchema { .. } => {
                    "upgrade pluvo-warehouse, or point --db / PLUVO_DB at another file".into()
                }
                StoreError::Foreign { .. } => {
                    "point --db / PLUVO_DB (or warehouse.db) at a pluvo-warehouse file, or a path that does not exist yet".into()
                }
                _ => "check the file's permissions, or point --db / PLUVO_DB at another file".into(),
            };
            Check::fail("database", err.to_string(), fix)
        }
    }
}
