//! Writing SOAP documents: a string builder with the escaping and lexical forms of the wire.
//!
//! The output has a fixed shape (fixed prefixes, no whitespace between elements, empty
//! elements written as `<x></x>`), so it is built directly rather than through a generic XML
//! writer; the escaping below is the only place text from values enters the document.

use std::fmt::{Display, Write as _};

use time::OffsetDateTime;

use super::lexical;

pub(crate) struct Writer {
    out: String,
    /// `xsi:type` of string parameter values (see [`super::StringType`]).
    pub(crate) string_type: &'static str,
}

/// Appends `s` as element content. `\r` is written as a character reference so that it
/// survives the reader's line-end normalisation; other control characters likewise (as the
/// original toolkit did). NUL, U+FFFE and U+FFFF cannot appear in XML at all and become U+FFFD.
pub(crate) fn escape_into(out: &mut String, s: &str) {
    let bytes = s.as_bytes();
    let mut done = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let (replacement, len): (&str, usize) = match b {
            b'&' => ("&amp;", 1),
            b'<' => ("&lt;", 1),
            b'>' => ("&gt;", 1),
            b'\t' | b'\n' => {
                i += 1;
                continue;
            }
            0 => ("\u{FFFD}", 1),
            0x01..=0x1F => {
                out.push_str(&s[done..i]);
                let _ = write!(out, "&#x{b:X};");
                i += 1;
                done = i;
                continue;
            }
            0xEF if bytes.get(i + 1) == Some(&0xBF)
                && matches!(bytes.get(i + 2), Some(0xBE | 0xBF)) =>
            {
                ("\u{FFFD}", 3)
            }
            _ => {
                i += 1;
                continue;
            }
        };
        out.push_str(&s[done..i]);
        out.push_str(replacement);
        i += len;
        done = i;
    }
    out.push_str(&s[done..]);
}

impl Writer {
    pub(crate) fn with_capacity(cap: usize) -> Self {
        Writer {
            out: String::with_capacity(cap),
            string_type: super::StringType::WString.xsi_type(),
        }
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.out.into_bytes()
    }

    /// Markup written as is.
    pub(crate) fn raw(&mut self, s: &str) {
        self.out.push_str(s);
    }

    pub(crate) fn open(&mut self, name: &str) {
        self.out.push('<');
        self.out.push_str(name);
        self.out.push('>');
    }

    /// `<name xsi:type="ty">`
    pub(crate) fn open_typed(&mut self, name: &str, ty: &str) {
        self.out.push('<');
        self.out.push_str(name);
        self.out.push_str(" xsi:type=\"");
        self.out.push_str(ty);
        self.out.push_str("\">");
    }

    pub(crate) fn close(&mut self, name: &str) {
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
    }

    pub(crate) fn text(&mut self, s: &str) {
        escape_into(&mut self.out, s);
    }

    pub(crate) fn string(&mut self, name: &str, s: &str) {
        self.open(name);
        self.text(s);
        self.close(name);
    }

    pub(crate) fn opt_string(&mut self, name: &str, s: Option<&str>) {
        if let Some(s) = s {
            self.string(name, s);
        }
    }

    /// Any value whose `Display` is its lexical form (integers).
    pub(crate) fn number(&mut self, name: &str, v: impl Display) {
        self.open(name);
        let _ = write!(self.out, "{v}");
        self.close(name);
    }

    pub(crate) fn opt_number(&mut self, name: &str, v: Option<impl Display>) {
        if let Some(v) = v {
            self.number(name, v);
        }
    }

    pub(crate) fn boolean(&mut self, name: &str, v: bool) {
        self.open(name);
        self.out.push_str(if v { "true" } else { "false" });
        self.close(name);
    }

    pub(crate) fn datetime(&mut self, name: &str, v: OffsetDateTime) {
        self.open(name);
        lexical::format_datetime(&mut self.out, v);
        self.close(name);
    }

    pub(crate) fn opt_datetime(&mut self, name: &str, v: Option<OffsetDateTime>) {
        if let Some(v) = v {
            self.datetime(name, v);
        }
    }

    pub(crate) fn base64(&mut self, name: &str, v: &[u8]) {
        self.open(name);
        lexical::format_base64(&mut self.out, v);
        self.close(name);
    }

    /// Direct access for the lexical formatters.
    pub(crate) fn buf(&mut self) -> &mut String {
        &mut self.out
    }
}

#[cfg(test)]
mod tests {
    use super::escape_into;

    #[test]
    fn escaping() {
        let mut out = String::new();
        escape_into(&mut out, "a<b>&c\r\n\t\u{1}\0\u{FFFE}é\u{FFFF}z");
        assert_eq!(
            out,
            "a&lt;b&gt;&amp;c&#xD;\n\t&#x1;\u{FFFD}\u{FFFD}é\u{FFFD}z"
        );
    }
}
