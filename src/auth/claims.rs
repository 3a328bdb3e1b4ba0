//! Token claims as moq-token 0.7 (and so moq-relay 0.14) defines them: `root`, `put`, `get`,
//! `exp`, `iat`, and how they scope a connection's path. Pure functions: no crypto, no clock.

use serde::{Deserialize, Deserializer};

use crate::session::path;

/// A token's payload. `put` and `get` are prefixes relative to `root`, matched by whole
/// segments; `""` grants everything under `root`. Unknown claims are ignored.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct Claims {
    pub root: String,
    #[serde(deserialize_with = "one_or_many")]
    pub put: Vec<String>,
    #[serde(deserialize_with = "one_or_many")]
    pub get: Vec<String>,
    /// Expiry, unix seconds (`null` or absent: none).
    pub exp: Option<i64>,
    /// Issue time, unix seconds; informational, as in moq-token.
    pub iat: Option<i64>,
}

/// The most a key may grant (a moq-token key's `scope`): the same shape as the claims.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct Scope {
    pub root: String,
    #[serde(deserialize_with = "one_or_many")]
    pub put: Vec<String>,
    #[serde(deserialize_with = "one_or_many")]
    pub get: Vec<String>,
}

/// What claims grant at one path, each prefix relative to that path.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Permissions {
    pub put: Vec<String>,
    pub get: Vec<String>,
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// Whether `path` is `prefix` or lies under it, segment-wise (both normalised).
pub(crate) fn under(path: &str, prefix: &str) -> bool {
    path::strip(path, prefix).is_some()
}

impl Claims {
    /// A token that grants neither publishing nor subscribing is useless, and refused.
    pub fn grants_something(&self) -> bool {
        !self.put.is_empty() || !self.get.is_empty()
    }

    /// The access these claims give a session connected at `path`, rebased onto it.
    ///
    /// `path` and `root` must overlap: the path lies under the root (the usual case;
    /// grants outside the path are dropped, grants above it become `""`), or the root
    /// lies under the path (grants gain the root's extra segments). `None` when they
    /// do not overlap, or when no grant reaches the path.
    pub fn authorize(&self, path: &str) -> Option<Permissions> {
        let path = path::normalize(path);
        let root = path::normalize(&self.root);
        // One of these is empty: how far the path reaches below the root, or the root
        // below the path.
        let (below, above) = if let Some(rest) = path::strip(&path, &root) {
            (rest.to_string(), String::new())
        } else if let Some(rest) = path::strip(&root, &path) {
            (String::new(), rest.to_string())
        } else {
            return None;
        };
        let rebase = |grants: &[String]| -> Vec<String> {
            grants
                .iter()
                .filter_map(|g| {
                    let g = path::join(&above, &path::normalize(g));
                    if let Some(rest) = path::strip(&g, &below) {
                        Some(rest.to_string())
                    } else if under(&below, &g) {
                        Some(String::new())
                    } else {
                        None
                    }
                })
                .collect()
        };
        let permissions = Permissions {
            put: rebase(&self.put),
            get: rebase(&self.get),
        };
        if permissions.put.is_empty() && permissions.get.is_empty() {
            return None;
        }
        Some(permissions)
    }
}

impl Scope {
    /// Whether every prefix the claims grant lies under one the scope allows, per role
    /// (an empty role in the scope allows nothing in that role).
    pub fn allows(&self, claims: &Claims) -> bool {
        covers(&self.root, &self.put, &claims.root, &claims.put)
            && covers(&self.root, &self.get, &claims.root, &claims.get)
    }
}

fn covers(scope_root: &str, allowed: &[String], root: &str, asked: &[String]) -> bool {
    let absolute = |r: &str, p: &str| path::join(&path::normalize(r), &path::normalize(p));
    asked.iter().all(|a| {
        let a = absolute(root, a);
        allowed.iter().any(|s| under(&a, &absolute(scope_root, s)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(root: &str, put: &[&str], get: &[&str]) -> Claims {
        Claims {
            root: root.into(),
            put: put.iter().map(|s| s.to_string()).collect(),
            get: get.iter().map(|s| s.to_string()).collect(),
            ..Claims::default()
        }
    }

    fn perms(put: &[&str], get: &[&str]) -> Option<Permissions> {
        Some(Permissions {
            put: put.iter().map(|s| s.to_string()).collect(),
            get: get.iter().map(|s| s.to_string()).collect(),
        })
    }

    #[test]
    fn put_and_get_are_a_string_or_a_list() {
        let c: Claims =
            serde_json::from_str(r#"{"root":"demo","put":"alice","get":["", "b"],"exp":5}"#)
                .unwrap();
        assert_eq!(c.put, ["alice"]);
        assert_eq!(c.get, ["", "b"]);
        assert_eq!(c.exp, Some(5));
        let c: Claims = serde_json::from_str(r#"{"exp":null,"cluster":true}"#).unwrap();
        assert_eq!(c, Claims::default());
        assert!(!c.grants_something());
        assert!(serde_json::from_str::<Claims>(r#"{"put":7}"#).is_err());
        assert!(serde_json::from_str::<Claims>(r#"{"exp":"soon"}"#).is_err());
    }

    #[test]
    fn path_at_the_root_keeps_the_grants() {
        let c = claims("demo", &["alice"], &[""]);
        assert_eq!(c.authorize("/demo/"), perms(&["alice"], &[""]));
    }

    #[test]
    fn path_below_the_root_narrows_them() {
        let c = claims("demo", &["room/alice", "other"], &["room"]);
        // "room" above the path grants all of it; "other" lies outside and is dropped.
        assert_eq!(c.authorize("demo/room"), perms(&["alice"], &[""]));
        assert_eq!(c.authorize("demo/room/alice/cam"), perms(&[""], &[""]));
        assert_eq!(c.authorize("demo/nothing"), None);
    }

    #[test]
    fn path_above_the_root_anchors_them_at_the_root() {
        let c = claims("demo/room", &[""], &["bob"]);
        assert_eq!(c.authorize(""), perms(&["demo/room"], &["demo/room/bob"]));
        assert_eq!(c.authorize("demo"), perms(&["room"], &["room/bob"]));
    }

    #[test]
    fn roots_match_by_whole_segments() {
        let c = claims("demo", &[""], &[""]);
        assert_eq!(c.authorize("demonstration"), None);
        assert_eq!(c.authorize("other/demo"), None);
        let c = claims("demo", &["live"], &[]);
        assert_eq!(c.authorize("demo/lively"), None);
    }

    #[test]
    fn scope_caps_each_role() {
        let scope = Scope {
            root: "project".into(),
            put: vec!["live".into()],
            get: vec![],
        };
        assert!(scope.allows(&claims("project/live/room", &[""], &[])));
        assert!(scope.allows(&claims("project", &["live/x"], &[])));
        assert!(!scope.allows(&claims("project/lively", &[""], &[])));
        assert!(!scope.allows(&claims("project/live", &[], &[""])));
    }
}
