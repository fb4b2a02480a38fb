//! What a device's answer to a sync command changes in storage, as plain data: the rules of SPEC
//! section 6 about results, decided here once, so that a store backend only writes what it is told.

use serde::{Deserialize, Serialize};

use crate::soap::{AppInfo, AppState, ParamError, Params};

/// A device's answer to one sync command, as it is persisted.
#[derive(Debug, Clone, PartialEq)]
pub enum SyncResult {
    AppInfo(Box<AppInfo>),
    AppState(AppState),
    /// SETTINGS_GET: the device's settings and their hash.
    SettingsReported {
        hash: Vec<u8>,
        tree: Params,
    },
    /// SETTINGS_PUT acknowledged: the tree that was pushed and the pending revision it carried.
    SettingsPushed {
        hash: Vec<u8>,
        tree: Params,
        rev: i64,
    },
    PolicyPushed {
        hash: Vec<u8>,
        digest: Vec<u8>,
    },
    SubscriptionsPushed {
        hash: Vec<u8>,
        digest: Vec<u8>,
    },
    /// The device answered `command` with CmdError.
    Failed {
        command: i32,
        error: ParamError,
    },
}

/// A column of the device's sync state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncColumn {
    InfoHash,
    StateHash,
    SettingsHash,
    PolicyHash,
    PolicyDigest,
    SubsHash,
    SubsDigest,
}

impl SyncColumn {
    /// The column's name in `device_sync`.
    pub fn name(self) -> &'static str {
        match self {
            SyncColumn::InfoHash => "info_hash",
            SyncColumn::StateHash => "state_hash",
            SyncColumn::SettingsHash => "settings_hash",
            SyncColumn::PolicyHash => "policy_hash",
            SyncColumn::PolicyDigest => "policy_digest",
            SyncColumn::SubsHash => "subs_hash",
            SyncColumn::SubsDigest => "subs_digest",
        }
    }
}

/// The device's settings as a result leaves them.
#[derive(Debug, Clone, PartialEq)]
pub enum SettingsWrite {
    /// The device reported this tree.
    Reported(Params),
    /// This tree was pushed and acknowledged; the pending changes up to revision `rev` are done
    /// (a newer admin change stays pending).
    Pushed { tree: Params, rev: i64 },
}

/// Everything one result writes, in one transaction.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SyncWrite {
    pub app_info: Option<Box<AppInfo>>,
    pub app_state: Option<AppState>,
    pub settings: Option<SettingsWrite>,
    /// Sync state columns and their new values; any write also stamps the last sync time.
    pub columns: Vec<(SyncColumn, Vec<u8>)>,
    /// The device answered this command with this error.
    pub error: Option<(i32, ParamError)>,
    /// Join the root's child group of this name (created if missing), if the device is still in
    /// the Unassigned group: a device's presumed group counts only on its first app info.
    pub join_group: Option<String>,
    /// The device's display name.
    pub display_name: Option<String>,
}

/// Longest group name (the `groups.name` check).
pub const MAX_GROUP_NAME: usize = 255;

impl SyncWrite {
    /// What `result` writes.
    pub fn of(result: &SyncResult) -> SyncWrite {
        let hash = |column, hash: &Vec<u8>| vec![(column, hash.clone())];
        match result {
            SyncResult::AppInfo(info) => {
                let group = info.dev_info.presumed_group.trim();
                let name = info.dev_info.presumed_name.trim();
                SyncWrite {
                    columns: hash(SyncColumn::InfoHash, &info.hash),
                    join_group: (!group.is_empty())
                        .then(|| group.chars().take(MAX_GROUP_NAME).collect()),
                    display_name: (!name.is_empty()).then(|| name.to_string()),
                    app_info: Some(info.clone()),
                    ..SyncWrite::default()
                }
            }
            SyncResult::AppState(state) => SyncWrite {
                columns: hash(SyncColumn::StateHash, &state.hash),
                app_state: Some(state.clone()),
                ..SyncWrite::default()
            },
            SyncResult::SettingsReported { hash: h, tree } => SyncWrite {
                columns: hash(SyncColumn::SettingsHash, h),
                settings: Some(SettingsWrite::Reported(tree.clone())),
                ..SyncWrite::default()
            },
            SyncResult::SettingsPushed { hash: h, tree, rev } => SyncWrite {
                columns: hash(SyncColumn::SettingsHash, h),
                settings: Some(SettingsWrite::Pushed {
                    tree: tree.clone(),
                    rev: *rev,
                }),
                ..SyncWrite::default()
            },
            SyncResult::PolicyPushed { hash: h, digest } => SyncWrite {
                columns: vec![
                    (SyncColumn::PolicyHash, h.clone()),
                    (SyncColumn::PolicyDigest, digest.clone()),
                ],
                ..SyncWrite::default()
            },
            SyncResult::SubscriptionsPushed { hash: h, digest } => SyncWrite {
                columns: vec![
                    (SyncColumn::SubsHash, h.clone()),
                    (SyncColumn::SubsDigest, digest.clone()),
                ],
                ..SyncWrite::default()
            },
            SyncResult::Failed { command, error } => SyncWrite {
                error: Some((*command, error.clone())),
                ..SyncWrite::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_result_writes_its_columns_and_only_app_info_names_a_group() {
        let w = SyncWrite::of(&SyncResult::PolicyPushed {
            hash: vec![1],
            digest: vec![2],
        });
        assert_eq!(
            w.columns,
            vec![
                (SyncColumn::PolicyHash, vec![1]),
                (SyncColumn::PolicyDigest, vec![2])
            ]
        );
        assert_eq!(w.join_group, None);
        let error = ParamError::new(1186, "M", "no");
        let w = SyncWrite::of(&SyncResult::Failed {
            command: 1,
            error: error.clone(),
        });
        assert!(w.columns.is_empty());
        assert_eq!(w.error, Some((1, error)));
    }
}
