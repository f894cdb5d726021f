//! `cellule outbox`: the notifications waiting, sent or failed (docs/notifications.md,
//! "Delivery"), and putting a failed one back in line.

use super::*;
use crate::storage::outbox::{MessageStatus, OUTCOME_UNKNOWN};

/// `cellule outbox list|retry`. Lists show where a message goes (a professional address) and
/// where it stands, never its subject or text. A retry is not an audit entry: it discloses
/// nothing, and the send it leads to is recorded (`send_notification`).
pub(super) async fn run(
    config: &Config,
    clock: &dyn Clock,
    cmd: OutboxCommand,
) -> Result<(), CliError> {
    let fail =
        |e: &dyn std::fmt::Display| CliError::failure(crate::config::one_line(&e.to_string()));
    let db = app::open_database(config, true).await?;
    let result = match cmd {
        OutboxCommand::List { status } => {
            let status = status
                .map(|s| {
                    MessageStatus::parse(&s).ok_or_else(|| {
                        CliError::usage(format!(
                            "--status: {s:?} is not one of pending, sending, sent, failed"
                        ))
                    })
                })
                .transpose();
            match status {
                Err(e) => Err(e),
                Ok(status) => db
                    .list_messages(status)
                    .await
                    .map_err(|e| fail(&e))
                    .map(|rows| {
                        for m in rows {
                            println!(
                                "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                                m.id,
                                m.created_at
                                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                                m.status,
                                m.attempts,
                                m.cellule,
                                m.kind,
                                m.recipient_org,
                                m.recipient,
                                m.last_error.as_deref().unwrap_or("-"),
                            );
                        }
                    }),
            }
        }
        OutboxCommand::Retry { id, force } => {
            let failed = db
                .list_messages(Some(MessageStatus::Failed))
                .await
                .map_err(|e| fail(&e));
            match failed.map(|rows| rows.into_iter().find(|m| m.id == id)) {
                Err(e) => Err(e),
                Ok(None) => Err(CliError::failure(format!("no failed message {id}"))),
                Ok(Some(m)) if m.last_error.as_deref() == Some(OUTCOME_UNKNOWN) && !force => {
                    Err(CliError::usage(format!(
                        "message {id} may have been delivered already (its send was interrupted): pass --force to send it again"
                    )))
                }
                Ok(Some(_)) => match db.retry_message(&id, clock.now()).await {
                    Ok(true) => {
                        tracing::info!(message = %id, "outbox: failed message put back to pending");
                        println!("message {id} is pending again");
                        Ok(())
                    }
                    Ok(false) => Err(CliError::failure(format!("no failed message {id}"))),
                    Err(e) => Err(fail(&e)),
                },
            }
        }
    };
    db.close().await;
    result
}
