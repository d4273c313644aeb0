//! Keys for encrypting selected columns before they are published.
//!
//! Outputs list columns under `encrypt`; their values are encrypted with the active key.
//! Older keys stay listed so consumers holding records encrypted with them can still be
//! served; rotating means adding a key and making it active.
//!
//! # Key material
//! Each key is 32 bytes (AES-256), written in its file or environment variable as 64 hex
//! digits or as 44 characters of standard base64 (surrounding whitespace ignored), e.g. made
//! with `openssl rand -hex 32 > k1.key && chmod 600 k1.key`. Validation decodes it and
//! refuses any other length; a key file that its group or other users may read or write
//! (any mode other than `0600`/`0400` and stricter) is refused with the `chmod` that fixes
//! it. Key ids are written into every encrypted value, so they are letters, digits, `.`,
//! `_` and `-` only. The decoded key is zeroised when the config is dropped.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use schemars::JsonSchema;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::positions::{join_index, join_key};
use crate::secret::Secret;
use crate::validate::{Validation, require_text};

/// Column encryption keys.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Encryption {
    /// Id of the key new values are encrypted with; one of `keys`.
    pub active_key: String,
    /// Every key that may still be needed, by id.
    pub keys: Vec<EncryptionKey>,
}

/// One encryption key; its material is read from a file or an environment variable.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EncryptionKey {
    /// Key id, recorded with each encrypted value.
    pub id: String,
    /// File holding the key material; set this or `env`.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// Environment variable holding the key material; set this or `file`.
    #[serde(default)]
    pub env: Option<String>,
    /// The key material, read during validation.
    #[serde(skip)]
    material: Secret,
    /// The decoded key, set by validation when the material is valid.
    #[serde(skip)]
    bytes: Option<KeyBytes>,
}

/// 32 key bytes, zeroised on drop, printed as `***`.
#[derive(Clone)]
struct KeyBytes(Zeroizing<[u8; KEY_LEN]>);

impl fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Key length in bytes.
const KEY_LEN: usize = 32;

impl Encryption {
    /// The key new values are encrypted with.
    pub fn active(&self) -> Option<&EncryptionKey> {
        self.key(&self.active_key)
    }

    /// The key with id `id`.
    pub fn key(&self, id: &str) -> Option<&EncryptionKey> {
        self.keys.iter().find(|key| key.id == id)
    }

    pub(crate) fn validate(&mut self, cx: &mut Validation<'_>, path: &str) {
        let keys_path = join_key(path, "keys");
        if self.keys.is_empty() {
            cx.error(
                &keys_path,
                "no key is defined",
                "add a key with `id` and `file` or `env`",
            );
        }
        for (index, key) in self.keys.iter_mut().enumerate() {
            key.validate(cx, &join_index(&keys_path, index));
        }
        let ids: Vec<String> = self.keys.iter().map(|key| key.id.clone()).collect();
        for (index, id) in ids.iter().enumerate() {
            if ids[..index].contains(id) {
                cx.error(
                    &join_key(&join_index(&keys_path, index), "id"),
                    format!("key id `{id}` is used twice"),
                    "give every key its own id",
                );
            }
        }
        if self.active().is_none() && !self.keys.is_empty() {
            cx.error(
                &join_key(path, "active_key"),
                format!("active key `{}` is not defined in `keys`", self.active_key),
                format!("use one of: {}, or add a key with this id", ids.join(", ")),
            );
        }
    }
}

impl EncryptionKey {
    /// The key material as read from its file or environment variable.
    pub fn material(&self) -> &Secret {
        &self.material
    }

    /// The decoded 32-byte key; `None` until the config is validated. Do not log it.
    pub fn key_bytes(&self) -> Option<&[u8; KEY_LEN]> {
        self.bytes.as_ref().map(|b| &*b.0)
    }

    fn validate(&mut self, cx: &mut Validation<'_>, path: &str) {
        require_text(cx, &join_key(path, "id"), &self.id, "give the key an id");
        if !self.id.trim().is_empty() && !is_valid_key_id(&self.id) {
            cx.error(
                &join_key(path, "id"),
                format!(
                    "key id `{}` has characters other than letters, digits, `.`, `_` and `-`",
                    self.id
                ),
                "rename the key; its id is written into every value encrypted with it",
            );
        }
        let mut material = match (&self.file, &self.env) {
            (Some(file), None) if !file_is_private(file, cx, &join_key(path, "file")) => return,
            (Some(file), None) => Secret::from_file(file.clone()),
            (None, Some(name)) => Secret::from_env(name.clone()),
            (Some(_), Some(_)) => {
                let message = "both `file` and `env` are set";
                return cx.error(path, message, "keep exactly one of them");
            }
            (None, None) => {
                let message = "the key has no `file` or `env`";
                return cx.error(path, message, "say where the key material is");
            }
        };
        let source = if self.file.is_some() { "file" } else { "env" };
        let source_path = join_key(path, source);
        if material.resolve(cx, &source_path) {
            match decode_key(material.expose()) {
                Ok(bytes) => self.bytes = Some(KeyBytes(bytes)),
                Err(problem) => cx.error(
                    &source_path,
                    format!("the key material {problem}"),
                    "write 32 random bytes as 64 hex digits, e.g. `openssl rand -hex 32`",
                ),
            }
        }
        self.material = material;
    }
}

/// Whether `id` may be written into encrypted values.
fn is_valid_key_id(id: &str) -> bool {
    id.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// 64 hex digits or standard base64 of 32 bytes, or what is wrong (lengths only, never the
/// material).
fn decode_key(text: &str) -> Result<Zeroizing<[u8; KEY_LEN]>, String> {
    let text = text.trim();
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    if text.is_empty() {
        return Err("is empty".to_owned());
    }
    if text.len() == 2 * KEY_LEN && hex::decode_to_slice(text, key.as_mut_slice()).is_ok() {
        return Ok(key);
    }
    let engine = base64::engine::general_purpose::STANDARD;
    match engine.decode(text).map(Zeroizing::new) {
        Ok(bytes) if bytes.len() == KEY_LEN => {
            key.copy_from_slice(&bytes);
            Ok(key)
        }
        Ok(bytes) => Err(format!(
            "decodes from base64 to {} bytes; a key is {KEY_LEN} bytes",
            bytes.len()
        )),
        Err(_) => Err(format!(
            "is {} characters that are neither 64 hex digits nor base64",
            text.chars().count()
        )),
    }
}

/// Reports a key file that other users may read or write; true when it is private (or its
/// mode cannot be read, which reading the file then reports).
fn file_is_private(file: &Path, cx: &mut Validation<'_>, path: &str) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let Ok(meta) = std::fs::metadata(file) else {
            return true;
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            cx.error(
                path,
                format!(
                    "key file `{}` may be read or written by other users (mode {mode:04o})",
                    file.display()
                ),
                format!("run `chmod 600 {}`", file.display()),
            );
            return false;
        }
    }
    #[cfg(not(unix))]
    let _ = (file, cx, path);
    true
}
