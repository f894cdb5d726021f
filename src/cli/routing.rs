//! `cellule routing`: a cellule's routing directory imported from and exported to TOML.

use super::*;

/// Longest routing directory file read, in bytes.
const MAX_DIRECTORY_FILE: u64 = 1024 * 1024;

/// `cellule routing import|export`. Like `PUT …/interlocutors` and `PUT …/routing`, an import
/// is recorded in the cellule's audit log (`change_routing`, by `system:cli:<os user>`, with
/// the ids of the interlocutors and rules added, removed and changed).
pub(super) async fn run(
    config: &Config,
    clock: &dyn Clock,
    cmd: RoutingCommand,
) -> Result<(), CliError> {
    use std::io::Read;
    let fail =
        |e: &dyn std::fmt::Display| CliError::failure(crate::config::one_line(&e.to_string()));
    match cmd {
        RoutingCommand::Import { cellule, file } => {
            let slug = arg("cellule", CelluleSlug::parse(&cellule))?;
            let shown = if file.as_os_str() == "-" {
                "stdin".to_owned()
            } else {
                file.display().to_string()
            };
            // Read and check everything before touching the database.
            let mut bytes = Vec::new();
            let read = if file.as_os_str() == "-" {
                std::io::stdin()
                    .take(MAX_DIRECTORY_FILE + 1)
                    .read_to_end(&mut bytes)
            } else {
                std::fs::File::open(&file)
                    .and_then(|f| f.take(MAX_DIRECTORY_FILE + 1).read_to_end(&mut bytes))
            };
            read.map_err(|e| CliError::usage(format!("{shown}: {e}")))?;
            if bytes.len() as u64 > MAX_DIRECTORY_FILE {
                return Err(CliError::usage(format!(
                    "{shown}: larger than {MAX_DIRECTORY_FILE} bytes"
                )));
            }
            let text = String::from_utf8(bytes)
                .map_err(|_| CliError::usage(format!("{shown}: not UTF-8 text")))?;
            let dir = crate::domain::routing::Directory::from_toml(&text).map_err(|e| {
                let problems: Vec<String> = e.to_string().lines().map(str::to_owned).collect();
                CliError::usage(format!(
                    "{shown}: refused, nothing changed: {}",
                    problems.join("; ")
                ))
            })?;
            let db = app::open_database(config, true).await?;
            let result = async {
                if db.get_cellule(&slug).await.map_err(|e| fail(&e))?.is_none() {
                    return Err(CliError::failure(format!("no cellule {slug}")));
                }
                // The import's entry needs the keyring's audit MAC key.
                app::open_keys(config, db.as_ref(), clock).await?;
                crate::services::review::directory::import_directory(
                    db.as_ref(),
                    &crate::services::cellules::Admin::cli(),
                    slug.as_str(),
                    &dir,
                    clock.now(),
                )
                .await
                .map_err(CliError::from)
            }
            .await;
            db.close().await;
            result?;
            println!(
                "imported the routing directory of {slug}: {} interlocutor(s), {} rule(s)",
                dir.interlocutors.len(),
                dir.rules.len()
            );
            Ok(())
        }
        RoutingCommand::Export { cellule, output } => {
            let slug = arg("cellule", CelluleSlug::parse(&cellule))?;
            let db = app::open_database(config, true).await?;
            let result = async {
                if db.get_cellule(&slug).await.map_err(|e| fail(&e))?.is_none() {
                    return Err(CliError::failure(format!("no cellule {slug}")));
                }
                crate::services::review::directory::export_directory(db.as_ref(), slug.as_str())
                    .await
                    .map_err(CliError::from)
            }
            .await;
            db.close().await;
            let text = result?.to_toml();
            match output {
                Some(path) => std::fs::write(&path, text)
                    .map_err(|e| fail(&format!("{}: {e}", path.display())))?,
                None => print!("{text}"),
            }
            Ok(())
        }
    }
}
