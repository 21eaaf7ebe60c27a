//! TLS for the admin server (`--metrics-tls`), as controller-runtime's secure metrics offer it:
//! a certificate and key from a directory (`tls.crt`, `tls.key`: a `kubernetes.io/tls` Secret
//! mounted there, say by cert-manager), read again whenever `tls.crt` changes so a rotated
//! certificate is served without a restart; or, with no directory, a self-signed one made at
//! start (scrapers then skip verification, and the bearer token still travels encrypted).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::crypto::ring::{default_provider, sign::any_supported_type};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {0}: {1}")]
    Read(PathBuf, String),
    #[error("{0} holds no certificate")]
    NoCertificate(PathBuf),
    #[error("making a self-signed certificate: {0}")]
    SelfSigned(String),
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The acceptor for `cert_dir`'s certificate, or a self-signed one for `names`.
pub fn acceptor(cert_dir: Option<&Path>, names: Vec<String>) -> Result<TlsAcceptor, Error> {
    let resolver: Arc<dyn ResolvesServerCert> = match cert_dir {
        Some(dir) => Arc::new(Reloading::new(dir)?),
        None => Arc::new(Fixed(Arc::new(self_signed(names)?))),
    };
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn self_signed(names: Vec<String>) -> Result<CertifiedKey, Error> {
    let made =
        rcgen::generate_simple_self_signed(names).map_err(|e| Error::SelfSigned(e.to_string()))?;
    let key = PrivateKeyDer::try_from(made.signing_key.serialize_der())
        .map_err(|e| Error::SelfSigned(e.to_string()))?;
    let key = any_supported_type(&key)?;
    Ok(CertifiedKey::new(vec![made.cert.der().clone()], key))
}

/// One certificate for good (the self-signed one).
#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// The certificate and key of a directory, read again when `tls.crt` changes.
#[derive(Debug)]
struct Reloading {
    dir: PathBuf,
    current: Mutex<(Option<SystemTime>, Arc<CertifiedKey>)>,
}

impl Reloading {
    fn new(dir: &Path) -> Result<Self, Error> {
        let modified = modified(dir);
        let pair = load(dir)?;
        Ok(Reloading {
            dir: dir.to_path_buf(),
            current: Mutex::new((modified, Arc::new(pair))),
        })
    }
}

fn modified(dir: &Path) -> Option<SystemTime> {
    std::fs::metadata(dir.join("tls.crt"))
        .and_then(|m| m.modified())
        .ok()
}

fn load(dir: &Path) -> Result<CertifiedKey, Error> {
    let (crt, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    let chain = CertificateDer::pem_file_iter(&crt)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| Error::Read(crt.clone(), e.to_string()))?;
    if chain.is_empty() {
        return Err(Error::NoCertificate(crt));
    }
    let private =
        PrivateKeyDer::from_pem_file(&key).map_err(|e| Error::Read(key, e.to_string()))?;
    Ok(CertifiedKey::new(chain, any_supported_type(&private)?))
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let mut current = crate::sync::lock(&self.current);
        let now = modified(&self.dir);
        if now != current.0 {
            // A half-written pair fails to load: the old one serves until the next change.
            match load(&self.dir) {
                Ok(pair) => *current = (now, Arc::new(pair)),
                Err(e) => {
                    tracing::warn!(error = %e, "the metrics certificate changed but cannot be read; serving the previous one")
                }
            }
        }
        Some(current.1.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_certificate_is_made_and_a_missing_directory_is_named() {
        assert!(acceptor(None, vec!["localhost".into()]).is_ok());
        let missing = acceptor(Some(Path::new("/nonexistent/certs")), vec![])
            .err()
            .expect("no certificate there")
            .to_string();
        assert!(missing.contains("/nonexistent/certs/tls.crt"), "{missing}");
    }
}
