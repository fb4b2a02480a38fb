//! Device credentials: salted keyed hashes of device passwords, and per-address rate limits.
//!
//! Device passwords are machine-generated random strings, so a fast keyed hash (HMAC-SHA256 under a
//! server secret kept outside the database) is the right trade: a stolen database alone does not allow
//! offline guessing, and checking costs microseconds at thousands of logins a second.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

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

    pub fn bytes(&self) -> &[u8] {
        &self.0
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

/// Most addresses a limiter tracks before it forgets those whose bucket is full again.
const MAX_TRACKED: usize = 100_000;

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
}
