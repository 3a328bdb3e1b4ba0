//! Interoperability tests: the relay must carry the traffic of MoQ clients we did not
//! write (moq-native 0.19.12, moq-tokio 0.19.31) and of our own `moqring pub`/`sub`,
//! byte for byte, for every supported moq-lite version (05, 04, 03).
//!
//! Each test starts its own relay (`MOQRING_TEST_RELAY_CMD` may name another one, for
//! harness development; see `common`), publishes a random payload and compares what
//! arrives: bytes, order, group sequences and frame counts, plus frame timestamps where
//! the wire carries them.

mod common;

use anyhow::{ensure, Result};
use common::*;

/// Panic with the full error chain while the caller's relay (and its log) is alive.
#[track_caller]
fn check(result: Result<()>) {
    if let Err(err) = result {
        panic!("{err:?}");
    }
}

/// One `#[tokio::test]` per supported version, each with a fresh relay, running
/// `$scenario(&relay, version)`.
macro_rules! per_version {
    ($module:ident, $scenario:ident) => {
        mod $module {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn lite05() {
                let relay = Relay::start_interop().await.expect("relay starts");
                check($scenario(&relay, Lite::V05).await);
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn lite04() {
                let relay = Relay::start_interop().await.expect("relay starts");
                check($scenario(&relay, Lite::V04).await);
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn lite03() {
                let relay = Relay::start_interop().await.expect("relay starts");
                check($scenario(&relay, Lite::V03).await);
            }
        }
    };
}

per_version!(native_to_native, native_to_native);
per_version!(native_to_moqring_sub, native_to_moqring_sub);
per_version!(moqring_pub_to_native, moqring_pub_to_native);
per_version!(moq_tokio_to_native, moq_tokio_to_native);
per_version!(native_to_moq_tokio, native_to_moq_tokio);

/// The root every scenario publishes under.
const ROOT: &str = "anon";

/// moq-native publisher -> relay -> moq-native subscriber, both pinned to `version`.
async fn native_to_native(relay: &Relay, version: Lite) -> Result<()> {
    let mut rng = Rng::seeded("native_to_native");
    let payload = Payload::random(&mut rng);
    let scope = relay.scope(Some(version), ROOT);
    let path = scope.name(&rng.name("bc"));
    let track = rng.name("track");

    let mut publisher = NativePublisher::connect(&scope.url, Some(version), &path, &track).await?;
    let subscriber = NativeSubscriber::connect(&scope.url, Some(version)).await?;

    let read = subscriber.read_track(&path, &track);
    let write = async {
        publisher.subscribed().await?;
        publisher.write(&payload)?;
        publisher.finish()
    };
    let (received, ()) = tokio::try_join!(read, write)?;

    received.assert_delivered(&payload, version);
    Ok(())
}

/// moq-native publisher -> relay -> `moqring sub`, whose stdout must be the
/// concatenation of every frame.
async fn native_to_moqring_sub(relay: &Relay, version: Lite) -> Result<()> {
    let mut rng = Rng::seeded("native_to_moqring_sub");
    let payload = Payload::random(&mut rng);
    let scope = relay.scope(Some(version), ROOT);
    let path = scope.name(&rng.name("bc"));
    let track = rng.name("track");

    let mut publisher = NativePublisher::connect(&scope.url, Some(version), &path, &track).await?;
    // The moq-net publisher writes everything once subscribed; a subscription for the
    // latest group would race those writes, so this one asks for the whole track.
    let sub = MoqringSub::spawn_with(
        &scope.url,
        &path,
        &track,
        Some(version.alpn()),
        &["--start-group", "0"],
    )?;

    publisher
        .subscribed()
        .await
        .map_err(|err| sub.proc.with_log(err))?;
    publisher.write(&payload)?;
    publisher.finish()?;

    let out = sub.output().await?;
    assert_bytes_eq(&out, &payload.concat(), "moqring sub stdout");
    Ok(())
}

/// `moqring pub` (stdin from the test) -> relay -> moq-native subscriber, which must
/// see stdin cut into `--frame-size` frames, `--group-frames` per group.
async fn moqring_pub_to_native(relay: &Relay, version: Lite) -> Result<()> {
    let mut rng = Rng::seeded("moqring_pub_to_native");
    // Frames just over 64 KiB, an odd-sized last frame and a short last group.
    let frame_size = 70_001;
    let group_frames = 3;
    let len = 600_000 + rng.below(100_000) as usize;
    let data = rng.bytes(len);
    let expected = Payload::cut(&data, frame_size, group_frames);
    ensure!(
        expected.group_count() >= 3,
        "payload must span several groups"
    );

    let scope = relay.scope(Some(version), ROOT);
    let path = scope.name(&rng.name("bc"));
    let track = rng.name("track");
    let options = PubOptions {
        frame_size: Some(frame_size),
        group_frames: Some(group_frames),
        alpn: Some(version.alpn()),
    };
    let publisher = MoqringPub::spawn(&scope.url, &path, &track, &options, data.to_vec())?;

    let subscriber = NativeSubscriber::connect(&scope.url, Some(version)).await?;
    let received = subscriber
        .read_track(&path, &track)
        .await
        .map_err(|err| publisher.proc.with_log(err))
        .map_err(|err| anyhow::anyhow!("{err:#}\n--- relay log tail ---\n{}", relay.log_tail()))?;
    publisher.finish().await?;

    received.assert_matches(&expected);
    assert_bytes_eq(&received.concat(), &data, "concatenated frames");
    Ok(())
}

/// moq-tokio publisher (default negotiation) -> relay -> moq-native subscriber pinned
/// to `version`.
async fn moq_tokio_to_native(relay: &Relay, version: Lite) -> Result<()> {
    let mut rng = Rng::seeded("moq_tokio_to_native");
    let payload = Payload::random(&mut rng);
    let name = rng.name("bc");
    let track = rng.name("track");

    let pub_scope = relay.scope(None, ROOT);
    let mut publisher =
        TokioPublisher::connect(&pub_scope.url, None, &pub_scope.name(&name), &track).await?;
    check_tokio_default_version(relay, &publisher.session)?;

    let sub_scope = relay.scope(Some(version), ROOT);
    let subscriber = NativeSubscriber::connect(&sub_scope.url, Some(version)).await?;

    let path = sub_scope.name(&name);
    let read = subscriber.read_track(&path, &track);
    let write = async {
        publisher.subscribed().await?;
        publisher.write(&payload)?;
        publisher.finish()
    };
    let (received, ()) = tokio::try_join!(read, write)?;

    received.assert_delivered(&payload, version);
    Ok(())
}

/// moq-native publisher pinned to `version` -> relay -> moq-tokio subscriber (default
/// negotiation).
async fn native_to_moq_tokio(relay: &Relay, version: Lite) -> Result<()> {
    let mut rng = Rng::seeded("native_to_moq_tokio");
    let payload = Payload::random(&mut rng);
    let name = rng.name("bc");
    let track = rng.name("track");

    let pub_scope = relay.scope(Some(version), ROOT);
    let mut publisher = NativePublisher::connect(
        &pub_scope.url,
        Some(version),
        &pub_scope.name(&name),
        &track,
    )
    .await?;

    let sub_scope = relay.scope(None, ROOT);
    let subscriber = TokioSubscriber::connect(&sub_scope.url, None).await?;
    check_tokio_default_version(relay, &subscriber.session)?;

    let path = sub_scope.name(&name);
    let read = subscriber.read_track(&path, &track);
    let write = async {
        publisher.subscribed().await?;
        publisher.write(&payload)?;
        publisher.finish()
    };
    let (received, ()) = tokio::try_join!(read, write)?;

    received.assert_delivered(&payload, version);
    Ok(())
}

/// moq-tokio offers lite-06 first; moqring must settle it on lite-05, the newest
/// version it supports. (A reference relay may legitimately pick something newer.)
fn check_tokio_default_version(relay: &Relay, session: &TokioSession) -> Result<()> {
    let version = session.version_name();
    if relay.is_moqring() {
        ensure!(
            version.as_deref() == Some(Lite::V05.alpn()),
            "moq-tokio negotiated {version:?} with moqring, expected {}",
            Lite::V05.alpn()
        );
    } else {
        skip(
            "check_tokio_default_version",
            "moq-tokio settling on lite-05",
            &format!("an external relay ({RELAY_CMD_ENV}) negotiated {version:?}"),
        );
    }
    Ok(())
}

/// A broadcast published by a session on `/anon` is announced as its relative name to
/// another `/anon` session and as `anon/NAME` to a session on `/`; when the publisher
/// goes away both see it unannounced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announcements_are_relative_to_the_session_root() {
    let relay = Relay::start_interop().await.expect("relay starts");
    check(announcements_relative(&relay).await);
}

async fn announcements_relative(relay: &Relay) -> Result<()> {
    let mut rng = Rng::seeded("announcements");
    let name = rng.name("bc");
    let version = Some(Lite::V05);

    let anon = NativeSubscriber::connect(&relay.url(ROOT), version).await?;
    let root_url = url::Url::parse(&format!("moql://{}/", relay.addr))?;
    let root = NativeSubscriber::connect(&root_url, version).await?;
    let mut anon_announced = anon.announcements();
    let mut root_announced = root.announcements();

    let publisher = NativePublisher::connect(&relay.url(ROOT), version, &name, "t").await?;

    let full = format!("{ROOT}/{name}");
    assert_eq!(
        native_next_announcement(&mut anon_announced).await?,
        (name.clone(), true)
    );
    assert_eq!(
        native_next_announcement(&mut root_announced).await?,
        (full.clone(), true)
    );

    drop(publisher);
    assert_eq!(
        native_next_announcement(&mut anon_announced).await?,
        (name, false)
    );
    assert_eq!(
        native_next_announcement(&mut root_announced).await?,
        (full, false)
    );
    Ok(())
}

/// lite-03/04 raw-QUIC sessions send no path, so they are rooted at "": such a
/// publisher names its broadcast `anon/NAME` and a lite-05 session on `/anon` sees
/// `NAME`, while a lite-03/04 subscriber (whatever its URL path) sees `anon/NAME`.
async fn rootless_sessions(relay: &Relay, version: Lite) -> Result<()> {
    let mut rng = Rng::seeded("rootless_sessions");
    let name = rng.name("bc");
    let full = format!("{ROOT}/{name}");

    let scoped = NativeSubscriber::connect(&relay.url(ROOT), Some(Lite::V05)).await?;
    // The URL path is not sent by these versions, so it must not matter.
    let rootless = NativeSubscriber::connect(&relay.url(ROOT), Some(version)).await?;
    let mut scoped_announced = scoped.announcements();
    let mut rootless_announced = rootless.announcements();

    let publisher = NativePublisher::connect(&relay.url(""), Some(version), &full, "t").await?;

    assert_eq!(
        native_next_announcement(&mut scoped_announced).await?,
        (name.clone(), true)
    );
    assert_eq!(
        native_next_announcement(&mut rootless_announced).await?,
        (full.clone(), true)
    );

    drop(publisher);
    assert_eq!(
        native_next_announcement(&mut scoped_announced).await?,
        (name, false)
    );
    assert_eq!(
        native_next_announcement(&mut rootless_announced).await?,
        (full, false)
    );
    Ok(())
}

mod rootless_sessions_use_full_paths {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lite04() {
        let relay = Relay::start_interop().await.expect("relay starts");
        check(rootless_sessions(&relay, Lite::V04).await);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lite03() {
        let relay = Relay::start_interop().await.expect("relay starts");
        check(rootless_sessions(&relay, Lite::V03).await);
    }
}
