//! `cellule backup` (while serving), `cellule backup verify` and `cellule restore`: the command
//! line of [`crate::services::backup`]. One line per result; failures exit 2 (bad input) or 1.

use super::*;
use crate::services::backup::{self as service, BackupError};

impl From<BackupError> for CliError {
    fn from(e: BackupError) -> Self {
        match e {
            BackupError::Usage(m) => CliError::usage(m),
            BackupError::Failed(m) => CliError::failure(m),
        }
    }
}

pub(super) async fn run(
    config: &Config,
    clock: &dyn Clock,
    args: BackupArgs,
) -> Result<(), CliError> {
    if let Some(BackupCommand::Verify { file, keyring }) = args.command {
        let verified = service::verify(config, &file, keyring.as_deref(), clock.now()).await?;
        for line in &verified.lines {
            println!("{line}");
        }
        return if verified.ok {
            Ok(())
        } else {
            Err(CliError::failure(format!(
                "{}: the backup failed verification",
                file.display()
            )))
        };
    }
    let Some(output) = args.output else {
        return Err(CliError::usage(
            "give --output FILE (or `cellule backup verify FILE`)",
        ));
    };
    // The serving database, as it is: no migration from here.
    let db = app::open_database(config, false).await?;
    let result = service::backup(
        config,
        db.as_ref(),
        &output,
        args.with_keyring,
        args.keyring_output.as_deref(),
    )
    .await;
    db.close().await;
    let done = result?;
    println!(
        "backup written to {} ({} bytes){}",
        output.display(),
        done.bytes,
        if done.with_keyring {
            ", WITH the keyring: keep it encrypted"
        } else {
            ""
        }
    );
    match &done.keyring_output {
        Some(path) => println!(
            "keyring copied to {}: store it apart from the backup",
            path.display()
        ),
        None if !done.with_keyring => println!(
            "the keyring is not in the backup: back up {} apart (without it no case can be read)",
            config.keyring_path().display()
        ),
        None => {}
    }
    Ok(())
}

pub(super) async fn restore(config: &Config, file: &Path, force: bool) -> Result<(), CliError> {
    let restored = service::restore(config, file, force).await?;
    println!(
        "restored {} into {}",
        file.display(),
        restored.database.display()
    );
    if let Some(path) = restored.keyring {
        println!("keyring restored to {}", path.display());
    }
    Ok(())
}
