//! Test helpers for the decoders of this layer: the "Short consumes nothing" convention,
//! checked on every prefix of an input.

use std::fmt::Debug;

use super::Error;

/// Runs `decode` on every prefix of `bytes` (and on `bytes` itself). It must not panic; a
/// `Short` must leave the slice untouched; a success must consume a prefix of what it was
/// given; and once some prefix decodes (or fails for good), every longer one gives the same
/// answer and consumes the same bytes. Returns the answer on the whole input and how many
/// bytes it consumed.
pub fn check_decoder<T: PartialEq + Debug>(
    bytes: &[u8],
    decode: impl Fn(&mut &[u8]) -> Result<T, Error>,
) -> (Result<T, Error>, usize) {
    let mut settled: Option<(Result<T, Error>, usize)> = None;
    for n in 0..=bytes.len() {
        let mut buf = &bytes[..n];
        let result = decode(&mut buf);
        let used = n - buf.len();
        assert_eq!(&bytes[used..n], buf, "decoders only consume from the front");
        match (&result, &settled) {
            (Err(Error::Short), None) => assert_eq!(used, 0, "Short consumed {used} bytes"),
            (_, None) => {
                if result.is_err() {
                    assert_eq!(used, 0, "a failed decode consumed {used} bytes");
                }
                settled = Some((result, used));
            }
            (_, Some((first, first_used))) => {
                assert_eq!(&result, first, "more bytes changed the answer at {n}");
                assert_eq!(used, *first_used);
            }
        }
    }
    settled.unwrap_or((Err(Error::Short), 0))
}
