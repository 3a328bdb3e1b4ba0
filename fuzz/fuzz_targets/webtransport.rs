//! Fuzz target: every HTTP/3 + WebTransport decoder on arbitrary bytes (see
//! `moqring_fuzz::webtransport`).
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: moqring_fuzz::init("webtransport"),
    |data: &[u8]| moqring_fuzz::webtransport::run(data)
);
