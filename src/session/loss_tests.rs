//! Sessions over a lossy path, in memory: the pair's datagrams dropped by a seeded coin.
//! Groups still arrive byte-exact and whole (QUIC retransmits what was lost), on raw QUIC
//! and WebTransport alike, and a subscriber whose groups outlive their latency budget gets
//! them reset with `Old`, never a stall. quiche's loss recovery reads the real clock, so
//! these pairs run on it (a few seconds each), not on the virtual clock of the others.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;

/// A deterministic coin: xorshift64*, seeded per test.
struct Coin(u64);

impl Coin {
    /// True with probability `p`.
    fn flip(&mut self, p: f64) -> bool {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
        (x as f64) / ((1u64 << 53) as f64) < p
    }
}

/// Datagrams dropped and carried.
#[derive(Debug, Default)]
struct Tally {
    dropped: u64,
    carried: u64,
}

/// Flushes `from` and carries its datagrams to `to`, dropping each with probability `loss`.
fn carry_lossy(
    from: &mut Session,
    to: &mut Session,
    (from_addr, to_addr): (&str, &str),
    now: Instant,
    coin: &mut Coin,
    loss: f64,
    tally: &mut Tally,
) -> bool {
    from.flush(now);
    let info = quiche::RecvInfo {
        from: from_addr.parse().unwrap(),
        to: to_addr.parse().unwrap(),
    };
    let mut buf = vec![0u8; 65536];
    let mut moved = false;
    while let Ok((n, _)) = from.conn_mut().send(&mut buf) {
        moved = true;
        if coin.flip(loss) {
            tally.dropped += 1;
            continue;
        }
        tally.carried += 1;
        let _ = to.conn_mut().recv(&mut buf[..n], info);
    }
    moved
}

impl Pair {
    /// Runs the pair for `span` of real time in 2 ms steps, dropping datagrams with
    /// probability `loss` and firing QUIC's timers as they come due; stops early once
    /// `done` holds for the client's events.
    fn run_lossy(
        &mut self,
        span: Duration,
        coin: &mut Coin,
        loss: f64,
        done: impl Fn(&[Event]) -> bool,
    ) -> Tally {
        let mut tally = Tally::default();
        let end = Instant::now() + span;
        while Instant::now() < end && !done(&self.client_events) {
            self.now = Instant::now();
            for _ in 0..100 {
                let a = carry_lossy(
                    &mut self.client,
                    &mut self.server,
                    (CLIENT, SERVER),
                    self.now,
                    coin,
                    loss,
                    &mut tally,
                );
                let b = carry_lossy(
                    &mut self.server,
                    &mut self.client,
                    (SERVER, CLIENT),
                    self.now,
                    coin,
                    loss,
                    &mut tally,
                );
                self.client.process();
                self.client.drain_events(&mut self.client_events);
                self.server.process();
                self.server.drain_events(&mut self.server_events);
                if !a && !b {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(2));
            let now = Instant::now();
            for s in [&mut self.client, &mut self.server] {
                if s.conn().timeout_instant().is_some_and(|t| t <= now) {
                    s.conn_mut().on_timeout();
                }
            }
        }
        tally
    }
}

/// Frames of each group the client received, by sequence, and how each group ended.
fn received(events: &[Event]) -> (Vec<Vec<Bytes>>, Vec<Option<Option<u64>>>) {
    let groups = events
        .iter()
        .filter_map(|e| match e {
            Event::Group { sequence, .. }
            | Event::Frame { sequence, .. }
            | Event::GroupEnd { sequence, .. } => Some(*sequence as usize + 1),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let mut frames = vec![Vec::new(); groups];
    let mut ends = vec![None; groups];
    for e in events {
        match e {
            Event::Frame {
                sequence, frame, ..
            } => frames[*sequence as usize].push(frame.payload().clone()),
            Event::GroupEnd {
                sequence, error, ..
            } => ends[*sequence as usize] = Some(*error),
            _ => {}
        }
    }
    (frames, ends)
}

/// Publishes `groups` groups of 4 frames from the server to a client subscription with
/// `max_latency`, over a path losing `loss` of its datagrams, one group every 50 ms.
fn lossy_track(
    pair: &mut Pair,
    groups: u64,
    loss: f64,
    seed: u64,
    max_latency: Duration,
) -> (Vec<Vec<Bytes>>, Tally) {
    let mut coin = Coin(seed);
    let sub = pair.subscribe(0, true, max_latency);
    pair.server.subscribe_ok(sub, 0);
    let mut sent = Vec::new();
    let mut tally = Tally::default();
    for sequence in 0..groups {
        let group = pair.server.open_group(sub, sequence).unwrap();
        let frames: Vec<Bytes> = (0..4u8)
            .map(|f| Bytes::from(vec![sequence as u8 ^ f; 700 + 900 * usize::from(f)]))
            .collect();
        for frame in &frames {
            pair.server
                .send_frame(group, &Frame::new(frame.clone(), 0, 0));
        }
        pair.server.finish_group(group);
        sent.push(frames);
        let t = pair.run_lossy(Duration::from_millis(50), &mut coin, loss, |_| false);
        tally.dropped += t.dropped;
        tally.carried += t.carried;
    }
    // Time for the last retransmissions: until every group ended, at most 10 s.
    let all_ended = |events: &[Event]| {
        let ended = events
            .iter()
            .filter(|e| matches!(e, Event::GroupEnd { .. }))
            .count();
        ended as u64 >= groups
    };
    let t = pair.run_lossy(Duration::from_secs(10), &mut coin, loss, all_ended);
    tally.dropped += t.dropped;
    tally.carried += t.carried;
    (sent, tally)
}

#[test]
fn groups_arrive_whole_through_loss_on_both_transports() {
    for webtransport in [false, true] {
        for (loss, seed) in [(0.05, 7), (0.20, 11)] {
            let client = SessionConfig {
                path: Some("/anon".into()),
                versions: vec![Version::Lite05],
                authority: Some("localhost:4443".into()),
                ..SessionConfig::default()
            };
            let mut pair = Pair::build(
                Version::Lite05,
                client,
                SessionConfig::default(),
                webtransport,
            );
            let (sent, tally) = lossy_track(&mut pair, 20, loss, seed, Duration::from_secs(30));
            assert!(
                tally.dropped > 0,
                "the path lost nothing ({tally:?}); the test proves nothing"
            );
            let (got, ends) = received(&pair.client_events);
            assert_eq!(
                got, sent,
                "webtransport {webtransport}, loss {loss}: {tally:?}"
            );
            assert!(
                ends.iter().all(|e| *e == Some(None)),
                "every group ends cleanly: {ends:?}"
            );
        }
    }
}

#[test]
fn a_group_that_outlives_its_budget_on_a_lossy_path_is_reset_with_old_never_stalled() {
    let mut pair = Pair::new(Version::Lite05);
    // A 30 % loss path, a 50 ms budget: retransmissions make groups late, and a newer
    // group supersedes them.
    let (sent, tally) = lossy_track(&mut pair, 20, 0.30, 3, Duration::from_millis(50));
    assert!(tally.dropped > 0);
    let (got, ends) = received(&pair.client_events);
    assert_eq!(ends.len(), sent.len(), "the last group arrived: no stall");
    let mut whole = 0;
    for (seq, end) in ends.iter().enumerate() {
        match end {
            // Delivered: byte-exact.
            Some(None) => {
                assert!(got[seq] == sent[seq], "group {seq} differs");
                whole += 1;
            }
            // Reset for its budget: named as such.
            Some(Some(code)) => assert_eq!(*code, ErrorCode::Old.code(), "group {seq}"),
            // Never heard of: the relay reset it before its header got through (counted
            // below).
            None => {}
        }
    }
    let reset = ends.iter().filter(|e| matches!(e, Some(Some(_)))).count();
    let vanished = ends.iter().filter(|e| e.is_none()).count();
    assert!(
        reset + vanished <= pair.server.late_groups() as usize,
        "{reset} reset and {vanished} unheard of, but the relay reset only {} for their budget",
        pair.server.late_groups()
    );
    eprintln!("30 % loss, 50 ms budget: {whole} groups whole, {reset} reset with Old ({tally:?})");
    assert_eq!(
        ends.last(),
        Some(&Some(None)),
        "the newest group always arrives"
    );
    assert!(whole > 0);
}
