//! Graceful drain, end to end with the real binary: on SIGTERM the relay refuses new
//! connections, sends GOAWAY, answers /health with 503, serves its sessions until they
//! leave (then exits 0 at once) or until `--drain-timeout` (then closes them cleanly and
//! exits 0); a second signal exits at once.

mod common;

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends `signal` (e.g. "TERM") to `pid` with kill(1).
async fn signal(pid: u32, signal: &str) -> Result<()> {
    let status = tokio::process::Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .await?;
    anyhow::ensure!(status.success(), "kill -{signal} {pid}: {status}");
    Ok(())
}

/// The status code the relay's HTTP side door answers for `GET path`.
async fn http_status(relay: &Relay, path: &str) -> Result<u16> {
    let mut tcp = tokio::net::TcpStream::connect(relay.addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await?;
    let mut reply = String::new();
    within("an HTTP reply", tcp.read_to_string(&mut reply)).await??;
    reply
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("no status in {reply:?}"))
}

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

/// Waits until `proc`'s log holds `needle`.
async fn logged(proc: &ChildProc, needle: &str) -> Result<()> {
    within(&format!("{needle:?} in {}'s log", proc.name()), async {
        while !proc.log_tail().contains(needle) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .map_err(|e| proc.with_log(e))
}

/// Waits until the relay has accepted `n` connections.
async fn accepted(relay: &ChildProc, n: usize) -> Result<()> {
    within(&format!("{n} connections accepted"), async {
        while relay.log_tail().matches("connection accepted").count() < n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .map_err(|e| relay.with_log(e))
}

#[tokio::test]
async fn a_transfer_finishes_through_a_drain_and_the_relay_exits_when_it_ends() -> Result<()> {
    let mut relay = Relay::start_with(&["--drain-timeout", "60s"]).await?;
    let pid = relay.process().id().context("relay pid")?;
    let data = Rng::seeded("drain-finish").bytes(200_000);
    let sub = MoqringSub::spawn_with(&relay.url("anon"), "d", "t", None, &["--start-group", "0"])?;
    let mut publisher = Feeder::spawn(&relay, "d")?;
    publisher.feed(&data[..100_000]).await?;
    accepted(relay.process(), 2).await?;
    assert_eq!(http_status(&relay, "/health").await?, 200);

    signal(pid, "TERM").await?;
    logged(relay.process(), "draining").await?;
    assert_eq!(http_status(&relay, "/health").await?, 503);
    logged(&sub.proc, "GOAWAY").await?;

    // A newcomer is refused while the old sessions are still served.
    let newcomer = MoqringSub::spawn(&relay.url("anon"), "d", "t", None)?;
    logged(relay.process(), "connection refused: the relay is draining").await?;
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
    accepted(relay.process(), 2).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let signalled = Instant::now();
    signal(pid, "TERM").await?;
    logged(&sub.proc, "GOAWAY").await?;
    let status = relay.process().wait_for(Duration::from_secs(20)).await?;
    assert!(status.success(), "relay exit: {status}");
    assert!(
        signalled.elapsed() >= Duration::from_secs(2),
        "the relay left before its drain timeout"
    );
    logged(
        relay.process(),
        "drain timeout: closing the remaining connections",
    )
    .await?;
    // The subscriber hears the close, with the relay's reason, and says it was cut off.
    let status = sub.proc.wait_for(TIMEOUT).await?;
    assert!(!status.success(), "a cut-off subscriber exited 0");
    logged(&sub.proc, "relay shutting down").await?;
    Ok(())
}

#[tokio::test]
async fn a_second_signal_exits_at_once() -> Result<()> {
    let mut relay = Relay::start_with(&["--drain-timeout", "120s"]).await?;
    let pid = relay.process().id().context("relay pid")?;
    let _sub = MoqringSub::spawn(&relay.url("anon"), "d", "t", None)?;
    let mut publisher = Feeder::spawn(&relay, "d")?;
    publisher.feed(&[7; 10_000]).await?;
    accepted(relay.process(), 2).await?;
    signal(pid, "INT").await?;
    logged(relay.process(), "draining").await?;
    signal(pid, "INT").await?;
    let status = relay.process().wait_for(Duration::from_secs(20)).await?;
    assert_eq!(status.code(), Some(1), "{status}");
    logged(relay.process(), "second signal while draining").await?;
    Ok(())
}
