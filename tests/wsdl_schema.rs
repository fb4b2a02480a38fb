//! The WSDL and its schemas: they are valid, they describe every message of the protocol as it is on the
//! wire (all the fixtures validate), and standard toolkits (zeep, gSOAP) accept them.
//!
//! Needs `xmllint` (`apt-get install -y libxml2-utils`); the zeep check needs `python3` with
//! `pip install zeep`; the gSOAP check runs when `wsdl2h` and `soapcpp2` are installed
//! (`apt-get install -y gsoap`).

#[path = "common/xmllint.rs"]
mod xmllint;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use quick_xml::events::Event;
use quick_xml::name::{Namespace, QName, ResolveResult};
use quick_xml::reader::NsReader;

use xmllint::{
    normalise, repo_root, validate_envelope, validate_with_schema, xmllint, AKLWNGT_NS, PARAM_NS,
    PARAM_NS_OLD, SOAP_ENV_NS, XSD_1999, XSD_2001, XSI_1999, XSI_2001,
};

const WSDL_NS: &str = "http://schemas.xmlsoap.org/wsdl/";
const WSDL_SOAP_NS: &str = "http://schemas.xmlsoap.org/wsdl/soap/";

const OPERATIONS: [&str; 7] = [
    "SessionBegin",
    "Heartbeat",
    "PutResult",
    "PutEvents",
    "klft-GetFileInfo",
    "klft-GetNextFileChunk",
    "SessionEnd",
];

const COMMAND_TYPES: [&str; 8] = [
    "CmdError",
    "CmdHash",
    "CmdPar",
    "CmdParAndHash",
    "CmdSubscriptions",
    "CmdAppInfo",
    "CmdAppState",
    "string-array",
];

fn wsdl_dir() -> PathBuf {
    repo_root().join("wsdl")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("repository paths are UTF-8")
}

/// Every `*.xml` under `dir`, recursively, sorted.
fn xml_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries =
            fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "xml") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// A resolved name: (namespace URI or "" for none, local name).
type Name = (String, String);

fn resolved(ns: ResolveResult<'_>, local: &str) -> Name {
    let uri = match ns {
        ResolveResult::Bound(Namespace(uri)) => uri.to_owned(),
        ResolveResult::Unbound => String::new(),
        ResolveResult::Unknown(prefix) => format!("<unbound prefix {prefix}>"),
    };
    (uri, local.to_owned())
}

fn name(ns: &str, local: &str) -> Name {
    (ns.to_owned(), local.to_owned())
}

/// What a message (or any XML document) contains, by namespace URI.
#[derive(Default, Debug)]
struct Outline {
    /// Namespace URIs declared anywhere.
    declared: BTreeSet<String>,
    /// Each element with its parent and its attributes, attribute values raw.
    elements: Vec<Element>,
}

#[derive(Debug)]
struct Element {
    name: Name,
    parent: Option<Name>,
    depth: usize,
    attributes: Vec<(Name, String)>,
    /// `xsi:type` resolved to a name, if present.
    xsi_type: Option<Name>,
}

impl Outline {
    fn of(xml: &str) -> Outline {
        let mut outline = Outline::default();
        let mut reader = NsReader::from_str(xml);
        let mut stack: Vec<Name> = Vec::new();
        loop {
            let (start, empty) = match reader.read_event().expect("well-formed XML") {
                Event::Eof => break,
                Event::Start(e) => (e, false),
                Event::Empty(e) => (e, true),
                Event::End(_) => {
                    stack.pop();
                    continue;
                }
                _ => continue,
            };
            let (ns, local) = reader.resolver().resolve_element(start.name());
            let element_name = resolved(ns, local.into_inner());
            let mut attributes = Vec::new();
            let mut xsi_type = None;
            for attr in start.attributes() {
                let attr = attr.expect("well-formed attribute");
                let key = attr.key.into_inner();
                if key == "xmlns" || key.starts_with("xmlns:") {
                    outline.declared.insert(attr.value.to_string());
                    continue;
                }
                let (ns, local) = reader.resolver().resolve_attribute(attr.key);
                let attr_name = resolved(ns, local.into_inner());
                if attr_name.1 == "type" && (attr_name.0 == XSI_2001 || attr_name.0 == XSI_1999) {
                    let (ns, local) = reader.resolver().resolve_element(QName(attr.value.trim()));
                    xsi_type = Some(resolved(ns, local.into_inner()));
                }
                attributes.push((attr_name, attr.value.to_string()));
            }
            outline.elements.push(Element {
                name: element_name.clone(),
                parent: stack.last().cloned(),
                depth: stack.len(),
                attributes,
                xsi_type,
            });
            if !empty {
                stack.push(element_name);
            }
        }
        outline
    }

    fn attribute(element: &Element, local: &str) -> Option<String> {
        element
            .attributes
            .iter()
            .find(|((ns, name), _)| ns.is_empty() && name == local)
            .map(|(_, value)| value.clone())
    }

    /// The elements named `local` in namespace `ns` whose parent is `parent`.
    fn children_of<'a>(
        &'a self,
        parent: &'a Name,
        ns: &'a str,
        local: &'a str,
    ) -> impl Iterator<Item = &'a Element> {
        self.elements.iter().filter(move |e| {
            e.parent.as_ref() == Some(parent) && e.name.0 == ns && e.name.1 == local
        })
    }

    /// The children of the SOAP Body.
    fn body_children(&self) -> Vec<Name> {
        let body = name(SOAP_ENV_NS, "Body");
        self.elements
            .iter()
            .filter(|e| e.parent.as_ref() == Some(&body))
            .map(|e| e.name.clone())
            .collect()
    }
}

// ------------------------------------------------------------------------------------------ schemas

#[test]
fn wsdl_and_schemas_are_well_formed() {
    let files = [
        wsdl_dir().join("aklwngt.wsdl"),
        wsdl_dir().join("aklwngt.xsd"),
        wsdl_dir().join("param.xsd"),
        repo_root().join("tests/schemas/soap-envelope.xsd"),
    ];
    for file in &files {
        let (code, stderr) = xmllint(&["--noout", "--nonet", path_str(file)], None).unwrap();
        assert_eq!(code, 0, "{} is not well-formed:\n{stderr}", file.display());
    }
}

/// Compiles `schema` (an XML Schema document) with xmllint and validates `instance` with it.
fn compile_and_validate(schema: &Path, instance: &str) {
    if let Err(e) = validate_with_schema(schema, instance) {
        panic!("{}: {e}", schema.display());
    }
}

#[test]
fn schemas_are_valid_xml_schemas() {
    // Each schema must compile on its own (xmllint exits 5 when it does not) and accept a typical
    // instance; aklwngt.xsd imports param.xsd, so this compiles both.
    compile_and_validate(
        &wsdl_dir().join("aklwngt.xsd"),
        r#"<a:SessionEnd xmlns:a="http://tempuri.org/aklwngt.xsd"><szSessionId>x</szSessionId></a:SessionEnd>"#,
    );
    compile_and_validate(
        &repo_root().join("tests/schemas/soap-envelope.xsd"),
        r#"<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body/></e:Envelope>"#,
    );
    // param.xsd declares types only; a wrapper with one element of type param:params compiles it alone.
    let dir = tempfile::tempdir().unwrap();
    let wrapper = dir.path().join("param-wrapper.xsd");
    fs::write(
        &wrapper,
        format!(
            r#"<xsd:schema xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:param="{PARAM_NS}">
                 <xsd:import namespace="{PARAM_NS}" schemaLocation="{}"/>
                 <xsd:element name="parameters" type="param:params"/>
               </xsd:schema>"#,
            path_str(&wsdl_dir().join("param.xsd"))
        ),
    )
    .unwrap();
    compile_and_validate(
        &wrapper,
        r#"<parameters xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
                       xmlns:xsd="http://www.w3.org/2001/XMLSchema"
                       xmlns:param="http://tempuri.org/param.xsd"><node>
             <item><name>n</name><value><data xsi:type="xsd:long">1</data></value></item>
             <item><name>a</name><value><data xsi:type="param:arrayvalue">
               <item><data xsi:type="param:params"><node/></data></item></data></value></item>
           </node><checksum>0</checksum><binfmt/></parameters>"#,
    );
}

#[test]
fn schemas_never_declare_wstring() {
    // Standard toolkits refuse unknown built-in types: "wstring" may appear only in comments and
    // documentation, never as a type reference.
    for file in ["aklwngt.wsdl", "aklwngt.xsd", "param.xsd"] {
        let outline = Outline::of(&read(&wsdl_dir().join(file)));
        for element in &outline.elements {
            for ((_, attr), value) in &element.attributes {
                assert!(
                    !value.contains("wstring"),
                    "{file}: <{}> has {attr}={value:?}",
                    element.name.1
                );
            }
        }
    }
}

#[test]
fn wsdl_describes_every_operation_document_literal() {
    let wsdl = Outline::of(&read(&wsdl_dir().join("aklwngt.wsdl")));
    let xsd = Outline::of(&read(&wsdl_dir().join("aklwngt.xsd")));
    let definitions = name(WSDL_NS, "definitions");
    let root = &wsdl.elements[0];
    assert_eq!(root.name, definitions);
    assert_eq!(
        Outline::attribute(root, "targetNamespace").as_deref(),
        Some(AKLWNGT_NS)
    );

    // Operation names in the port type and in the binding, in order.
    let port_type = name(WSDL_NS, "portType");
    let binding = name(WSDL_NS, "binding");
    let ops_of = |parent: &Name| -> Vec<String> {
        wsdl.children_of(parent, WSDL_NS, "operation")
            .map(|op| Outline::attribute(op, "name").unwrap())
            .collect()
    };
    assert_eq!(ops_of(&port_type), OPERATIONS);
    assert_eq!(ops_of(&binding), OPERATIONS);

    // document style, SOAP over HTTP, literal bodies, empty SOAPAction.
    let soap_binding: Vec<_> = wsdl
        .children_of(&binding, WSDL_SOAP_NS, "binding")
        .collect();
    assert_eq!(soap_binding.len(), 1);
    assert_eq!(
        Outline::attribute(soap_binding[0], "style").as_deref(),
        Some("document")
    );
    assert_eq!(
        Outline::attribute(soap_binding[0], "transport").as_deref(),
        Some("http://schemas.xmlsoap.org/soap/http")
    );
    let bodies: Vec<_> = wsdl
        .elements
        .iter()
        .filter(|e| e.name == name(WSDL_SOAP_NS, "body"))
        .collect();
    assert_eq!(bodies.len(), 2 * OPERATIONS.len());
    assert!(bodies
        .iter()
        .all(|b| Outline::attribute(b, "use").as_deref() == Some("literal")));
    let actions: Vec<_> = wsdl
        .elements
        .iter()
        .filter(|e| e.name == name(WSDL_SOAP_NS, "operation"))
        .collect();
    assert_eq!(actions.len(), OPERATIONS.len());
    assert!(actions
        .iter()
        .all(|a| Outline::attribute(a, "soapAction").as_deref() == Some("")));

    // The optional messDesc header on every input and output.
    let headers: Vec<_> = wsdl
        .elements
        .iter()
        .filter(|e| e.name == name(WSDL_SOAP_NS, "header"))
        .collect();
    assert_eq!(headers.len(), 2 * OPERATIONS.len());
    for header in headers {
        assert_eq!(
            Outline::attribute(header, "part").as_deref(),
            Some("messDesc")
        );
        assert_eq!(
            Outline::attribute(header, "use").as_deref(),
            Some("literal")
        );
    }

    // Each message part names an element: the operation element and its response in the aklwngt
    // namespace, and messDesc without a namespace. Resolve the QNames the way toolkits do.
    let wsdl_text = read(&wsdl_dir().join("aklwngt.wsdl"));
    let mut parts = BTreeSet::new();
    let mut reader = NsReader::from_str(&wsdl_text);
    loop {
        match reader.read_event().unwrap() {
            Event::Eof => break,
            Event::Start(e) | Event::Empty(e) => {
                let (ns, local) = reader.resolver().resolve_element(e.name());
                if resolved(ns, local.into_inner()) != name(WSDL_NS, "part") {
                    continue;
                }
                let element = e
                    .attributes()
                    .map(|a| a.unwrap())
                    .find(|a| a.key.into_inner() == "element")
                    .expect("every part names an element (document/literal)");
                let (ns, local) = reader.resolver().resolve_element(QName(&element.value));
                parts.insert(resolved(ns, local.into_inner()));
            }
            _ => {}
        }
    }
    let mut expected: BTreeSet<Name> = OPERATIONS
        .iter()
        .flat_map(|op| {
            [
                name(AKLWNGT_NS, op),
                name(AKLWNGT_NS, &format!("{op}Response")),
            ]
        })
        .collect();
    expected.insert(name("", "messDesc"));
    assert_eq!(parts, expected);

    // ...and aklwngt.xsd declares exactly those operation elements.
    let schema = name(XSD_2001, "schema");
    let global_elements: BTreeSet<Name> = xsd
        .children_of(&schema, XSD_2001, "element")
        .map(|e| name(AKLWNGT_NS, &Outline::attribute(e, "name").unwrap()))
        .collect();
    expected.remove(&name("", "messDesc"));
    assert_eq!(global_elements, expected);
    assert_eq!(
        Outline::attribute(&xsd.elements[0], "elementFormDefault").as_deref(),
        Some("unqualified")
    );

    // The placeholder address that the server rewrites when it serves the WSDL.
    let addresses: Vec<_> = wsdl
        .elements
        .iter()
        .filter(|e| e.name == name(WSDL_SOAP_NS, "address"))
        .map(|e| Outline::attribute(e, "location").unwrap())
        .collect();
    assert_eq!(addresses, ["https://localhost:13292/"]);
}

#[test]
fn wsdl_inline_schema_declares_the_unqualified_header() {
    // The WSDL's own schema (no target namespace) imports the two XSDs by relative location and declares
    // messDesc. Compile it beside copies of the XSDs, as a toolkit resolving the imports would.
    let wsdl = read(&wsdl_dir().join("aklwngt.wsdl"));
    let start = wsdl
        .find("<xsd:schema")
        .expect("an inline schema in wsdl:types");
    let end = wsdl[start..]
        .find("</xsd:schema>")
        .expect("inline schema end")
        + start
        + "</xsd:schema>".len();
    let inline = wsdl[start..end].replacen(
        "<xsd:schema",
        &format!(r#"<xsd:schema xmlns:xsd="{XSD_2001}" xmlns:aklwngt="{AKLWNGT_NS}""#),
        1,
    );
    assert!(
        !inline.contains("targetNamespace"),
        "messDesc must be in no namespace"
    );
    let dir = tempfile::tempdir().unwrap();
    for xsd in ["aklwngt.xsd", "param.xsd"] {
        fs::copy(wsdl_dir().join(xsd), dir.path().join(xsd)).unwrap();
    }
    let schema = dir.path().join("inline.xsd");
    fs::write(&schema, inline).unwrap();
    compile_and_validate(
        &schema,
        "<messDesc><RequestFlag>1</RequestFlag><MessageId>7</MessageId></messDesc>",
    );
    assert!(
        validate_with_schema(&schema, "<messDesc><MessageId>7</MessageId></messDesc>").is_err(),
        "messDesc requires RequestFlag"
    );
}

// ------------------------------------------------------------------------------------------ normalising

#[test]
fn normalise_rewrites_the_old_namespaces_by_uri() {
    let old = r#"<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/" xmlns:i="http://www.w3.org/1999/XMLSchema-instance" xmlns:s="http://www.w3.org/1999/XMLSchema" xmlns:p="http://tempuri"><e:Body><d i:type="s:wstring">xsd:wstring &amp; "s:wstring"</d><d i:type="p:params"/></e:Body></e:Envelope>"#;
    let new = normalise(old).unwrap();
    assert_eq!(
        new,
        r#"<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/" xmlns:i="http://www.w3.org/2001/XMLSchema-instance" xmlns:s="http://www.w3.org/2001/XMLSchema" xmlns:p="http://tempuri.org/param.xsd"><e:Body><d i:type="s:string">xsd:wstring &amp; "s:wstring"</d><d i:type="p:params"/></e:Body></e:Envelope>"#
    );
}

#[test]
fn normalise_leaves_wstring_of_other_namespaces_alone() {
    // Only the XML Schema namespaces' wstring is the protocol's string type.
    let xml = r#"<d xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="urn:not-xml-schema" xsi:type="xsd:wstring" type="xsd:wstring"/>"#;
    assert_eq!(normalise(xml).unwrap(), xml);
    // ...and a 2001 document is left as it is.
    let xml = read(&repo_root().join("tests/fixtures/wsdl/putresult.request.hash.new.xml"));
    assert_eq!(
        Outline::of(&normalise(&xml).unwrap()).elements.len(),
        Outline::of(&xml).elements.len()
    );
    assert!(normalise("<a><b></a>").is_err());
}

// ------------------------------------------------------------------------------------------ messages

/// The marker of a fixture that is not a conforming message on purpose: device input that tests how the
/// server tolerates unknown elements, `xsi:nil`, elements out of order or malformed XML. It must say why,
/// as in `<!-- nonconforming: unknown elements are ignored -->`. What the server writes (responses and
/// faults) must always conform, so no response fixture may carry it.
const NONCONFORMING: &str = "<!-- nonconforming:";

/// The codec's tolerance fixtures (device input, nonconforming on purpose) that do not carry the marker.
const TOLERANCE_FIXTURES: &[(&str, &str)] = &[
    (
        "soap/fault_doctype.request.xml",
        "a DTD, which the server refuses",
    ),
    ("soap/fault_malformed.request.xml", "malformed XML"),
    ("soap/fault_missing_body.request.xml", "no SOAP Body"),
    (
        "soap/fault_unknown_operation.request.xml",
        "an operation the protocol does not have",
    ),
    (
        "soap/heartbeat_nil_and_unknown.request.xml",
        "xsi:nil and unknown elements",
    ),
    (
        "soap/heartbeat_prefixes.request.xml",
        "children qualified by a default namespace, partial header and sync-info",
    ),
    ("soap/invalid_missing_session.request.xml", "no szSessionId"),
    (
        "soap/invalid_protocol_version.request.xml",
        "a protocol version that is not an int",
    ),
    (
        "soap/put_events.request.xml",
        "missing, repeated, misplaced and unknown event fields",
    ),
    (
        "soap/put_result_app_info_old.request.xml",
        "CmdAppInfo's hash last (the original document's order) and xsi:nil",
    ),
];

/// Why `file` (under tests/fixtures) is nonconforming on purpose, if it is.
fn nonconforming_reason(fixtures: &Path, file: &Path, xml: &str) -> Option<String> {
    if let Some(at) = xml.find(NONCONFORMING) {
        let reason = xml[at + NONCONFORMING.len()..]
            .split("-->")
            .next()
            .unwrap_or("");
        return Some(reason.trim().to_owned());
    }
    let relative = file
        .strip_prefix(fixtures)
        .ok()?
        .to_str()?
        .replace('\\', "/");
    TOLERANCE_FIXTURES
        .iter()
        .find(|(path, _)| *path == relative)
        .map(|(_, reason)| (*reason).to_owned())
}

#[test]
fn every_fixture_validates_against_the_wsdl_schemas() {
    let fixtures = repo_root().join("tests/fixtures");
    let files = xml_files(&fixtures);
    assert!(
        files.len() >= 40,
        "expected the fixtures of tests/fixtures, found only {}",
        files.len()
    );
    let mut exempt = Vec::new();
    let mut failures = Vec::new();
    for file in &files {
        let xml = read(file);
        let shown = file.display();
        if let Some(reason) = nonconforming_reason(&fixtures, file, &xml) {
            assert!(
                !reason.is_empty(),
                "{shown}: a nonconforming fixture must say why"
            );
            let name = file.file_name().unwrap().to_string_lossy();
            assert!(
                !name.contains("response"),
                "{shown}: what the server writes must conform"
            );
            exempt.push(format!("{shown} ({reason})"));
            continue;
        }
        if let Err(e) = validate_envelope(&xml) {
            failures.push(format!(
                "{shown}:\n{e}(if this device input is nonconforming on purpose, say so in the file: \
                 {NONCONFORMING} why -->)"
            ));
        }
    }
    eprintln!(
        "{} fixtures validated; nonconforming on purpose:\n  {}",
        files.len() - exempt.len(),
        exempt.join("\n  ")
    );
    assert!(
        exempt.len() * 2 < files.len(),
        "most fixtures must be conforming messages: {exempt:?}"
    );
    assert!(
        failures.is_empty(),
        "{} of {} fixtures do not validate:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn own_fixtures_cover_the_whole_protocol() {
    let mut bodies = BTreeSet::new();
    let mut xsi_types = BTreeSet::new();
    let mut old_style = 0;
    let mut new_style = 0;
    let mut headers = 0;
    for file in xml_files(&repo_root().join("tests/fixtures/wsdl")) {
        let xml = read(&file);
        assert!(
            !xml.contains(NONCONFORMING),
            "{}: sample messages must conform",
            file.display()
        );
        let raw = Outline::of(&xml);
        let old = [XSD_1999, XSI_1999, PARAM_NS_OLD]
            .iter()
            .any(|ns| raw.declared.contains(*ns));
        if old {
            old_style += 1;
            assert!(
                !raw.declared.contains(XSI_2001),
                "{}: mixes namespace styles",
                file.display()
            );
        } else {
            new_style += 1;
        }
        let outline = Outline::of(&normalise(&xml).unwrap());
        if outline
            .elements
            .iter()
            .any(|e| e.name == name("", "messDesc") && e.depth == 2)
        {
            headers += 1;
        }
        bodies.extend(outline.body_children());
        xsi_types.extend(outline.elements.iter().filter_map(|e| e.xsi_type.clone()));
    }
    for op in OPERATIONS {
        assert!(bodies.contains(&name(AKLWNGT_NS, op)), "no {op} request");
        let response = format!("{op}Response");
        assert!(
            bodies.contains(&name(AKLWNGT_NS, &response)),
            "no {response}"
        );
    }
    assert!(
        bodies.contains(&name(SOAP_ENV_NS, "Fault")),
        "no SOAP Fault"
    );
    for cmd in COMMAND_TYPES {
        assert!(
            xsi_types.contains(&name(AKLWNGT_NS, cmd)),
            "no command data of type {cmd}"
        );
    }
    for value in ["params", "arrayvalue"] {
        assert!(
            xsi_types.contains(&name(PARAM_NS, value)),
            "no param value of type {value}"
        );
    }
    for value in [
        "boolean",
        "string",
        "int",
        "long",
        "date",
        "float",
        "double",
        "dateTime",
        "base64Binary",
    ] {
        assert!(
            xsi_types.contains(&name(XSD_2001, value)),
            "no param value of type xsd:{value}"
        );
    }
    assert!(
        old_style >= 10 && new_style >= 10,
        "old {old_style}, new {new_style}"
    );
    assert!(
        headers >= 5,
        "only {headers} messages with a messDesc header"
    );
}

/// A valid fixture with one change that the schema must refuse.
fn mutated(fixture: &str, from: &str, to: &str) -> String {
    let xml = read(&repo_root().join("tests/fixtures/wsdl").join(fixture));
    assert!(xml.contains(from), "{fixture} does not contain {from:?}");
    xml.replacen(from, to, 1)
}

#[test]
fn validation_refuses_what_the_protocol_does_not_allow() {
    let heartbeat = "heartbeat.request.sync.old.xml";
    let hash = "putresult.request.hash.new.xml";
    let settings = "putresult.request.settings.new.xml";
    let cases = [
        (
            "underscore instead of hyphen",
            mutated(heartbeat, "hash-stgs", "hash_stgs").replacen("hash-stgs", "hash_stgs", 1),
        ),
        (
            "qualified child",
            mutated(
                heartbeat,
                "<szSessionId>Qm9vdHN0cmFwU2Vzc2lvbg</szSessionId>",
                "<aklwngt:szSessionId>Qm9vdHN0cmFwU2Vzc2lvbg</aklwngt:szSessionId>",
            ),
        ),
        (
            "unqualified operation",
            mutated(heartbeat, "<aklwngt:Heartbeat>", "<Heartbeat>").replacen(
                "</aklwngt:Heartbeat>",
                "</Heartbeat>",
                1,
            ),
        ),
        (
            "unknown operation",
            mutated(heartbeat, "<aklwngt:Heartbeat>", "<aklwngt:HeartBeat>").replacen(
                "</aklwngt:Heartbeat>",
                "</aklwngt:HeartBeat>",
                1,
            ),
        ),
        (
            "hash not base64",
            mutated(heartbeat, "AAECAwQFBgcICQoLDA0ODw==", "not base64!"),
        ),
        (
            "missing session id",
            mutated(
                heartbeat,
                "<szSessionId>Qm9vdHN0cmFwU2Vzc2lvbg</szSessionId>",
                "",
            ),
        ),
        (
            "header without RequestFlag",
            mutated(
                heartbeat,
                r#"<RequestFlag xsi:type="xsd:int">1</RequestFlag>"#,
                "",
            ),
        ),
        (
            "unknown command type",
            mutated(hash, "aklwngt:CmdHash", "aklwngt:CmdNothing"),
        ),
        (
            "command data of a simple type",
            mutated(
                hash,
                r#"xsi:type="aklwngt:CmdHash""#,
                r#"xsi:type="xsd:base64Binary""#,
            ),
        ),
        (
            "CmdHash without hash",
            mutated(hash, "<hash>EBESExQVFhcYGRobHB0eHw==</hash>", ""),
        ),
        (
            "value without data",
            mutated(
                settings,
                r#"<value><data xsi:type="xsd:int">-1</data></value>"#,
                "<value/>",
            ),
        ),
        (
            "int value not an int",
            mutated(
                settings,
                r#"<data xsi:type="xsd:int">-1</data>"#,
                r#"<data xsi:type="xsd:int">minus one</data>"#,
            ),
        ),
        (
            "wstring outside XML Schema",
            mutated(settings, "xsd:wstring", "param:wstring"),
        ),
        (
            "misspelt param namespace",
            mutated(
                "putresult.request.settings.old.xml",
                r#"xmlns:param="http://tempuri""#,
                r#"xmlns:param="http://tempuri.org""#,
            ),
        ),
        (
            "unsignedLong negative",
            mutated(
                "klft-getnextfilechunk.request.new.xml",
                "<neededSize>32768</neededSize>",
                "<neededSize>-1</neededSize>",
            ),
        ),
        (
            "fault without faultstring",
            mutated("fault.client.new.xml", "<faultstring>", "<faultactor>").replacen(
                "</faultstring>",
                "</faultactor>",
                1,
            ),
        ),
    ];
    for (what, xml) in cases {
        // Refused by the schema, not for some other reason such as malformed XML.
        match validate_envelope(&xml) {
            Ok(()) => panic!("accepted: {what}"),
            Err(e) => assert!(e.contains("Schemas validity error"), "{what}: {e}"),
        }
    }
}

// ------------------------------------------------------------------------------------------ toolkits

fn runs(program: &str, arg: &str) -> bool {
    Command::new(program).arg(arg).output().is_ok()
}

#[test]
fn zeep_builds_valid_requests_and_parses_the_replies() {
    if !runs("python3", "--version") {
        eprintln!("python3 is not installed: the zeep interoperability check is skipped");
        return;
    }
    let has_zeep = Command::new("python3")
        .args(["-c", "import zeep"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        has_zeep,
        "the zeep interoperability check needs zeep: pip install zeep"
    );

    let out = tempfile::tempdir().unwrap();
    let result = Command::new("python3")
        .arg(repo_root().join("tests/interop/zeep_client.py"))
        .arg("--offline")
        .arg(wsdl_dir().join("aklwngt.wsdl"))
        .arg(out.path())
        .arg("--replies")
        .arg(repo_root().join("tests/fixtures/wsdl"))
        .output()
        .expect("run zeep_client.py");
    assert!(
        result.status.success(),
        "zeep_client.py --offline failed:\n{}{}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );

    let messages = xml_files(out.path());
    let mut operations = BTreeSet::new();
    let mut xsi_types = BTreeSet::new();
    for file in &messages {
        let xml = read(file);
        if let Err(e) = validate_envelope(&xml) {
            panic!("zeep's {} does not validate:\n{e}\n{xml}", file.display());
        }
        let outline = Outline::of(&xml);
        operations.extend(outline.body_children());
        xsi_types.extend(outline.elements.iter().filter_map(|e| e.xsi_type.clone()));
    }
    let expected: BTreeSet<Name> = OPERATIONS.iter().map(|op| name(AKLWNGT_NS, op)).collect();
    assert_eq!(operations, expected);
    for sent in [
        "CmdAppInfo",
        "CmdAppState",
        "CmdParAndHash",
        "CmdHash",
        "CmdError",
    ] {
        assert!(
            xsi_types.contains(&name(AKLWNGT_NS, sent)),
            "zeep sent no {sent}"
        );
    }
    for sent in ["params", "arrayvalue"] {
        assert!(
            xsi_types.contains(&name(PARAM_NS, sent)),
            "zeep sent no param:{sent}"
        );
    }
}

/// The directory of gSOAP's import headers (stlvector.h, ...), which soapcpp2 needs for wsdl2h's output.
fn gsoap_import_dir() -> Option<PathBuf> {
    ["/usr/share/gsoap/import", "/usr/local/share/gsoap/import"]
        .iter()
        .map(PathBuf::from)
        .find(|dir| dir.join("stlvector.h").is_file())
}

#[test]
fn gsoap_generates_a_client_from_the_wsdl() {
    if !runs("wsdl2h", "-V") || !runs("soapcpp2", "-V") {
        eprintln!("gSOAP (wsdl2h, soapcpp2) is not installed: the gSOAP check is skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let header = dir.path().join("aklwngt.h");
    let wsdl2h = Command::new("wsdl2h")
        .arg("-o")
        .arg(&header)
        .arg(wsdl_dir().join("aklwngt.wsdl"))
        .output()
        .expect("run wsdl2h");
    let log = String::from_utf8_lossy(&wsdl2h.stderr).into_owned()
        + &String::from_utf8_lossy(&wsdl2h.stdout);
    assert!(wsdl2h.status.success(), "wsdl2h failed:\n{log}");
    for complaint in ["error", "warning"] {
        assert!(
            !log.to_lowercase().contains(complaint),
            "wsdl2h: {complaint}:\n{log}"
        );
    }

    let mut soapcpp2 = Command::new("soapcpp2");
    soapcpp2.args(["-C", "-L", "-x"]).arg("-d").arg(dir.path());
    if let Some(import) = gsoap_import_dir() {
        soapcpp2.arg(format!("-I{}", import.display()));
    }
    let soapcpp2 = soapcpp2.arg(&header).output().expect("run soapcpp2");
    let log = String::from_utf8_lossy(&soapcpp2.stderr).into_owned()
        + &String::from_utf8_lossy(&soapcpp2.stdout);
    assert!(soapcpp2.status.success(), "soapcpp2 failed:\n{log}");
    for complaint in ["error", "warning"] {
        assert!(
            !log.to_lowercase().contains(complaint),
            "soapcpp2: {complaint}:\n{log}"
        );
    }

    let generated = read(&header);
    for op in OPERATIONS {
        let stub = format!("__ns1__{}(", op.replace('-', "_"));
        assert!(
            generated.contains(&stub),
            "no client stub {stub} in wsdl2h's output"
        );
    }
    assert!(
        generated.contains("struct SOAP_ENV__Header") && generated.contains("messDesc"),
        "the messDesc header is missing from wsdl2h's output"
    );
    assert!(
        dir.path().join("soapClient.cpp").is_file(),
        "soapcpp2 wrote no client"
    );
    // Every kind of parameter value gets a typed wrapper, so gSOAP clients can send and read each.
    for wrapper in [
        "boolean_",
        "string_",
        "int_",
        "long_",
        "date__",
        "float_",
        "double_",
        "dateTime_",
        "base64Binary__",
    ] {
        assert!(
            generated.contains(&format!("class xsd__{wrapper} ")),
            "no wrapper xsd__{wrapper}"
        );
    }

    // With gSOAP's headers installed (libgsoap-dev), the generated client must also compile.
    if !Path::new("/usr/include/stdsoap2.h").is_file() || !runs("g++", "--version") {
        eprintln!("stdsoap2.h or g++ missing: the generated gSOAP code is not compiled");
        return;
    }
    let compile = Command::new("g++")
        .arg("-fsyntax-only")
        .arg(format!("-I{}", dir.path().display()))
        .arg(dir.path().join("soapC.cpp"))
        .arg(dir.path().join("soapClient.cpp"))
        .output()
        .expect("run g++");
    assert!(
        compile.status.success(),
        "the gSOAP client generated from the WSDL does not compile:\n{}",
        String::from_utf8_lossy(&compile.stderr)
    );
}
