//! Group commit for the requests whose only write is their audit entry (reads, denials, auditor
//! reads) and for referral submissions.
//!
//! Each such request used to commit a transaction of its own while holding its cellule's chain
//! head (and, for a submission, its reference counter): on PostgreSQL one WAL flush per request,
//! each waiting for the one before. The appender is one task per process that takes every job
//! queued while it was committing the previous batch and writes them all in **one** transaction
//! ([`CaseStore::commit_batch`](crate::storage::CaseStore::commit_batch): the reference
//! counters in one statement, multi-row inserts of cases, keys and entries, the chain heads in
//! one statement each way; see `storage::batch`), then answers each waiting request.
//! The rules of SPEC §9 are unchanged: a new case and its entry are in the same transaction, and
//! a request is answered only once its entry is committed; it fails when it cannot be written.
//!
//! - Order: the entries of one cellule keep the order in which requests queued them (a batch's
//!   new cases first, then the other entries).
//! - Failure: when a batch of several jobs fails, each job is retried alone, so a job that
//!   cannot be written fails only its own request.
//! - Checkpoints: the count-based checkpoint (`audit.checkpoint_every`) is signed by the task
//!   after the batch, once per cellule.
//! - Other writes (transitions, notes, agendas…) append their entry in their own transaction.
//!
//! The task starts on first use in the current Tokio runtime and stops with the state; when it
//! is gone (a runtime shut down under it), requests write directly.

use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};

use super::{Draft, Head, Signer, after_append};
use crate::crypto::keys::KeyService;
use crate::storage::{CaseWrite, Database, NewCase, StorageError, WrappedKey};

/// At most this many requests' entries go in one transaction.
const MAX_BATCH: usize = 512;

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
}

/// Queues entries and answers each request once its entry is committed.
pub struct Appender {
    shared: Arc<Shared>,
    queue: OnceLock<mpsc::UnboundedSender<Job>>,
}

struct Shared {
    db: Arc<dyn Database>,
    keys: Arc<KeyService>,
    every: i64,
}

impl Appender {
    pub fn new(db: Arc<dyn Database>, keys: Arc<KeyService>, checkpoint_every: i64) -> Self {
        Self {
            shared: Arc::new(Shared {
                db,
                keys,
                every: checkpoint_every,
            }),
            queue: OnceLock::new(),
        }
    }

    /// Appends `drafts` to the cellule's chain; returns once they are committed.
    pub async fn append(&self, cellule: &str, drafts: Vec<Draft>) -> Result<(), StorageError> {
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
            })) => self.shared.entries_alone(&cellule, drafts).await,
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
        let (reply, answer) = oneshot::channel();
        let job = Job::Case {
            new: Box::new(Submission { case, key, audit }),
            reply,
        };
        match self.queue().send(job) {
            Ok(()) => answer.await.unwrap_or_else(|_| Err(stopped())),
            Err(mpsc::error::SendError(Job::Case { new, .. })) => {
                self.shared.case_alone(&new.case, &new.key, new.audit).await
            }
            Err(_) => Err(stopped()),
        }
    }

    fn queue(&self) -> &mpsc::UnboundedSender<Job> {
        self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(run(self.shared.clone(), rx));
            tx
        })
    }
}

async fn run(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        shared.commit(std::mem::take(&mut batch)).await;
    }
}

fn stopped() -> StorageError {
    StorageError::Unavailable("the audit appender stopped before committing".into())
}

impl Shared {
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
                            let _ =
                                reply.send(self.case_alone(&new.case, &new.key, new.audit).await);
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

    async fn case_alone(
        &self,
        case: &NewCase,
        key: &WrappedKey,
        audit: Draft,
    ) -> Result<String, StorageError> {
        let now = audit.at;
        let (reference, head) = self.db.insert_case(case, key, audit).await?;
        self.checkpoints(&[(case.cellule.clone(), head)], now).await;
        Ok(reference)
    }

    async fn checkpoints(&self, heads: &[(String, Head)], now: DateTime<Utc>) {
        let due = heads
            .iter()
            .any(|(_, h)| self.every > 0 && h.seq - h.checkpoint_seq >= self.every);
        if !due {
            return;
        }
        let signer = match Signer::new(self.keys.keyring()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "no audit signing key; checkpoint skipped");
                return;
            }
        };
        for (cellule, head) in heads {
            after_append(self.db.as_ref(), &signer, self.every, cellule, head, now).await;
        }
    }
}
