//! Column encryption: round trips, key rotation, and every way a value must fail to decrypt.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ordo_kcop::encrypt::{CryptoError, KEY_LEN, Keyring, PREFIX, parse_key};

const TABLE: &str = "public.customers";

fn keyring(keys: &[(&str, u8)], active: &str) -> Keyring {
    let mut ring = Keyring::new();
    for (id, byte) in keys {
        ring.add(id, &[*byte; KEY_LEN]).unwrap();
    }
    ring.set_active(active).unwrap();
    ring
}

#[test]
fn round_trips_with_a_fresh_nonce_each_time() {
    let ring = keyring(&[("k1", 1)], "k1");
    let a = ring.seal(TABLE, "email", b"\"a@example.com\"").unwrap();
    let b = ring.seal(TABLE, "email", b"\"a@example.com\"").unwrap();
    assert_ne!(a, b);
    assert!(a.starts_with("ordo:enc:v1:k1:"));
    for sealed in [&a, &b] {
        let plain = ring.open(TABLE, "email", sealed).unwrap();
        assert_eq!(plain.as_slice(), b"\"a@example.com\"");
    }
}

#[test]
fn old_keys_still_decrypt_after_rotation() {
    let mut ring = keyring(&[("k1", 1)], "k1");
    let old = ring.seal(TABLE, "email", b"1").unwrap();
    ring.add("k2", &[2; KEY_LEN]).unwrap();
    ring.set_active("k2").unwrap();
    let new = ring.seal(TABLE, "email", b"2").unwrap();
    assert!(new.starts_with("ordo:enc:v1:k2:"));
    assert_eq!(ring.open(TABLE, "email", &old).unwrap().as_slice(), b"1");
    assert_eq!(ring.open(TABLE, "email", &new).unwrap().as_slice(), b"2");
}

#[test]
fn unknown_key_id_is_named() {
    let sealed = keyring(&[("k1", 1)], "k1")
        .seal(TABLE, "email", b"1")
        .unwrap();
    let other = keyring(&[("k9", 1)], "k9");
    assert_eq!(
        other.open(TABLE, "email", &sealed).unwrap_err(),
        CryptoError::UnknownKey {
            key_id: "k1".to_owned()
        }
    );
}

#[test]
fn wrong_key_material_fails_authentication() {
    let sealed = keyring(&[("k1", 1)], "k1")
        .seal(TABLE, "email", b"1")
        .unwrap();
    let err = keyring(&[("k1", 2)], "k1")
        .open(TABLE, "email", &sealed)
        .unwrap_err();
    assert!(matches!(err, CryptoError::Authentication { .. }), "{err}");
}

#[test]
fn tampered_ciphertext_fails() {
    let ring = keyring(&[("k1", 1)], "k1");
    let sealed = ring.seal(TABLE, "email", b"\"a@example.com\"").unwrap();
    let (head, body) = sealed.split_at("ordo:enc:v1:k1:".len());
    let mut bytes = STANDARD.decode(body).unwrap();
    for at in [0, 12, bytes.len() - 1] {
        bytes[at] ^= 1;
        let forged = format!("{head}{}", STANDARD.encode(&bytes));
        let err = ring.open(TABLE, "email", &forged).unwrap_err();
        assert!(matches!(err, CryptoError::Authentication { .. }), "{err}");
        bytes[at] ^= 1;
    }
    let truncated = format!("{head}{}", STANDARD.encode(&bytes[..20]));
    assert!(matches!(
        ring.open(TABLE, "email", &truncated),
        Err(CryptoError::Malformed(_))
    ));
}

#[test]
fn a_value_moved_to_another_column_or_table_fails() {
    let ring = keyring(&[("k1", 1)], "k1");
    let sealed = ring.seal(TABLE, "email", b"1").unwrap();
    let err = ring.open(TABLE, "phone", &sealed).unwrap_err();
    assert_eq!(
        err,
        CryptoError::Authentication {
            key_id: "k1".to_owned(),
            aad: "public.customers/phone".to_owned()
        }
    );
    assert!(ring.open("public.other", "email", &sealed).is_err());
}

#[test]
fn malformed_values_are_refused() {
    let ring = keyring(&[("k1", 1)], "k1");
    assert_eq!(
        ring.open(TABLE, "c", "plain").unwrap_err(),
        CryptoError::NotEncrypted
    );
    assert!(matches!(
        ring.open(TABLE, "c", &format!("{PREFIX}k1")),
        Err(CryptoError::Malformed(_))
    ));
    assert!(matches!(
        ring.open(TABLE, "c", &format!("{PREFIX}k1:not base64!")),
        Err(CryptoError::Malformed(_))
    ));
}

#[test]
fn keys_are_hex_or_base64_of_32_bytes() {
    let hex = "00".repeat(31) + "ff";
    assert_eq!(parse_key(&format!("{hex}\n")).unwrap()[31], 0xff);
    let b64 = STANDARD.encode([9u8; 32]);
    assert_eq!(*parse_key(&b64).unwrap(), [9u8; 32]);
    let short = parse_key(&STANDARD.encode([9u8; 16])).unwrap_err();
    assert!(short.to_string().contains("decodes to 16 bytes"), "{short}");
    let junk = parse_key("not a key").unwrap_err().to_string();
    assert!(!junk.contains("not a key"), "{junk}");
    let mut ring = Keyring::new();
    assert!(matches!(
        ring.add("k1", &[0; 16]),
        Err(CryptoError::KeyMaterial(_))
    ));
    assert!(matches!(
        ring.add("k:1", &[0; 32]),
        Err(CryptoError::KeyId(_))
    ));
    assert_eq!(
        ring.seal(TABLE, "c", b"1").unwrap_err(),
        CryptoError::NoActiveKey
    );
}
