//! Stream types: the first varint of every bidirectional (control) and unidirectional
//! (data) stream.

use bytes::BufMut;

use super::{varint, DecodeError};

/// First varint on a bidi stream, written by the side that opens it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlType {
    /// 0: the lite-01/02 session stream; never valid here.
    Session,
    Announce,
    Subscribe,
    Fetch,
    Probe,
    Goaway,
    Track,
}

impl ControlType {
    pub fn code(self) -> u64 {
        match self {
            ControlType::Session => 0,
            ControlType::Announce => 1,
            ControlType::Subscribe => 2,
            ControlType::Fetch => 3,
            ControlType::Probe => 4,
            ControlType::Goaway => 5,
            ControlType::Track => 6,
        }
    }

    pub fn from_code(code: u64) -> Option<Self> {
        Some(match code {
            0 => ControlType::Session,
            1 => ControlType::Announce,
            2 => ControlType::Subscribe,
            3 => ControlType::Fetch,
            4 => ControlType::Probe,
            5 => ControlType::Goaway,
            6 => ControlType::Track,
            _ => return None,
        })
    }

    pub fn encode<B: BufMut>(self, buf: &mut B) {
        varint::encode(self.code(), buf)
    }

    pub fn decode(buf: &mut &[u8]) -> Result<Self, DecodeError> {
        let mut rest = *buf;
        let code = varint::decode(&mut rest)?;
        let t = Self::from_code(code).ok_or(DecodeError::UnknownType(code))?;
        *buf = rest;
        Ok(t)
    }
}

/// First varint on a uni stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    /// 0: a group of frames.
    Group,
    /// 1: the lite-05 SETUP stream.
    Setup,
}

impl DataType {
    pub fn code(self) -> u64 {
        match self {
            DataType::Group => 0,
            DataType::Setup => 1,
        }
    }

    pub fn from_code(code: u64) -> Option<Self> {
        match code {
            0 => Some(DataType::Group),
            1 => Some(DataType::Setup),
            _ => None,
        }
    }

    pub fn encode<B: BufMut>(self, buf: &mut B) {
        varint::encode(self.code(), buf)
    }

    pub fn decode(buf: &mut &[u8]) -> Result<Self, DecodeError> {
        let mut rest = *buf;
        let code = varint::decode(&mut rest)?;
        let t = Self::from_code(code).ok_or(DecodeError::UnknownType(code))?;
        *buf = rest;
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_moq_net() {
        let control = [
            (ControlType::Session, 0u8),
            (ControlType::Announce, 1),
            (ControlType::Subscribe, 2),
            (ControlType::Fetch, 3),
            (ControlType::Probe, 4),
            (ControlType::Goaway, 5),
            (ControlType::Track, 6),
        ];
        for (t, code) in control {
            let mut buf = Vec::new();
            t.encode(&mut buf);
            assert_eq!(buf, [code]);
            let mut slice = &buf[..];
            assert_eq!(ControlType::decode(&mut slice), Ok(t));
            assert!(slice.is_empty());
        }
        for (t, code) in [(DataType::Group, 0u8), (DataType::Setup, 1)] {
            let mut buf = Vec::new();
            t.encode(&mut buf);
            assert_eq!(buf, [code]);
            assert_eq!(DataType::decode(&mut &buf[..]), Ok(t));
        }
    }

    #[test]
    fn unknown_and_short() {
        assert_eq!(
            ControlType::decode(&mut &[7u8][..]),
            Err(DecodeError::UnknownType(7))
        );
        assert_eq!(
            ControlType::decode(&mut &[0x40, 0x02][..]),
            Ok(ControlType::Subscribe)
        );
        assert_eq!(
            DataType::decode(&mut &[0x80, 0, 1, 0][..]),
            Err(DecodeError::UnknownType(256))
        );
        assert_eq!(ControlType::decode(&mut &[][..]), Err(DecodeError::Short));
        assert_eq!(DataType::decode(&mut &[0x40][..]), Err(DecodeError::Short));
    }
}
