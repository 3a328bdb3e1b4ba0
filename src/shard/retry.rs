//! QUIC stateless Retry tokens: an HMAC-SHA256 over the client's address, the time of
//! issue, the client's original destination connection ID and the connection ID the Retry
//! gave it, under a key drawn at random when the relay starts. Sans-IO: the time comes in
//! as `now`; nothing here reads the clock, touches a socket or keeps per-client state.
//!
//! Token layout: issued (u64 ms since the key's epoch, big-endian) | odcid length (u8) |
//! odcid | first 16 bytes of the HMAC. A token checks out only from the same IP address
//! and port, for the connection ID it was issued with, within [`TOKEN_LIFETIME`].

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use ring::hmac;

/// How long a Retry token is good for: a client answers a Retry within one round trip.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(10);

/// Bytes of the HMAC kept in a token.
const TAG_LEN: usize = 16;

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Too short, too long or with a bad length byte.
    Malformed,
    /// Issued longer ago than [`TOKEN_LIFETIME`] (or in the future).
    Expired,
    /// Not ours, altered, or for another address or connection ID.
    Forged,
}

/// The relay's Retry key, shared read-only by every shard.
pub struct RetryKey {
    key: hmac::Key,
    /// Token times count from here.
    epoch: Instant,
}

impl std::fmt::Debug for RetryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryKey").finish_non_exhaustive()
    }
}

impl RetryKey {
    /// A fresh random key; `epoch` is any instant before the first token is minted.
    pub fn generate(epoch: Instant) -> Result<Self, ring::error::Unspecified> {
        let rng = ring::rand::SystemRandom::new();
        Ok(Self {
            key: hmac::Key::generate(hmac::HMAC_SHA256, &rng)?,
            epoch,
        })
    }

    /// The token for a client at `peer` whose Initial named `odcid`, told to come back to
    /// `retry_scid`.
    pub fn mint(&self, now: Instant, peer: SocketAddr, odcid: &[u8], retry_scid: &[u8]) -> Vec<u8> {
        let issued = now.saturating_duration_since(self.epoch).as_millis() as u64;
        let mut token = Vec::with_capacity(9 + odcid.len() + TAG_LEN);
        token.extend_from_slice(&issued.to_be_bytes());
        token.push(odcid.len() as u8);
        token.extend_from_slice(odcid);
        let tag = self.tag(issued, peer, odcid, retry_scid);
        token.extend_from_slice(&tag.as_ref()[..TAG_LEN]);
        token
    }

    /// The original destination connection ID of a valid token that `peer` sent in an
    /// Initial to `retry_scid`.
    pub fn check<'t>(
        &self,
        token: &'t [u8],
        now: Instant,
        peer: SocketAddr,
        retry_scid: &[u8],
    ) -> Result<&'t [u8], TokenError> {
        if token.len() < 9 + TAG_LEN {
            return Err(TokenError::Malformed);
        }
        let (issued, rest) = token.split_at(8);
        let issued = u64::from_be_bytes(issued.try_into().map_err(|_| TokenError::Malformed)?);
        let len = rest[0] as usize;
        if len > quiche::MAX_CONN_ID_LEN || rest.len() != 1 + len + TAG_LEN {
            return Err(TokenError::Malformed);
        }
        let odcid = &rest[1..1 + len];
        let tag = &rest[1 + len..];
        let expected = self.tag(issued, peer, odcid, retry_scid);
        // Constant time: ring compares the whole HMAC, so compare the kept prefix alike.
        if !constant_time_eq(&expected.as_ref()[..TAG_LEN], tag) {
            return Err(TokenError::Forged);
        }
        let age = now
            .saturating_duration_since(self.epoch)
            .as_millis()
            .checked_sub(u128::from(issued));
        match age {
            Some(age) if age <= TOKEN_LIFETIME.as_millis() => Ok(odcid),
            _ => Err(TokenError::Expired),
        }
    }

    fn tag(&self, issued: u64, peer: SocketAddr, odcid: &[u8], retry_scid: &[u8]) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(&issued.to_be_bytes());
        match peer.ip() {
            IpAddr::V4(ip) => {
                ctx.update(&[4]);
                ctx.update(&ip.octets());
            }
            IpAddr::V6(ip) => {
                ctx.update(&[6]);
                ctx.update(&ip.octets());
            }
        }
        ctx.update(&peer.port().to_be_bytes());
        ctx.update(&[odcid.len() as u8]);
        ctx.update(odcid);
        ctx.update(&[retry_scid.len() as u8]);
        ctx.update(retry_scid);
        ctx.sign()
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const ODCID: &[u8] = &[7; 16];
    const SCID: &[u8] = &[1; 20];

    fn peer() -> SocketAddr {
        "192.0.2.1:4433".parse().unwrap()
    }

    fn key(epoch: Instant) -> RetryKey {
        RetryKey::generate(epoch).unwrap()
    }

    #[test]
    fn a_token_round_trips_to_its_original_connection_id() {
        let epoch = Instant::now();
        let key = key(epoch);
        let now = epoch + Duration::from_secs(3);
        let token = key.mint(now, peer(), ODCID, SCID);
        assert_eq!(token.len(), 8 + 1 + ODCID.len() + TAG_LEN);
        let later = now + Duration::from_millis(200);
        assert_eq!(key.check(&token, later, peer(), SCID), Ok(ODCID));
        let empty = key.mint(now, peer(), &[], SCID);
        assert_eq!(key.check(&empty, now, peer(), SCID), Ok(&[][..]));
    }

    #[test]
    fn a_token_expires() {
        let epoch = Instant::now();
        let key = key(epoch);
        let token = key.mint(epoch, peer(), ODCID, SCID);
        assert!(key
            .check(&token, epoch + TOKEN_LIFETIME, peer(), SCID)
            .is_ok());
        let late = epoch + TOKEN_LIFETIME + Duration::from_millis(1);
        assert_eq!(
            key.check(&token, late, peer(), SCID),
            Err(TokenError::Expired)
        );
        // Issued "in the future" (a clock that went backwards for it) is no better.
        let ahead = key.mint(epoch + Duration::from_secs(60), peer(), ODCID, SCID);
        assert_eq!(
            key.check(&ahead, epoch + Duration::from_secs(1), peer(), SCID),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn another_address_or_port_or_connection_id_is_refused() {
        let epoch = Instant::now();
        let key = key(epoch);
        let token = key.mint(epoch, peer(), ODCID, SCID);
        let others: [SocketAddr; 3] = [
            "192.0.2.2:4433".parse().unwrap(),
            "192.0.2.1:4434".parse().unwrap(),
            "[::ffff:192.0.2.1]:4433".parse().unwrap(),
        ];
        for other in others {
            assert_eq!(
                key.check(&token, epoch, other, SCID),
                Err(TokenError::Forged),
                "{other}"
            );
        }
        assert_eq!(
            key.check(&token, epoch, peer(), &[2; 20]),
            Err(TokenError::Forged)
        );
    }

    #[test]
    fn tampering_and_other_keys_are_refused() {
        let epoch = Instant::now();
        let key = key(epoch);
        let token = key.mint(epoch, peer(), ODCID, SCID);
        for i in 0..token.len() {
            let mut bad = token.clone();
            bad[i] ^= 0x01;
            assert!(key.check(&bad, epoch, peer(), SCID).is_err(), "byte {i}");
        }
        // A later issue time written in by hand does not verify.
        let mut bumped = token.clone();
        bumped[7] = bumped[7].wrapping_add(100);
        assert_eq!(
            key.check(&bumped, epoch, peer(), SCID),
            Err(TokenError::Forged)
        );
        let other = RetryKey::generate(epoch).unwrap();
        assert_eq!(
            other.check(&token, epoch, peer(), SCID),
            Err(TokenError::Forged)
        );
        assert_eq!(
            key.check(&token[..token.len() - 1], epoch, peer(), SCID),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            key.check(&[], epoch, peer(), SCID),
            Err(TokenError::Malformed)
        );
    }
}
