//! Backups of a SQLite deployment (docs/operations.md "Backup", "Restore", "Lost keyring"):
//! [`backup`] while serving, [`restore`] into the configured database, [`verify`] a backup
//! file. PostgreSQL deployments use `pg_dump`/`pg_restore` and WAL archiving instead.
//!
//! The keyring is what opens every case: a database backup is useless without it, and a file
//! holding both gives everything to whoever gets it. So a backup holds the database only, the
//! keyring is copied **apart** (`keyring_output`), and only `with_keyring` puts it in the same
//! file (for a vault that is itself encrypted).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::auditor;
use super::keys::{KeyService, KeyringSource};
use crate::audit::Signer;
use crate::audit::verify::Trusted;
use crate::config::{Backend, Config, DatabaseUrl, PoolConfig};
use crate::crypto::Keyring;
use crate::storage::{self, Database, backup as files};

/// Why a backup command failed: bad input (exit 2) or a failure (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Failed(String),
}

fn failed(e: impl std::fmt::Display) -> BackupError {
    BackupError::Failed(crate::config::one_line(&e.to_string()))
}

/// What [`backup`] wrote.
#[derive(Debug)]
pub struct BackupDone {
    pub bytes: u64,
    pub with_keyring: bool,
    pub keyring_output: Option<PathBuf>,
}

/// The SQLite database of `config`, or why not.
fn sqlite_file(config: &Config) -> Result<PathBuf, BackupError> {
    let url = config.database_url();
    if url.backend().ok() != Some(Backend::Sqlite) {
        return Err(BackupError::Usage(
            "the database is PostgreSQL: back it up with pg_dump and restore it with pg_restore (docs/operations.md)".into(),
        ));
    }
    url.sqlite_file()
        .ok_or_else(|| BackupError::Usage("the SQLite database has no file".into()))
}

/// The keyring's JSON as configured (the inline keyring, or the keyring file).
fn keyring_json(config: &Config) -> Result<String, BackupError> {
    match &config.keyring {
        Some(inline) => Ok(inline.expose().to_owned()),
        None => {
            let path = config.keyring_path();
            std::fs::read_to_string(&path).map_err(|e| failed(format!("{}: {e}", path.display())))
        }
    }
}

/// Writes a consistent backup of the serving SQLite database `db` into `output` (a new file,
/// 0600); copies the keyring into `keyring_output` (a new file, 0600) and into `output` itself
/// only when `with_keyring`.
pub async fn backup(
    config: &Config,
    db: &dyn Database,
    output: &Path,
    with_keyring: bool,
    keyring_output: Option<&Path>,
) -> Result<BackupDone, BackupError> {
    sqlite_file(config)?;
    if keyring_output.is_some_and(|k| k == output) {
        return Err(BackupError::Usage(
            "--keyring-output must be another file than --output (or use --with-keyring)".into(),
        ));
    }
    for path in std::iter::once(output).chain(keyring_output) {
        if path.exists() {
            return Err(BackupError::Usage(format!(
                "{} exists: choose a new file",
                path.display()
            )));
        }
    }
    let keyring = if with_keyring || keyring_output.is_some() {
        Some(keyring_json(config)?)
    } else {
        None
    };
    crate::fsutil::create_private_file(output, b"")
        .map_err(|e| failed(format!("{}: {e}", output.display())))?;
    let written = async {
        db.backup_into(output).await.map_err(failed)?;
        if with_keyring && let Some(json) = &keyring {
            files::embed_keyring(output, json).await.map_err(failed)?;
        }
        Ok::<_, BackupError>(())
    }
    .await;
    if let Err(e) = written {
        let _ = std::fs::remove_file(output);
        return Err(e);
    }
    if let (Some(path), Some(json)) = (keyring_output, &keyring) {
        crate::fsutil::create_private_file(path, json.as_bytes())
            .map_err(|e| failed(format!("{}: {e}", path.display())))?;
    }
    let bytes = std::fs::metadata(output).map(|m| m.len()).unwrap_or(0);
    Ok(BackupDone {
        bytes,
        with_keyring,
        keyring_output: keyring_output.map(Path::to_path_buf),
    })
}

/// What [`restore`] did.
#[derive(Debug)]
pub struct Restored {
    pub database: PathBuf,
    /// Where the backup's keyring was written, when it carried one and none was there.
    pub keyring: Option<PathBuf>,
}

/// Restores the backup `file` into the configured SQLite database (the service stopped);
/// refuses to replace a database that exists unless `force`. A backup carrying the keyring
/// restores it to the keyring file when there is none, and refuses a different one there.
pub async fn restore(config: &Config, file: &Path, force: bool) -> Result<Restored, BackupError> {
    let target = sqlite_file(config)?;
    if !file.is_file() {
        return Err(BackupError::Usage(format!(
            "{}: no such backup file",
            file.display()
        )));
    }
    let occupied = std::fs::metadata(&target).is_ok_and(|m| m.len() > 0);
    if occupied && !force {
        return Err(BackupError::Usage(format!(
            "{} exists: stop the service and pass --force to replace it",
            target.display()
        )));
    }
    let problems = files::integrity_check_file(file).await.map_err(failed)?;
    if problems != ["ok"] {
        return Err(BackupError::Failed(format!(
            "{}: integrity check failed: {}",
            file.display(),
            problems.join("; ")
        )));
    }
    let dir = target
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    crate::fsutil::create_private_dir(dir)
        .map_err(|e| failed(format!("{}: {e}", dir.display())))?;
    // Copied next to the target, then renamed over it: the database is the old one or the
    // restored one, never half of each.
    let staging = dir.join(format!(".restoring-{}.db", uuid::Uuid::new_v4().simple()));
    let staged = async {
        let bytes = std::fs::read(file).map_err(|e| failed(format!("{}: {e}", file.display())))?;
        crate::fsutil::create_private_file(&staging, &bytes)
            .map_err(|e| failed(format!("{}: {e}", staging.display())))?;
        let keyring = files::embedded_keyring(&staging).await.map_err(failed)?;
        if keyring.is_some() {
            files::strip_keyring(&staging).await.map_err(failed)?;
        }
        Ok::<_, BackupError>(keyring)
    }
    .await;
    let keyring = match staged {
        Ok(k) => k,
        Err(e) => {
            let _ = std::fs::remove_file(&staging);
            return Err(e);
        }
    };
    let mut keyring_written = None;
    if let Some(json) = keyring {
        let path = config.keyring_path();
        match std::fs::read_to_string(&path) {
            Ok(existing) if existing.trim() == json.trim() => {}
            Ok(_) => {
                let _ = std::fs::remove_file(&staging);
                return Err(BackupError::Usage(format!(
                    "{} holds another keyring than the backup's: move it away first",
                    path.display()
                )));
            }
            Err(_) => {
                crate::fsutil::create_private_file(&path, json.as_bytes())
                    .map_err(|e| failed(format!("{}: {e}", path.display())))?;
                keyring_written = Some(path);
            }
        }
    }
    // The old database's journal files would be replayed over the restored one.
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut name = target.clone().into_os_string();
        name.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(name));
    }
    std::fs::rename(&staging, &target).map_err(|e| failed(format!("{}: {e}", target.display())))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(Restored {
        database: target,
        keyring: keyring_written,
    })
}

/// The outcome of [`verify`]: one line per check, and whether all passed.
#[derive(Debug)]
pub struct Verified {
    pub lines: Vec<String>,
    pub ok: bool,
}

/// Verifies the backup `file`: SQLite's integrity check, the KEK check values against the
/// keyring (`keyring`, else the one the backup carries, else the configured one), and every
/// cellule's audit chain with that keyring's signing and MAC keys. The backup itself is not
/// modified: it is checked on a temporary copy.
pub async fn verify(
    config: &Config,
    file: &Path,
    keyring: Option<&Path>,
    now: DateTime<Utc>,
) -> Result<Verified, BackupError> {
    if !file.is_file() {
        return Err(BackupError::Usage(format!(
            "{}: no such backup file",
            file.display()
        )));
    }
    let mut lines = Vec::new();
    let problems = files::integrity_check_file(file).await.map_err(failed)?;
    if problems != ["ok"] {
        lines.push(format!("integrity: FAILED: {}", problems.join("; ")));
        return Ok(Verified { lines, ok: false });
    }
    lines.push("integrity: ok".into());
    let (keyring, from) = match keyring {
        Some(path) => (
            Keyring::load(path).map_err(|e| failed(format!("{}: {e}", path.display())))?,
            path.display().to_string(),
        ),
        None => match files::embedded_keyring(file).await.map_err(failed)? {
            Some(json) => (
                Keyring::from_json(&json).map_err(failed)?,
                "the backup's own".to_owned(),
            ),
            None => {
                let json = keyring_json(config).map_err(|e| {
                    BackupError::Usage(format!(
                        "no keyring to check it with (pass --keyring FILE): {e}"
                    ))
                })?;
                (
                    Keyring::from_json(&json).map_err(failed)?,
                    "the configured one".to_owned(),
                )
            }
        },
    };
    let copy = std::env::temp_dir().join(format!(
        "cellule-verify-{}.db",
        uuid::Uuid::new_v4().simple()
    ));
    let result = async {
        let bytes = std::fs::read(file).map_err(|e| failed(format!("{}: {e}", file.display())))?;
        crate::fsutil::create_private_file(&copy, &bytes)
            .map_err(|e| failed(format!("{}: {e}", copy.display())))?;
        let url = DatabaseUrl::new(format!("sqlite://{}", copy.display()));
        let db = storage::connect(&url, &PoolConfig::default(), true)
            .await
            .map_err(failed)?;
        let checked = check_copy(db.as_ref(), keyring, &from, now, &mut lines).await;
        db.close().await;
        checked
    }
    .await;
    for suffix in ["", "-wal", "-shm"] {
        let mut name = copy.clone().into_os_string();
        name.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(name));
    }
    let ok = result?;
    Ok(Verified { lines, ok })
}

/// The keyring and audit checks of [`verify`], on the temporary copy `db`.
async fn check_copy(
    db: &dyn Database,
    keyring: Keyring,
    from: &str,
    now: DateTime<Utc>,
    lines: &mut Vec<String>,
) -> Result<bool, BackupError> {
    let keys = KeyService::new(keyring, KeyringSource::Inline);
    if let Err(e) = keys.reconcile(db, now).await {
        lines.push(format!("keyring ({from}): FAILED: {e}"));
        return Ok(false);
    }
    lines.push(format!(
        "keyring ({from}): ok, KEK check values match (versions {:?})",
        keys.keyring().versions()
    ));
    let trusted = Trusted {
        public_keys: Signer::new(keys.keyring()).map_err(failed)?.public_keys(),
        macs: keys.audit_macs(),
        // A backup is older than the witness file by nature: its checkpoints past the backup
        // would read as a rollback. The chain, its codes and its signatures are checked.
        witnessed: Vec::new(),
        witness: None,
    };
    let mut ok = true;
    for cellule in db.list_cellules().await.map_err(failed)? {
        let slug = cellule.slug.as_str();
        let report = auditor::verify_chain(db, slug, &trusted)
            .await
            .map_err(failed)?;
        match &report.broken {
            None => lines.push(format!(
                "audit {slug}: ok, {} entries checked, {} authenticated, head {}",
                report.entries_checked, report.entries_authenticated, report.head.seq
            )),
            Some(b) => {
                ok = false;
                lines.push(format!(
                    "audit {slug}: BROKEN at entry {}: {}",
                    b.seq, b.reason
                ));
            }
        }
    }
    Ok(ok)
}
