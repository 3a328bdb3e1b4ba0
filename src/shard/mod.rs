//! A shard: one pinned thread running one monoio event loop over its UDP socket, its QUIC
//! connections and its relay.
//!
//! The loop has the phases of quiche's server example, each batched: receive every waiting
//! datagram -> route it to its connection (or accept one) -> let sessions turn stream data
//! into events -> let the relay act on them -> flush queues into quiche and send packets ->
//! sleep until the socket is readable or the earliest QUIC timer fires.

mod table;

use std::net::SocketAddr;
use std::time::Instant;

use tracing::{debug, info, warn};

use crate::net::udp::UdpIo;
use crate::relay::{Relay, RelayConfig};
use crate::session::{Event, SessionConfig};
pub use table::Table;

/// Everything a shard needs to start.
pub struct ShardConfig {
    pub bind: SocketAddr,
    pub quic: quiche::Config,
    pub relay: RelayConfig,
    pub session: SessionConfig,
    /// Connections this shard holds at most.
    pub max_connections: usize,
}

/// Reports the bound address once the socket is open.
pub type OnBound = Box<dyn FnOnce(SocketAddr) + Send>;

/// Runs a shard on the current thread until the process ends.
pub fn run(config: ShardConfig, on_bound: OnBound) -> std::io::Result<()> {
    let uring = monoio::utils::detect_uring();
    if !uring {
        warn!("io_uring unavailable: using the epoll driver");
    }
    let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .with_entries(1024)
        .enable_timer()
        .build()?;
    rt.block_on(async move {
        let io = UdpIo::bind(config.bind)?;
        info!(addr = %io.local_addr(), io_uring = uring, gso = io.gso(), "shard listening");
        on_bound(io.local_addr());
        let mut shard = Shard {
            io,
            table: Table::new(config.quic, config.session, config.max_connections),
            relay: Relay::new(config.relay),
            events: Vec::new(),
        };
        shard.serve().await
    })
}

struct Shard {
    io: UdpIo,
    table: Table,
    relay: Relay,
    events: Vec<Event>,
}

impl Shard {
    async fn serve(&mut self) -> ! {
        let mut buf = vec![0u8; 65536];
        let mut out = vec![0u8; crate::net::gso::MAX_BATCH];
        loop {
            self.receive(&mut buf);
            self.table.on_timeouts(Instant::now());
            self.dispatch();
            self.transmit(&mut out);
            self.table.remove_closed();
            let now = Instant::now();
            let timeout = match (self.table.next_timeout(now), self.relay.next_timeout()) {
                (Some(a), Some(b)) => Some(a.min(b.saturating_duration_since(now))),
                (a, b) => a.or(b.map(|t| t.saturating_duration_since(now))),
            };
            self.io.wait(timeout, None).await;
        }
    }

    /// Reads every waiting datagram and hands it to its connection.
    fn receive(&mut self, buf: &mut [u8]) {
        loop {
            match self.io.try_recv(buf) {
                Ok(Some((len, from))) => {
                    let local = self.io.local_addr();
                    if let Some(reply) = self.table.on_datagram(&mut buf[..len], from, local) {
                        self.io.send(&reply, from);
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    debug!(error = %e, "recv failed");
                    return;
                }
            }
        }
    }

    /// Turns received stream data into events and lets the relay act on them.
    fn dispatch(&mut self) {
        self.relay.tick(Instant::now(), &mut self.table);
        for key in self.table.keys() {
            let Some(session) = self.table.get_mut(key) else {
                continue;
            };
            session.process();
            session.drain_events(&mut self.events);
            for event in self.events.drain(..) {
                if matches!(event, Event::Closed) {
                    debug!(session = key, "connection closed");
                }
                self.relay.handle(key, event, &mut self.table);
            }
        }
    }

    /// Moves queued data into quiche and sends every packet it has ready.
    fn transmit(&mut self, out: &mut [u8]) {
        let now = Instant::now();
        for key in self.table.keys() {
            let Some(session) = self.table.get_mut(key) else {
                continue;
            };
            session.flush(now);
            if let Err(e) = self.io.send_from(session.conn_mut(), out) {
                debug!(session = key, error = %e, "send failed, closing");
                let _ = session.conn_mut().close(false, 0x1, b"send error");
            }
        }
    }
}
