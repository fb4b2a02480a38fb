//! The CEF exchange folder (seed 002's ArcSight converter, made safe): lines appended to
//! `<prefix>-yyyyMMddHH-NNNN.txt` (UTC; the number counts the files of the hour from 0000, so that
//! names sort in the order the files were made) up to `max_lines` a file, at most `max_files` files (the
//! oldest deleted), each batch synced to disk before it counts as written. A torn last line (a
//! crash mid-write) is cut off when the folder is opened again.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

/// The folder, and the file being written.
pub struct CefFiles {
    dir: PathBuf,
    prefix: String,
    max_lines: usize,
    max_files: usize,
    current: Option<(PathBuf, File, usize)>,
}

/// A file of the folder: its hour and its number within the hour (a name without one, as seed
/// 002's converter wrote them, counts as the first).
fn parse_name(prefix: &str, name: &str) -> Option<(String, u32)> {
    let rest = name
        .strip_prefix(prefix)?
        .strip_prefix('-')?
        .strip_suffix(".txt")?;
    let (hour, n) = match rest.split_once('-') {
        Some((hour, n)) => (hour, n.parse().ok()?),
        None => (rest, 0),
    };
    (hour.len() == 10 && hour.bytes().all(|b| b.is_ascii_digit())).then(|| (hour.to_string(), n))
}

fn hour_of(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour()
    )
}

impl CefFiles {
    /// Opens the folder (creating it), going on with its newest file.
    pub fn open(
        dir: &Path,
        prefix: &str,
        max_lines: usize,
        max_files: usize,
    ) -> io::Result<CefFiles> {
        std::fs::create_dir_all(dir)?;
        let mut files = CefFiles {
            dir: dir.to_path_buf(),
            prefix: prefix.to_string(),
            max_lines: max_lines.max(1),
            max_files: max_files.max(1),
            current: None,
        };
        if let Some(newest) = files.files()?.pop() {
            let path = dir.join(&newest);
            let mut file = OpenOptions::new().read(true).append(true).open(&path)?;
            let lines = cut_torn_line(&mut file)?;
            files.current = Some((path, file, lines));
        }
        Ok(files)
    }

    /// The folder's files of this prefix, oldest first.
    pub fn files(&self) -> io::Result<Vec<String>> {
        let mut named: Vec<((String, u32), String)> = std::fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter_map(|name| parse_name(&self.prefix, &name).map(|key| (key, name)))
            .collect();
        named.sort();
        Ok(named.into_iter().map(|(_, name)| name).collect())
    }

    /// The last line written, if any.
    pub fn last_line(&self) -> io::Result<Option<String>> {
        for name in self.files()?.iter().rev() {
            let file = File::open(self.dir.join(name))?;
            if let Some(line) = io::BufReader::new(file)
                .lines()
                .map_while(Result::ok)
                .last()
            {
                return Ok(Some(line));
            }
        }
        Ok(None)
    }

    /// Appends `lines` (rotating and deleting as needed) and syncs them to disk.
    pub fn append(&mut self, lines: &[String], now: OffsetDateTime) -> io::Result<()> {
        let mut touched: Vec<File> = Vec::new();
        for line in lines {
            let full = self
                .current
                .as_ref()
                .is_none_or(|(_, _, n)| *n >= self.max_lines);
            if full {
                if let Some((_, file, _)) = self.current.take() {
                    touched.push(file);
                }
                self.current = Some(self.create(now)?);
            }
            let (_, file, n) = self.current.as_mut().expect("a file is open");
            file.write_all(line.as_bytes())?;
            file.write_all(b"\n")?;
            *n += 1;
        }
        for file in &touched {
            file.sync_data()?;
        }
        if let Some((_, file, _)) = &self.current {
            file.sync_data()?;
        }
        Ok(())
    }

    /// A new file for this hour, numbered after any of the same hour; the oldest files beyond
    /// `max_files` (this one included) are deleted.
    fn create(&self, now: OffsetDateTime) -> io::Result<(PathBuf, File, usize)> {
        let hour = hour_of(now);
        let files = self.files()?;
        let next = files
            .iter()
            .filter_map(|name| parse_name(&self.prefix, name))
            .filter(|(h, _)| *h == hour)
            .map(|(_, n)| n + 1)
            .max()
            .unwrap_or(0);
        let name = format!("{}-{hour}-{next:04}.txt", self.prefix);
        let excess = (files.len() + 1).saturating_sub(self.max_files);
        for old in files.iter().take(excess) {
            std::fs::remove_file(self.dir.join(old))?;
        }
        let path = self.dir.join(name);
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)?;
        // The new name must survive a crash too.
        File::open(&self.dir)?.sync_all()?;
        Ok((path, file, 0))
    }
}

/// Cuts a last line without its newline (a write a crash interrupted); returns the whole lines.
fn cut_torn_line(file: &mut File) -> io::Result<usize> {
    let mut content = Vec::new();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_end(&mut content)?;
    let keep = content
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    if keep < content.len() {
        file.set_len(keep as u64)?;
        file.sync_data()?;
    }
    Ok(content[..keep].iter().filter(|&&b| b == b'\n').count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_rotate_at_max_lines_and_keep_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let now = time::macros::datetime!(2026-12-05 09:30:00 UTC);
        let mut files = CefFiles::open(dir.path(), "ArcSight", 3, 2).unwrap();
        let lines: Vec<String> = (0..8).map(|n| format!("line {n}")).collect();
        files.append(&lines, now).unwrap();
        assert_eq!(
            files.files().unwrap(),
            vec![
                "ArcSight-2026120509-0001.txt",
                "ArcSight-2026120509-0002.txt"
            ]
        );
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert_eq!(
            read("ArcSight-2026120509-0001.txt"),
            "line 3\nline 4\nline 5\n"
        );
        assert_eq!(read("ArcSight-2026120509-0002.txt"), "line 6\nline 7\n");
        assert_eq!(files.last_line().unwrap().as_deref(), Some("line 7"));
    }

    #[test]
    fn a_torn_line_is_cut_when_the_folder_is_opened_again() {
        let dir = tempfile::tempdir().unwrap();
        let now = time::macros::datetime!(2026-12-05 09:30:00 UTC);
        let mut files = CefFiles::open(dir.path(), "X", 10, 10).unwrap();
        files.append(&["one".into(), "two".into()], now).unwrap();
        drop(files);
        let name = dir.path().join("X-2026120509-0000.txt");
        let mut f = OpenOptions::new().append(true).open(&name).unwrap();
        f.write_all(b"thr").unwrap();
        let mut files = CefFiles::open(dir.path(), "X", 10, 10).unwrap();
        assert_eq!(files.last_line().unwrap().as_deref(), Some("two"));
        files.append(&["three".into()], now).unwrap();
        assert_eq!(std::fs::read_to_string(&name).unwrap(), "one\ntwo\nthree\n");
    }
}
