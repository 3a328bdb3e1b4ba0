//! `moqring pub` and `moqring sub` over WebTransport (`https://` URLs) through the real
//! relay binary, against peers on raw QUIC on the same relay: byte-exact files on every
//! moq-lite version both ways, the WebTransport sessions counted in /metrics, and a
//! refused CONNECT named by its HTTP status.

mod common;

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use url::Url;

use common::{assert_bytes_eq, http_get, within, MoqringPub, MoqringSub, PubOptions, Relay, Rng};

/// The relay's URL at `path` over WebTransport.
fn https(relay: &Relay, path: &str) -> Url {
    Url::parse(&format!("https://{}/{path}", relay.addr)).expect("valid URL")
}

/// The relay-wide value of `name` in /metrics.
async fn metric(relay: &Relay, name: &str) -> Result<u64> {
    let reply = http_get(relay.addr, "/metrics").await?;
    let line = reply
        .body
        .lines()
        .find(|l| l.strip_prefix(name).is_some_and(|v| v.starts_with(' ')))
        .with_context(|| format!("no {name} in\n{}", reply.body))?;
    Ok(line[name.len() + 1..].parse()?)
}

/// Publishes `data` from `from` and receives it at `to` (the whole track from group 0).
async fn carry(
    from: &Url,
    to: &Url,
    broadcast: &str,
    alpn: &'static str,
    data: &[u8],
) -> Result<Vec<u8>> {
    let sub = MoqringSub::spawn_with(to, broadcast, "t", Some(alpn), &["--start-group", "0"])?;
    let options = PubOptions {
        frame_size: Some(4000),
        group_frames: Some(16),
        alpn: Some(alpn),
    };
    let publisher = MoqringPub::spawn(from, broadcast, "t", &options, data.to_vec())?;
    publisher.finish().await?;
    sub.output().await
}

#[tokio::test]
async fn files_cross_between_webtransport_and_raw_quic_on_every_version() -> Result<()> {
    let relay = Relay::start().await?;
    let mut rng = Rng::seeded("https_cli");
    for alpn in ["moq-lite-05", "moq-lite-04", "moq-lite-03"] {
        let len = 300_000 + rng.below(100_000) as usize;
        let data = rng.bytes(len).to_vec();
        let wt = https(&relay, "anon");
        let raw = relay.url("anon");
        let got = carry(&wt, &raw, &format!("wt-to-raw-{alpn}"), alpn, &data).await?;
        assert_bytes_eq(
            &got,
            &data,
            &format!("{alpn}: WebTransport pub -> raw QUIC sub"),
        );
        let got = carry(&raw, &wt, &format!("raw-to-wt-{alpn}"), alpn, &data).await?;
        assert_bytes_eq(
            &got,
            &data,
            &format!("{alpn}: raw QUIC pub -> WebTransport sub"),
        );
        let got = carry(&wt, &wt, &format!("wt-to-wt-{alpn}"), alpn, &data).await?;
        assert_bytes_eq(&got, &data, &format!("{alpn}: WebTransport both ways"));
    }
    Ok(())
}

#[tokio::test]
async fn webtransport_sessions_are_counted_and_a_refusal_names_its_status() -> Result<()> {
    let relay = Relay::start_with(&["--alpn", "moq-lite-05"]).await?;
    assert_eq!(metric(&relay, "moqring_webtransport_sessions").await?, 0);
    // A subscriber waiting for its broadcast holds one WebTransport session.
    let mut sub = MoqringSub::spawn(&https(&relay, "anon"), "nobody", "t", None)?;
    within("the WebTransport session to be counted", async {
        loop {
            if metric(&relay, "moqring_webtransport_sessions").await? == 1 {
                return anyhow::Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await??;
    ensure!(
        metric(&relay, "moqring_sessions{version=\"moq-lite-05\"}").await? == 1,
        "the session is counted by its version too"
    );
    sub.proc.kill();

    // A client offering only a version the relay does not speak is answered 400.
    let mut refused = MoqringSub::spawn(&https(&relay, "anon"), "x", "t", Some("moq-lite-03"))?;
    let status = refused.proc.wait_for(Duration::from_secs(20)).await?;
    // Its stderr is read by a task of its own: wait for the line rather than read the
    // tail the moment the process exits.
    let line = refused.proc.wait_log("HTTP status", 1).await?;
    assert!(line.contains("HTTP status 400"), "{line}");
    assert_eq!(status.code(), Some(1), "{}", refused.proc.log_tail());
    Ok(())
}
