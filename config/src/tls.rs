//! TLS settings for connections to the source database.
//!
//! The modes mean what libpq's `sslmode` means, for PostgreSQL and MariaDB alike. The default
//! stays `prefer` (encrypt when the server offers it, without checking its certificate) so that
//! a server without TLS, such as a development database on loopback, works without settings;
//! `verify-full` cannot be the default because it needs a certificate the client can check
//! (`ca_file` or the system's roots) and fails against every server without one. Production
//! configs should say `verify-full`.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::positions::join_key;
use crate::validate::Validation;

/// How a connection to the source database uses TLS.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// Whether TLS is used and how the server's certificate is checked. Default `prefer`:
    /// TLS when the server offers it, without checking its certificate. Use `verify-full`
    /// wherever the server has a certificate you can verify.
    #[serde(default)]
    pub mode: TlsMode,
    /// PEM file with the certificate authorities that sign the server's certificate; the
    /// system's roots when not set.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for servers that authenticate clients by certificate; needs
    /// `key_file`.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// TLS mode, with the same meaning as libpq's `sslmode`. Unix sockets are never encrypted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server supports it; the certificate is not checked.
    #[default]
    Prefer,
    /// TLS always; the certificate is not checked.
    Require,
    /// TLS always; the certificate must be signed by a trusted authority (`ca_file`, or the
    /// system's roots); the host name is not checked.
    VerifyCa,
    /// TLS always; the certificate must be trusted and name the host.
    VerifyFull,
}

impl Tls {
    pub(crate) fn validate(&self, cx: &mut Validation<'_>, path: &str) {
        if self.cert_file.is_some() != self.key_file.is_some() {
            let (given, missing) = if self.cert_file.is_some() {
                ("cert_file", "key_file")
            } else {
                ("key_file", "cert_file")
            };
            cx.error(
                &join_key(path, given),
                format!("`{given}` is set without `{missing}`"),
                format!("set `{missing}` too, or remove `{given}`"),
            );
        }
        let files = [
            ("ca_file", &self.ca_file),
            ("cert_file", &self.cert_file),
            ("key_file", &self.key_file),
        ];
        for (field, file) in files {
            if let Some(file) = file
                && !file.is_file()
            {
                cx.error(
                    &join_key(path, field),
                    format!("file `{}` does not exist", file.display()),
                    "give the path of an existing PEM file",
                );
            }
        }
    }
}
