//! Starts sessions: at a fixed rate from a ticker (open loop), or as fast as `--concurrency`
//! allows (closed loop, also used to enrol a fleet), then waits for the stragglers and reports.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::client::{Caller, Target};
use super::device::VirtualDevice;
use super::session::{run_session, Scenario};
use super::state::{Fleet, Stored};
use super::stats::{Live, RunReport, Schedule, SessionLog, Stats};

/// A start this much later than its tick still counts as on time; older ticks are skipped, so a
/// stalled generator never fires a catch-up burst at the server.
const LATE_TOLERANCE: Duration = Duration::from_millis(20);

/// One run of the scenario against one target.
pub(super) struct Drive {
    pub target: Arc<Target>,
    pub fleet: Arc<Fleet>,
    pub scenario: Arc<Scenario>,
    /// Sessions per second; `None` for as fast as possible.
    pub rate: Option<f64>,
    /// `None`: until every device of `enrol` has had its session.
    pub duration: Option<Duration>,
    pub concurrency: usize,
    pub keep_alive: bool,
    pub timeout: Duration,
    /// Devices `0..devices` take part.
    pub devices: u32,
    /// Enrolment: exactly these devices, once each.
    pub enrol: Option<Vec<u32>>,
    pub progress: bool,
    pub stop: watch::Receiver<bool>,
}

struct Shared {
    target: Arc<Target>,
    fleet: Arc<Fleet>,
    scenario: Arc<Scenario>,
    keep_alive: bool,
    timeout: Duration,
    stats: Mutex<Stats>,
    live: Live,
}

async fn one_session(shared: &Shared, index: u32, stored: Stored) {
    let plan = shared.scenario.plan(&mut rand::rng());
    let mut device = VirtualDevice::new(shared.fleet.seed(), index, stored);
    let mut log = SessionLog::default();
    let mut caller = Caller::new(&shared.target, shared.keep_alive, shared.timeout);
    run_session(&mut caller, &mut device, &plan, &shared.scenario, &mut log).await;
    drop(caller);
    shared.fleet.checkin(index, device.stored);
    if log.ok() {
        shared.live.sessions_ok.fetch_add(1, Ordering::Relaxed);
    } else {
        shared.live.sessions_failed.fetch_add(1, Ordering::Relaxed);
    }
    shared
        .stats
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .add(&log);
}

fn stopped(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow()
}

async fn wait_stop(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        // The sender is gone: nobody can ask to stop any more.
        std::future::pending::<()>().await;
    }
}

impl Drive {
    pub async fn run(self) -> RunReport {
        let shared = Arc::new(Shared {
            target: self.target.clone(),
            fleet: self.fleet.clone(),
            scenario: self.scenario.clone(),
            keep_alive: self.keep_alive,
            timeout: self.timeout,
            stats: Mutex::new(Stats::default()),
            live: Live::default(),
        });
        let start = Instant::now();
        let bar = self.progress_bar();
        let ticker = {
            let shared = shared.clone();
            let bar = bar.clone();
            let enrolling = self.enrol.is_some();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(Duration::from_millis(250));
                loop {
                    every.tick().await;
                    let live = &shared.live;
                    let done = live.done();
                    if enrolling {
                        bar.set_position(done);
                    } else {
                        bar.set_position(start.elapsed().as_secs());
                    }
                    let secs = start.elapsed().as_secs_f64().max(1e-3);
                    bar.set_message(format!(
                        "{} ok, {} failed, {:.0}/s, {} behind",
                        live.sessions_ok.load(Ordering::Relaxed),
                        live.sessions_failed.load(Ordering::Relaxed),
                        done as f64 / secs,
                        live.behind(),
                    ));
                }
            })
        };

        let mut set = JoinSet::new();
        let mut stop = self.stop.clone();
        match (self.rate, &self.enrol) {
            (Some(rate), None) => self.open_loop(&shared, &mut set, start, rate).await,
            _ => {
                self.closed_loop(&shared, &mut set, start);
                let deadline = self.duration.map(|d| start + d);
                let generating = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                };
                let workers_done = async { while set.join_next().await.is_some() {} };
                tokio::select! {
                    _ = generating => {}
                    _ = wait_stop(&mut stop) => {}
                    _ = workers_done => {}
                }
            }
        }
        // Every call is bounded by the timeout, but a session makes many: past this, give up.
        let grace = (self.timeout * 2).max(Duration::from_secs(10));
        let drain = async { while set.join_next().await.is_some() {} };
        let mut abandoned = 0;
        if tokio::time::timeout(grace, drain).await.is_err() {
            abandoned = set.len() as u64;
            set.shutdown().await;
        }
        let elapsed = start.elapsed();
        ticker.abort();
        bar.finish_and_clear();
        let schedule = Schedule::from_live(&shared.live, self.rate_for_report(), abandoned);
        let stats = shared.stats.lock().unwrap_or_else(|e| e.into_inner());
        stats.report(&self.target.label, elapsed, schedule)
    }

    fn rate_for_report(&self) -> Option<f64> {
        if self.enrol.is_some() {
            None
        } else {
            self.rate
        }
    }

    fn progress_bar(&self) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let (len, template) = match (&self.enrol, self.duration) {
            (Some(list), _) => (
                list.len() as u64,
                "{prefix} enrolling [{bar:30}] {pos}/{len} {msg}",
            ),
            (None, Some(d)) => (
                d.as_secs().max(1),
                "{prefix} [{bar:30}] {pos}/{len} s {msg}",
            ),
            (None, None) => (0, "{prefix} {msg}"),
        };
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(self.target.label.clone());
        bar
    }

    async fn open_loop(
        &self,
        shared: &Arc<Shared>,
        set: &mut JoinSet<()>,
        start: Instant,
        rate: f64,
    ) {
        let permits = Arc::new(Semaphore::new(self.concurrency));
        let deadline = start
            + self
                .duration
                .unwrap_or(Duration::from_secs(100 * 365 * 86_400));
        let mut stop = self.stop.clone();
        let live = &shared.live;
        let mut next_tick: u64 = 0;
        loop {
            let due = start + Duration::from_secs_f64(next_tick as f64 / rate);
            if due >= deadline || stopped(&stop) {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(due) => {}
                _ = wait_stop(&mut stop) => break,
            }
            while set.try_join_next().is_some() {}
            let now = Instant::now();
            let elapsed = now.duration_since(start).as_secs_f64();
            let last_due = ((elapsed * rate).floor() as u64).max(next_tick);
            let first_on_time =
                ((elapsed - LATE_TOLERANCE.as_secs_f64()).max(0.0) * rate).ceil() as u64;
            let first = first_on_time.clamp(next_tick, last_due + 1);
            live.ticker_late
                .fetch_add(first - next_tick, Ordering::Relaxed);
            for tick in first..=last_due {
                if start + Duration::from_secs_f64(tick as f64 / rate) >= deadline {
                    break;
                }
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    live.concurrency_full.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let index = (tick % u64::from(self.devices)) as u32;
                let Some(stored) = shared.fleet.checkout(index) else {
                    live.device_busy.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                live.started.fetch_add(1, Ordering::Relaxed);
                let shared = shared.clone();
                set.spawn(async move {
                    one_session(&shared, index, stored).await;
                    drop(permit);
                });
            }
            next_tick = last_due + 1;
        }
    }

    fn closed_loop(&self, shared: &Arc<Shared>, set: &mut JoinSet<()>, start: Instant) {
        let next = Arc::new(AtomicU64::new(0));
        let list: Option<Arc<Vec<u32>>> = self.enrol.clone().map(Arc::new);
        let population = list
            .as_ref()
            .map_or(u64::from(self.devices), |l| l.len() as u64);
        let workers = (self.concurrency as u64).min(population).max(1);
        let deadline = self.duration.map(|d| start + d);
        let devices = u64::from(self.devices);
        for _ in 0..workers {
            let shared = shared.clone();
            let next = next.clone();
            let list = list.clone();
            let stop = self.stop.clone();
            set.spawn(async move {
                loop {
                    if stopped(&stop) || deadline.is_some_and(|d| Instant::now() >= d) {
                        break;
                    }
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let index = match &list {
                        Some(list) => match list.get(n as usize) {
                            Some(&i) => i,
                            None => break,
                        },
                        None => (n % devices) as u32,
                    };
                    let Some(stored) = shared.fleet.checkout(index) else {
                        shared.live.device_busy.fetch_add(1, Ordering::Relaxed);
                        tokio::task::yield_now().await;
                        continue;
                    };
                    shared.live.started.fetch_add(1, Ordering::Relaxed);
                    one_session(&shared, index, stored).await;
                }
            });
        }
    }
}
