//! Fuzz target: a server session driven by an arbitrary client (see `moqring_fuzz::session`).
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: moqring_fuzz::init("session"),
    |data: &[u8]| moqring_fuzz::session::run(data, moqring_fuzz::held)
);
