//! `cellule audit`: verify, export, checkpoint and purge the audit log from the command line.

use super::*;

/// The entry an operator's command leaves in the audit log.
fn operator_entry(
    cellule: &str,
    action: crate::audit::Action,
    now: chrono::DateTime<chrono::Utc>,
) -> crate::audit::Draft {
    crate::audit::AuditCtx {
        cellule: cellule.to_owned(),
        actor: crate::audit::Actor::system("cli"),
        request_id: None,
    }
    .entry(action, now)
}

pub(super) async fn run(
    config: &Config,
    db: Arc<dyn crate::storage::Database>,
    clock: &dyn Clock,
    cmd: AuditCommand,
) -> Result<(), CliError> {
    use crate::audit::{Action, CheckpointKind, Signer};
    use crate::services::audit_log::AuditLog;
    use crate::services::auditor;
    let fail =
        |e: &dyn std::fmt::Display| CliError::failure(crate::config::one_line(&e.to_string()));
    let keys = app::open_keys(config, db.as_ref(), clock).await?;
    Signer::new(keys.keyring()).map_err(|e| fail(&e))?;
    // Entries of operators' commands are written as they come: no checkpoint is due from them.
    let witness = crate::services::witness::Witness::open(
        config.audit.witness_file.as_deref(),
        config.audit.witness_log,
    )
    .map_err(|e| fail(&e))?;
    let log = AuditLog::new(db.clone(), keys.clone(), 0, witness);
    let cellules = |one: Option<String>| {
        let db = db.clone();
        async move {
            match one {
                Some(slug) => {
                    let slug = arg("cellule", CelluleSlug::parse(&slug))?;
                    match db.get_cellule(&slug).await.map_err(|e| fail(&e))? {
                        Some(c) => Ok(vec![c.slug.as_str().to_owned()]),
                        None => Err(CliError::failure(format!("no cellule {slug}"))),
                    }
                }
                None => Ok(db
                    .list_cellules()
                    .await
                    .map_err(|e| fail(&e))?
                    .into_iter()
                    .map(|c| c.slug.as_str().to_owned())
                    .collect::<Vec<_>>()),
            }
        }
    };
    match cmd {
        AuditCommand::Verify { cellule } => {
            let mut broken = Vec::new();
            for slug in cellules(cellule).await? {
                log.record(
                    &slug,
                    vec![operator_entry(&slug, Action::VerifyAudit, clock.now())],
                )
                .await
                .map_err(|e| fail(&e))?;
                let trusted = log.trusted(&slug).map_err(|e| fail(&e))?;
                let report = auditor::verify_chain(db.as_ref(), &slug, &trusted)
                    .await
                    .map_err(|e| fail(&e))?;
                match &report.broken {
                    None => println!(
                        "{slug}: ok, {} entries checked, head {}, {} checkpoint(s)",
                        report.entries_checked, report.head.seq, report.checkpoints
                    ),
                    Some(b) => {
                        println!("{slug}: BROKEN at entry {}: {}", b.seq, b.reason);
                        broken.push(format!("{slug} at entry {}", b.seq));
                    }
                }
            }
            if broken.is_empty() {
                Ok(())
            } else {
                Err(CliError::failure(format!(
                    "audit chain broken: {}",
                    broken.join(", ")
                )))
            }
        }
        AuditCommand::Export {
            cellule,
            format,
            output,
        } => {
            use futures_util::StreamExt;
            use tokio::io::AsyncWriteExt;
            let format = match format.as_str() {
                "jsonl" => auditor::ExportFormat::Jsonl,
                "fhir" => auditor::ExportFormat::Fhir,
                other => {
                    return Err(CliError::usage(format!(
                        "format: {other:?} is not jsonl or fhir"
                    )));
                }
            };
            let slug = cellules(Some(cellule)).await?.remove(0);
            let mut out: Box<dyn tokio::io::AsyncWrite + Unpin + Send> = match &output {
                Some(path) => {
                    crate::fsutil::create_private_file(path, b"")
                        .map_err(|e| fail(&format!("{}: {e}", path.display())))?;
                    Box::new(
                        tokio::fs::OpenOptions::new()
                            .write(true)
                            .truncate(true)
                            .open(path)
                            .await
                            .map_err(|e| fail(&format!("{}: {e}", path.display())))?,
                    )
                }
                None => Box::new(tokio::io::stdout()),
            };
            log.record(
                &slug,
                vec![operator_entry(&slug, Action::ExportAudit, clock.now())],
            )
            .await
            .map_err(|e| fail(&e))?;
            // Signed at the export's own entry: the file is covered whole by a checkpoint.
            let through = log
                .sign(&slug, CheckpointKind::OnDemand, clock.now())
                .await
                .map_err(|e| fail(&e))?
                .map_or(0, |c| c.seq);
            let stream = auditor::export_stream(db.clone(), slug, format, clock.now(), through);
            futures_util::pin_mut!(stream);
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| fail(&e))?;
                out.write_all(&chunk).await.map_err(|e| fail(&e))?;
            }
            out.flush().await.map_err(|e| fail(&e))?;
            Ok(())
        }
        AuditCommand::Checkpoint { cellule } => {
            for slug in cellules(cellule).await? {
                log.record(
                    &slug,
                    vec![operator_entry(&slug, Action::CheckpointAudit, clock.now())],
                )
                .await
                .map_err(|e| fail(&e))?;
                match log
                    .sign(&slug, CheckpointKind::OnDemand, clock.now())
                    .await
                    .map_err(|e| fail(&e))?
                {
                    Some(c) => println!(
                        "{slug}: checkpoint at entry {} signed by key {}",
                        c.seq, c.key_id
                    ),
                    None => println!("{slug}: no entries yet"),
                }
            }
            Ok(())
        }
        AuditCommand::Purge {
            cellule,
            before,
            yes,
        } => {
            if !yes {
                return Err(CliError::usage(
                    "audit purge removes entries for good: add --yes to confirm",
                ));
            }
            let slug = cellules(Some(cellule)).await?.remove(0);
            let before = before
                .and_hms_opt(0, 0, 0)
                .map(|t| t.and_utc())
                .ok_or_else(|| CliError::usage("before: not a day"))?;
            let purged = log
                .purge(
                    &slug,
                    before.timestamp_micros(),
                    clock.now(),
                    &crate::audit::Actor::cli(),
                )
                .await
                .map_err(|e| fail(&e))?;
            match purged.anchor {
                Some(anchor) => println!(
                    "{slug}: {} entries removed; signed retention checkpoint at entry {}",
                    purged.removed, anchor.seq
                ),
                None => println!("{slug}: no entries before {}", before.date_naive()),
            }
            Ok(())
        }
    }
}
