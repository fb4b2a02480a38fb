//! Property tests of the SOAP codec: everything encodes and decodes back to itself, and no
//! input, arbitrary or a damaged valid document, makes the decoders panic.

use std::collections::BTreeMap;
use std::path::Path;

use mobile_admin::soap::{
    decode_request, decode_response, encode_request, encode_response, AppInfo, AppState, CmdData,
    Command, Decoded, DevInfo, EventBody, EventInfo, FileChunk, FileInfo, LicKeyInfo, LicenseInfo,
    Limits, LocData, MessageContext, Namespaces, ParamError, ParamNs, Params, ProdInfo, Request,
    Response, SchemaNs, Subscriptions, SyncInfo, Value,
};
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use time::{Date, OffsetDateTime};

/// Any text XML can carry: NUL, U+FFFE and U+FFFF cannot appear in a document at all.
fn text() -> impl Strategy<Value = String> {
    any::<String>().prop_map(|s| {
        s.chars()
            .map(|c| match c {
                '\0' | '\u{FFFE}' | '\u{FFFF}' => '?',
                c => c,
            })
            .collect()
    })
}

/// Mostly short ASCII, sometimes anything: reads better in failures and still covers escaping.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![3 => "[a-zA-Z0-9 _<>&\"'\r\n\t-]{0,12}", 1 => text()]
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..24)
}

/// Whole seconds (the wire form) between years 1 and 9999.
fn datetime() -> impl Strategy<Value = OffsetDateTime> {
    (-62_135_596_800i64..=253_402_300_799)
        .prop_map(|t| OffsetDateTime::from_unix_timestamp(t).unwrap())
}

fn date() -> impl Strategy<Value = Date> {
    (1_721_426i32..=5_373_484).prop_map(|jd| Date::from_julian_day(jd).unwrap())
}

fn value() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        name().prop_map(Value::String),
        any::<i32>().prop_map(Value::Int),
        any::<i64>().prop_map(Value::Long),
        date().prop_map(Value::Date),
        any::<f32>()
            .prop_filter("NaN is not equal to itself", |v| !v.is_nan())
            .prop_map(Value::Float),
        any::<f64>()
            .prop_filter("NaN is not equal to itself", |v| !v.is_nan())
            .prop_map(Value::Double),
        datetime().prop_map(Value::DateTime),
        bytes().prop_map(Value::Binary),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            btree_map(name(), inner.clone(), 0..6).prop_map(|m| Value::Params(Params(m))),
            vec(inner, 0..6).prop_map(Value::Array),
        ]
    })
    .boxed()
}

fn params() -> BoxedStrategy<Params> {
    btree_map(name(), value(), 0..8).prop_map(Params).boxed()
}

fn param_error() -> BoxedStrategy<ParamError> {
    let locdata = (any::<i32>(), name(), name(), vec(name(), 0..3)).prop_map(
        |(format_id, format, locmodule, args)| LocData {
            format_id,
            format,
            locmodule,
            args,
        },
    );
    (
        any::<i32>(),
        name(),
        name(),
        any::<i32>(),
        name(),
        option::of(locdata),
    )
        .prop_map(|(code, module, file, line, message, locdata)| ParamError {
            code,
            module,
            file,
            line,
            message,
            locdata,
        })
        .boxed()
}

fn lic_key() -> BoxedStrategy<LicKeyInfo> {
    (
        (
            any::<i32>(),
            any::<i32>(),
            any::<i32>(),
            datetime(),
            datetime(),
        ),
        (
            any::<i32>(),
            option::of(any::<i32>()),
            name(),
            name(),
            name(),
        ),
    )
        .prop_map(
            |((t, suite, app, inst, exp), (period, count, serial, maj, prod))| LicKeyInfo {
                key_type: t,
                key_prod_suite_id: suite,
                key_app_id: app,
                key_install_date: inst,
                key_expiration_date: exp,
                key_lic_period: period,
                key_lic_count: count,
                key_serial: serial,
                key_maj_ver: maj,
                key_prod_name: prod,
            },
        )
        .boxed()
}

fn app_info() -> BoxedStrategy<AppInfo> {
    let prod =
        (name(), name(), datetime(), name(), name()).prop_map(|(n, v, t, dn, pv)| ProdInfo {
            product_name: n,
            product_version: v,
            install_time: t,
            display_name: dn,
            prod_version: pv,
        });
    let license = (option::of(lic_key()), option::of(lic_key())).prop_map(|(c, n)| LicenseInfo {
        key_current: c,
        key_next: n,
    });
    let dev = (
        (name(), name(), any::<i32>(), any::<i32>(), any::<i32>()),
        (
            option::of(name()),
            option::of(name()),
            option::of(name()),
            option::of(any::<u64>()),
            option::of(name()),
            option::of(name()),
            option::of(name()),
        ),
    )
        .prop_map(
            |((n, g, t, ma, mi), (manu, os, ver, mem, cpu, sys, ty))| DevInfo {
                presumed_name: n,
                presumed_group: g,
                os_type: t,
                os_ver_major: ma,
                os_ver_minor: mi,
                os_manufacturer: manu,
                os_name: os,
                os_ver: ver,
                memory: mem,
                processor_family: cpu,
                system_name: sys,
                system_type: ty,
            },
        );
    (bytes(), prod, license, dev)
        .prop_map(|(hash, prod_info, license_info, dev_info)| AppInfo {
            hash,
            prod_info,
            license_info,
            dev_info,
        })
        .boxed()
}

fn cmd_data() -> BoxedStrategy<CmdData> {
    let subs = (
        option::of(bytes()),
        vec(name(), 0..3),
        vec(name(), 0..3),
        vec(name(), 0..3),
        vec(name(), 0..3),
    )
        .prop_map(|(hash, i, w, e, c)| Subscriptions {
            hash,
            types_info: i,
            types_warning: w,
            types_error: e,
            types_critical: c,
        });
    let state = (
        bytes(),
        any::<i32>(),
        any::<i32>(),
        [
            option::of(datetime()),
            option::of(datetime()),
            option::of(datetime()),
            option::of(datetime()),
        ],
        any::<i32>(),
    )
        .prop_map(
            |(hash, app, rtp, [scan, upd, bases, inst], records)| AppState {
                hash,
                state_app: app,
                state_rtp: rtp,
                last_full_scan: scan,
                last_update_time: upd,
                bases_date: bases,
                bases_install_date: inst,
                bases_records: records,
            },
        );
    prop_oneof![
        param_error().prop_map(CmdData::Error),
        bytes().prop_map(CmdData::Hash),
        params().prop_map(CmdData::Par),
        (bytes(), params()).prop_map(|(hash, parameters)| CmdData::ParAndHash { hash, parameters }),
        subs.prop_map(CmdData::Subscriptions),
        app_info().prop_map(|a| CmdData::AppInfo(Box::new(a))),
        state.prop_map(CmdData::AppState),
        vec(name(), 0..4).prop_map(CmdData::StringArray),
    ]
    .boxed()
}

fn command() -> BoxedStrategy<Command> {
    (any::<i32>(), option::of(cmd_data()))
        .prop_map(|(code, data)| Command { code, data })
        .boxed()
}

fn event() -> BoxedStrategy<EventInfo> {
    let strings = [
        option::of(name()),
        option::of(name()),
        option::of(name()),
        option::of(name()),
        option::of(name()),
    ];
    let pars = [
        option::of(name()),
        option::of(name()),
        option::of(name()),
        option::of(name()),
        option::of(name()),
        option::of(name()),
        option::of(name()),
        option::of(name()),
        option::of(name()),
    ];
    (
        name(),
        option::of(any::<i32>()),
        strings,
        option::of(any::<i32>()),
        option::of(datetime()),
        option::of(any::<i32>()),
        pars,
    )
        .prop_map(
            |(id, severity, [pn, pv, et, etd, descr], locid, rise, ms, par)| EventInfo {
                event_id: id,
                body: EventBody {
                    severity,
                    product_name: pn,
                    product_version: pv,
                    event_type: et,
                    event_type_display_name: etd,
                    descr,
                    locid,
                    rise_time: rise,
                    rise_time_ms: ms,
                    par,
                    odd_fields: Vec::new(),
                },
            },
        )
        .boxed()
}

fn request() -> BoxedStrategy<Request> {
    let sync =
        [bytes(), bytes(), bytes(), bytes(), bytes()].prop_map(|[s, p, b, i, st]| SyncInfo {
            hash_stgs: s,
            hash_pol: p,
            hash_sbsc: b,
            hash_info: i,
            hash_state: st,
        });
    prop_oneof![
        (name(), name(), any::<i32>()).prop_map(|(d, p, v)| Request::SessionBegin {
            device_id: d,
            password: p,
            protocol_version: v
        }),
        (name(), option::of(sync)).prop_map(|(s, sync)| Request::Heartbeat {
            session_id: s,
            sync
        }),
        (name(), command()).prop_map(|(s, result)| Request::PutResult {
            session_id: s,
            result
        }),
        (name(), vec(event(), 0..4)).prop_map(|(s, events)| Request::PutEvents {
            session_id: s,
            events
        }),
        (name(), name()).prop_map(|(s, f)| Request::GetFileInfo {
            session_id: s,
            file_name: f
        }),
        (name(), name(), any::<u64>(), any::<u64>()).prop_map(|(s, f, p, n)| {
            Request::GetNextFileChunk {
                session_id: s,
                file_name: f,
                start_pos: p,
                needed_size: n,
            }
        }),
        name().prop_map(|s| Request::SessionEnd { session_id: s }),
    ]
    .boxed()
}

fn response() -> BoxedStrategy<Response> {
    let err = || option::of(param_error());
    let info = (
        name(),
        any::<bool>(),
        any::<bool>(),
        datetime(),
        any::<u64>(),
    )
        .prop_map(|(f, d, r, t, s)| FileInfo {
            file_name: f,
            is_dir: d,
            read_permission: r,
            create_time: t,
            full_file_size: s,
        });
    let chunk = (name(), any::<u32>(), any::<u64>(), any::<u64>(), bytes()).prop_map(
        |(f, crc, p, s, buff)| FileChunk {
            file_name: f,
            crc,
            start_pos_in_file: p,
            full_file_size: s,
            buff,
        },
    );
    prop_oneof![
        (name(), any::<i32>(), err()).prop_map(|(s, v, error)| Response::SessionBegin {
            session_id: s,
            protocol_version: v,
            error
        }),
        (command(), err()).prop_map(|(command, error)| Response::Heartbeat { command, error }),
        (command(), err()).prop_map(|(next_command, error)| Response::PutResult {
            next_command,
            error
        }),
        err().prop_map(|error| Response::PutEvents { error }),
        (option::of(info), err()).prop_map(|(info, error)| Response::GetFileInfo { info, error }),
        (option::of(chunk), err())
            .prop_map(|(chunk, error)| Response::GetNextFileChunk { chunk, error }),
        err().prop_map(|error| Response::SessionEnd { error }),
    ]
    .boxed()
}

fn context() -> BoxedStrategy<MessageContext> {
    let schema = prop_oneof![Just(SchemaNs::Y2001), Just(SchemaNs::Y1999)];
    let param = prop_oneof![Just(ParamNs::TempuriOrg), Just(ParamNs::Tempuri)];
    (schema.clone(), schema, param, option::of(any::<i32>()))
        .prop_map(|(xsd, xsi, param, message_id)| MessageContext {
            ns: Namespaces { xsd, xsi, param },
            message_id,
            ..MessageContext::default()
        })
        .boxed()
}

/// The body of the `decode_request` fuzz target (`fuzz/fuzz_targets/decode_request.rs`):
/// never panics, and whatever decodes re-encodes to something that decodes.
fn fuzz_decode_request(data: &[u8]) {
    let limits = Limits::default();
    if let Ok(Decoded::Ok { ctx, request }) = decode_request(data, &limits) {
        let again = decode_request(&encode_request(&ctx, &request), &limits);
        assert!(matches!(again, Ok(Decoded::Ok { .. })), "{again:?}");
    }
    let _ = decode_response(data, &limits);
}

/// Byte-level damage: flip, insert, delete, or cut at a position.
fn damage(mut doc: Vec<u8>, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    for &(at, kind, byte) in edits {
        if doc.is_empty() {
            break;
        }
        let at = at % doc.len();
        match kind % 5 {
            0 => doc[at] ^= byte | 1,
            1 => doc.insert(at, byte),
            2 => {
                doc.remove(at);
            }
            3 => doc.truncate(at),
            _ => {
                // Duplicate a slice, which repeats and nests elements.
                let end = (at + usize::from(byte)).min(doc.len());
                let copy = doc[at..end].to_vec();
                doc.splice(at..at, copy);
            }
        }
    }
    doc
}

fn fixture_documents() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/soap");
    let mut docs: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    docs.sort();
    docs
}

proptest! {
    #![proptest_config(ProptestConfig {
        // Integration tests have no source file proptest can key a regression file on.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn params_round_trip(ctx in context(), hash in bytes(), parameters in params()) {
        let request = Request::PutResult {
            session_id: "s".into(),
            result: Command { code: 1, data: Some(CmdData::ParAndHash { hash, parameters }) },
        };
        let decoded = decode_request(&encode_request(&ctx, &request), &Limits::default());
        prop_assert_eq!(decoded, Ok(Decoded::Ok { ctx, request }));
    }

    #[test]
    fn params_json_round_trip(parameters in params()) {
        let json = serde_json::to_string(&parameters).unwrap();
        let back: Params = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(back, parameters);
    }

    #[test]
    fn requests_round_trip(ctx in context(), request in request()) {
        let decoded = decode_request(&encode_request(&ctx, &request), &Limits::default());
        prop_assert_eq!(decoded, Ok(Decoded::Ok { ctx, request }));
    }

    #[test]
    fn responses_round_trip(ctx in context(), response in response()) {
        let decoded = decode_response(&encode_response(&ctx, &response), &Limits::default());
        prop_assert_eq!(decoded, Ok((ctx, response)));
    }

    #[test]
    fn arbitrary_bytes_do_not_panic(data in vec(any::<u8>(), 0..512)) {
        fuzz_decode_request(&data);
    }

    #[test]
    fn arbitrary_text_does_not_panic(data in "[<>/=\"'a-z:&#;!?\\[\\] -]{0,300}") {
        fuzz_decode_request(data.as_bytes());
    }

    #[test]
    fn damaged_requests_do_not_panic(
        ctx in context(),
        request in request(),
        edits in vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6),
    ) {
        fuzz_decode_request(&damage(encode_request(&ctx, &request), &edits));
    }

    #[test]
    fn damaged_responses_do_not_panic(
        ctx in context(),
        response in response(),
        edits in vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6),
    ) {
        let doc = damage(encode_response(&ctx, &response), &edits);
        let _ = decode_response(&doc, &Limits::default());
    }

    #[test]
    fn damaged_fixtures_do_not_panic(
        pick in any::<prop::sample::Index>(),
        edits in vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6),
    ) {
        let docs = fixture_documents();
        fuzz_decode_request(&damage(pick.get(&docs).clone(), &edits));
    }
}

/// A map with every value type, for a fixed check of the JSON shape the admin API will use.
#[test]
fn params_json_shape() {
    let mut inner = BTreeMap::new();
    inner.insert("n".to_owned(), Value::Int(5));
    let p = Params::new()
        .with("b", Value::Binary(vec![1, 2]))
        .with(
            "a",
            Value::Array(vec![Value::Bool(true), Value::Params(Params(inner))]),
        )
        .with("d", Value::Date(Date::from_julian_day(2_454_167).unwrap()))
        .with(
            "t",
            Value::DateTime(OffsetDateTime::from_unix_timestamp(1_173_278_350).unwrap()),
        )
        .with("s", Value::String("x".into()))
        .with("l", Value::Long(-1))
        .with("f", Value::Float(0.5));
    assert_eq!(
        serde_json::to_string(&p).unwrap(),
        r#"{"a":{"array":[{"bool":true},{"params":{"n":{"int":5}}}]},"b":{"binary":"AQI="},"d":{"date":"2007-03-07"},"f":{"float":0.5},"l":{"long":-1},"s":{"string":"x"},"t":{"datetime":"2007-03-07T14:39:10Z"}}"#
    );
}
