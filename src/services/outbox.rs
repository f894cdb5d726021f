//! The outbox worker (docs/notifications.md, "Delivery"): every `mail.poll_interval` it claims
//! the messages due, sends them one by one through the configured [`Mailer`] and keeps each
//! outcome. A message is sent at most once: it is claimed (`sending`) in a committed
//! transaction before it is sent, another replica skips it, and one whose send was interrupted
//! is left `failed` ("outcome unknown") for the operator rather than sent again.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::audit::{Action, Actor};
use crate::services::AppState;
use crate::services::mail::{Mailer, SendError};
use crate::storage::outbox::{ClaimedMessage, OUTCOME_UNKNOWN};

/// Messages claimed at once by one worker.
const BATCH: i64 = 10;

/// The first retry waits this long, each next one twice as long, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// How long after the `attempts`-th failed attempt (1, 2…) the next one is due.
pub fn backoff(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    FIRST_BACKOFF
        .saturating_mul(1u32 << doublings)
        .min(MAX_BACKOFF)
}

/// The running worker.
pub struct OutboxWorker {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    deadline: Duration,
}

impl OutboxWorker {
    /// Starts the worker of `mailer`; `None` for the `none` transport (nothing is sent).
    pub fn start(state: AppState, mailer: Mailer) -> Option<Self> {
        if !mailer.sends() {
            return None;
        }
        let (stop, mut stopped) = watch::channel(false);
        let deadline = mailer.deadline();
        let mailer = Arc::new(mailer);
        let task = tokio::spawn(async move {
            let interval = state.config.mail.poll_interval;
            loop {
                if let Err(e) = deliver_due(&state, &mailer, &stopped).await {
                    tracing::warn!(error = %e, "outbox: delivery pass failed; will retry");
                }
                tokio::select! {
                    () = tokio::time::sleep(interval) => {}
                    _ = stopped.changed() => {}
                }
                if *stopped.borrow() {
                    break;
                }
            }
        });
        Some(Self {
            stop,
            task,
            deadline,
        })
    }

    /// Lets the message being sent finish (at most one send's deadline), gives the others
    /// back, and stops.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(self.deadline + Duration::from_secs(5), &mut task)
            .await
            .is_err()
        {
            // The send in flight is abandoned: its claim runs out and it is left "outcome
            // unknown", never resent.
            task.abort();
            tracing::warn!("outbox: a send was still running at stop");
        }
    }
}

/// One pass: claims that ran out become "outcome unknown", then the messages due are claimed
/// and sent one by one until `stopped` says so. Answers how many were sent.
pub async fn deliver_due(
    state: &AppState,
    mailer: &Mailer,
    stopped: &watch::Receiver<bool>,
) -> Result<usize, crate::storage::StorageError> {
    let db = state.db.as_ref();
    let now = state.clock.now();
    let expired = db.expire_claims(now).await?;
    if expired > 0 {
        state.metrics.outbox(OUTCOME_UNKNOWN_LABEL, expired);
        tracing::warn!(
            messages = expired,
            "outbox: sends interrupted before their outcome was known; left failed (`cellule outbox list --status failed`)"
        );
    }
    let mut sent = 0;
    loop {
        let now = state.clock.now();
        let per_send = chrono::Duration::from_std(mailer.deadline() + Duration::from_secs(30))
            .unwrap_or(chrono::Duration::minutes(5));
        let claimed_until = now + per_send * (BATCH as i32);
        let claimed = db.claim_messages(now, claimed_until, BATCH).await?;
        if claimed.is_empty() {
            return Ok(sent);
        }
        let full = claimed.len() as i64 == BATCH;
        let mut left = claimed.into_iter();
        while let Some(m) = left.next() {
            // Stopping, or too close to the end of the claim for a whole send: give the rest
            // back untried.
            if *stopped.borrow() || state.clock.now() + per_send > claimed_until {
                let ids: Vec<String> = std::iter::once(m.id).chain(left.map(|m| m.id)).collect();
                db.release_messages(&ids).await?;
                return Ok(sent);
            }
            if send_one(state, mailer, &m).await? {
                sent += 1;
            }
        }
        if !full || *stopped.borrow() {
            return Ok(sent);
        }
    }
}

const OUTCOME_UNKNOWN_LABEL: &str = "unknown";

/// Sends `m` and keeps the outcome; `true` when it left.
async fn send_one(
    state: &AppState,
    mailer: &Mailer,
    m: &ClaimedMessage,
) -> Result<bool, crate::storage::StorageError> {
    let db = state.db.as_ref();
    let date = std::time::SystemTime::from(state.clock.now());
    let outcome = match tokio::time::timeout(mailer.deadline(), mailer.send(m, date)).await {
        Ok(outcome) => outcome,
        // Cut mid-way: the server may have accepted it.
        Err(_) => Err(SendError {
            class: OUTCOME_UNKNOWN.to_owned(),
            permanent: true,
        }),
    };
    let now = state.clock.now();
    match outcome {
        Ok(()) => {
            let entry = Actor::system("outbox")
                .in_cellule(&m.cellule, None)
                .entry(Action::SendNotification, now)
                .target("message", &m.id)
                .detail(&serde_json::json!({
                    "kind": m.kind,
                    "recipient_org": m.recipient_org,
                }));
            match db.mark_sent(&m.id, now, entry).await {
                Ok(Some(head)) => state.audit.checkpoint_if_due(&m.cellule, &head, now).await,
                Ok(None) => {}
                Err(e) => {
                    // It left, but neither its entry nor its state could be kept: its claim
                    // runs out and it is left "outcome unknown", never resent.
                    tracing::error!(message = %m.id, error = %e, "outbox: a sent message could not be marked sent");
                    return Err(e);
                }
            }
            state.metrics.outbox("sent", 1);
            tracing::info!(message = %m.id, kind = %m.kind, "outbox: message sent");
            Ok(true)
        }
        Err(e) => {
            let attempts = u32::try_from(m.attempts)
                .unwrap_or(u32::MAX)
                .saturating_add(1);
            let retry_at = (!e.permanent && attempts < state.config.mail.max_attempts)
                .then(|| next_attempt(now, attempts));
            db.mark_attempt_failed(&m.id, &e.class, retry_at).await?;
            let label = if retry_at.is_some() {
                "retry"
            } else {
                "failed"
            };
            state.metrics.outbox(label, 1);
            tracing::warn!(message = %m.id, attempts, error = %e.class, retry = retry_at.is_some(), "outbox: message not sent");
            Ok(false)
        }
    }
}

fn next_attempt(now: DateTime<Utc>, attempts: u32) -> DateTime<Utc> {
    now + chrono::Duration::from_std(backoff(attempts)).unwrap_or(chrono::Duration::hours(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_30_seconds_up_to_an_hour() {
        let secs: Vec<u64> = (1..=10).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(secs, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
        assert_eq!(backoff(u32::MAX).as_secs(), 3600);
    }
}
