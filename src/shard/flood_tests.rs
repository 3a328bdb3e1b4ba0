//! Handshake limits of a whole relay `Core` in memory (no sockets, a skewed clock):
//! pending handshakes capped per address and per relay, dropped at their deadline,
//! Retry over the threshold, and a Retry token good only from its own address.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{Core, HandshakePolicy, RetryMode};
use crate::metrics::{Slot, Tally};
use crate::net::gso::SendBatch;
use crate::net::quic;
use crate::relay::RelayConfig;
use crate::session::SessionConfig;
use crate::wire::Version;

const RELAY: &str = "10.0.0.1:4443";

struct Relay {
    core: Core,
    _identity: crate::tls::Identity,
}

fn relay(retry: RetryMode, max_pending: usize, per_address: usize) -> Relay {
    let identity = crate::tls::self_signed().expect("certificate");
    let config = quic::server_config(
        &identity.cert.to_string_lossy(),
        &identity.key.to_string_lossy(),
        &Version::ALL,
        30_000,
    )
    .expect("server config");
    let mut core = Core::new(
        config,
        SessionConfig::default(),
        RelayConfig::default(),
        100,
    );
    let policy = HandshakePolicy::new(
        retry,
        Duration::from_secs(10),
        max_pending,
        per_address,
        Instant::now(),
    )
    .unwrap();
    core.set_handshakes(policy);
    Relay {
        core,
        _identity: identity,
    }
}

/// A client at `from` that has sent nothing yet.
fn client(from: &str, n: u8) -> (SocketAddr, quiche::Connection) {
    let from: SocketAddr = from.parse().unwrap();
    let mut config = quic::client_config(&[Version::Lite05], false, false).unwrap();
    let scid = [n; 16];
    let scid = quiche::ConnectionId::from_ref(&scid);
    let conn = quiche::connect(
        Some("localhost"),
        &scid,
        from,
        RELAY.parse().unwrap(),
        &mut config,
    )
    .unwrap();
    (from, conn)
}

/// The client's next datagram (its Initial first).
fn datagram(conn: &mut quiche::Connection) -> Vec<u8> {
    let mut buf = vec![0u8; 1500];
    let (len, _) = conn.send(&mut buf).expect("a datagram to send");
    buf.truncate(len);
    buf
}

impl Relay {
    /// Feeds a datagram from `from`; returns what the relay answers straight away.
    fn feed(&mut self, mut datagram: Vec<u8>, from: SocketAddr) -> Option<Vec<u8>> {
        self.core
            .on_datagram(&mut datagram, from, RELAY.parse().unwrap())
    }

    /// A new client's Initial from `from`; returns the relay's direct answer.
    fn initial(&mut self, from: &str, n: u8) -> Option<Vec<u8>> {
        let (from, mut conn) = client(from, n);
        self.feed(datagram(&mut conn), from)
    }

    fn tally(&self) -> Tally {
        let mut t = Tally::default();
        self.core.tally(&mut t);
        t
    }

    fn pending(&self) -> usize {
        self.core.table().pending_handshakes()
    }

    /// One loop turn at `now`: timers, dispatch, send; the packets go to `deliver`.
    fn turn(&mut self, now: Instant, mut deliver: impl FnMut(&[u8], SocketAddr)) {
        let mut batch = SendBatch::new(1 << 20, None);
        self.core.dispatch(now);
        self.core.transmit(now, &mut batch, |b| {
            for (bytes, to) in b.runs() {
                deliver(bytes, to);
            }
        });
    }

    /// Runs the handshake of `conn` at `from` until both ends have it (a few round
    /// trips; packets to other clients are lost).
    fn complete(&mut self, from: SocketAddr, conn: &mut quiche::Connection) {
        let relay: SocketAddr = RELAY.parse().unwrap();
        let mut settled = false;
        for _ in 0..20 {
            let mut buf = vec![0u8; 1500];
            while let Ok((len, _)) = conn.send(&mut buf) {
                self.feed(buf[..len].to_vec(), from);
            }
            if settled {
                return;
            }
            settled = conn.is_established();
            self.turn(Instant::now(), |bytes, to| {
                if to == from {
                    let mut bytes = bytes.to_vec();
                    let info = quiche::RecvInfo { from: relay, to };
                    let _ = conn.recv(&mut bytes, info);
                }
            });
        }
        panic!("the handshake did not complete");
    }
}

#[test]
fn pending_handshakes_are_capped_then_dropped_at_their_deadline() {
    let mut r = relay(RetryMode::Never, 3, 2);
    assert_eq!(r.initial("10.0.1.1:5000", 1), None);
    assert_eq!(r.initial("10.0.1.1:5001", 2), None);
    // A third from the same address: over its cap, no state.
    assert_eq!(r.initial("10.0.1.1:5002", 3), None);
    assert_eq!(r.initial("10.0.1.2:5000", 4), None);
    // The relay-wide cap of 3 is reached.
    assert_eq!(r.initial("10.0.1.3:5000", 5), None);
    let t = r.tally();
    assert_eq!(r.pending(), 3);
    assert_eq!(t.get(Slot::ConnectionsOpen), 3);
    assert_eq!(t.get(Slot::RefusedAddress), 1);
    assert_eq!(t.get(Slot::RefusedHandshakes), 1);

    // Before the deadline nothing goes; after it every pending handshake is dropped
    // without a packet to its (maybe forged) address.
    r.turn(Instant::now() + Duration::from_secs(5), |_, _| {});
    assert_eq!(r.pending(), 3);
    let mut sent = 0;
    r.turn(Instant::now() + Duration::from_secs(11), |_, _| sent += 1);
    assert_eq!(sent, 0);
    let t = r.tally();
    assert_eq!(r.pending(), 0);
    assert_eq!(t.get(Slot::ConnectionsOpen), 0);
    assert_eq!(t.get(Slot::HandshakesTimedOut), 3);
    assert_eq!(r.core.table().relay_connections(), 0);

    // Their places are free again.
    assert_eq!(r.initial("10.0.1.1:5003", 6), None);
    assert_eq!(r.pending(), 1);
}

#[test]
fn a_completed_handshake_leaves_the_pending_count() {
    let mut r = relay(RetryMode::Never, 10, 10);
    let (from, mut conn) = client("10.0.1.1:5000", 1);
    assert_eq!(r.feed(datagram(&mut conn), from), None);
    assert_eq!(r.pending(), 1);
    r.complete(from, &mut conn);
    r.turn(Instant::now(), |_, _| {});
    assert_eq!(r.pending(), 0);
    // Its deadline passes harmlessly: the connection stays.
    r.turn(Instant::now() + Duration::from_secs(11), |_, _| {});
    let t = r.tally();
    assert_eq!(t.get(Slot::ConnectionsOpen), 1);
    assert_eq!(t.get(Slot::HandshakesTimedOut), 0);
}

#[test]
fn over_half_the_limit_initials_get_a_retry_and_its_token_gets_them_in() {
    let mut r = relay(RetryMode::Auto, 4, 16);
    assert_eq!(r.initial("10.0.1.1:5000", 1), None);
    assert_eq!(r.initial("10.0.1.2:5000", 2), None);
    assert_eq!(r.pending(), 2);

    let (from, mut conn) = client("10.0.1.3:5000", 3);
    let initial = datagram(&mut conn);
    let retry = r.feed(initial.clone(), from).expect("a Retry");
    let header = quiche::Header::from_slice(&mut retry.clone(), quiche::MAX_CONN_ID_LEN).unwrap();
    assert_eq!(header.ty, quiche::Type::Retry);
    assert_eq!(r.pending(), 2, "a Retry keeps no state");
    assert_eq!(r.tally().get(Slot::RetriesSent), 1);

    let mut retry = retry;
    let info = quiche::RecvInfo {
        from: RELAY.parse().unwrap(),
        to: from,
    };
    conn.recv(&mut retry, info)
        .expect("the client takes the Retry");
    let with_token = datagram(&mut conn);

    // The same token from another address (or port) is refused.
    let elsewhere: SocketAddr = "10.0.1.4:5000".parse().unwrap();
    assert_eq!(r.feed(with_token.clone(), elsewhere), None);
    assert_eq!(r.tally().get(Slot::RefusedToken), 1);
    assert_eq!(r.pending(), 2);

    assert_eq!(r.feed(with_token, from), None);
    assert_eq!(r.pending(), 3);
    r.complete(from, &mut conn);
    r.turn(Instant::now(), |_, _| {});
    assert_eq!(r.pending(), 2);
    assert_eq!(r.tally().get(Slot::ConnectionsAccepted), 3);
}

#[test]
fn retry_always_answers_every_first_initial() {
    let mut r = relay(RetryMode::Always, 100, 16);
    for n in 0..10u8 {
        let answer = r.initial(&format!("10.0.2.{n}:5000"), n);
        assert!(answer.is_some(), "Initial {n} got no Retry");
    }
    assert_eq!(r.pending(), 0);
    assert_eq!(r.tally().get(Slot::RetriesSent), 10);
    assert_eq!(r.tally().get(Slot::ConnectionsOpen), 0);
}
