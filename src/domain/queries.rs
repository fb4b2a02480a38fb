//! Reading what happened: device events, the audit trail, and the update files devices download.

use std::path::Path;

use serde::Serialize;
use time::OffsetDateTime;

use super::devices::check_page;
use super::rights::{Access, Caller, FuncArea};
use super::{Domain, DomainError, Result};
use crate::store::{AuditEntry, AuditQuery, EventQuery, EventRecord, Page};

/// An update file (or directory) under the updates directory, as devices name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpdateFile {
    /// Relative to the updates directory, `/` between names.
    pub name: String,
    pub is_dir: bool,
    pub size: u64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub modified: Option<OffsetDateTime>,
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

impl Domain {
    /// Device events, newest first.
    pub async fn events(&self, caller: &Caller, query: &EventQuery) -> Result<Page<EventRecord>> {
        caller.require(FuncArea::Events, Access::Read)?;
        check_page(query.page)?;
        Ok(self.store.events(query).await?)
    }

    /// The audit trail, newest first.
    pub async fn audit(&self, caller: &Caller, query: &AuditQuery) -> Result<Page<AuditEntry>> {
        caller.require(FuncArea::Admins, Access::Read)?;
        check_page(query.page)?;
        Ok(self.store.audit(query).await?)
    }

    /// The update files devices can download.
    pub async fn update_files(&self, caller: &Caller) -> Result<Vec<UpdateFile>> {
        caller.require(FuncArea::Updates, Access::Read)?;
        let root = self.updates_root.clone();
        tokio::task::spawn_blocking(move || list_updates(&root))
            .await
            .map_err(|e| DomainError::Internal(e.to_string()))?
            .map_err(|e| DomainError::Unavailable(format!("the updates directory: {e}")))
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
