//! Configuration: `pluvo-warehouse.toml` + `PLUVO_*` environment + flags → validated settings.
//!
//! Precedence is flags > environment > file > defaults. Every value remembers where it came
//! from, so an error names the key *and* the file or variable to fix. Secrets (client secret,
//! webhook key) are read only from the environment and live in [`Secret`], which never prints.
//! This module reads files and the environment; it does no network or database work.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

/// A documented environment variable and the config key it overrides.
#[derive(Debug, Clone, Copy)]
pub struct EnvVar {
    pub name: &'static str,
    /// The TOML key it overrides, or `None` for secrets (environment only).
    pub key: Option<&'static str>,
    pub doc: &'static str,
}

pub const PLUVO_URL: EnvVar = EnvVar {
    name: "PLUVO_URL",
    key: Some("pluvo.url"),
    doc: "Base URL of the organisation, e.g. https://acme.pluvo.com",
};
pub const PLUVO_CLIENT_ID: EnvVar = EnvVar {
    name: "PLUVO_CLIENT_ID",
    key: Some("pluvo.client_id"),
    doc: "OAuth client id of the API client",
};
pub const PLUVO_CLIENT_SECRET: EnvVar = EnvVar {
    name: "PLUVO_CLIENT_SECRET",
    key: None,
    doc: "OAuth client secret (environment only, never in the file)",
};
pub const PLUVO_SCOPE: EnvVar = EnvVar {
    name: "PLUVO_SCOPE",
    key: Some("pluvo.scope"),
    doc: "Space-separated OAuth scopes to request",
};
pub const PLUVO_WEBHOOK_KEY: EnvVar = EnvVar {
    name: "PLUVO_WEBHOOK_KEY",
    key: None,
    doc: "Webhook signing key (environment only)",
};
pub const PLUVO_DB: EnvVar = EnvVar {
    name: "PLUVO_DB",
    key: Some("warehouse.db"),
    doc: "DuckDB warehouse file (flag --db)",
};
pub const PLUVO_CONFIG: EnvVar = EnvVar {
    name: "PLUVO_CONFIG",
    key: None,
    doc: "Configuration file (flag --config)",
};

/// Every environment variable the tool reads; the README table lists exactly these.
pub const ENV_VARS: &[EnvVar] = &[
    PLUVO_URL,
    PLUVO_CLIENT_ID,
    PLUVO_CLIENT_SECRET,
    PLUVO_SCOPE,
    PLUVO_WEBHOOK_KEY,
    PLUVO_DB,
    PLUVO_CONFIG,
];

/// Scopes requested when none are configured: everything the streams and actions use.
/// Assumed (pluvo-api.md): the portfolio report and certificates need `trainings.read`.
pub const DEFAULT_SCOPE: &str = "users.read users.write trainings.read trainings.write \
     events.read events.write groups.read groups.write extra_categories.write";

/// Scopes `sync`, `doctor` and `webhook serve --refresh` request when none are configured:
/// only reading ones. Write scopes are requested by `push` alone, so a sync-only deployment
/// never holds a token that can archive users. Every stream's scope is in here (a test in
/// `streams` checks).
pub const READ_SCOPE: &str = "users.read trainings.read groups.read";

/// What a command does with the API, and so which scopes it requests ([`Config::api`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `sync`, `doctor`, `webhook serve --refresh`: [`READ_SCOPE`], or the configured scopes
    /// less every `*.write` one.
    Read,
    /// `push`: [`DEFAULT_SCOPE`], or the configured scopes as they are.
    Write,
}

/// The scope each write-back operation needs (`push`), by GraphQL field.
pub const PUSH_SCOPES: &[(&str, &str)] = &[
    ("updateOrCreateUser", "users.write"),
    ("updateExtraCategoryValues", "extra_categories.write"),
    ("addUsersToGroup", "groups.write"),
    ("removeUsersFromGroup", "groups.write"),
    ("addUsersToTraining", "trainings.write"),
    ("generateCertificate", "trainings.write"),
    ("offerEvent", "events.read"),
    ("createOfferEventEnrollments", "events.write"),
];

pub const DEFAULT_CONFIG_FILE: &str = "pluvo-warehouse.toml";
pub const DEFAULT_DB_FILE: &str = "pluvo.duckdb";

/// A secret string: `Debug` and `Display` print `***`; read it with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret itself: only for the request that needs it, never for a log line.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where a value came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    Env(&'static str),
    Flag(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("the default"),
            Source::File(path) => write!(f, "file `{}`", path.display()),
            Source::Env(name) => write!(f, "environment variable `{name}`"),
            Source::Flag(name) => write!(f, "flag `{name}`"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "configuration file `{}` not found; create one with `pluvo-warehouse init` or pass --config", path.display()
    )]
    FileMissing { path: PathBuf },
    #[error("cannot read configuration file `{}`: {cause}", path.display())]
    FileRead {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("configuration file `{}` is not valid TOML: {message}", path.display())]
    FileSyntax { path: PathBuf, message: String },
    #[error("`{key}` is not set; set it in `{file}` or export {env}")]
    Missing {
        key: &'static str,
        file: String,
        env: &'static str,
    },
    #[error(
        "the client secret is not set; export {env} (it is read only from the environment, never from the file)"
    )]
    SecretMissing { env: &'static str },
    #[error("`{key}` from {origin} is invalid: {problem}")]
    Invalid {
        key: &'static str,
        origin: Source,
        problem: String,
    },
    #[error(
        "`{key}` must not be in `{}`: secrets are read only from the environment; remove it and export {env}", path.display()
    )]
    SecretInFile {
        key: &'static str,
        path: PathBuf,
        env: &'static str,
    },
}

/// The file as written: every field optional, unknown keys rejected.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub pluvo: RawPluvo,
    #[serde(default)]
    pub warehouse: RawWarehouse,
    #[serde(default)]
    pub http: RawHttp,
    #[serde(default)]
    pub push: RawPush,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPluvo {
    pub url: Option<String>,
    pub client_id: Option<String>,
    pub scope: Option<String>,
    /// Only present so that a secret in the file gets a helpful error instead of "unknown key".
    pub client_secret: Option<toml::Value>,
    pub webhook_key: Option<toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWarehouse {
    pub db: Option<PathBuf>,
    pub export_dir: Option<PathBuf>,
    pub memory_limit: Option<String>,
    /// Largest share (0 < x <= 1) of a table's rows one sync may mark deleted without
    /// `--accept-deletes` (default 0.25).
    pub max_delete_share: Option<f64>,
    pub external_access: Option<bool>,
    pub export_group_readable: Option<bool>,
}

/// Write-back knobs.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPush {
    /// Seconds after which a row of a non-repeatable mutation whose answer was lost may be
    /// looked up and settled by `push resume` (default 300).
    pub settle_after_secs: Option<f64>,
}

/// HTTP knobs of the API client.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub timeout_secs: Option<f64>,
    pub connect_timeout_secs: Option<f64>,
    pub max_attempts: Option<u32>,
    pub max_retry_secs: Option<f64>,
    pub max_reply_mb: Option<f64>,
}

/// Values given on the command line; they win over everything else.
#[derive(Debug, Default, Clone)]
pub struct Flags {
    pub config: Option<PathBuf>,
    pub db: Option<PathBuf>,
    pub url: Option<String>,
}

/// The loaded configuration. Values needed only by some commands (the API settings) are
/// resolved on demand by [`Config::api`], so `query` works without Pluvo credentials.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    pub db: PathBuf,
    pub export_dir: PathBuf,
    /// DuckDB's memory cap during `sync` (`warehouse.memory_limit`), e.g. `"32MB"`.
    pub memory_limit: String,
    /// Largest share of a table's rows one sync may mark deleted (`warehouse.max_delete_share`).
    pub max_delete_share: f64,
    /// When `push resume` may look up rows of a non-repeatable mutation whose answer was lost
    /// (`push.settle_after_secs`).
    pub settle_after: Duration,
    /// `warehouse.external_access`: whether `query` and push selections may read files
    /// (`'people.csv'`) and URLs beside the warehouse. Off for shared deployments.
    pub external_access: bool,
    /// `warehouse.export_group_readable`: export folders 0750 and files 0640 (a BI service
    /// account in the group reads them) instead of 0700 and 0600.
    pub export_group_readable: bool,
    url: Option<(String, Source)>,
    client_id: Option<(String, Source)>,
    client_secret: Option<Secret>,
    scope: (String, Source),
    webhook_key: Option<Secret>,
    http: HttpSettings,
}

/// Timeouts and retry bounds of the API client.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub max_attempts: u32,
    pub max_retry_time: Duration,
    /// Largest answer body read, in bytes after gzip decoding (`http.max_reply_mb`).
    pub max_reply_bytes: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            max_attempts: 8,
            max_retry_time: Duration::from_secs(300),
            // A page is 50 rows (tens of kB); 32 MB is far beyond any honest answer and
            // bounds what a compression bomb or a runaway server can make us hold.
            max_reply_bytes: 32 * 1024 * 1024,
        }
    }
}

/// Everything the API client needs, validated.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Base URL without a trailing slash, e.g. `https://acme.pluvo.com`.
    pub base_url: Url,
    pub client_id: String,
    pub client_secret: Secret,
    pub scope: String,
    pub http: HttpSettings,
}

impl ApiConfig {
    /// `{base}/graphql/` (the trailing slash is required by Pluvo).
    pub fn graphql_url(&self) -> Url {
        join(&self.base_url, "graphql/")
    }
    /// `{base}/oauth/token/`.
    pub fn token_url(&self) -> Url {
        join(&self.base_url, "oauth/token/")
    }
}

fn join(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let joined = format!("{}/{}", base.path().trim_end_matches('/'), path);
    url.set_path(&joined);
    url
}

impl Config {
    /// Load from the file named by flags (or the default), the process environment and flags.
    pub fn load(flags: &Flags) -> Result<Config, ConfigError> {
        Self::load_with(flags, |name| std::env::var(name).ok())
    }

    /// As [`Config::load`], with the environment injected (for tests).
    pub fn load_with(
        flags: &Flags,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let env = |var: EnvVar| env(var.name).filter(|v| !v.trim().is_empty());
        let (file, explicit) = match (&flags.config, env(PLUVO_CONFIG)) {
            (Some(path), _) => (path.clone(), true),
            (None, Some(path)) => (PathBuf::from(path), true),
            (None, None) => (PathBuf::from(DEFAULT_CONFIG_FILE), false),
        };
        let raw = read_file(&file, explicit)?;
        let from_file = Source::File(file.clone());

        if raw.pluvo.client_secret.is_some() {
            return Err(ConfigError::SecretInFile {
                key: "pluvo.client_secret",
                path: file,
                env: PLUVO_CLIENT_SECRET.name,
            });
        }
        if raw.pluvo.webhook_key.is_some() {
            return Err(ConfigError::SecretInFile {
                key: "pluvo.webhook_key",
                path: file,
                env: PLUVO_WEBHOOK_KEY.name,
            });
        }

        let pick =
            |flag: Option<(String, &'static str)>, var: EnvVar, file_value: Option<String>| {
                flag.map(|(v, name)| (v, Source::Flag(name)))
                    .or_else(|| env(var).map(|v| (v, Source::Env(var.name))))
                    .or_else(|| file_value.map(|v| (v, from_file.clone())))
            };

        // Paths in the file are relative to the file (the configuration travels with its
        // folder); flags and environment variables to the current folder, as in a shell.
        let beside_file = |path: &Path| match file.parent() {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path.to_path_buf(),
        };
        let db = pick(
            flags.db.as_ref().map(|p| (p.display().to_string(), "--db")),
            PLUVO_DB,
            raw.warehouse.db.as_ref().map(|p| p.display().to_string()),
        )
        .map(|(v, source)| match source {
            Source::File(_) => beside_file(Path::new(&v)),
            _ => PathBuf::from(v),
        })
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DB_FILE));
        let export_dir = raw
            .warehouse
            .export_dir
            .as_deref()
            .map(beside_file)
            .unwrap_or_else(|| default_export_dir(&db));

        let url = pick(
            flags.url.clone().map(|u| (u, "--url")),
            PLUVO_URL,
            raw.pluvo.url,
        );
        let client_id = pick(None, PLUVO_CLIENT_ID, raw.pluvo.client_id);
        let scope = pick(None, PLUVO_SCOPE, raw.pluvo.scope)
            .unwrap_or_else(|| (DEFAULT_SCOPE.to_string(), Source::Default));

        let http = resolve_http(&raw.http, &from_file)?;
        let memory_limit = match raw.warehouse.memory_limit {
            None => crate::store::WRITER_MEMORY_LIMIT.to_string(),
            Some(text) => parse_memory_limit(&text).ok_or_else(|| ConfigError::Invalid {
                key: "warehouse.memory_limit",
                origin: from_file.clone(),
                problem: format!(
                    "`{text}` is not an amount of memory of at least 20MB, like \"64MB\" or \"1GB\""
                ),
            })?,
        };
        let max_delete_share = match raw.warehouse.max_delete_share {
            None => crate::store::MAX_DELETE_SHARE,
            Some(share) if share > 0.0 && share <= 1.0 => share,
            Some(share) => {
                return Err(ConfigError::Invalid {
                    key: "warehouse.max_delete_share",
                    origin: from_file.clone(),
                    problem: format!(
                        "`{share}` is not a share of a table above 0 and at most 1, like 0.25"
                    ),
                });
            }
        };
        let settle_after = match raw.push.settle_after_secs {
            None => crate::push::apply::SETTLE_AFTER,
            Some(secs) if secs.is_finite() && (0.0..=7.0 * 86_400.0).contains(&secs) => {
                Duration::from_secs_f64(secs)
            }
            Some(secs) => {
                return Err(ConfigError::Invalid {
                    key: "push.settle_after_secs",
                    origin: from_file.clone(),
                    problem: format!(
                        "`{secs}` is not a number of seconds from 0 to 604800 (a week)"
                    ),
                });
            }
        };
        Ok(Config {
            file,
            db,
            export_dir,
            memory_limit,
            max_delete_share,
            settle_after,
            external_access: raw.warehouse.external_access.unwrap_or(true),
            export_group_readable: raw.warehouse.export_group_readable.unwrap_or(false),
            url,
            client_id,
            client_secret: env(PLUVO_CLIENT_SECRET).map(Secret),
            scope,
            webhook_key: env(PLUVO_WEBHOOK_KEY).map(Secret),
            http,
        })
    }

    /// The API settings for a command that reads or writes ([`Access`]), or an error naming
    /// the first missing or invalid one.
    pub fn api(&self, access: Access) -> Result<ApiConfig, ConfigError> {
        let file = self.file.display().to_string();
        let (url, url_source) = self.url.clone().ok_or(ConfigError::Missing {
            key: "pluvo.url",
            file: file.clone(),
            env: PLUVO_URL.name,
        })?;
        let base_url = parse_base_url(&url).map_err(|problem| ConfigError::Invalid {
            key: "pluvo.url",
            origin: url_source,
            problem,
        })?;
        let (client_id, _) = self.client_id.clone().ok_or(ConfigError::Missing {
            key: "pluvo.client_id",
            file: file.clone(),
            env: PLUVO_CLIENT_ID.name,
        })?;
        let client_secret = self
            .client_secret
            .clone()
            .ok_or(ConfigError::SecretMissing {
                env: PLUVO_CLIENT_SECRET.name,
            })?;
        let (scope, scope_source) = self.scope.clone();
        if scope.split_whitespace().next().is_none() {
            return Err(ConfigError::Invalid {
                key: "pluvo.scope",
                origin: scope_source,
                problem: "no scope given; use space-separated scopes like `users.read`".into(),
            });
        }
        let scope = match (access, &scope_source) {
            (Access::Read, Source::Default) => READ_SCOPE.to_string(),
            (Access::Read, _) => {
                let read: Vec<&str> = scope
                    .split_whitespace()
                    .filter(|s| !s.ends_with(".write"))
                    .collect();
                if read.is_empty() {
                    return Err(ConfigError::Invalid {
                        key: "pluvo.scope",
                        origin: scope_source,
                        problem: format!(
                            "`{scope}` has only write scopes; reading needs e.g. `{READ_SCOPE}`"
                        ),
                    });
                }
                read.join(" ")
            }
            (Access::Write, _) => scope,
        };
        Ok(ApiConfig {
            base_url,
            client_id,
            client_secret,
            scope: scope.split_whitespace().collect::<Vec<_>>().join(" "),
            http: self.http.clone(),
        })
    }

    /// The webhook signing key, if configured.
    pub fn webhook_key(&self) -> Option<&Secret> {
        self.webhook_key.as_ref()
    }
}

/// Export folder beside the database: `pluvo.duckdb` → `pluvo-export/`.
fn default_export_dir(db: &Path) -> PathBuf {
    let stem = db
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "pluvo".into());
    db.with_file_name(format!("{stem}-export"))
}

fn read_file(path: &Path, explicit: bool) -> Result<RawConfig, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            return Ok(RawConfig::default());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ConfigError::FileMissing {
                path: path.to_path_buf(),
            });
        }
        Err(source) => {
            return Err(ConfigError::FileRead {
                path: path.to_path_buf(),
                cause: source,
            });
        }
    };
    toml::from_str(&text).map_err(|e| ConfigError::FileSyntax {
        path: path.to_path_buf(),
        message: e.to_string().trim().replace('\n', " "),
    })
}

/// A memory amount as DuckDB's `memory_limit` takes it (`"64MB"`, `"1.5 GB"`), normalised to
/// `<number><unit>`; `None` unless it is at least 20 MB: below that DuckDB's fixed working set
/// (a block per thread and partition, the staged page group) does not fit, and a 5k-user sync
/// ran out of memory at 16 MB (issue 19).
fn parse_memory_limit(text: &str) -> Option<String> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let unit = unit.trim().to_ascii_uppercase();
    let mb = match unit.as_str() {
        "MB" | "MIB" => number,
        "GB" | "GIB" => number * 1024.0,
        _ => return None,
    };
    (mb.is_finite() && mb >= 20.0).then(|| format!("{number}{unit}"))
}

fn resolve_http(raw: &RawHttp, source: &Source) -> Result<HttpSettings, ConfigError> {
    let defaults = HttpSettings::default();
    let secs = |key: &'static str, value: Option<f64>, default: Duration| match value {
        None => Ok(default),
        Some(v) if v.is_finite() && v > 0.0 && v < 86_400.0 => Ok(Duration::from_secs_f64(v)),
        Some(v) => Err(ConfigError::Invalid {
            key,
            origin: source.clone(),
            problem: format!("{v} is not a number of seconds between 0 and 86400"),
        }),
    };
    let max_attempts = match raw.max_attempts {
        None => defaults.max_attempts,
        Some(n @ 1..=100) => n,
        Some(n) => {
            return Err(ConfigError::Invalid {
                key: "http.max_attempts",
                origin: source.clone(),
                problem: format!("{n} is not between 1 and 100"),
            });
        }
    };
    Ok(HttpSettings {
        timeout: secs("http.timeout_secs", raw.timeout_secs, defaults.timeout)?,
        connect_timeout: secs(
            "http.connect_timeout_secs",
            raw.connect_timeout_secs,
            defaults.connect_timeout,
        )?,
        max_attempts,
        max_retry_time: secs(
            "http.max_retry_secs",
            raw.max_retry_secs,
            defaults.max_retry_time,
        )?,
        max_reply_bytes: match raw.max_reply_mb {
            None => defaults.max_reply_bytes,
            Some(mb) if mb.is_finite() && mb > 0.0 && mb <= 4096.0 => {
                (mb * 1024.0 * 1024.0) as usize
            }
            Some(mb) => {
                return Err(ConfigError::Invalid {
                    key: "http.max_reply_mb",
                    origin: source.clone(),
                    problem: format!("{mb} is not a number of megabytes between 0 and 4096"),
                });
            }
        },
    })
}

/// Parse and normalise the organisation's base URL. Accepts a trailing slash or a pasted
/// `/graphql/` endpoint; refuses credentials in the URL and plain http to a non-local host.
pub fn parse_base_url(text: &str) -> Result<Url, String> {
    let text = text.trim();
    let mut url = Url::parse(text).map_err(|e| {
        format!("`{text}` is not a URL ({e}); expected something like https://acme.pluvo.com")
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "scheme `{}` is not supported; use https://",
            url.scheme()
        ));
    }
    let Some(host) = url.host_str().map(str::to_owned) else {
        return Err("the URL has no host; expected https://<org>.pluvo.com".into());
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "the URL contains credentials; remove them and use PLUVO_CLIENT_ID/PLUVO_CLIENT_SECRET"
                .into(),
        );
    }
    // The host as parsed, not as text: `127.evil.example` is a name anyone can register.
    let local = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    if url.scheme() == "http" && !local {
        return Err(format!(
            "plain http to `{host}` would send the token unencrypted; use https://"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("the URL has a query or fragment; give only the base URL".into());
    }
    let path = url.path().trim_end_matches('/').to_string();
    let path = path
        .strip_suffix("/graphql")
        .or_else(|| path.strip_suffix("/oauth/token"))
        .unwrap_or(&path)
        .to_string();
    url.set_path(&path);
    Ok(url)
}

/// Redact anything secret-looking from a URL before it is logged.
pub fn redact_url(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_password(None);
    let _ = url.set_username("");
    url.set_query(None);
    url.to_string()
}

/// Known TOML keys, for `init` and docs.
pub fn documented_keys() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([
        ("pluvo.url", PLUVO_URL.doc),
        ("pluvo.client_id", PLUVO_CLIENT_ID.doc),
        ("pluvo.scope", PLUVO_SCOPE.doc),
        ("warehouse.db", PLUVO_DB.doc),
        (
            "warehouse.export_dir",
            "Folder the Parquet export is written to",
        ),
        (
            "warehouse.memory_limit",
            "DuckDB's memory cap during sync (raise it if a sync reports Out of Memory)",
        ),
        (
            "warehouse.external_access",
            "false: `query` and push selections read only the warehouse, no other file or URL",
        ),
        (
            "warehouse.export_group_readable",
            "true: export folders 0750 and files 0640 (group-readable) instead of 0700/0600",
        ),
        (
            "http.max_reply_mb",
            "Largest API answer read, in MB after decompression",
        ),
        (
            "http.timeout_secs",
            "Total time allowed for one HTTP request",
        ),
        ("http.connect_timeout_secs", "Time allowed to connect"),
        (
            "http.max_attempts",
            "Attempts per request, first try included",
        ),
        (
            "http.max_retry_secs",
            "Total time spent retrying one request",
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 22: a configuration used from another folder finds its own warehouse.
    #[test]
    fn paths_in_the_file_are_relative_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("org");
        std::fs::create_dir(&sub).unwrap();
        let file = sub.join("pluvo-warehouse.toml");
        std::fs::write(
            &file,
            "[warehouse]\ndb = \"w.duckdb\"\nexport_dir = \"out\"\n",
        )
        .unwrap();
        let flags = Flags {
            config: Some(file.clone()),
            ..Flags::default()
        };
        let config = Config::load_with(&flags, |_| None).unwrap();
        assert_eq!(config.db, sub.join("w.duckdb"));
        assert_eq!(config.export_dir, sub.join("out"));
        // Flags and the environment stay relative to the current folder.
        let flagged = Config::load_with(
            &Flags {
                db: Some("x.duckdb".into()),
                ..flags.clone()
            },
            |_| None,
        )
        .unwrap();
        assert_eq!(flagged.db, PathBuf::from("x.duckdb"));
        let from_env =
            Config::load_with(&flags, |n| (n == "PLUVO_DB").then(|| "y.duckdb".into())).unwrap();
        assert_eq!(from_env.db, PathBuf::from("y.duckdb"));
        // An absolute path is kept.
        std::fs::write(&file, "[warehouse]\ndb = \"/tmp/abs.duckdb\"\n").unwrap();
        let config = Config::load_with(&flags, |_| None).unwrap();
        assert_eq!(config.db, PathBuf::from("/tmp/abs.duckdb"));
    }

    #[test]
    fn default_scope_covers_every_push_operation() {
        for (what, scope) in PUSH_SCOPES {
            assert!(
                DEFAULT_SCOPE.split_whitespace().any(|s| s == *scope),
                "`{what}` needs `{scope}`, missing from DEFAULT_SCOPE"
            );
        }
    }
    use std::collections::HashMap;

    fn load(file: Option<&str>, env: &[(&str, &str)], flags: Flags) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pluvo-warehouse.toml");
        if let Some(text) = file {
            std::fs::write(&path, text).unwrap();
        }
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let flags = Flags {
            config: Some(path),
            ..flags
        };
        if file.is_none() {
            return Config::load_with(
                &Flags {
                    config: None,
                    ..flags
                },
                |k| env.get(k).cloned(),
            );
        }
        Config::load_with(&flags, |k| env.get(k).cloned())
    }

    #[test]
    fn env_wins_over_file_and_flags_win_over_env() {
        let file = "[pluvo]\nurl = \"https://file.pluvo.com\"\nclient_id = \"file-id\"\n";
        let env = [
            ("PLUVO_URL", "https://env.pluvo.com"),
            ("PLUVO_CLIENT_SECRET", "s3cret"),
        ];
        let cfg = load(Some(file), &env, Flags::default()).unwrap();
        let api = cfg.api(Access::Write).unwrap();
        assert_eq!(api.base_url.as_str(), "https://env.pluvo.com/");
        assert_eq!(api.client_id, "file-id");
        let flags = Flags {
            url: Some("https://flag.pluvo.com/".into()),
            ..Flags::default()
        };
        let api = load(Some(file), &env, flags)
            .unwrap()
            .api(Access::Write)
            .unwrap();
        assert_eq!(
            api.graphql_url().as_str(),
            "https://flag.pluvo.com/graphql/"
        );
        assert_eq!(
            api.token_url().as_str(),
            "https://flag.pluvo.com/oauth/token/"
        );
    }

    #[test]
    fn missing_values_name_key_and_place() {
        let cfg = load(None, &[], Flags::default()).unwrap();
        let err = cfg.api(Access::Write).unwrap_err().to_string();
        assert!(
            err.contains("`pluvo.url`") && err.contains("PLUVO_URL"),
            "{err}"
        );
        let cfg = load(
            None,
            &[
                ("PLUVO_URL", "https://a.pluvo.com"),
                ("PLUVO_CLIENT_ID", "x"),
            ],
            Flags::default(),
        )
        .unwrap();
        let err = cfg.api(Access::Write).unwrap_err().to_string();
        assert!(err.contains("PLUVO_CLIENT_SECRET"), "{err}");
    }

    #[test]
    fn malformed_values_name_their_source() {
        let cfg = load(None, &[("PLUVO_URL", "acme.pluvo.com")], Flags::default()).unwrap();
        let err = cfg.api(Access::Write).unwrap_err().to_string();
        assert!(
            err.contains("`pluvo.url`") && err.contains("environment variable `PLUVO_URL`"),
            "{err}"
        );
        let err = load(Some("[pluvo]\nurl = 3\n"), &[], Flags::default()).unwrap_err();
        assert!(err.to_string().contains("not valid TOML"), "{err}");
        let err = load(Some("[pluvo]\nurll = \"x\"\n"), &[], Flags::default()).unwrap_err();
        assert!(err.to_string().contains("unknown field `urll`"), "{err}");
        let err = load(Some("[http]\nmax_attempts = 0\n"), &[], Flags::default()).unwrap_err();
        assert!(err.to_string().contains("`http.max_attempts`"), "{err}");
    }

    #[test]
    fn memory_limit_defaults_parses_and_refuses_nonsense() {
        let cfg = load(None, &[], Flags::default()).unwrap();
        assert_eq!(cfg.memory_limit, crate::store::WRITER_MEMORY_LIMIT);
        let set = |v: &str| {
            load(
                Some(&format!("[warehouse]\nmemory_limit = \"{v}\"\n")),
                &[],
                Flags::default(),
            )
        };
        assert_eq!(set("256 mb").unwrap().memory_limit, "256MB");
        assert_eq!(set("1.5GB").unwrap().memory_limit, "1.5GB");
        for bad in [
            "8MB",
            "16MB",
            "lots",
            "64",
            "64 apples",
            "'; DROP TABLE users; --",
        ] {
            let err = set(bad).unwrap_err().to_string();
            assert!(
                err.contains("`warehouse.memory_limit`") && err.contains("like \"64MB\""),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn secret_in_file_is_refused_without_echoing_it() {
        let err = load(
            Some("[pluvo]\nclient_secret = \"hunter2\"\n"),
            &[],
            Flags::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("PLUVO_CLIENT_SECRET"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn secrets_never_print() {
        let cfg = load(
            None,
            &[
                ("PLUVO_URL", "https://a.pluvo.com"),
                ("PLUVO_CLIENT_ID", "id"),
                ("PLUVO_CLIENT_SECRET", "hunter2"),
            ],
            Flags::default(),
        )
        .unwrap();
        let api = cfg.api(Access::Write).unwrap();
        assert!(!format!("{cfg:?} {api:?}").contains("hunter2"));
        assert_eq!(api.client_secret.expose(), "hunter2");
    }

    #[test]
    fn base_url_is_normalised() {
        for (input, expected) in [
            ("https://acme.pluvo.com", "https://acme.pluvo.com/"),
            ("https://acme.pluvo.com/", "https://acme.pluvo.com/"),
            ("https://acme.pluvo.com/graphql/", "https://acme.pluvo.com/"),
            ("http://127.0.0.1:8700", "http://127.0.0.1:8700/"),
            ("http://127.1.2.3:8700", "http://127.1.2.3:8700/"),
            ("http://[::1]:8700", "http://[::1]:8700/"),
            ("http://localhost:8700", "http://localhost:8700/"),
        ] {
            assert_eq!(parse_base_url(input).unwrap().as_str(), expected);
        }
        for bad in [
            "acme.pluvo.com",
            "ftp://acme.pluvo.com",
            "http://acme.pluvo.com",
            "https://u:p@acme.pluvo.com",
            // Issue 17: a name that starts like a loopback address is still a name.
            "http://127.evil.example",
            "http://127.0.0.1.evil.example:8700",
            "http://localhost.evil.example",
        ] {
            assert!(parse_base_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn issue_17_reading_commands_request_no_write_scope() {
        let env = [
            ("PLUVO_URL", "https://a.pluvo.com"),
            ("PLUVO_CLIENT_ID", "id"),
            ("PLUVO_CLIENT_SECRET", "s"),
        ];
        let cfg = load(None, &env, Flags::default()).unwrap();
        assert_eq!(cfg.api(Access::Read).unwrap().scope, READ_SCOPE);
        assert_eq!(
            cfg.api(Access::Write).unwrap().scope,
            DEFAULT_SCOPE
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        );
        let file = "[pluvo]\nscope = \"users.read users.write groups.read\"\n";
        let cfg = load(Some(file), &env, Flags::default()).unwrap();
        assert_eq!(
            cfg.api(Access::Read).unwrap().scope,
            "users.read groups.read"
        );
        assert_eq!(
            cfg.api(Access::Write).unwrap().scope,
            "users.read users.write groups.read"
        );
        let file = "[pluvo]\nscope = \"users.write\"\n";
        let err = load(Some(file), &env, Flags::default())
            .unwrap()
            .api(Access::Read)
            .unwrap_err();
        assert!(err.to_string().contains("only write scopes"), "{err}");
    }
}
