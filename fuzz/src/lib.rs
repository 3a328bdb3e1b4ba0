//! Fuzz harnesses for moqring, shared by the `cargo fuzz` targets in `fuzz_targets/` and
//! the seed generator: the input formats, the drivers of each target and the bound on the
//! memory a target may hold. Nothing here runs in the relay.

pub mod h3_seeds;
pub mod input;
pub mod link;
pub mod seeds;
pub mod session;
pub mod session_ops;
pub mod webtransport;
pub mod wire;

use std::alloc::System;

use cap::Cap;

/// Counts the bytes every Rust allocation of the process holds (no limit is set: the
/// bound is checked by [`check_held`], which says what went wrong).
#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

/// Bytes the process's Rust allocations hold now.
pub fn held() -> usize {
    ALLOCATOR.allocated()
}

/// What every target does once at start-up, before libFuzzer reads its corpus folders.
///
/// quiche's `Config::new` loads the system's CA bundle (about 10 ms, most of a `link`
/// run); no target verifies a peer, so the bundle is pointed at an empty file. Then the
/// seeds of `target` are written if asked (see [`write_seeds_if_asked`]).
pub fn init(target: &str) {
    // Still one thread: libFuzzer starts its own after this.
    std::env::set_var("SSL_CERT_FILE", "/dev/null");
    write_seeds_if_asked(target);
}

/// Writes the seeds of `target` into the folder named by `MOQRING_FUZZ_SEEDS`, if set, so
/// the seeds come from the build being fuzzed.
pub fn write_seeds_if_asked(target: &str) {
    let Some(dir) = std::env::var_os("MOQRING_FUZZ_SEEDS") else {
        return;
    };
    match seeds::write(target, std::path::Path::new(&dir)) {
        Ok(n) => eprintln!("{n} {target} seeds written to {}", dir.to_string_lossy()),
        Err(e) => panic!("writing {target} seeds: {e}"),
    }
}

/// Bytes a target may hold per byte its input fed in (buffers grow by doubling, quiche
/// holds both its copy and ours).
const HELD_PER_FED: usize = 8;
/// Bytes a target may hold per op on top (a stream's state on both sides and its buffer).
const HELD_PER_OP: usize = 32 << 10;
/// Bytes a target may hold regardless.
const HELD_SLACK: usize = 4 << 20;

/// Panics if a target holds more than its input can account for: `held` bytes now against
/// `baseline` before the first op, after `ops` ops that fed `fed` bytes.
pub fn check_held(held: usize, baseline: usize, fed: usize, ops: usize) {
    let grown = held.saturating_sub(baseline);
    let bound = HELD_PER_FED * fed + HELD_PER_OP * ops + HELD_SLACK;
    assert!(
        grown <= bound,
        "holds {grown} bytes after {ops} ops that fed {fed} bytes (bound {bound})"
    );
}
