//! `mobile-admin export` and `import`: a whole deployment's database as a dump and back, to move it
//! between databases (SQLite to PostgreSQL, or the reverse). The format is in [`crate::store::dump`].

use std::io::{BufRead, Write};

use anyhow::Context;

use crate::store::{self, dump, StoreError};

/// Writes the database at `url` to `out` as a dump; returns the number of rows. The schema is first
/// brought up to date, so the dump matches this version of mobile-admin.
pub async fn export(url: &str, out: &mut (dyn Write + Send)) -> anyhow::Result<u64> {
    let store = store::open(url).await.context("opening the database")?;
    let mut write = |record: dump::Record| -> store::Result<()> {
        writeln!(out, "{}", record.to_line())
            .map_err(|e| StoreError::Invalid(format!("writing the dump: {e}")))
    };
    let result = store.export(&mut write).await;
    store.close().await;
    let rows = result.context("exporting")?;
    out.flush().context("writing the dump")?;
    Ok(rows)
}

/// Loads a dump from `input` into the database at `url`, which must be new (migrated, nothing else).
/// All or nothing; identity sequences continue after the imported ids. Returns the number of rows.
pub async fn import(url: &str, input: &mut (dyn BufRead + Send)) -> anyhow::Result<u64> {
    let store = store::open(url).await.context("opening the database")?;
    let mut records = input
        .lines()
        .enumerate()
        .filter(|(_, line)| !matches!(line, Ok(l) if l.trim().is_empty()))
        .map(|(n, line)| {
            let line = line.map_err(|e| StoreError::Invalid(format!("reading the dump: {e}")))?;
            dump::Record::parse(&line)
                .map_err(|e| StoreError::Invalid(format!("line {}: {e}", n + 1)))
        });
    let result = store.import(&mut records).await;
    store.close().await;
    result.context("importing")
}
