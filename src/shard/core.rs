//! The phases of a shard's loop without the socket or the mailboxes: datagrams and mail
//! in, packets and mail out.
//!
//! `Core` owns the shard's connection table, its links to the other shards and its relay.
//! The shard's event loop feeds it what the socket and the mailbox received and sends what
//! it hands back; tests drive it the same way in memory.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::{debug, info};

use super::control::Orders;
use super::link::{Links, Mail, Message};
use super::peers::Peers;
use super::{Admission, Table};
use crate::metrics::{Slot, Tally};
use crate::net::gso::SendBatch;
use crate::net::steer;
use crate::relay::{Relay, RelayConfig, SessionKey, Topology};
use crate::session::{Event, SessionConfig};

/// How soon to retry posting mail that found another shard's mailbox full.
const MAIL_RETRY: Duration = Duration::from_millis(1);

pub struct Core {
    topology: Topology,
    table: Table,
    links: Links,
    relay: Relay,
    /// Messages from other shards waiting for the next dispatch.
    inbox: Vec<(usize, Vec<Message>)>,
    events: Vec<Event>,
    /// Scratch list of session keys, reused every phase.
    keys: Vec<SessionKey>,
    /// Packets written into send batches, and connections closed on a send error.
    packets: u64,
    send_errors: u64,
    /// The cluster links this shard dials, if any.
    cluster: Option<super::ClusterLinks>,
}

impl Core {
    /// The core of a single-shard relay.
    pub fn new(
        quic: quiche::Config,
        session: SessionConfig,
        relay: RelayConfig,
        max_connections: usize,
    ) -> Self {
        Self::sharded(
            quic,
            session,
            relay,
            Admission::new(max_connections),
            Topology::default(),
        )
    }

    /// The core of shard `topology.shard`: its connection IDs carry its index, and it asks
    /// every other shard for its broadcasts (the mail leaves with the first [`Core::post`]).
    pub fn sharded(
        quic: quiche::Config,
        session: SessionConfig,
        relay: RelayConfig,
        admission: Admission,
        topology: Topology,
    ) -> Self {
        let mut core = Self {
            topology,
            table: Table::new(quic, session, admission, topology.shard as u8),
            links: Links::new(topology),
            relay: Relay::sharded(relay, topology),
            inbox: Vec::new(),
            events: Vec::new(),
            keys: Vec::new(),
            packets: 0,
            send_errors: 0,
            cluster: None,
        };
        let mut peers = Peers::new(&mut core.table, &mut core.links);
        core.relay.open_links(&mut peers);
        core
    }

    /// Sets the relay's handshake limits and Retry key (before the first connection).
    pub fn set_handshakes(&mut self, policy: super::HandshakePolicy) {
        self.table.set_handshakes(policy);
    }

    /// Gives the shard its share of the cluster links (dialled from the next turn on).
    pub fn set_cluster(&mut self, links: Option<super::ClusterLinks>) {
        self.cluster = links;
    }

    /// Datagrams passed on to other shards so far.
    pub fn forwarded(&self) -> u64 {
        self.links.forwarded()
    }

    pub fn relay(&self) -> &Relay {
        &self.relay
    }

    /// Writes the shard's counters and gauges (connections, relay, sends) into `t`. Walks
    /// every session and track: call it to publish metrics, not per packet.
    pub fn tally(&self, t: &mut Tally) {
        self.table.tally(t);
        let stats = self.relay.stats();
        t.set(Slot::BytesIn, stats.publisher_bytes);
        t.set(Slot::FramesIn, stats.publisher_frames);
        t.set(Slot::GroupsIn, stats.publisher_groups);
        t.set(Slot::UpstreamSubscriptions, stats.upstream_subscribes);
        t.set(Slot::PublisherSubscriptions, stats.publisher_subscribes);
        t.set(Slot::Subscribes, stats.downstream_subscribes);
        t.set(Slot::Tracks, self.relay.track_count() as u64);
        t.set(Slot::Subscribers, self.relay.subscriber_count() as u64);
        let (bytes, groups) = self.relay.cache_usage();
        t.set(Slot::CacheBytes, bytes as u64);
        t.set(Slot::CacheGroups, groups as u64);
        t.set(Slot::DatagramsOut, self.packets);
        t.set(Slot::SendErrors, self.send_errors);
        t.set(Slot::Forwarded, self.links.forwarded());
    }

    pub fn table(&self) -> &Table {
        &self.table
    }

    /// Carries out the orders of the signal thread (see [`super::control`]).
    pub fn obey(&mut self, orders: Orders) {
        if let Some(quic) = orders.quic {
            self.table.set_quic(quic);
            info!("certificate reloaded: new connections get the new one");
        }
        if let Some(drain) = orders.drain {
            info!(redirect = %drain.redirect, "draining: new connections refused, GOAWAY sent");
            self.table.drain(&drain.redirect);
        }
    }

    /// Ends a drain: closes every connection of this shard cleanly.
    pub fn close_all(&mut self) {
        self.table.close_all("relay shutting down");
    }

    /// Routes one datagram from the socket: to its connection here, or on to the shard its
    /// connection ID names. Returns a datagram to send straight back, if any.
    pub fn on_datagram(
        &mut self,
        buf: &mut [u8],
        from: SocketAddr,
        local: SocketAddr,
    ) -> Option<Vec<u8>> {
        let home = steer::home_shard(buf, self.topology.shards);
        if home != self.topology.shard {
            if self.links.forwarded() == 0 {
                info!(
                    shard = home,
                    "datagram for another shard: forwarding through its mailbox"
                );
            }
            self.links.forward(home, buf, from, local);
            return None;
        }
        self.table.on_datagram(buf, from, local)
    }

    /// Takes mail from another shard: its datagrams go to their connections now (replies
    /// to `reply`), its messages to the relay at the next [`Core::dispatch`].
    pub fn on_mail(&mut self, mail: Mail, mut reply: impl FnMut(&[u8], SocketAddr)) {
        for mut d in mail.datagrams {
            if let Some(back) = self.table.on_datagram(&mut d.data, d.from, d.to) {
                reply(&back, d.from);
            }
        }
        if !mail.messages.is_empty() {
            self.inbox.push((mail.from, mail.messages));
        }
    }

    /// Runs expired QUIC and relay timers, hands the other shards' messages to the relay,
    /// then turns the received stream data of the sessions active this turn into events
    /// and lets the relay act on them.
    pub fn dispatch(&mut self, now: Instant) {
        self.table.on_timeouts(now);
        if let Some(cluster) = &mut self.cluster {
            cluster.turn(&mut self.table, now);
        }
        let mut peers = Peers::new(&mut self.table, &mut self.links);
        self.relay.tick(now, &mut peers);
        for (from, messages) in self.inbox.drain(..) {
            peers.links().receive(from, messages, &mut self.events);
            let link = Topology::link(from);
            for event in self.events.drain(..) {
                self.relay.handle(link, event, &mut peers);
            }
        }
        self.table.active_into(&mut self.keys);
        for &key in &self.keys {
            let Some(session) = self.table.get_mut(key) else {
                continue;
            };
            session.process();
            session.drain_events(&mut self.events);
            let mut peers = Peers::new(&mut self.table, &mut self.links);
            for event in self.events.drain(..) {
                if matches!(event, Event::Closed) {
                    debug!(session = key, "connection closed");
                }
                self.relay.handle(key, event, &mut peers);
            }
        }
    }

    /// Hands this turn's mail for other shards to `post` (which returns what a full
    /// mailbox could not take; it is kept for the next turn).
    pub fn post(&mut self, post: impl FnMut(usize, Mail) -> Result<(), Mail>) {
        self.links.post(post);
    }

    /// Moves queued data into quiche and hands the ready packets to `send`, gathered in
    /// `batch` (see [`Core::send`]).
    pub fn transmit(&mut self, now: Instant, batch: &mut SendBatch, send: impl FnMut(&SendBatch)) {
        self.flush(now);
        self.send(batch, send);
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

    /// Gathers every packet the active sessions have ready into `batch` and hands it to
    /// `send` whenever it is full and once at the end (one `sendmmsg` for many
    /// connections; each connection's full-size packets form GSO runs), ends the turn, and
    /// forgets closed connections.
    pub fn send(&mut self, batch: &mut SendBatch, mut send: impl FnMut(&SendBatch)) {
        self.table.active_into(&mut self.keys);
        for &key in &self.keys {
            let Some(session) = self.table.get_mut(key) else {
                continue;
            };
            let conn = session.conn_mut();
            let filled = batch.fill(
                |slot| match conn.send(slot) {
                    Ok((n, info)) => Ok(Some((n, info.to))),
                    Err(quiche::Error::Done) => Ok(None),
                    Err(e) => Err(e),
                },
                &mut send,
            );
            match filled {
                Ok(packets) => self.packets += packets as u64,
                Err(e) => {
                    self.send_errors += 1;
                    debug!(session = key, error = %e, "send failed, closing");
                    let _ = conn.close(false, 0x1, b"send error");
                }
            }
        }
        if !batch.is_empty() {
            send(batch);
            batch.clear();
        }
        self.table.end_turn();
    }

    /// Time until the earliest QUIC or relay timer (soon, while mail waits for room).
    pub fn next_timeout(&self, now: Instant) -> Option<Duration> {
        let relay = self
            .relay
            .next_timeout()
            .map(|t| t.saturating_duration_since(now));
        let mail = self.links.has_pending().then_some(MAIL_RETRY);
        let cluster = self
            .cluster
            .as_ref()
            .and_then(|c| c.next_wake())
            .map(|t| t.saturating_duration_since(now));
        [self.table.next_timeout(now), relay, mail, cluster]
            .into_iter()
            .flatten()
            .min()
    }
}
