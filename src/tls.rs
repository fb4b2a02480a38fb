//! TLS material for the listeners (configured PEM files, or a self-signed certificate kept in the data
//! dir), and the client side that trusts it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no PEM private key")]
    NoKey { path: PathBuf },
    #[error("give both tls_cert and tls_key, or neither")]
    HalfConfigured,
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The certificate chain and key the listener presents, with where they came from.
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub cert_path: PathBuf,
    /// Whether this start generated the certificate (first start).
    pub generated: bool,
}

impl Identity {
    /// SHA-256 of the leaf certificate, as colon-separated hex: what devices pin.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.chain[0])
    }
}

pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let digest = Sha256::digest(cert.as_ref());
    digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// File names of the generated certificate and key inside the data directory.
pub const GENERATED_CERT: &str = "tls/device-cert.pem";
pub const GENERATED_KEY: &str = "tls/device-key.pem";

/// Loads the configured files, or the generated pair from `data_dir` (generating it on first start).
pub fn load_or_generate(
    cert: Option<&Path>,
    key: Option<&Path>,
    data_dir: &Path,
) -> Result<Identity, TlsError> {
    match (cert, key) {
        (Some(cert), Some(key)) => load(cert, key, false),
        (None, None) => {
            let cert = data_dir.join(GENERATED_CERT);
            let key = data_dir.join(GENERATED_KEY);
            if cert.exists() && key.exists() {
                load(&cert, &key, false)
            } else {
                generate(&cert, &key)?;
                load(&cert, &key, true)
            }
        }
        _ => Err(TlsError::HalfConfigured),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn load(cert_path: &Path, key_path: &Path, generated: bool) -> Result<Identity, TlsError> {
    let cert_pem = read(cert_path)?;
    let invalid = |path: &Path, e: pem::Error| TlsError::Read {
        path: path.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
    };
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(cert_path, e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_path.to_owned(),
        });
    }
    let key_pem = read(key_path)?;
    let key = match PrivateKeyDer::from_pem_slice(&key_pem) {
        Ok(key) => key,
        Err(pem::Error::NoItemsFound) => {
            return Err(TlsError::NoKey {
                path: key_path.to_owned(),
            })
        }
        Err(e) => return Err(invalid(key_path, e)),
    };
    Ok(Identity {
        chain,
        key,
        cert_path: cert_path.to_owned(),
        generated,
    })
}

/// An ECDSA P-256 certificate for `localhost`, 127.0.0.1 and this host's name, valid ten years;
/// devices pin its fingerprint.
fn generate(cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
    let mut names = vec!["localhost".to_string()];
    if let Ok(host) = fs::read_to_string("/etc/hostname") {
        let host = host.trim();
        if !host.is_empty() && host != "localhost" {
            names.push(host.to_string());
        }
    }
    let mut params = rcgen::CertificateParams::new(names)?;
    // Devices connecting by address rather than name.
    params.subject_alt_names.push(rcgen::SanType::IpAddress(
        std::net::Ipv4Addr::LOCALHOST.into(),
    ));
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, "mobile-admin device port");
    params.distinguished_name = dn;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(3650);
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    let write = |path: &Path, contents: String, private: bool| -> Result<(), TlsError> {
        let err = |source| TlsError::Write {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(err)?;
        }
        // Write then rename, so a crash never leaves a half-written certificate that the next start trusts.
        let tmp = path.with_extension("tmp");
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let _ = private;
        let mut file = options.open(&tmp).map_err(err)?;
        io::Write::write_all(&mut file, contents.as_bytes()).map_err(err)?;
        file.sync_all().map_err(err)?;
        fs::rename(&tmp, path).map_err(err)
    };
    write(key_path, key.serialize_pem(), true)?;
    write(cert_path, cert.pem(), false)?;
    Ok(())
}

/// The rustls configuration for devices: TLS 1.2 and 1.3, HTTP/1.1, session resumption by id and ticket.
pub fn server_config(identity: &Identity) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Devices reconnect for every session; resumption saves the expensive part of the handshake.
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(64 * 1024);
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    Ok(Arc::new(config))
}

/// A client configuration (TLS 1.2 and 1.3) that trusts the certificates of the PEM file `ca`: the
/// server's own generated certificate, or the CA that signed its configured one.
pub fn client_config(ca: &Path) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    let invalid = |e: pem::Error| TlsError::Read {
        path: ca.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
    };
    for cert in CertificateDer::pem_file_iter(ca).map_err(invalid)? {
        roots.add(cert.map_err(invalid)?)?;
    }
    if roots.is_empty() {
        return Err(TlsError::NoCertificate {
            path: ca.to_path_buf(),
        });
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_then_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_generate(None, None, dir.path()).unwrap();
        assert!(first.generated);
        let again = load_or_generate(None, None, dir.path()).unwrap();
        assert!(!again.generated);
        assert_eq!(first.fingerprint(), again.fingerprint());
        assert_eq!(first.fingerprint().len(), 32 * 3 - 1);
        server_config(&again).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(GENERATED_KEY))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "key must not be readable by others");
        }
    }

    #[test]
    fn half_configured_and_garbage_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        fs::write(&junk, "not pem").unwrap();
        assert!(matches!(
            load_or_generate(Some(&junk), None, dir.path()),
            Err(TlsError::HalfConfigured)
        ));
        assert!(matches!(
            load_or_generate(Some(&junk), Some(&junk), dir.path()),
            Err(TlsError::NoCertificate { .. })
        ));
    }
}
