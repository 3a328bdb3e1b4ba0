//! Fuzz target: a shard fed arbitrary mail from the others (see `moqring_fuzz::link`).
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: moqring_fuzz::init("link"),
    |data: &[u8]| moqring_fuzz::link::run(data, moqring_fuzz::held)
);
