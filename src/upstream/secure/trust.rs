//! Which server certificates DoT and DoH upstreams are trusted with, and
//! why one was refused, in words a client may read.
//!
//! ```text
//!  server's certificate ─► WebPKI: a chain to the Mozilla roots or to ca_file? ─► trusted
//!                              └ refused: "a CA certificate" or "unknown issuer",
//!                                and it is, byte for byte, one of ca_file's (a pin)
//!                                ─► valid for the server name? ─► trusted
//! ```
//!
//! Why the pin: `openssl req -x509`, the way most home labs and many private
//! resolvers make a certificate, marks it CA:TRUE, and WebPKI refuses a CA
//! certificate as a server's own (`CaUsedAsEndEntity`) even when `ca_file`
//! holds it. kdig, unbound and Go's crypto/tls accept a certificate the
//! operator put in the trust file; so do we, as long as it is the very
//! certificate (not one it signed, not one with the same name), it is for
//! the server name asked for, and it is within its validity period. The
//! handshake's signature is checked the usual way, with the pin's key, so
//! the server must hold its private key.
//!
//! The validity period of a pin is not checked here but by WebPKI itself:
//! it checks a certificate's own dates before its basic constraints and
//! before it looks for an issuer (rustls-webpki's
//! `check_issuer_independent_properties`), so when its only objection is
//! one of the two a pin answers, the dates were fine. An expired or
//! not-yet-valid pin is refused as such; the tests below hold that on
//! every upgrade of rustls-webpki. The extended key usage of a CA:TRUE pin
//! is not checked (WebPKI stops at the CA flag); for an end-entity pin it is.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WebPkiServerVerifier, verify_server_name};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// WebPKI, plus the certificates of `ca_file` as pins.
#[derive(Debug)]
pub(super) struct Verifier {
    webpki: Arc<WebPkiServerVerifier>,
    /// Every certificate of `ca_file` that is also in the root store.
    pins: Vec<CertificateDer<'static>>,
}

impl Verifier {
    /// Trusts `roots` (which hold `pins` too) the WebPKI way, and `pins`
    /// as they are.
    pub(super) fn new(
        roots: Arc<RootCertStore>,
        pins: Vec<CertificateDer<'static>>,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, String> {
        let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self { webpki, pins })
    }
}

/// True for WebPKI's refusals that a pin answers: the certificate is a CA
/// (a self-signed CA:TRUE certificate), or no trust anchor issued it (a
/// pinned leaf whose CA is not in `ca_file`). Any other refusal (expired,
/// malformed, wrong purpose) stands, pin or not.
fn pin_answers(error: &rustls::Error) -> bool {
    match error {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => true,
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => is_ca(other),
        _ => false,
    }
}

/// Whether WebPKI's error inside `other` is `CaUsedAsEndEntity`.
fn is_ca(other: &rustls::OtherError) -> bool {
    matches!(
        other.0.downcast_ref::<webpki::Error>(),
        Some(webpki::Error::CaUsedAsEndEntity)
    )
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let refused = match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(verified) => return Ok(verified),
            Err(e) => e,
        };
        if !pin_answers(&refused) || !self.pins.iter().any(|pin| pin == end_entity) {
            return Err(refused);
        }
        // A pin, within its dates (see the module docs): is it for this name?
        verify_server_name(&ParsedCertificate::try_from(end_entity)?, server_name)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// Why a certificate was refused, in a few fixed words: they go to the log
/// and, as the EDE text, to clients, so they name no server and no address.
pub(super) fn refusal(error: &rustls::Error) -> Option<&'static str> {
    use CertificateError as C;
    let rustls::Error::InvalidCertificate(e) = error else {
        return None;
    };
    Some(match e {
        C::Other(other) if is_ca(other) => {
            "certificate rejected: CA certificate used as a server certificate"
        }
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            "certificate rejected: not valid for the server name"
        }
        C::UnknownIssuer => "certificate rejected: unknown issuer",
        C::Expired | C::ExpiredContext { .. } => "certificate rejected: expired",
        C::NotValidYet | C::NotValidYetContext { .. } => "certificate rejected: not valid yet",
        C::Revoked => "certificate rejected: revoked",
        C::BadEncoding => "certificate rejected: malformed",
        C::BadSignature => "certificate rejected: bad signature",
        // The unit variant is deprecated but still made from older webpki errors.
        #[allow(deprecated)]
        C::UnsupportedSignatureAlgorithm
        | C::UnsupportedSignatureAlgorithmContext { .. }
        | C::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
            "certificate rejected: unsupported signature algorithm"
        }
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
            "certificate rejected: not for use by a server"
        }
        _ => "certificate rejected",
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, date_time_ymd,
    };

    use super::*;

    /// A self-signed certificate for `name`, CA:TRUE as `openssl req -x509`
    /// makes it, valid in `year` only.
    fn self_signed_ca(name: &str, year: i32) -> CertificateDer<'static> {
        let mut params = CertificateParams::new(vec![name.to_string()]).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.not_before = date_time_ymd(year, 1, 1);
        params.not_after = date_time_ymd(year, 12, 31);
        let key = KeyPair::generate().expect("key");
        params.self_signed(&key).expect("cert").der().clone()
    }

    /// A CA, and a leaf for `name` it signed, valid in `year` only.
    fn ca_and_leaf(name: &str, year: i32) -> (CertificateDer<'static>, CertificateDer<'static>) {
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "test CA");
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("key")).expect("ca");
        let mut leaf = CertificateParams::new(vec![name.to_string()]).expect("params");
        leaf.not_before = date_time_ymd(year, 1, 1);
        leaf.not_after = date_time_ymd(year, 12, 31);
        let key = KeyPair::generate().expect("key");
        let leaf = leaf.signed_by(&key, &ca).expect("leaf");
        (ca.der().clone(), leaf.der().clone())
    }

    /// A verifier trusting the Mozilla roots and `ca_file`, as built for
    /// the upstreams.
    fn verifier(ca_file: &[&CertificateDer<'static>]) -> Verifier {
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        for der in ca_file {
            roots.add((*der).clone()).expect("a trust anchor");
        }
        let pins = ca_file.iter().map(|d| (*d).clone()).collect();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Verifier::new(Arc::new(roots), pins, provider).expect("verifier")
    }

    /// Midsummer of `year`.
    fn in_year(year: u64) -> UnixTime {
        let days = (year - 1970) * 365 + (year - 1969) / 4 + 180;
        UnixTime::since_unix_epoch(Duration::from_secs(days * 86_400))
    }

    /// Verifies `cert` for `name` at midsummer of `year`: the reason if refused.
    fn check(v: &Verifier, cert: &CertificateDer<'_>, name: &str, year: u64) -> Result<(), String> {
        let name = ServerName::try_from(name.to_owned()).expect("name");
        v.verify_server_cert(cert, &[], &name, &[], in_year(year))
            .map(|_| ())
            .map_err(|e| refusal(&e).unwrap_or("not a certificate error").to_owned())
    }

    #[test]
    fn a_self_signed_ca_certificate_in_ca_file_is_pinned() {
        let cert = self_signed_ca("dns.test", 2030);
        assert_eq!(check(&verifier(&[&cert]), &cert, "dns.test", 2030), Ok(()));
    }

    #[test]
    fn a_self_signed_ca_certificate_not_in_ca_file_says_it_is_a_ca() {
        let cert = self_signed_ca("dns.test", 2030);
        let (other_ca, _) = ca_and_leaf("x.test", 2030);
        for v in [verifier(&[]), verifier(&[&other_ca])] {
            assert_eq!(
                check(&v, &cert, "dns.test", 2030).expect_err("refused"),
                "certificate rejected: CA certificate used as a server certificate"
            );
        }
        // Another certificate with the same name and key type is no pin.
        let twin = self_signed_ca("dns.test", 2030);
        assert_eq!(
            check(&verifier(&[&twin]), &cert, "dns.test", 2030).expect_err("refused"),
            "certificate rejected: CA certificate used as a server certificate"
        );
    }

    #[test]
    fn a_pin_is_only_for_its_own_names() {
        let cert = self_signed_ca("dns.test", 2030);
        let v = verifier(&[&cert]);
        for name in ["wrong.test", "sub.dns.test", "127.0.0.1"] {
            assert_eq!(
                check(&v, &cert, name, 2030).expect_err(name),
                "certificate rejected: not valid for the server name",
                "{name}"
            );
        }
    }

    #[test]
    fn a_pin_out_of_its_dates_is_refused() {
        let cert = self_signed_ca("dns.test", 2030);
        let v = verifier(&[&cert]);
        assert_eq!(
            check(&v, &cert, "dns.test", 2031).expect_err("expired"),
            "certificate rejected: expired"
        );
        assert_eq!(
            check(&v, &cert, "dns.test", 2029).expect_err("early"),
            "certificate rejected: not valid yet"
        );
    }

    #[test]
    fn a_pinned_leaf_of_an_unknown_ca_is_trusted_within_its_dates_and_names() {
        let (_, leaf) = ca_and_leaf("dns.test", 2030);
        let v = verifier(&[&leaf]);
        assert_eq!(check(&v, &leaf, "dns.test", 2030), Ok(()));
        assert_eq!(
            check(&v, &leaf, "wrong.test", 2030).expect_err("name"),
            "certificate rejected: not valid for the server name"
        );
        assert_eq!(
            check(&v, &leaf, "dns.test", 2031).expect_err("expired"),
            "certificate rejected: expired"
        );
        assert_eq!(
            check(&verifier(&[]), &leaf, "dns.test", 2030).expect_err("not pinned"),
            "certificate rejected: unknown issuer"
        );
    }

    #[test]
    fn a_leaf_signed_by_a_ca_in_ca_file_is_trusted_the_webpki_way() {
        let (ca, leaf) = ca_and_leaf("dns.test", 2030);
        let v = verifier(&[&ca]);
        assert_eq!(check(&v, &leaf, "dns.test", 2030), Ok(()));
        assert_eq!(
            check(&v, &leaf, "wrong.test", 2030).expect_err("name"),
            "certificate rejected: not valid for the server name"
        );
        assert_eq!(
            check(&v, &leaf, "dns.test", 2031).expect_err("expired"),
            "certificate rejected: expired"
        );
        // Presented by a server, the CA of ca_file is a pin like any other
        // certificate there; this one is for no name at all.
        assert_eq!(
            check(&v, &ca, "dns.test", 2030).expect_err("ca"),
            "certificate rejected: not valid for the server name"
        );
    }

    #[test]
    fn refusals_name_no_server() {
        let e = rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
            expected: ServerName::try_from("secret.example").expect("name"),
            presented: vec!["other.example".into()],
        });
        assert_eq!(
            refusal(&e),
            Some("certificate rejected: not valid for the server name")
        );
        assert_eq!(
            refusal(&rustls::Error::InvalidCertificate(
                CertificateError::UnhandledCriticalExtension
            )),
            Some("certificate rejected")
        );
        assert_eq!(refusal(&rustls::Error::HandshakeNotComplete), None);
    }
}
