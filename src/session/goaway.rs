//! GOAWAY from the relay's side: a graceful shutdown notice with an optional redirect,
//! sent on a bidi control stream of its own (lite-04, lite-05; older versions have none).

use bytes::BytesMut;

use super::recv::Kind;
use super::{Phase, Session};
use crate::wire::{ControlType, Goaway, Message};

impl Session {
    /// Tells the peer this relay is going away (`uri`: where to reconnect, or empty).
    /// Returns `false` when the session's version has no GOAWAY or it is not ready.
    pub fn go_away(&mut self, uri: &str) -> bool {
        let Some(version) = self.version.filter(|v| v.has_goaway()) else {
            return false;
        };
        if self.phase != Phase::Ready {
            return false;
        }
        self.drain_webtransport();
        let id = self.open_bidi(Kind::Discard);
        let mut buf = BytesMut::new();
        ControlType::Goaway.encode(&mut buf);
        Goaway {
            uri: uri.to_string(),
        }
        .encode(&mut buf, version);
        self.write(id, buf.freeze());
        self.finish_stream(id);
        true
    }
}
