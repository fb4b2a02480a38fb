//! Read access to the updates directory for `klft-GetFileInfo` and `klft-GetNextFileChunk`.
//!
//! This is the file layer under the two operations: no SOAP, no sockets. It turns a device's
//! `fileName` into a file under the configured root, answers file information, and reads bounded
//! chunks with their CRC-32.
//!
//! # Names
//!
//! [`sanitize`] is the only way in. A name is relative; `/` and `\` both separate components;
//! empty components and `.` are dropped. Refused, with a fixed reason that never mentions a server
//! path: empty names, absolute paths and UNC forms (a leading separator), `..` components (and
//! components made only of dots and spaces, which Windows file servers trim to `..`), any `:` (drive
//! letters, alternate data streams), control characters including NUL, and over-long names.
//!
//! # Staying under the root
//!
//! Symbolic links inside the root are followed; anything that resolves outside it is refused.
//! Checking a path and then opening it is a race (a component can be swapped for a link in
//! between), so every access is verified on the opened handle:
//! 1. the candidate path is canonicalized and must lie under the canonical root;
//! 2. the canonical path is `lstat`ed: it must be a regular file or a directory (opening a FIFO
//!    would block a thread; sockets and devices are not update files);
//! 3. it is opened, and the handle's (device, inode) must equal step 2's, which catches the last
//!    component being swapped after step 1 (an atomic replacement in that window is retried);
//! 4. on Linux the kernel's own name for the open handle (`/proc/self/fd/N`) must lie under the
//!    root, which catches an intermediate directory swapped for a link. Without `/proc` only steps
//!    1-3 remain, which leaves that narrow window to whoever can write into the updates directory.
//!
//! A FIFO swapped in between steps 2 and 3 can still block one blocking-pool thread; only someone
//! with write access to the updates directory can do that.
//!
//! # Chunks
//!
//! A chunk is `min(needed, max_chunk, size - start)` bytes read with one positioned read on a
//! blocking-pool thread, into a buffer of exactly that size: memory is bounded by the cap and many
//! devices read the same file at once without sharing a cursor. Every call opens the file afresh,
//! so a replaced file is seen at the next chunk. Reading at or past the end gives an empty chunk
//! (CRC 0), not an error.
//!
//! # Replaced files
//!
//! A device must never silently receive a mix of two versions with valid CRCs. Two checks:
//! - within one read, the handle's [`FileIdentity`] (device, inode, size, mtime and ctime in
//!   nanoseconds) is taken before and after; any difference gives [`UpdatesError::Changed`];
//! - across chunks, a [`DownloadGuard`] kept per session remembers the identity seen at the chunk
//!   with `start == 0` (or at the file's info) and answers `Changed` when a later chunk of that name
//!   comes from another identity. The name then requires a restart from 0: further chunks at a
//!   non-zero offset keep getting `Changed` until the device asks for offset 0 again, so a device
//!   that simply retries cannot stitch the new version onto the old bytes.
//!
//! Limits, by design:
//! - A chunk at a non-zero offset for a name the guard has not seen is accepted and recorded,
//!   because a device may resume a download across sessions. If the file was replaced between
//!   those sessions, the device gets a mix; the server cannot know which version the earlier bytes
//!   came from. Publishing new versions under new names avoids this entirely.
//! - The guard holds [`GUARD_CAPACITY`] names and evicts the least recently used; an evicted name
//!   is treated as a resumption.
//! - An in-place rewrite is detected through its size and timestamps. Timestamps move in clock
//!   ticks (a few milliseconds on Linux), so a same-size rewrite within one tick of the previous
//!   write can go unnoticed. Replacing a file by renaming a new one over it changes the inode, which
//!   is detected whatever the timestamps say.
//!
//! This module uses Unix file metadata and positioned reads; the server targets Unix systems.

use std::collections::VecDeque;
use std::fmt;
use std::fs::{self, File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;

/// The chunk cap of the original protocol, used when the configuration says nothing.
pub const DEFAULT_MAX_CHUNK: u32 = 32 * 1024;
/// The largest chunk cap a configuration may set (1 MiB).
pub const MAX_CHUNK_LIMIT: u32 = 1024 * 1024;
/// The longest accepted `fileName`, in bytes.
pub const MAX_NAME_BYTES: usize = 1024;
/// The longest accepted component of a `fileName`, in bytes (the usual file system limit).
pub const MAX_COMPONENT_BYTES: usize = 255;
/// How many file names one [`DownloadGuard`] remembers.
pub const GUARD_CAPACITY: usize = 64;

/// Attempts at opening a name whose path keeps changing under us before giving up with `Changed`.
const OPEN_ATTEMPTS: usize = 3;

const OUTSIDE_ROOT: &str = "the name leads outside the updates directory";
const NOT_REGULAR: &str = "not a regular file or directory";
const NOT_READABLE: &str = "permission denied";

/// Why an update file cannot be served. Display texts are fixed or come from the operating system;
/// none contains a server path.
#[derive(Debug, thiserror::Error)]
pub enum UpdatesError {
    /// The name breaks the naming rules; the text says which one.
    #[error("invalid file name: {0}")]
    InvalidName(&'static str),
    /// The name is well formed but leads to something that may not be served (outside the root,
    /// a special file, no permission); the text says which.
    #[error("file refused: {0}")]
    Refused(&'static str),
    /// No such file.
    #[error("file not found")]
    NotFound,
    /// Chunks were asked of a directory.
    #[error("is a directory")]
    IsDirectory,
    /// The file was replaced or rewritten during the download; restart it from offset 0.
    #[error("the file changed during the download; restart from the beginning")]
    Changed,
    /// Any other failure of the file system.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

/// A `fileName` that passed [`sanitize`]: non-empty components joined with `/`, none of them `.`
/// or `..`, no separators, colons or control characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RelativeName(String);

impl RelativeName {
    /// The normalised name, components joined with `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The components, in order.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The name as a relative path made only of normal components.
    pub fn to_path_buf(&self) -> PathBuf {
        self.components().collect()
    }
}

impl fmt::Display for RelativeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a device-supplied `fileName` against the naming rules (see the module documentation) and
/// normalises it. Pure: it never touches the file system.
pub fn sanitize(file_name: &str) -> Result<RelativeName, UpdatesError> {
    use UpdatesError::InvalidName;
    if file_name.is_empty() {
        return Err(InvalidName("empty name"));
    }
    if file_name.len() > MAX_NAME_BYTES {
        return Err(InvalidName("name too long"));
    }
    if file_name.chars().any(char::is_control) {
        return Err(InvalidName("control character in name"));
    }
    if file_name.contains(':') {
        return Err(InvalidName("':' is not allowed (drive letters, streams)"));
    }
    if file_name.starts_with(['/', '\\']) {
        return Err(InvalidName("absolute path"));
    }
    let mut parts = Vec::new();
    for part in file_name.split(['/', '\\']) {
        if part.is_empty() || part == "." {
            continue;
        }
        if part == ".." {
            return Err(InvalidName("'..' component"));
        }
        if part.chars().all(|c| c == '.' || c == ' ') {
            return Err(InvalidName("component made only of dots and spaces"));
        }
        if part.len() > MAX_COMPONENT_BYTES {
            return Err(InvalidName("name component too long"));
        }
        parts.push(part);
    }
    if parts.is_empty() {
        return Err(InvalidName("empty name"));
    }
    Ok(RelativeName(parts.join("/")))
}

/// What distinguishes one version of a file from another: device, inode, size, and modification
/// and change times in nanoseconds. The change time is included because tools that rewrite in place
/// may restore the modification time, but nothing can set the change time back.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct FileIdentity {
    dev: u64,
    inode: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileIdentity {
    fn of(meta: &Metadata) -> FileIdentity {
        FileIdentity {
            dev: meta.dev(),
            inode: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
        }
    }

    /// The file's size in bytes when the identity was taken.
    pub fn size(&self) -> u64 {
        self.size
    }
}

/// What `klft-GetFileInfo` reports.
#[derive(Clone, Debug)]
pub struct FileMeta {
    pub is_dir: bool,
    pub readable: bool,
    /// Creation time where the file system records it, else the modification time.
    pub created: OffsetDateTime,
    /// The file's size; 0 for a directory.
    pub size: u64,
    pub identity: FileIdentity,
}

impl FileMeta {
    fn new(meta: &Metadata, readable: bool) -> FileMeta {
        let created = meta
            .created()
            .or_else(|_| meta.modified())
            .map(to_offset_date_time)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        FileMeta {
            is_dir: meta.is_dir(),
            readable,
            created,
            size: if meta.is_dir() { 0 } else { meta.size() },
            identity: FileIdentity::of(meta),
        }
    }
}

fn to_offset_date_time(t: SystemTime) -> OffsetDateTime {
    let nanos = match t.duration_since(UNIX_EPOCH) {
        Ok(after) => i128::try_from(after.as_nanos()).unwrap_or(i128::MAX),
        Err(before) => i128::try_from(before.duration().as_nanos()).map_or(i128::MIN, |n| -n),
    };
    OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// What `klft-GetNextFileChunk` returns.
#[derive(Clone, Debug)]
pub struct Chunk {
    pub data: Vec<u8>,
    /// CRC-32 (IEEE) of `data`; 0 when `data` is empty.
    pub crc: u32,
    /// The offset asked for, echoed.
    pub start: u64,
    pub full_size: u64,
    /// The version of the file the bytes come from; give it to the session's [`DownloadGuard`].
    pub identity: FileIdentity,
}

/// The updates directory. Cheap to clone; all clones share one configuration.
#[derive(Clone, Debug)]
pub struct UpdatesDir {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Canonical: no symbolic links, no `.` or `..`.
    root: PathBuf,
    /// The kernel's name for the root directory, when `/proc/self/fd` is available.
    kernel_root: Option<PathBuf>,
    max_chunk: u32,
}

enum Opened {
    Readable {
        file: File,
        meta: Metadata,
    },
    /// Exists under the root, but opening it was denied; `meta` comes from `lstat`.
    Unreadable {
        meta: Metadata,
    },
}

impl UpdatesDir {
    /// Opens the updates directory at `root`, creating it if missing. `max_chunk` caps every chunk
    /// and must be between 1 and [`MAX_CHUNK_LIMIT`].
    pub fn open(root: impl Into<PathBuf>, max_chunk: u32) -> Result<UpdatesDir, UpdatesError> {
        if max_chunk == 0 || max_chunk > MAX_CHUNK_LIMIT {
            return Err(UpdatesError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the chunk cap must be between 1 and 1048576 bytes",
            )));
        }
        let root = root.into();
        fs::create_dir_all(&root)?;
        let root = fs::canonicalize(&root)?;
        let handle = File::open(&root)?;
        if !handle.metadata()?.is_dir() {
            return Err(UpdatesError::Io(io::Error::new(
                io::ErrorKind::NotADirectory,
                "the updates directory is not a directory",
            )));
        }
        let kernel_root = kernel_path(&handle);
        Ok(UpdatesDir {
            inner: Arc::new(Inner {
                root,
                kernel_root,
                max_chunk,
            }),
        })
    }

    /// The canonical root directory (for the server's own logs; never send it to a device).
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The configured chunk cap.
    pub fn max_chunk(&self) -> u32 {
        self.inner.max_chunk
    }

    /// Information on a file or directory under the root. A file that exists but cannot be opened
    /// is reported with `readable` false.
    pub async fn info(&self, file_name: &str) -> Result<FileMeta, UpdatesError> {
        let name = sanitize(file_name)?;
        let inner = Arc::clone(&self.inner);
        blocking(move || match inner.open(&name)? {
            Opened::Readable { meta, .. } => Ok(FileMeta::new(&meta, true)),
            Opened::Unreadable { meta } => Ok(FileMeta::new(&meta, false)),
        })
        .await
    }

    /// Reads up to `needed` bytes (at most the configured cap) at offset `start`.
    pub async fn chunk(
        &self,
        file_name: &str,
        start: u64,
        needed: u64,
    ) -> Result<Chunk, UpdatesError> {
        let name = sanitize(file_name)?;
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            let (file, meta) = match inner.open(&name)? {
                Opened::Readable { file, meta } => (file, meta),
                Opened::Unreadable { .. } => return Err(UpdatesError::Refused(NOT_READABLE)),
            };
            if meta.is_dir() {
                return Err(UpdatesError::IsDirectory);
            }
            read_chunk_with(
                &file,
                FileIdentity::of(&meta),
                start,
                needed,
                inner.max_chunk,
                || {},
            )
        })
        .await
    }
}

impl Inner {
    /// Opens `name` under the root, verifying the open handle (see the module documentation).
    fn open(&self, name: &RelativeName) -> Result<Opened, UpdatesError> {
        let candidate = self.root.join(name.to_path_buf());
        for _ in 0..OPEN_ATTEMPTS {
            let canonical = fs::canonicalize(&candidate).map_err(lookup_error)?;
            if !canonical.starts_with(&self.root) {
                return Err(self.outside(name));
            }
            let at_path = match fs::symlink_metadata(&canonical) {
                Ok(meta) => meta,
                // Renamed or removed since canonicalize: look again.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(lookup_error(e)),
            };
            let kind = at_path.file_type();
            if kind.is_symlink() {
                continue;
            }
            if !kind.is_file() && !kind.is_dir() {
                return Err(UpdatesError::Refused(NOT_REGULAR));
            }
            let file = match File::open(&canonical) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                    return Ok(Opened::Unreadable { meta: at_path });
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            let meta = file.metadata()?;
            if (meta.dev(), meta.ino()) != (at_path.dev(), at_path.ino()) {
                continue;
            }
            if !self.handle_is_under_root(&file) {
                return Err(self.outside(name));
            }
            return Ok(Opened::Readable { file, meta });
        }
        Err(UpdatesError::Changed)
    }

    /// Without `/proc` there is nothing more to learn from the handle, and the path checks stand.
    fn handle_is_under_root(&self, file: &File) -> bool {
        match (&self.kernel_root, kernel_path(file)) {
            (Some(root), Some(actual)) => actual.starts_with(root),
            _ => true,
        }
    }

    fn outside(&self, name: &RelativeName) -> UpdatesError {
        // Either a misconfigured link or someone probing: worth an administrator's attention.
        tracing::warn!(file_name = %name, "update file resolves outside the updates directory");
        UpdatesError::Refused(OUTSIDE_ROOT)
    }
}

fn lookup_error(e: io::Error) -> UpdatesError {
    match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => UpdatesError::NotFound,
        io::ErrorKind::PermissionDenied => UpdatesError::Refused(NOT_READABLE),
        _ => UpdatesError::Io(e),
    }
}

/// The kernel's current name for an open file. Unlike any path we hold, it cannot be raced.
#[cfg(target_os = "linux")]
fn kernel_path(file: &File) -> Option<PathBuf> {
    use std::os::fd::AsRawFd;
    fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()
}

#[cfg(not(target_os = "linux"))]
fn kernel_path(_file: &File) -> Option<PathBuf> {
    None
}

/// Reads one chunk from an open regular file whose identity was `before`. `between` runs after the
/// read and before the second identity check; production passes a no-op, tests use it to change
/// the file at the worst moment.
fn read_chunk_with(
    file: &File,
    before: FileIdentity,
    start: u64,
    needed: u64,
    max_chunk: u32,
    between: impl FnOnce(),
) -> Result<Chunk, UpdatesError> {
    let full_size = before.size;
    let len = if start >= full_size {
        0
    } else {
        needed.min(u64::from(max_chunk)).min(full_size - start)
    };
    // At most `max_chunk`, a u32, so the conversion cannot fail on the platforms we build for.
    let len = usize::try_from(len).map_err(|_| io::Error::other("chunk too large"))?;
    let mut data = vec![0u8; len];
    let filled = read_full_at(file, &mut data, start)?;
    between();
    let after = FileIdentity::of(&file.metadata()?);
    // A short read means the file shrank under us, whatever the timestamps say.
    if after != before || filled != len {
        return Err(UpdatesError::Changed);
    }
    let crc = if data.is_empty() {
        0
    } else {
        crc32fast::hash(&data)
    };
    Ok(Chunk {
        data,
        crc,
        start,
        full_size,
        identity: before,
    })
}

/// Fills `buf` from `offset` until it is full or the file ends; returns the bytes read.
fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

async fn blocking<T, F>(work: F) -> Result<T, UpdatesError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, UpdatesError> + Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(UpdatesError::Io(io::Error::other(
            "the file access task was cancelled",
        ))),
    }
}

/// Per-session memory of which version of each file a device is downloading, so that it never
/// stitches two versions together (see the module documentation for the rules and their limits).
#[derive(Debug, Clone)]
pub struct DownloadGuard {
    /// Least recently used first; a handful of entries, so a linear scan beats a map.
    entries: VecDeque<(RelativeName, Seen)>,
    capacity: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    Version(FileIdentity),
    /// A change was reported; only a chunk at offset 0 is accepted next.
    RestartRequired,
}

impl Default for DownloadGuard {
    fn default() -> Self {
        DownloadGuard::new()
    }
}

impl DownloadGuard {
    /// A guard remembering [`GUARD_CAPACITY`] names.
    pub fn new() -> DownloadGuard {
        DownloadGuard::with_capacity(GUARD_CAPACITY)
    }

    /// A guard remembering `capacity` names (at least one).
    pub fn with_capacity(capacity: usize) -> DownloadGuard {
        let capacity = capacity.max(1);
        // Most sessions download nothing: allocate on first use.
        DownloadGuard {
            entries: VecDeque::new(),
            capacity,
        }
    }

    /// True until the session asks about a file: nothing to remember.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Admits a chunk of `name` at `start` read from version `id`, or answers `Changed` if the
    /// device started this download from another version. Names are compared after
    /// normalisation, so `a\b` and `a/b` are the same file.
    pub fn check(&mut self, name: &str, start: u64, id: FileIdentity) -> Result<(), UpdatesError> {
        let name = sanitize(name)?;
        let (seen, result) = match (start, self.take(&name)) {
            (0, _) | (_, None) => (Seen::Version(id), Ok(())),
            (_, Some(Seen::Version(known))) if known == id => (Seen::Version(id), Ok(())),
            (_, Some(_)) => (Seen::RestartRequired, Err(UpdatesError::Changed)),
        };
        self.put(name, seen);
        result
    }

    /// Records the version a device was told about by `klft-GetFileInfo`. A version already
    /// recorded is kept: an info call in the middle of a download must not make the new version
    /// acceptable at the device's current offset.
    pub fn note_info(&mut self, name: &str, id: FileIdentity) {
        let Ok(name) = sanitize(name) else { return };
        let seen = self.take(&name).unwrap_or(Seen::Version(id));
        self.put(name, seen);
    }

    fn take(&mut self, name: &RelativeName) -> Option<Seen> {
        let at = self.entries.iter().position(|(n, _)| n == name)?;
        self.entries.remove(at).map(|(_, seen)| seen)
    }

    fn put(&mut self, name: RelativeName, seen: Seen) {
        if self.entries.len() >= self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back((name, seen));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn accepted(name: &str) -> String {
        match sanitize(name) {
            Ok(n) => n.as_str().to_owned(),
            Err(e) => panic!("{name:?} refused: {e}"),
        }
    }

    fn refused(name: &str) -> &'static str {
        match sanitize(name) {
            Err(UpdatesError::InvalidName(reason)) => reason,
            other => panic!("{name:?} not refused as a name: {other:?}"),
        }
    }

    #[test]
    fn valid_names_are_normalised() {
        assert_eq!(accepted("update.bin"), "update.bin");
        assert_eq!(accepted("bases/daily/av.dat"), "bases/daily/av.dat");
        assert_eq!(accepted("bases\\daily\\av.dat"), "bases/daily/av.dat");
        assert_eq!(accepted("bases\\daily/av.dat"), "bases/daily/av.dat");
        assert_eq!(
            accepted("./bases//daily\\\\.\\av.dat"),
            "bases/daily/av.dat"
        );
        assert_eq!(accepted("bases/"), "bases");
        assert_eq!(accepted("a.b/.hidden/x..y/..z"), "a.b/.hidden/x..y/..z");
        assert_eq!(accepted("обновление/файл.bin"), "обновление/файл.bin");
        assert_eq!(accepted("with space/x"), "with space/x");
    }

    #[test]
    fn empty_names_are_refused() {
        assert_eq!(refused(""), "empty name");
        assert_eq!(refused("."), "empty name");
        assert_eq!(refused("./"), "empty name");
        assert_eq!(refused(".\\.\\"), "empty name");
    }

    #[test]
    fn absolute_and_unc_names_are_refused() {
        for name in [
            "/",
            "/etc/passwd",
            "\\windows\\system.ini",
            "//server/share/x",
            "\\\\server\\share\\x",
            "\\\\?\\C\\x",
            "\\\\.\\pipe\\x",
            "/./x",
        ] {
            assert_eq!(refused(name), "absolute path", "{name:?}");
        }
    }

    #[test]
    fn parent_components_are_refused() {
        for name in [
            "..", "../x", "a/../b", "a\\..\\b", "a/..", "a\\..", "./..", "a//..//b",
        ] {
            assert_eq!(refused(name), "'..' component", "{name:?}");
        }
    }

    #[test]
    fn names_windows_would_trim_to_dot_dot_are_refused() {
        for name in ["...", ".. ", ". .", "a/ ../b", "a/ /b", "a\\.. \\b"] {
            assert_eq!(
                refused(name),
                "component made only of dots and spaces",
                "{name:?}"
            );
        }
    }

    #[test]
    fn drive_letters_and_streams_are_refused() {
        for name in [
            "C:",
            "C:x",
            "C:\\x",
            "c:/x",
            "file.bin:stream",
            "file.bin::$DATA",
            "a/b:c",
        ] {
            assert_eq!(
                refused(name),
                "':' is not allowed (drive letters, streams)",
                "{name:?}"
            );
        }
    }

    #[test]
    fn control_characters_are_refused() {
        for name in [
            "a\0b", "\0", "a\nb", "a\rb", "a\tb", "\x1b[0m", "a\x7f", "a\u{85}b", "a/\u{9b}",
        ] {
            assert_eq!(refused(name), "control character in name", "{name:?}");
        }
    }

    #[test]
    fn over_long_names_are_refused() {
        assert_eq!(accepted(&"a".repeat(MAX_COMPONENT_BYTES)).len(), 255);
        assert_eq!(
            refused(&"a".repeat(MAX_COMPONENT_BYTES + 1)),
            "name component too long"
        );
        let deep = "abc/".repeat(MAX_NAME_BYTES / 4 + 1);
        assert_eq!(refused(&deep), "name too long");
    }

    #[test]
    fn reasons_are_fixed_texts() {
        let e = sanitize("../../etc/passwd").unwrap_err();
        assert_eq!(e.to_string(), "invalid file name: '..' component");
    }

    fn name_piece() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_owned()),
            Just("bin".to_owned()),
            Just(".".to_owned()),
            Just("..".to_owned()),
            Just("...".to_owned()),
            Just(" ".to_owned()),
            Just("/".to_owned()),
            Just("\\".to_owned()),
            Just(":".to_owned()),
            Just("C".to_owned()),
            Just("\0".to_owned()),
            Just("é".to_owned()),
            any::<char>().prop_map(String::from),
        ]
    }

    fn tricky_name() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::collection::vec(name_piece(), 0..12).prop_map(|parts| parts.concat()),
            any::<String>(),
        ]
    }

    proptest! {
        #[test]
        fn sanitize_never_lets_a_name_escape(name in tricky_name()) {
            let result = sanitize(&name);
            if let Ok(clean) = result {
                prop_assert!(!name.starts_with(['/', '\\']));
                prop_assert!(!name.split(['/', '\\']).any(|c| c == ".."));
                prop_assert!(!clean.as_str().is_empty());
                prop_assert!(!clean.as_str().contains(['\\', ':']));
                prop_assert!(!clean.as_str().chars().any(char::is_control));
                prop_assert!(clean.components().all(|c| !c.is_empty() && c != "." && c != ".."));
                let path = clean.to_path_buf();
                prop_assert!(path
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_))));
                prop_assert_eq!(sanitize(clean.as_str()).ok(), Some(clean.clone()));
            }
        }
    }

    fn id(inode: u64, mtime_ns: i128) -> FileIdentity {
        FileIdentity {
            dev: 1,
            inode,
            size: 100,
            mtime_ns,
            ctime_ns: mtime_ns,
        }
    }

    #[test]
    fn guard_accepts_one_version() {
        let mut guard = DownloadGuard::new();
        guard.check("f.bin", 0, id(1, 10)).unwrap();
        guard.check("f.bin", 50, id(1, 10)).unwrap();
        guard.check("f.bin", 100, id(1, 10)).unwrap();
    }

    #[test]
    fn guard_refuses_a_second_version_until_restarted() {
        let mut guard = DownloadGuard::new();
        guard.check("f.bin", 0, id(1, 10)).unwrap();
        assert!(matches!(
            guard.check("f.bin", 50, id(2, 20)),
            Err(UpdatesError::Changed)
        ));
        // Retrying at the same offset must not succeed, with either version.
        assert!(matches!(
            guard.check("f.bin", 50, id(2, 20)),
            Err(UpdatesError::Changed)
        ));
        assert!(matches!(
            guard.check("f.bin", 50, id(1, 10)),
            Err(UpdatesError::Changed)
        ));
        guard.check("f.bin", 0, id(2, 20)).unwrap();
        guard.check("f.bin", 50, id(2, 20)).unwrap();
    }

    #[test]
    fn guard_accepts_resumption_of_an_unknown_name() {
        let mut guard = DownloadGuard::new();
        guard.check("f.bin", 4096, id(1, 10)).unwrap();
        assert!(matches!(
            guard.check("f.bin", 8192, id(1, 11)),
            Err(UpdatesError::Changed)
        ));
    }

    #[test]
    fn guard_compares_normalised_names() {
        let mut guard = DownloadGuard::new();
        guard.check("dir\\f.bin", 0, id(1, 10)).unwrap();
        assert!(matches!(
            guard.check("./dir//f.bin", 10, id(2, 10)),
            Err(UpdatesError::Changed)
        ));
        assert!(matches!(
            guard.check("../f.bin", 0, id(1, 10)),
            Err(UpdatesError::InvalidName(_))
        ));
    }

    #[test]
    fn guard_info_never_replaces_a_recorded_version() {
        let mut guard = DownloadGuard::new();
        guard.note_info("f.bin", id(1, 10));
        guard.check("f.bin", 10, id(1, 10)).unwrap();
        guard.note_info("f.bin", id(2, 20));
        assert!(matches!(
            guard.check("f.bin", 20, id(2, 20)),
            Err(UpdatesError::Changed)
        ));
        // Nor does it clear a pending restart.
        guard.note_info("f.bin", id(2, 20));
        assert!(matches!(
            guard.check("f.bin", 20, id(2, 20)),
            Err(UpdatesError::Changed)
        ));
    }

    #[test]
    fn guard_forgets_the_least_recently_used_name() {
        let mut guard = DownloadGuard::with_capacity(2);
        guard.check("a", 0, id(1, 1)).unwrap();
        guard.check("b", 0, id(2, 1)).unwrap();
        guard.check("a", 10, id(1, 1)).unwrap();
        guard.check("c", 0, id(3, 1)).unwrap();
        assert_eq!(guard.entries.len(), 2);
        // "b" was evicted, so another version of it now reads as a resumption.
        guard.check("b", 10, id(9, 9)).unwrap();
        // "c" is still remembered; "a" was evicted by "b".
        assert!(matches!(
            guard.check("c", 10, id(9, 9)),
            Err(UpdatesError::Changed)
        ));
        guard.check("a", 10, id(9, 9)).unwrap();
    }

    fn file_with(dir: &Path, bytes: &[u8]) -> (File, FileIdentity) {
        let path = dir.join("f.bin");
        fs::write(&path, bytes).unwrap();
        let file = File::open(&path).unwrap();
        let identity = FileIdentity::of(&file.metadata().unwrap());
        (file, identity)
    }

    #[test]
    fn a_rewrite_during_the_read_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let (file, before) = file_with(dir.path(), &[1u8; 1000]);
        let result = read_chunk_with(&file, before, 0, 500, DEFAULT_MAX_CHUNK, || {
            let writer = fs::OpenOptions::new()
                .write(true)
                .open(dir.path().join("f.bin"))
                .unwrap();
            writer.write_all_at(&[2u8; 1000], 0).unwrap();
            // Same size; a distinct mtime makes the test independent of timestamp granularity.
            writer
                .set_modified(UNIX_EPOCH + std::time::Duration::from_secs(1_000_000))
                .unwrap();
        });
        assert!(matches!(result, Err(UpdatesError::Changed)), "{result:?}");
    }

    #[test]
    fn a_rewrite_that_restores_size_and_mtime_is_detected_by_ctime() {
        let dir = tempfile::tempdir().unwrap();
        let (file, before) = file_with(dir.path(), &[1u8; 1000]);
        let mtime = file.metadata().unwrap().modified().unwrap();
        // The change time moves in clock ticks (at most 10 ms on Linux); let one pass.
        std::thread::sleep(std::time::Duration::from_millis(50));
        let result = read_chunk_with(&file, before, 0, 500, DEFAULT_MAX_CHUNK, || {
            let writer = fs::OpenOptions::new()
                .write(true)
                .open(dir.path().join("f.bin"))
                .unwrap();
            writer.write_all_at(&[2u8; 1000], 0).unwrap();
            writer.set_modified(mtime).unwrap();
        });
        assert_eq!(
            FileIdentity::of(&file.metadata().unwrap()).mtime_ns,
            before.mtime_ns
        );
        assert!(matches!(result, Err(UpdatesError::Changed)), "{result:?}");
    }

    #[test]
    fn a_truncation_during_the_read_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let (file, before) = file_with(dir.path(), &[1u8; 1000]);
        let result = read_chunk_with(&file, before, 0, 1000, DEFAULT_MAX_CHUNK, || {
            let writer = fs::OpenOptions::new()
                .write(true)
                .open(dir.path().join("f.bin"))
                .unwrap();
            writer.set_len(10).unwrap();
        });
        assert!(matches!(result, Err(UpdatesError::Changed)), "{result:?}");
    }

    #[test]
    fn an_undisturbed_read_returns_the_bytes_and_their_crc() {
        let dir = tempfile::tempdir().unwrap();
        let bytes: Vec<u8> = (0..=255).cycle().take(1000).collect();
        let (file, before) = file_with(dir.path(), &bytes);
        let chunk = read_chunk_with(&file, before, 100, 300, DEFAULT_MAX_CHUNK, || {}).unwrap();
        assert_eq!(chunk.data, &bytes[100..400]);
        assert_eq!(chunk.crc, crc32fast::hash(&bytes[100..400]));
        assert_eq!((chunk.start, chunk.full_size), (100, 1000));
        assert_eq!(chunk.identity, before);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_kernel_name_of_a_handle_settles_containment() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("root")).unwrap();
        fs::write(dir.path().join("root/in.bin"), b"in").unwrap();
        fs::write(dir.path().join("out.bin"), b"out").unwrap();
        // A link inside the root: what matters is where the opened file really is.
        std::os::unix::fs::symlink("../out.bin", dir.path().join("root/link")).unwrap();
        let updates = UpdatesDir::open(dir.path().join("root"), DEFAULT_MAX_CHUNK).unwrap();
        let inner = &updates.inner;
        assert!(
            inner.kernel_root.is_some(),
            "/proc/self/fd is not available"
        );
        let inside = File::open(dir.path().join("root/in.bin")).unwrap();
        assert!(inner.handle_is_under_root(&inside));
        let through_link = File::open(dir.path().join("root/link")).unwrap();
        assert!(!inner.handle_is_under_root(&through_link));
        // Removed after opening: the kernel appends " (deleted)", and it is still ours.
        fs::remove_file(dir.path().join("root/in.bin")).unwrap();
        assert!(inner.handle_is_under_root(&inside));
    }

    #[test]
    fn times_convert_on_both_sides_of_the_epoch() {
        let t = UNIX_EPOCH + std::time::Duration::new(1_200_000_000, 5);
        assert_eq!(
            to_offset_date_time(t).unix_timestamp_nanos(),
            1_200_000_000_000_000_005
        );
        let t = UNIX_EPOCH - std::time::Duration::from_secs(86_400);
        assert_eq!(to_offset_date_time(t).unix_timestamp(), -86_400);
    }
}
