//! The configuration file as written: TOML into `Raw*` structs, every field optional and
//! unknown keys rejected, before any value is checked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;

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
    #[serde(default)]
    pub export: RawExport,
    /// Named organisations (`[orgs.acme]`), synced by `sync --org` / `sync --all-orgs`.
    #[serde(default)]
    pub orgs: BTreeMap<String, RawOrg>,
}

/// Where every sync also publishes its snapshot.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExport {
    /// Object storage URL (`s3://bucket/prefix`, `gs://`, `az://`, `file://`).
    pub to: Option<String>,
}

/// One named organisation: its API client and its own warehouse file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOrg {
    pub url: Option<String>,
    pub client_id: Option<String>,
    /// The environment variable holding this organisation's client secret.
    pub secret_env: Option<String>,
    pub scope: Option<String>,
    pub db: Option<PathBuf>,
    pub export_dir: Option<PathBuf>,
    /// Only present so that a secret in the file gets a helpful error instead of "unknown key".
    pub client_secret: Option<toml::Value>,
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

pub(super) fn read_file(path: &Path, explicit: bool) -> Result<RawConfig, ConfigError> {
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
