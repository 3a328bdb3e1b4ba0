//! Outgoing stream queues: data waiting for flow-control or congestion credit in quiche.
//!
//! Each stream we write keeps a FIFO of shared `Bytes` chunks. `flush` hands them to quiche
//! with `stream_send_zc` (no copy); a partial write keeps the unsent tail at the front.
//!
//! A FIN is written with the data of the same flush when it can. quiche 0.30 counts a
//! stream's send side complete once its data is acknowledged, FIN or not
//! (cloudflare/quiche#2525): a FIN written alone while the stream's last data is still
//! unacknowledged is dropped with the stream when that data's ACK comes first (the FIN still
//! queued behind a full congestion window, or its packet lost), and the peer never sees the
//! stream end. So a FIN with no data of its own, on a uni stream or a bidi stream the peer
//! finished, waits until quiche has let go of every byte the stream handed it (every buffer
//! carries the stream's [`Unacked`] handle), then for room in the congestion window. Its
//! packet's loss is then repaired by quiche like any other.

use std::collections::VecDeque;

use bytes::Bytes;

use super::schedule::{group_urgency, CONTROL_URGENCY};
use super::zc::{Conn, Unacked};

/// Scheduling class of a stream we open (lower urgency is sent first by quiche).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Control,
    Group,
}

impl Class {
    /// Initial quiche priority: (urgency, incremental). Groups are re-ranked as they open.
    fn priority(self) -> (u8, bool) {
        match self {
            Class::Control => (CONTROL_URGENCY, true),
            Class::Group => (group_urgency(0, 0), false),
        }
    }
}

/// What became of a queue after a flush attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flushed {
    /// Everything and the FIN are in quiche; the stream needs no more writing.
    Done,
    /// Everything queued is in quiche; more may come.
    Idle,
    /// Some data waits for credit.
    Pending,
    /// The peer stopped the stream (STOP_SENDING) with this code, or it is gone.
    Stopped(u64),
    /// Everything is in quiche but the FIN, which waits for the ACK of the data before it
    /// (see the module docs).
    AckWait,
}

/// One stream's unsent data.
#[derive(Debug)]
pub struct OutStream {
    chunks: VecDeque<Bytes>,
    queued: usize,
    fin: bool,
    urgency: u8,
    incremental: bool,
    /// Whether quiche knows the stream yet (priority set on the first successful write).
    opened: bool,
    /// Whether the stream is in the session's flush list.
    pub dirty: bool,
    /// The sequence of the group it carries, if it is a group stream (for log lines).
    group: Option<u64>,
    /// Carried by every buffer handed to quiche: whether some are unacknowledged.
    unacked: Unacked,
}

impl OutStream {
    pub fn new(class: Class, opened: bool) -> Self {
        let (urgency, incremental) = class.priority();
        Self {
            chunks: VecDeque::new(),
            queued: 0,
            fin: false,
            urgency,
            incremental,
            opened,
            dirty: false,
            group: None,
            unacked: Unacked::default(),
        }
    }

    /// The stream of group `sequence`, not yet known to quiche.
    pub fn for_group(sequence: u64) -> Self {
        Self {
            group: Some(sequence),
            ..Self::new(Class::Group, false)
        }
    }

    /// The sequence of the group this stream carries.
    pub fn group(&self) -> Option<u64> {
        self.group
    }

    pub fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.queued += chunk.len();
            self.chunks.push_back(chunk);
        }
    }

    pub fn finish(&mut self) {
        self.fin = true;
    }

    pub fn is_opened(&self) -> bool {
        self.opened
    }

    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Moves as much as quiche accepts into the connection, the FIN too when it may go
    /// (see the module docs).
    pub fn flush(&mut self, conn: &mut Conn, id: u64) -> Flushed {
        let before = self.queued;
        let state = self.flush_data(conn, id);
        if state != Flushed::Idle || !self.fin {
            return state;
        }
        // Data handed over now is not sent yet: a FIN now leaves with it. A bidi stream the
        // peer has not finished is not collected before its FIN is sent.
        let alone = self.queued == before;
        let at_risk = alone && (!super::wire_is_bidi(id) || conn.stream_finished(id));
        if at_risk {
            if self.unacked.any() {
                return Flushed::AckWait;
            }
            if conn.stream_capacity(id).is_ok_and(|room| room == 0) {
                // A full congestion window would keep it in quiche while ACKs come in.
                return Flushed::Pending;
            }
        }
        match conn.stream_send(id, &[], true) {
            Ok(_) => {
                self.mark_opened(conn, id);
                Flushed::Done
            }
            Err(quiche::Error::Done) | Err(quiche::Error::StreamLimit) => Flushed::Pending,
            Err(quiche::Error::StreamStopped(code)) => Flushed::Stopped(code),
            Err(_) => Flushed::Stopped(0),
        }
    }

    /// Moves as much queued data as quiche accepts into the connection (no FIN).
    pub fn flush_data(&mut self, conn: &mut Conn, id: u64) -> Flushed {
        while let Some(front) = self.chunks.front() {
            let len = front.len();
            // A clone is a refcount increment; on `Err` quiche drops what it was given.
            match conn.stream_send_zc(id, self.unacked.buf(front.clone()), false) {
                Ok((written, rest)) => {
                    self.queued -= written;
                    self.mark_opened(conn, id);
                    match rest {
                        Some(rest) if !rest.bytes.is_empty() => {
                            self.chunks[0] = rest.bytes;
                            return Flushed::Pending;
                        }
                        _ if written < len => {
                            self.chunks[0] = self.chunks[0].slice(written..);
                            return Flushed::Pending;
                        }
                        _ => {
                            self.chunks.pop_front();
                        }
                    }
                }
                Err(quiche::Error::Done) | Err(quiche::Error::StreamLimit) => {
                    return Flushed::Pending
                }
                Err(quiche::Error::StreamStopped(code)) => return Flushed::Stopped(code),
                Err(_) => return Flushed::Stopped(0),
            }
        }
        Flushed::Idle
    }

    /// Sets the stream's urgency, in quiche at once if it knows the stream.
    pub fn set_urgency(&mut self, conn: &mut Conn, id: u64, urgency: u8) {
        self.urgency = urgency;
        if self.opened {
            let _ = conn.stream_priority(id, urgency, self.incremental);
        }
    }

    #[cfg(test)]
    pub fn urgency(&self) -> u8 {
        self.urgency
    }

    /// The chunk that goes out next.
    #[cfg(test)]
    pub fn front(&self) -> Option<&Bytes> {
        self.chunks.front()
    }

    fn mark_opened(&mut self, conn: &mut Conn, id: u64) {
        if !self.opened {
            self.opened = true;
            let _ = conn.stream_priority(id, self.urgency, self.incremental);
        }
    }
}
