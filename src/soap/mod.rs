//! The aklwngt SOAP codec: request and response bytes to typed values and back.
//!
//! Pure and synchronous: no sockets, no I/O, no shared state. The server decodes requests and
//! encodes responses with it; the device simulator does the opposite with the same code.
//!
//! Wire rules (SPEC sections 2-4): SOAP 1.1 document/literal, the operation element in the
//! aklwngt namespace, unqualified children with hyphenated names, `xsi:type` on polymorphic
//! `data`. Names are matched by namespace URI and local name, never by prefix; the 1999 and
//! 2001 schema namespaces and both param namespaces are accepted, and a reply declares the
//! URIs its request used.
//!
//! Layout: `reader`/`writer` are the XML plumbing, `lexical` the simple types' text forms,
//! `params` the universal container, `types` and `fields` the composite types, `request` and
//! `response` the operations, and this file the envelope and the public entry points.

mod error;
mod fields;
mod lexical;
mod params;
mod reader;
mod request;
mod response;
mod serde_fmt;
#[cfg(test)]
mod tests;
mod types;
mod writer;

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

pub use error::{ClientError, CodecError, Fault, FaultCode};
pub use params::{Params, Value};
pub use request::Request;
pub use response::Response;
pub use types::{
    AppInfo, AppState, CmdData, Command, DevInfo, EventBody, EventInfo, FileChunk, FileInfo,
    LicKeyInfo, LicenseInfo, LocData, ParamError, ProdInfo, Subscriptions, SyncInfo,
};

use reader::{Elem, ReadError, Reader, Res, Space};
use writer::Writer;

/// The protocol version this codec speaks (1.0).
pub const PROTOCOL_VERSION: i32 = 0x0001_0000;

pub const SOAP_ENV_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
pub const SOAP_ENC_NS: &str = "http://schemas.xmlsoap.org/soap/encoding/";
pub const AKLWNGT_NS: &str = "http://tempuri.org/aklwngt.xsd";
pub const PARAM_NS: &str = "http://tempuri.org/param.xsd";
/// The param namespace of older clients.
pub const PARAM_NS_OLD: &str = "http://tempuri";
pub const XSD_2001_NS: &str = "http://www.w3.org/2001/XMLSchema";
pub const XSI_2001_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";
pub const XSD_1999_NS: &str = "http://www.w3.org/1999/XMLSchema";
pub const XSI_1999_NS: &str = "http://www.w3.org/1999/XMLSchema-instance";

/// The seven operations of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Operation {
    SessionBegin,
    Heartbeat,
    PutResult,
    PutEvents,
    GetFileInfo,
    GetNextFileChunk,
    SessionEnd,
}

impl Operation {
    pub const ALL: [Operation; 7] = [
        Operation::SessionBegin,
        Operation::Heartbeat,
        Operation::PutResult,
        Operation::PutEvents,
        Operation::GetFileInfo,
        Operation::GetNextFileChunk,
        Operation::SessionEnd,
    ];

    /// The operation element's local name.
    pub fn wire_name(&self) -> &'static str {
        match self {
            Operation::SessionBegin => "SessionBegin",
            Operation::Heartbeat => "Heartbeat",
            Operation::PutResult => "PutResult",
            Operation::PutEvents => "PutEvents",
            Operation::GetFileInfo => "klft-GetFileInfo",
            Operation::GetNextFileChunk => "klft-GetNextFileChunk",
            Operation::SessionEnd => "SessionEnd",
        }
    }

    /// The response element's local name.
    pub fn response_name(&self) -> &'static str {
        match self {
            Operation::SessionBegin => "SessionBeginResponse",
            Operation::Heartbeat => "HeartbeatResponse",
            Operation::PutResult => "PutResultResponse",
            Operation::PutEvents => "PutEventsResponse",
            Operation::GetFileInfo => "klft-GetFileInfoResponse",
            Operation::GetNextFileChunk => "klft-GetNextFileChunkResponse",
            Operation::SessionEnd => "SessionEndResponse",
        }
    }

    pub fn from_wire_name(name: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|op| op.wire_name() == name)
    }
}

/// Which XML Schema generation a peer uses for `xsd`/`xsi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SchemaNs {
    #[default]
    #[serde(rename = "2001")]
    Y2001,
    #[serde(rename = "1999")]
    Y1999,
}

/// Which param namespace a peer uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamNs {
    /// `http://tempuri.org/param.xsd`
    #[default]
    TempuriOrg,
    /// `http://tempuri`, older clients.
    Tempuri,
}

/// The namespace URIs a peer used; a reply declares the same (clients match them strictly).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Namespaces {
    pub xsd: SchemaNs,
    pub xsi: SchemaNs,
    pub param: ParamNs,
}

impl Namespaces {
    /// What older clients use: 1999 schema namespaces and `http://tempuri`.
    pub const LEGACY: Namespaces = Namespaces {
        xsd: SchemaNs::Y1999,
        xsi: SchemaNs::Y1999,
        param: ParamNs::Tempuri,
    };

    pub fn xsd_uri(&self) -> &'static str {
        match self.xsd {
            SchemaNs::Y2001 => XSD_2001_NS,
            SchemaNs::Y1999 => XSD_1999_NS,
        }
    }

    pub fn xsi_uri(&self) -> &'static str {
        match self.xsi {
            SchemaNs::Y2001 => XSI_2001_NS,
            SchemaNs::Y1999 => XSI_1999_NS,
        }
    }

    pub fn param_uri(&self) -> &'static str {
        match self.param {
            ParamNs::TempuriOrg => PARAM_NS,
            ParamNs::Tempuri => PARAM_NS_OLD,
        }
    }
}

/// What a reply must echo of its request: the namespaces and the `messDesc` message id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MessageContext {
    pub ns: Namespaces,
    /// `MessageId` of the `messDesc` header; the header is written only when this is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<i32>,
    /// How string parameter values are typed on output; decoding accepts both. Not part of the
    /// request: the server sets it from its configuration.
    #[serde(default, skip_serializing_if = "StringType::is_wstring")]
    pub string_type: StringType,
}

/// The `xsi:type` written on string parameter values.
///
/// Deployed devices (gSOAP 2.7 builds) reject `xsd:string` there and need `xsd:wstring`, which is
/// what the original server wrote. `xsd:wstring` is no XML Schema type, though, so toolkits that
/// resolve `xsi:type` strictly (zeep, .NET) cannot read it: deployments of such clients choose
/// `String`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StringType {
    #[default]
    WString,
    String,
}

impl StringType {
    fn is_wstring(&self) -> bool {
        *self == StringType::WString
    }

    pub(crate) fn xsi_type(self) -> &'static str {
        match self {
            StringType::WString => "xsd:wstring",
            StringType::String => "xsd:string",
        }
    }
}

/// Bounds on what a hostile message can make the decoder build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Nesting of params containers and arrays (the top container is level 1); also bounds
    /// XML element nesting in general. Values above 100 count as 100.
    pub max_depth: usize,
    /// Params entries, array items and string-list items in one message, together.
    pub max_entries: usize,
    /// Events in one `PutEvents`, beyond which the call is refused outright (the server's own
    /// per-call limit is lower and is its business).
    pub max_events: usize,
    /// One text value, in bytes. Event strings are cut to it instead of refused.
    pub max_string_bytes: usize,
    /// One base64 value, decoded, in bytes (a file chunk's `buff` is up to 1 MiB).
    pub max_binary_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 32,
            max_entries: 20_000,
            max_events: 1000,
            max_string_bytes: 64 * 1024,
            max_binary_bytes: 2 * 1024 * 1024,
        }
    }
}

/// A decoded request, or why a well-formed request for a known operation cannot be served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Decoded {
    Ok {
        ctx: MessageContext,
        request: Request,
    },
    /// Well-formed SOAP for a known operation whose fields are wrong: the server answers as
    /// that operation with `oError`.
    Invalid {
        ctx: MessageContext,
        op: Operation,
        error: CodecError,
    },
}

impl Decoded {
    pub fn ctx(&self) -> &MessageContext {
        match self {
            Decoded::Ok { ctx, .. } | Decoded::Invalid { ctx, .. } => ctx,
        }
    }

    pub fn operation(&self) -> Operation {
        match self {
            Decoded::Ok { request, .. } => request.operation(),
            Decoded::Invalid { op, .. } => *op,
        }
    }
}

/// What the Body carried.
enum Payload<T> {
    Ok(T),
    Invalid(Operation, CodecError),
    Fault(Fault),
}

/// Reads the envelope around a payload: the optional `messDesc` header, then the first child
/// of the Body, handed to `on_payload`. Other envelope and Body children are skipped.
fn read_envelope<'a, T>(
    r: &mut Reader<'a>,
    mut on_payload: impl FnMut(&mut Reader<'a>, &Elem<'a>) -> Res<Payload<T>>,
) -> Res<Payload<T>> {
    let root = r.root()?;
    if r.space_of(&root) != Space::SoapEnv || root.local() != "Envelope" {
        return Err(ReadError::Xml("not a SOAP 1.1 Envelope".into()));
    }
    let mut payload = None;
    while let Some(c) = r.next_child()? {
        match (r.space_of(&c), c.local(), &payload) {
            (Space::SoapEnv, "Header", None) => read_header(r)?,
            (Space::SoapEnv, "Body", None) => {
                let Some(first) = r.next_child()? else {
                    return Err(ReadError::Xml("empty SOAP Body".into()));
                };
                payload = Some(on_payload(r, &first)?);
                // Running the first operation and ignoring the rest would leave the sender
                // believing they all ran.
                if r.next_child()?.is_some() {
                    return Err(ReadError::Xml(
                        "more than one operation in the SOAP Body".into(),
                    ));
                }
            }
            (Space::SoapEnv, "Body", Some(_)) => {
                return Err(ReadError::Xml("more than one SOAP Body".into()))
            }
            _ => r.skip(&c)?,
        }
    }
    r.finish()?;
    payload.ok_or_else(|| ReadError::Xml("missing SOAP Body".into()))
}

/// The `messDesc` header; anything odd in it is ignored, as it is never required.
fn read_header(r: &mut Reader<'_>) -> Res<()> {
    while let Some(c) = r.next_child()? {
        if c.local() != "messDesc" {
            r.skip(&c)?;
            continue;
        }
        while let Some(f) = r.next_child()? {
            if f.local() != "MessageId" {
                r.skip(&f)?;
                continue;
            }
            let t = r.text_read(&f, 64)?;
            if !t.nested && !t.truncated {
                if let Some(id) = lexical::parse_i32(&t.text) {
                    r.message_id = Some(id);
                }
            }
        }
    }
    Ok(())
}

/// Decodes an operation's content; a content error leaves the rest of the document to be
/// checked, so that malformed XML after it is still a Fault.
fn read_operation<'a, T>(
    r: &mut Reader<'a>,
    elem: &Elem<'a>,
    op: Operation,
    read: impl FnOnce(&mut Reader<'a>, Operation) -> Res<T>,
) -> Res<Payload<T>> {
    match read(r, op) {
        Ok(v) => Ok(Payload::Ok(v)),
        Err(ReadError::Codec(e)) => {
            r.drain(elem)?;
            Ok(Payload::Invalid(op, e))
        }
        Err(e) => Err(e),
    }
}

fn context(r: &Reader<'_>) -> MessageContext {
    MessageContext {
        ns: r.namespaces(),
        message_id: r.message_id,
        string_type: StringType::default(),
    }
}

/// Decodes a request (server side). `Err` is for what cannot be answered as an operation:
/// malformed or refused XML, not a SOAP envelope, no Body, an unknown operation. Such a fault
/// is encoded with `MessageContext::default()`: nothing in a Fault depends on the schema or
/// param namespaces, and a message that could not be read has no trustworthy message id.
pub fn decode_request(body: &[u8], limits: &Limits) -> Result<Decoded, Fault> {
    let mut r = Reader::new(body, limits);
    let payload = read_envelope(&mut r, |r, elem| {
        let op = match r.space_of(elem) {
            Space::Aklwngt => Operation::from_wire_name(elem.local()),
            _ => None,
        };
        let Some(op) = op else {
            return Err(ReadError::Xml(format!(
                "unknown operation `{}`",
                elem.local()
            )));
        };
        read_operation(r, elem, op, request::read)
    });
    let ctx = context(&r);
    match payload {
        Ok(Payload::Ok(request)) => Ok(Decoded::Ok { ctx, request }),
        Ok(Payload::Invalid(op, error)) => Ok(Decoded::Invalid { ctx, op, error }),
        Ok(Payload::Fault(f)) => Err(f),
        Err(ReadError::Xml(reason)) => Err(Fault::client(reason)),
        Err(ReadError::Codec(e)) => Err(Fault::client(e.to_string())),
    }
}

/// Decodes a response (client side), recognising a SOAP Fault.
pub fn decode_response(
    body: &[u8],
    limits: &Limits,
) -> Result<(MessageContext, Response), ClientError> {
    let mut r = Reader::new(body, limits);
    let payload = read_envelope(&mut r, |r, elem| match r.space_of(elem) {
        Space::SoapEnv if elem.local() == "Fault" => Ok(Payload::Fault(read_fault(r)?)),
        Space::Aklwngt => {
            let op = Operation::ALL
                .into_iter()
                .find(|op| op.response_name() == elem.local());
            match op {
                Some(op) => read_operation(r, elem, op, response::read),
                None => Err(ReadError::Xml(format!(
                    "unexpected response element `{}`",
                    elem.local()
                ))),
            }
        }
        _ => Err(ReadError::Xml(format!(
            "unexpected Body element `{}`",
            elem.local()
        ))),
    });
    match payload {
        Ok(Payload::Ok(resp)) => Ok((context(&r), resp)),
        Ok(Payload::Invalid(op, error)) => Err(ClientError::Invalid { op, error }),
        Ok(Payload::Fault(fault)) => Err(ClientError::Fault { fault }),
        Err(ReadError::Xml(reason)) => Err(ClientError::Malformed { reason }),
        Err(ReadError::Codec(e)) => Err(ClientError::Malformed {
            reason: e.to_string(),
        }),
    }
}

/// `faultcode` is a QName; only its local part is looked at (`Client`, `Client.Auth`, ...).
fn read_fault(r: &mut Reader<'_>) -> Res<Fault> {
    let mut code = FaultCode::Server;
    let mut reason = String::new();
    while let Some(c) = r.next_child()? {
        match c.local() {
            "faultcode" => {
                let t = r.text_read(&c, 256)?;
                let text = lexical::trim_xml(&t.text);
                let local = text.rsplit(':').next().unwrap_or(text);
                if local.starts_with("Client") {
                    code = FaultCode::Client;
                }
            }
            "faultstring" => {
                let max = r.limits.max_string_bytes;
                reason = r.text_read(&c, max)?.text.into_owned();
            }
            _ => r.skip(&c)?,
        }
    }
    Ok(Fault { code, reason })
}

/// Writes an envelope with the namespaces of `ctx` and, if it has a message id, the
/// `messDesc` header.
fn write_envelope(
    ctx: &MessageContext,
    is_request: bool,
    size_hint: usize,
    body: impl FnOnce(&mut Writer),
) -> Vec<u8> {
    let mut w = Writer::with_capacity(size_hint);
    w.string_type = ctx.string_type.xsi_type();
    w.raw("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<SOAP-ENV:Envelope xmlns:SOAP-ENV=\"");
    w.raw(SOAP_ENV_NS);
    w.raw("\" xmlns:SOAP-ENC=\"");
    w.raw(SOAP_ENC_NS);
    w.raw("\" xmlns:xsi=\"");
    w.raw(ctx.ns.xsi_uri());
    w.raw("\" xmlns:xsd=\"");
    w.raw(ctx.ns.xsd_uri());
    w.raw("\" xmlns:param=\"");
    w.raw(ctx.ns.param_uri());
    w.raw("\" xmlns:aklwngt=\"");
    w.raw(AKLWNGT_NS);
    w.raw("\">");
    if let Some(id) = ctx.message_id {
        w.raw("<SOAP-ENV:Header><messDesc>");
        w.open_typed("RequestFlag", "xsd:int");
        w.raw(if is_request { "1" } else { "0" });
        w.close("RequestFlag");
        w.open_typed("MessageId", "xsd:int");
        let _ = write!(w.buf(), "{id}");
        w.close("MessageId");
        w.raw("</messDesc></SOAP-ENV:Header>");
    }
    w.raw("<SOAP-ENV:Body>");
    body(&mut w);
    w.raw("</SOAP-ENV:Body></SOAP-ENV:Envelope>");
    w.into_bytes()
}

/// Encodes a response (server side). Success replies carry no `oError`.
/// `s` escaped for a double-quoted XML attribute value.
pub fn escape_attribute(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    writer::escape_into(&mut out, s);
    out.replace('"', "&quot;")
}

pub fn encode_response(ctx: &MessageContext, resp: &Response) -> Vec<u8> {
    write_envelope(ctx, false, 1024, |w| {
        let name = resp.operation().response_name();
        w.raw("<aklwngt:");
        w.raw(name);
        w.raw(">");
        response::write(w, resp);
        w.raw("</aklwngt:");
        w.raw(name);
        w.raw(">");
    })
}

/// Encodes a SOAP Fault (to be sent with HTTP status 500).
pub fn encode_fault(ctx: &MessageContext, fault: &Fault) -> Vec<u8> {
    write_envelope(ctx, false, 512, |w| {
        w.raw("<SOAP-ENV:Fault><faultcode>");
        w.raw(match fault.code {
            FaultCode::Client => "SOAP-ENV:Client",
            FaultCode::Server => "SOAP-ENV:Server",
        });
        w.raw("</faultcode>");
        w.string("faultstring", &fault.reason);
        w.raw("</SOAP-ENV:Fault>");
    })
}

/// Encodes a request (client side); with a message id, the header has `RequestFlag` 1.
pub fn encode_request(ctx: &MessageContext, req: &Request) -> Vec<u8> {
    write_envelope(ctx, true, 1024, |w| {
        let name = req.operation().wire_name();
        w.raw("<aklwngt:");
        w.raw(name);
        w.raw(">");
        request::write(w, req);
        w.raw("</aklwngt:");
        w.raw(name);
        w.raw(">");
    })
}
