//! Product backend commands (seed 000): an initiator's command for a product name and version goes
//! to exactly one service console registered for them, which reads its payload and sets a result
//! or an error container. The rules of every surface (REST polling, the live API, the command line)
//! are here: who may initiate and who may serve, what a filter and an error container must hold,
//! and how a command ends when no console answers.
//!
//! Routing happens in the transaction that stores the command (`store::BackendStore`). A console
//! registered over the live API is told by a bus entry (`backend.command`) that its node's live API
//! turns into a pushed `KLSRV_EV_PROD_BACKEND_CMD` event; a polling console finds its commands when
//! it retrieves. [`Domain::run_backend`] ends commands whose deadline passed, and those whose
//! console went away: a command the console had not taken yet goes to another console, one it had
//! taken fails (it may have run).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use time::OffsetDateTime;
use tokio::sync::{broadcast, watch};

use super::rights::{Access, Caller, FuncArea};
use super::{Changed, Domain, DomainError, Result};
use crate::store::{
    Actor, CommandEnd, CommandFilter, CommandRecord, CommandState, ConsoleChannel, ConsoleRecord,
    NewCommand, OpenCommand, Page,
};

/// The one event consoles subscribe to.
pub const EVENT: &str = "KLSRV_EV_PROD_BACKEND_CMD";
/// The error ids of the seed's "common known errors".
pub const ERR_NO_BACKEND: &str = "ERR_NO_BACKEND";
pub const ERR_NOT_SUPPORTED: &str = "ERR_NOT_SUPPORTED";
pub const ERR_UNKNOWN_TOKEN: &str = "ERR_UNKNOWN_TOKEN";
pub const ERR_EXPIRED_TOKEN: &str = "ERR_EXPIRED_TOKEN";
/// Who the server says raised the errors it raises itself.
pub const ORIGINATOR: &str = "mobile-admin";
/// Longest product name or version (what devices report in ProdInfo).
const MAX_PRODUCT_CHARS: usize = 31;
/// Longest command name.
const MAX_NAME_CHARS: usize = 128;
/// Longest wait for a command's end in one request.
pub const MAX_WAIT_SECS: u64 = 60;
/// How long a live console's registration lasts without its node renewing it.
const LIVE_LEASE: Duration = Duration::from_secs(15);
/// How often the sweeper looks for commands to end.
const SWEEP: Duration = Duration::from_millis(500);
/// Most commands one retrieval hands a polling console.
const RETRIEVE_LIMIT: u32 = 100;

/// The fields of an error container, with whether each is an integer (else a string) and required.
const ERROR_FIELDS: [(&str, bool, bool); 7] = [
    ("CMD_ERR_STR_ID", false, false),
    ("CMD_ERR_ORIGINATOR_ID", false, true),
    ("CMD_ERR_ID", true, false),
    ("CMD_ERR_DESCR", false, true),
    ("CMD_ERR_LOC_DESCR", false, false),
    ("CMD_ERR_FNAME", false, false),
    ("CMD_ERR_LNUMBER", true, false),
];

/// Settings of product backend commands (the `[backend]` section of the configuration).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackendConfig {
    /// How long a console has to answer a command before it fails with `ERR_NO_BACKEND`.
    pub command_deadline_secs: u64,
    /// The polling period (milliseconds) a polling console is told to retrieve at.
    pub poll_period_ms: u64,
    /// A polling console that has not retrieved for this long is gone.
    pub console_timeout_secs: u64,
    /// Subscriptions one account may hold at a time.
    pub max_consoles_per_account: usize,
}

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig {
            command_deadline_secs: 60,
            poll_period_ms: 1000,
            console_timeout_secs: 30,
            max_consoles_per_account: 16,
        }
    }
}

/// A command as an initiator sends it (`CMD_PARAMS` already in the typed encoding).
#[derive(Debug, Clone, PartialEq)]
pub struct CommandRequest {
    pub name: String,
    pub prod_name: String,
    pub prod_version: String,
    pub params: Value,
}

/// What a console reads of a command.
#[derive(Debug, Clone, PartialEq)]
pub struct Payload {
    /// `CMD_NAME`, `CMD_PROD_NAME`, `CMD_PROD_VERSION`.
    pub name: String,
    pub prod_name: String,
    pub prod_version: String,
    /// `CMD_PARAMS`, in the typed encoding.
    pub params: Value,
}

/// The event a console is given for a command: `CMD_ID`, `CMD_PROD_NAME`, `CMD_PROD_VERSION`.
pub fn event_body(id: &str, prod_name: &str, prod_version: &str) -> Value {
    json!({"CMD_ID": id, "CMD_PROD_NAME": prod_name, "CMD_PROD_VERSION": prod_version})
}

/// What a polling console gets from one retrieval.
#[derive(Debug, Clone, PartialEq)]
pub struct Retrieved {
    /// Event bodies, oldest first.
    pub events: Vec<Value>,
    /// When to retrieve again, in milliseconds.
    pub period_ms: u64,
}

/// Why a console's registration ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    Unsubscribed,
    Disconnected,
    StoppedPolling,
    NodeStopped,
}

impl Gone {
    fn says(self) -> &'static str {
        match self {
            Gone::Unsubscribed => "the service console unsubscribed",
            Gone::Disconnected => "the service console disconnected",
            Gone::StoppedPolling => "the service console stopped polling",
            Gone::NodeStopped => "the server node holding the service console stopped",
        }
    }
}

/// The server's own error container.
fn server_error(description: String) -> Value {
    json!({
        "CMD_ERR_STR_ID": ERR_NO_BACKEND,
        "CMD_ERR_ORIGINATOR_ID": ORIGINATOR,
        "CMD_ERR_DESCR": description,
    })
}

/// A product name or version: 1 to 31 characters, not blank, not `*`, no control characters.
pub fn product_field(name: &str, value: Option<&str>) -> Result<String> {
    let value = value.unwrap_or("");
    if value.trim().is_empty() {
        return Err(DomainError::Missing(name.to_string()));
    }
    if value == super::live::ANY {
        return Err(DomainError::Invalid(format!(
            "{name} is one product's, not \"*\": a console serves one product and version"
        )));
    }
    if value.chars().count() > MAX_PRODUCT_CHARS || value.chars().any(char::is_control) {
        return Err(DomainError::Invalid(format!(
            "{name} is at most {MAX_PRODUCT_CHARS} characters, none of them control characters"
        )));
    }
    Ok(value.to_string())
}

/// Checks a subscription to `event` with its filter's product name and version (B1–B4): the event
/// is [`EVENT`], and the filter holds both, non-empty.
pub fn check_filter(
    event: Option<&str>,
    filter: Option<(Option<&str>, Option<&str>)>,
) -> Result<(String, String)> {
    match event {
        None | Some("") => return Err(DomainError::Missing("event".into())),
        Some(EVENT) => {}
        Some(other) => {
            return Err(DomainError::Invalid(format!(
                "event {other:?} is not one consoles subscribe to: the event is {EVENT}"
            )))
        }
    }
    let (name, version) = filter.ok_or_else(|| {
        DomainError::Missing("filter (with CMD_PROD_NAME and CMD_PROD_VERSION)".into())
    })?;
    Ok((
        product_field("CMD_PROD_NAME", name)?,
        product_field("CMD_PROD_VERSION", version)?,
    ))
}

/// Checks an error container (B10, B11, B14): an object of the seed's fields only, the ids and line
/// numbers 32-bit integers, the rest strings; the originator and the description required.
pub fn check_error(error: &Value) -> Result<()> {
    let Value::Object(fields) = error else {
        return Err(DomainError::Invalid(
            "the error container is an object of CMD_ERR_* fields".into(),
        ));
    };
    if let Some(unknown) = fields
        .keys()
        .find(|k| !ERROR_FIELDS.iter().any(|(name, _, _)| name == k))
    {
        return Err(DomainError::Invalid(format!(
            "{unknown} is not a field of the error container"
        )));
    }
    for (name, integer, required) in ERROR_FIELDS {
        match fields.get(name) {
            None => {
                if required {
                    return Err(DomainError::Missing(name.to_string()));
                }
            }
            Some(Value::Number(n))
                if integer && n.as_i64().is_some_and(|v| i32::try_from(v).is_ok()) => {}
            Some(Value::String(s)) if !integer => {
                if required && s.trim().is_empty() {
                    return Err(DomainError::Missing(name.to_string()));
                }
            }
            Some(_) if integer => {
                return Err(DomainError::Invalid(format!("{name} is a 32-bit integer")))
            }
            Some(_) => return Err(DomainError::Invalid(format!("{name} is a string"))),
        }
    }
    Ok(())
}

fn check_container(name: &str, value: &Value) -> Result<()> {
    if value.is_object() {
        Ok(())
    } else {
        Err(DomainError::Invalid(format!(
            "{name} is a container (an object of named typed values)"
        )))
    }
}

fn check_name(name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(DomainError::Missing("CMD_NAME".into()));
    }
    if name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(DomainError::Invalid(format!(
            "CMD_NAME is at most {MAX_NAME_CHARS} characters, none of them control characters"
        )));
    }
    Ok(())
}

/// Which console a console's call comes from: over REST, any console of the caller's account; over
/// the live API, one of the session's own registrations.
#[derive(Debug, Clone, Copy)]
pub enum ConsoleOf<'a> {
    Account,
    Registrations(&'a [String]),
}

/// This node's live consoles, renewed while their connections last.
#[derive(Debug, Default)]
pub(super) struct LiveConsoles {
    count: AtomicUsize,
}

impl Domain {
    fn actor_system() -> Actor {
        Actor {
            account: "system".into(),
            token: None,
            address: None,
        }
    }

    /// The configuration of product backend commands.
    pub fn backend_config(&self) -> &BackendConfig {
        &self.backend
    }

    /// Stores a command and routes it (B6, B12): to one live console registered for its exact
    /// product and version, or, with none, fails it at once with `ERR_NO_BACKEND`.
    pub async fn send_backend_command(
        &self,
        caller: &Caller,
        request: CommandRequest,
    ) -> Result<Changed<CommandRecord>> {
        caller.require(FuncArea::BackendCommands, Access::Execute)?;
        check_name(&request.name)?;
        let prod_name = product_field("CMD_PROD_NAME", Some(&request.prod_name))?;
        let prod_version = product_field("CMD_PROD_VERSION", Some(&request.prod_version))?;
        check_container("CMD_PARAMS", &request.params)?;
        let now = self.clock.now();
        let new = NewCommand {
            id: uuid::Uuid::new_v4().to_string(),
            no_console: server_error(format!(
                "no service console is registered for product {prod_name:?} version {prod_version:?}"
            )),
            name: request.name,
            prod_name,
            prod_version,
            params: request.params,
            now,
            deadline: now + Duration::from_secs(self.backend.command_deadline_secs),
        };
        let mut changed = Changed::new(self.store.send_command(&new, &caller.actor()).await?);
        if changed.value.state == CommandState::Failed {
            changed.notices.push(super::Notice::NO_BACKEND);
        }
        tracing::info!(command = %changed.value.id, name = %changed.value.name,
            product = %changed.value.prod_name, version = %changed.value.prod_version,
            state = changed.value.state.as_str(), console = ?changed.value.console,
            "backend command sent");
        Ok(changed)
    }

    /// A command, for whoever may read commands; with `wait`, once it has ended or the wait (at
    /// most [`MAX_WAIT_SECS`]) is over.
    pub async fn backend_command(
        &self,
        caller: &Caller,
        id: &str,
        wait: Option<Duration>,
    ) -> Result<CommandRecord> {
        caller.require(FuncArea::BackendCommands, Access::Read)?;
        let wait = wait.unwrap_or_default();
        if wait > Duration::from_secs(MAX_WAIT_SECS) {
            return Err(DomainError::Invalid(format!(
                "wait is at most {MAX_WAIT_SECS} seconds"
            )));
        }
        let until = tokio::time::Instant::now() + wait;
        // Subscribed before the first read, so that an end committed after it wakes the wait.
        let mut ends = self.bus.subscribe();
        loop {
            let command = self.existing_command(id).await?;
            if command.state.is_final() || tokio::time::Instant::now() >= until {
                return Ok(command);
            }
            // Woken by the command's next bus entry; read again every second in any case.
            let tick = (tokio::time::Instant::now() + Duration::from_secs(1)).min(until);
            loop {
                tokio::select! {
                    received = ends.recv() => match received {
                        Ok(e) if e.object_id.as_deref() == Some(id) => break,
                        Ok(_) => continue,
                        Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Err(broadcast::error::RecvError::Closed) => {
                            tokio::time::sleep_until(tick).await;
                            break;
                        }
                    },
                    _ = tokio::time::sleep_until(tick) => break,
                }
            }
        }
    }

    async fn existing_command(&self, id: &str) -> Result<CommandRecord> {
        self.store
            .command(id)
            .await?
            .ok_or_else(|| DomainError::NotFound(format!("no backend command {id}")))
    }

    /// Commands, newest first.
    pub async fn backend_commands(
        &self,
        caller: &Caller,
        filter: &CommandFilter,
    ) -> Result<Page<CommandRecord>> {
        caller.require(FuncArea::BackendCommands, Access::Read)?;
        super::devices::check_page(filter.page)?;
        Ok(self.store.commands(filter).await?)
    }

    /// The live consoles (of one product and version, when both are given: one alone is refused),
    /// for initiators and consoles alike.
    pub async fn backend_consoles(
        &self,
        caller: &Caller,
        name: Option<&str>,
        version: Option<&str>,
    ) -> Result<Vec<ConsoleRecord>> {
        if caller
            .require(FuncArea::BackendCommands, Access::Read)
            .is_err()
        {
            caller.require(FuncArea::ProductIntegration, Access::Execute)?;
        }
        let product = match (name, version) {
            (None, None) => None,
            (Some(_), Some(_)) => Some((
                product_field("CMD_PROD_NAME", name)?,
                product_field("CMD_PROD_VERSION", version)?,
            )),
            _ => {
                return Err(DomainError::Missing(
                    "CMD_PROD_NAME and CMD_PROD_VERSION (give both, or neither)".into(),
                ))
            }
        };
        let product = product.as_ref().map(|(n, v)| (n.as_str(), v.as_str()));
        Ok(self.store.consoles(product, None, self.clock.now()).await?)
    }

    /// Registers `caller` as a service console for one product and version (B1–B5). Over the live
    /// API, `session` names the connection, which holds the registration while it lasts.
    pub async fn subscribe_console(
        &self,
        caller: &Caller,
        event: Option<&str>,
        filter: Option<(Option<&str>, Option<&str>)>,
        session: Option<&str>,
    ) -> Result<ConsoleRecord> {
        caller.require(FuncArea::ProductIntegration, Access::Execute)?;
        let (prod_name, prod_version) = check_filter(event, filter)?;
        let now = self.clock.now();
        let held = self
            .store
            .consoles(None, Some(&caller.name), now)
            .await?
            .len();
        if held >= self.backend.max_consoles_per_account {
            return Err(DomainError::Conflict(format!(
                "an account holds at most {} console subscriptions",
                self.backend.max_consoles_per_account
            )));
        }
        let (channel, node, life) = match session {
            Some(_) => (ConsoleChannel::Live, Some(self.node.clone()), LIVE_LEASE),
            None => (
                ConsoleChannel::Poll,
                None,
                Duration::from_secs(self.backend.console_timeout_secs),
            ),
        };
        let console = ConsoleRecord {
            id: uuid::Uuid::new_v4().to_string(),
            account: caller.name.clone(),
            channel,
            node,
            session: session.map(str::to_string),
            prod_name,
            prod_version,
            created_at: now,
            expires_at: now + life,
            assigned: 0,
        };
        self.store.add_console(&console).await?;
        if channel == ConsoleChannel::Live {
            self.live_consoles.count.fetch_add(1, Ordering::Relaxed);
        }
        tracing::info!(console = %console.id, account = %console.account,
            channel = channel.as_str(), product = %console.prod_name,
            version = %console.prod_version, "service console subscribed");
        Ok(console)
    }

    /// A console registration of `caller`'s.
    async fn own_console(&self, caller: &Caller, id: &str) -> Result<ConsoleRecord> {
        caller.require(FuncArea::ProductIntegration, Access::Execute)?;
        match self.store.console(id).await? {
            Some(console) if console.account == caller.name => Ok(console),
            _ => Err(DomainError::NotFound(format!(
                "no console subscription {id} of this account"
            ))),
        }
    }

    /// Ends `caller`'s subscription `id`.
    pub async fn unsubscribe_console(&self, caller: &Caller, id: &str) -> Result<()> {
        self.own_console(caller, id).await?;
        self.console_gone(id, Gone::Unsubscribed).await
    }

    /// Removes a console's registration and settles the commands it had: see [`Domain::orphaned`].
    pub async fn console_gone(&self, id: &str, why: Gone) -> Result<()> {
        if let Some(console) = self.store.remove_console(id).await? {
            if console.channel == ConsoleChannel::Live
                && console.node.as_deref() == Some(&self.node)
            {
                self.live_consoles.count.fetch_sub(1, Ordering::Relaxed);
            }
            tracing::info!(console = %id, account = %console.account, why = why.says(),
                "service console gone");
        }
        let now = self.clock.now();
        for open in self.store.open_commands(now, Some(id)).await? {
            self.orphaned(&open.command, why, now).await?;
        }
        Ok(())
    }

    /// A polling console's retrieval: the events of the commands routed to it since the last one.
    pub async fn retrieve_backend_events(&self, caller: &Caller, id: &str) -> Result<Retrieved> {
        self.own_console(caller, id).await?;
        let now = self.clock.now();
        let until = now + Duration::from_secs(self.backend.console_timeout_secs);
        let commands = self
            .store
            .retrieve_commands(id, now, until, RETRIEVE_LIMIT)
            .await?
            .ok_or_else(|| {
                DomainError::NotFound(format!(
                    "console subscription {id} has lapsed: subscribe again"
                ))
            })?;
        Ok(Retrieved {
            events: commands
                .iter()
                .map(|c| event_body(&c.id, &c.prod_name, &c.prod_version))
                .collect(),
            period_ms: self.backend.poll_period_ms,
        })
    }

    /// The command `id` if `caller` is the console it was given to (B5, 1.4.9).
    async fn console_command(
        &self,
        caller: &Caller,
        id: &str,
        of: ConsoleOf<'_>,
    ) -> Result<CommandRecord> {
        caller.require(FuncArea::ProductIntegration, Access::Execute)?;
        let command = self.existing_command(id).await?;
        let given = match of {
            ConsoleOf::Account => command.console_account.as_deref() == Some(&caller.name),
            ConsoleOf::Registrations(ids) => command
                .console
                .as_ref()
                .is_some_and(|console| ids.contains(console)),
        };
        if !given {
            return Err(DomainError::Forbidden(format!(
                "backend command {id} was given to another console"
            )));
        }
        Ok(command)
    }

    /// The payload of a command given to `caller` (B8); marks it delivered.
    pub async fn backend_payload(
        &self,
        caller: &Caller,
        id: &str,
        of: ConsoleOf<'_>,
    ) -> Result<Payload> {
        let mut command = self.console_command(caller, id, of).await?;
        if command.state == CommandState::Pending {
            if let Some(console) = &command.console {
                if let Some(now) = self
                    .store
                    .deliver_command(id, console, self.clock.now())
                    .await?
                {
                    command = now;
                }
            }
        }
        Ok(Payload {
            name: command.name,
            prod_name: command.prod_name,
            prod_version: command.prod_version,
            params: command.params,
        })
    }

    /// Sets the result of a command given to `caller` (B9): once.
    pub async fn set_backend_result(
        &self,
        caller: &Caller,
        id: &str,
        of: ConsoleOf<'_>,
        result: Value,
    ) -> Result<Changed<CommandRecord>> {
        check_container("the result", &result)?;
        self.answer(caller, id, of, CommandEnd::Done(result)).await
    }

    /// Sets the error container of a command given to `caller` (B10, B11, B13, B14): once.
    pub async fn set_backend_error(
        &self,
        caller: &Caller,
        id: &str,
        of: ConsoleOf<'_>,
        error: Value,
    ) -> Result<Changed<CommandRecord>> {
        check_error(&error)?;
        self.answer(caller, id, of, CommandEnd::Failed(error)).await
    }

    async fn answer(
        &self,
        caller: &Caller,
        id: &str,
        of: ConsoleOf<'_>,
        end: CommandEnd,
    ) -> Result<Changed<CommandRecord>> {
        let command = self.console_command(caller, id, of).await?;
        if command.state.is_final() {
            return Err(already_ended(&command));
        }
        match self
            .store
            .end_command(
                id,
                command.console.as_deref(),
                &end,
                self.clock.now(),
                &caller.actor(),
            )
            .await?
        {
            Some(ended) => {
                tracing::info!(command = %id, state = ended.0.state.as_str(),
                    console = ?ended.0.console, "backend command answered");
                Ok(Changed::new(ended))
            }
            None => Err(already_ended(&self.existing_command(id).await?)),
        }
    }

    /// Before the live API pushes a command's event to `console`: marks it delivered, and says
    /// whether it is still that console's to take (not routed elsewhere, not ended). Marking first
    /// means a command whose console goes away is never taken for one it had not seen.
    pub async fn backend_delivered(&self, id: &str, console: &str) -> Result<bool> {
        let command = self
            .store
            .deliver_command(id, console, self.clock.now())
            .await?;
        Ok(command.is_some_and(|c| {
            c.state == CommandState::Delivered && c.console.as_deref() == Some(console)
        }))
    }

    /// Settles a command whose console went away: a command it had not taken goes to another live
    /// console for its product and version; one it had taken, or with no other console, fails with
    /// `ERR_NO_BACKEND` saying why.
    async fn orphaned(
        &self,
        command: &CommandRecord,
        why: Gone,
        now: OffsetDateTime,
    ) -> Result<()> {
        let Some(console) = command.console.as_deref() else {
            return Ok(());
        };
        if command.state == CommandState::Pending {
            if let Some(rerouted) = self
                .store
                .reroute_command(&command.id, console, now)
                .await?
            {
                tracing::info!(command = %command.id, from = %console, to = ?rerouted.console,
                    "backend command routed again");
                return Ok(());
            }
        }
        // The state may have moved since `command` was read (delivered meanwhile, or ended).
        let Some(command) = self.store.command(&command.id).await? else {
            return Ok(());
        };
        if command.state.is_final() {
            return Ok(());
        }
        let description = match command.state {
            CommandState::Pending => format!(
                "{} before taking the command, and no other service console is registered for \
                 product {:?} version {:?}",
                why.says(),
                command.prod_name,
                command.prod_version
            ),
            _ => format!("{} before answering", why.says()),
        };
        self.fail(&command, description, now).await
    }

    async fn fail(
        &self,
        command: &CommandRecord,
        description: String,
        now: OffsetDateTime,
    ) -> Result<()> {
        let ended = self
            .store
            .end_command(
                &command.id,
                command.console.as_deref(),
                &CommandEnd::Failed(server_error(description)),
                now,
                &Self::actor_system(),
            )
            .await?;
        if let Some((ended, _)) = ended {
            tracing::info!(command = %ended.id, error = ?ended.error, "backend command failed");
        }
        Ok(())
    }

    /// One pass of the sweeper: consoles whose lives ended, commands past their deadline, commands
    /// whose console is gone.
    pub async fn sweep_backend(&self) -> Result<()> {
        let now = self.clock.now();
        let mut gone = std::collections::HashMap::new();
        for console in self.store.remove_expired_consoles(now).await? {
            let why = match console.channel {
                ConsoleChannel::Poll => Gone::StoppedPolling,
                ConsoleChannel::Live => Gone::NodeStopped,
            };
            tracing::info!(console = %console.id, account = %console.account, why = why.says(),
                "service console gone");
            gone.insert(console.id, why);
        }
        for OpenCommand {
            command,
            console_live,
        } in self.store.open_commands(now, None).await?
        {
            if command.deadline <= now {
                let description = format!(
                    "no answer from the service console within {} seconds",
                    self.backend.command_deadline_secs
                );
                self.fail(&command, description, now).await?;
            } else if !console_live {
                let why = command
                    .console
                    .as_ref()
                    .and_then(|c| gone.get(c).copied())
                    .unwrap_or(Gone::Disconnected);
                self.orphaned(&command, why, now).await?;
            }
        }
        Ok(())
    }

    /// Runs until `stop`: renews this node's live consoles, and sweeps.
    pub async fn run_backend(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut renewed = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(SWEEP) => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                return;
            }
            if self.live_consoles.count.load(Ordering::Relaxed) > 0
                && renewed.elapsed() >= LIVE_LEASE / 3
            {
                let until = self.clock.now() + LIVE_LEASE;
                match self.store.renew_consoles(&self.node, until).await {
                    Ok(_) => renewed = tokio::time::Instant::now(),
                    Err(e) => tracing::warn!(error = %e, "cannot renew the live consoles"),
                }
            }
            if let Err(e) = self.sweep_backend().await {
                tracing::warn!(error = %e, "backend command sweep failed; retrying");
            }
        }
    }
}

fn already_ended(command: &CommandRecord) -> DomainError {
    DomainError::Conflict(format!(
        "backend command {} has already ended ({})",
        command.id,
        command.state.as_str()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_need_both_values() {
        let ok = check_filter(Some(EVENT), Some((Some("P"), Some("1.0")))).unwrap();
        assert_eq!(ok, ("P".to_string(), "1.0".to_string()));
        for (event, filter) in [
            (None, Some((Some("P"), Some("1.0")))),
            (Some("OTHER"), Some((Some("P"), Some("1.0")))),
            (Some(EVENT), None),
            (Some(EVENT), Some((None, Some("1.0")))),
            (Some(EVENT), Some((Some(""), Some("1.0")))),
            (Some(EVENT), Some((Some("  "), Some("1.0")))),
            (Some(EVENT), Some((Some("*"), Some("1.0")))),
            (Some(EVENT), Some((Some("P"), None))),
            (Some(EVENT), Some((Some("P"), Some("")))),
            (Some(EVENT), Some((Some("P"), Some("*")))),
            (Some(EVENT), Some((Some("P"), Some(&"9".repeat(32))))),
            (Some(EVENT), Some((Some("P\u{1}"), Some("1.0")))),
        ] {
            assert!(check_filter(event, filter).is_err(), "{event:?} {filter:?}");
        }
    }

    #[test]
    fn error_containers_are_typed() {
        let full = json!({
            "CMD_ERR_STR_ID": "ERR_SOMETHING_ELSE", "CMD_ERR_ORIGINATOR_ID": "o",
            "CMD_ERR_ID": -5, "CMD_ERR_DESCR": "d", "CMD_ERR_LOC_DESCR": "l",
            "CMD_ERR_FNAME": "f.c", "CMD_ERR_LNUMBER": 2147483647
        });
        check_error(&full).unwrap();
        check_error(&json!({"CMD_ERR_ORIGINATOR_ID": "o", "CMD_ERR_DESCR": "d"})).unwrap();
        for bad in [
            json!([]),
            json!({"CMD_ERR_DESCR": "d"}),
            json!({"CMD_ERR_ORIGINATOR_ID": "o"}),
            json!({"CMD_ERR_ORIGINATOR_ID": "o", "CMD_ERR_DESCR": " "}),
            json!({"CMD_ERR_ORIGINATOR_ID": "o", "CMD_ERR_DESCR": "d", "CMD_ERR_ID": "5"}),
            json!({"CMD_ERR_ORIGINATOR_ID": "o", "CMD_ERR_DESCR": "d", "CMD_ERR_ID": 1.5}),
            json!({"CMD_ERR_ORIGINATOR_ID": "o", "CMD_ERR_DESCR": "d", "CMD_ERR_LNUMBER": 2147483648i64}),
            json!({"CMD_ERR_ORIGINATOR_ID": "o", "CMD_ERR_DESCR": "d", "CMD_ERR_STR_ID": 3}),
            json!({"CMD_ERR_ORIGINATOR_ID": 1, "CMD_ERR_DESCR": "d"}),
            json!({"CMD_ERR_ORIGINATOR_ID": "o", "CMD_ERR_DESCR": "d", "CMD_ERR_X": "x"}),
        ] {
            assert!(check_error(&bad).is_err(), "{bad}");
        }
    }
}
