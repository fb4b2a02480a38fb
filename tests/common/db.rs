//! The database under test: SQLite by default, PostgreSQL with `MOBILE_ADMIN_TEST_BACKEND=postgres`.
//!
//! Each test gets its own database (a file in its directory, or a fresh PostgreSQL database that is
//! dropped with it) so tests run in parallel. [`Db`] runs plain SQL on either backend and returns
//! values of one neutral kind, so the same checks work on both: write SQL without parameters and
//! with the constructs both dialects share.

use std::path::Path;

use rand::RngCore;
use sqlx::postgres::PgRow;
use sqlx::{Column, Connection, Row, TypeInfo};

pub use mobile_admin::store::dump::Cell;
pub use mobile_admin::store::Backend;

/// Where PostgreSQL test databases are created (any database of the server will do to connect).
pub fn pg_admin_url() -> String {
    std::env::var("MOBILE_ADMIN_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// The backend the integration tests run against.
pub fn backend() -> Backend {
    match std::env::var("MOBILE_ADMIN_TEST_BACKEND").as_deref() {
        Err(_) | Ok("") | Ok("sqlite") => Backend::Sqlite,
        Ok("postgres") | Ok("postgresql") => Backend::Postgres,
        Ok(other) => panic!("MOBILE_ADMIN_TEST_BACKEND={other}: expected sqlite or postgres"),
    }
}

/// True when the suite runs on PostgreSQL; otherwise says that `test` is skipped.
pub fn postgres_or_skip(test: &str) -> bool {
    let on = backend() == Backend::Postgres;
    if !on {
        eprintln!("{test}: skipped (a PostgreSQL test; set MOBILE_ADMIN_TEST_BACKEND=postgres)");
    }
    on
}

/// A database for one test; a PostgreSQL one is dropped with this value.
pub struct TestDb {
    url: String,
    pg_name: Option<String>,
}

impl TestDb {
    /// A database on the backend under test; SQLite's file goes in `dir`.
    pub async fn create(dir: &Path) -> TestDb {
        match backend() {
            Backend::Sqlite => TestDb::sqlite(dir),
            Backend::Postgres => TestDb::postgres().await,
        }
    }

    pub fn sqlite(dir: &Path) -> TestDb {
        TestDb {
            url: format!("sqlite://{}", dir.join("mobile-admin.db").display()),
            pg_name: None,
        }
    }

    /// A new, empty PostgreSQL database.
    pub async fn postgres() -> TestDb {
        let db = TestDb::postgres_unborn();
        let admin = pg_admin_url();
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {admin} (is the server running?): {e}"));
        sqlx::query(&format!("CREATE DATABASE {}", db.pg_name.as_ref().unwrap()))
            .execute(&mut conn)
            .await
            .unwrap();
        let _ = conn.close().await;
        db
    }

    /// The URL of a PostgreSQL database that does not exist yet (dropped with this value if
    /// something creates it).
    pub fn postgres_unborn() -> TestDb {
        let mut bytes = [0u8; 8];
        rand::rng().fill_bytes(&mut bytes);
        let name = format!("mobile_admin_t_{}", hex::encode(bytes));
        let admin = pg_admin_url();
        let (base, _) = admin.rsplit_once('/').expect("a database URL");
        TestDb {
            url: format!("{base}/{name}"),
            pg_name: Some(name),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn sql(&self) -> Db {
        Db::connect(&self.url).await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else {
            return;
        };
        // Drop runs inside the test's runtime, which cannot block on itself: use a thread of our own.
        let admin = pg_admin_url();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                    // FORCE: a server that was not stopped (a failed test) still holds connections.
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}

/// Plain SQL on the database a server uses, for checks and for hand edits as an admin would make.
pub enum Db {
    Sqlite(std::sync::Mutex<rusqlite::Connection>),
    Postgres(sqlx::PgPool),
}

impl Db {
    pub async fn connect(url: &str) -> Db {
        match url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            Some(path) => {
                let conn = rusqlite::Connection::open(path).unwrap();
                conn.busy_timeout(std::time::Duration::from_secs(30))
                    .unwrap();
                Db::Sqlite(std::sync::Mutex::new(conn))
            }
            None => Db::Postgres(sqlx::PgPool::connect(url).await.unwrap()),
        }
    }

    /// Runs one statement; returns the number of rows it changed.
    pub async fn execute(&self, sql: &str) -> u64 {
        let result = match self {
            Db::Sqlite(conn) => conn
                .lock()
                .unwrap()
                .execute(sql, [])
                .map(|n| n as u64)
                .map_err(|e| e.to_string()),
            Db::Postgres(pool) => sqlx::query(sql)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
                .map_err(|e| e.to_string()),
        };
        result.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Every row of a query, each as neutral cells.
    pub async fn rows(&self, sql: &str) -> Vec<Vec<Cell>> {
        match self {
            Db::Sqlite(conn) => {
                sqlite_rows(&conn.lock().unwrap(), sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
            }
            Db::Postgres(pool) => sqlx::query(sql)
                .fetch_all(pool)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .iter()
                .map(pg_cells)
                .collect(),
        }
    }

    pub async fn fetch_all<T: FromCells>(&self, sql: &str) -> Vec<T> {
        self.rows(sql)
            .await
            .into_iter()
            .map(T::from_cells)
            .collect()
    }

    pub async fn fetch_optional<T: FromCells>(&self, sql: &str) -> Option<T> {
        self.rows(sql).await.into_iter().next().map(T::from_cells)
    }

    /// The first row; panics if there is none.
    pub async fn fetch_one<T: FromCells>(&self, sql: &str) -> T {
        self.fetch_optional(sql)
            .await
            .unwrap_or_else(|| panic!("no row: {sql}"))
    }

    /// The first column of the first row.
    pub async fn scalar<T: FromCell>(&self, sql: &str) -> T {
        self.fetch_one::<(T,)>(sql).await.0
    }

    pub async fn close(self) {
        match self {
            Db::Sqlite(conn) => drop(conn),
            Db::Postgres(pool) => pool.close().await,
        }
    }
}

/// SQLite values by the type each value has (SQLite types values, not columns).
fn sqlite_rows(conn: &rusqlite::Connection, sql: &str) -> rusqlite::Result<Vec<Vec<Cell>>> {
    use rusqlite::types::ValueRef;
    let mut stmt = conn.prepare(sql)?;
    let width = stmt.column_count();
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let mut cells = Vec::with_capacity(width);
        for i in 0..width {
            cells.push(match row.get_ref(i)? {
                ValueRef::Null => Cell::Null,
                ValueRef::Integer(v) => Cell::Int(v),
                ValueRef::Real(v) => Cell::Real(v),
                ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => Cell::Bytes(b.to_vec()),
            });
        }
        out.push(cells);
    }
    Ok(out)
}

/// PostgreSQL values by column type; timestamps and JSON become the text SQLite would hold.
fn pg_cells(row: &PgRow) -> Vec<Cell> {
    (0..row.len())
        .map(|i| {
            let kind = row.column(i).type_info().name().to_string();
            let cell = match kind.as_str() {
                "INT8" => row.get::<Option<i64>, _>(i).map(Cell::Int),
                "INT4" => row.get::<Option<i32>, _>(i).map(|v| Cell::Int(v.into())),
                "INT2" => row.get::<Option<i16>, _>(i).map(|v| Cell::Int(v.into())),
                "BOOL" => row.get::<Option<bool>, _>(i).map(|v| Cell::Int(v.into())),
                "FLOAT8" => row.get::<Option<f64>, _>(i).map(Cell::Real),
                "FLOAT4" => row.get::<Option<f32>, _>(i).map(|v| Cell::Real(v.into())),
                "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" => row.get::<Option<String>, _>(i).map(Cell::Text),
                "BYTEA" => row.get::<Option<Vec<u8>>, _>(i).map(Cell::Bytes),
                "TIMESTAMPTZ" => row.get::<Option<time::OffsetDateTime>, _>(i).map(|t| {
                    Cell::Text(
                        t.to_offset(time::UtcOffset::UTC)
                            .format(&time::format_description::well_known::Rfc3339)
                            .unwrap(),
                    )
                }),
                "JSONB" | "JSON" => row
                    .get::<Option<serde_json::Value>, _>(i)
                    .map(|v| Cell::Text(v.to_string())),
                other => panic!(
                    "column {} is {other}: cast it in the test's SQL (CAST(x AS BIGINT) works on both)",
                    row.column(i).name()
                ),
            };
            cell.unwrap_or(Cell::Null)
        })
        .collect()
}

/// A Rust value from one neutral cell; panics (failing the test) on a mismatch.
pub trait FromCell: Sized {
    fn from_cell(cell: Cell) -> Self;
}

impl FromCell for i64 {
    fn from_cell(cell: Cell) -> Self {
        match cell {
            Cell::Int(i) => i,
            other => panic!("expected an integer, got {other:?}"),
        }
    }
}

impl FromCell for i32 {
    fn from_cell(cell: Cell) -> Self {
        i32::try_from(i64::from_cell(cell)).expect("fits in i32")
    }
}

impl FromCell for bool {
    fn from_cell(cell: Cell) -> Self {
        match i64::from_cell(cell) {
            0 => false,
            1 => true,
            other => panic!("expected 0 or 1, got {other}"),
        }
    }
}

impl FromCell for f64 {
    fn from_cell(cell: Cell) -> Self {
        match cell {
            Cell::Real(f) => f,
            Cell::Int(i) => i as f64,
            other => panic!("expected a number, got {other:?}"),
        }
    }
}

impl FromCell for String {
    fn from_cell(cell: Cell) -> Self {
        match cell {
            Cell::Text(s) => s,
            other => panic!("expected text, got {other:?}"),
        }
    }
}

impl FromCell for Vec<u8> {
    fn from_cell(cell: Cell) -> Self {
        match cell {
            Cell::Bytes(b) => b,
            other => panic!("expected bytes, got {other:?}"),
        }
    }
}

impl FromCell for Cell {
    fn from_cell(cell: Cell) -> Self {
        cell
    }
}

impl<T: FromCell> FromCell for Option<T> {
    fn from_cell(cell: Cell) -> Self {
        match cell {
            Cell::Null => None,
            other => Some(T::from_cell(other)),
        }
    }
}

/// A row as a tuple of [`FromCell`] values.
pub trait FromCells: Sized {
    fn from_cells(cells: Vec<Cell>) -> Self;
}

macro_rules! tuple_from_cells {
    ($n:literal: $($t:ident),+) => {
        impl<$($t: FromCell),+> FromCells for ($($t,)+) {
            fn from_cells(cells: Vec<Cell>) -> Self {
                assert_eq!(cells.len(), $n, "the query returns {} columns", cells.len());
                let mut cells = cells.into_iter();
                ($($t::from_cell(cells.next().unwrap()),)+)
            }
        }
    };
}

tuple_from_cells!(1: A);
tuple_from_cells!(2: A, B);
tuple_from_cells!(3: A, B, C);
tuple_from_cells!(4: A, B, C, D);
tuple_from_cells!(5: A, B, C, D, E);
tuple_from_cells!(6: A, B, C, D, E, F);
tuple_from_cells!(7: A, B, C, D, E, F, G);
tuple_from_cells!(8: A, B, C, D, E, F, G, H);
