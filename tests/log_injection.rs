//! What devices send never forges a log line or drives the terminal of whoever reads the log, and
//! control characters are not stored raw. A test binary of its own: it installs the process-wide
//! log subscriber and reads back what the server logged.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

#[tokio::test]
async fn device_text_cannot_forge_log_lines_and_throttled_logins_log_once() {
    let log = Captured::default();
    tracing_subscriber::fmt()
        .with_writer(log.clone())
        .with_ansi(false)
        .with_env_filter("info")
        .init();
    let server = TestServer::start_with(|c| {
        c.protocol.login_failures_per_device = 1;
        c.protocol.login_max_pair_delay_ms = 600;
    })
    .await;
    let mut dev = server.device("IMEI-LOG", "pw").await;
    dev.begin().await.unwrap();
    let forged = "\nERROR forged line \u{1b}[2J\u{1b}[31m";
    // A command answered with an error whose message carries the forgery (logged at info).
    let (command, _) = dev.heartbeat(Some(hashes(1, 2, 3, 4, 5))).await;
    assert_eq!(command.code, 5);
    let error = mobile_admin::soap::ParamError::new(1, "APP", format!("failed{forged}"));
    let (_, refused) = dev
        .put_result(mobile_admin::soap::Command {
            code: 5,
            data: Some(mobile_admin::soap::CmdData::Error(error)),
        })
        .await;
    assert!(refused.is_none());
    // An event whose id carries it, with a field cut so that the event id is logged.
    let mut e = event(1, "APP_EVENT");
    e.event_id = format!("evt{forged}");
    e.body.descr = Some("x".repeat(2000));
    e.body.par[0] = Some(format!("par{forged}"));
    assert!(dev.put_events(vec![e]).await.is_none());

    // Throttled: one attempt waits while a second one at the same time is turned away.
    let mut first = server.device("IMEI-LOG", "bad").await;
    for _ in 0..2 {
        assert_eq!(first.begin().await.unwrap_err().code, 1184);
    }
    let mut second = server.device("IMEI-LOG", "bad").await;
    let (a, b) = tokio::join!(first.begin(), second.begin());
    let codes = [a.unwrap_err().code, b.unwrap_err().code];
    assert!(codes.contains(&1195) && codes.contains(&1184), "{codes:?}");

    // Old clients that connect by IP address send it as the TLS server name, which is not allowed;
    // the server ignores it quietly (a warning for every such connection drowned the log).
    for _ in 0..3 {
        let output = tokio::process::Command::new("openssl")
            .args(["s_client", "-connect"])
            .arg(server.addr().to_string())
            .args(["-servername", "127.0.0.1"])
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .expect("openssl s_client runs");
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("BEGIN CERTIFICATE"),
            "handshake completed"
        );
    }

    let db = server.sql().await;
    let (id, par1): (String, String) = db.fetch_one("SELECT event_id, par1 FROM events").await;
    assert_eq!(id, "evt\nERROR forged line \\u{1b}[2J\\u{1b}[31m");
    assert_eq!(par1, "par\nERROR forged line \\u{1b}[2J\\u{1b}[31m");
    let message: String = db
        .scalar("SELECT last_error_message FROM device_sync")
        .await;
    assert_eq!(message, "failed\nERROR forged line \\u{1b}[2J\\u{1b}[31m");
    server.stop().await;

    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    assert!(!text.contains('\u{1b}'), "raw escape in the log:\n{text}");
    assert!(
        !text.lines().any(|l| l.starts_with("ERROR forged")),
        "a forged line:\n{text}"
    );
    assert!(text.contains("evt\\nERROR forged line"), "{text}");
    assert!(text.contains("failed\\nERROR forged line"), "{text}");
    let busy: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("throttled attempt"))
        .collect();
    assert_eq!(busy.len(), 1, "{busy:?}");
    assert!(!text.lines().any(|l| l.contains(" ERROR ")), "{text}");
    assert!(
        !text.lines().any(|l| l.contains("SNI")),
        "a line per connection by address:\n{text}"
    );
}
