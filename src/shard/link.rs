//! Links between shards, sans-IO: the relay's calls on a link session become messages for
//! the other shard, and messages from it become the relay's events.
//!
//! To a shard's relay another shard is one more session (keyed [`Topology::link`]): it
//! announces that shard's publishers' broadcasts, serves subscriptions to the tracks that
//! shard owns or publishes, and subscribes to ours. What the relay asks of it is queued here
//! and leaves once per loop turn as one [`Mail`] per shard; frames travel as `Bytes`
//! handles, never copied. Nothing here touches a thread or a queue between threads: the
//! shard's loop posts and receives the mail.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

use crate::relay::{SessionKey, Topology};
use crate::session::{Event, Frame};
use crate::wire::{ErrorCode, Fetch, Subscribe, TrackInfo};

/// What one shard sends another in one loop turn.
#[derive(Debug)]
pub struct Mail {
    /// The sending shard.
    pub from: usize,
    /// Datagrams that reached the sender's socket but belong to the receiver's connections.
    pub datagrams: Vec<Forwarded>,
    pub messages: Vec<Message>,
}

/// A datagram passed on to the shard whose connection it belongs to.
#[derive(Debug)]
pub struct Forwarded {
    pub data: Vec<u8>,
    pub from: SocketAddr,
    pub to: SocketAddr,
}

/// The relay-to-relay messages of a link. `stream` names a request: ids are chosen by the
/// shard that makes the request, odd from the lower-numbered shard of a pair and even from
/// the other, so both directions share one id space.
#[derive(Debug)]
pub enum Message {
    /// Tell me of your publishers' broadcasts.
    RequestAnnounces {
        stream: u64,
    },
    /// The broadcasts active when the interest arrived.
    Announces {
        stream: u64,
        initial: Vec<(String, Vec<u64>)>,
    },
    Announce {
        stream: u64,
        broadcast: String,
        hops: Vec<u64>,
        active: bool,
    },
    Subscribe {
        stream: u64,
        request: Subscribe,
    },
    /// The requester drops its request (unsubscribe).
    Cancel {
        stream: u64,
    },
    TrackRequest {
        stream: u64,
        broadcast: String,
        track: String,
    },
    TrackInfo {
        stream: u64,
        info: TrackInfo,
    },
    /// A cached group of a track the receiver owns.
    Fetch {
        stream: u64,
        request: Fetch,
    },
    /// The fetched group's frames.
    Fetched {
        stream: u64,
        frames: Vec<Frame>,
    },
    Reject {
        stream: u64,
        code: ErrorCode,
    },
    SubscribeOk {
        stream: u64,
    },
    SubscribeStart {
        stream: u64,
        group: u64,
    },
    SubscribeEnd {
        stream: u64,
        group: u64,
    },
    EndSubscription {
        stream: u64,
        error: Option<u64>,
    },
    Group {
        stream: u64,
        sequence: u64,
    },
    Frame {
        stream: u64,
        sequence: u64,
        frame: Frame,
    },
    GroupEnd {
        stream: u64,
        sequence: u64,
        error: Option<u64>,
    },
}

impl Message {
    /// Bytes it keeps alive (what it costs a queue).
    fn cost(&self) -> usize {
        match self {
            Message::Frame { frame, .. } => frame.wire_len(),
            Message::Fetched { frames, .. } => frames.iter().map(Frame::wire_len).sum(),
            _ => 64,
        }
    }
}

/// What a request of ours on a link is waiting for.
#[derive(Debug, Clone, Copy)]
enum Request {
    Subscription(usize),
    Track(usize),
    Fetch(usize),
}

/// Our side of the link to one other shard.
#[derive(Debug, Default)]
struct Link {
    next_id: u64,
    /// Our open requests: stream -> what answers to it become.
    requests: HashMap<u64, Request>,
    /// Groups we opened for the peer's subscriptions: our group id -> (stream, sequence).
    groups: HashMap<u64, (u64, u64)>,
    /// Messages of this turn.
    outbox: Vec<Message>,
    datagrams: Vec<Forwarded>,
    /// Mail the peer's mailbox had no room for, oldest first.
    pending: VecDeque<Mail>,
    /// Bytes held by `outbox`, `datagrams` and `pending`.
    queued: usize,
}

/// Bytes of forwarded datagrams a link holds at most; more are dropped (QUIC resends).
const MAX_QUEUED_DATAGRAMS: usize = 4 << 20;

/// The links of one shard to all the others.
#[derive(Debug)]
pub struct Links {
    topology: Topology,
    /// Indexed by shard; our own entry stays unused.
    links: Vec<Link>,
    /// Datagrams forwarded so far (misrouted by the kernel).
    forwarded: u64,
}

impl Links {
    pub fn new(topology: Topology) -> Self {
        Self {
            topology,
            links: (0..topology.shards).map(|_| Link::default()).collect(),
            forwarded: 0,
        }
    }

    pub fn forwarded(&self) -> u64 {
        self.forwarded
    }

    fn link(&mut self, key: SessionKey) -> Option<&mut Link> {
        let shard = Topology::link_shard(key)?;
        (shard != self.topology.shard)
            .then(|| self.links.get_mut(shard))
            .flatten()
    }

    fn push(&mut self, key: SessionKey, message: Message) {
        if let Some(link) = self.link(key) {
            link.queued += message.cost();
            link.outbox.push(message);
        }
    }

    /// A fresh request id on the link to `key`'s shard.
    fn open(&mut self, key: SessionKey, request: Option<Request>) -> Option<u64> {
        let shard = Topology::link_shard(key)?;
        let parity = u64::from(self.topology.shard < shard);
        let link = self.link(key)?;
        let id = link.next_id * 2 + parity;
        link.next_id += 1;
        if let Some(request) = request {
            link.requests.insert(id, request);
        }
        Some(id)
    }

    /// Passes a datagram that belongs to `shard`'s connections on to it.
    pub fn forward(&mut self, shard: usize, data: &[u8], from: SocketAddr, to: SocketAddr) {
        let Some(link) = self.links.get_mut(shard) else {
            return;
        };
        if link.queued > MAX_QUEUED_DATAGRAMS {
            return;
        }
        link.queued += data.len();
        link.datagrams.push(Forwarded {
            data: data.to_vec(),
            from,
            to,
        });
        self.forwarded += 1;
    }

    /// Hands this turn's mail to `post`, oldest first; mail it cannot take (the receiver's
    /// mailbox is full) is kept for the next turn.
    pub fn post(&mut self, mut post: impl FnMut(usize, Mail) -> Result<(), Mail>) {
        let me = self.topology.shard;
        for (shard, link) in self.links.iter_mut().enumerate() {
            if shard == me {
                continue;
            }
            if !link.outbox.is_empty() || !link.datagrams.is_empty() {
                let mail = Mail {
                    from: me,
                    datagrams: std::mem::take(&mut link.datagrams),
                    messages: std::mem::take(&mut link.outbox),
                };
                link.pending.push_back(mail);
            }
            while let Some(mail) = link.pending.pop_front() {
                let cost = mail_cost(&mail);
                match post(shard, mail) {
                    Ok(()) => link.queued = link.queued.saturating_sub(cost),
                    Err(mail) => {
                        link.pending.push_front(mail);
                        break;
                    }
                }
            }
        }
    }

    /// Whether mail waits for room in another shard's mailbox.
    pub fn has_pending(&self) -> bool {
        self.links.iter().any(|l| !l.pending.is_empty())
    }

    /// Turns the messages of a mail into the relay's events on the sender's link session.
    pub fn receive(&mut self, from: usize, messages: Vec<Message>, out: &mut Vec<Event>) {
        let Some(link) = self
            .links
            .get_mut(from)
            .filter(|_| from != self.topology.shard)
        else {
            return;
        };
        for message in messages {
            match message {
                Message::Announces { stream, initial } => {
                    out.extend(initial.into_iter().map(|(path, hops)| Event::Announced {
                        stream,
                        path,
                        hops,
                        active: true,
                    }));
                }
                message => out.extend(link.event(message)),
            }
        }
    }
}

impl Link {
    /// The subscription token answering to `stream`, if ours.
    fn subscription(&self, stream: u64) -> Option<usize> {
        match self.requests.get(&stream) {
            Some(Request::Subscription(token)) => Some(*token),
            _ => None,
        }
    }

    fn event(&mut self, message: Message) -> Option<Event> {
        Some(match message {
            Message::RequestAnnounces { stream } => Event::AnnounceInterest {
                stream,
                prefix: String::new(),
            },
            Message::Announces { .. } => return None,
            Message::Announce {
                stream,
                broadcast,
                hops,
                active,
            } => Event::Announced {
                stream,
                path: broadcast,
                hops,
                active,
            },
            Message::Subscribe { stream, request } => Event::Subscribe { stream, request },
            Message::Cancel { stream } => Event::RequestCancelled { stream },
            Message::TrackRequest {
                stream,
                broadcast,
                track,
            } => Event::TrackRequest {
                stream,
                broadcast,
                track,
            },
            Message::TrackInfo { stream, info } => match self.requests.remove(&stream)? {
                Request::Track(token) => Event::TrackInfo { token, info },
                other => {
                    self.requests.insert(stream, other);
                    return None;
                }
            },
            Message::Fetch { stream, request } => Event::Fetch { stream, request },
            Message::Fetched { stream, frames } => match self.requests.remove(&stream)? {
                Request::Fetch(token) => Event::Fetched {
                    token,
                    result: Ok(frames),
                },
                other => {
                    self.requests.insert(stream, other);
                    return None;
                }
            },
            Message::Reject { stream, code } => match self.requests.remove(&stream)? {
                Request::Subscription(token) => Event::SubscriptionClosed {
                    token,
                    error: Some(code.code()),
                },
                Request::Fetch(token) => Event::Fetched {
                    token,
                    result: Err(code),
                },
                // As on a session: a refused track request stays unanswered.
                Request::Track(_) => return None,
            },
            Message::SubscribeOk { stream } => Event::SubscribeAccepted {
                token: self.subscription(stream)?,
                start: None,
            },
            Message::SubscribeStart { stream, group } => Event::SubscribeAccepted {
                token: self.subscription(stream)?,
                start: Some(group),
            },
            Message::SubscribeEnd { stream, group } => Event::SubscribeEnd {
                token: self.subscription(stream)?,
                group,
            },
            Message::EndSubscription { stream, error } => {
                let token = self.subscription(stream)?;
                self.requests.remove(&stream);
                Event::SubscriptionClosed { token, error }
            }
            Message::Group { stream, sequence } => Event::Group {
                token: self.subscription(stream)?,
                stream,
                sequence,
            },
            Message::Frame {
                stream,
                sequence,
                frame,
            } => Event::Frame {
                token: self.subscription(stream)?,
                sequence,
                frame,
            },
            Message::GroupEnd {
                stream,
                sequence,
                error,
            } => Event::GroupEnd {
                token: self.subscription(stream)?,
                sequence,
                error,
            },
        })
    }
}

/// Bytes a mail keeps alive.
fn mail_cost(mail: &Mail) -> usize {
    let datagrams: usize = mail.datagrams.iter().map(|d| d.data.len()).sum();
    datagrams + mail.messages.iter().map(Message::cost).sum::<usize>()
}

/// The relay's requests and replies on link sessions (the link half of `Sessions`).
impl Links {
    pub fn request_announces(&mut self, s: SessionKey) -> Option<u64> {
        let stream = self.open(s, None)?;
        self.push(s, Message::RequestAnnounces { stream });
        Some(stream)
    }

    pub fn reply_announces(&mut self, s: SessionKey, stream: u64, initial: &[(&str, &[u64])]) {
        let initial = initial
            .iter()
            .map(|(path, hops)| (path.to_string(), hops.to_vec()))
            .collect();
        self.push(s, Message::Announces { stream, initial });
    }

    pub fn announce(&mut self, s: SessionKey, stream: u64, b: &str, hops: &[u64], active: bool) {
        let message = Message::Announce {
            stream,
            broadcast: b.to_string(),
            hops: hops.to_vec(),
            active,
        };
        self.push(s, message);
    }

    pub fn subscribe(&mut self, s: SessionKey, request: &Subscribe, token: usize) -> Option<u64> {
        let stream = self.open(s, Some(Request::Subscription(token)))?;
        let request = Subscribe {
            id: stream,
            ..request.clone()
        };
        self.push(s, Message::Subscribe { stream, request });
        Some(stream)
    }

    pub fn unsubscribe(&mut self, s: SessionKey, stream: u64) {
        if let Some(link) = self.link(s) {
            link.requests.remove(&stream);
        }
        self.push(s, Message::Cancel { stream });
    }

    pub fn request_track(&mut self, s: SessionKey, b: &str, t: &str, token: usize) -> Option<u64> {
        let stream = self.open(s, Some(Request::Track(token)))?;
        let message = Message::TrackRequest {
            stream,
            broadcast: b.to_string(),
            track: t.to_string(),
        };
        self.push(s, message);
        Some(stream)
    }

    pub fn reply_track(&mut self, s: SessionKey, stream: u64, info: &TrackInfo) {
        let info = info.clone();
        self.push(s, Message::TrackInfo { stream, info });
    }

    pub fn fetch(&mut self, s: SessionKey, request: &Fetch, token: usize) -> Option<u64> {
        let stream = self.open(s, Some(Request::Fetch(token)))?;
        let request = request.clone();
        self.push(s, Message::Fetch { stream, request });
        Some(stream)
    }

    pub fn reply_fetch(&mut self, s: SessionKey, stream: u64, frames: &[Frame]) {
        let frames = frames.to_vec();
        self.push(s, Message::Fetched { stream, frames });
    }

    pub fn reject(&mut self, s: SessionKey, stream: u64, code: ErrorCode) {
        self.push(s, Message::Reject { stream, code });
    }

    pub fn subscribe_ok(&mut self, s: SessionKey, stream: u64) {
        self.push(s, Message::SubscribeOk { stream });
    }

    pub fn subscribe_start(&mut self, s: SessionKey, stream: u64, group: u64) {
        self.push(s, Message::SubscribeStart { stream, group });
    }

    pub fn subscribe_end(&mut self, s: SessionKey, stream: u64, group: u64) {
        self.push(s, Message::SubscribeEnd { stream, group });
    }

    pub fn end_subscription(&mut self, s: SessionKey, stream: u64, error: Option<u64>) {
        if let Some(link) = self.link(s) {
            link.groups.retain(|_, (sub, _)| *sub != stream);
        }
        self.push(s, Message::EndSubscription { stream, error });
    }

    pub fn open_group(&mut self, s: SessionKey, stream: u64, sequence: u64) -> Option<u64> {
        let id = self.open(s, None)?;
        self.link(s)?.groups.insert(id, (stream, sequence));
        self.push(s, Message::Group { stream, sequence });
        Some(id)
    }

    pub fn send_frame(&mut self, s: SessionKey, group: u64, frame: &Frame) {
        let Some(&(stream, sequence)) = self.link(s).and_then(|l| l.groups.get(&group)) else {
            return;
        };
        let frame = frame.clone();
        self.push(
            s,
            Message::Frame {
                stream,
                sequence,
                frame,
            },
        );
    }

    pub fn end_group(&mut self, s: SessionKey, group: u64, error: Option<u64>) {
        let Some((stream, sequence)) = self.link(s).and_then(|l| l.groups.remove(&group)) else {
            return;
        };
        self.push(
            s,
            Message::GroupEnd {
                stream,
                sequence,
                error,
            },
        );
    }

    /// Bytes queued for `s`'s shard and not yet in its mailbox.
    pub fn queued_bytes(&self, s: SessionKey) -> usize {
        Topology::link_shard(s)
            .and_then(|shard| self.links.get(shard))
            .map_or(0, |l| l.queued)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn two() -> (Links, Links) {
        (
            Links::new(Topology::new(0, 2)),
            Links::new(Topology::new(1, 2)),
        )
    }

    /// Moves `from`'s mail into `to`, returning the events it makes.
    fn deliver(from: &mut Links, to: &mut Links) -> Vec<Event> {
        let mut mails = Vec::new();
        from.post(|_, mail| {
            mails.push(mail);
            Ok(())
        });
        let mut events = Vec::new();
        for mail in mails {
            to.receive(mail.from, mail.messages, &mut events);
        }
        events
    }

    fn request(track: &str) -> Subscribe {
        Subscribe {
            id: 0,
            broadcast: "b".into(),
            track: track.into(),
            priority: 0,
            ordered: false,
            max_latency: crate::wire::DEFAULT_MAX_LATENCY,
            start_group: None,
            end_group: None,
        }
    }

    #[test]
    fn a_subscription_and_its_group_cross_the_link() {
        let (mut a, mut b) = two();
        let to_b = Topology::link(1);
        let to_a = Topology::link(0);
        let stream = a.subscribe(to_b, &request("t"), 7).unwrap();
        let events = deliver(&mut a, &mut b);
        let [Event::Subscribe { stream: s, request }] = &events[..] else {
            panic!("{events:?}")
        };
        assert_eq!((*s, request.track.as_str()), (stream, "t"));

        b.subscribe_ok(to_a, stream);
        let group = b.open_group(to_a, stream, 42).unwrap();
        let payload = Bytes::from_static(b"frame bytes");
        let frame = Frame::new(payload.clone(), 0, 0);
        b.send_frame(to_a, group, &frame);
        b.end_group(to_a, group, None);
        b.end_subscription(to_a, stream, None);
        let events = deliver(&mut b, &mut a);
        assert!(matches!(
            events[0],
            Event::SubscribeAccepted {
                token: 7,
                start: None
            }
        ));
        assert!(matches!(
            events[1],
            Event::Group {
                token: 7,
                sequence: 42,
                ..
            }
        ));
        let Event::Frame {
            token: 7,
            sequence: 42,
            frame: got,
        } = &events[2]
        else {
            panic!("{:?}", events[2])
        };
        // The same bytes, not a copy.
        assert_eq!(got.payload().as_ptr(), payload.as_ptr());
        assert!(matches!(
            events[3],
            Event::GroupEnd {
                token: 7,
                sequence: 42,
                error: None
            }
        ));
        assert!(matches!(
            events[4],
            Event::SubscriptionClosed {
                token: 7,
                error: None
            }
        ));
        // The subscription is over: late messages for it are dropped.
        b.subscribe_end(to_a, stream, 43);
        assert!(deliver(&mut b, &mut a).is_empty());
    }

    #[test]
    fn a_fetch_is_answered_with_frames_or_an_error() {
        let (mut a, mut b) = two();
        let (to_a, to_b) = (Topology::link(0), Topology::link(1));
        let request = Fetch {
            broadcast: "b".into(),
            track: "t".into(),
            priority: 0,
            group: 3,
        };
        let found = a.fetch(to_b, &request, 11).unwrap();
        let missing = a.fetch(to_b, &request, 12).unwrap();
        let events = deliver(&mut a, &mut b);
        assert!(
            matches!(&events[..], [Event::Fetch { stream: s1, request: r }, Event::Fetch { stream: s2, .. }]
                if *s1 == found && *s2 == missing && r.group == 3),
            "{events:?}"
        );
        let frame = Frame::new(Bytes::from_static(b"cached"), 0, 0);
        b.reply_fetch(to_a, found, std::slice::from_ref(&frame));
        b.reject(to_a, missing, ErrorCode::Evicted);
        let events = deliver(&mut b, &mut a);
        let [Event::Fetched {
            token: 11,
            result: Ok(frames),
        }, Event::Fetched {
            token: 12,
            result: Err(ErrorCode::Evicted),
        }] = &events[..]
        else {
            panic!("{events:?}")
        };
        assert_eq!(frames[0].payload(), frame.payload());
    }

    #[test]
    fn request_ids_of_the_two_sides_never_collide() {
        let (mut a, mut b) = two();
        let mut ids = std::collections::HashSet::new();
        for _ in 0..50 {
            assert!(ids.insert(a.subscribe(Topology::link(1), &request("x"), 0).unwrap()));
            assert!(ids.insert(b.subscribe(Topology::link(0), &request("x"), 0).unwrap()));
        }
    }

    #[test]
    fn a_cancelled_subscription_hears_nothing_more_and_a_reject_closes_it() {
        let (mut a, mut b) = two();
        let (to_a, to_b) = (Topology::link(0), Topology::link(1));
        let first = a.subscribe(to_b, &request("t"), 1).unwrap();
        let second = a.subscribe(to_b, &request("u"), 2).unwrap();
        a.unsubscribe(to_b, first);
        let events = deliver(&mut a, &mut b);
        assert!(
            matches!(events.last(), Some(Event::RequestCancelled { stream }) if *stream == first)
        );
        b.subscribe_ok(to_a, first);
        b.reject(to_a, second, ErrorCode::NotFound);
        let events = deliver(&mut b, &mut a);
        let [Event::SubscriptionClosed {
            token: 2,
            error: Some(code),
        }] = &events[..]
        else {
            panic!("{events:?}")
        };
        assert_eq!(*code, ErrorCode::NotFound.code());
    }

    #[test]
    fn a_full_mailbox_keeps_mail_in_order_and_counts_it_queued() {
        let (mut a, _) = two();
        let to_b = Topology::link(1);
        let frame = Frame::new(Bytes::from(vec![0u8; 1000]), 0, 0);
        let stream = 5;
        let group = a.open_group(to_b, stream, 1).unwrap();
        a.send_frame(to_b, group, &frame);
        a.post(|_, mail| Err(mail));
        assert!(a.has_pending());
        assert!(a.queued_bytes(to_b) >= 1000);
        a.send_frame(to_b, group, &frame);
        let mut got = Vec::new();
        a.post(|_, mail| {
            got.push(mail.messages.len());
            Ok(())
        });
        assert_eq!(got, vec![2, 1], "the older mail goes first");
        assert_eq!(a.queued_bytes(to_b), 0);
        assert!(!a.has_pending());
    }
}
