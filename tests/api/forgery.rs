//! An attacker who can write to the database but holds no keyring (docs/audit.md, "Threat
//! model"), on both backends: an entry forged at the head with its hash computed as documented,
//! a tail rewritten and re-hashed after the last checkpoint, a history rewritten from entry 2
//! with every checkpoint deleted, and a chain rolled back to an earlier checkpoint with its head
//! row rewritten (caught against the witness file). And a third party checks an export with its
//! own script, not the service's code.

use std::path::Path;

use serde_json::Value;

use crate::audit::{
    assert_broken_at, busy_cellule, drop_guards, head_seq, sign_checkpoint, sql, verify_api,
    verify_lib,
};
use crate::backend_tests;
use crate::helpers::{
    AUDITOR, Backend, COORD, Options, PSY, REF1, TestApp, spawn_app, spawn_app_with,
};
use cellule::audit::Entry;

/// A byte string as a literal of the app's backend.
fn bytes_literal(app: &TestApp, bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    if app.database_url.starts_with("sqlite") {
        format!("X'{hex}'")
    } else {
        format!("'\\x{hex}'::bytea")
    }
}

fn text_literal(value: &Option<String>) -> String {
    match value {
        Some(v) => format!("'{}'", v.replace('\'', "''")),
        None => "NULL".into(),
    }
}

async fn all_entries(app: &TestApp) -> Vec<Entry> {
    app.state
        .db
        .audit_entries("perpignan", 0, 10_000)
        .await
        .expect("entries")
}

/// The statement that writes `e` as a row (its code and key version as given).
fn insert_statement(app: &TestApp, e: &Entry) -> String {
    format!(
        "INSERT INTO audit_entries (cellule, seq, at_us, actor, actor_role, actor_org, action, \
         case_id, case_ref, target_kind, target_id, outcome, reason, request_id, cases, detail, \
         prev_hash, hash, mac, mac_key) VALUES ('{}', {}, {}, '{}', '{}', {}, '{}', {}, {}, {}, \
         {}, '{}', {}, {}, {}, {}, {}, {}, {}, {})",
        e.cellule,
        e.seq,
        e.at_us,
        e.actor,
        e.actor_role,
        text_literal(&e.actor_org),
        e.action,
        text_literal(&e.case_id),
        text_literal(&e.case_ref),
        text_literal(&e.target_kind),
        text_literal(&e.target_id),
        e.outcome,
        text_literal(&e.reason),
        text_literal(&e.request_id),
        text_literal(&e.cases),
        text_literal(&e.detail),
        bytes_literal(app, &e.prev_hash),
        bytes_literal(app, &e.hash),
        e.mac
            .as_deref()
            .map_or("NULL".into(), |m| bytes_literal(app, m)),
        e.mac_key.map_or("NULL".into(), |k| k.to_string()),
    )
}

/// Re-chains `entries` (in sequence order) after `prev`, as an attacker recomputing the
/// documented hashes would; returns the new head hash.
fn rechain(entries: &mut [Entry], mut prev: Vec<u8>) -> Vec<u8> {
    for e in entries {
        e.prev_hash = prev;
        e.hash = e.compute_hash().to_vec();
        prev = e.hash.clone();
    }
    prev
}

/// Moves Perpignan's head row to (`seq`, `hash`), as the attacker does after writing entries.
fn move_head(app: &TestApp, seq: i64, hash: &[u8], checkpoint_seq: i64) -> String {
    format!(
        "UPDATE audit_heads SET seq = {seq}, hash = {}, checkpoint_seq = {checkpoint_seq} \
         WHERE cellule = 'perpignan'",
        bytes_literal(app, hash)
    )
}

/// A psychiatry member "reads" a case the coordinator read, one entry past the head, with its
/// hash computed from the documented canonical form and the previous entry's code copied (or
/// none at all). The guards stay in place: appending and moving the head forward is what they
/// allow. Verification reports the forged entry at its sequence; the access log no longer
/// passes for proof.
async fn a_forged_entry_at_the_head_is_found(backend: Backend) {
    let app = spawn_app(backend).await;
    busy_cellule(&app).await;
    let entries = all_entries(&app).await;
    let head = entries.last().expect("a chain").clone();
    let read = entries
        .iter()
        .find(|e| e.action == "read_case" && e.outcome == "allowed")
        .expect("a case read")
        .clone();
    let psy = entries
        .iter()
        .find(|e| e.actor == PSY)
        .expect("an entry of the psychiatry member")
        .clone();
    for copied_code in [true, false] {
        let mut forged = Entry {
            seq: head.seq + 1,
            at_us: head.at_us + 1,
            actor: psy.actor.clone(),
            actor_role: psy.actor_role.clone(),
            actor_org: psy.actor_org.clone(),
            outcome: "allowed".into(),
            reason: None,
            request_id: Some("forged".into()),
            mac: copied_code.then(|| head.mac.clone()).flatten(),
            mac_key: copied_code.then_some(head.mac_key).flatten(),
            ..read.clone()
        };
        let new_head = rechain(std::slice::from_mut(&mut forged), head.hash.clone());
        let forge = insert_statement(&app, &forged);
        let advance = move_head(&app, forged.seq, &new_head, head.seq);
        sql(&app, &[&forge, &advance]).await.expect("forge");
        let report = verify_api(&app).await;
        assert_broken_at(&report, forged.seq, "authentication code");
        let report = verify_lib(&app).await;
        assert_eq!(report.broken.map(|b| b.seq), Some(forged.seq));
        if copied_code {
            // Undo with the guards down, and forge again without any code.
            drop_guards(&app).await;
            let undo = format!(
                "DELETE FROM audit_entries WHERE cellule = 'perpignan' AND seq > {}",
                head.seq
            );
            sql(&app, &[&undo, &move_head(&app, head.seq, &head.hash, 0)])
                .await
                .expect("undo");
        }
    }
}

/// After the last checkpoint, the attacker changes who read a case and re-hashes every entry
/// after it (the guards dropped): the first changed entry is reported. Deleting every checkpoint
/// and rewriting from entry 2 is reported at entry 2.
async fn a_rewritten_history_is_found_at_its_first_entry(backend: Backend) {
    let app = spawn_app(backend).await;
    busy_cellule(&app).await;
    let signed = sign_checkpoint(&app).await["seq"].as_i64().expect("seq");
    more_activity(&app).await;
    let entries = all_entries(&app).await;
    let changed = entries
        .iter()
        .find(|e| e.seq > signed + 1 && e.action == "read_case" && e.actor == COORD)
        .expect("a read after the checkpoint")
        .seq;
    drop_guards(&app).await;
    let rewrite = |from: i64, entries: &[Entry]| {
        let mut tail: Vec<Entry> = entries.iter().filter(|e| e.seq >= from).cloned().collect();
        tail[0].actor = AUDITOR.into();
        let prev = entries
            .iter()
            .find(|e| e.seq == from - 1)
            .map(|e| e.hash.clone())
            .expect("the entry before");
        let head = rechain(&mut tail, prev);
        let mut statements = vec![format!(
            "DELETE FROM audit_entries WHERE cellule = 'perpignan' AND seq >= {from}"
        )];
        statements.extend(tail.iter().map(|e| insert_statement(&app, e)));
        let last = tail.last().map_or(from, |e| e.seq);
        statements.push(move_head(&app, last, &head, 0));
        statements
    };
    let statements = rewrite(changed, &entries);
    let refs: Vec<&str> = statements.iter().map(String::as_str).collect();
    sql(&app, &refs).await.expect("rewrite the tail");
    let report = verify_lib(&app).await;
    let broken = report.broken.expect("a rewritten tail is broken");
    assert_eq!(broken.seq, changed, "{}", broken.reason);
    assert!(
        broken.reason.contains("authentication code"),
        "{}",
        broken.reason
    );

    // Every checkpoint gone, the history rewritten from entry 2.
    let guards: &[&str] = if app.database_url.starts_with("sqlite") {
        &[
            "DROP TRIGGER audit_checkpoints_no_delete",
            "DELETE FROM audit_checkpoints",
        ]
    } else {
        &[
            "DROP TRIGGER audit_checkpoints_guard ON audit_checkpoints",
            "DELETE FROM audit_checkpoints",
        ]
    };
    sql(&app, guards).await.expect("drop checkpoints");
    let entries = all_entries(&app).await;
    let statements = rewrite(2, &entries);
    let refs: Vec<&str> = statements.iter().map(String::as_str).collect();
    sql(&app, &refs).await.expect("rewrite from entry 2");
    let report = verify_lib(&app).await;
    assert_eq!(report.checkpoints, 0);
    let broken = report.broken.expect("a rewritten history is broken");
    assert_eq!(broken.seq, 2, "{}", broken.reason);
}

/// With a witness file: the attacker rolls the chain back to an earlier checkpoint, deleting
/// the entries and checkpoints after it and rewriting the head row. Nothing in the database
/// shows it; the witness file does, at the first missing entry.
async fn a_rollback_is_found_against_the_witness_file(backend: Backend) {
    let dir = tempfile::tempdir().expect("temporary folder");
    let witness = dir.path().join("witness.jsonl");
    let path = witness.clone();
    let app = spawn_app_with(
        backend,
        Options {
            customize: Box::new(move |c| {
                c.audit.witness_file = Some(path);
            }),
            ..Options::default()
        },
    )
    .await;
    busy_cellule(&app).await;
    let kept = sign_checkpoint(&app).await["seq"].as_i64().expect("seq");
    more_activity(&app).await;
    let later = sign_checkpoint(&app).await["seq"].as_i64().expect("seq");
    assert!(later > kept + 2);
    let lines = witnessed(&witness);
    assert!(
        lines
            .iter()
            .any(|l| l["seq"] == later && l["cellule"] == "perpignan"),
        "{lines:?}"
    );
    assert_eq!(verify_api(&app).await["valid"], true);

    drop_guards(&app).await;
    let entries = all_entries(&app).await;
    let kept_hash = entries
        .iter()
        .find(|e| e.seq == kept)
        .map(|e| e.hash.clone())
        .expect("the kept entry");
    let drop_checkpoint_guard = if app.database_url.starts_with("sqlite") {
        "DROP TRIGGER audit_checkpoints_no_delete"
    } else {
        "DROP TRIGGER audit_checkpoints_guard ON audit_checkpoints"
    };
    let cut = format!("DELETE FROM audit_entries WHERE cellule = 'perpignan' AND seq > {kept}");
    let cut_checkpoints =
        format!("DELETE FROM audit_checkpoints WHERE cellule = 'perpignan' AND seq > {kept}");
    sql(
        &app,
        &[
            drop_checkpoint_guard,
            &cut,
            &cut_checkpoints,
            &move_head(&app, kept, &kept_hash, kept),
        ],
    )
    .await
    .expect("roll back");

    // The database alone says nothing is wrong.
    let mut blind = app.state.audit.trusted("perpignan").expect("trusted");
    blind.witnessed.clear();
    let report =
        cellule::services::auditor::verify_chain(app.state.db.as_ref(), "perpignan", &blind)
            .await
            .expect("verify");
    assert!(report.valid, "{:?}", report.broken);
    // The witness file does.
    let report = verify_lib(&app).await;
    let broken = report.broken.expect("a rolled-back chain is broken");
    assert_eq!(broken.seq, kept + 1, "{}", broken.reason);
    assert!(broken.reason.contains("truncated"), "{}", broken.reason);
    assert_eq!(report.witness.and_then(|w| w.last_seq), Some(later));
    // Through the API too, whose own entry now follows the rolled-back head.
    let report = verify_api(&app).await;
    assert_eq!(head_seq(&app).await, kept + 1);
    assert_broken_at(&report, kept + 2, "witness file");
}

/// A referral and reads by the coordinator after a checkpoint.
async fn more_activity(app: &TestApp) {
    let (id, _) = app.refer_ok(REF1, "Une autre situation.").await;
    for _ in 0..3 {
        let a = app
            .get(
                &format!("/v1/cellules/perpignan/cases/{id}"),
                Some(&app.token(COORD)),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
    }
}

fn witnessed(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("witness file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// An auditor's export, the checkpoints and the published keys, checked by
/// `tests/audit/verify_export.py` (Python's standard library and `openssl`, none of the
/// service's code): the untouched export holds; an entry changed in the file, or a line removed,
/// does not.
async fn an_export_verifies_with_an_independent_script(backend: Backend) {
    let app = spawn_app(backend).await;
    busy_cellule(&app).await;
    let auditor = app.token(AUDITOR);
    let dir = tempfile::tempdir().expect("temporary folder");
    let export = app
        .get(
            "/v1/cellules/perpignan/audit/export?format=jsonl",
            Some(&auditor),
        )
        .await;
    assert_eq!(export.status, 200, "{}", export.text);
    let checkpoints = app
        .get("/v1/cellules/perpignan/audit/checkpoints", Some(&auditor))
        .await;
    assert_eq!(checkpoints.status, 200, "{}", checkpoints.text);
    let keys = app
        .get("/v1/cellules/perpignan/audit/verify", Some(&auditor))
        .await;
    assert_eq!(keys.status, 200, "{}", keys.text);
    let files = [
        ("export.jsonl", export.text.clone()),
        ("checkpoints.json", checkpoints.text.clone()),
        ("verify.json", keys.text.clone()),
    ];
    for (name, text) in &files {
        std::fs::write(dir.path().join(name), text).expect("write");
    }
    let check = |export: &str| {
        let out = std::process::Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/audit/verify_export.py"
            ))
            .arg(dir.path().join(export))
            .arg(dir.path().join("checkpoints.json"))
            .arg(dir.path().join("verify.json"))
            .output()
            .expect("python3 runs (CI installs it)");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // The administration of the cellule is in it, with its details hashed like any field.
    assert!(
        export
            .text
            .lines()
            .any(|l| l.contains("\"action\":\"grant_membership\"") && l.contains("\"detail\":")),
        "{}",
        export.text
    );
    let (code, out, err) = check("export.jsonl");
    assert_eq!(code, Some(0), "{out}{err}");
    let lines = export.text.lines().count();
    assert!(
        out.starts_with(&format!("ok: perpignan entries 1-{lines} ")),
        "{out}"
    );

    // One actor changed in the file.
    let mut changed: Vec<Value> = export
        .text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    changed[3]["actor"] = Value::String(AUDITOR.into());
    let text: String = changed.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.path().join("changed.jsonl"), text).expect("write");
    let (code, out, _) = check("changed.jsonl");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("entry 4 was altered"), "{out}");

    // The last line removed: the file no longer ends at a signed checkpoint.
    let short: String = export
        .text
        .lines()
        .take(lines - 1)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(dir.path().join("short.jsonl"), short).expect("write");
    let (code, out, _) = check("short.jsonl");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("no signed checkpoint"), "{out}");
}

backend_tests!(
    a_forged_entry_at_the_head_is_found,
    a_rewritten_history_is_found_at_its_first_entry,
    a_rollback_is_found_against_the_witness_file,
    an_export_verifies_with_an_independent_script,
);
