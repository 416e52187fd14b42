//! Every name a user can set: the `PLUVO_*` environment variables, the file's keys, and the
//! OAuth scopes each kind of command requests. `init`, `doctor`, the docs and the tests list
//! these; adding a setting starts here.

use std::collections::BTreeMap;

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
pub const PLUVO_EXPORT_TO: EnvVar = EnvVar {
    name: "PLUVO_EXPORT_TO",
    key: Some("export.to"),
    doc: "Object storage URL every sync also publishes its snapshot to, e.g. s3://bucket/prefix",
};
pub const PLUVO_CONFIG: EnvVar = EnvVar {
    name: "PLUVO_CONFIG",
    key: None,
    doc: "Configuration file (flag --config)",
};

/// Every environment variable the tool reads; docs/configuration.md lists exactly these (a test
/// checks).
pub const ENV_VARS: &[EnvVar] = &[
    PLUVO_URL,
    PLUVO_CLIENT_ID,
    PLUVO_CLIENT_SECRET,
    PLUVO_SCOPE,
    PLUVO_WEBHOOK_KEY,
    PLUVO_DB,
    PLUVO_EXPORT_TO,
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

/// Known TOML keys, for `init` and docs.
pub fn documented_keys() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([
        ("pluvo.url", PLUVO_URL.doc),
        ("pluvo.client_id", PLUVO_CLIENT_ID.doc),
        ("pluvo.scope", PLUVO_SCOPE.doc),
        ("warehouse.db", PLUVO_DB.doc),
        ("export.to", PLUVO_EXPORT_TO.doc),
        (
            "warehouse.export_dir",
            "Folder the Parquet export is written to",
        ),
        (
            "warehouse.memory_limit",
            "DuckDB's memory cap during sync and export (raise it if either reports Out of Memory)",
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
