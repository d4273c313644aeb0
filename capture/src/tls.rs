//! TLS to the source database with rustls (ring provider), with libpq's `sslmode` meanings.
//!
//! | mode          | TLS                          | certificate check                      |
//! |---------------|------------------------------|----------------------------------------|
//! | `disable`     | never                        | -                                      |
//! | `prefer`      | when the server offers it    | none                                   |
//! | `require`     | always                       | none                                   |
//! | `verify-ca`   | always                       | chain up to `ca_file` (or system roots)|
//! | `verify-full` | always                       | chain, and the certificate names host  |
//!
//! [`client_config`] turns an [`ordo_config::Tls`] into a rustls [`ClientConfig`];
//! [`TlsError::handshake`] turns a failed handshake into an error that names the setting to
//! change and how. Both the PostgreSQL replication client and the SQL connections
//! ([`PgTls`]) use them; the MariaDB/MySQL source hands the same settings to `mysql_async`.
//!
//! # Error handling
//!
//! Certificate and configuration problems are definite ([`TlsError::is_transient`] is false):
//! retrying cannot fix a wrong CA. An i/o failure during the handshake is transient.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ordo_config::{Tls, TlsMode};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

mod postgres;

pub use postgres::{PgTls, PgTlsConnect, PgTlsStream};

/// Why a TLS connection to the source could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A certificate or key file cannot be used.
    #[error("{setting} `{}` cannot be used: {problem}; give a readable PEM file", path.display())]
    File {
        /// The setting, e.g. `source.postgres.tls.ca_file`.
        setting: String,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The TLS settings cannot be combined (e.g. a key that does not match its certificate).
    #[error("{setting} cannot be used: {problem}")]
    Config {
        /// The settings block, e.g. `source.postgres.tls`.
        setting: String,
        /// What is wrong.
        problem: String,
    },
    /// The mode needs TLS but the server does not offer it.
    #[error(
        "{setting}.mode is {mode} but the server at {addr} does not accept tls; enable tls on the \
         server (postgresql: ssl = on; mariadb: ssl_cert and ssl_key) or set {setting}.mode to \
         prefer or disable"
    )]
    NotOffered {
        /// The settings block.
        setting: String,
        /// The configured mode.
        mode: String,
        /// `host:port`.
        addr: String,
    },
    /// The handshake failed for a reason someone has to fix (certificate, protocol).
    #[error("tls handshake with {addr} failed: {reason}; {fix}")]
    Handshake {
        /// `host:port`.
        addr: String,
        /// What the handshake said.
        reason: String,
        /// How to fix it, naming the setting.
        fix: String,
    },
    /// The connection failed during the handshake.
    #[error("tls handshake with {addr} was interrupted: {source}")]
    Io {
        /// `host:port`.
        addr: String,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
}

impl TlsError {
    /// Whether reconnecting may help: only an interrupted handshake.
    pub fn is_transient(&self) -> bool {
        matches!(self, TlsError::Io { .. })
    }

    /// Explains a failed handshake: a certificate problem names the setting and the fix; an
    /// i/o failure stays transient. `setting` is the settings block (`source.postgres.tls`).
    pub fn handshake(err: io::Error, tls: &Tls, setting: &str, host: &str, addr: &str) -> Self {
        match find_rustls_error(&err) {
            Some(e) => explain(e, tls, setting, host, addr),
            None => TlsError::Io {
                addr: addr.to_owned(),
                source: err,
            },
        }
    }
}

/// The rustls error inside `err` or its sources (an `io::Error` wraps it in a handshake).
pub fn find_rustls_error<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        if let Some(inner) = e
            .downcast_ref::<io::Error>()
            .and_then(io::Error::get_ref)
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(inner);
        }
        current = e.source();
    }
    None
}

/// Turns a rustls handshake error into a [`TlsError::Handshake`] with a fix naming the setting.
pub fn explain(e: &rustls::Error, tls: &Tls, setting: &str, host: &str, addr: &str) -> TlsError {
    let ca = tls.ca_file.as_ref().map_or_else(
        || "the system's certificate authorities".to_owned(),
        |p| format!("`{}`", p.display()),
    );
    let (reason, fix) = match e {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => (
            format!("the server's certificate is not signed by a certificate authority in {ca}"),
            format!(
                "set {setting}.ca_file to the PEM certificate of the authority that signed the \
                 server's certificate, or set {setting}.mode to require to encrypt without \
                 verifying the server"
            ),
        ),
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => (
            format!("the server's certificate does not name the host `{host}` ({e})"),
            format!(
                "set {}.host to a name the certificate names, reissue the certificate with \
                 `{host}` as a subject alternative name, or set {setting}.mode to verify-ca to \
                 check the signature only",
                setting.trim_end_matches(".tls")
            ),
        ),
        rustls::Error::InvalidCertificate(other) => (
            format!("the server's certificate is not acceptable ({other})"),
            "renew or reissue the server's certificate".to_owned(),
        ),
        rustls::Error::AlertReceived(alert) => (
            format!("the server refused the handshake ({alert:?})"),
            format!(
                "if the server requires a client certificate set {setting}.cert_file and \
                 {setting}.key_file to one it trusts; check the server's tls log"
            ),
        ),
        other => (
            other.to_string(),
            format!("check the server's tls settings and {setting}"),
        ),
    };
    TlsError::Handshake {
        addr: addr.to_owned(),
        reason,
        fix,
    }
}

/// The name to check the server's certificate against: a DNS name or an IP address.
///
/// # Errors
/// When `host` is neither.
pub fn server_name(host: &str, setting: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(host.to_owned()).map_err(|e| TlsError::Config {
        setting: setting.to_owned(),
        problem: format!("the host `{host}` is not a valid tls server name ({e})"),
    })
}

/// The crypto provider every ordo TLS connection uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes ring the process-wide rustls provider, for libraries that build their own
/// [`ClientConfig`] with `ClientConfig::builder()` (`mysql_async`). Idempotent.
pub fn install_default_provider() {
    if CryptoProvider::get_default().is_none() {
        // Err means another thread installed one first, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// The rustls client configuration for `tls` (any mode but `disable`). `setting` names the
/// settings block in errors (`source.postgres.tls`).
///
/// # Errors
/// When a file cannot be read or parsed, or the client certificate and key do not match.
pub fn client_config(tls: &Tls, setting: &str) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let config_error = |problem: String| TlsError::Config {
        setting: setting.to_owned(),
        problem,
    };
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| config_error(e.to_string()))?;
    let verifier = verifier(tls, setting, &provider)?;
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let chain = read_certs(cert, &format!("{setting}.cert_file"))?;
            let key = read_key(key, &format!("{setting}.key_file"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| config_error(format!("cert_file and key_file do not fit ({e})")))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

fn verifier(
    tls: &Tls,
    setting: &str,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ServerCertVerifier>, TlsError> {
    if matches!(
        tls.mode,
        TlsMode::Disable | TlsMode::Prefer | TlsMode::Require
    ) {
        return Ok(Arc::new(NoVerification(
            provider.signature_verification_algorithms,
        )));
    }
    let roots = Arc::new(root_store(tls, setting)?);
    let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| TlsError::Config {
            setting: setting.to_owned(),
            problem: format!("no usable certificate authority ({e})"),
        })?;
    if tls.mode == TlsMode::VerifyCa {
        Ok(Arc::new(ChainOnly(webpki)))
    } else {
        Ok(webpki)
    }
}

/// The trusted authorities: `ca_file`, or the system's roots when it is not set.
///
/// # Errors
/// When `ca_file` cannot be read or holds no certificate.
pub fn root_store(tls: &Tls, setting: &str) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    if let Some(ca) = &tls.ca_file {
        let certs = read_certs(ca, &format!("{setting}.ca_file"))?;
        let (_, ignored) = store.add_parsable_certificates(certs);
        if store.is_empty() {
            return Err(TlsError::File {
                setting: format!("{setting}.ca_file"),
                path: ca.clone(),
                problem: format!("none of its certificates is usable ({ignored} rejected)"),
            });
        }
    } else {
        let native = rustls_native_certs::load_native_certs();
        for error in &native.errors {
            tracing::debug!(%error, "skipping a system certificate");
        }
        store.add_parsable_certificates(native.certs);
    }
    Ok(store)
}

/// The certificates of a PEM file.
///
/// # Errors
/// When the file cannot be read or holds no certificate.
pub fn read_certs(path: &Path, setting: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file_error = |problem: String| TlsError::File {
        setting: setting.to_owned(),
        path: path.to_owned(),
        problem,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(file_error("it holds no PEM certificate".to_owned()));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1). rustls zeroises it when dropped.
///
/// # Errors
/// When the file cannot be read or holds no key.
pub fn read_key(path: &Path, setting: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::File {
        setting: setting.to_owned(),
        path: path.to_owned(),
        problem: format!("no PEM private key ({e})"),
    })
}

/// `prefer` and `require`: encrypt, but accept any certificate (the handshake signatures are
/// still checked, so the session is bound to the certificate the server sent).
struct NoVerification(WebPkiSupportedAlgorithms);

impl fmt::Debug for NoVerification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NoVerification")
    }
}

impl ServerCertVerifier for NoVerification {
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted authority; the host name is not checked.
/// webpki checks the chain before the name, so a name mismatch means the chain passed.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
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
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The mode as written in the config file.
pub fn mode_name(mode: TlsMode) -> &'static str {
    match mode {
        TlsMode::Disable => "disable",
        TlsMode::Prefer => "prefer",
        TlsMode::Require => "require",
        TlsMode::VerifyCa => "verify-ca",
        TlsMode::VerifyFull => "verify-full",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(mode: TlsMode, ca: Option<&str>) -> Tls {
        Tls {
            mode,
            ca_file: ca.map(PathBuf::from),
            ..Tls::default()
        }
    }

    #[test]
    fn require_needs_no_files() {
        assert!(client_config(&tls(TlsMode::Require, None), "source.postgres.tls").is_ok());
    }

    #[test]
    fn a_missing_ca_file_names_its_setting() {
        let cfg = tls(TlsMode::VerifyFull, Some("/nonexistent/ca.pem"));
        let e = client_config(&cfg, "source.postgres.tls").unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("source.postgres.tls.ca_file `/nonexistent/ca.pem`"),
            "{text}"
        );
        assert!(!e.is_transient());
    }

    #[test]
    fn an_unknown_issuer_names_the_ca_file_and_the_fix() {
        let cfg = tls(TlsMode::VerifyFull, Some("/etc/ordo/ca.pem"));
        let e = explain(
            &rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
            &cfg,
            "source.mysql.tls",
            "db",
            "db:3306",
        );
        let text = e.to_string();
        assert!(text.contains("tls handshake with db:3306 failed"), "{text}");
        assert!(text.contains("not signed by a certificate authority in `/etc/ordo/ca.pem`"));
        assert!(text.contains("set source.mysql.tls.ca_file to the PEM certificate"));
        assert!(text.contains("source.mysql.tls.mode to require"));
    }

    #[test]
    fn a_name_mismatch_suggests_the_host_setting() {
        let e = explain(
            &rustls::Error::InvalidCertificate(CertificateError::NotValidForName),
            &tls(TlsMode::VerifyFull, None),
            "source.postgres.tls",
            "10.0.0.5",
            "10.0.0.5:5432",
        );
        let text = e.to_string();
        assert!(text.contains("does not name the host `10.0.0.5`"), "{text}");
        assert!(text.contains("set source.postgres.host to a name the certificate names"));
        assert!(text.contains("verify-ca"));
    }

    #[test]
    fn an_interrupted_handshake_is_transient() {
        let e = TlsError::handshake(
            io::Error::new(io::ErrorKind::ConnectionReset, "reset"),
            &tls(TlsMode::Require, None),
            "source.postgres.tls",
            "db",
            "db:5432",
        );
        assert!(e.is_transient(), "{e}");
        let wrapped = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        let e = TlsError::handshake(
            wrapped,
            &tls(TlsMode::VerifyCa, None),
            "s.tls",
            "db",
            "db:1",
        );
        assert!(!e.is_transient(), "{e}");
        assert!(
            e.to_string().contains("system's certificate authorities"),
            "{e}"
        );
    }

    #[test]
    fn server_names_are_dns_names_or_ip_addresses() {
        assert!(matches!(
            server_name("127.0.0.1", "s").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("db.internal", "s").unwrap(),
            ServerName::DnsName(_)
        ));
        assert!(server_name("not a host", "s").is_err());
    }
}
