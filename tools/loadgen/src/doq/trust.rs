//! Whom the DoQ mode believes: the server's certificate must chain to the
//! CA certificates in `--ca FILE` (PEM), or, with `--insecure`, any
//! certificate at all (benches against a self-signed one, as dnsperf
//! checks none). Either way the handshake itself is real TLS 1.3 with ALPN
//! `doq` (RFC 9250 4.1.1), and the server still proves it holds the key of
//! the certificate it shows.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Where trust comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Trust {
    /// CA certificates, PEM.
    Ca(PathBuf),
    /// Any certificate (`--insecure`).
    Insecure,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("--ca {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--ca {}: {source}", path.display())]
    Pem {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("--ca {}: no certificate in it", path.display())]
    Empty { path: PathBuf },
    #[error("--ca {}: {source}", path.display())]
    Certificate {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("TLS 1.3: {0}")]
    Tls(#[from] rustls::Error),
    #[error("QUIC's TLS: {0}")]
    Quic(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
}

/// The QUIC client config for `trust`: TLS 1.3 only (QUIC has no other),
/// ALPN `doq`, no client certificate.
pub(crate) fn client_config(trust: &Trust) -> Result<quinn::ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let mut tls = match trust {
        Trust::Ca(path) => builder
            .with_root_certificates(roots(path)?)
            .with_no_client_auth(),
        Trust::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
    };
    tls.alpn_protocols = vec![b"doq".to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    Ok(quinn::ClientConfig::new(Arc::new(quic)))
}

/// Every certificate in the PEM file at `path`.
fn roots(path: &Path) -> Result<rustls::RootCertStore, Error> {
    let pem = std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|source| Error::Pem {
            path: path.to_owned(),
            source,
        })?;
        roots.add(cert).map_err(|source| Error::Certificate {
            path: path.to_owned(),
            source,
        })?;
    }
    if roots.is_empty() {
        return Err(Error::Empty {
            path: path.to_owned(),
        });
    }
    Ok(roots)
}

/// `--insecure`: takes whatever certificate the server shows, but checks
/// the handshake's signatures with it as usual.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        assert!(matches!(
            client_config(&Trust::Ca(path.clone())),
            Err(Error::Read { .. })
        ));
        std::fs::write(&path, "not a certificate\n").unwrap();
        let e = client_config(&Trust::Ca(path.clone())).unwrap_err();
        assert!(matches!(e, Error::Empty { .. }), "{e}");
        assert!(e.to_string().contains("ca.pem"), "{e}");
        assert!(client_config(&Trust::Insecure).is_ok());
    }
}
