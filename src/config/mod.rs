//! Configuration: `pluvo-warehouse.toml` + `PLUVO_*` environment + flags → validated settings.
//!
//! Precedence is flags > environment > file > defaults. Every value remembers where it came
//! from, so an error names the key *and* the file or variable to fix. Secrets (client secret,
//! webhook key) are read only from the environment and live in [`Secret`], which never prints.
//! This module reads files and the environment; it does no network or database work.

mod file;
mod keys;
#[cfg(test)]
mod tests;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use file::read_file;
pub use file::{RawConfig, RawExport, RawHttp, RawOrg, RawPluvo, RawPush, RawWarehouse};
pub use keys::*;
use validate::resolve_http;
pub use validate::{
    ApiConfig, DEFAULT_CREDENTIALS, HttpSettings, parse_base_url, parse_memory_limit, redact_url,
};

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
    #[error("`orgs.{org}.{key}` in `{}` {problem}", path.display())]
    Org {
        org: String,
        key: &'static str,
        path: PathBuf,
        problem: String,
    },
    #[error(
        "the client secret of organisation `{org}` is not set; export {env} (named by \
         `orgs.{org}.secret_env`; secrets are read only from the environment)"
    )]
    OrgSecretMissing { org: String, env: String },
    #[error("no organisation `{name}` in `{}`; its organisations are: {known}", path.display())]
    UnknownOrg {
        name: String,
        path: PathBuf,
        known: String,
    },
    #[error(
        "{origin} names one warehouse or organisation, but the organisations of `[orgs]` each \
         have their own (`orgs.NAME.url`, `orgs.NAME.db`); drop it"
    )]
    OrgOverride { origin: Source },
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
    /// DuckDB's memory cap during `sync` and `export` (`warehouse.memory_limit`), e.g. `"32MB"`.
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
    /// `export.to`: object storage every sync also publishes its snapshot to.
    pub export_to: Option<(String, Source)>,
    /// The named organisations of `[orgs]`, by name (empty: the single `[pluvo]` one).
    pub orgs: Vec<Org>,
    db_origin: Source,
    /// What to check when the client is refused ([`ApiConfig::credentials`]).
    credentials: String,
    url: Option<(String, Source)>,
    client_id: Option<(String, Source)>,
    client_secret: Option<Secret>,
    scope: (String, Source),
    webhook_key: Option<Secret>,
    http: HttpSettings,
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
        let read = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let env = |var: EnvVar| read(var.name);
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
        let (db, db_origin) = pick(
            flags.db.as_ref().map(|p| (p.display().to_string(), "--db")),
            PLUVO_DB,
            raw.warehouse.db.as_ref().map(|p| p.display().to_string()),
        )
        .map(|(v, source)| match source {
            Source::File(_) => (beside_file(Path::new(&v)), source),
            _ => (PathBuf::from(v), source),
        })
        .unwrap_or_else(|| (PathBuf::from(DEFAULT_DB_FILE), Source::Default));
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

        let export_to = pick(None, PLUVO_EXPORT_TO, raw.export.to);
        let orgs = raw
            .orgs
            .into_iter()
            .map(|(name, org)| Org::resolve(name, org, &file, &beside_file, &read))
            .collect::<Result<Vec<Org>, ConfigError>>()?;
        for (i, org) in orgs.iter().enumerate() {
            if let Some(other) = orgs[..i].iter().find(|o| o.db == org.db) {
                return Err(ConfigError::Org {
                    org: org.name.clone(),
                    key: "db",
                    path: file.clone(),
                    problem: format!(
                        "is `{}`, the warehouse of organisation `{}` too; give each its own file",
                        org.db.display(),
                        other.name
                    ),
                });
            }
        }

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
            export_to,
            orgs,
            db_origin,
            credentials: DEFAULT_CREDENTIALS.to_string(),
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
            credentials: self.credentials.clone(),
        })
    }

    /// The configuration of the organisation `name` of `[orgs]`: its URL, client, secret,
    /// warehouse and export folder in place of the `[pluvo]`/`[warehouse]` ones; everything
    /// else shared. It publishes to no object storage of its own (`sync --all-orgs` publishes
    /// the organisations' snapshots together). An error names the organisation.
    pub fn org(&self, name: &str) -> Result<Config, ConfigError> {
        self.org_with(name, true)
    }

    /// [`Config::org`] for commands that only read the organisation's warehouse and export
    /// folder (`status`): its secret variable need not be set.
    pub fn org_files(&self, name: &str) -> Result<Config, ConfigError> {
        self.org_with(name, false)
    }

    fn org_with(&self, name: &str, secret: bool) -> Result<Config, ConfigError> {
        let org =
            self.orgs
                .iter()
                .find(|o| o.name == name)
                .ok_or_else(|| ConfigError::UnknownOrg {
                    name: name.to_string(),
                    path: self.file.clone(),
                    known: self.org_names().join(", "),
                })?;
        self.check_org_overrides()?;
        let client_secret = match &org.client_secret {
            None if secret => {
                return Err(ConfigError::OrgSecretMissing {
                    org: org.name.clone(),
                    env: org.secret_env.clone(),
                });
            }
            found => found.clone(),
        };
        Ok(Config {
            db: org.db.clone(),
            export_dir: org.export_dir.clone(),
            db_origin: Source::File(self.file.clone()),
            export_to: None,
            orgs: Vec::new(),
            url: Some(org.url.clone()),
            client_id: Some(org.client_id.clone()),
            client_secret,
            credentials: format!(
                "`orgs.{}.client_id` in `{}` and {}",
                org.name,
                self.file.display(),
                org.secret_env
            ),
            scope: org.scope.clone().unwrap_or_else(|| self.scope.clone()),
            ..self.clone()
        })
    }

    /// `--db`, `--url`, `PLUVO_DB` and `PLUVO_URL` name one warehouse or organisation: an
    /// error with `[orgs]`, whose organisations each have their own (rather than ignored).
    pub fn check_org_overrides(&self) -> Result<(), ConfigError> {
        for origin in [
            Some(&self.db_origin),
            self.url.as_ref().map(|(_, source)| source),
        ]
        .into_iter()
        .flatten()
        {
            if matches!(origin, Source::Flag(_) | Source::Env(_)) {
                return Err(ConfigError::OrgOverride {
                    origin: origin.clone(),
                });
            }
        }
        Ok(())
    }

    /// The names of `[orgs]`, sorted.
    pub fn org_names(&self) -> Vec<String> {
        self.orgs.iter().map(|o| o.name.clone()).collect()
    }

    /// A configuration of only `[orgs]`, with no `--db`, `--url`, `PLUVO_DB` or `PLUVO_URL`
    /// naming one warehouse or organisation: the commands that work on one warehouse have no
    /// `[pluvo]` one here (see [`Config::org_files`]).
    pub fn orgs_only(&self) -> bool {
        !self.has_url() && !self.orgs.is_empty() && self.check_org_overrides().is_ok()
    }

    /// Whether `[pluvo].url` (or `--url`, `PLUVO_URL`) is set: a configuration of only
    /// `[orgs]` has none.
    pub fn has_url(&self) -> bool {
        self.url.is_some()
    }

    /// The webhook signing key, if configured.
    pub fn webhook_key(&self) -> Option<&Secret> {
        self.webhook_key.as_ref()
    }
}

/// One organisation of `[orgs.NAME]`, checked: its name is a safe folder and Hive partition
/// value (`org=NAME`), its URL, client id and secret variable are set.
#[derive(Debug, Clone)]
pub struct Org {
    pub name: String,
    /// Its warehouse file (`orgs.NAME.db`, default `NAME.duckdb` beside the file).
    pub db: PathBuf,
    /// Its export folder (`orgs.NAME.export_dir`, default `<db name>-export`).
    pub export_dir: PathBuf,
    url: (String, Source),
    client_id: (String, Source),
    secret_env: String,
    client_secret: Option<Secret>,
    scope: Option<(String, Source)>,
}

impl Org {
    fn resolve(
        name: String,
        raw: RawOrg,
        file: &Path,
        beside_file: &dyn Fn(&Path) -> PathBuf,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Org, ConfigError> {
        let err = |key: &'static str, problem: String| ConfigError::Org {
            org: name.clone(),
            key,
            path: file.to_path_buf(),
            problem,
        };
        // The name becomes a folder and a Hive partition value that engines type from its
        // text: lower-case, starting with a letter, so that it is read as a string everywhere.
        let safe = name.len() <= 64
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !safe {
            return Err(ConfigError::Org {
                org: name.clone(),
                key: "name",
                path: file.to_path_buf(),
                problem: "is not a usable organisation name: use lower-case letters, digits, `_` \
                          and `-`, starting with a letter (at most 64), like `acme`"
                    .into(),
            });
        }
        if raw.client_secret.is_some() {
            return Err(err(
                "client_secret",
                "must not be in the file: secrets are read only from the environment; remove \
                 it and name the variable that holds it with `secret_env`"
                    .into(),
            ));
        }
        let from_file = Source::File(file.to_path_buf());
        let url = raw
            .url
            .ok_or_else(|| err("url", "is not set; every organisation needs its URL".into()))?;
        parse_base_url(&url).map_err(|problem| err("url", format!("is invalid: {problem}")))?;
        let client_id = raw.client_id.ok_or_else(|| {
            err(
                "client_id",
                "is not set; every organisation needs its client id".into(),
            )
        })?;
        let secret_env = raw.secret_env.ok_or_else(|| {
            err(
                "secret_env",
                "is not set; name the environment variable holding this organisation's client \
                 secret, like `secret_env = \"ACME_PLUVO_SECRET\"`"
                    .into(),
            )
        })?;
        let valid_var = !secret_env.is_empty()
            && !secret_env.starts_with(|c: char| c.is_ascii_digit())
            && secret_env
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if !valid_var {
            return Err(err(
                "secret_env",
                format!(
                    "`{secret_env}` is not an environment variable name; use upper-case letters, \
                     digits and `_`, like `ACME_PLUVO_SECRET`"
                ),
            ));
        }
        let client_secret = env(&secret_env).map(Secret);
        let db = beside_file(
            &raw.db
                .unwrap_or_else(|| PathBuf::from(format!("{name}.duckdb"))),
        );
        let export_dir = raw
            .export_dir
            .as_deref()
            .map(beside_file)
            .unwrap_or_else(|| default_export_dir(&db));
        Ok(Org {
            url: (url, from_file.clone()),
            client_id: (client_id, from_file.clone()),
            scope: raw.scope.map(|s| (s, from_file)),
            secret_env,
            client_secret,
            db,
            export_dir,
            name,
        })
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
