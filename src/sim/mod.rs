//! `mobile-admin simulate`: a fleet of virtual devices speaking aklwngt over TLS exactly like real
//! devices, used as a load generator and to compare the server with a do-nothing baseline.
//!
//! Module map:
//! - [`identity`]: device ids and passwords derived from the fleet seed and index.
//! - [`state`]: the compact per-device record kept between sessions and runs.
//! - [`device`]: a device's pure behaviour (hashes, content, events, answers to commands).
//! - [`session`]: one session over the wire; [`client`]: TLS and HTTP for the devices.
//! - [`stats`]: latency histograms, counters and the report.
//! - [`baseline`]: the canned responder that measures the transport alone.
//! - `driver`: starts sessions at a rate, or as fast as allowed, and drains them.
//! - [`live`]: live API subscribers on the admin port, for the live API's load test.

pub mod backend;
pub mod baseline;
pub mod client;
pub mod device;
mod driver;
pub mod identity;
pub mod live;
pub mod session;
pub mod state;
pub mod stats;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

pub use client::Trust;
pub use session::Scenario;
pub use state::{Fleet, StateError};
pub use stats::{Latency, RunReport, Schedule};

use client::{client_config, Target};
use driver::Drive;

/// How often sessions start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    /// A fixed number of session starts per second across the fleet.
    PerSecond(f64),
    /// Each device syncs once per this many seconds: `devices / period` sessions per second.
    Period(f64),
    /// As fast as `--concurrency` sessions at a time allow.
    Max,
}

impl FromStr for Rate {
    type Err = String;

    /// `max`, or sessions per second.
    fn from_str(s: &str) -> Result<Rate, String> {
        if s.eq_ignore_ascii_case("max") {
            return Ok(Rate::Max);
        }
        match s.parse::<f64>() {
            Ok(r) if r.is_finite() && r > 0.0 => Ok(Rate::PerSecond(r)),
            _ => Err(format!(
                "expected sessions per second (> 0) or `max`, got {s:?}"
            )),
        }
    }
}

impl Rate {
    fn per_second(self, devices: u32) -> Option<f64> {
        match self {
            Rate::PerSecond(r) => Some(r),
            Rate::Period(p) => Some(f64::from(devices) / p),
            Rate::Max => None,
        }
    }
}

/// Where the baseline comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BaselineMode {
    #[default]
    None,
    /// A canned responder started inside this process, on a loopback port.
    InProcess,
    /// A canned responder already running at `HOST:PORT` (`simulate --serve-baseline`).
    Server(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

/// A number of seconds (fractions allowed) as a duration.
fn seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| format!("expected a number of seconds, got {text:?}"))
}

/// Everything a simulation run is told: the `simulate` command's flags, with their defaults.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct SimOptions {
    /// The server's device port, HOST:PORT (none: run only the baseline).
    #[arg(long)]
    pub server: Option<String>,
    /// Name the server certificate must carry (and SNI) [default: the host of --server].
    #[arg(long)]
    pub tls_name: Option<String>,
    /// PEM certificates to trust [default: ./data/tls/device-cert.pem, the server's generated one].
    #[arg(long, conflicts_with = "insecure")]
    pub cafile: Option<PathBuf>,
    /// Accept any server certificate.
    #[arg(long)]
    pub insecure: bool,
    /// Devices in the fleet.
    #[arg(long, default_value_t = 1000)]
    pub devices: u32,
    /// Fleet seed: device ids are sim-SEED-INDEX, passwords derive from both.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Session starts per second, or `max` (as fast as --concurrency allows).
    #[arg(long, conflicts_with = "period")]
    pub rate: Option<Rate>,
    /// Each device syncs once per this many seconds (rate = devices / period) [default: 900].
    #[arg(long)]
    pub period: Option<f64>,
    /// Seconds to generate load [default: 60; with --enrol-only, until every device is enrolled].
    #[arg(long, value_parser = seconds)]
    pub duration: Option<Duration>,
    /// Most sessions in flight at once.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// New events per session, sent in PutEvents calls of up to 100.
    #[arg(long, default_value_t = 1)]
    pub events_per_session: u32,
    /// Share of sessions sending a burst of --burst-calls PutEvents calls of 10 events instead.
    #[arg(long, default_value_t = 0.01)]
    pub event_burst: f64,
    /// PutEvents calls in a burst.
    #[arg(long, default_value_t = 5)]
    pub burst_calls: u32,
    /// Share of sessions in which the device's settings and state change first.
    #[arg(long, default_value_t = 0.02)]
    pub changing_share: f64,
    /// Update file to download (klft-GetFileInfo + klft-GetNextFileChunk).
    #[arg(long)]
    pub download: Option<String>,
    /// Share of sessions that download --download.
    #[arg(long, default_value_t = 1.0)]
    pub download_share: f64,
    /// Bytes asked for per chunk.
    #[arg(long, default_value_t = 32768)]
    pub chunk_size: u64,
    /// TLS session resumption.
    #[arg(long, value_enum, default_value = "on")]
    pub tls_resumption: OnOff,
    /// All calls of a session on one connection (the default).
    #[arg(long, conflicts_with = "connection_per_call")]
    pub keep_alive: bool,
    /// A new connection for every call.
    #[arg(long)]
    pub connection_per_call: bool,
    /// Seconds per call, connecting included.
    #[arg(long, value_parser = seconds, default_value = "30")]
    pub timeout: Duration,
    /// Where the fleet remembers its devices between runs.
    #[arg(long, default_value = "./sim-state")]
    pub state_dir: PathBuf,
    /// Run each not-yet-enrolled device's first session once, as fast as allowed.
    #[arg(long)]
    pub enrol_only: bool,
    /// Also run the scenario, first, against a do-nothing responder started in this process.
    #[arg(long, conflicts_with = "baseline_server")]
    pub baseline: bool,
    /// Run the scenario first against a do-nothing responder at HOST:PORT (see --serve-baseline).
    #[arg(long)]
    pub baseline_server: Option<String>,
    /// Show a progress bar on stderr (when it is a terminal).
    #[arg(skip)]
    pub progress: bool,
    /// Stop early on SIGINT/SIGTERM, still reporting and saving the fleet.
    #[arg(skip)]
    pub stop_on_signal: bool,
}

impl Default for SimOptions {
    /// The defaults of the command line's flags.
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            options: SimOptions,
        }
        <Flags as clap::Parser>::parse_from(["simulate"]).options
    }
}

/// Where the server keeps the certificate it generates, with the default data directory.
pub const DEFAULT_SERVER_CERT: &str = "./data/tls/device-cert.pem";

/// Largest chunk a server may be asked for (SPEC section 5).
pub const MAX_CHUNK: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("{0}")]
    Options(String),
    #[error("cannot resolve {server}: {reason}")]
    Resolve { server: String, reason: String },
    #[error("TLS: {0}")]
    Tls(String),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("baseline responder: {0}")]
    Baseline(String),
}

/// What a simulation run found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub devices: u32,
    pub seed: u64,
    /// Target sessions per second; `None` when running as fast as possible.
    pub target_rate: Option<f64>,
    pub concurrency: usize,
    pub enrol_only: bool,
    /// Devices of the fleet enrolled with the server before and after the run.
    pub enrolled_before: u32,
    pub enrolled_after: u32,
    pub baseline: Option<RunReport>,
    pub server: Option<RunReport>,
    /// Server sessions per second divided by baseline sessions per second.
    pub ratio_sessions_per_sec: Option<f64>,
    /// Stopped early by a signal.
    pub interrupted: bool,
}

impl Report {
    pub fn render(&self) -> String {
        let mut s = String::new();
        let rate = match self.target_rate {
            Some(r) => format!("{r:.1} sessions/s"),
            None => "as fast as possible".into(),
        };
        let _ = writeln!(
            s,
            "fleet {}: {} devices ({} enrolled before, {} after), {rate}, concurrency {}{}{}",
            self.seed,
            self.devices,
            self.enrolled_before,
            self.enrolled_after,
            self.concurrency,
            if self.enrol_only {
                ", enrolment only"
            } else {
                ""
            },
            if self.interrupted {
                ", interrupted"
            } else {
                ""
            },
        );
        for run in [&self.baseline, &self.server].into_iter().flatten() {
            s.push_str(&run.render());
        }
        if let Some(ratio) = self.ratio_sessions_per_sec {
            let _ = writeln!(s, "server/baseline sessions/s: {ratio:.3}");
        }
        s
    }
}

impl SimOptions {
    fn validate(&self) -> Result<(), SimError> {
        let bad = |m: String| Err(SimError::Options(m));
        if self.devices == 0 {
            return bad("--devices must be at least 1".into());
        }
        if self.concurrency == 0 {
            return bad("--concurrency must be at least 1".into());
        }
        for (name, share) in [
            ("--event-burst", self.event_burst),
            ("--changing-share", self.changing_share),
            ("--download-share", self.download_share),
        ] {
            if !(0.0..=1.0).contains(&share) {
                return bad(format!("{name} must be a share between 0 and 1"));
            }
        }
        if self.chunk_size == 0 || self.chunk_size > MAX_CHUNK {
            return bad(format!("--chunk-size must be between 1 and {MAX_CHUNK}"));
        }
        match self.rate() {
            Rate::PerSecond(r) if !(r.is_finite() && r > 0.0) => {
                return bad("--rate must be positive".into())
            }
            Rate::Period(p) if !(p.is_finite() && p > 0.0) => {
                return bad("--period must be positive".into())
            }
            _ => {}
        }
        if self.duration.is_some_and(|d| d.is_zero()) {
            return bad("--duration must be positive".into());
        }
        if self.server.is_none() && self.baseline_mode() == BaselineMode::None {
            return bad("give --server, --baseline or --baseline-server".into());
        }
        Ok(())
    }

    /// How often sessions start: `--rate`, or the fleet's `--period` (15 minutes by default).
    pub fn rate(&self) -> Rate {
        self.rate
            .unwrap_or(Rate::Period(self.period.unwrap_or(900.0)))
    }

    pub fn baseline_mode(&self) -> BaselineMode {
        match (&self.baseline_server, self.baseline) {
            (Some(addr), _) => BaselineMode::Server(addr.clone()),
            (None, true) => BaselineMode::InProcess,
            (None, false) => BaselineMode::None,
        }
    }

    fn keep_alive(&self) -> bool {
        !self.connection_per_call
    }

    fn tls_resumption(&self) -> bool {
        self.tls_resumption == OnOff::On
    }

    fn scenario(&self) -> Scenario {
        Scenario {
            events_per_session: self.events_per_session,
            event_burst: self.event_burst,
            burst_calls: self.burst_calls,
            changing_share: self.changing_share,
            download: self.download.clone(),
            download_share: self.download_share,
            chunk_size: self.chunk_size,
            enrol_only: self.enrol_only,
        }
    }

    pub fn trust(&self) -> Result<Trust, SimError> {
        match (&self.cafile, self.insecure) {
            (Some(path), _) => Ok(Trust::CaFile(path.clone())),
            (None, true) => Ok(Trust::Insecure),
            (None, false) if Path::new(DEFAULT_SERVER_CERT).exists() => {
                Ok(Trust::CaFile(DEFAULT_SERVER_CERT.into()))
            }
            (None, false) => Err(SimError::Options(format!(
                "no {DEFAULT_SERVER_CERT}: give --cafile PEM or --insecure"
            ))),
        }
    }
}

/// The host part of `HOST:PORT` (without the brackets of an IPv6 literal).
fn host_of(server: &str) -> &str {
    let host = server.rsplit_once(':').map_or(server, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

async fn resolve(server: &str) -> Result<SocketAddr, SimError> {
    let err = |reason: String| SimError::Resolve {
        server: server.to_string(),
        reason,
    };
    tokio::net::lookup_host(server)
        .await
        .map_err(|e| err(e.to_string()))?
        .next()
        .ok_or_else(|| err("no address".into()))
}

async fn remote_target(
    label: &str,
    server: &str,
    tls_name: Option<&str>,
    trust: &Trust,
    resumption: bool,
) -> Result<Target, SimError> {
    let addr = resolve(server).await?;
    let config = client_config(trust, resumption)?;
    Target::new(
        format!("{label} {server}"),
        addr,
        tls_name.unwrap_or(host_of(server)),
        config,
    )
}

/// Runs the scenario: against the baseline first (if asked), then against the server (if given),
/// and saves what the fleet learned from the server in the state directory.
pub async fn run(opts: SimOptions) -> Result<Report, SimError> {
    opts.validate()?;
    let scenario = Arc::new(opts.scenario());
    let rate = opts.rate().per_second(opts.devices);
    let duration = match (opts.duration, opts.enrol_only) {
        (Some(d), _) => Some(d),
        (None, true) => None,
        (None, false) => Some(Duration::from_secs(60)),
    };
    let fleet = Arc::new(Fleet::load(&opts.state_dir, opts.seed, opts.devices)?);
    let enrolled_before = fleet.enrolled();
    let enrol_list = opts.enrol_only.then(|| fleet.unenrolled(opts.devices));

    let (stop_tx, stop_rx) = watch::channel(false);
    let signals = opts.stop_on_signal.then(|| {
        tokio::spawn(async move {
            crate::server::shutdown_signal().await;
            let _ = stop_tx.send(true);
        })
    });
    let drive = |target: Target, fleet: Arc<Fleet>| Drive {
        target: Arc::new(target),
        fleet,
        scenario: scenario.clone(),
        rate: if opts.enrol_only { None } else { rate },
        duration,
        concurrency: opts.concurrency,
        keep_alive: opts.keep_alive(),
        timeout: opts.timeout,
        devices: opts.devices,
        enrol: enrol_list.clone(),
        progress: opts.progress,
        stop: stop_rx.clone(),
    };

    let baseline = match &opts.baseline_mode() {
        BaselineMode::None => None,
        BaselineMode::InProcess => {
            let responder = baseline::start(SocketAddr::from(([127, 0, 0, 1], 0)), None).await?;
            let config = client_config(
                &Trust::CaFile(responder.cert_path.clone()),
                opts.tls_resumption(),
            )?;
            let target = Target::new("baseline", responder.addr(), "localhost", config)?;
            let report = drive(target, Arc::new(fleet.scratch_copy())).run().await;
            responder.stop().await;
            Some(report)
        }
        BaselineMode::Server(server) => {
            let target = remote_target(
                "baseline",
                server,
                None,
                &opts.trust()?,
                opts.tls_resumption(),
            )
            .await?;
            Some(drive(target, Arc::new(fleet.scratch_copy())).run().await)
        }
    };
    let interrupted_early = *stop_rx.borrow();
    let server = match &opts.server {
        Some(server) if !interrupted_early => {
            let target = remote_target(
                "server",
                server,
                opts.tls_name.as_deref(),
                &opts.trust()?,
                opts.tls_resumption(),
            )
            .await?;
            let report = drive(target, fleet.clone()).run().await;
            fleet.save(&opts.state_dir)?;
            Some(report)
        }
        _ => None,
    };
    if let Some(task) = signals {
        task.abort();
    }
    let ratio = match (&server, &baseline) {
        (Some(s), Some(b)) if b.sessions_per_sec > 0.0 => {
            Some(s.sessions_per_sec / b.sessions_per_sec)
        }
        _ => None,
    };
    let interrupted = *stop_rx.borrow();
    Ok(Report {
        devices: opts.devices,
        seed: opts.seed,
        target_rate: if opts.enrol_only { None } else { rate },
        concurrency: opts.concurrency,
        enrol_only: opts.enrol_only,
        enrolled_before,
        enrolled_after: fleet.enrolled(),
        baseline,
        server,
        ratio_sessions_per_sec: ratio,
        interrupted,
    })
}

/// Runs a standalone baseline responder on `listen` until SIGINT or SIGTERM, for
/// `--baseline-server` runs that keep it in another process. Its certificate is generated once in
/// `dir` and reused, so devices can be given it with `--cafile`.
pub async fn serve_baseline(listen: SocketAddr, dir: &Path) -> Result<(), SimError> {
    let mut responder = baseline::start(listen, Some(dir)).await?;
    eprintln!(
        "baseline responder on {} (certificate {})",
        responder.addr(),
        responder.cert_path.display()
    );
    tokio::select! {
        _ = crate::server::shutdown_signal() => responder.stop().await,
        _ = responder.stopped() => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_derive() {
        assert_eq!("max".parse::<Rate>(), Ok(Rate::Max));
        assert_eq!("12.5".parse::<Rate>(), Ok(Rate::PerSecond(12.5)));
        assert!("0".parse::<Rate>().is_err());
        assert!("fast".parse::<Rate>().is_err());
        assert_eq!(Rate::Period(900.0).per_second(1800), Some(2.0));
        assert_eq!(Rate::Max.per_second(10), None);
    }

    #[test]
    fn hosts_are_taken_from_addresses() {
        assert_eq!(host_of("localhost:13292"), "localhost");
        assert_eq!(host_of("[::1]:13292"), "::1");
        assert_eq!(host_of("10.0.0.1:1"), "10.0.0.1");
    }

    #[test]
    fn options_are_validated() {
        let ok = SimOptions {
            baseline: true,
            ..SimOptions::default()
        };
        assert_eq!(ok.rate(), Rate::Period(900.0), "the flags' defaults");
        assert_eq!(ok.timeout, Duration::from_secs(30));
        assert!(ok.validate().is_ok());
        for broken in [
            SimOptions {
                devices: 0,
                ..ok.clone()
            },
            SimOptions {
                concurrency: 0,
                ..ok.clone()
            },
            SimOptions {
                event_burst: 1.5,
                ..ok.clone()
            },
            SimOptions {
                chunk_size: 0,
                ..ok.clone()
            },
            SimOptions {
                chunk_size: MAX_CHUNK + 1,
                ..ok.clone()
            },
            SimOptions {
                period: Some(0.0),
                ..ok.clone()
            },
            SimOptions {
                duration: Some(Duration::ZERO),
                ..ok.clone()
            },
            SimOptions {
                baseline: false,
                ..ok.clone()
            },
        ] {
            assert!(
                matches!(broken.validate(), Err(SimError::Options(_))),
                "{broken:?}"
            );
        }
    }
}
