//! Signed checkpoints of an audit chain head (Ed25519).
//!
//! The signed message is
//!
//! ```text
//! "cellule-audit-checkpoint-v1" · len·cellule · seq (i64 BE) · hash (32 bytes) · signed_at_us (i64 BE) · len·kind
//! ```
//!
//! and the key id is the first 8 bytes, in hex, of SHA-256 over the raw 32-byte public key.
//! The signing keys live in the keyring (never in the database); `GET …/audit/verify` publishes
//! the public halves so exports can be checked elsewhere.

use std::sync::Arc;

use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::crypto::Keyring;

const DOMAIN: &[u8] = b"cellule-audit-checkpoint-v1";

/// Why a checkpoint was signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointKind {
    /// Every `checkpoint_every` entries or `checkpoint_interval`.
    Periodic,
    /// Asked for by an auditor or an operator.
    OnDemand,
    /// Left behind by an audit retention purge: anchors the remaining chain.
    Retention,
}

impl CheckpointKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckpointKind::Periodic => "periodic",
            CheckpointKind::OnDemand => "on_demand",
            CheckpointKind::Retention => "retention",
        }
    }
}

/// A stored checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Checkpoint {
    pub cellule: String,
    pub seq: i64,
    pub hash: Vec<u8>,
    pub signed_at_us: i64,
    pub key_id: String,
    pub signature: Vec<u8>,
    pub kind: String,
}

/// The message a checkpoint signs.
pub fn message(cellule: &str, seq: i64, hash: &[u8], signed_at_us: i64, kind: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(DOMAIN.len() + cellule.len() + kind.len() + 60);
    out.extend_from_slice(DOMAIN);
    crate::crypto::push_lp(&mut out, cellule.as_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(hash);
    out.extend_from_slice(&signed_at_us.to_be_bytes());
    crate::crypto::push_lp(&mut out, kind.as_bytes());
    out
}

/// The id of a public key: first 8 bytes of its SHA-256, hex.
pub fn key_id(public_key: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, public_key);
    super::hex(&digest.as_ref()[..8])
}

/// Signs checkpoints with the keyring's current audit signing key.
#[derive(Clone)]
pub struct Signer {
    keyring: Arc<Keyring>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the keyring has no audit signing key")]
pub struct NoSigningKey;

impl Signer {
    pub fn new(keyring: Arc<Keyring>) -> Result<Self, NoSigningKey> {
        if keyring.audit_signing_key().is_none() {
            return Err(NoSigningKey);
        }
        Ok(Self { keyring })
    }

    /// A checkpoint of `cellule` at (`seq`, `hash`), signed now.
    pub fn sign(
        &self,
        cellule: &str,
        seq: i64,
        hash: &[u8],
        now: DateTime<Utc>,
        kind: CheckpointKind,
    ) -> Checkpoint {
        use ring::signature::KeyPair;
        let signed_at_us = now.timestamp_micros();
        let msg = message(cellule, seq, hash, signed_at_us, kind.as_str());
        let (key_id, signature) = match self.keyring.audit_signing_key() {
            Some(pair) => (
                key_id(pair.public_key().as_ref()),
                pair.sign(&msg).as_ref().to_vec(),
            ),
            // `new` refused a keyring without a signing key.
            None => (String::new(), Vec::new()),
        };
        Checkpoint {
            cellule: cellule.to_owned(),
            seq,
            hash: hash.to_vec(),
            signed_at_us,
            key_id,
            signature,
            kind: kind.as_str().to_owned(),
        }
    }

    pub fn public_keys(&self) -> PublicKeys {
        PublicKeys::new(self.keyring.audit_public_keys())
    }
}

/// A published verification key.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PublicKey {
    pub key_id: String,
    #[schema(example = "Ed25519")]
    pub algorithm: &'static str,
    /// Raw 32-byte Ed25519 public key, base64.
    pub public_key: String,
}

/// The public halves of the keyring's audit signing keys, by key id.
#[derive(Debug, Clone)]
pub struct PublicKeys {
    keys: Vec<(String, Vec<u8>)>,
}

impl PublicKeys {
    pub fn new(raw: Vec<Vec<u8>>) -> Self {
        Self {
            keys: raw.into_iter().map(|k| (key_id(&k), k)).collect(),
        }
    }

    /// Whether `c` carries a valid signature by one of these keys.
    pub fn verifies(&self, c: &Checkpoint) -> bool {
        let Some((_, key)) = self.keys.iter().find(|(id, _)| *id == c.key_id) else {
            return false;
        };
        let msg = message(&c.cellule, c.seq, &c.hash, c.signed_at_us, &c.kind);
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key)
            .verify(&msg, &c.signature)
            .is_ok()
    }

    pub fn published(&self) -> Vec<PublicKey> {
        self.keys
            .iter()
            .map(|(id, k)| PublicKey {
                key_id: id.clone(),
                algorithm: "Ed25519",
                public_key: base64::engine::general_purpose::STANDARD.encode(k),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_bind_every_field() {
        let keyring = Arc::new(Keyring::generate(Utc::now()).unwrap());
        let signer = Signer::new(keyring).unwrap();
        let keys = signer.public_keys();
        let c = signer.sign(
            "perpignan",
            7,
            &[3u8; 32],
            Utc::now(),
            CheckpointKind::Periodic,
        );
        assert!(keys.verifies(&c));
        let mut other = c.clone();
        other.seq = 8;
        assert!(!keys.verifies(&other));
        let mut other = c.clone();
        other.hash[0] ^= 1;
        assert!(!keys.verifies(&other));
        let mut other = c.clone();
        other.cellule = "ceret".into();
        assert!(!keys.verifies(&other));
        let mut other = c.clone();
        other.signed_at_us += 1;
        assert!(!keys.verifies(&other));
        let mut other = c.clone();
        other.kind = "retention".into();
        assert!(!keys.verifies(&other));
        // Another keyring's key does not verify.
        let stranger = Signer::new(Arc::new(Keyring::generate(Utc::now()).unwrap())).unwrap();
        assert!(!stranger.public_keys().verifies(&c));
    }
}
