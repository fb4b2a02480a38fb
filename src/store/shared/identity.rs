//! Admin accounts, their tokens, and failed logins counted in the database (one budget for every
//! node that shares it).

use time::OffsetDateTime;

use super::bus::{self, Change};
use crate::args;
use crate::store::sql::{placeholders, Arg, Conn, Row};
use crate::store::{
    Account, Actor, AuditEntry, NewToken, Result, StoreError, TokenCapReached, TokenKind,
    TokenRecord,
};

const ACCOUNT_COLUMNS: &str = "id, name, role, disabled, created_at";

fn account_row(r: &Row) -> Result<Account> {
    Ok(Account {
        id: r.int(0)?,
        name: r.text(1)?,
        role: r.text(2)?,
        disabled: r.bool(3)?,
        created_at: r.time(4)?,
    })
}

pub(crate) async fn account_count(c: &mut dyn Conn) -> Result<i64> {
    c.query_one("SELECT count(*) FROM accounts", &[])
        .await?
        .int(0)
}

pub(crate) async fn account(c: &mut dyn Conn, id: i64) -> Result<Option<Account>> {
    c.query_opt(
        &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1"),
        args![id],
    )
    .await?
    .as_ref()
    .map(account_row)
    .transpose()
}

async fn existing_account(c: &mut dyn Conn, id: i64) -> Result<Account> {
    account(c, id)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("account {id} does not exist")))
}

pub(crate) async fn account_by_name(
    c: &mut dyn Conn,
    name: &str,
) -> Result<Option<(Account, String)>> {
    c.query_opt(
        &format!("SELECT {ACCOUNT_COLUMNS}, password_hash FROM accounts WHERE name = $1"),
        args![name],
    )
    .await?
    .map(|r| Ok((account_row(&r)?, r.text(5)?)))
    .transpose()
}

pub(crate) async fn accounts(c: &mut dyn Conn) -> Result<Vec<Account>> {
    c.query(
        &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY name"),
        &[],
    )
    .await?
    .iter()
    .map(account_row)
    .collect()
}

pub(crate) async fn create_account(
    c: &mut dyn Conn,
    name: &str,
    role: &str,
    password_hash: &str,
    by: &Actor,
) -> Result<(Account, AuditEntry)> {
    if account_by_name(c, name).await?.is_some() {
        return Err(StoreError::Conflict(format!(
            "an account named {name:?} already exists"
        )));
    }
    let id = c
        .query_one(
            "INSERT INTO accounts (name, role, password_hash, created_at) VALUES ($1, $2, $3, $4)
             RETURNING id",
            args![name, role, password_hash, OffsetDateTime::now_utc()],
        )
        .await?
        .int(0)?;
    let account = existing_account(c, id).await?;
    let entry = audit_account(c, "account.create", None, Some(&account), by).await?;
    Ok((account, entry))
}

async fn audit_account(
    c: &mut dyn Conn,
    action: &str,
    before: Option<&Account>,
    after: Option<&Account>,
    by: &Actor,
) -> Result<AuditEntry> {
    let id = before.or(after).map(|a| a.name.clone()).unwrap_or_default();
    bus::audit(
        c,
        Change {
            by,
            action,
            kind: "account",
            id,
            before: before.and_then(|a| serde_json::to_value(a).ok()),
            after: after.and_then(|a| serde_json::to_value(a).ok()),
        },
    )
    .await
}

pub(crate) async fn set_password(
    c: &mut dyn Conn,
    id: i64,
    password_hash: &str,
    by: &Actor,
) -> Result<AuditEntry> {
    let account = existing_account(c, id).await?;
    c.execute(
        "UPDATE accounts SET password_hash = $1 WHERE id = $2",
        args![password_hash, id],
    )
    .await?;
    // The hash is no one's business: the entry says only that it changed.
    audit_account(c, "account.password", Some(&account), Some(&account), by).await
}

pub(crate) async fn set_disabled(
    c: &mut dyn Conn,
    id: i64,
    disabled: bool,
    by: &Actor,
) -> Result<AuditEntry> {
    let before = existing_account(c, id).await?;
    c.execute(
        "UPDATE accounts SET disabled = $1 WHERE id = $2",
        args![disabled, id],
    )
    .await?;
    let after = existing_account(c, id).await?;
    let action = if disabled {
        "account.disable"
    } else {
        "account.enable"
    };
    audit_account(c, action, Some(&before), Some(&after), by).await
}

const TOKEN_COLUMNS: &str =
    "id, subject, account_id, name, kind, created_at, expires_at, revoked_at";

fn token_row(r: &Row) -> Result<TokenRecord> {
    let kind = r.text(4)?;
    Ok(TokenRecord {
        id: r.int(0)?,
        subject: r.text(1)?,
        account_id: r.int(2)?,
        name: r.text(3)?,
        kind: TokenKind::parse(&kind)
            .ok_or_else(|| StoreError::corrupt(format!("token kind {kind:?}")))?,
        created_at: r.time(5)?,
        expires_at: r.time(6)?,
        revoked_at: r.opt_time(7)?,
    })
}

pub(crate) async fn tokens_of(c: &mut dyn Conn, account: i64) -> Result<Vec<TokenRecord>> {
    c.query(
        &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE account_id = $1 ORDER BY id"),
        args![account],
    )
    .await?
    .iter()
    .map(token_row)
    .collect()
}

pub(crate) async fn token_by_subject(
    c: &mut dyn Conn,
    subject: &str,
) -> Result<Option<TokenRecord>> {
    c.query_opt(
        &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE subject = $1"),
        args![subject],
    )
    .await?
    .as_ref()
    .map(token_row)
    .transpose()
}

pub(crate) async fn token(c: &mut dyn Conn, id: i64) -> Result<Option<TokenRecord>> {
    c.query_opt(
        &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = $1"),
        args![id],
    )
    .await?
    .as_ref()
    .map(token_row)
    .transpose()
}

async fn existing_token(c: &mut dyn Conn, id: i64) -> Result<TokenRecord> {
    token(c, id)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("token {id} does not exist")))
}

async fn audit_token(
    c: &mut dyn Conn,
    action: &str,
    before: Option<&TokenRecord>,
    after: Option<&TokenRecord>,
    by: &Actor,
) -> Result<AuditEntry> {
    let id = before
        .or(after)
        .map(|t| t.id.to_string())
        .unwrap_or_default();
    bus::audit(
        c,
        Change {
            by,
            action,
            kind: "token",
            id,
            before: before.and_then(|t| serde_json::to_value(t).ok()),
            after: after.and_then(|t| serde_json::to_value(t).ok()),
        },
    )
    .await
}

/// Seed 001's token rules: creating a token deletes the account's expired ones; API tokens,
/// active and revoked, count against the cap until they expire.
pub(crate) async fn create_token(
    c: &mut dyn Conn,
    new: &NewToken,
    max_tokens: u64,
    by: &Actor,
) -> Result<std::result::Result<(TokenRecord, AuditEntry), TokenCapReached>> {
    let now = new.created_at;
    let expired = c
        .query(
            &format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens WHERE account_id = $1 AND {}",
                earlier("expires_at", 2, c.dialect())
            ),
            args![new.account_id, now],
        )
        .await?
        .iter()
        .map(token_row)
        .collect::<Result<Vec<_>>>()?;
    for token in &expired {
        c.execute("DELETE FROM tokens WHERE id = $1", args![token.id])
            .await?;
        audit_token(c, "token.delete", Some(token), None, by).await?;
    }
    if new.kind == TokenKind::Api {
        let held: Vec<TokenRecord> = tokens_of(c, new.account_id)
            .await?
            .into_iter()
            .filter(|t| t.kind == TokenKind::Api)
            .collect();
        if held.len() as u64 >= max_tokens {
            let until = held.iter().map(|t| t.expires_at).min().unwrap_or(now);
            return Ok(Err(TokenCapReached {
                max: max_tokens,
                until,
            }));
        }
    }
    let id = c
        .query_one(
            "INSERT INTO tokens (subject, account_id, name, kind, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            args![
                &new.subject,
                new.account_id,
                &new.name,
                new.kind.as_str(),
                new.created_at,
                new.expires_at
            ],
        )
        .await?
        .int(0)?;
    let record = existing_token(c, id).await?;
    let entry = audit_token(c, "token.create", None, Some(&record), by).await?;
    Ok(Ok((record, entry)))
}

/// `column < $param` for a timestamp column (see the note in `sessions`).
fn earlier(column: &str, param: usize, dialect: crate::store::sql::Dialect) -> String {
    dialect.pick(
        format!("julianday({column}) < julianday(${param})"),
        format!("{column} < ${param}"),
    )
}

pub(crate) async fn revoke_token(
    c: &mut dyn Conn,
    id: i64,
    now: OffsetDateTime,
    by: &Actor,
) -> Result<(TokenRecord, AuditEntry)> {
    let before = existing_token(c, id).await?;
    if before.revoked_at.is_none() {
        c.execute(
            "UPDATE tokens SET revoked_at = $1 WHERE id = $2",
            args![now, id],
        )
        .await?;
    }
    let after = existing_token(c, id).await?;
    let entry = audit_token(c, "token.revoke", Some(&before), Some(&after), by).await?;
    Ok((after, entry))
}

pub(crate) async fn delete_token(
    c: &mut dyn Conn,
    id: i64,
    now: OffsetDateTime,
    by: &Actor,
) -> Result<AuditEntry> {
    let before = existing_token(c, id).await?;
    if before.expires_at > now {
        return Err(StoreError::Conflict(format!(
            "token {id} expires at {} and may be deleted only after that; revoke it to stop it now",
            crate::store::timestamp(before.expires_at)
        )));
    }
    c.execute("DELETE FROM tokens WHERE id = $1", args![id])
        .await?;
    audit_token(c, "token.delete", Some(&before), None, by).await
}

pub(crate) async fn failures(
    c: &mut dyn Conn,
    keys: &[String],
    since: OffsetDateTime,
) -> Result<Vec<(String, u32)>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut params: Vec<Arg> = keys.iter().map(Arg::from).collect();
    params.push(since.into());
    let sql = format!(
        "SELECT key, count FROM login_failures WHERE key IN ({}) AND NOT ({})",
        placeholders(1, keys.len()),
        earlier("since", keys.len() + 1, c.dialect())
    );
    c.query(&sql, &params)
        .await?
        .iter()
        .map(|r| Ok((r.text(0)?, r.int(1)?.clamp(0, u32::MAX.into()) as u32)))
        .collect()
}

pub(crate) async fn record_failure(
    c: &mut dyn Conn,
    keys: &[String],
    now: OffsetDateTime,
    since: OffsetDateTime,
) -> Result<()> {
    let stale = earlier("login_failures.since", 3, c.dialect());
    let sql = format!(
        "INSERT INTO login_failures (key, since, count) VALUES ($1, $2, 1)
         ON CONFLICT (key) DO UPDATE SET
             since = CASE WHEN {stale} THEN excluded.since ELSE login_failures.since END,
             count = CASE WHEN {stale} THEN 1 ELSE login_failures.count + 1 END"
    );
    for key in keys {
        c.execute(&sql, args![key, now, since]).await?;
    }
    Ok(())
}

pub(crate) async fn clear_failures(c: &mut dyn Conn, keys: &[String]) -> Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    let params: Vec<Arg> = keys.iter().map(Arg::from).collect();
    c.execute(
        &format!(
            "DELETE FROM login_failures WHERE key IN ({})",
            placeholders(1, keys.len())
        ),
        &params,
    )
    .await?;
    Ok(())
}

/// Deletes counts that are older than `since` (they count as zero already).
pub(crate) async fn forget_failures(c: &mut dyn Conn, since: OffsetDateTime) -> Result<u64> {
    let sql = format!(
        "DELETE FROM login_failures WHERE {}",
        earlier("since", 1, c.dialect())
    );
    c.execute(&sql, args![since]).await
}
