//! The relay's shards: one pinned thread per core, each running one monoio event loop over
//! its own SO_REUSEPORT socket, its QUIC connections, its links to the other shards and its
//! relay. Shards share nothing mutable; they talk through bounded mailboxes (a flume queue
//! whose sender wakes the receiving loop through monoio's cross-thread eventfd).
//!
//! The loop has the phases of quiche's server example, each batched: receive every waiting
//! datagram and mail -> route datagrams to their connections (or accept one, or forward it
//! to its shard) -> let sessions turn stream data into events -> let the relay act on them
//! -> flush queues into quiche and send packets -> post this turn's mail -> sleep until the
//! socket is readable, mail arrives or the earliest timer fires.

mod admission;
mod cluster_links;
mod control;
mod core;
mod cores;
mod handshakes;
pub mod link;
mod meter;
mod peers;
mod retry;
mod table;
mod timers;

use std::cell::Cell;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::metrics::{Metrics, ShardMetrics};
use crate::net::batch::RecvBatch;
use crate::net::steer;
use crate::net::udp::UdpIo;
use crate::relay::{RelayConfig, Topology, MAX_SHARDS};
use crate::session::SessionConfig;
pub use admission::Admission;
pub use cluster_links::ClusterLinks;
pub use control::{Control, Drain};
pub use core::Core;
pub use cores::{
    available as available_cores, parse_list as parse_cores, plan as plan_cores, CoreList,
};
pub use handshakes::{
    HandshakePolicy, RetryMode, HANDSHAKE_TIMEOUT, MAX_PENDING as MAX_PENDING_HANDSHAKES,
    MAX_PER_ADDRESS as MAX_PENDING_PER_ADDRESS,
};
pub use link::Mail;
use meter::Meter;
pub use table::Table;

/// Mails a shard's mailbox holds at most (each is one loop turn of one other shard).
const MAILBOX_CAPACITY: usize = 1024;

/// Bytes of packets a shard gathers for one `sendmmsg` (at most [`crate::net::gso::MAX_RUNS`]
/// messages): room for every run of a frame's fan-out to 64 subscribers, or for 8 full
/// GSO runs of one fast connection.
const SEND_BATCH: usize = 512 << 10;

/// Mails a shard takes per loop turn, so its own sockets are not starved.
const MAILS_PER_TURN: usize = 64;

/// `recvmmsg` calls a shard makes per loop turn (up to 32 buffers each) before it serves
/// its sessions, so a flood of datagrams faster than the shard can take them (Initials
/// answered with Retry) does not keep established sessions waiting.
const RECV_CALLS_PER_TURN: usize = 32;

/// Everything the relay's shards need to start.
pub struct ShardConfig {
    pub bind: SocketAddr,
    /// One QUIC configuration per shard (quiche's is not `Clone`); their number is the
    /// shard count.
    pub quic: Vec<quiche::Config>,
    /// The core each shard is pinned to (`None`: not pinned).
    pub cores: Vec<Option<usize>>,
    pub relay: RelayConfig,
    pub session: SessionConfig,
    /// Connections the relay holds at most, over all shards.
    pub max_connections: usize,
    /// Pending handshakes: limits, deadline, Retry mode and key (shared by every shard).
    pub handshakes: HandshakePolicy,
    /// Attach the connection-ID steering program (else the kernel spreads datagrams by
    /// address hash and shards forward misrouted ones).
    pub steer: bool,
    /// Where the shards publish their metrics (one slot per shard).
    pub metrics: Arc<Metrics>,
    /// Orders from the signal thread: drain, reloaded certificates.
    pub control: Arc<Control>,
    /// Peer relays to dial (`--cluster-connect`), shared out over the shards.
    pub cluster: Option<crate::cluster::ClusterConfig>,
    /// Idle timeout of the cluster links we dial (milliseconds).
    pub idle_timeout_ms: u64,
}

/// Reports the bound address once the sockets are open (before the shards start); an
/// error stops the relay, but for `AddrInUse` on a drawn port (see [`PORT_DRAWS`]).
pub type OnBound = Box<dyn FnMut(SocketAddr) -> std::io::Result<()> + Send>;

/// How often a port is drawn for `--bind host:0` when [`OnBound`] finds the number taken
/// (the HTTP side door shares it over TCP, where another program may hold it).
const PORT_DRAWS: u32 = 8;

/// Binds the shards' sockets to `addr` and reports them to `on_bound`; a port drawn for
/// `addr` with port 0 is drawn again if `on_bound` finds its number taken.
fn bind(
    addr: SocketAddr,
    shards: usize,
    steer: bool,
    on_bound: &mut OnBound,
) -> std::io::Result<steer::Group> {
    let mut draws = 1;
    loop {
        let group = steer::bind_group(addr, shards, steer)?;
        let bound = group.sockets[0].local_addr()?;
        info!(addr = %bound, shards, steered = group.steered, "relay sockets bound");
        match on_bound(bound) {
            Ok(()) => return Ok(group),
            Err(e)
                if e.kind() == ErrorKind::AddrInUse && addr.port() == 0 && draws < PORT_DRAWS =>
            {
                info!(addr = %bound, "{e}; drawing another port");
                draws += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Binds the relay's sockets, starts one thread per shard and runs until a shard fails or
/// every shard has drained.
pub fn run(config: ShardConfig, mut on_bound: OnBound) -> std::io::Result<()> {
    let shards = config.quic.len();
    if shards == 0 || shards > MAX_SHARDS {
        return Err(std::io::Error::other(format!(
            "shard count {shards} out of range 1..={MAX_SHARDS}"
        )));
    }
    let group = bind(config.bind, shards, config.steer, &mut on_bound)?;
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..shards)
        .map(|_| flume::bounded::<Mail>(MAILBOX_CAPACITY))
        .unzip();
    config.control.wake_through(senders.clone());
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let admission = Admission::new(config.max_connections);
    let started = Arc::new(Barrier::new(shards));
    let parts = group
        .sockets
        .into_iter()
        .zip(config.quic)
        .zip(config.cores)
        .zip(receivers);
    for (index, (((socket, quic), core), inbox)) in parts.enumerate() {
        let shard = Shard {
            topology: Topology::new(index, shards),
            core,
            socket,
            quic,
            relay: config.relay.clone(),
            session: config.session.clone(),
            admission: admission.clone(),
            handshakes: config.handshakes.clone(),
            mailbox: Mailbox {
                inbox,
                senders: senders.clone(),
                full: Cell::new(0),
            },
            metrics: config.metrics.shard(index).clone(),
            control: config.control.clone(),
            started: started.clone(),
            cluster: config.cluster.clone(),
            idle_timeout_ms: config.idle_timeout_ms,
        };
        let done = done_tx.clone();
        std::thread::Builder::new()
            .name(format!("shard-{index}"))
            .spawn(move || {
                let span = tracing::info_span!("shard", index);
                let _entered = span.enter();
                let _running = shard.metrics.running();
                let result = shard.run();
                if let Err(e) = &result {
                    tracing::error!(error = %e, "shard stopped");
                }
                let _ = done.send(result);
            })?;
    }
    drop(done_tx);
    for _ in 0..shards {
        match done_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(std::io::Error::other("a shard thread panicked")),
        }
    }
    info!("drained: every shard has stopped");
    Ok(())
}

/// One shard before its thread starts.
struct Shard {
    topology: Topology,
    core: Option<usize>,
    socket: std::net::UdpSocket,
    quic: quiche::Config,
    relay: RelayConfig,
    session: SessionConfig,
    admission: Admission,
    handshakes: HandshakePolicy,
    mailbox: Mailbox,
    metrics: Arc<ShardMetrics>,
    control: Arc<Control>,
    /// Passed once every shard has posted its first requests to the others.
    started: Arc<Barrier>,
    cluster: Option<crate::cluster::ClusterConfig>,
    idle_timeout_ms: u64,
}

/// A shard's ends of the mailboxes: its own inbox, and a sender to every shard's.
struct Mailbox {
    inbox: flume::Receiver<Mail>,
    /// Indexed by shard (our own included, which keeps our inbox from ever disconnecting).
    senders: Vec<flume::Sender<Mail>>,
    /// Times a mailbox was full (for metrics).
    full: Cell<u64>,
}

impl Mailbox {
    /// Puts `mail` in `shard`'s inbox, or hands it back when the inbox is full.
    fn post(&self, shard: usize, mail: Mail) -> Result<(), Mail> {
        self.senders[shard].try_send(mail).map_err(|e| {
            self.full.set(self.full.get() + 1);
            e.into_inner()
        })
    }
}

impl Shard {
    /// Pins the thread, builds its monoio runtime and runs the event loop on it.
    fn run(self) -> std::io::Result<()> {
        if let Some(core) = self.core {
            match cores::pin(core) {
                Ok(()) => debug!(core, "pinned"),
                Err(e) => warn!(core, error = %e, "cannot pin the shard to its core"),
            }
        }
        let uring = monoio::utils::detect_uring();
        if !uring {
            warn!("io_uring unavailable: using the epoll driver");
        }
        let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .with_entries(1024)
            .enable_timer()
            .build()?;
        rt.block_on(async move {
            let io = UdpIo::from_std(self.socket)?;
            let gro = io.enable_gro();
            info!(addr = %io.local_addr(), io_uring = uring, gso = io.segment().is_some(), gro, core = ?self.core, "shard listening");
            let shard = self.topology.shard;
            let versions = self.session.versions.clone();
            let origin = self.session.origin;
            let mut core = Core::sharded(
                self.quic,
                self.session,
                self.relay,
                self.admission,
                self.topology,
            );
            core.set_handshakes(self.handshakes);
            if let Some(cluster) = &self.cluster {
                let links = ClusterLinks::new(
                    cluster,
                    (shard, self.topology.shards),
                    io.local_addr(),
                    versions,
                    self.idle_timeout_ms,
                    origin,
                );
                core.set_cluster(links);
            }
            // Every shard asks the others for their broadcasts before any shard serves a
            // datagram: a shard that started late would otherwise miss the broadcasts
            // announced before its request, and refuse the tracks it owns of them.
            core.post(|shard, mail| self.mailbox.post(shard, mail));
            self.started.wait();
            let orders = ShardOrders {
                control: &self.control,
                shard,
                seen: 0,
                draining: None,
            };
            serve(io, core, self.mailbox, Meter::new(self.metrics), orders).await;
            Ok(())
        })
    }
}

/// How long a draining shard sleeps at most, so it sees the relay's last connection leave.
const DRAIN_POLL: Duration = Duration::from_millis(50);

/// How long a shard waits for its closed connections' last packets after a drain.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// A shard's view of the signal thread's orders, and where its drain stands.
struct ShardOrders<'a> {
    control: &'a Control,
    shard: usize,
    seen: u64,
    draining: Option<Draining>,
}

struct Draining {
    deadline: Instant,
    /// When the remaining connections were closed.
    closed_at: Option<Instant>,
}

impl ShardOrders<'_> {
    /// Carries out new orders; returns `true` once this shard has drained and may stop.
    fn follow(&mut self, core: &mut Core, now: Instant) -> bool {
        if let Some(orders) = self.control.take(self.shard, &mut self.seen) {
            if let Some(drain) = &orders.drain {
                self.draining = Some(Draining {
                    deadline: drain.deadline,
                    closed_at: None,
                });
            }
            core.obey(orders);
        }
        let Some(d) = &mut self.draining else {
            return false;
        };
        match d.closed_at {
            // Every session of the relay has left, or time is up: close what remains.
            None if core.table().relay_connections() == 0 || now >= d.deadline => {
                if !core.table().is_empty() {
                    info!(
                        connections = core.table().len(),
                        "drain timeout: closing the remaining connections"
                    );
                }
                core.close_all();
                d.closed_at = Some(now);
                false
            }
            None => false,
            Some(at) => core.table().is_empty() || now >= at + CLOSE_GRACE,
        }
    }

    /// Caps a sleep while draining.
    fn cap(&self, timeout: Option<Duration>) -> Option<Duration> {
        match self.draining {
            Some(_) => Some(timeout.map_or(DRAIN_POLL, |t| t.min(DRAIN_POLL))),
            None => timeout,
        }
    }
}

/// The event loop: receive batch and mail -> orders -> sessions and relay -> send batch
/// and mail -> sleep until the socket, the mailbox or a timer wakes us. Returns once the
/// shard has drained.
async fn serve(
    io: UdpIo,
    mut core: Core,
    mailbox: Mailbox,
    mut meter: Meter,
    mut orders: ShardOrders<'_>,
) {
    let mut batch = RecvBatch::new();
    let mut out = io.send_batch_of(SEND_BATCH);
    let local = io.local_addr();
    let mut woken: Option<Mail> = None;
    loop {
        let start = Instant::now();
        let mut backlog = true;
        for _ in 0..RECV_CALLS_PER_TURN {
            match io.recv_batch(&mut batch) {
                Ok(0) => {
                    backlog = false;
                    break;
                }
                Ok(_) => {
                    for (buf, from) in batch.datagrams() {
                        meter.received();
                        if let Some(reply) = core.on_datagram(buf, from, local) {
                            io.send(&reply, from);
                        }
                    }
                }
                Err(e) => {
                    debug!(error = %e, "recv failed");
                    backlog = false;
                    break;
                }
            }
        }
        let mails = woken.take().into_iter().chain(mailbox.inbox.try_iter());
        for mail in mails.take(MAILS_PER_TURN) {
            core.on_mail(mail, |bytes, to| io.send(bytes, to));
        }
        let now = Instant::now();
        if orders.follow(&mut core, now) {
            return;
        }
        core.dispatch(now);
        core.transmit(now, &mut out, |batch| {
            meter.sent(io.send_batch(batch));
        });
        core.post(|shard, mail| mailbox.post(shard, mail));
        let end = Instant::now();
        let publish = meter.end_turn(start, end, &core, &mailbox);
        // Datagrams left in the socket, or mail waiting: straight into the next turn.
        if backlog || !mailbox.inbox.is_empty() {
            continue;
        }
        let timeout = match (core.next_timeout(end), publish) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        woken = wait(&io, orders.cap(timeout), &mailbox.inbox).await;
    }
}

/// Sleeps until the socket is readable, mail arrives (returned) or `timeout` passes.
async fn wait(
    io: &UdpIo,
    timeout: Option<Duration>,
    inbox: &flume::Receiver<Mail>,
) -> Option<Mail> {
    let sleep = async {
        match timeout {
            Some(d) => monoio::time::sleep(d).await,
            None => std::future::pending::<()>().await,
        }
    };
    monoio::select! {
        _ = io.readable() => None,
        _ = sleep => None,
        mail = inbox.recv_async() => mail.ok(),
    }
}

#[cfg(test)]
mod flood_tests;
#[cfg(test)]
mod sharded_tests;
#[cfg(test)]
mod tests;
