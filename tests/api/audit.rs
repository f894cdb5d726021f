//! The audit log (docs/design.md §9) on both backends: tampering found at the right sequence number, a
//! failed audit write failing the request and changing nothing, append-only triggers, auditor
//! queries, the access log of an erased case, signed checkpoints verified with the published key,
//! exports (JSON Lines and FHIR R4 validated by an independent model library), retention, the CLI,
//! and two server processes writing concurrently to one PostgreSQL.

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::Connection;

use crate::backend_tests;
use crate::cli::{Served, cellule, database, dev_token, run, serve, stderr, stdout};
use crate::helpers::{
    AUDITOR, Backend, COORD, Options, PSY, REF1, TestApp, referral, spawn_app, spawn_app_with,
};

/// Runs literal SQL statements (no input in them) on the app's database.
pub(crate) async fn sql(app: &TestApp, statements: &[&str]) -> Result<(), String> {
    if app.database_url.starts_with("sqlite") {
        let mut c = sqlx::SqliteConnection::connect(&app.database_url)
            .await
            .map_err(|e| e.to_string())?;
        for s in statements {
            sqlx::raw_sql(s)
                .execute(&mut c)
                .await
                .map_err(|e| e.to_string())?;
        }
    } else {
        let mut c = sqlx::PgConnection::connect(&app.database_url)
            .await
            .map_err(|e| e.to_string())?;
        for s in statements {
            sqlx::raw_sql(s)
                .execute(&mut c)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// What an attacker with database access does first.
pub(crate) async fn drop_guards(app: &TestApp) {
    let statements: &[&str] = if app.database_url.starts_with("sqlite") {
        &[
            "DROP TRIGGER audit_entries_no_update",
            "DROP TRIGGER audit_entries_no_delete",
            "DROP TRIGGER audit_entries_no_overwrite",
            "DROP TRIGGER audit_heads_forward",
        ]
    } else {
        &[
            "DROP TRIGGER audit_entries_guard ON audit_entries",
            "DROP TRIGGER audit_entries_insert_guard ON audit_entries",
            "DROP TRIGGER audit_heads_guard ON audit_heads",
        ]
    };
    sql(app, statements).await.expect("drop triggers");
}

/// A cellule with a few cases, reads and denials: a chain of some 20 entries.
pub(crate) async fn busy_cellule(app: &TestApp) -> Vec<String> {
    app.standard_cellule().await;
    let mut ids = Vec::new();
    for i in 0..4 {
        let (id, _) = app.refer_ok(REF1, &format!("Situation numéro {i}.")).await;
        let a = app
            .get(
                &format!("/v1/cellules/perpignan/cases/{id}"),
                Some(&app.token(COORD)),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
        let a = app
            .get(
                &format!("/v1/cellules/perpignan/cases/{id}"),
                Some(&app.token(PSY)),
            )
            .await;
        assert_eq!(a.status, 404);
        ids.push(id);
    }
    ids
}

pub(crate) async fn verify_api(app: &TestApp) -> Value {
    let a = app
        .get(
            "/v1/cellules/perpignan/audit/verify",
            Some(&app.token(AUDITOR)),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    a.body
}

/// Asserts that `report` (the API's verification answer) is broken first at `seq`, for a reason
/// naming `reason`.
pub(crate) fn assert_broken_at(report: &Value, seq: i64, reason: &str) {
    assert_eq!(report["valid"], false, "{report}");
    assert_eq!(report["broken"]["seq"], seq, "{report}");
    assert!(
        report["broken"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains(reason)),
        "{report}"
    );
}

pub(crate) async fn verify_lib(app: &TestApp) -> cellule::audit::VerifyReport {
    let keys = app.state.audit.trusted("perpignan").expect("trusted keys");
    cellule::services::auditor::verify_chain(app.state.db.as_ref(), "perpignan", &keys)
        .await
        .expect("verify")
}

/// The newest `limit` entries of Perpignan's chain with this action, newest first.
async fn newest_entries(app: &TestApp, action: &str, limit: i64) -> Vec<cellule::audit::Entry> {
    app.state
        .db
        .search_audit(
            "perpignan",
            &cellule::audit::Filter {
                action: Some(action.into()),
                limit,
                ..Default::default()
            },
        )
        .await
        .expect("search")
}

pub(crate) async fn head_seq(app: &TestApp) -> i64 {
    app.state
        .db
        .audit_head("perpignan")
        .await
        .expect("head")
        .expect("a chain")
        .seq
}

pub(crate) async fn sign_checkpoint(app: &TestApp) -> Value {
    let a = app
        .request(
            Method::POST,
            "/v1/cellules/perpignan/audit/checkpoints",
            Some(&app.token(AUDITOR)),
            None,
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.text);
    a.body
}

async fn the_database_refuses_to_change_entries(backend: Backend) {
    let app = spawn_app(backend).await;
    busy_cellule(&app).await;
    sign_checkpoint(&app).await;
    app.create_cellule("narbonne").await;
    let sqlite = app.database_url.starts_with("sqlite");
    let copy_of_3 = "INSERT INTO audit_entries SELECT * FROM audit_entries \
                     WHERE cellule = 'perpignan' AND seq = 3";
    let mut refused = vec![
        "UPDATE audit_entries SET actor = 'mallory' WHERE cellule = 'perpignan' AND seq = 3",
        "DELETE FROM audit_entries WHERE cellule = 'perpignan' AND seq = 3",
        "DELETE FROM audit_entries",
        "UPDATE audit_checkpoints SET seq = seq + 1",
        "DELETE FROM audit_checkpoints",
        "DELETE FROM audit_heads",
        "UPDATE audit_heads SET seq = 2 WHERE cellule = 'perpignan'",
        // A cellule that exists and has no chain: the head may not move there.
        "UPDATE audit_heads SET cellule = 'narbonne' WHERE cellule = 'perpignan'",
    ];
    if sqlite {
        // REPLACE fires no UPDATE trigger in SQLite: refused by the insert guard.
        refused.push(
            "INSERT OR REPLACE INTO audit_entries SELECT cellule, seq, at_us, 'mallory', actor_role, \
             actor_org, action, case_id, case_ref, target_kind, target_id, outcome, reason, \
             request_id, prev_hash, hash, cases, detail, mac, mac_key FROM audit_entries \
             WHERE cellule = 'perpignan' AND seq = 3",
        );
        refused.push(
            "INSERT OR REPLACE INTO audit_checkpoints SELECT cellule, seq, hash, signed_at_us, \
             key_id, signature, kind FROM audit_checkpoints",
        );
    } else {
        refused.push("TRUNCATE audit_entries");
    }
    for statement in &refused {
        let err = sql(&app, &[statement]).await.expect_err(statement);
        assert!(
            err.contains("append-only") || err.contains("only moves forward"),
            "{statement}: {err}"
        );
    }
    assert!(sql(&app, &[copy_of_3]).await.is_err(), "a second entry 3");
    // An entry of a cellule that has no chain (and does not exist) is refused too.
    let stray = "INSERT INTO audit_entries (cellule, seq, at_us, actor, actor_role, action, outcome, \
                 prev_hash, hash) SELECT 'nowhere', seq, at_us, actor, actor_role, action, outcome, \
                 prev_hash, hash FROM audit_entries WHERE cellule = 'perpignan' AND seq = 3";
    let err = sql(&app, &[stray])
        .await
        .expect_err("an entry without a chain");
    // PostgreSQL's insert guard wants a chain head; SQLite keeps the entries' foreign key.
    assert!(
        err.contains(if sqlite { "FOREIGN KEY" } else { "append-only" }),
        "{err}"
    );
    assert!(verify_lib(&app).await.valid);

    // Moving the purge mark by hand (it may only move forward) opens nothing: deleting or
    // inserting below it stays refused without a signed retention anchor, and verification
    // reports the first entry left below the mark.
    sql(
        &app,
        &["UPDATE audit_heads SET purged_through = 5 WHERE cellule = 'perpignan'"],
    )
    .await
    .expect("the mark moves forward");
    for statement in [
        "DELETE FROM audit_entries WHERE cellule = 'perpignan' AND seq = 3",
        "DELETE FROM audit_entries WHERE cellule = 'perpignan' AND seq <= 5",
        "INSERT INTO audit_entries (cellule, seq, at_us, actor, actor_role, action, outcome, \
         prev_hash, hash) SELECT cellule, 0, at_us, actor, actor_role, action, outcome, \
         prev_hash, hash FROM audit_entries WHERE cellule = 'perpignan' AND seq = 3",
    ] {
        let err = sql(&app, &[statement]).await.expect_err(statement);
        assert!(err.contains("append-only"), "{statement}: {err}");
    }
    let report = verify_lib(&app).await;
    assert!(!report.valid);
    let broken = report.broken.expect("broken");
    assert_eq!(broken.seq, 1, "{}", broken.reason);
    assert!(broken.reason.contains("purge mark"), "{}", broken.reason);
    let err = sql(
        &app,
        &["UPDATE audit_heads SET purged_through = 0 WHERE cellule = 'perpignan'"],
    )
    .await
    .expect_err("purge mark going back");
    assert!(err.contains("only moves forward"), "{err}");
}

async fn an_edited_field_is_found_at_its_sequence(backend: Backend) {
    let app = spawn_app(backend).await;
    busy_cellule(&app).await;
    assert_eq!(verify_api(&app).await["valid"], true);
    drop_guards(&app).await;
    // Hide a denial.
    let denied = app
        .state
        .db
        .audit_entries("perpignan", 0, 1000)
        .await
        .expect("entries")
        .into_iter()
        .find(|e| e.outcome == "denied")
        .expect("a denial")
        .seq;
    let hide = format!(
        "UPDATE audit_entries SET outcome = 'allowed', reason = NULL \
         WHERE cellule = 'perpignan' AND seq = {denied}"
    );
    sql(&app, &[&hide]).await.expect("tamper");
    let report = verify_api(&app).await;
    assert_broken_at(&report, denied, "altered");
    // Re-hashing the edited entry: the next entry no longer follows it, and the break is still
    // reported at the edited one.
    let hash = app
        .state
        .db
        .audit_entries("perpignan", denied - 1, 1)
        .await
        .expect("entries")[0]
        .compute_hash();
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    let set_hash = if app.database_url.starts_with("sqlite") {
        format!(
            "UPDATE audit_entries SET hash = X'{hex}' WHERE cellule = 'perpignan' AND seq = {denied}"
        )
    } else {
        format!(
            "UPDATE audit_entries SET hash = '\\x{hex}'::bytea WHERE cellule = 'perpignan' AND seq = {denied}"
        )
    };
    sql(&app, &[&set_hash]).await.expect("rehash");
    let report = verify_lib(&app).await;
    assert_eq!(report.broken.map(|b| b.seq), Some(denied));
}

async fn a_deleted_entry_is_found_at_its_sequence(backend: Backend) {
    let app = spawn_app(backend).await;
    busy_cellule(&app).await;
    drop_guards(&app).await;
    sql(
        &app,
        &["DELETE FROM audit_entries WHERE cellule = 'perpignan' AND seq = 7"],
    )
    .await
    .expect("tamper");
    let report = verify_api(&app).await;
    assert_broken_at(&report, 7, "missing");
}

async fn a_stored_hash_cut_short_is_found_at_its_entry(backend: Backend) {
    let app = spawn_app(backend).await;
    busy_cellule(&app).await;
    drop_guards(&app).await;
    // Verification keeps stored hashes as 32-byte digests: one of another length matches no
    // recomputed hash, and the next entry no longer follows it either.
    let cut = if app.database_url.starts_with("sqlite") {
        "UPDATE audit_entries SET hash = substr(hash, 1, 31) WHERE cellule = 'perpignan' AND seq = 6"
    } else {
        "UPDATE audit_entries SET hash = substring(hash from 1 for 31) \
         WHERE cellule = 'perpignan' AND seq = 6"
    };
    sql(&app, &[cut]).await.expect("tamper");
    let report = verify_api(&app).await;
    assert_broken_at(&report, 6, "entry 6 was altered");
}

/// A page's rows are hashed as they stream in: a row that cannot be read (a required column
/// emptied behind the schema's back) fails its page as corrupt, and every connection of the
/// pool keeps working (more pages are read than the pool holds connections).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_unreadable_row_fails_its_page_and_the_pool_still_works() {
    let app = spawn_app(Backend::Postgres).await;
    busy_cellule(&app).await;
    drop_guards(&app).await;
    sql(
        &app,
        &[
            "ALTER TABLE audit_entries ALTER COLUMN actor DROP NOT NULL",
            "UPDATE audit_entries SET actor = NULL WHERE cellule = 'perpignan' AND seq = 3",
        ],
    )
    .await
    .expect("tamper");
    for _ in 0..3 * app.config.pool.max_connections {
        let page = app.state.db.audit_links("perpignan", 0, 100).await;
        assert!(
            matches!(&page, Err(cellule::storage::StorageError::Corrupt(m)) if m.contains("actor is null")),
            "{page:?}"
        );
    }
    let rest = app
        .state
        .db
        .audit_links("perpignan", 3, 100)
        .await
        .expect("the pages after the bad row");
    assert_eq!(rest.first().map(|l| l.seq), Some(4));
    assert!(rest.iter().all(|l| l.hash == Some(l.computed)));
}

async fn swapped_entries_are_found_at_the_first(backend: Backend) {
    let app = spawn_app(backend).await;
    busy_cellule(&app).await;
    drop_guards(&app).await;
    sql(
        &app,
        &[
            "UPDATE audit_entries SET seq = -1 WHERE cellule = 'perpignan' AND seq = 4",
            "UPDATE audit_entries SET seq = 4 WHERE cellule = 'perpignan' AND seq = 9",
            "UPDATE audit_entries SET seq = 9 WHERE cellule = 'perpignan' AND seq = -1",
        ],
    )
    .await
    .expect("tamper");
    let report = verify_api(&app).await;
    assert_eq!(report["valid"], false);
    assert_eq!(report["broken"]["seq"], 4, "{report}");
}

async fn a_truncated_tail_behind_a_checkpoint_is_found(backend: Backend) {
    let app = spawn_app(backend).await;
    busy_cellule(&app).await;
    let checkpoint = sign_checkpoint(&app).await;
    let signed = checkpoint["seq"].as_i64().expect("seq");
    let keep = signed - 4;
    drop_guards(&app).await;
    // The attacker removes the tail and rewinds the head to the last kept entry.
    let cut = format!("DELETE FROM audit_entries WHERE cellule = 'perpignan' AND seq > {keep}");
    let rewind = format!(
        "UPDATE audit_heads SET seq = {keep}, checkpoint_seq = 0, \
         hash = (SELECT hash FROM audit_entries WHERE cellule = 'perpignan' AND seq = {keep}) \
         WHERE cellule = 'perpignan'"
    );
    sql(&app, &[&cut, &rewind]).await.expect("tamper");
    let report = verify_lib(&app).await;
    assert!(!report.valid);
    let broken = report.broken.expect("broken");
    assert_eq!(broken.seq, keep + 1, "{}", broken.reason);
    assert!(broken.reason.contains("checkpoint"), "{}", broken.reason);
    // Through the API too (its own entry follows the rewound head, the gap stays).
    let report = verify_api(&app).await;
    assert_eq!(report["valid"], false, "{report}");
}

async fn an_audit_write_failure_fails_the_request_and_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let ids = busy_cellule(&app).await;
    let id = &ids[0];
    let before = head_seq(&app).await;
    // Inject a failure of every audit insert.
    let inject: &[&str] = if app.database_url.starts_with("sqlite") {
        &["CREATE TRIGGER audit_fail BEFORE INSERT ON audit_entries \
           BEGIN SELECT RAISE(ABORT, 'injected audit failure'); END"]
    } else {
        &[
            "CREATE FUNCTION audit_fail() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'injected audit failure'; END; $$",
            "CREATE TRIGGER audit_fail BEFORE INSERT ON audit_entries \
             FOR EACH ROW EXECUTE FUNCTION audit_fail()",
        ]
    };
    sql(&app, inject).await.expect("inject");
    let coord = app.token(COORD);
    let case_path = format!("/v1/cellules/perpignan/cases/{id}");
    // A transition: refused, the case keeps its status and gets no event.
    let a = app.transition(COORD, id, json!({"to": "accepted"})).await;
    a.assert_problem(500);
    // A note: not written.
    let a = app
        .request(
            Method::POST,
            &format!("{case_path}/notes"),
            Some(&coord),
            Some(json!({"audience": "cellule", "body": "Une note qui ne doit pas rester."})),
        )
        .await;
    a.assert_problem(500);
    // A referral: no case.
    let a = app
        .refer(REF1, &referral("Une saisine qui ne doit pas rester."))
        .await;
    a.assert_problem(500);
    // An erasure: the case stays.
    let a = app
        .request(Method::DELETE, &case_path, Some(&coord), None)
        .await;
    a.assert_problem(500);
    // A read: no content without its entry.
    let a = app.get(&case_path, Some(&coord)).await;
    a.assert_problem(500);
    assert!(!a.text.contains("Situation"), "{}", a.text);
    // A denial: answered only once recorded.
    let a = app.get(&case_path, Some(&app.token(PSY))).await;
    a.assert_problem(500);

    let remove = if app.database_url.starts_with("sqlite") {
        "DROP TRIGGER audit_fail"
    } else {
        "DROP TRIGGER audit_fail ON audit_entries"
    };
    sql(&app, &[remove]).await.expect("remove injection");
    assert_eq!(head_seq(&app).await, before, "no entry was written");
    let a = app.get(&case_path, Some(&coord)).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["status"], "submitted");
    assert_eq!(a.body["history"].as_array().map(Vec::len), Some(0));
    let notes = app.get(&format!("{case_path}/notes"), Some(&coord)).await;
    assert_eq!(notes.body.as_array().map(Vec::len), Some(0));
    let list = app.get("/v1/cellules/perpignan/cases", Some(&coord)).await;
    assert_eq!(list.body["items"].as_array().map(Vec::len), Some(ids.len()));
    assert!(verify_lib(&app).await.valid);
}

async fn auditors_query_the_log_with_filters_and_a_cursor(backend: Backend) {
    let app = spawn_app(backend).await;
    let ids = busy_cellule(&app).await;
    let auditor = app.token(AUDITOR);
    let get = |q: String| {
        let auditor = auditor.clone();
        let app = &app;
        async move {
            app.get(&format!("/v1/cellules/perpignan/audit{q}"), Some(&auditor))
                .await
        }
    };
    // Denials by the psychiatry member: exactly one per case, each on that case.
    let a = get(format!("?actor={PSY}&outcome=denied")).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let items = a.body["items"].as_array().expect("items");
    assert_eq!(items.len(), ids.len());
    for i in items {
        assert_eq!(i["action"], "read_case");
        assert_eq!(i["reason"], "not_visible");
        assert!(ids.contains(&i["case_id"].as_str().unwrap_or_default().to_owned()));
        assert_eq!(i["hash"].as_str().map(str::len), Some(64));
    }
    // By case reference.
    let reference = app
        .get(
            &format!("/v1/cellules/perpignan/cases/{}", ids[0]),
            Some(&app.token(COORD)),
        )
        .await
        .body["reference"]
        .as_str()
        .expect("reference")
        .to_owned();
    let a = get(format!("?case={reference}")).await;
    let actions: Vec<&str> = a.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["action"].as_str())
        .collect();
    assert_eq!(
        actions,
        ["read_case", "read_case", "read_case", "submit_referral"],
        "newest first"
    );
    // By action, paginated with a cursor: pages do not overlap and cover everything.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let a = get(format!("?action=read_case&limit=3{cursor}")).await;
        assert_eq!(a.status, 200, "{}", a.text);
        for i in a.body["items"].as_array().expect("items") {
            seen.push(i["seq"].as_i64().expect("seq"));
        }
        match a.body["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(
        seen.len(),
        9,
        "4 coordinator reads, 4 denials, 1 above: {seen:?}"
    );
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "{seen:?}");
    // A time range in the future is empty; one around now is not.
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let a = get(format!("?from={}", urlencode(&future))).await;
    assert_eq!(a.body["items"].as_array().map(Vec::len), Some(0));
    let past = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let a = get(format!(
        "?from={}&to={}",
        urlencode(&past),
        urlencode(&future)
    ))
    .await;
    assert!(a.body["items"].as_array().is_some_and(|i| !i.is_empty()));
    // Bad filters.
    for q in [
        "?limit=0",
        "?limit=501",
        "?cursor=abc",
        "?action=launch_rockets",
        "?outcome=maybe",
        "?from=yesterday",
        "?colour=blue",
    ] {
        get(q.to_owned()).await.assert_problem(422);
    }
    // Reading the log is itself in the log.
    let a = get("?action=read_audit&limit=500".to_owned()).await;
    let reads = a.body["items"].as_array().expect("items");
    assert!(reads.len() >= 8, "{}", reads.len());
    assert!(reads.iter().all(|i| i["actor"] == AUDITOR));
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn the_access_log_answers_for_an_erased_case(backend: Backend) {
    let app = spawn_app(backend).await;
    let ids = busy_cellule(&app).await;
    let id = &ids[1];
    let coord = app.token(COORD);
    let reference = app
        .get(&format!("/v1/cellules/perpignan/cases/{id}"), Some(&coord))
        .await
        .body["reference"]
        .as_str()
        .expect("reference")
        .to_owned();
    let a = app
        .request(
            Method::DELETE,
            &format!("/v1/cellules/perpignan/cases/{id}"),
            Some(&coord),
            None,
        )
        .await;
    assert_eq!(a.status, 204);
    let auditor = app.token(AUDITOR);
    for key in [reference.as_str(), id.as_str()] {
        let a = app
            .get(
                &format!("/v1/cellules/perpignan/cases/{key}/access-log"),
                Some(&auditor),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert_eq!(a.body["erased"], true);
        assert_eq!(a.body["reference"], reference.as_str());
        let trail: Vec<(String, String, String)> = a.body["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| {
                (
                    e["actor"].as_str().unwrap_or_default().to_owned(),
                    e["action"].as_str().unwrap_or_default().to_owned(),
                    e["outcome"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .take(5)
            .collect();
        let t = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
        assert_eq!(
            trail,
            vec![
                t(REF1, "submit_referral", "allowed"),
                t(COORD, "read_case", "allowed"),
                t(PSY, "read_case", "denied"),
                t(COORD, "read_case", "allowed"),
                t(COORD, "erase_case", "allowed"),
            ]
        );
        assert!(
            !a.text.contains("Situation"),
            "no content in the access log"
        );
    }
    // A case that never existed.
    let a = app
        .get(
            "/v1/cellules/perpignan/cases/PER-1999-0001/access-log",
            Some(&auditor),
        )
        .await;
    a.assert_problem(404);
}

/// Checks a checkpoint with the published key, re-implementing the documented message format.
fn check_signature(checkpoint: &Value, keys: &Value, cellule: &str) -> bool {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let Some(key) = keys
        .as_array()
        .into_iter()
        .flatten()
        .find(|k| k["key_id"] == checkpoint["key_id"])
    else {
        return false;
    };
    assert_eq!(key["algorithm"], "Ed25519");
    let public = b64
        .decode(key["public_key"].as_str().unwrap_or_default())
        .expect("b64");
    let signature = b64
        .decode(checkpoint["signature"].as_str().unwrap_or_default())
        .expect("b64");
    let hash: Vec<u8> = (0..32)
        .map(|i| {
            u8::from_str_radix(
                &checkpoint["hash"].as_str().unwrap_or_default()[2 * i..2 * i + 2],
                16,
            )
            .expect("hex")
        })
        .collect();
    let mut msg = b"cellule-audit-checkpoint-v1".to_vec();
    msg.extend_from_slice(&(cellule.len() as u32).to_be_bytes());
    msg.extend_from_slice(cellule.as_bytes());
    msg.extend_from_slice(&checkpoint["seq"].as_i64().expect("seq").to_be_bytes());
    msg.extend_from_slice(&hash);
    msg.extend_from_slice(
        &checkpoint["signed_at_us"]
            .as_i64()
            .expect("us")
            .to_be_bytes(),
    );
    let kind = checkpoint["kind"].as_str().unwrap_or_default();
    msg.extend_from_slice(&(kind.len() as u32).to_be_bytes());
    msg.extend_from_slice(kind.as_bytes());
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public)
        .verify(&msg, &signature)
        .is_ok()
}

async fn checkpoints_are_signed_with_the_published_key(backend: Backend) {
    let app = spawn_app_with(
        backend,
        Options {
            customize: Box::new(|c| c.audit.checkpoint_every = 5),
            ..Options::default()
        },
    )
    .await;
    busy_cellule(&app).await;
    let on_demand = sign_checkpoint(&app).await;
    assert_eq!(on_demand["kind"], "on_demand");
    let report = verify_api(&app).await;
    assert_eq!(report["valid"], true, "{report}");
    let keys = &report["public_keys"];
    assert!(check_signature(&on_demand, keys, "perpignan"));
    // Count-based checkpoints were signed along the way (every 5 entries).
    let checkpoints = app
        .state
        .db
        .audit_checkpoints("perpignan")
        .await
        .expect("checkpoints");
    // Every 5 entries of the busy cellule.
    let periodic: Vec<i64> = checkpoints
        .iter()
        .filter(|c| c.kind == "periodic")
        .map(|c| c.seq)
        .collect();
    // Up to the on-demand checkpoint's own entry, which may itself complete a count of five.
    let head = on_demand["seq"].as_i64().expect("seq");
    let every_five: Vec<i64> = (1..).map(|k| 5 * k).take_while(|s| *s <= head).collect();
    assert_eq!(periodic, every_five);
    assert_eq!(report["last_checkpoint"]["seq"], on_demand["seq"]);
    assert!(report["head"]["seq"].as_i64() > on_demand["seq"].as_i64());
    // A forged checkpoint (signed by another key) breaks verification at its sequence.
    let mut forged = on_demand.clone();
    forged["seq"] = json!(2);
    assert!(!check_signature(&forged, keys, "perpignan"));
    let insert = if app.database_url.starts_with("sqlite") {
        "INSERT INTO audit_checkpoints (cellule, seq, hash, signed_at_us, key_id, signature, kind) \
         SELECT cellule, 2, hash, 0, 'forged', X'00', 'on_demand' FROM audit_entries WHERE cellule = 'perpignan' AND seq = 2"
    } else {
        "INSERT INTO audit_checkpoints (cellule, seq, hash, signed_at_us, key_id, signature, kind) \
         SELECT cellule, 2, hash, 0, 'forged', '\\x00'::bytea, 'on_demand' FROM audit_entries WHERE cellule = 'perpignan' AND seq = 2"
    };
    if sql(&app, &[insert]).await.is_ok() {
        let report = verify_lib(&app).await;
        assert_eq!(report.broken.map(|b| b.seq), Some(2));
    } else {
        // A checkpoint already exists at 2 (count-based); the forgery cannot even be stored.
        assert!(checkpoints.iter().any(|c| c.seq == 2));
    }
}

/// A JSON-formatted FHIR `instant` (R4: YYYY-MM-DDThh:mm:ss(.sss…)(Z|±hh:mm)).
fn is_fhir_instant(s: &str) -> bool {
    regex::Regex::new(
        r"^([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))$",
    )
    .expect("regex")
    .is_match(s)
}

/// Validates a FHIR R4 Bundle of AuditEvents with fhirbolt (strict mode), entry by entry.
fn validate_fhir_bundle(text: &str) -> Result<usize, String> {
    use fhirbolt::model::r4::Resource;
    use fhirbolt::model::r4::resources::AuditEvent;
    use fhirbolt::serde::{DeserializationConfig, DeserializationMode};
    let strict = Some(DeserializationConfig {
        mode: DeserializationMode::Strict,
    });
    let parsed = std::panic::catch_unwind(|| fhirbolt::json::from_str::<Resource>(text, strict))
        .map_err(|_| "the FHIR parser panicked".to_owned())?
        .map_err(|e| e.to_string())?;
    let Resource::Bundle(bundle) = parsed else {
        return Err("not a Bundle".into());
    };
    if bundle.r#type.value.as_deref() != Some("collection") {
        return Err("Bundle.type is not collection".into());
    }
    let doc: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let entries = doc["entry"].as_array().cloned().unwrap_or_default();
    for (i, e) in entries.iter().enumerate() {
        fhirbolt::json::from_json_value::<AuditEvent>(e["resource"].clone(), strict)
            .map_err(|err| format!("entry {i}: {err}"))?;
        let recorded = e["resource"]["recorded"].as_str().unwrap_or_default();
        if !is_fhir_instant(recorded) {
            return Err(format!(
                "entry {i}: recorded {recorded:?} is not an instant"
            ));
        }
        if e["resource"]["agent"].as_array().is_none_or(Vec::is_empty) {
            return Err(format!("entry {i}: no agent"));
        }
    }
    Ok(entries.len())
}

async fn exports_are_chained_jsonl_and_valid_fhir_r4(backend: Backend) {
    let app = spawn_app(backend).await;
    busy_cellule(&app).await;
    let auditor = app.token(AUDITOR);
    let a = app
        .get(
            "/v1/cellules/perpignan/audit/export?format=jsonl",
            Some(&auditor),
        )
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.content_type(), "application/jsonl");
    let lines: Vec<Value> = a
        .text
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    // The export includes its own entry, and every line links to the one before.
    assert_eq!(lines.len() as i64, head_seq(&app).await);
    assert_eq!(
        lines.last().map(|l| l["action"].clone()),
        Some(json!("export_audit"))
    );
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["seq"], i as i64 + 1);
        if i > 0 {
            assert_eq!(l["prev_hash"], lines[i - 1]["hash"]);
        } else {
            assert_eq!(l["prev_hash"], "0".repeat(64));
        }
        assert!(!l.to_string().contains("Situation"));
    }

    let a = app
        .get(
            "/v1/cellules/perpignan/audit/export?format=fhir",
            Some(&auditor),
        )
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.content_type(), "application/fhir+json");
    let count = validate_fhir_bundle(&a.text).unwrap_or_else(|e| panic!("{e}\n{}", a.text));
    assert_eq!(count as i64, head_seq(&app).await);
    // Denials are minor failures with their reason; every event names its actor.
    let denied = a.body["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["resource"]["outcome"] == "4")
        .expect("a denial");
    assert_eq!(denied["resource"]["outcomeDesc"], "not_visible");
    assert_eq!(
        denied["resource"]["agent"][0]["who"]["identifier"]["value"],
        PSY
    );
    // The validator does refuse broken resources (so the check above means something).
    let mut broken = a.body.clone();
    broken["entry"][0]["resource"]
        .as_object_mut()
        .expect("object")
        .remove("source");
    assert!(validate_fhir_bundle(&broken.to_string()).is_err());
    let mut broken = a.body.clone();
    broken["entry"][0]["resource"]["agent"][0]["requestor"] = json!("yes");
    assert!(validate_fhir_bundle(&broken.to_string()).is_err());
    let mut broken = a.body.clone();
    broken["entry"][0]["resource"]["recorded"] = json!("2026-11-23");
    assert!(validate_fhir_bundle(&broken.to_string()).is_err());

    app.get(
        "/v1/cellules/perpignan/audit/export?format=csv",
        Some(&auditor),
    )
    .await
    .assert_problem(422);
    app.get("/v1/cellules/perpignan/audit/export", Some(&auditor))
        .await
        .assert_problem(422);
}

async fn the_cli_verifies_exports_checkpoints_and_purges(backend: Backend) {
    let dir = crate::helpers::private_tempdir();
    let (url, _pg) = database(backend, dir.path()).await;
    let served = serve(dir.path(), &url, &[("CELLULE_ADMINS", "ops")]).await;
    let base = format!("http://{}", served.addr);
    let client = reqwest::Client::new();
    let admin = dev_token(dir.path(), "ops");
    let send = |m: Method, path: &str, token: &str, body: Option<Value>| {
        let mut r = client
            .request(m, format!("{base}{path}"))
            .bearer_auth(token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send()
    };
    let a = send(
        Method::POST,
        "/v1/cellules",
        &admin,
        Some(json!({"slug": "perpignan", "name": "CLSM Perpignan"})),
    )
    .await
    .expect("send");
    assert_eq!(a.status(), 201);
    for (sub, role) in [("ref-1", "referrer"), ("dpo-1", "auditor")] {
        let a = send(
            Method::PUT,
            &format!("/v1/cellules/perpignan/members/{sub}"),
            &admin,
            Some(json!({"role": role, "organisation": "CCAS Perpignan"})),
        )
        .await
        .expect("send");
        assert!(a.status().is_success());
    }
    let referrer = dev_token(dir.path(), "ref-1");
    for i in 0..3 {
        let a = send(
            Method::POST,
            "/v1/cellules/perpignan/referrals",
            &referrer,
            Some(referral(&format!("Situation CLI {i}."))),
        )
        .await
        .expect("send");
        assert_eq!(a.status(), 201);
    }
    let base_args = ["--data-dir", "data", "--database", url.as_str()];
    let cli = |args: &[&str]| run(cellule(dir.path()).args(base_args).args(args));

    let out = cli(&["audit", "verify"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("perpignan: ok"), "{}", stdout(&out));
    let out = cli(&["audit", "checkpoint", "--cellule", "perpignan"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("checkpoint at entry"),
        "{}",
        stdout(&out)
    );
    let out = cli(&[
        "audit",
        "export",
        "--cellule",
        "perpignan",
        "--format",
        "fhir",
        "--output",
        "audit.json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(dir.path().join("audit.json")).expect("export file");
    assert!(validate_fhir_bundle(&text).expect("valid FHIR") >= 5);
    let out = cli(&["audit", "export", "--cellule", "perpignan"]);
    assert!(out.status.success());
    assert!(stdout(&out).lines().count() >= 6, "{}", stdout(&out));

    // Bad usage: one line, non-zero.
    for (args, code, text) in [
        (
            vec![
                "audit",
                "export",
                "--cellule",
                "perpignan",
                "--format",
                "xml",
            ],
            2,
            "format",
        ),
        (
            vec!["audit", "verify", "--cellule", "nowhere"],
            1,
            "no cellule",
        ),
        (
            vec![
                "audit",
                "purge",
                "--cellule",
                "perpignan",
                "--before",
                "2099-01-01",
            ],
            2,
            "--yes",
        ),
    ] {
        let out = cli(&args);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
        assert!(stderr(&out).contains(text), "{}", stderr(&out));
    }

    // Retention: everything before tomorrow goes, a signed anchor stays, the rest verifies.
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1))
        .date_naive()
        .to_string();
    let out = cli(&[
        "audit",
        "purge",
        "--cellule",
        "perpignan",
        "--before",
        &tomorrow,
        "--yes",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("signed retention checkpoint"),
        "{}",
        stdout(&out)
    );
    let out = cli(&["audit", "verify", "--cellule", "perpignan"]);
    assert!(out.status.success(), "{} {}", stdout(&out), stderr(&out));
    let auditor = dev_token(dir.path(), "dpo-1");
    let report: Value = send(
        Method::GET,
        "/v1/cellules/perpignan/audit/verify",
        &auditor,
        None,
    )
    .await
    .expect("send")
    .json()
    .await
    .expect("json");
    assert_eq!(report["valid"], true, "{report}");
    assert!(report["purged_through"].as_i64() > Some(0), "{report}");
    let purge: Value = send(
        Method::GET,
        "/v1/cellules/perpignan/audit?action=purge_audit",
        &auditor,
        None,
    )
    .await
    .expect("send")
    .json()
    .await
    .expect("json");
    assert_eq!(purge["items"].as_array().map(Vec::len), Some(1), "{purge}");
    // The purge names who asked: the operator at the command line (no `USER` in the test's
    // clean environment).
    let entry = &purge["items"][0];
    assert_eq!(entry["actor"], "system:cli:unknown", "{purge}");
    assert_eq!(entry["actor_role"], "system", "{purge}");
    assert_eq!(
        entry["detail"]["through_seq"].as_i64(),
        entry["target_id"]
            .as_str()
            .and_then(|s| s.parse::<i64>().ok()),
        "{purge}"
    );

    // Tampering makes `audit verify` fail with one line.
    let sqlite = url.starts_with("sqlite");
    let statements: Vec<&str> = if sqlite {
        vec![
            "DROP TRIGGER audit_entries_no_update",
            "UPDATE audit_entries SET actor = 'mallory' WHERE seq = (SELECT MAX(seq) FROM audit_entries)",
        ]
    } else {
        vec![
            "DROP TRIGGER audit_entries_guard ON audit_entries",
            "UPDATE audit_entries SET actor = 'mallory' WHERE seq = (SELECT MAX(seq) FROM audit_entries)",
        ]
    };
    if sqlite {
        let mut c = sqlx::SqliteConnection::connect(&url).await.expect("sqlite");
        for s in statements {
            sqlx::raw_sql(s).execute(&mut c).await.expect("tamper");
        }
    } else {
        let mut c = sqlx::PgConnection::connect(&url).await.expect("pg");
        for s in statements {
            sqlx::raw_sql(s).execute(&mut c).await.expect("tamper");
        }
    }
    let out = cli(&["audit", "verify", "--cellule", "perpignan"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("BROKEN at entry"), "{}", stdout(&out));
    assert_eq!(stderr(&out).lines().count(), 1);
    stop(served);
}

fn stop(mut served: Served) {
    let _ = served.child.kill();
    let _ = served.child.wait();
    let _ = served.reader.join();
}

/// Two `cellule serve` processes on one database (PostgreSQL, or one SQLite file), writing
/// concurrently: one linear chain.
async fn two_server_processes_keep_one_linear_chain(backend: Backend) {
    let dir = crate::helpers::private_tempdir();
    let (url, _pg) = database(backend, dir.path()).await;
    let env = [
        ("CELLULE_ADMINS", "ops"),
        ("CELLULE_AUDIT__CHECKPOINT_EVERY", "25"),
    ];
    let first = serve(dir.path(), &url, &env).await;
    let second = serve(dir.path(), &url, &env).await;
    let bases = [
        format!("http://{}", first.addr),
        format!("http://{}", second.addr),
    ];
    let client = reqwest::Client::new();
    let admin = dev_token(dir.path(), "ops");
    let a = client
        .post(format!("{}/v1/cellules", bases[0]))
        .bearer_auth(&admin)
        .json(&json!({"slug": "perpignan", "name": "CLSM Perpignan"}))
        .send()
        .await
        .expect("send");
    assert_eq!(a.status(), 201);
    for (sub, body) in [
        (
            "ref-1",
            json!({"role": "referrer", "organisation": "CCAS Perpignan"}),
        ),
        (
            "coord-1",
            json!({"role": "coordinator", "sphere": "city", "organisation": "CLSM"}),
        ),
        ("dpo-1", json!({"role": "auditor"})),
    ] {
        let a = client
            .put(format!("{}/v1/cellules/perpignan/members/{sub}", bases[1]))
            .bearer_auth(&admin)
            .json(&body)
            .send()
            .await
            .expect("send");
        assert!(a.status().is_success());
    }
    let coord = dev_token(dir.path(), "coord-1");
    let charter = client
        .post(format!("{}/v1/cellules/perpignan/charter/accept", bases[0]))
        .bearer_auth(&coord)
        .json(&json!({"version": 1}))
        .send()
        .await
        .expect("send");
    assert_eq!(charter.status(), 200);
    let referrer = dev_token(dir.path(), "ref-1");

    // 4 workers x 15 rounds, alternating servers: a referral then a read of it. Both servers'
    // group commits move the same reference counter and chain head.
    let workers = 4;
    let rounds = 15;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (client, bases, referrer, coord) = (
            client.clone(),
            bases.clone(),
            referrer.clone(),
            coord.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut references = Vec::new();
            for r in 0..rounds {
                let base = &bases[(w + r) % 2];
                let a = client
                    .post(format!("{base}/v1/cellules/perpignan/referrals"))
                    .bearer_auth(&referrer)
                    .json(&referral(&format!("Situation {w}-{r}.")))
                    .send()
                    .await
                    .expect("send");
                assert_eq!(a.status(), 201);
                let body: Value = a.json().await.expect("json");
                references.push(body["reference"].as_str().expect("reference").to_owned());
                let other = &bases[(w + r + 1) % 2];
                let a = client
                    .get(format!(
                        "{other}/v1/cellules/perpignan/cases/{}",
                        body["id"].as_str().expect("id")
                    ))
                    .bearer_auth(&coord)
                    .send()
                    .await
                    .expect("send");
                assert_eq!(a.status(), 200);
            }
            references
        }));
    }
    let mut references = std::collections::HashSet::new();
    for t in tasks {
        references.extend(t.await.expect("worker"));
    }
    let year = chrono::Utc::now().format("%Y").to_string();
    let expected: std::collections::HashSet<String> = (1..=workers * rounds)
        .map(|n| format!("PER-{year}-{n:04}"))
        .collect();
    assert_eq!(references, expected, "no gaps, no duplicates");
    let auditor = dev_token(dir.path(), "dpo-1");
    let report: Value = client
        .get(format!("{}/v1/cellules/perpignan/audit/verify", bases[1]))
        .bearer_auth(&auditor)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    // The creation and three grants, two per round, the charter acceptance and the
    // verification.
    let expected = (4 + workers * rounds * 2 + 2) as i64;
    assert_eq!(report["valid"], true, "{report}");
    assert_eq!(report["entries_checked"], expected, "{report}");
    assert_eq!(report["head"]["seq"], expected, "{report}");
    assert!(report["checkpoints"].as_i64() >= Some(2), "{report}");
    // No gap, no fork: sequence numbers are exactly 1..=n, each linking to the one before.
    let export = client
        .get(format!(
            "{}/v1/cellules/perpignan/audit/export?format=jsonl",
            bases[0]
        ))
        .bearer_auth(&auditor)
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    let lines: Vec<Value> = export
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(lines.len() as i64, expected + 1);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["seq"], i as i64 + 1);
        if i > 0 {
            assert_eq!(l["prev_hash"], lines[i - 1]["hash"]);
        }
    }
    stop(first);
    stop(second);
}

async fn verification_holds_across_page_boundaries(backend: Backend) {
    let app = spawn_app(backend).await;
    busy_cellule(&app).await;
    let keys = app.state.audit.trusted("perpignan").expect("trusted keys");
    let paged = |page: i64| {
        let app = &app;
        let keys = &keys;
        async move {
            cellule::services::auditor::verify_chain_paged(
                app.state.db.as_ref(),
                "perpignan",
                keys,
                page,
            )
            .await
            .expect("verify")
        }
    };
    let head = head_seq(&app).await;
    assert!(head > 12, "enough entries for several pages: {head}");
    for page in [1, 4, 5, head, head + 1] {
        let report = paged(page).await;
        assert!(report.valid, "page {page}: {:?}", report.broken);
        assert_eq!(report.entries_checked, head, "page {page}");
    }
    let original = app
        .state
        .db
        .audit_entries("perpignan", 7, 1)
        .await
        .expect("entries")[0]
        .actor
        .clone();
    drop_guards(&app).await;
    // The last entry of a page (4 per page: 5-8) edited, the first of the next one deleted.
    sql(
        &app,
        &[
            "UPDATE audit_entries SET actor = 'mallory' WHERE cellule = 'perpignan' AND seq = 8",
            "DELETE FROM audit_entries WHERE cellule = 'perpignan' AND seq = 9",
        ],
    )
    .await
    .expect("tamper");
    for page in [1, 3, 4, 5, 8, head] {
        let broken = paged(page).await.broken.expect("broken");
        assert_eq!(broken.seq, 8, "page {page}: {}", broken.reason);
        assert!(broken.reason.contains("altered"), "{}", broken.reason);
    }
    // Entry 8 restored: the gap at 9 is what remains, found at any page size.
    let restore = format!(
        "UPDATE audit_entries SET actor = '{}' WHERE cellule = 'perpignan' AND seq = 8",
        original.replace('\'', "''")
    );
    sql(&app, &[&restore]).await.expect("restore");
    for page in [1, 4, 5, 9, head] {
        let broken = paged(page).await.broken.expect("broken");
        assert_eq!(broken.seq, 9, "page {page}: {}", broken.reason);
        assert!(broken.reason.contains("missing"), "{}", broken.reason);
    }
}

/// The links verification walks (read and hashed by the backend: SQLite steps the rows itself)
/// are those of the entries as the API reads them, edited columns and absent fields included.
async fn verification_links_match_the_stored_entries(backend: Backend) {
    let app = spawn_app(backend).await;
    busy_cellule(&app).await;
    let links_and_entries = || async {
        let db = app.state.db.as_ref();
        let links = db.audit_links("perpignan", 2, 1_000).await.expect("links");
        let entries = db
            .audit_entries("perpignan", 2, 1_000)
            .await
            .expect("entries");
        (links, entries)
    };
    let (links, entries) = links_and_entries().await;
    assert!(links.len() > 10, "{}", links.len());
    assert_eq!(links[0].seq, 3, "the page starts above after_seq");
    assert!(entries.iter().any(|e| e.case_id.is_none()));
    assert!(entries.iter().any(|e| e.case_id.is_some()));
    for (link, entry) in links.iter().zip(&entries) {
        assert_eq!(*link, cellule::audit::Link::from(entry));
        assert_eq!(
            link.computed.as_slice(),
            entry.hash.as_slice(),
            "{}",
            entry.seq
        );
    }
    assert_eq!(links.len(), entries.len());
    let limited = app
        .state
        .db
        .audit_links("perpignan", 2, 4)
        .await
        .expect("links");
    assert_eq!(limited, links[..4]);
    drop_guards(&app).await;
    sql(
        &app,
        &[
            "UPDATE audit_entries SET request_id = NULL, actor_org = 'ailleurs' \
             WHERE cellule = 'perpignan' AND seq = 5",
            "DELETE FROM audit_entries WHERE cellule = 'perpignan' AND seq = 8",
        ],
    )
    .await
    .expect("tamper");
    let (links, entries) = links_and_entries().await;
    let edited = links.iter().find(|l| l.seq == 5).expect("entry 5");
    assert_ne!(Some(edited.computed), edited.hash);
    for (link, entry) in links.iter().zip(&entries) {
        assert_eq!(*link, cellule::audit::Link::from(entry));
    }
    // A page is a range of sequence numbers: a missing entry leaves it short.
    let range = app
        .state
        .db
        .audit_links("perpignan", 6, 4)
        .await
        .expect("links");
    let seqs: Vec<i64> = range.iter().map(|l| l.seq).collect();
    assert_eq!(seqs, [7, 9, 10]);
}

/// Reads and denials of concurrent requests are committed together (group commit, docs/design.md §9: each
/// answered only once its entry is committed) and keep one linear chain; an entry that cannot be
/// written fails only its own request.
async fn concurrent_reads_share_commits_and_keep_one_chain(backend: Backend) {
    let app = spawn_app(backend).await;
    let ids = busy_cellule(&app).await;
    let before = head_seq(&app).await;
    let coord = app.token(COORD);
    let psy = app.token(PSY);
    let reads = (0..32).map(|i| {
        let path = format!("/v1/cellules/perpignan/cases/{}", ids[i % ids.len()]);
        let token = if i % 4 == 3 { &psy } else { &coord };
        let app = &app;
        async move { app.get(&path, Some(token)).await.status }
    });
    let statuses = futures_util::future::join_all(reads).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        24,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 404).count(),
        8,
        "{statuses:?}"
    );
    assert_eq!(head_seq(&app).await, before + 32, "one entry per request");
    let recent = newest_entries(&app, "read_case", 32).await;
    assert_eq!(recent.len(), 32);
    assert!(recent.iter().all(|e| e.seq > before), "the 32 newest reads");
    let denied = recent.iter().filter(|e| e.outcome == "denied").count();
    assert_eq!(denied, 8);
    let report = verify_lib(&app).await;
    assert!(report.valid, "{report:?}");
    assert_eq!(report.entries_checked, before + 32);

    // Nine requests at once, one of them for a cellule that does not exist: that one fails, the
    // eight others are committed whether or not they shared its transaction.
    let draft = || {
        cellule::audit::AuditCtx {
            cellule: "perpignan".into(),
            actor: cellule::audit::Actor::system("group-commit-test"),
            request_id: None,
        }
        .entry(cellule::audit::Action::ReadCase, chrono::Utc::now())
        .case(&ids[0], None)
    };
    let jobs = (0..9).map(|i| {
        let cellule = if i == 4 { "nowhere" } else { "perpignan" };
        let app = &app;
        async move { app.state.audit.record(cellule, vec![draft()]).await }
    });
    let results = futures_util::future::join_all(jobs).await;
    for (i, r) in results.iter().enumerate() {
        if i == 4 {
            assert!(
                matches!(r, Err(cellule::storage::StorageError::NotFound(_))),
                "{r:?}"
            );
        } else {
            assert!(r.is_ok(), "{i}: {r:?}");
        }
    }
    assert_eq!(head_seq(&app).await, before + 40);
    assert!(verify_lib(&app).await.valid);
    assert!(
        app.state
            .db
            .audit_head("nowhere")
            .await
            .expect("head")
            .is_none()
    );

    // Six submissions at once, one reusing an existing case id: that one is refused (conflict),
    // the five others get the next five references with no gap, each with its entry.
    let year = chrono::Datelike::year(&chrono::Utc::now());
    let submit = |i: usize| {
        let id = if i == 2 {
            ids[0].clone()
        } else {
            uuid::Uuid::new_v4().to_string()
        };
        let (_, key) = app
            .state
            .keys
            .new_case_key("perpignan", &id)
            .expect("case key");
        let case = cellule::storage::NewCase {
            id: id.clone(),
            cellule: "perpignan".into(),
            code: "PER".into(),
            year,
            urgency: cellule::domain::case::Urgency::Routine,
            age_band: cellule::domain::case::AgeBand::A35,
            gender: cellule::domain::case::Gender::F,
            commune: None,
            sector: None,
            needs: cellule::domain::case::Needs::parse_stored(",housing,").expect("needs"),
            consent_status: cellule::domain::case::ConsentStatus::Informed,
            consent_justification: None,
            referring_org: "CCAS Perpignan".into(),
            referrer: REF1.into(),
            linkage_key: None,
            situation: vec![0; 32],
            expectations: None,
            submitted_at: chrono::Utc::now(),
        };
        let draft = cellule::audit::AuditCtx {
            cellule: "perpignan".into(),
            actor: cellule::audit::Actor::system("group-commit-test"),
            request_id: None,
        }
        .entry(cellule::audit::Action::SubmitReferral, chrono::Utc::now())
        .case(&id, None);
        let app = &app;
        async move { app.state.audit.insert_case(case, key, draft).await }
    };
    let results = futures_util::future::join_all((0..6).map(submit)).await;
    let mut references = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        if i == 2 {
            assert!(
                matches!(r, Err(cellule::storage::StorageError::Conflict(_))),
                "{r:?}"
            );
        } else {
            references.push(r.expect("a reference"));
        }
    }
    references.sort();
    let expected: Vec<String> = (5..=9).map(|n| format!("PER-{year}-{n:04}")).collect();
    assert_eq!(references, expected);
    assert_eq!(head_seq(&app).await, before + 45);
    let submitted = newest_entries(&app, "submit_referral", 5).await;
    let mut logged: Vec<String> = submitted
        .iter()
        .filter_map(|e| e.case_ref.clone())
        .collect();
    logged.sort();
    assert_eq!(
        logged, expected,
        "each new case's entry carries its reference"
    );
    assert!(verify_lib(&app).await.valid);
}

/// The chain hash of an exported JSON Lines entry, recomputed from the documented encoding
/// (src/audit: domain tag, previous hash, fields in order, `cases` appended when present).
fn exported_hash(l: &Value) -> String {
    fn text(out: &mut Vec<u8>, v: &Value) {
        match v.as_str() {
            None => out.push(0),
            Some(s) => {
                out.push(1);
                out.extend_from_slice(&(s.len() as u32).to_be_bytes());
                out.extend_from_slice(s.as_bytes());
            }
        }
    }
    let at = chrono::DateTime::parse_from_rfc3339(l["at"].as_str().expect("at")).expect("time");
    let mut c = Vec::new();
    text(&mut c, &l["cellule"]);
    c.extend_from_slice(&l["seq"].as_i64().expect("seq").to_be_bytes());
    c.extend_from_slice(&at.timestamp_micros().to_be_bytes());
    for f in [
        "actor",
        "actor_role",
        "actor_org",
        "action",
        "case_id",
        "case_ref",
        "target_kind",
        "target_id",
        "outcome",
        "reason",
        "request_id",
    ] {
        text(&mut c, &l[f]);
    }
    // Compact JSON, keys sorted (`{"case_id":…,"case_ref":…}`); an administrative entry's
    // `detail` follows the `cases` slot written out.
    let compact = |v: &Value| (!v.is_null()).then(|| json!(v.to_string()));
    match (compact(&l["cases"]), compact(&l["detail"])) {
        (None, None) => {}
        (Some(cases), None) => text(&mut c, &cases),
        (cases, Some(detail)) => {
            text(&mut c, &cases.unwrap_or(Value::Null));
            text(&mut c, &detail);
        }
    }
    let prev: Vec<u8> = (0..32)
        .map(|i| {
            u8::from_str_radix(
                &l["prev_hash"].as_str().expect("prev")[2 * i..2 * i + 2],
                16,
            )
            .expect("hex")
        })
        .collect();
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"cellule-audit-v1");
    ctx.update(&prev);
    ctx.update(&c);
    cellule::audit::hex(ctx.finish().as_ref())
}

/// An agenda build over many cases is one entry naming the session and the set of cases: the
/// access log of each case (on the agenda or deferred) and the auditors' case filter find it,
/// the export carries the set so a third party recomputes its hash, and an edited set breaks
/// the chain at that entry.
async fn an_agenda_build_is_one_entry_naming_its_cases(backend: Backend) {
    let app = spawn_app(backend).await;
    app.standard_cellule().await;
    let coord = app.token(COORD);
    let auditor = app.token(AUDITOR);
    let a = app
        .request(
            Method::PUT,
            "/v1/cellules/perpignan/schedule",
            Some(&coord),
            Some(
                json!({"rrule": "FREQ=MONTHLY;BYDAY=+2TH", "start_time": "14:00",
                "time_zone": "Europe/Paris", "duration_minutes": 60, "minutes_per_new_case": 20,
                "minutes_per_follow_up": 10, "location": "Mairie", "on_holiday": "next_week"}),
            ),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let mut eligible = Vec::new();
    for i in 0..5 {
        let (id, reference) = app.refer_ok(REF1, &format!("Situation {i}.")).await;
        app.move_case(&id, json!({"to": "accepted"})).await;
        eligible.push((id, reference));
    }
    // Submitted, not accepted: not considered by the build.
    let (outside, outside_ref) = app.refer_ok(REF1, "Situation à trier.").await;
    let a = app
        .request(
            Method::POST,
            "/v1/cellules/perpignan/sessions",
            Some(&coord),
            Some(json!({"starts_at": "2030-12-12T14:00:00+01:00"})),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.text);
    let sid = a.body["id"].as_str().expect("id").to_owned();
    let before = head_seq(&app).await;
    let a = app
        .request(
            Method::POST,
            &format!("/v1/cellules/perpignan/sessions/{sid}/agenda/build"),
            Some(&coord),
            None,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["items"].as_array().map(Vec::len), Some(3));
    assert_eq!(a.body["deferred"].as_array().map(Vec::len), Some(2));
    assert_eq!(head_seq(&app).await, before + 1, "one entry for the build");

    let a = app
        .get(
            "/v1/cellules/perpignan/audit?action=build_agenda",
            Some(&auditor),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let entries = a.body["items"].as_array().expect("items");
    assert_eq!(entries.len(), 1);
    let build = &entries[0];
    assert_eq!(build["target_kind"], "session");
    assert_eq!(build["target_id"], sid.as_str());
    assert!(build["case_id"].is_null());
    let mut named: Vec<(String, String)> = build["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| {
            (
                c["case_id"].as_str().unwrap_or_default().to_owned(),
                c["case_ref"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    named.sort();
    let mut expected = eligible.clone();
    expected.sort();
    assert_eq!(
        named, expected,
        "every eligible case, on the agenda or deferred"
    );

    let build_seq = build["seq"].as_i64().expect("seq");
    // Whether the entries an auditor gets at `path` (under `key`) include the build's.
    let shows_build = |path: String, key: &'static str| {
        let app = &app;
        let auditor = auditor.clone();
        async move {
            let a = app
                .get(&format!("/v1/cellules/perpignan{path}"), Some(&auditor))
                .await;
            assert_eq!(a.status, 200, "{}", a.text);
            a.body[key]
                .as_array()
                .expect("entries")
                .iter()
                .any(|e| e["seq"] == build_seq && e["action"] == "build_agenda")
        }
    };
    let access_log = |key: &str| format!("/cases/{key}/access-log");
    for (id, reference) in &eligible {
        assert!(shows_build(access_log(id), "entries").await, "{reference}");
        assert!(
            shows_build(access_log(reference), "entries").await,
            "{reference}"
        );
    }
    assert!(!shows_build(access_log(&outside), "entries").await);
    let filtered = |reference: &str| format!("/audit?case={reference}");
    assert!(shows_build(filtered(&eligible[4].1), "items").await);
    assert!(!shows_build(filtered(&outside_ref), "items").await);

    // Every exported line's hash is recomputed from the export alone.
    let a = app
        .get(
            "/v1/cellules/perpignan/audit/export?format=jsonl",
            Some(&auditor),
        )
        .await;
    assert_eq!(a.status, 200);
    let mut with_cases = 0;
    for line in a.text.lines() {
        let l: Value = serde_json::from_str(line).expect("JSON");
        with_cases += usize::from(!l["cases"].is_null());
        assert_eq!(json!(exported_hash(&l)), l["hash"], "{line}");
    }
    assert_eq!(with_cases, 1);
    // The FHIR export names each case of the set, and stays valid R4.
    let a = app
        .get(
            "/v1/cellules/perpignan/audit/export?format=fhir",
            Some(&auditor),
        )
        .await;
    assert_eq!(a.status, 200);
    validate_fhir_bundle(&a.text).unwrap_or_else(|e| panic!("{e}\n{}", a.text));
    let event = a.body["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["resource"]["subtype"][0]["code"] == "build_agenda")
        .expect("the build")
        .clone();
    for (_, reference) in &eligible {
        assert!(
            event["resource"]["entity"]
                .as_array()
                .expect("entities")
                .iter()
                .any(|e| e["what"]["identifier"]["value"] == reference.as_str()),
            "{reference}"
        );
    }

    // Verification's links hash the set as the entry path does.
    let db = app.state.db.as_ref();
    let links = db
        .audit_links("perpignan", build_seq - 1, 1)
        .await
        .expect("links");
    let stored = db
        .audit_entries("perpignan", build_seq - 1, 1)
        .await
        .expect("entries");
    assert!(stored[0].cases.is_some());
    assert_eq!(links, vec![cellule::audit::Link::from(&stored[0])]);
    assert_eq!(links[0].computed.as_slice(), stored[0].hash.as_slice());
    assert!(verify_lib(&app).await.valid);
    drop_guards(&app).await;
    let (first, second) = (&eligible[0].1, &eligible[1].1);
    sql(
        &app,
        &[&format!(
            "UPDATE audit_entries SET cases = replace(cases, '{first}', '{second}') \
             WHERE cellule = 'perpignan' AND seq = {build_seq}"
        )],
    )
    .await
    .expect("tamper");
    let report = verify_lib(&app).await;
    assert!(!report.valid);
    assert_eq!(report.broken.map(|b| b.seq), Some(build_seq));
}

/// The group commit's foreign-key mapping: entries for a cellule that does not exist (deleted
/// between the extractor and the commit) are "no such cellule", and the failed batch changes
/// nothing.
async fn a_batch_for_an_unknown_cellule_is_not_found(backend: Backend) {
    use cellule::audit::{Action, Actor, AuditCtx};
    use cellule::storage::StorageError;
    let app = spawn_app(backend).await;
    app.standard_cellule().await;
    let ctx = AuditCtx {
        cellule: "nowhere".into(),
        actor: Actor {
            subject: "someone".into(),
            role: "member".into(),
            organisation: None,
        },
        request_id: None,
    };
    let draft = ctx.entry(Action::ReadCase, chrono::Utc::now());
    let db = app.state.db.clone();
    let before = db.audit_head("perpignan").await.expect("head");
    let drafts = [draft];
    let failed = db
        .commit_batch(&[], &[("perpignan", &drafts), ("nowhere", &drafts)])
        .await;
    assert!(
        matches!(failed, Err(StorageError::NotFound("cellule"))),
        "{failed:?}"
    );
    assert!(db.audit_head("nowhere").await.expect("head").is_none());
    let after = db.audit_head("perpignan").await.expect("head");
    assert_eq!(
        before.map(|h| h.seq),
        after.map(|h| h.seq),
        "the known cellule's entry went with the batch"
    );
    let committed = db
        .commit_batch(&[], &[("perpignan", &drafts)])
        .await
        .expect("the next batch commits");
    assert_eq!(committed.heads.len(), 1);
    let v = app
        .get(
            "/v1/cellules/perpignan/audit/verify",
            Some(&app.token(AUDITOR)),
        )
        .await;
    assert_eq!(v.body["valid"], true, "{}", v.text);
}

/// One batch holds new cases of two cellules and two years and entries of both cellules: each
/// counter and each chain moves once, the references follow the batch's order within each
/// counter, and both chains verify. Batches mixing the same cellules in opposite orders commit
/// side by side (the rows they share are taken in one order).
async fn a_batch_of_several_cellules_and_years_commits_together(backend: Backend) {
    use cellule::audit::{Action, Actor, AuditCtx};
    use cellule::storage::{CaseWrite, NewCase, WrappedKey};
    let app = spawn_app(backend).await;
    app.standard_cellule().await;
    app.create_cellule("beziers").await;
    let db = app.state.db.clone();
    let year = chrono::Datelike::year(&chrono::Utc::now());
    let ctx = |cellule: &str| AuditCtx {
        cellule: cellule.into(),
        actor: Actor::system("group-commit-test"),
        request_id: None,
    };
    let new_case =
        |cellule: &str, code: &str, year: i32| -> (NewCase, WrappedKey, cellule::audit::Draft) {
            let id = uuid::Uuid::new_v4().to_string();
            let (_, key) = app.state.keys.new_case_key(cellule, &id).expect("case key");
            let draft = ctx(cellule)
                .entry(Action::SubmitReferral, chrono::Utc::now())
                .case(&id, None);
            let case = NewCase {
                id,
                cellule: cellule.into(),
                code: code.into(),
                year,
                urgency: cellule::domain::case::Urgency::Routine,
                age_band: cellule::domain::case::AgeBand::A35,
                gender: cellule::domain::case::Gender::F,
                commune: None,
                sector: None,
                needs: cellule::domain::case::Needs::parse_stored(",housing,").expect("needs"),
                consent_status: cellule::domain::case::ConsentStatus::Informed,
                consent_justification: None,
                referring_org: "CCAS Perpignan".into(),
                referrer: REF1.into(),
                linkage_key: None,
                situation: vec![0; 32],
                expectations: None,
                submitted_at: chrono::Utc::now(),
            };
            (case, key, draft)
        };
    let cases = [
        new_case("perpignan", "PER", year),
        new_case("beziers", "BEZ", year),
        new_case("perpignan", "PER", year - 1),
        new_case("perpignan", "PER", year),
    ];
    let writes: Vec<CaseWrite<'_>> = cases
        .iter()
        .map(|(case, key, audit)| CaseWrite {
            case,
            key,
            audit,
            answer: None,
        })
        .collect();
    let reads = |cellule: &str| vec![ctx(cellule).entry(Action::ReadCase, chrono::Utc::now()); 2];
    let (per, bez) = (reads("perpignan"), reads("beziers"));
    let before = db
        .audit_head("perpignan")
        .await
        .expect("head")
        .map_or(0, |h| h.seq);
    let done = db
        .commit_batch(&writes, &[("beziers", &bez), ("perpignan", &per)])
        .await
        .expect("batch");
    assert_eq!(
        done.references,
        [
            format!("PER-{year}-0001"),
            format!("BEZ-{year}-0001"),
            format!("PER-{}-0001", year - 1),
            format!("PER-{year}-0002"),
        ]
    );
    let mut heads = done.heads.clone();
    heads.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        heads
            .iter()
            .map(|(c, h)| (c.as_str(), h.seq))
            .collect::<Vec<_>>(),
        // Beziers: its creation's entry, then the batch's case and two reads.
        [("beziers", 4), ("perpignan", before + 5)]
    );
    for (cellule, head) in &heads {
        assert_eq!(
            db.audit_head(cellule).await.expect("head").as_ref(),
            Some(head)
        );
    }
    // Opposite mixes of the same cellules, side by side, round after round.
    for _ in 0..10 {
        let a = [
            new_case("perpignan", "PER", year),
            new_case("beziers", "BEZ", year),
        ];
        let b = [
            new_case("beziers", "BEZ", year),
            new_case("perpignan", "PER", year),
        ];
        let wa: Vec<CaseWrite<'_>> = a
            .iter()
            .map(|(case, key, audit)| CaseWrite {
                case,
                key,
                audit,
                answer: None,
            })
            .collect();
        let wb: Vec<CaseWrite<'_>> = b
            .iter()
            .map(|(case, key, audit)| CaseWrite {
                case,
                key,
                audit,
                answer: None,
            })
            .collect();
        let ea: [(&str, &[cellule::audit::Draft]); 2] = [("beziers", &bez), ("perpignan", &per)];
        let eb: [(&str, &[cellule::audit::Draft]); 2] = [("perpignan", &per), ("beziers", &bez)];
        let (ra, rb) = tokio::join!(db.commit_batch(&wa, &ea), db.commit_batch(&wb, &eb));
        ra.expect("first batch");
        rb.expect("second batch");
    }
    let keys = app.state.audit.trusted("perpignan").expect("trusted keys");
    for cellule in ["perpignan", "beziers"] {
        let report = cellule::services::auditor::verify_chain(db.as_ref(), cellule, &keys)
            .await
            .expect("verify");
        assert!(report.valid, "{cellule}: {report:?}");
    }
    let mut counts = Vec::new();
    for cellule in ["beziers", "perpignan"] {
        let filter = cellule::storage::CaseFilter {
            limit: 100,
            ..Default::default()
        };
        let listed = db.list_cases(cellule, &filter).await.expect("cases");
        counts.push((cellule.to_owned(), listed.len()));
    }
    assert_eq!(
        counts,
        [("beziers".to_owned(), 21), ("perpignan".to_owned(), 23)]
    );
}

/// Entries-only batches of one cellule (reads, denials) follow a head that another kind of write
/// moved between them: the chain stays linear.
async fn an_entries_only_batch_follows_a_head_moved_elsewhere(backend: Backend) {
    let app = spawn_app(backend).await;
    app.standard_cellule().await;
    let ctx = cellule::audit::AuditCtx {
        cellule: "perpignan".into(),
        actor: cellule::audit::Actor {
            subject: COORD.into(),
            role: "coordinator".into(),
            organisation: None,
        },
        request_id: None,
    };
    let draft = || vec![ctx.entry(cellule::audit::Action::ReadCase, chrono::Utc::now())];
    let db = app.state.db.clone();
    let mut seqs = Vec::new();
    for round in 0..3 {
        let drafts = draft();
        let committed = db
            .commit_batch(&[], &[("perpignan", &drafts)])
            .await
            .expect("batch");
        seqs.push(committed.heads[0].1.seq);
        if round == 1 {
            // Another kind of write appends behind the batches' back.
            let head = db.append_audit("perpignan", draft()).await.expect("append");
            seqs.push(head.seq);
        }
    }
    let first = seqs[0];
    assert_eq!(seqs, (first..first + 4).collect::<Vec<_>>());
    let head = db
        .audit_head("perpignan")
        .await
        .expect("head")
        .expect("some");
    assert_eq!(head.seq, first + 3);
    assert!(verify_lib(&app).await.valid);
}

backend_tests!(
    a_batch_of_several_cellules_and_years_commits_together,
    an_entries_only_batch_follows_a_head_moved_elsewhere,
    a_batch_for_an_unknown_cellule_is_not_found,
    verification_holds_across_page_boundaries,
    an_agenda_build_is_one_entry_naming_its_cases,
    verification_links_match_the_stored_entries,
    the_database_refuses_to_change_entries,
    an_edited_field_is_found_at_its_sequence,
    a_deleted_entry_is_found_at_its_sequence,
    a_stored_hash_cut_short_is_found_at_its_entry,
    swapped_entries_are_found_at_the_first,
    a_truncated_tail_behind_a_checkpoint_is_found,
    an_audit_write_failure_fails_the_request_and_changes_nothing,
    auditors_query_the_log_with_filters_and_a_cursor,
    the_access_log_answers_for_an_erased_case,
    checkpoints_are_signed_with_the_published_key,
    exports_are_chained_jsonl_and_valid_fhir_r4,
    the_cli_verifies_exports_checkpoints_and_purges,
    two_server_processes_keep_one_linear_chain,
    concurrent_reads_share_commits_and_keep_one_chain,
);
