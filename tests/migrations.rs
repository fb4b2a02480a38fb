//! The SQLite and PostgreSQL migrations stay in step: the same files, and once applied the same tables,
//! columns (names, order, nullability) and indexes, so that admins' SQL works on either database.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use mobile_admin::store::dump;

fn migration_files(backend: &str) -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn both_backends_have_the_same_migration_files() {
    let sqlite = migration_files("sqlite");
    let postgres = migration_files("postgres");
    assert!(!sqlite.is_empty());
    assert_eq!(
        sqlite, postgres,
        "every migration needs its twin in the other folder"
    );
    for name in &sqlite {
        let (number, rest) = name.split_once('_').expect("NNNN_name.sql");
        assert!(
            number.len() == 4
                && number.bytes().all(|b| b.is_ascii_digit())
                && rest.ends_with(".sql"),
            "{name}: expected NNNN_name.sql"
        );
    }
}

/// Table name to its columns (name, nullable) in order.
type Schema = BTreeMap<String, Vec<(String, bool)>>;

async fn sqlite_schema(db: &Db) -> (Schema, Vec<String>) {
    let tables: Vec<(String,)> = db
        .fetch_all(
            "SELECT name FROM sqlite_master WHERE type = 'table'
             AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations'",
        )
        .await;
    let mut schema = Schema::new();
    for (table,) in tables {
        let columns: Vec<(String, i64, i64)> = db
            .fetch_all(&format!(
                "SELECT name, \"notnull\", pk FROM pragma_table_info('{table}') ORDER BY cid"
            ))
            .await;
        // A primary key column cannot hold NULL even where SQLite does not say so.
        let columns = columns
            .into_iter()
            .map(|(name, notnull, pk)| (name, notnull == 0 && pk == 0))
            .collect();
        schema.insert(table, columns);
    }
    let mut indexes: Vec<String> = db
        .fetch_all::<(String,)>(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL",
        )
        .await
        .into_iter()
        .map(|(n,)| n)
        .collect();
    indexes.sort();
    (schema, indexes)
}

async fn postgres_schema(db: &Db) -> (Schema, Vec<String>) {
    let columns: Vec<(String, String, String)> = db
        .fetch_all(
            "SELECT c.table_name::text, c.column_name::text, c.is_nullable::text
             FROM information_schema.columns c
             JOIN information_schema.tables t
               ON t.table_schema = c.table_schema AND t.table_name = c.table_name
             WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'
               AND c.table_name <> '_sqlx_migrations'
             ORDER BY c.table_name, c.ordinal_position",
        )
        .await;
    let mut schema = Schema::new();
    for (table, column, nullable) in columns {
        schema
            .entry(table)
            .or_default()
            .push((column, nullable == "YES"));
    }
    // Indexes created by CREATE INDEX, not those behind PRIMARY KEY and UNIQUE constraints.
    let mut indexes: Vec<String> = db
        .fetch_all::<(String,)>(
            "SELECT indexname::text FROM pg_indexes WHERE schemaname = current_schema()
             AND indexname NOT IN (SELECT conname FROM pg_constraint)",
        )
        .await
        .into_iter()
        .map(|(n,)| n)
        .collect();
    indexes.sort();
    (schema, indexes)
}

#[tokio::test]
async fn both_schemas_have_the_same_tables_columns_and_indexes() {
    let tmp = tempfile::tempdir().unwrap();
    let lite = TestDb::sqlite(tmp.path());
    mobile_admin::store::open(lite.url())
        .await
        .unwrap()
        .close()
        .await;
    let lite_sql = lite.sql().await;
    let (sqlite, sqlite_indexes) = sqlite_schema(&lite_sql).await;

    // Every table is either carried by a dump or deliberately left out of it.
    let mut listed: Vec<&str> = dump::TABLES
        .iter()
        .chain(dump::NOT_DUMPED)
        .copied()
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        sqlite.keys().map(String::as_str).collect::<Vec<_>>(),
        "store::dump::TABLES must name every table (in foreign-key order)"
    );

    if !postgres_or_skip(
        "the PostgreSQL half of both_schemas_have_the_same_tables_columns_and_indexes",
    ) {
        return;
    }
    let pg = TestDb::postgres().await;
    mobile_admin::store::open(pg.url())
        .await
        .unwrap()
        .close()
        .await;
    let pg_sql = pg.sql().await;
    let (postgres, postgres_indexes) = postgres_schema(&pg_sql).await;
    assert_eq!(
        sqlite.keys().collect::<Vec<_>>(),
        postgres.keys().collect::<Vec<_>>(),
        "tables"
    );
    for (table, columns) in &sqlite {
        assert_eq!(columns, &postgres[table], "columns of {table}");
    }
    assert_eq!(sqlite_indexes, postgres_indexes, "indexes");

    // Both record the same migrations as applied.
    let versions = "SELECT version, description FROM _sqlx_migrations ORDER BY version";
    let lite_versions: Vec<(i64, String)> = lite_sql.fetch_all(versions).await;
    let pg_versions: Vec<(i64, String)> = pg_sql.fetch_all(versions).await;
    assert_eq!(lite_versions, pg_versions);
    lite_sql.close().await;
    pg_sql.close().await;
}

#[tokio::test]
async fn migrate_creates_a_missing_postgres_database_and_is_idempotent() {
    if !postgres_or_skip("migrate_creates_a_missing_postgres_database_and_is_idempotent") {
        return;
    }
    let db = TestDb::postgres_unborn();
    for _ in 0..2 {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_mobile-admin"))
            .args(["migrate", "--database-url", db.url()])
            .env_remove("MOBILE_ADMIN_TEST_BACKEND")
            .env_remove("MOBILE_ADMIN_TEST_PG_URL")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let sql = db.sql().await;
    let applied: i64 = sql
        .scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .await;
    assert_eq!(applied as usize, migration_files("postgres").len());
    assert_eq!(sql.scalar::<i64>("SELECT count(*) FROM groups").await, 2);
    sql.close().await;
}
