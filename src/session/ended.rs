//! What happens when the peer finishes or resets a stream: the end of a group, of a
//! subscription, of an announce interest.

use super::recv::{InStream, Kind};
use super::{Event, Session};
use crate::wire::ErrorCode;

impl Session {
    /// A stream was finished (`reset: None`) or reset by the peer.
    pub(super) fn on_stream_end(&mut self, id: u64, stream: InStream, reset: Option<u64>) {
        if reset.is_none() && stream.pending() > 0 {
            // Bytes left over at FIN are a truncated message or frame. A group stream
            // fails alone, its header cut short too (there is no group to end then).
            if matches!(stream.kind, Kind::Group { .. } | Kind::GroupHead) {
                self.group_failed(&stream.kind, ErrorCode::Decode);
                return;
            }
            if !matches!(stream.kind, Kind::Discard) {
                self.close(ErrorCode::Decode, "truncated message at end of stream");
                return;
            }
        }
        match stream.kind {
            Kind::Group {
                token, sequence, ..
            } => self.events.push(Event::GroupEnd {
                token,
                sequence,
                error: reset,
            }),
            Kind::SubscribeReplies { token } => {
                // A clean end keeps the subscription's id known, and our side of the
                // stream open: its group streams may still arrive after the FIN (a
                // browser publisher FINs right after its SUBSCRIBE_END, before its group
                // streams got out; moq-relay passes the end on before the last group),
                // and the owner waits for them. `unsubscribe` forgets the id and closes
                // our side once the track ended: a publisher that reads our FIN as the
                // end of interest (moq-relay) would cancel the groups still on the way.
                if reset.is_some() {
                    self.upstream.retain(|_, up| up.stream != id);
                }
                self.events.push(Event::SubscriptionClosed {
                    token,
                    error: reset,
                });
            }
            Kind::AnnounceReplies { .. } => {
                self.announce_prefixes.remove(&id);
                self.events.push(Event::AnnouncesEnded { stream: id });
            }
            Kind::ServeSubscribe { requested: true } => {
                // A subscription we already ended cleanly keeps its last groups going: a
                // relay (moq-relay) cancels as soon as it reads the end, with the last
                // group still in flight, and would lose it.
                let ended = self.ending.contains(&id) || self.closing.iter().any(|(s, _)| *s == id);
                if let Some(served) = self.served.remove(&id) {
                    if !ended {
                        for (_, g) in served.groups {
                            self.reset_group(g, ErrorCode::Cancel.code());
                        }
                    }
                }
                self.ending.retain(|s| *s != id);
                // Our side is finished already when we ended the subscription first.
                if !self.closing.iter().any(|(s, _)| *s == id) {
                    self.finish_stream(id);
                }
                self.events.push(Event::RequestCancelled { stream: id });
            }
            Kind::ServeAnnounce { prefix: Some(_) } => {
                self.announcing.remove(&id);
                self.finish_stream(id);
                self.events.push(Event::RequestCancelled { stream: id });
            }
            Kind::Connect { .. } => self.on_connect_ended(),
            Kind::H3Control { .. } => {
                let _ = self.conn.close(
                    true,
                    crate::webtransport::H3Error::ClosedCriticalStream.code(),
                    b"control stream closed",
                );
            }
            _ => {}
        }
    }
}
