//! Zero-copy stream buffers: lets quiche queue our refcounted `Bytes` as stream data.
//!
//! `stream_send_zc` appends a `ZcBuf` to a stream's send queue without copying it, so a
//! frame payload fanned out to N subscribers costs N refcount increments, not N copies.
//! quiche only copies when it encrypts the bytes into a packet.
//!
//! Each buffer also carries its stream's [`Unacked`] handle, which tells when quiche has let
//! go of every byte the stream handed it, that is when the peer acknowledged them all.

use std::rc::Rc;

use bytes::Bytes;

/// quiche buffer factory whose buffers are `bytes::Bytes`.
#[derive(Debug, Clone, Default)]
pub struct BytesFactory;

/// A stream buffer: a `Bytes` handle that quiche can split without copying, and a clone
/// of its stream's [`Unacked`] handle (none for the buffers quiche makes itself).
#[derive(Debug, Clone, Default)]
pub struct ZcBuf {
    pub bytes: Bytes,
    unacked: Option<Rc<()>>,
}

impl AsRef<[u8]> for ZcBuf {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

/// Whether quiche still holds data a stream handed it. quiche keeps a stream's data until
/// the peer acknowledges it, dropping it from the front once everything before it is
/// acknowledged too (or all of it when the stream is reset or forgotten); every buffer it
/// holds carries a clone of this handle, so once only ours is left, every byte the stream
/// handed over is acknowledged. Counting is not atomic: a connection stays on its shard.
#[derive(Debug, Default)]
pub struct Unacked(Rc<()>);

impl Unacked {
    /// `bytes` as a buffer for quiche, carrying this handle.
    pub fn buf(&self, bytes: Bytes) -> ZcBuf {
        ZcBuf {
            bytes,
            unacked: Some(Rc::clone(&self.0)),
        }
    }

    /// Whether some data handed to quiche is not acknowledged yet.
    pub fn any(&self) -> bool {
        Rc::strong_count(&self.0) > 1
    }
}

impl quiche::BufFactory for BytesFactory {
    type Buf = ZcBuf;
    type DgramBuf = Vec<u8>;

    fn buf_from_slice(buf: &[u8]) -> ZcBuf {
        ZcBuf {
            bytes: Bytes::copy_from_slice(buf),
            unacked: None,
        }
    }

    fn dgram_buf_from_slice(buf: &[u8]) -> Vec<u8> {
        buf.to_vec()
    }
}

impl quiche::BufSplit for ZcBuf {
    fn split_at(&mut self, at: usize) -> Self {
        ZcBuf {
            bytes: self.bytes.split_off(at),
            unacked: self.unacked.clone(),
        }
    }
}

/// A quiche connection whose stream buffers are zero-copy `Bytes`.
pub type Conn = quiche::Connection<BytesFactory>;

#[cfg(test)]
mod tests {
    use super::*;
    use quiche::BufSplit;

    #[test]
    fn split_shares_the_allocation_and_the_ack_handle() {
        let payload = Bytes::from(vec![7u8; 100]);
        let unacked = Unacked::default();
        let mut buf = unacked.buf(payload.clone());
        let tail = buf.split_at(40);
        assert_eq!(buf.bytes.len(), 40);
        assert_eq!(tail.bytes.len(), 60);
        // Both halves point into the original allocation: no copy was made.
        assert_eq!(buf.bytes.as_ptr(), payload.as_ptr());
        assert_eq!(tail.bytes.as_ptr(), payload[40..].as_ptr());
        // Both carry the handle: the data is unacknowledged until both are dropped.
        drop(buf);
        assert!(unacked.any());
        drop(tail);
        assert!(!unacked.any());
    }
}
