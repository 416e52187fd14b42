//! Publishing a snapshot to object storage (`s3://`, `gs://`, `az://`/`abfs://`, `file://`)
//! for Spark, Trino/Athena, Databricks, Snowflake external tables and cloud BI, and reading
//! it back. Input: a published local snapshot (its folder and [`Manifest`]); output, under the
//! target's prefix:
//!
//! ```text
//! s3://bucket/prefix/
//!   current.json                                  (the current snapshot's manifest: written LAST)
//!   snapshots/20261123T125501.123Z-run3/
//!     manifest.json
//!     users/data_0.parquet
//!     portfolio_items/related_object_type=TRAINING/completion_year=2024/data_0.parquet
//! ```
//!
//! Object stores have no symlink and no rename of a folder, so publication is "upload under a
//! new prefix, then switch a pointer": every file of the snapshot goes to
//! `snapshots/<id>/` (files above [`PART_BYTES`] as multipart uploads), then its
//! `manifest.json`, then `current.json` — the same manifest, whose `snapshot` field names the
//! folder. A single PUT of an object is atomic in S3, GCS and Azure, so a reader that resolves
//! `current.json` sees the previous snapshot or the new one, complete. An upload killed midway
//! leaves files under a prefix no pointer names (and, for S3, multipart parts that the bucket's
//! `AbortIncompleteMultipartUpload` lifecycle rule removes; see docs/object-storage.md).
//!
//! Pruning: the new snapshot and the one it replaced are kept; an older snapshot is deleted
//! once it has not been current for [`GRACE`] (a Spark job that resolved it just before it was
//! replaced has that long to finish), and a folder without a manifest (a killed upload) once
//! its newest file is that old.
//!
//! Credentials: each platform's usual chain from the environment, as the `object_store` crate
//! reads it (S3: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`, web
//! identity, ECS container and EC2 instance credentials, `AWS_REGION`, `AWS_ENDPOINT`; GCS:
//! `GOOGLE_APPLICATION_CREDENTIALS`, workload identity; Azure: `AZURE_STORAGE_*`, managed
//! identity). They are never logged and never in an error: messages name the target by its
//! redacted URL ([`Target::display`]), and `object_store`'s own errors name the object, not
//! the key.
//!
//! Never calls DuckDB; [`snapshot`](super::snapshot) opens a downloaded snapshot.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::{StreamExt, TryStreamExt};
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, ObjectStoreScheme, RetryConfig};
use tokio::io::AsyncWriteExt;
use url::Url;

use super::{MANIFEST, Manifest, SNAPSHOTS};

/// The pointer to the current snapshot, at the target's prefix: a copy of its manifest.
pub const POINTER: &str = "current.json";
/// A snapshot that has not been current for this long is deleted by the next publish.
pub const GRACE: Duration = Duration::from_secs(24 * 3600);
/// Files above this size are sent as multipart uploads of parts this size (S3 wants at least
/// 5 MiB per part and at most 10,000 parts: 80 GB per file, far above the file size cap).
pub const PART_BYTES: usize = 8 * 1024 * 1024;
/// Files uploaded at the same time.
pub const CONCURRENCY: usize = 4;

/// Errors of publishing to and reading from object storage. The target is always the
/// redacted URL; no message holds a credential.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error(
        "`{url}` is not an object storage URL this tool writes to; use s3://bucket/prefix, \
         gs://bucket/prefix, az://container/prefix or file:///absolute/folder"
    )]
    Unsupported { url: String },
    #[error("cannot use `{url}`: {cause}; check the URL and the credentials in the environment")]
    Open {
        url: String,
        cause: Box<object_store::Error>,
    },
    #[error("{doing} `{object}` in `{url}`: {cause}")]
    Store {
        doing: &'static str,
        url: String,
        object: String,
        cause: Box<object_store::Error>,
    },
    #[error("reading `{}`: {cause}", path.display())]
    Local {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "no published snapshot in `{url}` (no `{POINTER}`); run `pluvo-warehouse export --to {url}`"
    )]
    NoSnapshot { url: String },
    #[error(
        "`{POINTER}` in `{url}` is not a manifest of this tool ({cause}); publish a new snapshot \
         with `pluvo-warehouse export --to {url}`"
    )]
    Pointer { url: String, cause: String },
}

pub type Result<T, E = RemoteError> = std::result::Result<T, E>;

/// An object storage location: the store and the prefix under which snapshots go.
#[derive(Debug, Clone)]
pub struct Target {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    display: String,
}

impl Target {
    /// Open `url` with the platform's credentials from the environment.
    pub fn open(url: &str) -> Result<Target> {
        Target::open_with(url, std::env::vars())
    }

    /// [`Target::open`] with the environment `env` instead of the process's (tests).
    pub fn open_with(url: &str, env: impl IntoIterator<Item = (String, String)>) -> Result<Target> {
        let env: Vec<(String, String)> = env.into_iter().collect();
        // reqwest is built without a TLS provider of its own (Cargo.toml): ring, as the API client.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let display = redact(url);
        let unsupported = || RemoteError::Unsupported {
            url: display.clone(),
        };
        let parsed = Url::parse(url).map_err(|_| unsupported())?;
        let (scheme, prefix) = ObjectStoreScheme::parse(&parsed).map_err(|_| unsupported())?;
        let open = |cause| RemoteError::Open {
            url: display.clone(),
            cause: Box::new(cause),
        };
        // object_store's defaults (10 tries, backoff from 100 ms, 3 minutes in all) said
        // here, so that a change of crate version does not change them silently.
        let retry = RetryConfig {
            max_retries: 10,
            retry_timeout: Duration::from_secs(180),
            ..RetryConfig::default()
        };
        // As each builder's `from_env` does: every `AWS_*` (`GOOGLE_*`, `AZURE_*`) variable
        // that names one of its settings.
        let vars = |prefix: &str| -> Vec<(String, String)> {
            env.iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect()
        };
        macro_rules! from_env {
            ($builder:ty, $prefix:literal) => {{
                let mut builder = <$builder>::new();
                for (k, v) in vars($prefix) {
                    if let Ok(key) = k.parse() {
                        builder = builder.with_config(key, v);
                    }
                }
                Arc::new(
                    builder
                        .with_url(url)
                        .with_retry(retry)
                        .build()
                        .map_err(open)?,
                )
            }};
        }
        let store: Arc<dyn ObjectStore> = match scheme {
            ObjectStoreScheme::Local => {
                Arc::new(object_store::local::LocalFileSystem::new().with_automatic_cleanup(true))
            }
            // Each cloud's builder takes the settings its SDK reads from the environment
            // (`AWS_*`, `GOOGLE_*`, `AZURE_*`); the builders share no trait, hence the macro.
            ObjectStoreScheme::AmazonS3 => from_env!(object_store::aws::AmazonS3Builder, "AWS_"),
            ObjectStoreScheme::GoogleCloudStorage => {
                from_env!(object_store::gcp::GoogleCloudStorageBuilder, "GOOGLE_")
            }
            ObjectStoreScheme::MicrosoftAzure => {
                from_env!(object_store::azure::MicrosoftAzureBuilder, "AZURE_")
            }
            _ => return Err(unsupported()),
        };
        Ok(Target {
            store,
            prefix,
            display,
        })
    }

    /// The URL without user, password or query (where SAS tokens and keys would be).
    pub fn display(&self) -> &str {
        &self.display
    }

    /// The object `rel` (`/`-separated) under the prefix, its segments as they are: hive
    /// folder names are already percent-encoded, and must not be encoded twice.
    fn path(&self, rel: &str) -> ObjectPath {
        let full = format!("{}/{rel}", self.prefix);
        ObjectPath::parse(&full).unwrap_or_else(|_| {
            rel.split('/')
                .filter(|p| !p.is_empty())
                .fold(self.prefix.clone(), |path, part| path.join(part))
        })
    }

    fn store_err(
        &self,
        doing: &'static str,
        object: &ObjectPath,
    ) -> impl FnOnce(object_store::Error) -> RemoteError {
        let url = self.display.clone();
        let object = object.to_string();
        move |cause| RemoteError::Store {
            doing,
            url,
            object,
            cause: Box::new(cause),
        }
    }

    /// The manifest `current.json` names, if any.
    pub async fn current(&self) -> Result<Option<Manifest>> {
        let path = self.path(POINTER);
        let bytes = match self.store.get(&path).await {
            Ok(got) => got
                .bytes()
                .await
                .map_err(self.store_err("reading", &path))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.store_err("reading", &path)(e)),
        };
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| RemoteError::Pointer {
                url: self.display.clone(),
                cause: e.to_string(),
            })?;
        // The id becomes a path: only the characters the tool's own ids use.
        let safe = !manifest.snapshot.is_empty()
            && !manifest.snapshot.starts_with('.')
            && manifest
                .snapshot
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if !safe {
            return Err(RemoteError::Pointer {
                url: self.display.clone(),
                cause: format!("its snapshot name `{}` is not one", manifest.snapshot),
            });
        }
        Ok(Some(manifest))
    }
}

/// The URL without credentials: user info and query removed.
pub fn redact(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => "<not a URL>".to_string(),
    }
}

/// What a publish did (`export --to … --format json` prints it as `published`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Published {
    pub url: String,
    pub snapshot: String,
    pub files: u64,
    pub bytes: u64,
    pub seconds: f64,
    /// Snapshots deleted by the pruning.
    pub pruned: Vec<String>,
}

/// Upload the local snapshot `dir` (with its `manifest`) to `target` and make it current.
/// `now` decides which old snapshots are past `grace`.
pub async fn publish(
    target: &Target,
    dir: &Path,
    manifest: &Manifest,
    grace: Duration,
    now: DateTime<Utc>,
) -> Result<Published> {
    let started = std::time::Instant::now();
    let previous = target.current().await?;
    let base = format!("{SNAPSHOTS}/{}", manifest.snapshot);
    let mut files = Vec::new();
    list_files(dir, dir, &mut files)?;
    files.retain(|rel| rel != MANIFEST);
    let bytes: u64 = files
        .iter()
        .map(|rel| std::fs::metadata(dir.join(rel)).map_or(0, |m| m.len()))
        .sum();
    // Owned (path, object) pairs: a closure over borrowed names would make the future of
    // every caller (a sync with `export.to`) not `Send` (rust-lang/rust#102211).
    let uploads: Vec<(PathBuf, ObjectPath)> = files
        .iter()
        .map(|rel| (dir.join(rel), target.path(&format!("{base}/{rel}"))))
        .collect();
    futures_util::stream::iter(
        uploads
            .into_iter()
            .map(|(local, object)| async move { upload(target, &local, object).await }),
    )
    .buffer_unordered(CONCURRENCY)
    .try_collect::<Vec<()>>()
    .await?;
    // The manifest inside the snapshot, then the pointer: last, so nothing names the
    // snapshot before all its files are there.
    let json = serde_json::to_vec_pretty(manifest).expect("manifest serialises");
    put(target, &format!("{base}/{MANIFEST}"), json.clone()).await?;
    put(target, POINTER, json).await?;
    tracing::info!(
        url = target.display(),
        snapshot = manifest.snapshot,
        files = files.len(),
        bytes,
        "Snapshot published to object storage."
    );
    let pruned = prune(
        target,
        &manifest.snapshot,
        previous.as_ref().map(|m| m.snapshot.as_str()),
        grace,
        now,
    )
    .await?;
    Ok(Published {
        url: target.display().to_string(),
        snapshot: manifest.snapshot.clone(),
        files: files.len() as u64 + 1,
        bytes,
        seconds: started.elapsed().as_secs_f64(),
        pruned,
    })
}

/// Every file under `dir`, as `/`-separated paths relative to `root`, sorted.
fn list_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    let local = |path: &Path| {
        let path = path.to_path_buf();
        move |cause| RemoteError::Local { path, cause }
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(local(dir))?
        .collect::<Result<_, _>>()
        .map_err(local(dir))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        if entry.file_type().map_err(local(&path))?.is_dir() {
            list_files(root, &path, out)?;
        } else {
            let rel = path.strip_prefix(root).expect("under root");
            out.push(
                rel.components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/"),
            );
        }
    }
    Ok(())
}

/// One file: a single PUT up to [`PART_BYTES`], a multipart upload above (aborted on error).
async fn upload(target: &Target, local: &Path, object: ObjectPath) -> Result<()> {
    let read = |cause| RemoteError::Local {
        path: local.to_path_buf(),
        cause,
    };
    let mut file = tokio::fs::File::open(local).await.map_err(read)?;
    let mut writer = BufWriter::with_capacity(target.store.clone(), object.clone(), PART_BYTES);
    let done = match tokio::io::copy(&mut file, &mut writer).await {
        Ok(_) => writer.shutdown().await,
        Err(e) => {
            // Only before shutdown: `BufWriter::abort` panics once it has been shut down
            // (a failed final PUT or completion; S3's lifecycle rule removes those parts).
            let _ = writer.abort().await;
            Err(e)
        }
    };
    if let Err(e) = done {
        return Err(RemoteError::Store {
            doing: "uploading",
            url: target.display().to_string(),
            object: object.to_string(),
            cause: Box::new(object_store::Error::Generic {
                store: "upload",
                source: Box::new(e),
            }),
        });
    }
    Ok(())
}

async fn put(target: &Target, rel: &str, bytes: Vec<u8>) -> Result<()> {
    let path = target.path(rel);
    target
        .store
        .put(&path, bytes.into())
        .await
        .map_err(target.store_err("writing", &path))?;
    Ok(())
}

/// Delete snapshots past the grace period (see the module docs); `keep` and `previous` stay.
async fn prune(
    target: &Target,
    keep: &str,
    previous: Option<&str>,
    grace: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<String>> {
    let root = target.path(SNAPSHOTS);
    let listed = target
        .store
        .list_with_delimiter(Some(&root))
        .await
        .map_err(target.store_err("listing", &root))?;
    let mut ids: Vec<String> = listed
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename().map(str::to_string))
        .collect();
    ids.sort(); // ids start with their export time: oldest first
    let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
    // When each complete snapshot's manifest was written (None: no manifest, a killed upload).
    let mut written = Vec::with_capacity(ids.len());
    for id in &ids {
        let path = target.path(&format!("{SNAPSHOTS}/{id}/{MANIFEST}"));
        written.push(match target.store.head(&path).await {
            Ok(meta) => Some(meta.last_modified),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => return Err(target.store_err("reading", &path)(e)),
        });
    }
    let mut pruned = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        if id == keep || Some(id.as_str()) == previous {
            continue;
        }
        let prefix = target.path(&format!("{SNAPSHOTS}/{id}"));
        // The time since which nobody should be resolving it: for a complete snapshot, when the
        // next complete one was published; for a partial one, its newest file.
        let since = match written[i] {
            Some(_) => written[i + 1..].iter().flatten().next().copied(),
            None => {
                let metas: Vec<_> = target
                    .store
                    .list(Some(&prefix))
                    .try_collect()
                    .await
                    .map_err(target.store_err("listing", &prefix))?;
                metas.iter().map(|m| m.last_modified).max()
            }
        };
        if since.is_none_or(|t| now - t < grace) {
            continue;
        }
        let metas: Vec<_> = target
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(target.store_err("listing", &prefix))?;
        for meta in metas {
            target
                .store
                .delete(&meta.location)
                .await
                .map_err(target.store_err("deleting", &meta.location))?;
        }
        pruned.push(id.clone());
    }
    Ok(pruned)
}

/// Download the current snapshot of `target` into `cache/<id>/` (once; a later call finds
/// it there) and return that folder and its manifest, for [`super::snapshot::open_snapshot`].
pub async fn download_current(target: &Target, cache: &Path) -> Result<(PathBuf, Manifest)> {
    let manifest = target
        .current()
        .await?
        .ok_or_else(|| RemoteError::NoSnapshot {
            url: target.display().to_string(),
        })?;
    let dir = cache.join(&manifest.snapshot);
    let local = |path: &Path| {
        let path = path.to_path_buf();
        move |cause| RemoteError::Local { path, cause }
    };
    if dir.join(MANIFEST).exists() {
        return Ok((dir, manifest));
    }
    std::fs::create_dir_all(cache).map_err(local(cache))?;
    let tmp = cache.join(format!(".tmp-{}", manifest.snapshot));
    let _ = std::fs::remove_dir_all(&tmp);
    let prefix = target.path(&format!("{SNAPSHOTS}/{}", manifest.snapshot));
    let metas: Vec<_> = target
        .store
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(target.store_err("listing", &prefix))?;
    for meta in metas {
        let rel: Vec<String> = meta
            .location
            .prefix_match(&prefix)
            .map(|parts| parts.map(|p| p.as_ref().to_string()).collect())
            .unwrap_or_default();
        if rel.is_empty() || rel.iter().any(|p| p == ".." || p.starts_with('.')) {
            continue;
        }
        let path = rel.iter().fold(tmp.clone(), |p, part| p.join(part));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(local(parent))?;
        }
        let bytes = target
            .store
            .get(&meta.location)
            .await
            .map_err(target.store_err("reading", &meta.location))?
            .bytes()
            .await
            .map_err(target.store_err("reading", &meta.location))?;
        std::fs::write(&path, &bytes).map_err(local(&path))?;
    }
    // The manifest of the pointer, which named this snapshot when it was read.
    std::fs::create_dir_all(&tmp).map_err(local(&tmp))?;
    let json = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
    std::fs::write(tmp.join(MANIFEST), json).map_err(local(&tmp))?;
    std::fs::rename(&tmp, &dir).map_err(local(&dir))?;
    // Older downloads are replaced (a reader still in one keeps its open files).
    if let Ok(entries) = std::fs::read_dir(cache) {
        for entry in entries.flatten() {
            if entry.file_name() != manifest.snapshot.as_str() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    Ok((dir, manifest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_credentials() {
        assert_eq!(
            redact("s3://AKIA:secret@bucket/prefix?sig=abc"),
            "s3://bucket/prefix"
        );
        assert_eq!(
            redact("az://container/p?sv=2020&sig=SECRET"),
            "az://container/p"
        );
    }

    #[test]
    fn unknown_schemes_are_refused_with_the_accepted_ones() {
        let err = Target::open_with("ftp://host/x", []).unwrap_err();
        assert!(err.to_string().contains("s3://bucket/prefix"), "{err}");
        let err = Target::open_with("not a url", []).unwrap_err();
        assert!(err.to_string().contains("not a URL"), "{err}");
    }

    /// A file target publishes, names the snapshot in `current.json` last, reads back, and
    /// prunes only past the grace period.
    #[tokio::test]
    async fn a_file_target_publishes_reads_back_and_prunes_after_the_grace_period() {
        let (tmp, warehouse) = crate::export::tests::seeded_warehouse();
        let local = tmp.path().join("export");
        let bucket = tmp.path().join("bucket");
        std::fs::create_dir_all(&bucket).unwrap();
        let url = format!("file://{}/pluvo", bucket.display());
        let target = Target::open_with(&url, []).unwrap();
        assert!(target.current().await.unwrap().is_none());

        let t0: DateTime<Utc> = "2026-06-01T00:00:00Z".parse().unwrap();
        let mut ids = Vec::new();
        for i in 0..4 {
            let report = crate::export::export(
                warehouse.connection(),
                &crate::export::Options::new(&local),
                t0 + chrono::Duration::hours(i),
            )
            .unwrap();
            let published = publish(&target, &report.dir, &report.manifest, GRACE, Utc::now())
                .await
                .unwrap();
            assert_eq!(published.snapshot, report.manifest.snapshot);
            assert!(published.pruned.is_empty(), "within the grace period");
            ids.push(published.snapshot);
            let current = target.current().await.unwrap().unwrap();
            assert_eq!(current, report.manifest);
        }
        let within = prune(
            &target,
            &ids[3],
            Some(&ids[2]),
            GRACE,
            Utc::now() + chrono::Duration::hours(1),
        )
        .await
        .unwrap();
        assert!(within.is_empty(), "{within:?}");
        // An hour later with a grace of a minute: all but the current and the previous go.
        let pruned = prune(
            &target,
            &ids[3],
            Some(&ids[2]),
            Duration::from_secs(60),
            Utc::now() + chrono::Duration::hours(1),
        )
        .await
        .unwrap();
        assert_eq!(pruned, [ids[0].clone(), ids[1].clone()]);
        let cache = tmp.path().join("cache");
        let (dir, manifest) = download_current(&target, &cache).await.unwrap();
        assert_eq!(manifest.snapshot, ids[3]);
        let conn = crate::export::snapshot::open_snapshot(&dir, &manifest).unwrap();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM portfolio_items", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
    }
}
