//! TLS client configuration: which CAs a registry is verified against.
//!
//! A registry's certificate is accepted when it chains to the system trust
//! store, to a `*.crt` in `<certs dir>/<host[:port]>/` (the docker and
//! containers conventions, where the MCO puts `additionalTrustedCA`), or to a
//! PEM in the config's `pull.ca_dir`. `insecure_skip_tls_verify` (only when
//! configured) accepts any certificate, still over TLS 1.2+.
//!
//! The system store is read from the distributions' PEM bundles rather than
//! through `rustls-native-certs`: one file read, no extra crate.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::ring::{cipher_suite, kx_group};
use rustls::crypto::{
    CryptoProvider, GetRandomFailed, KeyProvider, SecureRandom, WebPkiSupportedAlgorithms,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::SigningKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use webpki::ring as alg;

/// PEM bundles of the system trust store: RHEL/RHCOS first, then Debian,
/// SUSE, Alpine. The first one that exists is used.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// Where certificates come from; one `ClientConfig` per registry host is
/// built lazily and cached.
#[derive(Debug)]
pub struct TlsSettings {
    pub certs_dirs: Vec<PathBuf>,
    pub extra_ca_dir: Option<PathBuf>,
    /// Overrides the system bundle list (tests; `SSL_CERT_FILE` is honoured too).
    pub system_bundle: Option<PathBuf>,
    system: Option<Vec<CertificateDer<'static>>>,
    configs: HashMap<(String, bool), Arc<ClientConfig>>,
}

impl TlsSettings {
    pub fn new(certs_dirs: Vec<PathBuf>, extra_ca_dir: Option<PathBuf>) -> Self {
        TlsSettings {
            certs_dirs,
            extra_ca_dir,
            system_bundle: std::env::var_os("SSL_CERT_FILE").map(PathBuf::from),
            system: None,
            configs: HashMap::new(),
        }
    }

    /// The client config for `authority` (`host[:port]`, as in certs.d).
    pub fn config_for(&mut self, authority: &str, skip_verify: bool) -> Arc<ClientConfig> {
        let key = (authority.to_string(), skip_verify);
        if let Some(c) = self.configs.get(&key) {
            return c.clone();
        }
        let provider = Arc::new(crypto_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .unwrap_or_else(|_| {
                // The ring provider supports both versions; this cannot fail.
                unreachable!("ring supports TLS 1.2 and 1.3")
            });
        let config = if skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
                .with_no_client_auth()
        } else {
            let mut roots = RootCertStore::empty();
            roots.add_parsable_certificates(self.system_roots().iter().cloned());
            for dir in self.ca_dirs(authority) {
                roots.add_parsable_certificates(certs_in_dir(&dir));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        let config = Arc::new(config);
        self.configs.insert(key, config.clone());
        config
    }

    /// The directories whose `*.crt` are trusted for `authority`, in the
    /// order a message should suggest them.
    pub fn ca_dirs(&self, authority: &str) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self.certs_dirs.iter().map(|d| d.join(authority)).collect();
        dirs.extend(self.extra_ca_dir.clone());
        dirs
    }

    fn system_roots(&mut self) -> &[CertificateDer<'static>] {
        if self.system.is_none() {
            let candidates: Vec<PathBuf> = match &self.system_bundle {
                Some(p) => vec![p.clone()],
                None => SYSTEM_BUNDLES.iter().map(PathBuf::from).collect(),
            };
            let certs = candidates
                .iter()
                .find(|p| p.is_file())
                .map(|p| pem_certs(p))
                .unwrap_or_default();
            self.system = Some(certs);
        }
        self.system.as_deref().unwrap_or_default()
    }
}

/// Every certificate in the PEM files of `dir` ending in `.crt` or `.pem`
/// (unreadable or missing directories give none: they are optional).
fn certs_in_dir(dir: &Path) -> Vec<CertificateDer<'static>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "crt" || e == "pem"))
        .collect();
    files.sort();
    files.iter().flat_map(|f| pem_certs(f)).collect()
}

fn pem_certs(path: &Path) -> Vec<CertificateDer<'static>> {
    match CertificateDer::pem_file_iter(path) {
        Ok(iter) => iter.filter_map(Result::ok).collect(),
        Err(_) => Vec::new(),
    }
}

/// `host` for SNI and verification, from `host[:port]` or `[v6]:port`.
pub fn server_name(host: &str) -> Option<ServerName<'static>> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_string()).ok()
}

/// ring, with what a registry client needs: AES-GCM suites only (every
/// node CPU has AES instructions; leaving out ChaCha20-Poly1305 saves ~50 KB
/// of ring's assembly) and no private-key loading (no client certificates;
/// saves ring's signing code). Verification keeps every algorithm rustls'
/// own ring provider accepts, so no certificate chain is refused for size.
fn crypto_provider() -> CryptoProvider {
    CryptoProvider {
        cipher_suites: vec![
            cipher_suite::TLS13_AES_128_GCM_SHA256,
            cipher_suite::TLS13_AES_256_GCM_SHA384,
            cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        ],
        kx_groups: vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1],
        signature_verification_algorithms: SIGNATURE_ALGORITHMS,
        secure_random: &SystemRandom,
        key_provider: &NoPrivateKeys,
    }
}

/// The same table as rustls' ring provider (not exported by rustls).
static SIGNATURE_ALGORITHMS: WebPkiSupportedAlgorithms = WebPkiSupportedAlgorithms {
    all: &[
        alg::ECDSA_P256_SHA256,
        alg::ECDSA_P256_SHA384,
        alg::ECDSA_P384_SHA256,
        alg::ECDSA_P384_SHA384,
        alg::ED25519,
        alg::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
        alg::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
        alg::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
        alg::RSA_PKCS1_2048_8192_SHA256,
        alg::RSA_PKCS1_2048_8192_SHA384,
        alg::RSA_PKCS1_2048_8192_SHA512,
        alg::RSA_PKCS1_2048_8192_SHA256_ABSENT_PARAMS,
        alg::RSA_PKCS1_2048_8192_SHA384_ABSENT_PARAMS,
        alg::RSA_PKCS1_2048_8192_SHA512_ABSENT_PARAMS,
    ],
    mapping: &[
        (
            SignatureScheme::ECDSA_NISTP384_SHA384,
            &[alg::ECDSA_P384_SHA384, alg::ECDSA_P256_SHA384],
        ),
        (
            SignatureScheme::ECDSA_NISTP256_SHA256,
            &[alg::ECDSA_P256_SHA256, alg::ECDSA_P384_SHA256],
        ),
        (SignatureScheme::ED25519, &[alg::ED25519]),
        (
            SignatureScheme::RSA_PSS_SHA512,
            &[alg::RSA_PSS_2048_8192_SHA512_LEGACY_KEY],
        ),
        (
            SignatureScheme::RSA_PSS_SHA384,
            &[alg::RSA_PSS_2048_8192_SHA384_LEGACY_KEY],
        ),
        (
            SignatureScheme::RSA_PSS_SHA256,
            &[alg::RSA_PSS_2048_8192_SHA256_LEGACY_KEY],
        ),
        (
            SignatureScheme::RSA_PKCS1_SHA512,
            &[alg::RSA_PKCS1_2048_8192_SHA512],
        ),
        (
            SignatureScheme::RSA_PKCS1_SHA384,
            &[alg::RSA_PKCS1_2048_8192_SHA384],
        ),
        (
            SignatureScheme::RSA_PKCS1_SHA256,
            &[alg::RSA_PKCS1_2048_8192_SHA256],
        ),
    ],
};

#[derive(Debug)]
struct SystemRandom;

impl SecureRandom for SystemRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), GetRandomFailed> {
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), buf)
            .map_err(|_| GetRandomFailed)
    }
}

/// The agent presents no client certificate, so it never loads a key.
#[derive(Debug)]
struct NoPrivateKeys;

impl KeyProvider for NoPrivateKeys {
    fn load_private_key(
        &self,
        _key_der: PrivateKeyDer<'static>,
    ) -> Result<Arc<dyn SigningKey>, rustls::Error> {
        Err(rustls::Error::General(
            "client certificates are not supported".into(),
        ))
    }
}

/// Accepts every certificate: only for `insecure_skip_tls_verify`.
/// Handshake signatures are still checked, so the peer holds the key of the
/// certificate it sent.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
