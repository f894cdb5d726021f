//! The audit log as the use cases write it (docs/design.md §9): entries of reads and denials, new cases
//! with the entry of their submission, a checkpoint whenever `audit.checkpoint_every` entries
//! have accumulated, and the verification of a chain read from storage. The chain's format and
//! rules are in [`crate::audit`].
//!
//! **Same transaction.** A write hands its entry to the storage method doing the work, which
//! appends it in the same transaction, then calls [`AuditLog::checkpoint_if_due`]. A read or a
//! denial writes nothing but its entry: [`record`] returns once the entry is committed, and the
//! request fails when it cannot be written.
//!
//! **Group commit.** Those entries, and new cases with the entry of their submission, go to one
//! task per process, which writes every job queued while it was committing the previous batch in
//! one transaction ([`crate::storage::CaseStore::commit_batch`]: one counter bump per cellule
//! and year, one head update per cellule) and answers each request once its batch is
//! committed. On PostgreSQL this is one WAL flush for many requests instead of one each, with
//! every request of a cellule waiting for the head row the one before holds.
//! - Order: the entries of one cellule keep the order in which requests queued them (a batch's
//!   new cases first, then the other entries).
//! - Failure: when a batch of several jobs fails, each job is retried alone, so a job that
//!   cannot be written fails only its own request; except when the connection was lost during
//!   its `COMMIT` (the batch may be written): then every request is answered "outcome unknown".
//! - The task starts on first use in the current Tokio runtime; when it is gone (a runtime shut
//!   down under it), requests write directly.

use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};

use super::AppState;
use super::keys::KeyService;
use super::throttle::Denial;
use super::witness::Witness;
use crate::audit::verify::Trusted;
use crate::audit::{Checkpoint, CheckpointKind, Draft, Head, Signer, reason};
use crate::error::Error;
use crate::storage::idempotency::IdempotencyAnswer;
use crate::storage::{CaseWrite, Database, NewCase, StorageError, WrappedKey};

/// At most this many requests' jobs go in one transaction.
const MAX_BATCH: usize = 512;

/// Records the entries of a request that changes nothing else (a read, a denial); returns once
/// they are committed.
pub async fn record(state: &AppState, cellule: &str, drafts: Vec<Draft>) -> Result<(), Error> {
    state
        .audit
        .record(cellule, drafts)
        .await
        .map_err(Error::from)
}

/// Records an access denial (`draft`, denied) within the caller's denial budget. Past it the
/// request is answered 429 instead, and only the first throttled denial of the caller in this
/// cellule and window is recorded, with the reason `throttled` (see [`super::throttle`]).
pub async fn record_denial(state: &AppState, cellule: &str, draft: Draft) -> Result<(), Error> {
    match state.limits.denial(&draft.actor.subject, Some(cellule)) {
        Denial::Record => record(state, cellule, vec![draft]).await,
        Denial::RecordThrottled(wait) => {
            record(state, cellule, vec![draft.denied(reason::THROTTLED)]).await?;
            Err(Error::TooManyRequests(wait))
        }
        Denial::Throttled(wait) => Err(Error::TooManyRequests(wait)),
    }
}

/// Records an event of the whole deployment (policies loaded at start, a keyring rotated or a
/// KEK retired) in every cellule's chain, all in one transaction: the entry `entry` gives for
/// each cellule's slug. Returns the cellules' new heads.
pub async fn record_everywhere(
    db: &dyn Database,
    entry: impl Fn(&str) -> Draft,
) -> Result<Vec<(String, Head)>, Error> {
    let groups: Vec<(String, Vec<Draft>)> = db
        .list_cellules()
        .await?
        .into_iter()
        .map(|c| {
            let slug = c.slug.as_str().to_owned();
            let draft = entry(&slug);
            (slug, vec![draft])
        })
        .collect();
    if groups.is_empty() {
        return Ok(Vec::new());
    }
    Ok(db.append_audit_groups(groups).await?)
}

/// The `load_policies` entries of a start: in every cellule, by `system:startup`, the hash of
/// the policies now enforced (docs/audit.md).
pub async fn record_policies(
    db: &dyn Database,
    policies: &crate::domain::policy::Policies,
    now: DateTime<Utc>,
) -> Result<Vec<(String, Head)>, Error> {
    let detail = serde_json::json!({
        "sha256": policies.digest(),
        "source": if policies.is_embedded() { "embedded" } else { "directory" },
        "files": policies.file_count(),
    });
    let actor = crate::audit::Actor::system("startup");
    record_everywhere(db, |cellule| {
        actor
            .in_cellule(cellule, None)
            .entry(crate::audit::Action::LoadPolicies, now)
            .target("policies", policies.digest())
            .detail(&detail)
    })
    .await
}

/// After a write that appended its own entry: a checkpoint if one is due.
pub async fn committed(state: &AppState, cellule: &str, head: &Head) {
    state
        .audit
        .checkpoint_if_due(cellule, head, state.clock.now())
        .await;
}

/// The signer of the keyring in force (it follows a reloaded keyring).
pub fn signer(keys: &KeyService) -> Result<Signer, Error> {
    Signer::new(keys.keyring()).map_err(|e| Error::Internal(e.to_string()))
}

/// The reason code of an access refusal, `None` for other errors.
pub fn denial_reason(e: &Error) -> Option<&'static str> {
    match e {
        Error::NotFound(_) => Some(reason::NOT_VISIBLE),
        Error::Forbidden(_) => Some(reason::FORBIDDEN),
        Error::CharterNotAccepted => Some(reason::CHARTER_NOT_ACCEPTED),
        _ => None,
    }
}

/// The reason code of a refused write on a visible case (422, 409), `None` for other errors.
pub fn refusal_reason(e: &Error) -> Option<&'static str> {
    match e {
        Error::Validation(_) | Error::Identifiers(_) => Some(reason::INVALID),
        Error::InvalidTransition(_) | Error::Conflict(_) => Some(reason::CONFLICT),
        _ => None,
    }
}

enum Job {
    Entries {
        cellule: String,
        drafts: Vec<Draft>,
        reply: oneshot::Sender<Result<(), StorageError>>,
    },
    Case {
        new: Box<Submission>,
        reply: oneshot::Sender<Result<String, StorageError>>,
    },
}

struct Submission {
    case: NewCase,
    key: WrappedKey,
    audit: Draft,
    /// The answer of the request's idempotency key (same transaction).
    answer: Option<IdempotencyAnswer>,
}

/// The writer of the audit log: group commit and count-based checkpoints.
pub struct AuditLog {
    inner: Arc<Inner>,
    queue: OnceLock<mpsc::UnboundedSender<Job>>,
}

struct Inner {
    db: Arc<dyn Database>,
    keys: Arc<KeyService>,
    /// Sign a checkpoint when this many entries accumulated since the last one (0: never).
    every: i64,
    /// Where signed checkpoints are also written, outside the database.
    witness: Witness,
}

impl AuditLog {
    pub fn new(
        db: Arc<dyn Database>,
        keys: Arc<KeyService>,
        checkpoint_every: i64,
        witness: Witness,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                keys,
                every: checkpoint_every,
                witness,
            }),
            queue: OnceLock::new(),
        }
    }

    /// Signs a checkpoint of `cellule`'s head now and witnesses it; `None` when the chain is
    /// empty.
    pub async fn sign(
        &self,
        cellule: &str,
        kind: CheckpointKind,
        now: DateTime<Utc>,
    ) -> Result<Option<Checkpoint>, Error> {
        let signer = signer(&self.inner.keys)?;
        let c = self
            .inner
            .db
            .checkpoint_audit(cellule, &signer, kind, now)
            .await?;
        if let Some(c) = &c {
            self.inner.witness.record(std::slice::from_ref(c));
        }
        Ok(c)
    }

    /// Audit retention of `cellule`, asked by `by`: entries older than `before_us` removed
    /// behind a signed (and witnessed) retention checkpoint, the purge recorded naming `by`.
    pub async fn purge(
        &self,
        cellule: &str,
        before_us: i64,
        now: DateTime<Utc>,
        by: &crate::audit::Actor,
    ) -> Result<crate::audit::Purged, Error> {
        let signer = signer(&self.inner.keys)?;
        let purged = self
            .inner
            .db
            .purge_audit(cellule, before_us, &signer, now, by)
            .await?;
        if let Some(anchor) = &purged.anchor {
            self.inner.witness.record(std::slice::from_ref(anchor));
        }
        Ok(purged)
    }

    /// What verification of `cellule` trusts beyond the database: the keyring's public and MAC
    /// keys, and the witness file's checkpoints of the cellule.
    pub fn trusted(&self, cellule: &str) -> Result<Trusted, Error> {
        Ok(Trusted {
            public_keys: signer(&self.inner.keys)?.public_keys(),
            macs: self.inner.keys.audit_macs(),
            witnessed: self
                .inner
                .witness
                .read(cellule)
                .map_err(|e| Error::Internal(e.to_string()))?,
            witness: self.inner.witness.path().map(|p| p.display().to_string()),
        })
    }

    /// Appends `drafts` to the cellule's chain; returns once they are committed.
    pub async fn record(&self, cellule: &str, drafts: Vec<Draft>) -> Result<(), StorageError> {
        if drafts.is_empty() {
            return Ok(());
        }
        let (reply, answer) = oneshot::channel();
        let job = Job::Entries {
            cellule: cellule.to_owned(),
            drafts,
            reply,
        };
        match self.queue().send(job) {
            Ok(()) => answer.await.unwrap_or_else(|_| Err(stopped())),
            Err(mpsc::error::SendError(Job::Entries {
                cellule, drafts, ..
            })) => self.inner.entries_alone(&cellule, drafts).await,
            Err(_) => Err(stopped()),
        }
    }

    /// Inserts a new case with its wrapped key and the entry of its submission (same
    /// transaction); returns its reference once committed.
    pub async fn insert_case(
        &self,
        case: NewCase,
        key: WrappedKey,
        audit: Draft,
    ) -> Result<String, StorageError> {
        self.insert_case_answered(case, key, audit, None).await
    }

    /// [`Self::insert_case`], writing the answer of the request's idempotency key in the same
    /// transaction (its reference filled in).
    pub async fn insert_case_answered(
        &self,
        case: NewCase,
        key: WrappedKey,
        audit: Draft,
        answer: Option<IdempotencyAnswer>,
    ) -> Result<String, StorageError> {
        let (reply, reference) = oneshot::channel();
        let job = Job::Case {
            new: Box::new(Submission {
                case,
                key,
                audit,
                answer,
            }),
            reply,
        };
        match self.queue().send(job) {
            Ok(()) => reference.await.unwrap_or_else(|_| Err(stopped())),
            Err(mpsc::error::SendError(Job::Case { new, .. })) => self.inner.case_alone(*new).await,
            Err(_) => Err(stopped()),
        }
    }

    /// After a committed append that left the chain at `head`: signs a checkpoint when
    /// `checkpoint_every` entries have accumulated. A failure does not fail the request (the
    /// entries are committed); the periodic task retries.
    pub async fn checkpoint_if_due(&self, cellule: &str, head: &Head, now: DateTime<Utc>) {
        self.inner
            .checkpoints(&[(cellule.to_owned(), head.clone())], now)
            .await;
    }

    /// Signs a checkpoint for every cellule whose chain moved since its last one.
    pub async fn checkpoint_all(
        &self,
        kind: CheckpointKind,
        now: DateTime<Utc>,
    ) -> Result<Vec<Checkpoint>, Error> {
        let signer = signer(&self.inner.keys)?;
        let db = self.inner.db.as_ref();
        let mut out = Vec::new();
        for cellule in db.cellules_with_unsigned_audit().await? {
            if let Some(c) = db.checkpoint_audit(&cellule, &signer, kind, now).await? {
                out.push(c);
            }
        }
        self.inner.witness.record(&out);
        Ok(out)
    }

    fn queue(&self) -> &mpsc::UnboundedSender<Job> {
        self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(run(self.inner.clone(), rx));
            tx
        })
    }
}

async fn run(inner: Arc<Inner>, mut rx: mpsc::UnboundedReceiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        inner.commit(std::mem::take(&mut batch)).await;
    }
}

fn stopped() -> StorageError {
    StorageError::Unavailable("the audit log's writer stopped before committing".into())
}

impl Inner {
    /// Writes one batch in one transaction and answers its requests.
    async fn commit(&self, batch: Vec<Job>) {
        let now = batch
            .iter()
            .map(|j| match j {
                Job::Entries { drafts, .. } => drafts.last().map(|d| d.at),
                Job::Case { new, .. } => Some(new.audit.at),
            })
            .max()
            .flatten();
        let result = {
            let mut cases = Vec::new();
            let mut entries = Vec::new();
            for job in &batch {
                match job {
                    Job::Entries {
                        cellule, drafts, ..
                    } => entries.push((cellule.as_str(), drafts.as_slice())),
                    Job::Case { new, .. } => cases.push(CaseWrite {
                        case: &new.case,
                        key: &new.key,
                        audit: &new.audit,
                        answer: new.answer.as_ref(),
                    }),
                }
            }
            self.db.commit_batch(&cases, &entries).await
        };
        match result {
            Ok(done) => {
                let mut references = done.references.into_iter();
                for job in batch {
                    match job {
                        Job::Entries { reply, .. } => {
                            let _ = reply.send(Ok(()));
                        }
                        Job::Case { reply, .. } => {
                            let _ = reply.send(references.next().ok_or_else(|| {
                                StorageError::Other("a case insert returned no reference".into())
                            }));
                        }
                    }
                }
                if let Some(now) = now {
                    self.checkpoints(&done.heads, now).await;
                }
            }
            // The connection was lost during the COMMIT: the batch may be written. Writing its
            // jobs again would duplicate them; each request is told the outcome is unknown
            // (a retry with its idempotency key is safe).
            Err(StorageError::UnknownOutcome(cause)) if batch.len() > 1 => {
                tracing::warn!(jobs = batch.len(), "audit group commit: outcome unknown");
                for job in batch {
                    let e = || StorageError::UnknownOutcome(cause.clone());
                    match job {
                        Job::Entries { reply, .. } => {
                            let _ = reply.send(Err(e()));
                        }
                        Job::Case { reply, .. } => {
                            let _ = reply.send(Err(e()));
                        }
                    }
                }
            }
            Err(e) if batch.len() == 1 => {
                if let Some(job) = batch.into_iter().next() {
                    match job {
                        Job::Entries { reply, .. } => {
                            let _ = reply.send(Err(e));
                        }
                        Job::Case { reply, .. } => {
                            let _ = reply.send(Err(e));
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, jobs = batch.len(), "audit group commit failed; writing its jobs one at a time");
                for job in batch {
                    match job {
                        Job::Entries {
                            cellule,
                            drafts,
                            reply,
                        } => {
                            let _ = reply.send(self.entries_alone(&cellule, drafts).await);
                        }
                        Job::Case { new, reply } => {
                            let _ = reply.send(self.case_alone(*new).await);
                        }
                    }
                }
            }
        }
    }

    async fn entries_alone(&self, cellule: &str, drafts: Vec<Draft>) -> Result<(), StorageError> {
        let Some(now) = drafts.last().map(|d| d.at) else {
            return Ok(());
        };
        let head = self.db.append_audit(cellule, drafts).await?;
        self.checkpoints(&[(cellule.to_owned(), head)], now).await;
        Ok(())
    }

    async fn case_alone(&self, new: Submission) -> Result<String, StorageError> {
        let now = new.audit.at;
        let write = CaseWrite {
            case: &new.case,
            key: &new.key,
            audit: &new.audit,
            answer: new.answer.as_ref(),
        };
        let done = self
            .db
            .commit_batch(std::slice::from_ref(&write), &[])
            .await?;
        let reference = done.references.into_iter().next();
        let head = done.heads.into_iter().next().map(|(_, h)| h);
        match (reference, head) {
            (Some(reference), Some(head)) => {
                self.checkpoints(&[(new.case.cellule.clone(), head)], now)
                    .await;
                Ok(reference)
            }
            _ => Err(StorageError::Other(
                "a case insert returned no reference".into(),
            )),
        }
    }

    /// Signs a periodic checkpoint for each cellule whose head is `every` entries or more past
    /// its last checkpoint.
    async fn checkpoints(&self, heads: &[(String, Head)], now: DateTime<Utc>) {
        let due: Vec<&str> = heads
            .iter()
            .filter(|(_, h)| self.every > 0 && h.seq - h.checkpoint_seq >= self.every)
            .map(|(cellule, _)| cellule.as_str())
            .collect();
        if due.is_empty() {
            return;
        }
        let signer = match Signer::new(self.keys.keyring()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "no audit signing key; checkpoint skipped");
                return;
            }
        };
        let mut signed = Vec::new();
        for cellule in due {
            match self
                .db
                .checkpoint_audit(cellule, &signer, CheckpointKind::Periodic, now)
                .await
            {
                Ok(Some(c)) => signed.push(c),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(cellule, error = %e, "audit checkpoint failed; will retry");
                }
            }
        }
        self.witness.record(&signed);
    }
}
