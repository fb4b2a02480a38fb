//! Tables for people: a list answer as aligned columns, an object as `key: value` lines.

use serde_json::Value;

/// A cell's text: strings bare, typed values as their value, null as `-`.
fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.replace(['\n', '\r', '\t'], " "),
        Value::Object(map) if map.contains_key("type") && map.contains_key("value") => {
            format!("{} ({})", cell(&map["value"]), cell(&map["type"]))
        }
        other => other.to_string(),
    }
}

/// Prints the items of a list answer under `columns`, then how many of how many.
pub fn print_list(answer: &Value, columns: &[&str]) {
    let items = answer["list"].as_array().cloned().unwrap_or_default();
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|item| columns.iter().map(|c| cell(&item[*c])).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(columns.iter().map(|c| c.to_uppercase()).collect());
    for row in rows {
        line(row);
    }
    let (offset, total) = (
        answer["offset"].as_u64().unwrap_or(0),
        answer["total_count"].as_u64().unwrap_or(items.len() as u64),
    );
    if !items.is_empty() || total > 0 {
        eprintln!(
            "{}-{} of {total}",
            offset + u64::from(!items.is_empty()),
            offset + items.len() as u64
        );
    }
}

/// Prints one row of `columns`, tab-separated (for followed events).
pub fn print_row(item: &Value, columns: &[&str]) {
    let cells: Vec<String> = columns.iter().map(|c| cell(&item[*c])).collect();
    println!("{}", cells.join("\t"));
}

/// Prints an object's fields, one per line; soft errors as warnings on standard error.
pub fn print_object(value: &Value) {
    match value.as_object() {
        Some(map) => {
            let width = map.keys().map(|k| k.len()).max().unwrap_or(0);
            for (key, field) in map {
                if key == "error_list" {
                    continue;
                }
                println!("{key:<width$}  {}", cell(field));
            }
            for soft in value["error_list"].as_array().into_iter().flatten() {
                eprintln!("warning: {} {}", cell(&soft["type"]), cell(&soft["code"]));
            }
        }
        None => println!("{}", cell(value)),
    }
}
