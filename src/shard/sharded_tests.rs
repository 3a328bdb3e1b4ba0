//! Several shards in memory: `Core`s exchanging mail, client `Session`s exchanging
//! datagrams with them, routed either as the steering program does (by destination
//! connection ID) or as the kernel's address hash does (so shards must forward), no
//! sockets and no threads.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use super::{Admission, Core, Mail};
use crate::net::{quic, steer};
use crate::relay::{RelayConfig, Topology};
use crate::session::{Event, Frame, Session, SessionConfig};
use crate::wire::{Subscribe, Version, DEFAULT_MAX_LATENCY};

struct Client {
    addr: SocketAddr,
    session: Session,
    events: Vec<Event>,
}

struct Shards {
    cores: Vec<Core>,
    /// Mail posted to each core, delivered on the next turn.
    mail: Vec<Vec<Mail>>,
    /// Datagrams reach the shard their connection ID names; else the one the client's
    /// address hashes to.
    steered: bool,
    addr: SocketAddr,
    clients: Vec<Client>,
    _identity: crate::tls::Identity,
}

impl Shards {
    fn new(shards: usize, steered: bool) -> Self {
        let identity = crate::tls::self_signed().expect("certificate");
        let admission = Admission::new(100);
        let cores = (0..shards)
            .map(|shard| {
                let quic = quic::server_config(
                    &identity.cert.to_string_lossy(),
                    &identity.key.to_string_lossy(),
                    &Version::ALL,
                    30_000,
                )
                .expect("server config");
                let session = SessionConfig {
                    origin: 7,
                    ..SessionConfig::default()
                };
                let topology = Topology::new(shard, shards);
                Core::sharded(
                    quic,
                    session,
                    RelayConfig::default(),
                    admission.clone(),
                    topology,
                )
            })
            .collect();
        Self {
            cores,
            mail: (0..shards).map(|_| Vec::new()).collect(),
            steered,
            addr: "10.0.0.1:4443".parse().unwrap(),
            clients: Vec::new(),
            _identity: identity,
        }
    }

    /// Connects a lite-05 client and returns its index and the shard holding it.
    fn connect(&mut self) -> (usize, usize) {
        let i = self.clients.len();
        let (addr, session) = super::tests::client_session(i, Version::Lite05, self.addr);
        let before: Vec<usize> = self.cores.iter().map(|c| c.table().len()).collect();
        self.clients.push(Client {
            addr,
            session,
            events: Vec::new(),
        });
        self.pump();
        let shard = (0..self.cores.len())
            .find(|&s| self.cores[s].table().len() > before[s])
            .expect("some shard accepted the connection");
        (i, shard)
    }

    /// Moves datagrams and mail until nothing moves.
    fn pump(&mut self) {
        for _ in 0..10_000 {
            if !self.step() {
                return;
            }
        }
        panic!("the shards never settled");
    }

    /// One round: clients send, shards take mail, run a turn and post mail, clients read.
    /// Returns whether anything moved.
    fn step(&mut self) -> bool {
        let mut buf = vec![0u8; 65536];
        let mut out = crate::net::gso::SendBatch::new(1 << 20, None);
        let shards = self.cores.len();
        let now = Instant::now();
        let mut moved = 0;
        for (i, c) in self.clients.iter_mut().enumerate() {
            c.session.flush(now);
            while let Ok((n, _)) = c.session.conn_mut().send(&mut buf) {
                moved += 1;
                let shard = if self.steered {
                    steer::home_shard(&buf[..n], shards)
                } else {
                    i % shards
                };
                let reply = self.cores[shard].on_datagram(&mut buf[..n], c.addr, self.addr);
                assert!(reply.is_none(), "no version negotiation here");
            }
        }
        for (shard, core) in self.cores.iter_mut().enumerate() {
            for mail in self.mail[shard].drain(..) {
                moved += 1;
                core.on_mail(mail, |_, _| panic!("no version negotiation here"));
            }
        }
        let clients = &mut self.clients;
        let relay_addr = self.addr;
        for core in &mut self.cores {
            core.dispatch(now);
            core.transmit(now, &mut out, |batch| {
                for (bytes, to) in batch.runs() {
                    moved += 1;
                    if let Some(c) = clients.iter_mut().find(|c| c.addr == to) {
                        let mut copy = bytes.to_vec();
                        let info = quiche::RecvInfo {
                            from: relay_addr,
                            to,
                        };
                        let _ = c.session.conn_mut().recv(&mut copy, info);
                    }
                }
            });
            let mail = &mut self.mail;
            core.post(|shard, m| {
                mail[shard].push(m);
                Ok(())
            });
        }
        for c in &mut self.clients {
            c.session.process();
            c.session.drain_events(&mut c.events);
        }
        moved > 0
    }
}

fn subscribe(track: &str) -> Subscribe {
    Subscribe {
        id: 0,
        broadcast: "anon/x".into(),
        track: track.into(),
        priority: 0,
        ordered: true,
        max_latency: DEFAULT_MAX_LATENCY,
        start_group: None,
        end_group: None,
    }
}

/// A publisher on one shard, a track owned by another, and subscribers on every shard:
/// every subscriber gets every frame, through one subscription at the publisher.
fn fan_out_across_shards(shards: usize, steered: bool) -> Shards {
    // Enough that each shard gets some (connection IDs are random).
    let subscribers = 10 * shards;
    const GROUPS: u64 = 3;
    const FRAMES: usize = 5;
    let mut world = Shards::new(shards, steered);
    let (publisher, publisher_shard) = world.connect();
    let subs: Vec<(usize, usize)> = (0..subscribers).map(|_| world.connect()).collect();
    for s in 0..shards {
        assert!(
            subs.iter().any(|&(_, shard)| shard == s),
            "subscribers on shard {s}: {subs:?}"
        );
    }
    // A track another shard owns.
    let any = Topology::new(0, shards);
    let track = (0..)
        .map(|i| format!("t{i}"))
        .find(|t| any.owner("anon/x", t) != publisher_shard)
        .unwrap();

    for e in std::mem::take(&mut world.clients[publisher].events) {
        if let Event::AnnounceInterest { stream, .. } = e {
            world.clients[publisher]
                .session
                .reply_announces(stream, &[("anon/x", &[])]);
        }
    }
    for &(s, _) in &subs {
        let root = world.clients[s].session.root().to_string();
        world.clients[s].session.request_announces(&root);
    }
    world.pump();
    let mut sub_streams = Vec::new();
    for &(s, shard) in &subs {
        let announced = world.clients[s]
            .events
            .iter()
            .any(|e| matches!(e, Event::Announced { path, active: true, .. } if path == "anon/x"));
        assert!(
            announced,
            "subscriber {s} on shard {shard} saw the broadcast"
        );
        let stream = world.clients[s].session.subscribe(&subscribe(&track), 0);
        sub_streams.push(stream.expect("subscribed"));
    }
    world.pump();
    let streams: Vec<u64> = world.clients[publisher]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Subscribe { stream, .. } => Some(*stream),
            _ => None,
        })
        .collect();
    assert_eq!(streams.len(), 1, "one subscription reaches the publisher");
    let publisher_subscribes: u64 = world
        .cores
        .iter()
        .map(|c| c.relay().stats().publisher_subscribes)
        .sum();
    assert_eq!(publisher_subscribes, 1);
    assert_eq!(
        world.cores[publisher_shard]
            .relay()
            .stats()
            .publisher_subscribes,
        1
    );

    let stream = streams[0];
    let payload = |g: u64, f: usize| Bytes::from(format!("group {g} frame {f}").into_bytes());
    for g in 0..GROUPS {
        let p = &mut world.clients[publisher].session;
        if g == 0 {
            p.subscribe_start(stream, 0);
        }
        let group = p.open_group(stream, g).unwrap();
        for f in 0..FRAMES {
            p.send_frame(group, &Frame::new(payload(g, f), f as u64, 0));
        }
        p.finish_group(group);
        world.pump();
    }
    for &(s, shard) in &subs {
        let got: Vec<Bytes> = world.clients[s]
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Frame { frame, .. } => Some(frame.payload().clone()),
                _ => None,
            })
            .collect();
        let want: Vec<Bytes> = (0..GROUPS)
            .flat_map(|g| (0..FRAMES).map(move |f| payload(g, f)))
            .collect();
        assert_eq!(got, want, "subscriber {s} on shard {shard}");
    }

    // The track ends and at once the publisher leaves: every subscriber, whichever shard
    // it is on, reads the end of its track before it hears the broadcast is gone (on a
    // mirror shard the two news travel different paths).
    let p = &mut world.clients[publisher].session;
    p.subscribe_end(stream, GROUPS);
    p.end_subscription(stream, None);
    // The end reaches the publisher's shard, then the publisher's close follows it.
    world.step();
    world.clients[publisher]
        .session
        .close(crate::wire::ErrorCode::Cancel, "done");
    // QUIC's acknowledgement and close timers run on the real clock.
    let started = Instant::now();
    let mut closed = vec![false; subs.len()];
    let told = |world: &Shards| {
        subs.iter().all(|&(s, _)| {
            world.clients[s]
                .events
                .iter()
                .any(|e| matches!(e, Event::Announced { active: false, .. }))
        })
    };
    while !told(&world) && started.elapsed() < std::time::Duration::from_secs(5) {
        world.pump();
        // Each subscriber closes its side once its track ended, as moq-net clients do.
        for (i, (&(s, _), &stream)) in subs.iter().zip(&sub_streams).enumerate() {
            let c = &mut world.clients[s];
            let ended = c
                .events
                .iter()
                .any(|e| matches!(e, Event::SubscriptionClosed { .. }));
            if ended && !closed[i] {
                closed[i] = true;
                c.session.unsubscribe(stream);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    eprintln!("broadcast end told after {:?}", started.elapsed());
    for &(s, shard) in &subs {
        let events = &world.clients[s].events;
        let ended = events
            .iter()
            .position(|e| matches!(e, Event::SubscriptionClosed { error: None, .. }));
        let gone = events
            .iter()
            .position(|e| matches!(e, Event::Announced { active: false, .. }));
        assert!(
            matches!((ended, gone), (Some(e), Some(g)) if e < g),
            "subscriber {s} on shard {shard}: track end at {ended:?}, broadcast end at {gone:?}"
        );
    }
    world
}

#[test]
fn two_steered_shards_fan_a_track_out_through_its_owner() {
    let world = fan_out_across_shards(2, true);
    let forwarded: u64 = world.cores.iter().map(Core::forwarded).sum();
    assert_eq!(
        forwarded, 0,
        "steering delivers every datagram to its shard"
    );
}

#[test]
fn without_steering_shards_forward_misrouted_datagrams() {
    let world = fan_out_across_shards(2, false);
    let forwarded: u64 = world.cores.iter().map(Core::forwarded).sum();
    assert!(forwarded > 0, "address hashing misroutes some connections");
}

#[test]
fn four_shards_keep_one_upstream_subscription() {
    fan_out_across_shards(4, true);
}
