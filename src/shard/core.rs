//! The phases of a shard's loop without the socket: datagrams in, packets out.
//!
//! `Core` owns the connection table and the relay. The shard's event loop feeds it what the
//! socket received and sends what it hands back; tests drive it the same way in memory.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::debug;

use super::Table;
use crate::net::gso;
use crate::relay::{Relay, RelayConfig, SessionKey};
use crate::session::{Event, SessionConfig};

pub struct Core {
    table: Table,
    relay: Relay,
    events: Vec<Event>,
    /// Scratch list of session keys, reused every phase.
    keys: Vec<SessionKey>,
}

impl Core {
    pub fn new(
        quic: quiche::Config,
        session: SessionConfig,
        relay: RelayConfig,
        max_connections: usize,
    ) -> Self {
        Self {
            table: Table::new(quic, session, max_connections),
            relay: Relay::new(relay),
            events: Vec::new(),
            keys: Vec::new(),
        }
    }

    pub fn relay(&self) -> &Relay {
        &self.relay
    }

    pub fn table(&self) -> &Table {
        &self.table
    }

    /// Routes one received datagram; returns a datagram to send straight back, if any.
    pub fn on_datagram(
        &mut self,
        buf: &mut [u8],
        from: SocketAddr,
        local: SocketAddr,
    ) -> Option<Vec<u8>> {
        self.table.on_datagram(buf, from, local)
    }

    /// Runs expired QUIC and relay timers, then turns the received stream data of the
    /// sessions active this turn into events and lets the relay act on them.
    pub fn dispatch(&mut self, now: Instant) {
        self.table.on_timeouts(now);
        self.relay.tick(now, &mut self.table);
        self.table.active_into(&mut self.keys);
        for &key in &self.keys {
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

    /// Moves queued data into quiche and hands every ready packet to `send`, full-size runs
    /// of one connection batched by `segment` (GSO; `None`: one packet per send).
    pub fn transmit(
        &mut self,
        now: Instant,
        out: &mut [u8],
        segment: Option<usize>,
        send: impl FnMut(&[u8], SocketAddr),
    ) {
        self.flush(now);
        self.send(out, segment, send);
    }

    /// Moves the queued stream data of the sessions active this turn into quiche.
    pub fn flush(&mut self, now: Instant) {
        self.table.active_into(&mut self.keys);
        for &key in &self.keys {
            if let Some(session) = self.table.get_mut(key) {
                session.flush(now);
            }
        }
    }

    /// Hands every packet the active sessions have ready to `send`, ends the turn, and
    /// forgets closed connections.
    pub fn send(
        &mut self,
        out: &mut [u8],
        segment: Option<usize>,
        mut send: impl FnMut(&[u8], SocketAddr),
    ) {
        self.table.active_into(&mut self.keys);
        for &key in &self.keys {
            let Some(session) = self.table.get_mut(key) else {
                continue;
            };
            let conn = session.conn_mut();
            let sent = gso::drain(
                out,
                segment,
                |slot| match conn.send(slot) {
                    Ok((n, info)) => Ok(Some((n, info.to))),
                    Err(quiche::Error::Done) => Ok(None),
                    Err(e) => Err(e),
                },
                &mut send,
            );
            if let Err(e) = sent {
                debug!(session = key, error = %e, "send failed, closing");
                let _ = conn.close(false, 0x1, b"send error");
            }
        }
        self.table.clear_active();
        self.table.remove_closed();
    }

    /// Time until the earliest QUIC or relay timer.
    pub fn next_timeout(&self, now: Instant) -> Option<Duration> {
        let relay = self
            .relay
            .next_timeout()
            .map(|t| t.saturating_duration_since(now));
        match (self.table.next_timeout(now), relay) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
