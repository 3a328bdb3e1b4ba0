//! Fuzz target: a server session driven by an arbitrary HTTP/3 (WebTransport) client (see
//! `moqring_fuzz::session`).
#![no_main]

use moqring_fuzz::session::{run, Transport};

libfuzzer_sys::fuzz_target!(
    init: moqring_fuzz::init("session_h3"),
    |data: &[u8]| run(data, Transport::WebTransport, moqring_fuzz::held)
);
