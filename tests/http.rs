//! End-to-end tests of the relay's HTTP side door with the real binary: the certificate
//! fingerprint, health, metrics counted during a `moqring pub` -> `moqring sub` transfer,
//! announced broadcasts, refusals, slow clients, and `--no-http` / `--http-bind`.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use common::{
    assert_bytes_eq, http_get, http_send, within, MoqringPub, MoqringSub, PubOptions, Relay, Rng,
};

/// The value of the unlabelled (relay-wide) sample `name` in an exposition.
fn metric(text: &str, name: &str) -> Result<u64> {
    let line = text
        .lines()
        .find(|l| l.strip_prefix(name).is_some_and(|v| v.starts_with(' ')))
        .with_context(|| format!("no {name} in\n{text}"))?;
    Ok(line[name.len() + 1..].parse()?)
}

/// The relay's banner line starting with `prefix`, once printed.
async fn banner_line(relay: &Relay, prefix: &str) -> Result<String> {
    within(&format!("the banner's {prefix:?} line"), async {
        loop {
            let log = relay.log_tail();
            if let Some(line) = log.lines().find_map(|l| l.split_once(prefix)) {
                return line.1.trim().to_string();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// Polls `/metrics` until `done` holds for it; returns that exposition.
async fn metrics_until(
    addr: SocketAddr,
    what: &str,
    done: impl Fn(&str) -> bool,
) -> Result<String> {
    let mut last = String::new();
    let found = within(what, async {
        loop {
            let reply = http_get(addr, "/metrics").await?;
            ensure!(reply.status == 200, "/metrics answered {}", reply.status);
            if done(&reply.body) {
                return Ok(reply.body);
            }
            last = reply.body;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    match found {
        Ok(r) => r,
        Err(e) => bail!("{e}; last /metrics:\n{last}"),
    }
}

#[tokio::test]
async fn certificate_health_and_refusals() -> Result<()> {
    let relay = Relay::start().await?;
    let http: SocketAddr = banner_line(&relay, "http on ").await?.parse()?;
    assert_eq!(
        http, relay.addr,
        "the side door shares the QUIC address and port"
    );
    let fingerprint = banner_line(&relay, "certificate sha256 fingerprint: ").await?;
    let cert = http_get(http, "/certificate.sha256").await?;
    assert_eq!(
        (cert.status, cert.body.as_str()),
        (200, fingerprint.as_str())
    );
    let health = within("/health to answer 200", async {
        loop {
            let r = http_get(http, "/health").await?;
            if r.status == 200 {
                return anyhow::Ok(r);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await??;
    assert_eq!(health.body, "ok\n");
    assert_eq!(http_get(http, "/").await?.status, 404);
    assert_eq!(http_get(http, "/fetch/anon/x").await?.status, 404);
    let post = http_send(http, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").await?;
    assert_eq!(post.status, 405);
    assert_eq!(http_send(http, "garbage\r\n\r\n").await?.status, 400);
    Ok(())
}

#[tokio::test]
async fn metrics_count_a_transfer_exactly() -> Result<()> {
    let relay = Relay::start().await?;
    let http = relay.addr;
    // 3 MiB and a bit in 16 KiB frames: the last frame is short.
    const FRAME: usize = 16_384;
    let data = Rng::seeded("http_metrics")
        .bytes((3 << 20) + 1_234)
        .to_vec();
    let frames = data.len().div_ceil(FRAME) as u64;
    let groups = frames.div_ceil(8);
    let url = relay.url("anon");
    let sub = MoqringSub::spawn_with(&url, "metered", "t", None, &["--start-group", "0"])?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let options = PubOptions {
        frame_size: Some(FRAME),
        group_frames: Some(8),
        alpn: None,
    };
    let publisher = MoqringPub::spawn(&url, "metered", "t", &options, data.clone())?;
    // Scrape while the transfer runs: the counts only grow, and never past what was sent.
    let scraper = tokio::spawn(async move {
        let mut seen = Vec::new();
        loop {
            let r = http_get(http, "/metrics").await?;
            let bytes_in = metric(&r.body, "moqring_bytes_in_total")?;
            let bytes_out = metric(&r.body, "moqring_bytes_out_total")?;
            seen.push((bytes_in, bytes_out));
            if bytes_out >= (3 << 20) {
                return anyhow::Ok(seen);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    assert_bytes_eq(&sub.output().await?, &data, "subscriber output");
    publisher.finish().await?;
    let seen = within("the scraper", scraper).await???;
    ensure!(!seen.is_empty());
    for pair in seen.windows(2) {
        assert!(pair[0].0 <= pair[1].0 && pair[0].1 <= pair[1].1, "{seen:?}");
    }
    for &(i, o) in &seen {
        assert!(i <= data.len() as u64 && o <= data.len() as u64, "{seen:?}");
    }
    let n = data.len() as u64;
    let text = metrics_until(http, "the transfer's counts in /metrics", |t| {
        metric(t, "moqring_bytes_out_total").is_ok_and(|b| b >= n)
            && metric(t, "moqring_frames_in_total").is_ok_and(|f| f >= frames)
    })
    .await?;
    assert_eq!(metric(&text, "moqring_bytes_in_total")?, n, "\n{text}");
    assert_eq!(
        metric(&text, "moqring_frames_in_total")?,
        frames,
        "\n{text}"
    );
    assert_eq!(
        metric(&text, "moqring_groups_in_total")?,
        groups,
        "\n{text}"
    );
    assert_eq!(metric(&text, "moqring_bytes_out_total")?, n, "\n{text}");
    assert_eq!(
        metric(&text, "moqring_frames_out_total")?,
        frames,
        "\n{text}"
    );
    assert_eq!(
        metric(&text, "moqring_groups_out_total")?,
        groups,
        "\n{text}"
    );
    assert_eq!(
        metric(&text, "moqring_publisher_subscriptions_total")?,
        1,
        "\n{text}"
    );
    assert!(
        metric(&text, "moqring_connections_accepted_total")? >= 2,
        "\n{text}"
    );
    assert!(
        metric(&text, "moqring_datagrams_received_total")? > 0,
        "\n{text}"
    );
    assert!(
        metric(&text, "moqring_datagrams_sent_total")? > 0,
        "\n{text}"
    );
    assert!(
        metric(&text, "moqring_send_messages_total")? > 0,
        "\n{text}"
    );
    assert!(metric(&text, "moqring_loop_turns_total")? > 0, "\n{text}");
    assert!(
        text.contains("moqring_shard_up{shard=\"0\"} 1\n"),
        "\n{text}"
    );
    Ok(())
}

#[tokio::test]
async fn announced_lists_broadcasts_by_prefix() -> Result<()> {
    // A killed publisher is gone once silent for the idle timeout.
    let relay = Relay::start_with(&["--idle-timeout-ms", "1000"]).await?;
    let http = relay.addr;
    let mut rng = Rng::seeded("http_announced");
    let name = rng.name("shown");
    let publisher = MoqringPub::spawn(
        &relay.url("anon"),
        &name,
        "t",
        &PubOptions {
            frame_size: None,
            group_frames: None,
            alpn: None,
        },
        Vec::new(),
    )?;
    let path = format!("anon/{name}");
    let quoted = format!("\"{path}\"");
    within("the broadcast in /announced", async {
        while !http_get(http, "/announced").await?.body.contains(&quoted) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        anyhow::Ok(())
    })
    .await??;
    let all = http_get(http, "/announced/").await?;
    assert_eq!(all.status, 200);
    assert!(all.body.starts_with('[') && all.body.trim_end().ends_with(']'));
    assert_eq!(
        http_get(http, "/announced/anon").await?.body,
        format!("[{quoted}]\n")
    );
    assert_eq!(
        http_get(http, &format!("/announced/{path}")).await?.body,
        format!("[{quoted}]\n")
    );
    assert_eq!(http_get(http, "/announced/an").await?.body, "[]\n");
    assert_eq!(http_get(http, "/announced/other").await?.body, "[]\n");
    let text = metrics_until(http, "the broadcast gauge", |t| {
        metric(t, "moqring_broadcasts").is_ok_and(|b| b == 1)
    })
    .await?;
    assert_eq!(metric(&text, "moqring_broadcasts")?, 1);
    drop(publisher);
    within("the broadcast to leave /announced", async {
        while http_get(http, "/announced").await?.body.contains(&quoted) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::Ok(())
    })
    .await??;
    Ok(())
}

#[tokio::test]
async fn slow_clients_delay_neither_health_nor_a_transfer() -> Result<()> {
    let relay = Relay::start().await?;
    let http = relay.addr;
    // Ten clients that connect and say nothing, and one that sends a byte a second.
    let mut silent = Vec::new();
    for _ in 0..10 {
        silent.push(TcpStream::connect(http).await?);
    }
    let trickle = tokio::spawn(async move {
        let mut s = TcpStream::connect(http).await?;
        for b in b"GET /health HTTP/1.1\r\n\r\n" {
            s.write_all(&[*b]).await?;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        anyhow::Ok(())
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // /health answers well inside the side door's 5 s request timeout, which is what a
    // connection-per-thread server would make it wait.
    for _ in 0..5 {
        let started = Instant::now();
        let r = http_get(http, "/health").await?;
        assert_eq!(r.status, 200);
        let took = started.elapsed();
        assert!(took < Duration::from_secs(2), "/health took {took:?}");
    }
    let url = relay.url("anon");
    let data = Rng::seeded("http_slowloris").bytes(1 << 20).to_vec();
    let sub = MoqringSub::spawn_with(&url, "slow", "t", None, &["--start-group", "0"])?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let options = PubOptions {
        frame_size: Some(16_384),
        group_frames: Some(8),
        alpn: None,
    };
    let publisher = MoqringPub::spawn(&url, "slow", "t", &options, data.clone())?;
    assert_bytes_eq(&sub.output().await?, &data, "subscriber output");
    publisher.finish().await?;
    drop(silent);
    trickle.abort();
    Ok(())
}

#[tokio::test]
async fn no_http_binds_no_tcp_port() -> Result<()> {
    let relay = Relay::start_with(&["--no-http"]).await?;
    // The banner's last line is out: had there been an `http on` line, it would be too.
    banner_line(&relay, "shards: ").await?;
    let log = relay.log_tail();
    assert!(!log.contains("http on "), "{log}");
    let refused = std::net::TcpStream::connect_timeout(&relay.addr, Duration::from_secs(2));
    assert!(refused.is_err(), "a TCP port is bound at {}", relay.addr);
    Ok(())
}

#[tokio::test]
async fn http_bind_moves_the_side_door() -> Result<()> {
    let relay = Relay::start_with(&["--http-bind", "127.0.0.1:0"]).await?;
    let http: SocketAddr = banner_line(&relay, "http on ").await?.parse()?;
    assert_ne!(http.port(), 0);
    let r = http_get(http, "/metrics").await?;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("# TYPE moqring_bytes_in_total counter"));
    Ok(())
}
