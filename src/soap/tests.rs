//! Tests of the codec against hostile and unusual input.

use super::*;

const ENV: &str = concat!(
    r#"<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" "#,
    r#"xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" "#,
    r#"xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:param="http://tempuri.org/param.xsd" "#,
    r#"xmlns:aklwngt="http://tempuri.org/aklwngt.xsd"><SOAP-ENV:Body>"#
);
const END: &str = "</SOAP-ENV:Body></SOAP-ENV:Envelope>";

fn op(name: &str, content: &str) -> String {
    format!("{ENV}<aklwngt:{name}>{content}</aklwngt:{name}>{END}")
}

fn decode(doc: &str) -> Result<Decoded, Fault> {
    decode_request(doc.as_bytes(), &Limits::default())
}

#[track_caller]
fn fault(doc: &str) -> String {
    match decode(doc) {
        Err(f) => {
            assert_eq!(f.code, FaultCode::Client);
            f.reason
        }
        Ok(d) => panic!("expected a fault, got {d:?}"),
    }
}

#[track_caller]
fn invalid(doc: &str) -> CodecError {
    match decode(doc) {
        Ok(Decoded::Invalid { error, .. }) => error,
        other => panic!("expected an invalid request, got {other:?}"),
    }
}

#[track_caller]
fn request(doc: &str) -> Request {
    match decode(doc) {
        Ok(Decoded::Ok { request, .. }) => request,
        other => panic!("expected a request, got {other:?}"),
    }
}

/// A PutResult carrying settings whose `node` content is `node`.
fn settings(node: &str) -> String {
    op(
        "PutResult",
        &format!(
            "<szSessionId>s</szSessionId><result><code>1</code>\
             <data xsi:type=\"aklwngt:CmdParAndHash\"><hash>AA==</hash>\
             <parameters xsi:type=\"param:params\"><node>{node}</node></parameters></data></result>"
        ),
    )
}

fn entry(name: &str, value: &str) -> String {
    format!("<item><name>{name}</name><value>{value}</value></item>")
}

#[test]
fn dtd_and_entities_are_refused() {
    assert_eq!(
        fault(&format!(
            "<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>{}",
            op("SessionEnd", "<szSessionId>&e;</szSessionId>")
        )),
        "DOCTYPE is not allowed"
    );
    assert_eq!(
        fault(&op("SessionEnd", "<szSessionId>a&e;b</szSessionId>")),
        "undeclared entity reference"
    );
    let attr = op("SessionEnd", "<szSessionId other=\"&e;\">a</szSessionId>");
    assert!(fault(&attr).starts_with("malformed XML"));
    assert!(fault(&op("SessionEnd", "<szSessionId>&#0;</szSessionId>")).contains("character"));
    // The five predefined entities and character references are fine.
    assert_eq!(
        request(&op(
            "SessionEnd",
            "<szSessionId>&lt;&gt;&amp;&apos;&quot;&#65;&#x42;</szSessionId>"
        )),
        Request::SessionEnd {
            session_id: "<>&'\"AB".into()
        }
    );
}

#[test]
fn processing_instructions_and_comments_are_ignored() {
    let doc = format!(
        "<?xml version=\"1.0\"?><?pi data?><!-- c -->{}<?after?>",
        op(
            "SessionEnd",
            "<!--x--><szSessionId>a<?pi?>b<!--y-->c</szSessionId>"
        )
    );
    assert_eq!(
        request(&doc),
        Request::SessionEnd {
            session_id: "abc".into()
        }
    );
}

#[test]
fn malformed_documents_are_faults() {
    let cases = [
        String::new(),
        "   ".into(),
        "not xml at all".into(),
        "<".into(),
        format!("{ENV}<aklwngt:SessionEnd><szSessionId>a</szSessionId>"),
        op("SessionEnd", "<szSessionId>a</szsessionid>"),
        op("SessionEnd", "<szSessionId a=\"1\" a=\"2\">a</szSessionId>"),
        op("SessionEnd", "<szSessionId a=1>a</szSessionId>"),
        format!(
            "{}<second/>",
            op("SessionEnd", "<szSessionId>a</szSessionId>")
        ),
        format!(
            "{}trailing",
            op("SessionEnd", "<szSessionId>a</szSessionId>")
        ),
        format!("text{}", op("SessionEnd", "<szSessionId>a</szSessionId>")),
        op(
            "SessionEnd",
            &format!(
                "<szSessionId {}>a</szSessionId>",
                (0..65)
                    .map(|i| format!("a{i}=\"\""))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        ),
    ];
    for doc in &cases {
        assert!(decode(doc).is_err(), "{doc:?}");
    }
    let mut bad_utf8 = op("SessionEnd", "<szSessionId>a</szSessionId>").into_bytes();
    let at = bad_utf8.len() - 60;
    bad_utf8[at] = 0xFF;
    assert!(decode_request(&bad_utf8, &Limits::default()).is_err());
}

#[test]
fn envelope_problems_are_faults() {
    assert_eq!(fault(&format!("{ENV}{END}")), "empty SOAP Body");
    assert_eq!(
        fault(
            "<SOAP-ENV:Envelope xmlns:SOAP-ENV=\"http://schemas.xmlsoap.org/soap/envelope/\">\
             <SOAP-ENV:Header/></SOAP-ENV:Envelope>"
        ),
        "missing SOAP Body"
    );
    assert_eq!(
        fault(
            "<env:Envelope xmlns:env=\"http://www.w3.org/2003/05/soap-envelope\">\
             <env:Body/></env:Envelope>"
        ),
        "not a SOAP 1.1 Envelope"
    );
    assert_eq!(
        fault("<Envelope><Body><SessionEnd/></Body></Envelope>"),
        "not a SOAP 1.1 Envelope"
    );
    assert_eq!(fault(&op("Reboot", "")), "unknown operation `Reboot`");
    // The right local name in the wrong namespace is not the operation.
    let foreign = format!(
        "{ENV}<SessionEnd xmlns=\"urn:other\"><szSessionId>a</szSessionId></SessionEnd>{END}"
    );
    assert_eq!(fault(&foreign), "unknown operation `SessionEnd`");
    // One operation per message: a second one, or a second Body, is not silently dropped.
    let end = "<aklwngt:SessionEnd><szSessionId>a</szSessionId></aklwngt:SessionEnd>";
    assert_eq!(
        fault(&format!("{ENV}{end}{end}{END}")),
        "more than one operation in the SOAP Body"
    );
    assert_eq!(
        fault(&format!(
            "{ENV}{end}</SOAP-ENV:Body><SOAP-ENV:Body>{end}{END}"
        )),
        "more than one SOAP Body"
    );
    let bad_then_other = format!(
        "{ENV}<aklwngt:SessionEnd><szSessionId>a</szSessionId><szSessionId>b</szSessionId></aklwngt:SessionEnd>{end}{END}"
    );
    assert_eq!(
        fault(&bad_then_other),
        "more than one operation in the SOAP Body"
    );
}

#[test]
fn bad_values_are_invalid_requests() {
    let cases: [(String, CodecError); 8] = [
        (
            op("SessionBegin", "<szDeviceId>d</szDeviceId><szPassword>p</szPassword><nProtocolVersion>99999999999</nProtocolVersion>"),
            CodecError::BadValue { field: "nProtocolVersion".into(), expected: "int".into() },
        ),
        (
            op("SessionBegin", "<szDeviceId>d</szDeviceId><nProtocolVersion>1</nProtocolVersion>"),
            CodecError::MissingField { field: "szPassword".into() },
        ),
        (
            op("SessionEnd", "<szSessionId>a</szSessionId><szSessionId>b</szSessionId>"),
            CodecError::DuplicateField { field: "szSessionId".into() },
        ),
        (
            op("Heartbeat", "<szSessionId>a</szSessionId><oMaySynchronize><hash-pol>!!</hash-pol></oMaySynchronize>"),
            CodecError::BadValue { field: "hash-pol".into(), expected: "base64Binary".into() },
        ),
        (
            op("klft-GetNextFileChunk", "<szSessionId>a</szSessionId><fileName>f</fileName><startFilePos>-1</startFilePos><neededSize>1</neededSize>"),
            CodecError::BadValue { field: "startFilePos".into(), expected: "unsignedLong".into() },
        ),
        (
            op("SessionEnd", "<szSessionId>a<b>c</b></szSessionId>"),
            CodecError::UnexpectedElement { field: "szSessionId".into() },
        ),
        (
            settings(&entry("a", "<data>1</data>")),
            CodecError::MissingType { field: "data".into() },
        ),
        (
            settings(&entry("a", "")),
            CodecError::MissingField { field: "data".into() },
        ),
    ];
    for (doc, expected) in cases {
        assert_eq!(invalid(&doc), expected, "{doc}");
    }
    let wrong_type = op(
        "PutResult",
        "<szSessionId>s</szSessionId><result><code>2</code><data xsi:type=\"xsd:int\">1</data></result>",
    );
    assert!(matches!(
        invalid(&wrong_type),
        CodecError::UnknownType { .. }
    ));
    let untyped = op(
        "PutResult",
        "<szSessionId>s</szSessionId><result><code>2</code><data><hash>AA==</hash></data></result>",
    );
    assert_eq!(
        invalid(&untyped),
        CodecError::MissingType {
            field: "data".into()
        }
    );
    let empty_int = settings(&entry("a", "<data xsi:type=\"xsd:int\"></data>"));
    assert!(matches!(invalid(&empty_int), CodecError::BadValue { .. }));
}

#[test]
fn malformed_xml_after_a_bad_value_is_still_a_fault() {
    let doc = format!(
        "{ENV}<aklwngt:SessionBegin><nProtocolVersion>x</nProtocolVersion><a></b>\
         </aklwngt:SessionBegin>{END}"
    );
    assert!(fault(&doc).starts_with("malformed XML"));
}

#[test]
fn the_context_survives_an_invalid_request() {
    let doc = format!(
        "<SOAP-ENV:Envelope xmlns:SOAP-ENV=\"{SOAP_ENV_NS}\" xmlns:xsi=\"{XSI_1999_NS}\" \
         xmlns:aklwngt=\"{AKLWNGT_NS}\" xmlns:param=\"{PARAM_NS_OLD}\" xmlns:xsd=\"{XSD_1999_NS}\">\
         <SOAP-ENV:Header><messDesc><MessageId>9</MessageId></messDesc></SOAP-ENV:Header>\
         <SOAP-ENV:Body><aklwngt:Heartbeat/></SOAP-ENV:Body></SOAP-ENV:Envelope>"
    );
    match decode(&doc) {
        Ok(Decoded::Invalid { ctx, op, error }) => {
            assert_eq!(ctx.ns, Namespaces::LEGACY);
            assert_eq!(ctx.message_id, Some(9));
            assert_eq!(op, Operation::Heartbeat);
            assert_eq!(
                error,
                CodecError::MissingField {
                    field: "szSessionId".into()
                }
            );
        }
        other => panic!("{other:?}"),
    }
}

/// `depth` nested params containers, each holding the next as entry `n`.
fn nested_params(depth: usize) -> String {
    let mut node = entry("leaf", "<data xsi:type=\"xsd:int\">1</data>");
    for _ in 1..depth {
        node = entry(
            "n",
            &format!("<data xsi:type=\"param:params\"><node>{node}</node></data>"),
        );
    }
    settings(&node)
}

#[test]
fn params_depth_is_bounded() {
    let limits = Limits::default();
    assert!(matches!(
        decode(&nested_params(limits.max_depth)),
        Ok(Decoded::Ok { .. })
    ));
    assert_eq!(
        invalid(&nested_params(limits.max_depth + 1)),
        CodecError::TooDeep { max: 32 }
    );
    let mut arrays = "<data xsi:type=\"xsd:int\">1</data>".to_string();
    for _ in 0..40 {
        arrays = format!("<data xsi:type=\"param:arrayvalue\"><item>{arrays}</item></data>");
    }
    assert_eq!(
        invalid(&settings(&entry("a", &arrays))),
        CodecError::TooDeep { max: 32 }
    );
}

#[test]
fn a_configured_depth_is_capped() {
    let limits = Limits {
        max_depth: 100_000,
        ..Limits::default()
    };
    assert!(matches!(
        decode_request(nested_params(101).as_bytes(), &limits),
        Ok(Decoded::Invalid {
            error: CodecError::TooDeep { max: 100 },
            ..
        })
    ));
}

#[test]
fn deep_element_nesting_is_bounded() {
    for depth in [10_000, 70_000] {
        let deep = format!("{}x{}", "<a>".repeat(depth), "</a>".repeat(depth));
        // Inside a field: an invalid request.
        let doc = op("SessionEnd", &format!("<szSessionId>a</szSessionId>{deep}"));
        assert!(
            matches!(
                decode(&doc),
                Ok(Decoded::Invalid {
                    error: CodecError::TooDeep { .. },
                    ..
                }) | Err(_)
            ),
            "{depth}"
        );
        // Before the operation is known: a fault.
        let doc = format!(
            "<SOAP-ENV:Envelope xmlns:SOAP-ENV=\"{SOAP_ENV_NS}\"><SOAP-ENV:Header>{deep}\
             </SOAP-ENV:Header><SOAP-ENV:Body/></SOAP-ENV:Envelope>"
        );
        assert!(decode(&doc).is_err());
        // Unclosed: a fault.
        let doc = op("SessionEnd", &"<a>".repeat(depth));
        assert!(decode(&doc).is_err());
    }
}

#[test]
fn entry_counts_are_bounded() {
    let limits = Limits {
        max_entries: 100,
        ..Limits::default()
    };
    let node = |n: usize| -> String {
        (0..n)
            .map(|i| entry(&format!("v{i}"), "<data xsi:type=\"xsd:int\">1</data>"))
            .collect()
    };
    assert!(matches!(
        decode_request(settings(&node(100)).as_bytes(), &limits),
        Ok(Decoded::Ok { .. })
    ));
    assert!(matches!(
        decode_request(settings(&node(101)).as_bytes(), &limits),
        Ok(Decoded::Invalid {
            error: CodecError::TooManyEntries { max: 100 },
            ..
        })
    ));
    // Array items count too, and so do string-list items.
    let items = "<item><data xsi:type=\"xsd:int\">1</data></item>".repeat(101);
    let array = settings(&entry(
        "a",
        &format!("<data xsi:type=\"param:arrayvalue\">{items}</data>"),
    ));
    assert!(matches!(
        decode_request(array.as_bytes(), &limits),
        Ok(Decoded::Invalid {
            error: CodecError::TooManyEntries { .. },
            ..
        })
    ));
    let list = op(
        "PutResult",
        &format!(
            "<szSessionId>s</szSessionId><result><code>7</code>\
             <data xsi:type=\"aklwngt:string-array\">{}</data></result>",
            "<item>x</item>".repeat(101)
        ),
    );
    assert!(matches!(
        decode_request(list.as_bytes(), &limits),
        Ok(Decoded::Invalid {
            error: CodecError::TooManyEntries { .. },
            ..
        })
    ));
    // The default limit, with a large message.
    let error = invalid(&settings(&node(20_001)));
    assert!(error.is_limit(), "{error:?}");
}

#[test]
fn event_counts_are_bounded() {
    let limits = Limits {
        max_events: 10,
        ..Limits::default()
    };
    let events = |n: usize| {
        op(
            "PutEvents",
            &format!(
                "<szSessionId>s</szSessionId><oEventsInfoArray>{}</oEventsInfoArray>",
                "<item><eventId>e</eventId><body/></item>".repeat(n)
            ),
        )
    };
    match decode_request(events(10).as_bytes(), &limits) {
        Ok(Decoded::Ok {
            request: Request::PutEvents { events, .. },
            ..
        }) => assert_eq!(events.len(), 10),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        decode_request(events(11).as_bytes(), &limits),
        Ok(Decoded::Invalid {
            error: CodecError::TooManyEvents { max: 10 },
            ..
        })
    ));
}

#[test]
fn text_sizes_are_bounded() {
    let limits = Limits {
        max_string_bytes: 16,
        max_binary_bytes: 8,
        ..Limits::default()
    };
    let long = op(
        "SessionEnd",
        &format!("<szSessionId>{}</szSessionId>", "é".repeat(9)),
    );
    assert!(matches!(
        decode_request(long.as_bytes(), &limits),
        Ok(Decoded::Invalid {
            error: CodecError::TooLarge { max: 16, .. },
            ..
        })
    ));
    // Built from many pieces (entity references) the same limit holds.
    let pieces = op(
        "SessionEnd",
        &format!("<szSessionId>{}</szSessionId>", "&amp;".repeat(17)),
    );
    assert!(matches!(
        decode_request(pieces.as_bytes(), &limits),
        Ok(Decoded::Invalid {
            error: CodecError::TooLarge { .. },
            ..
        })
    ));
    let binary = op(
        "PutResult",
        "<szSessionId>s</szSessionId><result><code>2</code>\
         <data xsi:type=\"aklwngt:CmdHash\"><hash>AAAAAAAAAAAA</hash></data></result>",
    );
    assert!(matches!(
        decode_request(binary.as_bytes(), &limits),
        Ok(Decoded::Invalid {
            error: CodecError::TooLarge { max: 8, .. },
            ..
        })
    ));
}

#[test]
fn odd_events_are_kept_not_refused() {
    let limits = Limits {
        max_string_bytes: 8,
        ..Limits::default()
    };
    let doc = op(
        "PutEvents",
        "<szSessionId>s</szSessionId><oEventsInfoArray><item><eventId>0123456789</eventId>\
         <body><descr>ééééé</descr><severity> 3 </severity><locid>1e3</locid>\
         <rise-time>2008-02-31T00:00:00Z</rise-time><rise-time-ms xsi:nil=\"true\"/>\
         <par9><x/></par9><par0>ignored</par0></body></item></oEventsInfoArray>",
    );
    let Ok(Decoded::Ok {
        request: Request::PutEvents { events, .. },
        ..
    }) = decode_request(doc.as_bytes(), &limits)
    else {
        panic!("events refused");
    };
    let e = &events[0];
    assert_eq!(e.event_id, "01234567");
    assert_eq!(e.body.descr.as_deref(), Some("éééé"));
    assert_eq!(e.body.severity, Some(3));
    assert_eq!(
        (e.body.locid, e.body.rise_time, e.body.rise_time_ms),
        (None, None, None)
    );
    assert_eq!(e.body.par, <[Option<String>; 9]>::default());
    assert_eq!(
        e.body.odd_fields,
        ["eventId", "descr", "locid", "rise-time", "par9"]
    );
}

#[test]
fn nil_and_empty_elements() {
    let doc = op(
        "Heartbeat",
        "<szSessionId>s</szSessionId><oMaySynchronize xsi:nil=\"1\"><hash-pol>!!</hash-pol></oMaySynchronize>",
    );
    assert_eq!(
        request(&doc),
        Request::Heartbeat {
            session_id: "s".into(),
            sync: None
        }
    );
    assert_eq!(
        request(&op("SessionEnd", "<szSessionId/>")),
        Request::SessionEnd {
            session_id: String::new()
        }
    );
    let nil_session = op("SessionEnd", "<szSessionId xsi:nil=\"true\"/>");
    assert_eq!(
        invalid(&nil_session),
        CodecError::MissingField {
            field: "szSessionId".into()
        }
    );
}

#[test]
fn special_floats_round_trip() {
    let params = Params::new()
        .with("nan", Value::Double(f64::NAN))
        .with("inf", Value::Float(f32::INFINITY))
        .with("tiny", Value::Double(5e-324))
        .with("big", Value::Float(f32::MAX));
    let req = Request::PutResult {
        session_id: "s".into(),
        result: Command {
            code: 1,
            data: Some(CmdData::ParAndHash {
                hash: vec![1],
                parameters: params,
            }),
        },
    };
    let bytes = encode_request(&MessageContext::default(), &req);
    let Ok(Decoded::Ok {
        request: Request::PutResult { result, .. },
        ..
    }) = decode_request(&bytes, &Limits::default())
    else {
        panic!("not decoded");
    };
    let Some(CmdData::ParAndHash { parameters: p, .. }) = result.data else {
        panic!("no params");
    };
    assert!(matches!(p.get("nan"), Some(Value::Double(v)) if v.is_nan()));
    assert_eq!(p.get("inf"), Some(&Value::Float(f32::INFINITY)));
    assert_eq!(p.get("tiny"), Some(&Value::Double(5e-324)));
    assert_eq!(p.get("big"), Some(&Value::Float(f32::MAX)));
    let json = serde_json::to_string(&p).unwrap();
    assert!(json.contains(r#""nan":{"double":"NaN"}"#), "{json}");
    let back: Params = serde_json::from_str(&json).unwrap();
    assert_eq!(back.get("inf"), Some(&Value::Float(f32::INFINITY)));
}

#[test]
fn client_side_faults_and_errors() {
    let ctx = MessageContext::default();
    let bytes = encode_fault(&ctx, &Fault::server("overloaded"));
    assert_eq!(
        decode_response(&bytes, &Limits::default()),
        Err(ClientError::Fault {
            fault: Fault::server("overloaded")
        })
    );
    let chunk = format!(
        "{ENV}<aklwngt:klft-GetNextFileChunkResponse><chunk><fileName>f</fileName>\
         <CRC>4294967296</CRC><startPosInFile>0</startPosInFile><fullFileSize>0</fullFileSize>\
         <buff></buff></chunk></aklwngt:klft-GetNextFileChunkResponse>{END}"
    );
    assert!(matches!(
        decode_response(chunk.as_bytes(), &Limits::default()),
        Err(ClientError::Invalid {
            op: Operation::GetNextFileChunk,
            ..
        })
    ));
    assert!(matches!(
        decode_response(b"<x/>", &Limits::default()),
        Err(ClientError::Malformed { .. })
    ));
    // An error reply may leave out the command.
    let reply = format!(
        "{ENV}<aklwngt:HeartbeatResponse><oError><code>1195</code></oError>\
         </aklwngt:HeartbeatResponse>{END}"
    );
    let (_, resp) = decode_response(reply.as_bytes(), &Limits::default()).unwrap();
    assert_eq!(
        resp,
        Response::error_reply(Operation::Heartbeat, ParamError::new(1195, "", ""))
    );
}

#[test]
fn quoted_input_is_bounded() {
    let name = "x".repeat(10_000);
    let reason = fault(&op(&name, ""));
    assert!(reason.len() <= 200);
    let long_name = "é".repeat(5_000);
    let twice = entry(&long_name, "<data xsi:type=\"xsd:int\">1</data>").repeat(2);
    match invalid(&settings(&twice)) {
        CodecError::DuplicateName { name } => assert_eq!(name, "é".repeat(50)),
        other => panic!("{other:?}"),
    }
    let odd_type = settings(&entry(
        "a",
        &format!("<data xsi:type=\"{long_name}\">1</data>"),
    ));
    match invalid(&odd_type) {
        CodecError::UnknownType { xsi_type, .. } => assert_eq!(xsi_type.len(), 100),
        other => panic!("{other:?}"),
    }
    let multibyte = Fault::client("é".repeat(300));
    assert!(multibyte.reason.len() <= 200);
}

#[test]
fn error_replies_have_the_operation_shape() {
    let e = ParamError::new(1186, "KLSRV", "unknown or expired session");
    for op in Operation::ALL {
        let reply = Response::error_reply(op, e.clone());
        assert_eq!(reply.operation(), op);
        assert_eq!(reply.error(), Some(&e));
        let bytes = encode_response(&MessageContext::default(), &reply);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains(&format!("<aklwngt:{}>", op.response_name())));
        assert!(text.contains("<oError><code>1186</code>"));
    }
}

#[test]
fn string_values_are_typed_as_configured_and_read_back_either_way() {
    let mut params = Params::default();
    params.0.insert("Name".into(), Value::String("Ivan".into()));
    let reply = Response::Heartbeat {
        command: Command {
            code: 3,
            data: Some(CmdData::Par(params.clone())),
        },
        error: None,
    };
    for (string_type, written) in [
        (StringType::WString, "xsi:type=\"xsd:wstring\""),
        (StringType::String, "xsi:type=\"xsd:string\""),
    ] {
        let ctx = MessageContext {
            string_type,
            ..MessageContext::default()
        };
        let bytes = encode_response(&ctx, &reply);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains(written), "{text}");
        let (_, decoded) = decode_response(&bytes, &Limits::default()).unwrap();
        assert_eq!(decoded, reply);
    }
}
