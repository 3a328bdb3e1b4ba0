//! The relay on several shards, end to end over loopback: connections spread over the
//! shards, tracks owned by hash (one of them by a shard other than the publisher's), one
//! upstream subscription per track, with and without the connection-ID steering program,
//! and shard counts beyond the machine's cores.

mod common;

use std::time::Duration;

use anyhow::{Context, Result};
use common::*;
use moqring::relay::Topology;

/// Two track names of `broadcast` (absolute path at the relay), owned by shards 0 and 1.
fn tracks_owned_by_each(broadcast: &str) -> [String; 2] {
    let topology = Topology::new(0, 2);
    let find = |owner: usize| {
        (0..)
            .map(|i| format!("track{i}"))
            .find(|t| topology.owner(broadcast, t) == owner)
            .unwrap()
    };
    [find(0), find(1)]
}

/// A moq-native publisher of two tracks (one owned by each shard, so at least one by a
/// shard other than the publisher's) and 20 moq-native subscribers, 10 per track; every
/// subscriber gets its track byte for byte, connections land on both shards, and each
/// track has exactly one subscription at the publisher. Returns the relay's log.
async fn twenty_subscribers_on_two_shards(relay_args: &[&str]) -> Result<String> {
    const SUBSCRIBERS: usize = 20;
    let relay = Relay::start_with(relay_args).await?;
    let version = Lite::V05;
    let scope = relay.scope(Some(version), "anon");
    let mut rng = Rng::seeded("two_shards");
    let name = rng.name("fan");
    let tracks = tracks_owned_by_each(&format!("anon/{name}"));
    let payloads = [Payload::random(&mut rng), Payload::random(&mut rng)];

    let mut publisher =
        NativePublisher::connect(&scope.url, Some(version), &name, &tracks[0]).await?;
    let info = native_net::track::Info::default().with_latency_max(LATENCY);
    let mut second = publisher
        .broadcast
        .create_track(tracks[1].as_str(), info)
        .context("create the second track")?;

    let mut readers = tokio::task::JoinSet::new();
    for i in 0..SUBSCRIBERS {
        let subscriber = NativeSubscriber::connect(&scope.url, Some(version)).await?;
        let (name, track) = (name.clone(), tracks[i % 2].clone());
        readers.spawn(async move {
            let received = subscriber.read_track(&name, &track).await;
            (i, received)
        });
    }

    publisher.subscribed().await?;
    within("a subscription to the second track", second.used())
        .await?
        .context("second track closed while waiting for a subscriber")?;
    publisher.write(&payloads[0])?;
    publisher.finish()?;
    native_write_track(&mut second, &payloads[1])?;
    second.finish().context("finish the second track")?;

    let mut delivered = 0;
    while let Some(joined) = readers.join_next().await {
        let (i, received) = joined?;
        let received = received
            .with_context(|| format!("subscriber {i}"))
            .map_err(|e| anyhow::anyhow!("{e:#}\nrelay log:\n{}", relay.log_tail()))?;
        received.assert_delivered(&payloads[i % 2], version);
        delivered += 1;
    }
    assert_eq!(delivered, SUBSCRIBERS);

    let log = relay.log_tail();
    let accepted = accepted_per_shard(&log, 2);
    assert_eq!(
        accepted.iter().sum::<usize>(),
        SUBSCRIBERS + 1,
        "every connection accepted once:\n{log}"
    );
    assert!(
        accepted.iter().all(|&n| n > 0),
        "connections on both shards: {accepted:?}"
    );
    for track in &tracks {
        let upstream: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("subscribing to the publisher"))
            .filter(|l| l.contains(&format!("track={track}")))
            .collect();
        assert_eq!(upstream.len(), 1, "one subscription to {track}:\n{log}");
    }
    Ok(log)
}

#[tokio::test]
async fn two_shards_carry_a_broadcast_to_twenty_subscribers_through_one_subscription_per_track(
) -> Result<()> {
    let log = twenty_subscribers_on_two_shards(&["--threads", "2"]).await?;
    assert!(
        log.contains("steered=true"),
        "the steering program is attached:\n{log}"
    );
    assert!(
        !log.contains("forwarding through its mailbox"),
        "steered datagrams need no forwarding:\n{log}"
    );
    Ok(())
}

#[tokio::test]
async fn without_the_steering_program_shards_forward_misrouted_datagrams() -> Result<()> {
    let log = twenty_subscribers_on_two_shards(&["--threads", "2", "--no-steering"]).await?;
    assert!(log.contains("steered=false"), "{log}");
    // With the kernel hashing addresses, about half the connections are misrouted
    // (the chance that none of 21 is: 2^-21).
    assert!(
        log.contains("forwarding through its mailbox"),
        "misrouted datagrams were forwarded:\n{log}"
    );
    Ok(())
}

#[tokio::test]
async fn one_two_and_four_shards_on_this_machine_all_carry_traffic() -> Result<()> {
    for shards in [1usize, 2, 4] {
        let threads = shards.to_string();
        let mut relay = Relay::start_with(&["--threads", &threads]).await?;
        let url = relay.url("anon");
        let data = Rng::seeded("shard_counts").bytes(1 << 20).to_vec();
        // The whole track, not the latest group: the publisher starts with the first
        // subscription, and a subscriber whose request reaches the relay after the second
        // group began would rightly start there.
        let subs: Vec<MoqringSub> = (0..4)
            .map(|_| MoqringSub::spawn_with(&url, "counts", "t", None, &["--start-group", "0"]))
            .collect::<Result<_>>()?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let options = PubOptions {
            frame_size: Some(16384),
            group_frames: Some(8),
            alpn: None,
        };
        let publisher = MoqringPub::spawn(&url, "counts", "t", &options, data.clone())?;
        for sub in subs {
            assert_bytes_eq(&sub.output().await?, &data, &format!("{shards} shards"));
        }
        publisher.finish().await?;
        let log = relay.process().log_tail();
        assert!(
            log.contains(&format!("shards: {shards} on cores")),
            "{shards} shards started:\n{log}"
        );
        let listening = log.matches("shard listening").count();
        assert_eq!(listening, shards, "{log}");
    }
    Ok(())
}
