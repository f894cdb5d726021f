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
use serde_json::Value;

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
    let dir = tempfile::tempdir().expect("tempdir");
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
    let dir = tempfile::tempdir().expect("tempdir");
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
    let dir = tempfile::tempdir().expect("tempdir");
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
    let dir = tempfile::tempdir().expect("tempdir");
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
}

/// A served instance: JSON logs, attacks rejected and logged without tokens, SIGTERM honoured.
async fn serve_logs_rejections_without_tokens_and_stops_on_sigterm(backend: Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
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
        serde_json::json!({"slug": "perpignan", "name": "CLSM"}),
    )
    .await
    .expect("send");
    assert_eq!(a.status(), 201);
    let a = client
        .put(format!("http://{addr}/v1/cellules/perpignan/members/ref-1"))
        .bearer_auth(&admin_token)
        .json(&serde_json::json!({"role": "referrer", "organisation": "CCAS"}))
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
    body["identity"] = serde_json::json!({"last_name": "Logcanarynamey2", "first_name": "Zoe", "birth_date": "1990-02-03"});
    let a = post("/v1/cellules/perpignan/referrals", &ref_token, body)
        .await
        .expect("send");
    assert_eq!(a.status(), 201);
    let mut guarded = crate::helpers::referral("Rappeler au 06 12 34 56 78 svp.");
    guarded["identity"] = serde_json::json!({"last_name": "Logcanarynamey2", "first_name": "Zoe", "birth_date": "1990-02-03"});
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

backend_tests!(
    cellule_and_member_commands,
    serve_logs_rejections_without_tokens_and_stops_on_sigterm
);
