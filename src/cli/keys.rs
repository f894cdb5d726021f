//! `cellule keys`: the keyring's status, rotation and retirement.

use serde_json::json;

use super::*;
use crate::audit::{Action, Actor};

/// Records a keyring change (`rotate_keys`, `retire_key`) in every cellule's chain, naming the
/// operator (`system:cli:<os user>`) and, in the detail, the KEK versions before → after.
async fn record_keys(
    db: &dyn crate::storage::Database,
    clock: &dyn Clock,
    action: Action,
    detail: &serde_json::Value,
) -> Result<(), CliError> {
    let actor = Actor::cli();
    let now = clock.now();
    crate::services::audit_log::record_everywhere(db, |cellule| {
        actor
            .in_cellule(cellule, None)
            .entry(action, now)
            .target("keyring", "kek")
            .detail(detail)
    })
    .await
    .map_err(|e| {
        CliError::failure(format!(
            "the keyring change could not be recorded in the audit log, nothing changed: {}",
            crate::config::one_line(&e.to_string())
        ))
    })?;
    Ok(())
}

pub(super) async fn run(config: &Config, cmd: KeysCommand) -> Result<(), CliError> {
    use crate::crypto::Keyring;
    use crate::services::keys::{KeyService, KeyringSource, RewrapOptions};
    let clock = SystemClock;
    if config.keyring.is_some() && !matches!(cmd, KeysCommand::Status) {
        return Err(CliError::usage(
            "the keyring is given inline (CELLULE_KEYRING); rotation and retirement need a keyring file",
        ));
    }
    let db = app::open_database(config, true).await?;
    let result = async {
        let keys = app::open_keys(config, db.as_ref(), &clock).await?;
        let fail = |e: &dyn std::fmt::Display| CliError::failure(crate::config::one_line(&e.to_string()));
        match cmd {
            KeysCommand::Status => {
                let keyring = keys.keyring();
                let counts: std::collections::HashMap<i64, i64> =
                    db.wrapped_key_counts().await.map_err(|e| fail(&e))?.into_iter().collect();
                for v in keyring.versions() {
                    let current = if v == keyring.current_version() { " (current)" } else { "" };
                    println!("KEK v{v}{current}: wraps {} key(s)", counts.get(&i64::from(v)).copied().unwrap_or(0));
                }
                let pending: i64 =
                    counts.iter().filter(|(v, _)| **v != i64::from(keyring.current_version())).map(|(_, n)| n).sum();
                if pending > 0 {
                    println!("{pending} key(s) not on the current version: run `cellule keys rotate --resume`");
                }
                Ok(())
            }
            KeysCommand::Rotate { resume, batch } => {
                let KeyringSource::File(path) = keys.source().clone() else {
                    return Err(CliError::usage("rotation needs a keyring file"));
                };
                let keys = if resume {
                    keys
                } else {
                    let before = keys.keyring().current_version();
                    let mut keyring = Keyring::load(&path).map_err(|e| fail(&e))?;
                    let version = keyring.add_version(clock.now()).map_err(|e| fail(&e))?;
                    // The audit keys rotate with the KEKs: the new ones sign and authenticate
                    // from now on, the old ones still verify what they made.
                    let mac = keyring.add_audit_mac_key(clock.now()).map_err(|e| fail(&e))?;
                    keyring.add_signing_key(clock.now()).map_err(|e| fail(&e))?;
                    // Recorded before the new version is saved (no entry, no change), and
                    // before re-wrapping, which a failure may interrupt (`--resume` records its
                    // own entry).
                    record_keys(db.as_ref(), &clock, Action::RotateKeys, &json!({
                        "kek_version": { "before": before, "after": version },
                        "audit_mac_key_version": mac,
                        "resume": false,
                    }))
                    .await?;
                    keyring.save(&path).map_err(|e| fail(&e))?;
                    println!(
                        "added KEK v{version}, audit MAC key v{mac} and a new audit signing key to {}",
                        path.display()
                    );
                    let keys = std::sync::Arc::new(KeyService::new(keyring, KeyringSource::File(path.clone())));
                    keys.reconcile(db.as_ref(), clock.now()).await.map_err(|e| fail(&e))?;
                    // Entries from here on carry the new keyring's MAC key.
                    db.authenticate_audit(keys.clone());
                    keys
                };
                let done = keys
                    .rewrap(db.as_ref(), RewrapOptions { batch_size: batch, fail_in_batch: None }, |p| {
                        if p.remaining > 0 {
                            println!("re-wrapping: {} done, {} left", p.done, p.remaining);
                        }
                    })
                    .await
                    .map_err(|e| fail(&e))?;
                if resume {
                    let current = keys.keyring().current_version();
                    record_keys(db.as_ref(), &clock, Action::RotateKeys, &json!({
                        "kek_version": { "before": current, "after": current },
                        "resume": true,
                        "rewrapped": done.done,
                    }))
                    .await?;
                }
                println!(
                    "re-wrapped {} key(s); every key is on KEK v{}",
                    done.done,
                    keys.keyring().current_version()
                );
                Ok(())
            }
            KeysCommand::Retire { version } => {
                let KeyringSource::File(path) = keys.source().clone() else {
                    return Err(CliError::usage("retirement needs a keyring file"));
                };
                if version == keys.keyring().current_version() {
                    return Err(CliError::usage(format!("KEK v{version} is the current version; rotate first")));
                }
                let in_use = db
                    .wrapped_key_counts()
                    .await
                    .map_err(|e| fail(&e))?
                    .into_iter()
                    .find(|(v, _)| *v == i64::from(version))
                    .map_or(0, |(_, n)| n);
                if in_use > 0 {
                    return Err(CliError::failure(format!(
                        "KEK v{version} still wraps {in_use} key(s); run `cellule keys rotate --resume` first"
                    )));
                }
                let mut keyring = Keyring::load(&path).map_err(|e| fail(&e))?;
                let before = keyring.versions();
                keyring.retire(version).map_err(|e| CliError::usage(e.to_string()))?;
                // Recorded before the retirement is saved: no entry, no change.
                record_keys(db.as_ref(), &clock, Action::RetireKey, &json!({
                    "kek_version": version,
                    "versions": { "before": before, "after": keyring.versions() },
                }))
                .await?;
                keyring.save(&path).map_err(|e| fail(&e))?;
                println!("retired KEK v{version}");
                Ok(())
            }
        }
    }
    .await;
    db.close().await;
    result
}
