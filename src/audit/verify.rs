//! Verification of a cellule's audit chain against its signed checkpoints.
//!
//! Walks the entries in sequence order from the purge anchor (or the genesis) and reports the
//! **first** broken sequence number with the reason:
//! - an entry missing (a gap in the sequence, or the chain ending before a signed checkpoint or
//!   the head: a truncated tail);
//! - an entry whose `prev_hash` is not the hash of the entry before it (reordered, swapped or
//!   re-chained entries);
//! - an entry whose content no longer matches its hash (an edited field);
//! - an entry whose hash differs from the one a checkpoint signed (a rewritten and re-hashed
//!   history);
//! - a checkpoint whose signature does not verify with the keyring's public keys;
//! - an entry whose authentication code does not verify with the keyring's MAC keys, or that
//!   carries none past the last signed checkpoint (an entry added or rewritten by someone who
//!   could write to the database but holds no keyring);
//! - a chain that ends before a checkpoint recorded by a witness outside the database (a
//!   truncated tail with its head row rolled back).

use std::collections::HashMap;

use serde::Serialize;
use utoipa::ToSchema;

use super::checkpoint::{PublicKey, PublicKeys};
use super::{Checkpoint, GENESIS, Head, Link, hex};
use crate::crypto::AuditMacs;

/// What verification trusts that the database does not hold: the published keys that verify
/// checkpoints, the keyring's MAC keys that verify entries, and the checkpoints a witness kept
/// outside the database.
#[derive(Debug, Clone)]
pub struct Trusted {
    pub public_keys: PublicKeys,
    pub macs: AuditMacs,
    /// Checkpoints of this cellule read from the witness file.
    pub witnessed: Vec<Checkpoint>,
    /// Where they were read, as the report names it.
    pub witness: Option<String>,
}

/// What the witness file said about the chain.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WitnessView {
    /// The witness file.
    pub path: String,
    /// Its checkpoints of this cellule.
    pub checkpoints: i64,
    /// The highest sequence it records for this cellule.
    pub last_seq: Option<i64>,
}

/// Entries read per page: a page holds its links (some 2 MB at 20,000), never its entries.
pub const PAGE: i64 = 20_000;

/// The first broken point of a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Broken {
    pub seq: i64,
    pub reason: String,
}

/// A chain head.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HeadView {
    pub seq: i64,
    /// SHA-256, hex.
    pub hash: String,
}

/// A signed checkpoint as published.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CheckpointView {
    pub seq: i64,
    /// The chain hash at `seq`, hex.
    pub hash: String,
    pub signed_at: chrono::DateTime<chrono::Utc>,
    pub signed_at_us: i64,
    pub key_id: String,
    /// Ed25519 signature, base64.
    pub signature: String,
    #[schema(example = "periodic")]
    pub kind: String,
}

impl From<&Checkpoint> for CheckpointView {
    fn from(c: &Checkpoint) -> Self {
        use base64::Engine;
        CheckpointView {
            seq: c.seq,
            hash: hex(&c.hash),
            signed_at: chrono::DateTime::from_timestamp_micros(c.signed_at_us)
                .unwrap_or(chrono::DateTime::<chrono::Utc>::UNIX_EPOCH),
            signed_at_us: c.signed_at_us,
            key_id: c.key_id.clone(),
            signature: base64::engine::general_purpose::STANDARD.encode(&c.signature),
            kind: c.kind.clone(),
        }
    }
}

/// The answer of `GET …/audit/verify` and `cellule audit verify`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VerifyReport {
    pub cellule: String,
    pub valid: bool,
    pub entries_checked: i64,
    /// Entries up to this sequence were removed by audit retention.
    pub purged_through: i64,
    pub head: HeadView,
    pub checkpoints: i64,
    pub last_checkpoint: Option<CheckpointView>,
    /// The first broken sequence number and why; absent when the chain verifies.
    pub broken: Option<Broken>,
    /// The keys that verify checkpoints.
    pub public_keys: Vec<PublicKey>,
    /// Entries checked against their authentication code.
    pub entries_authenticated: i64,
    /// The witness file read, when one is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub witness: Option<WitnessView>,
}

fn keep_first(slot: &mut Option<Broken>, seq: i64, reason: String) {
    if slot.as_ref().is_none_or(|b| seq < b.seq) {
        *slot = Some(Broken { seq, reason });
    }
}

/// A verification in progress: built from what the database says of the chain (head,
/// checkpoints, lowest stored sequence), fed the chain's links page after page in sequence
/// order, finished into a [`VerifyReport`]. Entries appended while it runs are left for the next
/// verification.
pub struct Verification {
    cellule: String,
    head: Head,
    checkpoints: Vec<Checkpoint>,
    witnessed: Vec<Checkpoint>,
    witness: Option<String>,
    public_keys: Vec<PublicKey>,
    signed: HashMap<i64, Vec<Vec<u8>>>,
    macs: AuditMacs,
    broken: Option<Broken>,
    walk: Walk,
}

impl Verification {
    /// Starts from the stored head, the cellule's checkpoints and the lowest sequence still
    /// stored (`None`: no entry). Signatures, the purge anchor and the purge mark are checked
    /// here.
    pub fn new(
        cellule: &str,
        head: Head,
        checkpoints: Vec<Checkpoint>,
        lowest_seq: Option<i64>,
        trusted: &Trusted,
    ) -> Self {
        let keys = &trusted.public_keys;
        let mut broken: Option<Broken> = None;
        for c in &trusted.witnessed {
            if !keys.verifies(c) || c.cellule != cellule {
                keep_first(
                    &mut broken,
                    c.seq,
                    format!(
                        "the witness file's checkpoint at {} has an invalid signature",
                        c.seq
                    ),
                );
            }
        }
        for c in &checkpoints {
            if !keys.verifies(c) || c.cellule != cellule {
                keep_first(
                    &mut broken,
                    c.seq,
                    format!(
                        "the {} checkpoint at {} has an invalid signature",
                        c.kind, c.seq
                    ),
                );
            }
        }
        let start = head.purged_through;
        let mut prev: Vec<u8> = GENESIS.to_vec();
        if start > 0 {
            let anchor = checkpoints
                .iter()
                .find(|c| c.seq == start && c.kind == "retention" && keys.verifies(c));
            match anchor {
                Some(anchor) => prev = anchor.hash.clone(),
                None => keep_first(
                    &mut broken,
                    start + 1,
                    format!(
                        "no valid signed retention checkpoint anchors the log purged through {start}"
                    ),
                ),
            }
        }
        // Nothing may remain at or below the purge mark.
        if let Some(first) = lowest_seq
            && first <= start
        {
            keep_first(
                &mut broken,
                first,
                format!(
                    "entry {first} lies below the purge mark {start}: the mark was moved without a purge"
                ),
            );
        }
        let witnessed: Vec<Checkpoint> = trusted
            .witnessed
            .iter()
            .filter(|c| c.cellule == cellule && keys.verifies(c))
            .cloned()
            .collect();
        // Entries without a code are those written before codes existed: each must lie at or
        // below a signed checkpoint, which protects it by its hash.
        let signed_through = checkpoints
            .iter()
            .chain(&witnessed)
            .filter(|c| keys.verifies(c))
            .map(|c| c.seq)
            .max()
            .unwrap_or(0);
        let walk = Walk {
            start,
            head_seq: head.seq,
            prev,
            expected: start + 1,
            checked: 0,
            authenticated: 0,
            signed_through,
            broken: None,
            chain_broken: false,
            done: start >= head.seq,
        };
        let mut signed = by_seq_hashes(&checkpoints);
        for c in &witnessed {
            signed.entry(c.seq).or_default().push(c.hash.clone());
        }
        Verification {
            cellule: cellule.to_owned(),
            signed,
            macs: trusted.macs.clone(),
            public_keys: keys.published(),
            witness: trusted.witness.clone(),
            head,
            checkpoints,
            witnessed,
            broken,
            walk,
        }
    }

    /// The pages to read, as the sequence each one starts after: `page_size` entries each, from
    /// the purge mark up to the head.
    pub fn pages(&self, page_size: i64) -> impl Iterator<Item = i64> + use<> {
        let step = usize::try_from(page_size.max(1)).unwrap_or(usize::MAX);
        (self.walk.start..self.head.seq).step_by(step)
    }

    /// Whether the walk needs no more pages (the head is reached, or the chain is broken).
    pub fn done(&self) -> bool {
        self.walk.done
    }

    /// Checks the next page of links (in sequence order, following the previous page). A gap
    /// shows as a short page; the walk stops at it.
    pub fn check(&mut self, page: &[Link]) {
        self.walk.check(page, &self.signed, &self.macs);
    }

    /// The report: the first broken sequence, if any, and the chain's state.
    pub fn finish(self) -> VerifyReport {
        let Verification {
            cellule,
            head,
            checkpoints,
            witnessed,
            witness,
            public_keys,
            mut broken,
            mut walk,
            ..
        } = self;
        if let Some(b) = walk.broken.take() {
            keep_first(&mut broken, b.seq, b.reason);
        }
        let Walk {
            start,
            expected,
            checked,
            authenticated,
            chain_broken,
            prev,
            ..
        } = walk;
        if !chain_broken {
            let last = expected - 1;
            if let Some(w) = witnessed
                .iter()
                .filter(|c| c.seq > last)
                .max_by_key(|c| c.seq)
            {
                keep_first(
                    &mut broken,
                    last + 1,
                    format!(
                        "the log was truncated: it ends at {last} but the witness file holds a checkpoint signed at {}",
                        w.seq
                    ),
                );
            } else if let Some(c) = checkpoints
                .iter()
                .filter(|c| c.seq > last)
                .max_by_key(|c| c.seq)
            {
                keep_first(
                    &mut broken,
                    last + 1,
                    format!(
                        "entries {}-{} are missing: the log ends at {last} but a checkpoint was signed at {}",
                        last + 1,
                        c.seq,
                        c.seq
                    ),
                );
            } else if head.seq > last {
                keep_first(
                    &mut broken,
                    last + 1,
                    format!(
                        "entries {}-{} are missing: the head is at {}",
                        last + 1,
                        head.seq,
                        head.seq
                    ),
                );
            } else if head.hash != prev && (last > start || start > 0) {
                keep_first(
                    &mut broken,
                    last.max(1),
                    "the chain head does not match the last entry".to_owned(),
                );
            }
        }
        let last_checkpoint = checkpoints.iter().max_by_key(|c| c.seq);
        VerifyReport {
            valid: broken.is_none(),
            entries_checked: checked,
            purged_through: head.purged_through,
            head: HeadView {
                seq: head.seq,
                hash: hex(&head.hash),
            },
            checkpoints: checkpoints.len() as i64,
            last_checkpoint: last_checkpoint.map(CheckpointView::from),
            broken,
            public_keys,
            entries_authenticated: authenticated,
            witness: witness.map(|path| WitnessView {
                path,
                checkpoints: witnessed.len() as i64,
                last_seq: witnessed.iter().map(|c| c.seq).max(),
            }),
            cellule,
        }
    }
}

/// The hashes signed by checkpoints, by sequence.
fn by_seq_hashes(checkpoints: &[Checkpoint]) -> HashMap<i64, Vec<Vec<u8>>> {
    let mut out: HashMap<i64, Vec<Vec<u8>>> = HashMap::new();
    for c in checkpoints {
        out.entry(c.seq).or_default().push(c.hash.clone());
    }
    out
}

/// The state of a walk along the chain, page after page.
struct Walk {
    /// The purge mark (0 when nothing was purged).
    start: i64,
    head_seq: i64,
    /// The hash the next entry must name as its previous one.
    prev: Vec<u8>,
    /// The sequence number the next entry must have.
    expected: i64,
    checked: i64,
    /// Entries whose authentication code verified.
    authenticated: i64,
    /// The highest sequence a valid checkpoint (stored or witnessed) signed.
    signed_through: i64,
    broken: Option<Broken>,
    /// The walk stopped at a broken entry.
    chain_broken: bool,
    /// Nothing more to read.
    done: bool,
}

impl Walk {
    /// Checks one page (entries in sequence order, following the previous page).
    fn check(&mut self, page: &[Link], signed: &HashMap<i64, Vec<Vec<u8>>>, macs: &AuditMacs) {
        let (start, head_seq) = (self.start, self.head_seq);
        for e in page {
            if e.seq > head_seq {
                self.done = true;
                return;
            }
            if e.seq != self.expected {
                let expected = self.expected;
                self.stop(expected, format!("entry {expected} is missing"));
                return;
            }
            if e.hash != Some(e.computed) {
                self.stop(
                    e.seq,
                    format!(
                        "entry {} was altered: its content does not match its hash",
                        e.seq
                    ),
                );
                return;
            }
            if !matches!(e.prev_hash, Some(p) if p[..] == self.prev[..]) {
                // This entry is intact, so the one before it was replaced (re-hashed).
                if e.seq > start + 1 {
                    self.stop(
                        e.seq - 1,
                        format!(
                            "entry {} was altered or replaced: entry {} no longer follows it",
                            e.seq - 1,
                            e.seq
                        ),
                    );
                } else {
                    self.stop(
                        e.seq,
                        format!("entry {} does not follow the purge anchor", e.seq),
                    );
                }
                return;
            }
            if let Some(hashes) = signed.get(&e.seq)
                && hashes.iter().any(|h| h[..] != e.computed[..])
            {
                self.stop(
                    e.seq,
                    format!(
                        "entry {} differs from the signed checkpoint: the history was rewritten",
                        e.seq
                    ),
                );
                return;
            }
            match e.mac {
                Some((tag, version)) if macs.verifies(version, &e.computed, &tag) => {
                    self.authenticated += 1;
                }
                Some(_) => {
                    self.stop(
                        e.seq,
                        format!(
                            "entry {} does not carry the service's authentication code: it was written or changed without the keyring",
                            e.seq
                        ),
                    );
                    return;
                }
                None if e.seq > self.signed_through => {
                    self.stop(
                        e.seq,
                        format!(
                            "entry {} carries no authentication code and no signed checkpoint covers it: it was not written by the service",
                            e.seq
                        ),
                    );
                    return;
                }
                None => {}
            }
            // The stored hash, which equals the recomputed one (checked above).
            self.prev.clear();
            self.prev.extend_from_slice(&e.computed);
            self.expected += 1;
            self.checked += 1;
        }
    }

    fn stop(&mut self, seq: i64, reason: String) {
        keep_first(&mut self.broken, seq, reason);
        self.chain_broken = true;
        self.done = true;
    }
}
