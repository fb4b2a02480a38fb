//! Round-trip cost of the SOAP codec on the hot path: decode a request, encode its response.
//!
//! `cargo bench --bench codec`; the throughput figure is round trips per second.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use mobile_admin::soap::{
    decode_request, encode_request, encode_response, Command, Decoded, EventBody, EventInfo,
    Limits, MessageContext, Namespaces, Request, Response, SyncInfo,
};
use time::macros::datetime;

fn round_trip(c: &mut Criterion, name: &str, request: &[u8], reply: &Response) {
    let limits = Limits::default();
    assert!(
        matches!(decode_request(request, &limits), Ok(Decoded::Ok { .. })),
        "{name}: the benchmark request must decode"
    );
    let mut group = c.benchmark_group("round_trip");
    group.throughput(Throughput::Elements(1));
    group.bench_function(name, |b| {
        b.iter(|| {
            let decoded = decode_request(black_box(request), &limits).unwrap();
            encode_response(decoded.ctx(), black_box(reply))
        })
    });
    group.finish();
}

fn events(n: usize) -> Vec<u8> {
    let events = (0..n)
        .map(|i| EventInfo {
            event_id: format!("1204560000-{i}"),
            body: EventBody {
                severity: Some(4),
                product_name: Some("KMS".into()),
                product_version: Some("6.0".into()),
                event_type: Some("GNRL_EV_VIRUS_FOUND".into()),
                event_type_display_name: Some("Virus found".into()),
                descr: Some("Virus EICAR-Test-File found in \\My Documents\\eicar.com".into()),
                locid: Some(3),
                rise_time: Some(datetime!(2008-02-03 10:15:30 UTC)),
                rise_time_ms: Some(250),
                par: [
                    None,
                    Some("\\My Documents\\eicar.com".into()),
                    None,
                    None,
                    Some("EICAR-Test-File".into()),
                    Some("1f3a".into()),
                    Some("Anna".into()),
                    Some("61".into()),
                    None,
                ],
                odd_fields: Vec::new(),
            },
        })
        .collect();
    encode_request(
        &MessageContext::default(),
        &Request::PutEvents {
            session_id: "Qm9vdHN0cmFwU2Vzc2lvbg".into(),
            events,
        },
    )
}

fn bench(c: &mut Criterion) {
    let no_commands = Response::Heartbeat {
        command: Command::bare(0),
        error: None,
    };
    // As devices send it: an older client (1999 namespaces, `messDesc`), no whitespace.
    let heartbeat = encode_request(
        &MessageContext {
            ns: Namespaces::LEGACY,
            message_id: Some(7),
            ..MessageContext::default()
        },
        &Request::Heartbeat {
            session_id: "Qm9vdHN0cmFwU2Vzc2lvbg".into(),
            sync: Some(SyncInfo {
                hash_stgs: (0..16).collect(),
                hash_pol: (16..32).collect(),
                hash_sbsc: (32..48).collect(),
                hash_info: (48..64).collect(),
                hash_state: (64..80).collect(),
            }),
        },
    );
    round_trip(c, "heartbeat_sync", &heartbeat, &no_commands);
    // The appendix of the specification: the same with whitespace and redundant `xsi:type`s.
    round_trip(
        c,
        "heartbeat_sync_appendix",
        include_bytes!("../tests/fixtures/soap/heartbeat_appendix.request.xml"),
        &no_commands,
    );
    round_trip(
        c,
        "put_result_app_info",
        include_bytes!("../tests/fixtures/soap/put_result_app_info.request.xml"),
        &Response::PutResult {
            next_command: Command::bare(6),
            error: None,
        },
    );
    round_trip(
        c,
        "put_events_10",
        &events(10),
        &Response::PutEvents { error: None },
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
