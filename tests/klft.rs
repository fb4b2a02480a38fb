//! klft-GetFileInfo / klft-GetNextFileChunk over real TLS: whole downloads, caps, path tricks, replacement.

mod common;

use common::*;
use rand::RngCore;

fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::rng().fill_bytes(&mut v);
    v
}

#[tokio::test]
async fn a_file_of_a_few_megabytes_downloads_byte_for_byte() {
    let server = TestServer::start().await;
    let updates = server.config.updates_dir();
    std::fs::create_dir_all(updates.join("bases/daily")).unwrap();
    let content = random_bytes(3 * 1024 * 1024 + 123);
    std::fs::write(updates.join("bases/daily/av.bin"), &content).unwrap();
    let mut dev = server.device("IMEI-F1", "pw").await;
    dev.begin().await.unwrap();

    // Backslashes separate too, as Windows Mobile devices write them.
    let info = dev.file_info("bases\\daily\\av.bin").await.unwrap();
    assert!(!info.is_dir && info.read_permission);
    assert_eq!(info.full_file_size, content.len() as u64);
    let downloaded = dev.download("bases/daily/av.bin", 32768).await.unwrap();
    assert_eq!(downloaded, content);

    // Chunk sizes are capped at the configured maximum (default 32768).
    let chunk = dev
        .chunk("bases/daily/av.bin", 0, 10_000_000)
        .await
        .unwrap();
    assert_eq!(chunk.buff.len(), 32768);
    // At or past the end: an empty chunk with CRC 0, not an error.
    for start in [content.len() as u64, content.len() as u64 + 5000, u64::MAX] {
        let chunk = dev.chunk("bases/daily/av.bin", start, 100).await.unwrap();
        assert!(chunk.buff.is_empty());
        assert_eq!(chunk.crc, 0);
    }
    // The last partial chunk.
    let tail = dev
        .chunk("bases/daily/av.bin", content.len() as u64 - 10, 100)
        .await
        .unwrap();
    assert_eq!(tail.buff, content[content.len() - 10..]);

    // Directories report isDir.
    let dir = dev.file_info("bases/daily").await.unwrap();
    assert!(dir.is_dir);
    assert_eq!(dev.chunk("bases", 0, 10).await.unwrap_err().code, 1187);
    server.stop().await;
}

#[tokio::test]
async fn the_chunk_cap_is_configurable_up_to_one_mebibyte() {
    let server = TestServer::start_with(|c| c.protocol.max_chunk_bytes = 1 << 20).await;
    let updates = server.config.updates_dir();
    let content = random_bytes(3 << 20);
    std::fs::write(updates.join("big.bin"), &content).unwrap();
    let mut dev = server.device("IMEI-F2", "pw").await;
    dev.begin().await.unwrap();
    let chunk = dev.chunk("big.bin", 0, 5 << 20).await.unwrap();
    assert_eq!(chunk.buff.len(), 1 << 20);
    assert_eq!(dev.download("big.bin", 1 << 20).await.unwrap(), content);
    server.stop().await;
}

#[tokio::test]
async fn path_tricks_are_refused_without_revealing_server_paths() {
    let server = TestServer::start().await;
    let updates = server.config.updates_dir();
    let outside = server.dir.path().join("secret.txt");
    std::fs::write(&outside, "do not serve").unwrap();
    std::fs::write(updates.join("ok.txt"), "fine").unwrap();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&outside, updates.join("link-out")).unwrap();
        std::os::unix::fs::symlink(server.dir.path(), updates.join("dir-out")).unwrap();
        std::os::unix::fs::symlink(updates.join("ok.txt"), updates.join("link-in")).unwrap();
    }
    let mut dev = server.device("IMEI-F3", "pw").await;
    dev.begin().await.unwrap();
    let tricks = [
        "/etc/passwd",
        "\\Windows\\win.ini",
        "../secret.txt",
        "..\\secret.txt",
        "a/../../secret.txt",
        "C:\\boot.ini",
        "c:secret.txt",
        "ok.txt:stream",
        "\\\\server\\share\\x",
        "",
        "link-out",
        "dir-out/secret.txt",
    ];
    let root = server.dir.path().to_string_lossy().to_string();
    for name in tricks {
        for result in [
            dev.file_info(name).await.map(|_| ()),
            dev.chunk(name, 0, 100).await.map(|_| ()),
        ] {
            let e = result.expect_err(name);
            assert!(
                [1187, 1193].contains(&e.code),
                "{name:?}: {} {}",
                e.code,
                e.message
            );
            assert!(!e.message.contains(&root), "{name:?} leaks {}", e.message);
        }
    }
    // NUL cannot be written in XML 1.0; a character reference to it is refused before any file access.
    let body = format!(
        r#"<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" xmlns:aklwngt="http://tempuri.org/aklwngt.xsd"><SOAP-ENV:Body><aklwngt:klft-GetFileInfo><szSessionId>{}</szSessionId><fileName>ok.txt&#0;.png</fileName></aklwngt:klft-GetFileInfo></SOAP-ENV:Body></SOAP-ENV:Envelope>"#,
        dev.session
    );
    let (status, reply) = dev.conn.post(body).await;
    let reply = String::from_utf8_lossy(&reply).to_string();
    assert!(
        status == 500 || reply.contains("<code>1187</code>") || reply.contains("<code>1192</code>"),
        "{status} {reply}"
    );
    assert!(!reply.contains("<info>"), "{reply}");
    // Links that stay inside are fine, and a missing file is "not found".
    assert_eq!(dev.download("link-in", 1000).await.unwrap(), b"fine");
    assert_eq!(dev.file_info("missing.bin").await.unwrap_err().code, 1186);
    assert_eq!(
        dev.chunk("missing.bin", 0, 10).await.unwrap_err().code,
        1186
    );
    // Only within a session.
    dev.session = "nope".into();
    assert_eq!(dev.file_info("ok.txt").await.unwrap_err().code, 1186);
    server.stop().await;
}

/// A file replaced while a device downloads it: the device is told to start again, never handed a
/// mix of old and new bytes with valid CRCs.
#[tokio::test]
async fn a_file_replaced_mid_download_is_reported_and_restarts_cleanly() {
    let server = TestServer::start().await;
    let updates = server.config.updates_dir();
    let old = random_bytes(200_000);
    let new = random_bytes(210_000);
    std::fs::write(updates.join("upd.bin"), &old).unwrap();
    let mut dev = server.device("IMEI-F4", "pw").await;
    dev.begin().await.unwrap();
    dev.file_info("upd.bin").await.unwrap();
    let first = dev.chunk("upd.bin", 0, 32768).await.unwrap();
    assert_eq!(first.buff, old[..32768]);

    // Atomic replacement, as an update job would do it.
    let tmp = updates.join("upd.bin.tmp");
    std::fs::write(&tmp, &new).unwrap();
    std::fs::rename(&tmp, updates.join("upd.bin")).unwrap();

    let refused = dev.chunk("upd.bin", 32768, 32768).await.unwrap_err();
    assert_eq!(refused.code, 1195);
    assert!(
        refused.message.contains("position 0"),
        "{}",
        refused.message
    );
    // Continuing at the old offset stays refused; starting again from 0 gets the new file whole.
    assert_eq!(
        dev.chunk("upd.bin", 65536, 32768).await.unwrap_err().code,
        1195
    );
    assert_eq!(dev.download("upd.bin", 32768).await.unwrap(), new);
    server.stop().await;
}
