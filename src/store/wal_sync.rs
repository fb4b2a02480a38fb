//! Puts SQLite's write-ahead log on disk beside the writer rather than in its way.
//!
//! The writer commits with `synchronous=NORMAL`: the commit writes the log but does not wait for the
//! disk, and the writer goes straight on with the next batch. The batch's callers are handed to this
//! thread, which syncs the log file and only then answers them, so that an acknowledged write still
//! survives power loss. One sync answers every batch committed before it began. Whatever SQLite itself
//! moves out of the log (a checkpoint) it syncs first, with `NORMAL` as with `FULL`.
//!
//! Until its sync, a batch is visible to readers but nobody has been told it is stored.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;

/// Tells one caller how its write ended: `Err` carries why it may not be durable.
pub(super) type Answer = Box<dyn FnOnce(Result<(), String>) + Send>;

pub(super) struct WalSync {
    queue: mpsc::Sender<Vec<Answer>>,
    thread: JoinHandle<()>,
}

impl WalSync {
    /// Starts the thread that syncs the log at `wal` (the database's path with `-wal` appended).
    pub(super) fn start(wal: PathBuf) -> std::io::Result<WalSync> {
        let (queue, batches) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("sqlite-wal-sync".into())
            .spawn(move || run(wal, batches))?;
        Ok(WalSync { queue, thread })
    }

    /// Answers `answers` once everything committed so far is on disk.
    pub(super) fn after_sync(&self, answers: Vec<Answer>) {
        if let Err(mpsc::SendError(answers)) = self.queue.send(answers) {
            // The thread is gone (it cannot panic short of a bug): nobody may be told "stored".
            for answer in answers {
                answer(Err("the write-ahead log sync stopped".into()));
            }
        }
    }

    /// Answers everything queued, then stops the thread.
    pub(super) fn finish(self) {
        drop(self.queue);
        let _ = self.thread.join();
    }
}

fn run(wal: PathBuf, batches: mpsc::Receiver<Vec<Answer>>) {
    let mut log = None;
    while let Ok(mut answers) = batches.recv() {
        // Everything queued by now was committed before this sync begins: one sync covers it all.
        while let Ok(more) = batches.try_recv() {
            answers.extend(more);
        }
        let synced = sync(&wal, &mut log).map_err(|e| {
            tracing::error!(error = %e, path = %wal.display(), "write-ahead log not synced");
            format!("the write-ahead log was not synced: {e}")
        });
        for answer in answers {
            answer(synced.clone());
        }
    }
}

/// Syncs the log file, reopening it should SQLite have replaced it since the last sync.
fn sync(path: &std::path::Path, log: &mut Option<(File, u64)>) -> std::io::Result<()> {
    let inode = std::fs::metadata(path)?.ino();
    if log.as_ref().map(|(_, open)| *open) != Some(inode) {
        let file = File::open(path)?;
        let opened = file.metadata()?.ino();
        *log = Some((file, opened));
    }
    let (file, _) = log.as_ref().expect("opened above");
    file.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    type Seen = Arc<Mutex<Vec<Result<(), String>>>>;

    fn recorder() -> (Seen, impl Fn() -> Answer) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let make = {
            let seen = seen.clone();
            move || -> Answer {
                let seen = seen.clone();
                Box::new(move |r| seen.lock().unwrap().push(r))
            }
        };
        (seen, make)
    }

    #[test]
    fn answers_every_caller_once_synced() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("db.sqlite-wal");
        std::fs::write(&wal, b"frames").unwrap();
        let (seen, answer) = recorder();
        let sync = WalSync::start(wal).unwrap();
        sync.after_sync(vec![answer(), answer()]);
        sync.after_sync(vec![answer()]);
        sync.finish();
        assert_eq!(*seen.lock().unwrap(), vec![Ok(()), Ok(()), Ok(())]);
    }

    #[test]
    fn a_replaced_log_is_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("db.sqlite-wal");
        std::fs::write(&wal, b"frames").unwrap();
        let mut log = None;
        sync(&wal, &mut log).unwrap();
        let first = log.as_ref().unwrap().1;
        assert_eq!(first, std::fs::metadata(&wal).unwrap().ino());
        let keep = dir.path().join("old");
        std::fs::rename(&wal, &keep).unwrap();
        std::fs::write(&wal, b"new log").unwrap();
        sync(&wal, &mut log).unwrap();
        let second = log.as_ref().unwrap().1;
        assert_ne!(second, first);
        assert_eq!(second, std::fs::metadata(&wal).unwrap().ino());
    }

    #[test]
    fn a_missing_log_is_an_error_for_every_caller() {
        let dir = tempfile::tempdir().unwrap();
        let (seen, answer) = recorder();
        let sync = WalSync::start(dir.path().join("gone-wal")).unwrap();
        sync.after_sync(vec![answer(), answer()]);
        sync.finish();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert!(seen
            .iter()
            .all(|r| r.as_ref().is_err_and(|e| e.contains("not synced"))));
    }
}
