//! End-to-end over an impaired path: this machine's kernel has no `netem`, so a small
//! UDP forwarder in this file stands between one client and the relay, dropping,
//! delaying (with jitter, hence reordering) and duplicating datagrams in both
//! directions, its decisions drawn from a seeded PRNG (`MOQRING_TEST_SEED` replays them;
//! the timing of a run still varies). A file sent with `moqring pub --rate-mbit` must
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

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use tokio::io::AsyncWriteExt;
use tokio::net::UdpSocket;
use url::Url;

use common::{
    assert_bytes_eq, moqring_command, say, within_for, ChildProc, MoqringSub, Relay, Rng,
};

/// What the forwarder does to each datagram, in each direction.
#[derive(Clone, Copy, Debug)]
struct Impairment {
    /// Probability that a datagram is dropped.
    loss: f64,
    /// Base one-way delay added to every datagram.
    delay: Duration,
    /// Each datagram's delay is `delay` plus a uniform draw in `-jitter..=jitter`.
    jitter: Duration,
    /// Probability that a forwarded datagram is sent twice (the copy with its own delay).
    duplicate: f64,
}

impl Impairment {
    /// `loss` with 50 ms ± 10 ms of delay and 0.5 % duplicates.
    fn lossy(loss: f64) -> Self {
        Self {
            loss,
            delay: Duration::from_millis(50),
            jitter: Duration::from_millis(10),
            duplicate: 0.005,
        }
    }
}

/// Datagrams held in the forwarder's timers at most; beyond, new ones are dropped (a
/// bounded router queue). At a few Mbit/s and 60 ms this is never reached.
const MAX_IN_FLIGHT: usize = 4096;

/// Counters of one forwarder, both directions together.
#[derive(Default, Debug)]
struct Stats {
    received: AtomicU64,
    dropped: AtomicU64,
    duplicated: AtomicU64,
    overflowed: AtomicU64,
    sent: AtomicU64,
    /// Datagrams sent earlier than one received before them (in the same direction).
    reordered: AtomicU64,
}

impl Stats {
    fn line(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "received {} datagrams, dropped {}, duplicated {}, overflowed {}, sent {}, \
             overtaken by a later one {}",
            get(&self.received),
            get(&self.dropped),
            get(&self.duplicated),
            get(&self.overflowed),
            get(&self.sent),
            get(&self.reordered),
        )
    }
}

/// Arrival order in one direction of one client's path.
#[derive(Default)]
struct Order {
    /// Sequence number of the next datagram received.
    next: AtomicU64,
    /// One past the highest sequence number sent so far.
    sent: AtomicU64,
}

/// Shared state of a forwarder's tasks.
struct Shared {
    impairment: Impairment,
    rng: Mutex<Rng>,
    stats: Stats,
    in_flight: AtomicUsize,
}

impl Shared {
    /// Draws what happens to one datagram: the delays of its copies (none: dropped).
    fn fate(&self) -> Vec<Duration> {
        let imp = self.impairment;
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        let mut chance = |p: f64| (rng.next_u64() as f64 / u64::MAX as f64) < p;
        if chance(imp.loss) {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return Vec::new();
        }
        let copies = if chance(imp.duplicate) {
            self.stats.duplicated.fetch_add(1, Ordering::Relaxed);
            2
        } else {
            1
        };
        let span = imp.jitter.as_micros() as u64 * 2 + 1;
        (0..copies)
            .map(|_| imp.delay - imp.jitter + Duration::from_micros(rng.below(span)))
            .collect()
    }

    /// Sends `datagram` on `socket` (to `to`, or its connected peer) after the delays
    /// [`Self::fate`] draws, each copy on a timer of its own.
    fn forward(
        self: &Arc<Self>,
        socket: &Arc<UdpSocket>,
        to: Option<SocketAddr>,
        datagram: &[u8],
        order: &Arc<Order>,
    ) {
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        let seq = order.next.fetch_add(1, Ordering::Relaxed);
        for delay in self.fate() {
            if self.in_flight.fetch_add(1, Ordering::Relaxed) >= MAX_IN_FLIGHT {
                self.in_flight.fetch_sub(1, Ordering::Relaxed);
                self.stats.overflowed.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let (shared, socket, order) = (self.clone(), socket.clone(), order.clone());
            let datagram = datagram.to_vec();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = match to {
                    Some(to) => socket.send_to(&datagram, to).await,
                    None => socket.send(&datagram).await,
                };
                shared.in_flight.fetch_sub(1, Ordering::Relaxed);
                shared.stats.sent.fetch_add(1, Ordering::Relaxed);
                if order.sent.fetch_max(seq + 1, Ordering::Relaxed) > seq + 1 {
                    shared.stats.reordered.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    }
}

/// A lossy UDP forwarder on 127.0.0.1:0 in front of `relay`: each client address gets
/// an upstream socket of its own, connected to the relay, whose answers go back to that
/// client from the forwarder's address. Its tasks end when it is dropped.
struct Forwarder {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Forwarder {
    async fn start(relay: SocketAddr, impairment: Impairment, label: &str) -> Result<Self> {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        let addr = front.local_addr()?;
        let shared = Arc::new(Shared {
            impairment,
            rng: Mutex::new(Rng::seeded(label)),
            stats: Stats::default(),
            in_flight: AtomicUsize::new(0),
        });
        let task = tokio::spawn(serve(front, relay, shared.clone()));
        Ok(Self { addr, shared, task })
    }

    /// `moql://FORWARDER/path`.
    fn url(&self, path: &str) -> Url {
        Url::parse(&format!("moql://{}/{path}", self.addr)).expect("valid url")
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The forwarder's loop: client datagrams in on `front`, out on their upstream socket.
async fn serve(front: Arc<UdpSocket>, relay: SocketAddr, shared: Arc<Shared>) {
    let mut upstreams: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut readers = tokio::task::JoinSet::new();
    let mut orders: HashMap<SocketAddr, Arc<Order>> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, client)) = front.recv_from(&mut buf).await else {
            return;
        };
        let upstream = match upstreams.get(&client) {
            Some(upstream) => upstream.clone(),
            None => {
                let Ok(socket) = UdpSocket::bind("127.0.0.1:0").await else {
                    continue;
                };
                if socket.connect(relay).await.is_err() {
                    continue;
                }
                let socket = Arc::new(socket);
                upstreams.insert(client, socket.clone());
                // The relay's answers to this client, back through the front socket.
                let (front, socket2, shared) = (front.clone(), socket.clone(), shared.clone());
                readers.spawn(async move {
                    let to_client = Arc::new(Order::default());
                    let mut buf = vec![0u8; 65536];
                    while let Ok(n) = socket2.recv(&mut buf).await {
                        shared.forward(&front, Some(client), &buf[..n], &to_client);
                    }
                });
                socket
            }
        };
        let order = orders.entry(client).or_default();
        shared.forward(&upstream, None, &buf[..n], order);
    }
}

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
