//! Backups: a SQLite backup taken by `cellule backup` while clients keep writing through the API
//! restores with `cellule restore`, passes `cellule backup verify` (integrity, KEK check values,
//! audit chains) and holds every case acknowledged before it started; the keyring stays out of
//! the backup unless asked; restore refuses to replace a database without `--force`. On
//! PostgreSQL, a `pg_dump` restored with `pg_restore` into a fresh database verifies.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::Connection;

use crate::cli::{cellule, run, stderr, stdout};
use crate::helpers::{Backend, PgDatabase, REF1, private_tempdir, referral, spawn_app};

/// `cellule` with the app's data directory and `database`.
fn cli(data_dir: &Path, database: &str) -> Command {
    let mut cmd = cellule(data_dir);
    cmd.arg("--data-dir")
        .arg(data_dir)
        .arg("--database")
        .arg(database);
    cmd
}

fn assert_ok(out: &std::process::Output) {
    assert!(out.status.success(), "stderr: {}", stderr(out));
}

fn assert_fails_one_line(out: &std::process::Output, code: i32, contains: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "{err:?}");
    assert!(err.contains(contains), "{contains:?} not in {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_backup_under_load_restores_verifies_and_holds_every_acknowledged_case() {
    let app = Arc::new(spawn_app(Backend::Sqlite).await);
    app.standard_cellule().await;
    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..3 {
        let (app, acknowledged, stop) = (app.clone(), acknowledged.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let a = app
                    .refer(REF1, &referral(&format!("Situation {w}-{i} sous charge.")))
                    .await;
                assert_eq!(a.status, 201, "{}", a.text);
                if let Some(id) = a.body["id"].as_str() {
                    acknowledged.lock().expect("lock").push(id.to_owned());
                }
                i += 1;
            }
        }));
    }
    while acknowledged.lock().expect("lock").len() < 30 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before: Vec<String> = acknowledged.lock().expect("lock").clone();
    let dir = private_tempdir();
    let file = dir.path().join("cellule.backup");
    let keyring_copy = dir.path().join("keyring.backup.json");
    let (data, url) = (app.data_dir.path().to_path_buf(), app.database_url.clone());
    let (f, k) = (file.clone(), keyring_copy.clone());
    let out = tokio::task::spawn_blocking(move || {
        run(cli(&data, &url)
            .arg("backup")
            .arg("--output")
            .arg(&f)
            .arg("--keyring-output")
            .arg(&k))
    })
    .await
    .expect("backup");
    let during = acknowledged.lock().expect("lock").len();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.expect("writer");
    }
    assert_ok(&out);
    assert!(
        stdout(&out).contains("backup written to"),
        "{}",
        stdout(&out)
    );
    let after = acknowledged.lock().expect("lock").len();
    assert!(
        during > before.len() || after > during,
        "the writes went on during the backup"
    );
    use std::os::unix::fs::PermissionsExt;
    for path in [&file, &keyring_copy] {
        let mode = std::fs::metadata(path).expect("file").permissions().mode();
        assert_eq!(mode & 0o077, 0, "{} is private", path.display());
    }
    // The keyring is apart: not in the backup file.
    let backup_url = format!("sqlite://{}", file.display());
    let mut c = sqlx::SqliteConnection::connect(&backup_url)
        .await
        .expect("backup");
    let tables: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE name = 'backup_keyring'")
            .fetch_one(&mut c)
            .await
            .expect("tables");
    assert_eq!(tables, 0);
    c.close().await.ok();

    // Restored into a new data directory, verified with the keyring copied apart.
    let target = private_tempdir();
    let restored_url = format!("sqlite://{}", target.path().join("cellule.db").display());
    let restore = || run(cli(target.path(), &restored_url).arg("restore").arg(&file));
    assert_ok(&restore());
    assert_fails_one_line(&restore(), 2, "--force");
    let out = run(cli(target.path(), &restored_url)
        .arg("restore")
        .arg(&file)
        .arg("--force"));
    assert_ok(&out);
    let out = run(cli(target.path(), &restored_url)
        .args(["backup", "verify"])
        .arg(&file)
        .arg("--keyring")
        .arg(&keyring_copy));
    assert_ok(&out);
    let text = stdout(&out);
    assert!(text.contains("integrity: ok"), "{text}");
    assert!(text.contains("KEK check values match"), "{text}");
    assert!(text.contains("audit perpignan: ok"), "{text}");

    // Every case acknowledged before the backup started is in the restored database.
    let mut c = sqlx::SqliteConnection::connect(&restored_url)
        .await
        .expect("restored");
    for id in &before {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM cases WHERE id = ?1")
            .bind(id)
            .fetch_one(&mut c)
            .await
            .expect("count");
        assert_eq!(n, 1, "case {id} acknowledged before the backup is missing");
    }
    c.close().await.ok();

    // A keyring that is not this database's fails; so does a file that is not a database.
    let other = private_tempdir();
    let other_url = format!("sqlite://{}", other.path().join("cellule.db").display());
    assert_ok(&run(cli(other.path(), &other_url).args(["keys", "status"])));
    let out = run(cli(target.path(), &restored_url)
        .args(["backup", "verify"])
        .arg(&file)
        .arg("--keyring")
        .arg(other.path().join("keyring.json")));
    assert_fails_one_line(&out, 1, "failed verification");
    assert!(stdout(&out).contains("keyring"), "{}", stdout(&out));
    let garbage = dir.path().join("garbage.backup");
    std::fs::write(&garbage, b"not a database at all, just some text").expect("write");
    let out = run(cli(target.path(), &restored_url)
        .args(["backup", "verify"])
        .arg(&garbage));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));

    // With --with-keyring the backup carries it, and verifies with it alone.
    let with = dir.path().join("with-keyring.backup");
    let out = run(cli(app.data_dir.path(), &app.database_url)
        .arg("backup")
        .arg("--output")
        .arg(&with)
        .arg("--with-keyring"));
    assert_ok(&out);
    assert!(
        stdout(&out).contains("WITH the keyring"),
        "{}",
        stdout(&out)
    );
    let out = run(cli(other.path(), &other_url)
        .args(["backup", "verify"])
        .arg(&with));
    assert_ok(&out);
    assert!(
        stdout(&out).contains("the backup's own"),
        "{}",
        stdout(&out)
    );
    // An existing output is refused.
    let out = run(cli(app.data_dir.path(), &app.database_url)
        .arg("backup")
        .arg("--output")
        .arg(&with));
    assert_fails_one_line(&out, 2, "exists");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_backup_commands_point_to_pg_dump() {
    let app = spawn_app(Backend::Postgres).await;
    let dir = private_tempdir();
    let out = run(cli(app.data_dir.path(), &app.database_url)
        .arg("backup")
        .arg("--output")
        .arg(dir.path().join("x.backup")));
    assert_fails_one_line(&out, 2, "pg_dump");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pg_dump_restored_into_a_fresh_database_verifies() {
    let app = spawn_app(Backend::Postgres).await;
    app.standard_cellule().await;
    for i in 0..5 {
        app.refer_ok(REF1, &format!("Situation {i} sauvegardée."))
            .await;
    }
    let dir = private_tempdir();
    let dump = dir.path().join("cellule.pgdump");
    let out = Command::new("pg_dump")
        .args(["--format=custom", "--no-owner", "--file"])
        .arg(&dump)
        .arg(&app.database_url)
        .output()
        .expect("pg_dump");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fresh = PgDatabase::create().await;
    let out = Command::new("pg_restore")
        .args(["--no-owner", "--exit-on-error", "--dbname"])
        .arg(&fresh.url)
        .arg(&dump)
        .output()
        .expect("pg_restore");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(cli(app.data_dir.path(), &fresh.url).args(["audit", "verify"]));
    assert_ok(&out);
    assert!(stdout(&out).contains("perpignan: ok"), "{}", stdout(&out));
    let mut c = sqlx::PgConnection::connect(&fresh.url)
        .await
        .expect("fresh");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM cases")
        .fetch_one(&mut c)
        .await
        .expect("count");
    assert_eq!(n, 5);
    c.close().await.ok();
}
