//! A lossy UDP forwarder for end-to-end tests: this machine's kernel has no `netem`, so it
//! stands between clients and the relay, dropping, delaying (with jitter, hence
//! reordering) and duplicating datagrams in both directions, its decisions drawn from a
//! seeded PRNG (`MOQRING_TEST_SEED` replays them; the timing of a run still varies).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use tokio::net::UdpSocket;
use url::Url;

use super::Rng;

/// What the forwarder does to each datagram, in each direction.
#[derive(Clone, Copy, Debug)]
pub struct Impairment {
    /// Probability that a datagram is dropped.
    pub loss: f64,
    /// Base one-way delay added to every datagram.
    pub delay: Duration,
    /// Each datagram's delay is `delay` plus a uniform draw in `-jitter..=jitter`.
    pub jitter: Duration,
    /// Probability that a forwarded datagram is sent twice (the copy with its own delay).
    pub duplicate: f64,
}

impl Impairment {
    /// `loss` with 50 ms ± 10 ms of delay and 0.5 % duplicates.
    pub fn lossy(loss: f64) -> Self {
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
pub struct Stats {
    pub received: AtomicU64,
    pub dropped: AtomicU64,
    pub duplicated: AtomicU64,
    pub overflowed: AtomicU64,
    pub sent: AtomicU64,
    /// Datagrams sent earlier than one received before them (in the same direction).
    pub reordered: AtomicU64,
}

impl Stats {
    pub fn line(&self) -> String {
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
pub struct Shared {
    impairment: Impairment,
    rng: Mutex<Rng>,
    pub stats: Stats,
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
pub struct Forwarder {
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Forwarder {
    pub async fn start(relay: SocketAddr, impairment: Impairment, label: &str) -> Result<Self> {
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
    pub fn url(&self, path: &str) -> Url {
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
