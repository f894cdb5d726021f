//! Private files: everything the service writes to disk is readable by its own user only.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Creates `dir` (and its parents) with mode 0700 when missing.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Creates a new file with mode 0600 and writes `contents`; fails if the file exists.
pub fn create_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Refuses a secret file that other local users can read or write.
pub fn check_private(path: &Path) -> std::io::Result<()> {
    check_mode(path, "600")
}

/// Refuses a private folder (the data directory, the database's) that other local users can
/// list, enter or write.
pub fn check_private_dir(path: &Path) -> std::io::Result<()> {
    check_mode(path, "700")
}

fn check_mode(path: &Path, wanted: &str) -> std::io::Result<()> {
    let mode = std::fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{} has permissions {:o}; it must be accessible to its owner only: run `chmod {wanted} {}`",
                path.display(),
                mode & 0o777,
                path.display()
            ),
        ));
    }
    Ok(())
}
