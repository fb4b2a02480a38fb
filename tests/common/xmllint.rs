//! Validation of aklwngt SOAP envelopes against the published WSDL schemas, with libxml2's `xmllint`.
//!
//! Use from an integration test with
//! `#[path = "common/xmllint.rs"] mod xmllint;` and call [`validate_envelope`] on any request, reply or
//! fault. `xmllint` comes from the `libxml2-utils` package; without it every check fails, on purpose:
//! a schema test that silently passes when its validator is missing proves nothing.

// Each integration test compiles its own copy of this module and uses a different part of it.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use quick_xml::events::attributes::Attribute;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::{Namespace, QName, ResolveResult};
use quick_xml::reader::NsReader;
use quick_xml::writer::Writer;

pub const XSD_2001: &str = "http://www.w3.org/2001/XMLSchema";
pub const XSI_2001: &str = "http://www.w3.org/2001/XMLSchema-instance";
pub const XSD_1999: &str = "http://www.w3.org/1999/XMLSchema";
pub const XSI_1999: &str = "http://www.w3.org/1999/XMLSchema-instance";
pub const PARAM_NS: &str = "http://tempuri.org/param.xsd";
pub const PARAM_NS_OLD: &str = "http://tempuri";
pub const AKLWNGT_NS: &str = "http://tempuri.org/aklwngt.xsd";
pub const SOAP_ENV_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";

/// The repository's root, where `wsdl/` and `tests/` are.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The test schema of the SOAP 1.1 envelope, which imports `wsdl/aklwngt.xsd` and `wsdl/param.xsd`.
pub fn envelope_schema() -> PathBuf {
    repo_root().join("tests/schemas/soap-envelope.xsd")
}

/// Rewrites what older devices send into the standard form a schema validator knows, exactly as the
/// server reads both as the same thing:
/// - the 1999 XML Schema namespaces become the 2001 ones;
/// - the old param namespace `http://tempuri` becomes `http://tempuri.org/param.xsd`;
/// - `xsi:type` values naming `wstring` in an XML Schema namespace name `string` instead (wstring is the
///   protocol's Unicode string; it is not an XML Schema type, see the comment in `wsdl/param.xsd`).
///
/// Prefixes are whatever the sender chose, so both rewrites go by namespace URI, never by prefix text.
/// Nothing else changes: a message that is wrong for the server stays wrong for the validator.
pub fn normalise(xml: &str) -> Result<String, String> {
    let mut reader = NsReader::from_str(xml);
    let mut writer = Writer::new(Vec::with_capacity(xml.len()));
    loop {
        let event = reader.read_event().map_err(|e| {
            format!(
                "not well-formed XML at byte {}: {e}",
                reader.error_position()
            )
        })?;
        let event = match event {
            Event::Eof => break,
            Event::Start(start) => Event::Start(normalise_start(&reader, &start)?),
            Event::Empty(start) => Event::Empty(normalise_start(&reader, &start)?),
            other => other,
        };
        writer
            .write_event(event)
            .map_err(|e| format!("cannot write the normalised XML: {e}"))?;
    }
    String::from_utf8(writer.into_inner()).map_err(|e| format!("normalised XML is not UTF-8: {e}"))
}

fn standard_namespace(uri: &str) -> Option<&'static str> {
    match uri {
        XSD_1999 => Some(XSD_2001),
        XSI_1999 => Some(XSI_2001),
        PARAM_NS_OLD => Some(PARAM_NS),
        _ => None,
    }
}

fn is_xsi(ns: &ResolveResult<'_>) -> bool {
    matches!(ns, ResolveResult::Bound(Namespace(uri)) if *uri == XSI_2001 || *uri == XSI_1999)
}

fn is_xsd(ns: &ResolveResult<'_>) -> bool {
    matches!(ns, ResolveResult::Bound(Namespace(uri)) if *uri == XSD_2001 || *uri == XSD_1999)
}

fn normalise_start(
    reader: &NsReader<&[u8]>,
    start: &BytesStart<'_>,
) -> Result<BytesStart<'static>, String> {
    let mut out = start.to_owned();
    out.clear_attributes();
    for attr in start.attributes() {
        let attr = attr.map_err(|e| format!("malformed attribute: {e}"))?;
        let key = attr.key.into_inner();
        let raw = attr.value.as_ref();
        let is_declaration = key == "xmlns" || key.starts_with("xmlns:");
        let value: String = if is_declaration {
            standard_namespace(raw).unwrap_or(raw).to_owned()
        } else {
            let (ns, local) = reader.resolver().resolve_attribute(attr.key);
            if is_xsi(&ns) && local.into_inner() == "type" {
                let (type_ns, type_local) = reader.resolver().resolve_element(QName(raw.trim()));
                if is_xsd(&type_ns) && type_local.into_inner() == "wstring" {
                    let prefix_len = raw.trim().len() - "wstring".len();
                    format!("{}string", &raw.trim()[..prefix_len])
                } else {
                    raw.to_owned()
                }
            } else {
                raw.to_owned()
            }
        };
        // The value is still in its escaped form, so it is pushed as is, not escaped again.
        out.push_attribute(Attribute {
            key: QName(key),
            value: value.into(),
        });
    }
    Ok(out)
}

/// Fails with installation advice when `xmllint` cannot be run.
pub fn require_xmllint() -> Result<(), String> {
    match Command::new("xmllint").arg("--version").output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "`xmllint --version` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )),
        Err(e) => Err(format!(
            "xmllint is required by the schema tests and could not be run ({e}); \
             install it with `apt-get install -y libxml2-utils`"
        )),
    }
}

/// Runs `xmllint` with `args`, feeding `stdin` to it, and returns its exit code and its stderr.
pub fn xmllint(args: &[&str], stdin: Option<&str>) -> Result<(i32, String), String> {
    require_xmllint()?;
    let mut child = Command::new("xmllint")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start xmllint: {e}"))?;
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin was piped");
        pipe.write_all(input.as_bytes())
            .map_err(|e| format!("cannot feed xmllint: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("xmllint did not finish: {e}"))?;
    let code = out.status.code().unwrap_or(-1);
    Ok((code, String::from_utf8_lossy(&out.stderr).into_owned()))
}

/// Validates one whole SOAP 1.1 message (request, reply or fault) against the WSDL's schemas.
///
/// The message is first put through [`normalise`], which is what lets the old namespace style validate.
/// On failure, the error holds xmllint's diagnostics with the line numbers of the normalised message.
pub fn validate_envelope(xml: &str) -> Result<(), String> {
    let normalised = normalise(xml)?;
    validate_with_schema(&envelope_schema(), &normalised)
}

/// The envelope schema of [`envelope_schema`], written into `dir` over copies of the WSDL's schemas
/// made as strict as the protocol's original 2007 schema, which clients generated in strict mode
/// (gSOAP's `SOAP_XML_STRICT`) enforce: every `param:params` container has `checksum` and `binfmt`
/// after `node`, and a `klft-GetFileInfo` reply always has `info`. Returns its path.
pub fn strict_envelope_schema(dir: &Path) -> PathBuf {
    let wsdl = repo_root().join("wsdl");
    let edit = |file: &str, from: &str, to: &str| {
        let text = std::fs::read_to_string(wsdl.join(file)).unwrap();
        assert!(text.contains(from), "{file} no longer has {from}");
        text.replace(from, to)
    };
    let param = edit(
        "param.xsd",
        r#"<xsd:element name="checksum" type="xsd:int" minOccurs="0"/>
      <xsd:element name="binfmt" type="xsd:base64Binary" minOccurs="0"/>"#,
        r#"<xsd:element name="checksum" type="xsd:int"/>
      <xsd:element name="binfmt" type="xsd:base64Binary"/>"#,
    );
    let aklwngt = edit(
        "aklwngt.xsd",
        r#"<xsd:element name="info" type="aklwngt:klft-file-info-t" minOccurs="0">"#,
        r#"<xsd:element name="info" type="aklwngt:klft-file-info-t">"#,
    );
    std::fs::write(dir.join("param.xsd"), param).unwrap();
    std::fs::write(dir.join("aklwngt.xsd"), aklwngt).unwrap();
    let envelope = std::fs::read_to_string(envelope_schema())
        .unwrap()
        .replace("../../wsdl/", "");
    let path = dir.join("soap-envelope.xsd");
    std::fs::write(&path, envelope).unwrap();
    path
}

/// Validates `xml` against the schema at `schema`, offline.
pub fn validate_with_schema(schema: &Path, xml: &str) -> Result<(), String> {
    let schema = schema.to_str().ok_or("schema path is not UTF-8")?;
    let (code, stderr) = xmllint(&["--noout", "--nonet", "--schema", schema, "-"], Some(xml))?;
    match code {
        0 => Ok(()),
        // xmllint's exit code 5: the schema itself did not compile.
        5 => Err(format!("the schema {schema} does not compile:\n{stderr}")),
        _ => Err(stderr),
    }
}
