//! What one session may do: absolute path prefixes it may publish (`put`) and subscribe
//! to (`get`), matched by whole segments. Pure data; the session asks it per request.

use super::claims::{under, Permissions};
use crate::session::path;

/// A session's rights. Empty lists grant nothing; a `""` prefix grants every path.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Grant {
    put: Vec<String>,
    get: Vec<String>,
}

impl Grant {
    /// Everything, everywhere.
    pub fn everything() -> Self {
        Self {
            put: vec![String::new()],
            get: vec![String::new()],
        }
    }

    /// `permissions` (relative to `root`) made absolute.
    pub fn at(root: &str, permissions: &Permissions) -> Self {
        let root = path::normalize(root);
        let absolute = |list: &[String]| -> Vec<String> {
            list.iter()
                .map(|p| path::join(&root, &path::normalize(p)))
                .collect()
        };
        let mut grant = Self {
            put: absolute(&permissions.put),
            get: absolute(&permissions.get),
        };
        grant.minimise();
        grant
    }

    /// Adds `other`'s rights to these.
    pub fn merge(&mut self, other: Grant) {
        self.put.extend(other.put);
        self.get.extend(other.get);
        self.minimise();
    }

    /// Sorted, without prefixes another one already covers (so the remaining ones are
    /// disjoint).
    fn minimise(&mut self) {
        for list in [&mut self.put, &mut self.get] {
            list.sort();
            list.dedup();
            let all = list.clone();
            list.retain(|p| !all.iter().any(|q| q != p && under(p, q)));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.put.is_empty() && self.get.is_empty()
    }

    /// Whether the session may publish the broadcast at `path` (absolute, normalised).
    pub fn may_put(&self, path: &str) -> bool {
        self.put.iter().any(|p| under(path, p))
    }

    /// Whether the session may subscribe to (and hear of) the broadcast at `path`.
    pub fn may_get(&self, path: &str) -> bool {
        self.get.iter().any(|p| under(path, p))
    }

    /// The prefixes under `prefix` that the session may publish: `prefix` itself when a
    /// grant covers it, else the grants lying under it (none when they miss it).
    pub fn put_within(&self, prefix: &str) -> Vec<String> {
        if self.may_put(prefix) {
            return vec![prefix.to_string()];
        }
        self.put
            .iter()
            .filter(|p| under(p, prefix))
            .cloned()
            .collect()
    }

    pub fn put(&self) -> &[String] {
        &self.put
    }

    pub fn get(&self) -> &[String] {
        &self.get
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(root: &str, put: &[&str], get: &[&str]) -> Grant {
        let p = Permissions {
            put: put.iter().map(|s| s.to_string()).collect(),
            get: get.iter().map(|s| s.to_string()).collect(),
        };
        Grant::at(root, &p)
    }

    #[test]
    fn matches_whole_segments() {
        let g = grant("demo", &["alice"], &[""]);
        assert!(g.may_put("demo/alice"));
        assert!(g.may_put("demo/alice/cam"));
        assert!(!g.may_put("demo/alicea"));
        assert!(!g.may_put("demo"));
        assert!(!g.may_put("other/alice"));
        assert!(g.may_get("demo"));
        assert!(g.may_get("demo/bob"));
        assert!(!g.may_get("demonstration"));
        assert!(!g.may_get(""));
        assert!(Grant::everything().may_put("any/thing"));
        assert!(!Grant::default().may_get("x"));
    }

    #[test]
    fn merging_drops_covered_prefixes() {
        let mut g = grant("", &["a/b", "c"], &[]);
        g.merge(grant("a", &[""], &["x"]));
        assert_eq!(g.put(), ["a", "c"]);
        assert_eq!(g.get(), ["a/x"]);
        assert!(!g.is_empty());
        assert!(Grant::default().is_empty());
    }

    #[test]
    fn announce_requests_narrow_to_the_put_grant() {
        let g = grant("", &["room/alice", "room/bob", "other"], &[]);
        assert_eq!(g.put_within("room"), ["room/alice", "room/bob"]);
        assert_eq!(g.put_within("room/alice/cam"), ["room/alice/cam"]);
        assert_eq!(g.put_within("third"), Vec::<String>::new());
        assert_eq!(grant("", &[], &[""]).put_within(""), Vec::<String>::new());
    }
}
