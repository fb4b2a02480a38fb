//! Groups, devices and their queued settings. Blocking or resetting a device also ends its
//! sessions, wherever they are kept.

use super::rights::{Access, Caller, FuncArea};
use super::{Changed, Domain, DomainError, Notice, Result};
use crate::soap::Params;
use crate::store::{
    AuditEntry, DeviceDetail, DeviceFilter, DeviceRecord, DeviceStatus, FleetStats, Group, Page,
    PageRequest, SettingsRecord, ROOT_GROUP, UNASSIGNED_GROUP,
};
use crate::sync::planner::Known;

pub use crate::store::DeviceChange;

/// A device to pre-register.
#[derive(Debug, Clone, Copy, Default)]
pub struct NewDevice<'a> {
    pub device_id: &'a str,
    /// Default: Unassigned.
    pub group: Option<i64>,
    pub display_name: Option<&'a str>,
    /// The password the device must log in with; `None`: its first login sets it.
    pub password: Option<&'a str>,
}

/// Where a device's sync stands.
#[derive(Debug, Clone)]
pub struct DeviceSync {
    pub device: DeviceRecord,
    pub known: Known,
    /// The device was last given the policy its group has now.
    pub policy_current: bool,
    pub subscriptions_current: bool,
}

/// Display names: up to 255 characters and no control characters (empty removes the name).
fn check_display_name(name: &str) -> Result<()> {
    if name.chars().count() > 255 || name.chars().any(char::is_control) {
        return Err(DomainError::Invalid(
            "a display name has at most 255 characters and no control characters".into(),
        ));
    }
    Ok(())
}

/// Group names: 1 to 255 characters, no control characters, no spaces at either end.
fn check_group_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.chars().count() > crate::sync::result::MAX_GROUP_NAME
        || name.chars().any(char::is_control)
        || name.trim() != name
    {
        return Err(DomainError::Invalid(
            "a group name has 1 to 255 characters, no control characters and no spaces at either end"
                .into(),
        ));
    }
    Ok(())
}

/// DeviceIds, as devices present them (SPEC section 5): 1 to 64 printable ASCII characters.
pub fn valid_device_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
}

fn check_device_id(id: &str) -> Result<()> {
    if valid_device_id(id) {
        Ok(())
    } else {
        Err(DomainError::Invalid(
            "a device id has 1 to 64 printable ASCII characters".into(),
        ))
    }
}

/// The largest page a list returns.
pub const MAX_PAGE: u64 = 1000;

pub(super) fn check_page(page: PageRequest) -> Result<()> {
    if page.limit == 0 || page.limit > MAX_PAGE {
        return Err(DomainError::Invalid(format!(
            "a page holds 1 to {MAX_PAGE} items"
        )));
    }
    Ok(())
}

impl Domain {
    pub async fn groups(&self, caller: &Caller) -> Result<Vec<Group>> {
        caller.require(FuncArea::Devices, Access::Read)?;
        Ok(self.store.groups().await?)
    }

    pub async fn group(&self, caller: &Caller, id: i64) -> Result<Group> {
        caller.require(FuncArea::Devices, Access::Read)?;
        self.store
            .group(id)
            .await?
            .ok_or_else(|| DomainError::NotFound(format!("group {id} does not exist")))
    }

    pub async fn create_group(
        &self,
        caller: &Caller,
        parent: i64,
        name: &str,
    ) -> Result<Changed<Group>> {
        caller.require(FuncArea::Devices, Access::Write)?;
        check_group_name(name)?;
        Ok(Changed::new(
            self.store
                .create_group(parent, name, &caller.actor())
                .await?,
        ))
    }

    pub async fn rename_group(
        &self,
        caller: &Caller,
        id: i64,
        name: &str,
    ) -> Result<Changed<Group>> {
        caller.require(FuncArea::Devices, Access::Write)?;
        check_group_name(name)?;
        Ok(Changed::new(
            self.store.rename_group(id, name, &caller.actor()).await?,
        ))
    }

    /// Moves a group under another; the root and Unassigned stay where they are.
    pub async fn move_group(
        &self,
        caller: &Caller,
        id: i64,
        parent: i64,
    ) -> Result<Changed<Group>> {
        caller.require(FuncArea::Devices, Access::Write)?;
        if id == ROOT_GROUP || id == UNASSIGNED_GROUP {
            return Err(DomainError::Invalid(
                "the root group and Unassigned cannot move".into(),
            ));
        }
        let mut changed = Changed::new(self.store.move_group(id, parent, &caller.actor()).await?);
        // What the group's devices inherit changed: they get it at their next sync.
        changed.notices.push(Notice::PENDING_NEXT_HEARTBEAT);
        Ok(changed)
    }

    /// Renames a group, moves it, or both (each checked before either is made).
    pub async fn change_group(
        &self,
        caller: &Caller,
        id: i64,
        name: Option<&str>,
        parent: Option<i64>,
    ) -> Result<Group> {
        caller.require(FuncArea::Devices, Access::Write)?;
        if let Some(name) = name {
            check_group_name(name)?;
        }
        if parent.is_some() && (id == ROOT_GROUP || id == UNASSIGNED_GROUP) {
            return Err(DomainError::Invalid(
                "the root group and Unassigned stay where they are".into(),
            ));
        }
        let mut group = match (name, parent) {
            (None, None) => {
                return Err(DomainError::Invalid(
                    "nothing to change: give name or parent_id".into(),
                ))
            }
            _ => self.group(caller, id).await?,
        };
        if let Some(parent) = parent {
            group = self.move_group(caller, id, parent).await?.value;
        }
        if let Some(name) = name {
            group = self.rename_group(caller, id, name).await?.value;
        }
        Ok(group)
    }

    /// Deletes an empty group (no child groups, no devices); its policy rows and subscriptions go
    /// with it. The root and Unassigned stay.
    pub async fn delete_group(&self, caller: &Caller, id: i64) -> Result<AuditEntry> {
        caller.require(FuncArea::Devices, Access::Write)?;
        if id == ROOT_GROUP || id == UNASSIGNED_GROUP {
            return Err(DomainError::Invalid(
                "the root group and Unassigned cannot be deleted".into(),
            ));
        }
        Ok(self.store.delete_group(id, &caller.actor()).await?)
    }

    pub async fn devices(
        &self,
        caller: &Caller,
        filter: &DeviceFilter,
        page: PageRequest,
    ) -> Result<Page<DeviceRecord>> {
        caller.require(FuncArea::Devices, Access::Read)?;
        check_page(page)?;
        super::queries::check_filter_text(&filter.search)?;
        Ok(self.store.devices(filter, page).await?)
    }

    pub async fn device(&self, caller: &Caller, device_id: &str) -> Result<DeviceDetail> {
        caller.require(FuncArea::Devices, Access::Read)?;
        self.store
            .device(device_id)
            .await?
            .ok_or_else(|| DomainError::NotFound(format!("device {device_id:?} does not exist")))
    }

    /// Pre-registers a device id, for closed enrolment: the device's first login sets its password.
    /// With a password, only that password logs the device in; without one, the device's first
    /// login sets it.
    pub async fn register_device(
        &self,
        caller: &Caller,
        device: &NewDevice<'_>,
    ) -> Result<Changed<DeviceRecord>> {
        caller.require(FuncArea::Devices, Access::Write)?;
        check_device_id(device.device_id)?;
        if let Some(name) = device.display_name {
            check_display_name(name)?;
        }
        let credential = match device.password {
            Some(password) => {
                if password.is_empty()
                    || password.chars().count() > 256
                    || password.chars().any(char::is_control)
                {
                    return Err(DomainError::Invalid(
                        "a device password has 1 to 256 characters and no control characters"
                            .into(),
                    ));
                }
                Some(self.device_secret.hash(password))
            }
            None => None,
        };
        Ok(Changed::new(
            self.store
                .register_device(
                    device.device_id,
                    device.group.unwrap_or(UNASSIGNED_GROUP),
                    device.display_name.filter(|n| !n.is_empty()),
                    credential,
                    &caller.actor(),
                )
                .await?,
        ))
    }

    /// Moves, renames, blocks or unblocks a device in one change. Moving and renaming need Write,
    /// blocking Execute; all are checked before anything is written. A block ends the device's
    /// sessions at once.
    pub async fn change_device(
        &self,
        caller: &Caller,
        device_id: &str,
        change: &DeviceChange,
    ) -> Result<Changed<DeviceRecord>> {
        if change.group_id.is_some() || change.display_name.is_some() {
            caller.require(FuncArea::Devices, Access::Write)?;
        }
        if change.blocked.is_some() {
            caller.require(FuncArea::Devices, Access::Execute)?;
        }
        if let Some(name) = &change.display_name {
            check_display_name(name)?;
        }
        let mut changed = Changed::new(
            self.store
                .update_device(device_id, change, &caller.actor())
                .await?,
        );
        if change.blocked == Some(true) {
            self.end_sessions(&changed.value).await?;
        }
        if change.group_id.is_some() {
            changed.notices.push(Notice::PENDING_NEXT_HEARTBEAT);
            if changed.value.status == DeviceStatus::Blocked {
                changed.notices.push(Notice::DEVICE_BLOCKED);
            }
        }
        Ok(changed)
    }

    /// A device, what the server knows of its sync (hashes, pending settings), and whether it holds
    /// its group's current policy and subscriptions (what it was last given is what it gets now).
    pub async fn device_sync(&self, caller: &Caller, device_id: &str) -> Result<DeviceSync> {
        let device = self.device(caller, device_id).await?.device;
        let sync = self.store.sync_record(device.id).await?;
        let chain = self.store.group_chain(device.group_id).await?;
        let (policy, _) =
            crate::sync::policy::effective_policy(&chain, &self.store.policy_rows(&chain).await?);
        let subscriptions = crate::sync::policy::effective_subscriptions(
            &self.store.subscription_rows(&chain).await?,
        );
        let current = |given: &Option<Vec<u8>>, now: Vec<u8>| given.as_deref() == Some(&now[..]);
        Ok(DeviceSync {
            policy_current: current(
                &sync.known.policy_digest,
                crate::sync::policy::digest(&policy),
            ),
            subscriptions_current: current(
                &sync.known.subs_digest,
                crate::sync::policy::digest(&subscriptions),
            ),
            device,
            known: sync.known,
        })
    }

    /// Devices by state, infected devices, and events per hour over the last 24 hours.
    pub async fn stats(&self, caller: &Caller) -> Result<FleetStats> {
        caller.require(FuncArea::Devices, Access::Read)?;
        let now = self.clock.now();
        let since = now - time::Duration::hours(23);
        let since = since
            .replace_minute(0)
            .and_then(|t| t.replace_second(0))
            .and_then(|t| t.replace_nanosecond(0))
            .unwrap_or(since);
        Ok(self.store.stats(since).await?)
    }

    pub async fn move_device(
        &self,
        caller: &Caller,
        device_id: &str,
        group: i64,
    ) -> Result<Changed<DeviceRecord>> {
        caller.require(FuncArea::Devices, Access::Write)?;
        let mut changed = Changed::new(
            self.store
                .move_device(device_id, group, &caller.actor())
                .await?,
        );
        changed.notices.push(Notice::PENDING_NEXT_HEARTBEAT);
        if changed.value.status == DeviceStatus::Blocked {
            changed.notices.push(Notice::DEVICE_BLOCKED);
        }
        Ok(changed)
    }

    /// Blocks or unblocks a device; a blocked device's sessions end at once.
    pub async fn set_device_blocked(
        &self,
        caller: &Caller,
        device_id: &str,
        blocked: bool,
    ) -> Result<Changed<DeviceRecord>> {
        caller.require(FuncArea::Devices, Access::Execute)?;
        let status = if blocked {
            DeviceStatus::Blocked
        } else {
            DeviceStatus::Active
        };
        let changed = Changed::new(
            self.store
                .set_device_status(device_id, status, &caller.actor())
                .await?,
        );
        if blocked {
            self.end_sessions(&changed.value).await?;
        }
        Ok(changed)
    }

    /// Forgets a device's password so that it enrols again; its sessions end at once.
    pub async fn reset_device(
        &self,
        caller: &Caller,
        device_id: &str,
    ) -> Result<Changed<DeviceRecord>> {
        caller.require(FuncArea::Devices, Access::Execute)?;
        let changed = Changed::new(self.store.reset_device(device_id, &caller.actor()).await?);
        self.end_sessions(&changed.value).await?;
        Ok(changed)
    }

    /// Deletes a device and everything it reported, its events included.
    pub async fn delete_device(&self, caller: &Caller, device_id: &str) -> Result<AuditEntry> {
        caller.require(FuncArea::Devices, Access::Write)?;
        let device = self.device(caller, device_id).await?.device;
        let audit = self.store.delete_device(device_id, &caller.actor()).await?;
        self.end_sessions(&device).await?;
        Ok(audit)
    }

    async fn end_sessions(&self, device: &DeviceRecord) -> Result<()> {
        let ended = self.sessions.end_device(device.id).await?;
        tracing::info!(device_id = %device.device_id, ended, "device sessions ended");
        Ok(())
    }

    /// Queues changes to a device's settings: they are merged into its pending changes and pushed
    /// at its next sync, on top of what the device reports.
    pub async fn queue_settings(
        &self,
        caller: &Caller,
        device_id: &str,
        changes: &Params,
    ) -> Result<Changed<SettingsRecord>> {
        caller.require(FuncArea::Devices, Access::Write)?;
        if changes.is_empty() {
            return Err(DomainError::Invalid("no settings to change".into()));
        }
        let mut changed = Changed::new(
            self.store
                .queue_settings(device_id, changes, &caller.actor())
                .await?,
        );
        changed.notices.push(Notice::PENDING_NEXT_HEARTBEAT);
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids_are_checked() {
        assert!(check_group_name("Sales EMEA").is_ok());
        assert!(check_group_name("").is_err());
        assert!(check_group_name(" Sales").is_err());
        assert!(check_group_name("a\u{1b}b").is_err());
        assert!(check_group_name(&"g".repeat(256)).is_err());
        assert!(valid_device_id("IMEI-35209900176"));
        assert!(!valid_device_id("кириллица"));
        assert!(check_page(PageRequest {
            offset: 0,
            limit: 0
        })
        .is_err());
        assert!(check_page(PageRequest {
            offset: 5,
            limit: 1000
        })
        .is_ok());
    }
}
