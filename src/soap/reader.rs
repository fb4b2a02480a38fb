//! Pull-style reading of SOAP documents over quick-xml's namespace-aware slice reader.
//!
//! The decoders walk the document once, in order, borrowing text from the input where they
//! can. Everything a hostile peer controls is bounded here: element depth, text sizes, list
//! entries; DTDs and undeclared entities are refused. Child elements are matched by local name
//! (they are unqualified on the wire); the envelope's own elements and `xsi:type` values are
//! matched by namespace URI, never by prefix.

use std::borrow::Cow;

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::{Namespace, QName, ResolveResult};
use quick_xml::{NsReader, XmlVersion};

use super::error::quote;
use super::lexical;
use super::{
    CodecError, Limits, Namespaces, ParamNs, SchemaNs, AKLWNGT_NS, PARAM_NS, PARAM_NS_OLD,
    SOAP_ENC_NS, SOAP_ENV_NS, XSD_1999_NS, XSD_2001_NS, XSI_1999_NS, XSI_2001_NS,
};

/// Why reading stopped.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// Not well-formed, or markup we refuse (DTD, undeclared entity): answered with a Fault.
    Xml(String),
    /// Well-formed but not what the protocol allows.
    Codec(CodecError),
}

impl From<CodecError> for ReadError {
    fn from(e: CodecError) -> Self {
        ReadError::Codec(e)
    }
}

pub(crate) type Res<T> = Result<T, ReadError>;

fn xml_err(e: impl std::fmt::Display) -> ReadError {
    ReadError::Xml(format!("malformed XML: {e}"))
}

/// The namespaces the decoders care about, by URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Space {
    SoapEnv,
    SoapEnc,
    Aklwngt,
    Param,
    Xsd,
    Xsi,
    Other,
}

fn classify(uri: &str) -> Space {
    match uri {
        SOAP_ENV_NS => Space::SoapEnv,
        SOAP_ENC_NS => Space::SoapEnc,
        AKLWNGT_NS => Space::Aklwngt,
        PARAM_NS | PARAM_NS_OLD => Space::Param,
        XSD_2001_NS | XSD_1999_NS => Space::Xsd,
        XSI_2001_NS | XSI_1999_NS => Space::Xsi,
        _ => Space::Other,
    }
}

/// The `xsi:type` values the protocol uses, resolved through the namespace in scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum XsiType {
    Boolean,
    WString,
    String,
    Int,
    Long,
    UnsignedLong,
    Date,
    Float,
    Double,
    DateTime,
    Base64,
    Params,
    ArrayValue,
    CmdError,
    CmdHash,
    CmdPar,
    CmdParAndHash,
    CmdSubscriptions,
    CmdAppInfo,
    CmdAppState,
    StringArray,
    /// Anything else, as written (only for error messages).
    Other(String),
}

fn type_named(space: Space, local: &str) -> Option<XsiType> {
    Some(match (space, local) {
        (Space::Xsd | Space::SoapEnc, "boolean") => XsiType::Boolean,
        (Space::Xsd | Space::SoapEnc, "wstring") => XsiType::WString,
        (Space::Xsd | Space::SoapEnc, "string") => XsiType::String,
        (Space::Xsd | Space::SoapEnc, "int") => XsiType::Int,
        (Space::Xsd | Space::SoapEnc, "long") => XsiType::Long,
        (Space::Xsd | Space::SoapEnc, "unsignedLong") => XsiType::UnsignedLong,
        (Space::Xsd | Space::SoapEnc, "date") => XsiType::Date,
        (Space::Xsd | Space::SoapEnc, "float") => XsiType::Float,
        (Space::Xsd | Space::SoapEnc, "double") => XsiType::Double,
        (Space::Xsd | Space::SoapEnc, "dateTime") => XsiType::DateTime,
        (Space::Xsd | Space::SoapEnc, "base64Binary") | (Space::SoapEnc, "base64") => {
            XsiType::Base64
        }
        (Space::Param, "params") => XsiType::Params,
        (Space::Param, "arrayvalue") => XsiType::ArrayValue,
        (Space::Aklwngt, "CmdError") => XsiType::CmdError,
        (Space::Aklwngt, "CmdHash") => XsiType::CmdHash,
        (Space::Aklwngt, "CmdPar") => XsiType::CmdPar,
        (Space::Aklwngt, "CmdParAndHash") => XsiType::CmdParAndHash,
        (Space::Aklwngt, "CmdSubscriptions") => XsiType::CmdSubscriptions,
        (Space::Aklwngt, "CmdAppInfo") => XsiType::CmdAppInfo,
        (Space::Aklwngt, "CmdAppState") => XsiType::CmdAppState,
        (Space::Aklwngt, "string-array") => XsiType::StringArray,
        _ => return None,
    })
}

/// An element just opened by [`Reader::next_child`]; its content has not been read yet.
#[derive(Debug)]
pub(crate) struct Elem<'a> {
    start: BytesStart<'a>,
    /// Nesting level of this element; the document element is 1.
    depth: usize,
    pub(crate) nil: bool,
    pub(crate) xsi_type: Option<XsiType>,
}

impl Elem<'_> {
    pub(crate) fn local(&self) -> &str {
        self.start.local_name().into_inner()
    }
}

/// Which schema and param namespaces the peer declared, to answer in kind.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    xsd_1999: bool,
    xsi_1999: bool,
    param_old: bool,
}

impl Seen {
    fn note(&mut self, uri: &str) {
        match uri {
            XSD_1999_NS => self.xsd_1999 = true,
            XSI_1999_NS => self.xsi_1999 = true,
            PARAM_NS_OLD => self.param_old = true,
            _ => {}
        }
    }
}

/// Text of a simple element, read with a size limit.
pub(crate) struct TextRead<'a> {
    pub(crate) text: Cow<'a, str>,
    /// The text was longer than the limit and has been cut (at a character boundary).
    pub(crate) truncated: bool,
    /// The element held child elements; they were skipped.
    pub(crate) nested: bool,
}

enum Ev<'a> {
    Start(Elem<'a>),
    End,
    Text(Cow<'a, str>),
    /// A character reference, kept apart so that resolving one allocates nothing.
    Char(char),
    Eof,
}

/// Appends `piece` to `text` within `max` bytes; returns whether it had to be cut (at a
/// character boundary).
fn push_limited(text: &mut Cow<'_, str>, piece: &str, max: usize) -> bool {
    if text.len() + piece.len() > max {
        let mut cut = max.saturating_sub(text.len());
        while !piece.is_char_boundary(cut) {
            cut -= 1;
        }
        text.to_mut().push_str(&piece[..cut]);
        true
    } else {
        text.to_mut().push_str(piece);
        false
    }
}

/// Attributes one element may have; SOAP elements have a handful.
const MAX_ATTRIBUTES: usize = 64;

/// Params nesting is read recursively, so a careless configuration must not let input drive
/// the recursion far: deeper limits are capped here.
const MAX_PARAMS_DEPTH: usize = 100;

pub(crate) struct Reader<'a> {
    xml: NsReader<&'a [u8]>,
    depth: usize,
    max_xml_depth: usize,
    pub(crate) limits: Limits,
    entries: usize,
    events: usize,
    seen: Seen,
    pub(crate) message_id: Option<i32>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(input: &'a [u8], limits: &Limits) -> Self {
        let mut xml = NsReader::from_reader(input);
        let config = xml.config_mut();
        config.expand_empty_elements = true;
        config.check_end_names = true;
        config.trim_text(false);
        let mut limits = *limits;
        limits.max_depth = limits.max_depth.min(MAX_PARAMS_DEPTH);
        Reader {
            xml,
            depth: 0,
            // One params level takes four elements (`data/node/item/value`), plus the
            // envelope and command frames around the top container.
            max_xml_depth: 16 + 5 * limits.max_depth,
            limits,
            entries: 0,
            events: 0,
            seen: Seen::default(),
            message_id: None,
        }
    }

    /// The namespaces to answer with, from the declarations seen so far.
    pub(crate) fn namespaces(&self) -> Namespaces {
        let year = |old| {
            if old {
                SchemaNs::Y1999
            } else {
                SchemaNs::Y2001
            }
        };
        Namespaces {
            xsd: year(self.seen.xsd_1999),
            xsi: year(self.seen.xsi_1999),
            param: if self.seen.param_old {
                ParamNs::Tempuri
            } else {
                ParamNs::TempuriOrg
            },
        }
    }

    /// The next event; with `limited`, an element nested beyond the depth cap is an error.
    fn next(&mut self, limited: bool) -> Res<Ev<'a>> {
        loop {
            match self.xml.read_event().map_err(xml_err)? {
                Event::Start(start) => {
                    self.depth += 1;
                    if limited && self.depth > self.max_xml_depth {
                        return Err(CodecError::TooDeep {
                            max: self.limits.max_depth,
                        }
                        .into());
                    }
                    let elem = self.elem(start)?;
                    return Ok(Ev::Start(elem));
                }
                Event::End(_) => {
                    self.depth = self.depth.saturating_sub(1);
                    return Ok(Ev::End);
                }
                Event::Text(t) => return Ok(Ev::Text(t.xml10_content())),
                Event::CData(t) => return Ok(Ev::Text(t.xml10_content())),
                Event::GeneralRef(r) => {
                    if r.is_char_ref() {
                        return match r.resolve_char_ref() {
                            Ok(Some(c)) => Ok(Ev::Char(c)),
                            _ => Err(ReadError::Xml("invalid character reference".into())),
                        };
                    }
                    return match resolve_predefined_entity(&r) {
                        Some(s) => Ok(Ev::Text(Cow::Borrowed(s))),
                        None => Err(ReadError::Xml("undeclared entity reference".into())),
                    };
                }
                Event::DocType(_) => {
                    return Err(ReadError::Xml("DOCTYPE is not allowed".into()));
                }
                Event::Empty(_) => {
                    // `expand_empty_elements` turns these into Start + End.
                    return Err(ReadError::Xml("unexpected empty-element event".into()));
                }
                Event::Comment(_) | Event::PI(_) | Event::Decl(_) => {}
                Event::Eof => return Ok(Ev::Eof),
            }
        }
    }

    fn elem(&mut self, start: BytesStart<'a>) -> Res<Elem<'a>> {
        let mut nil = false;
        let mut xsi_type = None;
        if !start.attributes_raw().trim_ascii().is_empty() {
            for (i, attr) in start.attributes().enumerate() {
                // quick-xml's duplicate-attribute check is quadratic in the attribute count.
                if i == MAX_ATTRIBUTES {
                    return Err(ReadError::Xml("too many attributes".into()));
                }
                let attr = attr.map_err(xml_err)?;
                if attr.key.as_namespace_binding().is_some() {
                    self.seen.note(&attr.value);
                    continue;
                }
                let (ns, local) = self.xml.resolver().resolve_attribute(attr.key);
                let is_xsi = matches!(ns, ResolveResult::Bound(Namespace(uri)) if classify(uri) == Space::Xsi);
                let wanted = is_xsi && matches!(local.into_inner(), "type" | "nil");
                if !wanted {
                    if attr.value.contains('&') {
                        // Validates the references even though the value is not used.
                        attr.normalized_value(XmlVersion::Implicit1_0)
                            .map_err(xml_err)?;
                    }
                    continue;
                }
                let value = attr
                    .normalized_value(XmlVersion::Implicit1_0)
                    .map_err(xml_err)?;
                if local.into_inner() == "nil" {
                    nil = lexical::parse_bool(&value) == Some(true);
                } else {
                    xsi_type = Some(self.type_of(&value));
                }
            }
        }
        Ok(Elem {
            start,
            depth: self.depth,
            nil,
            xsi_type,
        })
    }

    fn type_of(&self, value: &str) -> XsiType {
        let (local, prefix) = QName(lexical::trim_xml(value)).decompose();
        let space = match self.xml.resolver().resolve_prefix(prefix, true) {
            ResolveResult::Bound(Namespace(uri)) => classify(uri),
            _ => Space::Other,
        };
        type_named(space, local.into_inner()).unwrap_or_else(|| XsiType::Other(quote(value)))
    }

    /// The namespace of an element just returned by [`Self::next_child`] or [`Self::root`].
    pub(crate) fn space_of(&self, elem: &Elem<'_>) -> Space {
        match self.xml.resolver().resolve_element(elem.start.name()).0 {
            ResolveResult::Bound(Namespace(uri)) => classify(uri),
            _ => Space::Other,
        }
    }

    /// The document element.
    pub(crate) fn root(&mut self) -> Res<Elem<'a>> {
        loop {
            match self.next(true)? {
                Ev::Start(e) => return Ok(e),
                Ev::Text(t) if t.bytes().all(lexical::is_xml_space) => {}
                Ev::Text(_) | Ev::Char(_) => {
                    return Err(ReadError::Xml("text before the document element".into()))
                }
                Ev::End => return Err(ReadError::Xml("unexpected end tag".into())),
                Ev::Eof => return Err(ReadError::Xml("no document element".into())),
            }
        }
    }

    /// After the document element: only whitespace, comments and PIs may follow.
    pub(crate) fn finish(&mut self) -> Res<()> {
        loop {
            match self.next(false)? {
                Ev::Eof => return Ok(()),
                Ev::Text(t) if t.bytes().all(lexical::is_xml_space) => {}
                _ => return Err(ReadError::Xml("content after the document element".into())),
            }
        }
    }

    /// The next child element of the element being read, or `None` once its end tag has been
    /// consumed. Text between child elements is ignored. Each child returned must be read
    /// through its end (a value reader, a struct loop, or [`Self::skip`]) before the next call.
    pub(crate) fn next_child(&mut self) -> Res<Option<Elem<'a>>> {
        loop {
            match self.next(true)? {
                Ev::Start(e) => return Ok(Some(e)),
                Ev::End => return Ok(None),
                Ev::Text(_) | Ev::Char(_) => {}
                Ev::Eof => return Err(ReadError::Xml("unexpected end of document".into())),
            }
        }
    }

    /// Reads (and drops) everything up to the end tag of `elem`; nesting deeper than the cap
    /// is still an error, so the cap holds for the whole document.
    pub(crate) fn skip(&mut self, elem: &Elem<'_>) -> Res<()> {
        self.skip_to(elem.depth, true)
    }

    /// After a decoding error anywhere inside `elem`, reads on to its end tag without the
    /// depth cap: the message is refused already, this only checks that the rest is
    /// well-formed (so that malformed XML is still a Fault). Nothing is kept per level.
    pub(crate) fn drain(&mut self, elem: &Elem<'_>) -> Res<()> {
        self.skip_to(elem.depth, false)
    }

    /// Reads until the element at nesting level `depth` has ended.
    fn skip_to(&mut self, depth: usize, limited: bool) -> Res<()> {
        while self.depth >= depth {
            if let Ev::Eof = self.next(limited)? {
                return Err(ReadError::Xml("unexpected end of document".into()));
            }
        }
        Ok(())
    }

    /// The text content of `elem`, at most `max` bytes. Always reads through the end tag, so
    /// the caller may go on with the next sibling whatever the result.
    pub(crate) fn text_read(&mut self, elem: &Elem<'_>, max: usize) -> Res<TextRead<'a>> {
        let mut text: Cow<'a, str> = Cow::Borrowed("");
        let mut truncated = false;
        let mut nested = false;
        loop {
            match self.next(true)? {
                Ev::Text(piece) => {
                    if nested || truncated {
                        continue;
                    }
                    if text.is_empty() && piece.len() <= max {
                        // The common case: one piece, borrowed from the input.
                        text = piece;
                    } else {
                        truncated = push_limited(&mut text, &piece, max);
                    }
                }
                Ev::Char(c) => {
                    if !nested && !truncated {
                        truncated = push_limited(&mut text, c.encode_utf8(&mut [0; 4]), max);
                    }
                }
                Ev::Start(_) => nested = true,
                Ev::End => {
                    if self.depth < elem.depth {
                        return Ok(TextRead {
                            text,
                            truncated,
                            nested,
                        });
                    }
                }
                Ev::Eof => return Err(ReadError::Xml("unexpected end of document".into())),
            }
        }
    }

    /// The text content of `elem`; markup inside or more than `max` bytes is an error.
    pub(crate) fn text(&mut self, elem: &Elem<'_>, field: &str, max: usize) -> Res<Cow<'a, str>> {
        let t = self.text_read(elem, max)?;
        if t.nested {
            return Err(CodecError::UnexpectedElement {
                field: field.to_owned(),
            }
            .into());
        }
        if t.truncated {
            return Err(CodecError::TooLarge {
                field: field.to_owned(),
                max,
            }
            .into());
        }
        Ok(t.text)
    }

    /// A simple value: `None` for `xsi:nil` or (unless `keep_empty`) an empty element,
    /// otherwise `parse` of the text, where `None` means a bad value.
    fn simple<T>(
        &mut self,
        elem: &Elem<'_>,
        field: &str,
        expected: &str,
        keep_empty: bool,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Res<Option<T>> {
        if elem.nil {
            self.skip(elem)?;
            return Ok(None);
        }
        let max = self.limits.max_string_bytes;
        let text = self.text(elem, field, max)?;
        if !keep_empty && lexical::trim_xml(&text).is_empty() {
            return Ok(None);
        }
        match parse(&text) {
            Some(v) => Ok(Some(v)),
            None => Err(CodecError::BadValue {
                field: field.to_owned(),
                expected: expected.to_owned(),
            }
            .into()),
        }
    }

    /// A value that must be there: `xsi:nil` is a missing field, an empty element a bad value.
    pub(crate) fn value<T>(
        &mut self,
        elem: &Elem<'_>,
        field: &str,
        expected: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Res<T> {
        let v = self.simple(elem, field, expected, true, parse)?;
        need(v, field)
    }

    pub(crate) fn string(&mut self, elem: &Elem<'_>, field: &str) -> Res<Option<String>> {
        self.simple(elem, field, "string", true, |s| Some(s.to_owned()))
    }

    pub(crate) fn int(&mut self, elem: &Elem<'_>, field: &str) -> Res<Option<i32>> {
        self.simple(elem, field, "int", false, lexical::parse_i32)
    }

    pub(crate) fn unsigned_long(&mut self, elem: &Elem<'_>, field: &str) -> Res<Option<u64>> {
        self.simple(elem, field, "unsignedLong", false, lexical::parse_u64)
    }

    pub(crate) fn boolean(&mut self, elem: &Elem<'_>, field: &str) -> Res<Option<bool>> {
        self.simple(elem, field, "boolean", false, lexical::parse_bool)
    }

    pub(crate) fn datetime(
        &mut self,
        elem: &Elem<'_>,
        field: &str,
    ) -> Res<Option<time::OffsetDateTime>> {
        self.simple(elem, field, "dateTime", false, lexical::parse_datetime)
    }

    /// Base64 content; an empty element is an empty value, not an absent one.
    pub(crate) fn base64(&mut self, elem: &Elem<'_>, field: &str) -> Res<Option<Vec<u8>>> {
        if elem.nil {
            self.skip(elem)?;
            return Ok(None);
        }
        let max = self.limits.max_binary_bytes;
        // Room for the 4/3 expansion plus line breaks some encoders insert.
        let text = self.text(elem, field, max.saturating_mul(2).saturating_add(16))?;
        let data = lexical::parse_base64(&text).ok_or_else(|| CodecError::BadValue {
            field: field.to_owned(),
            expected: "base64Binary".to_owned(),
        })?;
        if data.len() > max {
            return Err(CodecError::TooLarge {
                field: field.to_owned(),
                max,
            }
            .into());
        }
        Ok(Some(data))
    }

    /// Counts one list entry (a params entry, an array or list item) against the limit.
    pub(crate) fn count_entry(&mut self) -> Res<()> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(CodecError::TooManyEntries {
                max: self.limits.max_entries,
            }
            .into());
        }
        Ok(())
    }

    /// Counts one event item against the limit.
    pub(crate) fn count_event(&mut self) -> Res<()> {
        self.events += 1;
        if self.events > self.limits.max_events {
            return Err(CodecError::TooManyEvents {
                max: self.limits.max_events,
            }
            .into());
        }
        Ok(())
    }

    /// Params nesting level check (the top-level container is level 1).
    pub(crate) fn check_level(&self, level: usize) -> Res<()> {
        if level > self.limits.max_depth {
            return Err(CodecError::TooDeep {
                max: self.limits.max_depth,
            }
            .into());
        }
        Ok(())
    }
}

/// Stores a decoded field, refusing a second occurrence.
pub(crate) fn put<T>(slot: &mut Option<T>, value: Option<T>, field: &str) -> Res<()> {
    if let Some(v) = value {
        if slot.is_some() {
            return Err(CodecError::DuplicateField {
                field: field.to_owned(),
            }
            .into());
        }
        *slot = Some(v);
    }
    Ok(())
}

/// A field the protocol requires.
pub(crate) fn need<T>(slot: Option<T>, field: &str) -> Res<T> {
    slot.ok_or_else(|| {
        CodecError::MissingField {
            field: field.to_owned(),
        }
        .into()
    })
}
