//! moq-lite error codes, carried in stream resets, STOP_SENDING and connection closes
//! (moq-net 0.2.13 `Error::to_code`).

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

impl ErrorCode {
    /// Every code, in numeric order.
    pub const ALL: [ErrorCode; 21] = [
        ErrorCode::Cancel,
        ErrorCode::Old,
        ErrorCode::Timeout,
        ErrorCode::Decode,
        ErrorCode::Unauthorized,
        ErrorCode::Version,
        ErrorCode::UnexpectedStream,
        ErrorCode::BoundsExceeded,
        ErrorCode::Duplicate,
        ErrorCode::NotFound,
        ErrorCode::WrongSize,
        ErrorCode::ProtocolViolation,
        ErrorCode::UnexpectedMessage,
        ErrorCode::Unsupported,
        ErrorCode::TooManyParameters,
        ErrorCode::Dropped,
        ErrorCode::Closed,
        ErrorCode::Lagged,
        ErrorCode::FrameTooLarge,
        ErrorCode::Unroutable,
        ErrorCode::Evicted,
    ];

    /// Application codes (moq-net `Error::App(n)`) are sent as `n + APP_OFFSET`.
    pub const APP_OFFSET: u64 = 64;

    pub fn code(self) -> u64 {
        match self {
            ErrorCode::Cancel => 0,
            ErrorCode::Old => 2,
            ErrorCode::Timeout => 3,
            ErrorCode::Decode => 5,
            ErrorCode::Unauthorized => 6,
            ErrorCode::Version => 9,
            ErrorCode::UnexpectedStream => 10,
            ErrorCode::BoundsExceeded => 11,
            ErrorCode::Duplicate => 12,
            ErrorCode::NotFound => 13,
            ErrorCode::WrongSize => 14,
            ErrorCode::ProtocolViolation => 15,
            ErrorCode::UnexpectedMessage => 16,
            ErrorCode::Unsupported => 17,
            ErrorCode::TooManyParameters => 19,
            ErrorCode::Dropped => 24,
            ErrorCode::Closed => 25,
            ErrorCode::Lagged => 26,
            ErrorCode::FrameTooLarge => 27,
            ErrorCode::Unroutable => 30,
            ErrorCode::Evicted => 31,
        }
    }

    /// The code's meaning, if it is one of ours. moq-net also uses 1 (required extension),
    /// 4 (transport), 18 (encode), 20 (invalid role), 21 (unknown ALPN), 29 (timestamp
    /// mismatch) and 64+ (application); those give `None`.
    pub fn from_code(code: u64) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.code() == code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable() {
        let pinned = [
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
        assert_eq!(pinned.len(), ErrorCode::ALL.len());
        for ((code, number), listed) in pinned.into_iter().zip(ErrorCode::ALL) {
            assert_eq!(code, listed);
            assert_eq!(code.code(), number, "{code:?}");
            assert_eq!(ErrorCode::from_code(number), Some(code));
        }
        for unknown in [1, 4, 7, 8, 18, 20, 21, 28, 29, 32, 64, 468] {
            assert_eq!(ErrorCode::from_code(unknown), None);
        }
    }
}
