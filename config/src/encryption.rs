//! Keys for encrypting selected columns before they are published.
//!
//! Outputs list columns under `encrypt`; their values are encrypted with the active key.
//! Older keys stay listed so consumers holding records encrypted with them can still be
//! served; rotating means adding a key and making it active.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;

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
}

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

    fn validate(&mut self, cx: &mut Validation<'_>, path: &str) {
        require_text(cx, &join_key(path, "id"), &self.id, "give the key an id");
        let mut material = match (&self.file, &self.env) {
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
        if material.resolve(cx, &source_path) && material.expose().is_empty() {
            cx.error(
                &source_path,
                "the key material is empty",
                "put the key in it",
            );
        }
        self.material = material;
    }
}
