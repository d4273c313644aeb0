//! Decrypting the columns an output encrypts.
//!
//! An output with `encrypt: [email]` publishes each `email` value as the text
//! `ordo:enc:v1:<key id>:<base64(nonce || ciphertext || tag)>`: AES-256-GCM with the key
//! named in the value and, as associated data, `<namespace>.<table>/<column>`; the plaintext
//! is the value's JSON text. [`ordo_kcop::encrypt`] describes the layout byte for byte, for
//! consumers in other languages.
//!
//! A [`Decryptor`] holds the keys by id. Load every key whose values you may still read:
//! after a rotation, values written before it still name the old key.
//!
//! # Examples
//! ```
//! use ordo_kcop::encrypt::Keyring;
//! use ordo_tcc::decrypt::Decryptor;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The daemon's side, here only to make a value to decrypt.
//! let key = [42u8; 32];
//! let mut keyring = Keyring::new();
//! keyring.add("k1", &key)?;
//! keyring.set_active("k1")?;
//! let sealed = keyring.seal("public.customers", "email", br#""alice@example.com""#)?;
//!
//! // The consumer's side: a record value of the `json` format, and the table from the
//! // record's `ordo.table` header.
//! let mut record = serde_json::json!({ "id": 7, "email": sealed });
//! let decryptor = Decryptor::from_keys([("k1", &key[..])])?;
//! let decrypted = decryptor.decrypt_record("public.customers", &mut record)?;
//! assert_eq!(decrypted, 1);
//! assert_eq!(record, serde_json::json!({ "id": 7, "email": "alice@example.com" }));
//! # Ok(())
//! # }
//! ```

use ordo_kcop::encrypt::{CryptoError, Keyring, PREFIX};
use serde_json::{Map, Value};

/// Why a value or record could not be decrypted. Messages never contain plaintext or keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    /// A key could not be loaded.
    #[error("key `{key_id}`: {source}")]
    Key {
        /// The key's id.
        key_id: String,
        /// What is wrong with it.
        source: CryptoError,
    },
    /// A field's value did not decrypt.
    #[error("table {table}, column {column}: {source}")]
    Value {
        /// `namespace.name`.
        table: String,
        /// Column name.
        column: String,
        /// Why.
        source: CryptoError,
    },
    /// The decrypted bytes are not JSON (the value was not written by ordo's encryption).
    #[error("table {table}, column {column}: the decrypted value is not JSON text")]
    Plaintext {
        /// `namespace.name`.
        table: String,
        /// Column name.
        column: String,
    },
}

/// Decrypts values encrypted by the daemon, with any of the keys it was given.
#[derive(Debug, Default)]
pub struct Decryptor {
    keys: Keyring,
}

impl Decryptor {
    /// A decryptor with no key.
    pub fn new() -> Self {
        Self::default()
    }

    /// A decryptor with keys given as `(id, 32 bytes)`.
    ///
    /// # Errors
    /// When an id is not valid or a key is not 32 bytes long.
    pub fn from_keys<'a, I, S>(keys: I) -> Result<Self, DecryptError>
    where
        I: IntoIterator<Item = (S, &'a [u8])>,
        S: AsRef<str>,
    {
        let mut decryptor = Self::new();
        for (id, key) in keys {
            decryptor.add_key(id.as_ref(), key)?;
        }
        Ok(decryptor)
    }

    /// Add key `id` (32 bytes). Zeroise your copy of the bytes afterwards; the decryptor's
    /// copy is zeroised when it is dropped.
    ///
    /// # Errors
    /// When the id is not valid or the key is not 32 bytes long.
    pub fn add_key(&mut self, id: &str, key: &[u8]) -> Result<(), DecryptError> {
        self.keys.add(id, key).map_err(|source| DecryptError::Key {
            key_id: id.to_owned(),
            source,
        })
    }

    /// Add key `id` from its text form, as in the daemon's key files: 64 hex digits or
    /// base64 of 32 bytes.
    ///
    /// # Errors
    /// When the text is not a 32-byte key or the id is not valid.
    pub fn add_key_text(&mut self, id: &str, text: &str) -> Result<(), DecryptError> {
        let key = ordo_kcop::encrypt::parse_key(text).map_err(|source| DecryptError::Key {
            key_id: id.to_owned(),
            source,
        })?;
        self.add_key(id, key.as_slice())
    }

    /// Decrypt one value of `column` in `table` (`namespace.name`), giving the column's value
    /// as JSON (`"12.50"` for a decimal, `null` for SQL `NULL`, ...).
    ///
    /// # Errors
    /// When the text is not an encrypted value, its key is not loaded, or it does not
    /// authenticate (wrong key, altered, or moved from another table or column).
    pub fn decrypt(&self, table: &str, column: &str, value: &str) -> Result<Value, DecryptError> {
        let plaintext =
            self.keys
                .open(table, column, value)
                .map_err(|source| DecryptError::Value {
                    table: table.to_owned(),
                    column: column.to_owned(),
                    source,
                })?;
        serde_json::from_slice(&plaintext).map_err(|_| DecryptError::Plaintext {
            table: table.to_owned(),
            column: column.to_owned(),
        })
    }

    /// Decrypt, in place, every encrypted field of a record value made by the `json` format
    /// for `table` (`namespace.name`, the record's `ordo.table` header): the row object, or
    /// with `envelope: true`, both images of `{"op", "before", "after"}`. Returns how many
    /// fields were decrypted. Fields that are not encrypted are left as they are.
    ///
    /// # Errors
    /// On the first field that does not decrypt; the record may then be partly decrypted.
    pub fn decrypt_record(&self, table: &str, record: &mut Value) -> Result<usize, DecryptError> {
        let Value::Object(object) = record else {
            return Ok(0);
        };
        if is_envelope(object) {
            let mut count = 0;
            for image in ["before", "after"] {
                if let Some(Value::Object(row)) = object.get_mut(image) {
                    count += self.decrypt_row(table, row)?;
                }
            }
            return Ok(count);
        }
        self.decrypt_row(table, object)
    }

    fn decrypt_row(
        &self,
        table: &str,
        row: &mut Map<String, Value>,
    ) -> Result<usize, DecryptError> {
        let mut count = 0;
        for (column, value) in row.iter_mut() {
            if let Value::String(text) = value
                && is_encrypted(text)
            {
                *value = self.decrypt(table, column, text)?;
                count += 1;
            }
        }
        Ok(count)
    }
}

/// Whether `value` is an encrypted value's text.
pub fn is_encrypted(value: &str) -> bool {
    value.starts_with(PREFIX)
}

/// The `json` format's envelope: exactly `op`, `before` and `after`, images objects or null.
fn is_envelope(object: &Map<String, Value>) -> bool {
    let image = |k: &str| matches!(object.get(k), Some(Value::Object(_) | Value::Null));
    object.len() == 3
        && object.get("op").is_some_and(Value::is_string)
        && image("before")
        && image("after")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use serde_json::json;

    use super::*;

    const OLD: [u8; 32] = [1; 32];
    const NEW: [u8; 32] = [2; 32];

    fn seal(keyring: &Keyring, column: &str, json: &str) -> String {
        keyring.seal("public.t", column, json.as_bytes()).unwrap()
    }

    #[test]
    fn old_values_decrypt_after_rotation_in_envelopes() {
        let mut keyring = Keyring::new();
        keyring.add("old", &OLD).unwrap();
        keyring.set_active("old").unwrap();
        let before = seal(&keyring, "card", r#""4111""#);
        keyring.add("new", &NEW).unwrap();
        keyring.set_active("new").unwrap();
        let after = seal(&keyring, "card", "null");
        let mut record = json!({
            "op": "u",
            "before": { "id": 1, "card": before },
            "after": { "id": 1, "card": after },
        });
        let decryptor = Decryptor::from_keys([("old", &OLD[..]), ("new", &NEW[..])]).unwrap();
        assert_eq!(
            decryptor.decrypt_record("public.t", &mut record).unwrap(),
            2
        );
        assert_eq!(
            record,
            json!({
                "op": "u",
                "before": { "id": 1, "card": "4111" },
                "after": { "id": 1, "card": null },
            })
        );
    }

    #[test]
    fn errors_name_the_column_and_key() {
        let mut keyring = Keyring::new();
        keyring.add("old", &OLD).unwrap();
        keyring.set_active("old").unwrap();
        let sealed = seal(&keyring, "card", "1");
        let mut decryptor = Decryptor::new();
        decryptor.add_key_text("new", &"02".repeat(32)).unwrap();
        let err = decryptor
            .decrypt_record("public.t", &mut json!({ "card": sealed }))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "table public.t, column card: the value was encrypted with key `old`, which is not \
             loaded; add that key"
        );
        decryptor.add_key_text("old", &"01".repeat(32)).unwrap();
        let moved = decryptor.decrypt("public.t", "pin", &sealed).unwrap_err();
        assert!(moved.to_string().contains("public.t/pin"), "{moved}");
        assert!(matches!(
            decryptor.add_key("bad", &[0; 8]),
            Err(DecryptError::Key { .. })
        ));
    }
}
