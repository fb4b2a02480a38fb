//! Statements written once for both backends, over [`Conn`](super::sql::Conn), and every role trait
//! of the store implemented once over any [`Engine`].
//!
//! Each statement function runs inside a transaction its caller opened (a write job) or on a read
//! connection, and is plain: SQL, arguments, rows to records. Where SQLite and PostgreSQL differ
//! (how the outbox numbers entries, how times compare), the function asks the connection's dialect
//! on the spot. What a backend does its own way (event intake, buffered "last seen" times, the bus's
//! notifications, dumps) it provides through [`Engine`].

pub(crate) mod admin;
pub(crate) mod backend;
pub(crate) mod bus;
pub(crate) mod device;
pub(crate) mod events;
pub(crate) mod identity;
pub(crate) mod sessions;

use super::engine::{read, read_now, write, write_autocommit, Engine};
use super::{
    dump, Account, Actor, AdminStore, AuditEntry, AuditQuery, Backend, BackendStore, BusRecord,
    BusStore, CommandEnd, CommandFilter, CommandRecord, ConsoleRecord, DeviceChange, DeviceDetail,
    DeviceFilter, DeviceLogin, DeviceRecord, DeviceStatus, DeviceStore, EventQuery, EventRecord,
    EventStore, EventTable, FleetStats, Group, IdentityStore, IntakeEvent, IntakeRecord,
    Maintenance, NewCommand, NewToken, OpenCommand, Page, PageRequest, PolicyEntry, PolicyRow,
    Recorded, Result, Retained, Revisions, Seen, SessionCutoff, SessionStore, SettingsRecord,
    StoredSession, SubscriptionRow, SyncRecord, SyncWrite, ThrottleStore, TokenCapReached,
    TokenRecord,
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
        display_name: Option<&str>,
        credential: Option<Vec<u8>>,
        by: &Actor,
    ) -> Result<(DeviceRecord, AuditEntry)> {
        let (device_id, by) = (device_id.to_string(), by.clone());
        let name = display_name.map(str::to_string);
        write(
            self,
            crate::job!(|c| admin::register_device(
                c,
                &device_id,
                group,
                name.as_deref(),
                credential.clone(),
                &by
            )),
        )
        .await
    }

    async fn update_device(
        &self,
        device_id: &str,
        change: &DeviceChange,
        by: &Actor,
    ) -> Result<(DeviceRecord, AuditEntry)> {
        let (device_id, change, by) = (device_id.to_string(), change.clone(), by.clone());
        write(
            self,
            crate::job!(|c| admin::update_device(c, &device_id, &change, &by)),
        )
        .await
    }

    async fn stats(&self, since: OffsetDateTime) -> Result<FleetStats> {
        read(self, crate::job!(|c| admin::stats(c, since))).await
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

/// The device path: point reads right here where the backend can, writes in the backend's way.
#[async_trait::async_trait]
impl<E: Engine> DeviceStore for E {
    async fn device_login(&self, device_id: &str) -> Result<Option<DeviceLogin>> {
        let device_id = device_id.to_string();
        read_now(self, crate::job!(|c| device::device_login(c, &device_id))).await
    }

    async fn enrol_device(
        &self,
        device_id: &str,
        credential: &[u8],
        seen: &Seen,
    ) -> Result<Option<i64>> {
        let (device_id, credential, seen) =
            (device_id.to_string(), credential.to_vec(), seen.clone());
        write(
            self,
            crate::job!(|c| device::enrol(c, &device_id, &credential, &seen)),
        )
        .await
    }

    async fn touch_device(&self, device: i64, seen: &Seen) -> Result<()> {
        self.note_seen(device, seen);
        Ok(())
    }

    async fn device_count(&self) -> Result<i64> {
        read(self, crate::job!(|c| device::device_count(c))).await
    }

    async fn sync_record(&self, device: i64) -> Result<SyncRecord> {
        read_now(self, crate::job!(|c| device::sync_record(c, device))).await
    }

    async fn settings(&self, device: i64) -> Result<SettingsRecord> {
        read_now(self, crate::job!(|c| device::settings(c, device))).await
    }

    async fn record_result(
        &self,
        device: i64,
        write_: &SyncWrite,
        now: time::OffsetDateTime,
    ) -> Result<Recorded> {
        let what = write_.clone();
        write(
            self,
            crate::job!(|c| device::record_result(c, device, &what, now)),
        )
        .await
    }

    async fn revisions(&self) -> Result<Revisions> {
        read_now(self, crate::job!(|c| device::revisions(c))).await
    }

    async fn group_chain(&self, group: i64) -> Result<Vec<i64>> {
        read_now(self, crate::job!(|c| device::group_chain(c, group))).await
    }

    async fn policy_rows(&self, groups: &[i64]) -> Result<Vec<PolicyRow>> {
        let groups = groups.to_vec();
        read_now(self, crate::job!(|c| device::policy_rows(c, &groups))).await
    }

    async fn subscription_rows(&self, groups: &[i64]) -> Result<Vec<SubscriptionRow>> {
        let groups = groups.to_vec();
        read_now(self, crate::job!(|c| device::subscription_rows(c, &groups))).await
    }
}

#[async_trait::async_trait]
impl<E: Engine> EventStore for E {
    async fn store_events(
        &self,
        device: i64,
        events: Vec<crate::events::StoredEvent>,
        seen: &Seen,
    ) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        Engine::store_events(self, device, events, seen).await
    }

    async fn event_count(&self) -> Result<i64> {
        read(self, crate::job!(|c| events::count(c))).await
    }

    async fn events(&self, query: &EventQuery) -> Result<Page<EventRecord>> {
        let query = query.clone();
        read(self, crate::job!(|c| events::events(c, &query))).await
    }

    async fn delete_old_events(
        &self,
        table: EventTable,
        before: Option<OffsetDateTime>,
        keep_rows: Option<u64>,
        consumers: &[String],
        limit: u64,
    ) -> Result<Retained> {
        let consumers = consumers.to_vec();
        write(
            self,
            crate::job!(|c| events::delete_old(c, table, before, keep_rows, &consumers, limit)),
        )
        .await
    }

    async fn store_intake(
        &self,
        event: &IntakeEvent,
        received_at: OffsetDateTime,
        source_address: &str,
        account: Option<&str>,
    ) -> Result<Option<i64>> {
        let (event, source) = (event.clone(), source_address.to_string());
        let account = account.map(str::to_string);
        write(
            self,
            crate::job!(|c| events::store_intake(
                c,
                &event,
                received_at,
                &source,
                account.as_deref()
            )),
        )
        .await
    }

    async fn intake_events(
        &self,
        after_id: Option<i64>,
        page: PageRequest,
    ) -> Result<Page<IntakeRecord>> {
        read(
            self,
            crate::job!(|c| events::intake_events(c, after_id, page)),
        )
        .await
    }

    async fn events_by_rows(
        &self,
        range: Option<(i64, i64)>,
        ids: &[i64],
    ) -> Result<Vec<EventRecord>> {
        let ids = ids.to_vec();
        read(self, crate::job!(|c| events::by_rows(c, range, &ids))).await
    }
}

/// Failed logins: read at every login, so right here where the backend can; written without a
/// transaction of their own (each key's count stands alone).
#[async_trait::async_trait]
impl<E: Engine> ThrottleStore for E {
    async fn failures(&self, keys: &[String], since: OffsetDateTime) -> Result<Vec<(String, u32)>> {
        let keys = keys.to_vec();
        read_now(self, crate::job!(|c| identity::failures(c, &keys, since))).await
    }

    async fn record_failure(
        &self,
        keys: &[String],
        now: OffsetDateTime,
        since: OffsetDateTime,
    ) -> Result<()> {
        let keys = keys.to_vec();
        write_autocommit(
            self,
            crate::job!(|c| identity::record_failure(c, &keys, now, since)),
        )
        .await
    }

    async fn clear_failures(&self, keys: &[String]) -> Result<()> {
        let keys = keys.to_vec();
        write_autocommit(self, crate::job!(|c| identity::clear_failures(c, &keys))).await
    }

    async fn forget_failures(&self, since: OffsetDateTime) -> Result<u64> {
        write_autocommit(self, crate::job!(|c| identity::forget_failures(c, since))).await
    }
}

/// Session rows, on the backend's session jobs. A new session's rows are one transaction; the
/// other writes are single statements.
#[async_trait::async_trait]
impl<E: Engine> SessionStore for E {
    async fn insert_session(
        &self,
        session: &StoredSession,
        per_device: usize,
        may_grow: bool,
    ) -> Result<Option<u64>> {
        let s = session.clone();
        write(
            self.sessions(),
            crate::job!(|c| sessions::insert(c, &s, per_device, may_grow)),
        )
        .await
    }

    async fn touch_session(
        &self,
        id: &str,
        now: OffsetDateTime,
        cutoff: &SessionCutoff,
    ) -> Result<Option<StoredSession>> {
        let (id, cutoff) = (id.to_string(), *cutoff);
        write_autocommit(
            self.sessions(),
            crate::job!(|c| sessions::touch(c, &id, now, &cutoff)),
        )
        .await
    }

    async fn update_session(&self, session: &StoredSession) -> Result<()> {
        let s = session.clone();
        write_autocommit(self.sessions(), crate::job!(|c| sessions::update(c, &s))).await
    }

    async fn remove_session(&self, id: &str) -> Result<bool> {
        let id = id.to_string();
        write_autocommit(self.sessions(), crate::job!(|c| sessions::remove(c, &id))).await
    }

    async fn remove_device_sessions(&self, device: i64) -> Result<u64> {
        write_autocommit(
            self.sessions(),
            crate::job!(|c| sessions::remove_device(c, device)),
        )
        .await
    }

    async fn sweep_sessions(&self, cutoff: &SessionCutoff) -> Result<u64> {
        let cutoff = *cutoff;
        write_autocommit(
            self.sessions(),
            crate::job!(|c| sessions::sweep(c, &cutoff)),
        )
        .await
    }

    async fn session_count(&self) -> Result<u64> {
        read(self.sessions(), crate::job!(|c| sessions::count(c))).await
    }
}

/// Service consoles and backend commands are the same on every backend.
#[async_trait::async_trait]
impl<E: Engine> BackendStore for E {
    async fn add_console(&self, console: &ConsoleRecord) -> Result<()> {
        let console = console.clone();
        write(self, crate::job!(|c| backend::add_console(c, &console))).await
    }

    async fn consoles(
        &self,
        product: Option<(&str, &str)>,
        account: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Vec<ConsoleRecord>> {
        let product = product.map(|(n, v)| (n.to_string(), v.to_string()));
        let account = account.map(str::to_string);
        read(
            self,
            crate::job!(|c| backend::consoles(
                c,
                product.as_ref().map(|(n, v)| (n.as_str(), v.as_str())),
                account.as_deref(),
                now
            )),
        )
        .await
    }

    async fn console(&self, id: &str) -> Result<Option<ConsoleRecord>> {
        let id = id.to_string();
        read(self, crate::job!(|c| backend::console(c, &id))).await
    }

    async fn renew_consoles(&self, node: &str, until: OffsetDateTime) -> Result<u64> {
        let node = node.to_string();
        write(
            self,
            crate::job!(|c| backend::renew_consoles(c, &node, until)),
        )
        .await
    }

    async fn remove_console(&self, id: &str) -> Result<Option<ConsoleRecord>> {
        let id = id.to_string();
        write(self, crate::job!(|c| backend::remove_console(c, &id))).await
    }

    async fn remove_expired_consoles(&self, now: OffsetDateTime) -> Result<Vec<ConsoleRecord>> {
        write(
            self,
            crate::job!(|c| backend::remove_expired_consoles(c, now)),
        )
        .await
    }

    async fn send_command(
        &self,
        new: &NewCommand,
        by: &Actor,
    ) -> Result<(CommandRecord, AuditEntry)> {
        let (new, by) = (new.clone(), by.clone());
        write(self, crate::job!(|c| backend::send_command(c, &new, &by))).await
    }

    async fn command(&self, id: &str) -> Result<Option<CommandRecord>> {
        let id = id.to_string();
        read(self, crate::job!(|c| backend::command(c, &id))).await
    }

    async fn commands(&self, filter: &CommandFilter) -> Result<Page<CommandRecord>> {
        let filter = filter.clone();
        read(self, crate::job!(|c| backend::commands(c, &filter))).await
    }

    async fn retrieve_commands(
        &self,
        console: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
        limit: u32,
    ) -> Result<Option<Vec<CommandRecord>>> {
        let console = console.to_string();
        write(
            self,
            crate::job!(|c| backend::retrieve(c, &console, now, until, limit)),
        )
        .await
    }

    async fn deliver_command(
        &self,
        id: &str,
        console: &str,
        now: OffsetDateTime,
    ) -> Result<Option<CommandRecord>> {
        let (id, console) = (id.to_string(), console.to_string());
        write(
            self,
            crate::job!(|c| backend::deliver(c, &id, &console, now)),
        )
        .await
    }

    async fn end_command(
        &self,
        id: &str,
        console: Option<&str>,
        end: &CommandEnd,
        now: OffsetDateTime,
        by: &Actor,
    ) -> Result<Option<(CommandRecord, AuditEntry)>> {
        let (id, console, end, by) = (
            id.to_string(),
            console.map(str::to_string),
            end.clone(),
            by.clone(),
        );
        write(
            self,
            crate::job!(|c| backend::end_command(c, &id, console.as_deref(), &end, now, &by)),
        )
        .await
    }

    async fn reroute_command(
        &self,
        id: &str,
        from: &str,
        now: OffsetDateTime,
    ) -> Result<Option<CommandRecord>> {
        let (id, from) = (id.to_string(), from.to_string());
        write(self, crate::job!(|c| backend::reroute(c, &id, &from, now))).await
    }

    async fn open_commands(
        &self,
        now: OffsetDateTime,
        console: Option<&str>,
    ) -> Result<Vec<OpenCommand>> {
        let console = console.map(str::to_string);
        read(
            self,
            crate::job!(|c| backend::open_commands(c, now, console.as_deref())),
        )
        .await
    }
}

#[async_trait::async_trait]
impl<E: Engine> BusStore for E {
    async fn publish(
        &self,
        topic: &str,
        object_id: Option<&str>,
        payload: Option<serde_json::Value>,
    ) -> Result<()> {
        let (topic, object_id) = (topic.to_string(), object_id.map(str::to_string));
        write_autocommit(
            self,
            crate::job!(|c| bus::append(c, &topic, object_id.as_deref(), payload, None)),
        )
        .await
    }

    async fn bus_after(&self, seq: i64, limit: u32) -> Result<Vec<BusRecord>> {
        read(self, crate::job!(|c| bus::after(c, seq, limit))).await
    }

    async fn bus_head(&self) -> Result<i64> {
        read(self, crate::job!(|c| bus::head(c))).await
    }

    async fn sequence(&self) -> Result<bool> {
        Engine::sequence(self).await
    }

    async fn bus_changed(&self) {
        Engine::bus_changed(self).await
    }

    async fn cursor(&self, consumer: &str) -> Result<Option<i64>> {
        let consumer = consumer.to_string();
        read(self, crate::job!(|c| bus::cursor(c, &consumer))).await
    }

    async fn take_lease(
        &self,
        sink: &str,
        holder: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<bool> {
        let (sink, holder) = (sink.to_string(), holder.to_string());
        write_autocommit(
            self,
            crate::job!(|c| bus::take_lease(c, &sink, &holder, now, until)),
        )
        .await
    }

    async fn set_cursor(&self, consumer: &str, seq: i64) -> Result<()> {
        let consumer = consumer.to_string();
        write_autocommit(self, crate::job!(|c| bus::set_cursor(c, &consumer, seq))).await
    }
}

#[async_trait::async_trait]
impl<E: Engine> Maintenance for E {
    fn backend(&self) -> Backend {
        self.kind()
    }

    async fn close(&self) {
        Engine::close(self).await
    }

    async fn schema_version(&self) -> Result<i64> {
        read(self, crate::job!(|c| schema_version(c))).await
    }

    async fn export(
        &self,
        out: &mut (dyn FnMut(dump::Record) -> Result<()> + Send),
    ) -> Result<u64> {
        let schema = self.schema_version().await?;
        Engine::export(self, schema, out).await
    }

    async fn import(
        &self,
        input: &mut (dyn Iterator<Item = Result<dump::Record>> + Send),
    ) -> Result<u64> {
        let schema = self.schema_version().await?;
        Engine::import(self, schema, input).await
    }
}

/// The newest migration applied (both backends keep sqlx's bookkeeping table).
async fn schema_version(c: &mut dyn super::sql::Conn) -> Result<i64> {
    c.query_one(
        "SELECT coalesce(max(version), 0) FROM _sqlx_migrations WHERE success",
        &[],
    )
    .await?
    .int(0)
}
