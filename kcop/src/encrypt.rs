//! Column encryption: AES-256-GCM per column value, with the key id carried in the value.
//!
//! # Encrypted value layout (version 1)
//! An encrypted column's value is replaced, before the output's format runs, by this ASCII
//! text (a `text` value, so the `json` format writes it as a JSON string):
//!
//! ```text
//! ordo:enc:v1:<key id>:<base64(nonce || ciphertext || tag)>
//! ```
//!
//! - `<key id>`: the id of the key in the `encryption` section (letters, digits, `.`, `_`,
//!   `-`; never `:`).
//! - base64: the standard alphabet (RFC 4648 section 4) with `=` padding.
//! - `nonce`: 12 random bytes, new for every value; `tag`: the 16-byte GCM tag, so the
//!   decoded bytes are 28 bytes longer than the plaintext.
//! - cipher: AES-256-GCM with the 32-byte key.
//! - associated data: the UTF-8 bytes of `<namespace>.<table>/<column>`, e.g.
//!   `public.customers/email`. A value copied into another column or table fails to decrypt.
//! - plaintext: the UTF-8 JSON text of the value, as the `json` format writes it with ISO
//!   timestamps: `"alice@example.com"`, `42`, `"12.50"` (exact decimals as strings), base64
//!   strings for binary, `"2024-05-01T12:30:00Z"`, and `null` for SQL `NULL` (so a reader
//!   cannot tell NULLs apart). Unchanged TOAST and not-in-image markers carry no value and
//!   stay markers (left out by the `json` format).
//!
//! To decrypt in another language: split off the prefix `ordo:enc:v1:`, take the key id up
//! to the next `:`, base64-decode the rest, split it into the first 12 bytes (nonce) and the
//! remainder (ciphertext followed by the tag, the layout most AES-GCM libraries take), open
//! it with the key and the associated data, and parse the result as JSON. Rust consumers
//! use `ordo_tcc::decrypt`.
//!
//! # Keys
//! A key is 32 bytes, written in its file or environment variable as 64 hex digits or as
//! 44 characters of standard base64 ([`parse_key`]). Several keys may be loaded; new values
//! are encrypted with the active one, and any loaded key decrypts, so rotating means adding
//! a key, making it active, and keeping the old one for as long as its values are read.
//! Keys are zeroised when dropped (the `aes-gcm` key schedule and every buffer holding key
//! material or plaintext).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use crate::change::{Change, Row};
use crate::json::{JsonWriter, TimestampForm};
use crate::kcop::KcopError;
use crate::schema::{ColumnKind, SchemaRef, TableSchema};
use crate::value::Value;

/// Text every encrypted value starts with.
pub const PREFIX: &str = "ordo:enc:v1:";
/// Key length in bytes (AES-256).
pub const KEY_LEN: usize = 32;
/// Nonce length in bytes.
pub const NONCE_LEN: usize = 12;
/// GCM tag length in bytes.
pub const TAG_LEN: usize = 16;

/// Why a key could not be loaded or a value could not be encrypted or decrypted. Messages
/// never contain key material or plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// Key material of the wrong form or length.
    #[error(
        "key material must be 32 bytes written as 64 hex digits or 44 characters of base64, \
         but {0}; generate one with `openssl rand -hex 32`"
    )]
    KeyMaterial(String),
    /// A key id that cannot be written into values.
    #[error("key id `{0}` must be non-empty letters, digits, `.`, `_` or `-`")]
    KeyId(String),
    /// No key is active, so nothing can be encrypted.
    #[error("no active key: set one with the id of a loaded key")]
    NoActiveKey,
    /// The value does not start with [`PREFIX`].
    #[error("the value is not an ordo encrypted value (it does not start with `{PREFIX}`)")]
    NotEncrypted,
    /// The value starts with [`PREFIX`] but is not well formed.
    #[error("the encrypted value is malformed: {0}")]
    Malformed(&'static str),
    /// The value was encrypted with a key this keyring does not have.
    #[error("the value was encrypted with key `{key_id}`, which is not loaded; add that key")]
    UnknownKey {
        /// The key id written in the value.
        key_id: String,
    },
    /// Authentication failed.
    #[error(
        "the value does not decrypt with key `{key_id}` as a value of `{aad}`: the key material \
         is wrong, the value was altered, or it belongs to another table or column"
    )]
    Authentication {
        /// The key id written in the value.
        key_id: String,
        /// The associated data tried, `namespace.table/column`.
        aad: String,
    },
    /// The cipher refused to encrypt (plaintext too large).
    #[error("the value cannot be encrypted (too large)")]
    Seal,
}

/// The associated data of a value of `column` in `table` (`namespace.name`):
/// `namespace.name/column`.
pub fn associated_data(table: &str, column: &str) -> String {
    format!("{table}/{column}")
}

/// Decode key material written as 64 hex digits or base64 of 32 bytes; surrounding
/// whitespace is ignored.
///
/// # Errors
/// [`CryptoError::KeyMaterial`] saying what was found (lengths only, never the material).
pub fn parse_key(text: &str) -> Result<Zeroizing<[u8; KEY_LEN]>, CryptoError> {
    let text = text.trim();
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    if text.len() == 2 * KEY_LEN && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode_to_slice(text, key.as_mut_slice())
            .map_err(|_| CryptoError::KeyMaterial("the hex digits do not decode".to_owned()))?;
        return Ok(key);
    }
    let bytes = Zeroizing::new(STANDARD.decode(text).map_err(|_| {
        CryptoError::KeyMaterial(format!(
            "found {} characters that are neither 64 hex digits nor base64",
            text.chars().count()
        ))
    })?);
    if bytes.len() != KEY_LEN {
        return Err(CryptoError::KeyMaterial(format!(
            "the base64 text decodes to {} bytes",
            bytes.len()
        )));
    }
    key.copy_from_slice(&bytes);
    Ok(key)
}

/// Whether `id` may be used as a key id.
pub fn is_valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Where nonces come from: the OS random generator, or a fixed value in this crate's tests.
#[derive(Debug, Clone, Copy)]
enum NonceSource {
    Random,
    #[cfg(test)]
    Fixed([u8; NONCE_LEN]),
}

impl NonceSource {
    fn next(self) -> [u8; NONCE_LEN] {
        match self {
            NonceSource::Random => {
                use aes_gcm::aead::rand_core::RngCore as _;
                let mut nonce = [0u8; NONCE_LEN];
                aes_gcm::aead::OsRng.fill_bytes(&mut nonce);
                nonce
            }
            #[cfg(test)]
            NonceSource::Fixed(nonce) => nonce,
        }
    }
}

/// Keys by id, one of them active for encryption. Cheap to share behind an `Arc`.
pub struct Keyring {
    ciphers: BTreeMap<String, Aes256Gcm>,
    active: Option<String>,
    nonces: NonceSource,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("keys", &self.ciphers.keys().collect::<Vec<_>>())
            .field("active", &self.active)
            .finish()
    }
}

impl Default for Keyring {
    fn default() -> Self {
        Self::new()
    }
}

impl Keyring {
    /// An empty keyring.
    pub fn new() -> Self {
        Self {
            ciphers: BTreeMap::new(),
            active: None,
            nonces: NonceSource::Random,
        }
    }

    /// Load key `id` from its 32 bytes. The caller should zeroise its copy.
    ///
    /// # Errors
    /// When the id is not valid or the key is not 32 bytes long.
    pub fn add(&mut self, id: &str, key: &[u8]) -> Result<(), CryptoError> {
        if !is_valid_key_id(id) {
            return Err(CryptoError::KeyId(id.to_owned()));
        }
        let cipher = Aes256Gcm::new_from_slice(key)
            .map_err(|_| CryptoError::KeyMaterial(format!("it is {} bytes long", key.len())))?;
        self.ciphers.insert(id.to_owned(), cipher);
        Ok(())
    }

    /// Make the loaded key `id` the one new values are encrypted with.
    ///
    /// # Errors
    /// [`CryptoError::UnknownKey`] when no such key is loaded.
    pub fn set_active(&mut self, id: &str) -> Result<(), CryptoError> {
        if !self.ciphers.contains_key(id) {
            return Err(CryptoError::UnknownKey {
                key_id: id.to_owned(),
            });
        }
        self.active = Some(id.to_owned());
        Ok(())
    }

    /// The active key's id.
    pub fn active(&self) -> Option<&str> {
        self.active.as_deref()
    }

    /// Encrypt `plaintext` as a value of `column` in `table` (`namespace.name`) with the active
    /// key, giving the text described in the module docs.
    ///
    /// # Errors
    /// When no key is active.
    pub fn seal(&self, table: &str, column: &str, plaintext: &[u8]) -> Result<String, CryptoError> {
        let id = self.active.as_deref().ok_or(CryptoError::NoActiveKey)?;
        let cipher = self.ciphers.get(id).ok_or(CryptoError::NoActiveKey)?;
        let nonce = self.nonces.next();
        let aad = associated_data(table, column);
        let payload = Payload {
            msg: plaintext,
            aad: aad.as_bytes(),
        };
        let sealed = cipher
            .encrypt(Nonce::from_slice(&nonce), payload)
            .map_err(|_| CryptoError::Seal)?;
        let mut bytes = Vec::with_capacity(NONCE_LEN + sealed.len());
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&sealed);
        let mut out = String::with_capacity(PREFIX.len() + id.len() + 1 + bytes.len() * 4 / 3 + 4);
        out.push_str(PREFIX);
        out.push_str(id);
        out.push(':');
        STANDARD.encode_string(&bytes, &mut out);
        Ok(out)
    }

    /// Decrypt a value of `column` in `table` (`namespace.name`) written by [`Keyring::seal`],
    /// with whichever loaded key it names. Gives the plaintext (JSON text), zeroised on drop.
    ///
    /// # Errors
    /// When the text is not an encrypted value, names a key that is not loaded, or does not
    /// authenticate (wrong key, altered value, other table or column).
    pub fn open(
        &self,
        table: &str,
        column: &str,
        value: &str,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let rest = value
            .strip_prefix(PREFIX)
            .ok_or(CryptoError::NotEncrypted)?;
        let (key_id, body) = rest
            .split_once(':')
            .ok_or(CryptoError::Malformed("no `:` after the key id"))?;
        let cipher = self
            .ciphers
            .get(key_id)
            .ok_or_else(|| CryptoError::UnknownKey {
                key_id: key_id.to_owned(),
            })?;
        let bytes = STANDARD
            .decode(body)
            .map_err(|_| CryptoError::Malformed("the data after the key id is not base64"))?;
        if bytes.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Malformed("too short for a nonce and a tag"));
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let aad = associated_data(table, column);
        let payload = Payload {
            msg: sealed,
            aad: aad.as_bytes(),
        };
        cipher
            .decrypt(Nonce::from_slice(nonce), payload)
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Authentication {
                key_id: key_id.to_owned(),
                aad,
            })
    }
}

/// The encryption step of one output for one table schema: replaces the listed columns'
/// values in both images with their encrypted text.
#[derive(Debug, Clone)]
pub struct ColumnEncryptor {
    keyring: Arc<Keyring>,
    columns: Vec<usize>,
    table: String,
    schema: SchemaRef,
    writer: JsonWriter,
}

/// `schema` as formats see it once `columns` (indexes) are encrypted: those columns hold text.
/// Formats that describe their columns up front (Avro, Debezium) are built from this schema.
pub fn published_schema(schema: &TableSchema, columns: &[usize]) -> TableSchema {
    let mut published = schema.clone();
    for &i in columns {
        if let Some(col) = published.columns.get_mut(i) {
            col.kind = ColumnKind::Text;
        }
    }
    published
}

impl ColumnEncryptor {
    /// Encrypt `columns` (indexes into `schema.columns`) with `keyring`'s active key.
    ///
    /// # Errors
    /// [`KcopError::Config`] when the keyring has no active key or a column does not exist.
    pub fn new(
        keyring: Arc<Keyring>,
        schema: &TableSchema,
        columns: Vec<usize>,
    ) -> Result<Self, KcopError> {
        let table = schema.id.to_string();
        if keyring.active().is_none() {
            let reason = CryptoError::NoActiveKey.to_string();
            return Err(KcopError::Config { table, reason });
        }
        if let Some(i) = columns.iter().find(|&&i| i >= schema.columns.len()) {
            let reason = format!("encrypted column #{i} does not exist");
            return Err(KcopError::Config { table, reason });
        }
        let published = published_schema(schema, &columns);
        Ok(Self {
            keyring,
            columns,
            table,
            schema: Arc::new(published),
            writer: JsonWriter {
                timestamps: TimestampForm::Iso,
            },
        })
    }

    /// The schema as published: encrypted columns hold text.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// A copy of `change` with the columns encrypted and [`ColumnEncryptor::schema`] as its
    /// table.
    ///
    /// # Errors
    /// [`KcopError::Encode`] when a value cannot be encrypted.
    pub fn encrypt(&self, change: &Change) -> Result<Change, KcopError> {
        Ok(Change {
            table: self.schema.clone(),
            op: change.op,
            before: self.row(change.before.as_ref())?,
            after: self.row(change.after.as_ref())?,
            op_index: change.op_index,
        })
    }

    fn row(&self, row: Option<&Row>) -> Result<Option<Row>, KcopError> {
        let Some(row) = row else {
            return Ok(None);
        };
        let mut out = row.clone();
        let mut plaintext = Zeroizing::new(Vec::with_capacity(64));
        for &i in &self.columns {
            let Some(slot) = out.get_mut(i) else {
                continue;
            };
            if slot.is_marker() {
                continue;
            }
            plaintext.clear();
            self.writer.value(&mut plaintext, slot);
            let column = &self.schema.columns[i].name;
            let sealed = self
                .keyring
                .seal(&self.table, column, &plaintext)
                .map_err(|e| KcopError::Encode {
                    table: self.table.clone(),
                    column: column.clone(),
                    reason: e.to_string(),
                })?;
            *slot = Value::Text(sealed);
        }
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::schema::{Column, TableId};

    fn keyring(nonce: [u8; NONCE_LEN]) -> Keyring {
        let mut ring = Keyring::new();
        ring.add("k1", &[7u8; KEY_LEN]).unwrap();
        ring.set_active("k1").unwrap();
        ring.nonces = NonceSource::Fixed(nonce);
        ring
    }

    #[test]
    fn layout_is_pinned() {
        let ring = keyring([1u8; NONCE_LEN]);
        let sealed = ring
            .seal("public.customers", "email", b"\"alice@example.com\"")
            .unwrap();
        insta::assert_snapshot!(sealed, @"ordo:enc:v1:k1:AQEBAQEBAQEBAQEBVIDl3vParGuptbFRHFJeUseWNl10DRpitqSxPk5p7F40N5I=");
        let body = STANDARD.decode(&sealed["ordo:enc:v1:k1:".len()..]).unwrap();
        assert_eq!(&body[..NONCE_LEN], &[1u8; NONCE_LEN]);
        assert_eq!(body.len(), NONCE_LEN + 19 + TAG_LEN);
    }

    #[test]
    fn column_values_are_encrypted_as_json_text() {
        let schema = TableSchema {
            id: TableId::new("public", "t"),
            version: 1,
            columns: ["id", "amount"]
                .iter()
                .map(|n| Column {
                    name: (*n).to_owned(),
                    type_name: "numeric".to_owned(),
                    kind: ColumnKind::Decimal {
                        precision: None,
                        scale: None,
                    },
                    nullable: true,
                })
                .collect(),
            key: vec![0],
        };
        let ring = Arc::new(keyring([2u8; NONCE_LEN]));
        let enc = ColumnEncryptor::new(ring.clone(), &schema, vec![1]).unwrap();
        let change = Change {
            table: Arc::new(schema),
            op: crate::Op::Update,
            before: Some(vec![Value::Int(1), Value::Unchanged]),
            after: Some(vec![
                Value::Int(1),
                Value::Decimal("12.50".parse().unwrap()),
            ]),
            op_index: 0,
        };
        let out = enc.encrypt(&change).unwrap();
        assert_eq!(out.before.as_ref().unwrap()[1], Value::Unchanged);
        let Value::Text(sealed) = &out.after.as_ref().unwrap()[1] else {
            panic!("not text");
        };
        let plain = ring.open("public.t", "amount", sealed).unwrap();
        assert_eq!(plain.as_slice(), b"\"12.50\"");
        assert_eq!(out.table.columns[1].kind, ColumnKind::Text);
    }
}
