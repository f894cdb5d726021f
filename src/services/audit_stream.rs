//! The audit stream for a SIEM (`audit.stream`), as Vault's audit devices: every committed
//! entry as one JSON line, identifiers only, to standard output or appended to a file.
//!
//! A line is exactly the entry's line of the JSON Lines export ([`EntryView`]), so the lines of
//! one cellule, in the order they come, are a piece of its chain that anyone can recompute
//! (`prev_hash` of each is the `hash` of the one before).
//!
//! **Order.** The stream follows the database, not the requests: a task reads each chain past
//! the last sequence it wrote, in sequence order, every `POLL` and once more at shutdown. A
//! chain's sequence numbers are taken under its head row's lock (PostgreSQL) or the write lock
//! (SQLite) and released at commit, so an entry is never visible before the ones it follows:
//! the stream of a cellule is its chain, without gap or reordering, whichever process or
//! replica committed the entries.
//!
//! **Scope.** It starts at the chain heads it finds at start-up (the history is the export's
//! job) and streams every replica's entries: enable it on one replica, or deduplicate on
//! (`cellule`, `seq`).

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::auditor::EntryView;
use crate::storage::{Database, StorageError};

/// How often the chains are read for new entries.
const POLL: Duration = Duration::from_millis(250);
/// Entries read per query.
const PAGE: i64 = 1_000;

/// Where the lines go.
enum Sink {
    Stdout,
    File(std::fs::File),
}

impl Sink {
    fn open(target: &str) -> std::io::Result<Self> {
        if target == "stdout" {
            return Ok(Sink::Stdout);
        }
        let mut options = std::fs::OpenOptions::new();
        options.append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        Ok(Sink::File(options.open(target)?))
    }

    fn write(&mut self, text: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(text)?;
                out.flush()
            }
            Sink::File(f) => f.write_all(text),
        }
    }
}

/// The running stream: [`AuditStream::stop`] writes what is left and ends it.
pub struct AuditStream {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, thiserror::Error)]
#[error("audit stream {target}: {cause}")]
pub struct StreamError {
    target: String,
    cause: String,
}

impl AuditStream {
    /// Opens `target` (`stdout` or a file path) and starts streaming the entries committed
    /// from now on.
    pub async fn start(db: Arc<dyn Database>, target: &str) -> Result<Self, StreamError> {
        let err = |cause: String| StreamError {
            target: target.to_owned(),
            cause,
        };
        let sink = Sink::open(target).map_err(|e| err(e.to_string()))?;
        let cursors: HashMap<String, i64> = db
            .audit_head_seqs()
            .await
            .map_err(|e| err(e.to_string()))?
            .into_iter()
            .collect();
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut tail = Tail { db, sink, cursors };
            loop {
                tokio::select! {
                    () = tokio::time::sleep(POLL) => {}
                    _ = stopped.changed() => {
                        tail.pass().await;
                        return;
                    }
                }
                tail.pass().await;
            }
        });
        Ok(Self { stop, task })
    }

    /// Writes the entries committed so far, then ends the stream.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

struct Tail {
    db: Arc<dyn Database>,
    sink: Sink,
    /// The last sequence written, by cellule.
    cursors: HashMap<String, i64>,
}

impl Tail {
    /// Writes every entry committed past the cursors. A failure is logged and retried on the
    /// next pass from the same cursor: nothing is skipped.
    async fn pass(&mut self) {
        if let Err(e) = self.try_pass().await {
            tracing::error!(error = %e, "audit stream: entries not written; retrying");
        }
    }

    async fn try_pass(&mut self) -> Result<(), StorageError> {
        for (cellule, head) in self.db.audit_head_seqs().await? {
            let mut after = self.cursors.get(&cellule).copied().unwrap_or(0);
            while after < head {
                let page = self.db.audit_entries(&cellule, after, PAGE).await?;
                let Some(last) = page.last().map(|e| e.seq) else {
                    break;
                };
                let mut text = String::with_capacity(page.len() * 600);
                for e in &page {
                    text.push_str(&serde_json::to_string(&EntryView::from(e)).unwrap_or_default());
                    text.push('\n');
                }
                self.sink
                    .write(text.as_bytes())
                    .map_err(|e| StorageError::Other(format!("write: {e}")))?;
                after = last;
                self.cursors.insert(cellule.clone(), after);
            }
        }
        Ok(())
    }
}
