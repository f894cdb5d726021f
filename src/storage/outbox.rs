//! The outbox (docs/notifications.md): messages written in the transaction of their event, then
//! claimed and sent by the outbox worker.

use chrono::{DateTime, Utc};

use super::StorageError;
use super::sql::{Tx, tx_run};

/// A message to send: what it says is already rendered (French, no case content).
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: String,
    pub cellule: String,
    /// What kind of notice (`invitation`, `minutes`…), as [`crate::domain::notice::NoticeKind`].
    pub kind: String,
    /// The recipient's organisation (or `administration`), named in the audit entry.
    pub recipient_org: String,
    pub recipient: String,
    pub subject: String,
    pub body_text: String,
    pub body_html: String,
    pub ics: Option<String>,
    /// The case references the message names.
    pub case_refs: Vec<String>,
    pub created_at: DateTime<Utc>,
}

/// The stored form of a message's references: `,ref,ref,` (empty when none).
pub fn refs_text(refs: &[String]) -> String {
    if refs.is_empty() {
        String::new()
    } else {
        format!(",{},", refs.join(","))
    }
}

impl Tx {
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
