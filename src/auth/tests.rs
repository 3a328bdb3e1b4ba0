//! Keys, tokens and grants against moq-dev's own token code (the `moq-token` crate signs,
//! we verify): every algorithm family, both key-file forms, and the refusals.

use std::time::{Duration, Instant, SystemTime};

use moq_token::{Algorithm as Alg, Claims as TokenClaims, Key as TokenKey, KeyId};

use super::*;

fn key_text(key: &TokenKey, base64: bool) -> String {
    if base64 {
        key.to_str().unwrap()
    } else {
        serde_json::to_string(key).unwrap()
    }
}

/// What a relay loads: the public half of an asymmetric key, the secret of an HMAC one.
fn verifying(key: &TokenKey) -> TokenKey {
    key.to_public().unwrap_or_else(|_| key.clone())
}

fn auth(keys: Keys, public: &[&str]) -> Auth {
    let public: Vec<String> = public.iter().map(|s| s.to_string()).collect();
    Auth::new(
        Some(keys),
        &public,
        WallClock::new(Instant::now(), SystemTime::now()),
    )
}

fn one(key: &TokenKey) -> Keys {
    Keys::One(Key::parse(&key_text(&verifying(key), false)).unwrap())
}

fn demo_claims() -> TokenClaims {
    TokenClaims::default()
        .with_root("demo")
        .with_publish(["alice"])
        .with_subscribe([""])
}

fn grant(put: &[&str], get: &[&str]) -> Grant {
    let permissions = Permissions {
        put: put.iter().map(|s| s.to_string()).collect(),
        get: get.iter().map(|s| s.to_string()).collect(),
    };
    Grant::at("", &permissions)
}

#[test]
fn every_algorithm_family_in_both_file_forms() {
    // One RSA key serves all six RSA algorithms (generating is the slow part).
    let rsa = TokenKey::generate(Alg::RS256, None).unwrap();
    let algorithms = [
        Alg::HS256,
        Alg::HS384,
        Alg::HS512,
        Alg::ES256,
        Alg::ES384,
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::EdDSA,
    ];
    for alg in algorithms {
        let key = if matches!(
            alg,
            Alg::HS256 | Alg::HS384 | Alg::HS512 | Alg::ES256 | Alg::ES384 | Alg::EdDSA
        ) {
            TokenKey::generate(alg, None).unwrap()
        } else {
            let mut jwk = rsa.export();
            jwk.algorithm = alg;
            jwk.import().unwrap()
        };
        let token = key.sign(&demo_claims()).unwrap();
        for base64 in [false, true] {
            let text = key_text(&verifying(&key), base64);
            let parsed = Key::parse(&text).unwrap_or_else(|e| panic!("{alg:?}: {e}"));
            let auth = auth(Keys::One(parsed), &[]);
            let admission = auth
                .admit("demo", Some(&token))
                .unwrap_or_else(|e| panic!("{alg:?} base64={base64}: {e}"));
            assert_eq!(
                admission.grant,
                grant(&["demo/alice"], &["demo"]),
                "{alg:?}"
            );
            assert_eq!(admission.expires, None);
        }
        // Another key of the same algorithm does not verify it.
        let other = if alg == Alg::HS256 || alg == Alg::ES256 || alg == Alg::EdDSA {
            TokenKey::generate(alg, None).unwrap()
        } else {
            continue;
        };
        let refused = auth(one(&other), &[]).admit("demo", Some(&token));
        assert_eq!(refused, Err(Refusal::BadSignature), "{alg:?}");
    }
}

#[test]
fn a_private_key_file_verifies_too() {
    let key = TokenKey::generate(Alg::ES256, None).unwrap();
    let token = key.sign(&demo_claims()).unwrap();
    let keys = Keys::One(Key::parse(&key_text(&key, true)).unwrap());
    assert!(auth(keys, &[]).admit("demo", Some(&token)).is_ok());
}

#[test]
fn keys_by_kid() {
    let a = TokenKey::generate(Alg::HS256, Some(KeyId::decode("a").unwrap())).unwrap();
    let b = TokenKey::generate(Alg::EdDSA, Some(KeyId::decode("b-2").unwrap())).unwrap();
    let dir = std::env::temp_dir().join(format!("moqring-auth-kid-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a.jwk"), key_text(&a, true)).unwrap();
    std::fs::write(dir.join("b-2.jwk"), key_text(&verifying(&b), false)).unwrap();
    std::fs::write(dir.join("README"), "not a key").unwrap();
    let keys = Keys::from_dir(&dir).unwrap();
    assert_eq!(keys.len(), 2);
    let auth = auth(keys, &[]);
    for key in [&a, &b] {
        let token = key.sign(&demo_claims()).unwrap();
        assert!(auth.admit("demo", Some(&token)).is_ok());
    }
    // A token without a kid, or naming no key of ours, is refused.
    let unnamed = TokenKey::generate(Alg::HS256, None).unwrap();
    let token = unnamed.sign(&demo_claims()).unwrap();
    assert_eq!(auth.admit("demo", Some(&token)), Err(Refusal::MissingKeyId));
    let stranger = TokenKey::generate(Alg::HS256, Some(KeyId::decode("c").unwrap())).unwrap();
    let token = stranger.sign(&demo_claims()).unwrap();
    assert_eq!(auth.admit("demo", Some(&token)), Err(Refusal::UnknownKey));
    std::fs::write(dir.join("bad.jwk"), "{\"alg\":\"HS256\"}").unwrap();
    let err = Keys::from_dir(&dir).unwrap_err();
    assert!(err.contains("bad.jwk"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn malformed_keys_are_refused_with_a_reason() {
    let cases = [
        ("", "not a JWK"),
        ("{", "not a JWK"),
        ("%%%", "neither JSON"),
        (r#"{"alg":"ES512","kty":"EC"}"#, "unsupported algorithm"),
        (r#"{"alg":"HS256","k":"c2hvcnQ"}"#, "shorter than 32"),
        (r#"{"alg":"HS256","kty":"EC","k":"x"}"#, "needs kty \"oct\""),
        (
            r#"{"alg":"ES256","kty":"EC","crv":"P-384","x":"AA","y":"AA"}"#,
            "crv",
        ),
        (
            r#"{"alg":"ES256","kty":"EC","crv":"P-256","x":"AA","y":"AA"}"#,
            "32 bytes",
        ),
        (r#"{"alg":"RS256","kty":"RSA","n":"!!"}"#, "base64url"),
        (
            r#"{"alg":"EdDSA","kty":"OKP","crv":"Ed25519"}"#,
            "missing \"x\"",
        ),
        (
            r#"{"alg":"HS256","key_ops":["sign"],"k":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}"#,
            "verify",
        ),
    ];
    for (text, reason) in cases {
        let err = Key::parse(text).unwrap_err();
        assert!(err.contains(reason), "{text}: {err}");
    }
    let missing = Keys::from_file(Path::new("/nonexistent/key.jwk")).unwrap_err();
    assert!(missing.contains("/nonexistent/key.jwk"), "{missing}");
}

#[test]
fn malformed_tokens_are_refused() {
    let key = TokenKey::generate(Alg::HS256, None).unwrap();
    let auth = auth(one(&key), &[]);
    let token = key.sign(&demo_claims()).unwrap();
    let mut tampered = token.clone();
    tampered.insert(token.find('.').unwrap() + 2, 'A');
    for bad in ["", "x", "a.b.c", "....", "\u{0}", &tampered] {
        assert!(auth.admit("demo", Some(bad)).is_err(), "{bad:?}");
    }
    // A token signed for another algorithm than the key's.
    let es = TokenKey::generate(Alg::ES256, None).unwrap();
    let token = es.sign(&demo_claims()).unwrap();
    assert_eq!(
        auth.admit("demo", Some(&token)),
        Err(Refusal::WrongAlgorithm)
    );
}

#[test]
fn roots_and_useless_tokens() {
    let key = TokenKey::generate(Alg::HS256, None).unwrap();
    let auth = auth(one(&key), &[]);
    let token = key.sign(&demo_claims()).unwrap();
    assert_eq!(auth.admit("other", Some(&token)), Err(Refusal::OutsideRoot));
    assert_eq!(
        auth.admit("demonstration", Some(&token)),
        Err(Refusal::OutsideRoot)
    );
    let below = auth.admit("demo/alice", Some(&token)).unwrap();
    assert_eq!(below.grant, grant(&["demo/alice"], &["demo/alice"]));
    // Publishing only under bob: nothing reaches demo/alice... except subscribing.
    let bob = TokenClaims::default()
        .with_root("demo")
        .with_publish(["bob"]);
    let token = key.sign(&bob).unwrap();
    assert_eq!(
        auth.admit("demo/alice", Some(&token)),
        Err(Refusal::OutsideRoot)
    );
    assert_eq!(auth.admit("demo", None), Err(Refusal::TokenRequired));
}

#[test]
fn expiry_is_returned_and_judged_against_unix_time() {
    let key = TokenKey::generate(Alg::HS256, None).unwrap();
    let auth = auth(one(&key), &[]);
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
    let token = key.sign(&demo_claims().with_expires(at)).unwrap();
    let admission = auth.admit("demo", Some(&token)).unwrap();
    assert_eq!(admission.expires, Some(2_000_000_000));
    assert!(!Admission::expired(2_000_000_000, 2_000_000_000_000));
    assert!(Admission::expired(2_000_000_000, 2_000_000_000_001));
    assert!(!Admission::expired(i64::MAX, i64::MAX));
}

#[test]
fn a_key_scope_caps_its_tokens() {
    let key = TokenKey::generate(Alg::HS256, None)
        .unwrap()
        .with_scope(moq_token::Scope {
            root: "demo".into(),
            publish: vec!["alice".into()],
            subscribe: vec!["".into()],
        })
        .unwrap();
    let keys = Keys::One(Key::parse(&key_text(&key, false)).unwrap());
    let auth = auth(keys, &[]);
    let token = key.sign(&demo_claims()).unwrap();
    assert!(auth.admit("demo", Some(&token)).is_ok());
    // moq-token would not sign beyond the scope: build such a token with the bare secret.
    let unscoped = {
        let mut jwk = key.export();
        jwk.scope = None;
        jwk.import().unwrap()
    };
    let wide = TokenClaims::default().with_root("demo").with_publish([""]);
    let token = unscoped.sign(&wide).unwrap();
    assert_eq!(
        auth.admit("demo", Some(&token)),
        Err(Refusal::OutsideKeyScope)
    );
}

#[test]
fn public_prefixes_open_paths_to_anyone() {
    let key = TokenKey::generate(Alg::HS256, None).unwrap();
    let auth = auth(one(&key), &["anon", "open/room"]);
    // At a public path, or under one: all of it.
    let at = auth.admit("anon", None).unwrap();
    assert_eq!(at.grant, grant(&["anon"], &["anon"]));
    let under = auth.admit("anon/x", None).unwrap();
    assert_eq!(under.grant, grant(&["anon/x"], &["anon/x"]));
    // Above public prefixes (lite-03/04 sessions are at ""): just those prefixes.
    let root = auth.admit("", None).unwrap();
    assert_eq!(
        root.grant,
        grant(&["anon", "open/room"], &["anon", "open/room"])
    );
    assert!(!root.grant.may_put("anonymous"));
    assert_eq!(auth.admit("private", None), Err(Refusal::TokenRequired));
    // A token adds to what is public.
    let token = key.sign(&demo_claims().with_root("")).unwrap();
    let both = auth.admit("", Some(&token)).unwrap();
    assert!(both.grant.may_put("alice/x") && both.grant.may_put("anon/y"));
    assert!(!both.grant.may_put("bob"));
}

#[test]
fn public_only_relays_refuse_tokens() {
    let auth = Auth::new(
        None,
        &["anon".to_string()],
        WallClock::new(Instant::now(), SystemTime::now()),
    );
    assert!(auth.admit("anon", None).is_ok());
    assert_eq!(auth.admit("anon", Some("a.b.c")), Err(Refusal::NoKeys));
}

#[test]
fn jwt_comes_from_the_query() {
    assert_eq!(split_target("/demo?jwt=abc"), ("/demo", Some("abc".into())));
    assert_eq!(
        split_target("/demo?x=1&jwt=a%2Eb&jwt=c.d"),
        ("/demo", Some("c.d".into()))
    );
    assert_eq!(split_target("/demo?jwt="), ("/demo", None));
    assert_eq!(split_target("/demo"), ("/demo", None));
}

#[test]
fn the_wall_clock_follows_its_anchor() {
    let t0 = Instant::now();
    let epoch = SystemTime::UNIX_EPOCH;
    let clock = WallClock::new(t0, epoch + Duration::from_secs(100));
    assert_eq!(clock.unix_ms(t0 + Duration::from_millis(1500)), 101_500);
    // The system clock stepped back by 50 s.
    clock.sync(
        t0 + Duration::from_secs(10),
        epoch + Duration::from_secs(60),
    );
    assert_eq!(clock.unix_ms(t0 + Duration::from_secs(20)), 70_000);
}
