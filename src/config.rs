//! The relay's TOML configuration file (`moqring relay --config FILE`): the settings of the
//! command line flags, which override it. Parsing and checking only: defaults are the
//! flags' own, applied by the command line.
//!
//! ```toml
//! bind = "0.0.0.0:4443"
//! max_queued_bytes = 8388608
//! cores = "0-3,6"
//! steering = true
//! auth_key = "/etc/moqring/root.jwk"   # or auth_key_dir = "/etc/moqring/keys"
//! auth_public = ["anon"]
//!
//! [cache]
//! bytes = 4194304
//! age_ms = 10000
//!
//! [[cache.rule]]
//! broadcast = "live/*"
//! track = "video"
//! bytes = 16777216
//! age_ms = 2000
//!
//! [cluster]
//! connect = ["moql://relay-b.example:4443/", "https://relay-c.example:4443/?jwt=..."]
//! id = 7
//! linger = "5s"
//!
//! [[eager]]
//! broadcast = "live/*"
//! tracks = ["video", "audio"]
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::relay::{CacheRule, EagerRule};
use crate::wire::Version;

/// The relay's settings as a file holds them; `None` where the file says nothing.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RelayFile {
    pub bind: Option<SocketAddr>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// ALPNs to accept, e.g. `["moq-lite-05"]`.
    #[serde(default)]
    pub alpn: Vec<String>,
    pub max_frame_size: Option<usize>,
    pub max_queued_bytes: Option<usize>,
    pub max_connections: Option<usize>,
    pub idle_timeout_ms: Option<u64>,
    /// How long a QUIC handshake may take, e.g. `"10s"` (`--handshake-timeout`).
    pub handshake_timeout: Option<String>,
    /// Handshakes in progress over the relay (`--max-pending-handshakes`).
    pub max_pending_handshakes: Option<usize>,
    /// Handshakes in progress per address and shard (`--max-pending-per-address`).
    pub max_pending_per_address: Option<usize>,
    /// `"auto"`, `"always"` or `"never"` (`--retry`).
    pub retry: Option<String>,
    /// Cores to run one shard on each, as `--cores` takes them (`"0-3,6"`).
    pub cores: Option<String>,
    /// Number of shards (`--threads`).
    pub threads: Option<usize>,
    /// `false`: do not pin shards (`--no-pin`).
    pub pin: Option<bool>,
    /// `false`: do not attach the steering program (`--no-steering`).
    pub steering: Option<bool>,
    /// JWK file verifying tokens (`--auth-key`).
    pub auth_key: Option<PathBuf>,
    /// Directory of KID.jwk files (`--auth-key-dir`).
    pub auth_key_dir: Option<PathBuf>,
    /// Prefixes open to anyone (`--auth-public`).
    #[serde(default)]
    pub auth_public: Vec<String>,
    /// TCP address of the HTTP side door (`--http-bind`).
    pub http_bind: Option<SocketAddr>,
    /// `false`: no HTTP side door (`--no-http`).
    pub http: Option<bool>,
    /// Names of the generated certificate (`--tls-generate`).
    pub tls_generate: Option<Vec<String>>,
    /// How long a drain serves open sessions, e.g. `"10s"` (`--drain-timeout`).
    pub drain_timeout: Option<String>,
    /// Where a drain's GOAWAY sends clients (`--drain-redirect`).
    pub drain_redirect: Option<String>,
    /// `"text"` or `"json"` (`--log-format`).
    pub log_format: Option<String>,
    #[serde(default)]
    pub cluster: ClusterSection,
    #[serde(default)]
    pub cache: CacheSection,
    #[serde(default)]
    pub eager: Vec<EagerEntry>,
}

/// `[cluster]`: the peer relays to dial and how (the `--cluster-*` and `--client-tls-*`
/// flags).
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// Peer URLs, like `--cluster-connect` (repeatable there).
    #[serde(default)]
    pub connect: Vec<String>,
    pub id: Option<u64>,
    pub max_hops: Option<usize>,
    /// A duration such as `5s`.
    pub linger: Option<String>,
    pub tls_disable_verify: Option<bool>,
    pub tls_root: Option<PathBuf>,
    pub tls_fingerprint: Option<String>,
}

/// `[cache]`: the global budgets and the per-pattern rules (first match wins).
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CacheSection {
    pub bytes: Option<usize>,
    pub age_ms: Option<u64>,
    #[serde(default, rename = "rule")]
    pub rules: Vec<CacheRuleEntry>,
}

/// `[[cache.rule]]`: budgets for the tracks of matching broadcasts.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CacheRuleEntry {
    /// A path, or a prefix ending in `*`.
    pub broadcast: String,
    /// Only this track of the matching broadcasts (default: every track).
    pub track: Option<String>,
    pub bytes: Option<usize>,
    pub age_ms: Option<u64>,
}

/// `[[eager]]`: tracks subscribed upstream as soon as a matching broadcast is announced.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EagerEntry {
    pub broadcast: String,
    pub tracks: Vec<String>,
}

/// A TOML error as one line: where, then what.
fn one_line(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}

impl RelayFile {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let file: Self = toml::from_str(text).map_err(|e| one_line(text, &e))?;
        file.versions()?;
        file.cores()?;
        if file.cores.is_some() && file.threads.is_some() {
            return Err("cores and threads exclude each other".into());
        }
        if file.auth_key.is_some() && file.auth_key_dir.is_some() {
            return Err("auth_key and auth_key_dir exclude each other".into());
        }
        file.cache_rules()?;
        file.eager_rules()?;
        Ok(file)
    }

    /// The cores `cores` lists, if it does.
    pub fn cores(&self) -> Result<Option<Vec<usize>>, String> {
        self.cores
            .as_deref()
            .map(crate::shard::parse_cores)
            .transpose()
    }

    /// The versions `alpn` names (empty: the file does not choose).
    pub fn versions(&self) -> Result<Vec<Version>, String> {
        self.alpn
            .iter()
            .map(|a| Version::from_alpn(a.as_bytes()).ok_or_else(|| format!("unknown alpn {a:?}")))
            .collect()
    }

    pub fn cache_rules(&self) -> Result<Vec<CacheRule>, String> {
        self.cache
            .rules
            .iter()
            .map(|r| {
                if r.broadcast.is_empty() || (r.bytes.is_none() && r.age_ms.is_none()) {
                    return Err(format!(
                        "cache rule {:?}: needs a broadcast and bytes or age_ms",
                        r.broadcast
                    ));
                }
                Ok(CacheRule {
                    pattern: r.broadcast.clone(),
                    track: r.track.clone(),
                    bytes: r.bytes,
                    age: r.age_ms.map(Duration::from_millis),
                })
            })
            .collect()
    }

    pub fn eager_rules(&self) -> Result<Vec<EagerRule>, String> {
        self.eager
            .iter()
            .map(|e| {
                if e.broadcast.is_empty() || e.tracks.is_empty() {
                    return Err(format!(
                        "eager rule {:?}: needs a broadcast and tracks",
                        e.broadcast
                    ));
                }
                Ok(EagerRule {
                    pattern: e.broadcast.clone(),
                    tracks: e.tracks.clone(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_parses() {
        let doc = include_str!("config.rs");
        let example: String = doc
            .lines()
            .skip_while(|l| !l.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| l.trim_start_matches("//!").trim_start())
            .collect::<Vec<_>>()
            .join("\n");
        let file = RelayFile::parse(&example).unwrap();
        assert_eq!(file.bind, Some("0.0.0.0:4443".parse().unwrap()));
        assert_eq!(file.max_queued_bytes, Some(8 << 20));
        assert_eq!(file.cores().unwrap(), Some(vec![0, 1, 2, 3, 6]));
        assert_eq!(file.steering, Some(true));
        assert_eq!(file.auth_key, Some("/etc/moqring/root.jwk".into()));
        assert_eq!(file.auth_public, ["anon"]);
        assert_eq!(file.cache.bytes, Some(4 << 20));
        assert_eq!(
            file.cache_rules().unwrap(),
            vec!["live/*:video=bytes=16777216,age=2000".parse().unwrap()]
        );
        assert_eq!(
            file.eager_rules().unwrap(),
            vec!["live/*=video,audio".parse().unwrap()]
        );
    }

    #[test]
    fn the_deployment_example_parses() {
        let file = RelayFile::parse(include_str!("../deploy/relay.toml")).unwrap();
        assert_eq!(file.bind, Some("0.0.0.0:443".parse().unwrap()));
        assert_eq!(file.drain_timeout.as_deref(), Some("10s"));
    }

    #[test]
    fn mistakes_are_refused() {
        for bad in [
            "bnd = \"0.0.0.0:1\"",
            "alpn = [\"moq-lite-99\"]",
            "[[cache.rule]]\nbroadcast = \"x\"",
            "[[eager]]\nbroadcast = \"x\"\ntracks = []",
            "max_queued_bytes = -1",
            "cores = \"3-1\"",
            "cores = \"0\"\nthreads = 2",
            "auth_key = \"a\"\nauth_key_dir = \"b\"",
            "auth_public = \"anon\"",
        ] {
            let err = RelayFile::parse(bad).expect_err(bad);
            assert_eq!(err.lines().count(), 1, "{err:?}");
        }
        let err = RelayFile::parse("max_frame_size = 1\nno_such_key = 2").unwrap_err();
        assert!(
            err.starts_with("line 2, column 1: unknown field `no_such_key`"),
            "{err}"
        );
        assert_eq!(RelayFile::parse("").unwrap(), RelayFile::default());
    }
}
