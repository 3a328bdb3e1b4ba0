//! End-to-end: `moqring sub` never reports success for data it did not deliver. A
//! publisher faster than its subscriber loses groups at the relay; the relay says so at
//! warn level and the subscriber exits non-zero naming the lost groups and the bytes it
//! wrote. Paced with `moqring pub --rate-mbit`, the same kind of transfer arrives whole.
//!
//! quiche takes a stream's data only as far as the congestion window has room (its
//! `tx_cap`), so a stalled subscriber's data piles up in the relay's queue
//! (`--max-queued-bytes`, 1 MiB here) almost at once; the tracks here are many times that.

mod common;

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::ChildStdout;

use common::{
    assert_bytes_eq, moqring_client, moqring_command, within, ChildProc, Relay, Rng, TIMEOUT,
};

/// The relay's bound on bytes queued per subscriber session in these tests.
const QUEUE: &str = "1048576";
/// Frames of 64 KiB, 16 to a group: groups of 1 MiB.
const FRAME: usize = 64 << 10;
const GROUP_FRAMES: usize = 16;
const GROUP: usize = FRAME * GROUP_FRAMES;

/// A relay with a small per-subscriber queue, and a subscriber and a publisher of
/// `broadcast` on it (pub flags `extra`), the publisher subscribed to; returns the
/// subscriber's stdout, not read yet, and the publisher's stdin.
async fn transfer(
    broadcast: &str,
    pub_extra: &[&str],
    sub_extra: &[&str],
) -> Result<(
    Relay,
    ChildProc,
    ChildStdout,
    ChildProc,
    tokio::process::ChildStdin,
)> {
    let relay = Relay::start_with_env(
        &["--max-queued-bytes", QUEUE],
        &[("RUST_LOG", "moqring=info")],
    )
    .await?;
    let url = relay.url("anon");
    let mut sub = moqring_client("sub", &url, broadcast, sub_extra)?;
    sub.close_stdin();
    let out = sub.take_stdout().context("sub stdout")?;
    let (frame, group) = (FRAME.to_string(), GROUP_FRAMES.to_string());
    let mut args = vec!["--frame-size", &frame, "--group-frames", &group];
    args.extend_from_slice(pub_extra);
    let mut publisher = moqring_client("pub", &url, broadcast, &args)?;
    publisher.log_stdout();
    let stdin = publisher.take_stdin().context("pub stdin")?;
    publisher.wait_log("subscribed stream=", 1).await?;
    Ok((relay, sub, out, publisher, stdin))
}

/// Writes `data` to the publisher's stdin in the background, then closes it.
fn feed(mut stdin: tokio::process::ChildStdin, data: Vec<u8>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let _ = stdin.write_all(&data).await;
        let _ = stdin.shutdown().await;
    })
}

/// Reads a subscriber's stdout to its end, at most `rate` bytes a second when given.
async fn read_all(mut out: ChildStdout, rate: Option<f64>) -> Result<Vec<u8>> {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = out.read(&mut buf).await.context("reading sub stdout")?;
        if n == 0 {
            return Ok(got);
        }
        got.extend_from_slice(&buf[..n]);
        if let Some(rate) = rate {
            let due = Duration::from_secs_f64(got.len() as f64 / rate);
            tokio::time::sleep(due.saturating_sub(started.elapsed())).await;
        }
    }
}

/// The number in `... wrote N bytes ...` of a sub's error line.
fn bytes_written(line: &str) -> Option<usize> {
    let (_, rest) = line.split_once("wrote ")?;
    rest.split_once(" bytes")?.0.parse().ok()
}

/// The subscriber is stalled (its stdout not read) while a publisher sends many times
/// what the relay's queue holds; then it drains.
async fn stalled_subscriber_loses_groups(sub_extra: &[&str]) -> Result<()> {
    const GROUPS: usize = 32;
    let data = Rng::seeded("stalled").bytes(GROUP * GROUPS).to_vec();
    let (relay, mut sub, out, mut publisher, stdin) = transfer("stalled", &[], sub_extra).await?;
    let writer = feed(stdin, data.clone());

    // The subscriber blocks on its full stdout pipe: the relay resets its oldest groups.
    let reset = relay
        .child()
        .wait_log("subscriber cannot keep up", 1)
        .await?;
    ensure!(
        reset.contains("WARN") && reset.contains("--max-queued-bytes") && reset.contains("Lagged"),
        "the relay names the reason: {reset}"
    );
    ensure!(reset.contains("peer="), "and the peer: {reset}");

    let got = within("sub output", read_all(out, None)).await??;
    let status = sub.wait_for(TIMEOUT).await?;
    ensure!(
        !status.success(),
        "sub must fail, it lost groups: {status}\n{}",
        sub.log_tail()
    );
    // Its stderr is collected by a task that may read the last line after the exit.
    let line = sub.wait_log("moqring: track ended but", 1).await?;
    ensure!(line.contains("groups were lost ("), "which groups: {line}");
    ensure!(
        bytes_written(&line) == Some(got.len()),
        "the bytes it says it wrote ({line}) are those on stdout ({})",
        got.len()
    );
    ensure!(got.len() < data.len(), "some of the track is missing");
    // What it wrote starts with a group's first frame as published: group 0's, unless a
    // starved subscriber lost that one too (the relay resets the oldest groups first).
    let first = got.get(..FRAME).context("not even a frame written")?;
    let group = (0..GROUPS).find(|g| data[g * GROUP..][..FRAME] == *first);
    ensure!(
        group.is_some(),
        "the output starts with no group's first frame; group 0's differs at offset {:?}",
        first.iter().zip(&data).position(|(a, b)| a != b)
    );
    writer.await?;
    publisher.wait_success().await
}

#[tokio::test]
async fn a_subscriber_slower_than_its_publisher_fails_naming_the_lost_groups() -> Result<()> {
    stalled_subscriber_loses_groups(&[]).await
}

#[tokio::test]
async fn without_subscribe_end_lost_groups_are_still_named() -> Result<()> {
    // lite-04 has no SUBSCRIBE_START/END: gaps are found from the groups that did arrive.
    stalled_subscriber_loses_groups(&["--alpn", "moq-lite-04"]).await
}

#[tokio::test]
async fn a_paced_publisher_gets_a_file_through_whole_to_a_slower_reader() -> Result<()> {
    // 24 MiB at 80 Mbit/s (2.5 s); the subscriber's output is read at twice that. Sent
    // at full speed, this overruns the relay's queue.
    const GROUPS: usize = 24;
    let data = Rng::seeded("paced").bytes(GROUP * GROUPS).to_vec();
    let (relay, mut sub, out, mut publisher, stdin) =
        transfer("paced", &["--rate-mbit", "80"], &[]).await?;
    let started = Instant::now();
    let writer = feed(stdin, data.clone());
    let got = within("sub output", read_all(out, Some(20e6))).await??;
    let took = started.elapsed();
    sub.wait_success().await?;
    assert_bytes_eq(&got, &data, "paced transfer");
    ensure!(
        took >= Duration::from_secs(2),
        "80 Mbit/s paces 24 MiB over about 2.5 s, took {took:?}"
    );
    ensure!(
        !relay.log_tail().contains("subscriber cannot keep up"),
        "nothing reset:\n{}",
        relay.log_tail()
    );
    writer.await?;
    publisher.wait_success().await
}

#[tokio::test]
async fn a_rate_out_of_range_is_one_line_and_a_failure() -> Result<()> {
    for rate in ["0", "-1", "NaN", "inf", "1e300", "fast"] {
        let arg = format!("--rate-mbit={rate}");
        let out = moqring_command([
            "pub",
            "moql://127.0.0.1:9/anon",
            "--broadcast",
            "b",
            "--track",
            "t",
            &arg,
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .await?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(!out.status.success(), "{rate}: {}", out.status);
        ensure!(
            stderr.lines().count() == 1 && stderr.contains("--rate-mbit"),
            "{rate}: one line naming the flag: {stderr:?}"
        );
    }
    Ok(())
}
