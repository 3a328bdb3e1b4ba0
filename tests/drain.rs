//! Graceful drain, end to end with the real binary: on SIGTERM the relay refuses new
//! connections, sends GOAWAY, answers /health with 503, serves its sessions until they
//! leave (then exits 0 at once) or until `--drain-timeout` (then closes them cleanly and
//! exits 0); a second signal exits at once.

mod common;

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use common::*;
use tokio::io::AsyncWriteExt;

/// A `moqring pub` whose stdin the test feeds in parts.
struct Feeder {
    proc: ChildProc,
    stdin: tokio::process::ChildStdin,
}

impl Feeder {
    fn spawn(relay: &Relay, broadcast: &str) -> Result<Self> {
        let url = relay.url("anon").to_string();
        let mut proc = ChildProc::spawn(
            "moqring pub",
            moqring_command([
                "pub",
                url.as_str(),
                "--broadcast",
                broadcast,
                "--track",
                "t",
                "--frame-size",
                "1000",
                "--group-frames",
                "10",
                "--tls-disable-verify",
            ]),
        )?;
        proc.log_stdout();
        let stdin = proc.take_stdin().context("pub stdin")?;
        Ok(Self { proc, stdin })
    }

    async fn feed(&mut self, data: &[u8]) -> Result<()> {
        self.stdin.write_all(data).await?;
        self.stdin.flush().await?;
        Ok(())
    }
}

#[tokio::test]
async fn a_transfer_finishes_through_a_drain_and_the_relay_exits_when_it_ends() -> Result<()> {
    let mut relay = Relay::start_with(&["--drain-timeout", "60s"]).await?;
    let pid = relay.process().id().context("relay pid")?;
    let data = Rng::seeded("drain-finish").bytes(200_000);
    let sub = MoqringSub::spawn_with(&relay.url("anon"), "d", "t", None, &["--start-group", "0"])?;
    let mut publisher = Feeder::spawn(&relay, "d")?;
    publisher.feed(&data[..100_000]).await?;
    relay.process().wait_log("connection accepted", 2).await?;
    assert_eq!(http_get(relay.addr, "/health").await?.status, 200);

    send_signal(pid, "TERM").await?;
    relay.process().wait_log("draining", 1).await?;
    assert_eq!(http_get(relay.addr, "/health").await?.status, 503);
    sub.proc.wait_log("GOAWAY", 1).await?;

    // A newcomer is refused while the old sessions are still served.
    let newcomer = MoqringSub::spawn(&relay.url("anon"), "d", "t", None)?;
    relay
        .process()
        .wait_log("connection refused: the relay is draining", 1)
        .await?;
    drop(newcomer);

    publisher.feed(&data[100_000..]).await?;
    drop(publisher.stdin);
    publisher.proc.wait_success().await?;
    let got = sub.output().await?;
    assert_bytes_eq(&got, &data, "a transfer across the drain");

    // Its sessions gone, the relay stops long before the 60 s drain timeout.
    let status = relay.process().wait_for(Duration::from_secs(30)).await?;
    assert!(status.success(), "relay exit: {status}");
    Ok(())
}

#[tokio::test]
async fn at_the_drain_timeout_the_relay_closes_what_remains_and_exits_zero() -> Result<()> {
    let mut relay = Relay::start_with(&["--drain-timeout", "2s"]).await?;
    let pid = relay.process().id().context("relay pid")?;
    let data = Rng::seeded("drain-timeout").bytes(50_000);
    let mut sub =
        MoqringSub::spawn_with(&relay.url("anon"), "d", "t", None, &["--start-group", "0"])?;
    // A live track that does not end: the publisher's stdin stays open.
    let mut publisher = Feeder::spawn(&relay, "d")?;
    publisher.feed(&data).await?;
    relay.process().wait_log("connection accepted", 2).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let signalled = Instant::now();
    send_signal(pid, "TERM").await?;
    sub.proc.wait_log("GOAWAY", 1).await?;
    let status = relay.process().wait_for(Duration::from_secs(20)).await?;
    assert!(status.success(), "relay exit: {status}");
    assert!(
        signalled.elapsed() >= Duration::from_secs(2),
        "the relay left before its drain timeout"
    );
    relay
        .process()
        .wait_log("drain timeout: closing the remaining connections", 1)
        .await?;
    // The subscriber hears the close, with the relay's reason, and says it was cut off.
    let status = sub.proc.wait_for(TIMEOUT).await?;
    assert!(!status.success(), "a cut-off subscriber exited 0");
    sub.proc.wait_log("relay shutting down", 1).await?;
    Ok(())
}

#[tokio::test]
async fn a_second_signal_exits_at_once() -> Result<()> {
    let mut relay = Relay::start_with(&["--drain-timeout", "120s"]).await?;
    let pid = relay.process().id().context("relay pid")?;
    let _sub = MoqringSub::spawn(&relay.url("anon"), "d", "t", None)?;
    let mut publisher = Feeder::spawn(&relay, "d")?;
    publisher.feed(&[7; 10_000]).await?;
    relay.process().wait_log("connection accepted", 2).await?;
    send_signal(pid, "INT").await?;
    relay.process().wait_log("draining", 1).await?;
    send_signal(pid, "INT").await?;
    let status = relay.process().wait_for(Duration::from_secs(20)).await?;
    assert_eq!(status.code(), Some(1), "{status}");
    relay
        .process()
        .wait_log("second signal while draining", 1)
        .await?;
    Ok(())
}
