//! A shard: one pinned thread running one monoio event loop over its UDP socket, its QUIC
//! connections and its relay.
//!
//! The loop has the phases of quiche's server example, each batched: receive every waiting
//! datagram -> route it to its connection (or accept one) -> let sessions turn stream data
//! into events -> let the relay act on them -> flush queues into quiche and send packets ->
//! sleep until the socket is readable or the earliest QUIC timer fires.

mod core;
mod table;

use std::net::SocketAddr;
use std::time::Instant;

use tracing::{debug, info, warn};

use crate::net::batch::RecvBatch;
use crate::net::gso;
use crate::net::udp::UdpIo;
use crate::relay::RelayConfig;
use crate::session::SessionConfig;
pub use core::Core;
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
        info!(addr = %io.local_addr(), io_uring = uring, gso = io.segment().is_some(), "shard listening");
        on_bound(io.local_addr());
        let core = Core::new(
            config.quic,
            config.session,
            config.relay,
            config.max_connections,
        );
        serve(io, core).await
    })
}

/// The event loop: receive batch -> sessions and relay -> send batch -> sleep.
async fn serve(io: UdpIo, mut core: Core) -> ! {
    let mut batch = RecvBatch::new();
    let mut out = vec![0u8; gso::MAX_BATCH];
    let local = io.local_addr();
    loop {
        loop {
            match io.recv_batch(&mut batch) {
                Ok(0) => break,
                Ok(_) => {
                    for (buf, from) in batch.datagrams() {
                        if let Some(reply) = core.on_datagram(buf, from, local) {
                            io.send(&reply, from);
                        }
                    }
                }
                Err(e) => {
                    debug!(error = %e, "recv failed");
                    break;
                }
            }
        }
        let now = Instant::now();
        core.dispatch(now);
        core.transmit(now, &mut out, io.segment(), |bytes, to| io.send(bytes, to));
        let timeout = core.next_timeout(Instant::now());
        io.wait(timeout, None).await;
    }
}

#[cfg(test)]
mod tests;
