//! The keyring: versioned key-encryption keys (KEKs), kept outside the database.
//!
//! Stored as JSON in a file with 0600 permissions (`<data_dir>/keyring.json` by default,
//! generated on first start with a loud hint to back it up), or given whole in the
//! `CELLULE_KEYRING` environment variable. Losing the keyring loses every case: back it up apart
//! from the database backups.
//!
//! ```json
//! {"format": 1, "current": 2, "keks": [{"version": 1, "key": "<base64>", "created_at": "…"}, …],
//!  "signing_keys": [{"key": "<base64 PKCS#8 Ed25519>", "created_at": "…"}],
//!  "audit_mac_keys": [{"version": 1, "key": "<base64>", "created_at": "…"}]}
//! ```
//!
//! `signing_keys` are the Ed25519 keys that sign audit checkpoints (docs/design.md §9), separate from the
//! KEKs; the last one signs, the earlier ones still verify older checkpoints. A keyring file
//! written before the audit log existed gets one added on first start.
//!
//! `audit_mac_keys` are the secrets that authenticate every audit entry
//! ([`super::audit_mac`]); the last one authenticates new entries, the earlier ones still verify
//! older entries. A keyring file written before them gets one added on first start. Rotation
//! (`cellule keys rotate`) adds a KEK, a signing key and a MAC key; retiring a KEK leaves the
//! audit keys alone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use super::envelope::DataKey;
use super::{CryptoError, blob_version, open_blob, push_lp, seal_blob};
use crate::fsutil;

const CHECK_CONSTANT: &[u8] = b"cellule key check value v1";

/// One KEK. `Debug` shows the version only.
struct Kek {
    key: Zeroizing<[u8; 32]>,
    created_at: DateTime<Utc>,
}

/// One audit signing key (Ed25519). `Debug` is never derived.
struct SigningKey {
    pkcs8: Zeroizing<Vec<u8>>,
    pair: ring::signature::Ed25519KeyPair,
    created_at: DateTime<Utc>,
}

/// One audit MAC key. `Debug` is never derived.
struct MacKey {
    key: Zeroizing<[u8; 32]>,
    created_at: DateTime<Utc>,
}

/// The versioned KEKs and which one wraps new data keys, the audit signing keys and the audit
/// MAC keys.
pub struct Keyring {
    current: u32,
    keks: BTreeMap<u32, Kek>,
    signing: Vec<SigningKey>,
    macs: BTreeMap<u32, MacKey>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current)
            .field("versions", &self.keks.keys().collect::<Vec<_>>())
            .field("signing_keys", &self.signing.len())
            .field("audit_mac_keys", &self.macs.keys().collect::<Vec<_>>())
            .field("keys", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("keyring {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("keyring is not valid: {0}")]
    Invalid(String),
    #[error("keyring does not match this database: {0}")]
    Mismatch(String),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyringFile {
    format: u32,
    current: u32,
    keks: Vec<KekFile>,
    #[serde(default)]
    signing_keys: Vec<SigningKeyFile>,
    #[serde(default)]
    audit_mac_keys: Vec<KekFile>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SigningKeyFile {
    key: String,
    created_at: DateTime<Utc>,
}

impl Drop for SigningKeyFile {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

fn signing_key(pkcs8: Zeroizing<Vec<u8>>, created_at: DateTime<Utc>) -> Option<SigningKey> {
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(&pkcs8).ok()?;
    Some(SigningKey {
        pkcs8,
        pair,
        created_at,
    })
}

fn new_signing_key(now: DateTime<Utc>) -> Result<SigningKey, CryptoError> {
    let doc = ring::signature::Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .map_err(|_| CryptoError::Rng)?;
    signing_key(Zeroizing::new(doc.as_ref().to_vec()), now).ok_or(CryptoError::Rng)
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KekFile {
    version: u32,
    key: String,
    created_at: DateTime<Utc>,
}

impl Drop for KekFile {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

fn random_key() -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    let mut key = Zeroizing::new([0u8; 32]);
    SystemRandom::new()
        .fill(key.as_mut())
        .map_err(|_| CryptoError::Rng)?;
    Ok(key)
}

impl Keyring {
    /// A new keyring with one random KEK (version 1).
    pub fn generate(now: DateTime<Utc>) -> Result<Self, CryptoError> {
        let mut keks = BTreeMap::new();
        keks.insert(
            1,
            Kek {
                key: random_key()?,
                created_at: now,
            },
        );
        Ok(Self {
            current: 1,
            keks,
            signing: vec![new_signing_key(now)?],
            macs: BTreeMap::from([(
                1,
                MacKey {
                    key: random_key()?,
                    created_at: now,
                },
            )]),
        })
    }

    /// Parses the JSON form (file contents or `CELLULE_KEYRING`).
    pub fn from_json(text: &str) -> Result<Self, KeyringError> {
        let file: KeyringFile = serde_json::from_str(text).map_err(|e| {
            KeyringError::Invalid(format!(
                "not a keyring document ({:?} error at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            ))
        })?;
        if file.format != 1 {
            return Err(KeyringError::Invalid(format!(
                "unsupported format {}",
                file.format
            )));
        }
        let mut keks = BTreeMap::new();
        for kek in &file.keks {
            let bytes = Zeroizing::new(STANDARD.decode(kek.key.as_bytes()).map_err(|_| {
                KeyringError::Invalid(format!("KEK version {} is not base64", kek.version))
            })?);
            let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                KeyringError::Invalid(format!("KEK version {} is not 32 bytes", kek.version))
            })?;
            if keks
                .insert(
                    kek.version,
                    Kek {
                        key: Zeroizing::new(key),
                        created_at: kek.created_at,
                    },
                )
                .is_some()
            {
                return Err(KeyringError::Invalid(format!(
                    "KEK version {} appears twice",
                    kek.version
                )));
            }
        }
        if !keks.contains_key(&file.current) {
            return Err(KeyringError::Invalid(format!(
                "current version {} has no key",
                file.current
            )));
        }
        let mut signing = Vec::new();
        for (i, k) in file.signing_keys.iter().enumerate() {
            let bytes = Zeroizing::new(STANDARD.decode(k.key.as_bytes()).map_err(|_| {
                KeyringError::Invalid(format!("signing key {} is not base64", i + 1))
            })?);
            signing.push(signing_key(bytes, k.created_at).ok_or_else(|| {
                KeyringError::Invalid(format!("signing key {} is not a PKCS#8 Ed25519 key", i + 1))
            })?);
        }
        let mut macs = BTreeMap::new();
        for k in &file.audit_mac_keys {
            let bytes = Zeroizing::new(STANDARD.decode(k.key.as_bytes()).map_err(|_| {
                KeyringError::Invalid(format!("audit MAC key {} is not base64", k.version))
            })?);
            let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                KeyringError::Invalid(format!("audit MAC key {} is not 32 bytes", k.version))
            })?;
            let mac = MacKey {
                key: Zeroizing::new(key),
                created_at: k.created_at,
            };
            if macs.insert(k.version, mac).is_some() {
                return Err(KeyringError::Invalid(format!(
                    "audit MAC key {} appears twice",
                    k.version
                )));
            }
        }
        Ok(Self {
            current: file.current,
            keks,
            signing,
            macs,
        })
    }

    fn to_json(&self) -> Zeroizing<String> {
        let file = KeyringFile {
            format: 1,
            current: self.current,
            keks: self
                .keks
                .iter()
                .map(|(version, kek)| KekFile {
                    version: *version,
                    key: STANDARD.encode(kek.key.as_ref()),
                    created_at: kek.created_at,
                })
                .collect(),
            signing_keys: self
                .signing
                .iter()
                .map(|k| SigningKeyFile {
                    key: STANDARD.encode(k.pkcs8.as_slice()),
                    created_at: k.created_at,
                })
                .collect(),
            audit_mac_keys: self
                .macs
                .iter()
                .map(|(version, k)| KekFile {
                    version: *version,
                    key: STANDARD.encode(k.key.as_ref()),
                    created_at: k.created_at,
                })
                .collect(),
        };
        Zeroizing::new(serde_json::to_string_pretty(&file).unwrap_or_default())
    }

    /// Reads a keyring file, refusing one that other local users can read.
    pub fn load(path: &Path) -> Result<Self, KeyringError> {
        let err = |message: String| KeyringError::File {
            path: path.to_path_buf(),
            message,
        };
        fsutil::check_private(path).map_err(|e| err(e.to_string()))?;
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?);
        Self::from_json(&text).map_err(|e| err(e.to_string()))
    }

    /// Reads the keyring file, or creates it (0600) when missing. The flag tells whether it was
    /// created.
    pub fn load_or_create(path: &Path, now: DateTime<Utc>) -> Result<(Self, bool), KeyringError> {
        if path.exists() {
            return Ok((Self::load(path)?, false));
        }
        let keyring = Self::generate(now)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fsutil::create_private_dir(dir).map_err(|e| KeyringError::File {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        }
        fsutil::create_private_file(path, keyring.to_json().as_bytes()).map_err(|e| {
            KeyringError::File {
                path: path.to_path_buf(),
                message: e.to_string(),
            }
        })?;
        Ok((keyring, true))
    }

    /// Writes the keyring atomically (temporary file 0600, fsync, rename).
    pub fn save(&self, path: &Path) -> Result<(), KeyringError> {
        let err = |message: String| KeyringError::File {
            path: path.to_path_buf(),
            message,
        };
        let tmp = path.with_extension("json.tmp");
        let _ = std::fs::remove_file(&tmp);
        fsutil::create_private_file(&tmp, self.to_json().as_bytes())
            .map_err(|e| err(e.to_string()))?;
        std::fs::rename(&tmp, path).map_err(|e| err(e.to_string()))
    }

    /// Adds an audit signing key when the keyring has none (keyrings written before the audit
    /// log); `true` when one was added.
    pub fn ensure_signing_key(&mut self, now: DateTime<Utc>) -> Result<bool, CryptoError> {
        if self.signing.is_empty() {
            self.signing.push(new_signing_key(now)?);
            return Ok(true);
        }
        Ok(false)
    }

    /// Adds an audit MAC key when the keyring has none (keyrings written before them); `true`
    /// when one was added.
    pub fn ensure_audit_mac_key(&mut self, now: DateTime<Utc>) -> Result<bool, CryptoError> {
        if self.macs.is_empty() {
            self.add_audit_mac_key(now)?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Adds an audit MAC key version, which authenticates new entries from now on; returns it.
    pub fn add_audit_mac_key(&mut self, now: DateTime<Utc>) -> Result<u32, CryptoError> {
        let next = self.macs.keys().next_back().copied().unwrap_or(0) + 1;
        self.macs.insert(
            next,
            MacKey {
                key: random_key()?,
                created_at: now,
            },
        );
        Ok(next)
    }

    /// The key that authenticates new audit entries.
    pub fn audit_mac(&self) -> Option<super::AuditMac> {
        self.macs
            .iter()
            .next_back()
            .map(|(version, k)| super::AuditMac::new(*version, k.key.as_ref()))
    }

    /// Every audit MAC key, for verification.
    pub fn audit_macs(&self) -> super::AuditMacs {
        super::AuditMacs::new(
            self.macs
                .iter()
                .map(|(version, k)| super::AuditMac::new(*version, k.key.as_ref()))
                .collect(),
        )
    }

    /// Adds a new audit signing key, which signs from now on.
    pub fn add_signing_key(&mut self, now: DateTime<Utc>) -> Result<(), CryptoError> {
        self.signing.push(new_signing_key(now)?);
        Ok(())
    }

    /// The key pair that signs new audit checkpoints.
    pub fn audit_signing_key(&self) -> Option<&ring::signature::Ed25519KeyPair> {
        self.signing.last().map(|k| &k.pair)
    }

    /// Public halves of every audit signing key, oldest first.
    pub fn audit_public_keys(&self) -> Vec<Vec<u8>> {
        use ring::signature::KeyPair;
        self.signing
            .iter()
            .map(|k| k.pair.public_key().as_ref().to_vec())
            .collect()
    }

    pub fn current_version(&self) -> u32 {
        self.current
    }

    pub fn versions(&self) -> Vec<u32> {
        self.keks.keys().copied().collect()
    }

    pub fn contains(&self, version: u32) -> bool {
        self.keks.contains_key(&version)
    }

    /// Adds a KEK version and makes it current; returns it.
    pub fn add_version(&mut self, now: DateTime<Utc>) -> Result<u32, CryptoError> {
        let next = self.keks.keys().next_back().copied().unwrap_or(0) + 1;
        self.keks.insert(
            next,
            Kek {
                key: random_key()?,
                created_at: now,
            },
        );
        self.current = next;
        Ok(next)
    }

    /// Removes a KEK version (the caller checks that no data key uses it).
    pub fn retire(&mut self, version: u32) -> Result<(), KeyringError> {
        if version == self.current {
            return Err(KeyringError::Refused(format!(
                "KEK version {version} is current; rotate first"
            )));
        }
        if self.keks.remove(&version).is_none() {
            return Err(KeyringError::Refused(format!(
                "KEK version {version} is not in the keyring"
            )));
        }
        Ok(())
    }

    fn kek(&self, version: u32) -> Result<&Kek, CryptoError> {
        self.keks
            .get(&version)
            .ok_or(CryptoError::UnknownKek(version))
    }

    fn dek_aad(cellule: &str, case_id: &str, version: u32) -> Vec<u8> {
        let mut aad = b"cellule-dek\x01".to_vec();
        push_lp(&mut aad, cellule.as_bytes());
        push_lp(&mut aad, case_id.as_bytes());
        aad.extend_from_slice(&version.to_be_bytes());
        aad
    }

    /// Wraps a data key with the current KEK, bound to its cellule and case.
    pub fn wrap(
        &self,
        key: &DataKey,
        cellule: &str,
        case_id: &str,
    ) -> Result<Vec<u8>, CryptoError> {
        let kek = self.kek(self.current)?;
        seal_blob(
            &kek.key,
            self.current,
            &Self::dek_aad(cellule, case_id, self.current),
            key.bytes(),
        )
    }

    /// Unwraps a data key with whichever KEK version wrapped it.
    pub fn unwrap(
        &self,
        blob: &[u8],
        cellule: &str,
        case_id: &str,
    ) -> Result<DataKey, CryptoError> {
        let version = blob_version(blob)?;
        let kek = self.kek(version)?;
        let bytes = open_blob(&kek.key, &Self::dek_aad(cellule, case_id, version), blob)?;
        DataKey::from_slice(&bytes)
    }

    /// The KEK version a wrapped data key uses.
    pub fn wrapped_version(blob: &[u8]) -> Result<u32, CryptoError> {
        blob_version(blob)
    }

    /// A check value for one KEK version: stored in the database, it lets start-up detect a wrong
    /// keyring before any case is touched.
    pub fn check_value(&self, version: u32) -> Result<Vec<u8>, CryptoError> {
        let kek = self.kek(version)?;
        seal_blob(&kek.key, version, &Self::check_aad(version), CHECK_CONSTANT)
    }

    /// Whether `blob` is this keyring's check value for `version`.
    pub fn verify_check(&self, version: u32, blob: &[u8]) -> bool {
        let Ok(kek) = self.kek(version) else {
            return false;
        };
        blob_version(blob) == Ok(version)
            && open_blob(&kek.key, &Self::check_aad(version), blob)
                .is_ok_and(|p| p.as_slice() == CHECK_CONSTANT)
    }

    fn check_aad(version: u32) -> Vec<u8> {
        let mut aad = b"cellule-kcv\x01".to_vec();
        aad.extend_from_slice(&version.to_be_bytes());
        aad
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_debug_redaction() {
        let mut ring = Keyring::generate(Utc::now()).unwrap();
        ring.add_version(Utc::now()).unwrap();
        let json = ring.to_json();
        let back = Keyring::from_json(&json).unwrap();
        assert_eq!(back.versions(), vec![1, 2]);
        assert_eq!(back.current_version(), 2);
        let shown = format!("{back:?}");
        let key_b64 = STANDARD.encode(back.keks[&1].key.as_ref());
        assert!(!shown.contains(&key_b64));
        assert!(shown.contains("redacted"));
        assert_eq!(back.audit_public_keys(), ring.audit_public_keys());
        assert_eq!(back.audit_public_keys().len(), 1);
    }

    #[test]
    fn older_keyrings_get_a_signing_key() {
        let ring = Keyring::generate(Utc::now()).unwrap();
        let json = ring.to_json();
        let mut doc: serde_json::Value = serde_json::from_str(&json).unwrap();
        doc.as_object_mut().unwrap().remove("signing_keys");
        let mut old = Keyring::from_json(&doc.to_string()).unwrap();
        assert!(old.audit_signing_key().is_none());
        assert!(old.ensure_signing_key(Utc::now()).unwrap());
        assert!(!old.ensure_signing_key(Utc::now()).unwrap());
        assert!(old.audit_signing_key().is_some());
    }

    #[test]
    fn invalid_documents_are_refused() {
        for text in [
            "",
            "{",
            r#"{"format":1,"current":1,"keks":[]}"#,
            r#"{"format":2,"current":1,"keks":[]}"#,
            r#"{"format":1,"current":1,"keks":[{"version":1,"key":"c2hvcnQ=","created_at":"2026-01-01T00:00:00Z"}]}"#,
        ] {
            assert!(Keyring::from_json(text).is_err(), "{text}");
        }
    }

    #[test]
    fn check_values_detect_another_keyring() {
        let a = Keyring::generate(Utc::now()).unwrap();
        let b = Keyring::generate(Utc::now()).unwrap();
        let check = a.check_value(1).unwrap();
        assert!(a.verify_check(1, &check));
        assert!(!b.verify_check(1, &check));
        assert!(!a.verify_check(2, &check));
    }

    #[test]
    fn retire_refuses_current_and_unknown() {
        let mut ring = Keyring::generate(Utc::now()).unwrap();
        assert!(ring.retire(1).is_err());
        ring.add_version(Utc::now()).unwrap();
        assert!(ring.retire(7).is_err());
        ring.retire(1).unwrap();
        assert_eq!(ring.versions(), vec![2]);
    }
}
