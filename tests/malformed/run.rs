//! Runs the case tables against a relay: each (case, version) on fresh raw connections,
//! several at a time, each outcome checked against the table together with what must
//! still hold after it (the session serves again after a stream-level refusal, the
//! subscriber of a bad publisher keeps its session and receives the next group).

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use moqring::wire::{ControlType, Message, SubscribeResponse, TrackRequest, Version};

use crate::cases::{Case, Down, On, HONEST};
use crate::peer::{setup_bytes, GroupSeen, Outcome, Peer};

/// Cases run at once (each is mostly waiting on the relay).
const WORKERS: usize = 6;

/// One (case, version) run.
pub struct Row {
    pub name: String,
    pub version: Version,
    pub expect: Outcome,
    pub got: Result<Outcome, String>,
}

impl Row {
    pub fn passed(&self) -> bool {
        self.got.as_ref() == Ok(&self.expect)
    }
}

/// Runs every case on every version it lists, `WORKERS` at a time, in table order.
pub fn run_all<'a>(addr: SocketAddr, cases: impl IntoIterator<Item = &'a Case>) -> Vec<Row> {
    let items: Vec<(&Case, Version)> = cases
        .into_iter()
        .flat_map(|c| c.versions.iter().map(move |v| (c, *v)))
        .collect();
    let next = AtomicUsize::new(0);
    let rows = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..WORKERS {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(case, version)) = items.get(i) else {
                    return;
                };
                let got =
                    std::panic::catch_unwind(AssertUnwindSafe(|| run_case(addr, case, version)))
                        .unwrap_or_else(|panic| Err(panic_text(&panic)));
                let row = Row {
                    name: case.name.clone(),
                    version,
                    expect: case.expect,
                    got,
                };
                rows.lock().unwrap().push((i, row));
            });
        }
    });
    let mut rows = rows.into_inner().unwrap();
    rows.sort_by_key(|(i, _)| *i);
    rows.into_iter().map(|(_, row)| row).collect()
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panicked".into())
}

/// Fails with every row that differs from its table entry.
pub fn assert_rows(rows: &[Row]) {
    let bad: Vec<String> = rows
        .iter()
        .filter(|r| !r.passed())
        .map(|r| {
            format!(
                "  {} [{}]: expected {:?}, got {:?}",
                r.name, r.version, r.expect, r.got
            )
        })
        .collect();
    assert!(
        bad.is_empty(),
        "{} of {} cases differ from the table:\n{}",
        bad.len(),
        rows.len(),
        bad.join("\n")
    );
}

fn run_case(addr: SocketAddr, case: &Case, v: Version) -> Result<Outcome, String> {
    match case.on {
        On::AnnounceReply => announce_reply(addr, case, v),
        On::SubscribeReply | On::TrackReply | On::Group | On::GroupBeforeOk => {
            publisher(addr, case, v)
        }
        On::H3Uni | On::H3Bidi | On::H3UniInSession | On::WtBidi | On::WtUni => {
            webtransport(addr, case, v)
        }
        _ => requester(addr, case, v),
    }
}

fn webtransport(addr: SocketAddr, case: &Case, v: Version) -> Result<Outcome, String> {
    let bytes = (case.bytes)(v, 0);
    let raw = matches!(case.on, On::H3Uni | On::H3Bidi);
    let mut peer = if raw {
        Peer::h3(addr)
    } else {
        Peer::webtransport(addr)
    };
    let id = match case.on {
        On::H3Bidi | On::WtBidi => peer.open_bidi(&bytes, case.fin),
        On::WtUni => peer.open_uni(&bytes, case.fin),
        _ => peer.open_h3_uni(&bytes, case.fin),
    };
    let outcome = peer.outcome(id);
    if matches!(outcome, Outcome::Closed(_) | Outcome::SessionClosed(_)) {
        return Ok(outcome);
    }
    // Only this stream was refused: the connection still opens (or keeps) a session.
    let serves = if raw { peer.start_session() } else { true } && peer.serves();
    let outcome = peer.settle(id, outcome);
    if matches!(outcome, Outcome::Closed(_) | Outcome::SessionClosed(_)) {
        return Ok(outcome);
    }
    if !serves {
        return Err(format!("{outcome:?}, then the connection stopped serving"));
    }
    Ok(outcome)
}

/// Subscribes to the honest track and waits for the relay's first answer on the stream.
fn subscribe_honest(peer: &mut Peer) -> u64 {
    let id = peer.subscribe(0, HONEST, "t");
    let _: SubscribeResponse = peer.read_msg(id);
    id
}

fn requester(addr: SocketAddr, case: &Case, v: Version) -> Result<Outcome, String> {
    let bytes = (case.bytes)(v, 0);
    let before_setup = matches!(case.on, On::UniBeforeSetup | On::BidiBeforeSetup);
    let mut peer = if before_setup {
        Peer::bare(addr, v)
    } else {
        Peer::connect(addr, v)
    };
    let id = match case.on {
        On::Uni | On::UniBeforeSetup => peer.open_uni(&bytes, case.fin),
        On::AfterSubscribe => {
            let id = subscribe_honest(&mut peer);
            peer.send(id, &bytes, case.fin);
            id
        }
        On::BidiAfterSubscribe => {
            subscribe_honest(&mut peer);
            peer.open_bidi(&bytes, case.fin)
        }
        On::BidiBeforeSetup => {
            let id = peer.open_bidi(&bytes, case.fin);
            let early = peer.outcome(id);
            if early != Outcome::Quiet {
                return Err(format!("answered before SETUP: {early:?}"));
            }
            peer.open_uni(&setup_bytes(), true);
            id
        }
        _ => peer.open_bidi(&bytes, case.fin),
    };
    let outcome = peer.outcome(id);
    if matches!(outcome, Outcome::Closed(_)) {
        return Ok(outcome);
    }
    if case.on == On::UniBeforeSetup {
        peer.open_uni(&setup_bytes(), true);
    }
    let serves = peer.serves();
    let outcome = peer.settle(id, outcome);
    if !serves && !matches!(outcome, Outcome::Closed(_)) {
        return Err(format!("{outcome:?}, then the session stopped serving"));
    }
    Ok(outcome)
}

fn announce_reply(addr: SocketAddr, case: &Case, v: Version) -> Result<Outcome, String> {
    let mut publisher = Peer::connect(addr, v);
    let id = publisher.accept_announce_request();
    publisher.send(id, &(case.bytes)(v, 0), case.fin);
    let outcome = publisher.outcome(id);
    if matches!(outcome, Outcome::Closed(_)) {
        return Ok(outcome);
    }
    let serves = publisher.serves();
    let outcome = publisher.settle(id, outcome);
    if !serves && !matches!(outcome, Outcome::Closed(_)) {
        return Err(format!(
            "{outcome:?}, then the publisher's session stopped serving"
        ));
    }
    Ok(outcome)
}

/// A broadcast name no other case uses.
fn fresh_broadcast(v: Version) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("raw/{}-{v}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A raw publisher of a fresh broadcast and a raw subscriber that saw it announced.
pub fn publisher_and_subscriber(addr: SocketAddr, v: Version) -> (Peer, Peer, String) {
    let broadcast = fresh_broadcast(v);
    let mut publisher = Peer::connect(addr, v);
    let id = publisher.accept_announce_request();
    publisher.announce(id, &broadcast);
    let mut subscriber = Peer::connect(addr, v);
    subscriber.await_announced(&broadcast);
    (publisher, subscriber, broadcast)
}

fn publisher(addr: SocketAddr, case: &Case, v: Version) -> Result<Outcome, String> {
    let (mut publisher, mut subscriber, broadcast) = publisher_and_subscriber(addr, v);
    if case.on == On::TrackReply {
        let mut request = Vec::new();
        ControlType::Track.encode(&mut request);
        let track = TrackRequest {
            broadcast,
            track: "t".into(),
        };
        track.encode(&mut request, v);
        subscriber.open_bidi(&request, false);
        let id = publisher.accept_request(ControlType::Track);
        let _: TrackRequest = publisher.read_msg(id);
        publisher.send(id, &(case.bytes)(v, 0), case.fin);
        let outcome = publisher.outcome(id);
        return after_publisher(id, outcome, &mut publisher, &mut subscriber);
    }
    subscriber.subscribe(0, &broadcast, "t");
    let (up, request) = publisher.accept_subscribe();
    let bytes = (case.bytes)(v, request.id);
    let id = match case.on {
        On::SubscribeReply => {
            publisher.send(up, &bytes, case.fin);
            up
        }
        On::Group => {
            publisher.start_subscription(up);
            publisher.open_uni(&bytes, case.fin)
        }
        _ => {
            let id = publisher.open_uni(&bytes, case.fin);
            publisher.start_subscription(up);
            id
        }
    };
    let outcome = publisher.outcome(id);
    let group_case = matches!(case.on, On::Group | On::GroupBeforeOk);
    if group_case && !matches!(outcome, Outcome::Closed(_)) {
        publisher.send_group(request.id, 1, &[b"after"]);
        let groups = subscriber.await_groups("the next group", &mut publisher, |gs| {
            finished(gs, 1).is_some()
        });
        if finished(&groups, 1) != Some(&[b"after".to_vec()][..]) {
            return Err(format!("the next group arrived damaged: {groups:?}"));
        }
        check_down(&mut subscriber, &case.down)?;
    }
    after_publisher(id, outcome, &mut publisher, &mut subscriber)
}

/// The frames of group `sequence` if it arrived finished.
fn finished(groups: &[GroupSeen], sequence: u64) -> Option<&[Vec<u8>]> {
    groups
        .iter()
        .find(|g| g.sequence == sequence && g.end == Some(None))
        .map(|g| &g.frames[..])
}

/// What the subscriber saw of the case's group 0.
fn check_down(subscriber: &mut Peer, down: &Down) -> Result<(), String> {
    let seen = |s: &mut Peer| {
        let zero: Vec<GroupSeen> = s.groups().into_iter().filter(|g| g.sequence == 0).collect();
        (zero, s.uni_resets())
    };
    let holds = |zero: &[GroupSeen], resets: &[u64]| match down {
        Down::Skip => true,
        Down::NoGroup => zero.is_empty() && resets.is_empty(),
        Down::Reset(code) => resets == [*code] && zero.iter().all(|g| g.end.is_some()),
        Down::Delivered(frames) => {
            resets.is_empty()
                && zero.len() == 1
                && zero[0].end == Some(None)
                && zero[0].frames == *frames
        }
    };
    if *down == Down::NoGroup {
        // Long enough for a group the relay did open to show.
        subscriber.pump_for(Duration::from_millis(300));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (zero, resets) = seen(subscriber);
        if holds(&zero, &resets) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the subscriber saw group 0 as {zero:?} with resets {resets:?}, not {down:?}"
            ));
        }
        subscriber.pump();
    }
}

/// A publisher case's common end: the publisher serves on after a stream-level outcome,
/// and its subscriber's session is never harmed.
fn after_publisher(
    id: u64,
    outcome: Outcome,
    publisher: &mut Peer,
    subscriber: &mut Peer,
) -> Result<Outcome, String> {
    let outcome = if matches!(outcome, Outcome::Closed(_)) {
        outcome
    } else {
        let serves = publisher.serves();
        let outcome = publisher.settle(id, outcome);
        if !serves && !matches!(outcome, Outcome::Closed(_)) {
            return Err(format!(
                "{outcome:?}, then the publisher's session stopped serving"
            ));
        }
        outcome
    };
    if !subscriber.serves() {
        return Err(format!(
            "{outcome:?}, and the subscriber's session stopped serving"
        ));
    }
    Ok(outcome)
}
