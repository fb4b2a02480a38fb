//! What a simulated fleet remembers between sessions and between runs: one fixed-size record per
//! device in a compact binary file, plus the rare settings trees a server pushed.
//!
//! Everything else a device reports (its app info, app state, base settings, events) is derived
//! from the seed, the index and the counters kept here, so a million devices take 64 MB.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::soap::Params;

/// Bytes per device in the state file.
pub const RECORD_LEN: usize = 64;
const MAGIC: &[u8; 8] = b"MASIMFLT";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 32;

/// The persistent part of one device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Record {
    /// Has completed a `SessionBegin` with some server.
    pub enrolled: bool,
    /// Sessions begun successfully, over all runs.
    pub sessions: u32,
    /// Bumped by each local settings change; the base settings tree is derived from it.
    pub settings_gen: u32,
    /// Bumped by each app state change.
    pub state_gen: u32,
    /// Bumped when the installed application changes.
    pub info_gen: u32,
    /// Events created so far; event `n` has the id `sim-<seed>-<index>-<n>`.
    pub events_created: u32,
    /// Events the server acknowledged; `events_acked..events_created` wait to be (re)sent.
    pub events_acked: u32,
    /// Unix time at which the oldest unacknowledged event was raised.
    pub backlog_since: u32,
    /// Digest of the last policy the server pushed (all zero: never pushed).
    pub policy_hash: [u8; 16],
    /// Digest of the last subscriptions the server pushed (all zero: never pushed).
    pub subscriptions_hash: [u8; 16],
}

impl Record {
    pub fn encode(&self, out: &mut [u8; RECORD_LEN]) {
        let words = [
            u32::from(self.enrolled),
            self.sessions,
            self.settings_gen,
            self.state_gen,
            self.info_gen,
            self.events_created,
            self.events_acked,
            self.backlog_since,
        ];
        for (i, w) in words.iter().enumerate() {
            out[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
        }
        out[32..48].copy_from_slice(&self.policy_hash);
        out[48..64].copy_from_slice(&self.subscriptions_hash);
    }

    pub fn decode(bytes: &[u8; RECORD_LEN]) -> Record {
        let word = |i: usize| u32::from_le_bytes(bytes[i * 4..i * 4 + 4].try_into().expect("4"));
        Record {
            enrolled: word(0) & 1 == 1,
            sessions: word(1),
            settings_gen: word(2),
            state_gen: word(3),
            info_gen: word(4),
            events_created: word(5),
            events_acked: word(6),
            backlog_since: word(7),
            policy_hash: bytes[32..48].try_into().expect("16"),
            subscriptions_hash: bytes[48..64].try_into().expect("16"),
        }
    }
}

/// One device as the fleet holds it between sessions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stored {
    pub record: Record,
    /// The settings tree a server pushed, replacing the derived one; `None` for almost every device.
    pub settings: Option<Box<Params>>,
}

#[derive(Debug, Default)]
struct Slot {
    stored: Stored,
    busy: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("{path} is not a fleet state file of this version ({reason})")]
    Format { path: PathBuf, reason: String },
}

/// All devices of a fleet, each lent to at most one session at a time.
#[derive(Debug)]
pub struct Fleet {
    seed: u64,
    slots: Vec<Mutex<Slot>>,
}

impl Fleet {
    /// `devices` devices that have never run.
    pub fn new(seed: u64, devices: u32) -> Fleet {
        Fleet {
            seed,
            slots: (0..devices).map(|_| Mutex::new(Slot::default())).collect(),
        }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn len(&self) -> u32 {
        self.slots.len() as u32
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The record file of a fleet inside a state directory.
    pub fn records_path(dir: &Path, seed: u64) -> PathBuf {
        dir.join(format!("fleet-{seed}.bin"))
    }

    /// The pushed settings trees of a fleet inside a state directory.
    pub fn settings_path(dir: &Path, seed: u64) -> PathBuf {
        dir.join(format!("fleet-{seed}-settings.json"))
    }

    /// The fleet as a previous run left it in `dir`, grown to at least `devices` devices. A missing
    /// file is a fleet that has never run; devices beyond `devices` are kept for later runs.
    pub fn load(dir: &Path, seed: u64, devices: u32) -> Result<Fleet, StateError> {
        let path = Self::records_path(dir, seed);
        let mut slots: Vec<Mutex<Slot>> = Vec::new();
        match fs::File::open(&path) {
            Ok(file) => {
                let read_err = |source| StateError::Read {
                    path: path.clone(),
                    source,
                };
                let format_err = |reason: String| StateError::Format {
                    path: path.clone(),
                    reason,
                };
                let mut r = BufReader::with_capacity(1 << 16, file);
                let mut header = [0u8; HEADER_LEN];
                r.read_exact(&mut header).map_err(read_err)?;
                if &header[..8] != MAGIC {
                    return Err(format_err("bad magic".into()));
                }
                let version = u32::from_le_bytes(header[8..12].try_into().expect("4"));
                let record_len = u32::from_le_bytes(header[12..16].try_into().expect("4"));
                if version != VERSION || record_len as usize != RECORD_LEN {
                    return Err(format_err(format!(
                        "version {version}, record length {record_len}"
                    )));
                }
                let file_seed = u64::from_le_bytes(header[16..24].try_into().expect("8"));
                if file_seed != seed {
                    return Err(format_err(format!("seed {file_seed}, expected {seed}")));
                }
                let count = u64::from_le_bytes(header[24..32].try_into().expect("8"));
                let count =
                    u32::try_from(count).map_err(|_| format_err("too many devices".into()))?;
                slots.reserve(count.max(devices) as usize);
                let mut buf = [0u8; RECORD_LEN];
                for _ in 0..count {
                    r.read_exact(&mut buf).map_err(read_err)?;
                    slots.push(Mutex::new(Slot {
                        stored: Stored {
                            record: Record::decode(&buf),
                            settings: None,
                        },
                        busy: false,
                    }));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(StateError::Read { path, source }),
        }
        while slots.len() < devices as usize {
            slots.push(Mutex::new(Slot::default()));
        }
        let fleet = Fleet { seed, slots };
        let settings_path = Self::settings_path(dir, seed);
        match fs::read(&settings_path) {
            Ok(bytes) => {
                let trees: BTreeMap<u32, Params> =
                    serde_json::from_slice(&bytes).map_err(|e| StateError::Format {
                        path: settings_path.clone(),
                        reason: e.to_string(),
                    })?;
                for (index, tree) in trees {
                    if let Some(slot) = fleet.slots.get(index as usize) {
                        lock(slot).stored.settings = Some(Box::new(tree));
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(StateError::Read {
                    path: settings_path,
                    source,
                })
            }
        }
        Ok(fleet)
    }

    /// Writes the fleet to `dir`, replacing the previous files only once the new ones are complete.
    pub fn save(&self, dir: &Path) -> Result<(), StateError> {
        let write_err = |path: &Path| {
            let path = path.to_owned();
            move |source| StateError::Write { path, source }
        };
        fs::create_dir_all(dir).map_err(write_err(dir))?;
        let path = Self::records_path(dir, self.seed);
        let tmp = path.with_extension("bin.tmp");
        let guards: Vec<_> = self.slots.iter().map(lock).collect();
        let mut trees: BTreeMap<u32, &Params> = BTreeMap::new();
        {
            let file = fs::File::create(&tmp).map_err(write_err(&tmp))?;
            let mut w = BufWriter::with_capacity(1 << 16, file);
            let mut header = [0u8; HEADER_LEN];
            header[..8].copy_from_slice(MAGIC);
            header[8..12].copy_from_slice(&VERSION.to_le_bytes());
            header[12..16].copy_from_slice(&(RECORD_LEN as u32).to_le_bytes());
            header[16..24].copy_from_slice(&self.seed.to_le_bytes());
            header[24..32].copy_from_slice(&(self.slots.len() as u64).to_le_bytes());
            w.write_all(&header).map_err(write_err(&tmp))?;
            let mut buf = [0u8; RECORD_LEN];
            for (index, slot) in guards.iter().enumerate() {
                slot.stored.record.encode(&mut buf);
                w.write_all(&buf).map_err(write_err(&tmp))?;
                if let Some(tree) = &slot.stored.settings {
                    trees.insert(index as u32, tree);
                }
            }
            let file = w
                .into_inner()
                .map_err(|e| e.into_error())
                .map_err(write_err(&tmp))?;
            file.sync_all().map_err(write_err(&tmp))?;
        }
        let settings_path = Self::settings_path(dir, self.seed);
        if trees.is_empty() {
            match fs::remove_file(&settings_path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(write_err(&settings_path)(e))
                }
                _ => {}
            }
        } else {
            let settings_tmp = settings_path.with_extension("json.tmp");
            let json = serde_json::to_vec(&trees).expect("params serialise");
            fs::write(&settings_tmp, json).map_err(write_err(&settings_tmp))?;
            fs::rename(&settings_tmp, &settings_path).map_err(write_err(&settings_path))?;
        }
        fs::rename(&tmp, &path).map_err(write_err(&path))?;
        Ok(())
    }

    /// Lends device `index` to a session; `None` if it is already in one (or out of range).
    pub fn checkout(&self, index: u32) -> Option<Stored> {
        let mut slot = lock(self.slots.get(index as usize)?);
        if slot.busy {
            return None;
        }
        slot.busy = true;
        // A copy, not a move: a session abandoned at the end of a run leaves the device as it was.
        Some(slot.stored.clone())
    }

    /// Takes back a device lent by [`Fleet::checkout`], with what the session changed.
    pub fn checkin(&self, index: u32, stored: Stored) {
        let mut slot = lock(&self.slots[index as usize]);
        slot.stored = stored;
        slot.busy = false;
    }

    /// A copy of device `index` as it stands (for tests and reports).
    pub fn get(&self, index: u32) -> Option<Stored> {
        self.slots
            .get(index as usize)
            .map(|s| lock(s).stored.clone())
    }

    /// Devices that have completed a `SessionBegin`.
    pub fn enrolled(&self) -> u32 {
        self.slots
            .iter()
            .filter(|s| lock(s).stored.record.enrolled)
            .count() as u32
    }

    /// Indices below `limit` of devices that have never completed a `SessionBegin`.
    pub fn unenrolled(&self, limit: u32) -> Vec<u32> {
        (0..limit.min(self.len()))
            .filter(|&i| !lock(&self.slots[i as usize]).stored.record.enrolled)
            .collect()
    }

    /// An independent copy, for runs whose effects must not be kept (the baseline).
    pub fn scratch_copy(&self) -> Fleet {
        Fleet {
            seed: self.seed,
            slots: self
                .slots
                .iter()
                .map(|s| {
                    Mutex::new(Slot {
                        stored: lock(s).stored.clone(),
                        busy: false,
                    })
                })
                .collect(),
        }
    }
}

/// A poisoned slot only means a session panicked while holding it; its data is still a valid record.
fn lock(slot: &Mutex<Slot>) -> std::sync::MutexGuard<'_, Slot> {
    slot.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soap::Value;

    fn sample() -> Record {
        Record {
            enrolled: true,
            sessions: 3,
            settings_gen: 4,
            state_gen: 5,
            info_gen: 6,
            events_created: 70,
            events_acked: 60,
            backlog_since: 1_700_000_000,
            policy_hash: [7; 16],
            subscriptions_hash: [9; 16],
        }
    }

    #[test]
    fn record_encoding_round_trips() {
        let r = sample();
        let mut buf = [0u8; RECORD_LEN];
        r.encode(&mut buf);
        assert_eq!(Record::decode(&buf), r);
        Record::default().encode(&mut buf);
        assert_eq!(buf, [0u8; RECORD_LEN]);
    }

    #[test]
    fn state_file_round_trips_and_grows() {
        let dir = tempfile::tempdir().unwrap();
        let fleet = Fleet::new(5, 3);
        let mut d = fleet.checkout(1).unwrap();
        assert!(
            fleet.checkout(1).is_none(),
            "a device is in one session at a time"
        );
        d.record = sample();
        d.settings = Some(Box::new(Params::new().with("A", Value::Int(1))));
        fleet.checkin(1, d);
        fleet.save(dir.path()).unwrap();
        let size = fs::metadata(Fleet::records_path(dir.path(), 5))
            .unwrap()
            .len();
        assert_eq!(size as usize, HEADER_LEN + 3 * RECORD_LEN);

        let again = Fleet::load(dir.path(), 5, 5).unwrap();
        assert_eq!(again.len(), 5, "grown to the requested size");
        assert_eq!(again.get(1).unwrap(), fleet.get(1).unwrap());
        assert_eq!(again.get(0).unwrap(), Stored::default());
        assert_eq!(again.get(4).unwrap(), Stored::default());
        assert_eq!(again.enrolled(), 1);
        assert_eq!(again.unenrolled(5), vec![0, 2, 3, 4]);

        let smaller = Fleet::load(dir.path(), 5, 1).unwrap();
        assert_eq!(smaller.len(), 3, "devices beyond the request are kept");

        // Without pushed settings the side file disappears.
        let d = again.checkout(1).unwrap();
        again.checkin(
            1,
            Stored {
                settings: None,
                ..d
            },
        );
        again.save(dir.path()).unwrap();
        assert!(!Fleet::settings_path(dir.path(), 5).exists());
        assert!(Fleet::load(dir.path(), 5, 5)
            .unwrap()
            .get(1)
            .unwrap()
            .settings
            .is_none());
    }

    #[test]
    fn foreign_or_damaged_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        Fleet::new(5, 2).save(dir.path()).unwrap();
        fs::copy(
            Fleet::records_path(dir.path(), 5),
            Fleet::records_path(dir.path(), 6),
        )
        .unwrap();
        assert!(matches!(
            Fleet::load(dir.path(), 6, 2),
            Err(StateError::Format { .. })
        ));
        let path = Fleet::records_path(dir.path(), 5);
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert!(matches!(
            Fleet::load(dir.path(), 5, 2),
            Err(StateError::Read { .. })
        ));
        fs::write(&path, b"not a fleet at all, definitely not").unwrap();
        assert!(matches!(
            Fleet::load(dir.path(), 5, 2),
            Err(StateError::Format { .. })
        ));
    }

    #[test]
    fn scratch_copies_are_independent() {
        let fleet = Fleet::new(1, 2);
        let copy = fleet.scratch_copy();
        let mut d = copy.checkout(0).unwrap();
        d.record.sessions = 9;
        copy.checkin(0, d);
        assert_eq!(fleet.get(0).unwrap().record.sessions, 0);
    }
}
