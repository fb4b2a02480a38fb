//! Effective policy and subscriptions of a group, their digests, and settings merges. Pure functions.
//!
//! Policy rows are leaves of the settings tree addressed by a `/`-separated path. A device's effective
//! policy holds only locked rows; walking from the root down, a path locked by an ancestor is never
//! overridden by a descendant, and a descendant row that would put a value inside (or over) an
//! ancestor's locked leaf is dropped. Arrays are single rows, so they are locked whole.

use std::collections::BTreeSet;

use base64::Engine;
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::soap::{Params, Subscriptions, Value};

/// One policy row as an admin wrote it (see the README for the value formats).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRow {
    pub group_id: i64,
    pub path: String,
    pub value_type: String,
    pub value: String,
    pub locked: bool,
}

/// An event type the devices of a group should send, at a severity (1 info .. 4 critical).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionRow {
    pub group_id: i64,
    pub severity: i32,
    pub event_type: String,
}

/// `t` as RFC 3339 in UTC, the form timestamps take in policy rows and in SQLite.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .expect("any UTC date formats as RFC 3339")
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const DATE: &[time::format_description::FormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]");

/// The `value_type` and `value` text of a policy row holding `value`.
pub fn encode_row_value(value: &Value) -> Result<(&'static str, String), String> {
    Ok(match value {
        Value::Bool(b) => ("bool", b.to_string()),
        Value::String(s) => ("string", s.clone()),
        Value::Int(i) => ("int", i.to_string()),
        Value::Long(l) => ("long", l.to_string()),
        Value::Float(f) => ("float", f.to_string()),
        Value::Double(d) => ("double", d.to_string()),
        Value::Date(d) => ("date", d.format(DATE).map_err(|e| e.to_string())?),
        Value::DateTime(t) => ("datetime", rfc3339(*t)),
        Value::Binary(b) => ("binary", B64.encode(b)),
        Value::Array(items) => (
            "array",
            serde_json::to_string(items).map_err(|e| e.to_string())?,
        ),
        Value::Params(_) => {
            return Err(
                "a policy row holds one value; lock the fields of a container one by one".into(),
            )
        }
    })
}

/// Parses a policy row's value. Admins edit these by hand, so errors say what was expected.
pub fn decode_row_value(value_type: &str, text: &str) -> Result<Value, String> {
    let bad = |what: &str| format!("{value_type} value {text:?} is not {what}");
    let t = text.trim();
    Ok(match value_type {
        "bool" => match t {
            "true" | "1" => Value::Bool(true),
            "false" | "0" => Value::Bool(false),
            _ => return Err(bad("true, false, 1 or 0")),
        },
        "string" => Value::String(text.to_string()),
        "int" => Value::Int(t.parse().map_err(|_| bad("a 32-bit integer"))?),
        "long" => Value::Long(t.parse().map_err(|_| bad("a 64-bit integer"))?),
        "float" => Value::Float(t.parse().map_err(|_| bad("a number"))?),
        "double" => Value::Double(t.parse().map_err(|_| bad("a number"))?),
        "date" => Value::Date(time::Date::parse(t, DATE).map_err(|_| bad("YYYY-MM-DD"))?),
        "datetime" => Value::DateTime(
            time::OffsetDateTime::parse(t, &Rfc3339)
                .map_err(|_| bad("an RFC 3339 date and time"))?
                .to_offset(time::UtcOffset::UTC),
        ),
        "binary" => Value::Binary(B64.decode(t).map_err(|_| bad("base64"))?),
        "array" => {
            Value::Array(serde_json::from_str(t).map_err(|_| bad("a JSON array of typed values"))?)
        }
        _ => return Err(format!("unknown value_type {value_type:?}")),
    })
}

/// Splits a row path into names; empty names (`a//b`, leading or trailing `/`) are refused.
pub fn split_path(path: &str) -> Result<Vec<&str>, String> {
    let names: Vec<&str> = path.split('/').collect();
    if names.iter().any(|n| n.is_empty()) {
        return Err(format!("policy path {path:?} has an empty name"));
    }
    Ok(names)
}

/// Inserts `value` at `names` unless something already there conflicts; returns whether it was set.
fn insert_if_free(tree: &mut Params, names: &[&str], value: Value) -> bool {
    let (last, parents) = names.split_last().expect("paths are never empty");
    let mut node = tree;
    for name in parents {
        let entry = node
            .0
            .entry((*name).to_string())
            .or_insert_with(|| Value::Params(Params::default()));
        match entry {
            Value::Params(inner) => node = inner,
            // An ancestor locked a leaf where this row needs a container.
            _ => return false,
        }
    }
    if node.0.contains_key(*last) {
        return false;
    }
    node.0.insert((*last).to_string(), value);
    true
}

/// A row that could not be used, with the reason (logged by the caller; never blocks other rows).
#[derive(Debug, Clone, PartialEq)]
pub struct SkippedRow {
    pub group_id: i64,
    pub path: String,
    pub reason: String,
}

/// The effective policy for a device in the last group of `chain` (root first).
pub fn effective_policy(chain: &[i64], rows: &[PolicyRow]) -> (Params, Vec<SkippedRow>) {
    let mut tree = Params::default();
    let mut skipped = Vec::new();
    for group in chain {
        let mut mine: Vec<&PolicyRow> = rows
            .iter()
            .filter(|r| r.group_id == *group && r.locked)
            .collect();
        mine.sort_by(|a, b| a.path.cmp(&b.path));
        for row in mine {
            let skip = |reason: String| SkippedRow {
                group_id: row.group_id,
                path: row.path.clone(),
                reason,
            };
            let names = match split_path(&row.path) {
                Ok(names) => names,
                Err(e) => {
                    skipped.push(skip(e));
                    continue;
                }
            };
            match decode_row_value(&row.value_type, &row.value) {
                Ok(value) => {
                    if !insert_if_free(&mut tree, &names, value) {
                        skipped.push(skip("overridden by a lock in an ancestor group".into()));
                    }
                }
                Err(e) => skipped.push(skip(e)),
            }
        }
    }
    (tree, skipped)
}

/// One path of a group's policy, and where its value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Provenance {
    pub path: String,
    pub value_type: String,
    pub value: String,
    pub locked: bool,
    /// The group whose row this is.
    pub group_id: i64,
    /// Whether devices get it: a locked row that no ancestor's lock overrides and that is valid.
    pub applied: bool,
    /// Groups of the chain whose rows for the same path lose to this one.
    pub shadowed: Vec<i64>,
}

/// The policy of the last group of `chain` (root first) path by path, with provenance: the value
/// that wins for each path (the first locked row from the root down; without a lock, the row
/// nearest the group, which devices do not get), the group it comes from, and the groups it
/// overrides.
pub fn provenance(chain: &[i64], rows: &[PolicyRow]) -> Vec<Provenance> {
    let (_, skipped) = effective_policy(chain, rows);
    let depth = |group: i64| chain.iter().position(|g| *g == group);
    let mut by_path: std::collections::BTreeMap<&str, Vec<&PolicyRow>> = Default::default();
    for row in rows.iter().filter(|r| depth(r.group_id).is_some()) {
        by_path.entry(&row.path).or_default().push(row);
    }
    by_path
        .into_iter()
        .map(|(path, mut candidates)| {
            candidates.sort_by_key(|r| depth(r.group_id));
            let winner = candidates
                .iter()
                .find(|r| r.locked)
                .or(candidates.last())
                .copied()
                .expect("a path has at least one row");
            let applied = winner.locked
                && !skipped
                    .iter()
                    .any(|s| s.group_id == winner.group_id && s.path == path);
            Provenance {
                path: path.to_string(),
                value_type: winner.value_type.clone(),
                value: winner.value.clone(),
                locked: winner.locked,
                group_id: winner.group_id,
                applied,
                shadowed: candidates
                    .iter()
                    .filter(|r| r.group_id != winner.group_id)
                    .map(|r| r.group_id)
                    .collect(),
            }
        })
        .collect()
}

/// The effective subscriptions: the union of the rows of every group in the chain.
pub fn effective_subscriptions(rows: &[SubscriptionRow]) -> Subscriptions {
    let mut by_severity: [BTreeSet<&str>; 4] = Default::default();
    for row in rows {
        if let Some(set) = usize::try_from(row.severity - 1)
            .ok()
            .and_then(|i| by_severity.get_mut(i))
        {
            set.insert(&row.event_type);
        }
    }
    let list = |i: usize| by_severity[i].iter().map(|s| s.to_string()).collect();
    Subscriptions {
        hash: None,
        types_info: list(0),
        types_warning: list(1),
        types_error: list(2),
        types_critical: list(3),
    }
}

/// A stable digest of what a push would send: equal content, equal digest.
pub fn digest<T: serde::Serialize>(content: &T) -> Vec<u8> {
    // serde_json writes BTreeMap keys in order, so the encoding is canonical for our types.
    let bytes = serde_json::to_vec(content).expect("protocol values always serialise");
    Sha256::digest(bytes)[..16].to_vec()
}

/// `base` with `changes` applied: nested containers merge, anything else is replaced.
pub fn apply_changes(base: &Params, changes: &Params) -> Params {
    let mut out = base.clone();
    for (name, change) in &changes.0 {
        let merged = match (out.0.get(name), change) {
            (Some(Value::Params(old)), Value::Params(new)) => {
                Value::Params(apply_changes(old, new))
            }
            _ => change.clone(),
        };
        out.0.insert(name.clone(), merged);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(group_id: i64, path: &str, value_type: &str, value: &str, locked: bool) -> PolicyRow {
        PolicyRow {
            group_id,
            path: path.into(),
            value_type: value_type.into(),
            value: value.into(),
            locked,
        }
    }

    fn get<'a>(p: &'a Params, path: &str) -> Option<&'a Value> {
        let mut node = p;
        let names: Vec<&str> = path.split('/').collect();
        for name in &names[..names.len() - 1] {
            match node.0.get(*name)? {
                Value::Params(inner) => node = inner,
                _ => return None,
            }
        }
        node.0.get(*names.last().unwrap())
    }

    #[test]
    fn only_locked_rows_and_ancestors_win() {
        let rows = vec![
            row(1, "AV/Scan/Level", "int", "3", true),
            row(5, "AV/Scan/Level", "int", "1", true),
            row(5, "AV/Scan/Archives", "bool", "true", true),
            row(5, "AV/Unlocked", "bool", "true", false),
            row(5, "AV/Scan/Level/Deeper", "int", "1", true),
            row(
                5,
                "Lists/Trusted",
                "array",
                r#"[{"string":"a"},{"int":2}]"#,
                true,
            ),
        ];
        let (p, skipped) = effective_policy(&[1, 5], &rows);
        assert_eq!(get(&p, "AV/Scan/Level"), Some(&Value::Int(3)));
        assert_eq!(get(&p, "AV/Scan/Archives"), Some(&Value::Bool(true)));
        assert_eq!(get(&p, "AV/Unlocked"), None);
        assert_eq!(
            get(&p, "Lists/Trusted"),
            Some(&Value::Array(vec![
                Value::String("a".into()),
                Value::Int(2)
            ]))
        );
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        // The child alone sees its own values.
        let (child_only, _) = effective_policy(&[5], &rows);
        assert_eq!(get(&child_only, "AV/Scan/Level"), Some(&Value::Int(1)));
    }

    #[test]
    fn bad_rows_are_skipped_with_a_reason() {
        let rows = vec![
            row(1, "A", "int", "three", true),
            row(1, "/B", "int", "3", true),
            row(1, "C", "weird", "3", true),
            row(1, "D", "string", " spaced ", true),
        ];
        let (p, skipped) = effective_policy(&[1], &rows);
        assert_eq!(skipped.len(), 3);
        assert_eq!(get(&p, "D"), Some(&Value::String(" spaced ".into())));
    }

    #[test]
    fn row_values_round_trip() {
        let values = vec![
            Value::Bool(false),
            Value::String("x/y".into()),
            Value::Int(-5),
            Value::Long(1 << 40),
            Value::Float(1.5),
            Value::Double(-0.25),
            Value::Date(time::macros::date!(2007 - 03 - 07)),
            Value::DateTime(time::macros::datetime!(2007-03-07 14:39:10 UTC)),
            Value::Binary(vec![0, 1, 255]),
            Value::Array(vec![Value::Int(1), Value::Array(vec![])]),
        ];
        for v in values {
            let (t, text) = encode_row_value(&v).unwrap();
            assert_eq!(decode_row_value(t, &text).unwrap(), v, "{t} {text}");
        }
        assert!(encode_row_value(&Value::Params(Params::default())).is_err());
    }

    #[test]
    fn subscriptions_are_a_sorted_union_and_digests_follow_content() {
        let rows = vec![
            SubscriptionRow {
                group_id: 1,
                severity: 4,
                event_type: "GNRL_EV_VIRUS_FOUND".into(),
            },
            SubscriptionRow {
                group_id: 2,
                severity: 4,
                event_type: "GNRL_EV_ATTACK_DETECTED".into(),
            },
            SubscriptionRow {
                group_id: 2,
                severity: 4,
                event_type: "GNRL_EV_VIRUS_FOUND".into(),
            },
            SubscriptionRow {
                group_id: 2,
                severity: 9,
                event_type: "ignored".into(),
            },
        ];
        let s = effective_subscriptions(&rows);
        assert_eq!(
            s.types_critical,
            vec!["GNRL_EV_ATTACK_DETECTED", "GNRL_EV_VIRUS_FOUND"]
        );
        assert!(s.types_info.is_empty());
        let mut reversed = rows.clone();
        reversed.reverse();
        assert_eq!(
            digest(&effective_subscriptions(&reversed)),
            digest(&s),
            "order of rows does not matter"
        );
        assert_ne!(digest(&effective_subscriptions(&rows[..1])), digest(&s));
    }

    #[test]
    fn changes_merge_into_nested_settings() {
        let base: Params = serde_json::from_str(
            r#"{"A":{"params":{"x":{"int":1},"y":{"int":2}}},"B":{"bool":true}}"#,
        )
        .unwrap();
        let changes: Params =
            serde_json::from_str(r#"{"A":{"params":{"y":{"int":20}}},"C":{"string":"new"}}"#)
                .unwrap();
        let merged = apply_changes(&base, &changes);
        assert_eq!(get(&merged, "A/x"), Some(&Value::Int(1)));
        assert_eq!(get(&merged, "A/y"), Some(&Value::Int(20)));
        assert_eq!(get(&merged, "B"), Some(&Value::Bool(true)));
        assert_eq!(get(&merged, "C"), Some(&Value::String("new".into())));
    }

    #[test]
    fn provenance_names_the_group_each_value_comes_from() {
        let rows = vec![
            row(1, "RTP/Enabled", "bool", "true", true),
            row(1, "Scan/Level", "int", "1", false),
            row(5, "Scan/Level", "int", "3", true),
            row(5, "RTP/Enabled", "bool", "false", true),
            row(9, "Scan/Level", "int", "7", false),
            row(7, "Other", "int", "1", true),
        ];
        let got = provenance(&[1, 5, 9], &rows);
        let by = |path: &str| got.iter().find(|p| p.path == path).unwrap();
        let inherited = by("RTP/Enabled");
        assert_eq!((inherited.group_id, inherited.value.as_str()), (1, "true"));
        assert!(inherited.locked && inherited.applied);
        assert_eq!(inherited.shadowed, vec![5], "the child's own lock loses");
        let overridden = by("Scan/Level");
        assert_eq!((overridden.group_id, overridden.value.as_str()), (5, "3"));
        assert!(overridden.applied);
        assert_eq!(overridden.shadowed, vec![1, 9]);
        assert!(
            got.iter().all(|p| p.path != "Other"),
            "rows outside the chain"
        );
        let only_unlocked = provenance(&[1], &rows[1..2]);
        assert!(!only_unlocked[0].locked && !only_unlocked[0].applied);
    }
}
