//! serde forms for the JSON view of protocol values: bytes as base64 strings, dates as `YYYY-MM-DD`.

use serde::{Deserialize, Deserializer, Serializer};

use super::lexical;

pub(crate) mod b64 {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let mut out = String::new();
        lexical::format_base64(&mut out, v);
        s.serialize_str(&out)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        lexical::parse_base64(&text).ok_or_else(|| serde::de::Error::custom("invalid base64"))
    }
}

pub(crate) mod b64_opt {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => super::b64::serialize(v, s),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(text) => lexical::parse_base64(&text)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom("invalid base64")),
            None => Ok(None),
        }
    }
}

pub(crate) mod date {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &time::Date, s: S) -> Result<S::Ok, S::Error> {
        let mut out = String::new();
        lexical::format_date(&mut out, *v);
        s.serialize_str(&out)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<time::Date, D::Error> {
        let text = String::deserialize(d)?;
        lexical::parse_date(&text).ok_or_else(|| serde::de::Error::custom("expected YYYY-MM-DD"))
    }
}

/// JSON has no infinities or NaN: those are written as the schema spellings `"INF"`, `"-INF"`
/// and `"NaN"`, and read back from them; finite values are plain numbers.
pub(crate) mod double {
    use super::*;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Number(f64),
        Text(String),
    }

    pub(crate) fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            let mut out = String::new();
            lexical::format_f64(&mut out, *v);
            s.serialize_str(&out)
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        match Repr::deserialize(d)? {
            Repr::Number(v) => Ok(v),
            Repr::Text(t) => match t.as_str() {
                "INF" | "-INF" | "NaN" => Ok(lexical::parse_f64(&t).unwrap_or(f64::NAN)),
                _ => Err(serde::de::Error::custom(
                    "expected a number, INF, -INF or NaN",
                )),
            },
        }
    }
}

pub(crate) mod float {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &f32, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f32(*v)
        } else {
            super::double::serialize(&f64::from(*v), s)
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
        // Narrowing is the point: the value is an `xsd:float`.
        super::double::deserialize(d).map(|v| v as f32)
    }
}
