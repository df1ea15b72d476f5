//! TLS to PostgreSQL: `sslmode=` and `sslrootcert=` in `DATABASE_URL`, with libpq's meanings.
//!
//! The client library knows `disable`, `prefer` and `require` only, and no `sslrootcert`, so both
//! are taken out of the URL here and the rest is parsed by the client. What each mode checks:
//!
//! | sslmode | TLS | the chain | the host name |
//! |---|---|---|---|
//! | `disable` | never | – | – |
//! | `prefer` (default) | if the server offers it | only with `sslrootcert` | no |
//! | `require` | always | only with `sslrootcert` | no |
//! | `verify-ca` | always | against `sslrootcert`, else the system roots | no |
//! | `verify-full` | always | against `sslrootcert`, else the system roots | yes |
//!
//! As in libpq, a root certificate given to `prefer` or `require` makes them check the chain,
//! and `sslrootcert=system` means the system roots, makes `verify-full` the default and refuses
//! weaker modes. The system roots are read as OpenSSL would (`SSL_CERT_FILE`, `/etc/ssl/certs`).

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode` values (`allow` is not offered: it means "TLS only if the server insists").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// Where trusted roots come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    /// No `sslrootcert`.
    Unset,
    /// `sslrootcert=system`.
    System,
    /// `sslrootcert=<PEM file>`.
    File(PathBuf),
}

/// The TLS part of `DATABASE_URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: SslMode,
    pub roots: Roots,
}

impl TlsSettings {
    /// What the client library must be told: it only negotiates, our verifier decides.
    pub fn client_mode(&self) -> postgres::config::SslMode {
        match self.mode {
            SslMode::Disable => postgres::config::SslMode::Disable,
            SslMode::Prefer => postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                postgres::config::SslMode::Require
            }
        }
    }

    /// The connector for these settings; reads `sslrootcert` (or the system roots) now, so a
    /// missing or unreadable file is a startup error.
    pub fn connector(&self) -> Result<MakeRustlsConnect, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let algorithms = provider.signature_verification_algorithms;
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|error| format!("TLS setup: {error}"))?;
        let check_chain = match (&self.mode, &self.roots) {
            (SslMode::Disable, _) => false,
            (SslMode::VerifyCa | SslMode::VerifyFull, _) => true,
            (_, Roots::Unset) => false,
            (_, _) => true,
        };
        let config = if !check_chain {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Unverified { algorithms }))
                .with_no_client_auth()
        } else {
            let roots = Arc::new(self.root_store()?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|error| format!("sslrootcert: {error}"))?;
            if self.mode == SslMode::VerifyFull {
                builder.with_webpki_verifier(webpki).with_no_client_auth()
            } else {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(ChainOnly { webpki }))
                    .with_no_client_auth()
            }
        };
        Ok(MakeRustlsConnect::new(config))
    }

    fn root_store(&self) -> Result<RootCertStore, String> {
        let mut store = RootCertStore::empty();
        match &self.roots {
            Roots::File(path) => {
                let certificates = CertificateDer::pem_file_iter(path)
                    .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
                    .map_err(|error| format!("sslrootcert {}: {error}", path.display()))?;
                let (added, _) = store.add_parsable_certificates(certificates);
                if added == 0 {
                    return Err(format!(
                        "sslrootcert {}: no usable certificate in it",
                        path.display()
                    ));
                }
            }
            Roots::Unset | Roots::System => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _) = store.add_parsable_certificates(found.certs);
                if added == 0 {
                    return Err(format!(
                        "sslmode={}: no system root certificates found ({}); give sslrootcert",
                        self.mode.name(),
                        found
                            .errors
                            .first()
                            .map_or("none installed".to_owned(), ToString::to_string)
                    ));
                }
            }
        }
        Ok(store)
    }
}

impl SslMode {
    fn parse(raw: &str) -> Result<SslMode, String> {
        Ok(match raw {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(format!(
                    "sslmode={other:?} is not one of disable, prefer, require, verify-ca, verify-full"
                ));
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Takes `sslmode` and `sslrootcert` out of a `postgres://` URL: the URL the client library can
/// parse, and the TLS settings. Errors never quote the URL (it may hold a password).
pub fn split_url(url: &str) -> Result<(String, TlsSettings), String> {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, query),
        None => (url, ""),
    };
    let mut kept: Vec<&str> = Vec::new();
    let mut mode = None;
    let mut roots = Roots::Unset;
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => mode = Some(SslMode::parse(&percent_decode(value)?)?),
            "sslrootcert" => {
                let value = percent_decode(value)?;
                roots = match value.as_str() {
                    "" => Roots::Unset,
                    "system" => Roots::System,
                    path => Roots::File(PathBuf::from(path)),
                };
            }
            _ => kept.push(pair),
        }
    }
    let mode = match (mode, &roots) {
        (None, Roots::System) => SslMode::VerifyFull,
        (None, _) => SslMode::Prefer,
        (Some(mode), Roots::System) if mode != SslMode::VerifyFull => {
            return Err(format!(
                "sslrootcert=system needs sslmode=verify-full, not sslmode={}",
                mode.name()
            ));
        }
        (Some(mode), _) => mode,
    };
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, TlsSettings { mode, roots }))
}

fn percent_decode(raw: &str) -> Result<String, String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'%' => {
                let hex = raw
                    .get(at + 1..at + 3)
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                    .ok_or_else(|| format!("a bad %-escape in {raw:?}"))?;
                out.push(hex);
                at += 3;
            }
            byte => {
                out.push(byte);
                at += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| format!("{raw:?} is not UTF-8 once decoded"))
}

/// `prefer`/`require` without a root certificate: encrypted, not authenticated (libpq's
/// meaning). The handshake's signatures are still checked, so the session is with whoever holds
/// the certificate's key.
#[derive(Debug)]
struct Unverified {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Unverified {
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted root; the name in the certificate is not
/// compared with the host (webpki checks the name only once the chain is valid, so a name
/// mismatch is the one error forgiven here).
#[derive(Debug)]
struct ChainOnly {
    webpki: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> TlsSettings {
        split_url(url).unwrap().1
    }

    #[test]
    fn sslmode_and_sslrootcert_are_taken_out_of_the_url() {
        let (rest, tls) =
            split_url("postgres://u:p@h:5432/db?sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem&application_name=x")
                .unwrap();
        assert_eq!(rest, "postgres://u:p@h:5432/db?application_name=x");
        assert_eq!(tls.mode, SslMode::VerifyFull);
        assert_eq!(tls.roots, Roots::File(PathBuf::from("/tmp/ca.pem")));
        assert_eq!(split_url("postgres://h/db").unwrap().0, "postgres://h/db");
        assert_eq!(
            split_url("postgres://h/db?sslmode=require").unwrap().0,
            "postgres://h/db"
        );
    }

    #[test]
    fn libpq_defaults_hold() {
        assert_eq!(settings("postgres://h/db").mode, SslMode::Prefer);
        assert_eq!(
            settings("postgres://h/db?sslrootcert=system").mode,
            SslMode::VerifyFull
        );
        for mode in ["disable", "prefer", "require", "verify-ca", "verify-full"] {
            assert_eq!(
                settings(&format!("postgres://h/db?sslmode={mode}"))
                    .mode
                    .name(),
                mode
            );
        }
    }

    #[test]
    fn bad_values_are_refused() {
        for url in [
            "postgres://h/db?sslmode=verify_full",
            "postgres://h/db?sslmode=allow",
            "postgres://h/db?sslmode=",
            "postgres://h/db?sslmode=REQUIRE",
            "postgres://h/db?sslmode=require&sslrootcert=system",
            "postgres://h/db?sslrootcert=%zz",
        ] {
            assert!(split_url(url).is_err(), "{url}");
        }
    }
}
