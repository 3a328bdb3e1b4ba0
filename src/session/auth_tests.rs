//! Tokens in the session, in memory on a virtual clock: admission at SETUP (lite-05) and at
//! the handshake (lite-03/04), requests outside the grant, filtered announcements, and a
//! session closed when its token expires. Tokens are signed by moq-dev's `moq-token`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use moq_token::{Algorithm, Claims as TokenClaims, Key as TokenKey};

use super::*;
use crate::auth::{Auth, Key, Keys, WallClock};

/// Unix time the virtual clock starts at.
const START_UNIX: u64 = 1_900_000_000;

struct Tokens {
    key: TokenKey,
}

impl Tokens {
    fn new() -> Self {
        Self {
            key: TokenKey::generate(Algorithm::HS256, None).unwrap(),
        }
    }

    fn sign(&self, claims: TokenClaims) -> String {
        self.key.sign(&claims).unwrap()
    }

    /// Server settings checking these tokens, with `public` prefixes; the wall clock reads
    /// [`START_UNIX`] now.
    fn server(&self, public: &[&str]) -> SessionConfig {
        let key = Key::parse(&serde_json::to_string(&self.key).unwrap()).unwrap();
        let public: Vec<String> = public.iter().map(|s| s.to_string()).collect();
        let clock = WallClock::new(
            Instant::now(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(START_UNIX),
        );
        SessionConfig {
            auth: Some(Arc::new(Auth::new(Some(Keys::One(key)), &public, clock))),
            ..SessionConfig::default()
        }
    }
}

fn client(target: &str) -> SessionConfig {
    SessionConfig {
        path: Some(target.into()),
        ..SessionConfig::default()
    }
}

fn subscribe(pair: &mut Pair, broadcast: &str, token: usize) {
    let request = Subscribe {
        id: 0,
        broadcast: broadcast.into(),
        track: "t".into(),
        priority: 0,
        ordered: false,
        max_latency: Duration::ZERO,
        start_group: None,
        end_group: None,
    };
    pair.client.subscribe(&request, token).unwrap();
    pair.pump();
}

fn server_subscribed(pair: &Pair, broadcast: &str) -> bool {
    pair.server_events
        .iter()
        .any(|e| matches!(e, Event::Subscribe { request, .. } if request.broadcast == broadcast))
}

fn refused(pair: &Pair, token: usize) -> bool {
    pair.client_events.iter().any(|e| {
        *e == Event::SubscriptionClosed {
            token,
            error: Some(ErrorCode::Unauthorized.code()),
        }
    })
}

fn closed_unauthorized(pair: &Pair) -> bool {
    let error = pair.client.conn().peer_error();
    error.is_some_and(|e| e.is_app && e.error_code == ErrorCode::Unauthorized.code())
}

fn ready(pair: &Pair) -> bool {
    pair.server_events.contains(&Event::Ready)
}

#[test]
fn a_token_in_setup_scopes_the_session_and_the_root_is_the_path_alone() {
    let tokens = Tokens::new();
    let jwt = tokens.sign(
        TokenClaims::default()
            .with_root("demo")
            .with_publish(["alice"])
            .with_subscribe(["bob"]),
    );
    let target = format!("/demo?jwt={jwt}");
    let mut pair = Pair::with(Version::Lite05, client(&target), tokens.server(&[]));
    assert!(ready(&pair));
    assert_eq!(pair.server.root(), "demo");
    assert_eq!(pair.client.root(), "demo");

    subscribe(&mut pair, "demo/bob", 1);
    assert!(server_subscribed(&pair, "demo/bob"));
    // Outside the grant: refused on that request, nothing reaches the relay, the
    // session goes on.
    subscribe(&mut pair, "demo/carol", 2);
    assert!(!server_subscribed(&pair, "demo/carol"));
    assert!(refused(&pair, 2));
    subscribe(&mut pair, "demo/bob/cam", 3);
    assert!(server_subscribed(&pair, "demo/bob/cam"));
    assert!(!pair.client.conn().is_closed());

    // The relay asks for announcements only where the session may publish.
    pair.server.request_announces("demo");
    pair.pump();
    let prefixes: Vec<&str> = pair
        .client_events
        .iter()
        .filter_map(|e| match e {
            Event::AnnounceInterest { prefix, .. } => Some(prefix.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(prefixes, ["demo/alice"]);
}

#[test]
fn announcements_reveal_only_what_the_session_may_get() {
    let tokens = Tokens::new();
    let jwt = tokens.sign(
        TokenClaims::default()
            .with_root("demo")
            .with_subscribe(["bob"]),
    );
    let target = format!("/demo?jwt={jwt}");
    let mut pair = Pair::with(Version::Lite05, client(&target), tokens.server(&[]));
    let stream = pair.announce_interest("demo");
    pair.server
        .reply_announces(stream, &[("demo/alice", &[]), ("demo/bob", &[])]);
    pair.server.announce(stream, "demo/carol", &[], true);
    pair.server.announce(stream, "demo/bob/2", &[], true);
    pair.pump();
    let announced: Vec<&str> = pair
        .client_events
        .iter()
        .filter_map(|e| match e {
            Event::Announced { path, .. } => Some(path.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(announced, ["demo/bob", "demo/bob/2"]);
    // A read-only session is never asked for its broadcasts.
    assert_eq!(pair.server.request_announces("demo"), None);
}

#[test]
fn sessions_without_a_valid_token_are_closed_before_they_are_ready() {
    let tokens = Tokens::new();
    let other = Tokens::new();
    let good = TokenClaims::default()
        .with_root("demo")
        .with_subscribe([""]);
    let expired = good
        .clone()
        .with_expires(SystemTime::UNIX_EPOCH + Duration::from_secs(START_UNIX - 1));
    let targets = [
        "/demo".to_string(),
        "/demo?jwt=".to_string(),
        "/demo?jwt=not.a.token".to_string(),
        format!("/demo?jwt={}", other.sign(good.clone())),
        format!("/demo?jwt={}", tokens.sign(expired)),
        format!("/elsewhere?jwt={}", tokens.sign(good)),
    ];
    for target in targets {
        let pair = Pair::with(Version::Lite05, client(&target), tokens.server(&["anon"]));
        assert!(!ready(&pair), "{target}");
        assert!(closed_unauthorized(&pair), "{target}");
    }
}

#[test]
fn an_open_session_is_closed_when_its_token_expires() {
    let tokens = Tokens::new();
    let exp = SystemTime::UNIX_EPOCH + Duration::from_secs(START_UNIX + 10);
    let jwt = tokens.sign(
        TokenClaims::default()
            .with_root("demo")
            .with_subscribe([""])
            .with_expires(exp),
    );
    let target = format!("/demo?jwt={jwt}");
    let mut pair = Pair::with(Version::Lite05, client(&target), tokens.server(&[]));
    assert!(ready(&pair));
    let deadline = pair.server.next_timeout().expect("a deadline");
    assert!(
        deadline <= pair.now + Duration::from_secs(10),
        "{deadline:?}"
    );
    pair.now += Duration::from_secs(5);
    pair.pump();
    assert!(!pair.client.conn().is_closed());
    pair.now += Duration::from_secs(6);
    pair.pump();
    assert!(closed_unauthorized(&pair));
}

#[test]
fn lite04_sessions_get_the_public_prefixes_only() {
    let tokens = Tokens::new();
    let mut pair = Pair::with(Version::Lite04, client("/anon"), tokens.server(&["anon"]));
    assert!(ready(&pair));
    assert_eq!(pair.server.root(), "");
    subscribe(&mut pair, "anon/x", 1);
    assert!(server_subscribed(&pair, "anon/x"));
    subscribe(&mut pair, "demo/x", 2);
    assert!(refused(&pair, 2));
    // With no public prefix they cannot have a session at all.
    let pair = Pair::with(Version::Lite04, client("/anon"), tokens.server(&[]));
    assert!(!ready(&pair));
    assert!(closed_unauthorized(&pair));
}

/// A client over WebTransport offering `version` at `target`.
fn wt_client(version: Version, target: &str) -> SessionConfig {
    SessionConfig {
        path: Some(target.into()),
        versions: vec![version],
        authority: Some("localhost:4443".into()),
        ..SessionConfig::default()
    }
}

#[test]
fn over_webtransport_the_connect_carries_the_token_on_every_version() {
    let tokens = Tokens::new();
    let good = TokenClaims::default()
        .with_root("demo")
        .with_subscribe(["bob"]);
    let exp = SystemTime::UNIX_EPOCH + Duration::from_secs(START_UNIX + 60);
    for version in Version::ALL {
        for claims in [good.clone(), good.clone().with_expires(exp)] {
            let target = format!("/demo?jwt={}", tokens.sign(claims));
            let mut pair = Pair::build(
                version,
                wt_client(version, &target),
                tokens.server(&[]),
                true,
            );
            assert!(ready(&pair), "{version}");
            assert_eq!(pair.server.root(), "demo", "{version}");
            subscribe(&mut pair, "demo/bob", 1);
            assert!(server_subscribed(&pair, "demo/bob"), "{version}");
            subscribe(&mut pair, "demo/carol", 2);
            assert!(refused(&pair, 2), "{version}");
            assert!(!server_subscribed(&pair, "demo/carol"), "{version}");
        }
    }
}

#[test]
fn over_webtransport_a_session_without_a_valid_token_is_answered_403() {
    let tokens = Tokens::new();
    let good = TokenClaims::default()
        .with_root("demo")
        .with_subscribe([""]);
    let expired = good
        .clone()
        .with_expires(SystemTime::UNIX_EPOCH + Duration::from_secs(START_UNIX - 1));
    let targets = [
        "/demo".to_string(),
        "/demo?jwt=not.a.token".to_string(),
        format!("/demo?jwt={}", tokens.sign(expired)),
        format!("/elsewhere?jwt={}", tokens.sign(good)),
    ];
    for version in [Version::Lite05, Version::Lite03] {
        for target in &targets {
            let mut pair = Pair::build(
                version,
                wt_client(version, target),
                tokens.server(&["anon"]),
                true,
            );
            pair.pump();
            assert!(!ready(&pair), "{target}");
            assert_eq!(
                pair.client.refused_status(),
                Some(403),
                "{version} {target}"
            );
            assert_eq!(pair.server.auth_refusals(), 1);
        }
    }
}
