//! Sessions kept in the database (for several nodes), on the backend under test: the same expiry
//! rules as in memory, the sync in progress carried whole, and expired rows swept.

mod common;

use std::time::Duration;

use common::*;
use mobile_admin::sessions::{
    Awaiting, Expiry, ReportedHashes, Session, SessionLimits, Sessions, StoredSessions, SyncRun,
};
use mobile_admin::sync::{Known, Progress, Step};
use time::OffsetDateTime;

#[tokio::test]
async fn stored_sessions_expire_like_memory_ones_and_are_swept() {
    let dir = TestDir::new().await;
    let store = mobile_admin::store::open(dir.db.url()).await.unwrap();
    let device = register(&store, "IMEI-S1").await;
    let sessions = StoredSessions::new(
        store.clone(),
        Expiry {
            idle: Duration::from_secs(10),
            absolute: Duration::from_secs(25),
        },
        SessionLimits::default(),
    );
    // Whole seconds: PostgreSQL keeps microseconds, and the test compares what comes back.
    let t0 =
        OffsetDateTime::from_unix_timestamp(OffsetDateTime::now_utc().unix_timestamp()).unwrap();
    let at = |secs: i64| t0 + time::Duration::seconds(secs);

    let s = Session::new(device, "IMEI-S1", t0);
    let id = s.id.clone();
    sessions.insert(s).await.unwrap();
    let got = sessions.get(&id, at(9)).await.unwrap().expect("live");
    assert_eq!(
        (
            got.device,
            got.device_id.as_str(),
            got.created,
            got.last_used
        ),
        (device, "IMEI-S1", t0, at(9))
    );
    assert!(
        sessions.get(&id, at(18)).await.unwrap().is_some(),
        "idle timer refreshed by the previous get"
    );
    assert!(
        sessions.get(&id, at(26)).await.unwrap().is_none(),
        "absolute lifetime"
    );
    assert!(
        !sessions.remove(&id).await.unwrap(),
        "an expired session was deleted when it was looked up"
    );

    let s = Session::new(device, "IMEI-S1", t0);
    let id = s.id.clone();
    sessions.insert(s).await.unwrap();
    assert!(sessions.get(&id, at(11)).await.unwrap().is_none(), "idle");

    // The sync in progress survives the trip through the database, settings tree included.
    let mut s = Session::new(device, "IMEI-S1", t0);
    let mut progress = Progress::default();
    progress.mark(Step::AppInfoGet);
    let run = SyncRun {
        reported: ReportedHashes {
            info: vec![1; 16],
            state: vec![2; 16],
            stgs: vec![3; 16],
            pol: vec![4; 16],
            sbsc: vec![5; 16],
        },
        known: Known {
            info_hash: Some(vec![9; 16]),
            settings_pending: true,
            ..Known::default()
        },
        group_id: 2,
        progress,
        awaiting: Some(Awaiting::SettingsPut {
            tree: settings_tree(3),
            rev: 7,
        }),
        commands_sent: 2,
    };
    s.sync = Some(run.clone());
    let id = s.id.clone();
    sessions.insert(s).await.unwrap();
    let mut got = sessions.get(&id, at(1)).await.unwrap().unwrap();
    assert_eq!(got.sync.as_ref(), Some(&run));
    got.sync = None;
    sessions.update(&got).await.unwrap();
    assert_eq!(sessions.get(&id, at(2)).await.unwrap().unwrap().sync, None);
    assert!(sessions.remove(&id).await.unwrap());
    assert!(!sessions.remove(&id).await.unwrap());
    // Updating a session that ended meanwhile does not bring it back.
    sessions.update(&got).await.unwrap();
    assert!(sessions.get(&id, at(3)).await.unwrap().is_none());

    // The sweep drops what expired and keeps the rest.
    sessions
        .insert(Session::new(device, "IMEI-S1", t0))
        .await
        .unwrap();
    sessions
        .insert(Session::new(device, "IMEI-S1", at(5)))
        .await
        .unwrap();
    assert_eq!(sessions.sweep(at(12)).await.unwrap(), 1);
    let db = dir.db.sql().await;
    assert_eq!(db.scalar::<i64>("SELECT count(*) FROM sessions").await, 1);
    db.close().await;
    store.close().await;
}

#[tokio::test]
async fn sessions_live_in_the_database_when_shared_and_by_default_on_postgres() {
    let dir = TestDir::new().await;
    let store = mobile_admin::store::open(dir.db.url()).await.unwrap();
    let device = register(&store, "IMEI-S2").await;
    let db = dir.db.sql().await;
    let default_shared = backend() == Backend::Postgres;
    for (setting, shared) in [
        (None, default_shared),
        (Some(true), true),
        (Some(false), false),
    ] {
        let sessions = mobile_admin::sessions::for_store(
            store.clone(),
            setting,
            Expiry::default(),
            SessionLimits::default(),
        );
        let s = Session::new(device, "IMEI-S2", OffsetDateTime::now_utc());
        let id = s.id.clone();
        sessions.insert(s).await.unwrap();
        let rows: i64 = db
            .scalar(&format!("SELECT count(*) FROM sessions WHERE id = '{id}'"))
            .await;
        assert_eq!(rows == 1, shared, "shared_sessions = {setting:?}");
        assert!(sessions.remove(&id).await.unwrap());
    }
    db.close().await;
    store.close().await;
}
