//! Extended CONNECT for WebTransport (RFC 9220, draft-ietf-webtrans-http3 §3): the request a
//! client sends in a HEADERS frame on a bidi stream, and the response. QPACK blocks use the
//! static table only: we announce no dynamic table, so a block that references one (Required
//! Insert Count not 0) is malformed. Field lines are checked as RFC 9114 §4.2-4.3 asks.

use bytes::{BufMut, Bytes, BytesMut};
use quiche::h3::qpack::{Decoder, Encoder, Error as QpackError};
use quiche::h3::{Header, NameValue};

pub use super::protocols::{choose, parse_protocols, Protocol};

use super::protocols::{is_tchar, parse_protocol, serialize};
use super::{frame, MAX_FRAME};

/// A WebTransport CONNECT request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    pub authority: String,
    /// With its query, as sent.
    pub path: String,
    pub origin: Option<String>,
    /// `wt-available-protocols`, in the client's order (empty when absent or malformed).
    pub protocols: Vec<Protocol>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Not a valid HTTP/3 request at all (missing/duplicate pseudo-headers, pseudo after
    /// regular, upper-case names, undecodable QPACK, dynamic-table references): reset the
    /// stream with H3_MESSAGE_ERROR.
    #[error("malformed: {0}")]
    Malformed(&'static str),
    /// A valid request we do not serve (not CONNECT, :protocol not webtransport, :scheme not
    /// https): answer with this status and FIN.
    #[error("{status}: {reason}")]
    Rejected { status: u16, reason: &'static str },
}

use RequestError::{Malformed, Rejected};

/// A WebTransport CONNECT response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectResponse {
    pub status: u16,
    /// `wt-protocol`, whichever syntax the server used (None when absent or malformed).
    pub protocol: Option<String>,
}

/// Decodes the QPACK header block of a HEADERS frame (Required Insert Count must be 0) into a
/// CONNECT request.
pub fn decode_request(block: &[u8]) -> Result<ConnectRequest, RequestError> {
    let known = [":method", ":scheme", ":authority", ":path", ":protocol"];
    let ([method, scheme, authority, path, protocol], regular) = section(block, known)?;
    let method = method.ok_or(Malformed("no :method"))?;
    if method != "CONNECT" {
        if protocol.is_some() {
            return Err(Malformed(":protocol on a request that is not CONNECT"));
        }
        if scheme.is_none() || path.is_none() {
            return Err(Malformed("request without :scheme or :path"));
        }
        let reason = "only Extended CONNECT is served";
        return Err(Rejected {
            status: 405,
            reason,
        });
    }
    let Some(protocol) = protocol else {
        if authority.is_none() || scheme.is_some() || path.is_some() {
            return Err(Malformed(
                "CONNECT without :authority, or with :scheme or :path",
            ));
        }
        let reason = "CONNECT without :protocol (a proxy tunnel) is not served";
        return Err(Rejected {
            status: 501,
            reason,
        });
    };
    let (Some(scheme), Some(authority), Some(path)) = (scheme, authority, path) else {
        return Err(Malformed(
            "Extended CONNECT without :scheme, :authority or :path",
        ));
    };
    if authority.is_empty() || path.is_empty() {
        return Err(Malformed("empty :authority or :path"));
    }
    if protocol != "webtransport" {
        let reason = ":protocol is not webtransport";
        return Err(Rejected {
            status: 501,
            reason,
        });
    }
    if scheme != "https" {
        let reason = ":scheme is not https";
        return Err(Rejected {
            status: 400,
            reason,
        });
    }
    let origin = values(&regular, "origin")
        .next()
        .map(|v| String::from_utf8_lossy(v).into_owned());
    // Several field lines of one List field are one List, joined by commas (RFC 8941 §4.2).
    let available: Vec<&[u8]> = values(&regular, "wt-available-protocols").collect();
    let protocols = String::from_utf8(available.join(&b", "[..]))
        .map(|v| parse_protocols(&v))
        .unwrap_or_default();
    Ok(ConnectRequest {
        authority,
        path,
        origin,
        protocols,
    })
}

/// A whole HEADERS frame (frame header + QPACK block)
/// answering a CONNECT: `:status` and, when 200, `sec-webtransport-http3-draft: draft02` and,
/// if `protocol` is Some, `wt-protocol` in the syntax the client used (quoted string or token).
pub fn encode_response(status: u16, protocol: Option<&Protocol>) -> Bytes {
    let status = status.to_string();
    let mut chosen = String::new();
    let mut fields = vec![(":status", status.as_str())];
    if status == "200" {
        fields.push(("sec-webtransport-http3-draft", "draft02"));
        if let Some(protocol) = protocol {
            serialize(protocol, &mut chosen);
            fields.push(("wt-protocol", &chosen));
        }
    }
    headers_frame(&fields)
}

/// Client side: a whole HEADERS frame with :method CONNECT, :protocol webtransport, :scheme
/// https, :authority, :path, sec-webtransport-http3-draft02: 1, wt-available-protocols as
/// quoted strings (left out when `protocols` is empty).
pub fn encode_request(authority: &str, path: &str, protocols: &[&str]) -> Bytes {
    let mut available = String::new();
    for (i, name) in protocols.iter().enumerate() {
        if i > 0 {
            available.push_str(", ");
        }
        let protocol = Protocol {
            name: name.to_string(),
            quoted: true,
        };
        serialize(&protocol, &mut available);
    }
    let mut fields = vec![
        (":method", "CONNECT"),
        (":protocol", "webtransport"),
        (":scheme", "https"),
        (":authority", authority),
        (":path", path),
        ("sec-webtransport-http3-draft02", "1"),
    ];
    if !protocols.is_empty() {
        fields.push(("wt-available-protocols", &available));
    }
    headers_frame(&fields)
}

/// Decodes the QPACK header block of the HEADERS frame answering our CONNECT. Any valid
/// status is returned (the caller checks for 200).
pub fn decode_response(block: &[u8]) -> Result<ConnectResponse, RequestError> {
    let ([status], regular) = section(block, [":status"])?;
    let status = status.ok_or(Malformed("no :status"))?;
    let status = match *status.as_bytes() {
        [a @ b'1'..=b'5', b @ b'0'..=b'9', c @ b'0'..=b'9'] => [a, b, c]
            .iter()
            .fold(0, |n, d| n * 10 + u16::from(d - b'0')),
        _ => return Err(Malformed(":status is not a code from 100 to 599")),
    };
    let protocol = values(&regular, "wt-protocol")
        .next()
        .and_then(|v| parse_protocol(std::str::from_utf8(v).ok()?))
        .map(|p| p.name);
    Ok(ConnectResponse { status, protocol })
}

/// The pseudo-header fields named in `known` (each at most once, all before any regular
/// field, no others) and the regular fields of a header block.
type Section<const N: usize> = ([Option<String>; N], Vec<Header>);

fn section<const N: usize>(block: &[u8], known: [&str; N]) -> Result<Section<N>, RequestError> {
    // Required Insert Count: one zero byte when the dynamic table is not used.
    match block.first() {
        None => return Err(Malformed("empty header block")),
        Some(0) => {}
        Some(_) => return Err(Malformed("dynamic table reference (Required Insert Count)")),
    }
    let fields = Decoder::new()
        .decode(block, MAX_FRAME)
        .map_err(|e| Malformed(qpack_reason(e)))?;
    let mut pseudo = std::array::from_fn(|_| None);
    let mut regular = Vec::new();
    for field in fields {
        let (name, value) = (field.name(), field.value());
        let token = name.strip_prefix(b":").unwrap_or(name);
        if token.is_empty()
            || !token
                .iter()
                .all(|&b| is_tchar(b) && !b.is_ascii_uppercase())
        {
            return Err(Malformed("field name not a lower-case token"));
        }
        if value.iter().any(|b| matches!(b, 0 | b'\r' | b'\n')) {
            return Err(Malformed("NUL, CR or LF in a field value"));
        }
        if name.len() == token.len() {
            regular.push(field);
            continue;
        }
        if !regular.is_empty() {
            return Err(Malformed("pseudo-header after a regular field"));
        }
        let slot = known
            .iter()
            .position(|k| k.as_bytes() == name)
            .ok_or(Malformed("unknown pseudo-header"))?;
        if pseudo[slot].is_some() {
            return Err(Malformed("duplicate pseudo-header"));
        }
        let value = String::from_utf8(value.to_vec());
        pseudo[slot] = Some(value.map_err(|_| Malformed("pseudo-header value not UTF-8"))?);
    }
    Ok((pseudo, regular))
}

fn qpack_reason(error: QpackError) -> &'static str {
    match error {
        // quiche's decoder says this for every dynamic-table and post-base reference.
        QpackError::InvalidHeaderValue => "dynamic table reference",
        // quiche 0.30 reports a bad Huffman string as a too large list too.
        QpackError::HeaderListTooLarge | QpackError::InvalidHuffmanEncoding => {
            "header list too large, or a bad Huffman string"
        }
        QpackError::InvalidStaticTableIndex => "no such static table entry",
        QpackError::BufferTooShort => "truncated header block",
    }
}

/// The values of the regular fields called `name`, in order.
fn values<'a>(fields: &'a [Header], name: &'a str) -> impl Iterator<Item = &'a [u8]> {
    fields
        .iter()
        .filter(move |f| f.name() == name.as_bytes())
        .map(|f| f.value())
}

/// A HEADERS frame carrying `fields` (static table, Huffman where shorter).
fn headers_frame(fields: &[(&str, &str)]) -> Bytes {
    // The prefix, then per field line at most a first byte and two integers of up to ten
    // bytes each around the name and value (Huffman is used only when shorter).
    let room: usize = 2 + fields
        .iter()
        .map(|(n, v)| n.len() + v.len() + 21)
        .sum::<usize>();
    let mut block = vec![0; room];
    let len = Encoder::new()
        .encode(fields, &mut block)
        .expect("the block has room for the worst case");
    let mut out = BytesMut::with_capacity(len + 8);
    frame::encode_header(frame::HEADERS, len as u64, &mut out);
    out.put_slice(&block[..len]);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The QPACK block of a whole HEADERS frame.
    fn block(frame_bytes: &[u8]) -> &[u8] {
        let mut buf = frame_bytes;
        let (ty, block) = frame::decode(&mut buf, MAX_FRAME).unwrap();
        assert_eq!(ty, frame::HEADERS);
        assert!(buf.is_empty());
        block
    }

    /// `block` in a HEADERS frame, fed to `frame::decode` one byte more at a time: Short until
    /// the last byte; then the request it carries.
    fn byte_by_byte(block: &[u8]) -> Result<ConnectRequest, RequestError> {
        let mut stream = Vec::new();
        frame::encode_header(frame::HEADERS, block.len() as u64, &mut stream);
        stream.extend_from_slice(block);
        for n in 0..stream.len() {
            let mut part = &stream[..n];
            assert_eq!(
                frame::decode(&mut part, MAX_FRAME),
                Err(crate::webtransport::Error::Short)
            );
            assert_eq!(part.len(), n);
        }
        decode_request(self::block(&stream))
    }

    fn q(name: &str) -> Protocol {
        Protocol {
            name: name.into(),
            quoted: true,
        }
    }

    fn chromium_request() -> ConnectRequest {
        ConnectRequest {
            authority: "localhost:4443".into(),
            path: "/room?jwt=a.b".into(),
            origin: Some("http://localhost".into()),
            protocols: vec![q("moq-lite-05"), q("moq-lite-04")],
        }
    }

    #[test]
    fn connect_encoded_by_quiche_huffman() {
        let fields: &[(&str, &str)] = &[
            (":method", "CONNECT"),
            (":scheme", "https"),
            (":authority", "localhost:4443"),
            (":path", "/room?jwt=a.b"),
            (":protocol", "webtransport"),
            ("sec-webtransport-http3-draft02", "1"),
            ("origin", "http://localhost"),
            (
                "user-agent",
                "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0.0.0",
            ),
            ("wt-available-protocols", r#""moq-lite-05", "moq-lite-04""#),
        ];
        let frame_bytes = headers_frame(fields);
        // quiche's encoder used Huffman: the block is shorter than its literal strings.
        let literal: usize = fields.iter().map(|(n, v)| n.len() + v.len()).sum();
        assert!(block(&frame_bytes).len() < literal * 4 / 5);
        assert_eq!(byte_by_byte(block(&frame_bytes)), Ok(chromium_request()));
    }

    /// A string literal without Huffman, its length in a 7-bit prefix.
    fn raw(s: &str) -> Vec<u8> {
        assert!(s.len() < 0x7f);
        let mut out = vec![s.len() as u8];
        out.extend_from_slice(s.as_bytes());
        out
    }

    #[test]
    fn connect_hand_written_literals() {
        let mut b = vec![0x00, 0x00]; // Required Insert Count 0, Base 0
        b.push(0xc0 | 15); // :method CONNECT, static 15
        b.push(0xc0 | 23); // :scheme https, static 23
        b.push(0x50); // :authority, static name 0
        b.extend(raw("localhost:4443"));
        b.push(0x51); // :path, static name 1
        b.extend(raw("/room?jwt=a.b"));
        b.extend([0x27, 0x02]); // literal name of 7 + 2 bytes
        b.extend_from_slice(b":protocol");
        b.extend(raw("webtransport"));
        b.extend([0x27, 0x17]); // 7 + 23 bytes
        b.extend_from_slice(b"sec-webtransport-http3-draft02");
        b.extend(raw("1"));
        b.extend([0x5f, 90 - 15]); // origin, static name 90
        b.extend(raw("http://localhost"));
        b.extend([0x27, 0x0f]); // 7 + 15 bytes
        b.extend_from_slice(b"wt-available-protocols");
        b.extend(raw(r#""moq-lite-05";v=5,moq-lite-04"#));
        let mut expected = chromium_request();
        expected.protocols[1].quoted = false;
        assert_eq!(byte_by_byte(&b), Ok(expected));
    }

    #[test]
    fn our_request_and_response_round_trip() {
        let frame_bytes = encode_request("relay.example:443", "/a/b?x=1", &["moq-lite-05", "moql"]);
        let request = ConnectRequest {
            authority: "relay.example:443".into(),
            path: "/a/b?x=1".into(),
            origin: None,
            protocols: vec![q("moq-lite-05"), q("moql")],
        };
        assert_eq!(decode_request(block(&frame_bytes)), Ok(request));
        let bare = encode_request("h:1", "/", &[]);
        assert_eq!(decode_request(block(&bare)).unwrap().protocols, vec![]);

        let quoted = encode_response(200, Some(&q("moq-lite-05")));
        let expected = ConnectResponse {
            status: 200,
            protocol: Some("moq-lite-05".into()),
        };
        assert_eq!(decode_response(block(&quoted)), Ok(expected.clone()));
        let token = Protocol {
            name: "moq-lite-05".into(),
            quoted: false,
        };
        let tokened = encode_response(200, Some(&token));
        assert_eq!(decode_response(block(&tokened)), Ok(expected));
        // The syntax on the wire is the client's: find the field value in the decoded block.
        let fields = Decoder::new().decode(block(&quoted), MAX_FRAME).unwrap();
        let wt: Vec<_> = fields
            .iter()
            .filter(|f| f.name() == b"wt-protocol")
            .collect();
        assert_eq!(wt[0].value(), br#""moq-lite-05""#);
        let fields = Decoder::new().decode(block(&tokened), MAX_FRAME).unwrap();
        assert_eq!(fields[0].value(), b"200");
        assert_eq!(fields[1].name(), b"sec-webtransport-http3-draft");
        assert_eq!(fields[1].value(), b"draft02");
        assert_eq!(fields[2].value(), b"moq-lite-05");
    }

    #[test]
    fn ok_without_protocol_and_refusals() {
        let plain = encode_response(200, None);
        // HEADERS; prefix; :status 200 (static 25); the draft field.
        assert_eq!(
            &plain[..5],
            [0x01, plain.len() as u8 - 2, 0x00, 0x00, 0xc0 | 25]
        );
        let ok = ConnectResponse {
            status: 200,
            protocol: None,
        };
        assert_eq!(decode_response(block(&plain)), Ok(ok));
        let refused = encode_response(400, Some(&q("moq-lite-05")));
        // :status 400 alone: static entry 67.
        assert_eq!(
            &refused[..],
            [0x01, 0x04, 0x00, 0x00, 0xc0 | 0x3f, 67 - 0x3f]
        );
        let bad = ConnectResponse {
            status: 400,
            protocol: None,
        };
        assert_eq!(decode_response(block(&refused)), Ok(bad));
    }

    #[test]
    fn dynamic_table_references_are_malformed() {
        let cases: [(&[u8], &str); 5] = [
            (
                &[0x02, 0x00, 0xc0 | 15],
                "dynamic table reference (Required Insert Count)",
            ),
            (&[0x00, 0x00, 0x80], "dynamic table reference"), // indexed, dynamic
            (&[0x00, 0x00, 0x10], "dynamic table reference"), // indexed, post-base
            (&[0x00, 0x00, 0x40, 0x01, 0x61], "dynamic table reference"), // name ref, dynamic
            (&[0x00, 0x00, 0x00, 0x01, 0x61], "dynamic table reference"), // name ref, post-base
        ];
        for (block, reason) in cases {
            assert_eq!(decode_request(block), Err(Malformed(reason)), "{block:x?}");
            assert_eq!(decode_response(block), Err(Malformed(reason)), "{block:x?}");
        }
    }

    /// A request block from field lines, through quiche's encoder (which lower-cases names:
    /// upper-case ones are written by hand below).
    fn request(fields: &[(&str, &str)]) -> Result<ConnectRequest, RequestError> {
        decode_request(block(&headers_frame(fields)))
    }

    const CONNECT: [(&str, &str); 5] = [
        (":method", "CONNECT"),
        (":protocol", "webtransport"),
        (":scheme", "https"),
        (":authority", "h"),
        (":path", "/"),
    ];

    fn with(
        changes: &[(usize, (&'static str, &'static str))],
        extra: &[(&'static str, &'static str)],
    ) -> Vec<(&'static str, &'static str)> {
        let mut fields = CONNECT.to_vec();
        for &(i, field) in changes {
            fields[i] = field;
        }
        fields.extend_from_slice(extra);
        fields
    }

    #[test]
    fn malformed_requests() {
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (CONNECT[1..].to_vec(), "no :method"),
            (with(&[], &[(":path", "/x")]), "duplicate pseudo-header"),
            (with(&[], &[(":status", "200")]), "unknown pseudo-header"),
            (
                with(&[(3, ("origin", "o"))], &[(":authority", "h")]),
                "pseudo-header after a regular field",
            ),
            (
                with(&[], &[("x", "a\r\nb")]),
                "NUL, CR or LF in a field value",
            ),
            (
                with(&[], &[("bad name", "v")]),
                "field name not a lower-case token",
            ),
            (
                with(&[(4, (":path", ""))], &[]),
                "empty :authority or :path",
            ),
            (
                CONNECT[..4].to_vec(),
                "Extended CONNECT without :scheme, :authority or :path",
            ),
            (
                with(&[(0, (":method", "GET"))], &[]),
                ":protocol on a request that is not CONNECT",
            ),
            (
                vec![(":method", "GET"), (":path", "/")],
                "request without :scheme or :path",
            ),
            (
                vec![(":method", "CONNECT"), (":authority", "h"), (":path", "/")],
                "CONNECT without :authority, or with :scheme or :path",
            ),
        ];
        for (fields, reason) in cases {
            assert_eq!(request(&fields), Err(Malformed(reason)), "{fields:?}");
        }
        // Upper case, by hand: a literal name "X" (quiche's encoder would lower-case it).
        let mut upper = block(&headers_frame(&CONNECT)).to_vec();
        upper.extend([0x21, b'X', 0x01, b'v']);
        assert_eq!(
            decode_request(&upper),
            Err(Malformed("field name not a lower-case token"))
        );
        let mut upper = vec![0x00, 0x00, 0x27, 0x00];
        upper.extend_from_slice(b":Method");
        upper.extend(raw("CONNECT"));
        assert_eq!(
            decode_request(&upper),
            Err(Malformed("field name not a lower-case token"))
        );
        // QPACK that does not decode.
        assert_eq!(decode_request(&[]), Err(Malformed("empty header block")));
        assert_eq!(
            decode_request(&[0x00]),
            Err(Malformed("truncated header block"))
        );
        assert_eq!(
            decode_request(&[0x00, 0x00, 0x51, 0x05, b'/']),
            Err(Malformed("truncated header block"))
        );
        assert_eq!(
            decode_request(&[0x00, 0x00, 0xff, 0x40]),
            Err(Malformed("no such static table entry"))
        );
        assert_eq!(
            decode_request(&[0x00, 0x00, 0x51, 0x81, 0xff]),
            Err(Malformed("header list too large, or a bad Huffman string"))
        );
    }

    #[test]
    fn rejected_requests() {
        let rejected = |status, reason| Err(Rejected { status, reason });
        let get = [
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", "h"),
            (":path", "/"),
        ];
        assert_eq!(
            request(&get),
            rejected(405, "only Extended CONNECT is served")
        );
        let tunnel = [(":method", "CONNECT"), (":authority", "h:443")];
        assert_eq!(
            request(&tunnel),
            rejected(
                501,
                "CONNECT without :protocol (a proxy tunnel) is not served"
            )
        );
        let ws = with(&[(1, (":protocol", "websocket"))], &[]);
        assert_eq!(request(&ws), rejected(501, ":protocol is not webtransport"));
        let http = with(&[(2, (":scheme", "http"))], &[]);
        assert_eq!(request(&http), rejected(400, ":scheme is not https"));
    }

    #[test]
    fn available_protocols_fields() {
        // Two field lines make one list; a malformed one makes it empty; origin is the first.
        let two = with(
            &[],
            &[
                ("wt-available-protocols", "a"),
                ("origin", "o1"),
                ("wt-available-protocols", "\"b\""),
                ("origin", "o2"),
            ],
        );
        let got = request(&two).unwrap();
        assert_eq!(
            got.protocols,
            vec![
                Protocol {
                    name: "a".into(),
                    quoted: false
                },
                q("b")
            ]
        );
        assert_eq!(got.origin.as_deref(), Some("o1"));
        let garbage = with(&[], &[("wt-available-protocols", "\"a\", , \"b\"")]);
        assert_eq!(request(&garbage).unwrap().protocols, vec![]);
    }

    #[test]
    fn malformed_responses() {
        let response = |fields: &[(&str, &str)]| decode_response(block(&headers_frame(fields)));
        assert_eq!(
            response(&[("wt-protocol", "a")]),
            Err(Malformed("no :status"))
        );
        for status in ["20", "2000", "099", "600", "abc"] {
            let err = Err(Malformed(":status is not a code from 100 to 599"));
            assert_eq!(response(&[(":status", status)]), err, "{status}");
        }
        let err = Err(Malformed("unknown pseudo-header"));
        assert_eq!(response(&[(":status", "200"), (":path", "/")]), err);
        let err = Err(Malformed("duplicate pseudo-header"));
        assert_eq!(response(&[(":status", "200"), (":status", "200")]), err);
        let odd = response(&[(":status", "599"), ("wt-protocol", "\"a\", \"b\"")]);
        assert_eq!(
            odd,
            Ok(ConnectResponse {
                status: 599,
                protocol: None
            })
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_blocks_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_request(&bytes);
            let _ = decode_response(&bytes);
            // And behind a valid prefix, so that the field lines are reached.
            bytes.splice(0..0, [0x00, 0x00]);
            let _ = decode_request(&bytes);
            let _ = decode_response(&bytes);
        }

        #[test]
        fn requests_round_trip(
            authority in "[a-z0-9.-]{1,20}(:[0-9]{1,5})?",
            path in "/[ -~]{0,40}",
            protocols in proptest::collection::vec("[ -~]{0,12}", 0..5),
        ) {
            let names: Vec<&str> = protocols.iter().map(String::as_str).collect();
            let frame_bytes = encode_request(&authority, &path, &names);
            let got = decode_request(block(&frame_bytes)).unwrap();
            prop_assert_eq!(got.authority, authority);
            prop_assert_eq!(got.path, path);
            prop_assert_eq!(got.protocols, protocols.iter().map(|p| q(p)).collect::<Vec<_>>());
        }
    }
}
