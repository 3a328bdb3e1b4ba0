//! Tokens compatible with moq-relay's: JWK keys, JWT claims and the path grants they give a
//! session (see `key`, `claims`, `grant`). Pure functions the session asks at SETUP and per
//! request; they never touch a socket or read the clock (`now` comes from the caller, and
//! wall time from a [`WallClock`] the owner keeps in step). Key files are read once, when
//! the relay starts.

mod claims;
mod grant;
mod key;

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub use claims::{Claims, Permissions, Scope};
pub use grant::Grant;
pub use key::{Key, Keys};

use crate::session::path;

/// Why a session is refused; each ends the connection with `Unauthorized`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("a token is required for this path")]
    TokenRequired,
    #[error("a token was given but the relay has no key to check it")]
    NoKeys,
    #[error("malformed token")]
    Malformed,
    #[error("token signature does not verify")]
    BadSignature,
    #[error("token algorithm is not the key's")]
    WrongAlgorithm,
    #[error("token has no kid and the relay's keys go by kid")]
    MissingKeyId,
    #[error("no key with the token's kid")]
    UnknownKey,
    #[error("token grants nothing")]
    GrantsNothing,
    #[error("token grants more than its key's scope")]
    OutsideKeyScope,
    #[error("token root does not cover the path")]
    OutsideRoot,
    #[error("token expired")]
    Expired,
}

/// A session let in: what it may do, and until when (unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    pub grant: Grant,
    pub expires: Option<i64>,
}

/// Unix time for the owner's `Instant`s: an anchor the owner moves with the system clock
/// (the only shared state here, read once per admission).
#[derive(Debug)]
pub struct WallClock {
    base: Instant,
    /// Unix milliseconds at `base`.
    offset_ms: AtomicI64,
}

fn unix_ms(wall: SystemTime) -> i64 {
    match wall.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

impl WallClock {
    pub fn new(now: Instant, wall: SystemTime) -> Self {
        Self {
            base: now,
            offset_ms: AtomicI64::new(unix_ms(wall)),
        }
    }

    /// Re-anchors to the system clock read at `now` (steps of the clock are followed).
    pub fn sync(&self, now: Instant, wall: SystemTime) {
        let since = now.saturating_duration_since(self.base).as_millis() as i64;
        self.offset_ms
            .store(unix_ms(wall).saturating_sub(since), Ordering::Relaxed);
    }

    /// Unix milliseconds at `now`.
    pub fn unix_ms(&self, now: Instant) -> i64 {
        let since = now.saturating_duration_since(self.base).as_millis() as i64;
        self.offset_ms.load(Ordering::Relaxed).saturating_add(since)
    }
}

/// The relay's token settings: keys (if any) and the prefixes open to anyone.
pub struct Auth {
    keys: Option<Keys>,
    public: Vec<String>,
    clock: WallClock,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("keys", &self.keys.as_ref().map_or(0, Keys::len))
            .field("public", &self.public)
            .finish()
    }
}

/// Splits a request target (`path?query`) into its path and its `jwt` query parameter.
pub fn split_target(target: &str) -> (&str, Option<String>) {
    let (path, query) = path::split_query(target);
    let jwt = query.and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .filter(|(k, v)| k == "jwt" && !v.is_empty())
            .map(|(_, v)| v.into_owned())
            .last()
    });
    (path, jwt)
}

impl Auth {
    /// `keys`: what verifies tokens (`None`: tokens are refused); `public`: prefixes open
    /// to anyone, with or without a token.
    pub fn new(keys: Option<Keys>, public: &[String], clock: WallClock) -> Self {
        Self {
            keys,
            public: public.iter().map(|p| path::normalize(p)).collect(),
            clock,
        }
    }

    /// Loads the key file or directory named by the settings (at start).
    pub fn load(
        key: Option<&Path>,
        key_dir: Option<&Path>,
        public: &[String],
        clock: WallClock,
    ) -> Result<Self, String> {
        let keys = match (key, key_dir) {
            (Some(_), Some(_)) => {
                return Err("--auth-key and --auth-key-dir exclude each other".into())
            }
            (Some(file), None) => Some(Keys::from_file(file)?),
            (None, Some(dir)) => Some(Keys::from_dir(dir)?),
            (None, None) => None,
        };
        Ok(Self::new(keys, public, clock))
    }

    pub fn clock(&self) -> &WallClock {
        &self.clock
    }

    pub fn public(&self) -> &[String] {
        &self.public
    }

    pub fn key_count(&self) -> usize {
        self.keys.as_ref().map_or(0, Keys::len)
    }

    /// What a session connected at `path` (normalised) may do, with `jwt` or without.
    /// `exp` is returned, not checked: see [`Admission::expired`].
    pub fn admit(&self, path: &str, jwt: Option<&str>) -> Result<Admission, Refusal> {
        let mut admission = match jwt {
            Some(token) => {
                let keys = self.keys.as_ref().ok_or(Refusal::NoKeys)?;
                let claims = keys.verify(token)?;
                let permissions = claims.authorize(path).ok_or(Refusal::OutsideRoot)?;
                Admission {
                    grant: Grant::at(path, &permissions),
                    expires: claims.exp,
                }
            }
            None => Admission {
                grant: Grant::default(),
                expires: None,
            },
        };
        admission.grant.merge(self.public_at(path));
        if admission.grant.is_empty() {
            return Err(Refusal::TokenRequired);
        }
        Ok(admission)
    }

    /// The public prefixes that meet `path`, as rights: all of `path` when a public prefix
    /// covers it, else the public prefixes below it.
    fn public_at(&self, path: &str) -> Grant {
        let mut open = Permissions::default();
        for prefix in &self.public {
            if let Some(below) = path::strip(prefix, path) {
                open.put.push(below.to_string());
            } else if path::strip(path, prefix).is_some() {
                open.put.push(String::new());
            }
        }
        open.get = open.put.clone();
        Grant::at(path, &open)
    }
}

impl Admission {
    /// Whether `exp` has passed at unix time `now_ms`, as moq-token decides it.
    pub fn expired(exp: i64, now_ms: i64) -> bool {
        exp.saturating_mul(1000) < now_ms
    }
}

#[cfg(test)]
mod tests;
