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
//! - a checkpoint whose signature does not verify with the keyring's public keys.

use std::collections::HashMap;

use futures_util::StreamExt;

use serde::Serialize;
use utoipa::ToSchema;

use super::checkpoint::{PublicKey, PublicKeys};
use super::{Checkpoint, GENESIS, Head, Link, hex};
use crate::storage::{Database, StorageError};

/// Entries read per query. Each page costs a transaction and a few round trips (5,000 gave
/// PostgreSQL 18 % of raw SHA-256 with two readers); both backends hash its rows as they are
/// read, so a page holds its links (some 2 MB at 20,000), never its entries.
pub const PAGE: i64 = 20_000;
/// Pages read at once. On two cores, four keep the database formatting pages while others are
/// hashed (on PostgreSQL, 21 % of raw SHA-256 with four readers of 5,000, 24–28 % with four of
/// 20,000; `cargo bench --bench load`, README).
const READERS: usize = 4;

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
}

fn keep_first(slot: &mut Option<Broken>, seq: i64, reason: String) {
    if slot.as_ref().is_none_or(|b| seq < b.seq) {
        *slot = Some(Broken { seq, reason });
    }
}

/// Verifies the chain of `cellule` up to the head read at the start (entries appended while it
/// runs are left for the next verification).
pub async fn verify(
    db: &dyn Database,
    cellule: &str,
    keys: &PublicKeys,
) -> Result<VerifyReport, StorageError> {
    verify_paged(db, cellule, keys, PAGE).await
}

/// [`verify`] reading `page` entries per query (tests use small pages to cross page boundaries).
pub async fn verify_paged(
    db: &dyn Database,
    cellule: &str,
    keys: &PublicKeys,
    page_size: i64,
) -> Result<VerifyReport, StorageError> {
    let page_size = page_size.max(1);
    let head = db.audit_head(cellule).await?.unwrap_or_else(Head::empty);
    let checkpoints = db.audit_checkpoints(cellule).await?;
    let mut broken: Option<Broken> = None;
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
    if let Some(first) = db.audit_entries(cellule, 0, 1).await?.first()
        && first.seq <= start
    {
        keep_first(
            &mut broken,
            first.seq,
            format!(
                "entry {} lies below the purge mark {start}: the mark was moved without a purge",
                first.seq
            ),
        );
    }
    // Pages are sequence ranges read and hashed by up to `READERS` readers at once (the storage
    // recomputes each entry's hash as its row streams in, each page on a task of its own); the
    // walk then checks their links in order. A gap shows as a short page; the walk stops at it.
    let signed_hashes = by_seq_hashes(&checkpoints);
    let mut walk = Walk {
        start,
        head_seq: head.seq,
        prev,
        expected: start + 1,
        checked: 0,
        broken: None,
        chain_broken: false,
        done: start >= head.seq,
    };
    let step = usize::try_from(page_size).unwrap_or(usize::MAX);
    let mut pages = futures_util::stream::iter((start..head.seq).step_by(step))
        .map(|after| db.audit_links(cellule, after, page_size))
        .buffered(READERS);
    while !walk.done {
        let Some(page) = pages.next().await else {
            break;
        };
        walk.check(&page?, &signed_hashes);
    }
    if let Some(b) = walk.broken.take() {
        keep_first(&mut broken, b.seq, b.reason);
    }
    let Walk {
        expected,
        checked,
        chain_broken,
        prev,
        ..
    } = walk;
    if !chain_broken {
        let last = expected - 1;
        if let Some(c) = checkpoints
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
    Ok(VerifyReport {
        cellule: cellule.to_owned(),
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
        public_keys: keys.published(),
    })
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
    broken: Option<Broken>,
    /// The walk stopped at a broken entry.
    chain_broken: bool,
    /// Nothing more to read.
    done: bool,
}

impl Walk {
    /// Checks one page (entries in sequence order, following the previous page).
    fn check(&mut self, page: &[Link], signed: &HashMap<i64, Vec<Vec<u8>>>) {
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
