//! File-system tests of the updates directory: chunked reads, root containment, replaced files.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use mobile_admin::updates::{
    DownloadGuard, UpdatesDir, UpdatesError, DEFAULT_MAX_CHUNK, MAX_CHUNK_LIMIT,
};
use rand::{RngCore, SeedableRng};
use tempfile::TempDir;

/// A scratch area holding the updates root and, beside it, a directory that must stay out of reach.
struct Scratch {
    tmp: TempDir,
    updates: UpdatesDir,
}

impl Scratch {
    fn new(max_chunk: u32) -> Scratch {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("outside")).unwrap();
        fs::write(tmp.path().join("outside/secret.txt"), b"not for devices").unwrap();
        let updates = UpdatesDir::open(tmp.path().join("root"), max_chunk).unwrap();
        Scratch { tmp, updates }
    }

    fn root(&self) -> &Path {
        self.updates.root()
    }

    fn outside(&self) -> std::path::PathBuf {
        self.tmp.path().join("outside")
    }

    fn write(&self, name: &str, bytes: &[u8]) {
        let path = self.root().join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes).unwrap();
    }

    /// Errors go back to devices: they must not show where the server keeps its files.
    fn assert_no_paths(&self, err: &UpdatesError) {
        let tmp = self.tmp.path().to_string_lossy().into_owned();
        for text in [err.to_string(), format!("{err:?}")] {
            assert!(!text.contains(&tmp), "{text:?} shows a server path");
        }
    }

    async fn refused(&self, name: &str) -> &'static str {
        let err = self.updates.info(name).await.unwrap_err();
        self.assert_no_paths(&err);
        let UpdatesError::Refused(reason) = err else {
            panic!("info({name:?}): {err:?}")
        };
        let err = self.updates.chunk(name, 0, 100).await.unwrap_err();
        self.assert_no_paths(&err);
        assert!(
            matches!(err, UpdatesError::Refused(r) if r == reason),
            "chunk({name:?}): {err:?}"
        );
        reason
    }
}

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut bytes);
    bytes
}

/// Downloads `name` from 0 to the end in steps of `step`, checking every chunk on the way.
async fn download(updates: &UpdatesDir, name: &str, step: u64) -> Vec<u8> {
    let mut guard = DownloadGuard::new();
    let mut out = Vec::new();
    loop {
        let start = out.len() as u64;
        let chunk = updates.chunk(name, start, step).await.unwrap();
        guard.check(name, chunk.start, chunk.identity).unwrap();
        assert_eq!(chunk.start, start);
        assert_eq!(chunk.crc, crc32fast::hash(&chunk.data));
        let expected_len = step
            .min(u64::from(updates.max_chunk()))
            .min(chunk.full_size - start.min(chunk.full_size));
        assert_eq!(chunk.data.len() as u64, expected_len, "at {start}");
        if chunk.data.is_empty() {
            assert_eq!(chunk.crc, 0);
            assert_eq!(start, chunk.full_size);
            return out;
        }
        out.extend_from_slice(&chunk.data);
    }
}

#[tokio::test]
async fn a_large_file_reassembles_in_chunks_of_any_size() {
    let scratch = Scratch::new(MAX_CHUNK_LIMIT);
    let bytes = random_bytes(3 * 1024 * 1024 + 17, 1);
    scratch.write("bases/av-2024.dat", &bytes);
    for step in [1000, 4096, 12_345, 32_768, 65_539, 1 << 20, u64::MAX] {
        let got = download(&scratch.updates, "bases/av-2024.dat", step).await;
        assert!(got == bytes, "step {step}: reassembled bytes differ");
    }
}

#[tokio::test]
async fn many_devices_read_one_file_at_once() {
    let scratch = Scratch::new(DEFAULT_MAX_CHUNK);
    let bytes = random_bytes(1024 * 1024 + 3, 2);
    scratch.write("shared.bin", &bytes);
    let readers: Vec<_> = (0..16u64)
        .map(|i| {
            let updates = scratch.updates.clone();
            tokio::spawn(async move { download(&updates, "shared.bin", 7_000 + i * 1_111).await })
        })
        .collect();
    for reader in readers {
        assert!(reader.await.unwrap() == bytes);
    }
}

#[tokio::test]
async fn needed_size_is_capped() {
    let scratch = Scratch::new(DEFAULT_MAX_CHUNK);
    let bytes = random_bytes(100_000, 3);
    scratch.write("f.bin", &bytes);

    let chunk = scratch.updates.chunk("f.bin", 10, 1 << 20).await.unwrap();
    assert_eq!(chunk.data.len(), 32_768);
    assert_eq!(chunk.data, &bytes[10..10 + 32_768]);
    assert_eq!(chunk.full_size, 100_000);

    let chunk = scratch
        .updates
        .chunk("f.bin", 99_995, u64::MAX)
        .await
        .unwrap();
    assert_eq!(chunk.data, &bytes[99_995..]);
    assert_eq!(chunk.crc, crc32fast::hash(&bytes[99_995..]));

    let chunk = scratch.updates.chunk("f.bin", 10, 0).await.unwrap();
    assert!(chunk.data.is_empty());
    assert_eq!(chunk.crc, 0);
}

#[tokio::test]
async fn reading_at_or_past_the_end_gives_an_empty_chunk() {
    let scratch = Scratch::new(DEFAULT_MAX_CHUNK);
    scratch.write("f.bin", &random_bytes(5000, 4));
    for start in [5000, 5001, 1 << 40, u64::MAX] {
        let chunk = scratch.updates.chunk("f.bin", start, 100).await.unwrap();
        assert!(chunk.data.is_empty(), "at {start}");
        assert_eq!(chunk.crc, 0);
        assert_eq!(chunk.start, start);
        assert_eq!(chunk.full_size, 5000);
    }
}

#[tokio::test]
async fn an_empty_file_has_info_and_an_empty_chunk() {
    let scratch = Scratch::new(DEFAULT_MAX_CHUNK);
    scratch.write("empty.bin", b"");
    let info = scratch.updates.info("empty.bin").await.unwrap();
    assert!(!info.is_dir && info.readable);
    assert_eq!(info.size, 0);
    let chunk = scratch.updates.chunk("empty.bin", 0, 100).await.unwrap();
    assert!(chunk.data.is_empty());
    assert_eq!((chunk.crc, chunk.full_size), (0, 0));
}

#[tokio::test]
async fn file_info_reports_size_and_times() {
    let scratch = Scratch::new(DEFAULT_MAX_CHUNK);
    scratch.write("f.bin", &[7u8; 1234]);
    let info = scratch.updates.info("f.bin").await.unwrap();
    assert!(!info.is_dir && info.readable);
    assert_eq!(info.size, 1234);
    assert_eq!(info.identity.size(), 1234);
    let age = time::OffsetDateTime::now_utc() - info.created;
    assert!(age.whole_seconds().abs() < 300, "created {}", info.created);
}

#[tokio::test]
async fn directories_have_info_but_no_chunks() {
    let scratch = Scratch::new(DEFAULT_MAX_CHUNK);
    scratch.write("bases/daily/av.dat", b"x");
    for name in ["bases", "bases/", "bases\\daily", "./bases/daily/."] {
        let info = scratch.updates.info(name).await.unwrap();
        assert!(info.is_dir && info.readable, "{name:?}");
        assert_eq!(info.size, 0);
        assert!(matches!(
            scratch.updates.chunk(name, 0, 100).await,
            Err(UpdatesError::IsDirectory)
        ));
    }
}

#[tokio::test]
async fn nested_names_work_with_either_separator() {
    let scratch = Scratch::new(DEFAULT_MAX_CHUNK);
    scratch.write("a/b/c.bin", b"nested");
    for name in ["a/b/c.bin", "a\\b\\c.bin", "a\\b/c.bin", "./a//b\\\\c.bin"] {
        let chunk = scratch.updates.chunk(name, 0, 100).await.unwrap();
        assert_eq!(chunk.data, b"nested", "{name:?}");
    }
}

#[tokio::test]
async fn missing_files_are_not_found() {
    let scratch = Scratch::new(DEFAULT_MAX_CHUNK);
    scratch.write("f.bin", b"x");
    for name in ["nope.bin", "nodir/nope.bin", "f.bin/below-a-file"] {
        let err = scratch.updates.info(name).await.unwrap_err();
        assert!(
            matches!(err, UpdatesError::NotFound),
            "info({name:?}): {err:?}"
        );
        let err = scratch.updates.chunk(name, 0, 10).await.unwrap_err();
        assert!(
            matches!(err, UpdatesError::NotFound),
            "chunk({name:?}): {err:?}"
        );
        scratch.assert_no_paths(&err);
    }
}

#[tokio::test]
async fn invalid_names_never_reach_the_disk() {
    let scratch = Scratch::new(DEFAULT_MAX_CHUNK);
    // Each would name the secret if it were resolved.
    for name in [
        "../outside/secret.txt",
        "..\\outside\\secret.txt",
        "x/../../outside/secret.txt",
    ] {
        let err = scratch.updates.chunk(name, 0, 100).await.unwrap_err();
        assert!(
            matches!(err, UpdatesError::InvalidName(_)),
            "{name:?}: {err:?}"
        );
    }
    let absolute = scratch.outside().join("secret.txt");
    let err = scratch
        .updates
        .info(absolute.to_str().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, UpdatesError::InvalidName(_)), "{err:?}");
}

#[tokio::test]
async fn a_link_to_a_file_outside_is_refused() {
    let scratch = Scratch::new(DEFAULT_MAX_CHUNK);
    symlink(
        scratch.outside().join("secret.txt"),
        scratch.root().join("abs"),
    )
    .unwrap();
    symlink("../outside/secret.txt", scratch.root().join("rel")).unwrap();
    // A chain: an inside link pointing at a link that leaves.
    symlink("rel", scratch.root().join("chain")).unwrap();
    for name in ["abs", "rel", "chain"] {
        let reason = scratch.refused(name).await;
        assert_eq!(reason, "the name leads outside the updates directory");
    }
}

#[tokio::test]
async fn a_linked_directory_leading_outside_is_refused() {
    let scratch = Scratch::new(DEFAULT_MAX_CHUNK);
    symlink(scratch.outside(), scratch.root().join("escape")).unwrap();
    symlink("..", scratch.root().join("up")).unwrap();
    for name in ["escape", "escape/secret.txt", "up", "up/outside/secret.txt"] {
        let reason = scratch.refused(name).await;
        assert_eq!(reason, "the name leads outside the updates directory");
    }
}

#[tokio::test]
async fn links_inside_the_root_are_followed() {
    let scratch = Scratch::new(DEFAULT_MAX_CHUNK);
    scratch.write("real/v2.bin", b"version two");
    symlink("real/v2.bin", scratch.root().join("current.bin")).unwrap();
    symlink(scratch.root().join("real"), scratch.root().join("latest")).unwrap();
    symlink("../real/v2.bin", scratch.root().join("real/alias.bin")).unwrap();
    for name in [
        "current.bin",
        "latest/v2.bin",
        "real/alias.bin",
        "latest/alias.bin",
    ] {
        let chunk = scratch.updates.chunk(name, 0, 100).await.unwrap();
        assert_eq!(chunk.data, b"version two", "{name:?}");
    }
    assert!(scratch.updates.info("latest").await.unwrap().is_dir);
}

#[tokio::test]
async fn special_files_are_refused() {
    let scratch = Scratch::new(DEFAULT_MAX_CHUNK);
    let _socket = std::os::unix::net::UnixListener::bind(scratch.root().join("sock")).unwrap();
    let reason = scratch.refused("sock").await;
    assert_eq!(reason, "not a regular file or directory");
}

#[tokio::test]
async fn an_unreadable_file_is_reported_as_such() {
    use std::os::unix::fs::PermissionsExt;
    let scratch = Scratch::new(DEFAULT_MAX_CHUNK);
    scratch.write("locked.bin", b"x");
    let path = scratch.root().join("locked.bin");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o000)).unwrap();
    if fs::File::open(&path).is_ok() {
        // Running with privileges that bypass permission checks: nothing to observe here.
        eprintln!("skipped: this process can read mode-000 files");
        return;
    }
    let info = scratch.updates.info("locked.bin").await.unwrap();
    assert!(!info.readable && !info.is_dir);
    assert_eq!(info.size, 1);
    let err = scratch
        .updates
        .chunk("locked.bin", 0, 10)
        .await
        .unwrap_err();
    assert!(matches!(err, UpdatesError::Refused(_)), "{err:?}");
}

#[tokio::test]
async fn a_file_replaced_by_rename_between_chunks_is_caught() {
    let scratch = Scratch::new(DEFAULT_MAX_CHUNK);
    scratch.write("f.bin", &random_bytes(100_000, 5));
    let mut guard = DownloadGuard::new();

    let info = scratch.updates.info("f.bin").await.unwrap();
    guard.note_info("f.bin", info.identity);
    let first = scratch.updates.chunk("f.bin", 0, 32_768).await.unwrap();
    guard.check("f.bin", first.start, first.identity).unwrap();

    // How publishing tools install a new version: write beside, rename over.
    let new = random_bytes(100_000, 6);
    scratch.write("f.bin.tmp", &new);
    fs::rename(
        scratch.root().join("f.bin.tmp"),
        scratch.root().join("f.bin"),
    )
    .unwrap();

    let second = scratch
        .updates
        .chunk("f.bin", 32_768, 32_768)
        .await
        .unwrap();
    assert_ne!(second.identity, first.identity);
    assert!(matches!(
        guard.check("f.bin", second.start, second.identity),
        Err(UpdatesError::Changed)
    ));
    // The device cannot carry on where it was; it must start over.
    assert!(matches!(
        guard.check("f.bin", second.start, second.identity),
        Err(UpdatesError::Changed)
    ));
    let restart = scratch.updates.chunk("f.bin", 0, 32_768).await.unwrap();
    guard
        .check("f.bin", restart.start, restart.identity)
        .unwrap();
    assert_eq!(restart.data, &new[..32_768]);
    let next = scratch
        .updates
        .chunk("f.bin", 32_768, 32_768)
        .await
        .unwrap();
    guard.check("f.bin", next.start, next.identity).unwrap();
    assert_eq!(next.data, &new[32_768..65_536]);
}

#[tokio::test]
async fn a_file_rewritten_in_place_between_chunks_is_caught() {
    let scratch = Scratch::new(DEFAULT_MAX_CHUNK);
    scratch.write("f.bin", &random_bytes(100_000, 7));
    let path = scratch.root().join("f.bin");
    let inode = fs::metadata(&path).unwrap().ino();
    let mut guard = DownloadGuard::new();

    let first = scratch.updates.chunk("f.bin", 0, 32_768).await.unwrap();
    guard.check("f.bin", first.start, first.identity).unwrap();

    let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    std::io::Write::write_all(&mut &file, &random_bytes(120_000, 8)).unwrap();
    file.set_modified(UNIX_EPOCH + Duration::from_secs(2_000_000_000))
        .unwrap();
    drop(file);
    assert_eq!(fs::metadata(&path).unwrap().ino(), inode, "not in place");

    let second = scratch
        .updates
        .chunk("f.bin", 32_768, 32_768)
        .await
        .unwrap();
    assert_eq!(second.full_size, 120_000);
    assert!(matches!(
        guard.check("f.bin", second.start, second.identity),
        Err(UpdatesError::Changed)
    ));
}

#[tokio::test]
async fn a_same_size_rewrite_with_a_new_mtime_is_caught() {
    let scratch = Scratch::new(DEFAULT_MAX_CHUNK);
    scratch.write("f.bin", &random_bytes(50_000, 9));
    let path = scratch.root().join("f.bin");
    let mut guard = DownloadGuard::new();

    let first = scratch.updates.chunk("f.bin", 0, 10_000).await.unwrap();
    guard.check("f.bin", first.start, first.identity).unwrap();

    let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &[0u8; 10_000], 20_000).unwrap();
    file.set_modified(UNIX_EPOCH + Duration::from_secs(1_500_000_000))
        .unwrap();
    drop(file);

    let second = scratch
        .updates
        .chunk("f.bin", 10_000, 10_000)
        .await
        .unwrap();
    assert_eq!(second.full_size, 50_000);
    assert!(matches!(
        guard.check("f.bin", second.start, second.identity),
        Err(UpdatesError::Changed)
    ));
}

#[test]
fn opening_creates_a_missing_root_and_checks_the_cap() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("not/yet/there");
    let updates = UpdatesDir::open(&root, DEFAULT_MAX_CHUNK).unwrap();
    assert!(root.is_dir());
    assert_eq!(updates.root(), fs::canonicalize(&root).unwrap());
    assert!(UpdatesDir::open(&root, MAX_CHUNK_LIMIT).is_ok());
    for bad in [0, MAX_CHUNK_LIMIT + 1] {
        assert!(matches!(
            UpdatesDir::open(&root, bad),
            Err(UpdatesError::Io(_))
        ));
    }
    fs::write(tmp.path().join("a-file"), b"x").unwrap();
    assert!(UpdatesDir::open(tmp.path().join("a-file"), DEFAULT_MAX_CHUNK).is_err());
}
