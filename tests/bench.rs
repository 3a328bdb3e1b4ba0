//! End-to-end test of `moqring bench` against `moqring relay` over loopback: a short run
//! with a few subscribers delivers frames to every one of them and loses none, over raw
//! QUIC (`moql://`) and over WebTransport (`https://`).

mod common;

use anyhow::{Context, Result};
use common::*;
use tokio::io::AsyncReadExt;

#[tokio::test(flavor = "multi_thread")]
async fn bench_delivers_every_frame_to_every_subscriber() -> Result<()> {
    bench_run("moql").await
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_over_webtransport_delivers_every_frame_to_every_subscriber() -> Result<()> {
    bench_run("https").await
}

/// A 2 s bench of 2 publishers x 3 subscribers with URLs of `scheme`.
async fn bench_run(scheme: &str) -> Result<()> {
    let mut relay = Relay::start().await?;
    let pid = relay.process().id().context("relay pid")?.to_string();
    let url = format!("{scheme}://{}/anon", relay.addr);
    let args = [
        "bench",
        url.as_str(),
        "--publishers",
        "2",
        "--subscribers",
        "3",
        "--fps",
        "50",
        "--frame-size",
        "1200",
        "--group-frames",
        "10",
        "--warmup",
        "200ms",
        "--duration",
        "2s",
        "--threads",
        "2",
        "--relay-pid",
        pid.as_str(),
        "--tls-disable-verify",
        "--json",
        "--quiet",
    ];
    let mut bench = ChildProc::spawn("moqring bench", moqring_command(args))?;
    bench.close_stdin();
    let mut stdout = bench.take_stdout().context("bench stdout")?;
    let mut out = String::new();
    within("the bench's report", stdout.read_to_string(&mut out)).await??;
    bench.wait_success().await?;
    let report: serde_json::Value = serde_json::from_str(out.trim())
        .with_context(|| format!("bench output is not one JSON object: {out}"))?;

    assert_eq!(report["version"], "moq-lite-05", "{report}");
    assert_eq!(report["publishers"], 2, "{report}");
    assert_eq!(report["subscribers"], 6, "{report}");
    assert_eq!(report["subscribers_receiving"], 6, "{report}");
    assert_eq!(report["connections_failed"], 0, "{report}");
    assert_eq!(report["frames_lost"], 0, "{report}");
    assert_eq!(report["groups_reset"], 0, "{report}");
    let delivered = report["frames_delivered"]
        .as_u64()
        .context("frames_delivered")?;
    let published = report["frames_published"]
        .as_u64()
        .context("frames_published")?;
    assert!(delivered > 0 && published > 0, "{report}");
    assert_eq!(
        report["bytes_delivered"].as_u64(),
        Some(delivered * 1200),
        "every delivered frame is whole: {report}"
    );
    assert_eq!(
        report["relay"]["pid"].as_u64(),
        pid.parse().ok(),
        "{report}"
    );
    assert!(
        report["relay"]["peak_rss_kib"].as_u64() > Some(0),
        "{report}"
    );
    Ok(())
}
