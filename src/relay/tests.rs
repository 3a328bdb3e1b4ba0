//! Relay logic driven by events against a recording `Sessions`: no sockets, no QUIC.

use bytes::Bytes;

use super::*;
use crate::session::{Event, Frame};
use crate::wire::{ErrorCode, Subscribe, TrackInfo};

/// One call the relay made.
#[derive(Debug, Clone, PartialEq)]
enum Call {
    RequestAnnounces(SessionKey, String),
    ReplyAnnounces(SessionKey, u64, Vec<String>),
    Announce(SessionKey, u64, String, bool),
    Subscribe(SessionKey, String, String, usize),
    Unsubscribe(SessionKey, u64),
    RequestTrack(SessionKey, String, String),
    ReplyTrack(SessionKey, u64),
    ReplyFetch(SessionKey, u64, Vec<Bytes>),
    Reject(SessionKey, u64, ErrorCode),
    SubscribeOk(SessionKey, u64),
    SubscribeStart(SessionKey, u64, u64),
    SubscribeEnd(SessionKey, u64, u64),
    EndSubscription(SessionKey, u64, Option<u64>),
    OpenGroup(SessionKey, u64, u64, u64),
    Frame(SessionKey, u64, Bytes),
    FinishGroup(SessionKey, u64),
    ResetGroup(SessionKey, u64, u64),
}

#[derive(Default)]
struct Recorder {
    calls: Vec<Call>,
    next_stream: u64,
    /// Sessions whose version has track properties (lite-05).
    lite05: Vec<SessionKey>,
    queued: usize,
    /// Sessions that left without a clean close.
    abrupt: Vec<SessionKey>,
}

impl Recorder {
    fn take(&mut self) -> Vec<Call> {
        std::mem::take(&mut self.calls)
    }

    fn stream(&mut self) -> u64 {
        self.next_stream += 4;
        1000 + self.next_stream
    }
}

impl Sessions for Recorder {
    fn root(&self, _s: SessionKey) -> String {
        String::new()
    }
    fn left_abruptly(&self, s: SessionKey) -> bool {
        self.abrupt.contains(&s)
    }
    fn request_announces(&mut self, s: SessionKey, prefix: &str) -> Option<u64> {
        self.calls.push(Call::RequestAnnounces(s, prefix.into()));
        Some(self.stream())
    }
    fn reply_announces(&mut self, s: SessionKey, stream: u64, initial: &[(&str, &[u64])]) {
        let paths = initial.iter().map(|(p, _)| p.to_string()).collect();
        self.calls.push(Call::ReplyAnnounces(s, stream, paths));
    }
    fn announce(&mut self, s: SessionKey, stream: u64, b: &str, _hops: &[u64], active: bool) {
        self.calls.push(Call::Announce(s, stream, b.into(), active));
    }
    fn subscribe(&mut self, s: SessionKey, request: &Subscribe, token: usize) -> Option<u64> {
        let (b, t) = (request.broadcast.clone(), request.track.clone());
        self.calls.push(Call::Subscribe(s, b, t, token));
        Some(self.stream())
    }
    fn unsubscribe(&mut self, s: SessionKey, stream: u64) {
        self.calls.push(Call::Unsubscribe(s, stream));
    }
    fn request_track(&mut self, s: SessionKey, b: &str, t: &str, _token: usize) -> Option<u64> {
        if !self.lite05.contains(&s) {
            return None;
        }
        self.calls.push(Call::RequestTrack(s, b.into(), t.into()));
        Some(self.stream())
    }
    fn reply_track(&mut self, s: SessionKey, stream: u64, _info: &TrackInfo) {
        self.calls.push(Call::ReplyTrack(s, stream));
    }
    fn fetch(&mut self, _: SessionKey, _: &crate::wire::Fetch, _: usize) -> Option<u64> {
        None
    }
    fn reply_fetch(&mut self, s: SessionKey, stream: u64, frames: &[Frame]) {
        let payloads = frames.iter().map(|f| f.payload().clone()).collect();
        self.calls.push(Call::ReplyFetch(s, stream, payloads));
    }
    fn reject(&mut self, s: SessionKey, stream: u64, code: ErrorCode) {
        self.calls.push(Call::Reject(s, stream, code));
    }
    fn subscribe_ok(&mut self, s: SessionKey, stream: u64, _priority: u8) {
        self.calls.push(Call::SubscribeOk(s, stream));
    }
    fn subscribe_start(&mut self, s: SessionKey, stream: u64, group: u64) {
        self.calls.push(Call::SubscribeStart(s, stream, group));
    }
    fn subscribe_end(&mut self, s: SessionKey, stream: u64, group: u64) {
        self.calls.push(Call::SubscribeEnd(s, stream, group));
    }
    fn end_subscription(&mut self, s: SessionKey, stream: u64, error: Option<u64>) {
        self.calls.push(Call::EndSubscription(s, stream, error));
    }
    fn open_group(&mut self, s: SessionKey, stream: u64, sequence: u64) -> Option<u64> {
        let id = self.stream();
        self.calls.push(Call::OpenGroup(s, stream, sequence, id));
        Some(id)
    }
    fn send_frame(&mut self, s: SessionKey, group: u64, frame: &Frame) {
        self.calls
            .push(Call::Frame(s, group, frame.payload().clone()));
    }
    fn finish_group(&mut self, s: SessionKey, group: u64) {
        self.calls.push(Call::FinishGroup(s, group));
    }
    fn reset_group(&mut self, s: SessionKey, group: u64, code: u64) {
        self.calls.push(Call::ResetGroup(s, group, code));
    }
    fn queued_bytes(&self, _s: SessionKey) -> usize {
        self.queued
    }
}

const PUB: SessionKey = 1;

fn subscribe(id: u64, broadcast: &str) -> Subscribe {
    Subscribe {
        id,
        broadcast: broadcast.into(),
        track: "video".into(),
        priority: 0,
        ordered: false,
        max_latency: std::time::Duration::ZERO,
        start_group: None,
        end_group: None,
    }
}

fn frame(payload: &'static [u8]) -> Frame {
    Frame::new(Bytes::from_static(payload), 0, 0)
}

/// A relay with a publisher of `anon/demo` and sessions 2.. ready.
fn relay_with_publisher(rec: &mut Recorder) -> Relay {
    relay_configured(RelayConfig::default(), rec)
}

fn relay_configured(config: RelayConfig, rec: &mut Recorder) -> Relay {
    let mut relay = Relay::new(config);
    for s in [PUB, 2, 3, 4] {
        relay.handle(s, Event::Ready, rec);
    }
    relay.handle(
        PUB,
        Event::Announced {
            stream: 0,
            path: "anon/demo".into(),
            hops: vec![],
            active: true,
        },
        rec,
    );
    rec.take();
    relay
}

fn upstream_token(calls: &[Call]) -> usize {
    calls
        .iter()
        .find_map(|c| match c {
            Call::Subscribe(_, _, _, token) => Some(*token),
            _ => None,
        })
        .expect("an upstream subscribe")
}

fn opened(calls: &[Call], session: SessionKey) -> Vec<(u64, u64)> {
    calls
        .iter()
        .filter_map(|c| match c {
            Call::OpenGroup(s, _, seq, id) if *s == session => Some((*seq, *id)),
            _ => None,
        })
        .collect()
}

#[test]
fn subscribers_share_one_upstream_subscription() {
    let mut rec = Recorder::default();
    let mut relay = relay_with_publisher(&mut rec);
    for (s, stream) in [(2, 10), (3, 20), (4, 30)] {
        relay.handle(
            s,
            Event::Subscribe {
                stream,
                request: subscribe(0, "anon/demo"),
            },
            &mut rec,
        );
    }
    let calls = rec.take();
    let upstream: Vec<_> = calls
        .iter()
        .filter(|c| matches!(c, Call::Subscribe(..)))
        .collect();
    assert_eq!(upstream.len(), 1, "one upstream subscription: {calls:?}");
    assert_eq!(relay.stats().upstream_subscribes, 1);
    assert_eq!(relay.stats().downstream_subscribes, 3);
    let oks = calls
        .iter()
        .filter(|c| matches!(c, Call::SubscribeOk(..)))
        .count();
    assert_eq!(oks, 3);
}

#[test]
fn groups_fan_out_and_late_joiner_starts_at_latest_group() {
    let mut rec = Recorder::default();
    let mut relay = relay_with_publisher(&mut rec);
    let sub = |stream| Event::Subscribe {
        stream,
        request: subscribe(0, "anon/demo"),
    };
    relay.handle(2, sub(10), &mut rec);
    let token = upstream_token(&rec.take());
    let group = |sequence| Event::Group {
        token,
        stream: 3,
        sequence,
    };
    let data = |sequence, payload| Event::Frame {
        token,
        sequence,
        frame: frame(payload),
    };
    relay.handle(PUB, group(0), &mut rec);
    relay.handle(PUB, data(0, b"a"), &mut rec);
    relay.handle(
        PUB,
        Event::GroupEnd {
            token,
            sequence: 0,
            error: None,
        },
        &mut rec,
    );
    relay.handle(PUB, group(1), &mut rec);
    relay.handle(PUB, data(1, b"b"), &mut rec);
    relay.handle(PUB, data(1, b"c"), &mut rec);
    let calls = rec.take();
    let groups = opened(&calls, 2);
    assert_eq!(groups.iter().map(|g| g.0).collect::<Vec<_>>(), vec![0, 1]);
    assert!(calls.contains(&Call::FinishGroup(2, groups[0].1)));
    assert!(calls.contains(&Call::SubscribeStart(2, 10, 0)));

    // A late joiner gets group 1 from its first frame, then live frames.
    relay.handle(3, sub(20), &mut rec);
    relay.handle(PUB, data(1, b"d"), &mut rec);
    let calls = rec.take();
    assert!(
        !calls.iter().any(|c| matches!(c, Call::Subscribe(..))),
        "joiner reuses the upstream subscription"
    );
    let late = opened(&calls, 3);
    assert_eq!(late.iter().map(|g| g.0).collect::<Vec<_>>(), vec![1]);
    let got: Vec<Bytes> = calls
        .iter()
        .filter_map(|c| match c {
            Call::Frame(3, id, p) if *id == late[0].1 => Some(p.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(got, vec![&b"b"[..], b"c", b"d"]);
    assert!(calls.contains(&Call::SubscribeStart(3, 20, 1)));
}

#[test]
fn group_reset_propagates_its_code() {
    let mut rec = Recorder::default();
    let mut relay = relay_with_publisher(&mut rec);
    relay.handle(
        2,
        Event::Subscribe {
            stream: 10,
            request: subscribe(0, "anon/demo"),
        },
        &mut rec,
    );
    let token = upstream_token(&rec.take());
    relay.handle(
        PUB,
        Event::Group {
            token,
            stream: 3,
            sequence: 7,
        },
        &mut rec,
    );
    relay.handle(
        PUB,
        Event::GroupEnd {
            token,
            sequence: 7,
            error: Some(42),
        },
        &mut rec,
    );
    let calls = rec.take();
    let id = opened(&calls, 2)[0].1;
    assert!(calls.contains(&Call::ResetGroup(2, id, 42)), "{calls:?}");
}

#[test]
fn publisher_leaving_ends_subscriptions_and_republish_works() {
    let mut rec = Recorder::default();
    let mut relay = relay_with_publisher(&mut rec);
    relay.handle(
        3,
        Event::AnnounceInterest {
            stream: 50,
            prefix: "anon".into(),
        },
        &mut rec,
    );
    assert!(rec
        .take()
        .contains(&Call::ReplyAnnounces(3, 50, vec!["anon/demo".into()])));
    relay.handle(
        2,
        Event::Subscribe {
            stream: 10,
            request: subscribe(0, "anon/demo"),
        },
        &mut rec,
    );
    rec.take();
    relay.handle(PUB, Event::Closed, &mut rec);
    let calls = rec.take();
    assert!(calls
        .iter()
        .any(|c| matches!(c, Call::EndSubscription(2, 10, Some(_)))));
    assert!(calls.contains(&Call::Announce(3, 50, "anon/demo".into(), false)));
    assert_eq!(relay.track_count(), 0);

    // Subscribing now fails cleanly; publishing again brings it back.
    relay.handle(
        2,
        Event::Subscribe {
            stream: 14,
            request: subscribe(1, "anon/demo"),
        },
        &mut rec,
    );
    assert!(rec
        .take()
        .contains(&Call::Reject(2, 14, ErrorCode::NotFound)));
    relay.handle(5, Event::Ready, &mut rec);
    relay.handle(
        5,
        Event::Announced {
            stream: 0,
            path: "anon/demo".into(),
            hops: vec![],
            active: true,
        },
        &mut rec,
    );
    assert!(rec
        .take()
        .contains(&Call::Announce(3, 50, "anon/demo".into(), true)));
    relay.handle(
        2,
        Event::Subscribe {
            stream: 18,
            request: subscribe(2, "anon/demo"),
        },
        &mut rec,
    );
    assert!(rec
        .take()
        .iter()
        .any(|c| matches!(c, Call::Subscribe(5, ..))));
}

#[test]
fn last_subscriber_leaving_cancels_upstream() {
    let mut rec = Recorder::default();
    let mut relay = relay_with_publisher(&mut rec);
    for (s, stream) in [(2, 10), (3, 20)] {
        relay.handle(
            s,
            Event::Subscribe {
                stream,
                request: subscribe(0, "anon/demo"),
            },
            &mut rec,
        );
    }
    rec.take();
    relay.handle(2, Event::RequestCancelled { stream: 10 }, &mut rec);
    assert!(!rec
        .take()
        .iter()
        .any(|c| matches!(c, Call::Unsubscribe(..))));
    relay.handle(3, Event::Closed, &mut rec);
    assert!(rec
        .take()
        .iter()
        .any(|c| matches!(c, Call::Unsubscribe(PUB, _))));
    assert_eq!(relay.track_count(), 0);
}

#[test]
fn track_request_is_forwarded_once_on_lite05() {
    let mut rec = Recorder {
        lite05: vec![PUB],
        ..Default::default()
    };
    let mut relay = relay_with_publisher(&mut rec);
    let req = |stream| Event::TrackRequest {
        stream,
        broadcast: "anon/demo".into(),
        track: "video".into(),
    };
    relay.handle(2, req(10), &mut rec);
    relay.handle(3, req(20), &mut rec);
    let calls = rec.take();
    assert_eq!(
        calls
            .iter()
            .filter(|c| matches!(c, Call::RequestTrack(..)))
            .count(),
        1
    );
    let info = TrackInfo {
        priority: 1,
        ordered: false,
        max_latency: std::time::Duration::ZERO,
        timescale: 1000,
    };
    relay.handle(PUB, Event::TrackInfo { token: 0, info }, &mut rec);
    let calls = rec.take();
    assert!(calls.contains(&Call::ReplyTrack(2, 10)));
    assert!(calls.contains(&Call::ReplyTrack(3, 20)));
}

#[test]
fn unknown_broadcast_is_rejected() {
    let mut rec = Recorder::default();
    let mut relay = relay_with_publisher(&mut rec);
    relay.handle(
        2,
        Event::Subscribe {
            stream: 10,
            request: subscribe(0, "anon/missing"),
        },
        &mut rec,
    );
    assert_eq!(rec.take(), vec![Call::Reject(2, 10, ErrorCode::NotFound)]);
}

#[test]
fn finished_track_is_served_from_cache_until_the_linger_ends() {
    let mut rec = Recorder::default();
    let mut relay = relay_with_publisher(&mut rec);
    let t0 = std::time::Instant::now();
    relay.tick(t0, &mut rec);
    let sub = |stream| Event::Subscribe {
        stream,
        request: subscribe(0, "anon/demo"),
    };
    relay.handle(2, sub(10), &mut rec);
    let token = upstream_token(&rec.take());
    relay.handle(
        PUB,
        Event::Group {
            token,
            stream: 3,
            sequence: 0,
        },
        &mut rec,
    );
    relay.handle(
        PUB,
        Event::Frame {
            token,
            sequence: 0,
            frame: frame(b"last"),
        },
        &mut rec,
    );
    // Upstream closes before the group's end arrives: the track waits for it.
    relay.handle(
        PUB,
        Event::SubscriptionClosed { token, error: None },
        &mut rec,
    );
    assert!(!rec
        .take()
        .iter()
        .any(|c| matches!(c, Call::EndSubscription(..))));
    relay.handle(
        PUB,
        Event::GroupEnd {
            token,
            sequence: 0,
            error: None,
        },
        &mut rec,
    );
    let calls = rec.take();
    assert!(
        calls.contains(&Call::EndSubscription(2, 10, None)),
        "{calls:?}"
    );
    assert!(
        !calls.iter().any(|c| matches!(c, Call::ResetGroup(..))),
        "{calls:?}"
    );

    // The publisher leaves; a subscriber arriving during the linger reads the cache.
    relay.handle(PUB, Event::Closed, &mut rec);
    rec.take();
    relay.handle(3, sub(20), &mut rec);
    let calls = rec.take();
    assert!(
        !calls.iter().any(|c| matches!(c, Call::Subscribe(..))),
        "no upstream: {calls:?}"
    );
    let id = opened(&calls, 3)[0].1;
    assert!(calls.contains(&Call::Frame(3, id, Bytes::from_static(b"last"))));
    assert!(calls.contains(&Call::FinishGroup(3, id)));
    assert!(calls.contains(&Call::SubscribeEnd(3, 20, 1)));
    assert!(calls.contains(&Call::EndSubscription(3, 20, None)));

    // After the linger the broadcast is gone.
    assert!(relay.next_timeout().is_some());
    relay.tick(t0 + std::time::Duration::from_secs(3), &mut rec);
    assert_eq!(relay.track_count(), 0);
    relay.handle(4, sub(30), &mut rec);
    assert_eq!(rec.take(), vec![Call::Reject(4, 30, ErrorCode::NotFound)]);
}

/// Publishes finished groups `sequences`, each with `frames` frames of `size` bytes.
fn publish_groups(
    relay: &mut Relay,
    rec: &mut Recorder,
    token: usize,
    sequences: std::ops::Range<u64>,
    frames: usize,
    size: usize,
) {
    for sequence in sequences {
        relay.handle(
            PUB,
            Event::Group {
                token,
                stream: 3,
                sequence,
            },
            rec,
        );
        for _ in 0..frames {
            let frame = Frame::new(Bytes::from(vec![sequence as u8; size]), 0, 0);
            relay.handle(
                PUB,
                Event::Frame {
                    token,
                    sequence,
                    frame,
                },
                rec,
            );
        }
        relay.handle(
            PUB,
            Event::GroupEnd {
                token,
                sequence,
                error: None,
            },
            rec,
        );
    }
}

fn subscribe_from(stream: u64, start: Option<u64>) -> Event {
    Event::Subscribe {
        stream,
        request: Subscribe {
            start_group: start,
            ..subscribe(0, "anon/demo")
        },
    }
}

#[test]
fn subscriber_asking_for_an_older_group_gets_the_cache_in_order() {
    let mut rec = Recorder::default();
    let mut relay = relay_with_publisher(&mut rec);
    relay.handle(2, subscribe_from(10, None), &mut rec);
    let token = upstream_token(&rec.take());
    publish_groups(&mut relay, &mut rec, token, 0..3, 2, 100);
    rec.take();
    relay.handle(3, subscribe_from(20, Some(1)), &mut rec);
    let calls = rec.take();
    let groups = opened(&calls, 3);
    assert_eq!(groups.iter().map(|g| g.0).collect::<Vec<_>>(), vec![1, 2]);
    assert!(calls.contains(&Call::SubscribeStart(3, 20, 1)));
    for (sequence, id) in groups {
        let frames = calls
            .iter()
            .filter(|c| matches!(c, Call::Frame(3, i, p) if *i == id && p[0] == sequence as u8))
            .count();
        assert_eq!(frames, 2, "group {sequence} replayed whole");
        assert!(calls.contains(&Call::FinishGroup(3, id)));
    }
    // Then live groups follow.
    publish_groups(&mut relay, &mut rec, token, 3..4, 1, 100);
    assert_eq!(opened(&rec.take(), 3)[0].0, 3);
}

#[test]
fn a_clean_end_waits_for_the_groups_of_its_range_not_opened_yet() {
    // lite-05: the publisher starts at group 0 and ends at 3 (exclusive), then closes its
    // subscription while group 2 is still on its way: the track stays until group 2 has
    // come and gone, then ends cleanly.
    let mut rec = Recorder::default();
    let mut relay = relay_with_publisher(&mut rec);
    relay.tick(Instant::now(), &mut rec);
    relay.handle(2, subscribe_from(10, Some(0)), &mut rec);
    let token = upstream_token(&rec.take());
    relay.handle(
        PUB,
        Event::SubscribeAccepted {
            token,
            start: Some(0),
        },
        &mut rec,
    );
    publish_groups(&mut relay, &mut rec, token, 0..2, 1, 100);
    relay.handle(PUB, Event::SubscribeEnd { token, group: 3 }, &mut rec);
    relay.handle(
        PUB,
        Event::SubscriptionClosed { token, error: None },
        &mut rec,
    );
    let calls = rec.take();
    assert!(
        !calls
            .iter()
            .any(|c| matches!(c, Call::EndSubscription(2, 10, _))),
        "ended before group 2: {calls:?}"
    );
    publish_groups(&mut relay, &mut rec, token, 2..3, 1, 100);
    let calls = rec.take();
    assert_eq!(
        opened(&calls, 2).iter().map(|g| g.0).collect::<Vec<_>>(),
        vec![2]
    );
    assert!(
        calls
            .iter()
            .any(|c| matches!(c, Call::EndSubscription(2, 10, None))),
        "{calls:?}"
    );
}

#[test]
fn a_start_below_the_upstreams_own_start_is_raised_to_it() {
    // The upstream (a publisher, or the owner shard for a mirror) says its track starts
    // at group 5: a subscriber asking for group 0 is told 5, not 0, or it would wait for
    // groups 0-4 that can never come and count them lost.
    let mut rec = Recorder::default();
    let mut relay = relay_with_publisher(&mut rec);
    relay.handle(2, subscribe_from(10, Some(0)), &mut rec);
    let token = upstream_token(&rec.take());
    relay.handle(
        PUB,
        Event::SubscribeAccepted {
            token,
            start: Some(5),
        },
        &mut rec,
    );
    publish_groups(&mut relay, &mut rec, token, 5..7, 1, 100);
    let calls = rec.take();
    assert!(calls.contains(&Call::SubscribeStart(2, 10, 5)), "{calls:?}");
    relay.handle(3, subscribe_from(20, Some(0)), &mut rec);
    let calls = rec.take();
    assert!(calls.contains(&Call::SubscribeStart(3, 20, 5)), "{calls:?}");
    assert_eq!(
        opened(&calls, 3).iter().map(|g| g.0).collect::<Vec<_>>(),
        vec![5, 6]
    );
    // A late joiner at the latest group is told that group, not the upstream's start.
    relay.handle(4, subscribe_from(30, None), &mut rec);
    let calls = rec.take();
    assert!(calls.contains(&Call::SubscribeStart(4, 30, 6)), "{calls:?}");
}

#[test]
fn a_start_below_the_cache_waits_for_an_older_group_still_on_its_way() {
    // Upstream groups arrive in any order: group 1 before group 0. A subscriber asking
    // for group 0 then is told its track starts at 0 (not at 1, which would make it
    // discard group 0) and gets group 0 when it comes.
    let mut rec = Recorder::default();
    let mut relay = relay_with_publisher(&mut rec);
    relay.handle(2, subscribe_from(10, Some(0)), &mut rec);
    let token = upstream_token(&rec.take());
    publish_groups(&mut relay, &mut rec, token, 1..2, 1, 100);
    rec.take();
    relay.handle(3, subscribe_from(20, Some(0)), &mut rec);
    let calls = rec.take();
    assert_eq!(
        opened(&calls, 3).iter().map(|g| g.0).collect::<Vec<_>>(),
        vec![1]
    );
    assert!(calls.contains(&Call::SubscribeStart(3, 20, 0)), "{calls:?}");
    publish_groups(&mut relay, &mut rec, token, 0..1, 1, 100);
    assert_eq!(
        opened(&rec.take(), 3)
            .iter()
            .map(|g| g.0)
            .collect::<Vec<_>>(),
        vec![0]
    );
}

#[test]
fn cache_keeps_to_its_byte_and_age_budgets() {
    let mut rec = Recorder::default();
    let config = RelayConfig {
        cache_bytes: 2500,
        cache_age: std::time::Duration::from_secs(10),
        ..RelayConfig::default()
    };
    let mut relay = relay_configured(config, &mut rec);
    let t0 = std::time::Instant::now();
    relay.tick(t0, &mut rec);
    relay.handle(2, subscribe_from(10, None), &mut rec);
    let token = upstream_token(&rec.take());
    // Groups of about 1 KB: 2500 bytes hold two of them.
    publish_groups(&mut relay, &mut rec, token, 0..6, 1, 1000);
    relay.handle(3, subscribe_from(20, Some(0)), &mut rec);
    let cached: Vec<u64> = opened(&rec.take(), 3).iter().map(|g| g.0).collect();
    assert_eq!(cached, vec![4, 5], "only what fits the byte budget");

    // Eleven seconds on, the older of them has aged out; the newest always stays.
    relay.tick(t0 + std::time::Duration::from_secs(11), &mut rec);
    publish_groups(&mut relay, &mut rec, token, 6..7, 1, 10);
    rec.take();
    relay.handle(4, subscribe_from(30, Some(0)), &mut rec);
    let cached: Vec<u64> = opened(&rec.take(), 4).iter().map(|g| g.0).collect();
    assert_eq!(cached, vec![6]);
}

#[test]
fn fetch_serves_cached_groups_and_refuses_the_rest() {
    let mut rec = Recorder::default();
    let config = RelayConfig {
        cache_bytes: 2500,
        ..RelayConfig::default()
    };
    let mut relay = relay_configured(config, &mut rec);
    relay.handle(2, subscribe_from(10, None), &mut rec);
    let token = upstream_token(&rec.take());
    publish_groups(&mut relay, &mut rec, token, 0..4, 2, 500);
    relay.handle(
        PUB,
        Event::Group {
            token,
            stream: 3,
            sequence: 4,
        },
        &mut rec,
    );
    rec.take();
    let fetch = |stream, group| Event::Fetch {
        stream,
        request: crate::wire::Fetch {
            broadcast: "anon/demo".into(),
            track: "video".into(),
            priority: 0,
            group,
        },
    };
    relay.handle(3, fetch(20, 3), &mut rec);
    let calls = rec.take();
    let Some(Call::ReplyFetch(3, 20, frames)) = calls.first() else {
        panic!("fetch answered: {calls:?}")
    };
    assert_eq!(frames.len(), 2);
    assert!(frames.iter().all(|f| f.len() == 500 && f[0] == 3));
    // Group 0 fell out of the 2500-byte cache; group 4 is still open; 9 never existed.
    relay.handle(3, fetch(24, 0), &mut rec);
    relay.handle(3, fetch(28, 4), &mut rec);
    relay.handle(3, fetch(32, 9), &mut rec);
    assert_eq!(
        rec.take(),
        vec![
            Call::Reject(3, 24, ErrorCode::Evicted),
            Call::Reject(3, 28, ErrorCode::NotFound),
            Call::Reject(3, 32, ErrorCode::NotFound),
        ]
    );
}

#[test]
fn finished_track_of_a_connected_publisher_expires_after_the_linger() {
    let mut rec = Recorder::default();
    let mut relay = relay_with_publisher(&mut rec);
    let t0 = std::time::Instant::now();
    relay.tick(t0, &mut rec);
    relay.handle(2, subscribe_from(10, None), &mut rec);
    let token = upstream_token(&rec.take());
    publish_groups(&mut relay, &mut rec, token, 0..2, 1, 100);
    relay.handle(
        PUB,
        Event::SubscriptionClosed { token, error: None },
        &mut rec,
    );
    assert_eq!(relay.track_count(), 1, "kept, finished");
    relay.tick(t0 + std::time::Duration::from_secs(1), &mut rec);
    assert_eq!(relay.track_count(), 1);
    relay.tick(t0 + std::time::Duration::from_secs(3), &mut rec);
    assert_eq!(relay.track_count(), 0, "gone after the linger");
    // The publisher is still there: a new subscription subscribes upstream again.
    rec.take();
    relay.handle(3, subscribe_from(20, None), &mut rec);
    assert!(rec
        .take()
        .iter()
        .any(|c| matches!(c, Call::Subscribe(PUB, ..))));
}

#[test]
fn eager_rules_subscribe_on_announce_and_serve_the_first_viewer_from_cache() {
    let rule: EagerRule = "anon/*=video".parse().unwrap();
    assert!(rule.matches("anon/demo") && !rule.matches("other/demo"));
    assert!("anon/*".parse::<EagerRule>().is_err());
    let mut rec = Recorder::default();
    let config = RelayConfig {
        eager: vec![rule],
        ..RelayConfig::default()
    };
    let mut relay = Relay::new(config);
    for s in [PUB, 2] {
        relay.handle(s, Event::Ready, &mut rec);
    }
    let announce = |path: &str| Event::Announced {
        stream: 0,
        path: path.into(),
        hops: vec![],
        active: true,
    };
    relay.handle(PUB, announce("anon/demo"), &mut rec);
    relay.handle(PUB, announce("other/demo"), &mut rec);
    let calls = rec.take();
    let upstream: Vec<_> = calls
        .iter()
        .filter(|c| matches!(c, Call::Subscribe(..)))
        .collect();
    assert_eq!(upstream.len(), 1, "only the matching broadcast: {calls:?}");
    assert!(
        matches!(upstream[0], Call::Subscribe(PUB, b, t, _) if b == "anon/demo" && t == "video")
    );
    let token = upstream_token(&calls);
    publish_groups(&mut relay, &mut rec, token, 0..3, 1, 100);

    // The first viewer joins from the cache, without a new upstream subscription.
    relay.handle(2, subscribe_from(10, None), &mut rec);
    let calls = rec.take();
    assert!(!calls.iter().any(|c| matches!(c, Call::Subscribe(..))));
    assert_eq!(
        opened(&calls, 2).iter().map(|g| g.0).collect::<Vec<_>>(),
        vec![2]
    );
    // Leaving does not drop the eager subscription.
    relay.handle(2, Event::RequestCancelled { stream: 10 }, &mut rec);
    assert!(!rec
        .take()
        .iter()
        .any(|c| matches!(c, Call::Unsubscribe(..))));
    assert_eq!(relay.track_count(), 1);
}

#[test]
fn cache_rules_give_matching_tracks_their_own_budget() {
    let mut rec = Recorder::default();
    let config = RelayConfig {
        cache_bytes: 1 << 20,
        cache_rules: vec![
            "other/*=bytes=1".parse().unwrap(),
            "anon/*:video=bytes=2500".parse().unwrap(),
        ],
        ..RelayConfig::default()
    };
    assert_eq!(config.cache_budget("anon/demo", "audio").bytes, 1 << 20);
    let mut relay = relay_configured(config, &mut rec);
    relay.handle(2, subscribe_from(10, None), &mut rec);
    let token = upstream_token(&rec.take());
    publish_groups(&mut relay, &mut rec, token, 0..6, 1, 1000);
    relay.handle(3, subscribe_from(20, Some(0)), &mut rec);
    let cached: Vec<u64> = opened(&rec.take(), 3).iter().map(|g| g.0).collect();
    assert_eq!(
        cached,
        vec![4, 5],
        "the video rule's 2500 bytes, not the global MiB"
    );
}

#[test]
fn a_subscriber_gets_no_group_after_its_end_group() {
    let mut rec = Recorder::default();
    let mut relay = relay_with_publisher(&mut rec);
    relay.handle(2, subscribe_from(10, None), &mut rec);
    let token = upstream_token(&rec.take());
    publish_groups(&mut relay, &mut rec, token, 0..3, 1, 10);
    let capped = Event::Subscribe {
        stream: 20,
        request: Subscribe {
            start_group: Some(1),
            end_group: Some(3),
            ..subscribe(0, "anon/demo")
        },
    };
    relay.handle(3, capped, &mut rec);
    publish_groups(&mut relay, &mut rec, token, 3..6, 1, 10);
    let got: Vec<u64> = opened(&rec.take(), 3).iter().map(|g| g.0).collect();
    assert_eq!(got, vec![1, 2, 3], "cached 1 and 2, live 3, nothing after");
}

#[test]
fn a_client_resuming_a_finished_track_gets_the_cached_groups_from_its_start() {
    let mut rec = Recorder::default();
    let mut relay = relay_with_publisher(&mut rec);
    relay.tick(std::time::Instant::now(), &mut rec);
    let request = |start_group| Event::Subscribe {
        stream: 10,
        request: Subscribe {
            start_group,
            ..subscribe(0, "anon/demo")
        },
    };
    relay.handle(2, request(Some(0)), &mut rec);
    let token = upstream_token(&rec.take());
    for sequence in 0..3 {
        let stream = 3 + sequence;
        relay.handle(
            PUB,
            Event::Group {
                token,
                stream,
                sequence,
            },
            &mut rec,
        );
        let frame = frame(b"g");
        relay.handle(
            PUB,
            Event::Frame {
                token,
                sequence,
                frame,
            },
            &mut rec,
        );
        let end = Event::GroupEnd {
            token,
            sequence,
            error: None,
        };
        relay.handle(PUB, end, &mut rec);
    }
    relay.handle(PUB, Event::SubscribeEnd { token, group: 3 }, &mut rec);
    relay.handle(
        PUB,
        Event::SubscriptionClosed { token, error: None },
        &mut rec,
    );
    rec.take();
    // moq-net clients that read the end before their last groups ask again from there.
    relay.handle(3, request(Some(1)), &mut rec);
    let calls = rec.take();
    let groups: Vec<u64> = opened(&calls, 3).iter().map(|(seq, _)| *seq).collect();
    assert_eq!(groups, vec![1, 2], "{calls:?}");
    assert!(calls.contains(&Call::SubscribeEnd(3, 10, 3)));
    // Without a start group: the last group only, as for a live track.
    relay.handle(4, request(None), &mut rec);
    let groups: Vec<u64> = opened(&rec.take(), 4).iter().map(|(seq, _)| *seq).collect();
    assert_eq!(groups, vec![2]);
}

/// A relay with sessions 1..=6 ready and session 6 watching every broadcast (stream 60).
fn cluster_relay(config: RelayConfig, rec: &mut Recorder) -> Relay {
    let mut relay = Relay::new(config);
    for s in 1..=6 {
        relay.handle(s, Event::Ready, rec);
    }
    relay.handle(
        6,
        Event::AnnounceInterest {
            stream: 60,
            prefix: String::new(),
        },
        rec,
    );
    rec.take();
    relay
}

fn announced(relay: &mut Relay, rec: &mut Recorder, s: SessionKey, hops: &[u64], active: bool) {
    relay.handle(
        s,
        Event::Announced {
            stream: 0,
            path: "live/b".into(),
            hops: hops.to_vec(),
            active,
        },
        rec,
    );
}

/// The session the relay subscribes upstream through for a new subscriber.
fn upstream_of(relay: &mut Relay, rec: &mut Recorder, stream: u64) -> SessionKey {
    relay.handle(
        5,
        Event::Subscribe {
            stream,
            request: subscribe(stream, "live/b"),
        },
        rec,
    );
    let calls = rec.take();
    let up = calls.iter().find_map(|c| match c {
        Call::Subscribe(s, ..) => Some(*s),
        _ => None,
    });
    relay.handle(5, Event::RequestCancelled { stream }, rec);
    rec.take();
    up.expect("an upstream subscription")
}

fn watcher_heard(calls: &[Call]) -> Vec<bool> {
    calls
        .iter()
        .filter_map(|c| match c {
            Call::Announce(6, 60, b, active) if b == "live/b" => Some(*active),
            _ => None,
        })
        .collect()
}

#[test]
fn the_shortest_route_wins_and_a_longer_one_takes_over_when_it_goes() {
    let mut rec = Recorder::default();
    let mut relay = cluster_relay(RelayConfig::default(), &mut rec);
    announced(&mut relay, &mut rec, 1, &[10, 11, 12], true);
    assert_eq!(watcher_heard(&rec.take()), vec![true]);
    assert_eq!(upstream_of(&mut relay, &mut rec, 100), 1);
    // A shorter route: watchers see the broadcast re-announced, new subscriptions use it.
    announced(&mut relay, &mut rec, 2, &[20], true);
    assert_eq!(watcher_heard(&rec.take()), vec![false, true]);
    assert_eq!(upstream_of(&mut relay, &mut rec, 104), 2);
    // A longer one is kept quietly as a backup.
    announced(&mut relay, &mut rec, 3, &[30, 31, 32, 33], true);
    assert_eq!(watcher_heard(&rec.take()), Vec::<bool>::new());
    // The route in use goes: the next shortest takes over.
    announced(&mut relay, &mut rec, 2, &[20], false);
    assert_eq!(watcher_heard(&rec.take()), vec![false, true]);
    assert_eq!(upstream_of(&mut relay, &mut rec, 108), 1);
    // A backup going says nothing.
    announced(&mut relay, &mut rec, 3, &[30, 31, 32, 33], false);
    assert_eq!(watcher_heard(&rec.take()), Vec::<bool>::new());
    relay.handle(1, Event::Closed, &mut rec);
    assert_eq!(watcher_heard(&rec.take()), vec![false]);
}

#[test]
fn a_route_no_shorter_does_not_displace_the_one_in_use() {
    let mut rec = Recorder::default();
    let mut relay = cluster_relay(RelayConfig::default(), &mut rec);
    announced(&mut relay, &mut rec, 1, &[7, 8], true);
    for (s, hops) in [(2, &[9, 10][..]), (3, &[12, 13]), (4, &[3, 4, 5])] {
        announced(&mut relay, &mut rec, s, hops, true);
    }
    assert_eq!(watcher_heard(&rec.take()), vec![true]);
    assert_eq!(upstream_of(&mut relay, &mut rec, 100), 1);
    // A re-publish over the very same chain is a takeover.
    announced(&mut relay, &mut rec, 5, &[7, 8], true);
    assert_eq!(watcher_heard(&rec.take()), vec![false, true]);
    assert_eq!(upstream_of(&mut relay, &mut rec, 104), 5);
    // A publisher connected directly wins over relayed routes, and a newer direct one
    // (another client id) takes over from it.
    announced(&mut relay, &mut rec, 2, &[9, 10], false);
    announced(&mut relay, &mut rec, 2, &[70], true);
    assert_eq!(watcher_heard(&rec.take()), vec![false, true]);
    announced(&mut relay, &mut rec, 3, &[12, 13], false);
    announced(&mut relay, &mut rec, 3, &[71], true);
    assert_eq!(watcher_heard(&rec.take()), vec![false, true]);
    assert_eq!(upstream_of(&mut relay, &mut rec, 108), 3);
}

#[test]
fn the_next_route_among_equals_is_chosen_alike_whatever_order_they_came_in() {
    let routes: [(SessionKey, &[u64]); 3] = [(1, &[7, 8]), (2, &[9, 10]), (3, &[11, 12])];
    let mut chosen = Vec::new();
    // (The relay's own id is 1: no chain holds it.)
    for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0]] {
        let mut rec = Recorder::default();
        let mut relay = cluster_relay(RelayConfig::default(), &mut rec);
        // A shorter route is in use; the others wait behind it.
        announced(&mut relay, &mut rec, 4, &[40], true);
        for i in order {
            let (s, hops) = routes[i];
            announced(&mut relay, &mut rec, s, hops, true);
        }
        announced(&mut relay, &mut rec, 4, &[40], false);
        chosen.push(upstream_of(&mut relay, &mut rec, 100));
    }
    assert!(chosen.windows(2).all(|w| w[0] == w[1]), "{chosen:?}");
}

#[test]
fn announcements_that_looped_or_passed_too_many_relays_are_dropped() {
    let mut rec = Recorder::default();
    let config = RelayConfig {
        origin: 99,
        max_hops: 3,
        ..RelayConfig::default()
    };
    let mut relay = cluster_relay(config, &mut rec);
    announced(&mut relay, &mut rec, 1, &[5, 99, 7], true);
    announced(&mut relay, &mut rec, 2, &[1, 2, 3, 4], true);
    assert_eq!(watcher_heard(&rec.take()), Vec::<bool>::new());
    relay.handle(
        5,
        Event::Subscribe {
            stream: 100,
            request: subscribe(0, "live/b"),
        },
        &mut rec,
    );
    assert!(rec
        .take()
        .contains(&Call::Reject(5, 100, ErrorCode::NotFound)));
    announced(&mut relay, &mut rec, 3, &[1, 2, 3], true);
    assert_eq!(watcher_heard(&rec.take()), vec![true]);
}

#[test]
fn an_abrupt_departure_lingers_and_a_quick_return_says_nothing() {
    let mut rec = Recorder::default();
    let config = RelayConfig {
        route_linger: Duration::from_secs(5),
        ..RelayConfig::default()
    };
    let start = Instant::now();
    let mut relay = cluster_relay(config, &mut rec);
    relay.tick(start, &mut rec);
    announced(&mut relay, &mut rec, 1, &[], true);
    assert_eq!(watcher_heard(&rec.take()), vec![true]);
    assert_eq!(upstream_of(&mut relay, &mut rec, 100), 1);
    rec.abrupt.push(1);
    relay.handle(1, Event::Closed, &mut rec);
    assert_eq!(
        watcher_heard(&rec.take()),
        Vec::<bool>::new(),
        "still announced"
    );
    // A subscription while it lingers waits for a publisher.
    relay.handle(
        5,
        Event::Subscribe {
            stream: 104,
            request: subscribe(1, "live/b"),
        },
        &mut rec,
    );
    assert_eq!(rec.take(), vec![]);
    // The publisher is back on another session within the linger: not a word to watchers,
    // the waiting subscription is served by it, and so are new ones.
    relay.tick(start + Duration::from_secs(2), &mut rec);
    announced(&mut relay, &mut rec, 2, &[], true);
    let calls = rec.take();
    assert_eq!(watcher_heard(&calls), Vec::<bool>::new());
    assert!(
        calls.iter().any(|c| matches!(c, Call::Subscribe(2, ..)))
            && calls.contains(&Call::SubscribeOk(5, 104)),
        "{calls:?}"
    );
    relay.handle(5, Event::RequestCancelled { stream: 104 }, &mut rec);
    rec.take();
    assert_eq!(upstream_of(&mut relay, &mut rec, 108), 2);
    // It leaves abruptly again and stays away: the end is told once the linger passed,
    // and a subscription waiting for it is refused then.
    rec.abrupt.push(2);
    relay.handle(2, Event::Closed, &mut rec);
    relay.handle(
        5,
        Event::Subscribe {
            stream: 112,
            request: subscribe(3, "live/b"),
        },
        &mut rec,
    );
    relay.tick(start + Duration::from_secs(6), &mut rec);
    assert_eq!(watcher_heard(&rec.take()), Vec::<bool>::new());
    assert_eq!(
        relay.next_timeout(),
        Some(start + Duration::from_secs(7)),
        "the linger's end is a timer"
    );
    relay.tick(start + Duration::from_secs(7), &mut rec);
    let calls = rec.take();
    assert_eq!(watcher_heard(&calls), vec![false]);
    assert!(
        calls.contains(&Call::Reject(5, 112, ErrorCode::NotFound)),
        "{calls:?}"
    );
}

#[test]
fn a_clean_close_ends_the_broadcast_at_once_even_with_a_linger() {
    let mut rec = Recorder::default();
    let config = RelayConfig {
        route_linger: Duration::from_secs(5),
        ..RelayConfig::default()
    };
    let mut relay = cluster_relay(config, &mut rec);
    relay.tick(Instant::now(), &mut rec);
    announced(&mut relay, &mut rec, 1, &[], true);
    rec.take();
    relay.handle(1, Event::Closed, &mut rec);
    assert_eq!(watcher_heard(&rec.take()), vec![false]);
}

/// A relay whose publisher serves `anon/demo` to subscriber 2 (stream 10), group 0 open
/// with `frames`: the upstream token.
fn demo_with_open_group(rec: &mut Recorder, frames: &[&'static [u8]]) -> (Relay, usize) {
    let mut relay = relay_with_publisher(rec);
    relay.tick(Instant::now(), rec);
    let request = subscribe(0, "anon/demo");
    relay.handle(
        2,
        Event::Subscribe {
            stream: 10,
            request,
        },
        rec,
    );
    let token = upstream_token(&rec.take());
    group_from(&mut relay, rec, PUB, token, 0, frames);
    (relay, token)
}

/// The publisher unannounces `anon/demo` (its session lives on).
fn unannounce_demo(relay: &mut Relay, rec: &mut Recorder) {
    let path = "anon/demo".into();
    let end = Event::Announced {
        stream: 0,
        path,
        hops: vec![],
        active: false,
    };
    relay.handle(PUB, end, rec);
}

#[test]
fn a_track_ending_cleanly_finishes_its_last_group_though_the_broadcast_ends_meanwhile() {
    let mut rec = Recorder::default();
    let (mut relay, token) = demo_with_open_group(&mut rec, &[b"last"]);
    // The publisher ends the track cleanly with group 0 still open, then unannounces
    // (moq-relay sends both at once).
    let closed = Event::SubscriptionClosed { token, error: None };
    relay.handle(PUB, closed, &mut rec);
    unannounce_demo(&mut relay, &mut rec);
    let calls = rec.take();
    assert!(
        !calls
            .iter()
            .any(|c| matches!(c, Call::EndSubscription(2, 10, _) | Call::ResetGroup(2, ..))),
        "{calls:?}"
    );
    group_end(&mut relay, &mut rec, PUB, token, 0);
    let calls = rec.take();
    assert!(
        calls.iter().any(|c| matches!(c, Call::FinishGroup(2, _))),
        "{calls:?}"
    );
    assert!(
        calls.contains(&Call::EndSubscription(2, 10, None)),
        "{calls:?}"
    );

    // The broadcast ends before the track does (the publisher's session lives on): the
    // track still ends on its own, cleanly.
    let mut rec = Recorder::default();
    let (mut relay, token) = demo_with_open_group(&mut rec, &[]);
    unannounce_demo(&mut relay, &mut rec);
    group_from(
        &mut relay,
        &mut rec,
        PUB,
        token,
        0,
        &[b"after the unannounce"],
    );
    group_end(&mut relay, &mut rec, PUB, token, 0);
    let closed = Event::SubscriptionClosed { token, error: None };
    relay.handle(PUB, closed, &mut rec);
    let calls = rec.take();
    assert!(
        calls
            .iter()
            .any(|c| matches!(c, Call::Frame(2, _, p) if p.as_ref() == b"after the unannounce")),
        "{calls:?}"
    );
    assert!(
        calls.contains(&Call::EndSubscription(2, 10, None)),
        "{calls:?}"
    );

    // The same, but the publisher's session goes: its open group cannot finish.
    let mut rec = Recorder::default();
    let (mut relay, token) = demo_with_open_group(&mut rec, &[]);
    let closed = Event::SubscriptionClosed { token, error: None };
    relay.handle(PUB, closed, &mut rec);
    relay.handle(PUB, Event::Closed, &mut rec);
    assert!(rec
        .take()
        .iter()
        .any(|c| matches!(c, Call::EndSubscription(2, 10, Some(_)))));
}

/// Session `s` opens group `sequence` of upstream subscription `token` with `frames`.
fn group_from(
    relay: &mut Relay,
    rec: &mut Recorder,
    s: SessionKey,
    token: usize,
    sequence: u64,
    frames: &[&'static [u8]],
) {
    relay.handle(
        s,
        Event::Group {
            token,
            stream: 3,
            sequence,
        },
        rec,
    );
    for payload in frames {
        let frame = frame(payload);
        relay.handle(
            s,
            Event::Frame {
                token,
                sequence,
                frame,
            },
            rec,
        );
    }
}

fn group_end(relay: &mut Relay, rec: &mut Recorder, s: SessionKey, token: usize, sequence: u64) {
    let error = None;
    let end = Event::GroupEnd {
        token,
        sequence,
        error,
    };
    relay.handle(s, end, rec);
}

/// Session 5 subscribes to `live/b` on `stream`: the calls the relay made.
fn subscribe_live(relay: &mut Relay, rec: &mut Recorder, stream: u64) -> Vec<Call> {
    let request = subscribe(stream, "live/b");
    relay.handle(5, Event::Subscribe { stream, request }, rec);
    rec.take()
}

fn frames_to(calls: &[Call], session: SessionKey) -> Vec<Bytes> {
    let frames = calls.iter().filter_map(|c| match c {
        Call::Frame(s, _, payload) if *s == session => Some(payload.clone()),
        _ => None,
    });
    frames.collect()
}

#[test]
fn a_track_follows_a_shorter_route_of_the_same_origin_without_its_subscribers_noticing() {
    let mut rec = Recorder::default();
    let mut relay = cluster_relay(RelayConfig::default(), &mut rec);
    announced(&mut relay, &mut rec, 1, &[10, 11, 12], true);
    let calls = subscribe_live(&mut relay, &mut rec, 100);
    let token = upstream_token(&calls);
    let old_up = calls.iter().find_map(|c| match c {
        Call::Subscribe(1, ..) => Some(()),
        _ => None,
    });
    assert!(old_up.is_some(), "{calls:?}");
    group_from(&mut relay, &mut rec, 1, token, 0, &[b"a", b"b"]);
    group_end(&mut relay, &mut rec, 1, token, 0);
    group_from(&mut relay, &mut rec, 1, token, 1, &[b"c"]);
    rec.take();

    // A shorter route from the same origin: the track moves to it; the old subscription
    // is cancelled and the subscriber's is untouched.
    announced(&mut relay, &mut rec, 2, &[10, 20], true);
    let calls = rec.take();
    assert!(
        calls.iter().any(|c| matches!(c, Call::Unsubscribe(1, _))),
        "{calls:?}"
    );
    assert!(
        calls.contains(&Call::Subscribe(2, "live/b".into(), "video".into(), token)),
        "{calls:?}"
    );
    assert!(
        !calls
            .iter()
            .any(|c| matches!(c, Call::EndSubscription(5, ..) | Call::ResetGroup(5, ..))),
        "{calls:?}"
    );
    assert_eq!(watcher_heard(&calls), vec![false, true]);

    // The old route's late frames are not taken; the new one sends the open group again
    // from its start (only what the subscriber lacks goes on), a finished one again
    // (nothing goes on), then new groups.
    group_from(&mut relay, &mut rec, 1, token, 1, &[b"late"]);
    group_from(&mut relay, &mut rec, 2, token, 0, &[b"a", b"b"]);
    group_end(&mut relay, &mut rec, 2, token, 0);
    group_from(&mut relay, &mut rec, 2, token, 1, &[b"c", b"d"]);
    group_end(&mut relay, &mut rec, 2, token, 1);
    group_from(&mut relay, &mut rec, 2, token, 2, &[b"e"]);
    let calls = rec.take();
    let sent: Vec<Bytes> = frames_to(&calls, 5);
    assert_eq!(sent, [&b"d"[..], b"e"].map(Bytes::from_static), "{calls:?}");
    let opened: Vec<u64> = opened(&calls, 5).into_iter().map(|(seq, _)| seq).collect();
    assert_eq!(
        opened,
        vec![2],
        "only the new group opens a stream: {calls:?}"
    );
    assert_eq!(
        calls
            .iter()
            .filter(|c| matches!(c, Call::FinishGroup(5, _)))
            .count(),
        1,
        "group 1 finishes once: {calls:?}"
    );
}

#[test]
fn a_route_from_another_origin_gets_fresh_tracks_though_the_old_ones_linger() {
    let mut rec = Recorder::default();
    let mut relay = cluster_relay(RelayConfig::default(), &mut rec);
    relay.tick(Instant::now(), &mut rec);
    announced(&mut relay, &mut rec, 1, &[10, 11], true);
    announced(&mut relay, &mut rec, 2, &[30, 31], true);
    let token = upstream_token(&subscribe_live(&mut relay, &mut rec, 100));
    group_from(&mut relay, &mut rec, 1, token, 0, &[b"old"]);
    group_end(&mut relay, &mut rec, 1, token, 0);
    relay.handle(
        1,
        Event::SubscriptionClosed { token, error: None },
        &mut rec,
    );
    // The track finished (kept for late joiners); then its route goes while another
    // origin's stays: a new subscriber is served by the new origin, not the old cache.
    announced(&mut relay, &mut rec, 1, &[10, 11], false);
    rec.take();
    assert_eq!(upstream_of(&mut relay, &mut rec, 104), 2);
}

#[test]
fn chains_without_ids_prove_no_common_origin() {
    // lite-03 chains are all zeros: a shorter one takes over as from another origin, its
    // tracks cut, not moved.
    let mut rec = Recorder::default();
    let mut relay = cluster_relay(RelayConfig::default(), &mut rec);
    announced(&mut relay, &mut rec, 1, &[0, 0, 0], true);
    let token = upstream_token(&subscribe_live(&mut relay, &mut rec, 100));
    group_from(&mut relay, &mut rec, 1, token, 0, &[b"a"]);
    rec.take();
    announced(&mut relay, &mut rec, 2, &[0, 0], true);
    let calls = rec.take();
    assert!(
        calls.contains(&Call::EndSubscription(
            5,
            100,
            Some(ErrorCode::Cancel.code())
        )),
        "{calls:?}"
    );
    assert!(
        !calls.iter().any(|c| matches!(c, Call::Subscribe(2, ..))),
        "{calls:?}"
    );
}

#[test]
fn a_new_session_with_the_key_of_a_lingering_publisher_hears_of_it_and_cannot_end_it() {
    let mut rec = Recorder::default();
    let config = RelayConfig {
        route_linger: Duration::from_secs(5),
        ..RelayConfig::default()
    };
    let start = Instant::now();
    let mut relay = cluster_relay(config, &mut rec);
    relay.tick(start, &mut rec);
    announced(&mut relay, &mut rec, 1, &[], true);
    rec.abrupt.push(1);
    relay.handle(1, Event::Closed, &mut rec);
    rec.abrupt.clear();
    // Session keys are reused: the next session to connect gets 1 and asks for
    // announcements.
    relay.handle(1, Event::Ready, &mut rec);
    let interest = Event::AnnounceInterest {
        stream: 10,
        prefix: String::new(),
    };
    relay.handle(1, interest, &mut rec);
    let calls = rec.take();
    assert!(
        calls.contains(&Call::ReplyAnnounces(1, 10, vec!["live/b".into()])),
        "{calls:?}"
    );
    // It leaves cleanly (it published nothing): the lingering broadcast stays until its
    // linger ends.
    relay.handle(1, Event::Closed, &mut rec);
    assert_eq!(watcher_heard(&rec.take()), Vec::<bool>::new());
    relay.tick(start + Duration::from_secs(5), &mut rec);
    assert_eq!(watcher_heard(&rec.take()), vec![false]);
}

#[test]
fn a_subscription_from_another_shard_waits_for_the_announcement_still_on_its_way() {
    let mut rec = Recorder::default();
    let shard = Topology::new(0, 2).owner("live/b", "video");
    let other = Topology::link(1 - shard);
    let mut relay = Relay::sharded(RelayConfig::default(), Topology::new(shard, 2));
    relay.open_links(&mut rec);
    let start = Instant::now();
    relay.tick(start, &mut rec);
    rec.take();
    // The other shard heard of live/b first and passes a subscription on; the mail telling
    // this shard of the broadcast comes after it.
    let passed_on = |stream, broadcast| Event::Subscribe {
        stream,
        request: subscribe(stream, broadcast),
    };
    relay.handle(other, passed_on(4, "live/b"), &mut rec);
    relay.handle(other, passed_on(8, "live/never"), &mut rec);
    assert_eq!(rec.take(), vec![], "neither is refused at once");
    assert_eq!(relay.next_timeout(), Some(start + ANNOUNCE_IN_FLIGHT));
    announced(&mut relay, &mut rec, other, &[], true);
    let calls = rec.take();
    assert!(
        calls.contains(&Call::SubscribeOk(other, 4))
            && calls
                .iter()
                .any(|c| matches!(c, Call::Subscribe(s, b, ..) if *s == other && b == "live/b")),
        "served once announced: {calls:?}"
    );
    assert!(
        !calls.iter().any(|c| matches!(c, Call::Reject(..))),
        "{calls:?}"
    );
    // A broadcast that never comes is refused once the wait is over, not before.
    relay.tick(start + ANNOUNCE_IN_FLIGHT / 2, &mut rec);
    assert_eq!(rec.take(), vec![]);
    relay.tick(start + ANNOUNCE_IN_FLIGHT, &mut rec);
    assert_eq!(
        rec.take(),
        vec![Call::Reject(other, 8, ErrorCode::NotFound)]
    );
    assert_eq!(relay.next_timeout(), None);
}
