//! The outbox (docs/notifications.md): messages written in the transaction of their event, then
//! claimed and sent by the outbox worker.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StorageError;
use super::sql::{Store, Tx, db_run, tx_run};
use crate::audit::Draft;
use crate::audit::Head;

/// A message to send: what it says is already rendered (French, no case content).
pub use crate::domain::notice::Message as NewMessage;

/// The stored form of a message's references: `,ref,ref,` (empty when none).
pub fn refs_text(refs: &[String]) -> String {
    if refs.is_empty() {
        String::new()
    } else {
        format!(",{},", refs.join(","))
    }
}

impl Tx {
    /// Writes the notices the drafts carry ([`Draft::notify`]) to the outbox, taking them out of
    /// the drafts: the entries appended in this transaction and their notices commit together.
    pub(crate) async fn enqueue_notices(
        &mut self,
        groups: &mut [(String, Vec<Draft>)],
    ) -> Result<(), StorageError> {
        let notices: Vec<NewMessage> = groups
            .iter_mut()
            .flat_map(|(_, drafts)| drafts.iter_mut())
            .flat_map(|d| std::mem::take(&mut d.notices))
            .collect();
        if notices.is_empty() {
            return Ok(());
        }
        self.enqueue(&notices).await
    }

    /// Writes `messages` in this transaction: they exist if and only if it commits.
    pub(crate) async fn enqueue(&mut self, messages: &[NewMessage]) -> Result<(), StorageError> {
        for m in messages {
            tx_run!(self, c => {
                sqlx::query(
                    "INSERT INTO outbox (id, cellule, kind, recipient_org, recipient, subject, \
                       body_text, body_html, ics, case_refs, created_at, next_attempt_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)",
                )
                .bind(&m.id)
                .bind(&m.cellule)
                .bind(&m.kind)
                .bind(&m.recipient_org)
                .bind(&m.recipient)
                .bind(&m.subject)
                .bind(&m.body_text)
                .bind(&m.body_html)
                .bind(&m.ics)
                .bind(refs_text(&m.case_refs))
                .bind(m.created_at)
                .execute(&mut *c)
                .await?;
            });
        }
        Ok(())
    }
}

/// Where a message stands: `pending` (waiting for its next attempt), `sending` (claimed by one
/// worker), `sent`, or `failed` (attempts exhausted, or the outcome of an interrupted send
/// unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageStatus {
    Pending,
    Sending,
    Sent,
    Failed,
}

impl MessageStatus {
    pub const ALL: [MessageStatus; 4] = [
        MessageStatus::Pending,
        MessageStatus::Sending,
        MessageStatus::Sent,
        MessageStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Pending => "pending",
            MessageStatus::Sending => "sending",
            MessageStatus::Sent => "sent",
            MessageStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// The `last_error` of a message whose send was interrupted (its claim expired): it may have
/// left, so it is never sent again by the worker.
pub const OUTCOME_UNKNOWN: &str = "outcome unknown";

/// A message claimed for sending, with what it says. `Debug` shows neither the address nor
/// the content.
#[derive(Clone, sqlx::FromRow)]
pub struct ClaimedMessage {
    pub id: String,
    pub cellule: String,
    pub kind: String,
    pub recipient_org: String,
    pub recipient: String,
    pub subject: String,
    pub body_text: String,
    pub body_html: String,
    pub ics: Option<String>,
    pub case_refs: String,
    pub created_at: DateTime<Utc>,
    /// Attempts made before this one.
    pub attempts: i64,
}

impl ClaimedMessage {
    /// The case references the message names.
    pub fn refs(&self) -> Vec<&str> {
        self.case_refs
            .split(',')
            .filter(|r| !r.is_empty())
            .collect()
    }
}

impl std::fmt::Debug for ClaimedMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimedMessage")
            .field("id", &self.id)
            .field("cellule", &self.cellule)
            .field("kind", &self.kind)
            .field("recipient_org", &self.recipient_org)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// A message as the operator lists it: where it goes and where it stands, never what it says.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxEntry {
    pub id: String,
    pub cellule: String,
    pub kind: String,
    pub recipient_org: String,
    pub recipient: String,
    pub created_at: DateTime<Utc>,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// The outbox: messages written with their event, claimed by one worker, sent at most once.
#[async_trait]
pub trait OutboxStore: Send + Sync + 'static {
    /// Writes `messages` in a transaction of their own (inside an event's transaction, use
    /// `Tx::enqueue`).
    async fn enqueue_messages(&self, messages: &[NewMessage]) -> Result<(), StorageError>;

    /// Claims up to `limit` messages due at `now` (oldest first) for one worker until
    /// `claimed_until`: they are `sending` once this returns, and no other worker (another
    /// replica on PostgreSQL: `FOR UPDATE SKIP LOCKED`) gets them.
    async fn claim_messages(
        &self,
        now: DateTime<Utc>,
        claimed_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<ClaimedMessage>, StorageError>;

    /// Marks a message sent at `sent_at` and appends `entry` (its audit entry, without its
    /// cases: they are the message's references, found here) in the same transaction. `false`
    /// when the message is unknown or already sent.
    async fn mark_sent(
        &self,
        id: &str,
        sent_at: DateTime<Utc>,
        entry: Draft,
    ) -> Result<Option<Head>, StorageError>;

    /// Counts a failed attempt that sent nothing: the message goes back to `pending` until
    /// `retry_at`, or to `failed` when `retry_at` is `None`.
    async fn mark_attempt_failed(
        &self,
        id: &str,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<(), StorageError>;

    /// Gives claimed messages that were not tried back (`pending`, no attempt counted).
    async fn release_messages(&self, ids: &[String]) -> Result<(), StorageError>;

    /// Messages still `sending` after their claim ran out at `now` (a worker stopped mid-send)
    /// become `failed` with [`OUTCOME_UNKNOWN`]: never sent twice. Answers how many.
    async fn expire_claims(&self, now: DateTime<Utc>) -> Result<u64, StorageError>;

    /// Messages, oldest first, of one status or all.
    async fn list_messages(
        &self,
        status: Option<MessageStatus>,
    ) -> Result<Vec<OutboxEntry>, StorageError>;

    /// Puts a `failed` message back to `pending`, due at `now`, attempts from zero. `false`
    /// when there is no such failed message.
    async fn retry_message(&self, id: &str, now: DateTime<Utc>) -> Result<bool, StorageError>;
}

const CLAIMED_COLUMNS: &str = "id, cellule, kind, recipient_org, recipient, subject, body_text, \
     body_html, ics, case_refs, created_at, CAST(attempts AS BIGINT) AS attempts";

const ENTRY_COLUMNS: &str = "id, cellule, kind, recipient_org, recipient, created_at, status, \
     CAST(attempts AS BIGINT) AS attempts, next_attempt_at, sent_at, last_error";

#[async_trait]
impl OutboxStore for Store {
    async fn enqueue_messages(&self, messages: &[NewMessage]) -> Result<(), StorageError> {
        let mut tx = self.begin().await?;
        tx.enqueue(messages).await?;
        tx.commit().await
    }

    async fn claim_messages(
        &self,
        now: DateTime<Utc>,
        claimed_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<ClaimedMessage>, StorageError> {
        // One statement in its own transaction, committed before anything is sent. On
        // PostgreSQL the rows another worker holds are skipped, not waited for; on SQLite the
        // transaction holds the write lock (`BEGIN IMMEDIATE`), so two claims never overlap.
        let mut tx = self.begin().await?;
        let mut claimed: Vec<ClaimedMessage> = tx_run!(&mut tx,
            sqlite c => {
                let sql = format!(
                    "UPDATE outbox SET status = 'sending', claimed_until = $2 \
                     WHERE id IN (SELECT id FROM outbox \
                        WHERE status = 'pending' AND next_attempt_at <= $1 \
                        ORDER BY created_at, id LIMIT $3) \
                     RETURNING {CLAIMED_COLUMNS}"
                );
                sqlx::query_as(&sql)
                    .bind(now)
                    .bind(claimed_until)
                    .bind(limit)
                    .fetch_all(&mut *c)
                    .await?
            },
            postgres c => {
                let sql = format!(
                    "UPDATE outbox SET status = 'sending', claimed_until = $2 \
                     WHERE id IN (SELECT id FROM outbox \
                        WHERE status = 'pending' AND next_attempt_at <= $1 \
                        ORDER BY created_at, id LIMIT $3 FOR UPDATE SKIP LOCKED) \
                     RETURNING {CLAIMED_COLUMNS}"
                );
                sqlx::query_as(&sql)
                    .bind(now)
                    .bind(claimed_until)
                    .bind(limit)
                    .fetch_all(&mut *c)
                    .await?
            },
        );
        tx.commit().await?;
        claimed.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(claimed)
    }

    async fn mark_sent(
        &self,
        id: &str,
        sent_at: DateTime<Utc>,
        mut entry: Draft,
    ) -> Result<Option<Head>, StorageError> {
        let mut tx = self.begin().await?;
        // Any status but `sent`: a send that outlived its claim (its message swept to
        // `failed`, or put back by an operator) did leave, and is recorded as sent.
        let row: Option<(String, String)> = tx_run!(&mut tx, c => {
            sqlx::query_as(
                "UPDATE outbox SET status = 'sent', sent_at = $2, claimed_until = NULL, \
                   last_error = NULL \
                 WHERE id = $1 AND status <> 'sent' RETURNING cellule, case_refs",
            )
            .bind(id)
            .bind(sent_at)
            .fetch_optional(&mut *c)
            .await?
        });
        let Some((cellule, refs)) = row else {
            tx.rollback().await?;
            return Ok(None);
        };
        let mut cases: Vec<(String, String)> = Vec::new();
        for reference in refs.split(',').filter(|r| !r.is_empty()) {
            // The case's id, also after its erasure; a reference that names no case is kept
            // with an empty id ("who accessed case X" finds entries by reference too).
            let found: Option<String> = tx_run!(&mut tx, c => {
                sqlx::query_scalar(
                    "SELECT id FROM cases WHERE cellule = $1 AND reference = $2 \
                     UNION ALL \
                     SELECT case_id FROM erasures WHERE cellule = $1 AND reference = $2 \
                     LIMIT 1",
                )
                .bind(&cellule)
                .bind(reference)
                .fetch_optional(&mut *c)
                .await?
            });
            cases.push((found.unwrap_or_default(), reference.to_owned()));
        }
        let pairs: Vec<(&str, &str)> = cases
            .iter()
            .map(|(i, r)| (i.as_str(), r.as_str()))
            .collect();
        entry = entry.cases(&pairs);
        let head = tx.append(&cellule, vec![entry]).await?;
        tx.commit().await?;
        Ok(Some(head))
    }

    async fn mark_attempt_failed(
        &self,
        id: &str,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<(), StorageError> {
        let status = if retry_at.is_some() {
            MessageStatus::Pending
        } else {
            MessageStatus::Failed
        };
        db_run!(self, c => {
            sqlx::query(
                "UPDATE outbox SET status = $2, attempts = attempts + 1, last_error = $3, \
                   next_attempt_at = COALESCE($4, next_attempt_at), claimed_until = NULL \
                 WHERE id = $1 AND status = 'sending'",
            )
            .bind(id)
            .bind(status.as_str())
            .bind(error)
            .bind(retry_at)
            .execute(c)
            .await?;
        });
        Ok(())
    }

    async fn release_messages(&self, ids: &[String]) -> Result<(), StorageError> {
        let mut tx = self.begin().await?;
        for id in ids {
            tx_run!(&mut tx, c => {
                sqlx::query(
                    "UPDATE outbox SET status = 'pending', claimed_until = NULL \
                     WHERE id = $1 AND status = 'sending'",
                )
                .bind(id)
                .execute(&mut *c)
                .await?;
            });
        }
        tx.commit().await
    }

    async fn expire_claims(&self, now: DateTime<Utc>) -> Result<u64, StorageError> {
        Ok(db_run!(self, c => {
            sqlx::query(
                "UPDATE outbox SET status = 'failed', last_error = $2, claimed_until = NULL \
                 WHERE status = 'sending' AND claimed_until < $1",
            )
            .bind(now)
            .bind(OUTCOME_UNKNOWN)
            .execute(c)
            .await?
            .rows_affected()
        }))
    }

    async fn list_messages(
        &self,
        status: Option<MessageStatus>,
    ) -> Result<Vec<OutboxEntry>, StorageError> {
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM outbox WHERE ($1 IS NULL OR status = $1) \
             ORDER BY created_at, id"
        );
        let status = status.map(MessageStatus::as_str);
        Ok(db_run!(self, c => {
            sqlx::query_as(&sql).bind(status).fetch_all(c).await?
        }))
    }

    async fn retry_message(&self, id: &str, now: DateTime<Utc>) -> Result<bool, StorageError> {
        Ok(db_run!(self, c => {
            sqlx::query(
                "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = $2, \
                   claimed_until = NULL \
                 WHERE id = $1 AND status = 'failed'",
            )
            .bind(id)
            .bind(now)
            .execute(c)
            .await?
            .rows_affected()
                == 1
        }))
    }
}
