//! The whole relay in memory: a `Core` and client `Session`s exchanging datagrams through
//! a test loop, no sockets. Measures the relay's allocations per frame per subscriber with
//! a counting global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use super::Core;
use crate::net::quic;
use crate::relay::RelayConfig;
use crate::session::{zc::BytesFactory, Event, Frame, Session, SessionConfig};
use crate::wire::{Subscribe, Version, DEFAULT_MAX_LATENCY};

/// Counts allocations made on this thread while counting is switched on.
struct CountingAlloc;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
    /// Bytes allocated minus bytes freed while counting was on (the relay's live heap).
    static LIVE: Cell<i64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counter is a
// const-initialised thread-local `Cell`, which never allocates.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as i64);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        live(-(layout.size() as i64));
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as i64 - layout.size() as i64);
        // SAFETY: `ptr` came from `System` with `layout`, as the caller guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// One allocation of `bytes` (a realloc's growth) while counting is on.
fn count(bytes: i64) {
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        }
    });
    live(bytes);
}

fn live(bytes: i64) {
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = LIVE.try_with(|l| l.set(l.get() + bytes));
        }
    });
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Runs `f` with allocation counting on; returns its result and the count.
fn counted<T>(f: impl FnOnce() -> T) -> (T, u64) {
    COUNT.with(|c| c.set(0));
    COUNTING.with(|on| on.set(true));
    let out = f();
    COUNTING.with(|on| on.set(false));
    (out, COUNT.with(|c| c.get()))
}

struct Client {
    addr: SocketAddr,
    session: Session,
    events: Vec<Event>,
}

struct World {
    core: Core,
    addr: SocketAddr,
    clients: Vec<Client>,
    /// Allocations made by the relay side while `measure` is on: receiving datagrams (quiche), dispatching events (sessions and
    /// relay), flushing queues into quiche, and quiche building packets.
    phase_allocs: [u64; 4],
    measure: bool,
    /// Added to the clock, to let lingers and drains expire without waiting.
    skew: std::time::Duration,
    _identity: crate::tls::Identity,
}

impl World {
    fn new() -> Self {
        let identity = crate::tls::self_signed().expect("certificate");
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
        Self {
            core: Core::new(quic, session, RelayConfig::default(), 100),
            addr: "10.0.0.1:4443".parse().unwrap(),
            clients: Vec::new(),
            phase_allocs: [0; 4],
            measure: false,
            skew: std::time::Duration::ZERO,
            _identity: identity,
        }
    }

    fn connect(&mut self, version: Version) -> usize {
        self.connect_over(version, false)
    }

    /// A client over raw QUIC or over WebTransport (`webtransport`).
    fn connect_over(&mut self, version: Version, webtransport: bool) -> usize {
        let i = self.clients.len();
        let (addr, session) = client_session_over(i, version, self.addr, webtransport);
        self.clients.push(Client {
            addr,
            session,
            events: Vec::new(),
        });
        self.pump();
        i
    }

    /// Moves datagrams both ways until nothing moves.
    fn pump(&mut self) {
        let mut buf = vec![0u8; 65536];
        let mut out = crate::net::gso::SendBatch::new(1 << 20, None);
        for _ in 0..10_000 {
            let now = Instant::now() + self.skew;
            let mut moved = 0;
            for c in &mut self.clients {
                c.session.flush(now);
                while let Ok((n, _)) = c.session.conn_mut().send(&mut buf) {
                    moved += 1;
                    let (core, addr, from) = (&mut self.core, self.addr, c.addr);
                    let (_, allocs) = counted(|| core.on_datagram(&mut buf[..n], from, addr));
                    if self.measure {
                        self.phase_allocs[0] += allocs;
                    }
                }
            }
            let clients = &mut self.clients;
            let relay_addr = self.addr;
            let mut scratch = vec![0u8; 65536];
            let core = &mut self.core;
            let (_, dispatched) = counted(|| core.dispatch(now));
            let (_, flushed) = counted(|| core.flush(now));
            let (_, allocs) = counted(|| {
                core.send(&mut out, |batch| {
                    // The clients' side is not the relay's cost.
                    COUNTING.with(|on| on.set(false));
                    for (bytes, to) in batch.runs() {
                        moved += 1;
                        if let Some(c) = clients.iter_mut().find(|c| c.addr == to) {
                            scratch[..bytes.len()].copy_from_slice(bytes);
                            let info = quiche::RecvInfo {
                                from: relay_addr,
                                to,
                            };
                            let _ = c.session.conn_mut().recv(&mut scratch[..bytes.len()], info);
                        }
                    }
                    COUNTING.with(|on| on.set(true));
                });
            });
            if self.measure {
                self.phase_allocs[1] += dispatched;
                self.phase_allocs[2] += flushed;
                self.phase_allocs[3] += allocs;
            }
            for c in &mut self.clients {
                c.session.process();
                c.session.drain_events(&mut c.events);
            }
            if moved == 0 {
                return;
            }
        }
        panic!("the world never settled");
    }
}

/// Client `i`'s address and session (rooted at `/anon`), connecting to `relay` with
/// `version`.
pub(super) fn client_session(
    i: usize,
    version: Version,
    relay: SocketAddr,
) -> (SocketAddr, Session) {
    client_session_over(i, version, relay, false)
}

/// Likewise, over raw QUIC or over WebTransport.
fn client_session_over(
    i: usize,
    version: Version,
    relay: SocketAddr,
    webtransport: bool,
) -> (SocketAddr, Session) {
    let addr: SocketAddr = format!("10.0.1.{}:5000", i + 1).parse().unwrap();
    let mut config = quic::client_config(&[version], false, webtransport).unwrap();
    let scid = [i as u8 + 1; quiche::MAX_CONN_ID_LEN];
    let scid = quiche::ConnectionId::from_ref(&scid);
    let conn = quiche::connect_with_buffer_factory::<BytesFactory>(
        Some("localhost"),
        &scid,
        addr,
        relay,
        &mut config,
    )
    .unwrap();
    let config = SessionConfig {
        origin: 100 + i as u64,
        path: Some("/anon".into()),
        versions: vec![version],
        authority: Some("localhost:4443".into()),
        ..SessionConfig::default()
    };
    (addr, Session::new(conn, config))
}

/// A subscription to track `t` of `anon/x` from its latest group.
fn subscribe_x() -> Subscribe {
    Subscribe {
        id: 0,
        broadcast: "anon/x".into(),
        track: "t".into(),
        priority: 0,
        ordered: true,
        max_latency: DEFAULT_MAX_LATENCY,
        start_group: None,
        end_group: None,
    }
}

/// Groups published in [`fanout_allocations`], the first two a warm-up, and frames in each.
const GROUPS: u64 = 6;
const FRAMES: usize = 40;

/// The relay's allocations while it fans measured groups out to its subscribers.
struct Fanout {
    /// Ours (dispatch and flush) while a group opens (its first frame, which opens a
    /// stream on every subscriber) and ends.
    per_group: u64,
    /// Ours while the group's other frames go out.
    per_frame: u64,
    /// Every phase (receive, dispatch, flush, send) over the measured groups.
    phases: [u64; 4],
}

/// Publishes [`GROUPS`] groups of [`FRAMES`] frames through the relay to `subscribers`
/// lite-05 subscribers (over WebTransport if `webtransport`, else raw QUIC) and counts
/// what the relay allocates for the last `GROUPS - 2`.
fn fanout_allocations(subscribers: usize, webtransport: bool) -> Fanout {
    let mut world = World::new();
    let publisher = world.connect(Version::Lite05);
    let subs: Vec<usize> = (0..subscribers)
        .map(|_| world.connect_over(Version::Lite05, webtransport))
        .collect();

    // Publisher answers the relay's announce request; subscribers look and subscribe.
    let events = std::mem::take(&mut world.clients[publisher].events);
    for e in events {
        if let Event::AnnounceInterest { stream, .. } = e {
            world.clients[publisher]
                .session
                .reply_announces(stream, &[("anon/x", &[])]);
        }
    }
    for &s in &subs {
        let root = world.clients[s].session.root().to_string();
        world.clients[s].session.request_announces(&root);
    }
    world.pump();
    for &s in &subs {
        let announced = world.clients[s]
            .events
            .iter()
            .any(|e| matches!(e, Event::Announced { path, active: true, .. } if path == "anon/x"));
        assert!(announced, "subscriber {s} saw the broadcast");
        let request = subscribe_x();
        world.clients[s].session.subscribe(&request, 0);
    }
    world.pump();
    let stream = world.clients[publisher]
        .events
        .iter()
        .find_map(|e| match e {
            Event::Subscribe { stream, .. } => Some(*stream),
            _ => None,
        })
        .expect("the relay subscribed upstream");
    assert_eq!(world.core.relay().stats().upstream_subscribes, 1);

    let payload = Bytes::from(vec![0x5a; 1000]);
    // Our allocations (dispatch and flush) while a group opens (its first frame, which
    // opens a stream on every subscriber, and its end), and while the rest of its frames
    // go out.
    let mut per_group = 0;
    let mut per_frame = 0;
    let ours = |world: &World| world.phase_allocs[1] + world.phase_allocs[2];
    let mut publish_group = |world: &mut World, sequence: u64| {
        let p = &mut world.clients[publisher].session;
        if sequence == 0 {
            p.subscribe_start(stream, 0);
        }
        let group = p.open_group(stream, sequence).unwrap();
        for f in 0..FRAMES {
            let before = ours(world);
            let frame = Frame::new(payload.clone(), f as u64, f.saturating_sub(1) as u64);
            world.clients[publisher].session.send_frame(group, &frame);
            world.pump();
            let spent = ours(world) - before;
            if f == 0 {
                per_group += spent;
            } else {
                per_frame += spent;
            }
        }
        let before = ours(world);
        world.clients[publisher].session.finish_group(group);
        world.pump();
        // The relay's FINs come alone, after its frames: they wait for those frames' ACKs
        // (see `session::send`), which the clients send once their ACK delay is over.
        world.skew += std::time::Duration::from_secs(1);
        world.pump();
        per_group += ours(world) - before;
    };
    // Warm up: queues, buffers and stream maps reach their working size.
    publish_group(&mut world, 0);
    publish_group(&mut world, 1);
    world.measure = true;
    for sequence in 2..GROUPS {
        publish_group(&mut world, sequence);
    }
    world.measure = false;

    for &s in &subs {
        let frames = world.clients[s]
            .events
            .iter()
            .filter(|e| matches!(e, Event::Frame { frame, .. } if frame.payload() == &payload))
            .count();
        assert_eq!(
            frames,
            GROUPS as usize * FRAMES,
            "subscriber {s} got every frame"
        );
    }
    Fanout {
        per_group,
        per_frame,
        phases: world.phase_allocs,
    }
}

#[test]
fn fanning_a_frame_out_allocates_nothing_per_subscriber_in_our_code() {
    fanout_allocates_nothing_per_subscriber(false);
}

#[test]
fn fanning_a_frame_out_to_webtransport_subscribers_allocates_nothing_per_subscriber() {
    fanout_allocates_nothing_per_subscriber(true);
    // The stream prefix is written once per group stream: a frame costs the same as on
    // raw QUIC.
    assert_eq!(
        fanout_allocations(5, true).per_frame,
        fanout_allocations(5, false).per_frame
    );
}

fn fanout_allocates_nothing_per_subscriber(webtransport: bool) {
    let few = fanout_allocations(5, webtransport);
    let many = fanout_allocations(20, webtransport);
    let measured = (GROUPS - 2) as f64;
    for (subscribers, f) in [(5, &few), (20, &many)] {
        let groups = measured * subscribers as f64;
        let pairs = groups * FRAMES as f64;
        let [receive, dispatch, flush, send] = f.phases.map(|n| n as f64 / pairs);
        eprintln!(
            "{subscribers} subscribers (webtransport: {webtransport}): our code allocates {:.2} per group per subscriber \
             (opening its stream, ending it) and {:.2} per frame received after a group's \
             first, whatever the subscribers; quiche {:.2} per frame per subscriber \
             (receive {receive:.2}, send {send:.2}; one packet per frame here); ours on \
             average {:.3} per frame per subscriber (dispatch {dispatch:.3}, flush {flush:.3})",
            f.per_group as f64 / groups,
            f.per_frame as f64 / (measured * (FRAMES - 1) as f64),
            receive + send,
            dispatch + flush,
        );
    }
    // Once its group is open, a frame costs our code the same whether 5 or 20 subscribers
    // receive it: fanning it out allocates nothing per subscriber (what it costs, about
    // two allocations, is receiving it once).
    assert_eq!(few.per_frame, many.per_frame, "per-frame allocations");
    assert!(
        (many.per_frame as f64) < 3.0 * measured * FRAMES as f64,
        "{} allocations receiving {} frames",
        many.per_frame,
        measured as usize * (FRAMES - 1)
    );
    // What our code allocates per subscriber is per group: its stream on each one.
    let per_subscriber_group = (many.per_group - few.per_group) as f64 / (15.0 * measured);
    assert!(
        per_subscriber_group < 10.0,
        "{per_subscriber_group:.2} allocations per group per subscriber"
    );
}

/// Runs a track of `groups` one-frame groups through the relay, with subscribers coming
/// and going, then everyone leaving; returns the relay's heap bytes still allocated.
fn relay_heap_after(groups: u64) -> i64 {
    let mut world = World::new();
    LIVE.with(|l| l.set(0));
    let publisher = world.connect(Version::Lite05);
    let request = subscribe_x();
    let mut stream = None;
    let mut subscribed = |world: &mut World| {
        for e in std::mem::take(&mut world.clients[publisher].events) {
            match e {
                Event::AnnounceInterest { stream, .. } => world.clients[publisher]
                    .session
                    .reply_announces(stream, &[("anon/x", &[])]),
                Event::Subscribe { stream: s, .. } => {
                    world.clients[publisher].session.subscribe_ok(s, 0);
                    stream = Some(s);
                }
                _ => {}
            }
        }
        stream
    };
    let join = |world: &mut World| {
        let s = world.connect(Version::Lite04);
        world.clients[s].session.subscribe(&request, 0);
        world.pump();
        s
    };
    world.pump();
    subscribed(&mut world);
    let mut subs = vec![join(&mut world), join(&mut world), join(&mut world)];
    let stream = subscribed(&mut world).expect("the relay subscribed upstream");

    let payload = Bytes::from(vec![0x33; 500]);
    for sequence in 0..groups {
        let p = &mut world.clients[publisher].session;
        let group = p.open_group(stream, sequence).unwrap();
        p.send_frame(group, &Frame::new(payload.clone(), sequence, 0));
        p.finish_group(group);
        world.pump();
        // Subscribers come and go.
        if sequence % 500 == 250 {
            let leaving = subs.remove(0);
            world.clients[leaving]
                .session
                .close(crate::wire::ErrorCode::Cancel, "bye");
            subs.push(join(&mut world));
        }
        for c in &mut world.clients {
            c.events.clear();
        }
    }
    // The track ends, everyone leaves, and the linger passes.
    let p = &mut world.clients[publisher].session;
    p.subscribe_end(stream, groups);
    p.end_subscription(stream, None);
    world.pump();
    for c in &mut world.clients {
        c.session.close(crate::wire::ErrorCode::Cancel, "done");
    }
    // quiche's draining timers run on the real clock; the relay's linger on ours.
    world.skew = std::time::Duration::from_secs(5);
    for _ in 0..100 {
        world.pump();
        if world.core.table().is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Past the finished track's linger.
    world.skew = std::time::Duration::from_secs(10);
    world.pump();
    assert!(
        world.core.table().is_empty(),
        "every connection is gone: {} left",
        world.core.table().len()
    );
    assert_eq!(world.core.relay().track_count(), 0);
    LIVE.with(|l| l.get())
}

#[test]
fn relay_memory_returns_to_baseline_after_thousands_of_groups() {
    let short = relay_heap_after(500);
    let long = relay_heap_after(20_000);
    eprintln!("relay heap with everyone gone: {short} bytes after 500 groups, {long} after 20000");
    // What stays is capacity kept by maps and scratch lists, which depends on how the end
    // (connections draining, announcements held for ending subscriptions) and the most
    // group streams open at once (a group's end sent alone waits for the ACK of its
    // frames, on the real clock) interleave with the clock: measured 0-4.8 KB apart between runs, in a
    // few fixed steps. Nothing is held per group: one byte per group would be 19.5 KB.
    assert!(
        long - short < 8192,
        "{} bytes more after 19500 more groups",
        long - short
    );
    assert!(long < 128 * 1024, "{long} bytes still allocated");
}

/// `--bind host:0`: the HTTP side door takes the drawn port's number over TCP; when that is
/// taken, the relay draws another port instead of failing. A port that was asked for is
/// not changed, and the drawing ends.
#[test]
fn a_drawn_port_whose_number_is_taken_is_drawn_again() {
    use std::sync::{Arc, Mutex};
    let taken = || Err(std::io::Error::from(std::io::ErrorKind::AddrInUse));
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();

    let seen = Arc::new(Mutex::new(Vec::new()));
    let calls = seen.clone();
    let mut on_bound: super::OnBound = Box::new(move |addr| {
        calls.lock().unwrap().push(addr);
        if calls.lock().unwrap().len() < 3 {
            taken()
        } else {
            Ok(())
        }
    });
    let group = super::bind(any, 2, false, &mut on_bound).expect("a third port works");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    assert_eq!(group.sockets.len(), 2);
    assert_eq!(group.sockets[0].local_addr().unwrap(), seen[2]);
    assert_ne!(seen[2].port(), 0);

    // A port asked for: its error at once.
    let asked = group.sockets[0].local_addr().unwrap();
    drop(group);
    let mut count = 0;
    let mut refuse: super::OnBound = Box::new(move |_| {
        count += 1;
        assert_eq!(count, 1, "a port asked for is not drawn again");
        taken()
    });
    let err = super::bind(asked, 1, false, &mut refuse)
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);

    // Always taken: the drawing ends with the error.
    let draws = Arc::new(Mutex::new(0));
    let counted = draws.clone();
    let mut always: super::OnBound = Box::new(move |_| {
        *counted.lock().unwrap() += 1;
        taken()
    });
    let err = super::bind(any, 1, false, &mut always)
        .map(|_| ())
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    assert_eq!(*draws.lock().unwrap(), super::PORT_DRAWS);
}
