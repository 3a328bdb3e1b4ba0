//! Per broadcast/track settings chosen by pattern: cache budgets ([`CacheRule`]) and the
//! shared pattern syntax of every rule. Pure data and matching; no relay state.

use std::time::Duration;

/// Whether `broadcast` matches `pattern`: a path, or a path prefix ending in `*` (`live/*`,
/// or `*` for every broadcast).
pub fn pattern_matches(pattern: &str, broadcast: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => broadcast.starts_with(prefix),
        None => broadcast == pattern,
    }
}

/// How much of its past a track keeps: finished groups within both budgets (the newest
/// group is always kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheBudget {
    pub bytes: usize,
    pub age: Duration,
}

/// Cache budgets for the tracks of broadcasts matching `pattern` (only track `track` when
/// given). A budget the rule leaves out is the global one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRule {
    pub pattern: String,
    pub track: Option<String>,
    pub bytes: Option<usize>,
    pub age: Option<Duration>,
}

impl CacheRule {
    pub fn matches(&self, broadcast: &str, track: &str) -> bool {
        pattern_matches(&self.pattern, broadcast)
            && self.track.as_deref().is_none_or(|t| t == track)
    }

    /// The budget of a matching track, the rule's values over `global`.
    pub fn budget(&self, global: CacheBudget) -> CacheBudget {
        CacheBudget {
            bytes: self.bytes.unwrap_or(global.bytes),
            age: self.age.unwrap_or(global.age),
        }
    }
}

/// The budget of track `track` of `broadcast`: the first matching rule's, else `global`.
pub fn cache_budget(
    rules: &[CacheRule],
    global: CacheBudget,
    broadcast: &str,
    track: &str,
) -> CacheBudget {
    rules
        .iter()
        .find(|r| r.matches(broadcast, track))
        .map_or(global, |r| r.budget(global))
}

impl std::str::FromStr for CacheRule {
    type Err = String;

    /// `PATTERN[:TRACK]=bytes=N,age=MS` (either setting may be left out), e.g.
    /// `live/*:video=bytes=8388608,age=2000`.
    fn from_str(s: &str) -> Result<Self, String> {
        let usage = || format!("{s:?}: expected PATTERN[:TRACK]=bytes=N,age=MS");
        let (target, settings) = s.split_once('=').ok_or_else(usage)?;
        let (pattern, track) = match target.split_once(':') {
            Some((p, t)) if !t.is_empty() => (p, Some(t.to_string())),
            Some(_) => return Err(usage()),
            None => (target, None),
        };
        if pattern.is_empty() {
            return Err(usage());
        }
        let mut rule = CacheRule {
            pattern: pattern.to_string(),
            track,
            bytes: None,
            age: None,
        };
        for setting in settings.split(',').filter(|x| !x.is_empty()) {
            let (key, value) = setting.split_once('=').ok_or_else(usage)?;
            let value: u64 = value
                .parse()
                .map_err(|_| format!("{s:?}: {key} takes a whole number"))?;
            match key {
                "bytes" => rule.bytes = Some(value as usize),
                "age" => rule.age = Some(Duration::from_millis(value)),
                _ => return Err(format!("{s:?}: unknown setting {key:?} (bytes, age)")),
            }
        }
        if rule.bytes.is_none() && rule.age.is_none() {
            return Err(usage());
        }
        Ok(rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GLOBAL: CacheBudget = CacheBudget {
        bytes: 4 << 20,
        age: Duration::from_secs(10),
    };

    #[test]
    fn patterns_match_paths_and_prefixes() {
        assert!(pattern_matches("live/a", "live/a"));
        assert!(!pattern_matches("live/a", "live/ab"));
        assert!(pattern_matches("live/*", "live/ab"));
        assert!(!pattern_matches("live/*", "vod/ab"));
        assert!(pattern_matches("*", "anything"));
    }

    #[test]
    fn rules_parse_and_the_first_match_wins() {
        let rules: Vec<CacheRule> = [
            "live/*:video=bytes=1000,age=2000",
            "live/*=age=500",
            "big=bytes=99",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        assert_eq!(
            rules[0],
            CacheRule {
                pattern: "live/*".into(),
                track: Some("video".into()),
                bytes: Some(1000),
                age: Some(Duration::from_millis(2000)),
            }
        );
        let budget = |b: &str, t: &str| cache_budget(&rules, GLOBAL, b, t);
        assert_eq!(
            budget("live/x", "video"),
            CacheBudget {
                bytes: 1000,
                age: Duration::from_millis(2000)
            }
        );
        assert_eq!(
            budget("live/x", "audio"),
            CacheBudget {
                bytes: GLOBAL.bytes,
                age: Duration::from_millis(500)
            }
        );
        assert_eq!(budget("big", "t").bytes, 99);
        assert_eq!(budget("other", "t"), GLOBAL);
    }

    #[test]
    fn malformed_rules_are_refused() {
        for bad in [
            "live",
            "=bytes=1",
            "live=",
            "live:=bytes=1",
            "live=bytes=x",
            "live=size=1",
            "live=bytes",
        ] {
            assert!(bad.parse::<CacheRule>().is_err(), "{bad:?} accepted");
        }
    }
}
