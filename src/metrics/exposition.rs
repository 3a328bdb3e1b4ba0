//! Prometheus text exposition (format 0.0.4) of the shards' published values: for each
//! series the relay-wide total (no `shard` label) and one value per shard. Pure: values
//! in, text out.

use std::fmt::Write;

use super::{Kind, Metrics, Tally, SERIES};

/// Every name starts with this.
pub const PREFIX: &str = "moqring_";

/// The exposition of `metrics` as it stands.
pub fn render(metrics: &Metrics) -> String {
    let tallies: Vec<Tally> = metrics.shards().iter().map(|s| s.snapshot()).collect();
    let running: Vec<bool> = metrics.shards().iter().map(|s| s.is_running()).collect();
    render_values(&tallies, &running, metrics.is_draining())
}

/// The exposition of one tally per shard, whether each shard runs, and the drain flag.
pub fn render_values(tallies: &[Tally], running: &[bool], draining: bool) -> String {
    let mut out = String::with_capacity(256 * SERIES.len());
    let mut family = "";
    for (slot, series) in SERIES.iter().enumerate() {
        if series.family != family {
            family = series.family;
            let kind = match series.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
            };
            let _ = writeln!(out, "# HELP {PREFIX}{family} {}", series.help);
            let _ = writeln!(out, "# TYPE {PREFIX}{family} {kind}");
        }
        let label = series.label.map(|(k, v)| format!("{k}=\"{v}\""));
        let value = |v: u64| format_value(family, v);
        let total: u64 = tallies.iter().map(|t| t.0[slot]).sum();
        match &label {
            Some(l) => writeln!(out, "{PREFIX}{family}{{{l}}} {}", value(total)),
            None => writeln!(out, "{PREFIX}{family} {}", value(total)),
        }
        .expect("writing to a String");
        for (shard, tally) in tallies.iter().enumerate() {
            let v = value(tally.0[slot]);
            match &label {
                Some(l) => writeln!(out, "{PREFIX}{family}{{{l},shard=\"{shard}\"}} {v}"),
                None => writeln!(out, "{PREFIX}{family}{{shard=\"{shard}\"}} {v}"),
            }
            .expect("writing to a String");
        }
    }
    let _ = writeln!(
        out,
        "# HELP {PREFIX}shard_up 1 while the shard's thread runs its loop.\n# TYPE {PREFIX}shard_up gauge"
    );
    for (shard, up) in running.iter().enumerate() {
        let _ = writeln!(out, "{PREFIX}shard_up{{shard=\"{shard}\"}} {}", *up as u8);
    }
    let _ = writeln!(
        out,
        "# HELP {PREFIX}draining 1 once the relay drains (/health answers 503).\n# TYPE {PREFIX}draining gauge\n{PREFIX}draining {}",
        draining as u8
    );
    out
}

/// A value as its family shows it: `*_seconds_total` families are counted in nanoseconds.
fn format_value(family: &str, v: u64) -> String {
    if family.ends_with("_seconds_total") {
        format!("{}.{:09}", v / 1_000_000_000, v % 1_000_000_000)
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::super::Slot;
    use super::*;

    fn sample() -> String {
        let mut a = Tally::default();
        a.set(Slot::BytesIn, 100);
        a.set(Slot::RefusedLimit, 2);
        a.set(Slot::BusyNanos, 1_500_000_000);
        let mut b = Tally::default();
        b.set(Slot::BytesIn, 23);
        b.set(Slot::BusyNanos, 7);
        render_values(&[a, b], &[true, false], false)
    }

    #[test]
    fn totals_and_shards_are_listed_under_one_family_header() {
        let text = sample();
        let lines: Vec<&str> = text.lines().collect();
        let at = lines
            .iter()
            .position(|l| *l == "# TYPE moqring_bytes_in_total counter")
            .expect("type line");
        assert!(lines[at - 1].starts_with("# HELP moqring_bytes_in_total "));
        assert_eq!(
            &lines[at + 1..at + 4],
            [
                "moqring_bytes_in_total 123",
                "moqring_bytes_in_total{shard=\"0\"} 100",
                "moqring_bytes_in_total{shard=\"1\"} 23",
            ]
        );
    }

    #[test]
    fn labelled_series_share_their_family_header() {
        let text = sample();
        assert_eq!(
            text.matches("# TYPE moqring_connections_refused_total counter")
                .count(),
            1
        );
        assert!(text.contains("moqring_connections_refused_total{reason=\"limit\"} 2\n"));
        assert!(
            text.contains("moqring_connections_refused_total{reason=\"limit\",shard=\"0\"} 2\n")
        );
        assert!(
            text.contains("moqring_connections_refused_total{reason=\"version\",shard=\"1\"} 0\n")
        );
    }

    #[test]
    fn seconds_are_shown_from_nanoseconds() {
        let text = sample();
        assert!(text.contains("moqring_busy_seconds_total 1.500000007\n"));
        assert!(text.contains("moqring_busy_seconds_total{shard=\"1\"} 0.000000007\n"));
    }

    #[test]
    fn shard_state_and_drain_are_exposed() {
        let text = sample();
        assert!(text.contains("moqring_shard_up{shard=\"0\"} 1\n"));
        assert!(text.contains("moqring_shard_up{shard=\"1\"} 0\n"));
        assert!(text.contains("moqring_draining 0\n"));
    }

    #[test]
    fn every_line_is_a_comment_or_a_well_formed_sample() {
        for line in sample().lines() {
            if line.starts_with('#') {
                let mut words = line.split(' ');
                words.next();
                assert!(matches!(words.next(), Some("HELP" | "TYPE")), "{line}");
                assert!(words.next().unwrap().starts_with(PREFIX), "{line}");
                continue;
            }
            let (name, value) = line.rsplit_once(' ').expect(line);
            assert!(name.starts_with(PREFIX), "{line}");
            assert!(value.parse::<f64>().is_ok(), "{line}");
            let bare = name.split('{').next().unwrap();
            assert!(
                bare.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{line}"
            );
            assert_eq!(name.contains('{'), name.ends_with('}'), "{line}");
        }
    }
}
