//! End-to-end over an impaired path: the lossy forwarder of `tests/common/forwarder.rs`
//! stands between one client and the relay. A file sent with `moqring pub --rate-mbit` must
//! reach `moqring sub --start-group 0` byte-exact, with loss on the subscriber's side or
//! on the publisher's: QUIC retransmits what the forwarder drops, and the publisher is
//! paced below what the lossy path carries (1 Mbit/s at 1 % loss, 0.5 Mbit/s at 5 %), so
//! neither the relay's latency budget nor its open-groups limit nor its queue bound resets
//! a group (the relay's log at debug level is checked for such resets).
//!
//! Unpaced past the path's capacity, groups are lost by design, and loudly: on the
//! subscriber's side the relay holds them past the 5 s latency budget and resets them
//! with `Old` (tested below); on the publisher's side the publisher's own QUIC queue
//! delivers groups late and many at once, so the relay's limit of 8 open groups per track
//! resets the oldest with `Old`, and the track's clean end can overtake groups that have
//! not opened at the relay yet, which then never arrive (`moqring sub` names both).

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use tokio::io::AsyncWriteExt;
use url::Url;

use common::forwarder::{Forwarder, Impairment};
use common::{
    assert_bytes_eq, moqring_command, say, within_for, ChildProc, MoqringSub, Relay, Rng,
};

/// Frames of 1000 bytes, 32 to a group.
const FRAME: &str = "1000";
const GROUP_FRAMES: &str = "32";

/// Upper bound on one transfer here (each takes under 20 s).
const TRANSFER_LIMIT: Duration = Duration::from_secs(40);

/// `moqring pub` of track `t` at `rate_mbit`, `data` fed to its stdin in the background.
fn publisher(url: &Url, broadcast: &str, rate_mbit: &str, data: Vec<u8>) -> Result<ChildProc> {
    let args = [
        "pub",
        url.as_str(),
        "--broadcast",
        broadcast,
        "--track",
        "t",
        "--tls-disable-verify",
        "--frame-size",
        FRAME,
        "--group-frames",
        GROUP_FRAMES,
        "--rate-mbit",
        rate_mbit,
    ];
    let mut cmd = moqring_command(args);
    cmd.env("RUST_LOG", "moqring=info");
    let mut proc = ChildProc::spawn("moqring pub", cmd)?;
    proc.log_stdout();
    let mut stdin = proc.take_stdin().context("pub stdin")?;
    tokio::spawn(async move {
        let _ = stdin.write_all(&data).await;
        let _ = stdin.shutdown().await;
    });
    Ok(proc)
}

/// Which client's path is lossy.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Side {
    Publisher,
    Subscriber,
}

/// A `len`-byte file from `moqring pub --rate-mbit rate` to `moqring sub --start-group 0`
/// through a relay, the `side` client behind a forwarder with `impairment`.
async fn file_through_lossy_path(
    label: &str,
    side: Side,
    impairment: Impairment,
    len: usize,
    rate_mbit: &str,
) -> Result<()> {
    let data = Rng::seeded(label).bytes(len).to_vec();
    let mut relay = Relay::start_with_env(&[], &[("RUST_LOG", "moqring=debug")]).await?;
    let forwarder = Forwarder::start(relay.addr, impairment, &format!("{label} forwarder")).await?;
    let (pub_url, sub_url) = match side {
        Side::Publisher => (forwarder.url("anon"), relay.url("anon")),
        Side::Subscriber => (relay.url("anon"), forwarder.url("anon")),
    };
    let started = Instant::now();
    let sub = MoqringSub::spawn_with(&sub_url, label, "t", None, &["--start-group", "0"])?;
    let mut publisher = publisher(&pub_url, label, rate_mbit, data.clone())?;
    let got = within_for(
        TRANSFER_LIMIT,
        "the file through the lossy path",
        sub.output(),
    )
    .await;
    let took = started.elapsed();
    let stats = forwarder.shared.stats.line();
    let relay_log = relay.log_tail();
    let resets: Vec<&str> = relay_log
        .lines()
        .filter(|l| {
            l.contains("latency budget")
                || l.contains("too far behind")
                || l.contains("cannot keep up")
        })
        .take(20)
        .collect();
    say(&format!(
        "[{label}] {side:?} side: {:.0} % loss, {:?} ± {:?}, {len} bytes at {rate_mbit} Mbit/s: \
         {took:.1?}; forwarder {stats}",
        impairment.loss * 100.0,
        impairment.delay,
        impairment.jitter,
    ));
    let got = got
        .and_then(|r| r)
        .map_err(|e| relay.process().with_log(e))
        .with_context(|| format!("forwarder {stats}; relay resets: {resets:#?}"))?;
    assert_bytes_eq(&got, &data, label);
    ensure!(
        resets.is_empty(),
        "the relay reset nothing on the way: {resets:#?}"
    );
    within_for(
        TRANSFER_LIMIT,
        "moqring pub to exit",
        publisher.wait_success(),
    )
    .await
    .and_then(|r| r)?;
    ensure!(
        forwarder.shared.stats.dropped.load(Ordering::Relaxed) > 0,
        "the forwarder dropped datagrams: {stats}"
    );
    Ok(())
}

#[tokio::test]
async fn a_file_arrives_whole_with_1_percent_loss_on_the_subscribers_side() -> Result<()> {
    file_through_lossy_path(
        "sub1",
        Side::Subscriber,
        Impairment::lossy(0.01),
        1 << 20,
        "1",
    )
    .await
}

#[tokio::test]
async fn a_file_arrives_whole_with_5_percent_loss_on_the_publishers_side() -> Result<()> {
    file_through_lossy_path(
        "pub5",
        Side::Publisher,
        Impairment::lossy(0.05),
        1 << 20,
        "0.5",
    )
    .await
}

#[tokio::test]
async fn a_file_arrives_whole_with_5_percent_loss_on_the_subscribers_side() -> Result<()> {
    file_through_lossy_path(
        "sub5",
        Side::Subscriber,
        Impairment::lossy(0.05),
        1 << 20,
        "0.5",
    )
    .await
}

/// By design, not a failure of the relay: a publisher faster than what a lossy path to a
/// subscriber carries (4 Mbit/s offered, about 0.8 Mbit/s taken with 5 % loss and a
/// 100-120 ms round trip) makes the relay hold groups past the subscriber's latency
/// budget (5 s); they are reset with `Old` (those whose stream header had not got out
/// yet reach the subscriber as gaps), the relay warns, and `moqring sub` fails naming
/// them instead of stalling or reporting success.
#[tokio::test]
async fn a_publisher_faster_than_a_lossy_path_is_loudly_lossy() -> Result<()> {
    let label = "fast5";
    let data = Rng::seeded(label).bytes(1 << 20).to_vec();
    let relay = Relay::start_with_env(&[], &[("RUST_LOG", "moqring=info")]).await?;
    let impairment = Impairment::lossy(0.05);
    let forwarder = Forwarder::start(relay.addr, impairment, "fast5 forwarder").await?;
    let started = Instant::now();
    let mut sub = MoqringSub::spawn_with(
        &forwarder.url("anon"),
        label,
        "t",
        None,
        &["--start-group", "0"],
    )?;
    let mut publisher = publisher(&relay.url("anon"), label, "4", data)?;
    let status = sub.proc.wait_for(TRANSFER_LIMIT).await?;
    say(&format!(
        "[{label}] Subscriber side: 5 % loss, 1048576 bytes at 4 Mbit/s: sub exited {status} \
         after {:.1?}; forwarder {}",
        started.elapsed(),
        forwarder.shared.stats.line()
    ));
    ensure!(!status.success(), "sub must fail: {}", sub.proc.log_tail());
    sub.proc.wait_log("moqring: track ended but", 1).await?;
    let line = sub.proc.log_tail();
    say(&format!("[{label}] sub: {line}"));
    // A group reset before its stream header got out is a gap at the subscriber.
    ensure!(
        line.contains("groups were lost")
            && (line.contains("Old: past its latency budget") || line.contains("never arrived")),
        "sub names the groups reset past the latency budget: {line}"
    );
    relay
        .child()
        .wait_log("past their latency budget (5000 ms)", 1)
        .await?;
    within_for(
        TRANSFER_LIMIT,
        "moqring pub to exit",
        publisher.wait_success(),
    )
    .await
    .and_then(|r| r)?;
    Ok(())
}
