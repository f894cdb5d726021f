//! The audit chain's authentication codes: HMAC-SHA-256 under a secret of the keyring, which the
//! database never holds (docs/audit.md, "Threat model").
//!
//! Every entry stores `HMAC(key, "cellule-audit-mac-v1" · hash)` beside its chain hash, and the
//! version of the key that made it. The chain hash already covers the entry's cellule, sequence,
//! fields and predecessor, so a code binds all of them: someone who can write rows but has no
//! keyring can compute hashes (the chain is public arithmetic) but not codes, and cannot add,
//! change, reorder or replace an entry without verification failing at that entry.
//!
//! The keyring keeps every version (`audit_mac_keys`); the last one authenticates new entries,
//! the earlier ones still verify older entries. `cellule keys rotate` adds one.

use std::sync::Arc;

const DOMAIN: &[u8] = b"cellule-audit-mac-v1";

/// One version of the audit MAC key. `Debug` shows the version only.
#[derive(Clone)]
pub struct AuditMac {
    version: u32,
    key: ring::hmac::Key,
}

impl std::fmt::Debug for AuditMac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditMac")
            .field("version", &self.version)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl AuditMac {
    pub(crate) fn new(version: u32, secret: &[u8]) -> Self {
        Self {
            version,
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret),
        }
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    /// The code of an entry whose chain hash is `hash`.
    pub fn tag(&self, hash: &[u8]) -> Vec<u8> {
        let mut ctx = ring::hmac::Context::with_key(&self.key);
        ctx.update(DOMAIN);
        ctx.update(hash);
        ctx.sign().as_ref().to_vec()
    }

    /// Whether `tag` is this key's code for `hash` (compared in constant time).
    pub fn verifies(&self, hash: &[u8], tag: &[u8]) -> bool {
        let mut msg = Vec::with_capacity(DOMAIN.len() + hash.len());
        msg.extend_from_slice(DOMAIN);
        msg.extend_from_slice(hash);
        ring::hmac::verify(&self.key, &msg, tag).is_ok()
    }
}

/// Every version of the audit MAC key, for verification.
#[derive(Debug, Clone, Default)]
pub struct AuditMacs {
    keys: Vec<AuditMac>,
}

impl AuditMacs {
    pub(crate) fn new(keys: Vec<AuditMac>) -> Self {
        Self { keys }
    }

    /// Whether `tag`, made by key `version`, is the code of `hash`. An unknown version verifies
    /// nothing.
    pub fn verifies(&self, version: i64, hash: &[u8], tag: &[u8]) -> bool {
        self.keys
            .iter()
            .find(|k| i64::from(k.version) == version)
            .is_some_and(|k| k.verifies(hash, tag))
    }

    pub fn versions(&self) -> Vec<u32> {
        self.keys.iter().map(|k| k.version).collect()
    }
}

/// Where storage takes the key that authenticates new entries: the keyring in force (it
/// follows a keyring reloaded after a rotation).
pub trait AuditMacSource: Send + Sync {
    fn current_audit_mac(&self) -> Option<AuditMac>;
}

/// A fixed key (the command line, tests).
impl AuditMacSource for AuditMac {
    fn current_audit_mac(&self) -> Option<AuditMac> {
        Some(self.clone())
    }
}

impl<T: AuditMacSource + ?Sized> AuditMacSource for Arc<T> {
    fn current_audit_mac(&self) -> Option<AuditMac> {
        (**self).current_audit_mac()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_bind_the_hash_and_the_key() {
        let k1 = AuditMac::new(1, &[7u8; 32]);
        let k2 = AuditMac::new(2, &[8u8; 32]);
        let hash = [3u8; 32];
        let tag = k1.tag(&hash);
        assert_eq!(tag.len(), 32);
        assert!(k1.verifies(&hash, &tag));
        assert!(!k2.verifies(&hash, &tag));
        let mut other = hash;
        other[31] ^= 1;
        assert!(!k1.verifies(&other, &tag));
        let all = AuditMacs::new(vec![k1, k2.clone()]);
        assert!(all.verifies(1, &hash, &tag));
        assert!(!all.verifies(2, &hash, &tag));
        assert!(!all.verifies(3, &hash, &tag));
        assert!(all.verifies(2, &hash, &k2.tag(&hash)));
        assert!(!format!("{k2:?}").contains('8'));
    }
}
