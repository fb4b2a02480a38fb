//! Admin accounts: argon2id password hashes, logins throttled in the database, and the first
//! account a new server creates for itself.

use std::path::Path;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;

use super::rights::{Access, Caller, FuncArea, Role};
use super::throttle::LoginKind;
use super::{Domain, DomainError, Result};
use crate::store::{Account, Actor};

/// Account names: 1 to 64 printable characters without spaces at either end.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= 64
        && name.chars().all(|c| !c.is_control())
        && name.trim() == name
}

/// Passwords of people: long enough to mean something, short enough to hash quickly.
const MIN_PASSWORD: usize = 8;
const MAX_PASSWORD: usize = 1024;

fn check_password(password: &str) -> Result<()> {
    let n = password.chars().count();
    if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&n) {
        return Err(DomainError::Invalid(format!(
            "a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters"
        )));
    }
    Ok(())
}

/// An argon2id hash of `password`, as a PHC string (`$argon2id$v=19$...`). Slow on purpose: run
/// it on a blocking thread.
pub fn hash_password(password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| DomainError::Internal(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| DomainError::Internal(format!("password hashing failed: {e}")))
}

/// Whether `password` matches the PHC string `hash`.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Hashes on a blocking thread: argon2id takes tens of milliseconds by design.
async fn hash_off_thread(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| DomainError::Internal(e.to_string()))?
}

/// A hash that no password matches, checked when the account does not exist so that the answer
/// takes as long as for a wrong password.
const NOBODY: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$bm9ib2R5LW5vYm9keQ$0Ivxl3dxDT4SBiDbU6HkNcyBLL/0hG4T6xj/K1Dcc5A";

/// A random password for an account made by the server (the initial admin, a test fixture).
pub fn random_password() -> String {
    let mut bytes = [0u8; 18];
    rand::rng().fill_bytes(&mut bytes);
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Domain {
    /// Creates an account. Needs Write on the admins area.
    pub async fn create_account(
        &self,
        caller: &Caller,
        name: &str,
        role: Role,
        password: &str,
    ) -> Result<Account> {
        caller.require(FuncArea::Admins, Access::Write)?;
        if !valid_name(name) {
            return Err(DomainError::Invalid(
                "an account name has 1 to 64 characters, no control characters and no spaces at either end"
                    .into(),
            ));
        }
        check_password(password)?;
        let hash = hash_off_thread(password.to_string()).await?;
        let (account, _) = self
            .store
            .create_account(name, role.name(), &hash, &caller.actor())
            .await?;
        Ok(account)
    }

    pub async fn accounts(&self, caller: &Caller) -> Result<Vec<Account>> {
        caller.require(FuncArea::Admins, Access::Read)?;
        Ok(self.store.accounts().await?)
    }

    /// One account: one's own, or any with Read on the admins area.
    pub async fn account(&self, caller: &Caller, name: &str) -> Result<Account> {
        let (account, _) = self.account_named(name).await?;
        if caller.account_id != Some(account.id) {
            caller.require(FuncArea::Admins, Access::Read)?;
        }
        Ok(account)
    }

    /// Sets an account's password, disables or enables it, or both; every rule is checked before
    /// anything is written.
    pub async fn change_account(
        &self,
        caller: &Caller,
        name: &str,
        password: Option<&str>,
        disabled: Option<bool>,
    ) -> Result<Account> {
        let (account, _) = self.account_named(name).await?;
        if password.is_none() && disabled.is_none() {
            return Err(DomainError::Invalid(
                "nothing to change: give password or disabled".into(),
            ));
        }
        if disabled.is_some() || caller.account_id != Some(account.id) {
            caller.require(FuncArea::Admins, Access::Write)?;
        }
        if disabled == Some(true) && caller.account_id == Some(account.id) {
            return Err(DomainError::Invalid(
                "an account cannot disable itself".into(),
            ));
        }
        if let Some(password) = password {
            check_password(password)?;
            self.set_password(caller, name, password).await?;
        }
        match disabled {
            Some(disabled) => self.set_account_disabled(caller, name, disabled).await,
            None => self.account(caller, name).await,
        }
    }

    /// The account called `name`, or not found.
    async fn account_named(&self, name: &str) -> Result<(Account, String)> {
        self.store
            .account_by_name(name)
            .await?
            .ok_or_else(|| DomainError::NotFound(format!("no account named {name:?}")))
    }

    /// Sets an account's password: one's own, or anyone's with Write on the admins area.
    pub async fn set_password(&self, caller: &Caller, name: &str, password: &str) -> Result<()> {
        let (account, _) = self.account_named(name).await?;
        if caller.account_id != Some(account.id) {
            caller.require(FuncArea::Admins, Access::Write)?;
        }
        check_password(password)?;
        let hash = hash_off_thread(password.to_string()).await?;
        self.store
            .set_password(account.id, &hash, &caller.actor())
            .await?;
        Ok(())
    }

    /// Disables or enables an account. A disabled account cannot log in, and its tokens stop
    /// working.
    pub async fn set_account_disabled(
        &self,
        caller: &Caller,
        name: &str,
        disabled: bool,
    ) -> Result<Account> {
        caller.require(FuncArea::Admins, Access::Write)?;
        let (account, _) = self.account_named(name).await?;
        if disabled && caller.account_id == Some(account.id) {
            return Err(DomainError::Invalid(
                "an account cannot disable itself".into(),
            ));
        }
        self.store
            .set_account_disabled(account.id, disabled, &caller.actor())
            .await?;
        self.store
            .account(account.id)
            .await?
            .ok_or_else(|| DomainError::NotFound(format!("no account named {name:?}")))
    }

    /// Checks an account's password, throttled like device logins (in the database, so every
    /// node counts the same failures). Returns the caller the account acts as.
    pub async fn authenticate(
        &self,
        name: &str,
        password: &str,
        address: Option<std::net::IpAddr>,
    ) -> Result<Caller> {
        let attempt = self.throttle.begin(LoginKind::Admin, name, address).await?;
        let found = self.store.account_by_name(name).await?;
        let hash = found
            .as_ref()
            .map(|(_, hash)| hash.clone())
            .unwrap_or_else(|| NOBODY.to_string());
        let given = password.to_string();
        let matches = tokio::task::spawn_blocking(move || verify_password(&given, &hash))
            .await
            .map_err(|e| DomainError::Internal(e.to_string()))?;
        match found {
            Some((account, _)) if matches && !account.disabled => {
                attempt.succeeded().await?;
                let role = Role::parse(&account.role).ok_or_else(|| {
                    DomainError::Internal(format!("account {name:?} has role {:?}", account.role))
                })?;
                Ok(Caller {
                    account_id: Some(account.id),
                    name: account.name,
                    role,
                    token: None,
                    address: address.map(|a| a.to_string()),
                })
            }
            _ => {
                attempt.failed().await?;
                tracing::warn!(account = %name.escape_debug(), address = ?address, "admin login refused");
                Err(DomainError::Unauthenticated(
                    "unknown account or wrong password".into(),
                ))
            }
        }
    }

    /// On a server with no account yet, creates `admin` (an administrator) with a random password
    /// written once to `file` (mode 0600), and says where; never the password. Returns whether it
    /// did.
    pub async fn create_initial_admin(&self, file: &Path) -> Result<bool> {
        if self.store.account_count().await? > 0 {
            return Ok(false);
        }
        let password = random_password();
        write_private(file, &format!("{password}\n"))
            .map_err(|e| DomainError::Unavailable(format!("{}: {e}", file.display())))?;
        let hash = hash_off_thread(password).await?;
        let by = Actor::system("system");
        match self
            .store
            .create_account("admin", Role::Administrator.name(), &hash, &by)
            .await
        {
            Ok(_) => {}
            // Another node made it first; its password file is on that node.
            Err(crate::store::StoreError::Conflict(_)) => {
                let _ = std::fs::remove_file(file);
                return Ok(false);
            }
            Err(e) => return Err(e.into()),
        }
        tracing::info!(
            account = "admin",
            password_file = %file.display(),
            "initial administrator created; its password is in the file (read it, then delete it)"
        );
        Ok(true)
    }
}

/// Writes `text` to a new file readable by its owner alone.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    std::io::Write::write_all(&mut file, text.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("correct horsE", &hash));
        assert_ne!(hash, hash_password("correct horse").unwrap(), "salted");
        assert!(!verify_password("anything", NOBODY));
        assert!(PasswordHash::new(NOBODY).is_ok(), "the dummy hash parses");
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn names_and_passwords_are_checked() {
        assert!(valid_name("ops-1"));
        assert!(!valid_name(""));
        assert!(!valid_name(" padded"));
        assert!(!valid_name(&"n".repeat(65)));
        assert!(check_password("short").is_err());
        assert!(check_password("long enough").is_ok());
    }
}
