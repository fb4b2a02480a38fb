//! PutResult: checks a device's answer against the command it was sent, persists it, plans the next.

use time::OffsetDateTime;
use tracing::{info, warn};

use super::DeviceService;
use crate::error::DeviceError;
use crate::sessions::{Awaiting, Session};
use crate::soap::{AppInfo, CmdData, Command, ParamError, Response};
use crate::sync::NO_COMMANDS;
use crate::sync::{SyncResult, SyncWrite};

/// Hashes are opaque to the server but bounded: seed section 2.1 allows at most 64 characters.
fn valid_hash(hash: &[u8]) -> Result<(), DeviceError> {
    if hash.is_empty() || hash.len() > 64 {
        Err(DeviceError::InvalidResultData(format!(
            "a hash must hold 1 to 64 bytes, not {}",
            hash.len()
        )))
    } else {
        Ok(())
    }
}

/// Control characters in what a device reports never reach storage (see [`crate::text`]).
fn escape_app_info(info: &mut AppInfo) {
    use crate::text::{escape_in_place, escape_opt};
    let p = &mut info.prod_info;
    for text in [
        &mut p.product_name,
        &mut p.product_version,
        &mut p.display_name,
        &mut p.prod_version,
        &mut info.dev_info.presumed_name,
        &mut info.dev_info.presumed_group,
    ] {
        escape_in_place(text);
    }
    let d = &mut info.dev_info;
    for text in [
        &mut d.os_manufacturer,
        &mut d.os_name,
        &mut d.os_ver,
        &mut d.processor_family,
        &mut d.system_name,
        &mut d.system_type,
    ] {
        escape_opt(text);
    }
    let l = &mut info.license_info;
    for key in [&mut l.key_current, &mut l.key_next].into_iter().flatten() {
        for text in [
            &mut key.key_serial,
            &mut key.key_maj_ver,
            &mut key.key_prod_name,
        ] {
            escape_in_place(text);
        }
    }
}

fn escape_param_error(e: &mut ParamError) {
    for text in [&mut e.module, &mut e.file, &mut e.message] {
        crate::text::escape_in_place(text);
    }
}

/// The persisted form of `data` as the result of `awaiting`, or why it is not acceptable.
fn to_result(awaiting: &Awaiting, data: Option<CmdData>) -> Result<SyncResult, DeviceError> {
    let command = awaiting.step().code();
    let expected = match awaiting {
        Awaiting::AppInfo => "aklwngt:CmdAppInfo",
        Awaiting::AppState => "aklwngt:CmdAppState",
        Awaiting::SettingsGet => "aklwngt:CmdParAndHash",
        _ => "aklwngt:CmdHash",
    };
    Ok(match (awaiting, data) {
        (_, Some(CmdData::Error(mut error))) => {
            escape_param_error(&mut error);
            SyncResult::Failed { command, error }
        }
        (Awaiting::AppInfo, Some(CmdData::AppInfo(mut info))) => {
            valid_hash(&info.hash)?;
            escape_app_info(&mut info);
            SyncResult::AppInfo(info)
        }
        (Awaiting::AppState, Some(CmdData::AppState(state))) => {
            valid_hash(&state.hash)?;
            SyncResult::AppState(state)
        }
        (Awaiting::SettingsGet, Some(CmdData::ParAndHash { hash, parameters })) => {
            valid_hash(&hash)?;
            SyncResult::SettingsReported {
                hash,
                tree: parameters,
            }
        }
        (Awaiting::SettingsPut { tree, rev }, Some(CmdData::Hash(hash))) => {
            valid_hash(&hash)?;
            SyncResult::SettingsPushed {
                hash,
                tree: tree.clone(),
                rev: *rev,
            }
        }
        (Awaiting::PolicyPut { digest }, Some(CmdData::Hash(hash))) => {
            valid_hash(&hash)?;
            SyncResult::PolicyPushed {
                hash,
                digest: digest.clone(),
            }
        }
        (Awaiting::SubscriptionsPut { digest }, Some(CmdData::Hash(hash))) => {
            valid_hash(&hash)?;
            SyncResult::SubscriptionsPushed {
                hash,
                digest: digest.clone(),
            }
        }
        _ => return Err(DeviceError::WrongResultType { command, expected }),
    })
}

impl DeviceService {
    pub(super) async fn put_result(
        &self,
        session_id: &str,
        result: Command,
        now: OffsetDateTime,
    ) -> Result<Response, DeviceError> {
        let mut session = self.session(session_id, now).await?;
        let outcome = self.apply_result(&mut session, result, now).await;
        let next = match outcome {
            Ok(()) => self.plan(&mut session, None).await,
            Err(e) => {
                // SPEC section 6: after a refused result the plan is dropped; the next Heartbeat
                // plans afresh.
                session.sync = None;
                Err(e)
            }
        };
        self.sessions.update(&session).await?;
        Ok(Response::PutResult {
            next_command: next?,
            error: None,
        })
    }

    async fn apply_result(
        &self,
        session: &mut Session,
        result: Command,
        now: OffsetDateTime,
    ) -> Result<(), DeviceError> {
        let Some(run) = session.sync.as_mut() else {
            return Err(DeviceError::UnexpectedResultCode {
                expected: NO_COMMANDS,
                got: result.code,
            });
        };
        let Some(awaiting) = run.awaiting.take() else {
            return Err(DeviceError::UnexpectedResultCode {
                expected: NO_COMMANDS,
                got: result.code,
            });
        };
        let expected = awaiting.step().code();
        if result.code != expected {
            warn!(device = %session.device_id, expected, got = result.code, "unexpected result code");
            return Err(DeviceError::UnexpectedResultCode {
                expected,
                got: result.code,
            });
        }
        let record = to_result(&awaiting, result.data)?;
        let recorded = self
            .store
            .record_result(session.device, &SyncWrite::of(&record), now)
            .await?;
        // Mirror what was persisted, so the rest of this session plans on it.
        let known = &mut run.known;
        match record {
            SyncResult::AppInfo(info) => known.info_hash = Some(info.hash),
            SyncResult::AppState(state) => known.state_hash = Some(state.hash),
            SyncResult::SettingsReported { hash, .. } => {
                known.settings_hash = Some(hash);
                known.settings_known = true;
            }
            // After a push the device's item has the hash it just returned, not the one of the
            // Heartbeat: planning the rest of the session against the stale one would ask for
            // what was just pushed (SETTINGS_GET after SETTINGS_PUT).
            SyncResult::SettingsPushed { hash, .. } => {
                run.reported.stgs.clone_from(&hash);
                known.settings_hash = Some(hash);
                known.settings_pending = false;
            }
            SyncResult::PolicyPushed { hash, digest } => {
                run.reported.pol.clone_from(&hash);
                known.policy_hash = Some(hash);
                known.policy_digest = Some(digest);
            }
            SyncResult::SubscriptionsPushed { hash, digest } => {
                run.reported.sbsc.clone_from(&hash);
                known.subs_hash = Some(hash);
                known.subs_digest = Some(digest);
            }
            SyncResult::Failed { command, error } => {
                info!(device = %session.device_id, command, code = error.code, message = %error.message.escape_debug(),
                      "device answered a command with an error; retried next session");
            }
        }
        if let Some(group) = recorded.moved_to {
            info!(device = %session.device_id, group, "device joined its presumed group");
            run.group_id = group;
        }
        Ok(())
    }
}
