//! WebTransport interop: crates.io moq-native 0.19.12 and moq-tokio 0.19.31 clients on
//! `https://` URLs (HTTP/3 Extended CONNECT) beside raw-QUIC (`moql://`) peers on the same
//! relay: byte-exact tracks both ways and WebTransport to WebTransport for every moq-lite
//! version (pinned on the client, the negotiated one read back from the client session),
//! group reset codes through the WebTransport error-code space, a killed publisher,
//! certificate pinning by fingerprint, tokens in the CONNECT URL and the session root.
//!
//! The tests that need no relay flags start [`Relay::start_interop`], so
//! `MOQRING_TEST_RELAY_CMD` can run them against moq-relay 0.17.10 (which serves
//! `/certificate.sha256` only with `--web-http-listen`):
//!
//! ```text
//! MOQRING_TEST_RELAY_CMD='perf/.tools/moq-relay-default/bin/moq-relay --listen {addr}
//!   --listen-tls-generate localhost --auth-public ** --web-http-listen {addr}'
//!   cargo test --release --test webtransport
//! ```
//!
//! The token and `--alpn` tests need moqring's flags and always run `moqring relay`.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use common::*;
use moq_token::{Algorithm, Claims, Key};
use tokio::sync::mpsc;
use url::Url;

/// The root (CONNECT path, or lite-05 SETUP path) every scenario works under.
const ROOT: &str = "room";

/// The application code groups are aborted with. Its wire code, 64 + 1000, is past
/// 35 x 0x1e, so a relay that drops the `n / 0x1e` term of the WebTransport mapping
/// (0x52e4a40fa8db + n + n / 0x1e) decodes a different code.
const APP_CODE: u16 = 1000;

/// What a reader must see for a group aborted with [`APP_CODE`].
const APP_WIRE_CODE: u32 = APP_CODE as u32 + 64;

/// Panic with the full error chain while the caller's relay (and its log) is alive.
#[track_caller]
fn check(result: Result<()>) {
    if let Err(err) = result {
        panic!("{err:?}");
    }
}

/// `https://ADDR/path`: a WebTransport session rooted at `path`.
fn wt_url(relay: &Relay, path: &str) -> Url {
    let path = path.trim_start_matches('/');
    Url::parse(&format!("https://{}/{path}", relay.addr)).expect("valid relay url")
}

/// A client, and the transport it reaches the relay over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Peer {
    /// moq-native over WebTransport (`https://`).
    NativeWt,
    /// moq-native over raw QUIC (`moql://`).
    NativeQuic,
    /// moq-tokio over WebTransport (`https://`).
    TokioWt,
}

impl Peer {
    /// Where this peer connects to work under [`ROOT`] with `version`. Over
    /// WebTransport every version has the CONNECT path as its root; over raw QUIC only
    /// lite-05 carries one (see [`Relay::scope`]).
    fn scope(self, relay: &Relay, version: Lite) -> Scope {
        match self {
            Peer::NativeQuic => relay.scope(Some(version), ROOT),
            Peer::NativeWt | Peer::TokioWt => Scope {
                url: wt_url(relay, ROOT),
                prefix: String::new(),
            },
        }
    }
}

// ---------------------------------------------------------------------------
// Publishers and readers of either client
// ---------------------------------------------------------------------------

/// A publisher of one broadcast with one track, of either client (boxed: they differ in
/// size by half a kilobyte).
enum Publisher {
    Native(Box<NativePublisher>),
    Tokio(Box<TokioPublisher>),
}

impl Publisher {
    /// Connects `peer` pinned to `version` (the negotiated version is checked) and
    /// announces `name` with `track` under [`ROOT`].
    async fn connect(
        relay: &Relay,
        peer: Peer,
        version: Lite,
        name: &str,
        track: &str,
    ) -> Result<Self> {
        let scope = peer.scope(relay, version);
        let name = scope.name(name);
        let what = format!("{peer:?} publisher on {version:?}");
        Ok(match peer {
            Peer::TokioWt => Publisher::Tokio(Box::new(
                TokioPublisher::connect(&scope.url, Some(version), &name, track)
                    .await
                    .context(what)?,
            )),
            Peer::NativeWt | Peer::NativeQuic => Publisher::Native(Box::new(
                NativePublisher::connect(&scope.url, Some(version), &name, track)
                    .await
                    .context(what)?,
            )),
        })
    }

    async fn subscribed(&self) -> Result<()> {
        match self {
            Publisher::Native(p) => p.subscribed().await,
            Publisher::Tokio(p) => p.subscribed().await,
        }
    }

    fn write(&mut self, payload: &Payload) -> Result<()> {
        match self {
            Publisher::Native(p) => p.write(payload),
            Publisher::Tokio(p) => p.write(payload),
        }
    }

    fn finish(&mut self) -> Result<()> {
        match self {
            Publisher::Native(p) => p.finish(),
            Publisher::Tokio(p) => p.finish(),
        }
    }
}

/// How a group ended for a reader.
#[derive(Clone, Debug, PartialEq, Eq)]
enum End {
    /// Its stream finished.
    Clean,
    /// Its stream was reset with this moq-lite code, as the peer's transport should
    /// carry it: a plain QUIC code on raw QUIC, a code decoded from the WebTransport
    /// range over WebTransport.
    Reset(u32),
    /// Anything else (a local error, or a code outside the range its transport uses).
    Other(String),
}

/// Reads a moq-native group error as [`End`]. moq-native 0.19.12 decodes every
/// RESET_STREAM code from the WebTransport range, also on raw QUIC, where a plain
/// moq-lite code therefore shows as the transport error `invalid RESET_STREAM: N`.
/// Over WebTransport a decoded code arrives as `Cancel` (0) or `Remote(n)`, and that
/// same transport error means the relay sent a code outside the WebTransport range.
fn native_end(peer: Peer, err: &native_net::Error) -> End {
    let other = End::Other(format!("{err}"));
    match (peer, err) {
        (Peer::NativeQuic, native_net::Error::Transport(msg)) => msg
            .rsplit_once("invalid RESET_STREAM: ")
            .and_then(|(_, code)| code.trim().parse().ok())
            .map_or(other, End::Reset),
        (Peer::NativeQuic, _) => other,
        (_, native_net::Error::Cancel | native_net::Error::Remote(_)) => End::Reset(err.to_code()),
        _ => other,
    }
}

/// Reads a moq-tokio group error as [`End`]: moq-net 0.3 keeps a received stream code
/// in `Error::Stream`.
fn tokio_end(err: &tokio_net::Error) -> End {
    match err {
        tokio_net::Error::Stream(code) => End::Reset(code.to_code()),
        other => End::Other(format!("{other}")),
    }
}

/// One client's subscription to a track from group 0, with the session holding it.
struct Reader {
    peer: Peer,
    track: Track,
}

/// A subscription of either client (the sessions boxed: they differ in size).
enum Track {
    Native {
        _session: Box<NativeSubscriber>,
        _broadcast: native_net::broadcast::Consumer,
        sub: native_net::track::Subscriber,
    },
    Tokio {
        _session: Box<TokioSubscriber>,
        _broadcast: tokio_net::broadcast::Consumer,
        sub: tokio_net::track::Subscriber,
    },
}

impl Reader {
    /// Connects `peer` pinned to `version` where [`Peer::scope`] says, and subscribes
    /// to `track` of `name` from group 0 once `name` is announced.
    async fn open(
        relay: &Relay,
        peer: Peer,
        version: Lite,
        name: &str,
        track: &str,
    ) -> Result<Self> {
        Self::open_at(&peer.scope(relay, version), peer, version, name, track).await
    }

    /// [`Self::open`] at a scope of the caller's (e.g. a URL carrying a token).
    async fn open_at(
        scope: &Scope,
        peer: Peer,
        version: Lite,
        name: &str,
        track: &str,
    ) -> Result<Self> {
        let path = scope.name(name);
        let what = format!("{peer:?} reader on {version:?}");
        let track = match peer {
            Peer::NativeWt | Peer::NativeQuic => {
                let session = NativeSubscriber::connect(&scope.url, Some(version))
                    .await
                    .context(what.clone())?;
                let broadcast = session.broadcast(&path).await.context(what.clone())?;
                let sub = native_subscribe(&broadcast, track).await.context(what)?;
                Track::Native {
                    _session: Box::new(session),
                    _broadcast: broadcast,
                    sub,
                }
            }
            Peer::TokioWt => {
                let session = TokioSubscriber::connect(&scope.url, Some(version))
                    .await
                    .context(what.clone())?;
                let broadcast = session.broadcast(&path).await.context(what.clone())?;
                let subscription = tokio_net::track::Subscription::default()
                    .with_max_age(LATENCY)
                    .with_groups(0..);
                let consumer = broadcast.track(track).context("track lookup")?;
                let sub = within(
                    &format!("{what}: subscription to {track:?}"),
                    consumer.subscribe(subscription),
                )
                .await?
                .context(what)?;
                Track::Tokio {
                    _session: Box::new(session),
                    _broadcast: broadcast,
                    sub,
                }
            }
        };
        Ok(Self { peer, track })
    }

    /// The next group, or `None` at the end of the track.
    async fn next_group(&mut self) -> Result<Option<Group>> {
        let what = format!("{:?}: the next group (or end of track)", self.peer);
        let peer = self.peer;
        Ok(match &mut self.track {
            Track::Native { sub, .. } => within(&what, sub.recv_group())
                .await?
                .with_context(|| format!("{what}: the track ended with an error"))?
                .map(|group| Group::Native(peer, group)),
            Track::Tokio { sub, .. } => within(&what, sub.recv_group())
                .await?
                .with_context(|| format!("{what}: the track ended with an error"))?
                .map(Group::Tokio),
        })
    }

    /// Reads every group to the end of the track; each must end cleanly.
    async fn read_track(mut self) -> Result<ReceivedTrack> {
        let mut received = ReceivedTrack::default();
        while let Some(mut group) = self.next_group().await? {
            let (frames, end) = group.read_rest(None).await?;
            ensure!(
                end == End::Clean,
                "{:?}: group {} ended with {end:?}",
                self.peer,
                group.sequence()
            );
            received.insert(group.sequence(), frames)?;
        }
        Ok(received)
    }

    /// Reads groups 0..`groups`, each to its end, and returns them in sequence order;
    /// once it has the first frame of group `signal_at`, says so on `first_frame`. A
    /// failure is reported there too, so a test waiting for the signal learns why.
    async fn read_ends(
        self,
        groups: u64,
        signal_at: u64,
        first_frame: Signal,
    ) -> Result<Vec<(Vec<Bytes>, End)>> {
        let peer = self.peer;
        let result = self.read_groups(groups, signal_at, &first_frame).await;
        if let Err(err) = &result {
            // Nobody may be listening any more: then the caller sees the error anyway.
            let _ = first_frame.try_send(Err(format!("{peer:?}: {err:#}")));
        }
        result
    }

    /// [`Self::read_ends`] without the failure report. Groups are taken as they come:
    /// the relay sends newer groups first, and moq-tokio hands them over in arrival order.
    async fn read_groups(
        mut self,
        groups: u64,
        signal_at: u64,
        first_frame: &Signal,
    ) -> Result<Vec<(Vec<Bytes>, End)>> {
        let mut read = BTreeMap::new();
        while (read.len() as u64) < groups {
            let mut group = self.next_group().await?.with_context(|| {
                format!(
                    "{:?}: the track ended with groups {:?} of 0..{groups} read",
                    self.peer,
                    read.keys().collect::<Vec<_>>()
                )
            })?;
            let sequence = group.sequence();
            ensure!(
                sequence < groups && !read.contains_key(&sequence),
                "{:?}: group {sequence} came after groups {:?}, expected 0..{groups} once each",
                self.peer,
                read.keys().collect::<Vec<_>>()
            );
            let signal = (sequence == signal_at).then(|| (first_frame.clone(), self.peer));
            let (frames, end) = group.read_rest(signal).await?;
            read.insert(sequence, (frames.frames, end));
        }
        Ok(read.into_values().collect())
    }
}

/// Where a reader reports the first frame of the open group (or why it failed).
type Signal = mpsc::Sender<Result<Peer, String>>;

/// A group being read, of either client.
enum Group {
    Native(Peer, native_net::group::Consumer),
    Tokio(tokio_net::group::Consumer),
}

impl Group {
    fn sequence(&self) -> u64 {
        match self {
            Group::Native(_, group) => group.sequence,
            Group::Tokio(group) => group.sequence,
        }
    }

    /// Reads the group to its end: its frames (with timestamps) and how it ended. With
    /// `signal`, reports the peer once the first frame is in.
    async fn read_rest(
        &mut self,
        mut signal: Option<(Signal, Peer)>,
    ) -> Result<(ReceivedGroup, End)> {
        let mut out = ReceivedGroup::default();
        loop {
            let what = format!("frame {} of group {}", out.frames.len(), self.sequence());
            let read = match self {
                Group::Native(peer, group) => match within(&what, group.read_frame()).await? {
                    Ok(Some(frame)) => Ok((frame.payload, frame.timestamp.as_millis())),
                    Ok(None) => Err(End::Clean),
                    Err(err) => Err(native_end(*peer, &err)),
                },
                Group::Tokio(group) => match within(&what, group.read_frame()).await? {
                    Ok(Some(frame)) => Ok((frame.payload, frame.timestamp.as_millis())),
                    Ok(None) => Err(End::Clean),
                    Err(err) => Err(tokio_end(&err)),
                },
            };
            match read {
                Ok((payload, timestamp)) => {
                    out.frames.push(payload);
                    out.timestamps_ms.push(timestamp);
                    if let Some((tx, peer)) = signal.take() {
                        tx.send(Ok(peer))
                            .await
                            .context("the test stopped listening")?;
                    }
                }
                Err(end) => return Ok((out, end)),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Tracks through the relay, per version
// ---------------------------------------------------------------------------

/// `from` publishes a random payload; every reader in `to` must receive it byte for
/// byte (frame timestamps too where `version` carries them). Every session is pinned
/// to `version` and checks it negotiated it.
async fn fan_out(relay: &Relay, version: Lite, from: Peer, to: &[Peer]) -> Result<()> {
    let mut rng = Rng::seeded(&format!("{from:?} on {version:?}"));
    let payload = Payload::random(&mut rng);
    let name = rng.name("bc");
    let track = rng.name("track");

    let mut publisher = Publisher::connect(relay, from, version, &name, &track).await?;
    // Every subscription is accepted before the first group is written.
    let mut reading = Vec::new();
    for &peer in to {
        let reader = Reader::open(relay, peer, version, &name, &track).await?;
        reading.push((peer, tokio::spawn(reader.read_track())));
    }
    publisher.subscribed().await?;
    publisher.write(&payload)?;
    publisher.finish()?;

    for (peer, task) in reading {
        let received = task.await?.with_context(|| format!("{peer:?} reading"))?;
        eprintln!(
            "{from:?} -> {peer:?} on {version:?}: {} bytes",
            received.byte_len()
        );
        received.assert_delivered(&payload, version);
    }
    Ok(())
}

/// One `#[tokio::test]` per moq-lite version, each with a fresh relay, running
/// [`fan_out`] from `$from` to `$to`.
macro_rules! per_version {
    ($module:ident, $from:expr, $to:expr) => {
        mod $module {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn lite05() {
                let relay = Relay::start_interop().await.expect("relay starts");
                check(fan_out(&relay, Lite::V05, $from, &$to).await);
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn lite04() {
                let relay = Relay::start_interop().await.expect("relay starts");
                check(fan_out(&relay, Lite::V04, $from, &$to).await);
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn lite03() {
                let relay = Relay::start_interop().await.expect("relay starts");
                check(fan_out(&relay, Lite::V03, $from, &$to).await);
            }
        }
    };
}

per_version!(
    native_wt_to_wt_and_quic,
    Peer::NativeWt,
    [Peer::NativeWt, Peer::NativeQuic, Peer::TokioWt]
);
per_version!(
    native_quic_to_wt,
    Peer::NativeQuic,
    [Peer::NativeWt, Peer::TokioWt]
);
per_version!(
    tokio_wt_to_wt_and_quic,
    Peer::TokioWt,
    [Peer::NativeWt, Peer::NativeQuic]
);

/// Unpinned, moq-native (lite-05 first) and moq-tokio (lite-06 first) settle over
/// WebTransport on lite-05, the newest version moqring speaks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpinned_webtransport_clients_settle_on_lite05() {
    let relay = Relay::start_interop().await.expect("relay starts");
    check(unpinned_versions(&relay).await);
}

async fn unpinned_versions(relay: &Relay) -> Result<()> {
    let url = wt_url(relay, ROOT);
    let native = NativeSubscriber::connect(&url, None).await?;
    let tokio = TokioSubscriber::connect(&url, None).await?;
    let native = native.session.version().to_string();
    let tokio = tokio.session.version_name();
    if relay.is_moqring() {
        ensure!(native == Lite::V05.alpn(), "moq-native negotiated {native}");
        ensure!(
            tokio.as_deref() == Some(Lite::V05.alpn()),
            "moq-tokio negotiated {tokio:?}"
        );
    } else {
        skip(
            "unpinned_webtransport_clients_settle_on_lite05",
            "the lite-05 check",
            &format!("an external relay negotiated {native} (moq-native), {tokio:?} (moq-tokio)"),
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Reset codes
// ---------------------------------------------------------------------------

fn frame(len: usize, fill: u8) -> Bytes {
    Bytes::from(vec![fill; len])
}

/// A moq-native publisher (`from`, lite-05) of `cam`/`t` and readers `to`, each
/// subscribed from group 0 and reading `groups` groups in a task; once every reader
/// has the first frame of group 1, the returned receiver has heard from each.
async fn open_group_scene(
    relay: &Relay,
    from: Peer,
    to: &[Peer],
    groups: u64,
) -> Result<(
    NativePublisher,
    Vec<(
        Peer,
        tokio::task::JoinHandle<Result<Vec<(Vec<Bytes>, End)>>>,
    )>,
    mpsc::Receiver<Result<Peer, String>>,
)> {
    ensure!(from != Peer::TokioWt, "the scene publishes with moq-native");
    let version = Lite::V05;
    let scope = from.scope(relay, version);
    let publisher = NativePublisher::connect(&scope.url, Some(version), "cam", "t").await?;
    // Room for a signal and a failure from every reader, so none waits on the test.
    let (tx, rx) = mpsc::channel(2 * to.len());
    let mut reading = Vec::new();
    for &peer in to {
        let reader = Reader::open(relay, peer, version, "cam", "t").await?;
        reading.push((peer, tokio::spawn(reader.read_ends(groups, 1, tx.clone()))));
    }
    publisher.subscribed().await?;
    Ok((publisher, reading, rx))
}

/// Waits until each of `readers` readers has reported the first frame of the open group;
/// fails with the first reader that failed instead.
async fn first_frames_read(
    rx: &mut mpsc::Receiver<Result<Peer, String>>,
    readers: usize,
) -> Result<()> {
    for _ in 0..readers {
        within("a reader to get the open group's first frame", rx.recv())
            .await?
            .context("every reader stopped before the open group's first frame")?
            .map_err(|err| anyhow::anyhow!("a reader failed: {err}"))?;
    }
    Ok(())
}

/// Group 0 ends cleanly; group 1 is aborted by the publisher with [`APP_CODE`] after
/// its first frame reached every reader; group 2 ends cleanly. Every reader sees
/// exactly that, with the code intact whatever transport each side used.
async fn aborted_group(relay: &Relay, from: Peer, to: &[Peer]) -> Result<()> {
    let (mut publisher, reading, mut rx) = open_group_scene(relay, from, to, 3).await?;
    let ts = native_net::Timestamp::from_millis;
    let groups = [
        vec![frame(1000, 1), frame(70_000, 2)],
        vec![frame(3000, 3)],
        vec![frame(10, 4)],
    ];

    let mut group = publisher.track.append_group()?;
    for f in &groups[0] {
        group.write_frame(ts(0)?, f.clone())?;
    }
    group.finish()?;
    let mut open = publisher.track.append_group()?;
    open.write_frame(ts(1)?, groups[1][0].clone())?;
    first_frames_read(&mut rx, to.len()).await?;
    open.abort(native_net::Error::App(APP_CODE))?;
    let mut group = publisher.track.append_group()?;
    group.write_frame(ts(2)?, groups[2][0].clone())?;
    group.finish()?;

    let want = vec![
        (groups[0].clone(), End::Clean),
        (groups[1].clone(), End::Reset(APP_WIRE_CODE)),
        (groups[2].clone(), End::Clean),
    ];
    for (peer, task) in reading {
        let got = task.await?.with_context(|| format!("{peer:?} reading"))?;
        let ends: Vec<&End> = got.iter().map(|(_, end)| end).collect();
        eprintln!("{from:?} -> {peer:?}: {ends:?}");
        ensure!(
            got == want,
            "{from:?} -> {peer:?}: groups ended {ends:?} with frame sizes {:?}, expected \
             [Clean, Reset({APP_WIRE_CODE}), Clean] after the aborted group's first frame",
            got.iter()
                .map(|(frames, _)| frames.iter().map(Bytes::len).collect::<Vec<_>>())
                .collect::<Vec<_>>()
        );
    }
    Ok(())
}

/// WebTransport publisher -> raw QUIC, WebTransport (moq-native) and WebTransport
/// (moq-tokio) readers: the relay decodes the publisher's code from the WebTransport
/// range and re-encodes it for each reader's transport.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_aborted_over_webtransport_keeps_its_code() {
    let relay = Relay::start_interop().await.expect("relay starts");
    check(
        aborted_group(
            &relay,
            Peer::NativeWt,
            &[Peer::NativeQuic, Peer::NativeWt, Peer::TokioWt],
        )
        .await,
    );
}

/// Raw QUIC publisher -> raw QUIC, WebTransport (moq-native) and WebTransport (moq-tokio)
/// readers. moq-native puts its reset code in the WebTransport range on raw QUIC too;
/// the relay reads it back as the moq-lite code and writes that plain on raw QUIC and in
/// the range over WebTransport.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_aborted_over_quic_keeps_its_code_over_webtransport() {
    let relay = Relay::start_interop().await.expect("relay starts");
    check(
        aborted_group(
            &relay,
            Peer::NativeQuic,
            &[Peer::NativeQuic, Peer::NativeWt, Peer::TokioWt],
        )
        .await,
    );
}

/// A WebTransport publisher that goes away (its session dropped) while group 1 is open:
/// every reader sees group 0 whole and group 1 end in error, never cleanly; from moqring
/// with Cancel (0), in each reader's transport's code space.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_webtransport_publisher_resets_its_open_group() {
    let relay = Relay::start_interop().await.expect("relay starts");
    check(killed_publisher(&relay).await);
}

async fn killed_publisher(relay: &Relay) -> Result<()> {
    let to = [Peer::NativeQuic, Peer::NativeWt, Peer::TokioWt];
    let (mut publisher, reading, mut rx) = open_group_scene(relay, Peer::NativeWt, &to, 2).await?;
    let ts = native_net::Timestamp::from_millis;
    let whole = vec![frame(5000, 1), frame(0, 2)];
    let first = frame(2000, 3);

    let mut group = publisher.track.append_group()?;
    for f in &whole {
        group.write_frame(ts(0)?, f.clone())?;
    }
    group.finish()?;
    let mut open = publisher.track.append_group()?;
    open.write_frame(ts(1)?, first.clone())?;
    first_frames_read(&mut rx, to.len()).await?;
    drop(publisher);

    for (peer, task) in reading {
        let got = task.await?.with_context(|| format!("{peer:?} reading"))?;
        let [(group0, end0), (group1, end1)] = <[_; 2]>::try_from(got)
            .map_err(|got| anyhow::anyhow!("{peer:?}: {} groups read", got.len()))?;
        eprintln!("{peer:?}: the open group ended with {end1:?}");
        ensure!(
            group0 == whole && end0 == End::Clean,
            "{peer:?}: group 0 {end0:?}"
        );
        ensure!(group1 == [first.clone()], "{peer:?}: group 1 frames");
        if relay.is_moqring() {
            ensure!(
                end1 == End::Reset(0),
                "{peer:?}: the open group ended with {end1:?}"
            );
        } else {
            ensure!(end1 != End::Clean, "{peer:?}: the open group ended cleanly");
            skip(
                "a_killed_webtransport_publisher_resets_its_open_group",
                "the Cancel code check",
                &format!("an external relay ended {peer:?}'s open group with {end1:?}"),
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------

/// A moq-native config that checks the certificate: pinned to `fingerprints`, or with
/// none, against the system roots (where an `http://` URL makes it fetch the pin).
fn verifying_config(fingerprints: &[&str]) -> moq_native::ClientConfig {
    let mut config = native_client_config(None);
    config.tls.disable_verify = None;
    config.tls.fingerprint = fingerprints.iter().map(|f| f.to_string()).collect();
    config
}

/// The relay's self-signed certificate is pinned by the SHA-256 it serves over TCP at
/// `/certificate.sha256`: given to moq-native as a fingerprint, or fetched by moq-native
/// itself from an `http://` URL. A wrong fingerprint, or no pin at all, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_certificate_is_pinned_by_its_served_fingerprint() {
    let relay = Relay::start_interop().await.expect("relay starts");
    check(fingerprint_pinning(&relay).await);
}

async fn fingerprint_pinning(relay: &Relay) -> Result<()> {
    let reply = http_get(relay.addr, "/certificate.sha256").await?;
    ensure!(
        reply.status == 200,
        "GET /certificate.sha256: {}",
        reply.status
    );
    let fingerprint = reply.body.trim().to_string();
    ensure!(
        fingerprint.len() == 64 && fingerprint.bytes().all(|b| b.is_ascii_hexdigit()),
        "/certificate.sha256 is not a hex SHA-256: {fingerprint:?}"
    );
    // Something to see once connected: a raw-QUIC publisher of `cam`.
    let quic = relay.scope(Some(Lite::V05), ROOT);
    let _publisher = NativePublisher::connect(&quic.url, Some(Lite::V05), "cam", "t").await?;
    let https = wt_url(relay, ROOT);

    let pinned = NativeSubscriber::connect_with(verifying_config(&[&fingerprint]), &https, None)
        .await
        .context("pinned to the served fingerprint")?;
    pinned.broadcast("cam").await?;

    let mut http = https.clone();
    http.set_scheme("http").expect("http is a valid scheme");
    let fetched = NativeSubscriber::connect_with(verifying_config(&[]), &http, None)
        .await
        .context("pinned by an http:// URL")?;
    fetched.broadcast("cam").await?;

    // One hex digit off.
    let last = if fingerprint.ends_with('0') { "1" } else { "0" };
    let wrong = format!("{}{last}", &fingerprint[..63]);
    let refusals = [
        (verifying_config(&[&wrong]), "fingerprint mismatch"),
        (verifying_config(&[]), "UnknownIssuer"),
    ];
    for (config, reason) in refusals {
        match NativeSubscriber::connect_with(config, &https, None).await {
            Ok(_) => bail!("a session was set up where {reason:?} was due"),
            Err(err) => {
                let err = format!("{err:#}");
                ensure!(
                    err.contains(reason),
                    "refused, but not for {reason:?}: {err}"
                );
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The session root and tokens
// ---------------------------------------------------------------------------

/// A WebTransport publisher at `https://.../room?QUERY` announcing `cam` is `room/cam`
/// to sessions rooted at "" (raw QUIC lite-05 and WebTransport alike) and `cam` to
/// sessions rooted at `room`; all of them see it go when it goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_root_is_the_connect_path_without_its_query() {
    let relay = Relay::start_interop().await.expect("relay starts");
    check(session_root(&relay).await);
}

async fn session_root(relay: &Relay) -> Result<()> {
    let version = Some(Lite::V05);
    let top = Url::parse(&format!("moql://{}/", relay.addr))?;
    let watchers = [
        (top, "room/cam"),
        (relay.url(ROOT), "cam"),
        (wt_url(relay, ""), "room/cam"),
        (wt_url(relay, ROOT), "cam"),
    ];
    let mut sessions = Vec::new();
    for (url, path) in watchers {
        let session = NativeSubscriber::connect(&url, version).await?;
        let announced = session.announcements();
        sessions.push((url, path, session, announced));
    }

    let mut url = wt_url(relay, ROOT);
    url.set_query(Some("note=not-part-of-the-root"));
    let publisher = NativePublisher::connect(&url, version, "cam", "t").await?;
    for (url, path, _, announced) in &mut sessions {
        let got = native_next_announcement(announced).await?;
        ensure!(got == (path.to_string(), true), "{url}: {got:?}");
    }
    drop(publisher);
    for (url, path, _, announced) in &mut sessions {
        let got = native_next_announcement(announced).await?;
        ensure!(got == (path.to_string(), false), "{url}: {got:?}");
    }
    Ok(())
}

/// A signing key and the relay's copy of its public half, in a directory of its own.
struct Keys {
    key: Key,
    dir: PathBuf,
    public: PathBuf,
}

impl Keys {
    fn new(name: &str) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("moqring-wt-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let key = Key::generate(Algorithm::ES256, None)?;
        let public = dir.join("public.jwk");
        std::fs::write(&public, key.to_public()?.to_str()?)?;
        Ok(Self { key, dir, public })
    }

    fn sign(&self, claims: Claims) -> Result<String> {
        Ok(self.key.sign(&claims)?)
    }

    fn path(&self) -> Result<&str> {
        self.public.to_str().context("a utf-8 temp path")
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `scope` with `?jwt=TOKEN` on its URL.
fn with_jwt(mut scope: Scope, jwt: &str) -> Scope {
    scope.url.set_query(Some(&format!("jwt={jwt}")));
    scope
}

/// A token in the CONNECT URL's query is checked as on raw QUIC: good tokens carry a
/// track (to lite-05 and lite-04 WebTransport readers, and a raw-QUIC one), and the root
/// they grant is the path without the query; a missing, foreign-signed or wrong-root
/// token is refused, with the reason in the relay's log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_in_the_connect_url_are_checked() {
    let keys = Keys::new("tokens").expect("keys");
    let path = keys.path().expect("key path");
    let relay = Relay::start_with(&["--auth-key", path])
        .await
        .expect("relay starts");
    check(tokens(&relay, &keys).await);
}

async fn tokens(relay: &Relay, keys: &Keys) -> Result<()> {
    let stranger = Keys::new("stranger")?;
    let put = keys.sign(Claims::default().with_root(ROOT).with_publish(["cam"]))?;
    let get = Claims::default().with_root(ROOT).with_subscribe([""]);
    let good = keys.sign(get.clone())?;

    let mut rng = Rng::seeded("tokens");
    let payload = Payload::random(&mut rng);
    let publisher_scope = with_jwt(Peer::NativeWt.scope(relay, Lite::V05), &put);
    let mut publisher =
        NativePublisher::connect(&publisher_scope.url, Some(Lite::V05), "cam", "t").await?;
    let mut reading = Vec::new();
    for (peer, version) in [
        (Peer::NativeWt, Lite::V05),
        (Peer::NativeWt, Lite::V04),
        (Peer::TokioWt, Lite::V05),
        (Peer::NativeQuic, Lite::V05),
    ] {
        let scope = with_jwt(peer.scope(relay, version), &good);
        let reader = Reader::open_at(&scope, peer, version, "cam", "t").await?;
        reading.push((peer, version, tokio::spawn(reader.read_track())));
    }
    publisher.subscribed().await?;
    publisher.write(&payload)?;
    publisher.finish()?;
    for (peer, version, task) in reading {
        let received = task
            .await?
            .with_context(|| format!("{peer:?} on {version:?}"))?;
        received.assert_delivered(&payload, version);
    }

    let elsewhere = keys.sign(get.clone().with_root("elsewhere"))?;
    let cases = [
        (wt_url(relay, ROOT), "a token is required"),
        (
            with_jwt(Peer::NativeWt.scope(relay, Lite::V05), &stranger.sign(get)?).url,
            "token signature does not verify",
        ),
        (
            with_jwt(Peer::NativeWt.scope(relay, Lite::V05), &elsewhere).url,
            "token root does not cover the path",
        ),
    ];
    for (url, reason) in cases {
        let how = refusal(&url).await?;
        eprintln!("{reason}: {how}");
        relay.child().wait_log(reason, 1).await?;
    }
    Ok(())
}

/// Connects a moq-native subscriber the relay must refuse; how it was refused.
async fn refusal(url: &Url) -> Result<String> {
    match NativeSubscriber::connect(url, Some(Lite::V05)).await {
        Err(err) => {
            let status = err
                .downcast_ref::<moq_native::Error>()
                .and_then(moq_native::Error::status);
            Ok(format!("connect failed (HTTP status {status:?}): {err:#}"))
        }
        Ok(sub) => {
            let closed = within(
                "the relay to close a refused session",
                sub.session.session.closed(),
            )
            .await?;
            Ok(format!("session closed: {closed}"))
        }
    }
}

/// `--alpn` restricts the WebTransport sub-protocols too: unpinned clients get the one
/// version left, and a client offering only another one is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_alpn_restricts_webtransport_protocols() {
    let relay = Relay::start_with(&["--alpn", Lite::V04.alpn()])
        .await
        .expect("relay starts");
    check(alpn_restricted(&relay).await);
}

async fn alpn_restricted(relay: &Relay) -> Result<()> {
    let url = wt_url(relay, ROOT);
    let native = NativeSubscriber::connect(&url, None).await?;
    let tokio = TokioSubscriber::connect(&url, None).await?;
    let native = native.session.version().to_string();
    let tokio = tokio.session.version_name();
    ensure!(native == Lite::V04.alpn(), "moq-native negotiated {native}");
    ensure!(
        tokio.as_deref() == Some(Lite::V04.alpn()),
        "moq-tokio negotiated {tokio:?}"
    );
    let refused = refusal(&url).await?;
    eprintln!("a lite-05-only client: {refused}");
    Ok(())
}
