//! The outbox (docs/notifications.md): messages written in the transaction of their event, then
//! claimed and sent by the outbox worker.

use super::StorageError;
use super::sql::{Tx, tx_run};

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
