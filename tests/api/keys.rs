//! Per-case envelope encryption (issue 3): moved or damaged ciphertexts never open, content never
//! reaches the database in clear, KEKs rotate (resumably) and retire, and a wrong keyring is
//! refused at start.

use std::path::Path;
use std::process::{Command, Stdio};

use cellule::crypto::Keyring;
use cellule::services::keys::{KeyService, KeyringSource, RewrapOptions};
use reqwest::Method;
use serde_json::json;
use sqlx::Connection;

use crate::backend_tests;
use crate::helpers::{Backend, COORD, PSY, REF1, TestApp, referral, spawn_app};

/// Raw access to the test database, as someone with database access would have.
enum Raw {
    Sqlite(sqlx::SqliteConnection),
    Pg(sqlx::PgConnection),
}

impl Raw {
    async fn open(app: &TestApp) -> Self {
        match app.database_url.starts_with("sqlite") {
            true => Raw::Sqlite(
                sqlx::SqliteConnection::connect(&app.database_url)
                    .await
                    .expect("sqlite"),
            ),
            false => Raw::Pg(
                sqlx::PgConnection::connect(&app.database_url)
                    .await
                    .expect("pg"),
            ),
        }
    }

    async fn exec(&mut self, sql: &str) {
        match self {
            Raw::Sqlite(c) => sqlx::query(sql).execute(c).await.map(|_| ()),
            Raw::Pg(c) => sqlx::query(sql).execute(c).await.map(|_| ()),
        }
        .expect("exec");
    }

    /// Reads one blob: `sql` selects it by `$1`/`?1` id.
    async fn blob(&mut self, sql_sqlite: &str, sql_pg: &str, id: &str) -> Vec<u8> {
        match self {
            Raw::Sqlite(c) => sqlx::query_scalar(sql_sqlite).bind(id).fetch_one(c).await,
            Raw::Pg(c) => sqlx::query_scalar(sql_pg).bind(id).fetch_one(c).await,
        }
        .expect("blob")
    }

    async fn set_blob(&mut self, sql_sqlite: &str, sql_pg: &str, value: &[u8], id: &str) {
        match self {
            Raw::Sqlite(c) => sqlx::query(sql_sqlite)
                .bind(value)
                .bind(id)
                .execute(c)
                .await
                .map(|_| ()),
            Raw::Pg(c) => sqlx::query(sql_pg)
                .bind(value)
                .bind(id)
                .execute(c)
                .await
                .map(|_| ()),
        }
        .expect("update");
    }
}

const NOTE_BODY: (&str, &str) = (
    "SELECT body FROM notes WHERE id = ?1",
    "SELECT body FROM notes WHERE id = $1",
);
const SET_NOTE_BODY: (&str, &str) = (
    "UPDATE notes SET body = ?1 WHERE id = ?2",
    "UPDATE notes SET body = $1 WHERE id = $2",
);
const SITUATION: (&str, &str) = (
    "SELECT situation FROM cases WHERE id = ?1",
    "SELECT situation FROM cases WHERE id = $1",
);
const SET_SITUATION: (&str, &str) = (
    "UPDATE cases SET situation = ?1 WHERE id = ?2",
    "UPDATE cases SET situation = $1 WHERE id = $2",
);
const SET_EXPECTATIONS: (&str, &str) = (
    "UPDATE cases SET expectations = ?1 WHERE id = ?2",
    "UPDATE cases SET expectations = $1 WHERE id = $2",
);
const EXPECTATIONS: (&str, &str) = (
    "SELECT expectations FROM cases WHERE id = ?1",
    "SELECT expectations FROM cases WHERE id = $1",
);

fn case_path(id: &str) -> String {
    format!("/v1/cellules/perpignan/cases/{id}")
}

async fn note(app: &TestApp, case: &str, body: &str) -> String {
    let a = app
        .request(
            Method::POST,
            &format!("{}/notes", case_path(case)),
            Some(&app.token(COORD)),
            Some(json!({"audience": "cellule", "body": body})),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.text);
    a.body["id"].as_str().expect("id").to_owned()
}

async fn expect_integrity_error(app: &TestApp, path: &str, case: &str) {
    let a = app.get(path, Some(&app.token(COORD))).await;
    a.assert_problem(500);
    assert_eq!(
        a.body["detail"], "An internal error occurred.",
        "{case}: generic body"
    );
    assert!(
        !a.text.contains("Situation") && !a.text.contains("Note"),
        "{case}: no content in {}",
        a.text
    );
    assert_eq!(
        app.get("/healthz", None).await.status,
        200,
        "{case}: the process still serves"
    );
}

async fn moved_or_flipped_ciphertexts_never_open(backend: Backend) {
    let app = spawn_app(backend).await;
    app.standard_cellule().await;
    let (a, _) = app.refer_ok(REF1, "Situation A.").await;
    let (b, _) = app.refer_ok(REF1, "Situation B.").await;
    let n1 = note(&app, &a, "Note un.").await;
    let n2 = note(&app, &a, "Note deux.").await;
    let notes = format!("{}/notes", case_path(&a));
    let mut raw = Raw::open(&app).await;
    match backend {
        Backend::Sqlite => raw.exec("DROP TRIGGER notes_append_only").await,
        Backend::Postgres => raw.exec("DROP TRIGGER notes_append_only ON notes").await,
    }

    // Another note's body.
    let body1 = raw.blob(NOTE_BODY.0, NOTE_BODY.1, &n1).await;
    let body2 = raw.blob(NOTE_BODY.0, NOTE_BODY.1, &n2).await;
    raw.set_blob(SET_NOTE_BODY.0, SET_NOTE_BODY.1, &body1, &n2)
        .await;
    expect_integrity_error(&app, &notes, "note copied to another note").await;
    raw.set_blob(SET_NOTE_BODY.0, SET_NOTE_BODY.1, &body2, &n2)
        .await;
    assert_eq!(app.get(&notes, Some(&app.token(COORD))).await.status, 200);

    // Another field of the same case.
    let situation_a = raw.blob(SITUATION.0, SITUATION.1, &a).await;
    let expectations_a = raw.blob(EXPECTATIONS.0, EXPECTATIONS.1, &a).await;
    raw.set_blob(SET_EXPECTATIONS.0, SET_EXPECTATIONS.1, &situation_a, &a)
        .await;
    expect_integrity_error(&app, &case_path(&a), "situation copied to expectations").await;
    raw.set_blob(SET_EXPECTATIONS.0, SET_EXPECTATIONS.1, &expectations_a, &a)
        .await;

    // Another case (its own key would not even try the right data key).
    let situation_b = raw.blob(SITUATION.0, SITUATION.1, &b).await;
    raw.set_blob(SET_SITUATION.0, SET_SITUATION.1, &situation_a, &b)
        .await;
    expect_integrity_error(&app, &case_path(&b), "situation copied to another case").await;
    raw.set_blob(SET_SITUATION.0, SET_SITUATION.1, &situation_b, &b)
        .await;

    // A note body moved into a case field.
    raw.set_blob(SET_SITUATION.0, SET_SITUATION.1, &body1, &a)
        .await;
    expect_integrity_error(&app, &case_path(&a), "note copied to a case field").await;

    // Any flipped bit.
    for i in [0, 3, 9, situation_a.len() / 2, situation_a.len() - 1] {
        let mut bad = situation_a.clone();
        bad[i] ^= 0x10;
        raw.set_blob(SET_SITUATION.0, SET_SITUATION.1, &bad, &a)
            .await;
        expect_integrity_error(&app, &case_path(&a), &format!("bit flipped at {i}")).await;
    }
    raw.set_blob(SET_SITUATION.0, SET_SITUATION.1, &situation_a, &a)
        .await;
    let ok = app.get(&case_path(&a), Some(&app.token(COORD))).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.body["situation"], "Situation A.");
    assert_eq!(
        app.get(&case_path(&b), Some(&app.token(COORD))).await.body["situation"],
        "Situation B."
    );
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// Every byte the database holds, as text: the SQLite files (WAL included) or a plain dump.
async fn database_bytes(app: &TestApp) -> String {
    match app.database_url.starts_with("sqlite") {
        true => {
            let mut all = Vec::new();
            for suffix in ["", "-wal", "-shm"] {
                let path = app.data_dir.path().join(format!("cellule.db{suffix}"));
                if let Ok(bytes) = std::fs::read(&path) {
                    all.extend_from_slice(&bytes);
                }
            }
            String::from_utf8_lossy(&all).into_owned()
        }
        false => {
            let out = Command::new("pg_dump")
                .args(["--dbname", &app.database_url, "--no-owner"])
                .stdin(Stdio::null())
                .output()
                .expect("pg_dump runs");
            assert!(
                out.status.success(),
                "pg_dump: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    }
}

async fn canary_scan_finds_no_content_in_the_database(backend: Backend) {
    let app = spawn_app(backend).await;
    app.standard_cellule().await;
    let canaries = [
        "CANARYSITUATIONq7x",
        "CANARYEXPECTk2m",
        "CANARYJUSTIFz9w",
        "CANARYNOTEp4r",
        "CANARYREASONv8s",
        "Canarylastnameh3j",
        "Canaryfirstnameb5n",
    ];
    let mut body = referral("Situation CANARYSITUATIONq7x du jour.");
    body["expectations"] = json!("Attentes CANARYEXPECTk2m.");
    body["consent"]["justification"] = json!("Injoignable CANARYJUSTIFz9w.");
    body["identity"] = json!({"last_name": "Canarylastnameh3j", "first_name": "Canaryfirstnameb5n", "birth_date": "1979-05-17"});
    let a = app.refer(REF1, &body).await;
    assert_eq!(a.status, 201, "{}", a.text);
    let id = a.body["id"].as_str().expect("id").to_owned();
    note(&app, &id, "Note CANARYNOTEp4r.").await;
    app.move_case(
        &id,
        json!({"to": "declined", "reason": "Motif CANARYREASONv8s"}),
    )
    .await;
    // The content is there for whoever may read it…
    let c = app.get(&case_path(&id), Some(&app.token(COORD))).await;
    assert!(c.text.contains("CANARYSITUATIONq7x") && c.text.contains("CANARYREASONv8s"));
    assert!(
        !c.text.contains("Canarylastname"),
        "the identity is not kept"
    );
    // …and nowhere in the database, in clear or hex.
    let dump = database_bytes(&app).await;
    assert!(dump.len() > 1000, "the scan read the database");
    assert!(
        dump.contains(&format!("PER-{}", chrono::Utc::now().format("%Y"))),
        "the scan sees clear columns"
    );
    for canary in canaries {
        for form in [
            canary.to_owned(),
            canary.to_lowercase(),
            canary.to_uppercase(),
            hex(canary),
        ] {
            assert!(!dump.contains(&form), "{canary} found in the database");
        }
    }
    let date = "1979-05-17";
    assert!(!dump.contains(date), "the birth date is not kept");
}

/// The `cellule` binary on the app's data directory and database, with a clean environment.
pub(crate) fn cellule_command(app: &TestApp, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cellule"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(app.data_dir.path())
        .args([
            "--data-dir",
            &app.data_dir.path().display().to_string(),
            "--database",
            &app.database_url,
        ])
        .args(args)
        .stdin(Stdio::null());
    c
}

fn cellule_bin(app: &TestApp, args: &[&str]) -> std::process::Output {
    cellule_command(app, args).output().expect("run cellule")
}

async fn counts(app: &TestApp) -> Vec<(i64, i64)> {
    app.state.db.wrapped_key_counts().await.expect("counts")
}

async fn all_cases_read(app: &TestApp, ids: &[String]) {
    for id in ids {
        let a = app.get(&case_path(id), Some(&app.token(COORD))).await;
        assert_eq!(a.status, 200, "{id}: {}", a.text);
        assert!(
            a.body["situation"]
                .as_str()
                .is_some_and(|s| s.starts_with("Situation "))
        );
    }
}

async fn rotation_rewraps_resumably_and_retires(backend: Backend) {
    let app = spawn_app(backend).await;
    app.standard_cellule().await;
    let mut ids = Vec::new();
    for i in 0..11 {
        ids.push(app.refer_ok(REF1, &format!("Situation {i}.")).await.0);
    }
    let mut with_identity = referral("Situation avec identité.");
    with_identity["identity"] =
        json!({"last_name": "Martin", "first_name": "Paul", "birth_date": "1970-01-01"});
    assert_eq!(app.refer(REF1, &with_identity).await.status, 201);
    let total: i64 = 12 + 1; // case keys + the cellule's linkage secret
    assert_eq!(counts(&app).await, vec![(1, total)]);
    let notes_before = app
        .get(
            &format!("{}/notes", case_path(&ids[0])),
            Some(&app.token(COORD)),
        )
        .await;
    assert_eq!(notes_before.status, 200);

    // Add v2 and re-wrap in batches of 4, the second batch failing half-way.
    let path = app.data_dir.path().join("keyring.json");
    let mut keyring = Keyring::load(&path).expect("keyring");
    assert_eq!(keyring.add_version(chrono::Utc::now()).expect("add"), 2);
    keyring.save(&path).expect("save");
    let keys = KeyService::new(
        Keyring::load(&path).expect("reload"),
        KeyringSource::File(path.clone()),
    );
    keys.reconcile(app.state.db.as_ref(), chrono::Utc::now())
        .await
        .expect("reconcile");
    let mut seen = Vec::new();
    let failed = keys
        .rewrap(
            app.state.db.as_ref(),
            RewrapOptions {
                batch_size: 4,
                fail_in_batch: Some(2),
            },
            |p| seen.push(p),
        )
        .await;
    assert!(failed.is_err(), "the simulated failure surfaces");
    assert_eq!(
        counts(&app).await,
        vec![(1, total - 4), (2, 4)],
        "the first batch stayed, the second rolled back"
    );
    // Mixed versions: everything still reads (the server picks up the new keyring by itself).
    all_cases_read(&app, &ids).await;

    let done = keys
        .rewrap(
            app.state.db.as_ref(),
            RewrapOptions {
                batch_size: 4,
                fail_in_batch: None,
            },
            |p| seen.push(p),
        )
        .await
        .expect("resume");
    assert_eq!(done.done, u64::try_from(total - 4).unwrap_or(0));
    assert_eq!(counts(&app).await, vec![(2, total)]);
    assert!(
        seen.iter().any(|p| p.remaining > 0),
        "progress was reported"
    );
    all_cases_read(&app, &ids).await;

    // Retire v1 with the CLI; the current version cannot be retired.
    let out = cellule_bin(&app, &["keys", "retire", "2"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cellule_bin(&app, &["keys", "retire", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        Keyring::load(&path).expect("keyring").versions(),
        vec![2],
        "v1 is gone from the keyring"
    );
    let status = cellule_bin(&app, &["keys", "status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains(&format!("KEK v2 (current): wraps {total} key(s)")),
        "{text}"
    );
    assert!(!text.contains("v1"), "{text}");
    all_cases_read(&app, &ids).await;

    // A full rotation with the CLI: v3, everything re-wrapped, then v2 retired.
    let out = cellule_bin(&app, &["keys", "rotate", "--batch", "5"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("added KEK v3") && text.contains("every key is on KEK v3"),
        "{text}"
    );
    assert_eq!(counts(&app).await, vec![(3, total)]);
    // A KEK still in use cannot be retired.
    let mut keyring = Keyring::load(&path).expect("keyring");
    keyring.add_version(chrono::Utc::now()).expect("add v4");
    keyring.save(&path).expect("save");
    let out = cellule_bin(&app, &["keys", "retire", "3"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("still wraps"));
    let out = cellule_bin(&app, &["keys", "rotate", "--resume"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(counts(&app).await, vec![(4, total)]);
    assert!(cellule_bin(&app, &["keys", "retire", "3"]).status.success());
    all_cases_read(&app, &ids).await;
    // The audit MAC key rotated with the KEKs (the test's own v4 was added by hand): the
    // entries written since the service re-read the keyring carry codes by v2, the first ones
    // keep v1, retiring KEKs left both, and the chain verifies with both.
    let keyring = Keyring::load(&path).expect("keyring");
    assert_eq!(keyring.audit_macs().versions(), vec![1, 2]);
    let db = app.state.db.as_ref();
    let head = db
        .audit_head("perpignan")
        .await
        .expect("head")
        .expect("a chain")
        .seq;
    let newest = db
        .audit_entries("perpignan", head - 1, 1)
        .await
        .expect("entries");
    assert_eq!(newest[0].mac_key, Some(2));
    let first = db.audit_entries("perpignan", 0, 1).await.expect("entries");
    assert_eq!(first[0].mac_key, Some(1));
    let trusted = app.state.audit.trusted("perpignan").expect("trusted");
    let report = cellule::services::auditor::verify_chain(db, "perpignan", &trusted)
        .await
        .expect("verify");
    assert!(report.valid, "{:?}", report.broken);
    assert_eq!(report.entries_authenticated, report.entries_checked);
    // Duplicates still link after rotation (the linkage secret was re-wrapped, not changed).
    let again = app.refer(COORD, &with_identity).await;
    assert_eq!(
        again.body["possible_duplicates"].as_array().map(Vec::len),
        Some(1),
        "{}",
        again.text
    );
    let _ = PSY;
}

fn one_line_failure(out: &std::process::Output, contains: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: ") && err.contains(contains),
        "{contains:?} not in {err}"
    );
}

async fn wrong_or_damaged_keyring_is_refused_at_start(backend: Backend) {
    let app = spawn_app(backend).await;
    app.standard_cellule().await;
    app.refer_ok(REF1, "Situation ordinaire.").await;
    let dir = crate::helpers::private_tempdir();

    let other = dir.path().join("other.json");
    Keyring::generate(chrono::Utc::now())
        .expect("keyring")
        .save(&other)
        .expect("save");
    let real = app.data_dir.path().join("keyring.json");
    let text = std::fs::read_to_string(&real).expect("read");
    let truncated = dir.path().join("truncated.json");
    std::fs::write(&truncated, &text[..text.len() / 2]).expect("write");
    std::fs::set_permissions(
        &truncated,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .expect("chmod");

    for (file, contains) in [(&other, "does not match"), (&truncated, "not valid")] {
        for command in [
            &["keys", "status"][..],
            &["serve", "--bind", "127.0.0.1:0"][..],
        ] {
            let out = Command::new(env!("CARGO_BIN_EXE_cellule"))
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("CELLULE_KEYRING_FILE", file)
                .current_dir(dir.path())
                .args([
                    "--data-dir",
                    &app.data_dir.path().display().to_string(),
                    "--database",
                    &app.database_url,
                ])
                .args(command)
                .stdin(Stdio::null())
                .output()
                .expect("run");
            one_line_failure(&out, contains);
        }
    }
    // The keyring can also be given whole in the environment; garbage there is refused too.
    let inline = |value: &str, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_cellule"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CELLULE_KEYRING", value)
            .current_dir(dir.path())
            .args([
                "--data-dir",
                &app.data_dir.path().display().to_string(),
                "--database",
                &app.database_url,
            ])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run")
    };
    let out = inline(&text, &["keys", "status"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("KEK v1 (current)"));
    one_line_failure(&inline("{\"format\": 1", &["keys", "status"]), "not valid");
    let out = inline(&text, &["keys", "rotate"]);
    assert_eq!(out.status.code(), Some(2), "rotation needs a file");
    assert_eq!(
        Keyring::load(&real).expect("keyring").versions(),
        vec![1],
        "nothing changed"
    );

    // The real keyring still works, and nothing was lost.
    let out = cellule_bin(&app, &["keys", "status"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(Path::new(&real).exists());
    let list = app
        .get("/v1/cellules/perpignan/cases", Some(&app.token(COORD)))
        .await;
    assert_eq!(list.body["items"].as_array().map(Vec::len), Some(1));
}

backend_tests!(
    moved_or_flipped_ciphertexts_never_open,
    canary_scan_finds_no_content_in_the_database,
    rotation_rewraps_resumably_and_retires,
    wrong_or_damaged_keyring_is_refused_at_start,
);
