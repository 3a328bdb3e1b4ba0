//! Verifying keys: JWK files as `moq-token generate` writes them (JSON, or that JSON
//! base64url-encoded), one key or a directory of keys by `kid`, and checking a token's
//! signature with them (the crypto is `jsonwebtoken`'s, on ring). Files are read only when
//! the relay starts; verifying does no I/O.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::claims::{Claims, Scope};
use super::Refusal;

/// moq-token refuses shorter HMAC secrets; so do we.
const MIN_SECRET_BYTES: usize = 32;
/// Longest `kid` moq-token accepts.
const MAX_KID_LEN: usize = 128;

/// One verifying key: its algorithm, public part (or HMAC secret) and optional scope.
pub struct Key {
    algorithm: Algorithm,
    decoding: DecodingKey,
    scope: Option<Scope>,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("algorithm", &self.algorithm)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// The JWK fields we read; private parts (`d`, `p`, ...) and others are ignored.
#[derive(Deserialize)]
struct Jwk {
    kty: Option<String>,
    alg: String,
    key_ops: Option<Vec<String>>,
    crv: Option<String>,
    k: Option<String>,
    x: Option<String>,
    y: Option<String>,
    n: Option<String>,
    e: Option<String>,
    scope: Option<Scope>,
}

fn base64url(field: &str, value: Option<&str>) -> Result<Vec<u8>, String> {
    let value = value.ok_or_else(|| format!("missing \"{field}\""))?;
    URL_SAFE_NO_PAD
        .decode(value)
        .or_else(|_| URL_SAFE.decode(value))
        .map_err(|_| format!("\"{field}\" is not base64url"))
}

impl Key {
    /// Parses a JWK, as JSON or as base64url-encoded JSON.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let json = if text.starts_with('{') {
            text.as_bytes().to_vec()
        } else {
            URL_SAFE_NO_PAD
                .decode(text)
                .or_else(|_| URL_SAFE.decode(text))
                .map_err(|_| "neither JSON nor base64url-encoded JSON".to_string())?
        };
        let jwk: Jwk = serde_json::from_slice(&json).map_err(|e| format!("not a JWK: {e}"))?;
        Self::from_jwk(jwk)
    }

    fn from_jwk(jwk: Jwk) -> Result<Self, String> {
        use Algorithm::*;
        let algorithm = match jwk.alg.as_str() {
            "HS256" => HS256,
            "HS384" => HS384,
            "HS512" => HS512,
            "ES256" => ES256,
            "ES384" => ES384,
            "RS256" => RS256,
            "RS384" => RS384,
            "RS512" => RS512,
            "PS256" => PS256,
            "PS384" => PS384,
            "PS512" => PS512,
            "EdDSA" => EdDSA,
            other => return Err(format!("unsupported algorithm \"{other}\"")),
        };
        if let Some(ops) = &jwk.key_ops {
            if !ops.iter().any(|op| op == "verify") {
                return Err("key_ops does not allow \"verify\"".into());
            }
        }
        if let Some(scope) = &jwk.scope {
            if scope.put.is_empty() && scope.get.is_empty() {
                return Err("scope grants nothing".into());
            }
        }
        // moq-token writes `oct` keys without `kty`.
        let kty = jwk.kty.as_deref().unwrap_or("oct");
        let expect = |want: &str| {
            if kty == want {
                Ok(())
            } else {
                Err(format!("{} needs kty \"{want}\", not \"{kty}\"", jwk.alg))
            }
        };
        let curve = |want: &str| {
            if jwk.crv.as_deref() == Some(want) {
                Ok(())
            } else {
                Err(format!("{} needs crv \"{want}\"", jwk.alg))
            }
        };
        let decoding = match algorithm {
            HS256 | HS384 | HS512 => {
                expect("oct")?;
                let secret = base64url("k", jwk.k.as_deref())?;
                if secret.len() < MIN_SECRET_BYTES {
                    return Err(format!("secret shorter than {MIN_SECRET_BYTES} bytes"));
                }
                DecodingKey::from_secret(&secret)
            }
            ES256 | ES384 => {
                expect("EC")?;
                let (crv, len) = if algorithm == ES256 {
                    ("P-256", 32)
                } else {
                    ("P-384", 48)
                };
                curve(crv)?;
                let x = base64url("x", jwk.x.as_deref())?;
                let y = base64url("y", jwk.y.as_deref())?;
                if x.len() != len || y.len() != len {
                    return Err(format!("x and y of a {crv} key are {len} bytes each"));
                }
                // The uncompressed point, as ring verifies it.
                let mut point = Vec::with_capacity(1 + 2 * len);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                DecodingKey::from_ec_der(&point)
            }
            RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => {
                expect("RSA")?;
                let n = base64url("n", jwk.n.as_deref())?;
                let e = base64url("e", jwk.e.as_deref())?;
                DecodingKey::from_rsa_raw_components(&n, &e)
            }
            EdDSA => {
                expect("OKP")?;
                curve("Ed25519")?;
                let x = base64url("x", jwk.x.as_deref())?;
                if x.len() != 32 {
                    return Err("x of an Ed25519 key is 32 bytes".into());
                }
                DecodingKey::from_ed_der(&x)
            }
        };
        Ok(Self {
            algorithm,
            decoding,
            scope: jwk.scope,
        })
    }

    /// Checks the token's signature and returns its claims; refuses a token that grants
    /// nothing or more than the key's scope. `exp` is left to the caller (it has the clock).
    pub fn verify(&self, token: &str, header_alg: Algorithm) -> Result<Claims, Refusal> {
        if header_alg != self.algorithm {
            return Err(Refusal::WrongAlgorithm);
        }
        let mut validation = Validation::new(self.algorithm);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map_err(
            |e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => Refusal::BadSignature,
                _ => Refusal::Malformed,
            },
        )?;
        let claims = data.claims;
        if !claims.grants_something() {
            return Err(Refusal::GrantsNothing);
        }
        if self.scope.as_ref().is_some_and(|s| !s.allows(&claims)) {
            return Err(Refusal::OutsideKeyScope);
        }
        Ok(claims)
    }
}

/// The keys tokens are checked with.
#[derive(Debug)]
pub enum Keys {
    /// `--auth-key`: one key; a token's `kid` is not needed.
    One(Key),
    /// `--auth-key-dir`: `DIR/KID.jwk` verifies tokens whose header names `kid` KID.
    ByKid(HashMap<String, Key>),
}

/// Whether `kid` is one moq-token accepts (and so a safe file name).
fn valid_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= MAX_KID_LEN
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn read_key(path: &Path) -> Result<Key, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("reading key {}: {e}", path.display()))?;
    Key::parse(&text).map_err(|e| format!("key {}: {e}", path.display()))
}

impl Keys {
    /// Reads one key file (at start; the error names the file).
    pub fn from_file(path: &Path) -> Result<Self, String> {
        read_key(path).map(Self::One)
    }

    /// Reads every `KID.jwk` file of a directory (at start; the error names the file).
    pub fn from_dir(dir: &Path) -> Result<Self, String> {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| format!("reading key directory {}: {e}", dir.display()))?;
        let mut keys = HashMap::new();
        for entry in entries {
            let path = entry
                .map_err(|e| format!("reading key directory {}: {e}", dir.display()))?
                .path();
            if path.extension().and_then(|e| e.to_str()) != Some("jwk") {
                continue;
            }
            let Some(kid) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            if !valid_kid(kid) {
                return Err(format!(
                    "key {}: the file name is not a key id (letters, digits, - and _)",
                    path.display()
                ));
            }
            keys.insert(kid.to_string(), read_key(&path)?);
        }
        if keys.is_empty() {
            return Err(format!("key directory {}: no .jwk files", dir.display()));
        }
        Ok(Self::ByKid(keys))
    }

    pub fn len(&self) -> usize {
        match self {
            Self::One(_) => 1,
            Self::ByKid(keys) => keys.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Picks the token's key by its header and verifies it.
    pub fn verify(&self, token: &str) -> Result<Claims, Refusal> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Refusal::Malformed)?;
        let key = match self {
            Self::One(key) => key,
            Self::ByKid(keys) => {
                let kid = header.kid.as_deref().ok_or(Refusal::MissingKeyId)?;
                if !valid_kid(kid) {
                    return Err(Refusal::UnknownKey);
                }
                keys.get(kid).ok_or(Refusal::UnknownKey)?
            }
        };
        key.verify(token, header.alg)
    }
}
