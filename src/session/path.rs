//! Broadcast paths: normalising, joining a session root with a relative path, stripping prefixes.
//!
//! moq-lite paths are `/`-separated; a session connected to `/anon` publishes `x` as `anon/x`.
//! Leading, trailing and repeated slashes carry no meaning and are dropped.

/// Splits a request target into its path and query (`"anon?jwt=x"` -> `("anon", Some("jwt=x"))`):
/// the query is never part of a path.
pub fn split_query(target: &str) -> (&str, Option<&str>) {
    match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    }
}

/// Returns `path` without empty segments ("/a//b/" -> "a/b").
pub fn normalize(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for part in path.split('/').filter(|p| !p.is_empty()) {
        if !out.is_empty() {
            out.push('/');
        }
        out.push_str(part);
    }
    out
}

/// Joins two normalised paths.
pub fn join(root: &str, rel: &str) -> String {
    match (root.is_empty(), rel.is_empty()) {
        (true, _) => rel.to_string(),
        (_, true) => root.to_string(),
        _ => format!("{root}/{rel}"),
    }
}

/// The part of `path` below `prefix`, if `path` is `prefix` or lies under it (segment-wise).
pub fn strip<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    if prefix.is_empty() {
        return Some(path);
    }
    let rest = path.strip_prefix(prefix)?;
    if rest.is_empty() {
        Some(rest)
    } else {
        rest.strip_prefix('/')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_slashes() {
        assert_eq!(normalize("/anon/"), "anon");
        assert_eq!(normalize("//a//b/"), "a/b");
        assert_eq!(normalize(""), "");
        assert_eq!(normalize("/"), "");
    }

    #[test]
    fn splits_the_query_off() {
        assert_eq!(split_query("/anon?jwt=x"), ("/anon", Some("jwt=x")));
        assert_eq!(split_query("anon"), ("anon", None));
        assert_eq!(split_query("?a=b?c"), ("", Some("a=b?c")));
    }

    #[test]
    fn joins_and_strips() {
        assert_eq!(join("anon", "x"), "anon/x");
        assert_eq!(join("", "x"), "x");
        assert_eq!(join("anon", ""), "anon");
        assert_eq!(strip("anon/x", "anon"), Some("x"));
        assert_eq!(strip("anon", "anon"), Some(""));
        assert_eq!(strip("anonymous/x", "anon"), None);
        assert_eq!(strip("other/x", "anon"), None);
        assert_eq!(strip("a/b", ""), Some("a/b"));
    }
}
