//! Device credentials: salted keyed hashes of device passwords, and throttling of repeated failures.
//!
//! Device passwords are machine-generated random strings, so a fast keyed hash (HMAC-SHA256 under a
//! server secret kept outside the database) is the right trade: a stolen database alone does not allow
//! offline guessing, and checking costs microseconds at thousands of logins a second.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const SALT_LEN: usize = 16;
const TAG_LEN: usize = 32;
/// Length of a stored credential: salt followed by the HMAC tag.
pub const CREDENTIAL_LEN: usize = SALT_LEN + TAG_LEN;

/// The server secret that keys credential hashes. Never stored in the database.
#[derive(Clone)]
pub struct Secret([u8; 32]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Secret {
    pub fn from_bytes(bytes: [u8; 32]) -> Secret {
        Secret(bytes)
    }

    /// Reads the secret from `path`, creating it (mode 0600) with fresh random bytes on first start.
    pub fn load_or_create(path: &Path) -> std::io::Result<Secret> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let bytes: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{} must hold exactly 32 bytes", path.display()),
                    )
                })?;
                Ok(Secret(bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = [0u8; 32];
                rand::rng().fill_bytes(&mut bytes);
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let tmp = path.with_extension("tmp");
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create(true).truncate(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    options.mode(0o600);
                }
                let mut file = options.open(&tmp)?;
                std::io::Write::write_all(&mut file, &bytes)?;
                file.sync_all()?;
                std::fs::rename(&tmp, path)?;
                Ok(Secret(bytes))
            }
            Err(e) => Err(e),
        }
    }

    fn mac(&self, salt: &[u8], password: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(salt);
        mac.update(password.as_bytes());
        mac
    }

    /// A new credential for `password`: a random salt and the keyed hash.
    pub fn hash(&self, password: &str) -> Vec<u8> {
        let mut salt = [0u8; SALT_LEN];
        rand::rng().fill_bytes(&mut salt);
        let mut out = salt.to_vec();
        out.extend_from_slice(&self.mac(&salt, password).finalize().into_bytes());
        out
    }

    /// Whether `password` matches `credential`, compared in constant time.
    pub fn verify(&self, credential: &[u8], password: &str) -> bool {
        if credential.len() != CREDENTIAL_LEN {
            return false;
        }
        let (salt, tag) = credential.split_at(SALT_LEN);
        self.mac(salt, password).verify_slice(tag).is_ok()
    }
}

/// How failed logins slow down the attempts that follow them.
///
/// Failures are counted per device id, per source address and per (device id, address) pair within
/// `window`. Past a free allowance each count imposes a wait before the next attempt is checked,
/// doubling with every further failure. The wait of the pair (the guesser itself) grows to
/// `max_pair_delay`; the waits of a device id or an address as a whole, which the rightful device and
/// other devices behind the same address share, stop at `max_shared_delay`. A correct password is
/// still accepted after the wait: throttling slows the guesser, it never locks the owner out.
#[derive(Debug, Clone)]
pub struct ThrottlePolicy {
    pub window: Duration,
    pub free_per_device: u32,
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
            free_per_device: 5,
            free_per_address: 50,
            max_shared_delay: Duration::from_secs(2),
            max_pair_delay: Duration::from_secs(10),
        }
    }
}

/// Recent failures of one login attempt's device id, address and pair.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FailureCounts {
    pub device: u32,
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
        grow(counts.device, self.free_per_device, self.max_shared_delay)
            .max(grow(
                counts.address,
                self.free_per_address,
                self.max_shared_delay,
            ))
            .max(grow(counts.pair, self.free_per_device, self.max_pair_delay))
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    since: Instant,
    count: u32,
}

/// A bounded table of failure counts: entries older than the window are dropped whenever it grows
/// past its cap, and new keys are not tracked while it stays full, so a flood of random ids cannot
/// exhaust memory.
struct Counter<K> {
    entries: HashMap<K, Failures>,
}

const MAX_TRACKED: usize = 100_000;

impl<K: std::hash::Hash + Eq> Counter<K> {
    fn new() -> Self {
        Counter {
            entries: HashMap::new(),
        }
    }

    fn get(&self, key: &K, now: Instant, window: Duration) -> u32 {
        self.entries
            .get(key)
            .filter(|f| now.duration_since(f.since) < window)
            .map_or(0, |f| f.count)
    }

    fn bump(&mut self, key: K, now: Instant, window: Duration) {
        if self.entries.len() >= MAX_TRACKED {
            self.entries
                .retain(|_, f| now.duration_since(f.since) < window);
        }
        if self.entries.len() >= MAX_TRACKED && !self.entries.contains_key(&key) {
            return;
        }
        let f = self.entries.entry(key).or_insert(Failures {
            since: now,
            count: 0,
        });
        if now.duration_since(f.since) >= window {
            *f = Failures {
                since: now,
                count: 0,
            };
        }
        f.count = f.count.saturating_add(1);
    }

    fn clear(&mut self, key: &K) {
        self.entries.remove(key);
    }
}

/// What an attempt may do now.
#[derive(Debug)]
pub enum Admission {
    /// Go ahead after `delay`; the guard marks the attempt in flight until it is dropped.
    Go { delay: Duration, guard: InFlight },
    /// Another throttled attempt for the same device id from the same address is still waiting:
    /// come back in `retry_after`.
    Busy { retry_after: Duration },
}

/// Counts failed logins and decides how long the next attempt waits (see [`ThrottlePolicy`]).
pub struct Throttle {
    policy: ThrottlePolicy,
    state: std::sync::Arc<Mutex<ThrottleState>>,
}

struct ThrottleState {
    devices: Counter<String>,
    addresses: Counter<IpAddr>,
    pairs: Counter<(String, IpAddr)>,
    /// Throttled (device id, address) attempts that are waiting or being checked: one at a time, so
    /// that parallel connections do not multiply a guesser's rate.
    in_flight: std::collections::HashSet<(String, IpAddr)>,
}

/// Removes a throttled attempt from the in-flight set when dropped.
#[derive(Debug)]
pub struct InFlight {
    key: Option<(String, IpAddr)>,
    state: std::sync::Weak<Mutex<ThrottleState>>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let (Some(key), Some(state)) = (self.key.take(), self.state.upgrade()) {
            state.lock().unwrap().in_flight.remove(&key);
        }
    }
}

impl Throttle {
    pub fn new(policy: ThrottlePolicy) -> Throttle {
        Throttle {
            policy,
            state: std::sync::Arc::new(Mutex::new(ThrottleState {
                devices: Counter::new(),
                addresses: Counter::new(),
                pairs: Counter::new(),
                in_flight: Default::default(),
            })),
        }
    }

    /// The recent failures behind an attempt for `device_id` from `address`.
    pub fn counts(&self, device_id: &str, address: IpAddr, now: Instant) -> FailureCounts {
        let window = self.policy.window;
        let state = self.state.lock().unwrap();
        FailureCounts {
            device: state.devices.get(&device_id.to_string(), now, window),
            address: state.addresses.get(&address, now, window),
            pair: state
                .pairs
                .get(&(device_id.to_string(), address), now, window),
        }
    }

    /// Whether and after how long an attempt may check its password.
    pub fn admit(&self, device_id: &str, address: IpAddr, now: Instant) -> Admission {
        let counts = self.counts(device_id, address, now);
        let delay = self.policy.delay(counts);
        let pair_throttled = counts.pair > self.policy.free_per_device;
        let mut guard = InFlight {
            key: None,
            state: std::sync::Arc::downgrade(&self.state),
        };
        if pair_throttled {
            let key = (device_id.to_string(), address);
            if !self.state.lock().unwrap().in_flight.insert(key.clone()) {
                return Admission::Busy {
                    retry_after: delay.max(Duration::from_secs(1)),
                };
            }
            guard.key = Some(key);
        }
        Admission::Go { delay, guard }
    }

    pub fn record_failure(&self, device_id: &str, address: IpAddr, now: Instant) {
        let window = self.policy.window;
        let mut state = self.state.lock().unwrap();
        state.devices.bump(device_id.to_string(), now, window);
        state.addresses.bump(address, now, window);
        state
            .pairs
            .bump((device_id.to_string(), address), now, window);
    }

    /// A successful login clears the counts of its device id and pair, not its address's: one good
    /// device behind a NAT must not reset the count of a guesser behind the same address.
    pub fn record_success(&self, device_id: &str, address: IpAddr) {
        let mut state = self.state.lock().unwrap();
        state.devices.clear(&device_id.to_string());
        state.pairs.clear(&(device_id.to_string(), address));
    }
}

/// A limit on how often one source address may do something (enrol a new device), as a token
/// bucket per address. Its memory is bounded: addresses whose bucket is full again are forgotten
/// once the table grows large.
pub struct AddressLimiter {
    limiter: Option<governor::DefaultKeyedRateLimiter<IpAddr>>,
}

impl AddressLimiter {
    /// `per_minute` actions per address, all of them at once at most; 0 means no limit.
    pub fn per_minute(per_minute: u32) -> AddressLimiter {
        AddressLimiter {
            limiter: std::num::NonZeroU32::new(per_minute)
                .map(|n| governor::RateLimiter::keyed(governor::Quota::per_minute(n))),
        }
    }

    /// `Ok` if `address` may act now; otherwise how long until it may.
    pub fn check(&self, address: IpAddr) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        if limiter.len() >= MAX_TRACKED {
            limiter.retain_recent();
        }
        limiter.check_key(&address).map_err(|not_until| {
            use governor::clock::Clock;
            not_until.wait_time_from(governor::clock::DefaultClock::default().now())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> Secret {
        Secret::from_bytes([7; 32])
    }

    #[test]
    fn verifies_only_the_right_password_and_salts_each_hash() {
        let s = secret();
        let a = s.hash("p4ss");
        let b = s.hash("p4ss");
        assert_eq!(a.len(), CREDENTIAL_LEN);
        assert_ne!(a, b, "salted");
        assert!(s.verify(&a, "p4ss"));
        assert!(s.verify(&b, "p4ss"));
        assert!(!s.verify(&a, "p4sS"));
        assert!(!s.verify(&a, ""));
        assert!(!s.verify(&a[..10], "p4ss"));
        assert!(!Secret::from_bytes([8; 32]).verify(&a, "p4ss"), "keyed");
    }

    #[test]
    fn secret_file_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        let a = Secret::load_or_create(&path).unwrap();
        let b = Secret::load_or_create(&path).unwrap();
        assert_eq!(a.0, b.0);
        std::fs::write(&path, b"short").unwrap();
        assert!(Secret::load_or_create(&path).is_err());
    }

    #[test]
    fn delays_grow_per_scope_and_stop_at_their_caps() {
        let p = ThrottlePolicy::default();
        let c = |device, address, pair| FailureCounts {
            device,
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
    }

    #[test]
    fn addresses_are_limited_one_by_one() {
        let limiter = AddressLimiter::per_minute(3);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            limiter.check(a).unwrap();
        }
        let wait = limiter.check(a).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        limiter.check(b).unwrap();
        let unlimited = AddressLimiter::per_minute(0);
        for _ in 0..1000 {
            unlimited.check(a).unwrap();
        }
    }

    #[test]
    fn throttled_attempts_of_one_pair_run_one_at_a_time() {
        let t = Throttle::new(ThrottlePolicy {
            window: Duration::from_secs(60),
            free_per_device: 2,
            ..ThrottlePolicy::default()
        });
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let now = Instant::now();
        for _ in 0..3 {
            t.record_failure("dev", ip, now);
        }
        let Admission::Go { delay, guard } = t.admit("dev", ip, now) else {
            panic!("first attempt goes ahead")
        };
        assert_eq!(delay, Duration::from_millis(250));
        assert!(matches!(t.admit("dev", ip, now), Admission::Busy { .. }));
        assert!(
            matches!(t.admit("dev", other, now), Admission::Go { .. }),
            "the owner elsewhere is not held up by the guesser's attempt"
        );
        drop(guard);
        assert!(matches!(t.admit("dev", ip, now), Admission::Go { .. }));
        assert_eq!(
            t.counts("dev", ip, now + Duration::from_secs(61)),
            FailureCounts::default(),
            "forgotten after the window"
        );
        t.record_success("dev", ip);
        assert_eq!(
            t.counts("dev", ip, now),
            FailureCounts {
                address: 3,
                ..FailureCounts::default()
            },
            "a success clears the device id and the pair, not the address"
        );
    }
}
