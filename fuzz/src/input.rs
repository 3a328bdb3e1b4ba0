//! The byte formats of the fuzz inputs: a reader that never fails (missing bytes read as
//! zero) and the matching writer the seed generator uses, so every input means something
//! and every seed is built from values, not hand-written bytes.

use moqring::wire::varint;

/// Reads fields from the front of a fuzz input; past its end every field reads as zero.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    pub fn u64(&mut self) -> u64 {
        let mut bytes = [0u8; 8];
        for b in &mut bytes {
            *b = self.byte();
        }
        u64::from_le_bytes(bytes)
    }

    /// A QUIC varint (0 when it is cut short).
    pub fn varint(&mut self) -> u64 {
        let mut rest = self.data;
        match varint::decode(&mut rest) {
            Ok(v) => {
                self.data = rest;
                v
            }
            Err(_) => {
                self.data = &[];
                0
            }
        }
    }

    /// A varint length, then up to that many bytes.
    pub fn chunk(&mut self) -> &'a [u8] {
        let len = usize::try_from(self.varint()).unwrap_or(usize::MAX);
        self.take(len)
    }

    /// Up to `len` bytes.
    pub fn take(&mut self, len: usize) -> &'a [u8] {
        let (chunk, rest) = self.data.split_at(len.min(self.data.len()));
        self.data = rest;
        chunk
    }

    /// Whatever is left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}

/// Writes fuzz inputs field by field, in the format [`Input`] reads.
#[derive(Default)]
pub struct Script {
    pub bytes: Vec<u8>,
}

impl Script {
    pub fn byte(&mut self, b: u8) -> &mut Self {
        self.bytes.push(b);
        self
    }

    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn varint(&mut self, v: u64) -> &mut Self {
        varint::encode(v, &mut self.bytes);
        self
    }

    pub fn chunk(&mut self, data: &[u8]) -> &mut Self {
        self.varint(data.len() as u64);
        self.bytes.extend_from_slice(data);
        self
    }

    pub fn raw(&mut self, data: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(data);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_read_back_field_by_field() {
        let mut script = Script::default();
        script
            .byte(7)
            .u16(0x1234)
            .u64(u64::MAX - 1)
            .varint(300)
            .chunk(b"abc")
            .raw(b"z");
        let mut input = Input::new(&script.bytes);
        assert_eq!(input.byte(), 7);
        assert_eq!(input.u16(), 0x1234);
        assert_eq!(input.u64(), u64::MAX - 1);
        assert_eq!(input.varint(), 300);
        assert_eq!(input.chunk(), b"abc");
        assert_eq!(input.rest(), b"z");
        assert!(input.is_empty());
        // Past the end everything is zero or empty.
        assert_eq!(
            (input.byte(), input.varint(), input.chunk()),
            (0, 0, &b""[..])
        );
    }

    #[test]
    fn cut_fields_read_as_what_is_there() {
        let mut input = Input::new(&[0x05, 1, 2]);
        assert_eq!(input.chunk(), &[1, 2]);
        let mut input = Input::new(&[0x40]);
        assert_eq!(input.varint(), 0);
        assert!(input.is_empty());
    }
}
