//! The device port against hostile clients: password guessers, session and enrolment floods,
//! connection hogs. Each test plays the attacker and the rightful devices at different loopback
//! addresses (127.0.0.x) and checks that the attacker is slowed or refused while the others get in.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// A guesser hammering one device id from its own address is slowed down; the rightful device, from
/// another address, still logs in with its password after at most the short shared wait.
#[tokio::test]
async fn a_targeted_device_id_still_lets_its_owner_in() {
    let server = TestServer::start_with(|c| {
        c.protocol.login_failures_per_device = 3;
        c.protocol.login_max_shared_delay_ms = 300;
        c.protocol.login_max_pair_delay_ms = 1500;
    })
    .await;
    let mut owner = server.device_from("IMEI-T1", "right", "127.0.0.2").await;
    owner.begin().await.unwrap();

    let mut guesser = server.device_from("IMEI-T1", "guess", "127.0.0.3").await;
    for _ in 0..8 {
        let refused = guesser.begin().await.unwrap_err();
        assert_eq!(refused.code, 1184, "{refused:?}");
        assert_eq!(refused.message, "unknown device or wrong password");
    }
    // The guesser's own attempts now wait the longest (its pair's wait is at its cap).
    let started = Instant::now();
    assert_eq!(guesser.begin().await.unwrap_err().code, 1184);
    assert!(started.elapsed() >= Duration::from_millis(1500));

    // The owner waits at most the shared cap, and gets in.
    let started = Instant::now();
    owner.begin().await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(1500));
    // Its success cleared the device id's count: no wait at all now.
    owner.begin().await.unwrap();
    server.stop().await;
}

/// Parallel attempts of one guesser on one device id do not multiply its rate: while one throttled
/// attempt waits, the others are told to come back later.
#[tokio::test]
async fn a_guesser_gets_one_throttled_attempt_at_a_time() {
    let server = TestServer::start_with(|c| {
        c.protocol.login_failures_per_device = 1;
        c.protocol.login_max_pair_delay_ms = 1000;
    })
    .await;
    let mut first = server.device_from("IMEI-T2", "right", "127.0.0.2").await;
    first.begin().await.unwrap();
    let mut guessers = Vec::new();
    for _ in 0..4 {
        guessers.push(server.device_from("IMEI-T2", "guess", "127.0.0.5").await);
    }
    for g in guessers.iter_mut().take(3) {
        assert_eq!(g.begin().await.unwrap_err().code, 1184);
    }
    let results = futures_util::future::join_all(guessers.iter_mut().map(|g| g.begin())).await;
    let codes: Vec<i32> = results.into_iter().map(|r| r.unwrap_err().code).collect();
    assert_eq!(codes.iter().filter(|c| **c == 1184).count(), 1, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 1195).count(), 3, "{codes:?}");
    server.stop().await;
}

/// Fifty failures from one address (a guesser behind a NAT) do not lock out the other devices
/// behind that address, nor new devices enrolling from it.
#[tokio::test]
async fn devices_behind_a_guessers_address_still_get_in() {
    let server = TestServer::start_with(|c| {
        c.protocol.login_failures_per_address = 5;
        c.protocol.login_max_shared_delay_ms = 300;
    })
    .await;
    let mut neighbour = server.device_from("IMEI-N1", "mine", "127.0.0.4").await;
    neighbour.begin().await.unwrap();
    for i in 0..12 {
        let mut victim = server
            .device_from(&format!("IMEI-V{i}"), "pw", "127.0.0.6")
            .await;
        victim.begin().await.unwrap();
        let mut guesser = server
            .device_from(&format!("IMEI-V{i}"), "guess", "127.0.0.4")
            .await;
        assert_eq!(guesser.begin().await.unwrap_err().code, 1184);
    }
    let started = Instant::now();
    neighbour.begin().await.unwrap();
    let mut newcomer = server.device_from("IMEI-N2", "new", "127.0.0.4").await;
    newcomer.begin().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    server.stop().await;
}
