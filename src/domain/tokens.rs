//! API tokens as seed 001 describes them: JWTs (HS256, signed with a key kept in the data
//! directory, not in the database), each with a unique subject, an expiry and a database row, so
//! that it can be revoked at any time; deletable only after expiry; a per-account cap counting
//! active and revoked tokens; creating one deletes the account's expired ones. An interactive login
//! gets a short-lived session token of the same kind.

use std::path::Path;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::rights::{Access, Caller, FuncArea, Role};
use super::{Changed, Domain, DomainError, Result};
use crate::store::{AuditEntry, NewToken, TokenKind, TokenRecord};

/// The audience of tokens for the admin API. Other uses (event intake) get audiences of their own,
/// so that their tokens cannot drive the admin API.
pub const ADMIN_AUDIENCE: &str = "mobile-admin-api";

/// The key tokens are signed with: 32 random bytes in a file of mode 0600, created on first start.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKeys(***)")
    }
}

impl TokenKeys {
    pub fn from_secret(secret: &[u8]) -> TokenKeys {
        TokenKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        }
    }

    /// Reads the key at `path`, creating it on first start.
    pub(super) fn encoding(&self) -> &EncodingKey {
        &self.encoding
    }

    pub fn load_or_create(path: &Path) -> std::io::Result<TokenKeys> {
        let secret = crate::auth::Secret::load_or_create(path)?;
        Ok(TokenKeys::from_secret(secret.bytes()))
    }
}

/// What a token says. `sub` names the token's row (and so its account); `jti` is the same value,
/// for tools that look for one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    /// `api` or `session`.
    pub kind: String,
}

/// A new token: its row, and the JWT itself (shown once, never stored).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IssuedToken {
    pub record: TokenRecord,
    pub token: String,
}

fn new_subject() -> String {
    let mut bytes = [0u8; 12];
    rand::rng().fill_bytes(&mut bytes);
    format!("tok_{}", hex::encode(bytes))
}

/// Token names: 1 to 100 characters, no control characters.
fn valid_token_name(name: &str) -> bool {
    !name.is_empty() && name.chars().count() <= 100 && !name.chars().any(char::is_control)
}

impl Domain {
    fn sign(&self, record: &TokenRecord, audience: &str) -> Result<String> {
        let claims = Claims {
            sub: record.subject.clone(),
            aud: audience.to_string(),
            iat: record.created_at.unix_timestamp(),
            exp: record.expires_at.unix_timestamp(),
            jti: record.subject.clone(),
            kind: record.kind.as_str().to_string(),
        };
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.tokens.encoding,
        )
        .map_err(|e| DomainError::Internal(format!("signing a token: {e}")))
    }

    /// Issues a token of `kind` for the caller's own account.
    async fn issue(
        &self,
        caller: &Caller,
        name: &str,
        kind: TokenKind,
        lifetime: Duration,
    ) -> Result<Changed<IssuedToken>> {
        let account = caller.account_id.ok_or_else(|| {
            DomainError::Invalid("tokens belong to accounts: log in as one".into())
        })?;
        if !valid_token_name(name) {
            return Err(DomainError::Invalid(
                "a token name has 1 to 100 characters and no control characters".into(),
            ));
        }
        let now = self.clock.now();
        let new = NewToken {
            subject: new_subject(),
            account_id: account,
            name: name.to_string(),
            kind,
            created_at: now,
            expires_at: now + lifetime,
        };
        let created = self
            .store
            .create_token(&new, self.config.max_tokens_per_account, &caller.actor())
            .await?;
        let (record, audit) = created.map_err(|cap| {
            DomainError::Conflict(format!(
                "the account holds {} tokens, active and revoked, the most it may: a new one can be \
                 created once the first of them expires, at {}",
                cap.max,
                crate::store::timestamp(cap.until)
            ))
        })?;
        let token = self.sign(&record, ADMIN_AUDIENCE)?;
        Ok(Changed {
            value: IssuedToken { record, token },
            audit,
            notices: Vec::new(),
        })
    }

    /// Creates an API token for the caller's account, living `days` (the configured default when
    /// `None`).
    pub async fn create_token(
        &self,
        caller: &Caller,
        name: &str,
        days: Option<u64>,
    ) -> Result<Changed<IssuedToken>> {
        let days = days.unwrap_or(self.config.token_days_default);
        if days == 0 || days > self.config.token_days_max {
            return Err(DomainError::Invalid(format!(
                "a token lives 1 to {} days",
                self.config.token_days_max
            )));
        }
        self.issue(
            caller,
            name,
            TokenKind::Api,
            Duration::from_secs(days * 86_400),
        )
        .await
    }

    /// A token with an exact lifetime (tests of expiry, and the documentation page's refresh).
    pub async fn create_token_for(
        &self,
        caller: &Caller,
        name: &str,
        lifetime: Duration,
    ) -> Result<Changed<IssuedToken>> {
        self.issue(caller, name, TokenKind::Api, lifetime).await
    }

    /// The short-lived token an interactive login gets (not counted against the account's cap).
    pub async fn session_token(&self, caller: &Caller) -> Result<IssuedToken> {
        let lifetime = Duration::from_secs(self.config.session_token_minutes.max(1) * 60);
        Ok(self
            .issue(caller, "session", TokenKind::Session, lifetime)
            .await?
            .value)
    }

    /// Logs in with a password and issues a session token.
    pub async fn login(
        &self,
        name: &str,
        password: &str,
        address: Option<std::net::IpAddr>,
    ) -> Result<(Caller, IssuedToken)> {
        let mut caller = self.authenticate(name, password, address).await?;
        let issued = self.session_token(&caller).await?;
        caller.token = Some(issued.record.subject.clone());
        Ok((caller, issued))
    }

    /// Checks a JWT of the admin API: signature, audience, expiry, its row (it must exist and not be
    /// revoked) and its account (it must exist and not be disabled). Any failure is
    /// [`DomainError::Unauthenticated`].
    pub async fn verify_token(
        &self,
        token: &str,
        address: Option<std::net::IpAddr>,
    ) -> Result<Caller> {
        let unauthenticated = |why: &str| DomainError::Unauthenticated(why.to_string());
        let claims = self.claims(token, ADMIN_AUDIENCE)?;
        let now = self.clock.now();
        let record = self
            .store
            .token_by_subject(&claims.sub)
            .await?
            .ok_or_else(|| unauthenticated("unknown token"))?;
        if record.revoked_at.is_some() {
            return Err(unauthenticated("the token has been revoked"));
        }
        if record.expires_at <= now {
            return Err(unauthenticated("the token has expired"));
        }
        self.token_caller(record.account_id, record.subject, address)
            .await
    }

    /// The claims of a JWT signed with our key for `audience`, not expired by the domain's clock
    /// (to the second, no leeway); any failure is [`DomainError::Unauthenticated`].
    pub(super) fn claims(&self, token: &str, audience: &str) -> Result<Claims> {
        let unauthenticated = |why: &str| DomainError::Unauthenticated(why.to_string());
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[audience]);
        validation.validate_exp = false;
        validation.required_spec_claims = ["sub", "aud", "exp"]
            .into_iter()
            .map(str::to_string)
            .collect();
        let claims = jsonwebtoken::decode::<Claims>(token, &self.tokens.decoding, &validation)
            .map_err(|_| unauthenticated("invalid token"))?
            .claims;
        if claims.exp <= self.clock.now().unix_timestamp() {
            return Err(unauthenticated("the token has expired"));
        }
        Ok(claims)
    }

    /// The caller a token of `account` acts as, if the account exists and is enabled.
    pub(super) async fn token_caller(
        &self,
        account: i64,
        subject: String,
        address: Option<std::net::IpAddr>,
    ) -> Result<Caller> {
        let account = self
            .store
            .account(account)
            .await?
            .filter(|a| !a.disabled)
            .ok_or_else(|| {
                DomainError::Unauthenticated("the token's account is disabled or gone".into())
            })?;
        let role = Role::parse(&account.role)
            .ok_or_else(|| DomainError::Internal(format!("unknown role {:?}", account.role)))?;
        Ok(Caller {
            account_id: Some(account.id),
            name: account.name,
            role,
            token: Some(subject),
            address: address.map(|a| a.to_string()),
        })
    }

    /// The tokens of an account: one's own, or anyone's with Read on the admins area.
    pub async fn tokens(&self, caller: &Caller, account: Option<&str>) -> Result<Vec<TokenRecord>> {
        let id = self.token_owner(caller, account, Access::Read).await?;
        Ok(self.store.tokens_of(id).await?)
    }

    /// The account whose tokens `caller` may see or change (`access`).
    async fn token_owner(
        &self,
        caller: &Caller,
        account: Option<&str>,
        access: Access,
    ) -> Result<i64> {
        match account {
            None => caller
                .account_id
                .ok_or_else(|| DomainError::Invalid("name the account".into())),
            Some(name) => {
                let (found, _) =
                    self.store.account_by_name(name).await?.ok_or_else(|| {
                        DomainError::NotFound(format!("no account named {name:?}"))
                    })?;
                if caller.account_id != Some(found.id) {
                    caller.require(FuncArea::Admins, access)?;
                }
                Ok(found.id)
            }
        }
    }

    /// A token by id, if the caller may act on it (its own, or with `access` on the admins area).
    async fn token_of(&self, caller: &Caller, id: i64, access: Access) -> Result<TokenRecord> {
        let token = self
            .store
            .token(id)
            .await?
            .ok_or_else(|| DomainError::NotFound(format!("no token {id}")))?;
        if caller.account_id != Some(token.account_id) {
            caller.require(FuncArea::Admins, access)?;
        }
        Ok(token)
    }

    /// Revokes a token now; it answers 401 from then on. Allowed before expiry, and after.
    pub async fn revoke_token(&self, caller: &Caller, id: i64) -> Result<Changed<TokenRecord>> {
        self.token_of(caller, id, Access::Write).await?;
        let now = self.clock.now();
        Ok(Changed::new(
            self.store.revoke_token(id, now, &caller.actor()).await?,
        ))
    }

    /// Deletes a token: only once it has expired, revoked or not (seed 001).
    pub async fn delete_token(&self, caller: &Caller, id: i64) -> Result<AuditEntry> {
        self.token_of(caller, id, Access::Write).await?;
        let now = self.clock.now();
        Ok(self.store.delete_token(id, now, &caller.actor()).await?)
    }

    /// Logs out: revokes the session token `caller` came with. `false` when it came with an API
    /// token (left alone) or none.
    pub async fn end_session(&self, caller: &Caller) -> Result<bool> {
        let Some(subject) = &caller.token else {
            return Ok(false);
        };
        let Some(token) = self.store.token_by_subject(subject).await? else {
            return Ok(false);
        };
        if token.kind != TokenKind::Session || token.revoked_at.is_some() {
            return Ok(false);
        }
        let now = self.clock.now();
        self.store
            .revoke_token(token.id, now, &caller.actor())
            .await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_unique_and_names_checked() {
        assert_ne!(new_subject(), new_subject());
        assert!(new_subject().starts_with("tok_"));
        assert!(valid_token_name("ci pipeline"));
        assert!(!valid_token_name(""));
        assert!(!valid_token_name("a\nb"));
    }
}
