//! Stable identities of simulated devices: ids and passwords derived from the fleet seed and index.
//!
//! Nothing here is stored: the same seed and index give the same device on every run and every
//! machine, so a fleet enrolled once can be replayed against the same server later.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The device id a simulated device presents in `SessionBegin` (printable ASCII, well under 64).
pub fn device_id(seed: u64, index: u32) -> String {
    format!("sim-{seed}-{index}")
}

/// The password a simulated device "generated at install": a keyed hash of the fleet seed and the
/// index, as 32 hex digits. Keyed so that knowing one device's id does not give its password.
pub fn password(seed: u64, index: u32) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(&key(seed)).expect("HMAC takes any key length");
    mac.update(b"password");
    mac.update(&index.to_le_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}

/// A 16-byte keyed digest of `(seed, index, kind, generation)`: the hash of content that is
/// itself derived from these values, so hashing the content would tell nothing more.
pub fn derived_hash(seed: u64, index: u32, kind: &str, generation: u32) -> [u8; 16] {
    let mut mac = Hmac::<Sha256>::new_from_slice(&key(seed)).expect("HMAC takes any key length");
    mac.update(kind.as_bytes());
    mac.update(&[0]);
    mac.update(&index.to_le_bytes());
    mac.update(&generation.to_le_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&mac.finalize().into_bytes()[..16]);
    out
}

/// A well-mixed 64-bit number for deterministic choices (event kinds, group names, OS versions).
pub fn pick(seed: u64, index: u32, kind: &str, n: u32) -> u64 {
    let h = derived_hash(seed, index, kind, n);
    u64::from_le_bytes(h[..8].try_into().expect("8 bytes"))
}

fn key(seed: u64) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..16].copy_from_slice(b"mobile-admin sim");
    k[16..].copy_from_slice(&seed.to_le_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_stable_and_distinct() {
        assert_eq!(device_id(7, 42), "sim-7-42");
        let p = password(7, 42);
        assert_eq!(p.len(), 32);
        assert!(p.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(p, password(7, 42), "same seed and index, same password");
        assert_ne!(p, password(7, 43), "index matters");
        assert_ne!(p, password(8, 42), "seed matters");
    }

    #[test]
    fn derived_hashes_separate_kinds_and_generations() {
        let a = derived_hash(1, 2, "info", 0);
        assert_eq!(a, derived_hash(1, 2, "info", 0));
        assert_ne!(a, derived_hash(1, 2, "state", 0));
        assert_ne!(a, derived_hash(1, 2, "info", 1));
        assert_ne!(a, derived_hash(1, 3, "info", 0));
        assert_ne!(pick(1, 2, "x", 0), pick(1, 2, "x", 1));
    }
}
