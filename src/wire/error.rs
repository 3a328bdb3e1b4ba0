//! moq-lite error codes, as used in stream resets and connection closes (moq-net 0.2.13).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    Cancel,
    Old,
    Timeout,
    Decode,
    Unauthorized,
    Version,
    UnexpectedStream,
    BoundsExceeded,
    Duplicate,
    NotFound,
    WrongSize,
    ProtocolViolation,
    UnexpectedMessage,
    Unsupported,
    TooManyParameters,
    Dropped,
    Closed,
    Lagged,
    FrameTooLarge,
    Unroutable,
    Evicted,
}

const CODES: [(ErrorCode, u64); 21] = [
    (ErrorCode::Cancel, 0),
    (ErrorCode::Old, 2),
    (ErrorCode::Timeout, 3),
    (ErrorCode::Decode, 5),
    (ErrorCode::Unauthorized, 6),
    (ErrorCode::Version, 9),
    (ErrorCode::UnexpectedStream, 10),
    (ErrorCode::BoundsExceeded, 11),
    (ErrorCode::Duplicate, 12),
    (ErrorCode::NotFound, 13),
    (ErrorCode::WrongSize, 14),
    (ErrorCode::ProtocolViolation, 15),
    (ErrorCode::UnexpectedMessage, 16),
    (ErrorCode::Unsupported, 17),
    (ErrorCode::TooManyParameters, 19),
    (ErrorCode::Dropped, 24),
    (ErrorCode::Closed, 25),
    (ErrorCode::Lagged, 26),
    (ErrorCode::FrameTooLarge, 27),
    (ErrorCode::Unroutable, 30),
    (ErrorCode::Evicted, 31),
];

impl ErrorCode {
    pub fn code(self) -> u64 {
        CODES
            .iter()
            .find(|(c, _)| *c == self)
            .map_or(0, |(_, n)| *n)
    }

    pub fn from_code(code: u64) -> Option<Self> {
        CODES.iter().find(|(_, n)| *n == code).map(|(c, _)| *c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable() {
        assert_eq!(ErrorCode::Cancel.code(), 0);
        assert_eq!(ErrorCode::Decode.code(), 5);
        assert_eq!(ErrorCode::Version.code(), 9);
        assert_eq!(ErrorCode::UnexpectedStream.code(), 10);
        assert_eq!(ErrorCode::BoundsExceeded.code(), 11);
        assert_eq!(ErrorCode::NotFound.code(), 13);
        assert_eq!(ErrorCode::ProtocolViolation.code(), 15);
        assert_eq!(ErrorCode::UnexpectedMessage.code(), 16);
        assert_eq!(ErrorCode::Unsupported.code(), 17);
        assert_eq!(ErrorCode::Lagged.code(), 26);
        assert_eq!(ErrorCode::FrameTooLarge.code(), 27);
        assert_eq!(ErrorCode::Evicted.code(), 31);
        for (c, n) in CODES {
            assert_eq!(ErrorCode::from_code(n), Some(c));
        }
    }
}
