//! The bench's output: one progress line per second, and the final report as text or as
//! one JSON object (written by hand: a flat object of numbers needs no serializer).

use std::fmt::Write;

use super::stats::{Snapshot, Totals};

/// The relay's resource use over the measured window (when its pid was given).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RelayUsage {
    pub pid: u32,
    pub cpu_seconds: f64,
    pub peak_rss_kib: u64,
}

/// Everything a run measured, with the settings needed to read it.
#[derive(Debug, Clone)]
pub struct Report {
    pub url: String,
    pub publishers: usize,
    /// Subscriber connections in all (per publisher times publishers).
    pub subscribers: usize,
    pub threads: usize,
    pub fps: f64,
    pub frame_size: usize,
    pub group_frames: u64,
    /// Length of the measured window, seconds.
    pub window_s: f64,
    pub totals: Totals,
    pub relay: Option<RelayUsage>,
    /// CPU seconds this bench process used in the window (it should stay below the relay's).
    pub bench_cpu_s: Option<f64>,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl Report {
    /// Payload bits delivered per second in the window, in Mbit/s.
    pub fn delivered_mbit_s(&self) -> f64 {
        mbit_s(self.totals.bytes, self.window_s)
    }

    /// Frames offered to the relay in the window: at the configured pace, every
    /// publisher's frames to each of its subscribers.
    pub fn frames_offered(&self) -> f64 {
        self.fps * self.window_s * self.subscribers as f64
    }

    pub fn to_json(&self) -> String {
        let t = &self.totals;
        let mut s = String::with_capacity(1024);
        s.push('{');
        let mut field = |name: &str, value: String| {
            if s.len() > 1 {
                s.push(',');
            }
            let _ = write!(s, "\"{name}\":{value}");
        };
        field("url", json_string(&self.url));
        field(
            "version",
            t.version.as_deref().map_or("null".into(), json_string),
        );
        field("publishers", self.publishers.to_string());
        field("subscribers", self.subscribers.to_string());
        field("subscribers_receiving", t.receiving.to_string());
        field("connections_failed", t.failed.to_string());
        field("threads", self.threads.to_string());
        field("fps", json_f64(self.fps));
        field("frame_size", self.frame_size.to_string());
        field("group_frames", self.group_frames.to_string());
        field("duration_s", json_f64(self.window_s));
        field("frames_published", t.published.to_string());
        field("frames_skipped", t.skipped.to_string());
        field("frames_delivered", t.frames.to_string());
        field("bytes_delivered", t.bytes.to_string());
        field("delivered_mbit_s", json_f64(self.delivered_mbit_s()));
        field("frames_lost", t.lost.to_string());
        field("groups_reset", t.groups_reset.to_string());
        field(
            "latency_ms",
            format!(
                "{{\"p50\":{},\"p99\":{},\"max\":{}}}",
                json_f64(ms(t.latency.quantile(0.5))),
                json_f64(ms(t.latency.quantile(0.99))),
                json_f64(ms(t.latency.max()))
            ),
        );
        field(
            "relay",
            match self.relay {
                None => "null".into(),
                Some(r) => format!(
                    "{{\"pid\":{},\"cpu_s\":{},\"cpu_percent\":{},\"peak_rss_kib\":{}}}",
                    r.pid,
                    json_f64(r.cpu_seconds),
                    json_f64(100.0 * r.cpu_seconds / self.window_s.max(1e-9)),
                    r.peak_rss_kib
                ),
            },
        );
        field(
            "bench_cpu_s",
            self.bench_cpu_s.map_or("null".into(), json_f64),
        );
        s.push('}');
        s
    }

    pub fn to_text(&self) -> String {
        let t = &self.totals;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "moqring bench {} ({}): {} publisher(s) x {} subscriber(s), {} fps x {} B, {} frames a group, {} thread(s)",
            self.url,
            t.version.as_deref().unwrap_or("no session"),
            self.publishers,
            self.subscribers,
            self.fps,
            self.frame_size,
            self.group_frames,
            self.threads
        );
        let _ = writeln!(
            s,
            "  window      {:.1} s, {}/{} subscribers receiving, {} connection(s) failed",
            self.window_s, t.receiving, self.subscribers, t.failed
        );
        let _ = writeln!(
            s,
            "  published   {} frames ({} skipped: publisher queue full)",
            t.published, t.skipped
        );
        let _ = writeln!(
            s,
            "  delivered   {} frames ({:.1} % of offered), {} bytes, {:.1} Mbit/s",
            t.frames,
            100.0 * t.frames as f64 / self.frames_offered().max(1.0),
            t.bytes,
            self.delivered_mbit_s()
        );
        let _ = writeln!(
            s,
            "  lost        {} frames, {} groups reset by the relay",
            t.lost, t.groups_reset
        );
        let _ = writeln!(
            s,
            "  latency     p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            ms(t.latency.quantile(0.5)),
            ms(t.latency.quantile(0.99)),
            ms(t.latency.max())
        );
        if let Some(cpu) = self.bench_cpu_s {
            let _ = writeln!(
                s,
                "  bench       {:.2} CPU s ({:.1} % of one core)",
                cpu,
                100.0 * cpu / self.window_s.max(1e-9)
            );
        }
        if let Some(r) = self.relay {
            let _ = writeln!(
                s,
                "  relay       pid {}: {:.2} CPU s ({:.1} % of one core), peak RSS {:.1} MiB",
                r.pid,
                r.cpu_seconds,
                100.0 * r.cpu_seconds / self.window_s.max(1e-9),
                r.peak_rss_kib as f64 / 1024.0
            );
        }
        s
    }
}

fn mbit_s(bytes: u64, secs: f64) -> f64 {
    if secs <= 0.0 {
        return 0.0;
    }
    bytes as f64 * 8.0 / secs / 1e6
}

/// One progress line: what changed between two snapshots `secs` apart.
pub fn progress_line(
    label: &str,
    elapsed_s: f64,
    prev: &Snapshot,
    now: &Snapshot,
    secs: f64,
    subscribers: usize,
) -> String {
    let frames = now.frames - prev.frames;
    let mean = (now.latency_sum_us - prev.latency_sum_us)
        .checked_div(frames)
        .unwrap_or(0);
    format!(
        "[{elapsed_s:5.1} s] {label:<9} subs {}/{} | {:.0} frames/s {:.1} Mbit/s | latency mean {:.2} ms max {:.2} ms | failed {}",
        now.receiving,
        subscribers,
        frames as f64 / secs.max(1e-9),
        mbit_s(now.bytes - prev.bytes, secs),
        ms(mean),
        ms(now.latency_max_us),
        now.failed
    )
}

fn json_f64(v: f64) -> String {
    if v.is_finite() {
        format!("{:.3}", v)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    } else {
        "null".into()
    }
}

/// `v` as a JSON string literal, quotes and escapes included.
fn json_string(v: &str) -> String {
    serde_json::Value::from(v).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let mut totals = Totals {
            frames: 18_000,
            bytes: 90_000_000,
            published: 600,
            receiving: 30,
            version: Some("moq-lite-05".into()),
            ..Totals::default()
        };
        for us in [1000, 2000, 3000, 40_000] {
            totals.latency.record(us);
        }
        Report {
            url: "moql://127.0.0.1:4443/\"bench\"".into(),
            publishers: 1,
            subscribers: 30,
            threads: 1,
            fps: 30.0,
            frame_size: 5000,
            group_frames: 60,
            window_s: 20.0,
            totals,
            relay: Some(RelayUsage {
                pid: 7,
                cpu_seconds: 2.5,
                peak_rss_kib: 20480,
            }),
            bench_cpu_s: Some(1.25),
        }
    }

    #[test]
    fn json_has_the_fields_scripts_read() {
        let json: serde_json::Value = serde_json::from_str(&sample().to_json()).unwrap();
        assert_eq!(json["url"], "moql://127.0.0.1:4443/\"bench\"");
        assert_eq!(json["version"], "moq-lite-05");
        assert_eq!(json["subscribers"], 30);
        assert_eq!(json["subscribers_receiving"], 30);
        assert_eq!(json["frames_delivered"], 18_000);
        assert_eq!(json["frames_lost"], 0);
        assert_eq!(json["delivered_mbit_s"], 36.0);
        assert_eq!(json["duration_s"], 20);
        let p50 = json["latency_ms"]["p50"].as_f64().unwrap();
        assert!((2.0..=2.0 * (1.0 + 1.0 / 32.0)).contains(&p50), "{p50}");
        assert_eq!(json["latency_ms"]["max"], 40.0);
        assert_eq!(json["relay"]["cpu_s"], 2.5);
        assert_eq!(json["relay"]["cpu_percent"], 12.5);
        assert_eq!(json["relay"]["peak_rss_kib"], 20480);
        assert_eq!(json["bench_cpu_s"], 1.25);
    }

    #[test]
    fn json_without_a_relay_pid_or_session_has_nulls() {
        let mut report = sample();
        report.relay = None;
        report.totals.version = None;
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert!(json["relay"].is_null());
        assert!(json["version"].is_null());
    }

    #[test]
    fn text_names_what_was_delivered() {
        let text = sample().to_text();
        assert!(text.contains("18000 frames (100.0 % of offered)"), "{text}");
        assert!(text.contains("36.0 Mbit/s"), "{text}");
        assert!(text.contains("12.5 % of one core"), "{text}");
    }

    #[test]
    fn progress_shows_the_interval_rate() {
        let prev = Snapshot::default();
        let now = Snapshot {
            frames: 900,
            bytes: 4_500_000,
            latency_sum_us: 900_000,
            latency_max_us: 5000,
            seen: 900,
            receiving: 30,
            failed: 0,
        };
        let line = progress_line("measuring", 3.0, &prev, &now, 1.0, 30);
        assert!(line.contains("subs 30/30"), "{line}");
        assert!(line.contains("900 frames/s 36.0 Mbit/s"), "{line}");
        assert!(line.contains("mean 1.00 ms max 5.00 ms"), "{line}");
    }
}
