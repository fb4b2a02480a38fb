//! Policy rows per group, the effective policy with the group each value comes from, and event
//! subscriptions.

use super::rights::{Access, Caller, FuncArea};
use super::{Changed, Domain, DomainError, Notice, Result};
use crate::soap::Value;
use crate::store::{AuditEntry, PolicyEntry, PolicyRow, SubscriptionRow};
use crate::sync::policy::{self, Provenance};

/// A policy row as an admin gives it: a typed value (the JSON form of parameter values).
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyInput {
    pub path: String,
    pub value: Value,
    pub locked: bool,
}

/// The row `input` makes in `group`, or why it cannot be one.
fn to_row(group: i64, input: &PolicyInput) -> Result<PolicyRow> {
    policy::split_path(&input.path).map_err(DomainError::Invalid)?;
    if input.path.chars().count() > 1024 || input.path.chars().any(char::is_control) {
        return Err(DomainError::Invalid(
            "a policy path has at most 1024 characters and no control characters".into(),
        ));
    }
    let (value_type, value) =
        policy::encode_row_value(&input.value).map_err(DomainError::Invalid)?;
    Ok(PolicyRow {
        group_id: group,
        path: input.path.clone(),
        value_type: value_type.to_string(),
        value,
        locked: input.locked,
    })
}

/// Event types: what devices send (`event-type`, at most 50 characters).
fn check_subscription(row: &SubscriptionRow) -> Result<()> {
    if !(1..=4).contains(&row.severity) {
        return Err(DomainError::Invalid(
            "severity is 1 (info), 2 (warning), 3 (error) or 4 (critical)".into(),
        ));
    }
    let t = &row.event_type;
    if t.is_empty()
        || t.len() > crate::events::MAX_EVENT_TYPE
        || !t.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(DomainError::Invalid(
            "an event type has 1 to 50 printable ASCII characters".into(),
        ));
    }
    Ok(())
}

impl Domain {
    /// The rows of one group, as admins wrote them.
    pub async fn policy_rows(&self, caller: &Caller, group: i64) -> Result<Vec<PolicyEntry>> {
        caller.require(FuncArea::Policy, Access::Read)?;
        self.existing_group(group).await?;
        Ok(self.store.policy_of(group).await?)
    }

    /// The policy devices of `group` get, path by path, with the group each value comes from.
    pub async fn effective_policy(&self, caller: &Caller, group: i64) -> Result<Vec<Provenance>> {
        caller.require(FuncArea::Policy, Access::Read)?;
        self.existing_group(group).await?;
        let chain = self.store.group_chain(group).await?;
        let rows = self.store.policy_rows(&chain).await?;
        Ok(policy::provenance(&chain, &rows))
    }

    async fn existing_group(&self, group: i64) -> Result<()> {
        match self.store.group(group).await? {
            Some(_) => Ok(()),
            None => Err(DomainError::NotFound(format!(
                "group {group} does not exist"
            ))),
        }
    }

    /// Notices for a row just stored: devices get it at their next sync, unless an ancestor's
    /// lock wins.
    async fn policy_notices(&self, row: &PolicyRow) -> Result<Vec<Notice>> {
        let chain = self.store.group_chain(row.group_id).await?;
        let rows = self.store.policy_rows(&chain).await?;
        let winner = policy::provenance(&chain, &rows)
            .into_iter()
            .find(|p| p.path == row.path);
        let mut notices = Vec::new();
        match winner {
            Some(w) if w.group_id != row.group_id && w.locked => {
                notices.push(Notice::SHADOWED_BY_ANCESTOR_LOCK)
            }
            _ if row.locked => notices.push(Notice::PENDING_NEXT_HEARTBEAT),
            _ => {}
        }
        Ok(notices)
    }

    /// Sets the row at `input.path` in `group`, creating it if missing.
    pub async fn set_policy(
        &self,
        caller: &Caller,
        group: i64,
        input: &PolicyInput,
    ) -> Result<Changed<PolicyEntry>> {
        caller.require(FuncArea::Policy, Access::Write)?;
        let row = to_row(group, input)?;
        let mut changed = Changed::new(self.store.set_policy(&row, &caller.actor()).await?);
        changed.notices = self.policy_notices(&row).await?;
        Ok(changed)
    }

    /// Replaces the row `id` of `group`.
    pub async fn update_policy(
        &self,
        caller: &Caller,
        group: i64,
        id: i64,
        input: &PolicyInput,
    ) -> Result<Changed<PolicyEntry>> {
        caller.require(FuncArea::Policy, Access::Write)?;
        let row = to_row(group, input)?;
        let mut changed = Changed::new(self.store.update_policy(id, &row, &caller.actor()).await?);
        changed.notices = self.policy_notices(&row).await?;
        Ok(changed)
    }

    pub async fn delete_policy(&self, caller: &Caller, group: i64, id: i64) -> Result<AuditEntry> {
        caller.require(FuncArea::Policy, Access::Write)?;
        Ok(self.store.delete_policy(group, id, &caller.actor()).await?)
    }

    pub async fn subscriptions(&self, caller: &Caller, group: i64) -> Result<Vec<SubscriptionRow>> {
        caller.require(FuncArea::Policy, Access::Read)?;
        self.existing_group(group).await?;
        Ok(self.store.subscriptions_of(group).await?)
    }

    /// Subscribes the devices of a group to an event type at a severity, or unsubscribes them.
    /// `None` when nothing changed.
    pub async fn set_subscription(
        &self,
        caller: &Caller,
        row: &SubscriptionRow,
        subscribed: bool,
    ) -> Result<Option<AuditEntry>> {
        caller.require(FuncArea::Policy, Access::Write)?;
        check_subscription(row)?;
        Ok(self
            .store
            .set_subscription(row, subscribed, &caller.actor())
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_and_subscriptions_are_checked() {
        let ok = PolicyInput {
            path: "Scan/Level".into(),
            value: Value::Int(3),
            locked: true,
        };
        let row = to_row(7, &ok).unwrap();
        assert_eq!((row.value_type.as_str(), row.value.as_str()), ("int", "3"));
        let bad = PolicyInput {
            path: "Scan//Level".into(),
            ..ok.clone()
        };
        assert!(to_row(7, &bad).is_err());
        let container = PolicyInput {
            value: Value::Params(Default::default()),
            ..ok
        };
        assert!(to_row(7, &container).is_err());
        let sub = |severity, event_type: &str| SubscriptionRow {
            group_id: 1,
            severity,
            event_type: event_type.into(),
        };
        assert!(check_subscription(&sub(4, "GNRL_EV_VIRUS_FOUND")).is_ok());
        assert!(check_subscription(&sub(5, "X")).is_err());
        assert!(check_subscription(&sub(1, "")).is_err());
        assert!(check_subscription(&sub(1, "with space")).is_err());
    }
}
