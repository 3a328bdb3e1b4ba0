//! Handshake floods, end to end with the real binary: tens of thousands of valid QUIC
//! Initials that never answer (from 64 loopback addresses, each a fresh connection) while
//! a subscriber receives a track. The track arrives whole, a new client completes its
//! handshake quickly during and after the flood, and the relay's memory stays within what
//! README states. A second flood replays 1024 such Initials as fast as one core can send
//! them (hundreds of thousands a second, more than the relay can answer).

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Initials the flood sends at least.
const FLOOD_INITIALS: u64 = 25_000;
/// Source addresses of the flood (127.0.0.2 and up, all loopback).
const FLOOD_ADDRESSES: u8 = 64;
/// The relay's resident memory stays under this (README, "Handshake floods").
const RSS_BOUND_KB: u64 = 128 * 1024;
/// A new client's handshake must complete within this, during and after the flood (the
/// issue asks for a second; the slack is for a shared 2-core machine, where the flood,
/// the relay's two shards, a publisher and a subscriber share the cores; a relay that
/// lets the flood lock it out takes the whole handshake timeout or more).
const CONNECT_LIMIT: Duration = Duration::from_secs(3);
/// The same under a flood faster than the relay can take, where the kernel drops
/// datagrams (the client's among them) and each loss costs a retransmission timeout
/// (1 s, then 2 s, ...): two losses are allowed.
const CONNECT_LIMIT_OVERRUN: Duration = Duration::from_secs(6);

/// The floods run one at a time (each takes a core).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn client_config() -> Result<quiche::Config> {
    let mut config = quiche::Config::new(quiche::PROTOCOL_VERSION)?;
    config.set_application_protos(&[b"moq-lite-05"])?;
    config.verify_peer(false);
    config.set_max_idle_timeout(5_000);
    config.set_max_recv_udp_payload_size(1350);
    config.set_max_send_udp_payload_size(1350);
    config.set_initial_max_data(1 << 20);
    config.set_initial_max_streams_bidi(10);
    config.set_initial_max_streams_uni(10);
    Ok(config)
}

/// Distinct source connection IDs: `n` in the first bytes.
fn scid(n: u64) -> [u8; 16] {
    let mut id = [0x5a; 16];
    id[..8].copy_from_slice(&n.to_be_bytes());
    id
}

/// What the flood did.
struct Flood {
    sent: u64,
    took: Duration,
}

/// Sends valid client Initials (a new connection each: new IDs, the next of 64 source
/// addresses) to `relay` and never answers, until `stop` is set (after at least
/// [`FLOOD_INITIALS`]) or a minute has passed. With `replay`, only the first 1024 are
/// made; they are sent again and again, each time from the next address.
fn flood(
    relay: SocketAddr,
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    replay: bool,
) -> Result<Flood> {
    let mut config = client_config()?;
    let sockets = (0..FLOOD_ADDRESSES)
        .map(|i| {
            let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i));
            let socket = UdpSocket::bind((ip, 0))?;
            socket.set_nonblocking(true)?;
            Ok(socket)
        })
        .collect::<std::io::Result<Vec<_>>>()
        .context("binding the flood's loopback addresses")?;
    let mut out = [0u8; 1500];
    let mut made: Vec<Vec<u8>> = Vec::new();
    let start = Instant::now();
    let mut n = 0u64;
    while (n < FLOOD_INITIALS || !stop.load(Ordering::Relaxed))
        && start.elapsed() < Duration::from_secs(60)
    {
        let socket = &sockets[n as usize % sockets.len()];
        let packet = if replay && made.len() == 1024 {
            &made[n as usize % made.len()]
        } else {
            let local = socket.local_addr()?;
            let id = scid(n);
            let id = quiche::ConnectionId::from_ref(&id);
            let mut conn = quiche::connect(Some("localhost"), &id, local, relay, &mut config)?;
            let (len, _) = conn.send(&mut out)?;
            if replay {
                made.push(out[..len].to_vec());
            }
            &out[..len]
        };
        // A full socket buffer drops the datagram, as a congested network would.
        let _ = socket.send_to(packet, relay);
        n += 1;
        sent.store(n, Ordering::Relaxed);
    }
    Ok(Flood {
        sent: n,
        took: start.elapsed(),
    })
}

/// A new client's QUIC handshake with the relay (answering a Retry if it gets one):
/// how long it took.
fn handshake(relay: SocketAddr) -> Result<Duration> {
    let mut config = client_config()?;
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    let local = socket.local_addr()?;
    let id = scid(u64::MAX - u64::from(local.port()));
    let id = quiche::ConnectionId::from_ref(&id);
    let start = Instant::now();
    let mut conn = quiche::connect(Some("localhost"), &id, local, relay, &mut config)?;
    let mut buf = [0u8; 65536];
    while !conn.is_established() {
        if conn.is_closed() || start.elapsed() > Duration::from_secs(10) {
            bail!("no handshake after {:?}", start.elapsed());
        }
        loop {
            match conn.send(&mut buf) {
                Ok((len, info)) => {
                    socket.send_to(&buf[..len], info.to)?;
                }
                Err(quiche::Error::Done) => break,
                Err(e) => bail!("client send: {e}"),
            }
        }
        let wait = conn
            .timeout()
            .unwrap_or(Duration::from_millis(50))
            .clamp(Duration::from_millis(1), Duration::from_millis(50));
        socket.set_read_timeout(Some(wait))?;
        match socket.recv_from(&mut buf) {
            Ok((len, from)) => {
                let info = quiche::RecvInfo { from, to: local };
                let _ = conn.recv(&mut buf[..len], info);
            }
            Err(_) => conn.on_timeout(),
        }
    }
    let took = start.elapsed();
    let _ = conn.close(false, 0, b"done");
    if let Ok((len, info)) = conn.send(&mut buf) {
        let _ = socket.send_to(&buf[..len], info.to);
    }
    Ok(took)
}

/// The relay's resident memory in KiB.
fn rss_kb(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}

/// A relay-wide value from the side door's /metrics (`name` with its labels).
async fn metric(relay: SocketAddr, name: &str) -> Result<u64> {
    let reply = http_get(relay, "/metrics").await?;
    let prefix = format!("moqring_{name} ");
    reply
        .body
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no {name} in the metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_flood_neither_starves_sessions_nor_locks_new_clients_out() -> Result<()> {
    let _serial = SERIAL.lock().await;
    flooded(false, CONNECT_LIMIT).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_faster_than_the_relay_neither_starves_sessions_nor_locks_new_clients_out(
) -> Result<()> {
    let _serial = SERIAL.lock().await;
    flooded(true, CONNECT_LIMIT_OVERRUN).await
}

/// Runs a flood (`replay`: see [`flood`]) against a relay serving a track, and checks
/// what the module docs promise; new clients must connect within `connect_limit`.
async fn flooded(replay: bool, connect_limit: Duration) -> Result<()> {
    let mut relay = Relay::start_with(&["--max-connections", "2000"]).await?;
    let pid = relay.process().id().context("relay pid")?;
    let addr = relay.addr;
    let url = relay.url("anon").to_string();
    let base_rss = rss_kb(pid)?;

    // A subscriber, then a publisher whose track is fed all through the flood.
    let mut sub = ChildProc::spawn(
        "moqring sub",
        moqring_command([
            "sub",
            url.as_str(),
            "--broadcast",
            "flood",
            "--track",
            "t",
            "--tls-disable-verify",
        ]),
    )?;
    let mut sub_out = sub.take_stdout().context("sub stdout")?;
    let received = tokio::spawn(async move {
        let mut data = Vec::new();
        sub_out.read_to_end(&mut data).await.map(|_| data)
    });
    let mut publisher = ChildProc::spawn(
        "moqring pub",
        moqring_command([
            "pub",
            url.as_str(),
            "--broadcast",
            "flood",
            "--track",
            "t",
            "--frame-size",
            "1000",
            "--group-frames",
            "10",
            "--tls-disable-verify",
        ]),
    )?;
    publisher.log_stdout();
    let mut stdin = publisher.take_stdin().context("pub stdin")?;
    let payload: Vec<u8> = (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();

    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let flooding = {
        let (sent, stop) = (sent.clone(), stop.clone());
        tokio::task::spawn_blocking(move || flood(addr, sent, stop, replay))
    };
    let started = Instant::now();

    // Feed the track in 64 KiB steps while the flood runs, watching memory and pending
    // handshakes; a new client connects once the flood is well under way.
    let mut fed = 0;
    let mut peak_rss = base_rss;
    let mut peak_pending = 0;
    let mut during = None;
    while !flooding.is_finished() {
        if fed < payload.len() {
            let end = (fed + (64 << 10)).min(payload.len());
            stdin.write_all(&payload[fed..end]).await?;
            fed = end;
        }
        peak_rss = peak_rss.max(rss_kb(pid)?);
        if let Ok(pending) = metric(addr, "handshakes_pending").await {
            peak_pending = peak_pending.max(pending);
        }
        if during.is_none() && sent.load(Ordering::Relaxed) >= 5_000 {
            let at = sent.load(Ordering::Relaxed);
            let took = tokio::task::spawn_blocking(move || handshake(addr)).await??;
            let still = !flooding.is_finished();
            say(&format!(
                "new client during the flood (after {at} Initials): connected in {took:?}"
            ));
            during = Some((took, still));
        }
        if fed == payload.len() && during.is_some() {
            stop.store(true, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let flood = flooding.await??;
    let after = tokio::task::spawn_blocking(move || handshake(addr)).await??;
    peak_rss = peak_rss.max(rss_kb(pid)?);
    stdin.write_all(&payload[fed..]).await?;
    drop(stdin);
    let retries = metric(addr, "retries_sent_total").await?;
    say(&format!(
        "flood (replay: {replay}): {} Initials in {:?} ({:.0}/s) from {FLOOD_ADDRESSES} addresses; \
         pending handshakes peaked at {peak_pending}; {retries} Retries sent; \
         relay RSS {base_rss} KiB before, {peak_rss} KiB at most; \
         new client after the flood connected in {after:?}; test ran {:?}",
        flood.sent,
        flood.took,
        flood.sent as f64 / flood.took.as_secs_f64(),
        started.elapsed(),
    ));

    publisher.wait_success().await?;
    sub.wait_success().await?;
    let got = received.await??;
    assert_eq!(got.len(), payload.len(), "bytes delivered");
    assert!(got == payload, "the track arrived altered");

    assert!(flood.sent >= FLOOD_INITIALS, "{} Initials sent", flood.sent);
    let (took, still) = during.context("no client tried during the flood")?;
    assert!(still, "the flood ended before the new client connected");
    assert!(
        took < connect_limit,
        "connect during the flood took {took:?}"
    );
    assert!(
        after < connect_limit,
        "connect after the flood took {after:?}"
    );
    assert!(retries > 0, "the flood met no Retry");
    assert!(
        peak_pending <= 1000,
        "{peak_pending} pending handshakes, over the default --max-pending-handshakes"
    );
    assert!(
        peak_rss < RSS_BOUND_KB,
        "relay RSS {peak_rss} KiB over {RSS_BOUND_KB} KiB"
    );
    Ok(())
}
