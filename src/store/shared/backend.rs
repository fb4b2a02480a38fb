//! Product backend commands (seed 000): service consoles' registrations, and commands routed to
//! them, with their audit entries and bus entries in the same transactions.

use serde_json::json;
use time::OffsetDateTime;

use super::bus::{self, Change};
use crate::args;
use crate::store::sql::{compare_time, Arg, Conn, Row};
use crate::store::{
    Actor, AuditEntry, CommandEnd, CommandFilter, CommandRecord, CommandState, ConsoleChannel,
    ConsoleRecord, NewCommand, OpenCommand, Page, Result, StoreError,
};

const CONSOLE_COLUMNS: &str = "id, account, channel, node, session, prod_name, prod_version,
    created_at, expires_at, assigned";

fn console_record(r: &Row) -> Result<ConsoleRecord> {
    let channel = r.text(2)?;
    Ok(ConsoleRecord {
        id: r.text(0)?,
        account: r.text(1)?,
        channel: ConsoleChannel::parse(&channel).ok_or_else(|| StoreError::corrupt(&channel))?,
        node: r.opt_text(3)?,
        session: r.opt_text(4)?,
        prod_name: r.text(5)?,
        prod_version: r.text(6)?,
        created_at: r.time(7)?,
        expires_at: r.time(8)?,
        assigned: r.int(9)?,
    })
}

const COMMAND_COLUMNS: &str = "id, name, prod_name, prod_version, params, state, initiator,
    console, console_account, result, error, created_at, deadline, delivered_at, ended_at";

/// [`COMMAND_COLUMNS`] of the table aliased `c`.
fn command_columns_of(alias: &str) -> String {
    COMMAND_COLUMNS
        .split(',')
        .map(|column| format!("{alias}.{}", column.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn command_record(r: &Row) -> Result<CommandRecord> {
    let state = r.text(5)?;
    Ok(CommandRecord {
        id: r.text(0)?,
        name: r.text(1)?,
        prod_name: r.text(2)?,
        prod_version: r.text(3)?,
        params: r
            .opt_json(4)?
            .ok_or_else(|| StoreError::corrupt("a command without params"))?,
        state: CommandState::parse(&state).ok_or_else(|| StoreError::corrupt(&state))?,
        initiator: r.text(6)?,
        console: r.opt_text(7)?,
        console_account: r.opt_text(8)?,
        result: r.opt_json(9)?,
        error: r.opt_json(10)?,
        created_at: r.time(11)?,
        deadline: r.time(12)?,
        delivered_at: r.opt_time(13)?,
        ended_at: r.opt_time(14)?,
    })
}

pub(crate) async fn add_console(c: &mut dyn Conn, console: &ConsoleRecord) -> Result<()> {
    c.execute(
        &format!("INSERT INTO backend_consoles ({CONSOLE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"),
        args![
            &console.id,
            &console.account,
            console.channel.as_str(),
            &console.node,
            &console.session,
            &console.prod_name,
            &console.prod_version,
            console.created_at,
            console.expires_at,
            console.assigned
        ],
    )
    .await?;
    Ok(())
}

/// Consoles live at `now`, oldest first; of one product and version when it is given, of one
/// account when that is.
pub(crate) async fn consoles(
    c: &mut dyn Conn,
    product: Option<(&str, &str)>,
    account: Option<&str>,
    now: OffsetDateTime,
) -> Result<Vec<ConsoleRecord>> {
    let live = compare_time(c.dialect(), "expires_at", ">", 1);
    let mut args: Vec<Arg> = vec![now.into()];
    let mut conditions = vec![live];
    if let Some((name, version)) = product {
        args.push(name.into());
        args.push(version.into());
        conditions.push(format!(
            "prod_name = ${} AND prod_version = ${}",
            args.len() - 1,
            args.len()
        ));
    }
    if let Some(account) = account {
        args.push(account.into());
        conditions.push(format!("account = ${}", args.len()));
    }
    c.query(
        &format!(
            "SELECT {CONSOLE_COLUMNS} FROM backend_consoles WHERE {}
             ORDER BY created_at, id",
            conditions.join(" AND ")
        ),
        &args,
    )
    .await?
    .iter()
    .map(console_record)
    .collect()
}

pub(crate) async fn console(c: &mut dyn Conn, id: &str) -> Result<Option<ConsoleRecord>> {
    c.query_opt(
        &format!("SELECT {CONSOLE_COLUMNS} FROM backend_consoles WHERE id = $1"),
        args![id],
    )
    .await?
    .map(|r| console_record(&r))
    .transpose()
}

/// Extends the lives of `node`'s consoles to `until`.
pub(crate) async fn renew_consoles(
    c: &mut dyn Conn,
    node: &str,
    until: OffsetDateTime,
) -> Result<u64> {
    c.execute(
        "UPDATE backend_consoles SET expires_at = $1 WHERE node = $2",
        args![until, node],
    )
    .await
}

pub(crate) async fn remove_console(c: &mut dyn Conn, id: &str) -> Result<Option<ConsoleRecord>> {
    c.query_opt(
        &format!("DELETE FROM backend_consoles WHERE id = $1 RETURNING {CONSOLE_COLUMNS}"),
        args![id],
    )
    .await?
    .map(|r| console_record(&r))
    .transpose()
}

/// Removes the consoles whose lives ended before `now`.
pub(crate) async fn remove_expired_consoles(
    c: &mut dyn Conn,
    now: OffsetDateTime,
) -> Result<Vec<ConsoleRecord>> {
    let expired = compare_time(c.dialect(), "expires_at", "<=", 1);
    c.query(
        &format!("DELETE FROM backend_consoles WHERE {expired} RETURNING {CONSOLE_COLUMNS}"),
        args![now],
    )
    .await?
    .iter()
    .map(console_record)
    .collect()
}

/// The live console for `name`/`version` that has been given the fewest commands, other than
/// `except`; counts the command it is about to get.
async fn pick_console(
    c: &mut dyn Conn,
    name: &str,
    version: &str,
    except: Option<&str>,
    now: OffsetDateTime,
) -> Result<Option<(String, String)>> {
    let live = compare_time(c.dialect(), "expires_at", ">", 3);
    let picked = c
        .query_opt(
            &format!(
                "SELECT id, account FROM backend_consoles
                 WHERE prod_name = $1 AND prod_version = $2 AND {live} AND id <> $4
                 ORDER BY assigned, created_at, id LIMIT 1"
            ),
            args![name, version, now, except.unwrap_or("")],
        )
        .await?;
    let Some(row) = picked else {
        return Ok(None);
    };
    let (id, account) = (row.text(0)?, row.text(1)?);
    c.execute(
        "UPDATE backend_consoles SET assigned = assigned + 1 WHERE id = $1",
        args![&id],
    )
    .await?;
    Ok(Some((id, account)))
}

/// The bus entry that tells a live console's node to push the command's event.
async fn announce(c: &mut dyn Conn, command: &CommandRecord) -> Result<()> {
    bus::append(
        c,
        "backend.command",
        Some(&command.id),
        Some(json!({
            "console": command.console,
            "CMD_ID": command.id,
            "CMD_PROD_NAME": command.prod_name,
            "CMD_PROD_VERSION": command.prod_version,
        })),
        None,
    )
    .await
}

/// What the audit trail keeps of a command: never its params or result, which may hold a product
/// backend's tokens; the error container, which says why it failed.
fn audit_view(command: &CommandRecord) -> serde_json::Value {
    json!({
        "CMD_NAME": command.name,
        "CMD_PROD_NAME": command.prod_name,
        "CMD_PROD_VERSION": command.prod_version,
        "state": command.state.as_str(),
        "console": command.console,
        "error": command.error,
    })
}

pub(crate) async fn command(c: &mut dyn Conn, id: &str) -> Result<Option<CommandRecord>> {
    c.query_opt(
        &format!("SELECT {COMMAND_COLUMNS} FROM backend_commands WHERE id = $1"),
        args![id],
    )
    .await?
    .map(|r| command_record(&r))
    .transpose()
}

async fn existing_command(c: &mut dyn Conn, id: &str) -> Result<CommandRecord> {
    command(c, id)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("no backend command {id}")))
}

/// Stores a command, routed to a console or failed at once, with its audit entry.
pub(crate) async fn send_command(
    c: &mut dyn Conn,
    new: &NewCommand,
    by: &Actor,
) -> Result<(CommandRecord, AuditEntry)> {
    let console = pick_console(c, &new.prod_name, &new.prod_version, None, new.now).await?;
    let (state, error, ended) = match console {
        Some(_) => (CommandState::Pending, None, None),
        None => (
            CommandState::Failed,
            Some(new.no_console.clone()),
            Some(new.now),
        ),
    };
    let (console, console_account) = console.unzip();
    c.execute(
        &format!(
            "INSERT INTO backend_commands ({COMMAND_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, $10, $11, $12, NULL, $13)"
        ),
        args![
            &new.id,
            &new.name,
            &new.prod_name,
            &new.prod_version,
            new.params.clone(),
            state.as_str(),
            &by.account,
            console,
            console_account,
            error,
            new.now,
            new.deadline,
            ended
        ],
    )
    .await?;
    let command = existing_command(c, &new.id).await?;
    if command.console.is_some() {
        announce(c, &command).await?;
    }
    let entry = bus::audit(
        c,
        Change {
            by,
            action: "backend_command.send",
            kind: "backend_command",
            id: command.id.clone(),
            before: None,
            after: Some(audit_view(&command)),
        },
    )
    .await?;
    Ok((command, entry))
}

pub(crate) async fn commands(
    c: &mut dyn Conn,
    filter: &CommandFilter,
) -> Result<Page<CommandRecord>> {
    let mut conditions = Vec::new();
    let mut args: Vec<Arg> = Vec::new();
    if !filter.states.is_empty() {
        let first = args.len() + 1;
        args.extend(filter.states.iter().map(|s| Arg::from(s.as_str())));
        conditions.push(format!(
            "state IN ({})",
            crate::store::sql::placeholders(first, filter.states.len())
        ));
    }
    for (column, value) in [
        ("name", &filter.name),
        ("prod_name", &filter.prod_name),
        ("prod_version", &filter.prod_version),
        ("initiator", &filter.initiator),
    ] {
        if let Some(value) = value {
            args.push(value.into());
            conditions.push(format!("{column} = ${}", args.len()));
        }
    }
    let filter_sql = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let total = c
        .query_one(
            &format!("SELECT count(*) FROM backend_commands {filter_sql}"),
            &args,
        )
        .await?
        .int(0)?;
    let n = args.len();
    args.push((filter.page.limit as i64).into());
    args.push((filter.page.offset as i64).into());
    let items = c
        .query(
            &format!(
                "SELECT {COMMAND_COLUMNS} FROM backend_commands {filter_sql}
                 ORDER BY created_at DESC, id DESC LIMIT ${} OFFSET ${}",
                n + 1,
                n + 2
            ),
            &args,
        )
        .await?
        .iter()
        .map(command_record)
        .collect::<Result<Vec<_>>>()?;
    Ok(Page {
        items,
        total: total.max(0) as u64,
    })
}

/// A polling console's retrieval: extends its life to `until` and hands it (marks delivered) at
/// most `limit` of the commands routed to it; `None` when it is not live.
pub(crate) async fn retrieve(
    c: &mut dyn Conn,
    console: &str,
    now: OffsetDateTime,
    until: OffsetDateTime,
    limit: u32,
) -> Result<Option<Vec<CommandRecord>>> {
    let live = compare_time(c.dialect(), "expires_at", ">", 3);
    let renewed = c
        .execute(
            &format!("UPDATE backend_consoles SET expires_at = $1 WHERE id = $2 AND {live}"),
            args![until, console, now],
        )
        .await?;
    if renewed == 0 {
        return Ok(None);
    }
    let mut delivered = c
        .query(
            &format!(
                "UPDATE backend_commands SET state = 'delivered', delivered_at = $1
                 WHERE id IN (SELECT id FROM backend_commands
                              WHERE console = $2 AND state = 'pending'
                              ORDER BY created_at, id LIMIT $3)
                 RETURNING {COMMAND_COLUMNS}"
            ),
            args![now, console, i64::from(limit)],
        )
        .await?
        .iter()
        .map(command_record)
        .collect::<Result<Vec<_>>>()?;
    delivered.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    Ok(Some(delivered))
}

/// Marks a command routed to `console` as delivered, if it is still pending; returns the command.
pub(crate) async fn deliver(
    c: &mut dyn Conn,
    id: &str,
    console: &str,
    now: OffsetDateTime,
) -> Result<Option<CommandRecord>> {
    c.execute(
        "UPDATE backend_commands SET state = 'delivered', delivered_at = $1
         WHERE id = $2 AND console = $3 AND state = 'pending'",
        args![now, id, console],
    )
    .await?;
    command(c, id).await
}

/// Ends a command that has not ended, with its audit entry; `console`, when given, must be the one
/// it was routed to. `None` when it had already ended or went to another console.
pub(crate) async fn end_command(
    c: &mut dyn Conn,
    id: &str,
    console: Option<&str>,
    end: &CommandEnd,
    now: OffsetDateTime,
    by: &Actor,
) -> Result<Option<(CommandRecord, AuditEntry)>> {
    let before = existing_command(c, id).await?;
    let (state, result, error, action) = match end {
        CommandEnd::Done(result) => (
            CommandState::Done,
            Some(result.clone()),
            None,
            "backend_command.result",
        ),
        CommandEnd::Failed(error) => (
            CommandState::Failed,
            None,
            Some(error.clone()),
            "backend_command.error",
        ),
    };
    let ended = c
        .execute(
            "UPDATE backend_commands SET state = $1, result = $2, error = $3, ended_at = $4
             WHERE id = $5 AND state IN ('pending', 'delivered') AND console IS NOT DISTINCT FROM
                 coalesce($6, console)",
            args![state.as_str(), result, error, now, id, console],
        )
        .await?;
    if ended == 0 {
        return Ok(None);
    }
    let after = existing_command(c, id).await?;
    let entry = bus::audit(
        c,
        Change {
            by,
            action,
            kind: "backend_command",
            id: id.to_string(),
            before: Some(audit_view(&before)),
            after: Some(audit_view(&after)),
        },
    )
    .await?;
    Ok(Some((after, entry)))
}

/// Routes a pending command whose console `from` went away to another live console for its product
/// and version; `None` when there is none (or the command is no longer pending with `from`).
pub(crate) async fn reroute(
    c: &mut dyn Conn,
    id: &str,
    from: &str,
    now: OffsetDateTime,
) -> Result<Option<CommandRecord>> {
    let Some(command) = command(c, id).await? else {
        return Ok(None);
    };
    if command.state != CommandState::Pending || command.console.as_deref() != Some(from) {
        return Ok(None);
    }
    let Some((console, account)) = pick_console(
        c,
        &command.prod_name,
        &command.prod_version,
        Some(from),
        now,
    )
    .await?
    else {
        return Ok(None);
    };
    c.execute(
        "UPDATE backend_commands SET console = $1, console_account = $2
         WHERE id = $3 AND state = 'pending' AND console = $4",
        args![&console, &account, id, from],
    )
    .await?;
    let command = existing_command(c, id).await?;
    announce(c, &command).await?;
    Ok(Some(command))
}

/// Commands that have not ended (routed to `console`, when given), oldest first, with whether
/// their console is live at `now`.
pub(crate) async fn open_commands(
    c: &mut dyn Conn,
    now: OffsetDateTime,
    console: Option<&str>,
) -> Result<Vec<OpenCommand>> {
    let live = compare_time(c.dialect(), "k.expires_at", ">", 1);
    c.query(
        &format!(
            "SELECT {}, CASE WHEN k.id IS NOT NULL AND {live} THEN 1 ELSE 0 END
             FROM backend_commands c LEFT JOIN backend_consoles k ON k.id = c.console
             WHERE c.state IN ('pending', 'delivered') AND ($2 IS NULL OR c.console = $2)
             ORDER BY c.created_at, c.id",
            command_columns_of("c")
        ),
        args![now, console],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(OpenCommand {
            command: command_record(r)?,
            console_live: r.int(15)? != 0,
        })
    })
    .collect()
}
