//! Login throttling for devices and admins, counted in the database so that every node that shares
//! it shares one budget.
//!
//! Failures are counted per name (a DeviceId, an account), per source address and per (name,
//! address) pair within `window`. Past a free allowance each count imposes a wait before the next
//! attempt is checked, doubling with every further failure. The wait of the pair (the guesser
//! itself) grows to `max_pair_delay`; the waits of a name or an address as a whole, which the
//! rightful owner and other clients behind the same address share, stop at `max_shared_delay`. A
//! correct password is still accepted after the wait: throttling slows the guesser, it never locks
//! the owner out. While one throttled attempt of a pair waits on this node, others of the same pair
//! are turned away, so that parallel connections do not multiply a guesser's rate.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use time::OffsetDateTime;

use super::{DomainError, Result};
use crate::store::Store;

/// How failed logins slow down the attempts that follow them.
#[derive(Debug, Clone)]
pub struct ThrottlePolicy {
    pub window: Duration,
    /// Failures of one name (and of one name from one address) before attempts wait.
    pub free_per_name: u32,
    pub free_per_address: u32,
    pub max_shared_delay: Duration,
    pub max_pair_delay: Duration,
}

/// The wait after the first failure past the allowance.
const FIRST_DELAY: Duration = Duration::from_millis(250);

impl Default for ThrottlePolicy {
    fn default() -> Self {
        ThrottlePolicy {
            window: Duration::from_secs(300),
            free_per_name: 5,
            free_per_address: 50,
            max_shared_delay: Duration::from_secs(2),
            max_pair_delay: Duration::from_secs(10),
        }
    }
}

/// Recent failures behind one attempt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FailureCounts {
    pub name: u32,
    pub address: u32,
    pub pair: u32,
}

impl ThrottlePolicy {
    /// How long an attempt waits before its password is checked.
    pub fn delay(&self, counts: FailureCounts) -> Duration {
        let grow = |count: u32, free: u32, cap: Duration| match count.saturating_sub(free) {
            0 => Duration::ZERO,
            excess => FIRST_DELAY
                .saturating_mul(1u32 << (excess - 1).min(16))
                .min(cap),
        };
        grow(counts.name, self.free_per_name, self.max_shared_delay)
            .max(grow(
                counts.address,
                self.free_per_address,
                self.max_shared_delay,
            ))
            .max(grow(counts.pair, self.free_per_name, self.max_pair_delay))
    }

    fn pair_throttled(&self, counts: FailureCounts) -> bool {
        counts.pair > self.free_per_name
    }
}

/// Whose logins: devices and admin accounts are counted apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginKind {
    Device,
    Admin,
}

impl LoginKind {
    fn prefix(self) -> &'static str {
        match self {
            LoginKind::Device => "device",
            LoginKind::Admin => "admin",
        }
    }
}

/// The keys one attempt's failures are counted under: name, address, pair.
fn keys(kind: LoginKind, name: &str, address: Option<IpAddr>) -> [String; 3] {
    let k = kind.prefix();
    let address = address.map_or_else(|| "-".to_string(), |a| a.to_string());
    [
        format!("{k}:name:{name}"),
        format!("{k}:address:{address}"),
        format!("{k}:pair:{address}:{name}"),
    ]
}

pub struct LoginThrottle {
    store: Arc<dyn Store>,
    policy: ThrottlePolicy,
    in_flight: Arc<Mutex<HashSet<String>>>,
}

/// One login attempt that may go ahead: say how it ended.
#[must_use = "an attempt counts only once it says how it ended"]
pub struct Attempt<'t> {
    throttle: &'t LoginThrottle,
    keys: [String; 3],
    /// Whether the name or pair had failures to clear on success.
    had_failures: bool,
    _in_flight: InFlight,
}

/// Removes a throttled attempt from the in-flight set when dropped.
struct InFlight {
    key: Option<String>,
    set: Weak<Mutex<HashSet<String>>>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let (Some(key), Some(set)) = (self.key.take(), self.set.upgrade()) {
            set.lock().unwrap().remove(&key);
        }
    }
}

impl LoginThrottle {
    pub fn new(store: Arc<dyn Store>, policy: ThrottlePolicy) -> LoginThrottle {
        LoginThrottle {
            store,
            policy,
            in_flight: Default::default(),
        }
    }

    /// The failures counted for an attempt.
    pub async fn counts(
        &self,
        kind: LoginKind,
        name: &str,
        address: Option<IpAddr>,
    ) -> Result<FailureCounts> {
        let keys = keys(kind, name, address);
        let since = OffsetDateTime::now_utc() - self.policy.window;
        let found = self.store.failures(&keys, since).await?;
        let get = |key: &str| found.iter().find(|(k, _)| k == key).map_or(0, |(_, n)| *n);
        Ok(FailureCounts {
            name: get(&keys[0]),
            address: get(&keys[1]),
            pair: get(&keys[2]),
        })
    }

    /// Drops counts older than `since`, which count as zero already.
    pub async fn forget(&self, since: OffsetDateTime) -> Result<u64> {
        Ok(self.store.forget_failures(since).await?)
    }

    /// Waits as long as the failures behind this attempt say, then lets it check its password;
    /// refuses it ([`DomainError::TryLater`]) while another throttled attempt of the same pair runs.
    pub async fn begin(
        &self,
        kind: LoginKind,
        name: &str,
        address: Option<IpAddr>,
    ) -> Result<Attempt<'_>> {
        let counts = self.counts(kind, name, address).await?;
        let delay = self.policy.delay(counts);
        let keys = keys(kind, name, address);
        let mut guard = InFlight {
            key: None,
            set: Arc::downgrade(&self.in_flight),
        };
        if self.policy.pair_throttled(counts) {
            if !self.in_flight.lock().unwrap().insert(keys[2].clone()) {
                tracing::info!(name = %name.escape_debug(), ?address,
                    "login refused: an earlier throttled attempt is still running");
                return Err(DomainError::TryLater {
                    message: "too many failed logins".into(),
                    retry_after: delay.max(Duration::from_secs(1)),
                });
            }
            guard.key = Some(keys[2].clone());
        }
        if !delay.is_zero() {
            tracing::info!(name = %name.escape_debug(), ?address,
                delay_ms = delay.as_millis() as u64, "login delayed after failed attempts");
            tokio::time::sleep(delay).await;
        }
        Ok(Attempt {
            throttle: self,
            keys,
            had_failures: counts.name > 0 || counts.pair > 0,
            _in_flight: guard,
        })
    }
}

impl Attempt<'_> {
    /// The password was right: the name's and the pair's counts start again (the address's stays:
    /// one good client behind a NAT must not reset the count of a guesser behind the same address).
    pub async fn succeeded(self) -> Result<()> {
        if self.had_failures {
            let [name, _, pair] = &self.keys;
            self.throttle
                .store
                .clear_failures(&[name.clone(), pair.clone()])
                .await?;
        }
        Ok(())
    }

    /// The password was wrong (or the name unknown): one more failure under each key.
    pub async fn failed(self) -> Result<()> {
        let now = OffsetDateTime::now_utc();
        self.throttle
            .store
            .record_failure(&self.keys, now, now - self.throttle.policy.window)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_per_scope_and_stop_at_their_caps() {
        let p = ThrottlePolicy::default();
        let c = |name, address, pair| FailureCounts {
            name,
            address,
            pair,
        };
        assert_eq!(p.delay(c(5, 5, 5)), Duration::ZERO, "within the allowance");
        assert_eq!(p.delay(c(6, 6, 0)), Duration::from_millis(250));
        assert_eq!(p.delay(c(7, 0, 0)), Duration::from_millis(500));
        assert_eq!(
            p.delay(c(60, 0, 0)),
            p.max_shared_delay,
            "owner's wait is short"
        );
        assert_eq!(
            p.delay(c(0, 500, 0)),
            p.max_shared_delay,
            "neighbours' wait is short"
        );
        assert_eq!(
            p.delay(c(60, 0, 60)),
            p.max_pair_delay,
            "the guesser waits longest"
        );
        assert_eq!(p.delay(c(u32::MAX, u32::MAX, u32::MAX)), p.max_pair_delay);
        assert!(p.pair_throttled(c(0, 0, 6)) && !p.pair_throttled(c(9, 9, 5)));
    }

    #[test]
    fn devices_and_admins_count_apart() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let device = keys(LoginKind::Device, "x", Some(ip));
        let admin = keys(LoginKind::Admin, "x", Some(ip));
        assert!(device.iter().all(|k| !admin.contains(k)));
        assert_eq!(device[2], "device:pair:192.0.2.1:x");
    }
}
