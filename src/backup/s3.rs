//! Off-volume copies of snapshots in an S3-compatible bucket: upload, list, prune, download.
//!
//! A snapshot `snapshot-<time>` becomes the objects `<prefix>/snapshot-<time>/<file>` for every
//! file its `SNAPSHOT.json` lists, then `<prefix>/snapshot-<time>/SNAPSHOT.json` itself, last.
//! A remote snapshot counts as complete only when its manifest object exists, so an upload
//! interrupted half-way is never listed, restored or counted by retention. Pruning deletes the
//! manifest first for the same reason. Downloads go to a local folder and are restored only
//! after [`super::local::verify`] has checked every file's SHA-256.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tokio::io::AsyncWriteExt;

use super::error::SnapshotError;
use super::manifest::{self, SnapshotInfo, SNAPSHOT_FILE};
use crate::config::S3Settings;

/// Failures talking to the bucket or writing a download.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// The `s3://bucket/prefix` URL or another setting is unusable.
    #[error("S3 settings: {0}")]
    Config(String),
    /// The object store refused or failed a request.
    #[error("S3 {op} {key}: {source}")]
    Store {
        /// What was being done.
        op: &'static str,
        /// The object key or prefix.
        key: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },
    /// A local file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// Where.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A remote manifest is unreadable, or no complete snapshot matches.
    #[error("{0}")]
    Invalid(String),
    /// Reading the local snapshot failed.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

fn store_err(op: &'static str, key: &ObjectPath) -> impl FnOnce(object_store::Error) -> S3Error {
    let key = key.to_string();
    move |source| S3Error::Store { op, key, source }
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> S3Error {
    let path = path.to_path_buf();
    move |source| S3Error::Io { op, path, source }
}

/// A bucket prefix holding snapshot copies.
#[derive(Debug, Clone)]
pub struct S3Target {
    store: Arc<dyn ObjectStore>,
    bucket: String,
    prefix: Option<ObjectPath>,
}

impl S3Target {
    /// Connects (lazily: no request is made) to the bucket and prefix of `settings.url`.
    /// Credentials are the standard AWS ones; without a key, the instance's role is used.
    pub fn new(settings: &S3Settings) -> Result<S3Target, S3Error> {
        let (bucket, prefix) = parse_url(&settings.url)?;
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&bucket)
            .with_region(&settings.region);
        if let Some(endpoint) = &settings.endpoint {
            // Local and on-premises S3 servers often speak plain HTTP; object_store refuses
            // it unless told, so only an explicit http:// endpoint allows it.
            b = b
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        if let (Some(id), Some(secret)) = (&settings.access_key_id, &settings.secret_access_key) {
            b = b
                .with_access_key_id(id)
                .with_secret_access_key(secret.expose());
            if let Some(token) = &settings.session_token {
                b = b.with_token(token.expose());
            }
        }
        let store = b
            .build()
            .map_err(|e| S3Error::Config(format!("{}: {e}", settings.url)))?;
        let prefix = if prefix.is_empty() {
            None
        } else {
            Some(
                ObjectPath::parse(&prefix)
                    .map_err(|e| S3Error::Config(format!("prefix {prefix:?}: {e}")))?,
            )
        };
        Ok(S3Target {
            store: Arc::new(store),
            bucket,
            prefix,
        })
    }

    /// `s3://bucket/prefix`, for logs and listings.
    pub fn url(&self) -> String {
        match &self.prefix {
            Some(p) => format!("s3://{}/{p}", self.bucket),
            None => format!("s3://{}", self.bucket),
        }
    }

    fn key(&self, snapshot: &str, rel: &str) -> Result<ObjectPath, S3Error> {
        let full = match &self.prefix {
            Some(p) => format!("{p}/{snapshot}/{rel}"),
            None => format!("{snapshot}/{rel}"),
        };
        ObjectPath::parse(&full).map_err(|e| S3Error::Invalid(format!("object key {full:?}: {e}")))
    }

    /// Uploads the local snapshot folder `dir` (described by `info`): every listed file, then
    /// the manifest. Returns the bytes sent.
    pub async fn upload(&self, dir: &Path, info: &SnapshotInfo) -> Result<u64, S3Error> {
        let mut sent = 0;
        for entry in &info.files {
            let key = self.key(&info.name, &entry.path)?;
            let local = dir.join(&entry.path);
            let mut file = tokio::fs::File::open(&local)
                .await
                .map_err(io_err("open", &local))?;
            // BufWriter sends small files in one PUT and large ones (segments of several GiB)
            // as a multipart upload, without holding a whole file in memory.
            let mut w = BufWriter::new(Arc::clone(&self.store), key.clone());
            let n = tokio::io::copy(&mut file, &mut w)
                .await
                .map_err(io_err("upload", &local))?;
            w.shutdown().await.map_err(io_err("upload", &local))?;
            sent += n;
        }
        let manifest = dir.join(SNAPSHOT_FILE);
        let bytes = tokio::fs::read(&manifest)
            .await
            .map_err(io_err("read", &manifest))?;
        sent += bytes.len() as u64;
        let key = self.key(&info.name, SNAPSHOT_FILE)?;
        self.store
            .put(&key, PutPayload::from(bytes))
            .await
            .map_err(store_err("put", &key))?;
        Ok(sent)
    }

    /// Names of every snapshot folder under the prefix, complete or not.
    async fn folders(&self) -> Result<Vec<String>, S3Error> {
        let listed = self
            .store
            .list_with_delimiter(self.prefix.as_ref())
            .await
            .map_err(|source| S3Error::Store {
                op: "list",
                key: self.url(),
                source,
            })?;
        let mut names: Vec<String> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .filter(|n| n.starts_with(manifest::NAME_PREFIX))
            .collect();
        names.sort();
        Ok(names)
    }

    async fn manifest(&self, name: &str) -> Result<Option<SnapshotInfo>, S3Error> {
        let key = self.key(name, SNAPSHOT_FILE)?;
        let bytes = match self.store.get(&key).await {
            Ok(r) => r.bytes().await.map_err(store_err("get", &key))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(store_err("get", &key)(e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| S3Error::Invalid(format!("{key} is unreadable: {e}")))
    }

    /// The complete remote snapshots (manifest present), oldest first.
    pub async fn list(&self) -> Result<Vec<SnapshotInfo>, S3Error> {
        let mut out = Vec::new();
        for name in self.folders().await? {
            if let Some(info) = self.manifest(&name).await? {
                out.push(info);
            }
        }
        out.sort_by(|a, b| (a.created_at, &a.name).cmp(&(b.created_at, &b.name)));
        Ok(out)
    }

    /// Deletes all but the newest `keep` complete snapshots of each scope (the whole folder, or
    /// one collection: [`manifest::excess`]), and incomplete folders older than
    /// the newest complete one (abandoned uploads). Returns the names removed.
    pub async fn prune(&self, keep: usize) -> Result<Vec<String>, S3Error> {
        let complete = self.list().await?;
        let newest = complete.last().map(|i| i.name.clone());
        let mut doomed = manifest::excess(&complete, keep);
        let complete_names: std::collections::HashSet<&str> =
            complete.iter().map(|i| i.name.as_str()).collect();
        if let Some(newest) = &newest {
            for name in self.folders().await? {
                if !complete_names.contains(name.as_str()) && name < *newest {
                    doomed.push(name);
                }
            }
        }
        for name in &doomed {
            self.delete_snapshot(name).await?;
        }
        Ok(doomed)
    }

    /// Deletes one remote snapshot: its manifest first, so it stops counting as complete even
    /// if the rest of the deletion fails.
    async fn delete_snapshot(&self, name: &str) -> Result<(), S3Error> {
        let manifest = self.key(name, SNAPSHOT_FILE)?;
        match self.store.delete(&manifest).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(store_err("delete", &manifest)(e)),
        }
        let folder = match &self.prefix {
            Some(p) => format!("{p}/{name}"),
            None => name.to_string(),
        };
        let folder = ObjectPath::parse(&folder)
            .map_err(|e| S3Error::Invalid(format!("object key {folder:?}: {e}")))?;
        let mut objects = self.store.list(Some(&folder));
        while let Some(meta) = objects.next().await {
            let meta = meta.map_err(store_err("list", &folder))?;
            match self.store.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(store_err("delete", &meta.location)(e)),
            }
        }
        Ok(())
    }

    /// Downloads the complete snapshot `name` (the newest whole-folder one when `None`) into
    /// `dest/<name>` and returns that folder. Nothing is verified here; restore verifies
    /// before it replaces.
    pub async fn download(&self, name: Option<&str>, dest: &Path) -> Result<PathBuf, S3Error> {
        let info = match name {
            Some(n) => self.manifest(n).await?.ok_or_else(|| {
                S3Error::Invalid(format!(
                    "{}/{n} has no {SNAPSHOT_FILE}: not a complete snapshot",
                    self.url()
                ))
            })?,
            // The newest whole-folder snapshot: it holds every collection, so it also serves
            // `restore --collection`; a collection snapshot is restored by naming it.
            None => self
                .list()
                .await?
                .into_iter()
                .rfind(|i| i.collection.is_none())
                .ok_or_else(|| {
                    S3Error::Invalid(format!(
                        "no complete whole-folder snapshot under {}",
                        self.url()
                    ))
                })?,
        };
        let out = manifest::safe_join(dest, &info.name)?;
        for entry in &info.files {
            let local = manifest::safe_join(&out, &entry.path)?;
            if let Some(parent) = local.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(io_err("create", parent))?;
            }
            let key = self.key(&info.name, &entry.path)?;
            let got = self.store.get(&key).await.map_err(store_err("get", &key))?;
            let mut stream = got.into_stream();
            let mut file = tokio::fs::File::create(&local)
                .await
                .map_err(io_err("create", &local))?;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(store_err("get", &key))?;
                file.write_all(&chunk)
                    .await
                    .map_err(io_err("write", &local))?;
            }
            file.flush().await.map_err(io_err("write", &local))?;
        }
        // The manifest last, from the same listing we downloaded by.
        let key = self.key(&info.name, SNAPSHOT_FILE)?;
        let bytes = self
            .store
            .get(&key)
            .await
            .map_err(store_err("get", &key))?
            .bytes()
            .await
            .map_err(store_err("get", &key))?;
        let manifest = out.join(SNAPSHOT_FILE);
        tokio::fs::write(&manifest, &bytes)
            .await
            .map_err(io_err("write", &manifest))?;
        Ok(out)
    }
}

/// `s3://bucket/some/prefix/` → (`bucket`, `some/prefix`).
fn parse_url(url: &str) -> Result<(String, String), S3Error> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| S3Error::Config(format!("{url:?} is not an s3://bucket/prefix URL")))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(S3Error::Config(format!("{url:?} names no bucket")));
    }
    Ok((bucket.to_string(), prefix.trim_matches('/').to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bucket_and_prefix() {
        assert_eq!(
            parse_url("s3://b/x/y/").unwrap(),
            ("b".to_string(), "x/y".to_string())
        );
        assert_eq!(
            parse_url("s3://b").unwrap(),
            ("b".to_string(), String::new())
        );
        assert!(parse_url("http://b/x").is_err());
        assert!(parse_url("s3:///x").is_err());
    }
}
