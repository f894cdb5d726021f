//! Per-case envelope encryption (docs/design.md §8).
//!
//! - A **keyring** of key-encryption keys (KEKs), versioned, kept outside the database
//!   ([`keyring`]).
//! - One random 256-bit AES-256-GCM **data key** per case, stored only wrapped by the current KEK
//!   ([`envelope`]).
//! - Every free-text field is sealed with its case's data key; the associated data binds the
//!   cellule, the case, the record id, the field name and the key version, so a ciphertext moved
//!   to another row, field or case does not open.
//!
//! Formats (all integers big-endian):
//!
//! | blob | layout |
//! |---|---|
//! | wrapped data key | `0x01` · KEK version (u32) · nonce (12) · AES-256-GCM(data key) with tag (48) |
//! | field ciphertext | `0x01` · data-key version (u32) · nonce (12) · AES-256-GCM(text) with tag |
//! | key check value  | `0x01` · KEK version (u32) · nonce (12) · AES-256-GCM(constant) with tag |
//!
//! Field ciphertexts carry the *data-key* version, not the KEK version: rotating KEKs re-wraps
//! data keys and never touches content. A blob that does not open is an integrity error: it is
//! never returned as text.

pub mod audit_mac;
pub mod envelope;
pub mod keyring;

pub use audit_mac::{AuditMac, AuditMacSource, AuditMacs};
pub use envelope::{DataKey, FieldContext};
pub use keyring::{Keyring, KeyringError};

/// Why a blob did not open. Carries no key material and no plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("ciphertext failed authentication")]
    Integrity,
    #[error("unsupported ciphertext format")]
    Format,
    #[error("KEK version {0} is not in the keyring")]
    UnknownKek(u32),
    #[error("random number generator failure")]
    Rng,
}

pub(crate) const FORMAT_V1: u8 = 1;
pub(crate) const NONCE_LEN: usize = 12;
pub(crate) const HEADER_LEN: usize = 1 + 4 + NONCE_LEN;

/// Appends `bytes` with a u32 length prefix, so that concatenated fields cannot be confused.
pub(crate) fn push_lp(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// An AES-256-GCM key ready for use (key schedule expanded once).
pub(crate) fn aead_key(key: &[u8; 32]) -> Result<ring::aead::LessSafeKey, CryptoError> {
    use ring::aead::{AES_256_GCM, LessSafeKey, UnboundKey};
    Ok(LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, key).map_err(|_| CryptoError::Format)?,
    ))
}

/// Seals `plaintext` under `key` as `FORMAT_V1 · version · nonce · ct+tag`.
pub(crate) fn seal_blob(
    key: &[u8; 32],
    version: u32,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    seal_with(&aead_key(key)?, version, aad, plaintext)
}

/// [`seal_blob`] with a prepared key.
pub(crate) fn seal_with(
    key: &ring::aead::LessSafeKey,
    version: u32,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    use ring::aead::{Aad, Nonce};
    use ring::rand::{SecureRandom, SystemRandom};
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| CryptoError::Rng)?;
    let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + 16);
    out.push(FORMAT_V1);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    // Encrypt the payload in place, after the header.
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut out[HEADER_LEN..],
        )
        .map_err(|_| CryptoError::Integrity)?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

/// Reads the version of a blob without opening it.
pub(crate) fn blob_version(blob: &[u8]) -> Result<u32, CryptoError> {
    if blob.len() < HEADER_LEN + 16 || blob[0] != FORMAT_V1 {
        return Err(CryptoError::Format);
    }
    Ok(u32::from_be_bytes([blob[1], blob[2], blob[3], blob[4]]))
}

/// Opens a blob made by [`seal_blob`]; `aad` must be rebuilt by the caller with the version
/// read from the blob.
pub(crate) fn open_blob(
    key: &[u8; 32],
    aad: &[u8],
    blob: &[u8],
) -> Result<zeroize::Zeroizing<Vec<u8>>, CryptoError> {
    open_with(&aead_key(key)?, aad, blob)
}

/// [`open_blob`] with a prepared key: one copy of the ciphertext, decrypted in place.
pub(crate) fn open_with(
    key: &ring::aead::LessSafeKey,
    aad: &[u8],
    blob: &[u8],
) -> Result<zeroize::Zeroizing<Vec<u8>>, CryptoError> {
    use ring::aead::{Aad, Nonce};
    blob_version(blob)?;
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&blob[5..HEADER_LEN]);
    let mut body = zeroize::Zeroizing::new(blob[HEADER_LEN..].to_vec());
    let len = key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut body,
        )
        .map_err(|_| CryptoError::Integrity)?
        .len();
    body.truncate(len);
    Ok(body)
}
