//! Statements written once for both backends, over [`Conn`](super::sql::Conn).
//!
//! Each function here runs inside a transaction its caller opened (a write job) or on a read
//! connection, and is plain: SQL, arguments, rows to records. Where SQLite and PostgreSQL differ
//! (how the outbox numbers entries, how times compare), the function asks the connection's dialect
//! on the spot.

pub(crate) mod admin;
pub(crate) mod bus;
pub(crate) mod device;
pub(crate) mod events;
pub(crate) mod identity;
pub(crate) mod sessions;

use super::engine::{read, write, Engine};
use super::{
    Account, Actor, AdminStore, AuditEntry, AuditQuery, DeviceDetail, DeviceFilter, DeviceRecord,
    DeviceStatus, Group, IdentityStore, NewToken, Page, PageRequest, PolicyEntry, PolicyRow,
    Result, SettingsRecord, SubscriptionRow, TokenCapReached, TokenRecord,
};
use crate::soap::Params;
use time::OffsetDateTime;

/// Admin objects are the same on every backend: each operation is one shared write or read job.
#[async_trait::async_trait]
impl<E: Engine> AdminStore for E {
    async fn groups(&self) -> Result<Vec<Group>> {
        read(self, crate::job!(|c| admin::groups(c))).await
    }

    async fn group(&self, id: i64) -> Result<Option<Group>> {
        read(self, crate::job!(|c| admin::group(c, id))).await
    }

    async fn ensure_group(&self, parent: i64, name: &str) -> Result<i64> {
        let name = name.to_string();
        write(self, crate::job!(|c| admin::ensure_group(c, parent, &name))).await
    }

    async fn create_group(
        &self,
        parent: i64,
        name: &str,
        by: &Actor,
    ) -> Result<(Group, AuditEntry)> {
        let (name, by) = (name.to_string(), by.clone());
        write(
            self,
            crate::job!(|c| admin::create_group(c, parent, &name, &by)),
        )
        .await
    }

    async fn rename_group(&self, id: i64, name: &str, by: &Actor) -> Result<(Group, AuditEntry)> {
        let (name, by) = (name.to_string(), by.clone());
        write(
            self,
            crate::job!(|c| admin::rename_group(c, id, &name, &by)),
        )
        .await
    }

    async fn move_group(&self, id: i64, parent: i64, by: &Actor) -> Result<(Group, AuditEntry)> {
        let by = by.clone();
        write(self, crate::job!(|c| admin::move_group(c, id, parent, &by))).await
    }

    async fn delete_group(&self, id: i64, by: &Actor) -> Result<AuditEntry> {
        let by = by.clone();
        write(self, crate::job!(|c| admin::delete_group(c, id, &by))).await
    }

    async fn devices(
        &self,
        filter: &DeviceFilter,
        page: PageRequest,
    ) -> Result<Page<DeviceRecord>> {
        let filter = filter.clone();
        read(self, crate::job!(|c| admin::devices(c, &filter, page))).await
    }

    async fn device(&self, device_id: &str) -> Result<Option<DeviceDetail>> {
        let device_id = device_id.to_string();
        read(self, crate::job!(|c| admin::device(c, &device_id))).await
    }

    async fn register_device(
        &self,
        device_id: &str,
        group: i64,
        by: &Actor,
    ) -> Result<(DeviceRecord, AuditEntry)> {
        let (device_id, by) = (device_id.to_string(), by.clone());
        write(
            self,
            crate::job!(|c| admin::register_device(c, &device_id, group, &by)),
        )
        .await
    }

    async fn move_device(
        &self,
        device_id: &str,
        group: i64,
        by: &Actor,
    ) -> Result<(DeviceRecord, AuditEntry)> {
        let (device_id, by) = (device_id.to_string(), by.clone());
        write(
            self,
            crate::job!(|c| admin::move_device(c, &device_id, group, &by)),
        )
        .await
    }

    async fn set_device_status(
        &self,
        device_id: &str,
        status: DeviceStatus,
        by: &Actor,
    ) -> Result<(DeviceRecord, AuditEntry)> {
        let (device_id, by) = (device_id.to_string(), by.clone());
        write(
            self,
            crate::job!(|c| admin::set_device_status(c, &device_id, status, &by)),
        )
        .await
    }

    async fn reset_device(
        &self,
        device_id: &str,
        by: &Actor,
    ) -> Result<(DeviceRecord, AuditEntry)> {
        let (device_id, by) = (device_id.to_string(), by.clone());
        write(
            self,
            crate::job!(|c| admin::reset_device(c, &device_id, &by)),
        )
        .await
    }

    async fn delete_device(&self, device_id: &str, by: &Actor) -> Result<AuditEntry> {
        let (device_id, by) = (device_id.to_string(), by.clone());
        write(
            self,
            crate::job!(|c| admin::delete_device(c, &device_id, &by)),
        )
        .await
    }

    async fn queue_settings(
        &self,
        device_id: &str,
        changes: &Params,
        by: &Actor,
    ) -> Result<(SettingsRecord, AuditEntry)> {
        let (device_id, changes, by) = (device_id.to_string(), changes.clone(), by.clone());
        write(
            self,
            crate::job!(|c| admin::queue_settings(c, &device_id, &changes, &by)),
        )
        .await
    }

    async fn policy_of(&self, group: i64) -> Result<Vec<PolicyEntry>> {
        read(self, crate::job!(|c| admin::policy_of(c, group))).await
    }

    async fn set_policy(&self, row: &PolicyRow, by: &Actor) -> Result<(PolicyEntry, AuditEntry)> {
        let (row, by) = (row.clone(), by.clone());
        write(self, crate::job!(|c| admin::set_policy(c, &row, &by))).await
    }

    async fn update_policy(
        &self,
        id: i64,
        row: &PolicyRow,
        by: &Actor,
    ) -> Result<(PolicyEntry, AuditEntry)> {
        let (row, by) = (row.clone(), by.clone());
        write(
            self,
            crate::job!(|c| admin::update_policy(c, id, &row, &by)),
        )
        .await
    }

    async fn delete_policy(&self, group: i64, id: i64, by: &Actor) -> Result<AuditEntry> {
        let by = by.clone();
        write(
            self,
            crate::job!(|c| admin::delete_policy(c, group, id, &by)),
        )
        .await
    }

    async fn subscriptions_of(&self, group: i64) -> Result<Vec<SubscriptionRow>> {
        read(self, crate::job!(|c| admin::subscriptions_of(c, group))).await
    }

    async fn set_subscription(
        &self,
        row: &SubscriptionRow,
        subscribed: bool,
        by: &Actor,
    ) -> Result<Option<AuditEntry>> {
        let (row, by) = (row.clone(), by.clone());
        write(
            self,
            crate::job!(|c| admin::set_subscription(c, &row, subscribed, &by)),
        )
        .await
    }

    async fn audit(&self, query: &AuditQuery) -> Result<Page<AuditEntry>> {
        let query = query.clone();
        read(self, crate::job!(|c| bus::audit_entries(c, &query))).await
    }
}

/// Accounts, tokens and failed logins are the same on every backend.
#[async_trait::async_trait]
impl<E: Engine> IdentityStore for E {
    async fn account_count(&self) -> Result<i64> {
        read(self, crate::job!(|c| identity::account_count(c))).await
    }

    async fn create_account(
        &self,
        name: &str,
        role: &str,
        password_hash: &str,
        by: &Actor,
    ) -> Result<(Account, AuditEntry)> {
        let (name, role, hash, by) = (
            name.to_string(),
            role.to_string(),
            password_hash.to_string(),
            by.clone(),
        );
        write(
            self,
            crate::job!(|c| identity::create_account(c, &name, &role, &hash, &by)),
        )
        .await
    }

    async fn account_by_name(&self, name: &str) -> Result<Option<(Account, String)>> {
        let name = name.to_string();
        read(self, crate::job!(|c| identity::account_by_name(c, &name))).await
    }

    async fn account(&self, id: i64) -> Result<Option<Account>> {
        read(self, crate::job!(|c| identity::account(c, id))).await
    }

    async fn accounts(&self) -> Result<Vec<Account>> {
        read(self, crate::job!(|c| identity::accounts(c))).await
    }

    async fn set_password(&self, id: i64, password_hash: &str, by: &Actor) -> Result<AuditEntry> {
        let (hash, by) = (password_hash.to_string(), by.clone());
        write(
            self,
            crate::job!(|c| identity::set_password(c, id, &hash, &by)),
        )
        .await
    }

    async fn set_account_disabled(
        &self,
        id: i64,
        disabled: bool,
        by: &Actor,
    ) -> Result<AuditEntry> {
        let by = by.clone();
        write(
            self,
            crate::job!(|c| identity::set_disabled(c, id, disabled, &by)),
        )
        .await
    }

    async fn create_token(
        &self,
        token: &NewToken,
        max_tokens: u64,
        by: &Actor,
    ) -> Result<std::result::Result<(TokenRecord, AuditEntry), TokenCapReached>> {
        let (token, by) = (token.clone(), by.clone());
        write(
            self,
            crate::job!(|c| identity::create_token(c, &token, max_tokens, &by)),
        )
        .await
    }

    async fn token_by_subject(&self, subject: &str) -> Result<Option<TokenRecord>> {
        let subject = subject.to_string();
        read(
            self,
            crate::job!(|c| identity::token_by_subject(c, &subject)),
        )
        .await
    }

    async fn token(&self, id: i64) -> Result<Option<TokenRecord>> {
        read(self, crate::job!(|c| identity::token(c, id))).await
    }

    async fn tokens_of(&self, account: i64) -> Result<Vec<TokenRecord>> {
        read(self, crate::job!(|c| identity::tokens_of(c, account))).await
    }

    async fn revoke_token(
        &self,
        id: i64,
        now: OffsetDateTime,
        by: &Actor,
    ) -> Result<(TokenRecord, AuditEntry)> {
        let by = by.clone();
        write(
            self,
            crate::job!(|c| identity::revoke_token(c, id, now, &by)),
        )
        .await
    }

    async fn delete_token(&self, id: i64, now: OffsetDateTime, by: &Actor) -> Result<AuditEntry> {
        let by = by.clone();
        write(
            self,
            crate::job!(|c| identity::delete_token(c, id, now, &by)),
        )
        .await
    }
}
