//! The real paths under concurrent HTTP load, next to the baselines that bound them, measured in
//! one run. Run with `cargo bench --bench load` (`-- --quick` for tiny sizes and short
//! durations; add `CELLULE_BENCH_POSTGRES_URL=postgres://…` for PostgreSQL: a throw-away
//! database is created on that server per dataset and dropped at the end).
//!
//! For each backend and each dataset size (1,000 and 100,000 cases; `--quick`: 200 and 2,000;
//! `--sizes SMALL,LARGE` to choose; `--concurrency N`, `--duration SECONDS` per path (6; `--quick`:
//! 1), measured in `--rounds N` (3; `--quick`: 1) of `SECONDS / N` each; `--only NAME`
//! runs only the HTTP paths whose name contains NAME (or one of `A,B,…`), to profile one; `--backend sqlite|postgres`
//! runs one backend, whose RSS figures then do not start from what another left resident):
//!
//! 1. The real application (`Application::build`: migrations, keyring, dev token issuer, the
//!    real axum router) is started on a loopback TCP port, in this process.
//! 2. The dataset is seeded through the library's storage functions (`Database::insert_case`,
//!    `insert_note`, `transition_case`, `append_audit`) with real per-case data keys, real
//!    AES-256-GCM ciphertexts and real audit chains: no row is written around the service's
//!    storage layer. Every case has one note, 1 in 10 is accepted (eligible for the agenda), a
//!    hot set of cases has 20 notes each. Members and the charter go through the admin HTTP API.
//! 3. A fixed number of in-flight requests (`--concurrency`, default 16) over a `reqwest`
//!    client with real dev-issuer tokens drive, each for a fixed duration after a warm-up, in
//!    rounds (every path in turn, round after round, so that a path and its baseline meet the
//!    same moods of a shared machine; each ratio's lowest and highest round is reported):
//!    referral submission, case read (decrypted), notes list (20 notes decrypted), and the
//!    static-JSON baseline: a tiny router behind the same caller extractor and entry into the
//!    cellule (token verification + membership lookup) and the same middleware, answering the bytes of a real
//!    case read. The raw-insert baseline runs with the same concurrency through `sqlx` on the
//!    same database: one parameterised insert of a row as large as a case row, committed.
//! 4. The agenda build (`POST …/agenda/build`) over the accepted cases (10,000 in the large
//!    dataset) runs sequentially: it is a coordinator's action, not a crowd's. The first builds
//!    of the next sessions, one after the other as month after month (3, `--first-builds N`;
//!    `--quick`: 1; every deferral new to its session, its set stored; a later session's pool
//!    is the cases not on an earlier agenda), are reported apart from the rebuilds of the last
//!    one (5; `--quick`: 1), each timed until its whole answer is in. Each session is then
//!    published (timed too: publication counts the session's deferrals), so that the next
//!    build orders by those counts.
//! 5. The coordinator's web pages (issue 38: under 50 ms and 100 KB) are loaded one after the
//!    other by a client signed in through the development sign-in page, each next to the API
//!    call it wraps (20 times, `--quick`: 2, after an untimed pass): the last session's page
//!    (its agenda, whose deferrals are all the eligible cases left), a case with 20 notes, the
//!    year's sessions, the case list's first page, the year's statistics (over every case);
//!    each page's size is reported with its times.
//! 6. With the large dataset, a separate cellule's chain is grown to 1,000,000 entries
//!    (`--quick`: 20,000) and verified through `GET …/audit/verify`, next to raw `ring` SHA-256
//!    over exactly the bytes the chain hashes (read back from the database).
//!
//! Raw `ring` AES-256-GCM over the same bytes as each path's ciphertexts gives the crypto floor
//! of each request. Peak RSS is this process's `VmHWM` (server and load client together), reset
//! through `/proc/self/clear_refs` before each phase. Prints a table and writes
//! `target/bench/load.json`; asserts nothing about speed (only correctness: statuses, counts,
//! a valid chain).

use std::error::Error;
use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::http::header::CONTENT_TYPE;
use bytes::Bytes;
use cellule::app::Application;
use cellule::audit::{Action, Actor, AuditCtx, Draft};
use cellule::auth::DevIssuer;
use cellule::config::{Config, DatabaseUrl, PoolConfig};
use cellule::crypto::envelope::FieldContext;
use cellule::domain::case::{AgeBand, Audience, CaseStatus, ConsentStatus, Gender, Needs, Urgency};
use cellule::domain::{Role, Sphere, Subject};
use cellule::services::AppState;
use cellule::services::access::{self, Caller};
use cellule::services::keys::KeyService;
use cellule::storage::{Database, NewCase, NoteRecord, Transition};
use chrono::{Datelike, Utc};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::digest::{SHA256, digest};
use serde_json::{Value, json};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};
use tokio::sync::oneshot;

mod common;

use common::{Res, create_pg_database, drop_pg_database, machine};

const CELLULE: &str = "bench";
const LEDGER: &str = "ledger";
const ADMIN: &str = "bench-admin";
const COORD: &str = "bench-coord";
const AUDITOR: &str = "bench-dpo";
const COORD_ORG: &str = "CLSM Bench";
/// The chain's domain tag, prefixed to every hashed entry.
const DOMAIN: &[u8] = b"cellule-audit-v1";
const NOTES_PER_HOT_CASE: usize = 20;
const AUDIT_BATCH: usize = 2000;

/// About 600 characters of free text with no direct identifier (the guard would refuse it).
const SITUATION: &str = "Personne isolée, en rupture de soins depuis plusieurs mois. Le bailleur \
signale des impayés de loyer et des conflits de voisinage répétés; la personne refuse les visites \
à domicile mais accepte un contact avec l'infirmière de secteur. Pas de suivi social connu, droits \
à renouveler, alimentation irrégulière. Le médiateur municipal a été sollicité par les voisins à \
plusieurs reprises. Une hospitalisation ancienne est mentionnée par la famille, sans suivi depuis. \
La situation se dégrade depuis l'été: courriers non ouverts, compteur coupé, isolement croissant. \
Demande d'appui pour une évaluation partagée et une orientation coordonnée.";
const EXPECTATIONS: &str = "Coordonner une visite conjointe du secteur et du CCAS, vérifier les \
droits et prévenir l'expulsion; désigner un interlocuteur unique pour la famille.";
const NOTE: &str = "Point de situation après la visite conjointe: accueil réservé mais dialogue \
possible, rendez-vous proposé au centre médico-psychologique, dossier de droits à compléter avec \
l'assistante sociale, le bailleur accepte de suspendre la procédure un mois. À revoir à la \
prochaine séance avec les éléments du secteur et du CCAS.";

// ---------------------------------------------------------------------------------------------
// Options

struct Options {
    quick: bool,
    sizes: [usize; 2],
    warmup: Duration,
    /// Measured time of each path, over all its rounds.
    duration: Duration,
    /// Rounds: every path (and its baseline) is measured in turn, round after round, each
    /// round taking `duration / rounds`, so that a path and its baseline share the machine's
    /// moods; the ratio's spread across rounds is reported.
    rounds: usize,
    concurrency: usize,
    hot_cases: usize,
    /// Sessions whose first build is timed (every deferral new), one after the other.
    first_builds: usize,
    /// Rebuilds of the last of them (the same deferrals: nothing to count again).
    rebuilds: usize,
    audit_entries: usize,
    verify_reps: usize,
    /// Timed loads of each web page (and of its API call).
    page_reps: usize,
    postgres: Option<String>,
    /// Run one backend only (`--backend sqlite|postgres`): a second backend in the same process
    /// starts with the memory the first left resident, which inflates its RSS figures.
    backend: Option<String>,
    /// Only the HTTP paths whose name contains this (for profiling one path).
    only: Option<String>,
}

fn options() -> Options {
    let mut quick = false;
    let mut concurrency = 16;
    let mut duration: Option<f64> = None;
    let mut sizes: Option<[usize; 2]> = None;
    let mut audit: Option<usize> = None;
    let mut only: Option<String> = None;
    let mut first_builds: Option<usize> = None;
    let mut backend: Option<String> = None;
    let mut rounds: Option<usize> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--concurrency" => {
                concurrency = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--concurrency N")
            }
            "--duration" => {
                duration = Some(
                    args.next()
                        .and_then(|v| v.parse().ok())
                        .expect("--duration SECONDS"),
                )
            }
            "--sizes" => {
                let v: Vec<usize> = args
                    .next()
                    .expect("--sizes SMALL,LARGE")
                    .split(',')
                    .map(|n| n.replace('_', "").parse().expect("--sizes SMALL,LARGE"))
                    .collect();
                let [small, large] = v[..] else {
                    panic!("--sizes SMALL,LARGE: two sizes, not {}", v.len());
                };
                sizes = Some([small, large]);
            }
            "--audit-entries" => {
                audit = Some(
                    args.next()
                        .and_then(|v| v.replace('_', "").parse().ok())
                        .expect("--audit-entries N"),
                )
            }
            "--only" => only = Some(args.next().expect("--only PATH-NAME-PART")),
            "--rounds" => {
                rounds = Some(
                    args.next()
                        .and_then(|v| v.parse().ok())
                        .filter(|n| (1..=20).contains(n))
                        .expect("--rounds N (1-20)"),
                )
            }
            "--first-builds" => {
                first_builds = Some(
                    args.next()
                        .and_then(|v| v.parse().ok())
                        .filter(|n| (1..=35).contains(n))
                        .expect("--first-builds N (1-35)"),
                )
            }
            "--backend" => {
                let b = args.next().expect("--backend sqlite|postgres");
                assert!(
                    b == "sqlite" || b == "postgres",
                    "--backend sqlite|postgres, not {b}"
                );
                backend = Some(b);
            }
            // Anything else (cargo passes `--bench`) is ignored.
            _ => {}
        }
    }
    let postgres = std::env::var("CELLULE_BENCH_POSTGRES_URL")
        .ok()
        .filter(|u| !u.trim().is_empty());
    let mut o = if quick {
        Options {
            quick,
            sizes: [200, 2_000],
            warmup: Duration::from_millis(200),
            duration: Duration::from_secs_f64(duration.unwrap_or(1.0)),
            rounds: 1,
            concurrency,
            hot_cases: 10,
            first_builds: 1,
            rebuilds: 1,
            audit_entries: 20_000,
            verify_reps: 1,
            page_reps: 2,
            postgres,
            only,
            backend,
        }
    } else {
        Options {
            quick,
            sizes: [1_000, 100_000],
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs_f64(duration.unwrap_or(6.0)),
            rounds: 3,
            concurrency,
            hot_cases: 200,
            first_builds: 3,
            rebuilds: 5,
            audit_entries: 1_000_000,
            verify_reps: 3,
            page_reps: 20,
            postgres,
            only,
            backend,
        }
    };
    if let Some(s) = sizes {
        o.sizes = s;
    }
    if let Some(n) = first_builds {
        o.first_builds = n;
    }
    if let Some(n) = audit {
        o.audit_entries = n;
    }
    if let Some(n) = rounds {
        o.rounds = n;
    }
    o
}

// ---------------------------------------------------------------------------------------------
// Measuring

/// Microseconds, sorted.
#[derive(Default)]
struct Latencies(Vec<f64>);

impl Latencies {
    fn new(mut us: Vec<f64>) -> Self {
        us.sort_by(f64::total_cmp);
        Latencies(us)
    }
    /// Nearest-rank percentile, in milliseconds.
    fn ms(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * self.0.len() as f64).ceil() as usize;
        self.0[rank.clamp(1, self.0.len()) - 1] / 1000.0
    }
}

#[derive(Default)]
struct Measure {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    secs: f64,
    lat: Latencies,
    /// Throughput of each round, in order.
    rounds: Vec<f64>,
}

impl Measure {
    fn rps(&self) -> f64 {
        self.ok as f64 / self.secs
    }
    /// The rounds of one path as one measure: requests and seconds summed, latencies pooled.
    fn merge(rounds: Vec<Measure>) -> Measure {
        let mut all = Measure::default();
        let mut lat = Vec::new();
        for m in rounds {
            all.rounds.push(m.rps());
            all.ok += m.ok;
            all.errors += m.errors;
            all.secs += m.secs;
            if all.first_error.is_none() {
                all.first_error = m.first_error;
            }
            lat.extend(m.lat.0);
        }
        all.lat = Latencies::new(lat);
        all
    }
    fn json(&self) -> Value {
        json!({
            "requests": self.ok,
            "errors": self.errors,
            "seconds": self.secs,
            "per_s": self.rps(),
            "p50_ms": self.lat.ms(50.0),
            "p99_ms": self.lat.ms(99.0),
            "per_s_by_round": self.rounds,
        })
    }
}

type Fut = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
type Job = Arc<dyn Fn(u64) -> Fut + Send + Sync>;

/// `concurrency` loops, each issuing one request after the other, for warm-up + duration;
/// requests started after the warm-up are counted, until the last of them completes.
async fn drive(concurrency: usize, warmup: Duration, duration: Duration, job: Job) -> Measure {
    let counter = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let from = start + warmup;
    let end = from + duration;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (job, counter) = (job.clone(), counter.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let (mut ok, mut errors, mut first_error) = (0u64, 0u64, None);
            let mut last = from;
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let i = counter.fetch_add(1, Ordering::Relaxed);
                let outcome = job(i).await;
                let t1 = Instant::now();
                if t0 < from {
                    // A failure in the warm-up counts as one (no latency, no throughput).
                    if let Err(e) = outcome {
                        errors += 1;
                        first_error.get_or_insert(e);
                    }
                    continue;
                }
                last = last.max(t1);
                match outcome {
                    Ok(()) => {
                        ok += 1;
                        lat.push((t1 - t0).as_secs_f64() * 1e6);
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                    }
                }
            }
            (lat, ok, errors, first_error, last)
        }));
    }
    let mut m = Measure::default();
    let mut all = Vec::new();
    let mut last = from;
    for t in tasks {
        let (lat, ok, errors, first_error, l) = t.await.expect("load task panicked");
        all.extend(lat);
        m.ok += ok;
        m.errors += errors;
        if m.first_error.is_none() {
            m.first_error = first_error;
        }
        last = last.max(l);
    }
    m.secs = (last - from).as_secs_f64().max(1e-9);
    m.lat = Latencies::new(all);
    m
}

/// Peak resident set of this process since the last reset, in MiB.
fn peak_rss_mib() -> f64 {
    status_kib("VmHWM:") / 1024.0
}

fn status_kib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .unwrap_or(f64::NAN)
}

unsafe extern "C" {
    /// glibc: gives freed heap memory back to the system.
    fn malloc_trim(pad: usize) -> i32;
}

/// Gives memory freed by earlier phases (seeding, previous datasets) back to the system, then
/// resets `VmHWM` to the current RSS (Linux ≥ 4.0). Returns the RSS at the reset in MiB, `None`
/// when the peak cannot be reset.
fn reset_peak_rss() -> Option<f64> {
    // SAFETY: malloc_trim only releases free pages of the allocator's arenas.
    unsafe {
        malloc_trim(0);
    }
    std::fs::write("/proc/self/clear_refs", b"5")
        .is_ok()
        .then(|| status_kib("VmRSS:") / 1024.0)
}

// ---------------------------------------------------------------------------------------------
// Raw baselines: ring and sqlx alone

/// Microseconds to open (or seal) ciphertexts of these sizes once each with a prepared key:
/// the AES-256-GCM floor of one request. Median of 5 runs of `iters` requests.
fn raw_aes_us(sizes: &[usize], seal: bool, iters: usize) -> f64 {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).expect("AES key"));
    let nonce = |n: u64| {
        let mut b = [0u8; 12];
        b[4..].copy_from_slice(&n.to_be_bytes());
        Nonce::assume_unique_for_key(b)
    };
    let sealed: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let mut buf = vec![0x41u8; n];
            key.seal_in_place_append_tag(nonce(i as u64), Aad::from(b"aad"), &mut buf)
                .expect("seal");
            buf
        })
        .collect();
    let mut runs = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let mut counter = 0u64;
        for _ in 0..iters {
            for (i, c) in sealed.iter().enumerate() {
                let mut buf = c.clone();
                if seal {
                    buf.truncate(buf.len() - 16);
                    counter += 1;
                    key.seal_in_place_append_tag(nonce(counter), Aad::from(b"aad"), &mut buf)
                        .expect("seal");
                } else {
                    key.open_in_place(nonce(i as u64), Aad::from(b"aad"), &mut buf)
                        .expect("open");
                }
                black_box(&buf);
            }
        }
        runs.push(t.elapsed().as_secs_f64() * 1e6 / iters as f64);
    }
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}

enum Raw {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// SQLite's `synchronous` for the service and the raw-insert baseline alike: the service's
/// default (`full`), or `CELLULE_BENCH_SQLITE_SYNCHRONOUS=normal|full|extra` to show what
/// durability costs.
fn bench_synchronous() -> Res<cellule::config::SqliteSynchronous> {
    use cellule::config::SqliteSynchronous as S;
    match std::env::var("CELLULE_BENCH_SQLITE_SYNCHRONOUS").as_deref() {
        Err(_) | Ok("full") => Ok(S::Full),
        Ok("normal") => Ok(S::Normal),
        Ok("extra") => Ok(S::Extra),
        Ok(other) => Err(format!("CELLULE_BENCH_SQLITE_SYNCHRONOUS={other}?").into()),
    }
}

impl Raw {
    /// A pool with the service's options (no ping before each use; SQLite: WAL, the service's
    /// `synchronous` level; 10 connections).
    async fn connect(url: &str) -> Res<Raw> {
        let raw = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(match bench_synchronous()? {
                    cellule::config::SqliteSynchronous::Normal => SqliteSynchronous::Normal,
                    cellule::config::SqliteSynchronous::Full => SqliteSynchronous::Full,
                    cellule::config::SqliteSynchronous::Extra => SqliteSynchronous::Extra,
                })
                .foreign_keys(true)
                .pragma("secure_delete", "ON")
                .busy_timeout(Duration::from_secs(5));
            let pool = SqlitePoolOptions::new()
                .test_before_acquire(false)
                .max_connections(10)
                .connect_with(options)
                .await?;
            sqlx::raw_sql(
                "CREATE TABLE IF NOT EXISTS bench_raw (id TEXT PRIMARY KEY, cellule TEXT NOT NULL, \
                 attrs TEXT NOT NULL, body BLOB NOT NULL, created_at TEXT NOT NULL)",
            )
            .execute(&pool)
            .await?;
            Raw::Sqlite(pool)
        } else {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .test_before_acquire(false)
                .max_connections(10)
                .connect(url)
                .await?;
            sqlx::raw_sql(
                "CREATE TABLE IF NOT EXISTS bench_raw (id TEXT PRIMARY KEY, cellule TEXT NOT NULL, \
                 attrs TEXT NOT NULL, body BYTEA NOT NULL, created_at TIMESTAMPTZ NOT NULL)",
            )
            .execute(&pool)
            .await?;
            Raw::Postgres(pool)
        };
        Ok(raw)
    }

    async fn insert(&self, id: String, attrs: &str, body: &[u8]) -> Result<(), sqlx::Error> {
        let now = Utc::now();
        match self {
            Raw::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query(
                    "INSERT INTO bench_raw (id, cellule, attrs, body, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .bind(id)
                .bind(CELLULE)
                .bind(attrs)
                .bind(body)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tx.commit().await
            }
            Raw::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query(
                    "INSERT INTO bench_raw (id, cellule, attrs, body, created_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(id)
                .bind(CELLULE)
                .bind(attrs)
                .bind(body)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tx.commit().await
            }
        }
    }

    async fn close(&self) {
        match self {
            Raw::Sqlite(p) => p.close().await,
            Raw::Postgres(p) => p.close().await,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The server under test

struct Server {
    base: String,
    state: AppState,
    client: reqwest::Client,
    coord: String,
    auditor: String,
    admin: String,
    db_url: String,
    stops: Vec<oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start(db_url: &str) -> Res<Server> {
        let dir = private_tempdir()?;
        // A known port, so that the web application's origin (its sign-in form checks it) is
        // the address the client calls.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            bind: format!("127.0.0.1:{port}").parse()?,
            admins: vec![ADMIN.to_owned()],
            ..Config::default()
        };
        config.web.base_url = Some(url::Url::parse(&format!("http://127.0.0.1:{port}"))?);
        config.database = Some(DatabaseUrl::new(db_url));
        // The bench measures throughput, far past any one caller's budget.
        config.rate_limit.enabled = false;
        config.pool.sqlite_synchronous = bench_synchronous()?;
        let app = Application::build(config.clone()).await?;
        let addr = app.local_addr()?;
        let state = app.state().clone();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            app.run_until(async move {
                let _ = rx.await;
            })
            .await
            .expect("server failed");
        });
        let dev = DevIssuer::load_or_create(dir.path(), &config.auth.dev_issuer)?;
        let mint = |sub: &str| -> Res<String> {
            Ok(dev.mint(
                &Subject::parse(sub).map_err(|e| e.to_string())?,
                Duration::from_secs(6 * 3600),
                Utc::now(),
            )?)
        };
        Ok(Server {
            base: format!("http://{addr}"),
            state,
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(256)
                .build()?,
            coord: mint(COORD)?,
            auditor: mint(AUDITOR)?,
            admin: mint(ADMIN)?,
            db_url: db_url.to_owned(),
            stops: vec![tx],
            tasks: vec![task],
            _dir: dir,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Res<Value> {
        let (text, _) = self.call_timed(method, path, token, body).await?;
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// The body of a successful answer, and the microseconds until it was all received (not
    /// parsed).
    async fn call_timed(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Res<(String, f64)> {
        let t = Instant::now();
        let mut req = self
            .client
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        let us = t.elapsed().as_secs_f64() * 1e6;
        if !status.is_success() {
            // Problem documents carry no case content.
            return Err(format!("{method} {path}: {status} {text}").into());
        }
        Ok((text, us))
    }

    /// A browser-like client (cookies, redirects not followed) signed in to the web
    /// application as the coordinator, through the development sign-in page.
    async fn web_client(&self) -> Res<reqwest::Client> {
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let r = client
            .post(format!("{}/connexion/dev", self.base))
            .header(reqwest::header::ORIGIN, &self.base)
            .form(&[("sujet", COORD), ("suite", "/")])
            .send()
            .await?;
        if r.status() != reqwest::StatusCode::SEE_OTHER {
            return Err(format!("web sign-in: {}", r.status()).into());
        }
        Ok(client)
    }

    /// Cellule `slug` with a coordinator (city sphere, charter accepted) and an auditor.
    async fn cellule(&self, slug: &str) -> Res<()> {
        use reqwest::Method;
        self.call(
            Method::POST,
            "/v1/cellules",
            &self.admin,
            Some(json!({"slug": slug, "name": format!("Cellule {slug}")})),
        )
        .await?;
        for (sub, body) in [
            (
                COORD,
                json!({"role": "coordinator", "sphere": "city", "organisation": COORD_ORG}),
            ),
            (AUDITOR, json!({"role": "auditor"})),
        ] {
            self.call(
                Method::PUT,
                &format!("/v1/cellules/{slug}/members/{sub}"),
                &self.admin,
                Some(body),
            )
            .await?;
        }
        self.call(
            Method::POST,
            &format!("/v1/cellules/{slug}/charter/accept"),
            &self.coord,
            Some(json!({"version": 1})),
        )
        .await?;
        Ok(())
    }

    /// The static-JSON baseline: the same extractor and middleware as the real routes, then
    /// `body` as it is. Returns its base URL.
    async fn static_baseline(&mut self, body: Bytes) -> Res<String> {
        let state = self.state.clone();
        let router = axum::Router::new()
            .route(
                "/v1/cellules/{cellule}/static",
                axum::routing::get(
                    move |axum::extract::State(state): axum::extract::State<AppState>,
                          caller: Caller,
                          axum::extract::Path(cellule): axum::extract::Path<String>| {
                        let body = body.clone();
                        async move {
                            access::enter(&state, &caller, &cellule, None).await?;
                            Ok::<_, cellule::error::Error>((
                                [(CONTENT_TYPE, "application/json")],
                                body,
                            ))
                        }
                    },
                ),
            )
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                cellule::http::middleware::timeout,
            ))
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                cellule::http::middleware::envelope,
            ))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        self.stops.push(tx);
        self.tasks.push(tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await
                .expect("baseline server failed");
        }));
        Ok(format!("http://{addr}"))
    }

    async fn stop(self) {
        for tx in self.stops {
            let _ = tx.send(());
        }
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Seeding through the storage layer

struct Seeded {
    /// (id, reference) of every case, in order.
    cases: Vec<(String, String)>,
    hot: Vec<String>,
    accepted: usize,
    notes: usize,
    secs: f64,
    /// Bytes of one case's ciphertexts (situation + expectations) and one note's.
    case_cipher: [usize; 2],
    note_cipher: usize,
}

fn coordinator_ctx(cellule: &str) -> AuditCtx {
    AuditCtx {
        cellule: cellule.to_owned(),
        actor: Actor {
            subject: COORD.to_owned(),
            role: "coordinator".to_owned(),
            organisation: Some(COORD_ORG.to_owned()),
        },
        request_id: None,
    }
}

/// One case with its note(s), accepted when `accept`.
async fn seed_case(
    db: &dyn Database,
    keys: &KeyService,
    i: usize,
    notes: usize,
    accept: bool,
) -> Res<(String, String, [usize; 3])> {
    let now = Utc::now();
    let id = uuid::Uuid::now_v7().to_string();
    let (key, wrapped) = keys.new_case_key(CELLULE, &id)?;
    let seal = |record: &str, f: &str, text: &str| {
        key.seal(
            &FieldContext {
                cellule: CELLULE,
                case_id: &id,
                record_id: record,
                field: f,
            },
            text,
        )
    };
    let situation = seal(&id, "situation", SITUATION)?;
    let expectations = seal(&id, "expectations", EXPECTATIONS)?;
    let sizes = [situation.len(), expectations.len()];
    let mut linkage = [0u8; 32];
    linkage[..8].copy_from_slice(&(i as u64).to_le_bytes());
    let linkage_key: String = digest(&SHA256, &linkage)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let needs = [
        ",housing,care_access,",
        ",isolation,",
        ",housing,rights_income,",
    ];
    let case = NewCase {
        id: id.clone(),
        cellule: CELLULE.to_owned(),
        code: "BENCH".to_owned(),
        year: now.year(),
        urgency: [Urgency::Routine, Urgency::Priority, Urgency::Urgent][i % 3],
        age_band: [AgeBand::A25, AgeBand::A35, AgeBand::A45, AgeBand::A55][i % 4],
        gender: [Gender::F, Gender::M, Gender::X, Gender::Unknown][i % 4],
        commune: Some("66136".to_owned()),
        sector: Some("66G03".to_owned()),
        needs: Needs::parse_stored(needs[i % 3])?,
        consent_status: ConsentStatus::Informed,
        consent_justification: None,
        referring_org: COORD_ORG.to_owned(),
        referrer: COORD.to_owned(),
        linkage_key: Some(linkage_key),
        situation,
        expectations: Some(expectations),
        submitted_at: now,
    };
    let ctx = coordinator_ctx(CELLULE);
    let draft = ctx.entry(Action::SubmitReferral, now).case(&id, None);
    let (reference, _) = db.insert_case(&case, &wrapped, draft).await?;
    let mut note_len = 0;
    for _ in 0..notes {
        let note_id = uuid::Uuid::now_v7().to_string();
        let body = seal(&note_id, "body", NOTE)?;
        note_len = body.len();
        let at = Utc::now();
        let record = NoteRecord {
            id: note_id.clone(),
            case_id: id.clone(),
            author: COORD.to_owned(),
            author_role: Role::Coordinator,
            author_sphere: Some(Sphere::City),
            author_organisation: Some(COORD_ORG.to_owned()),
            audience: Audience::Cellule,
            corrects: None,
            body,
            created_at: at,
        };
        let draft = ctx
            .entry(Action::WriteNote, at)
            .case(&id, Some(&reference))
            .target("note", &note_id);
        db.insert_note(CELLULE, &record, draft).await?;
    }
    if accept {
        let at = Utc::now();
        let event_id = uuid::Uuid::now_v7().to_string();
        let t = Transition {
            event_id: event_id.clone(),
            case_id: id.clone(),
            cellule: CELLULE.to_owned(),
            from: CaseStatus::Submitted,
            to: CaseStatus::Accepted,
            reason: None,
            referrer_message: None,
            follow_up_date: None,
            routed_org: None,
            actor: COORD.to_owned(),
            at,
        };
        let draft = ctx
            .entry(Action::TransitionCase, at)
            .case(&id, Some(&reference))
            .target("event", &event_id);
        db.transition_case(&t, draft)
            .await?
            .ok_or("the seeded case was not in `submitted`")?;
    }
    Ok((id, reference, [sizes[0], sizes[1], note_len]))
}

async fn seed(
    db: Arc<dyn Database>,
    keys: Arc<KeyService>,
    size: usize,
    hot: usize,
    workers: usize,
) -> Res<Seeded> {
    let t = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (db, keys, next) = (db.clone(), keys.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= size {
                    break;
                }
                let is_hot = i >= size - hot;
                let notes = if is_hot { NOTES_PER_HOT_CASE } else { 1 };
                let accept = i.is_multiple_of(10);
                let (id, reference, sizes) =
                    seed_case(db.as_ref(), &keys, i, notes, accept).await?;
                out.push((i, id, reference, sizes, is_hot, accept, notes));
            }
            Ok::<_, Box<dyn Error + Send + Sync>>(out)
        }));
    }
    let mut all = Vec::with_capacity(size);
    for task in tasks {
        all.extend(task.await??);
    }
    all.sort_by_key(|r| r.0);
    let mut seeded = Seeded {
        cases: Vec::with_capacity(size),
        hot: Vec::new(),
        accepted: 0,
        notes: 0,
        secs: 0.0,
        case_cipher: [0, 0],
        note_cipher: 0,
    };
    for (_, id, reference, sizes, is_hot, accept, notes) in all {
        seeded.case_cipher = [sizes[0], sizes[1]];
        seeded.note_cipher = sizes[2];
        if is_hot {
            seeded.hot.push(id.clone());
        }
        seeded.accepted += usize::from(accept);
        seeded.notes += notes;
        seeded.cases.push((id, reference));
    }
    seeded.secs = t.elapsed().as_secs_f64();
    Ok(seeded)
}

/// Grows the ledger cellule's chain to `n` entries with realistic drafts.
async fn seed_ledger(db: &dyn Database, n: usize) -> Res<f64> {
    let t = Instant::now();
    let ctx = coordinator_ctx(LEDGER);
    let start = Utc::now() - chrono::Duration::days(400);
    let have = db.audit_head(LEDGER).await?.map_or(0, |h| h.seq as usize);
    let mut next = have;
    while next < n {
        let end = (next + AUDIT_BATCH).min(n);
        let drafts: Vec<Draft> = (next..end)
            .map(|i| {
                let at = start + chrono::Duration::milliseconds(i as i64 * 30_000);
                let case = uuid::Uuid::from_u128(i as u128 % 100_000 + 1).to_string();
                let reference = format!("LED-2025-{:05}", i % 100_000 + 1);
                let action = match i % 10 {
                    0..=3 => Action::ReadCase,
                    4..=6 => Action::ReadNotes,
                    7..=8 => Action::WriteNote,
                    _ => Action::TransitionCase,
                };
                ctx.entry(action, at).case(&case, Some(&reference))
            })
            .collect();
        db.append_audit(LEDGER, drafts).await?;
        next = end;
    }
    Ok(t.elapsed().as_secs_f64())
}

/// Raw SHA-256 over exactly the bytes the ledger chain hashes, read back from the database;
/// returns (seconds hashing, entries, bytes). Checks each digest against the stored hash.
async fn raw_sha_over_ledger(state: &AppState) -> Res<(f64, usize, usize)> {
    let (mut secs, mut entries, mut bytes) = (0.0, 0usize, 0usize);
    let mut after = 0i64;
    loop {
        let page = state.db.audit_entries(LEDGER, after, 20_000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        let mut buf = Vec::with_capacity(page.len() * 320);
        let mut ends = Vec::with_capacity(page.len());
        for e in &page {
            buf.extend_from_slice(DOMAIN);
            buf.extend_from_slice(&e.prev_hash);
            buf.extend_from_slice(&e.canonical());
            ends.push(buf.len());
        }
        let t = Instant::now();
        let mut digests = Vec::with_capacity(page.len());
        let mut from = 0;
        for &end in &ends {
            digests.push(digest(&SHA256, black_box(&buf[from..end])));
            from = end;
        }
        secs += t.elapsed().as_secs_f64();
        for (e, d) in page.iter().zip(&digests) {
            assert_eq!(
                d.as_ref(),
                e.hash.as_slice(),
                "baseline bytes differ at {}",
                e.seq
            );
        }
        entries += page.len();
        bytes += buf.len();
    }
    Ok((secs, entries, bytes))
}

// ---------------------------------------------------------------------------------------------
// One dataset

struct Path {
    name: &'static str,
    m: Measure,
    /// Name of the baseline this path is compared with, and the ratio of throughputs.
    baseline: Option<&'static str>,
    /// Raw AES-256-GCM microseconds over the same bytes (per request).
    raw_aes_us: Option<f64>,
}

struct Dataset {
    backend: &'static str,
    size: usize,
    seeded: Seeded,
    paths: Vec<Path>,
    agenda: Option<Agenda>,
    pages: Vec<PageTiming>,
    audit: Option<AuditRun>,
    rss_load_mib: f64,
    /// RSS when the load starts: the idle server with its dataset, and the load client's lists.
    rss_idle_mib: f64,
}

struct Agenda {
    eligible: usize,
    items: usize,
    deferred: usize,
    /// Each session's first build: every deferral is new to it (its set stored).
    first: Latencies,
    /// The rebuilds of the last session (the same deferrals: nothing to store again).
    rebuilds: Latencies,
    /// Each session's publication, which counts its deferrals (not an issue target).
    publications: Latencies,
}

/// A page of the web application, timed next to the API call it wraps.
struct PageTiming {
    name: &'static str,
    page: Latencies,
    api: Latencies,
    /// The page's size (HTML only: the pages carry no image).
    page_bytes: usize,
}

/// Each page then its API call, one after the other, `reps` times after one untimed pass: a
/// person's clicks, not a crowd's. Each is timed until its whole answer is received.
async fn time_pages(
    server: &Server,
    pairs: Vec<(&'static str, String, String)>,
    reps: usize,
) -> Res<Vec<PageTiming>> {
    let web = server.web_client().await?;
    let mut out = Vec::new();
    for (name, page, api) in pairs {
        let (mut pages, mut apis, mut page_bytes) = (Vec::new(), Vec::new(), 0);
        for rep in 0..=reps {
            let t = Instant::now();
            let r = web.get(format!("{}{page}", server.base)).send().await?;
            let status = r.status();
            let body = r.bytes().await?;
            let us = t.elapsed().as_secs_f64() * 1e6;
            if status != reqwest::StatusCode::OK {
                return Err(format!("GET {page}: {status}").into());
            }
            page_bytes = body.len();
            let (_, api_us) = server
                .call_timed(reqwest::Method::GET, &api, &server.coord, None)
                .await?;
            if rep > 0 {
                pages.push(us);
                apis.push(api_us);
            }
        }
        out.push(PageTiming {
            name,
            page: Latencies::new(pages),
            api: Latencies::new(apis),
            page_bytes,
        });
    }
    Ok(out)
}

struct AuditRun {
    entries: usize,
    seed_secs: f64,
    verify_secs: Vec<f64>,
    raw_secs: f64,
    raw_entries: usize,
    raw_bytes: usize,
    rss_mib: f64,
}

impl AuditRun {
    fn verify_rate(&self) -> f64 {
        let mut v = self.verify_secs.clone();
        v.sort_by(f64::total_cmp);
        self.entries as f64 / v[v.len() / 2]
    }
    fn raw_rate(&self) -> f64 {
        self.raw_entries as f64 / self.raw_secs
    }
}

fn referral_body(i: u64) -> Bytes {
    // A distinct, letters-only identity per request: every referral gets its own linkage key.
    let mut name = String::new();
    let mut n = i + 1;
    while n > 0 {
        name.push((b'a' + (n % 26) as u8) as char);
        n /= 26;
    }
    let body = json!({
        "age_band": "35-44", "gender": "m", "commune": "66136", "sector": "66G03",
        "needs": ["housing", "care_access"], "urgency": "priority",
        "consent": {"status": "informed"},
        "referring_org": COORD_ORG,
        "situation": SITUATION, "expectations": EXPECTATIONS,
        "identity": {"last_name": format!("Bench{name}"), "first_name": "Alex", "birth_date": "1980-04-02"}
    });
    Bytes::from(serde_json::to_vec(&body).expect("json"))
}

fn http_job(
    client: &reqwest::Client,
    method: reqwest::Method,
    urls: Arc<Vec<String>>,
    token: &str,
    body: Option<fn(u64) -> Bytes>,
    expect: u16,
) -> Job {
    let client = client.clone();
    let auth = format!("Bearer {token}");
    Arc::new(move |i| {
        let url = &urls[(i as usize).wrapping_mul(7919) % urls.len()];
        let mut req = client
            .request(method.clone(), url)
            .header("authorization", &auth);
        if let Some(f) = body {
            req = req.header(CONTENT_TYPE, "application/json").body(f(i));
        }
        Box::pin(async move {
            let resp = req.send().await.map_err(|e| format!("send: {e}"))?;
            let status = resp.status().as_u16();
            let bytes = resp.bytes().await.map_err(|e| format!("body: {e}"))?;
            black_box(&bytes);
            if status == expect {
                Ok(())
            } else {
                Err(format!("status {status}"))
            }
        })
    })
}

/// The handle seeding goes through. On PostgreSQL its own pool, whose commits do not wait for the
/// WAL flush (`synchronous_commit = off`): same rows, same chain, less waiting; the server keeps
/// the default. On SQLite the server's own handle (one writer per file).
async fn seeding_handle(backend: &str, db_url: &str, server: &Server) -> Res<Arc<dyn Database>> {
    Ok(if backend == "postgres" {
        let sep = if db_url.contains('?') { '&' } else { '?' };
        let url = format!("{db_url}{sep}options[synchronous_commit]=off");
        let db = cellule::storage::connect(&DatabaseUrl::new(url), &PoolConfig::default(), false)
            .await?;
        // Its entries carry the server keyring's authentication codes, as the server's do.
        db.authenticate_audit(server.state.keys.clone());
        db
    } else {
        server.state.db.clone()
    })
}

async fn run_dataset(
    backend: &'static str,
    db_url: &str,
    size: usize,
    large: bool,
    opts: &Options,
) -> Res<Dataset> {
    use reqwest::Method;
    let mut server = Server::start(db_url).await?;
    server.cellule(CELLULE).await?;
    // SQLite has one writer: a second seeding worker only waits for the first, and with
    // `synchronous = FULL` a slow fsync can outlast the busy timeout it waits with.
    let workers = if backend == "postgres" { 6 } else { 1 };
    eprintln!("[{backend} {size}] seeding {size} cases with notes and audit entries…");
    let seed_db = seeding_handle(backend, db_url, &server).await?;
    let seeded = seed(
        seed_db.clone(),
        server.state.keys.clone(),
        size,
        opts.hot_cases.min(size / 2),
        workers,
    )
    .await?;
    // The seeding handle's connections (and the buffers they grew) are not the server's: closed
    // before the load so that the peak RSS is the server's and the load client's.
    if backend == "postgres" {
        seed_db.close().await;
        // What autovacuum does within a minute of a bulk load (it analyses a table once a tenth
        // of it changed, and vacuums it once 1,000 rows and a fifth of it were inserted): the
        // planner has statistics and the visibility map is set, as on any server that has run a
        // while. Then what the checkpointer does within `checkpoint_timeout` (5 minutes by
        // default) of it: the pages the load dirtied (hundreds of MB of WAL at 100,000 cases)
        // are written out, so that the measured paths do not evict dirty buffers of the load
        // or start right after a checkpoint the load's WAL set off (each page's first change
        // then logs the whole page).
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(db_url).await?;
        sqlx::query("VACUUM (ANALYZE)").execute(&mut c).await?;
        sqlx::query("CHECKPOINT").execute(&mut c).await?;
        c.close().await?;
    }
    drop(seed_db);
    eprintln!(
        "[{backend} {size}] seeded {} cases, {} notes, {} accepted in {:.1} s",
        seeded.cases.len(),
        seeded.notes,
        seeded.accepted,
        seeded.secs
    );
    let base = format!("{}/v1/cellules/{CELLULE}", server.base);
    let read_urls: Arc<Vec<String>> = Arc::new(
        seeded
            .cases
            .iter()
            .map(|(id, _)| format!("{base}/cases/{id}"))
            .collect(),
    );
    let note_urls: Arc<Vec<String>> = Arc::new(
        seeded
            .hot
            .iter()
            .map(|id| format!("{base}/cases/{id}/notes"))
            .collect(),
    );
    // Correctness of what is measured, once.
    let one = server
        .call(
            Method::GET,
            &format!("/v1/cellules/{CELLULE}/cases/{}", seeded.cases[0].0),
            &server.coord,
            None,
        )
        .await?;
    assert_eq!(
        one["situation"], SITUATION,
        "the case read does not decrypt"
    );
    let notes = server
        .call(
            Method::GET,
            &format!("/v1/cellules/{CELLULE}/cases/{}/notes", seeded.hot[0]),
            &server.coord,
            None,
        )
        .await?;
    let count = notes
        .as_array()
        .or_else(|| notes["items"].as_array())
        .or_else(|| notes["notes"].as_array())
        .map_or(0, Vec::len);
    assert_eq!(
        count, NOTES_PER_HOT_CASE,
        "the notes list does not hold 20 notes"
    );
    let static_body = Bytes::from(serde_json::to_vec(&one)?);
    let static_base = server.static_baseline(static_body).await?;
    let static_urls = Arc::new(vec![format!("{static_base}/v1/cellules/{CELLULE}/static")]);

    let raw = Raw::connect(&server.db_url).await?;
    let raw = Arc::new(raw);
    let row_body = vec![0x5Au8; seeded.case_cipher[0] + seeded.case_cipher[1] + 60];
    let attrs = "priority|35-44|m|66136|66G03|,housing,care_access,|informed|CCAS Perpignan|bench-coord|BENCH-2026-000001|submitted";
    let raw_job: Job = {
        let (raw, body) = (raw.clone(), Arc::new(row_body));
        Arc::new(move |_| {
            let (raw, body) = (raw.clone(), body.clone());
            Box::pin(async move {
                raw.insert(uuid::Uuid::now_v7().to_string(), attrs, &body)
                    .await
                    .map_err(|e| format!("insert: {e}"))
            })
        })
    };

    let rss_idle_mib = reset_peak_rss();
    let mut paths = Vec::new();
    let aes_iters = if opts.quick { 200 } else { 5000 };
    let c = opts.concurrency;
    let plan: Vec<(&'static str, Job, Option<&'static str>, Option<f64>)> = vec![
        ("raw insert+commit (sqlx)", raw_job, None, None),
        (
            "referral submission",
            http_job(
                &server.client,
                Method::POST,
                Arc::new(vec![format!("{base}/referrals")]),
                &server.coord,
                Some(referral_body),
                201,
            ),
            Some("raw insert+commit (sqlx)"),
            Some(raw_aes_us(&seeded.case_cipher, true, aes_iters)),
        ),
        (
            "static JSON, same token check",
            http_job(
                &server.client,
                Method::GET,
                static_urls,
                &server.coord,
                None,
                200,
            ),
            None,
            None,
        ),
        (
            "case read (decrypted)",
            http_job(
                &server.client,
                Method::GET,
                read_urls,
                &server.coord,
                None,
                200,
            ),
            Some("static JSON, same token check"),
            Some(raw_aes_us(&seeded.case_cipher, false, aes_iters)),
        ),
        (
            "notes list (20 decrypted)",
            http_job(
                &server.client,
                Method::GET,
                note_urls,
                &server.coord,
                None,
                200,
            ),
            Some("static JSON, same token check"),
            Some(raw_aes_us(
                &[seeded.note_cipher; NOTES_PER_HOT_CASE],
                false,
                aes_iters / 10 + 1,
            )),
        ),
    ];
    let plan: Vec<_> = plan
        .into_iter()
        .filter(|(name, ..)| {
            opts.only
                .as_ref()
                .is_none_or(|o| o.split(',').any(|part| name.contains(part)))
        })
        .collect();
    // Round after round, every path in turn: a path and its baseline are measured alike
    // whatever the shared machine does meanwhile. The first round warms up for the whole
    // warm-up, later ones briefly (the pools and caches are warm; only the path changed).
    let share = opts.duration.div_f64(opts.rounds as f64);
    let mut rounds: Vec<Vec<Measure>> = plan.iter().map(|_| Vec::new()).collect();
    for r in 0..opts.rounds {
        let warmup = if r == 0 {
            opts.warmup
        } else {
            opts.warmup.min(Duration::from_millis(250))
        };
        for ((name, job, ..), done) in plan.iter().zip(rounds.iter_mut()) {
            eprintln!(
                "[{backend} {size}] {name}, round {}/{}: {c} in flight for {:.1} s…",
                r + 1,
                opts.rounds,
                share.as_secs_f64()
            );
            done.push(drive(c, warmup, share, job.clone()).await);
        }
    }
    for ((name, _, baseline, raw_aes_us), done) in plan.into_iter().zip(rounds) {
        let m = Measure::merge(done);
        if m.errors > 0 {
            eprintln!(
                "[{backend} {size}] {name}: {} errors (first: {})",
                m.errors,
                m.first_error.as_deref().unwrap_or("?")
            );
        }
        // The harness must not pass over a broken path: no success at all, or more than one
        // request in a hundred failed (an unexpected status or body), fails the run.
        if m.ok == 0 || m.errors * 100 > m.ok + m.errors {
            return Err(format!(
                "[{backend} {size}] {name}: {} of {} requests failed (first: {})",
                m.errors,
                m.ok + m.errors,
                m.first_error.as_deref().unwrap_or("none succeeded")
            )
            .into());
        }
        paths.push(Path {
            name,
            m,
            baseline,
            raw_aes_us,
        });
    }
    raw.close().await;

    // Agenda build over the accepted cases, sequential.
    eprintln!(
        "[{backend} {size}] agenda build over {} eligible cases…",
        seeded.accepted
    );
    let cpath = format!("/v1/cellules/{CELLULE}");
    server
        .call(
            Method::PUT,
            &format!("{cpath}/schedule"),
            &server.coord,
            Some(json!({"rrule": "FREQ=MONTHLY;BYDAY=+2TH", "start_time": "14:00", "time_zone": "Europe/Paris",
                "duration_minutes": 180, "minutes_per_new_case": 15, "minutes_per_follow_up": 10,
                "location": "Salle du conseil", "on_holiday": "next_week"})),
        )
        .await?;
    // One session per first build: each later session's eligible cases are those not on an
    // earlier session's agenda, every deferral new to it, as month after month: each session is
    // built (the last one rebuilt), then published, which counts its deferrals, so that the
    // next build orders by them.
    let plan = server
        .call(
            Method::POST,
            &format!("{cpath}/sessions/plan"),
            &server.coord,
            // One month more than sessions needed: the window's last occurrence may fall
            // after it (a session later in the month than today).
            Some(json!({"months": opts.first_builds + 1})),
        )
        .await?;
    let sessions: Vec<String> = plan["sessions"]
        .as_array()
        .ok_or("no planned sessions")?
        .iter()
        .filter_map(|s| s["id"].as_str().map(str::to_owned))
        .take(opts.first_builds)
        .collect();
    if sessions.len() < opts.first_builds {
        return Err(format!(
            "{} sessions planned, not {}",
            sessions.len(),
            opts.first_builds
        )
        .into());
    }
    let (mut first, mut rebuilds, mut publications) = (Vec::new(), Vec::new(), Vec::new());
    // Cases placed on earlier sessions' agendas, then the last session's items and deferrals.
    let (mut placed, mut items, mut deferred) = (0, 0, 0);
    for (n, sid) in sessions.iter().enumerate() {
        let last = n + 1 == sessions.len();
        let builds = if last { 1 + opts.rebuilds } else { 1 };
        for b in 0..builds {
            // Timed until the whole answer is received (10,000 deferrals: about a megabyte),
            // not while the client parses it.
            let (text, us) = server
                .call_timed(
                    Method::POST,
                    &format!("{cpath}/sessions/{sid}/agenda/build"),
                    &server.coord,
                    Some(json!({})),
                )
                .await?;
            if b == 0 {
                first.push(us)
            } else {
                rebuilds.push(us)
            }
            let agenda: Value = serde_json::from_str(&text)?;
            items = agenda["items"].as_array().map_or(0, Vec::len);
            deferred = agenda["deferred"].as_array().map_or(0, Vec::len);
        }
        let (text, us) = server
            .call_timed(
                Method::POST,
                &format!("{cpath}/sessions/{sid}/agenda/publish"),
                &server.coord,
                None,
            )
            .await?;
        publications.push(us);
        let published: Value = serde_json::from_str(&text)?;
        if published["deferred"].as_array().map_or(0, Vec::len) != deferred {
            return Err("the published agenda lost deferrals".into());
        }
        if !last {
            placed += items;
        }
    }
    assert_eq!(
        placed + items + deferred,
        seeded.accepted,
        "the agendas do not cover the eligible cases"
    );
    let agenda = Some(Agenda {
        eligible: seeded.accepted,
        items,
        deferred,
        first: Latencies::new(first),
        rebuilds: Latencies::new(rebuilds),
        publications: Latencies::new(publications),
    });
    let rss_load_mib = if rss_idle_mib.is_some() {
        peak_rss_mib()
    } else {
        f64::NAN
    };

    // The coordinator's pages over this dataset, next to the API calls they wrap.
    eprintln!("[{backend} {size}] web pages next to their API calls…");
    let last = sessions.last().ok_or("no session")?;
    let web = format!("/c/{CELLULE}");
    let hot = &seeded.hot[0];
    let year = chrono::Datelike::year(&Utc::now());
    let pages = time_pages(
        &server,
        vec![
            (
                "session page (agenda)",
                format!("{web}/seances/{last}"),
                format!("{cpath}/sessions/{last}/agenda"),
            ),
            (
                "case page (20 notes)",
                format!("{web}/situations/{hot}"),
                format!("{cpath}/cases/{hot}"),
            ),
            (
                "sessions of the year",
                format!("{web}/seances"),
                format!("{cpath}/sessions"),
            ),
            (
                "case list (50 a page)",
                format!("{web}/situations"),
                format!("{cpath}/cases"),
            ),
            (
                "statistics of the year",
                format!("{web}/statistiques?annee={year}"),
                format!("{cpath}/stats?year={year}"),
            ),
        ],
        opts.page_reps,
    )
    .await?;

    // Audit verification of a long chain, with the large dataset only.
    let audit = if large {
        server.cellule(LEDGER).await?;
        eprintln!(
            "[{backend}] growing the ledger chain to {} entries…",
            opts.audit_entries
        );
        let seed_db = seeding_handle(backend, db_url, &server).await?;
        let seed_secs = seed_ledger(seed_db.as_ref(), opts.audit_entries).await?;
        if backend == "postgres" {
            seed_db.close().await;
        }
        drop(seed_db);
        let reset = reset_peak_rss().is_some();
        let mut verify_secs = Vec::new();
        for _ in 0..opts.verify_reps {
            let t = Instant::now();
            let report = server
                .call(
                    Method::GET,
                    &format!("/v1/cellules/{LEDGER}/audit/verify"),
                    &server.auditor,
                    None,
                )
                .await?;
            verify_secs.push(t.elapsed().as_secs_f64());
            assert_eq!(report["valid"], true, "the ledger chain does not verify");
            assert!(
                report["entries_checked"].as_i64().unwrap_or(0) >= opts.audit_entries as i64,
                "verification checked fewer entries than seeded"
            );
        }
        let rss_mib = if reset { peak_rss_mib() } else { f64::NAN };
        eprintln!("[{backend}] raw SHA-256 over the same bytes…");
        let (raw_secs, raw_entries, raw_bytes) = raw_sha_over_ledger(&server.state).await?;
        Some(AuditRun {
            entries: opts.audit_entries,
            seed_secs,
            verify_secs,
            raw_secs,
            raw_entries,
            raw_bytes,
            rss_mib,
        })
    } else {
        None
    };
    server.stop().await;
    Ok(Dataset {
        backend,
        size,
        seeded,
        paths,
        agenda,
        pages,
        audit,
        rss_load_mib,
        rss_idle_mib: rss_idle_mib.unwrap_or(f64::NAN),
    })
}

// ---------------------------------------------------------------------------------------------
// Report

fn find<'a>(d: &'a Dataset, name: &str) -> Option<&'a Path> {
    d.paths.iter().find(|p| p.name == name)
}

fn ratio(d: &Dataset, p: &Path) -> Option<f64> {
    let b = find(d, p.baseline?)?;
    Some(p.m.rps() / b.m.rps())
}

/// The path's ratio to its baseline in each round (measured one after the other).
fn round_ratios(d: &Dataset, p: &Path) -> Vec<f64> {
    let Some(b) = p.baseline.and_then(|name| find(d, name)) else {
        return Vec::new();
    };
    p.m.rounds
        .iter()
        .zip(&b.m.rounds)
        .map(|(path, base)| path / base)
        .collect()
}

/// `38 %`, with the lowest and highest round's ratio when there are several rounds: `38 % (35-41)`.
fn ratio_text(d: &Dataset, p: &Path) -> String {
    let Some(r) = ratio(d, p) else {
        return "-".to_owned();
    };
    let rounds = round_ratios(d, p);
    if rounds.len() < 2 {
        return format!("{:.0} %", r * 100.0);
    }
    let lo = rounds.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = rounds.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{:.0} % ({:.0}-{:.0})", r * 100.0, lo * 100.0, hi * 100.0)
}

#[tokio::main]
async fn main() -> Res<()> {
    let wall = Instant::now();
    let opts = options();
    let mut backends: Vec<(&'static str, Option<String>)> = vec![("sqlite", None)];
    if let Some(pg) = &opts.postgres {
        backends.push(("postgres", Some(pg.clone())));
    }
    if let Some(only) = &opts.backend {
        backends.retain(|b| b.0 == only);
        assert!(
            !backends.is_empty(),
            "--backend postgres needs CELLULE_BENCH_POSTGRES_URL"
        );
    }
    println!(
        "load bench: sizes {:?} cases, {} in flight, {:.1} s per path in {} rounds after {:.1} s warm-up, \
         backends: {}; machine: {}; figures for this machine and this run only",
        opts.sizes,
        opts.concurrency,
        opts.duration.as_secs_f64(),
        opts.rounds,
        opts.warmup.as_secs_f64(),
        backends.iter().map(|b| b.0).collect::<Vec<_>>().join(", "),
        machine()
    );
    let mut datasets = Vec::new();
    for (backend, admin) in &backends {
        for (k, &size) in opts.sizes.iter().enumerate() {
            let large = k == 1;
            let dir = private_tempdir()?;
            let (url, pg_name) = match admin {
                None => (
                    format!("sqlite://{}", dir.path().join("cellule.db").display()),
                    None,
                ),
                Some(admin) => {
                    let (name, url) = create_pg_database(admin).await?;
                    (url, Some(name))
                }
            };
            let outcome = run_dataset(backend, &url, size, large, &opts).await;
            if let (Some(admin), Some(name)) = (admin, pg_name) {
                drop_pg_database(admin, &name).await?;
            }
            datasets.push(outcome?);
        }
    }

    // Tables.
    println!();
    println!(
        "{:<9} {:>7} {:<32} {:>9} {:>9} {:>9} {:>7} {:>15} {:>11}",
        "backend", "cases", "path", "req/s", "p50 ms", "p99 ms", "errors", "vs base", "raw AES µs"
    );
    for d in &datasets {
        for p in &d.paths {
            println!(
                "{:<9} {:>7} {:<32} {:>9.0} {:>9.2} {:>9.2} {:>7} {:>15} {:>11}",
                d.backend,
                d.size,
                p.name,
                p.m.rps(),
                p.m.lat.ms(50.0),
                p.m.lat.ms(99.0),
                p.m.errors,
                ratio_text(d, p),
                p.raw_aes_us.map_or("-".to_owned(), |u| format!("{u:.1}")),
            );
        }
        if let Some(a) = &d.agenda {
            for (what, lat, target) in [
                ("1st builds", &a.first, "< 50 ms?"),
                ("rebuilds", &a.rebuilds, "< 50 ms?"),
                ("publications", &a.publications, "-"),
            ] {
                // p50 and max (in the p99 column) of a handful of builds.
                println!(
                    "{:<9} {:>7} {:<32} {:>9} {:>9.2} {:>9.2} {:>7} {:>15} {:>11}",
                    d.backend,
                    d.size,
                    format!("agenda {what} ({}), {} eligible", lat.0.len(), a.eligible),
                    "-",
                    lat.ms(50.0),
                    lat.ms(100.0),
                    0,
                    target,
                    "-",
                );
            }
        }
        for p in &d.pages {
            // p50 and max of the page, then of its API call; the page's size.
            println!(
                "{:<9} {:>7} {:<32} {:>9} {:>9.2} {:>9.2} {:>7} {:>15} {:>11}",
                d.backend,
                d.size,
                format!("page: {}", p.name),
                format!("{:.0} KB", p.page_bytes as f64 / 1024.0),
                p.page.ms(50.0),
                p.page.ms(100.0),
                0,
                format!("API {:.2}/{:.2}", p.api.ms(50.0), p.api.ms(100.0)),
                "-",
            );
        }
        println!(
            "{:<9} {:>7} peak RSS under load {:.1} MiB (idle before the load {:.1} MiB); seeding {:.1} s ({} notes)",
            d.backend, d.size, d.rss_load_mib, d.rss_idle_mib, d.seeded.secs, d.seeded.notes
        );
    }
    println!();
    for b in &backends {
        let of = |size| datasets.iter().find(|d| d.backend == b.0 && d.size == size);
        if let (Some(small), Some(large)) = (of(opts.sizes[0]), of(opts.sizes[1])) {
            for p in &large.paths {
                if let Some(q) = find(small, p.name) {
                    println!(
                        "{:<9} throughput {} cases / {} cases, {:<32} {:>6.0} %",
                        b.0,
                        opts.sizes[1],
                        opts.sizes[0],
                        p.name,
                        p.m.rps() / q.m.rps() * 100.0
                    );
                }
            }
        }
    }
    println!();
    for d in &datasets {
        if let Some(a) = &d.audit {
            println!(
                "{:<9} audit verify via HTTP, {} entries: {:.0} entries/s ({:.2} s); raw SHA-256 same bytes \
                 ({:.0} B/entry): {:.0} entries/s; ratio {:.1} %; peak RSS {:.1} MiB; chain grown in {:.1} s",
                d.backend,
                a.entries,
                a.verify_rate(),
                a.entries as f64 / a.verify_rate(),
                a.raw_bytes as f64 / a.raw_entries as f64,
                a.raw_rate(),
                a.verify_rate() / a.raw_rate() * 100.0,
                a.rss_mib,
                a.seed_secs
            );
        }
    }

    let report = json!({
        "machine": machine(),
        "measured_at": Utc::now().to_rfc3339(),
        "quick": opts.quick,
        "concurrency": opts.concurrency,
        "duration_s": opts.duration.as_secs_f64(),
        "rounds": opts.rounds,
        "warmup_s": opts.warmup.as_secs_f64(),
        "datasets": datasets.iter().map(|d| json!({
            "backend": d.backend,
            "cases": d.size,
            "seeding": {
                "seconds": d.seeded.secs,
                "notes": d.seeded.notes,
                "accepted": d.seeded.accepted,
                "hot_cases_with_20_notes": d.seeded.hot.len(),
            },
            "peak_rss_mib_under_load": d.rss_load_mib,
            "rss_mib_idle_before_load": d.rss_idle_mib,
            "paths": d.paths.iter().map(|p| {
                let mut v = p.m.json();
                v["path"] = json!(p.name);
                v["baseline"] = json!(p.baseline);
                v["ratio_to_baseline"] = json!(ratio(d, p));
                v["ratio_to_baseline_by_round"] = json!(round_ratios(d, p));
                v["raw_aes_gcm_us_same_bytes"] = json!(p.raw_aes_us);
                v
            }).collect::<Vec<_>>(),
            "agenda_build": d.agenda.as_ref().map(|a| json!({
                "eligible": a.eligible,
                "items": a.items,
                "deferred": a.deferred,
                "first_builds": a.first.0.len(),
                "first_build_p50_ms": a.first.ms(50.0),
                "first_build_max_ms": a.first.ms(100.0),
                "rebuilds": a.rebuilds.0.len(),
                "rebuild_p50_ms": a.rebuilds.ms(50.0),
                "rebuild_max_ms": a.rebuilds.ms(100.0),
                "publications": a.publications.0.len(),
                "publication_p50_ms": a.publications.ms(50.0),
                "publication_max_ms": a.publications.ms(100.0),
            })),
            "pages": d.pages.iter().map(|p| json!({
                "page": p.name,
                "bytes": p.page_bytes,
                "loads": p.page.0.len(),
                "page_p50_ms": p.page.ms(50.0),
                "page_max_ms": p.page.ms(100.0),
                "api_p50_ms": p.api.ms(50.0),
                "api_max_ms": p.api.ms(100.0),
            })).collect::<Vec<_>>(),
            "audit_verify": d.audit.as_ref().map(|a| json!({
                "entries": a.entries,
                "verify_seconds": a.verify_secs,
                "verify_entries_per_s": a.verify_rate(),
                "raw_sha256_entries_per_s": a.raw_rate(),
                "raw_bytes_per_entry": a.raw_bytes as f64 / a.raw_entries as f64,
                "ratio_to_raw_sha256": a.verify_rate() / a.raw_rate(),
                "peak_rss_mib": a.rss_mib,
                "chain_seed_seconds": a.seed_secs,
            })),
        })).collect::<Vec<_>>(),
    });
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&target)?;
    let path = target.join("load.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
    println!(
        "\nJSON: {}; wall time {:.1} s",
        path.display(),
        wall.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A temporary folder only its owner can read: the service refuses a data directory others can.
fn private_tempdir() -> std::io::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
}
