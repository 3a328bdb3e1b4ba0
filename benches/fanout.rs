//! Relay core fan-out cost per frame per subscriber, without sockets or QUIC: the relay
//! routes frames (in groups of 64) to N subscribers through a `Sessions` that only
//! counts the calls. `cargo bench --bench fanout`.

use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use moqring::relay::{Relay, RelayConfig, SessionKey, Sessions};
use moqring::session::{Event, Frame};
use moqring::wire::{ErrorCode, Subscribe, TrackInfo};

/// Accepts every call; counts frames handed to subscribers.
#[derive(Default)]
struct Sink {
    frames: u64,
    next: u64,
}

impl Sessions for Sink {
    fn root(&self, _: SessionKey) -> String {
        String::new()
    }
    fn request_announces(&mut self, _: SessionKey, _: &str) -> Option<u64> {
        self.next += 4;
        Some(self.next)
    }
    fn reply_announces(&mut self, _: SessionKey, _: u64, _: &[(&str, &[u64])]) {}
    fn announce(&mut self, _: SessionKey, _: u64, _: &str, _: &[u64], _: bool) {}
    fn subscribe(&mut self, _: SessionKey, _: &Subscribe, _: usize) -> Option<u64> {
        self.next += 4;
        Some(self.next)
    }
    fn unsubscribe(&mut self, _: SessionKey, _: u64) {}
    fn request_track(&mut self, _: SessionKey, _: &str, _: &str, _: usize) -> Option<u64> {
        None
    }
    fn reply_track(&mut self, _: SessionKey, _: u64, _: &TrackInfo) {}
    fn fetch(&mut self, _: SessionKey, _: &moqring::wire::Fetch, _: usize) -> Option<u64> {
        None
    }
    fn reply_fetch(&mut self, _: SessionKey, _: u64, _: &[Frame]) {}
    fn reject(&mut self, _: SessionKey, _: u64, _: ErrorCode) {}
    fn subscribe_ok(&mut self, _: SessionKey, _: u64, _: u8) {}
    fn subscribe_start(&mut self, _: SessionKey, _: u64, _: u64) {}
    fn subscribe_end(&mut self, _: SessionKey, _: u64, _: u64) {}
    fn end_subscription(&mut self, _: SessionKey, _: u64, _: Option<u64>) {}
    fn open_group(&mut self, _: SessionKey, _: u64, _: u64) -> Option<u64> {
        self.next += 4;
        Some(self.next)
    }
    fn send_frame(&mut self, _: SessionKey, _: u64, frame: &Frame) {
        self.frames += u64::from(!frame.payload().is_empty());
    }
    fn finish_group(&mut self, _: SessionKey, _: u64) {}
    fn reset_group(&mut self, _: SessionKey, _: u64, _: u64) {}
    fn queued_bytes(&self, _: SessionKey) -> usize {
        0
    }
}

fn fanout(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout_frame");
    for subscribers in [1usize, 10, 100, 1000] {
        let mut sink = Sink::default();
        let mut relay = Relay::new(RelayConfig::default());
        let publisher = 0;
        relay.handle(publisher, Event::Ready, &mut sink);
        relay.handle(
            publisher,
            Event::Announced {
                stream: 0,
                path: "b".into(),
                hops: vec![],
                active: true,
            },
            &mut sink,
        );
        for s in 1..=subscribers {
            relay.handle(s, Event::Ready, &mut sink);
            let request = Subscribe {
                id: 0,
                broadcast: "b".into(),
                track: "t".into(),
                priority: 0,
                ordered: false,
                max_latency: Duration::ZERO,
                start_group: None,
                end_group: None,
            };
            relay.handle(s, Event::Subscribe { stream: 0, request }, &mut sink);
        }
        // The first track takes slab slot 0: its upstream token.
        let token = 0;
        relay.handle(
            publisher,
            Event::Group {
                token,
                stream: 2,
                sequence: 0,
            },
            &mut sink,
        );
        let frame = Frame::new(Bytes::from(vec![1u8; 1200]), 0, 0);
        // Groups of 64 frames, as a 30 fps track with 2 s groups has: the group's start
        // and end are part of the cost per frame.
        let mut sequence = 0;
        let mut in_group = 0;
        g.throughput(Throughput::Elements(subscribers as u64));
        g.bench_with_input(
            BenchmarkId::from_parameter(subscribers),
            &subscribers,
            |b, _| {
                b.iter(|| {
                    relay.handle(
                        publisher,
                        Event::Frame {
                            token,
                            sequence,
                            frame: frame.clone(),
                        },
                        &mut sink,
                    );
                    in_group += 1;
                    if in_group == 64 {
                        in_group = 0;
                        let end = Event::GroupEnd {
                            token,
                            sequence,
                            error: None,
                        };
                        relay.handle(publisher, end, &mut sink);
                        sequence += 1;
                        let start = Event::Group {
                            token,
                            stream: 2 + 4 * sequence,
                            sequence,
                        };
                        relay.handle(publisher, start, &mut sink);
                    }
                })
            },
        );
        assert!(sink.frames > 0, "frames reached the subscribers");
    }
    g.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
