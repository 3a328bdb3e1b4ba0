//! Stream types: the first varint of every bidirectional (control) and unidirectional
//! (data) stream.

use bytes::BufMut;

use super::{varint, DecodeError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlType {
    Session,
    Announce,
    Subscribe,
    Fetch,
    Probe,
    Goaway,
    Track,
}

impl ControlType {
    const ALL: [ControlType; 7] = [
        ControlType::Session,
        ControlType::Announce,
        ControlType::Subscribe,
        ControlType::Fetch,
        ControlType::Probe,
        ControlType::Goaway,
        ControlType::Track,
    ];

    pub fn encode<B: BufMut>(self, buf: &mut B) {
        let code = Self::ALL.iter().position(|t| *t == self).unwrap_or(0);
        varint::encode(code as u64, buf)
    }

    pub fn decode(buf: &mut &[u8]) -> Result<Self, DecodeError> {
        let code = varint::decode(buf)?;
        usize::try_from(code)
            .ok()
            .and_then(|i| Self::ALL.get(i).copied())
            .ok_or(DecodeError::UnknownType(code))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    Group,
    Setup,
}

impl DataType {
    pub fn encode<B: BufMut>(self, buf: &mut B) {
        varint::encode(self as u64, buf)
    }

    pub fn decode(buf: &mut &[u8]) -> Result<Self, DecodeError> {
        match varint::decode(buf)? {
            0 => Ok(DataType::Group),
            1 => Ok(DataType::Setup),
            code => Err(DecodeError::UnknownType(code)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_moq_lite() {
        for (t, code) in [
            (ControlType::Announce, 1u8),
            (ControlType::Subscribe, 2),
            (ControlType::Track, 6),
        ] {
            let mut buf = Vec::new();
            t.encode(&mut buf);
            assert_eq!(buf, [code]);
            assert_eq!(ControlType::decode(&mut &buf[..]).unwrap(), t);
        }
        assert_eq!(
            ControlType::decode(&mut &[7u8][..]),
            Err(DecodeError::UnknownType(7))
        );
        assert_eq!(DataType::decode(&mut &[1u8][..]), Ok(DataType::Setup));
        assert_eq!(
            DataType::decode(&mut &[9u8][..]),
            Err(DecodeError::UnknownType(9))
        );
    }
}
