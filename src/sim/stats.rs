//! Measurements of a simulation run: what each session records, how sessions are aggregated, and
//! the report (JSON via serde, or text for a terminal).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::soap::Operation;
use crate::sync::Step;

/// What is timed: connection set-up (TCP + TLS handshake), each operation, whole sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Connect,
    Call(Operation),
    Session,
}

const METRICS: usize = 9;

impl Metric {
    fn slot(self) -> usize {
        match self {
            Metric::Connect => 0,
            Metric::Call(op) => {
                1 + Operation::ALL
                    .iter()
                    .position(|o| *o == op)
                    .expect("every operation is in ALL")
            }
            Metric::Session => 8,
        }
    }

    fn from_slot(slot: usize) -> Metric {
        match slot {
            0 => Metric::Connect,
            8 => Metric::Session,
            n => Metric::Call(Operation::ALL[n - 1]),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Metric::Connect => "connect",
            Metric::Call(op) => op.wire_name(),
            Metric::Session => "session",
        }
    }
}

/// The name of a server command code, as the report shows it.
pub fn command_name(code: i32) -> String {
    match Step::from_code(code) {
        Some(Step::SettingsGet) => "1 SETTINGS_GET".into(),
        Some(Step::SettingsPut) => "2 SETTINGS_PUT".into(),
        Some(Step::PolicyPut) => "3 POLICY_PUT".into(),
        Some(Step::SubscriptionsPut) => "4 SUBSCRIPTIONS_PUT".into(),
        Some(Step::AppInfoGet) => "5 APPINFO_GET".into(),
        Some(Step::AppStateGet) => "6 APPSTATE_GET".into(),
        None if code == crate::sync::NO_COMMANDS => "0 NO_COMMANDS".into(),
        None => format!("{code} unknown"),
    }
}

/// Everything one session observed; filled without locks, merged into [`Stats`] once at its end.
#[derive(Debug, Default, Clone)]
pub struct SessionLog {
    pub samples: Vec<(Metric, Duration)>,
    /// Error keys (`"<operation>: <kind>"`), one per failure.
    pub errors: Vec<String>,
    pub calls: u64,
    pub connections: u64,
    pub tls_resumed: u64,
    pub events_sent: u64,
    pub events_acked: u64,
    /// Events sent again because an earlier attempt was not acknowledged.
    pub events_resent: u64,
    pub bytes_downloaded: u64,
    pub downloads_ok: u64,
    /// Commands received, by code.
    pub commands: Vec<i32>,
    /// The session began (SessionBegin succeeded).
    pub begun: bool,
}

impl SessionLog {
    pub fn record(&mut self, metric: Metric, elapsed: Duration) {
        self.samples.push((metric, elapsed));
    }

    pub fn error(&mut self, op: &str, kind: impl std::fmt::Display) {
        self.errors.push(format!("{op}: {kind}"));
    }

    pub fn ok(&self) -> bool {
        self.begun && self.errors.is_empty()
    }
}

/// Counters the progress display reads while the run goes on.
#[derive(Debug, Default)]
pub struct Live {
    pub sessions_ok: AtomicU64,
    pub sessions_failed: AtomicU64,
    pub started: AtomicU64,
    pub ticker_late: AtomicU64,
    pub concurrency_full: AtomicU64,
    pub device_busy: AtomicU64,
}

impl Live {
    pub fn done(&self) -> u64 {
        self.sessions_ok.load(Ordering::Relaxed) + self.sessions_failed.load(Ordering::Relaxed)
    }

    pub fn behind(&self) -> u64 {
        self.ticker_late.load(Ordering::Relaxed) + self.concurrency_full.load(Ordering::Relaxed)
    }
}

/// The aggregate of all sessions of one run.
#[derive(Debug, Clone)]
pub struct Stats {
    hist: Vec<Histogram<u64>>,
    errors: BTreeMap<String, u64>,
    commands: BTreeMap<i32, u64>,
    sessions_ok: u64,
    sessions_failed: u64,
    calls: u64,
    connections: u64,
    tls_resumed: u64,
    events_sent: u64,
    events_acked: u64,
    events_resent: u64,
    bytes_downloaded: u64,
    downloads_ok: u64,
}

/// Latencies are kept in microseconds up to an hour, with 3 significant digits.
const MAX_MICROS: u64 = 3_600_000_000;

impl Default for Stats {
    fn default() -> Self {
        Stats {
            hist: (0..METRICS)
                .map(|_| Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid bounds"))
                .collect(),
            errors: BTreeMap::new(),
            commands: BTreeMap::new(),
            sessions_ok: 0,
            sessions_failed: 0,
            calls: 0,
            connections: 0,
            tls_resumed: 0,
            events_sent: 0,
            events_acked: 0,
            events_resent: 0,
            bytes_downloaded: 0,
            downloads_ok: 0,
        }
    }
}

impl Stats {
    pub fn add(&mut self, log: &SessionLog) {
        for (metric, elapsed) in &log.samples {
            let micros = (elapsed.as_micros() as u64).clamp(1, MAX_MICROS);
            self.hist[metric.slot()].saturating_record(micros);
        }
        for e in &log.errors {
            *self.errors.entry(e.clone()).or_default() += 1;
        }
        for code in &log.commands {
            *self.commands.entry(*code).or_default() += 1;
        }
        if log.ok() {
            self.sessions_ok += 1;
        } else {
            self.sessions_failed += 1;
        }
        self.calls += log.calls;
        self.connections += log.connections;
        self.tls_resumed += log.tls_resumed;
        self.events_sent += log.events_sent;
        self.events_acked += log.events_acked;
        self.events_resent += log.events_resent;
        self.bytes_downloaded += log.bytes_downloaded;
        self.downloads_ok += log.downloads_ok;
    }

    /// The report of a run that took `elapsed` (from the first start to the last session's end).
    pub fn report(&self, label: &str, elapsed: Duration, schedule: Schedule) -> RunReport {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let per_sec = |n: u64| n as f64 / secs;
        let latency_us = (0..METRICS)
            .filter(|&s| !self.hist[s].is_empty())
            .map(|s| {
                let h = &self.hist[s];
                (
                    Metric::from_slot(s).name().to_string(),
                    Latency {
                        count: h.len(),
                        p50: h.value_at_quantile(0.50),
                        p90: h.value_at_quantile(0.90),
                        p99: h.value_at_quantile(0.99),
                        max: h.max(),
                        mean: h.mean().round() as u64,
                    },
                )
            })
            .collect();
        RunReport {
            target: label.to_string(),
            elapsed_secs: secs,
            sessions_ok: self.sessions_ok,
            sessions_failed: self.sessions_failed,
            sessions_per_sec: per_sec(self.sessions_ok),
            calls: self.calls,
            calls_per_sec: per_sec(self.calls),
            events_sent: self.events_sent,
            events_acked: self.events_acked,
            events_resent: self.events_resent,
            events_per_sec: per_sec(self.events_acked),
            downloads_ok: self.downloads_ok,
            bytes_downloaded: self.bytes_downloaded,
            bytes_downloaded_per_sec: per_sec(self.bytes_downloaded),
            connections: self.connections,
            tls_full_handshakes: self.connections - self.tls_resumed.min(self.connections),
            tls_resumed_handshakes: self.tls_resumed,
            schedule,
            latency_us,
            errors: self.errors.clone(),
            commands: self
                .commands
                .iter()
                .map(|(code, n)| (command_name(*code), *n))
                .collect(),
        }
    }
}

/// How well the generator kept to its schedule.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Schedule {
    /// Sessions per second asked for; `None` when running as fast as possible.
    pub target_rate: Option<f64>,
    /// Sessions started.
    pub started: u64,
    /// Starts skipped because the generator woke up too late for them (it never catches up in bursts).
    pub ticker_late: u64,
    /// Starts skipped because `--concurrency` sessions were already running.
    pub concurrency_full: u64,
    /// Starts skipped because that device was still in its previous session.
    pub device_busy: u64,
    /// Starts missed for either of the first two reasons: the server (or this machine) was too slow.
    pub behind_schedule: u64,
    /// Sessions still running when the run ended and its grace period ran out.
    pub abandoned: u64,
}

impl Schedule {
    pub fn from_live(live: &Live, target_rate: Option<f64>, abandoned: u64) -> Schedule {
        let ticker_late = live.ticker_late.load(Ordering::Relaxed);
        let concurrency_full = live.concurrency_full.load(Ordering::Relaxed);
        Schedule {
            target_rate,
            started: live.started.load(Ordering::Relaxed),
            ticker_late,
            concurrency_full,
            device_busy: live.device_busy.load(Ordering::Relaxed),
            behind_schedule: ticker_late + concurrency_full,
            abandoned,
        }
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
    pub mean: u64,
}

/// The outcome of running the scenario against one target (the server or the baseline).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    pub target: String,
    pub elapsed_secs: f64,
    pub sessions_ok: u64,
    pub sessions_failed: u64,
    /// Successful sessions per second.
    pub sessions_per_sec: f64,
    pub calls: u64,
    pub calls_per_sec: f64,
    pub events_sent: u64,
    pub events_acked: u64,
    pub events_resent: u64,
    /// Acknowledged events per second.
    pub events_per_sec: f64,
    pub downloads_ok: u64,
    pub bytes_downloaded: u64,
    pub bytes_downloaded_per_sec: f64,
    pub connections: u64,
    pub tls_full_handshakes: u64,
    pub tls_resumed_handshakes: u64,
    pub schedule: Schedule,
    /// By metric: `connect`, each operation's wire name, `session`.
    pub latency_us: BTreeMap<String, Latency>,
    /// By `"<operation>: <kind>"`, e.g. `"Heartbeat: oError 1186"`, `"SessionBegin: timeout"`.
    pub errors: BTreeMap<String, u64>,
    /// Commands received, by `"<code> <name>"`.
    pub commands: BTreeMap<String, u64>,
}

impl RunReport {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// A human-readable rendering for a terminal.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "== {} ==", self.target);
        let target = match self.schedule.target_rate {
            Some(r) => format!("target {r:.1} sessions/s"),
            None => "as fast as possible".into(),
        };
        let _ = writeln!(s, "elapsed {:.2} s, {target}", self.elapsed_secs);
        let _ = writeln!(
            s,
            "sessions: {} ok, {} failed, {:.1}/s; behind schedule {} (late {}, concurrency full {}), device busy {}, abandoned {}",
            self.sessions_ok,
            self.sessions_failed,
            self.sessions_per_sec,
            self.schedule.behind_schedule,
            self.schedule.ticker_late,
            self.schedule.concurrency_full,
            self.schedule.device_busy,
            self.schedule.abandoned
        );
        let _ = writeln!(
            s,
            "calls: {} ({:.1}/s); events acked {} ({:.1}/s, sent {}, resent {}); downloads {} ({} bytes, {:.0} B/s)",
            self.calls,
            self.calls_per_sec,
            self.events_acked,
            self.events_per_sec,
            self.events_sent,
            self.events_resent,
            self.downloads_ok,
            self.bytes_downloaded,
            self.bytes_downloaded_per_sec
        );
        let _ = writeln!(
            s,
            "connections: {} (TLS full {}, resumed {})",
            self.connections, self.tls_full_handshakes, self.tls_resumed_handshakes
        );
        let _ = writeln!(
            s,
            "  {:<22} {:>8} {:>9} {:>9} {:>9} {:>9}",
            "latency (us)", "count", "p50", "p90", "p99", "max"
        );
        for (name, l) in &self.latency_us {
            let _ = writeln!(
                s,
                "  {:<22} {:>8} {:>9} {:>9} {:>9} {:>9}",
                name, l.count, l.p50, l.p90, l.p99, l.max
            );
        }
        if !self.commands.is_empty() {
            let list: Vec<_> = self
                .commands
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            let _ = writeln!(s, "commands: {}", list.join(", "));
        }
        if self.errors.is_empty() {
            let _ = writeln!(s, "errors: none");
        } else {
            let _ = writeln!(s, "errors:");
            for (k, v) in &self.errors {
                let _ = writeln!(s, "  {k}: {v}");
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(ok: bool, micros: &[u64]) -> SessionLog {
        let mut l = SessionLog {
            begun: true,
            calls: micros.len() as u64,
            connections: 1,
            tls_resumed: 1,
            events_sent: 12,
            events_acked: 10,
            events_resent: 2,
            commands: vec![5, 0],
            ..SessionLog::default()
        };
        for &m in micros {
            l.record(Metric::Call(Operation::Heartbeat), Duration::from_micros(m));
        }
        l.record(Metric::Session, Duration::from_millis(5));
        if !ok {
            l.error("PutEvents", "oError 1195");
        }
        l
    }

    #[test]
    fn aggregates_sessions_into_rates_percentiles_and_error_kinds() {
        let mut stats = Stats::default();
        let micros: Vec<u64> = (1..=100).map(|i| i * 100).collect();
        stats.add(&log(true, &micros));
        stats.add(&log(true, &micros));
        stats.add(&log(false, &[50]));
        let live = Live::default();
        live.ticker_late.store(2, Ordering::Relaxed);
        live.concurrency_full.store(1, Ordering::Relaxed);
        let r = stats.report(
            "baseline",
            Duration::from_secs(2),
            Schedule::from_live(&live, Some(1.5), 0),
        );
        assert_eq!((r.sessions_ok, r.sessions_failed), (2, 1));
        assert_eq!(r.sessions_per_sec, 1.0);
        assert_eq!(r.calls, 201);
        assert_eq!(r.calls_per_sec, 100.5);
        assert_eq!(
            (r.events_sent, r.events_acked, r.events_resent),
            (36, 30, 6)
        );
        assert_eq!(r.events_per_sec, 15.0);
        assert_eq!(
            (
                r.connections,
                r.tls_resumed_handshakes,
                r.tls_full_handshakes
            ),
            (3, 3, 0)
        );
        assert_eq!(r.schedule.behind_schedule, 3);
        assert_eq!(r.errors.get("PutEvents: oError 1195"), Some(&1));
        assert_eq!(r.error_count(), 1);
        assert_eq!(r.commands.get("5 APPINFO_GET"), Some(&3));
        assert_eq!(r.commands.get("0 NO_COMMANDS"), Some(&3));
        let hb = &r.latency_us["Heartbeat"];
        assert_eq!(hb.count, 201);
        // hdrhistogram keeps 3 significant digits: equal within 0.1%.
        assert!((4990..=5010).contains(&hb.p50), "p50 {}", hb.p50);
        assert!((8990..=9010).contains(&hb.p90), "p90 {}", hb.p90);
        assert!((9890..=9910).contains(&hb.p99), "p99 {}", hb.p99);
        assert!((9990..=10010).contains(&hb.max), "max {}", hb.max);
        assert_eq!(r.latency_us["session"].count, 3);
        assert!(
            !r.latency_us.contains_key("connect"),
            "nothing recorded, nothing shown"
        );
        let text = r.render();
        assert!(text.contains("PutEvents: oError 1195: 1"), "{text}");
        assert!(text.contains("Heartbeat"), "{text}");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["schedule"]["behind_schedule"], 3);
    }

    #[test]
    fn a_session_that_never_began_is_a_failure() {
        let mut stats = Stats::default();
        stats.add(&SessionLog::default());
        let r = stats.report("x", Duration::from_secs(1), Schedule::default());
        assert_eq!((r.sessions_ok, r.sessions_failed), (0, 1));
    }

    #[test]
    fn metric_slots_round_trip() {
        for s in 0..METRICS {
            assert_eq!(Metric::from_slot(s).slot(), s);
        }
        assert_eq!(
            Metric::Call(Operation::GetFileInfo).name(),
            "klft-GetFileInfo"
        );
        assert_eq!(command_name(3), "3 POLICY_PUT");
        assert_eq!(command_name(42), "42 unknown");
    }
}
