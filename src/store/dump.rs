//! The dump format that moves a deployment between databases (`mobile-admin export` and `import`).
//!
//! JSON lines that do not depend on the backend: a header with the schema version, then for each table
//! a line naming its columns followed by one JSON array per row, then a trailer with the row count so
//! that a cut-off dump is refused. Timestamps are RFC 3339 text, JSON columns their JSON text, and
//! binary values `{"base64": "..."}`. Each backend reads and writes its own column types; this module
//! holds what they share: the table order, the cells, the framing and its checks.

use std::collections::HashMap;

use base64::Engine;
use serde_json::{json, Value as Json};

use super::{Result, StoreError};

/// The value of `format` in the header line.
pub const FORMAT: &str = "mobile-admin-dump";
/// Version of the framing (not of the schema, which the header carries separately).
pub const VERSION: i64 = 1;

/// Every table a dump carries, parents before children so that foreign keys hold at each insert.
/// `outbox`, `device_infections` and `revisions` come after what triggers write them from, and the
/// dumped rows then replace what the triggers wrote. Sessions are not carried: they live minutes,
/// and devices simply begin new ones.
pub const TABLES: &[&str] = &[
    "groups",
    "devices",
    "device_sync",
    "device_app_info",
    "device_app_state",
    "device_settings",
    "policy",
    "subscriptions",
    "accounts",
    "tokens",
    "audit",
    "events",
    "intake_events",
    "backend_commands",
    "outbox",
    "bus_cursors",
    "device_infections",
    "revisions",
];

/// Tables that exist in the schema but are deliberately not dumped: they hold only what matters for
/// minutes (sessions, counts of failed logins, which node drives an export sink, which service
/// consoles are connected).
pub const NOT_DUMPED: &[&str] = &[
    "sessions",
    "login_failures",
    "sink_leases",
    "backend_consoles",
];

/// Tables that triggers write while earlier tables load: cleared before their dumped rows go in.
/// The outbox is carried whole, so that export sinks carry on from their cursors.
pub const DERIVED: &[&str] = &["outbox", "device_infections", "revisions"];

/// Tables the migrations fill before any import (their seed rows are replaced by the dump's).
pub const SEEDED: &[&str] = &["groups", "revisions"];

/// For each table an import must find empty, a query saying whether it holds rows: seeded tables
/// may hold only what the migrations put there, derived ones are replaced anyway.
pub fn occupancy_checks() -> Vec<(String, String)> {
    TABLES
        .iter()
        .filter_map(|table| {
            match *table {
                "groups" => Some("SELECT EXISTS (SELECT 1 FROM groups WHERE id > 2)".to_string()),
                t if SEEDED.contains(&t) || DERIVED.contains(&t) => None,
                t => Some(format!("SELECT EXISTS (SELECT 1 FROM {t})")),
            }
            .map(|sql| (table.to_string(), sql))
        })
        .collect()
}

/// One value of a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Bytes(Vec<u8>),
}

impl Cell {
    pub fn to_json(&self) -> Json {
        match self {
            Cell::Null => Json::Null,
            Cell::Int(i) => json!(i),
            // JSON has no infinities: such a value would not survive the round trip anyway.
            Cell::Real(f) => serde_json::Number::from_f64(*f)
                .map(Json::Number)
                .unwrap_or(Json::Null),
            Cell::Text(s) => json!(s),
            Cell::Bytes(b) => {
                json!({ "base64": base64::engine::general_purpose::STANDARD.encode(b) })
            }
        }
    }

    pub fn from_json(value: Json) -> Result<Cell> {
        Ok(match value {
            Json::Null => Cell::Null,
            Json::Bool(b) => Cell::Int(b.into()),
            Json::Number(n) => match n.as_i64() {
                Some(i) => Cell::Int(i),
                None => Cell::Real(n.as_f64().unwrap_or(f64::NAN)),
            },
            Json::String(s) => Cell::Text(s),
            Json::Object(mut o) if o.len() == 1 => match o.remove("base64") {
                Some(Json::String(text)) => Cell::Bytes(
                    base64::engine::general_purpose::STANDARD
                        .decode(text)
                        .map_err(|e| invalid(format!("bad base64 value: {e}")))?,
                ),
                _ => return Err(invalid("unknown object value in a row")),
            },
            other => return Err(invalid(format!("unexpected value in a row: {other}"))),
        })
    }
}

/// One line of a dump.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Header { schema: i64 },
    Table { name: String, columns: Vec<String> },
    Row(Vec<Cell>),
    End { rows: u64 },
}

impl Record {
    pub fn to_line(&self) -> String {
        let value = match self {
            Record::Header { schema } => {
                json!({ "format": FORMAT, "version": VERSION, "schema": schema })
            }
            Record::Table { name, columns } => json!({ "table": name, "columns": columns }),
            Record::Row(cells) => Json::Array(cells.iter().map(Cell::to_json).collect()),
            Record::End { rows } => json!({ "end": true, "rows": rows }),
        };
        value.to_string()
    }

    pub fn parse(line: &str) -> Result<Record> {
        let value: Json =
            serde_json::from_str(line).map_err(|e| invalid(format!("not JSON: {e}")))?;
        match value {
            Json::Array(cells) => Ok(Record::Row(
                cells
                    .into_iter()
                    .map(Cell::from_json)
                    .collect::<Result<_>>()?,
            )),
            Json::Object(o) => {
                if o.get("format").is_some() {
                    if o.get("format") != Some(&json!(FORMAT)) {
                        return Err(invalid("not a mobile-admin dump"));
                    }
                    if o.get("version") != Some(&json!(VERSION)) {
                        return Err(invalid(format!(
                            "dump format version {} is not supported (expected {VERSION})",
                            o.get("version").unwrap_or(&Json::Null)
                        )));
                    }
                    let schema = o
                        .get("schema")
                        .and_then(Json::as_i64)
                        .ok_or_else(|| invalid("header without a schema version"))?;
                    Ok(Record::Header { schema })
                } else if let Some(name) = o.get("table") {
                    let name = name
                        .as_str()
                        .ok_or_else(|| invalid("table name is not text"))?;
                    let columns = o
                        .get("columns")
                        .and_then(Json::as_array)
                        .ok_or_else(|| invalid("table line without columns"))?
                        .iter()
                        .map(|c| {
                            c.as_str()
                                .map(str::to_string)
                                .ok_or_else(|| invalid("column name is not text"))
                        })
                        .collect::<Result<_>>()?;
                    Ok(Record::Table {
                        name: name.to_string(),
                        columns,
                    })
                } else if o.get("end") == Some(&json!(true)) {
                    let rows = o
                        .get("rows")
                        .and_then(Json::as_u64)
                        .ok_or_else(|| invalid("end line without a row count"))?;
                    Ok(Record::End { rows })
                } else {
                    Err(invalid("unknown line"))
                }
            }
            _ => Err(invalid("unknown line")),
        }
    }
}

fn invalid(message: impl Into<String>) -> StoreError {
    StoreError::Invalid(format!("dump: {}", message.into()))
}

/// Rows of one table, as many as one insert statement takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub table: &'static str,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

/// Reads a dump as batches of rows, checking its framing: a header for `schema`, known tables in
/// order, rows as wide as their column list, and a trailer whose count matches.
pub struct Reader<'a> {
    input: &'a mut (dyn Iterator<Item = Result<Record>> + Send),
    table: Option<(&'static str, Vec<String>)>,
    last_table: Option<usize>,
    lookahead: Option<Record>,
    rows: u64,
    finished: bool,
}

impl<'a> Reader<'a> {
    pub fn new(
        input: &'a mut (dyn Iterator<Item = Result<Record>> + Send),
        schema: i64,
    ) -> Result<Reader<'a>> {
        match input.next().transpose()? {
            Some(Record::Header { schema: s }) if s == schema => {}
            Some(Record::Header { schema: s }) => {
                return Err(invalid(format!(
                    "the dump has schema version {s}, this database {schema}: export and import \
                     with the same version of mobile-admin"
                )))
            }
            Some(_) => return Err(invalid("the first line is not a dump header")),
            None => return Err(invalid("empty input")),
        }
        Ok(Reader {
            input,
            table: None,
            last_table: None,
            lookahead: None,
            rows: 0,
            finished: false,
        })
    }

    /// The next rows of one table, at most `max_params` values in all (the groups table comes whole,
    /// parents first). `None` once the trailer was read and checked.
    pub fn next_batch(&mut self, max_params: usize) -> Result<Option<Batch>> {
        let mut batch: Option<Batch> = None;
        loop {
            if self.finished {
                return self.finish(batch);
            }
            let record = match self.lookahead.take() {
                Some(r) => r,
                None => match self.input.next().transpose()? {
                    Some(r) => r,
                    None => return Err(invalid("the dump is incomplete (no end line)")),
                },
            };
            match record {
                Record::Header { .. } => return Err(invalid("a second header")),
                Record::Table { name, columns } => {
                    if batch.is_some() {
                        self.lookahead = Some(Record::Table { name, columns });
                        return self.finish(batch);
                    }
                    let index = TABLES
                        .iter()
                        .position(|t| *t == name)
                        .ok_or_else(|| invalid(format!("unknown table {name:?}")))?;
                    if self.last_table.is_some_and(|last| last >= index) {
                        return Err(invalid(format!("table {name} is out of order")));
                    }
                    check_columns(&columns)?;
                    self.last_table = Some(index);
                    self.table = Some((TABLES[index], columns));
                }
                Record::Row(cells) => {
                    let (table, columns) = self
                        .table
                        .as_ref()
                        .ok_or_else(|| invalid("a row before any table line"))?;
                    if cells.len() != columns.len() {
                        return Err(invalid(format!(
                            "a row of {table} has {} values for {} columns",
                            cells.len(),
                            columns.len()
                        )));
                    }
                    self.rows += 1;
                    let b = batch.get_or_insert_with(|| Batch {
                        table,
                        columns: columns.clone(),
                        rows: Vec::new(),
                    });
                    b.rows.push(cells);
                    let full = (b.rows.len() + 1) * b.columns.len() > max_params;
                    if full && *table != "groups" {
                        return self.finish(batch);
                    }
                }
                Record::End { rows } => {
                    if rows != self.rows {
                        return Err(invalid(format!(
                            "the end line counts {rows} rows but the dump holds {}",
                            self.rows
                        )));
                    }
                    self.finished = true;
                    if let Some(extra) = self.input.next() {
                        extra?;
                        return Err(invalid("lines after the end line"));
                    }
                }
            }
        }
    }

    fn finish(&self, batch: Option<Batch>) -> Result<Option<Batch>> {
        match batch {
            Some(mut b) if b.table == "groups" => {
                b.rows = parents_first(&b.columns, b.rows)?;
                Ok(Some(b))
            }
            other => Ok(other),
        }
    }
}

fn check_columns(columns: &[String]) -> Result<()> {
    if columns.is_empty() {
        return Err(invalid("a table without columns"));
    }
    for (i, c) in columns.iter().enumerate() {
        let plain = !c.is_empty()
            && c.len() <= 63
            && c.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !plain || columns[..i].contains(c) {
            return Err(invalid(format!("bad column name {c:?}")));
        }
    }
    Ok(())
}

/// Orders group rows so that every parent precedes its children (a group may have been moved under
/// one created after it).
fn parents_first(columns: &[String], rows: Vec<Vec<Cell>>) -> Result<Vec<Vec<Cell>>> {
    let at = |name: &str| {
        columns
            .iter()
            .position(|c| c == name)
            .ok_or_else(|| invalid(format!("groups without a {name} column")))
    };
    let (id_at, parent_at) = (at("id")?, at("parent_id")?);
    let int = |cell: &Cell| match cell {
        Cell::Int(i) => Some(*i),
        _ => None,
    };
    let parents: HashMap<i64, Option<i64>> = rows
        .iter()
        .filter_map(|r| Some((int(&r[id_at])?, int(&r[parent_at]))))
        .collect();
    let depth = |mut id: i64| -> Result<usize> {
        let mut depth = 0;
        while let Some(Some(parent)) = parents.get(&id) {
            depth += 1;
            if depth > parents.len() {
                return Err(invalid("the group tree has a cycle"));
            }
            id = *parent;
        }
        Ok(depth)
    };
    let mut keyed = rows
        .into_iter()
        .map(|r| Ok((depth(int(&r[id_at]).unwrap_or(0))?, r)))
        .collect::<Result<Vec<_>>>()?;
    keyed.sort_by_key(|(d, _)| *d);
    Ok(keyed.into_iter().map(|(_, r)| r).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(lines: &[&str], schema: i64, max_params: usize) -> Result<Vec<Batch>> {
        let mut records = lines.iter().map(|l| Record::parse(l));
        let mut reader = Reader::new(&mut records, schema)?;
        let mut batches = vec![];
        while let Some(b) = reader.next_batch(max_params)? {
            batches.push(b);
        }
        Ok(batches)
    }

    #[test]
    fn records_round_trip_through_lines() {
        let records = [
            Record::Header { schema: 4 },
            Record::Table {
                name: "devices".into(),
                columns: vec!["id".into(), "credential".into()],
            },
            Record::Row(vec![
                Cell::Int(-7),
                Cell::Bytes(vec![0, 255, 10]),
                Cell::Text("2024-01-02T03:04:05.5Z".into()),
                Cell::Null,
                Cell::Real(0.25),
            ]),
            Record::End { rows: 1 },
        ];
        for r in records {
            assert_eq!(Record::parse(&r.to_line()).unwrap(), r);
        }
        assert!(Record::parse(r#"{"format":"other","version":1,"schema":1}"#).is_err());
        assert!(Record::parse(r#"[{"hex":"00"}]"#).is_err());
    }

    #[test]
    fn batches_split_by_size_and_groups_come_parents_first() {
        let lines = [
            r#"{"format":"mobile-admin-dump","version":1,"schema":4}"#,
            r#"{"table":"groups","columns":["id","parent_id","name"]}"#,
            r#"[1,null,"Devices"]"#,
            r#"[3,4,"Child moved under a later group"]"#,
            r#"[2,1,"Unassigned"]"#,
            r#"[4,1,"Later"]"#,
            r#"{"table":"devices","columns":["id","device_id"]}"#,
            r#"[1,"a"]"#,
            r#"[2,"b"]"#,
            r#"[3,"c"]"#,
            r#"{"table":"revisions","columns":["name","rev"]}"#,
            r#"{"end":true,"rows":7}"#,
        ];
        let batches = read_all(&lines, 4, 5).unwrap();
        let ids = |b: &Batch| -> Vec<Cell> { b.rows.iter().map(|r| r[0].clone()).collect() };
        assert_eq!(batches.len(), 3, "{batches:?}");
        assert_eq!(batches[0].table, "groups");
        assert_eq!(
            ids(&batches[0]),
            vec![Cell::Int(1), Cell::Int(2), Cell::Int(4), Cell::Int(3)]
        );
        assert_eq!(ids(&batches[1]), vec![Cell::Int(1), Cell::Int(2)]);
        assert_eq!(ids(&batches[2]), vec![Cell::Int(3)]);
    }

    #[test]
    fn damaged_dumps_are_refused() {
        let header = r#"{"format":"mobile-admin-dump","version":1,"schema":4}"#;
        let devices = r#"{"table":"devices","columns":["id","device_id"]}"#;
        let cases: &[&[&str]] = &[
            // Cut off before the trailer.
            &[header, devices, r#"[1,"a"]"#],
            // Trailer count does not match.
            &[header, devices, r#"[1,"a"]"#, r#"{"end":true,"rows":2}"#],
            // Unknown table, tables out of order, bad column names, short rows.
            &[
                header,
                r#"{"table":"x","columns":["a"]}"#,
                r#"{"end":true,"rows":0}"#,
            ],
            &[
                header,
                devices,
                r#"{"table":"groups","columns":["id"]}"#,
                r#"{"end":true,"rows":0}"#,
            ],
            &[
                header,
                r#"{"table":"devices","columns":["id; DROP TABLE x"]}"#,
                r#"{"end":true,"rows":0}"#,
            ],
            &[header, devices, r#"[1]"#, r#"{"end":true,"rows":1}"#],
            // Lines after the end.
            &[header, r#"{"end":true,"rows":0}"#, r#"[1]"#],
        ];
        for lines in cases {
            assert!(read_all(lines, 4, 100).is_err(), "{lines:?}");
        }
        // Another schema version.
        assert!(read_all(&[header, r#"{"end":true,"rows":0}"#], 5, 100).is_err());
        assert!(read_all(&[header, r#"{"end":true,"rows":0}"#], 4, 100)
            .unwrap()
            .is_empty());
    }
}
