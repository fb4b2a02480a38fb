//! `export` and `import` on PostgreSQL (the format is in `store::dump`).

use futures_util::TryStreamExt;
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::types::Json;
use sqlx::{PgPool, Row};
use time::OffsetDateTime;

use super::super::{dump, not_empty, timestamp, Result, StoreError};

/// PostgreSQL takes at most 65535 parameters in one statement.
const MAX_PARAMS: usize = 60_000;

/// Column names and their `information_schema` types, in table order.
async fn table_columns(conn: &mut PgConnection, table: &str) -> Result<Vec<(String, String)>> {
    let rows = sqlx::query(
        "SELECT column_name::text, data_type::text FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
}

async fn primary_key(conn: &mut PgConnection, table: &str) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT a.attname::text FROM pg_index i
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
         WHERE i.indrelid = $1::regclass AND i.indisprimary
         ORDER BY array_position(i.indkey::int2[], a.attnum)",
    )
    .bind(table)
    .fetch_all(conn)
    .await?)
}

/// One column of a row as a dump cell, by the column's declared type.
fn dump_cell(row: &PgRow, i: usize, data_type: &str) -> Result<dump::Cell> {
    use dump::Cell;
    let cell = match data_type {
        "bigint" => row.try_get::<Option<i64>, _>(i)?.map(Cell::Int),
        "integer" => row
            .try_get::<Option<i32>, _>(i)?
            .map(|v| Cell::Int(v.into())),
        "smallint" => row
            .try_get::<Option<i16>, _>(i)?
            .map(|v| Cell::Int(v.into())),
        "boolean" => row
            .try_get::<Option<bool>, _>(i)?
            .map(|v| Cell::Int(v.into())),
        "double precision" => row.try_get::<Option<f64>, _>(i)?.map(Cell::Real),
        "real" => row
            .try_get::<Option<f32>, _>(i)?
            .map(|v| Cell::Real(v.into())),
        "text" | "character varying" => row.try_get::<Option<String>, _>(i)?.map(Cell::Text),
        "bytea" => row.try_get::<Option<Vec<u8>>, _>(i)?.map(Cell::Bytes),
        "timestamp with time zone" => row
            .try_get::<Option<OffsetDateTime>, _>(i)?
            .map(|t| Cell::Text(timestamp(t))),
        "jsonb" | "json" => row
            .try_get::<Option<Json<serde_json::Value>>, _>(i)?
            .map(|v| Cell::Text(v.0.to_string())),
        other => {
            return Err(StoreError::corrupt(format!(
                "a column of type {other} cannot be dumped"
            )))
        }
    };
    Ok(cell.unwrap_or(Cell::Null))
}

/// Inserts one batch of dumped rows, each value cast to its column's type.
async fn insert_batch(
    conn: &mut PgConnection,
    batch: &dump::Batch,
    types: &[(String, String)],
) -> Result<()> {
    let mut casts = Vec::with_capacity(batch.columns.len());
    for column in &batch.columns {
        let (_, data_type) = types.iter().find(|(c, _)| c == column).ok_or_else(|| {
            StoreError::Invalid(format!(
                "dump: column {column} of table {} does not exist in this database",
                batch.table
            ))
        })?;
        casts.push(data_type.as_str());
    }
    let width = casts.len();
    let values: Vec<String> = (0..batch.rows.len())
        .map(|r| {
            let row: Vec<String> = casts
                .iter()
                .enumerate()
                .map(|(c, t)| format!("CAST(${} AS {t})", r * width + c + 1))
                .collect();
            format!("({})", row.join(", "))
        })
        .collect();
    let sql = format!(
        "INSERT INTO {} ({}) VALUES {}",
        batch.table,
        batch.columns.join(", "),
        values.join(", ")
    );
    let mut q = sqlx::query(&sql);
    for cell in batch.rows.iter().flatten() {
        q = match cell {
            dump::Cell::Null => q.bind(None::<String>),
            dump::Cell::Int(i) => q.bind(*i),
            dump::Cell::Real(f) => q.bind(*f),
            dump::Cell::Text(s) => q.bind(s.as_str()),
            dump::Cell::Bytes(b) => q.bind(b.as_slice()),
        };
    }
    q.execute(conn).await?;
    Ok(())
}

pub(super) async fn export(
    pool: &PgPool,
    schema: i64,
    out: &mut (dyn FnMut(dump::Record) -> Result<()> + Send),
) -> Result<u64> {
    // One snapshot for every table, so that a dump of a running server is consistent.
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    out(dump::Record::Header { schema })?;
    let mut total = 0;
    for table in dump::TABLES {
        let columns = table_columns(&mut tx, table).await?;
        let key = primary_key(&mut tx, table).await?;
        let names: Vec<String> = columns.iter().map(|(c, _)| c.clone()).collect();
        out(dump::Record::Table {
            name: table.to_string(),
            columns: names.clone(),
        })?;
        let sql = format!(
            "SELECT {} FROM {table} ORDER BY {}",
            names.join(", "),
            if key.is_empty() { &names } else { &key }.join(", ")
        );
        let mut rows = sqlx::query(&sql).fetch(&mut *tx);
        while let Some(row) = rows.try_next().await? {
            let cells = columns
                .iter()
                .enumerate()
                .map(|(i, (_, t))| dump_cell(&row, i, t))
                .collect::<Result<Vec<_>>>()?;
            out(dump::Record::Row(cells))?;
            total += 1;
        }
    }
    out(dump::Record::End { rows: total })?;
    tx.commit().await?;
    Ok(total)
}

pub(super) async fn import(
    pool: &PgPool,
    schema: i64,
    input: &mut (dyn Iterator<Item = Result<dump::Record>> + Send),
) -> Result<u64> {
    let mut reader = dump::Reader::new(input, schema)?;
    let mut tx = pool.begin().await?;
    for (table, occupied) in dump::occupancy_checks() {
        if sqlx::query_scalar::<_, bool>(&occupied)
            .fetch_one(&mut *tx)
            .await?
        {
            return Err(not_empty(&table));
        }
    }
    for sql in [
        "DELETE FROM revisions",
        "DELETE FROM groups WHERE parent_id IS NOT NULL",
        "DELETE FROM groups",
    ] {
        sqlx::query(sql).execute(&mut *tx).await?;
    }
    let mut loaded: Vec<&str> = Vec::new();
    let mut types = Vec::new();
    let mut total = 0;
    while let Some(batch) = reader.next_batch(MAX_PARAMS)? {
        if loaded.last() != Some(&batch.table) {
            types = table_columns(&mut tx, batch.table).await?;
            if dump::DERIVED.contains(&batch.table) {
                sqlx::query(&format!("DELETE FROM {}", batch.table))
                    .execute(&mut *tx)
                    .await?;
            }
            loaded.push(batch.table);
        }
        insert_batch(&mut tx, &batch, &types).await?;
        total += batch.rows.len() as u64;
    }
    let roots: i64 = sqlx::query_scalar("SELECT count(*) FROM groups WHERE id IN (1, 2)")
        .fetch_one(&mut *tx)
        .await?;
    if roots != 2 {
        return Err(StoreError::Invalid(
            "dump: the root and Unassigned groups (ids 1 and 2) are missing".into(),
        ));
    }
    sqlx::query(
        "INSERT INTO revisions (name, rev) VALUES ('policy', 1), ('subscriptions', 1)
             ON CONFLICT DO NOTHING",
    )
    .execute(&mut *tx)
    .await?;
    // Rows came with their ids: move every identity past the largest one.
    let identities = sqlx::query(
        "SELECT table_name::text, column_name::text FROM information_schema.columns
             WHERE table_schema = current_schema() AND is_identity = 'YES'",
    )
    .fetch_all(&mut *tx)
    .await?;
    for r in identities {
        let (table, column): (String, String) = (r.get(0), r.get(1));
        sqlx::query(&format!(
            "SELECT setval(pg_get_serial_sequence($1, $2), coalesce(max({column}), 0) + 1, false)
                 FROM {table}"
        ))
        .bind(&table)
        .bind(&column)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(total)
}
