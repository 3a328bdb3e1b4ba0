//! Issue 14, part 3: the malformed-input matrix, end to end against `moqring relay`.
//!
//! After a valid handshake (and lite-05 SETUP), every message the relay reads on lite-03,
//! -04 and -05 is sent truncated, overrun, with trailing bytes and oversized, beside unknown
//! stream and message types, messages out of order and duplicate ids (tables in
//! `malformed/cases.rs`, run several at a time against one relay); then the slow cases (a
//! gigabyte length trickled, thousands of streams each holding half a message, peers that
//! never read), each on a relay of its own so its resident memory, read from /proc, is its
//! own; then the HTTP/3 layer under WebTransport. Each case must get the documented code on
//! its own stream or connection and nothing else, while ten honest `moqring sub` receive a
//! `moqring pub` track on the same relay byte for byte. It must not judge timing.

#[path = "malformed/cases.rs"]
mod cases;
mod common;
#[path = "malformed/h3.rs"]
mod h3;
#[path = "malformed/honest.rs"]
mod honest;
#[path = "malformed/peer.rs"]
mod peer;
#[path = "malformed/run.rs"]
mod run;
#[path = "malformed/slow.rs"]
mod slow;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use moqring::wire::Version;

use common::{say, Relay};
use honest::Honest;
use peer::{Outcome, Peer};

const MIB: i64 = 1 << 20;

/// What a whole table may grow the relay's RSS by (its peers are short-lived; the honest
/// track's cache is 4 MiB).
const MATRIX_GROWTH: i64 = 48 * MIB;

/// Runs every case of `cases` against a relay started with `flags` while the honest track
/// flows, then checks each outcome against the table.
async fn matrix(label: &str, flags: &[&str], cases: Vec<cases::Case>) -> Result<()> {
    let mut relay = Relay::start_with(flags).await?;
    let honest = Honest::start(&relay, label).await?;
    let addr = relay.addr;
    let pid = relay.process().id().context("relay pid")?;
    let before = honest::rss(pid) as i64;
    let rows = tokio::task::spawn_blocking(move || run::run_all(addr, &cases)).await?;
    let growth = honest::rss(pid) as i64 - before;
    honest::assert_alive(&mut relay)?;
    let bytes = honest.finish().await?;
    say(&format!(
        "{label}: {} cases, relay RSS grew {growth} bytes; ten honest subscribers each \
         received {bytes} bytes intact",
        rows.len()
    ));
    run::assert_rows(&rows);
    assert!(
        growth < MATRIX_GROWTH,
        "{label}: the relay's RSS grew {growth} bytes"
    );
    honest::assert_alive(&mut relay)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_stream_types_setup_order_and_ids() -> Result<()> {
    matrix("requests", &[], cases::requester_cases()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_answers_groups_and_frames() -> Result<()> {
    let max = cases::MAX_FRAME.to_string();
    let flags = ["--max-frame-size", max.as_str()];
    matrix("publisher", &flags, cases::publisher_cases()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http3_and_webtransport() -> Result<()> {
    matrix("webtransport", &[], cases::webtransport_cases()).await
}

/// Runs the blocking `case` against a fresh relay started with `flags` (so the relay's RSS
/// is the case's alone) while the honest track flows to its ten subscribers.
async fn alone<T: Send + 'static>(
    label: &str,
    flags: &[&str],
    case: impl FnOnce(SocketAddr, u32) -> T + Send + 'static,
) -> Result<T> {
    let mut relay = Relay::start_with(flags).await?;
    let honest = Honest::start(&relay, label).await?;
    let addr = relay.addr;
    let pid = relay.process().id().context("relay pid")?;
    let out = tokio::task::spawn_blocking(move || case(addr, pid)).await?;
    honest::assert_alive(&mut relay)?;
    let bytes = honest.finish().await?;
    say(&format!(
        "{label}: ten honest subscribers each received {bytes} bytes intact"
    ));
    honest::assert_alive(&mut relay)?;
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gigabyte_lengths_trickled_are_refused_before_their_body() -> Result<()> {
    let giga = alone("gigabytes", &[], slow::gigabytes).await?;
    let refusals = [
        Outcome::Closed(cases::BOUNDS_EXCEEDED),
        Outcome::Closed(cases::BOUNDS_EXCEEDED),
        Outcome::Closed(cases::BOUNDS_EXCEEDED),
        Outcome::Reset(cases::FRAME_TOO_LARGE),
        Outcome::Closed(cases::H3_EXCESSIVE_LOAD),
    ];
    assert_eq!(giga.len(), refusals.len());
    for ((name, m), expect) in giga.iter().zip(refusals) {
        say(&format!("gigabyte {name}: {m:?}"));
        assert_eq!(m.outcome, expect, "{name}");
        assert!(
            m.sent <= 1,
            "{name}: refused after {} trickled bytes",
            m.sent
        );
        assert!(m.growth < 2 * MIB, "{name}: RSS grew {} bytes", m.growth);
    }
    assert!(
        giga[3].1.serves,
        "the publisher and its subscriber serve on"
    );
    Ok(())
}

/// Streams of one lite-04 session each holding a SUBSCRIBE of 64 KiB but its last KiB.
const HALF_SUBSCRIBES: usize = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_subscribes_cost_one_message_each() -> Result<()> {
    let m = alone("half subscribes", &[], |addr, pid| {
        slow::half_subscribes(addr, pid, HALF_SUBSCRIBES, 63 << 10)
    })
    .await?;
    say(&format!(
        "{HALF_SUBSCRIBES} SUBSCRIBEs held 1 KiB short: {m:?}"
    ));
    assert_eq!((m.outcome, m.serves), (Outcome::Quiet, true));
    // One message's buffer (64 KiB) a stream, with quiche's stream state and the
    // allocator's slack; a buffer doubled past the message (128 KiB) breaks it.
    let bound = HALF_SUBSCRIBES as i64 * 100 * 1024 + 4 * MIB;
    assert!(m.growth < bound, "RSS grew {} (bound {bound})", m.growth);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_half_group_headers() -> Result<()> {
    let m = alone("half group headers", &[], |addr, pid| {
        slow::half_group_headers(addr, pid, 10_000)
    })
    .await?;
    say(&format!("10000 half group headers: {m:?}"));
    assert_eq!((m.outcome, m.serves), (Outcome::Quiet, true));
    // About 4 KiB a stream: quiche's stream state and our 1 KiB read buffer.
    assert!(m.growth < 64 * MIB, "RSS grew {}", m.growth);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_before_setup_are_held_by_flow_control() -> Result<()> {
    // 999 requests before a lite-05 SETUP that never comes: the relay reads none, so QUIC
    // flow control holds them to the connection's 32 MiB window.
    let m = alone("before setup", &[], |addr, pid| {
        slow::before_setup(addr, pid, 999, 40 << 10)
    })
    .await?;
    say(&format!("999 requests before SETUP: {m:?}"));
    assert_eq!(m.outcome, Outcome::Quiet);
    assert!(m.sent as i64 <= 32 * MIB, "the relay took {} bytes", m.sent);
    assert!(m.growth < 48 * MIB, "RSS grew {}", m.growth);
    Ok(())
}

/// `--max-queued-bytes` of the relay of the never-reading peers: a third of what the
/// honest track sends them in [`NEVER_READ`], and over a second of it for the honest
/// subscribers (who must lose nothing).
const MAX_QUEUED: u64 = 1 << 20;

/// What the ten honest subscribers may have queued together at a scrape, at most.
const HONEST_QUEUED: u64 = 1 << 20;

/// How long the peers that never read stay subscribed to the honest track.
const NEVER_READ: Duration = Duration::from_secs(8);

/// Two subscribers of the honest track that never read: one acknowledges packets but
/// never reads a stream (lite-05), one goes silent altogether (lite-04). Each costs the
/// relay at most `--max-queued-bytes`: their oldest groups are reset (`Lagged`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_that_never_read_cost_max_queued_bytes() -> Result<()> {
    let queued = MAX_QUEUED.to_string();
    let mut relay = Relay::start_with(&["--max-queued-bytes", &queued]).await?;
    let honest = Honest::start(&relay, "never read").await?;
    let addr = relay.addr;
    let pid = relay.process().id().context("relay pid")?;
    let lagged = "moqring_groups_reset_total{reason=\"lagged\"}";
    let lagged_before = metric(addr, lagged).await?;
    let before = honest::rss(pid) as i64;
    let peers = tokio::task::spawn_blocking(move || {
        let mut silent = Peer::connect(addr, Version::Lite04);
        silent.subscribe(0, cases::HONEST, "t");
        silent.pump();
        let mut deaf = Peer::connect(addr, Version::Lite05);
        deaf.subscribe(0, cases::HONEST, "t");
        deaf.idle_for(NEVER_READ);
        (silent, deaf)
    });
    let mut most = 0;
    while !peers.is_finished() {
        most = most.max(metric(addr, "moqring_queued_bytes").await?);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let growth = honest::rss(pid) as i64 - before;
    let lagged = metric(addr, lagged).await? - lagged_before;
    drop(peers.await?);
    say(&format!(
        "never-reading peers: queued at most {most} bytes, {lagged} groups reset (Lagged), \
         RSS grew {growth} bytes"
    ));
    assert!(lagged > 0, "the relay reset none of their groups");
    // Unbounded, the two would hold everything sent them, over 3 MB each.
    assert!(
        most <= 2 * MAX_QUEUED + HONEST_QUEUED,
        "queued {most} bytes"
    );
    assert!(growth < 16 * MIB, "RSS grew {growth}");
    honest::assert_alive(&mut relay)?;
    let bytes = honest.finish().await?;
    say(&format!(
        "never read: ten honest subscribers each received {bytes} bytes intact"
    ));
    honest::assert_alive(&mut relay)
}

/// The value of the metric line `name` (with its labels) of the relay's /metrics.
async fn metric(addr: SocketAddr, name: &str) -> Result<u64> {
    let reply = common::http_get(addr, "/metrics").await?;
    let line = reply
        .body
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '));
    line.with_context(|| format!("{name} in /metrics"))?
        .trim()
        .parse()
        .with_context(|| format!("{name} value"))
}
