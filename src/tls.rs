//! Certificates: a fresh self-signed one for the default run, or PEM files for deployments.
//!
//! quiche loads certificates from files, so a generated certificate is written to a private
//! temporary directory, loaded, and the directory removed.

use std::path::{Path, PathBuf};

/// PEM certificate and key files, and the certificate's SHA-256 fingerprint.
pub struct Identity {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub fingerprint: String,
    /// Removed on drop when the files were generated.
    temp_dir: Option<PathBuf>,
}

impl Drop for Identity {
    fn drop(&mut self) {
        if let Some(dir) = &self.temp_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("generating certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}: no certificate found in PEM file")]
    NoCertificate(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The names a generated certificate carries by default.
pub const DEFAULT_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// How long a generated certificate is valid: browsers pin a certificate by its hash
/// (WebTransport `serverCertificateHashes`) only when it is valid for 14 days at most.
pub const GENERATED_VALIDITY: std::time::Duration = std::time::Duration::from_secs(14 * 86_400);

/// Generates a self-signed certificate for `localhost` and the loopback addresses.
pub fn self_signed() -> Result<Identity, TlsError> {
    let names: Vec<String> = DEFAULT_NAMES.iter().map(|n| n.to_string()).collect();
    generate(&names)
}

/// Generates a self-signed ECDSA P-256 certificate for `names` (host names or IP
/// addresses), valid from a minute ago for [`GENERATED_VALIDITY`].
pub fn generate(names: &[String]) -> Result<Identity, TlsError> {
    let mut params = rcgen::CertificateParams::new(names.to_vec())?;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(1);
    params.not_after = params.not_before + GENERATED_VALIDITY;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert = params.self_signed(&key)?;
    let certified = rcgen::CertifiedKey {
        cert,
        signing_key: key,
    };
    let dir = std::env::temp_dir().join(format!("moqring-{}-{}", std::process::id(), nonce()));
    create_private_dir(&dir)?;
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).map_err(io_err(&cert))?;
    std::fs::write(&key, certified.signing_key.serialize_pem()).map_err(io_err(&key))?;
    Ok(Identity {
        fingerprint: fingerprint(certified.cert.der()),
        cert,
        key,
        temp_dir: Some(dir),
    })
}

/// Uses existing PEM files; the fingerprint is of the first certificate in the chain.
pub fn from_files(cert: &Path, key: &Path) -> Result<Identity, TlsError> {
    let pem = std::fs::read_to_string(cert).map_err(io_err(cert))?;
    std::fs::metadata(key).map_err(io_err(key))?;
    let der = first_certificate(&pem)
        .ok_or_else(|| TlsError::NoCertificate(cert.display().to_string()))?;
    Ok(Identity {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        fingerprint: fingerprint(&der),
        temp_dir: None,
    })
}

/// The fingerprint of the certificate in use, shared by the threads that show it (the
/// HTTP side door) and the one that replaces it (a SIGHUP reload).
#[derive(Debug, Clone, Default)]
pub struct SharedFingerprint(std::sync::Arc<std::sync::Mutex<String>>);

impl SharedFingerprint {
    pub fn get(&self) -> String {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set(&self, fingerprint: &str) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = fingerprint.to_string();
    }
}

impl From<&str> for SharedFingerprint {
    fn from(fingerprint: &str) -> Self {
        let shared = Self::default();
        shared.set(fingerprint);
        shared
    }
}

/// Lowercase hex SHA-256 of a DER certificate.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Normalises a user-given fingerprint ("AB:cd:..." -> "abcd...").
pub fn normalize_fingerprint(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_hexdigit())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn first_certificate(pem: &str) -> Option<Vec<u8>> {
    let parsed = pem::parse_many(pem).ok()?;
    parsed
        .into_iter()
        .find(|p| p.tag() == "CERTIFICATE")
        .map(|p| p.into_contents())
}

fn nonce() -> u64 {
    let mut b = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    u64::from_le_bytes(b)
}

fn create_private_dir(dir: &Path) -> Result<(), TlsError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(io_err(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_identity_matches_its_files() {
        let id = self_signed().unwrap();
        let again = from_files(&id.cert, &id.key).unwrap();
        assert_eq!(id.fingerprint, again.fingerprint);
        assert_eq!(id.fingerprint.len(), 64);
        let dir = id.cert.parent().unwrap().to_path_buf();
        drop(again);
        drop(id);
        assert!(!dir.exists(), "temporary certificate directory removed");
    }

    #[test]
    fn generated_certificates_are_ecdsa_p256_for_14_days_with_the_names_asked_for() {
        let names = vec!["relay.example".to_string(), "10.1.2.3".to_string()];
        let id = generate(&names).unwrap();
        let pem = std::fs::read_to_string(&id.cert).unwrap();
        let der = first_certificate(&pem).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let validity = cert.validity();
        let seconds = validity.not_after.timestamp() - validity.not_before.timestamp();
        assert_eq!(seconds, 14 * 86_400);
        assert!(validity.is_valid(), "valid now");
        assert_eq!(
            cert.public_key().algorithm.algorithm,
            x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY
        );
        let curve = cert.public_key().algorithm.parameters.as_ref().unwrap();
        assert_eq!(
            curve.as_oid().unwrap(),
            x509_parser::oid_registry::OID_EC_P256
        );
        let san = cert.subject_alternative_name().unwrap().unwrap();
        let got: Vec<String> = san
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(
            got,
            vec!["DNSName(relay.example)", "IPAddress(0a:01:02:03)"]
        );
    }

    #[test]
    fn fingerprints_normalise() {
        assert_eq!(normalize_fingerprint("AB:cd:01"), "abcd01");
    }
}
