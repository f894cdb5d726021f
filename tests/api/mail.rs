//! Delivery of the outbox (docs/notifications.md, "Delivery"): a real SMTP server (Python's
//! aiosmtpd, `tests/mail/smtp_server.py`) started here, the `file` and `none` transports, the
//! server down for a while, two replicas on one database, the audit entries of sends.
//!
//! The SMTP server runs with the Python of `.ci/venv` (created by `.ci/run`) or
//! `$CELLULE_TEST_PYTHON`; without aiosmtpd these tests fail, they never skip.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cellule::config::{Config, MailTransport, SmtpSecurity};
use cellule::storage::outbox::{MessageStatus, NewMessage, OUTCOME_UNKNOWN, OutboxEntry};
use serde_json::json;

use crate::backend_tests;
use crate::cli::{cellule, run, stderr, stdout};
use crate::helpers::{Backend, Options, TestApp, spawn_app_with};

backend_tests!(
    a_published_agenda_mails_each_invitation_without_content,
    smtp_delivers_each_message_once_with_its_audit_entry,
    smtp_down_loses_nothing_and_sends_each_once_when_back,
    two_replicas_send_each_message_once,
    file_transport_writes_one_eml_per_message,
    none_keeps_messages_pending_and_the_cli_lists_them,
    failed_messages_stay_failed_until_retried,
);

const CELLULE: &str = "perpignan";

/// The Python that runs the test SMTP server; panics with how to install it when aiosmtpd is
/// missing.
fn python() -> PathBuf {
    let python = std::env::var_os("CELLULE_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/venv/bin/python"));
    let ok = Command::new(&python)
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "the mail tests need Python's aiosmtpd at {}: run `python3 -m venv .ci/venv && .ci/venv/bin/pip install -r .ci/requirements.txt` (or set CELLULE_TEST_PYTHON to a Python that has it)",
        python.display()
    );
    python
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A real SMTP server on a loopback port, saving each message it accepts to a folder.
struct SmtpServer {
    child: Child,
    dir: tempfile::TempDir,
}

impl SmtpServer {
    async fn start(port: u16) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mail/smtp_server.py");
        let child = Command::new(python())
            .arg(script)
            .arg(port.to_string())
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start the SMTP server");
        // Dropped (killed and waited for) on every path from here.
        let server = Self { child, dir };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the test SMTP server did not listen on {port}");
    }

    /// Every message received so far, raw.
    fn received(&self) -> Vec<Vec<u8>> {
        eml_files(self.dir.path())
            .into_iter()
            .map(|p| std::fs::read(p).expect("read message"))
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn eml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    files.sort();
    files
}

/// The settings of an SMTP transport to the test server on `port`.
fn smtp_to(port: u16) -> impl FnOnce(&mut Config) + Send + 'static {
    move |c: &mut Config| {
        c.mail.transport = MailTransport::Smtp;
        c.mail.from = Some("Cellule de Perpignan <cellule@perpignan.example.fr>".into());
        c.mail.smtp.host = Some("127.0.0.1".into());
        c.mail.smtp.port = Some(port);
        c.mail.smtp.security = SmtpSecurity::None;
        c.mail.smtp.timeout = Duration::from_secs(5);
        c.mail.poll_interval = Duration::from_millis(100);
    }
}

async fn app_with(
    backend: Backend,
    customize: impl FnOnce(&mut Config) + Send + 'static,
) -> TestApp {
    let app = spawn_app_with(
        backend,
        Options {
            customize: Box::new(customize),
            ..Options::default()
        },
    )
    .await;
    app.create_cellule(CELLULE).await;
    app
}

/// A message as the lead's events write them.
fn message(app: &TestApp, n: usize, refs: &[&str], ics: Option<&str>) -> NewMessage {
    NewMessage {
        id: uuid::Uuid::now_v7().to_string(),
        cellule: CELLULE.into(),
        kind: "invitation".into(),
        recipient_org: format!("CMP {n}"),
        recipient: format!("personne{n}@cmp.example.fr"),
        subject: format!("Séance du 12 mars — message {n}"),
        body_text: format!("Bonjour,\nla séance a lieu le 12 mars (message {n})."),
        body_html: format!("<p>Bonjour, la séance a lieu le <b>12 mars</b> (message {n}).</p>"),
        ics: ics.map(str::to_owned),
        case_refs: refs.iter().map(|r| (*r).to_owned()).collect(),
        created_at: app.state.clock.now(),
    }
}

async fn enqueue(app: &TestApp, messages: &[NewMessage]) {
    app.state
        .db
        .enqueue_messages(messages)
        .await
        .expect("enqueue");
}

async fn outbox(app: &TestApp) -> BTreeMap<String, OutboxEntry> {
    app.state
        .db
        .list_messages(None)
        .await
        .expect("list")
        .into_iter()
        .map(|m| (m.id.clone(), m))
        .collect()
}

/// Waits (up to 60 s) until `done` holds.
async fn wait_for<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..600 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn all_sent(app: &TestApp, n: usize) -> bool {
    let rows = outbox(app).await;
    rows.len() == n && rows.values().all(|m| m.status == "sent")
}

/// The Message-ID of a raw message.
fn message_id(raw: &[u8]) -> String {
    let parsed = mailparse::parse_mail(raw).expect("a MIME message");
    mailparse::MailHeaderMap::get_first_value(parsed.headers.as_slice(), "Message-ID")
        .expect("Message-ID")
}

fn ics(method: &str) -> String {
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//cellule//FR\r\nMETHOD:{method}\r\nBEGIN:VEVENT\r\nUID:seance-1@cellule\r\nDTSTAMP:20250301T090000Z\r\nDTSTART:20250312T130000Z\r\nSUMMARY:Séance\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
}

async fn smtp_delivers_each_message_once_with_its_audit_entry(backend: Backend) {
    let port = free_port();
    let server = SmtpServer::start(port).await;
    let app = spawn_app_with(
        backend,
        Options {
            customize: Box::new(smtp_to(port)),
            ..Options::default()
        },
    )
    .await;
    app.standard_cellule().await;
    let (case_id, case_ref) = app
        .refer_ok(crate::helpers::REF1, "Situation à examiner.")
        .await;
    let (request, cancel) = (ics("REQUEST"), ics("CANCEL"));
    let messages = vec![
        message(&app, 1, &[&case_ref], Some(&request)),
        message(&app, 2, &[], Some(&cancel)),
        message(&app, 3, &[&case_ref, "PER-1999-999"], None),
    ];
    enqueue(&app, &messages).await;
    wait_for("three messages sent", || all_sent(&app, 3)).await;
    // Let the worker run a few more passes: nothing more leaves.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = server.received();
    assert_eq!(received.len(), 3);

    let mut by_id = BTreeMap::new();
    for raw in &received {
        let parsed = mailparse::parse_mail(raw).expect("MIME");
        let id = message_id(raw);
        by_id.insert(id, parsed);
    }
    for (m, method) in messages.iter().zip([Some("REQUEST"), Some("CANCEL"), None]) {
        let parsed = by_id
            .get(&format!("<{}@perpignan.example.fr>", m.id))
            .unwrap_or_else(|| panic!("message {} received", m.id));
        use mailparse::MailHeaderMap;
        assert_eq!(
            parsed.headers.get_first_value("Subject").as_deref(),
            Some(m.subject.as_str())
        );
        assert_eq!(
            parsed.headers.get_first_value("To").as_deref(),
            Some(m.recipient.as_str())
        );
        assert!(
            parsed
                .headers
                .get_first_value("From")
                .is_some_and(|f| f.contains("cellule@perpignan.example.fr"))
        );
        assert_eq!(parsed.ctype.mimetype, "multipart/alternative");
        let part = |mime: &str| parsed.subparts.iter().find(|p| p.ctype.mimetype == mime);
        let text = part("text/plain")
            .expect("text part")
            .get_body()
            .expect("text");
        // Lines end with CRLF on the wire.
        assert_eq!(text.replace("\r\n", "\n").trim_end(), m.body_text);
        let html = part("text/html")
            .expect("HTML part")
            .get_body()
            .expect("html");
        assert_eq!(html.replace("\r\n", "\n").trim_end(), m.body_html);
        match method {
            Some(method) => {
                let cal = part("text/calendar").expect("calendar part");
                assert_eq!(
                    cal.ctype.params.get("method").map(String::as_str),
                    Some(method)
                );
                let body = cal.get_body().expect("calendar");
                assert!(body.contains(&format!("METHOD:{method}")), "{body}");
            }
            None => assert!(part("text/calendar").is_none()),
        }
    }

    // One `send_notification` entry per message, naming the cases, never the address.
    let entries = app
        .state
        .db
        .search_audit(
            CELLULE,
            &cellule::audit::Filter {
                action: Some("send_notification".into()),
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .expect("search");
    assert_eq!(entries.len(), 3);
    for m in &messages {
        let e = entries
            .iter()
            .find(|e| e.target_id.as_deref() == Some(m.id.as_str()))
            .expect("an entry per message");
        assert_eq!(e.actor, "system:outbox");
        assert_eq!(e.target_kind.as_deref(), Some("message"));
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(e.detail.as_deref().expect("detail"))
                .expect("JSON"),
            json!({"kind": "invitation", "recipient_org": m.recipient_org})
        );
        let stored = format!("{e:?}");
        assert!(!stored.contains(&m.recipient), "{stored}");
        assert!(!stored.contains("12 mars"), "{stored}");
    }
    let first = entries
        .iter()
        .find(|e| e.target_id.as_deref() == Some(messages[0].id.as_str()))
        .expect("entry");
    assert_eq!(
        first.cases.as_deref(),
        Some(cellule::audit::cases_text(&[(&case_id, &case_ref)]).as_str())
    );
    let third = entries
        .iter()
        .find(|e| e.target_id.as_deref() == Some(messages[2].id.as_str()))
        .expect("entry");
    assert_eq!(
        third.cases.as_deref(),
        Some(cellule::audit::cases_text(&[(&case_id, &case_ref), ("", "PER-1999-999")]).as_str())
    );
    assert!(
        entries
            .iter()
            .find(|e| e.target_id.as_deref() == Some(messages[1].id.as_str()))
            .is_some_and(|e| e.cases.is_none())
    );
    // The case's access log shows the message naming it.
    let log = app
        .state
        .db
        .case_audit(CELLULE, &case_id, &case_ref)
        .await
        .expect("case audit");
    assert_eq!(
        log.iter()
            .filter(|e| e.action == "send_notification")
            .count(),
        2
    );
    let report = crate::audit::verify_lib(&app).await;
    assert!(report.valid, "{report:?}");
}

async fn smtp_down_loses_nothing_and_sends_each_once_when_back(backend: Backend) {
    let port = free_port();
    let app = app_with(backend, smtp_to(port)).await;
    let messages: Vec<NewMessage> = (0..5).map(|n| message(&app, n, &[], None)).collect();
    enqueue(&app, &messages).await;
    let enqueued_at = app.state.clock.now();
    wait_for("a first failed attempt of each message", || async {
        let rows = outbox(&app).await;
        rows.len() == 5
            && rows
                .values()
                .all(|m| m.attempts == 1 && m.status == "pending")
    })
    .await;
    for m in outbox(&app).await.values() {
        assert_eq!(m.last_error.as_deref(), Some("connection refused"));
        assert!(
            m.next_attempt_at >= enqueued_at + chrono::Duration::seconds(29),
            "{m:?}"
        );
    }
    let server = SmtpServer::start(port).await;
    // Not due yet: nothing is sent before the backoff ran out.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(server.received().is_empty());
    assert!(outbox(&app).await.values().all(|m| m.attempts == 1));

    app.travel_to(app.state.clock.now() + chrono::Duration::minutes(2));
    wait_for("every message sent", || all_sent(&app, 5)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ids: Vec<String> = server.received().iter().map(|r| message_id(r)).collect();
    assert_eq!(ids.len(), 5, "{ids:?}");
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 5, "{ids:?}");
    for m in outbox(&app).await.values() {
        assert!(m.sent_at.is_some());
        assert_eq!(m.attempts, 1, "attempts counts the failed ones");
        assert_eq!(m.last_error, None);
    }
    let report = crate::audit::verify_lib(&app).await;
    assert!(report.valid, "{report:?}");
}

async fn two_replicas_send_each_message_once(backend: Backend) {
    let port = free_port();
    let server = SmtpServer::start(port).await;
    let app = app_with(backend, smtp_to(port)).await;
    // A second server on the same database, data folder and keyring.
    let second =
        cellule::app::Application::build_with_clock(app.config.clone(), app.state.clock.clone())
            .await
            .expect("second replica");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let replica = tokio::spawn(second.run_until(async move {
        let _ = stopped.await;
    }));
    let messages: Vec<NewMessage> = (0..50).map(|n| message(&app, n, &[], None)).collect();
    for chunk in messages.chunks(10) {
        enqueue(&app, chunk).await;
    }
    wait_for("fifty messages sent", || all_sent(&app, 50)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ids: Vec<String> = server.received().iter().map(|r| message_id(r)).collect();
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), 50);
    assert_eq!(ids.len(), 50, "a message was sent twice");
    let _ = stop.send(());
    replica.await.expect("replica task").expect("replica stops");
    let report = crate::audit::verify_lib(&app).await;
    assert!(report.valid, "{report:?}");
}

async fn file_transport_writes_one_eml_per_message(backend: Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("mail");
    let target = out.clone();
    let app = app_with(backend, move |c| {
        c.mail.transport = MailTransport::File;
        c.mail.from = Some("cellule@perpignan.example.fr".into());
        c.mail.dir = Some(target);
        c.mail.poll_interval = Duration::from_millis(100);
    })
    .await;
    let messages: Vec<NewMessage> = (0..3)
        .map(|n| message(&app, n, &[], Some(&ics("REQUEST"))))
        .collect();
    enqueue(&app, &messages).await;
    wait_for("three messages written", || all_sent(&app, 3)).await;
    let files = eml_files(&out);
    assert_eq!(files.len(), 3);
    for m in &messages {
        let raw = std::fs::read(out.join(format!("{}.eml", m.id))).expect("one file per message");
        assert_eq!(message_id(&raw), format!("<{}@perpignan.example.fr>", m.id));
    }
    // Nothing half-written is left behind.
    assert_eq!(std::fs::read_dir(&out).expect("dir").count(), 3);
}

async fn none_keeps_messages_pending_and_the_cli_lists_them(backend: Backend) {
    let app = app_with(backend, |c| {
        c.mail.poll_interval = Duration::from_millis(100)
    })
    .await;
    assert_eq!(app.config.mail.transport, MailTransport::None);
    let messages: Vec<NewMessage> = (0..2).map(|n| message(&app, n, &[], None)).collect();
    enqueue(&app, &messages).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for m in outbox(&app).await.values() {
        assert_eq!((m.status.as_str(), m.attempts), ("pending", 0));
    }
    let cli = |args: &[&str]| {
        let mut cmd = cellule(app.data_dir.path());
        cmd.arg("--data-dir")
            .arg(app.data_dir.path())
            .arg("--database")
            .arg(&app.database_url)
            .arg("outbox")
            .args(args);
        run(&mut cmd)
    };
    let out = cli(&["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 2, "{text}");
    for m in &messages {
        let line = text
            .lines()
            .find(|l| l.starts_with(&m.id))
            .expect("a line per message");
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(
            fields[2..],
            [
                "pending",
                "0",
                CELLULE,
                "invitation",
                &m.recipient_org,
                &m.recipient,
                "-"
            ]
        );
        assert!(
            !line.contains("Séance") && !line.contains("Bonjour"),
            "{line}"
        );
    }
    let out = cli(&["list", "--status", "sent"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    let out = cli(&["list", "--status", "lost"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    // Only failed messages are retried.
    let out = cli(&["retry", &messages[0].id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("error: no failed message"),
        "{}",
        stderr(&out)
    );
}

/// Attempts run out, a claim that outlived its worker is "outcome unknown", and the operator
/// puts them back with `cellule outbox retry` (`--force` for the unknown one).
async fn failed_messages_stay_failed_until_retried(backend: Backend) {
    let port = free_port();
    let app = app_with(backend, move |c| {
        smtp_to(port)(c);
        c.mail.max_attempts = 2;
    })
    .await;
    let exhausted = message(&app, 1, &[], None);
    enqueue(&app, std::slice::from_ref(&exhausted)).await;
    wait_for("a first attempt", || async {
        outbox(&app).await.values().all(|m| m.attempts == 1)
    })
    .await;
    app.travel_to(app.state.clock.now() + chrono::Duration::minutes(1));
    wait_for("attempts exhausted", || async {
        outbox(&app).await.values().all(|m| m.status == "failed")
    })
    .await;
    let row = outbox(&app).await.remove(&exhausted.id).expect("row");
    assert_eq!(
        (row.attempts, row.last_error.as_deref()),
        (2, Some("connection refused"))
    );

    // A worker that claimed a message and died: once its claim runs out, the message is left
    // failed, never sent again.
    let db = app.state.db.clone();
    let interrupted = message(&app, 2, &[], None);
    // Far in the future: only this test's claim can take it.
    let mut later = interrupted.clone();
    later.created_at = app.state.clock.now() + chrono::Duration::days(30);
    enqueue(&app, std::slice::from_ref(&later)).await;
    let at = later.created_at;
    let claimed = db
        .claim_messages(at, at + chrono::Duration::seconds(1), 10)
        .await
        .expect("claim");
    assert_eq!(
        claimed.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        [later.id.as_str()]
    );
    assert!(
        db.claim_messages(at, at + chrono::Duration::seconds(1), 10)
            .await
            .expect("claim")
            .is_empty(),
        "a claimed message is not claimed twice"
    );
    assert_eq!(
        db.expire_claims(at + chrono::Duration::seconds(2))
            .await
            .expect("expire"),
        1
    );
    let row = outbox(&app).await.remove(&later.id).expect("row");
    assert_eq!(
        (row.status.as_str(), row.last_error.as_deref()),
        ("failed", Some(OUTCOME_UNKNOWN))
    );
    assert_eq!(
        db.list_messages(Some(MessageStatus::Failed))
            .await
            .expect("list")
            .len(),
        2
    );

    let server = SmtpServer::start(port).await;
    let cli = |args: &[&str]| {
        let mut cmd = cellule(app.data_dir.path());
        cmd.arg("--data-dir")
            .arg(app.data_dir.path())
            .arg("--database")
            .arg(&app.database_url)
            .arg("outbox")
            .args(args);
        run(&mut cmd)
    };
    let out = cli(&["retry", &later.id]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    let out = cli(&["retry", &exhausted.id]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for("the retried message sent", || async {
        outbox(&app)
            .await
            .get(&exhausted.id)
            .is_some_and(|m| m.status == "sent")
    })
    .await;
    assert_eq!(server.received().len(), 1);
    let row = outbox(&app).await.remove(&later.id).expect("row");
    assert_eq!(row.status, "failed", "never resent without the operator");
    let out = cli(&["list", "--status", "failed"]);
    assert!(stdout(&out).contains(OUTCOME_UNKNOWN), "{}", stdout(&out));
}

/// `security = "none"` towards a host that is not this machine stops start-up with one line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_without_tls_to_another_host_is_refused_at_start() {
    let dir = crate::helpers::private_tempdir();
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        bind: "127.0.0.1:0".parse().expect("addr"),
        mail: cellule::config::MailConfig {
            transport: MailTransport::Smtp,
            from: Some("cellule@example.fr".into()),
            smtp: cellule::config::SmtpConfig {
                host: Some("mail.example.fr".into()),
                security: SmtpSecurity::None,
                ..Default::default()
            },
            ..Default::default()
        },
        ..Config::default()
    };
    let e = match cellule::app::Application::build(config).await {
        Ok(_) => panic!("refused"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("loopback") && e.contains("mail.example.fr"),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1);

    // The binary: exit 2, one line, whatever the command.
    let mut cmd = cellule(dir.path());
    cmd.args(["--data-dir"])
        .arg(dir.path())
        .args(["outbox", "list"])
        .env("CELLULE_MAIL__TRANSPORT", "smtp")
        .env("CELLULE_MAIL__FROM", "cellule@example.fr")
        .env("CELLULE_MAIL__SMTP__HOST", "mail.example.fr")
        .env("CELLULE_MAIL__SMTP__SECURITY", "none")
        .env("CELLULE_MAIL__SMTP__USERNAME", "12345")
        .env("CELLULE_MAIL__SMTP__PASSWORD", "007");
    let out = run(&mut cmd);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("loopback"), "{err}");
    assert!(!err.contains("007"), "{err}");
    // Loopback without TLS is accepted (the tests' own server), as are credentials that look
    // like numbers.
    let mut cmd = cellule(dir.path());
    cmd.args(["--data-dir"])
        .arg(dir.path())
        .args(["outbox", "list"])
        .env("CELLULE_MAIL__TRANSPORT", "smtp")
        .env("CELLULE_MAIL__FROM", "cellule@example.fr")
        .env("CELLULE_MAIL__SMTP__HOST", "127.0.0.1")
        .env("CELLULE_MAIL__SMTP__SECURITY", "none")
        .env("CELLULE_MAIL__SMTP__USERNAME", "12345")
        .env("CELLULE_MAIL__SMTP__PASSWORD", "007");
    let out = run(&mut cmd);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// The whole way: an agenda published through the API, its invitations delivered to a real SMTP
/// server, each one's calendar part read back by an independent parser with only the references
/// its recipient may see, and the canary planted in every text of the cases in none of them.
async fn a_published_agenda_mails_each_invitation_without_content(backend: Backend) {
    use crate::notices::{CANARY, address, canary_case, ics_refs};
    let port = free_port();
    let server = SmtpServer::start(port).await;
    let app = spawn_app_with(
        backend,
        Options {
            customize: Box::new(smtp_to(port)),
            ..Options::default()
        },
    )
    .await;
    crate::notices::cellule_with_addresses(&app).await;
    let (_, care_ref) = canary_case(&app, json!(["care_access"]), "66G03").await;
    let (_, housing_ref) = canary_case(&app, json!(["housing"]), "66G01").await;
    let sid = crate::sessions::ad_hoc(&app, "2030-12-12T14:00:00+01:00").await;
    for step in ["agenda/build", "agenda/publish"] {
        let a = app
            .request(
                reqwest::Method::POST,
                &format!("/v1/cellules/{CELLULE}/sessions/{sid}/{step}"),
                Some(&app.token(crate::helpers::COORD)),
                None,
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
    }
    // Two referral notices (the acceptances) and four invitations.
    wait_for("every message sent", || all_sent(&app, 6)).await;
    let received = server.received();
    assert_eq!(received.len(), 6);
    let mut invited = Vec::new();
    for raw in &received {
        let text = String::from_utf8_lossy(raw);
        assert!(!text.contains(CANARY), "{text}");
        let parsed = mailparse::parse_mail(raw).expect("a MIME message");
        let to =
            mailparse::MailHeaderMap::get_first_value(parsed.headers.as_slice(), "To").expect("To");
        let calendar = parsed
            .subparts
            .iter()
            .flat_map(|p| std::iter::once(p).chain(p.subparts.iter()))
            .find(|p| p.ctype.mimetype == "text/calendar");
        let Some(calendar) = calendar else {
            continue;
        };
        let ics = calendar.get_body().expect("calendar body");
        assert!(ics.contains("METHOD:REQUEST"), "{ics}");
        let refs = ics_refs(&ics);
        assert!(refs.contains(&care_ref), "{refs}");
        let guest = to.contains(&address(crate::helpers::GUEST));
        assert_eq!(refs.contains(&housing_ref), !guest, "{to}: {refs}");
        invited.push(to);
    }
    assert_eq!(
        invited.len(),
        4,
        "one invitation per invited member: {invited:?}"
    );
}
