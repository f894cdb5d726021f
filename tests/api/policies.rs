//! Policy files: a broken or schema-invalid policy stops start-up with a message naming the
//! file and line; an edited policy in its own folder changes the matching outcomes.

use std::path::Path;
use std::process::{Command, Stdio};

use cellule::domain::policy::Policies;
use reqwest::Method;
use serde_json::json;

use crate::backend_tests;
use crate::helpers::{Backend, COORD, Options, PSY, REF1, TestApp, spawn_app, spawn_app_with};

const SCHEMA: &str = include_str!("../../policies/schema.cedarschema");
const DEFAULT: &str = include_str!("../../policies/default.cedar");
const EXAMPLE: &str =
    include_str!("../../policies/examples/coordinator-reads-psychiatry-notes.cedar");

fn policy_dir(policies: &str, schema: &str) -> tempfile::TempDir {
    let dir = crate::helpers::private_tempdir();
    std::fs::write(dir.path().join("schema.cedarschema"), schema).expect("write");
    std::fs::write(dir.path().join("default.cedar"), policies).expect("write");
    dir
}

/// `serve` with these policies: must fail before listening, one line naming `file:line`.
fn assert_start_refused(dir: &Path, contains: &str) {
    let data = crate::helpers::private_tempdir();
    let out = Command::new(env!("CARGO_BIN_EXE_cellule"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CELLULE_POLICIES_DIR", dir)
        .current_dir(data.path())
        .args(["serve", "--bind", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: policy error in ") && last.contains(contains),
        "{contains:?} not in {err}"
    );
    assert!(
        !data.path().join("cellule-data").exists(),
        "nothing was created before the refusal"
    );
}

#[test]
fn broken_policies_prevent_start_naming_file_and_line() {
    let base_lines = DEFAULT.lines().count();

    // A syntax error on a known line.
    let broken = format!(
        "{DEFAULT}\n\npermit (principal, action, resource)\nwhen {{ principal.role == }};\n"
    );
    let dir = policy_dir(&broken, SCHEMA);
    let err = Policies::load_dir(dir.path()).expect_err("syntax error");
    assert!(err.file.ends_with("default.cedar"), "{err}");
    assert_eq!(err.line, Some(base_lines + 4), "{err}");
    assert_start_refused(dir.path(), &format!("default.cedar:{}", base_lines + 4));

    // Valid syntax, but an attribute the schema does not have.
    let invalid = format!(
        "{DEFAULT}\n\n@id(\"rank\")\npermit (principal, action == Cellule::Action::\"read_case\", resource)\nwhen {{ principal.rank == \"chief\" }};\n"
    );
    let dir = policy_dir(&invalid, SCHEMA);
    let err = Policies::load_dir(dir.path()).expect_err("schema error");
    assert_eq!(err.line, Some(base_lines + 5), "{err}");
    assert!(err.message.contains("rank"), "{err}");
    assert_start_refused(dir.path(), &format!("default.cedar:{}", base_lines + 5));

    // An action the schema does not declare.
    let unknown = format!(
        "{DEFAULT}\n@id(\"x\")\npermit (principal, action == Cellule::Action::\"launch\", resource);\n"
    );
    let dir = policy_dir(&unknown, SCHEMA);
    let err = Policies::load_dir(dir.path()).expect_err("unknown action");
    assert_eq!(err.line, Some(base_lines + 3), "{err}");

    // A broken schema, and a missing one.
    let dir = policy_dir(
        DEFAULT,
        &SCHEMA.replace("entity Cellule;", "entity Cellule"),
    );
    let err = Policies::load_dir(dir.path()).expect_err("schema syntax");
    assert!(
        err.file.ends_with("schema.cedarschema") && err.line.is_some(),
        "{err}"
    );
    assert_start_refused(dir.path(), "schema.cedarschema:");
    let dir = policy_dir(DEFAULT, SCHEMA);
    std::fs::remove_file(dir.path().join("schema.cedarschema")).expect("rm");
    assert_start_refused(dir.path(), "schema.cedarschema");

    // A schema whose entities are not the ones the service gives (a member or case attribute it
    // does not know): refused at start, not at the first request.
    for (schema, names) in [
        (
            SCHEMA.replace("guest: Bool,", "guest: Bool,\n    team: String,"),
            "team",
        ),
        (
            SCHEMA.replace(
                "routed_org: String,",
                "routed_org: String,\n    priority: Long,",
            ),
            "priority",
        ),
    ] {
        let dir = policy_dir(DEFAULT, &schema);
        let err = Policies::load_dir(dir.path()).expect_err("entity shape");
        assert!(err.file.ends_with("schema.cedarschema"), "{err}");
        assert!(
            err.message
                .contains("the schema does not describe the entities the service gives")
                && err.message.contains(names),
            "{err}"
        );
        assert_start_refused(dir.path(), "schema.cedarschema");
    }

    // Two policies with one id.
    let twice = format!(
        "{DEFAULT}\n@id(\"refer\")\npermit (principal, action == Cellule::Action::\"list_cases\", resource);\n"
    );
    let err = Policies::load_dir(policy_dir(&twice, SCHEMA).path()).expect_err("duplicate id");
    assert!(err.message.contains("refer"), "{err}");

    // The shipped folder itself is valid, and so is it with the example applied.
    Policies::load_dir(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/policies")))
        .expect("policies/ is valid");
    Policies::load_dir(edited().path()).expect("the example applies");
}

/// policies/ with the "psychiatry-notes" policy replaced by the example of policies/examples/.
fn edited() -> tempfile::TempDir {
    let start = DEFAULT
        .find("@id(\"psychiatry-notes\")")
        .expect("policy present");
    let end = start + DEFAULT[start..].find("};").expect("end of policy") + 2;
    let edited = format!("{}{}\n{EXAMPLE}", &DEFAULT[..start], &DEFAULT[end..]);
    policy_dir(&edited, SCHEMA)
}

/// A routed case with one note per audience; returns the audiences the coordinator reads.
async fn coordinator_reads(app: &TestApp) -> (Vec<String>, u16) {
    app.standard_cellule().await;
    let (id, _) = app.refer_ok(REF1, "Situation ordinaire.").await;
    app.move_case(&id, json!({"to": "accepted"})).await;
    app.move_case(&id, json!({"to": "scheduled"})).await;
    app.move_case(
        &id,
        json!({"to": "in_follow_up", "follow_up_date": "2027-01-14", "routed_org": "CMP 66G03"}),
    )
    .await;
    let notes = format!("/v1/cellules/perpignan/cases/{id}/notes");
    for (who, audience) in [(COORD, "cellule"), (COORD, "city"), (PSY, "psychiatry")] {
        let a = app
            .request(
                Method::POST,
                &notes,
                Some(&app.token(who)),
                Some(json!({"audience": audience, "body": "Texte."})),
            )
            .await;
        assert_eq!(a.status, 201, "{}", a.text);
    }
    let list = app.get(&notes, Some(&app.token(COORD))).await;
    let audiences = list
        .body
        .as_array()
        .expect("notes")
        .iter()
        .filter_map(|n| n["audience"].as_str().map(str::to_owned))
        .collect();
    let write = app
        .request(
            Method::POST,
            &notes,
            Some(&app.token(COORD)),
            Some(json!({"audience": "psychiatry", "body": "x"})),
        )
        .await;
    (audiences, write.status.as_u16())
}

async fn an_edited_policy_changes_the_matching_outcomes(backend: Backend) {
    let default = spawn_app(backend).await;
    assert_eq!(
        coordinator_reads(&default).await,
        (vec!["cellule".to_owned(), "city".to_owned()], 403)
    );

    let dir = edited();
    let path = dir.path().to_path_buf();
    let app = spawn_app_with(
        backend,
        Options {
            customize: Box::new(move |c| c.policies_dir = Some(path)),
            ..Options::default()
        },
    )
    .await;
    let (audiences, write) = coordinator_reads(&app).await;
    assert_eq!(
        audiences,
        ["cellule", "city", "psychiatry"],
        "the coordinator now reads psychiatry notes"
    );
    assert_eq!(write, 403, "but still cannot write them");
    // Everything else is unchanged: the city member still does not see the case at all.
    let list = app
        .get(
            "/v1/cellules/perpignan/cases",
            Some(&app.token(crate::helpers::CITY)),
        )
        .await;
    assert_eq!(list.body["items"], json!([]));
}

backend_tests!(an_edited_policy_changes_the_matching_outcomes);
