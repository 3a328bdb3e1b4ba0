//! Two sessions, a client and a server, over quiche connections exchanging datagrams in
//! memory: no sockets, and a clock the test moves.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::schedule::group_urgency;
use super::zc::BytesFactory;
use super::{Event, Frame, Session, SessionConfig};
use crate::net::quic;
use crate::wire::{DataType, ErrorCode, FrameHeader, GroupHeader, Message, Subscribe, Version};

struct Pair {
    client: Session,
    server: Session,
    client_events: Vec<Event>,
    server_events: Vec<Event>,
    now: Instant,
    _identity: crate::tls::Identity,
}

const CLIENT: &str = "10.0.0.2:5000";
const SERVER: &str = "10.0.0.1:4443";

impl Pair {
    fn new(version: Version) -> Self {
        let client = SessionConfig {
            path: Some("/anon".into()),
            ..SessionConfig::default()
        };
        Self::with(version, client, SessionConfig::default())
    }

    /// The client asks for announcements under `prefix`: the server's announce stream.
    fn announce_interest(&mut self, prefix: &str) -> u64 {
        self.client.request_announces(prefix);
        self.pump();
        let stream = self.server_events.iter().find_map(|e| match e {
            Event::AnnounceInterest { stream, .. } => Some(*stream),
            _ => None,
        });
        stream.expect("the server saw the announce interest")
    }

    /// A pair whose sessions have these settings.
    fn with(
        version: Version,
        client_session: SessionConfig,
        server_session: SessionConfig,
    ) -> Self {
        Self::build(version, client_session, server_session, false)
    }

    /// A pair over raw QUIC, or over WebTransport (the client offers only HTTP/3).
    fn build(
        version: Version,
        client_session: SessionConfig,
        server_session: SessionConfig,
        webtransport: bool,
    ) -> Self {
        let identity = crate::tls::self_signed().expect("certificate");
        let mut server_config = quic::server_config(
            &identity.cert.to_string_lossy(),
            &identity.key.to_string_lossy(),
            &[version],
            30_000,
        )
        .unwrap();
        let mut client_config = quic::client_config(&[version], false, webtransport).unwrap();
        let (client_addr, server_addr): (SocketAddr, SocketAddr) =
            (CLIENT.parse().unwrap(), SERVER.parse().unwrap());
        let cid = quiche::ConnectionId::from_ref(&[1; quiche::MAX_CONN_ID_LEN]);
        let client = quiche::connect_with_buffer_factory::<BytesFactory>(
            Some("localhost"),
            &cid,
            client_addr,
            server_addr,
            &mut client_config,
        )
        .unwrap();
        let sid = quiche::ConnectionId::from_ref(&[2; quiche::MAX_CONN_ID_LEN]);
        let server = quiche::accept_with_buf_factory::<BytesFactory>(
            &sid,
            None,
            server_addr,
            client_addr,
            &mut server_config,
        )
        .unwrap();
        let mut pair = Self {
            client: Session::new(client, client_session),
            server: Session::new(server, server_session),
            client_events: Vec::new(),
            server_events: Vec::new(),
            now: Instant::now(),
            _identity: identity,
        };
        pair.pump();
        pair
    }

    /// Flushes both sides and moves datagrams until nothing moves.
    fn pump(&mut self) {
        let mut buf = vec![0u8; 65536];
        for _ in 0..10_000 {
            let moved = carry(
                &mut self.client,
                &mut self.server,
                CLIENT,
                SERVER,
                self.now,
                &mut buf,
            ) | carry(
                &mut self.server,
                &mut self.client,
                SERVER,
                CLIENT,
                self.now,
                &mut buf,
            );
            self.client.process();
            self.client.drain_events(&mut self.client_events);
            self.server.process();
            self.server.drain_events(&mut self.server_events);
            if !moved {
                return;
            }
        }
        panic!("the pair never settled");
    }
}

/// Flushes `from` and moves its datagrams to `to`; whether any moved.
fn carry(
    from: &mut Session,
    to: &mut Session,
    from_addr: &str,
    to_addr: &str,
    now: Instant,
    buf: &mut [u8],
) -> bool {
    from.flush(now);
    let info = quiche::RecvInfo {
        from: from_addr.parse().unwrap(),
        to: to_addr.parse().unwrap(),
    };
    let mut moved = false;
    while let Ok((n, _)) = from.conn_mut().send(buf) {
        moved = true;
        let _ = to.conn_mut().recv(&mut buf[..n], info);
    }
    moved
}

impl Pair {
    /// The client subscribes with `priority`, `ordered` and `max_latency`; returns the
    /// server's subscribe stream.
    fn subscribe(&mut self, priority: u8, ordered: bool, max_latency: Duration) -> u64 {
        let request = Subscribe {
            id: 0,
            broadcast: "anon/x".into(),
            track: "t".into(),
            priority,
            ordered,
            max_latency,
            start_group: None,
            end_group: None,
        };
        self.client.subscribe(&request, 0).unwrap();
        self.pump();
        self.server_events
            .iter()
            .find_map(|e| match e {
                Event::Subscribe { stream, .. } => Some(*stream),
                _ => None,
            })
            .expect("the server saw the subscription")
    }

    /// Urgencies the server gave its group streams, in opening order.
    fn urgencies(&self, groups: &[u64]) -> Vec<u8> {
        groups
            .iter()
            .map(|g| self.server.send.get(g).expect("group queued").urgency())
            .collect()
    }
}

#[test]
fn newer_groups_and_higher_priorities_go_first() {
    let mut pair = Pair::new(Version::Lite05);
    let low = pair.subscribe(10, false, Duration::ZERO);
    pair.server_events.clear();
    let high = pair.subscribe(200, false, Duration::ZERO);
    let low_groups: Vec<u64> = (0..3)
        .map(|seq| pair.server.open_group(low, seq).unwrap())
        .collect();
    // Each newer group outranks the older ones of its subscription.
    assert_eq!(
        pair.urgencies(&low_groups),
        vec![
            group_urgency(10, 2),
            group_urgency(10, 1),
            group_urgency(10, 0)
        ]
    );
    // A higher priority subscription's oldest group outranks them all.
    let high_groups: Vec<u64> = (0..2)
        .map(|seq| pair.server.open_group(high, seq).unwrap())
        .collect();
    let high_urgencies = pair.urgencies(&high_groups);
    assert!(
        high_urgencies[0] < group_urgency(10, 0),
        "{high_urgencies:?}"
    );
    assert!(high_urgencies[1] < high_urgencies[0]);

    // SUBSCRIBE_UPDATE lowers the second subscription below the first.
    let update = crate::wire::SubscribeUpdate {
        priority: 1,
        ordered: false,
        max_latency: Duration::ZERO,
        start_group: None,
        end_group: None,
    };
    let mut buf = Vec::new();
    crate::wire::Message::encode(&update, &mut buf, Version::Lite05);
    // The subscribe stream has the same id on both sides.
    pair.client.write(high, Bytes::from(buf));
    pair.pump();
    assert_eq!(
        pair.urgencies(&high_groups),
        vec![group_urgency(1, 1), group_urgency(1, 0)]
    );
}

#[test]
fn ordered_subscriptions_keep_sequence_order() {
    let mut pair = Pair::new(Version::Lite04);
    let stream = pair.subscribe(0, true, Duration::ZERO);
    let groups: Vec<u64> = (0..3)
        .map(|seq| pair.server.open_group(stream, seq).unwrap())
        .collect();
    // One urgency: quiche sends the lower (older) stream id first.
    assert_eq!(pair.urgencies(&groups), vec![group_urgency(0, 0); 3]);
}

#[test]
fn a_superseded_group_still_queued_past_the_budget_is_reset_with_old() {
    let mut pair = Pair::new(Version::Lite05);
    let stream = pair.subscribe(0, false, Duration::from_millis(100));
    let old = pair.server.open_group(stream, 0).unwrap();
    // The client learns which group the stream carries.
    let small = Frame::new(Bytes::from_static(b"first"), 0, 0);
    pair.server.send_frame(old, &small);
    pair.pump();
    // More than QUIC takes at once: most of it stays queued in the session.
    let big = Frame::new(Bytes::from(vec![7u8; 8 << 20]), 0, 0);
    pair.server.send_frame(old, &big);
    let new = pair.server.open_group(stream, 1).unwrap();
    pair.server.send_frame(new, &small);
    pair.server.finish_group(new);
    let start = pair.now;
    pair.server.flush(start);
    assert_eq!(
        pair.server
            .next_timeout()
            .map(|t| t <= start + Duration::from_millis(100)),
        Some(true),
        "the budget's end is a timer"
    );
    // Within the budget nothing is cut.
    pair.server.flush(start + Duration::from_millis(50));
    assert!(pair.server.send.contains_key(&old));
    assert_eq!(pair.server.late_groups(), 0);
    // Past it, the old group, still queued, is reset; the newer one is untouched.
    pair.server.flush(start + Duration::from_millis(101));
    assert_eq!(pair.server.late_groups(), 1);
    assert!(!pair.server.send.contains_key(&old));
    pair.now = start + Duration::from_millis(101);
    pair.pump();
    let client_resets: Vec<(u64, Option<u64>)> = pair
        .client_events
        .iter()
        .filter_map(|e| match e {
            Event::GroupEnd {
                sequence, error, ..
            } => Some((*sequence, *error)),
            _ => None,
        })
        .collect();
    assert!(
        client_resets.contains(&(0, Some(ErrorCode::Old.code()))),
        "{client_resets:?}"
    );
    assert!(client_resets.contains(&(1, None)), "{client_resets:?}");
}

#[test]
fn a_peer_too_far_behind_loses_its_oldest_groups_finished_or_not() {
    let mut pair = Pair::new(Version::Lite05);
    pair.server.config.max_queued_bytes = 1 << 20;
    let stream = pair.subscribe(0, true, Duration::from_secs(60));
    // Three groups of 4 MiB each, the first two finished: far more than QUIC's windows
    // take and the session may hold, with the peer reading nothing meanwhile.
    let small = Frame::new(Bytes::from_static(b"first"), 0, 0);
    let groups: Vec<u64> = (0..3)
        .map(|seq| {
            let g = pair.server.open_group(stream, seq).unwrap();
            pair.server.send_frame(g, &small);
            g
        })
        .collect();
    // The client learns which group each stream carries.
    pair.pump();
    let big = Frame::new(Bytes::from(vec![3u8; 4 << 20]), 0, 0);
    for (i, &g) in groups.iter().enumerate() {
        pair.server.send_frame(g, &big);
        pair.server.send_frame(g, &big);
        if i < 2 {
            pair.server.finish_group(g);
        }
    }
    pair.server.flush(pair.now);
    assert!(
        pair.server.queued_bytes() <= 1 << 20,
        "{} bytes still queued",
        pair.server.queued_bytes()
    );
    // The oldest go first, finished or not; the newest keeps what fits.
    assert!(
        pair.server.lagged_groups() >= 2,
        "{}",
        pair.server.lagged_groups()
    );
    assert!(!pair.server.send.contains_key(&groups[0]));
    assert!(!pair.server.send.contains_key(&groups[1]));
    pair.pump();
    let lagged: Vec<u64> = pair
        .client_events
        .iter()
        .filter_map(|e| match e {
            Event::GroupEnd {
                sequence,
                error: Some(code),
                ..
            } if *code == ErrorCode::Lagged.code() => Some(*sequence),
            _ => None,
        })
        .collect();
    assert!(lagged.contains(&0) && lagged.contains(&1), "{lagged:?}");
}

#[test]
fn a_broadcast_ends_for_a_subscriber_only_after_its_track_ended_and_a_grace() {
    let mut pair = Pair::new(Version::Lite05);
    let stream = pair.announce_interest("anon");
    pair.server.reply_announces(stream, &[("anon/x", &[])]);
    pair.pump();
    let sub = pair.subscribe(0, false, Duration::ZERO);
    pair.server.subscribe_ok(sub, 0);
    let group = pair.server.open_group(sub, 0).unwrap();
    pair.server
        .send_frame(group, &Frame::new(Bytes::from_static(b"last"), 0, 0));
    pair.server.finish_group(group);
    // The track ends cleanly, and the broadcast ends right behind it.
    pair.server.subscribe_end(sub, 1);
    pair.server.end_subscription(sub, None);
    pair.server.announce(stream, "anon/x", &[], false);
    pair.pump();
    let ended = |events: &[Event]| {
        events
            .iter()
            .any(|e| matches!(e, Event::Announced { active: false, .. }))
    };
    assert!(
        pair.client_events
            .iter()
            .any(|e| matches!(e, Event::SubscriptionClosed { error: None, .. })),
        "the client read the end of the track: {:?}",
        pair.client_events
    );
    // The client closes its side once it has the track's end, as a relay does when the
    // track ended (not at the publisher's FIN: see `on_stream_end`).
    pair.client.unsubscribe(sub);
    pair.pump();
    // Our FIN, alone after the client's, waits for its data's ACK (see `send`).
    pair.now += Duration::from_millis(100);
    pair.pump();
    assert!(
        !ended(&pair.client_events),
        "the end of the broadcast waits for the grace"
    );
    pair.now += Duration::from_millis(600);
    pair.pump();
    assert!(
        ended(&pair.client_events),
        "the end of the broadcast arrives after the grace"
    );
}

#[test]
fn a_group_arriving_after_the_clean_end_of_its_subscription_is_still_read() {
    let mut pair = Pair::new(Version::Lite05);
    let request = Subscribe {
        id: 0,
        broadcast: "anon/x".into(),
        track: "t".into(),
        priority: 0,
        ordered: false,
        max_latency: Duration::ZERO,
        start_group: None,
        end_group: None,
    };
    let ours = pair.client.subscribe(&request, 7).unwrap();
    pair.pump();
    let (served, id) = pair
        .server_events
        .iter()
        .find_map(|e| match e {
            Event::Subscribe { stream, request } => Some((*stream, request.id)),
            _ => None,
        })
        .expect("the server saw the subscription");
    // The publisher says the track is group 0 alone and FINs, before group 0's stream is
    // out (as @moq/net does).
    pair.server.subscribe_start(served, 0);
    pair.server.subscribe_end(served, 1);
    pair.server.end_subscription(served, None);
    pair.pump();
    assert!(pair.client_events.contains(&Event::SubscriptionClosed {
        token: 7,
        error: None
    }));
    let late_group = |pair: &mut Pair, sequence: u64| {
        let stream = pair.server.next_uni;
        pair.server.next_uni += 4;
        let mut buf = BytesMut::new();
        DataType::Group.encode(&mut buf);
        GroupHeader {
            subscribe: id,
            sequence,
        }
        .encode(&mut buf, Version::Lite05);
        FrameHeader {
            timestamp: 0,
            size: 4,
        }
        .encode(&mut buf, Version::Lite05, 0);
        buf.extend_from_slice(b"late");
        pair.server
            .conn_mut()
            .stream_send(stream, &buf, true)
            .unwrap();
        pair.pump();
    };
    late_group(&mut pair, 0);
    let frames: Vec<(u64, Bytes)> = pair
        .client_events
        .iter()
        .filter_map(|e| match e {
            Event::Frame {
                token: 7,
                sequence,
                frame,
            } => Some((*sequence, frame.payload().clone())),
            _ => None,
        })
        .collect();
    assert_eq!(frames, vec![(0, Bytes::from_static(b"late"))]);
    assert!(pair.client_events.contains(&Event::GroupEnd {
        token: 7,
        sequence: 0,
        error: None
    }));
    // Once the owner lets the subscription go, its groups are refused.
    pair.client.unsubscribe(ours);
    pair.pump();
    late_group(&mut pair, 1);
    let later = pair
        .client_events
        .iter()
        .filter(|e| matches!(e, Event::Group { sequence: 1, .. }))
        .count();
    assert_eq!(later, 0, "{:?}", pair.client_events);
}

/// The payloads of group `sequence`'s frames among `events`, in order.
fn frames_of(events: &[Event], sequence: u64) -> Vec<Bytes> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Frame {
                sequence: s, frame, ..
            } if *s == sequence => Some(frame.payload().clone()),
            _ => None,
        })
        .collect()
}

/// How group `sequence` ended among `events`: `Some(None)` finished, `Some(Some(code))`
/// reset, `None` not (yet).
fn group_end(events: &[Event], sequence: u64) -> Option<Option<u64>> {
    events.iter().find_map(|e| match e {
        Event::GroupEnd {
            sequence: s, error, ..
        } if *s == sequence => Some(*error),
        _ => None,
    })
}

#[path = "auth_tests.rs"]
mod auth;

#[path = "wt_tests.rs"]
mod wt;

#[path = "loss_tests.rs"]
mod loss;

#[test]
fn a_frame_size_written_wider_than_needed_reaches_every_version_intact() {
    // Found by fuzzing: lite-05 allows any varint width, and the timestamp's length was
    // taken as the header's minus the size's minimal width.
    let mut pair = Pair::new(Version::Lite05);
    let stream = pair.subscribe(0, true, Duration::from_secs(1));
    let group = pair.server.open_group(stream, 0).unwrap();
    pair.server
        .send_frame(group, &Frame::new(Bytes::from_static(b"first"), 0, 0));
    pair.pump();
    // Timestamp delta +5 (zigzag 10, one byte), then a size of 300 in four bytes.
    let payload = vec![0x5a; 300];
    let mut raw = vec![0x0a, 0x80, 0x00, 0x01, 0x2c];
    raw.extend_from_slice(&payload);
    pair.server
        .conn_mut()
        .stream_send(group, &raw, true)
        .unwrap();
    pair.pump();
    let frame = pair
        .client_events
        .iter()
        .filter_map(|e| match e {
            Event::Frame { frame, .. } => Some(frame.clone()),
            _ => None,
        })
        .nth(1)
        .expect("the client got the wide frame");
    assert_eq!(frame.payload()[..], payload[..]);
    for version in Version::ALL {
        let wire = frame.to_wire(version);
        let mut slice = &wire[..];
        let header = crate::wire::FrameHeader::decode(&mut slice, version, 0).unwrap();
        assert_eq!(header.size, 300, "{version}");
        if version.has_track_stream() {
            assert_eq!(header.timestamp, 5);
        }
        assert_eq!(slice, &payload[..], "{version}");
    }
}

#[test]
fn a_second_stream_for_a_group_already_opened_is_refused_as_duplicate() {
    let mut pair = Pair::new(Version::Lite05);
    let stream = pair.subscribe(0, true, Duration::from_secs(1));
    pair.server.subscribe_ok(stream, 0);
    let mut ids = Vec::new();
    for (sequence, payload) in [(0, &b"first"[..]), (0, b"second"), (1, b"third")] {
        let group = pair.server.open_group(stream, sequence).unwrap();
        ids.push(group);
        pair.server
            .send_frame(group, &Frame::new(Bytes::from_static(payload), 0, 0));
        if payload != b"second" {
            pair.server.finish_group(group);
        }
        pair.pump();
    }
    let mut groups = Vec::new();
    let mut frames = Vec::new();
    for e in &pair.client_events {
        match e {
            Event::Group { sequence, .. } => groups.push(*sequence),
            Event::Frame { frame, .. } => frames.push(frame.payload().clone()),
            _ => {}
        }
    }
    assert_eq!(
        groups,
        [0, 1],
        "the duplicate group 0 never reached the relay"
    );
    assert_eq!(frames, [&b"first"[..], b"third"]);
    // The duplicate's stream (left open) was stopped with `Duplicate`.
    let stopped = pair.server.conn_mut().stream_capacity(ids[1]);
    assert_eq!(
        stopped,
        Err(quiche::Error::StreamStopped(ErrorCode::Duplicate.code()))
    );
}

#[test]
fn seen_groups_tell_duplicates_within_128_of_the_newest() {
    let mut seen = super::SeenGroups::default();
    assert!(seen.insert(5));
    assert!(!seen.insert(5));
    assert!(seen.insert(3));
    assert!(!seen.insert(3));
    assert!(seen.insert(4));
    assert!(seen.insert(133), "a jump of 128");
    assert!(!seen.insert(5), "5 is 128 below the newest: still known");
    assert!(seen.insert(4), "130 below: too old to know");
    assert!(seen.insert(300), "past the window");
    assert!(!seen.insert(300));
    assert!(seen.insert(1), "too old to know: left to the relay");
    assert!(seen.insert(299));
    assert!(!seen.insert(299));
}

#[test]
fn a_newer_group_opened_before_an_older_late_one_still_ranks_first() {
    // Groups may reach the relay out of order (a publisher's newer group complete before
    // its older ones): rank is by sequence, not by when the stream opened.
    let mut pair = Pair::new(Version::Lite05);
    let stream = pair.subscribe(0, false, Duration::from_secs(1));
    let newer = pair.server.open_group(stream, 5).unwrap();
    let older = pair.server.open_group(stream, 2).unwrap();
    let middle = pair.server.open_group(stream, 3).unwrap();
    assert_eq!(
        pair.urgencies(&[newer, middle, older]),
        [
            group_urgency(0, 0),
            group_urgency(0, 1),
            group_urgency(0, 2)
        ]
    );
}

#[test]
fn broadcasts_whose_chain_passed_through_the_peer_are_not_announced_back_to_it() {
    for version in [Version::Lite04, Version::Lite05] {
        let client = SessionConfig {
            path: Some("/anon".into()),
            origin: 77,
            ..SessionConfig::default()
        };
        let server = SessionConfig {
            origin: 88,
            ..SessionConfig::default()
        };
        let mut pair = Pair::with(version, client, server);
        let stream = pair.announce_interest("anon");
        // The client's id (its exclude_hop) is on the chains of b and c: they came
        // through it.
        pair.server
            .reply_announces(stream, &[("anon/a", &[5]), ("anon/b", &[5, 77])]);
        pair.server.announce(stream, "anon/c", &[77, 9], true);
        pair.server.announce(stream, "anon/d", &[9], true);
        pair.pump();
        let heard: Vec<(String, Vec<u64>)> = pair
            .client_events
            .iter()
            .filter_map(|e| match e {
                Event::Announced {
                    path,
                    hops,
                    active: true,
                    ..
                } => Some((path.clone(), hops.clone())),
                _ => None,
            })
            .collect();
        // Each chain arrives with the server's id appended (by the server on lite-04, by
        // the client from ANNOUNCE_OK on lite-05).
        assert_eq!(
            heard,
            vec![
                ("anon/a".into(), vec![5, 88]),
                ("anon/d".into(), vec![9, 88])
            ],
            "{version}"
        );
    }
}

#[test]
fn a_route_change_restarts_the_announcement_on_lite05_and_ends_it_before() {
    for version in [Version::Lite04, Version::Lite05] {
        let client = SessionConfig {
            path: Some("/anon".into()),
            origin: 77,
            ..SessionConfig::default()
        };
        let mut pair = Pair::with(version, client, SessionConfig::default());
        let stream = pair.announce_interest("anon");
        pair.server
            .reply_announces(stream, &[("anon/a", &[5, 6, 7])]);
        pair.server
            .reannounce(stream, "anon/a", &[5, 6, 7], &[5, 8]);
        // A new chain through the client itself: it only hears the end.
        pair.server.reannounce(stream, "anon/a", &[5, 8], &[5, 77]);
        pair.pump();
        let heard: Vec<(bool, Vec<u64>)> = pair
            .client_events
            .iter()
            .filter_map(|e| match e {
                Event::Announced { hops, active, .. } => {
                    Some((*active, hops[..hops.len() - 1].to_vec()))
                }
                _ => None,
            })
            .collect();
        let want = match version {
            Version::Lite05 => vec![
                (true, vec![5, 6, 7]),
                (true, vec![5, 8]),
                (false, vec![5, 8]),
            ],
            _ => vec![
                (true, vec![5, 6, 7]),
                (false, vec![5, 6, 7]),
                (true, vec![5, 8]),
                (false, vec![5, 8]),
            ],
        };
        assert_eq!(heard, want, "{version}");
    }
}

/// Opens a group on a fresh subscription and sends one frame of it to the client, whose ACK
/// of it is then held back. Returns the group's stream and the frame's payload.
fn one_frame_out_with_its_ack_held(pair: &mut Pair, buf: &mut [u8]) -> (u64, Bytes) {
    let sub = pair.subscribe(0, true, Duration::ZERO);
    pair.server.subscribe_ok(sub, 0);
    pair.pump();
    let group = pair.server.open_group(sub, 0).unwrap();
    let payload = Bytes::from(vec![0x5a; 3000]);
    pair.server
        .send_frame(group, &Frame::new(payload.clone(), 0, 0));
    assert!(carry(
        &mut pair.server,
        &mut pair.client,
        SERVER,
        CLIENT,
        pair.now,
        buf
    ));
    pair.client.conn_mut().send_ack_eliciting().unwrap();
    (group, payload)
}

/// Lets the held ACK reach the server, runs the pair loss-free for a second and checks
/// that the client read the frame and the group's end.
fn ack_arrives_and_the_group_ends(pair: &mut Pair, buf: &mut [u8], payload: Bytes) {
    assert!(carry(
        &mut pair.client,
        &mut pair.server,
        CLIENT,
        SERVER,
        pair.now,
        buf
    ));
    pair.pump();
    pair.now += Duration::from_secs(1);
    pair.pump();
    assert_eq!(frames_of(&pair.client_events, 0), vec![payload]);
    assert_eq!(
        group_end(&pair.client_events, 0),
        Some(None),
        "the client read the group's end"
    );
}

/// quiche 0.30 counts a stream's send side complete once its data is acknowledged, FIN or
/// not (cloudflare/quiche#2525). A group's FIN that comes after its frames went out must
/// still reach the subscriber when their ACK is read before the FIN is sent.
#[test]
fn a_group_end_after_its_frames_went_out_survives_their_ack_coming_first() {
    let mut pair = Pair::new(Version::Lite05);
    let mut buf = vec![0u8; 65536];
    let (group, payload) = one_frame_out_with_its_ack_held(&mut pair, &mut buf);
    pair.server.finish_group(group);
    pair.server.flush(pair.now);
    // The ACK arrives before the server sends again.
    ack_arrives_and_the_group_ends(&mut pair, &mut buf, payload);
}

/// The other half of cloudflare/quiche#2525: a FIN written alone while the group's frames
/// are unacknowledged is lost with the stream if the packet carrying it is lost and the
/// frames' ACK (late: a slow return path, a lost ACK) is read after it was written. So the
/// FIN waits for that ACK, however late it comes.
#[test]
fn a_group_end_waits_for_its_frames_ack_so_a_late_ack_cannot_take_a_lost_fin_with_it() {
    let mut pair = Pair::new(Version::Lite05);
    let mut buf = vec![0u8; 65536];
    let (group, payload) = one_frame_out_with_its_ack_held(&mut pair, &mut buf);
    // The group ends long after its frame went out (far past a probe timeout), and
    // whatever the server sends then is lost.
    pair.now += Duration::from_millis(500);
    pair.server.finish_group(group);
    pair.server.flush(pair.now);
    while pair.server.conn_mut().send(&mut buf).is_ok() {}
    // The ACK arrives at last; from here on, nothing is lost.
    ack_arrives_and_the_group_ends(&mut pair, &mut buf, payload);
}
