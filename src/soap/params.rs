//! The universal container `param:params` (SPEC section 4): a tree of named, typed values, and
//! its XML form.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::error::quote;
use super::lexical;
use super::reader::{need, put, Elem, Reader, Res, XsiType};
use super::serde_fmt::{b64, date, double, float};
use super::writer::Writer;
use super::CodecError;

/// Named values; names are unique and their order carries no meaning.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Params(pub BTreeMap<String, Value>);

impl Params {
    pub fn new() -> Self {
        Params(BTreeMap::new())
    }

    /// Adds or replaces a value, builder style.
    pub fn with(mut self, name: impl Into<String>, value: Value) -> Self {
        self.0.insert(name.into(), value);
        self
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<BTreeMap<String, Value>> for Params {
    fn from(map: BTreeMap<String, Value>) -> Self {
        Params(map)
    }
}

/// One value of a container. In JSON: `{"int": 5}`, `{"string": "x"}`, `{"params": {...}}`,
/// `{"array": [...]}`, `{"binary": "<base64>"}`, `{"date": "2007-03-07"}`,
/// `{"datetime": "2007-03-07T14:39:10Z"}`, `{"double": 0.5}` (or `"INF"`, `"-INF"`, `"NaN"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Value {
    /// `xsd:boolean`
    Bool(bool),
    /// `xsd:wstring` (written), `xsd:string` (also read)
    String(String),
    /// `xsd:int`
    Int(i32),
    /// `xsd:long`
    Long(i64),
    /// `xsd:date`
    Date(#[serde(with = "date")] time::Date),
    /// `xsd:float`
    Float(#[serde(with = "float")] f32),
    /// `xsd:double`
    Double(#[serde(with = "double")] f64),
    /// `xsd:dateTime`
    DateTime(#[serde(with = "time::serde::rfc3339")] OffsetDateTime),
    /// `xsd:base64Binary`
    Binary(#[serde(with = "b64")] Vec<u8>),
    /// `param:params`
    Params(Params),
    /// `param:arrayvalue`
    Array(Vec<Value>),
}

/// Reads a `param:params` element (`parameters` or a value's `data`): `node` holds the
/// entries; `checksum` and `binfmt` carry nothing and are skipped.
pub(crate) fn read_params(r: &mut Reader<'_>, level: usize) -> Res<Params> {
    r.check_level(level)?;
    let mut map = BTreeMap::new();
    while let Some(child) = r.next_child()? {
        if child.local() == "node" {
            read_node(r, &mut map, level)?;
        } else {
            r.skip(&child)?;
        }
    }
    Ok(Params(map))
}

fn read_node(r: &mut Reader<'_>, map: &mut BTreeMap<String, Value>, level: usize) -> Res<()> {
    while let Some(item) = r.next_child()? {
        if item.local() != "item" {
            r.skip(&item)?;
            continue;
        }
        r.count_entry()?;
        let mut name = None;
        let mut value = None;
        while let Some(field) = r.next_child()? {
            match field.local() {
                "name" => {
                    let v = r.string(&field, "name")?;
                    put(&mut name, v, "name")?;
                }
                "value" => {
                    let v = read_value_holder(r, level)?;
                    put(&mut value, v, "value")?;
                }
                _ => r.skip(&field)?,
            }
        }
        let name = need(name, "name")?;
        let value = need(value, "value")?;
        match map.entry(name) {
            Entry::Occupied(e) => {
                return Err(CodecError::DuplicateName {
                    name: quote(e.key()),
                }
                .into())
            }
            Entry::Vacant(e) => {
                e.insert(value);
            }
        }
    }
    Ok(())
}

/// The content of a `value` or array `item`: exactly one `data`.
fn read_value_holder(r: &mut Reader<'_>, level: usize) -> Res<Option<Value>> {
    let mut data = None;
    while let Some(child) = r.next_child()? {
        if child.local() == "data" {
            let v = read_value(r, &child, level)?;
            put(&mut data, Some(v), "data")?;
        } else {
            r.skip(&child)?;
        }
    }
    need(data, "data").map(Some)
}

/// Containers recurse; everything else is read in [`read_scalar`], kept out of the recursive
/// path so that each nesting level costs little stack.
fn read_value<'a>(r: &mut Reader<'a>, data: &Elem<'a>, level: usize) -> Res<Value> {
    match &data.xsi_type {
        Some(XsiType::Params) if !data.nil => Ok(Value::Params(read_params(r, level + 1)?)),
        Some(XsiType::ArrayValue) if !data.nil => read_array(r, level + 1),
        _ => read_scalar(r, data),
    }
}

fn read_array(r: &mut Reader<'_>, level: usize) -> Res<Value> {
    r.check_level(level)?;
    let mut items = Vec::new();
    while let Some(item) = r.next_child()? {
        if item.local() != "item" {
            r.skip(&item)?;
            continue;
        }
        r.count_entry()?;
        let v = read_value_holder(r, level)?;
        items.push(need(v, "data")?);
    }
    Ok(Value::Array(items))
}

#[inline(never)]
fn read_scalar<'a>(r: &mut Reader<'a>, data: &Elem<'a>) -> Res<Value> {
    const F: &str = "data";
    if data.nil {
        r.skip(data)?;
        return Err(CodecError::MissingField { field: F.into() }.into());
    }
    let Some(ty) = &data.xsi_type else {
        r.skip(data)?;
        return Err(CodecError::MissingType { field: F.into() }.into());
    };
    Ok(match ty {
        XsiType::Boolean => Value::Bool(r.value(data, F, "boolean", lexical::parse_bool)?),
        XsiType::WString | XsiType::String => {
            Value::String(r.value(data, F, "string", |s| Some(s.to_owned()))?)
        }
        XsiType::Int => Value::Int(r.value(data, F, "int", lexical::parse_i32)?),
        XsiType::Long => Value::Long(r.value(data, F, "long", lexical::parse_i64)?),
        XsiType::Date => Value::Date(r.value(data, F, "date", lexical::parse_date)?),
        XsiType::Float => Value::Float(r.value(data, F, "float", lexical::parse_f32)?),
        XsiType::Double => Value::Double(r.value(data, F, "double", lexical::parse_f64)?),
        XsiType::DateTime => {
            Value::DateTime(r.value(data, F, "dateTime", lexical::parse_datetime)?)
        }
        XsiType::Base64 => {
            let mut bytes = need(r.base64(data, F)?, F)?;
            // The original writer appends a NUL after binary values.
            if bytes.last() == Some(&0) {
                bytes.pop();
            }
            Value::Binary(bytes)
        }
        other => {
            let xsi_type = match other {
                XsiType::Other(s) => s.clone(),
                known => format!("{known:?}"),
            };
            r.skip(data)?;
            return Err(CodecError::UnknownType {
                field: F.into(),
                xsi_type,
            }
            .into());
        }
    })
}

/// `<name xsi:type="param:params"><node>...</node><checksum>0</checksum><binfmt/></name>`
pub(crate) fn write_params(w: &mut Writer, name: &str, params: &Params) {
    w.open_typed(name, "param:params");
    write_container(w, params);
    w.close(name);
}

/// The content of a container: its entries, then `checksum` and `binfmt`, which carry nothing but
/// which clients generated from the original schema in strict mode require in every container.
fn write_container(w: &mut Writer, params: &Params) {
    write_node(w, params);
    w.raw("<checksum>0</checksum><binfmt/>");
}

fn write_node(w: &mut Writer, params: &Params) {
    w.open("node");
    for (name, value) in &params.0 {
        w.raw("<item>");
        w.string("name", name);
        w.raw("<value>");
        write_value(w, value);
        w.raw("</value></item>");
    }
    w.close("node");
}

fn write_value(w: &mut Writer, value: &Value) {
    match value {
        Value::Bool(v) => {
            w.open_typed("data", "xsd:boolean");
            w.raw(if *v { "true" } else { "false" });
        }
        Value::String(v) => {
            let string_type = w.string_type;
            w.open_typed("data", string_type);
            w.text(v);
        }
        Value::Int(v) => {
            w.open_typed("data", "xsd:int");
            let _ = write!(w.buf(), "{v}");
        }
        Value::Long(v) => {
            w.open_typed("data", "xsd:long");
            let _ = write!(w.buf(), "{v}");
        }
        Value::Date(v) => {
            w.open_typed("data", "xsd:date");
            lexical::format_date(w.buf(), *v);
        }
        Value::Float(v) => {
            w.open_typed("data", "xsd:float");
            lexical::format_f32(w.buf(), *v);
        }
        Value::Double(v) => {
            w.open_typed("data", "xsd:double");
            lexical::format_f64(w.buf(), *v);
        }
        Value::DateTime(v) => {
            w.open_typed("data", "xsd:dateTime");
            lexical::format_datetime(w.buf(), *v);
        }
        Value::Binary(v) => {
            w.open_typed("data", "xsd:base64Binary");
            let mut with_nul = Vec::with_capacity(v.len() + 1);
            with_nul.extend_from_slice(v);
            with_nul.push(0);
            lexical::format_base64(w.buf(), &with_nul);
        }
        Value::Params(p) => {
            w.open_typed("data", "param:params");
            write_container(w, p);
        }
        Value::Array(items) => {
            w.open_typed("data", "param:arrayvalue");
            for item in items {
                w.raw("<item>");
                write_value(w, item);
                w.raw("</item>");
            }
        }
    }
    w.close("data");
}
