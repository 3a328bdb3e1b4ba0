//! HTTP/1.1 requests and responses of the side door, sans-IO: a bounded request-head
//! parser and the routes (`/certificate.sha256`, `/health`, `/metrics`, `/announced`).
//! Bytes in, a whole response out; no sockets, no clock.

use crate::metrics::{self, Metrics};

/// Largest request head accepted (request line and headers); a longer one gets 431.
pub const MAX_HEAD: usize = 8 << 10;

/// What the routes serve.
pub struct Site {
    /// Hex SHA-256 of the certificate's DER (replaced when SIGHUP reloads it).
    pub fingerprint: crate::tls::SharedFingerprint,
    pub metrics: std::sync::Arc<Metrics>,
}

/// A request head as far as the side door cares.
#[derive(Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: &'a str,
    pub target: &'a str,
}

/// What the bytes received so far make.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// No end of the head yet (and it is still within [`MAX_HEAD`]).
    Incomplete,
    Complete(Request<'a>),
    /// Not an HTTP/1.x request head, or too long: answer with this response and close.
    Refused(Response),
}

/// Parses the request head at the start of `buf` (a body, if any, is ignored).
pub fn parse(buf: &[u8]) -> Parsed<'_> {
    let Some(end) = find_head_end(buf) else {
        if buf.len() > MAX_HEAD {
            return Parsed::Refused(Response::text(431, "request head too large\n"));
        }
        return Parsed::Incomplete;
    };
    if end > MAX_HEAD {
        return Parsed::Refused(Response::text(431, "request head too large\n"));
    }
    let bad = || Parsed::Refused(Response::text(400, "bad request\n"));
    let Ok(head) = std::str::from_utf8(&buf[..end]) else {
        return bad();
    };
    let line = head.split(['\r', '\n']).next().unwrap_or_default();
    let mut words = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return bad();
    };
    let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphabetic());
    if !token(method) || !target.starts_with('/') || !version.starts_with("HTTP/1.") {
        return bad();
    }
    Parsed::Complete(Request { method, target })
}

/// Where the head ends (the blank line), counting the blank line in.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A whole response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Response {
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }

    /// The response on the wire: status line, headers (`Connection: close`; the side door
    /// serves one request per connection) and body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\
             Access-Control-Allow-Origin: *\r\nCache-Control: no-store\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        if self.status == 405 {
            head.push_str("Allow: GET\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(self.body.as_bytes());
        out
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Answers one request.
pub fn respond(request: &Request, site: &Site) -> Response {
    let path = request.target.split(['?', '#']).next().unwrap_or_default();
    let known = matches!(path, "/certificate.sha256" | "/health" | "/metrics")
        || path == "/announced"
        || path.starts_with("/announced/");
    if !known {
        return Response::text(404, "not found\n");
    }
    if request.method != "GET" {
        return Response::text(405, "only GET\n");
    }
    match path {
        "/certificate.sha256" => Response::text(200, site.fingerprint.get()),
        "/health" => health(&site.metrics),
        "/metrics" => Response {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: metrics::render(&site.metrics),
        },
        _ => {
            let prefix = path.strip_prefix("/announced").unwrap_or_default();
            Response {
                status: 200,
                content_type: "application/json",
                body: announced(&site.metrics.broadcasts(), &percent_decode(prefix)),
            }
        }
    }
}

fn health(metrics: &Metrics) -> Response {
    if metrics.is_draining() {
        return Response::text(503, "draining\n");
    }
    let stopped: Vec<String> = (metrics.shards().iter().enumerate())
        .filter(|(_, s)| !s.is_running())
        .map(|(i, _)| i.to_string())
        .collect();
    if !stopped.is_empty() {
        return Response::text(503, format!("shards not running: {}\n", stopped.join(", ")));
    }
    Response::text(200, "ok\n")
}

/// The broadcasts under `prefix` (whole path segments: `anon` covers `anon/demo`, not
/// `anonymous/x`), as a JSON array of their full paths.
pub fn announced(broadcasts: &[String], prefix: &str) -> String {
    let prefix = prefix.trim_matches('/');
    let mut out = String::from("[");
    let under = broadcasts.iter().filter(|b| {
        prefix.is_empty()
            || b.as_str() == prefix
            || b.strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/'))
    });
    for (i, b) in under.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::Value::from(b.as_str()).to_string());
    }
    out.push_str("]\n");
    out
}

/// `%XX` escapes decoded (a malformed one is kept as it is).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Slot, Tally};
    use std::sync::Arc;

    fn site() -> Site {
        Site {
            fingerprint: "ab12".into(),
            metrics: Arc::new(Metrics::new(2)),
        }
    }

    fn get(site: &Site, target: &str) -> Response {
        respond(
            &Request {
                method: "GET",
                target,
            },
            site,
        )
    }

    #[test]
    fn a_request_head_parses_once_complete() {
        let full = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
        for cut in 0..full.len() {
            assert_eq!(parse(&full[..cut]), Parsed::Incomplete, "cut at {cut}");
        }
        assert_eq!(
            parse(full),
            Parsed::Complete(Request {
                method: "GET",
                target: "/health"
            })
        );
        assert!(matches!(
            parse(b"GET /metrics HTTP/1.0\n\n"),
            Parsed::Complete(Request {
                target: "/metrics",
                ..
            })
        ));
    }

    #[test]
    fn malformed_and_oversized_heads_are_refused() {
        for bad in [
            &b"GET /health\r\n\r\n"[..],
            b"GET health HTTP/1.1\r\n\r\n",
            b"GET /health HTTP/2\r\n\r\n",
            b"GET  /health HTTP/1.1\r\n\r\n",
            b"G\xffT /health HTTP/1.1\r\n\r\n",
            b"\r\n\r\n",
        ] {
            let Parsed::Refused(r) = parse(bad) else {
                panic!("{:?} accepted", String::from_utf8_lossy(bad));
            };
            assert_eq!(r.status, 400);
        }
        let mut long = b"GET / HTTP/1.1\r\nX: ".to_vec();
        long.resize(MAX_HEAD + 1, b'a');
        assert!(matches!(
            parse(&long),
            Parsed::Refused(Response { status: 431, .. })
        ));
        long.extend_from_slice(b"\r\n\r\n");
        assert!(matches!(
            parse(&long),
            Parsed::Refused(Response { status: 431, .. })
        ));
    }

    #[test]
    fn the_certificate_fingerprint_is_served_bare() {
        let r = get(&site(), "/certificate.sha256");
        assert_eq!((r.status, r.body.as_str()), (200, "ab12"));
    }

    #[test]
    fn health_follows_the_shards_and_the_drain() {
        let site = site();
        assert_eq!(get(&site, "/health").status, 503, "no shard started");
        let _a = site.metrics.shard(0).running();
        let b = site.metrics.shard(1).running();
        assert_eq!(get(&site, "/health").status, 200);
        drop(b);
        let r = get(&site, "/health");
        assert_eq!(
            (r.status, r.body.as_str()),
            (503, "shards not running: 1\n")
        );
        let _b = site.metrics.shard(1).running();
        site.metrics.set_draining();
        assert_eq!(get(&site, "/health").status, 503);
    }

    #[test]
    fn metrics_are_the_exposition() {
        let site = site();
        let mut t = Tally::default();
        t.set(Slot::FramesOut, 42);
        site.metrics.shard(1).publish(&t);
        let r = get(&site, "/metrics?x=1");
        assert_eq!(r.status, 200);
        assert!(r.content_type.starts_with("text/plain; version=0.0.4"));
        assert!(r.body.contains("moqring_frames_out_total 42\n"));
    }

    #[test]
    fn announced_filters_by_whole_segments() {
        let site = site();
        site.metrics
            .shard(0)
            .set_broadcasts(vec!["anon/b".into(), "anon/a\"x".into()]);
        site.metrics
            .shard(1)
            .set_broadcasts(vec!["anonymous/c".into(), "live/d".into()]);
        let body = |t| get(&site, t).body;
        assert_eq!(
            body("/announced"),
            "[\"anon/a\\\"x\",\"anon/b\",\"anonymous/c\",\"live/d\"]\n"
        );
        assert_eq!(body("/announced/"), body("/announced"));
        assert_eq!(body("/announced/anon"), "[\"anon/a\\\"x\",\"anon/b\"]\n");
        assert_eq!(body("/announced/anon/"), body("/announced/anon"));
        assert_eq!(body("/announced/live%2Fd"), "[\"live/d\"]\n");
        assert_eq!(body("/announced/none"), "[]\n");
        assert_eq!(get(&site, "/announced/x").content_type, "application/json");
    }

    #[test]
    fn other_paths_and_methods_are_refused() {
        let site = site();
        assert_eq!(get(&site, "/").status, 404);
        assert_eq!(get(&site, "/metricsx").status, 404);
        assert_eq!(get(&site, "/announcedx").status, 404);
        let post = Request {
            method: "POST",
            target: "/health",
        };
        let r = respond(&post, &site);
        assert_eq!(r.status, 405);
        assert!(String::from_utf8(r.to_bytes())
            .unwrap()
            .contains("\r\nAllow: GET\r\n"));
    }

    #[test]
    fn a_response_carries_its_length_and_closes() {
        let bytes = Response::text(200, "héllo").to_bytes();
        let text = String::from_utf8(bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(head.contains("\r\nContent-Length: 6\r\n"));
        assert!(head.contains("\r\nConnection: close"));
        assert_eq!(body, "héllo");
    }

    #[test]
    fn percent_escapes_decode() {
        assert_eq!(percent_decode("/a%2Fb%20c"), "/a/b c");
        assert_eq!(percent_decode("%zz%2"), "%zz%2");
        assert_eq!(percent_decode("%41"), "A");
    }
}
