//! Event intake at the storage layer: PutEvents calls of 10 events from 64 devices at once, stored
//! durably in SQLite through the group-commit writer, without TLS, HTTP or XML in the way.
//!
//! Reports events per second (criterion's "thrpt"); the end-to-end figure over TLS is
//! `scripts/bench events`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use time::OffsetDateTime;

use mobile_admin::events::{normalize, StoredEvent};
use mobile_admin::soap::{EventBody, EventInfo};
use mobile_admin::store::{self, Seen, Store};

const DEVICES: usize = 10_000;
const CONCURRENCY: u64 = 64;
const EVENTS_PER_CALL: u32 = 10;

/// A call's events, shaped like the simulator's mix: one in twenty a virus found.
fn events(device: usize, call: u64) -> Vec<StoredEvent> {
    (0..EVENTS_PER_CALL)
        .map(|i| {
            let seq = call * u64::from(EVENTS_PER_CALL) + u64::from(i);
            let mut body = EventBody {
                product_name: Some("MobileSecurity".into()),
                product_version: Some("8.0".into()),
                rise_time: Some(OffsetDateTime::now_utc()),
                rise_time_ms: Some((seq % 1000) as i32),
                ..EventBody::default()
            };
            if seq % 20 == 0 {
                body.severity = Some(4);
                body.event_type = Some("GNRL_EV_VIRUS_FOUND".into());
                body.event_type_display_name = Some("Virus found".into());
                body.descr = Some("A malicious object was detected".into());
                body.par[1] = Some("EICAR-Test-File".into());
                body.par[4] = Some(format!("\\My Documents\\download-{seq}.cab"));
                body.par[5] = Some("deleted".into());
            } else {
                body.severity = Some(1);
                body.event_type = Some("GNRL_EV_SCAN_FINISHED".into());
                body.event_type_display_name = Some("Scan finished".into());
                body.descr = Some(format!("Scan finished on device-{device}"));
            }
            normalize(EventInfo {
                event_id: format!("bench-{device:06}-{seq}"),
                body,
            })
        })
        .collect()
}

fn intake(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bench.sqlite").display());
    let seen = Seen {
        at: OffsetDateTime::now_utc(),
        address: "192.0.2.1".into(),
    };
    let (store, devices) = runtime.block_on(async {
        let store: Arc<dyn Store> = store::open(&url).await.unwrap();
        let mut ids = Vec::with_capacity(DEVICES);
        for d in 0..DEVICES {
            let id = store
                .enrol_device(&format!("bench-{d:06}"), b"credential", &seen)
                .await
                .unwrap()
                .unwrap();
            ids.push(id);
        }
        (store, Arc::new(ids))
    });

    let mut group = c.benchmark_group("event_store");
    group.throughput(Throughput::Elements(u64::from(EVENTS_PER_CALL)));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(
        std::env::var("BENCH_SECS")
            .map(|v| v.parse().unwrap())
            .unwrap_or(20),
    ));
    let mut next_call = 0u64;
    group.bench_function("sqlite/64 callers x 10 events", |b| {
        b.iter_custom(|calls| {
            let first = next_call;
            next_call += calls;
            runtime.block_on(async {
                let started = Instant::now();
                let callers: Vec<_> = (0..CONCURRENCY)
                    .map(|caller| {
                        let (store, devices, seen) = (store.clone(), devices.clone(), seen.clone());
                        tokio::spawn(async move {
                            let mut call = first + caller;
                            while call < first + calls {
                                let device = (call as usize * 7919) % DEVICES;
                                store
                                    .store_events(devices[device], events(device, call), &seen)
                                    .await
                                    .unwrap();
                                call += CONCURRENCY;
                            }
                        })
                    })
                    .collect();
                for caller in callers {
                    caller.await.unwrap();
                }
                started.elapsed()
            })
        })
    });
    group.finish();
    runtime.block_on(store.close());
}

criterion_group!(benches, intake);
criterion_main!(benches);
