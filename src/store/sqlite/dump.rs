//! `export` and `import` on SQLite (the format is in `store::dump`).

use rusqlite::Connection;

use super::super::dump::{self, Cell};
use super::super::{not_empty, Result, StoreError};
use super::cell;

/// SQLite takes at most 32766 parameters in one statement.
const MAX_PARAMS: usize = 30_000;

/// Column names in table order, and the primary key's columns in key order.
fn table_columns(conn: &Connection, table: &str) -> Result<(Vec<String>, Vec<String>)> {
    let mut stmt = conn.prepare("SELECT name, pk FROM pragma_table_info(?1) ORDER BY cid")?;
    let rows: Vec<(String, i64)> = stmt
        .query_map([table], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let columns = rows.iter().map(|(name, _)| name.clone()).collect();
    let mut key: Vec<(i64, String)> = rows
        .into_iter()
        .filter(|(_, pk)| *pk > 0)
        .map(|(name, pk)| (pk, name))
        .collect();
    key.sort();
    Ok((columns, key.into_iter().map(|(_, c)| c).collect()))
}

pub(super) fn export(
    conn: &Connection,
    schema: i64,
    out: &mut (dyn FnMut(dump::Record) -> Result<()> + Send),
) -> Result<u64> {
    // One read transaction: WAL gives it a single snapshot of every table.
    conn.execute_batch("BEGIN")?;
    let result = export_in(conn, schema, out);
    let _ = conn.execute_batch("COMMIT");
    result
}

fn export_in(
    conn: &Connection,
    schema: i64,
    out: &mut (dyn FnMut(dump::Record) -> Result<()> + Send),
) -> Result<u64> {
    out(dump::Record::Header { schema })?;
    let mut total = 0;
    for table in dump::TABLES {
        let (columns, key) = table_columns(conn, table)?;
        out(dump::Record::Table {
            name: table.to_string(),
            columns: columns.clone(),
        })?;
        let order = if key.is_empty() {
            "rowid".to_string()
        } else {
            key.join(", ")
        };
        let sql = format!(
            "SELECT {} FROM {table} ORDER BY {order}",
            columns.join(", ")
        );
        let mut stmt = conn.prepare(&sql)?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let cells = (0..columns.len())
                .map(|i| cell(row.get_ref(i)?))
                .collect::<Result<Vec<_>>>()?;
            out(dump::Record::Row(cells))?;
            total += 1;
        }
    }
    out(dump::Record::End { rows: total })?;
    Ok(total)
}

pub(super) fn import(
    conn: &mut Connection,
    schema: i64,
    input: &mut (dyn Iterator<Item = Result<dump::Record>> + Send),
) -> Result<u64> {
    let mut reader = dump::Reader::new(input, schema)?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let total = import_in(&tx, &mut reader)?;
    tx.commit()?;
    Ok(total)
}

fn insert_batch(conn: &Connection, batch: &dump::Batch, columns: &[String]) -> Result<()> {
    if let Some(missing) = batch.columns.iter().find(|c| !columns.contains(c)) {
        return Err(StoreError::Invalid(format!(
            "dump: column {missing} of table {} does not exist in this database",
            batch.table
        )));
    }
    let one = format!("({})", vec!["?"; batch.columns.len()].join(", "));
    let sql = format!(
        "INSERT INTO {} ({}) VALUES {}",
        batch.table,
        batch.columns.join(", "),
        vec![one; batch.rows.len()].join(", ")
    );
    let mut stmt = conn.prepare(&sql)?;
    for (i, value) in batch.rows.iter().flatten().enumerate() {
        let index = i + 1;
        match value {
            Cell::Null => stmt.raw_bind_parameter(index, rusqlite::types::Null)?,
            Cell::Int(v) => stmt.raw_bind_parameter(index, v)?,
            Cell::Real(v) => stmt.raw_bind_parameter(index, v)?,
            Cell::Text(v) => stmt.raw_bind_parameter(index, v)?,
            Cell::Bytes(v) => stmt.raw_bind_parameter(index, v)?,
        }
    }
    stmt.raw_execute()?;
    Ok(())
}

/// The body of an import, inside the transaction [`import`] opened.
fn import_in(conn: &Connection, reader: &mut dump::Reader<'_>) -> Result<u64> {
    for (table, occupied) in dump::occupancy_checks() {
        if conn.query_row(&occupied, [], |r| r.get::<_, bool>(0))? {
            return Err(not_empty(&table));
        }
    }
    conn.execute_batch(
        "DELETE FROM revisions;
         DELETE FROM groups WHERE parent_id IS NOT NULL;
         DELETE FROM groups;",
    )?;
    let mut loaded: Vec<&str> = Vec::new();
    let mut columns = Vec::new();
    let mut total = 0;
    while let Some(batch) = reader.next_batch(MAX_PARAMS)? {
        if loaded.last() != Some(&batch.table) {
            columns = table_columns(conn, batch.table)?.0;
            if dump::DERIVED.contains(&batch.table) {
                conn.execute(&format!("DELETE FROM {}", batch.table), [])?;
            }
            loaded.push(batch.table);
        }
        insert_batch(conn, &batch, &columns)?;
        total += batch.rows.len() as u64;
    }
    let roots: i64 = conn.query_row("SELECT count(*) FROM groups WHERE id IN (1, 2)", [], |r| {
        r.get(0)
    })?;
    if roots != 2 {
        return Err(StoreError::Invalid(
            "dump: the root and Unassigned groups (ids 1 and 2) are missing".into(),
        ));
    }
    conn.execute_batch(
        "INSERT OR IGNORE INTO revisions (name, rev) VALUES ('policy', 1), ('subscriptions', 1)",
    )?;
    Ok(total)
}
