//! moqring relays joined into a cluster with `--cluster-connect`, end to end on loopback:
//! a chain carries tracks both ways with one upstream subscription per track per link, a
//! ring delivers each broadcast once, stays quiet when idle and routes round a dead relay,
//! and a publisher moving between relays reaches a subscriber on a third one.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use moq_token::{Algorithm, Claims, Key};
use url::Url;

use common::{
    assert_bytes_eq, http_get, native_net, within, MoqringPub, MoqringSub, NativePublisher,
    NativeSubscriber, PubOptions, Relay, Rng,
};

/// Links notice a dead peer after this (the relays' `--idle-timeout-ms`).
const IDLE_MS: &str = "2000";

/// A relay that dials every relay of `peers` (and serves on one shard unless `extra`
/// says otherwise).
async fn relay(peers: &[&Relay], extra: &[&str]) -> Result<Relay> {
    let urls: Vec<Url> = peers.iter().map(|p| p.url("")).collect();
    let relay = dialling(&urls, extra).await?;
    if !peers.is_empty() {
        relay
            .child()
            .wait_log("cluster link up", peers.len())
            .await
            .map_err(|e| relay.child().with_log(e))?;
    }
    Ok(relay)
}

/// A relay that dials `urls` (not waiting for the links).
async fn dialling(urls: &[Url], extra: &[&str]) -> Result<Relay> {
    let mut args: Vec<String> = vec![
        "--client-tls-disable-verify".into(),
        "--idle-timeout-ms".into(),
        IDLE_MS.into(),
    ];
    for url in urls {
        args.extend(["--cluster-connect".into(), url.to_string()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    if !extra.contains(&"--threads") {
        args.extend(["--threads".into(), "1".into()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Relay::start_with(&args).await
}

/// The relay-wide value of `moqring_NAME` in /metrics (summed over its label sets).
async fn metric(relay: &Relay, name: &str) -> Result<u64> {
    let reply = http_get(relay.addr, "/metrics").await?;
    let name = format!("moqring_{name}");
    let values: Vec<u64> = reply
        .body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.contains("shard=\""))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let key = key.split('{').next()?;
            (key == name).then(|| value.parse().ok())?
        })
        .collect();
    ensure!(!values.is_empty(), "no {name} in\n{}", reply.body);
    Ok(values.iter().sum())
}

/// [`metric`] once it reads `want`, or after the shards' next few publications (they
/// publish every 100 ms): counters only grow, so a value past `want` shows at once.
async fn settled(relay: &Relay, name: &str, want: u64) -> Result<u64> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        let value = metric(relay, name).await?;
        if value >= want || tokio::time::Instant::now() >= deadline {
            return Ok(value);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A moq-native client that pings well within the relays' short idle timeout.
fn native_config() -> moq_native::ClientConfig {
    let mut config = common::native_client_config(None);
    config.quic.keep_alive = Some(Duration::from_millis(500));
    config
}

async fn native_publisher(relay: &Relay, broadcast: &str) -> Result<NativePublisher> {
    NativePublisher::connect_with(native_config(), &relay.url(""), None, broadcast, "t").await
}

async fn native_subscriber(relay: &Relay) -> Result<NativeSubscriber> {
    NativeSubscriber::connect_with(native_config(), &relay.url(""), None).await
}

fn options() -> PubOptions {
    PubOptions {
        frame_size: Some(4000),
        group_frames: Some(8),
        alpn: None,
    }
}

/// `moqring sub` of `broadcast` at `relay` from group 0.
fn sub(relay: &Relay, broadcast: &str) -> Result<MoqringSub> {
    MoqringSub::spawn_with(
        &relay.url(""),
        broadcast,
        "t",
        None,
        &["--start-group", "0"],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_carries_tracks_both_ways_with_one_upstream_per_link() -> Result<()> {
    // A <- B <- C: B dials A, C dials B; B runs two shards, its link on one of them.
    let a = relay(&[], &[]).await?;
    let b = relay(&[&a], &["--threads", "2"]).await?;
    let c = relay(&[&b], &[]).await?;
    let mut rng = Rng::seeded("cluster-chain");

    // A track published on A reaches three subscribers on C.
    let data = rng.bytes(300_000).to_vec();
    let subs = (0..3)
        .map(|_| sub(&c, "from-a"))
        .collect::<Result<Vec<_>>>()?;
    let publisher = MoqringPub::spawn(&a.url(""), "from-a", "t", &options(), data.clone())?;
    publisher.finish().await?;
    for (i, s) in subs.into_iter().enumerate() {
        let got = s.output().await?;
        assert_bytes_eq(&got, &data, &format!("A -> C subscriber {i}"));
    }
    // One upstream subscription per link, whatever the number of subscribers behind it.
    assert_eq!(
        settled(&c, "subscribes_total", 3).await?,
        3,
        "subscribers at C"
    );
    for (name, r) in [("A", &a), ("B", &b), ("C", &c)] {
        assert_eq!(
            settled(r, "publisher_subscriptions_total", 1).await?,
            1,
            "upstream subscriptions made by {name}"
        );
    }
    assert_eq!(
        settled(&a, "subscribes_total", 1).await?,
        1,
        "subscriptions A served"
    );
    // (B's own count also holds its shards' subscriptions to each other.)

    // And the other way: published on C, received on A.
    let data = rng.bytes(200_000).to_vec();
    let s = sub(&a, "from-c")?;
    let publisher = MoqringPub::spawn(&c.url(""), "from-c", "t", &options(), data.clone())?;
    publisher.finish().await?;
    assert_bytes_eq(&s.output().await?, &data, "C -> A");

    // A late joiner on C starts at the cached group of a track that crossed two links.
    let data = rng.bytes(100_000).to_vec();
    let first = sub(&c, "late")?;
    let publisher = MoqringPub::spawn(&a.url(""), "late", "t", &options(), data.clone())?;
    publisher.finish().await?;
    assert_bytes_eq(&first.output().await?, &data, "first subscriber at C");
    let late = sub(&c, "late")?;
    assert_bytes_eq(
        &late.output().await?,
        &data,
        "late joiner at C, from the caches",
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_delivers_once_stays_idle_and_routes_round_a_dead_relay() -> Result<()> {
    // A - B - C - D - A: B dials A, C dials B, D dials C and A.
    let a = relay(&[], &[]).await?;
    let mut b = relay(&[&a], &[]).await?;
    let c = relay(&[&b], &[]).await?;
    let mut d = relay(&[&c, &a], &[]).await?;
    // A's link from D completes the ring: wait until A has both its peers.
    within("A to hold its two links", async {
        while metric(&a, "connections_open").await.unwrap_or(0) < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await?;
    let mut rng = Rng::seeded("cluster-ring");

    // Each subscriber gets each byte once, over one route.
    let r1 = rng.bytes(200_000).to_vec();
    let at_c = [sub(&c, "r1")?, sub(&c, "r1")?];
    let at_d = sub(&d, "r1")?;
    let publisher = MoqringPub::spawn(&a.url(""), "r1", "t", &options(), r1.clone())?;
    publisher.finish().await?;
    for (i, s) in at_c.into_iter().enumerate() {
        assert_bytes_eq(&s.output().await?, &r1, &format!("A -> C subscriber {i}"));
    }
    assert_bytes_eq(&at_d.output().await?, &r1, "A -> D");
    assert_eq!(
        settled(&c, "publisher_subscriptions_total", 1).await?,
        1,
        "C subscribed upstream once, on one of its two routes"
    );

    // Idle relays stay idle: no announcements circling the ring (after the shards'
    // counters caught up with the transfer: they publish every 100 ms).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let relays = [("A", &a), ("B", &b), ("C", &c), ("D", &d)];
    let mut before = Vec::new();
    for (_, r) in relays {
        before.push(metric(r, "datagrams_sent_total").await?);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for ((name, r), was) in relays.into_iter().zip(before) {
        let sent = metric(r, "datagrams_sent_total").await? - was;
        // Keep-alives and their acknowledgements on two links: a few a second.
        assert!(sent < 40, "relay {name} sent {sent} datagrams in 2 s idle");
    }

    // A live broadcast from A followed at C; the relay its route goes through dies.
    let b0 = metric(&b, "publisher_subscriptions_total").await?;
    let d0 = metric(&d, "publisher_subscriptions_total").await?;
    let subscriber = native_subscriber(&c).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let subscriptions = Arc::new(AtomicUsize::new(0));
    let follower = tokio::spawn(follow(subscriber, "live", tx, subscriptions.clone()));
    let mut publisher = native_publisher(&a, "live").await?;
    let mut seen = Vec::new();
    publish_tagged(&mut publisher, "before", 0..5).await?;
    receive_all(&mut rx, &tags("before", 0..5), &mut seen).await?;
    let via_b = settled(&b, "publisher_subscriptions_total", b0 + 1).await? > b0;
    let via_d = settled(&d, "publisher_subscriptions_total", d0 + 1).await? > d0;
    ensure!(
        via_b != via_d,
        "C's subscription went through B: {via_b}, D: {via_d}"
    );
    let (dead, survivor, survivor_before) = if via_b {
        (&mut b, &d, d0)
    } else {
        (&mut d, &b, b0)
    };
    dead.process().kill();
    // Written at once, over a route that is gone: C notices the dead link within its
    // idle timeout and moves the track to the other route (from the groups A still
    // holds). The subscriber (lite-05) sees nothing of it: it subscribed once.
    publish_tagged(&mut publisher, "after", 5..10).await?;
    receive_all(&mut rx, &tags("after", 5..10), &mut seen).await?;
    assert_eq!(
        subscriptions.load(Ordering::SeqCst),
        1,
        "the subscriber at C had to subscribe again"
    );
    assert!(
        settled(
            survivor,
            "publisher_subscriptions_total",
            survivor_before + 1
        )
        .await?
            > survivor_before,
        "the surviving relay now carries C's subscription"
    );
    follower.abort();
    Ok(())
}

fn tags(tag: &str, groups: std::ops::Range<u64>) -> Vec<String> {
    groups.map(|n| format!("{tag}-{n}")).collect()
}

/// Reads every group of track `t` of broadcast `path` at `subscriber`, re-subscribing
/// each time the broadcast is announced again (counted in `subscriptions`), and sends
/// each frame payload on `tx`.
async fn follow(
    subscriber: NativeSubscriber,
    path: &'static str,
    tx: tokio::sync::mpsc::UnboundedSender<Bytes>,
    subscriptions: Arc<AtomicUsize>,
) {
    let mut announced = subscriber.announcements();
    let mut reader: Option<tokio::task::JoinHandle<()>> = None;
    while let Some(update) = announced.next().await {
        if update.path.as_str() != path {
            continue;
        }
        let Some(broadcast) = update.broadcast else {
            continue;
        };
        if let Some(old) = reader.take() {
            old.abort();
        }
        let tx = tx.clone();
        subscriptions.fetch_add(1, Ordering::SeqCst);
        reader = Some(tokio::spawn(async move {
            let Ok(mut track) = common::native_subscribe(&broadcast, "t").await else {
                return;
            };
            while let Ok(Some(mut group)) = track.recv_group().await {
                while let Ok(Some(frame)) = group.read_frame().await {
                    let _ = tx.send(frame.payload);
                }
            }
        }));
    }
    drop(subscriber);
}

/// Writes groups `groups` (one frame `{tag}-{n}` each) to `publisher` once it has a
/// subscriber.
async fn publish_tagged(
    publisher: &mut NativePublisher,
    tag: &str,
    groups: std::ops::Range<u64>,
) -> Result<()> {
    publisher.subscribed().await?;
    for n in groups {
        let mut group = publisher.track.append_group()?;
        let ts = native_net::Timestamp::from_millis(n)?;
        group.write_frame(ts, Bytes::from(format!("{tag}-{n}")))?;
        group.finish()?;
    }
    Ok(())
}

/// Waits until `rx` has yielded every payload of `want` (others may come between).
async fn receive_all(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Bytes>,
    want: &[String],
    seen: &mut Vec<String>,
) -> Result<()> {
    let all = |seen: &[String]| want.iter().all(|w| seen.contains(w));
    while !all(seen) {
        match within("the next frame at the third relay", rx.recv()).await {
            Ok(Some(p)) => seen.push(String::from_utf8_lossy(&p).into_owned()),
            Ok(None) => bail!("the follower stopped"),
            Err(e) => return Err(e).with_context(|| format!("received so far: {seen:?}")),
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_moving_between_relays_reaches_a_third_one() -> Result<()> {
    // A, B, C fully linked: B dials A, C dials A and B.
    let a = relay(&[], &[]).await?;
    let b = relay(&[&a], &[]).await?;
    let c = relay(&[&a, &b], &[]).await?;
    let subscriber = native_subscriber(&c).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let follower = tokio::spawn(follow(subscriber, "mv", tx, Arc::default()));
    let mut seen = Vec::new();

    let mut first = native_publisher(&a, "mv").await?;
    publish_tagged(&mut first, "on-a", 0..5).await?;
    receive_all(&mut rx, &tags("on-a", 0..5), &mut seen).await?;
    // The publisher moves: it leaves A and announces the same broadcast on B.
    first.finish()?;
    drop(first);
    let mut second = native_publisher(&b, "mv").await?;
    publish_tagged(&mut second, "on-b", 0..5).await?;
    receive_all(&mut rx, &tags("on-b", 0..5), &mut seen).await?;
    // And back to A while the one on B is still there: whichever route C chose, the
    // publisher on A is served once the one on B leaves.
    let mut third = native_publisher(&a, "mv").await?;
    drop(second);
    publish_tagged(&mut third, "again-on-a", 0..5).await?;
    receive_all(&mut rx, &tags("again-on-a", 0..5), &mut seen).await?;
    follower.abort();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_carries_its_token_and_a_peer_without_one_is_refused() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("moqring-cluster-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let key = Key::generate(Algorithm::ES256, None)?;
    let public = dir.join("public.jwk");
    std::fs::write(&public, key.to_public()?.to_str()?)?;
    let public = public.to_str().context("utf-8 path")?;
    // A checks tokens; a peer relay's token may publish and subscribe everything.
    let a = Relay::start_with(&[
        "--auth-key",
        public,
        "--threads",
        "1",
        "--idle-timeout-ms",
        IDLE_MS,
    ])
    .await?;
    let token = key.sign(
        &Claims::default()
            .with_root("")
            .with_publish([""])
            .with_subscribe([""]),
    )?;
    let mut with_token = a.url("");
    with_token.set_query(Some(&format!("jwt={token}")));
    let b = dialling(std::slice::from_ref(&with_token), &[]).await?;
    let c = dialling(&[a.url("")], &[]).await?;
    // C's link is refused at its SETUP (raw QUIC comes up first): A says why, C dials again.
    a.child().wait_log("a token is required", 1).await?;
    c.child().wait_log("cluster link lost", 1).await?;

    let data = Rng::seeded("cluster-auth").bytes(120_000).to_vec();
    let s = sub(&b, "guarded")?;
    let publisher = MoqringPub::spawn(&with_token, "guarded", "t", &options(), data.clone())?;
    publisher.finish().await?;
    assert_bytes_eq(&s.output().await?, &data, "A -> B over a link with a token");
    assert_eq!(
        settled(&c, "publisher_subscriptions_total", 1).await?,
        0,
        "C, refused, never subscribed to anything through A"
    );
    ensure!(
        !c.log_tail().contains("broadcast announced"),
        "C heard of a broadcast through a refused link:\n{}",
        c.log_tail()
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_pins_its_peer_fingerprint_and_carries_our_cluster_id() -> Result<()> {
    let a = relay(&[], &[]).await?;
    let line = a
        .child()
        .wait_log("certificate sha256 fingerprint: ", 1)
        .await?;
    let fingerprint = line
        .split_once("certificate sha256 fingerprint: ")
        .map(|(_, f)| f.trim().to_string())
        .context("A printed no fingerprint")?;
    let upstream = a.url("").to_string();
    // B pins A's certificate and calls itself 4242.
    let b = Relay::start_with(&[
        "--threads",
        "1",
        "--cluster-connect",
        &upstream,
        "--client-tls-fingerprint",
        &fingerprint,
        "--cluster-id",
        "4242",
    ])
    .await?;
    b.child().wait_log("cluster link up", 1).await?;
    // C pins another certificate: its link is refused, and dialled again.
    let wrong = "00".repeat(32);
    let c = Relay::start_with(&[
        "--threads",
        "1",
        "--cluster-connect",
        &upstream,
        "--client-tls-fingerprint",
        &wrong,
    ])
    .await?;
    c.child().wait_log("cluster link refused", 1).await?;
    c.child().wait_log("cluster link lost", 1).await?;

    // A broadcast published on B reaches A with B's id last on its hop chain.
    let data = Rng::seeded("cluster-id").bytes(60_000).to_vec();
    let s = sub(&a, "from-b")?;
    let publisher = MoqringPub::spawn(&b.url(""), "from-b", "t", &options(), data.clone())?;
    publisher.finish().await?;
    assert_bytes_eq(&s.output().await?, &data, "B -> A over a pinned link");
    let announced = a
        .log_tail()
        .lines()
        .find(|l| l.contains("broadcast announced broadcast=from-b"))
        .map(str::to_string)
        .context("A did not log the announcement")?;
    ensure!(
        announced.contains(", 4242]"),
        "B's id is not last on the chain: {announced}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_drops_announcements_longer_than_its_max_hops() -> Result<()> {
    // A <- B <- C, C taking chains of at most 2 ids: a broadcast published on B arrives
    // as [publisher, B], one published on A as [publisher, A, B] and is dropped.
    let a = relay(&[], &[]).await?;
    let b = relay(&[&a], &[]).await?;
    let c = relay(&[&b], &["--cluster-max-hops", "2"]).await?;
    let data = Rng::seeded("max-hops").bytes(50_000).to_vec();
    let s = sub(&c, "near")?;
    let near = MoqringPub::spawn(&b.url(""), "near", "t", &options(), data.clone())?;
    near.finish().await?;
    assert_bytes_eq(&s.output().await?, &data, "B -> C, two ids on the chain");
    let _far = MoqringPub::spawn(&a.url(""), "far", "t", &options(), data.clone())?;
    b.child()
        .wait_log("broadcast announced broadcast=far", 1)
        .await?;
    // B tells C of its broadcasts in order on one stream: once C has one announced after
    // `far`, it has heard of `far` too (and dropped it).
    let _later = MoqringPub::spawn(&b.url(""), "later", "t", &options(), data.clone())?;
    c.child()
        .wait_log("broadcast announced broadcast=later", 1)
        .await?;
    ensure!(
        !c.log_tail().contains("broadcast announced broadcast=far"),
        "C took a chain of three ids:\n{}",
        c.log_tail()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_publisher_lingers_for_cluster_linger_and_a_waiting_subscriber_is_refused_at_its_end(
) -> Result<()> {
    // `--cluster-linger 3s`: the broadcast stays announced after the publisher's session
    // timed out (a subscriber connecting then, most likely given the key the publisher's
    // session had, still hears of it); `0s`: it ends with the session.
    for (linger, lingers) in [("3s", true), ("0s", false)] {
        let a = Relay::start_with(&[
            "--threads",
            "1",
            "--idle-timeout-ms",
            IDLE_MS,
            "--cluster-linger",
            linger,
        ])
        .await?;
        // A publisher that vanishes: killed, it never closes its session.
        // (Its stdin held open: it would end the track at the end of its input.)
        let mut publisher = common::moqring_client("pub", &a.url(""), "gone", &[])?;
        let _stdin = publisher.take_stdin();
        a.child().wait_log("broadcast announced", 1).await?;
        publisher.kill();
        // A subscriber during the linger waits for the publisher to come back.
        let waiting = match lingers {
            true => {
                a.child().wait_log("publisher left abruptly", 1).await?;
                Some(sub(&a, "gone")?)
            }
            false => None,
        };
        let ended = a.child().wait_log("broadcast ended", 1).await?;
        let log = a.log_tail();
        let said = log.find("publisher left abruptly");
        ensure!(
            said.is_some() == lingers,
            "--cluster-linger {linger}: lingered {}:\n{log}",
            said.is_some()
        );
        if !lingers {
            continue;
        }
        ensure!(
            said < log.find(&ended),
            "the linger comes before the end:\n{log}"
        );
        // Nobody came back: it is refused with NotFound (13) at the linger's end.
        let waiting = waiting.context("a subscriber")?;
        let Err(err) = waiting.output().await else {
            bail!("a subscriber to a broadcast nobody republished succeeded");
        };
        ensure!(
            format!("{err:#}").contains("error code 13; wrote 0 bytes"),
            "the waiting subscriber was not refused with NotFound: {err:#}"
        );
    }
    Ok(())
}
