//! The key service: the keyring in force, checked against the database, and the operations that
//! need both (case keys, linkage secrets, rotation, retirement).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use zeroize::Zeroizing;

use crate::crypto::{CryptoError, DataKey, Keyring, KeyringError};
use crate::storage::{Database, Rewrapped, StorageError, WrappedKey};

/// Where the keyring came from.
#[derive(Debug, Clone)]
pub enum KeyringSource {
    File(PathBuf),
    /// Given whole in configuration or `CELLULE_KEYRING`: read-only.
    Inline,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("integrity failure on {what}")]
    Integrity { what: String },
}

impl From<CryptoError> for KeyError {
    fn from(e: CryptoError) -> Self {
        KeyError::Keyring(KeyringError::Crypto(e))
    }
}

impl crate::crypto::AuditMacSource for KeyService {
    fn current_audit_mac(&self) -> Option<crate::crypto::AuditMac> {
        self.keyring().audit_mac()
    }
}

/// Progress of a re-wrap: keys done so far and keys left when the batch started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RewrapProgress {
    pub done: u64,
    pub remaining: u64,
}

/// Test hook for re-wrapping: make the n-th batch fail half-way (its transaction rolls back).
#[derive(Debug, Clone, Copy, Default)]
pub struct RewrapOptions {
    pub batch_size: i64,
    pub fail_in_batch: Option<u64>,
}

pub struct KeyService {
    keyring: RwLock<Arc<Keyring>>,
    source: KeyringSource,
    linkage: RwLock<HashMap<String, Arc<Zeroizing<Vec<u8>>>>>,
}

impl std::fmt::Debug for KeyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyService")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

fn linkage_id(cellule: &str) -> String {
    format!("linkage:{cellule}")
}

impl KeyService {
    pub fn new(keyring: Keyring, source: KeyringSource) -> Self {
        Self {
            keyring: RwLock::new(Arc::new(keyring)),
            source,
            linkage: RwLock::new(HashMap::new()),
        }
    }

    pub fn keyring(&self) -> Arc<Keyring> {
        match self.keyring.read() {
            Ok(k) => k.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn source(&self) -> &KeyringSource {
        &self.source
    }

    /// Every audit MAC key, the keyring file re-read first (a rotation by the command line
    /// while serving adds a version that the entries written since carry).
    pub fn audit_macs(&self) -> crate::crypto::AuditMacs {
        self.reload();
        self.keyring().audit_macs()
    }

    /// Refuses a keyring that does not match the database: every stored check value must open
    /// with the keyring's KEK of that version, and every KEK version still wrapping keys must be
    /// present. Versions new to the database get their check value recorded.
    pub async fn reconcile(&self, db: &dyn Database, now: DateTime<Utc>) -> Result<(), KeyError> {
        let keyring = self.keyring();
        let checks = db.kek_checks().await?;
        let counts: HashMap<i64, i64> = db.wrapped_key_counts().await?.into_iter().collect();
        for (version, check) in &checks {
            let v = u32::try_from(*version).unwrap_or(u32::MAX);
            if keyring.contains(v) {
                if !keyring.verify_check(v, check) {
                    return Err(KeyringError::Mismatch(format!(
                        "KEK version {v} does not open this database's check value (wrong keyring?)"
                    ))
                    .into());
                }
            } else if counts.get(version).copied().unwrap_or(0) > 0 {
                return Err(KeyringError::Mismatch(format!(
                    "KEK version {v} is missing but still wraps {} keys",
                    counts[version]
                ))
                .into());
            }
        }
        for (version, count) in &counts {
            let v = u32::try_from(*version).unwrap_or(u32::MAX);
            if *count > 0 && !keyring.contains(v) {
                return Err(KeyringError::Mismatch(format!(
                    "KEK version {v} is missing but wraps {count} keys"
                ))
                .into());
            }
        }
        for v in keyring.versions() {
            if !checks.iter().any(|(version, _)| *version == i64::from(v)) {
                db.insert_kek_check(i64::from(v), &keyring.check_value(v)?, now)
                    .await?;
            }
        }
        Ok(())
    }

    /// Re-reads a file keyring (after a rotation by the CLI while serving).
    fn reload(&self) -> bool {
        let KeyringSource::File(path) = &self.source else {
            return false;
        };
        match Keyring::load(path) {
            Ok(fresh) => {
                if let Ok(mut k) = self.keyring.write() {
                    *k = Arc::new(fresh);
                }
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "keyring reload failed");
                false
            }
        }
    }

    /// A new data key for a case, and its wrapped form.
    pub fn new_case_key(
        &self,
        cellule: &str,
        case_id: &str,
    ) -> Result<(DataKey, WrappedKey), CryptoError> {
        let keyring = self.keyring();
        let key = DataKey::generate()?;
        let wrapped = keyring.wrap(&key, cellule, case_id)?;
        Ok((
            key,
            WrappedKey {
                id: case_id.to_owned(),
                cellule: cellule.to_owned(),
                case_id: Some(case_id.to_owned()),
                kek_version: i64::from(keyring.current_version()),
                wrapped,
            },
        ))
    }

    /// Unwraps a case's data key (re-reading the keyring once if it names an unknown version).
    pub fn open_case_key(
        &self,
        cellule: &str,
        case_id: &str,
        wrapped: &[u8],
    ) -> Result<DataKey, CryptoError> {
        match self.keyring().unwrap(wrapped, cellule, case_id) {
            Err(CryptoError::UnknownKek(_)) if self.reload() => {
                self.keyring().unwrap(wrapped, cellule, case_id)
            }
            other => other,
        }
    }

    /// The cellule's linkage secret if this process already holds it (no database access).
    pub fn cached_linkage_secret(&self, cellule: &str) -> Option<Arc<Zeroizing<Vec<u8>>>> {
        self.linkage.read().ok()?.get(cellule).cloned()
    }

    /// The cellule's linkage secret, created (and wrapped) on first use.
    pub async fn linkage_secret(
        &self,
        db: &dyn Database,
        cellule: &str,
    ) -> Result<Arc<Zeroizing<Vec<u8>>>, KeyError> {
        if let Some(secret) = self.cached_linkage_secret(cellule) {
            return Ok(secret);
        }
        let id = linkage_id(cellule);
        if db.get_wrapped_key(&id).await?.is_none() {
            let keyring = self.keyring();
            let fresh = DataKey::generate()?;
            db.insert_wrapped_key_if_absent(&WrappedKey {
                id: id.clone(),
                cellule: cellule.to_owned(),
                case_id: None,
                kek_version: i64::from(keyring.current_version()),
                wrapped: keyring.wrap(&fresh, cellule, &id)?,
            })
            .await?;
        }
        let stored = db
            .get_wrapped_key(&id)
            .await?
            .ok_or(StorageError::NotFound("linkage secret"))?;
        let key = self
            .open_case_key(cellule, &id, &stored.wrapped)
            .map_err(|_| KeyError::Integrity {
                what: format!("linkage secret of {cellule}"),
            })?;
        let secret = Arc::new(Zeroizing::new(key.bytes().to_vec()));
        if let Ok(mut cache) = self.linkage.write() {
            cache.insert(cellule.to_owned(), secret.clone());
        }
        Ok(secret)
    }

    /// Re-wraps every key not on the current KEK version, in batches (each batch one
    /// transaction). Safe to interrupt and run again: it resumes where it stopped.
    pub async fn rewrap(
        &self,
        db: &dyn Database,
        options: RewrapOptions,
        mut progress: impl FnMut(RewrapProgress),
    ) -> Result<RewrapProgress, KeyError> {
        let keyring = self.keyring();
        let current = i64::from(keyring.current_version());
        let batch_size = options.batch_size.max(1);
        let mut done = 0u64;
        let mut batch_no = 0u64;
        loop {
            let remaining: i64 = db
                .wrapped_key_counts()
                .await?
                .into_iter()
                .filter(|(v, _)| *v != current)
                .map(|(_, n)| n)
                .sum();
            let keys = db.keys_not_on(current, batch_size).await?;
            if keys.is_empty() {
                let p = RewrapProgress { done, remaining: 0 };
                progress(p);
                return Ok(p);
            }
            progress(RewrapProgress {
                done,
                remaining: u64::try_from(remaining).unwrap_or(0),
            });
            let mut batch = Vec::with_capacity(keys.len());
            for key in &keys {
                let binding = key.case_id.clone().unwrap_or_else(|| key.id.clone());
                let data_key = keyring
                    .unwrap(&key.wrapped, &key.cellule, &binding)
                    .map_err(|_| KeyError::Integrity {
                        what: format!("wrapped key {}", key.id),
                    })?;
                batch.push(Rewrapped {
                    id: key.id.clone(),
                    old_version: key.kek_version,
                    new_version: current,
                    wrapped: keyring.wrap(&data_key, &key.cellule, &binding)?,
                });
            }
            batch_no += 1;
            if options.fail_in_batch == Some(batch_no) && batch.len() > 1 {
                // Simulated crash half-way through the batch: the storage transaction sees a key
                // that is not in the expected state and rolls the whole batch back.
                let half = batch.len() / 2;
                batch[half].old_version = -1;
            }
            db.replace_wrapped_keys(&batch).await?;
            done += batch.len() as u64;
        }
    }
}
