//! The HTTP/3 + WebTransport layer browsers need (ALPN `h3`), sans-IO: pure functions over
//! byte slices, no quiche connection, no socket, no clock.
//!
//! quiche's own `h3` module cannot hand WebTransport streams to the application (see
//! WEBTRANSPORT.md in the shared folder), so this is the small part of HTTP/3 a WebTransport
//! server and client need, on plain QUIC streams:
//! - [`frame`]: HTTP/3 frames (RFC 9114 §7): type, length, payload.
//! - [`settings`]: the SETTINGS frame and the control streams we open.
//! - [`stream`]: the first bytes of a stream: uni stream types, the WebTransport signal
//!   values 0x54 (uni) and 0x41 (bidi) with their session id.
//! - [`headers`]: the Extended CONNECT request and its response (RFC 9220,
//!   draft-ietf-webtrans-http3), QPACK with the static table only, `wt-available-protocols`
//!   and `wt-protocol` negotiation.
//! - [`capsule`]: CLOSE_WEBTRANSPORT_SESSION and DRAIN capsules (RFC 9297) in DATA frames.
//! - [`datagram`]: the quarter-stream-id in front of an HTTP datagram.
//! - [`error`]: HTTP/3 error codes, and the WebTransport application error code mapping.
//!
//! Every decoder has the shape `fn(buf: &mut &[u8]) -> Result<T, Error>`: on success it
//! advances `buf` past what it consumed; [`Error::Short`] means "not enough bytes yet",
//! consumes nothing, and the caller retries from the same start with more bytes; any other
//! error names the HTTP/3 code to close with. Everything a peer can make us hold is bounded
//! by [`MAX_FRAME`] (or by the caller's own limit on [`frame::decode`]).

pub mod capsule;
pub mod datagram;
pub mod error;
pub mod frame;
pub mod headers;
mod protocols;
pub mod settings;
pub mod stream;

#[cfg(test)]
mod testing;

pub use error::{from_h3, to_h3, Error, H3Error};
pub use headers::{ConnectRequest, ConnectResponse, Protocol, RequestError};
pub use settings::Settings;
pub use stream::{BidiStream, UniStream};

/// The ALPN a WebTransport client offers.
pub const ALPN: &[u8] = b"h3";

/// Largest HEADERS / SETTINGS / DATA frame payload we accept (bigger: H3_EXCESSIVE_LOAD).
pub const MAX_FRAME: u64 = 64 * 1024;

/// Reads one QUIC varint; `Short` when it is not all there.
fn varint(buf: &mut &[u8]) -> Result<u64, Error> {
    crate::wire::varint::decode(buf).map_err(|_| Error::Short)
}
