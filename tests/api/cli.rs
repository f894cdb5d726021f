//! The `cellule` binary: start-up failures, the token command, cellule and member commands, and
//! a served instance that logs rejections without tokens and shuts down on SIGTERM.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::helpers::{Backend, PgDatabase};

const BIN: &str = env!("CARGO_BIN_EXE_cellule");

/// The binary with a clean environment, run from `dir` (so no stray `cellule.toml` is read).
pub(crate) fn cellule(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(dir)
        .stdin(Stdio::null());
    cmd
}

pub(crate) fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run cellule")
}

pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub(crate) fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A failure: non-zero exit `code`, exactly one line on stderr starting with `error: `.
fn assert_one_line_failure(out: &Output, code: i32, contains: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line expected: {err:?}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains(contains), "{contains:?} not in {err}");
}

/// A database to point the binary at: the data directory's SQLite file or a fresh PostgreSQL.
pub(crate) async fn database(backend: Backend, dir: &Path) -> (String, Option<PgDatabase>) {
    match backend {
        Backend::Sqlite => (
            format!("sqlite://{}", dir.join("data/cellule.db").display()),
            None,
        ),
        Backend::Postgres => {
            let pg = PgDatabase::create().await;
            (pg.url.clone(), Some(pg))
        }
    }
}

/// A `cellule serve` process on a free loopback port, its JSON log collected.
pub(crate) struct Served {
    pub child: std::process::Child,
    pub addr: String,
    pub log: Arc<Mutex<String>>,
    pub reader: std::thread::JoinHandle<()>,
}

/// Starts `cellule serve` with data dir `dir/data` on database `url`, and waits until it listens.
pub(crate) async fn serve(dir: &Path, url: &str, env: &[(&str, &str)]) -> Served {
    let mut cmd = cellule(dir);
    cmd.args([
        "--data-dir",
        "data",
        "--database",
        url,
        "serve",
        "--bind",
        "127.0.0.1:0",
    ])
    .env("CELLULE_LOG__FORMAT", "json")
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn serve");
    let log = Arc::new(Mutex::new(String::new()));
    let stderr_pipe = child.stderr.take().expect("stderr");
    let sink = log.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr_pipe).lines().map_while(Result::ok) {
            if let Ok(mut l) = sink.lock() {
                l.push_str(&line);
                l.push('\n');
            }
        }
    });
    let started = Instant::now();
    let addr = loop {
        let text = log.lock().map(|l| l.clone()).unwrap_or_default();
        if let Some(addr) = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["message"] == "cellule listening")
            .and_then(|v| v["addr"].as_str().map(str::to_owned))
        {
            break addr;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "server did not start: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    Served {
        child,
        addr,
        log,
        reader,
    }
}

/// A token from the binary's development issuer (data dir `dir/data`).
pub(crate) fn dev_token(dir: &Path, sub: &str) -> String {
    stdout(&run(cellule(dir).args([
        "--data-dir",
        "data",
        "token",
        sub,
    ])))
    .trim()
    .to_owned()
}

#[test]
fn token_prints_a_token_alone_on_stdout() {
    let dir = crate::helpers::private_tempdir();
    let out =
        run(cellule(dir.path()).args(["--data-dir", "data", "token", "alice", "--ttl", "5m"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1);
    let token = text.trim();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("json");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["iss"], "cellule-dev");
    assert_eq!(claims["aud"], "cellule");
    assert_eq!(
        claims["exp"].as_i64().unwrap_or(0) - claims["iat"].as_i64().unwrap_or(0),
        300
    );

    // Keys and directory are private to the owner.
    let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode(&dir.path().join("data")), 0o700);
    assert_eq!(
        mode(
            &dir.path()
                .join("data")
                .join(cellule::auth::dev_issuer::KEY_FILE)
        ),
        0o600
    );

    let out =
        run(cellule(dir.path()).args(["--data-dir", "data", "token", "alice", "--ttl", "3days"]));
    assert_one_line_failure(&out, 2, "longer than");
    let out = run(cellule(dir.path()).args(["--data-dir", "data", "token", "a b"]));
    assert_one_line_failure(&out, 2, "subject");

    // A key file others can read is refused.
    let key = dir
        .path()
        .join("data")
        .join(cellule::auth::dev_issuer::KEY_FILE);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = run(cellule(dir.path()).args(["--data-dir", "data", "token", "alice"]));
    assert_one_line_failure(&out, 1, "chmod 600");
}

#[test]
fn malformed_configuration_fails_with_one_line() {
    let dir = crate::helpers::private_tempdir();
    let cases: [(&str, &str); 6] = [
        ("bind = 12\n", "bind"),
        ("colour = \"blue\"\n", "colour"),
        ("[auth]\nleeway_seconds = 120\n", "leeway"),
        ("[http]\nbody_limit_bytes = 10\n", "body_limit_bytes"),
        (
            "[[auth.issuers]]\nissuer = \"https://idp\"\naudience = \"a\"\nalgorithms = [\"HS256\"]\njwks_url = \"https://idp/jwks\"\n",
            "shared-secret",
        ),
        ("this is not toml", "configuration"),
    ];
    for (text, contains) in cases {
        let file = dir.path().join("cellule.toml");
        std::fs::write(&file, text).expect("write");
        let out = run(cellule(dir.path()).args(["migrate"]));
        assert_one_line_failure(&out, 2, contains);
        let out = run(cellule(dir.path()).args(["--config", "cellule.toml", "serve"]));
        assert_one_line_failure(&out, 2, contains);
    }
    std::fs::remove_file(dir.path().join("cellule.toml")).expect("rm");
    let out = run(cellule(dir.path())
        .env("CELLULE_BIND", "not-an-address")
        .arg("migrate"));
    assert_one_line_failure(&out, 2, "configuration");
    let out = run(cellule(dir.path()).args(["--config", "missing.toml", "migrate"]));
    assert_one_line_failure(&out, 2, "does not exist");
    let out = run(cellule(dir.path()).args(["--database", "mysql://x/y", "migrate"]));
    assert_one_line_failure(&out, 2, "sqlite:// or postgres://");
    assert!(
        !dir.path().join("cellule-data").join("cellule.db").exists(),
        "nothing was created"
    );
}

#[test]
fn unreachable_database_fails_with_one_line_without_the_password() {
    let dir = crate::helpers::private_tempdir();
    let url = "postgres://cellule:pw-very-secret@127.0.0.1:1/cellule";
    for args in [
        vec!["--database", url, "migrate"],
        vec!["--database", url, "serve"],
    ] {
        let out = run(cellule(dir.path()).args(&args));
        assert_one_line_failure(&out, 1, "cannot open the database");
        assert!(!stderr(&out).contains("pw-very-secret"), "{}", stderr(&out));
    }
}

async fn cellule_and_member_commands(backend: Backend) {
    let dir = crate::helpers::private_tempdir();
    let (url, _pg) = database(backend, dir.path()).await;
    let base = ["--data-dir", "data", "--database", url.as_str()];
    let ok = |args: &[&str]| {
        let out = run(cellule(dir.path()).args(base).args(args));
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        stdout(&out)
    };
    assert!(ok(&["migrate"]).contains("migrations applied"));
    assert!(ok(&["cellule", "add", "perpignan", "--name", "CLSM Perpignan"]).contains("code PER"));
    ok(&[
        "cellule",
        "add",
        "narbonne",
        "--name",
        "CLSM Narbonne",
        "--code",
        "NAR",
    ]);
    assert_eq!(ok(&["cellule", "list"]).lines().count(), 2);
    let out = ok(&[
        "member",
        "add",
        "perpignan",
        "psc:1",
        "--role",
        "member",
        "--sphere",
        "psychiatry",
        "--org",
        "CMP",
    ]);
    assert!(out.starts_with("created"), "{out}");
    let out = ok(&[
        "member",
        "add",
        "perpignan",
        "psc:1",
        "--role",
        "member",
        "--sphere",
        "psychiatry",
        "--org",
        "EMPP",
        "--guest",
    ]);
    assert!(out.starts_with("updated"), "{out}");
    ok(&["member", "add", "perpignan", "dpo", "--role", "auditor"]);
    let list = ok(&["member", "list", "perpignan"]);
    assert_eq!(list.lines().count(), 2, "{list}");
    assert!(
        list.contains("psc:1\tmember\tpsychiatry\tEMPP\tguest"),
        "{list}"
    );

    let fail = |args: &[&str], code: i32, contains: &str| {
        let out = run(cellule(dir.path()).args(base).args(args));
        assert_one_line_failure(&out, code, contains);
    };
    fail(
        &["cellule", "add", "perpignan", "--name", "Again"],
        2,
        "already exists",
    );
    fail(&["cellule", "add", "Bad Slug", "--name", "x"], 2, "slug");
    fail(
        &["cellule", "add", "toulouse", "--name", "x", "--code", "t1"],
        2,
        "code",
    );
    fail(
        &["member", "add", "perpignan", "bob", "--role", "chief"],
        2,
        "role",
    );
    fail(
        &[
            "member",
            "add",
            "perpignan",
            "bob",
            "--role",
            "member",
            "--org",
            "CCAS",
        ],
        2,
        "sphere",
    );
    fail(
        &["member", "add", "nowhere", "bob", "--role", "auditor"],
        2,
        "cellule",
    );
    fail(
        &["member", "remove", "perpignan", "nobody"],
        1,
        "no membership",
    );
    fail(&["member", "list", "nowhere"], 1, "no cellule");
    assert!(ok(&["member", "remove", "perpignan", "dpo"]).contains("removed"));
    assert_eq!(ok(&["member", "list", "perpignan"]).lines().count(), 1);

    // Each change is in the cellule's audit log, naming the operator (the clean environment
    // has no `USER`), and refused commands left nothing; the chain verifies.
    let export = ok(&["audit", "export", "--cellule", "perpignan"]);
    let changes: Vec<(String, String, String)> = export
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON line"))
        .filter(|e| e["action"] != "export_audit")
        .map(|e| {
            let text = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            (text("action"), text("actor"), text("target_id"))
        })
        .collect();
    let cli = "system:cli:unknown".to_owned();
    let expected: Vec<(String, String, String)> = [
        ("create_cellule", "perpignan"),
        ("grant_membership", "psc:1"),
        ("change_membership", "psc:1"),
        ("grant_membership", "dpo"),
        ("revoke_membership", "dpo"),
    ]
    .into_iter()
    .map(|(a, t)| (a.to_owned(), cli.clone(), t.to_owned()))
    .collect();
    assert_eq!(changes, expected, "{export}");
    let verified = ok(&["audit", "verify"]);
    assert!(verified.contains("perpignan: ok"), "{verified}");
}

/// A served instance: JSON logs, attacks rejected and logged without tokens, SIGTERM honoured.
async fn serve_logs_rejections_without_tokens_and_stops_on_sigterm(backend: Backend) {
    let dir = crate::helpers::private_tempdir();
    let (url, _pg) = database(backend, dir.path()).await;
    let Served {
        mut child,
        addr,
        log,
        reader,
    } = serve(dir.path(), &url, &[("CELLULE_ADMINS", "ops-1, ops-2")]).await;

    let token_out = run(cellule(dir.path()).args(["--data-dir", "data", "token", "ops-2"]));
    let admin_token = stdout(&token_out).trim().to_owned();
    let client = reqwest::Client::new();
    let me = client
        .get(format!("http://{addr}/v1/me"))
        .bearer_auth(&admin_token)
        .send()
        .await
        .expect("send");
    assert_eq!(me.status(), 200);
    let body: Value = me.json().await.expect("json");
    assert_eq!(
        body["admin"], true,
        "CELLULE_ADMINS is a comma-separated list"
    );

    // A referral with an identity: neither the identity nor the content may reach the logs.
    let post = |path: &str, token: &str, body: Value| {
        client
            .request(reqwest::Method::POST, format!("http://{addr}{path}"))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let a = post(
        "/v1/cellules",
        &admin_token,
        json!({"slug": "perpignan", "name": "CLSM"}),
    )
    .await
    .expect("send");
    assert_eq!(a.status(), 201);
    let a = client
        .put(format!("http://{addr}/v1/cellules/perpignan/members/ref-1"))
        .bearer_auth(&admin_token)
        .json(&json!({"role": "referrer", "organisation": "CCAS Perpignan"}))
        .send()
        .await
        .expect("send");
    assert_eq!(a.status(), 201);
    let ref_token = stdout(&run(cellule(dir.path()).args([
        "--data-dir",
        "data",
        "token",
        "ref-1",
    ])))
    .trim()
    .to_owned();
    let mut body = crate::helpers::referral("Situation LOGCANARYcontentx1.");
    body["identity"] =
        json!({"last_name": "Logcanarynamey2", "first_name": "Zoe", "birth_date": "1990-02-03"});
    let a = post("/v1/cellules/perpignan/referrals", &ref_token, body)
        .await
        .expect("send");
    assert_eq!(a.status(), 201);
    let mut guarded = crate::helpers::referral("Rappeler au 06 12 34 56 78 svp.");
    guarded["identity"] =
        json!({"last_name": "Logcanarynamey2", "first_name": "Zoe", "birth_date": "1990-02-03"});
    let a = post("/v1/cellules/perpignan/referrals", &ref_token, guarded)
        .await
        .expect("send");
    assert_eq!(a.status(), 422);

    let (head, _) = admin_token.rsplit_once('.').expect("jws");
    let forged = format!(
        "{head}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    );
    let garbage = "garbage-token-value-4242";
    for token in [forged.as_str(), garbage] {
        let a = client
            .get(format!("http://{addr}/v1/me"))
            .bearer_auth(token)
            .send()
            .await
            .expect("send");
        assert_eq!(a.status(), 401);
    }

    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit after SIGTERM: {status:?}");
    reader.join().expect("reader");
    let text = log.lock().map(|l| l.clone()).unwrap_or_default();

    assert!(text.contains("token rejected"), "{text}");
    assert!(
        text.contains("bad signature") && text.contains("malformed token"),
        "{text}"
    );
    assert!(text.contains("shutting down"), "{text}");
    for secret in [
        admin_token.as_str(),
        head,
        forged.as_str(),
        garbage,
        ref_token.as_str(),
    ] {
        assert!(!text.contains(secret), "a token reached the logs");
    }
    for canary in [
        "LOGCANARYcontentx1",
        "Logcanarynamey2",
        "1990-02-03",
        "12 34 56 78",
    ] {
        assert!(
            !text.to_lowercase().contains(&canary.to_lowercase()),
            "{canary} reached the logs"
        );
    }
    // Every request line carries a request id.
    let answered: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "answered")
        .collect();
    assert_eq!(answered.len(), 7, "{text}");
    assert!(
        answered
            .iter()
            .all(|v| v["span"]["id"].as_str().is_some_and(|id| id.len() == 36)),
        "{text}"
    );
}

const ROUTING_EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/policies/examples/routing-perpignan.toml"
);

/// Runs the binary with `stdin` as its standard input.
fn run_with_stdin(cmd: &mut Command, stdin: &str) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cellule");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait cellule")
}

/// The ids of an example directory's interlocutors or rules, in order.
fn example_ids(dir: &cellule::domain::routing::Directory, key: &str) -> Vec<String> {
    match key {
        "interlocutor" => dir.interlocutors.iter().map(|i| i.id.clone()).collect(),
        _ => dir.rules.iter().map(|r| r.id.clone()).collect(),
    }
}

/// `routing export` then `routing import` gives back the same directory, through a file, stdin
/// and `--output`.
async fn routing_export_import_round_trip(backend: Backend) {
    let dir = crate::helpers::private_tempdir();
    let (url, _pg) = database(backend, dir.path()).await;
    let base = ["--data-dir", "data", "--database", url.as_str()];
    let ok = |args: &[&str]| {
        let out = run(cellule(dir.path()).args(base).args(args));
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        stdout(&out)
    };
    ok(&["cellule", "add", "perpignan", "--name", "CLSM Perpignan"]);
    ok(&["cellule", "add", "narbonne", "--name", "CLSM Narbonne"]);
    // A cellule without a directory exports an empty one, which reads back.
    let empty = ok(&["routing", "export", "--cellule", "narbonne"]);
    assert_eq!(
        cellule::domain::routing::Directory::from_toml(&empty).expect("empty export reads back"),
        cellule::domain::routing::Directory::default()
    );

    let out = ok(&[
        "routing",
        "import",
        "--cellule",
        "perpignan",
        ROUTING_EXAMPLE,
    ]);
    assert_eq!(
        out.trim(),
        "imported the routing directory of perpignan: 9 interlocutor(s), 9 rule(s)"
    );
    let exported = ok(&["routing", "export", "--cellule", "perpignan"]);
    let example = cellule::domain::routing::Directory::from_toml(
        &std::fs::read_to_string(ROUTING_EXAMPLE).expect("example"),
    )
    .expect("example parses");
    assert_eq!(
        cellule::domain::routing::Directory::from_toml(&exported).expect("export parses"),
        example,
        "the export is the imported directory, rules in order"
    );

    // Into another cellule through stdin; its export is the same text.
    let out = run_with_stdin(
        cellule(dir.path())
            .args(base)
            .args(["routing", "import", "--cellule", "narbonne", "-"]),
        &exported,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        ok(&["routing", "export", "--cellule", "narbonne"]),
        exported
    );

    // --output writes the same text to a file, which imports again unchanged.
    let file = dir.path().join("routing.toml");
    let file_arg = file.to_str().expect("utf-8 path");
    assert_eq!(
        ok(&[
            "routing",
            "export",
            "--cellule",
            "perpignan",
            "--output",
            file_arg
        ]),
        ""
    );
    assert_eq!(
        std::fs::read_to_string(&file).expect("read export"),
        exported
    );
    ok(&["routing", "import", "--cellule", "perpignan", file_arg]);
    assert_eq!(
        ok(&["routing", "export", "--cellule", "perpignan"]),
        exported
    );

    // Both imports of perpignan are in its audit log, by the operator: the first added every
    // interlocutor and rule, the second (the same directory) changed nothing.
    let log = ok(&["audit", "export", "--cellule", "perpignan"]);
    let imports: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON line"))
        .filter(|e| e["action"] == "change_routing")
        .collect();
    assert_eq!(imports.len(), 2, "{log}");
    assert!(imports.iter().all(|e| e["actor"] == "system:cli:unknown"));
    let (first, second) = (&imports[0]["detail"], &imports[1]["detail"]);
    let ids = |key: &str| -> Vec<serde_json::Value> {
        example_ids(&example, key)
            .into_iter()
            .map(serde_json::Value::from)
            .collect()
    };
    assert_eq!(first["interlocutors"]["added"], json!(ids("interlocutor")));
    assert_eq!(first["rules"]["added"], json!(ids("rule")));
    assert_eq!(first["after"], json!({"interlocutors": 9, "rules": 9}));
    assert_eq!(
        second["rules"],
        json!({"added": [], "removed": [], "changed": [], "reordered": false})
    );
    assert_eq!(second["before"], second["after"]);

    // The API serves what the CLI imported.
    let Served {
        mut child, addr, ..
    } = serve(dir.path(), &url, &[]).await;
    ok(&[
        "member",
        "add",
        "narbonne",
        "coord",
        "--role",
        "coordinator",
        "--sphere",
        "city",
        "--org",
        "CLSM",
    ]);
    let token = dev_token(dir.path(), "coord");
    let rules: Value = reqwest::Client::new()
        .get(format!("http://{addr}/v1/cellules/narbonne/routing"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let ids: Vec<&str> = rules["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    let expected: Vec<&str> = example.rules.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, expected);
    child.kill().expect("kill serve");
    child.wait().expect("wait serve");
}

/// A bad file is refused with one line and a non-zero exit, and changes nothing.
async fn routing_import_refuses_bad_files(backend: Backend) {
    let dir = crate::helpers::private_tempdir();
    let (url, _pg) = database(backend, dir.path()).await;
    let base = ["--data-dir", "data", "--database", url.as_str()];
    let ok = |args: &[&str]| {
        let out = run(cellule(dir.path()).args(base).args(args));
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        stdout(&out)
    };
    ok(&["cellule", "add", "perpignan", "--name", "CLSM Perpignan"]);
    ok(&[
        "routing",
        "import",
        "--cellule",
        "perpignan",
        ROUTING_EXAMPLE,
    ]);
    let before = ok(&["routing", "export", "--cellule", "perpignan"]);

    let interlocutor = "[[interlocutor]]\nid = \"ccas\"\nname = \"CCAS\"\nsphere = \"city\"\nkind = \"ccas\"\ncommunes = [\"66136\"]\n";
    let bad: [(&str, String, &str); 6] = [
        (
            "syntax error",
            format!("{interlocutor}\n[[rule]\nid = \"tout\"\nlead = \"ccas\"\n"),
            "line 8",
        ),
        (
            "unknown field",
            format!("{interlocutor}colour = \"blue\"\n"),
            "colour",
        ),
        (
            "unreachable rule",
            format!(
                "{interlocutor}\n[[rule]]\nid = \"tout\"\nlead = \"ccas\"\n\n[[rule]]\nid = \"logement\"\nneeds = [\"housing\"]\nlead = \"ccas\"\n"
            ),
            "/rule/1: never applies: rule 1 `tout` comes first",
        ),
        (
            "unknown interlocutor",
            format!("{interlocutor}\n[[rule]]\nid = \"cmp\"\nlead = \"cmp-66g03\"\n"),
            "/rule/0/lead: no interlocutor has the id `cmp-66g03`",
        ),
        (
            "several problems, still one line",
            format!(
                "{interlocutor}\n[[rule]]\nid = \"a\"\nlead = \"nobody\"\nothers = [\"ccas\", \"ccas\"]\n"
            ),
            "/rule/0/id",
        ),
        ("not UTF-8", String::new(), "not UTF-8"),
    ];
    for (what, text, contains) in &bad {
        let file = dir.path().join("bad.toml");
        if *what == "not UTF-8" {
            std::fs::write(&file, [0xff, 0xfe, 0x00]).expect("write");
        } else {
            std::fs::write(&file, text).expect("write");
        }
        let out = run(cellule(dir.path()).args(base).args([
            "routing",
            "import",
            "--cellule",
            "perpignan",
            file.to_str().expect("utf-8 path"),
        ]));
        assert_one_line_failure(&out, 2, contains);
        assert!(
            stderr(&out).contains("refused, nothing changed") || *what == "not UTF-8",
            "{what}: {}",
            stderr(&out)
        );
        assert_eq!(
            ok(&["routing", "export", "--cellule", "perpignan"]),
            before,
            "{what}: the directory is unchanged"
        );
        // The same through stdin.
        if *what != "not UTF-8" {
            let out = run_with_stdin(
                cellule(dir.path()).args(base).args([
                    "routing",
                    "import",
                    "--cellule",
                    "perpignan",
                    "-",
                ]),
                text,
            );
            assert_one_line_failure(&out, 2, contains);
            assert!(stderr(&out).contains("stdin"), "{}", stderr(&out));
        }
    }
    assert_one_line_failure(
        &run(cellule(dir.path()).args(base).args([
            "routing",
            "import",
            "--cellule",
            "perpignan",
            "missing.toml",
        ])),
        2,
        "missing.toml",
    );
    assert_one_line_failure(
        &run(cellule(dir.path()).args(base).args([
            "routing",
            "import",
            "--cellule",
            "nowhere",
            ROUTING_EXAMPLE,
        ])),
        1,
        "no cellule nowhere",
    );
    assert_one_line_failure(
        &run(cellule(dir.path())
            .args(base)
            .args(["routing", "export", "--cellule", "nowhere"])),
        1,
        "no cellule nowhere",
    );
    assert_eq!(ok(&["routing", "export", "--cellule", "perpignan"]), before);
}

/// `export NAME=value` lines of the demo's output.
fn exports(text: &str) -> std::collections::HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// `cellule demo` on a fresh database: the cellule it prints works through the API with the
/// tokens it prints; a second run is refused and changes nothing.
async fn demo_sets_up_a_cellule_the_printed_tokens_work_on(backend: Backend) {
    let dir = crate::helpers::private_tempdir();
    let (url, _pg) = database(backend, dir.path()).await;
    let base = ["--data-dir", "data", "--database", url.as_str()];
    let out = run(cellule(dir.path()).args(base).arg("demo"));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("Demo cellule `demo`"), "{text}");
    assert!(text.contains("40 cases: "), "{text}");
    assert!(text.contains("possible duplicate"), "{text}");
    let env = exports(&text);
    for var in [
        "API",
        "SESSION",
        "CASE",
        "COORDINATOR",
        "MEMBER_CCAS",
        "MEMBER_CMP",
        "MEMBER_LANDLORD",
        "GUEST_EMPP",
        "REFERRER_CCAS",
        "REFERRER_MEDIATION",
        "AUDITOR",
        "ADMIN",
        "MINUTES_SESSION",
    ] {
        assert!(env.contains_key(var), "{var} missing: {text}");
    }
    assert!(text.contains("/minutes"), "the minutes' command: {text}");
    assert_eq!(env["API"], "http://127.0.0.1:8080/v1/cellules/demo");

    let Served {
        mut child, addr, ..
    } = serve(dir.path(), &url, &[("CELLULE_ADMINS", "demo-admin")]).await;
    let api = format!("http://{addr}/v1/cellules/demo");
    let client = reqwest::Client::new();
    let get = |path: String, who: &str| {
        let token = env[who].clone();
        let client = client.clone();
        let api = api.clone();
        async move {
            let r = client
                .get(format!("{api}{path}"))
                .bearer_auth(token)
                .send()
                .await
                .expect("send");
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            (status, body)
        }
    };
    let (session, case) = (env["SESSION"].clone(), env["CASE"].clone());

    // The next session's agenda: published, with items, and CASE on it.
    let (status, agenda) = get(format!("/sessions/{session}/agenda"), "COORDINATOR").await;
    assert_eq!(status, 200, "{agenda}");
    assert_eq!(agenda["published"], true);
    let items = agenda["items"].as_array().expect("items");
    assert!(!items.is_empty());
    assert!(items.iter().any(|i| i["case_id"] == case.as_str()));
    assert!(
        items
            .iter()
            .all(|i| i["proposal"]["status"] == "routed" && i["status"] == "scheduled"),
        "{agenda}"
    );
    let starts_at = chrono::DateTime::parse_from_rfc3339(
        agenda["session"]["starts_at"].as_str().expect("starts_at"),
    )
    .expect("rfc3339");
    assert!(
        starts_at > chrono::Utc::now(),
        "the next session is to come"
    );

    // A permanent member reads the case, decrypted; the guest sees only its invited items.
    let (status, c) = get(format!("/cases/{case}"), "MEMBER_CMP").await;
    assert_eq!(status, 200, "{c}");
    assert!(
        c["situation"]
            .as_str()
            .is_some_and(|s| s.starts_with("Situation fictive (démo)")),
        "{c}"
    );
    assert!(c["history"].as_array().is_some_and(|h| h.len() >= 2), "{c}");
    let (status, guest) = get(format!("/sessions/{session}/agenda"), "GUEST_EMPP").await;
    assert_eq!(status, 200, "{guest}");
    let guest_items = guest["items"].as_array().expect("items");
    assert!(!guest_items.is_empty() && guest_items.len() < items.len());
    assert!(guest_items.iter().all(|i| {
        i["proposal"]["lead"] == "empp"
            || i["proposal"]["others"]
                .as_array()
                .is_some_and(|o| o.contains(&Value::from("empp")))
    }));

    // Cases in every status of the lifecycle, 40 in all, with notes.
    let mut total = 0;
    for status_name in [
        "submitted",
        "accepted",
        "declined",
        "scheduled",
        "in_follow_up",
        "closed",
    ] {
        let (status, page) = get(
            format!("/cases?status={status_name}&limit=200"),
            "COORDINATOR",
        )
        .await;
        assert_eq!(status, 200, "{page}");
        let n = page["items"].as_array().map_or(0, Vec::len);
        assert!(n >= 1, "no case {status_name}");
        total += n;
    }
    assert_eq!(total, 40);
    let (_, all) = get("/cases?limit=200".into(), "COORDINATOR").await;
    let mut notes = 0;
    for c in all["items"].as_array().expect("items") {
        let (status, list) = get(
            format!("/cases/{}/notes", c["id"].as_str().expect("id")),
            "COORDINATOR",
        )
        .await;
        assert_eq!(status, 200);
        notes += list.as_array().map_or(0, Vec::len);
    }
    assert!(notes > 0, "notes were written");

    // Referrers see their own referrals; the auditor's chain verifies and names the actors.
    let (status, mine) = get("/referrals".into(), "REFERRER_CCAS").await;
    assert_eq!(status, 200);
    assert!(mine.as_array().is_some_and(|m| !m.is_empty()));
    let (status, report) = get("/audit/verify".into(), "AUDITOR").await;
    assert_eq!(status, 200);
    assert_eq!(report["valid"], true, "{report}");
    assert!(report["entries_checked"].as_i64().unwrap_or(0) > 100);
    let (_, entries) = get(
        "/audit?actor=demo-coordinator&action=record_decision&limit=500".into(),
        "AUDITOR",
    )
    .await;
    assert!(
        entries["items"].as_array().is_some_and(|e| e.len() >= 10),
        "{entries}"
    );
    let (status, _) = get(format!("/cases/{case}"), "AUDITOR").await;
    assert_eq!(status, 404, "auditors read no case");
    // The administrator manages memberships and reads no case.
    let (status, members) = get("/members".into(), "ADMIN").await;
    assert_eq!(status, 200, "{members}");
    assert_eq!(members.as_array().map_or(0, Vec::len), 8, "{members}");
    let (status, _) = get(format!("/cases/{case}"), "ADMIN").await;
    assert_eq!(status, 404, "administrators read no case");

    // The last past session was held: attendance, a corrected decision, approved minutes that
    // a city member reads without any psychiatry text and the coordinator gets as a PDF.
    let minutes_session = env["MINUTES_SESSION"].clone();
    let (status, m) = get(
        format!("/sessions/{minutes_session}/minutes"),
        "MEMBER_CCAS",
    )
    .await;
    assert_eq!(status, 200, "{m}");
    assert_eq!(m["state"], "approved", "{m}");
    assert!(
        m["attendance"].as_array().is_some_and(|a| a.len() >= 4),
        "{m}"
    );
    let decided = m["items"].as_array().expect("items");
    assert!(
        !decided.is_empty() && decided.iter().all(|i| i["decision"].is_object()),
        "{m}"
    );
    assert!(
        decided.iter().any(|i| i["decision"]["version"] == 2),
        "a corrected decision: {m}"
    );
    assert!(
        decided
            .iter()
            .all(|i| i["decision"]["text"]["audience"] != "psychiatry"),
        "{m}"
    );
    let (status, versions) = get(
        format!("/sessions/{minutes_session}/decisions"),
        "COORDINATOR",
    )
    .await;
    assert_eq!(status, 200, "{versions}");
    assert!(
        versions
            .as_array()
            .is_some_and(|v| v.iter().any(|d| d["current"] == false))
    );
    let pdf = client
        .get(format!("{api}/sessions/{minutes_session}/minutes"))
        .bearer_auth(env["COORDINATOR"].clone())
        .header("Accept", "application/pdf")
        .send()
        .await
        .expect("send");
    assert_eq!(pdf.status().as_u16(), 200);
    assert!(pdf.bytes().await.expect("pdf").starts_with(b"%PDF-"));
    let (status, due) = get("/follow-ups".into(), "MEMBER_CCAS").await;
    assert_eq!(status, 200, "{due}");

    // A second run is refused, one line, exit 1, and adds nothing.
    let again = run(cellule(dir.path()).args(base).arg("demo"));
    assert_one_line_failure(&again, 1, "cellule demo already exists");
    assert!(stdout(&again).is_empty());
    let (_, all) = get("/cases?limit=200".into(), "COORDINATOR").await;
    assert_eq!(all["items"].as_array().map_or(0, Vec::len), 40);
    child.kill().expect("kill serve");
    child.wait().expect("wait serve");
}

/// The demo's story holds whatever the day: session days (before, during and after the
/// meeting), the days just after one, public holidays that move a session, DST changes, the turn
/// of the year. Several demo cellules in one database, each on its own clock.
async fn demo_holds_on_any_day(backend: Backend) {
    use cellule::domain::case::CaseStatus;
    let dir = crate::helpers::private_tempdir();
    let (url, _pg) = database(backend, dir.path()).await;
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir.path().join("data"))
            .expect("data dir");
    }
    let mut config = cellule::config::Config {
        data_dir: dir.path().join("data"),
        ..cellule::config::Config::default()
    };
    config.database = Some(cellule::config::DatabaseUrl::new(url));
    let days = [
        ("aaa", "2026-05-21T10:00:00Z"), // a session moved from Ascension (May 14), before it starts
        ("bbb", "2026-05-22T09:00:00Z"), // the day after that session
        ("ccc", "2026-06-12T09:00:00Z"), // the day after a session
        ("ddd", "2026-03-30T08:00:00Z"), // just after the spring DST change
        ("eee", "2026-10-26T08:00:00Z"), // just after the autumn DST change
        ("fff", "2027-11-12T09:00:00Z"), // the 2nd Thursday was 11 November: moved to the 18th
        ("ggg", "2027-01-01T00:30:00Z"), // new year
        ("hhh", "2026-12-10T13:30:00Z"), // during a session (14:00 Paris is 13:00Z)
    ];
    for (slug, at) in days {
        let now: chrono::DateTime<chrono::Utc> = at.parse().expect("instant");
        let slug = cellule::domain::CelluleSlug::parse(slug).expect("slug");
        let s = cellule::cli::demo::set_up(&config, &slug, now)
            .await
            .unwrap_or_else(|e| panic!("{at}: {}", e.message));
        let total: usize = s.counts.iter().map(|(_, n)| n).sum();
        assert_eq!(total, 40, "{at}: {:?}", s.counts);
        assert_eq!(s.counts.len(), CaseStatus::ALL.len());
        for (status, n) in &s.counts {
            assert!(*n >= 1, "{at}: no case {}: {:?}", status.as_str(), s.counts);
        }
        assert_eq!(s.past.len(), 2, "{at}");
        for (day, items, _) in &s.past {
            assert!(*items >= 5, "{at}: {day} had {items} items");
            assert!(day.as_str() < at, "{at}: {day}");
        }
        // The next session is an extra one the same day, so that its meeting can be run at once.
        assert!(s.next.starts_at > now, "{at}: next {}", s.next.local_start);
        let paris_day = now.with_timezone(&chrono_tz::Europe::Paris).date_naive();
        assert!(
            s.next.local_start.starts_with(&paris_day.to_string()),
            "{at}: next {}",
            s.next.local_start
        );
        assert!(
            s.next.occurrence_key.is_none(),
            "{at}: not an extra session"
        );
        assert!(!s.next_items.is_empty(), "{at}");
        assert!(s.duplicate.is_some(), "{at}");
        assert!(s.notes > 0, "{at}");
        if slug.as_str() == "fff" {
            let db = cellule::app::open_database(&config, false)
                .await
                .expect("database");
            let planned = db
                .list_sessions(slug.as_str(), None, None)
                .await
                .expect("sessions");
            assert!(
                planned
                    .iter()
                    .any(|p| p.local_start.starts_with("2027-11-18T14:00:00+01:00")),
                "the session of 11 November moved to the 18th"
            );
        }
    }
    let again = cellule::cli::demo::set_up(
        &config,
        &cellule::domain::CelluleSlug::parse("aaa").expect("slug"),
        chrono::Utc::now(),
    )
    .await
    .expect_err("the demo cellule exists");
    assert_eq!(again.code, 1);
    assert!(
        again.message.contains("already exists"),
        "{}",
        again.message
    );
}

backend_tests!(
    demo_holds_on_any_day,
    cellule_and_member_commands,
    serve_logs_rejections_without_tokens_and_stops_on_sigterm,
    routing_export_import_round_trip,
    routing_import_refuses_bad_files,
    demo_sets_up_a_cellule_the_printed_tokens_work_on
);
