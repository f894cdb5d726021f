//! Data keys and field encryption.

use zeroize::Zeroizing;

use super::{CryptoError, aead_key, blob_version, open_with, push_lp, seal_with};

/// The generation of data keys; carried in every field ciphertext. Version 1 is the only one
/// today (data keys themselves are never re-keyed, only re-wrapped).
pub const DATA_KEY_VERSION: u32 = 1;

/// One case's AES-256-GCM key, with its expanded key schedule (built once, reused for every
/// field of the case). The raw bytes are wiped on drop; `Debug` shows nothing.
pub struct DataKey {
    bytes: Zeroizing<[u8; 32]>,
    aead: ring::aead::LessSafeKey,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

/// Where a field ciphertext belongs. All of it is bound as associated data.
#[derive(Debug, Clone, Copy)]
pub struct FieldContext<'a> {
    pub cellule: &'a str,
    pub case_id: &'a str,
    /// The row: the case id for case fields, the note id for notes, the decision id…
    pub record_id: &'a str,
    /// The column: `situation`, `expectations`, `body`…
    pub field: &'a str,
}

impl FieldContext<'_> {
    fn aad(&self, version: u32) -> Vec<u8> {
        let mut aad = b"cellule-field\x01".to_vec();
        push_lp(&mut aad, self.cellule.as_bytes());
        push_lp(&mut aad, self.case_id.as_bytes());
        push_lp(&mut aad, self.record_id.as_bytes());
        push_lp(&mut aad, self.field.as_bytes());
        aad.extend_from_slice(&version.to_be_bytes());
        aad
    }
}

impl DataKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, CryptoError> {
        use ring::rand::{SecureRandom, SystemRandom};
        let mut key = Zeroizing::new([0u8; 32]);
        SystemRandom::new()
            .fill(key.as_mut())
            .map_err(|_| CryptoError::Rng)?;
        Self::from_bytes(key)
    }

    fn from_bytes(bytes: Zeroizing<[u8; 32]>) -> Result<Self, CryptoError> {
        let aead = aead_key(&bytes)?;
        Ok(Self { bytes, aead })
    }

    pub(crate) fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        let key: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::Format)?;
        Self::from_bytes(Zeroizing::new(key))
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        self.bytes.as_ref()
    }

    /// Encrypts one field.
    pub fn seal(&self, ctx: &FieldContext<'_>, plaintext: &str) -> Result<Vec<u8>, CryptoError> {
        seal_with(
            &self.aead,
            DATA_KEY_VERSION,
            &ctx.aad(DATA_KEY_VERSION),
            plaintext.as_bytes(),
        )
    }

    /// Decrypts one field; anything but the exact ciphertext sealed for `ctx` is an integrity error.
    pub fn open(
        &self,
        ctx: &FieldContext<'_>,
        blob: &[u8],
    ) -> Result<Zeroizing<String>, CryptoError> {
        let version = blob_version(blob)?;
        if version != DATA_KEY_VERSION {
            return Err(CryptoError::Format);
        }
        let mut bytes = open_with(&self.aead, &ctx.aad(version), blob)?;
        // Move the buffer into the string: no second copy of the plaintext.
        let text = String::from_utf8(std::mem::take(&mut *bytes)).map_err(|e| {
            let mut rejected = e.into_bytes();
            zeroize::Zeroize::zeroize(&mut rejected);
            CryptoError::Integrity
        })?;
        Ok(Zeroizing::new(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keyring;

    fn ctx<'a>(case_id: &'a str, record_id: &'a str, field: &'a str) -> FieldContext<'a> {
        FieldContext {
            cellule: "perpignan",
            case_id,
            record_id,
            field,
        }
    }

    #[test]
    fn round_trip() {
        let key = DataKey::generate().unwrap();
        let c = ctx("case-1", "note-1", "body");
        let blob = key.seal(&c, "texte confidentiel").unwrap();
        assert_eq!(key.open(&c, &blob).unwrap().as_str(), "texte confidentiel");
        assert!(!blob.windows(6).any(|w| w == b"confid"));
    }

    #[test]
    fn moved_ciphertexts_do_not_open() {
        let key = DataKey::generate().unwrap();
        let blob = key.seal(&ctx("case-1", "note-1", "body"), "x").unwrap();
        for other in [
            ctx("case-2", "note-1", "body"),
            ctx("case-1", "note-2", "body"),
            ctx("case-1", "note-1", "situation"),
        ] {
            assert_eq!(key.open(&other, &blob).unwrap_err(), CryptoError::Integrity);
        }
        let other_cellule = FieldContext {
            cellule: "narbonne",
            ..ctx("case-1", "note-1", "body")
        };
        assert_eq!(
            key.open(&other_cellule, &blob).unwrap_err(),
            CryptoError::Integrity
        );
        let other_key = DataKey::generate().unwrap();
        assert!(
            other_key
                .open(&ctx("case-1", "note-1", "body"), &blob)
                .is_err()
        );
    }

    #[test]
    fn every_flipped_bit_fails() {
        let key = DataKey::generate().unwrap();
        let c = ctx("case-1", "note-1", "body");
        let blob = key.seal(&c, "quelques mots").unwrap();
        for byte in 0..blob.len() {
            for bit in 0..8 {
                let mut bad = blob.clone();
                bad[byte] ^= 1 << bit;
                assert!(key.open(&c, &bad).is_err(), "byte {byte} bit {bit}");
            }
        }
        assert!(key.open(&c, &blob[..blob.len() - 1]).is_err());
        assert!(key.open(&c, &[]).is_err());
    }

    #[test]
    fn wrapped_keys_are_bound_to_their_case() {
        let ring = Keyring::generate(chrono::Utc::now()).unwrap();
        let key = DataKey::generate().unwrap();
        let wrapped = ring.wrap(&key, "perpignan", "case-1").unwrap();
        assert_eq!(Keyring::wrapped_version(&wrapped).unwrap(), 1);
        let back = ring.unwrap(&wrapped, "perpignan", "case-1").unwrap();
        assert_eq!(back.bytes(), key.bytes());
        assert!(ring.unwrap(&wrapped, "perpignan", "case-2").is_err());
        assert!(ring.unwrap(&wrapped, "narbonne", "case-1").is_err());
        assert!(format!("{key:?}").contains("redacted"));
    }
}
