//! Shared statements on PostgreSQL: arguments bound to sqlx queries, rows read back as cells, and
//! the [`Conn`] over a pooled connection.

use sqlx::postgres::{PgArguments, PgConnection, PgRow};
use sqlx::query::Query;
use sqlx::types::Json;
use sqlx::{Column, Postgres, Row as _, TypeInfo, ValueRef};
use time::OffsetDateTime;

use super::super::dump::Cell;
use super::super::sql::{Arg, Conn, Dialect, Row};
use super::super::{timestamp, Result, StoreError};

/// Binds `args` to `query`, each with its type (nulls too).
pub(super) fn bind<'q>(
    mut query: Query<'q, Postgres, PgArguments>,
    args: &'q [Arg],
) -> Query<'q, Postgres, PgArguments> {
    for arg in args {
        query = match arg {
            Arg::Int(v) => query.bind(*v),
            Arg::Real(v) => query.bind(*v),
            Arg::Text(v) => query.bind(v.as_deref()),
            Arg::Bytes(v) => query.bind(v.as_deref()),
            Arg::Time(v) => query.bind(*v),
            Arg::Json(v) => query.bind(v.as_ref().map(Json)),
        };
    }
    query
}

/// One column of a row as a cell, by the column's type.
pub(super) fn cell(row: &PgRow, i: usize) -> Result<Cell> {
    if row.try_get_raw(i)?.is_null() {
        return Ok(Cell::Null);
    }
    let kind = row.column(i).type_info().name().to_string();
    Ok(match kind.as_str() {
        "INT8" => Cell::Int(row.try_get(i)?),
        "INT4" => Cell::Int(row.try_get::<i32, _>(i)?.into()),
        "INT2" => Cell::Int(row.try_get::<i16, _>(i)?.into()),
        "BOOL" => Cell::Int(row.try_get::<bool, _>(i)?.into()),
        "FLOAT8" => Cell::Real(row.try_get(i)?),
        "FLOAT4" => Cell::Real(row.try_get::<f32, _>(i)?.into()),
        "TEXT" | "VARCHAR" | "NAME" | "BPCHAR" => Cell::Text(row.try_get(i)?),
        "BYTEA" => Cell::Bytes(row.try_get(i)?),
        "TIMESTAMPTZ" => Cell::Text(timestamp(row.try_get::<OffsetDateTime, _>(i)?)),
        "JSONB" | "JSON" => Cell::Text(row.try_get::<Json<serde_json::Value>, _>(i)?.0.to_string()),
        other => {
            return Err(StoreError::Internal(format!(
                "a column of type {other} cannot be read"
            )))
        }
    })
}

pub(super) fn row(r: &PgRow) -> Result<Row> {
    (0..r.len())
        .map(|i| cell(r, i))
        .collect::<Result<Vec<_>>>()
        .map(Row)
}

/// Runs `sql` on `conn` and reads its rows.
pub(super) async fn query(conn: &mut PgConnection, sql: &str, args: &[Arg]) -> Result<Vec<Row>> {
    bind(sqlx::query(sql), args)
        .fetch_all(conn)
        .await?
        .iter()
        .map(row)
        .collect()
}

/// A pooled connection, or a transaction on one, running shared statements natively.
pub(super) struct Pg<'c> {
    pub(super) conn: &'c mut PgConnection,
}

#[async_trait::async_trait]
impl Conn for Pg<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn query(&mut self, sql: &str, args: &[Arg]) -> Result<Vec<Row>> {
        query(self.conn, sql, args).await
    }

    async fn execute(&mut self, sql: &str, args: &[Arg]) -> Result<u64> {
        Ok(bind(sqlx::query(sql), args)
            .execute(&mut *self.conn)
            .await?
            .rows_affected())
    }
}
