//! Fuzz target: request bytes from the network into the SOAP decoder.
//!
//! The same body runs as a property test (`fuzz_decode_request` in `tests/soap_props.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use mobile_admin::soap::{decode_request, decode_response, encode_request, Decoded, Limits};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    // Never panics; and whatever decodes must re-encode to something that decodes.
    if let Ok(Decoded::Ok { ctx, request }) = decode_request(data, &limits) {
        let again = decode_request(&encode_request(&ctx, &request), &limits);
        assert!(matches!(again, Ok(Decoded::Ok { .. })), "{again:?}");
    }
    let _ = decode_response(data, &limits);
});
