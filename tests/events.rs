//! PutEvents over real TLS: durable, deduplicated, lenient with odd events, strict with broken calls.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;

async fn count(server: &TestServer, sql: &str) -> i64 {
    server.sql().await.scalar(sql).await
}

#[tokio::test]
async fn a_batch_is_stored_once_even_when_resent() {
    let server = TestServer::start().await;
    let mut dev = server.device("IMEI-E1", "pw").await;
    dev.begin().await.unwrap();
    let batch: Vec<_> = (0..10).map(|n| event(n, "GNRL_EV_VIRUS_FOUND")).collect();
    assert!(dev.put_events(batch.clone()).await.is_none());
    assert_eq!(count(&server, "SELECT count(*) FROM events").await, 10);
    // The device did not see the reply and sends the same batch again: acknowledged, nothing new.
    assert!(dev.put_events(batch).await.is_none());
    assert_eq!(count(&server, "SELECT count(*) FROM events").await, 10);

    // Every field and the call's context are stored; the named parameters are queryable.
    let db = server.sql().await;
    let row: (String, i64, String, String, String, i64, String, String) = db
        .fetch_one(
            "SELECT event_type, severity, descr, virus_name, object_name, truncated, source_address, rise_time
             FROM events WHERE event_id = 'evt-3'",
        )
        .await;
    assert_eq!(row.0, "GNRL_EV_VIRUS_FOUND");
    assert_eq!(row.1, 4);
    assert_eq!(row.2, "event number 3");
    assert_eq!(row.3, "EICAR-Test-File");
    assert_eq!(row.4, "\\Storage Card\\file3.exe");
    assert_eq!(row.5, 0);
    assert_eq!(row.6, "127.0.0.1");
    assert_eq!(row.7, "2026-11-23T10:00:00Z");
    // Infection counters are kept per device.
    let viruses: i64 = db
        .scalar("SELECT viruses_found FROM device_infections")
        .await;
    assert_eq!(viruses, 10);
    // Another device may use the same event ids.
    let mut other = server.device("IMEI-E2", "pw").await;
    other.begin().await.unwrap();
    assert!(other
        .put_events(vec![event(3, "APP_STARTED")])
        .await
        .is_none());
    assert_eq!(count(&server, "SELECT count(*) FROM events").await, 11);
    server.stop().await;
}

#[tokio::test]
async fn odd_events_are_kept_and_flagged() {
    let server = TestServer::start().await;
    let mut dev = server.device("IMEI-E3", "pw").await;
    dev.begin().await.unwrap();
    let mut long = event(1, "APP_EVENT");
    long.body.descr = Some("x".repeat(5000));
    long.body.par[8] = Some("я".repeat(513));
    let mut sparse = event(2, "APP_EVENT");
    sparse.body.severity = Some(99);
    sparse.body.rise_time = None;
    sparse.body.product_name = None;
    assert!(dev.put_events(vec![long, sparse]).await.is_none());
    let db = server.sql().await;
    let (truncated, descr_len, par9): (i64, i64, String) = db
        .fetch_one("SELECT truncated, length(descr), par9 FROM events WHERE event_id = 'evt-1'")
        .await;
    assert_eq!((truncated, descr_len), (1, 1000));
    assert_eq!(par9.chars().count(), 512);
    let (severity, rise_time, product): (i64, Option<String>, Option<String>) = db
        .fetch_one("SELECT severity, rise_time, product_name FROM events WHERE event_id = 'evt-2'")
        .await;
    assert_eq!((severity, rise_time, product), (99, None, None));

    // An unparseable date inside an event: the event is kept, the field dropped and named.
    let body = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:aklwngt="http://tempuri.org/aklwngt.xsd"><SOAP-ENV:Body><aklwngt:PutEvents><szSessionId>{}</szSessionId><oEventsInfoArray><item><eventId>odd-1</eventId><body><severity>2</severity><product-name>P</product-name><product-version>1</product-version><event-type>APP_EVENT</event-type><rise-time>yesterday</rise-time></body></item></oEventsInfoArray></aklwngt:PutEvents></SOAP-ENV:Body></SOAP-ENV:Envelope>"#,
        dev.session
    );
    let (status, reply) = dev.conn.post(body).await;
    assert_eq!(status, 200);
    assert!(!String::from_utf8_lossy(&reply).contains("oError"));
    let odd: String = db
        .scalar("SELECT odd_fields FROM events WHERE event_id = 'odd-1'")
        .await;
    assert_eq!(odd, "rise-time");
    server.stop().await;
}

#[tokio::test]
async fn calls_that_cannot_be_understood_store_nothing() {
    let server = TestServer::start_with(|c| c.protocol.max_events_per_call = 5).await;
    let mut dev = server.device("IMEI-E4", "pw").await;
    dev.begin().await.unwrap();
    // Over the per-call limit: refused whole.
    let error = dev
        .put_events((0..6).map(|n| event(n, "APP_EVENT")).collect())
        .await
        .expect("refused");
    assert_eq!(error.code, 1187);
    assert!(
        error.message.contains("too many events"),
        "{}",
        error.message
    );
    // Exactly at the limit is fine.
    assert!(dev
        .put_events((10..15).map(|n| event(n, "APP_EVENT")).collect())
        .await
        .is_none());
    // Two event arrays in one call: ambiguous, so refused whole and nothing of it is stored.
    let body = format!(
        r#"<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" xmlns:aklwngt="http://tempuri.org/aklwngt.xsd"><SOAP-ENV:Body><aklwngt:PutEvents><szSessionId>{}</szSessionId><oEventsInfoArray><item><eventId>ok-1</eventId><body><severity>1</severity></body></item></oEventsInfoArray><oEventsInfoArray><item><eventId>ok-2</eventId><body><severity>1</severity></body></item></oEventsInfoArray></aklwngt:PutEvents></SOAP-ENV:Body></SOAP-ENV:Envelope>"#,
        dev.session
    );
    let (status, reply) = dev.conn.post(body).await;
    let reply = String::from_utf8_lossy(&reply);
    assert_eq!(status, 200, "{reply}");
    assert!(
        reply.contains("<oError>") && reply.contains("<code>1192</code>"),
        "{reply}"
    );
    // An event without an id is kept under an id derived from its content; a resend is a duplicate.
    let body = format!(
        r#"<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" xmlns:aklwngt="http://tempuri.org/aklwngt.xsd"><SOAP-ENV:Body><aklwngt:PutEvents><szSessionId>{}</szSessionId><oEventsInfoArray><item><body><severity>1</severity><descr>no id</descr></body></item></oEventsInfoArray></aklwngt:PutEvents></SOAP-ENV:Body></SOAP-ENV:Envelope>"#,
        dev.session
    );
    for _ in 0..2 {
        let (status, reply) = dev.conn.post(body.clone()).await;
        assert_eq!(status, 200);
        assert!(!String::from_utf8_lossy(&reply).contains("oError"));
    }
    // Malformed XML: a SOAP fault.
    let (status, reply) = dev.conn.post("<SOAP-ENV:Envelope><broken").await;
    assert_eq!(status, 500);
    assert!(String::from_utf8_lossy(&reply).contains("Fault"));
    // Unknown session.
    dev.session = "gone".into();
    assert_eq!(
        dev.put_events(vec![event(99, "APP_EVENT")])
            .await
            .unwrap()
            .code,
        1186
    );
    let stored: i64 = server
        .sql()
        .await
        .scalar("SELECT count(*) FROM events")
        .await;
    assert_eq!(stored, 6, "only the accepted calls' events, each once");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_devices_lose_no_event() {
    let server = Arc::new(TestServer::start().await);
    let acked = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for d in 0..50 {
        let server = server.clone();
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            let mut dev = server.device(&format!("IMEI-C{d:03}"), "pw").await;
            dev.begin().await.unwrap();
            for call in 0..10 {
                let batch = (0..10).map(|n| event(call * 10 + n, "APP_EVENT")).collect();
                if dev.put_events(batch).await.is_none() {
                    acked.fetch_add(10, Ordering::SeqCst);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stored: i64 = server
        .sql()
        .await
        .scalar("SELECT count(*) FROM events")
        .await;
    assert_eq!(stored as usize, acked.load(Ordering::SeqCst));
    assert_eq!(stored, 5000);
    Arc::into_inner(server).unwrap().stop().await;
}

/// Events acknowledged before a `kill -9` are all in the database after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_a_kill() {
    let dir = TestDir::new().await;
    let process = ServerProcess::spawn(dir.path(), &["--database-url", dir.db.url()]);
    let connector = tls_client(&generated_cert(dir.path()));
    let addr = process.addr;
    let acked = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut senders = Vec::new();
    for d in 0..8 {
        let (connector, acked, stop) = (connector.clone(), acked.clone(), stop.clone());
        senders.push(tokio::spawn(async move {
            let mut dev = TestDevice {
                conn: Connection::open(&connector, addr).await,
                id: format!("IMEI-K{d}"),
                password: "pw".into(),
                session: String::new(),
            };
            dev.begin().await.unwrap();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let batch: Vec<_> = (0..10).map(|i| event(n + i, "APP_EVENT")).collect();
                n += 10;
                // Once the server is killed the call fails; only replies that arrived count.
                match dev.try_put_events(batch).await {
                    Some(None) => {
                        acked.fetch_add(10, Ordering::SeqCst);
                    }
                    Some(Some(e)) => panic!("refused: {e:?}"),
                    None => break,
                }
            }
        }));
    }
    // Let events flow, then kill the server mid-stream.
    while acked.load(Ordering::SeqCst) < 2000 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    process.kill();
    stop.store(true, Ordering::SeqCst);
    for s in senders {
        s.await.unwrap();
    }
    let acknowledged = acked.load(Ordering::SeqCst);

    // Restart on the same data directory and count.
    let config = dir.config();
    let app = mobile_admin::start(&config).await.unwrap();
    let stored = app.store.event_count().await.unwrap() as usize;
    assert!(
        stored >= acknowledged,
        "acknowledged {acknowledged} events but only {stored} survived"
    );
    app.stop().await;
}

/// Two event ids that share their first 256 characters are two events: both are acknowledged and
/// both are stored, and a resend of either stores nothing more.
#[tokio::test]
async fn long_event_ids_that_share_a_beginning_are_both_stored() {
    let server = TestServer::start().await;
    let mut dev = server.device("IMEI-LONG", "pw").await;
    dev.begin().await.unwrap();
    let stem = "e".repeat(300);
    let mut a = event(1, "APP_EVENT");
    a.event_id = format!("{stem}-first");
    let mut b = event(2, "APP_EVENT");
    b.event_id = format!("{stem}-second");
    assert!(dev.put_events(vec![a.clone()]).await.is_none());
    assert!(dev.put_events(vec![b.clone()]).await.is_none());
    assert!(dev.put_events(vec![a, b]).await.is_none(), "a resend");
    let db = server.sql().await;
    let rows: Vec<(String, String, i64)> = db
        .fetch_all("SELECT event_id, descr, truncated FROM events ORDER BY descr")
        .await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0].1, "event number 1");
    assert_eq!(rows[1].1, "event number 2");
    assert_ne!(rows[0].0, rows[1].0);
    assert!(rows.iter().all(|r| r.0.chars().count() == 256 && r.2 == 1));
    server.stop().await;
}
