//! Fuzz target: every moq-lite decoder on arbitrary bytes (see `moqring_fuzz::wire`).
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: moqring_fuzz::init("wire"),
    |data: &[u8]| moqring_fuzz::wire::run(data)
);
