//! Zero-copy stream buffers: lets quiche queue our refcounted `Bytes` as stream data.
//!
//! `stream_send_zc` appends a `ZcBuf` to a stream's send queue without copying it, so a
//! frame payload fanned out to N subscribers costs N refcount increments, not N copies.
//! quiche only copies when it encrypts the bytes into a packet.

use bytes::Bytes;

/// quiche buffer factory whose buffers are `bytes::Bytes`.
#[derive(Debug, Clone, Default)]
pub struct BytesFactory;

/// A stream buffer: a `Bytes` handle that quiche can split without copying.
#[derive(Debug, Clone, Default)]
pub struct ZcBuf(pub Bytes);

impl AsRef<[u8]> for ZcBuf {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl quiche::BufFactory for BytesFactory {
    type Buf = ZcBuf;
    type DgramBuf = Vec<u8>;

    fn buf_from_slice(buf: &[u8]) -> ZcBuf {
        ZcBuf(Bytes::copy_from_slice(buf))
    }

    fn dgram_buf_from_slice(buf: &[u8]) -> Vec<u8> {
        buf.to_vec()
    }
}

impl quiche::BufSplit for ZcBuf {
    fn split_at(&mut self, at: usize) -> Self {
        ZcBuf(self.0.split_off(at))
    }
}

/// A quiche connection whose stream buffers are zero-copy `Bytes`.
pub type Conn = quiche::Connection<BytesFactory>;

#[cfg(test)]
mod tests {
    use super::*;
    use quiche::BufSplit;

    #[test]
    fn split_shares_the_allocation() {
        let payload = Bytes::from(vec![7u8; 100]);
        let mut buf = ZcBuf(payload.clone());
        let tail = buf.split_at(40);
        assert_eq!(buf.0.len(), 40);
        assert_eq!(tail.0.len(), 60);
        // Both halves point into the original allocation: no copy was made.
        assert_eq!(buf.0.as_ptr(), payload.as_ptr());
        assert_eq!(tail.0.as_ptr(), payload[40..].as_ptr());
    }
}
