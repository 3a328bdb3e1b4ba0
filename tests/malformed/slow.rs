//! The slow cases of the matrix, each measured by the relay's resident memory: a declared
//! length of a gigabyte trickled a byte at a time, and thousands of streams each left
//! holding half a message. (Peers that never read are driven from the test itself, beside
//! its metrics scrape.)

use std::net::SocketAddr;
use std::time::Duration;

use moqring::wire::{varint, ControlType, DataType, FrameHeader, Version};

use crate::honest::rss;
use crate::peer::{group_head, Outcome, Peer};
use crate::run::publisher_and_subscriber;

/// Bytes trickled after a gigabyte's declared length at most, one per [`TRICKLE_EVERY`].
const TRICKLE_BYTES: usize = 50;
const TRICKLE_EVERY: Duration = Duration::from_millis(20);

/// The length every trickle case declares.
pub const GIGABYTE: u64 = 1 << 30;

/// What one slow case did and cost.
#[derive(Debug)]
pub struct Measured {
    pub outcome: Outcome,
    /// Bytes the relay took from us (for trickles: after the declared length).
    pub sent: usize,
    /// The relay's RSS growth in bytes while our streams were held.
    pub growth: i64,
    /// Whether the session still answered a request afterwards.
    pub serves: bool,
}

fn varint(v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    varint::encode(v, &mut out);
    out
}

/// Sends `head` on a new stream (uni if `uni`), then one byte at a time until the relay
/// acts or [`TRICKLE_BYTES`] went in.
fn trickle(peer: &mut Peer, uni: bool, head: &[u8]) -> (Outcome, usize) {
    let id = if uni {
        peer.open_uni(head, false)
    } else {
        peer.open_bidi(head, false)
    };
    for sent in 0..TRICKLE_BYTES {
        let outcome = peer.outcome_within(id, TRICKLE_EVERY);
        if outcome != Outcome::Quiet {
            return (outcome, sent);
        }
        peer.send(id, b"a", false);
    }
    (Outcome::Quiet, TRICKLE_BYTES)
}

/// Runs `case` and measures the RSS of `pid` before it and after, while `case`'s peers
/// are still held (they are dropped, and their connections closed, afterwards).
fn measured<P>(pid: u32, case: impl FnOnce() -> (P, Outcome, usize, bool)) -> Measured {
    let before = rss(pid) as i64;
    let (held, outcome, sent, serves) = case();
    let growth = rss(pid) as i64 - before;
    drop(held);
    Measured {
        outcome,
        sent,
        growth,
        serves,
    }
}

/// A declared length of a gigabyte, trickled: on a SUBSCRIBE (lite-04), a lite-05 SETUP,
/// an ANNOUNCE from a publisher (lite-03), a frame of a publisher's group (lite-05), and
/// an HTTP/3 CONNECT's HEADERS frame.
pub fn gigabytes(addr: SocketAddr, pid: u32) -> Vec<(&'static str, Measured)> {
    let subscribe = measured(pid, || {
        let mut peer = Peer::connect(addr, Version::Lite04);
        let mut head = Vec::new();
        ControlType::Subscribe.encode(&mut head);
        head.extend(varint(GIGABYTE));
        let (outcome, sent) = trickle(&mut peer, false, &head);
        (peer, outcome, sent, false)
    });
    let setup = measured(pid, || {
        let mut peer = Peer::bare(addr, Version::Lite05);
        let mut head = Vec::new();
        DataType::Setup.encode(&mut head);
        head.extend(varint(GIGABYTE));
        let (outcome, sent) = trickle(&mut peer, true, &head);
        (peer, outcome, sent, false)
    });
    let announce = measured(pid, || {
        let mut publisher = Peer::connect(addr, Version::Lite03);
        let id = publisher.accept_announce_request();
        publisher.send(id, &varint(GIGABYTE), false);
        let mut sent = 0;
        let mut outcome = publisher.outcome_within(id, TRICKLE_EVERY);
        while outcome == Outcome::Quiet && sent < TRICKLE_BYTES {
            publisher.send(id, b"a", false);
            sent += 1;
            outcome = publisher.outcome_within(id, TRICKLE_EVERY);
        }
        (publisher, outcome, sent, false)
    });
    let frame = measured(pid, || {
        let (mut publisher, mut subscriber, broadcast) =
            publisher_and_subscriber(addr, Version::Lite05);
        subscriber.subscribe(0, &broadcast, "t");
        let (up, request) = publisher.accept_subscribe();
        publisher.start_subscription(up);
        let mut head = group_head(Version::Lite05, request.id, 0);
        FrameHeader {
            timestamp: 0,
            size: GIGABYTE,
        }
        .encode(&mut head, Version::Lite05, 0);
        let (outcome, sent) = trickle(&mut publisher, true, &head);
        let serves = publisher.serves() && subscriber.serves();
        ((publisher, subscriber), outcome, sent, serves)
    });
    let connect = measured(pid, || {
        let mut peer = Peer::h3(addr);
        let mut head = varint(0x01);
        head.extend(varint(GIGABYTE));
        let (outcome, sent) = trickle(&mut peer, false, &head);
        (peer, outcome, sent, false)
    });
    vec![
        ("SUBSCRIBE size", subscribe),
        ("SETUP size", setup),
        ("ANNOUNCE size", announce),
        ("FRAME size", frame),
        ("HTTP/3 HEADERS length", connect),
    ]
}

/// `streams` bidi streams of one lite-04 session, each holding the first `held` bytes of a
/// SUBSCRIBE whose size says 65536 (the largest accepted).
pub fn half_subscribes(addr: SocketAddr, pid: u32, streams: usize, held: usize) -> Measured {
    measured(pid, || {
        let mut peer = Peer::connect(addr, Version::Lite04);
        let mut bytes = Vec::new();
        ControlType::Subscribe.encode(&mut bytes);
        bytes.extend(varint(65536));
        bytes.resize(bytes.len() + held, 0);
        let ids = peer.next_bidis(streams);
        let writes: Vec<(u64, &[u8])> = ids.iter().map(|id| (*id, &bytes[..])).collect();
        peer.send_many(&writes, false);
        let outcome = peer.outcome_within(ids[0], Duration::from_millis(200));
        let serves = peer.serves();
        (peer, outcome, streams * bytes.len(), serves)
    })
}

/// `streams` uni streams of one lite-04 session, each holding half a group header.
pub fn half_group_headers(addr: SocketAddr, pid: u32, streams: usize) -> Measured {
    measured(pid, || {
        let mut peer = Peer::connect(addr, Version::Lite04);
        // Type 0 (group), a header size of 5, and one byte of it.
        let bytes = [0u8, 5, 0];
        let ids = peer.next_unis(streams);
        let writes: Vec<(u64, &[u8])> = ids.iter().map(|id| (*id, &bytes[..])).collect();
        peer.send_many(&writes, false);
        let outcome = peer.outcome_within(ids[0], Duration::from_millis(200));
        let serves = peer.serves();
        (peer, outcome, streams * bytes.len(), serves)
    })
}

/// `streams` bidi streams of a lite-05 session that never sends SETUP, each offered
/// `offered` bytes of a request for a few seconds: the relay reads none of them, so QUIC
/// flow control decides what it holds.
pub fn before_setup(addr: SocketAddr, pid: u32, streams: usize, offered: usize) -> Measured {
    measured(pid, || {
        let mut peer = Peer::bare(addr, Version::Lite05);
        let mut bytes = Vec::new();
        ControlType::Subscribe.encode(&mut bytes);
        bytes.extend(varint(65536));
        bytes.resize(offered, 0);
        let ids = peer.next_bidis(streams);
        let writes: Vec<(u64, &[u8])> = ids.iter().map(|id| (*id, &bytes[..])).collect();
        let sent = peer.offer(&writes, Duration::from_secs(4));
        let outcome = peer.outcome_within(ids[0], Duration::from_millis(200));
        (peer, outcome, sent, false)
    })
}
