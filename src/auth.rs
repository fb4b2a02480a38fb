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

/// How many failures within `window` lock a device id or an address out for the rest of the window.
#[derive(Debug, Clone)]
pub struct ThrottlePolicy {
    pub window: Duration,
    pub per_device: u32,
    pub per_address: u32,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        ThrottlePolicy {
            window: Duration::from_secs(300),
            per_device: 5,
            per_address: 50,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    since: Instant,
    count: u32,
}

/// Counts failed logins per device id and per source address. Bounded: entries older than the window
/// are dropped whenever the table grows past its cap, so a flood of random ids cannot exhaust memory.
pub struct Throttle {
    policy: ThrottlePolicy,
    devices: Mutex<HashMap<String, Failures>>,
    addresses: Mutex<HashMap<IpAddr, Failures>>,
}

const MAX_TRACKED: usize = 100_000;

impl Throttle {
    pub fn new(policy: ThrottlePolicy) -> Throttle {
        Throttle {
            policy,
            devices: Mutex::new(HashMap::new()),
            addresses: Mutex::new(HashMap::new()),
        }
    }

    /// If either the device id or the address is locked out, how long until it may try again.
    pub fn locked(&self, device_id: &str, address: IpAddr, now: Instant) -> Option<Duration> {
        let window = self.policy.window;
        let check = |f: Option<&Failures>, limit: u32| {
            f.filter(|f| f.count >= limit && now.duration_since(f.since) < window)
                .map(|f| window - now.duration_since(f.since))
        };
        let device = check(
            self.devices.lock().unwrap().get(device_id),
            self.policy.per_device,
        );
        let address = check(
            self.addresses.lock().unwrap().get(&address),
            self.policy.per_address,
        );
        device.max(address)
    }

    pub fn record_failure(&self, device_id: &str, address: IpAddr, now: Instant) {
        let window = self.policy.window;
        let bump = |f: &mut Failures| {
            if now.duration_since(f.since) >= window {
                *f = Failures {
                    since: now,
                    count: 0,
                };
            }
            f.count = f.count.saturating_add(1);
        };
        let fresh = Failures {
            since: now,
            count: 0,
        };
        {
            let mut devices = self.devices.lock().unwrap();
            if devices.len() >= MAX_TRACKED {
                devices.retain(|_, f| now.duration_since(f.since) < window);
            }
            if devices.len() < MAX_TRACKED {
                bump(devices.entry(device_id.to_string()).or_insert(fresh));
            }
        }
        let mut addresses = self.addresses.lock().unwrap();
        if addresses.len() >= MAX_TRACKED {
            addresses.retain(|_, f| now.duration_since(f.since) < window);
        }
        if addresses.len() < MAX_TRACKED {
            bump(addresses.entry(address).or_insert(fresh));
        }
    }

    /// A successful login clears the device's count (not the address's: one good device behind a NAT
    /// must not reset the count of a guesser behind the same address).
    pub fn record_success(&self, device_id: &str) {
        self.devices.lock().unwrap().remove(device_id);
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
    fn locks_out_after_the_limit_until_the_window_passes() {
        let t = Throttle::new(ThrottlePolicy {
            window: Duration::from_secs(60),
            per_device: 3,
            per_address: 5,
        });
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let now = Instant::now();
        for _ in 0..2 {
            t.record_failure("dev", ip, now);
        }
        assert_eq!(t.locked("dev", ip, now), None);
        t.record_failure("dev", ip, now);
        assert!(t.locked("dev", ip, now).is_some());
        assert_eq!(
            t.locked("other", ip, now),
            None,
            "address not yet at its limit"
        );
        t.record_failure("x", ip, now);
        t.record_failure("y", ip, now);
        assert!(t.locked("other", ip, now).is_some(), "address locked");
        let later = now + Duration::from_secs(61);
        assert_eq!(t.locked("dev", ip, later), None);
        t.record_success("dev");
    }
}
