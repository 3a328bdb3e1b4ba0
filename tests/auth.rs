//! Tokens end to end with the real binary, compatible with moq-relay's: moq-dev's own
//! `moq-token` crate makes the keys and signs the tokens, moq-native clients present them
//! as `moql://host:port/path?jwt=...`. Valid, missing, wrong-key, expired and foreign-root
//! tokens, a read-only token that publishes, public prefixes, tokens on lite-04 (which has
//! nowhere to carry them), and the key settings of the command line and the config file.

mod common;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{ensure, Context, Result};
use common::*;
use moq_token::{Algorithm, Claims, Key};
use url::Url;

/// A signing key and the relay's copy of its public half, in a directory of its own.
struct Keys {
    key: Key,
    dir: PathBuf,
    public: PathBuf,
}

impl Keys {
    fn new(name: &str) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("moqring-auth-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let key = Key::generate(Algorithm::ES256, None)?;
        let public = dir.join("public.jwk");
        // The base64url form, as `moq-token generate` writes key files.
        std::fs::write(&public, key.to_public()?.to_str()?)?;
        Ok(Self { key, dir, public })
    }

    fn sign(&self, claims: Claims) -> String {
        self.key.sign(&claims).expect("moq-token signs")
    }

    fn path(&self) -> &str {
        self.public.to_str().expect("utf-8 temp path")
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn with_jwt(relay: &Relay, path: &str, jwt: &str) -> Url {
    let mut url = relay.url(path);
    url.set_query(Some(&format!("jwt={jwt}")));
    url
}

/// Waits until the relay's log contains `needle`.
async fn relay_logs(relay: &Relay, needle: &str) -> Result<()> {
    within(&format!("the relay to log {needle:?}"), async {
        while !relay.log_tail().contains(needle) {
            // Log lines arrive without an event to await.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .map_err(|e| e.context(relay.log_tail()))
}

/// Connects a moq-native subscriber that the relay must refuse; how it ended.
async fn refused(url: &Url) -> Result<String> {
    match NativeSubscriber::connect(url, None).await {
        Err(err) => Ok(format!("{err:#}")),
        Ok(sub) => {
            let closed = within(
                "the relay to close a refused session",
                sub.session.session.closed(),
            )
            .await?;
            Ok(closed.to_string())
        }
    }
}

/// A moq-native publisher of `broadcast`/video at `pub_url` delivers a payload to a
/// moq-native subscriber at `sub_url`.
async fn carries(
    pub_url: &Url,
    sub_url: &Url,
    broadcast: &str,
    version: Option<Lite>,
) -> Result<()> {
    let payload = Payload::random(&mut Rng::seeded(broadcast));
    let mut publisher = NativePublisher::connect(pub_url, version, broadcast, "video").await?;
    let subscriber = NativeSubscriber::connect(sub_url, version).await?;
    let name = broadcast.to_string();
    let reading = tokio::spawn(async move {
        let track = subscriber.read_track(&name, "video").await;
        (subscriber, track)
    });
    publisher.subscribed().await?;
    publisher.write(&payload)?;
    publisher.finish()?;
    let (_subscriber, track) = within("the subscriber to read the track", reading).await??;
    track?.assert_delivered(&payload, version.unwrap_or(Lite::V05));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_valid_token_carries_a_track_and_the_root_is_the_url_path_alone() -> Result<()> {
    let keys = Keys::new("valid")?;
    let relay = Relay::start_with(&["--auth-key", keys.path()]).await?;
    let put = keys.sign(Claims::default().with_root("demo").with_publish(["alice"]));
    let get = keys.sign(
        Claims::default()
            .with_root("demo")
            .with_subscribe([""])
            .with_expires(SystemTime::now() + Duration::from_secs(3600)),
    );
    // The subscriber reads "alice" relative to its root: the root is `demo`, not `demo?jwt=...`.
    carries(
        &with_jwt(&relay, "demo", &put),
        &with_jwt(&relay, "demo", &get),
        "alice",
        None,
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_connections_are_closed_with_unauthorized_and_logged() -> Result<()> {
    let keys = Keys::new("refused")?;
    let stranger = Keys::new("stranger")?;
    let relay = Relay::start_with(&["--auth-key", keys.path()]).await?;
    let get = Claims::default().with_root("demo").with_subscribe([""]);
    let expired = get
        .clone()
        .with_expires(SystemTime::now() - Duration::from_secs(60));
    let cases = [
        (relay.url("demo"), "a token is required"),
        (
            with_jwt(&relay, "demo", &stranger.sign(get.clone())),
            "token signature does not verify",
        ),
        (
            with_jwt(&relay, "demo", &keys.sign(expired)),
            "token expired",
        ),
        (
            with_jwt(&relay, "elsewhere", &keys.sign(get.clone())),
            "token root does not cover the path",
        ),
        (with_jwt(&relay, "demo", "not.a.token"), "malformed token"),
    ];
    for (url, reason) in cases {
        let ended = refused(&url).await?;
        eprintln!("{url}: {ended}");
        relay_logs(&relay, reason).await?;
    }
    // Our own client reports the close code: 6, Unauthorized.
    let mut sub = MoqringSub::spawn(&relay.url("demo"), "alice", "video", None)?;
    let status = sub.proc.wait_for(TIMEOUT).await?;
    ensure!(!status.success(), "a tokenless moqring sub succeeded");
    // Its stderr is collected in the background: wait for the line, not just the exit.
    sub.proc.wait_log("code 6", 1).await?;
    // Six sessions refused, each counted once the relay publishes its metrics.
    within("auth_refusals_total to count the refusals", async {
        loop {
            let metrics = http_get(relay.addr, "/metrics").await?.body;
            let count: u64 = metrics
                .lines()
                .find_map(|l| l.strip_prefix("moqring_auth_refusals_total "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            ensure!(
                count <= 6,
                "{count} refusals counted for 6 refused sessions"
            );
            if count == 6 {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await??;
    // The relay goes on serving valid tokens.
    let put = keys.sign(Claims::default().with_root("demo").with_publish(["alice"]));
    carries(
        &with_jwt(&relay, "demo", &put),
        &with_jwt(&relay, "demo", &keys.sign(get)),
        "alice",
        None,
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_token_cannot_publish() -> Result<()> {
    let keys = Keys::new("read-only")?;
    let relay = Relay::start_with(&["--auth-key", keys.path()]).await?;
    let reader = keys.sign(Claims::default().with_root("demo").with_subscribe([""]));
    let writer = keys.sign(Claims::default().with_root("demo").with_publish(["bob"]));
    // The read-only session publishes first; the relay never asks it for its broadcasts.
    let _alice =
        NativePublisher::connect(&with_jwt(&relay, "demo", &reader), None, "alice", "video")
            .await?;
    let _bob =
        NativePublisher::connect(&with_jwt(&relay, "demo", &writer), None, "bob", "video").await?;
    let subscriber = NativeSubscriber::connect(&with_jwt(&relay, "demo", &reader), None).await?;
    subscriber.broadcast("bob").await?;
    let mut announced = subscriber.announcements();
    let mut paths = Vec::new();
    while let Some(update) = announced.try_next() {
        paths.push(update.path.as_str().to_string());
    }
    ensure!(paths == ["bob"], "announced: {paths:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_public_prefix_is_open_to_anyone_and_nothing_else_is() -> Result<()> {
    let keys = Keys::new("public")?;
    let relay = Relay::start_with(&["--auth-key", keys.path(), "--auth-public", "anon"]).await?;
    // moqring pub and sub, without a token.
    let url = relay.url("anon");
    let data = Rng::seeded("public").bytes(200_000).to_vec();
    let sub = MoqringSub::spawn(&url, "clip", "t", None)?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let options = PubOptions {
        frame_size: Some(5000),
        group_frames: Some(4),
        alpn: None,
    };
    let publisher = MoqringPub::spawn(&url, "clip", "t", &options, data.clone())?;
    assert_bytes_eq(&sub.output().await?, &data, "public prefix");
    publisher.finish().await?;
    // Beside it, a path that is not public needs a token.
    refused(&relay.url("anonymous")).await?;
    relay_logs(&relay, "a token is required").await
}

#[tokio::test(flavor = "multi_thread")]
async fn lite04_carries_no_token_and_gets_only_the_public_prefixes() -> Result<()> {
    let keys = Keys::new("lite04")?;
    let token = keys.sign(
        Claims::default()
            .with_root("")
            .with_subscribe([""])
            .with_publish([""]),
    );
    // With a public prefix: the session is let in and may use that prefix only.
    let relay = Relay::start_with(&["--auth-key", keys.path(), "--auth-public", "anon"]).await?;
    let scope = relay.scope(Some(Lite::V04), "anon");
    let mut url = scope.url.clone();
    url.set_query(Some(&format!("jwt={token}")));
    carries(&url, &url, &scope.name("alice"), Some(Lite::V04))
        .await
        .context("lite-04 under the public prefix")?;
    // Without one, a lite-04 session is refused whatever its URL says.
    let closed = Relay::start_with(&["--auth-key", keys.path()]).await?;
    let mut url = closed.url("");
    url.set_query(Some(&format!("jwt={token}")));
    match NativeSubscriber::connect(&url, Some(Lite::V04)).await {
        Err(_) => {}
        Ok(sub) => {
            within(
                "the relay to close a lite-04 session",
                sub.session.session.closed(),
            )
            .await?;
        }
    }
    relay_logs(&closed, "a token is required").await
}

#[tokio::test(flavor = "multi_thread")]
async fn key_settings_come_from_flags_or_the_config_file_and_bad_keys_stop_the_relay() -> Result<()>
{
    let keys = Keys::new("config")?;
    // The config file's keys, with the flags' precedence.
    let config = keys.dir.join("relay.toml");
    std::fs::write(
        &config,
        format!("auth_key = {:?}\nauth_public = [\"anon\"]\n", keys.path()),
    )?;
    let relay = Relay::start_with(&["--config", config.to_str().unwrap()]).await?;
    relay_logs(&relay, "auth: tokens required outside the public prefixes").await?;
    refused(&relay.url("demo")).await?;
    // A missing or malformed key: one line naming the file, exit status 1.
    let malformed = keys.dir.join("malformed.jwk");
    std::fs::write(&malformed, "{\"alg\":\"HS256\",\"k\":\"short\"}")?;
    for (flag, file) in [
        ("--auth-key", keys.dir.join("missing.jwk")),
        ("--auth-key", malformed.clone()),
        ("--auth-key-dir", keys.dir.join("no-such-dir")),
    ] {
        let out = moqring_command([
            "relay",
            "--bind",
            "127.0.0.1:0",
            flag,
            file.to_str().unwrap(),
        ])
        .output()
        .await
        .context("running moqring relay")?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("moqring: "))
            .collect();
        ensure!(
            out.status.code() == Some(1),
            "{flag} {file:?}: {:?} {stderr}",
            out.status
        );
        ensure!(lines.len() == 1, "{flag}: {stderr}");
        ensure!(
            lines[0].contains(file.to_str().unwrap()),
            "{flag}: {stderr}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn moqring_pub_and_sub_carry_their_tokens_in_the_url() -> Result<()> {
    let keys = Keys::new("clients")?;
    let relay = Relay::start_with(&["--auth-key", keys.path()]).await?;
    let put = keys.sign(Claims::default().with_root("demo").with_publish(["cam"]));
    let get = keys.sign(Claims::default().with_root("demo").with_subscribe(["cam"]));
    let data = Rng::seeded("client-tokens").bytes(100_000);
    let sub = MoqringSub::spawn_with(
        &with_jwt(&relay, "demo", &get),
        "cam",
        "t",
        None,
        &["--start-group", "0"],
    )?;
    let options = PubOptions {
        frame_size: Some(1000),
        group_frames: Some(10),
        alpn: None,
    };
    let publisher = MoqringPub::spawn(
        &with_jwt(&relay, "demo", &put),
        "cam",
        "t",
        &options,
        data.to_vec(),
    )?;
    publisher.finish().await?;
    assert_bytes_eq(
        &sub.output().await?,
        &data,
        "moqring pub -> sub with tokens",
    );
    Ok(())
}
