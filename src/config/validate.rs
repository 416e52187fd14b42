//! Checks of single values (base URL, memory amount, HTTP bounds) and the settings they
//! become. Each error names the key and where its value came from.

use std::time::Duration;

use reqwest::Url;

use super::file::RawHttp;
use super::{ConfigError, Secret, Source};

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
    /// The settings to check when the token endpoint refuses the client, e.g.
    /// `PLUVO_CLIENT_ID and PLUVO_CLIENT_SECRET` ([`DEFAULT_CREDENTIALS`]).
    pub credentials: String,
}

/// [`ApiConfig::credentials`] of the `[pluvo]` organisation.
pub const DEFAULT_CREDENTIALS: &str = "PLUVO_CLIENT_ID and PLUVO_CLIENT_SECRET";

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

/// A memory amount as DuckDB's `memory_limit` takes it (`"64MB"`, `"1.5 GB"`), normalised to
/// `<number><unit>`; `None` unless it is at least 20 MB: below that DuckDB's fixed working set
/// (a block per thread and partition, the staged page group) does not fit, and a 5k-user sync
/// ran out of memory at 16 MB (issue 19).
pub fn parse_memory_limit(text: &str) -> Option<String> {
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

pub(super) fn resolve_http(raw: &RawHttp, source: &Source) -> Result<HttpSettings, ConfigError> {
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
