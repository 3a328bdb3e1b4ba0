//! Relay behaviours README states, one end-to-end test each, with the real binary over
//! loopback: `--alpn` restricting versions, `--cert`/`--key`, `--max-frame-size`
//! (`FrameTooLarge`), the 8-open-groups-per-track limit (`Old`), a second publisher taking
//! over a broadcast, and PROBE, GOAWAY (and FETCH before lite-05) refused with
//! `Unsupported`. (`--max-connections` over several shards is in `tests/relay.rs`.)

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use common::*;

/// moq-lite codes the relay resets streams with (`src/wire/error.rs`).
const OLD: u64 = 2;
const NOT_FOUND: u64 = 13;
const UNSUPPORTED: u64 = 17;
const FRAME_TOO_LARGE: u64 = 27;

/// QUIC CRYPTO_ERROR carrying TLS alert 120, `no_application_protocol` (RFC 9001 4.8).
const NO_APPLICATION_PROTOCOL: u64 = 0x100 + 120;

/// Polls the relay's log until it holds `needle`.
async fn relay_logs(relay: &Relay, needle: &str) -> Result<String> {
    within(&format!("the relay to log {needle:?}"), async {
        loop {
            let log = relay.log_tail();
            if log.contains(needle) {
                return log;
            }
            // Log lines arrive without an event to await.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .map_err(|e| relay.child().with_log(e))
}

// ---------------------------------------------------------------------------
// --alpn
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_restricts_the_versions_the_relay_accepts() -> Result<()> {
    let relay = Relay::start_with(&["--alpn", "moq-lite-04"]).await?;
    let log = relay_logs(&relay, "protocols: ").await?;
    assert!(
        log.lines().any(|l| l == "stdout: protocols: moq-lite-04"),
        "the relay offers only lite-04:\n{log}"
    );
    let addr = relay.addr;
    let (refused, accepted) = tokio::task::spawn_blocking(move || {
        let refused: Vec<_> = [&b"moq-lite-05"[..], b"moq-lite-03"]
            .into_iter()
            .map(|alpn| {
                let mut c = raw::RawClient::start(addr, &[alpn], raw::RAW_LIMIT);
                let err = c.conn().peer_error().map(|e| (e.is_app, e.error_code));
                (c.is_established(), err)
            })
            .collect();
        let alpns: [&[u8]; 3] = [b"moq-lite-05", b"moq-lite-04", b"moq-lite-03"];
        let mut all = raw::RawClient::start(addr, &alpns, raw::RAW_LIMIT);
        let accepted = (
            all.is_established(),
            all.conn().application_proto().to_vec(),
        );
        (refused, accepted)
    })
    .await?;
    for (established, err) in refused {
        assert!(!established, "a version outside --alpn is refused");
        assert_eq!(
            err,
            Some((false, NO_APPLICATION_PROTOCOL)),
            "refused in the handshake with TLS alert no_application_protocol"
        );
    }
    assert_eq!(accepted, (true, b"moq-lite-04".to_vec()));

    // moq-native offering lite-05 alone cannot connect; offering everything it lands on
    // lite-04 and a track goes through.
    let scope = relay.scope(Some(Lite::V04), "anon");
    assert!(
        NativeSubscriber::connect(&relay.url("anon"), Some(Lite::V05))
            .await
            .is_err(),
        "moq-native on lite-05 only is refused"
    );
    let mut rng = Rng::seeded("alpn");
    let payload = Payload::random(&mut rng);
    let path = scope.name(&rng.name("bc"));
    let mut publisher = NativePublisher::connect(&scope.url, None, &path, "t").await?;
    let subscriber = NativeSubscriber::connect(&scope.url, None).await?;
    assert_eq!(publisher.session.version(), Lite::V04.native());
    assert_eq!(subscriber.session.version(), Lite::V04.native());
    let read = subscriber.read_track(&path, "t");
    let write = async {
        publisher.subscribed().await?;
        publisher.write(&payload)?;
        publisher.finish()
    };
    let (received, ()) = tokio::try_join!(read, write)?;
    received.assert_delivered(&payload, Lite::V04);
    Ok(())
}

// ---------------------------------------------------------------------------
// --cert / --key
// ---------------------------------------------------------------------------

/// A private CA and a leaf it signed for `localhost` and 127.0.0.1, as PEM files in a
/// fresh directory: `ca.pem`, `chain.pem` (leaf then CA) and `key.pem`. Returns the
/// directory and the leaf's SHA-256 fingerprint (lowercase hex of its DER).
fn write_ca_and_leaf(label: &str) -> Result<(TempDir, String)> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])?;
    let leaf_key = KeyPair::generate()?;
    let leaf = leaf_params.signed_by(&leaf_key, &issuer)?;
    let dir = TempDir::new(label)?;
    std::fs::write(dir.path().join("ca.pem"), ca_cert.pem())?;
    std::fs::write(
        dir.path().join("chain.pem"),
        format!("{}{}", leaf.pem(), ca_cert.pem()),
    )?;
    std::fs::write(dir.path().join("key.pem"), leaf_key.serialize_pem())?;
    let digest = ring::digest::digest(&ring::digest::SHA256, leaf.der());
    let hex = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    Ok((dir, hex))
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "moqring-test-{label}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A moq-native config on lite-05 that verifies the relay against `root` only.
fn verifying_config(root: &Path) -> moq_native::ClientConfig {
    let mut config = native_client_config(Some(Lite::V05));
    config.tls.disable_verify = Some(false);
    config.tls.root = vec![root.to_path_buf()];
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cert_and_key_files_are_the_certificate_clients_verify() -> Result<()> {
    let (dir, fingerprint) = write_ca_and_leaf("cert")?;
    let chain = dir.path().join("chain.pem");
    let key = dir.path().join("key.pem");
    let relay = Relay::start_with(&[
        "--cert",
        chain.to_str().context("path")?,
        "--key",
        key.to_str().context("path")?,
    ])
    .await?;
    let log = relay_logs(&relay, "certificate sha256 fingerprint: ").await?;
    assert!(
        log.contains(&format!("certificate sha256 fingerprint: {fingerprint}")),
        "the relay serves the leaf of --cert, fingerprint {fingerprint}:\n{log}"
    );

    // Clients that trust only our CA verify the relay and carry a track through it.
    let url = relay.url("anon");
    let ca = dir.path().join("ca.pem");
    let mut rng = Rng::seeded("cert");
    let payload = Payload::random(&mut rng);
    let origin = native_net::Origin::random().produce();
    let mut broadcast = origin
        .create_broadcast("verified", native_net::broadcast::Route::announced())
        .context("create broadcast")?;
    let info = native_net::track::Info::default().with_latency_max(LATENCY);
    let mut track = broadcast.create_track("t", info)?;
    let _publisher = NativeSession::connect_with(
        verifying_config(&ca),
        &url,
        Some(Lite::V05),
        Some(&origin),
        None,
    )
    .await?;
    let subscriber =
        NativeSubscriber::connect_with(verifying_config(&ca), &url, Some(Lite::V05)).await?;
    let read = subscriber.read_track("verified", "t");
    let write = async {
        within("a subscription", track.used()).await??;
        native_write_track(&mut track, &payload)?;
        track.finish().context("finish")
    };
    let (received, ()) = tokio::try_join!(read, write)?;
    received.assert_delivered(&payload, Lite::V05);

    // A client trusting another CA refuses the relay.
    let (other, _) = write_ca_and_leaf("other")?;
    let refused = NativeSubscriber::connect_with(
        verifying_config(&other.path().join("ca.pem")),
        &url,
        Some(Lite::V05),
    )
    .await;
    let err = refused
        .err()
        .context("a relay outside the trusted CA is refused")?;
    ensure!(
        format!("{err:#}").to_lowercase().contains("certificate"),
        "refused for its certificate: {err:#}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Group outcomes seen by a moq-native subscriber
// ---------------------------------------------------------------------------

/// What a subscriber got of one group: its frames, or the reset code it ended with and
/// the frames that came before.
#[derive(PartialEq)]
enum Outcome {
    Whole(Vec<Bytes>),
    Reset(Option<u64>, Vec<Bytes>),
}

/// Frame sizes, not their bytes.
impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sizes = |frames: &[Bytes]| frames.iter().map(Bytes::len).collect::<Vec<_>>();
        match self {
            Outcome::Whole(frames) => write!(f, "Whole(frame sizes {:?})", sizes(frames)),
            Outcome::Reset(code, frames) => {
                write!(f, "Reset({code:?} after frame sizes {:?})", sizes(frames))
            }
        }
    }
}

/// Reads every group of `sub` to its end, until `groups` have ended.
async fn read_outcomes(
    sub: &mut native_net::track::Subscriber,
    groups: usize,
) -> Result<BTreeMap<u64, Outcome>> {
    let mut out = BTreeMap::new();
    while out.len() < groups {
        let next = within("the next group", sub.recv_group()).await;
        let next = next
            .and_then(|n| Ok(n?))
            .with_context(|| format!("after {out:?}"))?;
        let mut group = next.with_context(|| format!("the track ended after {out:?}"))?;
        let sequence = group.sequence;
        let mut frames = Vec::new();
        let outcome = loop {
            match within("the next frame", group.read_frame()).await? {
                Ok(Some(frame)) => frames.push(frame.payload),
                Ok(None) => break Outcome::Whole(frames),
                Err(err) => break Outcome::Reset(native_reset_code(&err), frames),
            }
        };
        ensure!(
            out.insert(sequence, outcome).is_none(),
            "group {sequence} twice"
        );
    }
    Ok(out)
}

/// A moq-native publisher of `anon/NAME` track `t` and a subscriber of it from group 0,
/// on lite-05, through `relay`.
async fn publisher_and_subscriber(
    relay: &Relay,
    name: &str,
) -> Result<(
    NativePublisher,
    NativeSubscriber,
    native_net::track::Subscriber,
)> {
    let url = relay.url("anon");
    let publisher = NativePublisher::connect(&url, Some(Lite::V05), name, "t").await?;
    let subscriber = NativeSubscriber::connect(&url, Some(Lite::V05)).await?;
    let broadcast = subscriber.broadcast(name).await?;
    let sub = native_subscribe(&broadcast, "t").await?;
    Ok((publisher, subscriber, sub))
}

fn frame(len: usize, fill: u8) -> Bytes {
    Bytes::from(vec![fill; len])
}

// ---------------------------------------------------------------------------
// --max-frame-size
// ---------------------------------------------------------------------------

/// Reads one group of `sub` to its end (the next group must be `sequence`).
async fn read_one(sub: &mut native_net::track::Subscriber, sequence: u64) -> Result<Outcome> {
    let mut group = within("the next group", sub.recv_group())
        .await??
        .context("the track ended")?;
    ensure!(group.sequence == sequence, "group {} came", group.sequence);
    read_rest(&mut group, Vec::new()).await
}

/// Reads the rest of `group` after `frames`.
async fn read_rest(
    group: &mut native_net::group::Consumer,
    mut frames: Vec<Bytes>,
) -> Result<Outcome> {
    loop {
        match within("the next frame", group.read_frame()).await? {
            Ok(Some(frame)) => frames.push(frame.payload),
            Ok(None) => return Ok(Outcome::Whole(frames)),
            Err(err) => return Ok(Outcome::Reset(native_reset_code(&err), frames)),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_over_max_frame_size_resets_its_group_with_frame_too_large() -> Result<()> {
    let relay = Relay::start_with(&["--max-frame-size", "4096"]).await?;
    let (mut publisher, _subscriber, mut sub) = publisher_and_subscriber(&relay, "big").await?;
    let ts = |ms| native_net::Timestamp::from_millis(ms);
    let reader = tokio::spawn(async move { read_one(&mut sub, 0).await.map(|o| (o, sub)) });
    publisher.subscribed().await?;
    // Group 0's second frame is exactly the limit: it goes through.
    let group0 = vec![frame(1000, 1), frame(4096, 2)];
    let mut group = publisher.track.append_group()?;
    for f in &group0 {
        group.write_frame(ts(0)?, f.clone())?;
    }
    group.finish()?;
    let (got, mut sub) = reader.await??;
    assert_eq!(got, Outcome::Whole(group0));

    // Group 1 opens with a small frame, which the subscriber reads; then one a byte over.
    let mut group = publisher.track.append_group()?;
    group.write_frame(ts(1)?, frame(100, 3))?;
    let mut consumer = within("group 1", sub.recv_group())
        .await??
        .context("track ended")?;
    assert_eq!(consumer.sequence, 1);
    let first = within("its first frame", consumer.read_frame()).await??;
    assert_eq!(first.map(|f| f.payload), Some(frame(100, 3)));
    group.write_frame(ts(1)?, frame(4097, 4))?;
    group.write_frame(ts(1)?, frame(100, 5))?;
    let _ = group.finish();
    assert_eq!(
        read_rest(&mut consumer, Vec::new()).await?,
        Outcome::Reset(Some(FRAME_TOO_LARGE), Vec::new()),
        "the rest of group 1: reset with FrameTooLarge"
    );

    // The track goes on.
    let group2 = vec![frame(2000, 6)];
    let mut group = publisher.track.append_group()?;
    group.write_frame(ts(2)?, group2[0].clone())?;
    group.finish()?;
    assert_eq!(read_one(&mut sub, 2).await?, Outcome::Whole(group2));
    Ok(())
}

// ---------------------------------------------------------------------------
// Eight open groups per track
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ninth_open_group_resets_the_oldest_with_old() -> Result<()> {
    let relay = Relay::start().await?;
    let (mut publisher, _subscriber, mut sub) = publisher_and_subscriber(&relay, "open").await?;
    publisher.subscribed().await?;
    // Nine groups opened one after another, none finished; each reaches the subscriber
    // (so the relay has it) before the next opens.
    let mut open = Vec::new();
    let mut consumers = Vec::new();
    for sequence in 0..9u64 {
        let mut group = publisher.track.append_group()?;
        let ts = native_net::Timestamp::from_millis(sequence)?;
        group.write_frame(ts, frame(500, sequence as u8))?;
        open.push(group);
        let mut consumer = within("the next group", sub.recv_group())
            .await??
            .context("track ended")?;
        assert_eq!(consumer.sequence, sequence);
        let first = within("its first frame", consumer.read_frame()).await??;
        assert_eq!(first.map(|f| f.payload), Some(frame(500, sequence as u8)));
        consumers.push(consumer);
    }
    // The ninth made the first one too many: it is reset with Old, the others go on.
    let first = within("group 0's end", consumers[0].read_frame()).await?;
    let code = first
        .map(|f| f.map(|f| f.payload.len()))
        .map_err(|e| native_reset_code(&e));
    assert_eq!(code, Err(Some(OLD)), "group 0 is reset with Old");
    for group in &mut open {
        let ts = native_net::Timestamp::from_millis(1000)?;
        group.write_frame(ts, frame(10, 0xee))?;
        group.finish()?;
    }
    for consumer in &mut consumers[1..] {
        let rest = native_read_group(consumer).await?;
        let rest = rest.map(|g| g.frames).map_err(|e| native_reset_code(&e));
        assert_eq!(
            rest,
            Ok(vec![frame(10, 0xee)]),
            "group {} goes on to its end",
            consumer.sequence
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// A second publisher of a broadcast
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_publisher_takes_over_the_broadcast() -> Result<()> {
    let relay = Relay::start().await?;
    let url = relay.url("anon");
    let mut rng = Rng::seeded("takeover");
    let (first_payload, second_payload) = (Payload::random(&mut rng), Payload::random(&mut rng));
    let mut first = NativePublisher::connect(&url, Some(Lite::V05), "live", "t").await?;
    let subscriber = NativeSubscriber::connect(&url, Some(Lite::V05)).await?;
    let mut announced = subscriber.announcements();
    assert_eq!(
        native_next_announcement(&mut announced).await?,
        ("live".to_string(), true)
    );
    let broadcast = subscriber.broadcast("live").await?;
    let mut sub = native_subscribe(&broadcast, "t").await?;
    let (read_all, mut told) = tokio::sync::mpsc::channel(1);
    let reader = tokio::spawn(async move {
        let got = read_outcomes(&mut sub, FIRST_GROUPS).await;
        let _ = read_all.send(()).await;
        let end = within("the first track's end", sub.recv_group()).await;
        (got, end.map(|r| r.map(|g| g.map(|g| g.sequence))))
    });
    first.subscribed().await?;
    // The first publisher's groups all arrive; its track stays open.
    let first_groups = Payload {
        groups: first_payload.groups[..FIRST_GROUPS].to_vec(),
    };
    first.write(&first_groups)?;
    within("the subscriber to read them", told.recv()).await?;

    // A second session publishes the same path.
    let mut second = NativePublisher::connect(&url, Some(Lite::V05), "live", "t").await?;
    let (got, end) = reader.await?;
    let got = got?;
    for (sequence, frames) in first_groups.groups.iter().enumerate() {
        assert_eq!(got[&(sequence as u64)], Outcome::Whole(frames.clone()));
    }
    let end = end?;
    assert!(
        !matches!(end, Ok(None)),
        "the first publisher's track ends with an error, not cleanly: {end:?}"
    );
    // The broadcast is announced again: its end, then the new publisher's start.
    assert_eq!(
        native_next_announcement(&mut announced).await?,
        ("live".to_string(), false)
    );
    assert_eq!(
        native_next_announcement(&mut announced).await?,
        ("live".to_string(), true)
    );
    let log = relay.log_tail();
    assert_eq!(
        log.matches("broadcast announced broadcast=anon/live")
            .count(),
        2,
        "{log}"
    );

    // A subscription now reaches the second publisher, and only it.
    let read = subscriber.read_track("live", "t");
    let write = async {
        second.subscribed().await?;
        second.write(&second_payload)?;
        second.finish()
    };
    let (received, ()) = tokio::try_join!(read, write)?;
    received.assert_delivered(&second_payload, Lite::V05);
    drop(first);
    Ok(())
}

/// Groups the first publisher writes in the takeover test.
const FIRST_GROUPS: usize = 3;

// ---------------------------------------------------------------------------
// PROBE, GOAWAY, and FETCH before lite-05
// ---------------------------------------------------------------------------

/// Opens each request on a bidi stream of one raw `alpn` connection (lite-05: after a
/// SETUP on `/anon`) and returns how the relay answered each: bytes then FIN, or a reset
/// code; then whether the connection is still open.
fn answers(
    relay: std::net::SocketAddr,
    alpn: &'static [u8],
    requests: Vec<Vec<u8>>,
) -> (Vec<Result<Vec<u8>, u64>>, bool) {
    let mut client = raw::RawClient::connect(relay, alpn);
    if alpn == b"moq-lite-05" {
        client.setup_05("/anon");
    }
    let mut got = Vec::new();
    for (i, request) in requests.iter().enumerate() {
        let id = 4 * i as u64;
        client.conn().stream_send(id, request, true).unwrap();
        got.push(client.read_reply(id));
    }
    // Long enough for a close the refusals might have caused to arrive.
    client.run_for(Duration::from_millis(300), |c| c.is_closed());
    let open = client.is_established() && client.conn().peer_error().is_none();
    (got, open)
}

fn request(kind: moqring::wire::ControlType, body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::new();
    kind.encode(&mut out);
    body(&mut out);
    out
}

#[tokio::test]
async fn probe_and_goaway_streams_are_refused_with_unsupported() -> Result<()> {
    use moqring::wire::{ControlType, Fetch, Goaway, Message, Probe, Version};
    let relay = Relay::start().await?;
    let addr = relay.addr;
    let probe = |v: Version| {
        request(ControlType::Probe, |b| {
            Probe {
                bitrate: Some(1_000_000),
                rtt: Some(20),
            }
            .encode(b, v)
        })
    };
    let goaway = |v: Version| {
        request(ControlType::Goaway, |b| {
            Goaway {
                uri: "moql://elsewhere".into(),
            }
            .encode(b, v)
        })
    };
    let fetch = |v: Version| {
        request(ControlType::Fetch, |b| {
            Fetch {
                broadcast: "nothing".into(),
                track: "t".into(),
                priority: 0,
                group: 0,
            }
            .encode(b, v)
        })
    };
    let (v05, v04) = (
        vec![
            probe(Version::Lite05),
            goaway(Version::Lite05),
            fetch(Version::Lite05),
        ],
        vec![
            probe(Version::Lite04),
            goaway(Version::Lite04),
            fetch(Version::Lite05),
        ],
    );
    let (lite05, lite04) = tokio::task::spawn_blocking(move || {
        (
            answers(addr, b"moq-lite-05", v05),
            answers(addr, b"moq-lite-04", v04),
        )
    })
    .await?;
    // lite-05: PROBE and GOAWAY refused, and the session still answers a FETCH.
    assert_eq!(
        lite05,
        (
            vec![Err(UNSUPPORTED), Err(UNSUPPORTED), Err(NOT_FOUND)],
            true
        )
    );
    // lite-04 has no FETCH either: all three refused, the connection stays.
    assert_eq!(
        lite04,
        (
            vec![Err(UNSUPPORTED), Err(UNSUPPORTED), Err(UNSUPPORTED)],
            true
        )
    );
    Ok(())
}

/// `moqring pub` started first waits for its first subscriber longer than the relay's
/// idle timeout (it pings the relay), and `moqring sub` waits as long for an
/// announcement; both then carry the track.
#[tokio::test]
async fn clients_outlive_the_idle_timeout_while_they_wait() -> Result<()> {
    let relay = Relay::start_with(&["--idle-timeout-ms", "1500"]).await?;
    let url = relay.url("anon");
    let data = Rng::seeded("keep-alive").bytes(50_000).to_vec();
    let options = PubOptions {
        frame_size: Some(1000),
        group_frames: Some(10),
        alpn: None,
    };
    let early_sub = MoqringSub::spawn_with(&url, "waits", "t", None, &["--start-group", "0"])?;
    let early_pub = MoqringPub::spawn(&url, "alone", "t", &options, data.clone())?;
    // Four idle timeouts with nothing to carry: both connections must stay up.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let late_pub = MoqringPub::spawn(&url, "waits", "t", &options, data.clone())?;
    let late_sub = MoqringSub::spawn_with(&url, "alone", "t", None, &["--start-group", "0"])?;
    late_pub.finish().await?;
    early_pub.finish().await?;
    assert_bytes_eq(
        &early_sub.output().await?,
        &data,
        "a subscriber that waited",
    );
    assert_bytes_eq(
        &late_sub.output().await?,
        &data,
        "from a publisher that waited",
    );
    Ok(())
}
