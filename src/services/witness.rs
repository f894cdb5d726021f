//! Witnesses of the audit chain outside the database (docs/audit.md, "Threat model").
//!
//! Whoever can write to the database can roll a chain back: delete its tail and put the head
//! row back where it was. Nothing left in the database then shows it. So every signed checkpoint
//! (periodic, on demand, before a purge, and the heads signed at shutdown) is also written
//! outside it:
//! - to the **witness file** (`audit.witness_file`), one JSON object per line, appended with
//!   `O_APPEND` and flushed to disk (`fsync`) before the checkpoint counts as witnessed;
//! - to the **process log** (`audit.witness_log`), as one structured line
//!   (`message = "audit checkpoint"`) that journald or a SIEM keeps.
//!
//! Verification reads the witness file and reports a chain that ends before its last witnessed
//! checkpoint as truncated, at the first missing sequence, and a chain whose entry differs from a
//! witnessed hash as rewritten. A line is the checkpoint as `GET …/audit/checkpoints` shows it,
//! with its cellule:
//!
//! ```json
//! {"cellule":"perpignan","seq":1000,"hash":"<hex>","signed_at":"…","signed_at_us":…,
//!  "key_id":"…","signature":"<base64>","kind":"periodic"}
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::audit::Checkpoint;
use crate::audit::verify::CheckpointView;

/// Where checkpoints are witnessed.
#[derive(Debug)]
pub struct Witness {
    file: Option<(PathBuf, Mutex<std::fs::File>)>,
    log: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    #[error("audit witness file {path}: {message}")]
    File { path: PathBuf, message: String },
}

#[derive(Serialize)]
struct Line<'a> {
    cellule: &'a str,
    #[serde(flatten)]
    checkpoint: CheckpointView,
}

#[derive(Deserialize)]
struct ReadLine {
    cellule: String,
    seq: i64,
    hash: String,
    signed_at_us: i64,
    key_id: String,
    signature: String,
    kind: String,
}

impl Witness {
    /// Opens (creating it, 0600) the witness file for appending.
    pub fn open(file: Option<&Path>, log: bool) -> Result<Self, WitnessError> {
        let file = match file {
            None => None,
            Some(path) => {
                let err = |e: std::io::Error| WitnessError::File {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                };
                let mut options = std::fs::OpenOptions::new();
                options.append(true).create(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    options.mode(0o600);
                }
                let f = options.open(path).map_err(err)?;
                Some((path.to_path_buf(), Mutex::new(f)))
            }
        };
        Ok(Self { file, log })
    }

    /// No witness (tools that only read).
    pub fn none() -> Self {
        Self {
            file: None,
            log: false,
        }
    }

    /// The witness file, if one is configured.
    pub fn path(&self) -> Option<&Path> {
        self.file.as_ref().map(|(p, _)| p.as_path())
    }

    /// Records signed checkpoints outside the database. A failure to write the file is logged
    /// and counted, never fatal: the checkpoint is in the database already.
    pub fn record(&self, checkpoints: &[Checkpoint]) -> bool {
        let mut ok = true;
        for c in checkpoints {
            if self.log {
                tracing::info!(
                    target: "cellule::audit::witness",
                    cellule = %c.cellule,
                    seq = c.seq,
                    hash = %crate::audit::hex(&c.hash),
                    signed_at_us = c.signed_at_us,
                    key_id = %c.key_id,
                    signature = %base64::engine::general_purpose::STANDARD.encode(&c.signature),
                    kind = %c.kind,
                    "audit checkpoint"
                );
            }
        }
        if let Some((path, file)) = &self.file {
            let mut text = String::new();
            for c in checkpoints {
                let line = Line {
                    cellule: &c.cellule,
                    checkpoint: CheckpointView::from(c),
                };
                match serde_json::to_string(&line) {
                    Ok(l) => {
                        text.push_str(&l);
                        text.push('\n');
                    }
                    Err(_) => ok = false,
                }
            }
            if text.is_empty() {
                return ok;
            }
            let mut f = match file.lock() {
                Ok(f) => f,
                Err(poisoned) => poisoned.into_inner(),
            };
            // One write per batch: with O_APPEND, lines of several processes never interleave.
            if let Err(e) = f.write_all(text.as_bytes()).and_then(|()| f.sync_data()) {
                tracing::error!(path = %path.display(), error = %e, "audit witness file not written");
                ok = false;
            }
        }
        ok
    }

    /// The checkpoints of `cellule` in the witness file (none when no file is configured or
    /// it does not exist yet). A line that is not a checkpoint is an error: the file is the
    /// service's alone.
    pub fn read(&self, cellule: &str) -> Result<Vec<Checkpoint>, WitnessError> {
        match self.path() {
            Some(path) => read_file(path, cellule),
            None => Ok(Vec::new()),
        }
    }
}

/// The checkpoints of `cellule` in a witness file.
pub fn read_file(path: &Path, cellule: &str) -> Result<Vec<Checkpoint>, WitnessError> {
    let err = |message: String| WitnessError::File {
        path: path.to_path_buf(),
        message,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(err(e.to_string())),
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = || err(format!("line {} is not a witnessed checkpoint", i + 1));
        let l: ReadLine = serde_json::from_str(line).map_err(|_| bad())?;
        if l.cellule != cellule {
            continue;
        }
        let hash = hex_bytes(&l.hash).ok_or_else(bad)?;
        let signature = base64::engine::general_purpose::STANDARD
            .decode(l.signature.as_bytes())
            .map_err(|_| bad())?;
        out.push(Checkpoint {
            cellule: l.cellule,
            seq: l.seq,
            hash,
            signed_at_us: l.signed_at_us,
            key_id: l.key_id,
            signature,
            kind: l.kind,
        });
    }
    Ok(out)
}

fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::Utc;

    use super::*;
    use crate::audit::{CheckpointKind, Signer};
    use crate::crypto::Keyring;

    #[test]
    fn checkpoints_written_are_read_back_by_cellule() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let path = dir.path().join("witness.jsonl");
        let signer =
            Signer::new(Arc::new(Keyring::generate(Utc::now()).expect("keyring"))).expect("signer");
        let a = signer.sign(
            "perpignan",
            7,
            &[1u8; 32],
            Utc::now(),
            CheckpointKind::Periodic,
        );
        let b = signer.sign("ceret", 3, &[2u8; 32], Utc::now(), CheckpointKind::OnDemand);
        let w = Witness::open(Some(&path), false).expect("witness");
        assert!(w.record(&[a.clone(), b.clone()]));
        // A second process appends to the same file.
        let again = Witness::open(Some(&path), false).expect("witness");
        let c = signer.sign(
            "perpignan",
            9,
            &[3u8; 32],
            Utc::now(),
            CheckpointKind::Periodic,
        );
        assert!(again.record(std::slice::from_ref(&c)));
        assert_eq!(w.read("perpignan").expect("read"), vec![a, c]);
        assert_eq!(w.read("ceret").expect("read"), vec![b]);
        assert!(
            signer
                .public_keys()
                .verifies(&w.read("ceret").expect("read")[0])
        );
        // A damaged line is an error, not silently skipped.
        std::fs::write(&path, "{\"cellule\":\"perpignan\"}\n").expect("write");
        assert!(w.read("perpignan").is_err());
        assert!(Witness::none().read("perpignan").expect("none").is_empty());
    }
}
