//! Heartbeat, and the planning step shared with PutResult: the next command for a device.

use std::net::SocketAddr;

use time::OffsetDateTime;

use super::DeviceService;
use crate::error::DeviceError;
use crate::sessions::{Awaiting, ReportedHashes, Session, SyncRun};
use crate::soap::{CmdData, Command, Response, SyncInfo};
use crate::store::Seen;
use crate::sync::{next_step, policy, Current, Reported, Step, NO_COMMANDS};

impl DeviceService {
    pub(super) async fn heartbeat(
        &self,
        session_id: &str,
        sync: Option<SyncInfo>,
        peer: SocketAddr,
        now: OffsetDateTime,
    ) -> Result<Response, DeviceError> {
        let mut session = self.session(session_id, now).await?;
        let seen = Seen {
            at: now,
            address: peer.ip().to_string(),
        };
        self.store.touch_device(session.device, &seen).await?;
        let Some(sync) = sync else {
            // Alive, nothing to plan; an unfinished sync of this session is abandoned.
            if session.sync.take().is_some() {
                self.sessions.update(&session).await?;
            }
            return Ok(Response::Heartbeat {
                command: Command::bare(NO_COMMANDS),
                error: None,
            });
        };
        let record = self.store.sync_record(session.device).await?;
        session.sync = Some(SyncRun {
            reported: ReportedHashes {
                info: sync.hash_info,
                state: sync.hash_state,
                stgs: sync.hash_stgs,
                pol: sync.hash_pol,
                sbsc: sync.hash_sbsc,
            },
            known: record.known,
            group_id: record.group_id,
            progress: Default::default(),
            awaiting: None,
            commands_sent: 0,
        });
        let command = self.plan(&mut session, Some(record.revisions)).await;
        self.sessions.update(&session).await?;
        Ok(Response::Heartbeat {
            command: command?,
            error: None,
        })
    }

    /// Picks the session's next command and remembers what its result must be recorded with.
    /// Ends the sync (and returns SRV_NO_COMMANDS) when nothing is left or the session's cap is hit.
    /// `revisions` are the policy/subscription revisions if the caller has just read them.
    pub(super) async fn plan(
        &self,
        session: &mut Session,
        revisions: Option<crate::store::Revisions>,
    ) -> Result<Command, DeviceError> {
        let Some(run) = session.sync.as_mut() else {
            return Ok(Command::bare(NO_COMMANDS));
        };
        if run.commands_sent >= self.config.max_commands_per_session {
            tracing::warn!(device = %session.device_id, "command cap reached; ending the sync");
            session.sync = None;
            return Ok(Command::bare(NO_COMMANDS));
        }
        let group = self
            .groups
            .get(&*self.store, run.group_id, revisions)
            .await?;
        let reported = Reported {
            hash_info: &run.reported.info,
            hash_state: &run.reported.state,
            hash_stgs: &run.reported.stgs,
            hash_pol: &run.reported.pol,
            hash_sbsc: &run.reported.sbsc,
        };
        let current = Current {
            policy_digest: &group.policy_digest,
            subs_digest: &group.subscriptions_digest,
        };
        let Some(step) = next_step(&run.known, &reported, &current, &run.progress) else {
            let sent = run.commands_sent;
            session.sync = None;
            if sent > 0 {
                // A sync that did something is news for admins; one that found nothing to do is not.
                let payload = serde_json::json!({ "commands": sent });
                self.store
                    .publish("device.sync_done", Some(&session.device_id), Some(payload))
                    .await?;
            }
            return Ok(Command::bare(NO_COMMANDS));
        };
        let (data, awaiting) = match step {
            Step::AppInfoGet => (None, Awaiting::AppInfo),
            Step::AppStateGet => (None, Awaiting::AppState),
            Step::SettingsGet => (None, Awaiting::SettingsGet),
            Step::SettingsPut => {
                let settings = self.store.settings(session.device).await?;
                let base = settings.current.unwrap_or_default();
                let tree = match &settings.pending {
                    Some(changes) => policy::apply_changes(&base, changes),
                    None => base,
                };
                (
                    Some(CmdData::Par(tree.clone())),
                    Awaiting::SettingsPut {
                        tree,
                        rev: settings.pending_rev,
                    },
                )
            }
            Step::PolicyPut => (
                Some(CmdData::Par(group.policy.clone())),
                Awaiting::PolicyPut {
                    digest: group.policy_digest.clone(),
                },
            ),
            Step::SubscriptionsPut => (
                Some(CmdData::Subscriptions(group.subscriptions.clone())),
                Awaiting::SubscriptionsPut {
                    digest: group.subscriptions_digest.clone(),
                },
            ),
        };
        run.progress.mark(step);
        run.commands_sent += 1;
        run.awaiting = Some(awaiting);
        Ok(Command {
            code: step.code(),
            data,
        })
    }
}
