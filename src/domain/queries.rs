//! Reading what happened: device events, the audit trail, and the update files devices download.

use std::path::Path;

use serde::Serialize;
use time::OffsetDateTime;

use super::devices::check_page;
use super::rights::{Access, Caller, FuncArea};
use super::{Domain, DomainError, Result};
use crate::store::{AuditEntry, AuditQuery, EventQuery, EventRecord, EventTable, Page};

/// An update file (or directory) under the updates directory, as devices name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpdateFile {
    /// Relative to the updates directory, `/` between names.
    pub name: String,
    pub is_dir: bool,
    pub size: u64,
    /// Hex SHA-256 of a file's content (`None` for a directory).
    pub sha256: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub modified: Option<OffsetDateTime>,
}

/// SHA-256 of files by name, kept while their size and modification time stay the same.
pub(super) type HashCache =
    std::sync::Mutex<std::collections::HashMap<String, (u64, Option<OffsetDateTime>, String)>>;

/// A stream of an upload's bytes.
pub type ByteStream = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static>,
>;

/// Checks an update file's name: relative, `/` between parts, no part empty, `.` or `..`, no
/// backslashes or control characters.
fn check_update_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 1024
        && !name.chars().any(|c| c.is_control() || c == '\\')
        && name
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..");
    if ok {
        Ok(())
    } else {
        Err(DomainError::Invalid(
            "an update file name is relative, with `/` between non-empty parts and no `.`, `..`, \
             backslashes or control characters"
                .into(),
        ))
    }
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    use sha2::Digest;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

/// Most entries an update listing returns, and how deep it looks.
const MAX_UPDATE_FILES: usize = 10_000;
const MAX_UPDATE_DEPTH: usize = 16;

/// The files and directories under `root`, sorted by name. Links are not followed (devices are
/// refused those that lead outside the directory; listing them would need the same checks).
fn list_updates(root: &Path) -> std::io::Result<Vec<UpdateFile>> {
    let mut out = Vec::new();
    let mut pending = vec![(root.to_path_buf(), String::new(), 0usize)];
    while let Some((dir, prefix, depth)) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && depth == 0 => return Ok(out),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let meta = entry.metadata()?;
            if meta.file_type().is_symlink() {
                continue;
            }
            let full = format!("{prefix}{name}");
            out.push(UpdateFile {
                name: full.clone(),
                is_dir: meta.is_dir(),
                sha256: None,
                size: if meta.is_dir() { 0 } else { meta.len() },
                modified: meta.modified().ok().map(OffsetDateTime::from),
            });
            if out.len() >= MAX_UPDATE_FILES {
                out.sort_by(|a, b| a.name.cmp(&b.name));
                return Ok(out);
            }
            if meta.is_dir() && depth + 1 < MAX_UPDATE_DEPTH {
                pending.push((entry.path(), format!("{full}/"), depth + 1));
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// How long device events and intake events are kept (the `[retention]` section, each kind on its
/// own: `max_rows` of each); 0 keeps them all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Events received longer ago than this are deleted.
    pub max_age_days: u64,
    /// Beyond this many events, the oldest are deleted.
    pub max_rows: u64,
}

/// Events deleted by one retention pass, at most.
const RETENTION_BATCH: u64 = 10_000;

/// Text in list filters: no control characters (nothing stored holds them raw).
pub(super) fn check_filter_text<'a>(texts: impl IntoIterator<Item = &'a String>) -> Result<()> {
    if texts.into_iter().any(|t| t.chars().any(char::is_control)) {
        return Err(DomainError::Invalid(
            "filters hold no control characters".into(),
        ));
    }
    Ok(())
}

impl Domain {
    /// Device events, newest first.
    pub async fn events(&self, caller: &Caller, query: &EventQuery) -> Result<Page<EventRecord>> {
        caller.require(FuncArea::Events, Access::Read)?;
        check_page(query.page)?;
        check_filter_text(
            query
                .device_ids
                .iter()
                .chain(&query.event_types)
                .chain(&query.text),
        )?;
        Ok(self.store.events(query).await?)
    }

    /// The audit trail, newest first.
    pub async fn audit(&self, caller: &Caller, query: &AuditQuery) -> Result<Page<AuditEntry>> {
        caller.require(FuncArea::Admins, Access::Read)?;
        check_page(query.page)?;
        check_filter_text(
            query
                .object_kind
                .iter()
                .chain(&query.object_id)
                .chain(&query.account),
        )?;
        Ok(self.store.audit(query).await?)
    }

    /// The update files devices can download, with the SHA-256 of each file.
    pub async fn update_files(&self, caller: &Caller) -> Result<Vec<UpdateFile>> {
        caller.require(FuncArea::Updates, Access::Read)?;
        let root = self.updates_root.clone();
        let cache = self.update_hashes.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<Vec<UpdateFile>> {
            let mut files = list_updates(&root)?;
            let mut known = cache.lock().unwrap();
            known.retain(|name, _| files.iter().any(|f| &f.name == name));
            for file in files.iter_mut().filter(|f| !f.is_dir) {
                let hash = match known.get(&file.name) {
                    Some((size, modified, hash))
                        if *size == file.size && *modified == file.modified =>
                    {
                        hash.clone()
                    }
                    _ => {
                        let hash = sha256_file(&root.join(&file.name))?;
                        known.insert(file.name.clone(), (file.size, file.modified, hash.clone()));
                        hash
                    }
                };
                file.sha256 = Some(hash);
            }
            Ok(files)
        })
        .await
        .map_err(|e| DomainError::Internal(e.to_string()))?
        .map_err(|e| DomainError::Unavailable(format!("the updates directory: {e}")))
    }

    /// Writes an update file from `body` (at most `limit` bytes), replacing any file of that name
    /// at once: it is written beside its final place, synced, then renamed over it, so devices
    /// read the old file or the new one, never a part.
    pub async fn upload_update(
        &self,
        caller: &Caller,
        name: &str,
        mut body: ByteStream,
        limit: u64,
    ) -> Result<UpdateFile> {
        use futures_util::StreamExt;
        use tokio::io::AsyncWriteExt;
        caller.require(FuncArea::Updates, Access::Write)?;
        check_update_name(name)?;
        let target = self.updates_root.join(name);
        let dir = target
            .parent()
            .ok_or_else(|| DomainError::Invalid("no file name".into()))?
            .to_path_buf();
        let unavailable =
            |e: std::io::Error| DomainError::Unavailable(format!("the updates directory: {e}"));
        if tokio::fs::metadata(&target).await.is_ok_and(|m| m.is_dir()) {
            return Err(DomainError::Invalid(format!("{name:?} is a directory")));
        }
        tokio::fs::create_dir_all(&dir).await.map_err(|e| {
            DomainError::Invalid(format!("cannot create the directory of {name:?}: {e}"))
        })?;
        let temp = dir.join(format!(".upload-{:016x}", rand::random::<u64>()));
        let written = async {
            let mut file = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp)
                .await
                .map_err(unavailable)?;
            let mut size = 0u64;
            let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
            while let Some(chunk) = body.next().await {
                let chunk = chunk
                    .map_err(|e| DomainError::Invalid(format!("the upload broke off: {e}")))?;
                size += chunk.len() as u64;
                if size > limit {
                    return Err(DomainError::TooLarge(format!(
                        "an update file has at most {limit} bytes"
                    )));
                }
                sha2::Digest::update(&mut hasher, &chunk);
                file.write_all(&chunk).await.map_err(unavailable)?;
            }
            file.sync_all().await.map_err(unavailable)?;
            Ok((size, hex::encode(sha2::Digest::finalize(hasher))))
        }
        .await;
        let (size, sha256) = match written {
            Ok(done) => done,
            Err(e) => {
                let _ = tokio::fs::remove_file(&temp).await;
                return Err(e);
            }
        };
        if let Err(e) = tokio::fs::rename(&temp, &target).await {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(unavailable(e));
        }
        let modified = tokio::fs::metadata(&target)
            .await
            .ok()
            .and_then(|m| m.modified().ok())
            .map(OffsetDateTime::from);
        tracing::info!(account = %caller.name, name, size, "update file uploaded");
        Ok(UpdateFile {
            name: name.to_string(),
            is_dir: false,
            size,
            sha256: Some(sha256),
            modified,
        })
    }

    /// Deletes an update file, or an empty directory.
    pub async fn delete_update(&self, caller: &Caller, name: &str) -> Result<()> {
        caller.require(FuncArea::Updates, Access::Write)?;
        check_update_name(name)?;
        let target = self.updates_root.join(name);
        let meta = tokio::fs::symlink_metadata(&target)
            .await
            .map_err(|_| DomainError::NotFound(format!("no update file {name:?}")))?;
        let removed = if meta.is_dir() {
            tokio::fs::remove_dir(&target).await
        } else {
            tokio::fs::remove_file(&target).await
        };
        removed.map_err(|e| DomainError::Invalid(format!("cannot delete {name:?}: {e}")))?;
        tracing::info!(account = %caller.name, name, "update file deleted");
        Ok(())
    }

    /// Deletes device events and intake events past `policy`, oldest first, but none that a durable consumer of
    /// `consumers` (the export sinks) has not passed: those are held back, and counted.
    pub async fn enforce_retention(
        &self,
        policy: &RetentionConfig,
        consumers: &[String],
    ) -> Result<crate::store::Retained> {
        let before = (policy.max_age_days > 0)
            .then(|| self.clock.now() - time::Duration::days(policy.max_age_days as i64));
        let keep = (policy.max_rows > 0).then_some(policy.max_rows);
        let mut total = crate::store::Retained::default();
        for table in [EventTable::Device, EventTable::Intake] {
            loop {
                let pass = self
                    .store
                    .delete_old_events(table, before, keep, consumers, RETENTION_BATCH)
                    .await?;
                total.deleted += pass.deleted;
                total.held_back += pass.held_back;
                if pass.deleted < RETENTION_BATCH {
                    break;
                }
            }
        }
        Ok(total)
    }

    /// The database answers: its schema version.
    pub async fn health(&self) -> Result<i64> {
        Ok(self.store.schema_version().await?)
    }
}

impl Domain {
    /// Whether this node can serve: the database answers and holds the schema this build expects.
    /// The schema version, or why not.
    pub async fn readiness(&self) -> Result<i64> {
        let version = self.store.schema_version().await?;
        let expected = crate::store::latest_schema_version();
        if version != expected {
            return Err(DomainError::Unavailable(format!(
                "the database's schema is version {version}, this server expects {expected}"
            )));
        }
        Ok(version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_files_are_listed_by_relative_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("bases/daily")).unwrap();
        std::fs::write(dir.path().join("bases/daily/av.bin"), b"12345").unwrap();
        std::fs::write(dir.path().join("app.cab"), b"x").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("outside")).unwrap();
        let files = list_updates(dir.path()).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            ["app.cab", "bases", "bases/daily", "bases/daily/av.bin"]
        );
        assert_eq!(files[3].size, 5);
        assert!(files[1].is_dir);
        assert!(list_updates(&dir.path().join("missing"))
            .unwrap()
            .is_empty());
    }
}
