//! One statement interface over both databases, for the code the backends share.
//!
//! Shared statements are written once, with PostgreSQL's `$1`, `$2`, ... placeholders: SQLite
//! reads `$1` as a parameter named "$1", and [`Conn`] implementations bind by that name. Arguments
//! are typed even when null ([`Arg`]), because PostgreSQL wants to know a parameter's type. Values
//! come back as [`Cell`]s with typed getters on [`Row`]: timestamps are RFC 3339 text on both
//! backends, JSON is its text, flags are integers. Where the dialects differ, the shared code asks
//! [`Conn::dialect`] and says so on the spot.

use time::OffsetDateTime;

use super::dump::Cell;
use super::{Result, StoreError};

/// Which SQL a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// `sqlite` or `postgres`, whichever this dialect is.
    pub fn pick<T>(self, sqlite: T, postgres: T) -> T {
        match self {
            Dialect::Sqlite => sqlite,
            Dialect::Postgres => postgres,
        }
    }
}

/// `column <op> $param` for a timestamp column: SQLite compares the instants, not the RFC 3339
/// texts (which may differ in their fractions of a second).
pub(crate) fn compare_time(dialect: Dialect, column: &str, op: &str, param: usize) -> String {
    dialect.pick(
        format!("julianday({column}) {op} julianday(${param})"),
        format!("{column} {op} ${param}"),
    )
}

/// A `LIKE` pattern (with `ESCAPE '\'`) matching `text` anywhere, any case (the column lowered).
pub(crate) fn like_pattern(text: &str) -> String {
    format!(
        "%{}%",
        text.to_lowercase()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    )
}

/// A statement argument. Nulls keep their type.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Int(Option<i64>),
    Real(Option<f64>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
    /// TIMESTAMPTZ on PostgreSQL, RFC 3339 text on SQLite.
    Time(Option<OffsetDateTime>),
    /// JSONB on PostgreSQL, JSON text on SQLite.
    Json(Option<serde_json::Value>),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Arg {
        Arg::Int(Some(v))
    }
}
impl From<i32> for Arg {
    fn from(v: i32) -> Arg {
        Arg::Int(Some(v.into()))
    }
}
impl From<bool> for Arg {
    fn from(v: bool) -> Arg {
        Arg::Int(Some(v.into()))
    }
}
impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Arg {
        Arg::Int(v)
    }
}
impl From<Option<i32>> for Arg {
    fn from(v: Option<i32>) -> Arg {
        Arg::Int(v.map(Into::into))
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Arg {
        Arg::Text(Some(v.to_string()))
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Arg {
        Arg::Text(Some(v))
    }
}
impl From<&String> for Arg {
    fn from(v: &String) -> Arg {
        Arg::Text(Some(v.clone()))
    }
}
impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Arg {
        Arg::Text(v)
    }
}
impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Arg {
        Arg::Text(v.map(str::to_string))
    }
}
impl From<&Option<String>> for Arg {
    fn from(v: &Option<String>) -> Arg {
        Arg::Text(v.clone())
    }
}
impl From<Vec<u8>> for Arg {
    fn from(v: Vec<u8>) -> Arg {
        Arg::Bytes(Some(v))
    }
}
impl From<&[u8]> for Arg {
    fn from(v: &[u8]) -> Arg {
        Arg::Bytes(Some(v.to_vec()))
    }
}
impl From<Option<Vec<u8>>> for Arg {
    fn from(v: Option<Vec<u8>>) -> Arg {
        Arg::Bytes(v)
    }
}
impl From<OffsetDateTime> for Arg {
    fn from(v: OffsetDateTime) -> Arg {
        Arg::Time(Some(v))
    }
}
impl From<Option<OffsetDateTime>> for Arg {
    fn from(v: Option<OffsetDateTime>) -> Arg {
        Arg::Time(v)
    }
}
impl From<serde_json::Value> for Arg {
    fn from(v: serde_json::Value) -> Arg {
        Arg::Json(Some(v))
    }
}
impl From<Option<serde_json::Value>> for Arg {
    fn from(v: Option<serde_json::Value>) -> Arg {
        Arg::Json(v)
    }
}

/// `args![a, b, c]`: statement arguments from values that convert into [`Arg`].
#[macro_export]
macro_rules! args {
    ($($value:expr),* $(,)?) => {
        &[$($crate::store::sql::Arg::from($value)),*][..]
    };
}
pub use args;

/// One result row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(pub Vec<Cell>);

fn corrupt(i: usize, wanted: &str, got: &Cell) -> StoreError {
    StoreError::corrupt(format!("column {i}: expected {wanted}, found {got:?}"))
}

impl Row {
    fn cell(&self, i: usize) -> Result<&Cell> {
        self.0
            .get(i)
            .ok_or_else(|| StoreError::corrupt(format!("no column {i}")))
    }

    pub fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        match self.cell(i)? {
            Cell::Null => Ok(None),
            Cell::Int(v) => Ok(Some(*v)),
            other => Err(corrupt(i, "an integer", other)),
        }
    }

    pub fn int(&self, i: usize) -> Result<i64> {
        self.opt_int(i)?
            .ok_or_else(|| corrupt(i, "an integer", &Cell::Null))
    }

    pub fn opt_i32(&self, i: usize) -> Result<Option<i32>> {
        self.opt_int(i)?
            .map(|v| i32::try_from(v).map_err(|_| corrupt(i, "a 32-bit integer", &Cell::Int(v))))
            .transpose()
    }

    pub fn i32(&self, i: usize) -> Result<i32> {
        self.opt_i32(i)?
            .ok_or_else(|| corrupt(i, "an integer", &Cell::Null))
    }

    pub fn bool(&self, i: usize) -> Result<bool> {
        Ok(self.int(i)? != 0)
    }

    pub fn opt_real(&self, i: usize) -> Result<Option<f64>> {
        match self.cell(i)? {
            Cell::Null => Ok(None),
            Cell::Real(v) => Ok(Some(*v)),
            Cell::Int(v) => Ok(Some(*v as f64)),
            other => Err(corrupt(i, "a number", other)),
        }
    }

    pub fn opt_text(&self, i: usize) -> Result<Option<String>> {
        match self.cell(i)? {
            Cell::Null => Ok(None),
            Cell::Text(v) => Ok(Some(v.clone())),
            other => Err(corrupt(i, "text", other)),
        }
    }

    pub fn text(&self, i: usize) -> Result<String> {
        self.opt_text(i)?
            .ok_or_else(|| corrupt(i, "text", &Cell::Null))
    }

    pub fn opt_bytes(&self, i: usize) -> Result<Option<Vec<u8>>> {
        match self.cell(i)? {
            Cell::Null => Ok(None),
            Cell::Bytes(v) => Ok(Some(v.clone())),
            other => Err(corrupt(i, "bytes", other)),
        }
    }

    pub fn opt_time(&self, i: usize) -> Result<Option<OffsetDateTime>> {
        self.opt_text(i)?.map(|t| parse_time(&t)).transpose()
    }

    pub fn time(&self, i: usize) -> Result<OffsetDateTime> {
        self.opt_time(i)?
            .ok_or_else(|| corrupt(i, "a time", &Cell::Null))
    }

    pub fn opt_json<T: serde::de::DeserializeOwned>(&self, i: usize) -> Result<Option<T>> {
        self.opt_text(i)?
            .map(|t| {
                serde_json::from_str(&t)
                    .map_err(|e| StoreError::corrupt(format!("column {i}: {e}")))
            })
            .transpose()
    }
}

/// Parses a stored timestamp: RFC 3339, or SQLite's `YYYY-MM-DD HH:MM:SS` form of
/// `CURRENT_TIMESTAMP` (UTC).
pub fn parse_time(text: &str) -> Result<OffsetDateTime> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(t);
    }
    let sqlite = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::PrimitiveDateTime::parse(text, &sqlite)
        .map(|t| t.assume_utc())
        .map_err(|e| StoreError::corrupt(format!("bad timestamp {text:?}: {e}")))
}

/// A connection, or a transaction on one, that runs shared statements. Asynchronous so that
/// PostgreSQL's driver runs natively; SQLite's statements complete on the spot.
#[async_trait::async_trait]
pub trait Conn: Send {
    fn dialect(&self) -> Dialect;
    /// Runs `sql` and returns its rows.
    async fn query(&mut self, sql: &str, args: &[Arg]) -> Result<Vec<Row>>;
    /// Runs `sql` and returns how many rows it changed.
    async fn execute(&mut self, sql: &str, args: &[Arg]) -> Result<u64>;

    /// The first row, if any.
    async fn query_opt(&mut self, sql: &str, args: &[Arg]) -> Result<Option<Row>> {
        Ok(self.query(sql, args).await?.into_iter().next())
    }

    /// Exactly one row.
    async fn query_one(&mut self, sql: &str, args: &[Arg]) -> Result<Row> {
        self.query_opt(sql, args)
            .await?
            .ok_or_else(|| StoreError::corrupt("a query for one row returned none"))
    }
}

/// `$first, $first+1, ...`: `count` placeholders, for a list of values in `IN (...)`.
pub fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_read_typed_values_and_say_what_is_wrong() {
        let row = Row(vec![
            Cell::Int(7),
            Cell::Null,
            Cell::Text("2026-12-04T10:00:00.5Z".into()),
            Cell::Text("2026-12-04 10:00:00".into()),
            Cell::Text("[1,2]".into()),
        ]);
        assert_eq!(row.int(0).unwrap(), 7);
        assert!(row.bool(0).unwrap());
        assert_eq!(row.opt_text(1).unwrap(), None);
        assert!(row.int(1).is_err());
        assert_eq!(row.time(2).unwrap().millisecond(), 500);
        assert_eq!(row.time(3).unwrap().hour(), 10);
        assert_eq!(row.opt_json::<Vec<i32>>(4).unwrap(), Some(vec![1, 2]));
        assert!(row.text(0).is_err());
        assert!(row.int(9).is_err());
        assert_eq!(placeholders(3, 3), "$3, $4, $5");
    }
}
