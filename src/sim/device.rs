//! One simulated device's behaviour, without any I/O: the hashes it reports, the content behind
//! them, the events it raises, and its answer to each server command.
//!
//! A device's own content (app info, app state, base settings) is a pure function of the fleet
//! seed, its index and a generation counter, so its hash is a keyed digest of those values rather
//! than of the content. What a server pushes (policy, subscriptions, settings) cannot be derived,
//! so the device keeps a digest of the received content and reports that.

use std::ops::Range;

use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use super::identity::{derived_hash, device_id, password, pick};
use super::state::Stored;
use crate::soap::{
    AppInfo, AppState, CmdData, Command, DevInfo, EventBody, EventInfo, LicKeyInfo, LicenseInfo,
    ParamError, Params, ProdInfo, Subscriptions, SyncInfo, Value,
};
use crate::sync::Step;

/// Groups a device names as its `presumedGroup`, picked by index.
pub const GROUPS: [&str; 4] = ["Sales", "Engineering", "Support", "Management"];

/// `param-error` code for a command the device cannot carry out (SPEC section 7: bad parameter).
pub const BAD_PARAMETER: i32 = 1187;

/// The event type of critical detections; carries the object (`par2`), path (`par5`) and action (`par6`).
pub const VIRUS_FOUND: &str = "GNRL_EV_VIRUS_FOUND";

/// One device in the middle of a session: its identity and what it remembers.
#[derive(Debug, Clone, PartialEq)]
pub struct VirtualDevice {
    pub seed: u64,
    pub index: u32,
    pub stored: Stored,
}

fn epoch() -> OffsetDateTime {
    time::macros::datetime!(2024-01-01 0:00 UTC)
}

impl VirtualDevice {
    pub fn new(seed: u64, index: u32, stored: Stored) -> VirtualDevice {
        VirtualDevice {
            seed,
            index,
            stored,
        }
    }

    pub fn device_id(&self) -> String {
        device_id(self.seed, self.index)
    }

    pub fn password(&self) -> String {
        password(self.seed, self.index)
    }

    fn derived(&self, kind: &str, generation: u32) -> [u8; 16] {
        derived_hash(self.seed, self.index, kind, generation)
    }

    fn pick(&self, kind: &str, n: u32) -> u64 {
        pick(self.seed, self.index, kind, n)
    }

    /// The five hashes of `oMaySynchronize`.
    pub fn sync_info(&self) -> SyncInfo {
        let r = &self.stored.record;
        SyncInfo {
            hash_stgs: self.settings_hash().to_vec(),
            hash_pol: r.policy_hash.to_vec(),
            hash_sbsc: r.subscriptions_hash.to_vec(),
            hash_info: self.derived("info", r.info_gen).to_vec(),
            hash_state: self.derived("state", r.state_gen).to_vec(),
        }
    }

    /// The device's current settings: what a server pushed last, or else the derived tree.
    pub fn settings(&self) -> Params {
        match &self.stored.settings {
            Some(tree) => (**tree).clone(),
            None => self.base_settings(),
        }
    }

    pub fn settings_hash(&self) -> [u8; 16] {
        match &self.stored.settings {
            Some(tree) => digest_params(tree),
            None => self.derived("settings", self.stored.record.settings_gen),
        }
    }

    fn base_settings(&self) -> Params {
        let generation = self.stored.record.settings_gen;
        let scan = Params::new()
            .with("ScanArchives", Value::Bool(self.index % 3 != 0))
            .with("ScanMode", Value::Int((self.pick("scan", 0) % 3) as i32))
            .with(
                "Exclusions",
                Value::Array(vec![
                    Value::String("\\Storage Card\\Backup".into()),
                    Value::String(format!("\\My Documents\\device-{}", self.index)),
                ]),
            );
        let update = Params::new()
            .with(
                "Server",
                Value::String("https://updates.example.net/mobile/".into()),
            )
            .with("PeriodHours", Value::Int(24))
            .with("RoamingAllowed", Value::Bool(false));
        Params::new()
            .with("AntiVirus", Value::Params(scan))
            .with("Update", Value::Params(update))
            .with(
                "AntiTheft",
                Value::Params(Params::new().with("Enabled", Value::Bool(self.index % 2 == 0))),
            )
            .with("Revision", Value::Int(generation as i32))
    }

    pub fn app_info(&self) -> AppInfo {
        let r = &self.stored.record;
        let installed = epoch() + Duration::minutes((self.pick("installed", 0) % 525_600) as i64);
        let h = self.pick("dev", 0);
        let older_client = self.index % 3 == 0;
        AppInfo {
            hash: self.derived("info", r.info_gen).to_vec(),
            prod_info: ProdInfo {
                product_name: "MobileSecurity".into(),
                product_version: "8.0".into(),
                install_time: installed,
                display_name: "Mobile Security".into(),
                prod_version: format!("8.0.0.{}", 100 + r.info_gen),
            },
            license_info: LicenseInfo {
                key_current: Some(LicKeyInfo {
                    key_type: 2,
                    key_prod_suite_id: 1,
                    key_app_id: 80,
                    key_install_date: installed,
                    key_expiration_date: installed + Duration::days(365),
                    key_lic_period: 365,
                    key_lic_count: (!older_client).then_some(100),
                    key_serial: format!("SIM-{:04X}-{:08X}", self.seed & 0xffff, self.index),
                    key_maj_ver: "8".into(),
                    key_prod_name: "Mobile Security".into(),
                }),
                key_next: None,
            },
            dev_info: DevInfo {
                presumed_name: format!("device-{}", self.index),
                presumed_group: GROUPS[(h % GROUPS.len() as u64) as usize].into(),
                os_type: if self.index % 2 == 0 { 1 } else { 2 },
                os_ver_major: 5 + (h >> 8) as i32 % 3,
                os_ver_minor: (h >> 16) as i32 % 3,
                os_manufacturer: (!older_client).then(|| "Example Devices".into()),
                os_name: (!older_client).then(|| {
                    if self.index % 2 == 0 {
                        "Windows Mobile".into()
                    } else {
                        "Symbian".into()
                    }
                }),
                os_ver: None,
                memory: (!older_client).then_some(64 << 20),
                processor_family: (!older_client).then(|| "ARM".into()),
                system_name: None,
                system_type: None,
            },
        }
    }

    pub fn app_state(&self) -> AppState {
        let generation = self.stored.record.state_gen;
        let at = epoch() + Duration::hours(generation as i64);
        AppState {
            hash: self.derived("state", generation).to_vec(),
            state_app: 1,
            state_rtp: [4, 4, 7, 8, 2][(generation % 5) as usize],
            last_full_scan: Some(at),
            last_update_time: Some(at),
            bases_date: Some(at - Duration::hours(6)),
            bases_install_date: Some(at),
            bases_records: 1_000_000 + (generation as i32 % 100_000) * 37,
        }
    }

    /// A local change of settings and app state (the user or the app changed something), which
    /// the server should notice through the hashes and fetch.
    pub fn change_locally(&mut self) {
        let r = &mut self.stored.record;
        r.settings_gen = r.settings_gen.wrapping_add(1);
        r.state_gen = r.state_gen.wrapping_add(1);
        let generation = r.settings_gen;
        if let Some(tree) = &mut self.stored.settings {
            tree.0
                .insert("Revision".into(), Value::Int(generation as i32));
        }
    }

    /// Raises `n` new events at `now`; they join the ones still waiting to be acknowledged.
    pub fn raise_events(&mut self, n: u32, now: OffsetDateTime) {
        let r = &mut self.stored.record;
        if r.events_created == r.events_acked {
            r.backlog_since = now.unix_timestamp().clamp(0, u32::MAX as i64) as u32;
        }
        r.events_created = r.events_created.wrapping_add(n);
    }

    /// Sequence numbers of the events not yet acknowledged, oldest first.
    pub fn pending_events(&self) -> Range<u32> {
        self.stored.record.events_acked..self.stored.record.events_created
    }

    /// The server acknowledged the `n` oldest pending events.
    pub fn acknowledge(&mut self, n: u32) {
        let r = &mut self.stored.record;
        r.events_acked = r.events_acked.wrapping_add(n).min(r.events_created);
    }

    /// Event number `seq`: the same id and content every time it is sent, so a resend after a
    /// lost reply is recognisably the same event.
    pub fn event(&self, seq: u32) -> EventInfo {
        let h = self.pick("event", seq);
        let raised = OffsetDateTime::from_unix_timestamp(self.stored.record.backlog_since as i64)
            .unwrap_or_else(|_| epoch());
        let mut body = EventBody {
            product_name: Some("MobileSecurity".into()),
            product_version: Some("8.0".into()),
            rise_time: Some(raised),
            rise_time_ms: Some((seq % 1000) as i32),
            ..EventBody::default()
        };
        if h % 20 == 0 {
            const THREATS: [&str; 3] = ["EICAR-Test-File", "Trojan.Sim.Fake.a", "Worm.Sim.Demo"];
            const ACTIONS: [&str; 2] = ["deleted", "quarantined"];
            body.severity = Some(4);
            body.event_type = Some(VIRUS_FOUND.into());
            body.event_type_display_name = Some("Virus found".into());
            body.descr = Some("A malicious object was detected".into());
            body.locid = Some(4001);
            body.par[1] = Some(THREATS[(h >> 8) as usize % THREATS.len()].into());
            body.par[4] = Some(format!("\\My Documents\\download-{seq}.cab"));
            body.par[5] = Some(ACTIONS[(h >> 16) as usize % ACTIONS.len()].into());
        } else {
            const INFO: [(&str, &str); 3] = [
                ("GNRL_EV_UPDATE_FINISHED", "Update finished"),
                ("GNRL_EV_SCAN_FINISHED", "Scan finished"),
                ("GNRL_EV_APP_STARTED", "Application started"),
            ];
            let (kind, name) = INFO[(h >> 8) as usize % INFO.len()];
            body.severity = Some(1);
            body.event_type = Some(kind.into());
            body.event_type_display_name = Some(name.into());
            body.descr = Some(format!("{name} on device-{}", self.index));
            body.locid = Some(1000 + (h >> 8) as i32 % INFO.len() as i32);
        }
        EventInfo {
            event_id: format!("{}-{seq}", self.device_id()),
            body,
        }
    }

    /// The device's result for a server command (same `code`), as `PutResult` carries it.
    /// Commands it cannot carry out get a `CmdError`, as a real device would send.
    pub fn answer(&mut self, command: &Command) -> Command {
        let data = match (Step::from_code(command.code), &command.data) {
            (Some(Step::SettingsGet), _) => CmdData::ParAndHash {
                hash: self.settings_hash().to_vec(),
                parameters: self.settings(),
            },
            (Some(Step::SettingsPut), Some(CmdData::Par(tree))) => {
                let hash = digest_params(tree);
                self.stored.settings = Some(Box::new(tree.clone()));
                CmdData::Hash(hash.to_vec())
            }
            (Some(Step::PolicyPut), Some(CmdData::Par(policy))) => {
                let hash = digest_params(policy);
                self.stored.record.policy_hash = hash;
                CmdData::Hash(hash.to_vec())
            }
            (Some(Step::SubscriptionsPut), Some(CmdData::Subscriptions(subs))) => {
                let hash = digest_subscriptions(subs);
                self.stored.record.subscriptions_hash = hash;
                CmdData::Hash(hash.to_vec())
            }
            (Some(Step::AppInfoGet), _) => CmdData::AppInfo(Box::new(self.app_info())),
            (Some(Step::AppStateGet), _) => CmdData::AppState(self.app_state()),
            (Some(step), _) => CmdData::Error(ParamError::new(
                BAD_PARAMETER,
                "DEVICE",
                format!("command {} without the data it needs", step.code()),
            )),
            (None, _) => CmdData::Error(ParamError::new(
                BAD_PARAMETER,
                "DEVICE",
                format!("unknown command {}", command.code),
            )),
        };
        Command {
            code: command.code,
            data: Some(data),
        }
    }
}

/// A 16-byte digest of a params tree's content (names, types and values; order is irrelevant as
/// names are sorted).
pub fn digest_params(params: &Params) -> [u8; 16] {
    let mut h = Sha256::new();
    feed_params(&mut h, params);
    finish(h)
}

/// A 16-byte digest of the subscribed event types (the optional `hash` field is not content).
pub fn digest_subscriptions(subs: &Subscriptions) -> [u8; 16] {
    let mut h = Sha256::new();
    for list in [
        &subs.types_info,
        &subs.types_warning,
        &subs.types_error,
        &subs.types_critical,
    ] {
        h.update((list.len() as u64).to_le_bytes());
        for item in list {
            feed_str(&mut h, item);
        }
    }
    finish(h)
}

fn finish(h: Sha256) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.finalize()[..16]);
    out
}

fn feed_str(h: &mut Sha256, s: &str) {
    h.update((s.len() as u64).to_le_bytes());
    h.update(s.as_bytes());
}

fn feed_params(h: &mut Sha256, params: &Params) {
    h.update((params.0.len() as u64).to_le_bytes());
    for (name, value) in &params.0 {
        feed_str(h, name);
        feed_value(h, value);
    }
}

fn feed_value(h: &mut Sha256, value: &Value) {
    match value {
        Value::Bool(v) => h.update([1, u8::from(*v)]),
        Value::String(v) => {
            h.update([2]);
            feed_str(h, v);
        }
        Value::Int(v) => {
            h.update([3]);
            h.update(v.to_le_bytes());
        }
        Value::Long(v) => {
            h.update([4]);
            h.update(v.to_le_bytes());
        }
        Value::Date(v) => {
            h.update([5]);
            h.update(v.to_julian_day().to_le_bytes());
        }
        Value::Float(v) => {
            h.update([6]);
            h.update(v.to_bits().to_le_bytes());
        }
        Value::Double(v) => {
            h.update([7]);
            h.update(v.to_bits().to_le_bytes());
        }
        Value::DateTime(v) => {
            h.update([8]);
            h.update(v.unix_timestamp_nanos().to_le_bytes());
        }
        Value::Binary(v) => {
            h.update([9]);
            h.update((v.len() as u64).to_le_bytes());
            h.update(v);
        }
        Value::Params(p) => {
            h.update([10]);
            feed_params(h, p);
        }
        Value::Array(items) => {
            h.update([11]);
            h.update((items.len() as u64).to_le_bytes());
            for item in items {
                feed_value(h, item);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::state::Record;

    fn device() -> VirtualDevice {
        VirtualDevice::new(11, 3, Stored::default())
    }

    fn hash_of(reply: &Command) -> Vec<u8> {
        match &reply.data {
            Some(CmdData::Hash(h)) => h.clone(),
            other => panic!("expected CmdHash, got {other:?}"),
        }
    }

    #[test]
    fn settings_get_reports_tree_and_the_hash_of_the_heartbeat() {
        let mut d = device();
        let reply = d.answer(&Command::bare(1));
        assert_eq!(reply.code, 1);
        let Some(CmdData::ParAndHash { hash, parameters }) = reply.data else {
            panic!("expected CmdParAndHash");
        };
        assert_eq!(hash, d.sync_info().hash_stgs);
        assert_eq!(parameters, d.settings());
        assert!(matches!(
            parameters.get("AntiVirus"),
            Some(Value::Params(_))
        ));
    }

    #[test]
    fn settings_put_replaces_the_tree_and_changes_the_reported_hash() {
        let mut d = device();
        let before = d.sync_info().hash_stgs;
        let pushed = Params::new().with(
            "Update",
            Value::Params(Params::new().with("PeriodHours", Value::Int(6))),
        );
        let reply = d.answer(&Command {
            code: 2,
            data: Some(CmdData::Par(pushed.clone())),
        });
        assert_eq!(reply.code, 2);
        let hash = hash_of(&reply);
        assert_eq!(hash, digest_params(&pushed).to_vec());
        assert_eq!(d.sync_info().hash_stgs, hash);
        assert_ne!(hash, before);
        assert_eq!(d.settings(), pushed);
        // A later local change edits the pushed tree rather than discarding it.
        d.change_locally();
        assert_eq!(d.settings().get("Revision"), Some(&Value::Int(1)));
        assert!(d.settings().get("Update").is_some());
        assert_ne!(d.sync_info().hash_stgs, hash);
    }

    #[test]
    fn policy_and_subscription_pushes_are_digested_and_reported() {
        let mut d = device();
        assert_eq!(d.sync_info().hash_pol, vec![0; 16]);
        let policy = Params::new().with("PublishEvents", Value::Bool(true));
        let reply = d.answer(&Command {
            code: 3,
            data: Some(CmdData::Par(policy.clone())),
        });
        assert_eq!(hash_of(&reply), digest_params(&policy).to_vec());
        assert_eq!(d.sync_info().hash_pol, hash_of(&reply));

        let subs = Subscriptions {
            types_critical: vec![VIRUS_FOUND.into()],
            ..Subscriptions::default()
        };
        let reply = d.answer(&Command {
            code: 4,
            data: Some(CmdData::Subscriptions(subs.clone())),
        });
        assert_eq!(reply.code, 4);
        assert_eq!(d.sync_info().hash_sbsc, hash_of(&reply));
        // The optional hash field is not content.
        let with_hash = Subscriptions {
            hash: Some(vec![1, 2, 3]),
            ..subs.clone()
        };
        assert_eq!(
            digest_subscriptions(&with_hash),
            digest_subscriptions(&subs)
        );
        let moved = Subscriptions {
            types_error: vec![VIRUS_FOUND.into()],
            ..Subscriptions::default()
        };
        assert_ne!(digest_subscriptions(&moved), digest_subscriptions(&subs));
    }

    #[test]
    fn app_info_and_state_carry_the_heartbeat_hashes() {
        let mut d = device();
        let sync = d.sync_info();
        let Some(CmdData::AppInfo(info)) = d.answer(&Command::bare(5)).data else {
            panic!("expected CmdAppInfo");
        };
        assert_eq!(info.hash, sync.hash_info);
        assert!(GROUPS.contains(&info.dev_info.presumed_group.as_str()));
        let Some(CmdData::AppState(state)) = d.answer(&Command::bare(6)).data else {
            panic!("expected CmdAppState");
        };
        assert_eq!(state.hash, sync.hash_state);
        d.change_locally();
        let changed = d.sync_info();
        assert_ne!(changed.hash_state, sync.hash_state);
        assert_ne!(changed.hash_stgs, sync.hash_stgs);
        assert_eq!(changed.hash_info, sync.hash_info);
        assert_eq!(d.app_state().hash, changed.hash_state);
    }

    #[test]
    fn malformed_and_unknown_commands_get_cmd_error() {
        let mut d = device();
        for cmd in [
            Command::bare(3),
            Command::bare(2),
            Command::bare(4),
            Command::bare(77),
        ] {
            let reply = d.answer(&cmd);
            assert_eq!(reply.code, cmd.code);
            let Some(CmdData::Error(e)) = reply.data else {
                panic!("expected CmdError for {cmd:?}");
            };
            assert_eq!(e.code, BAD_PARAMETER);
        }
        assert_eq!(d.stored, Stored::default(), "nothing was applied");
    }

    #[test]
    fn params_digest_covers_names_types_and_nesting() {
        let a = Params::new().with("x", Value::Int(1));
        assert_eq!(digest_params(&a), digest_params(&a.clone()));
        assert_ne!(
            digest_params(&a),
            digest_params(&Params::new().with("x", Value::Long(1)))
        );
        assert_ne!(
            digest_params(&a),
            digest_params(&Params::new().with("y", Value::Int(1)))
        );
        let nested = Params::new().with("x", Value::Params(Params::new()));
        assert_ne!(
            digest_params(&nested),
            digest_params(&Params::new().with("x", Value::Array(vec![])))
        );
        assert_ne!(digest_params(&Params::new()), [0; 16]);
    }

    #[test]
    fn events_are_stable_until_acknowledged() {
        let mut d = device();
        let now = OffsetDateTime::from_unix_timestamp(1_750_000_000).unwrap();
        d.raise_events(50, now);
        assert_eq!(d.pending_events(), 0..50);
        let first = d.event(7);
        assert_eq!(first.event_id, "sim-11-3-7");
        d.raise_events(5, now + Duration::hours(1));
        assert_eq!(d.event(7), first, "a resend is the same event");
        d.acknowledge(55);
        assert_eq!(d.pending_events(), 55..55);
        let ids: std::collections::HashSet<_> = (0..55).map(|s| d.event(s).event_id).collect();
        assert_eq!(ids.len(), 55);
        let critical: Vec<_> = (0..2000)
            .map(|s| d.event(s))
            .filter(|e| e.body.event_type.as_deref() == Some(VIRUS_FOUND))
            .collect();
        assert!(
            !critical.is_empty() && critical.len() < 200,
            "{} critical",
            critical.len()
        );
        for e in critical {
            assert_eq!(e.body.severity, Some(4));
            assert!(e.body.par[1].is_some() && e.body.par[4].is_some() && e.body.par[5].is_some());
        }
        d.acknowledge(10);
        assert_eq!(
            d.stored.record.events_acked, 55,
            "never past what was created"
        );
    }

    #[test]
    fn identity_and_record_drive_everything() {
        let a = VirtualDevice::new(1, 1, Stored::default());
        let b = VirtualDevice::new(1, 1, Stored::default());
        assert_eq!(a.sync_info(), b.sync_info());
        assert_eq!(a.app_info(), b.app_info());
        let c = VirtualDevice::new(
            1,
            1,
            Stored {
                record: Record {
                    info_gen: 1,
                    ..Record::default()
                },
                settings: None,
            },
        );
        assert_ne!(a.sync_info().hash_info, c.sync_info().hash_info);
        assert_ne!(
            a.app_info().prod_info.prod_version,
            c.app_info().prod_info.prod_version
        );
    }
}
