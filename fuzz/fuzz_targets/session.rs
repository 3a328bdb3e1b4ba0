//! Fuzz target: a server session driven by an arbitrary raw QUIC client (see
//! `moqring_fuzz::session`).
#![no_main]

use moqring_fuzz::session::{run, Transport};

libfuzzer_sys::fuzz_target!(
    init: moqring_fuzz::init("session"),
    |data: &[u8]| run(data, Transport::Quic, moqring_fuzz::held)
);
