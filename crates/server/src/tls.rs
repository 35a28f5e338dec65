//! TLS on the HTTP and terminal listeners, with rustls.
//!
//! The certificate and key are read from PEM files at start, and again on
//! SIGHUP ([`Certificates::reload`]): a handshake picks the pair in force
//! when it starts, so a renewed certificate is served to new connections at
//! once while the open ones go on with the one they began with.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, ServerConfig};

/// The protocol name the terminal listener answers to by ALPN.
pub const TERMINAL_ALPN: &[u8] = b"confab-terminal";

/// How long a client has to finish its TLS handshake.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the certificate chain and its private key are (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The certificate in force, swapped whole on reload.
#[derive(Debug)]
pub struct Certificates {
    files: parking_lot::Mutex<TlsFiles>,
    current: parking_lot::RwLock<Arc<CertifiedKey>>,
}

impl Certificates {
    /// Reads the pair named by `files`.
    ///
    /// # Errors
    ///
    /// A file that cannot be read, holds no certificate or key, or a key
    /// that does not belong to the certificate; the message names the file.
    pub fn load(files: TlsFiles) -> Result<Arc<Certificates>, String> {
        let key = certified_key(&files)?;
        Ok(Arc::new(Certificates {
            files: parking_lot::Mutex::new(files),
            current: parking_lot::RwLock::new(Arc::new(key)),
        }))
    }

    /// Reads the files again (those of `files` when given: the
    /// configuration may have moved them) and puts the pair in force.
    /// Open connections keep the certificate they were served.
    ///
    /// Returns whether the certificate changed.
    ///
    /// # Errors
    ///
    /// As [`Certificates::load`]; the pair in force is then kept.
    pub fn reload(&self, files: Option<TlsFiles>) -> Result<bool, String> {
        let files = files.unwrap_or_else(|| self.files.lock().clone());
        let key = certified_key(&files)?;
        let changed = self.current.read().cert != key.cert;
        *self.current.write() = Arc::new(key);
        *self.files.lock() = files;
        Ok(changed)
    }

    /// The files the certificate is read from.
    pub fn files(&self) -> TlsFiles {
        self.files.lock().clone()
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.current.read()))
    }
}

/// The cryptography: *ring*'s. rustls now marks it as lacking the
/// post-quantum key exchange that its aws-lc-rs provider has; that one
/// needs a large C library built with every build, and the classical
/// exchanges (X25519, P-256, P-384) are what clients and proxies offer
/// today besides.
#[allow(deprecated, reason = "ring: see above")]
pub fn provider() -> CryptoProvider {
    tokio_rustls::rustls::crypto::ring::default_provider()
}

/// Reads and checks a certificate chain and its key.
fn certified_key(files: &TlsFiles) -> Result<CertifiedKey, String> {
    let chain = read_pem(&files.cert, "--tls-cert", |bytes| {
        CertificateDer::pem_slice_iter(bytes).collect::<Result<Vec<_>, _>>()
    })?;
    if chain.is_empty() {
        return Err(format!(
            "--tls-cert {}: no certificate in it (expected PEM, -----BEGIN CERTIFICATE-----)",
            files.cert.display()
        ));
    }
    let key = read_pem(&files.key, "--tls-key", PrivateKeyDer::from_pem_slice)?;
    let key = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| {
        format!(
            "--tls-key {} does not go with --tls-cert {}: {e}",
            files.key.display(),
            files.cert.display()
        )
    })?;
    Ok(key)
}

fn read_pem<T>(
    path: &Path,
    flag: &str,
    parse: impl FnOnce(&[u8]) -> Result<T, rustls::pki_types::pem::Error>,
) -> Result<T, String> {
    let bytes = std::fs::read(path).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
            std::io::ErrorKind::NotFound => "no such file".to_owned(),
            _ => e.to_string(),
        };
        format!("{flag} {}: {why}", path.display())
    })?;
    parse(&bytes).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            format!("{flag} {}: nothing of the expected kind in it (PEM)", path.display())
        }
        e => format!("{flag} {}: not valid PEM: {e}", path.display()),
    })
}

/// What the listeners need to speak TLS.
#[derive(Clone)]
pub(crate) struct Tls {
    acceptor: TlsAcceptor,
}

impl Tls {
    /// For the HTTP listener: ALPN `http/1.1` (the WebSocket upgrade needs
    /// it, and the server speaks no HTTP/2).
    pub fn http(certificates: Arc<Certificates>) -> Tls {
        Tls::with_alpn(certificates, vec![b"http/1.1".to_vec()])
    }

    /// For the terminal listener: a client that names no protocol (as
    /// `openssl s_client` and `socat` do) is served; one that asks by ALPN
    /// for another protocol (a browser's `http/1.1`) is refused rather
    /// than talked to in this one (a cross-protocol attack), since rustls
    /// refuses a client whose list has none of the server's.
    pub fn terminal(certificates: Arc<Certificates>) -> Tls {
        Tls::with_alpn(certificates, vec![TERMINAL_ALPN.to_vec()])
    }

    fn with_alpn(certificates: Arc<Certificates>, alpn: Vec<Vec<u8>>) -> Tls {
        let mut config = ServerConfig::builder_with_provider(Arc::new(provider()))
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default versions")
            .with_no_client_auth()
            .with_cert_resolver(certificates);
        config.alpn_protocols = alpn;
        Tls { acceptor: TlsAcceptor::from(Arc::new(config)) }
    }

    /// The server's side of a handshake on an accepted socket, within
    /// [`HANDSHAKE_TIMEOUT`]. `None` if the client did not finish it (it
    /// is logged at debug: port scanners and plain-text clients do this).
    pub async fn accept(
        &self,
        tcp: TcpStream,
    ) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(tcp)).await {
            Ok(Ok(stream)) => Some(stream),
            Ok(Err(e)) => {
                tracing::debug!("tls handshake failed: {e}");
                None
            }
            Err(_) => {
                tracing::debug!("tls handshake not finished in {HANDSHAKE_TIMEOUT:?}");
                None
            }
        }
    }
}

/// Where Linux distributions keep the system's CA bundle.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// A TLS client that trusts the certificates of `ca` (a PEM file), or the
/// system's CA bundle.
///
/// # Errors
///
/// No bundle, or one that cannot be read, in words.
pub fn client_config(ca: Option<&Path>) -> Result<tokio_rustls::rustls::ClientConfig, String> {
    let bundle = match ca {
        Some(path) => path.to_owned(),
        None => SYSTEM_BUNDLES
            .iter()
            .map(PathBuf::from)
            .find(|path| path.is_file())
            .ok_or("no system CA bundle found; give --ca FILE (or --insecure)")?,
    };
    let pem = std::fs::read(&bundle).map_err(|e| format!("--ca {}: {e}", bundle.display()))?;
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("--ca {}: {e}", bundle.display()))?;
        roots.add(cert).map_err(|e| format!("--ca {}: {e}", bundle.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("--ca {}: no certificate in it", bundle.display()));
    }
    Ok(tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
