//! The tamper-evident audit log, measured in one run. Run with `cargo bench --bench audit`
//! (`-- --quick` for 20,000 entries, `-- --entries N` or `CELLULE_BENCH_ENTRIES=N` to choose).
//! Prints figures and writes them to `target/bench-audit.json`; asserts nothing about speed.
//!
//! 1. Verification throughput over N chained entries (1,000,000 by default): the verifier's walk
//!    in memory, and `audit::verify::verify` on a seeded SQLite database (and PostgreSQL when
//!    `CELLULE_BENCH_POSTGRES_URL` names a server: a fresh database is created there and dropped
//!    at the end), each next to raw `ring` SHA-256 over exactly the bytes the chain hashes.
//! 2. Added latency of an audited note write (`Database::insert_note`: note plus chained entry
//!    in one transaction) over the same `INSERT INTO notes` committed through a raw pool with no
//!    audit entry, sequential, interleaved one for one.
//!
//! The only checks are correctness checks (the chain verifies, the baseline hashes the same
//! bytes); a failed one panics.

use std::hint::black_box;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cellule::audit::verify::Trusted;
use cellule::audit::{Action, Actor, AuditCtx, Draft, Entry, GENESIS, Signer, reason};
use cellule::config::{DatabaseUrl, PoolConfig};
use cellule::crypto::Keyring;
use cellule::domain::case::{AgeBand, Audience, ConsentStatus, Gender, Need, Needs, Urgency};
use cellule::domain::{CelluleCode, CelluleName, CelluleSlug, NewCellule, Role, Sphere};
use cellule::storage::{Database, NewCase, NoteRecord, WrappedKey};
use chrono::{DateTime, Datelike, Utc};
use ring::digest::{SHA256, digest};
use serde_json::{Value, json};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

mod common;

use common::{Res, create_pg_database, drop_pg_database, machine};

const CELLULE: &str = "bench";
/// The chain's domain tag (`cellule-audit-v1`), prefixed to every hashed entry.
const DOMAIN: &[u8] = b"cellule-audit-v1";
const BATCH: usize = 2000;
const REPS: usize = 3;
const WARMUP_WRITES: usize = 20;
const BODY_BYTES: usize = 600;
const MIB: f64 = 1024.0 * 1024.0;

const SQLITE_INSERT: &str = "INSERT INTO notes (id, case_id, author, author_role, author_sphere, \
     author_organisation, audience, corrects, body, created_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
const PG_INSERT: &str = "INSERT INTO notes (id, case_id, author, author_role, author_sphere, \
     author_organisation, audience, corrects, body, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

// ---------------------------------------------------------------------------------------------
// Options

struct Options {
    entries: usize,
    writes: usize,
    postgres: Option<String>,
}

fn options() -> Options {
    let mut quick = false;
    let mut entries: Option<usize> = std::env::var("CELLULE_BENCH_ENTRIES").ok().map(|v| {
        v.trim()
            .replace('_', "")
            .parse()
            .expect("CELLULE_BENCH_ENTRIES: a number")
    });
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = if arg == "--entries" {
            Some(args.next().expect("--entries N"))
        } else {
            arg.strip_prefix("--entries=").map(str::to_owned)
        };
        if let Some(v) = value {
            entries = Some(v.replace('_', "").parse().expect("--entries: a number"));
        } else if arg == "--quick" {
            quick = true;
        }
        // Anything else (cargo passes `--bench`) is ignored.
    }
    let entries = entries
        .unwrap_or(if quick { 20_000 } else { 1_000_000 })
        .max(1);
    Options {
        entries,
        writes: if quick { 200 } else { 2000 },
        postgres: std::env::var("CELLULE_BENCH_POSTGRES_URL")
            .ok()
            .filter(|u| !u.trim().is_empty()),
    }
}

// ---------------------------------------------------------------------------------------------
// A deterministic, realistic workload

/// SplitMix64: deterministic, so entry `i` is the same in memory and in every database.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5EED_CE11_0A0D_17B5)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn uuid(&mut self) -> String {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.next().to_le_bytes());
        b[8..].copy_from_slice(&self.next().to_le_bytes());
        uuid::Builder::from_random_bytes(b).into_uuid().to_string()
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(n);
        out
    }
}

struct Workload {
    /// 40 members: coordinators, members, referrers and auditors of several organisations.
    actors: Vec<Actor>,
    /// 1000 cases: (id, reference).
    cases: Vec<(String, String)>,
    start: DateTime<Utc>,
}

impl Workload {
    fn new(now: DateTime<Utc>) -> Self {
        let mut rng = Rng::new(1);
        let orgs = [
            "ch-thuir",
            "ccas-perpignan",
            "cmp-perpignan-nord",
            "office-hlm-66",
            "samsah-66",
            "mairie-perpignan",
        ];
        let actors = (0..40u64)
            .map(|i| {
                let role = match i {
                    0..=1 => "coordinator",
                    2..=31 => "member",
                    32..=37 => "referrer",
                    _ => "auditor",
                };
                Actor {
                    subject: rng.uuid(),
                    role: role.to_owned(),
                    organisation: (role != "auditor").then(|| orgs[(i % 6) as usize].to_owned()),
                }
            })
            .collect();
        let year = now.year();
        let cases = (1..=1000)
            .map(|k| (rng.uuid(), format!("BEN-{year}-{k:04}")))
            .collect();
        Workload {
            actors,
            cases,
            // The log spans the last few weeks, one entry every ~2 s.
            start: now - chrono::Duration::days(30),
        }
    }

    /// Entry `i` of the log: reads dominate, with writes, transitions, lists and a few denials.
    fn draft(&self, i: usize) -> Draft {
        let mut rng = Rng::new(0xA0D1_7000 + i as u64);
        let actor = self.actors[rng.below(self.actors.len() as u64) as usize].clone();
        let (case_id, case_ref) = &self.cases[rng.below(self.cases.len() as u64) as usize];
        let ctx = AuditCtx {
            cellule: CELLULE.to_owned(),
            actor,
            request_id: Some(rng.uuid()),
        };
        let at = self.start + chrono::Duration::microseconds(i as i64 * 2_000_000 + 1_234);
        let roll = rng.below(100);
        let draft = match roll {
            0..=39 => ctx
                .entry(Action::ReadCase, at)
                .case(case_id, Some(case_ref)),
            40..=64 => ctx
                .entry(Action::ReadNotes, at)
                .case(case_id, Some(case_ref)),
            65..=79 => ctx
                .entry(Action::WriteNote, at)
                .case(case_id, Some(case_ref))
                .target("note", &rng.uuid()),
            80..=89 => ctx
                .entry(Action::TransitionCase, at)
                .case(case_id, Some(case_ref))
                .target("event", &rng.uuid()),
            _ => ctx.entry(Action::ListCases, at),
        };
        if roll < 65 && rng.below(100) < 4 {
            draft.denied(reason::NOT_VISIBLE)
        } else {
            draft
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Verification throughput

struct Stats {
    secs: f64,
    entries: usize,
    bytes: usize,
}

impl Stats {
    fn rate(&self) -> f64 {
        self.entries as f64 / self.secs
    }
    fn mib_s(&self) -> f64 {
        self.bytes as f64 / MIB / self.secs
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn build_chain(w: &Workload, n: usize) -> Vec<Entry> {
    let mut out = Vec::with_capacity(n);
    let mut prev = GENESIS.to_vec();
    for i in 0..n {
        let e = w.draft(i).into_entry(CELLULE, i as i64 + 1, &prev);
        prev.clone_from(&e.hash);
        out.push(e);
    }
    out
}

/// The verifier's per-entry work (`audit::verify::verify`) without the database.
fn walk(chain: &[Entry]) -> bool {
    let mut prev: &[u8] = &GENESIS;
    for (expected, e) in (1i64..).zip(chain) {
        if e.seq != expected {
            return false;
        }
        if e.compute_hash().as_slice() != e.hash.as_slice() || e.cellule != CELLULE {
            return false;
        }
        if e.prev_hash != prev {
            return false;
        }
        prev = &e.hash;
    }
    true
}

/// Domain tag · prev_hash · canonical of every entry, back to back; `ends[i]` closes entry i.
fn encode(chain: &[Entry]) -> (Vec<u8>, Vec<usize>) {
    let mut bytes = Vec::with_capacity(chain.len() * 320);
    let mut ends = Vec::with_capacity(chain.len());
    for e in chain {
        bytes.extend_from_slice(DOMAIN);
        bytes.extend_from_slice(&e.prev_hash);
        bytes.extend_from_slice(&e.canonical());
        ends.push(bytes.len());
    }
    (bytes, ends)
}

fn hash_all(bytes: &[u8], ends: &[usize]) -> u8 {
    let mut start = 0;
    let mut acc = 0u8;
    for &end in ends {
        acc ^= digest(&SHA256, black_box(&bytes[start..end])).as_ref()[31];
        start = end;
    }
    acc
}

struct Memory {
    raw: Stats,
    walk: Stats,
    avg_canonical: f64,
    head_hex: String,
    build_secs: f64,
}

fn in_memory(w: &Workload, n: usize) -> Memory {
    let t = Instant::now();
    let chain = build_chain(w, n);
    let build_secs = t.elapsed().as_secs_f64();
    let (bytes, ends) = encode(&chain);
    // Correctness: the baseline hashes exactly the bytes the chain hashed.
    let mut start = 0;
    for (e, &end) in chain.iter().zip(&ends) {
        assert_eq!(
            digest(&SHA256, &bytes[start..end]).as_ref(),
            e.hash.as_slice(),
            "baseline bytes differ from the chain's at entry {}",
            e.seq
        );
        start = end;
    }
    let total = bytes.len();
    let canonical = total - n * (DOMAIN.len() + 32);
    // Interleaved repetitions; the median of each.
    let (mut raw, mut walked) = (Vec::new(), Vec::new());
    for _ in 0..REPS {
        let t = Instant::now();
        black_box(hash_all(&bytes, &ends));
        raw.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        assert!(
            black_box(walk(black_box(&chain))),
            "the in-memory chain does not verify"
        );
        walked.push(t.elapsed().as_secs_f64());
    }
    let head_hex = cellule::audit::hex(&chain[n - 1].hash);
    Memory {
        raw: Stats {
            secs: median(raw),
            entries: n,
            bytes: total,
        },
        walk: Stats {
            secs: median(walked),
            entries: n,
            bytes: total,
        },
        avg_canonical: canonical as f64 / n as f64,
        head_hex,
        build_secs,
    }
}

// ---------------------------------------------------------------------------------------------
// Databases

enum Raw {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Raw {
    /// The same options as the service's SQLite pool, or a plain PostgreSQL pool.
    async fn connect(url: &str) -> Res<Raw> {
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .pragma("secure_delete", "ON")
                .busy_timeout(Duration::from_secs(5));
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options)
                .await?;
            Ok(Raw::Sqlite(pool))
        } else {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(url)
                .await?;
            Ok(Raw::Postgres(pool))
        }
    }

    /// The note insert of `insert_note`, committed alone: no audit entry.
    async fn insert_note(&self, n: &NoteRecord) -> Result<(), sqlx::Error> {
        match self {
            Raw::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query(SQLITE_INSERT)
                    .bind(&n.id)
                    .bind(&n.case_id)
                    .bind(&n.author)
                    .bind(n.author_role)
                    .bind(n.author_sphere)
                    .bind(&n.author_organisation)
                    .bind(n.audience)
                    .bind(&n.corrects)
                    .bind(&n.body)
                    .bind(n.created_at)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await
            }
            Raw::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query(PG_INSERT)
                    .bind(&n.id)
                    .bind(&n.case_id)
                    .bind(&n.author)
                    .bind(n.author_role)
                    .bind(n.author_sphere)
                    .bind(&n.author_organisation)
                    .bind(n.audience)
                    .bind(&n.corrects)
                    .bind(&n.body)
                    .bind(n.created_at)
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

struct Latencies {
    /// Microseconds, sorted.
    us: Vec<f64>,
}

impl Latencies {
    fn new(mut us: Vec<f64>) -> Self {
        us.sort_by(f64::total_cmp);
        Latencies { us }
    }
    /// Nearest-rank percentile.
    fn pct(&self, p: f64) -> f64 {
        let rank = ((p / 100.0) * self.us.len() as f64).ceil() as usize;
        self.us[rank.clamp(1, self.us.len()) - 1]
    }
    fn per_s(&self) -> f64 {
        self.us.len() as f64 / (self.us.iter().sum::<f64>() / 1e6)
    }
    fn json(&self) -> Value {
        json!({
            "p50_us": self.pct(50.0),
            "p99_us": self.pct(99.0),
            "mean_us": self.us.iter().sum::<f64>() / self.us.len() as f64,
            "writes_per_s": self.per_s(),
        })
    }
}

struct Backend {
    name: &'static str,
    seed: Stats,
    verify: Stats,
    audited: Latencies,
    unaudited: Latencies,
}

async fn run_backend(
    name: &'static str,
    url: &str,
    w: &Workload,
    opts: &Options,
    mem: &Memory,
    keys: &Trusted,
    mac: &cellule::crypto::AuditMac,
) -> Res<Backend> {
    let now = Utc::now();
    let db =
        cellule::storage::connect(&DatabaseUrl::new(url), &PoolConfig::default(), true).await?;
    db.authenticate_audit(Arc::new(mac.clone()));
    let result = exercise(db.as_ref(), name, url, w, opts, mem, keys, now).await;
    db.close().await;
    result
}

#[allow(clippy::too_many_arguments)]
async fn exercise(
    db: &dyn Database,
    name: &'static str,
    url: &str,
    w: &Workload,
    opts: &Options,
    mem: &Memory,
    keys: &Trusted,
    now: DateTime<Utc>,
) -> Res<Backend> {
    let n = opts.entries;
    db.create_cellule(
        &NewCellule {
            slug: CelluleSlug::parse(CELLULE)?,
            name: CelluleName::parse("Cellule cas complexes (banc d'essai)")?,
            code: CelluleCode::parse("BEN")?,
            charter: cellule::services::cellules::DEFAULT_CHARTER.to_owned(),
        },
        now,
        // The creation's entry opens the chain: the workload's first entry stands for it, so
        // that the chain is still the in-memory one.
        w.draft(0),
    )
    .await?;

    // Seeding: only the append_audit calls are timed (drafts are built before each one).
    eprintln!("[{name}] seeding {n} entries in batches of {BATCH}…");
    let mut seed_secs = 0.0;
    let mut next = 1;
    while next < n {
        let end = (next + BATCH).min(n);
        let drafts: Vec<Draft> = (next..end).map(|i| w.draft(i)).collect();
        let t = Instant::now();
        let head = db.append_audit(CELLULE, drafts).await?;
        seed_secs += t.elapsed().as_secs_f64();
        assert_eq!(
            head.seq, end as i64,
            "[{name}] unexpected head after seeding"
        );
        next = end;
    }

    eprintln!("[{name}] verifying…");
    let t = Instant::now();
    let report = cellule::services::auditor::verify_chain(db, CELLULE, keys).await?;
    let verify_secs = t.elapsed().as_secs_f64();
    if !report.valid || report.entries_checked != n as i64 || report.head.hash != mem.head_hex {
        return Err(format!(
            "[{name}] verification failed: valid={} entries_checked={} (expected {n}), \
             head {} (expected {}), broken {:?}",
            report.valid, report.entries_checked, report.head.hash, mem.head_hex, report.broken
        )
        .into());
    }

    // 2. Audited vs unaudited note writes on one case.
    eprintln!(
        "[{name}] {} audited and {} unaudited note writes…",
        opts.writes, opts.writes
    );
    let mut rng = Rng::new(7);
    let writer = w.actors[3].clone();
    let case_id = uuid::Uuid::new_v4().to_string();
    let ctx = |rng: &mut Rng| AuditCtx {
        cellule: CELLULE.to_owned(),
        actor: writer.clone(),
        request_id: Some(rng.uuid()),
    };
    let case = NewCase {
        id: case_id.clone(),
        cellule: CELLULE.to_owned(),
        code: "BEN".to_owned(),
        year: now.year(),
        urgency: Urgency::Priority,
        age_band: AgeBand::A35,
        gender: Gender::F,
        commune: Some("66136".to_owned()),
        sector: Some("perpignan-nord".to_owned()),
        needs: Needs::new(vec![Need::Housing, Need::CareAccess]).ok_or("needs")?,
        consent_status: ConsentStatus::Agreed,
        consent_justification: None,
        referring_org: "ccas-perpignan".to_owned(),
        referrer: w.actors[33].subject.clone(),
        linkage_key: None,
        situation: rng.bytes(BODY_BYTES),
        expectations: Some(rng.bytes(200)),
        submitted_at: now,
    };
    let key = WrappedKey {
        id: case_id.clone(),
        cellule: CELLULE.to_owned(),
        case_id: Some(case_id.clone()),
        kek_version: 1,
        wrapped: rng.bytes(60),
    };
    let draft = ctx(&mut rng)
        .entry(Action::SubmitReferral, now)
        .case(&case_id, None);
    let (reference, _) = db.insert_case(&case, &key, draft).await?;

    let writer_role = Role::parse(&writer.role)?;
    let note = |rng: &mut Rng| NoteRecord {
        id: uuid::Uuid::new_v4().to_string(),
        case_id: case_id.clone(),
        author: writer.subject.clone(),
        author_role: writer_role,
        author_sphere: Some(Sphere::City),
        author_organisation: writer.organisation.clone(),
        audience: Audience::Cellule,
        corrects: None,
        body: rng.bytes(BODY_BYTES),
        created_at: Utc::now(),
    };
    let raw = Raw::connect(url).await?;
    let mut audited = Vec::with_capacity(opts.writes);
    let mut unaudited = Vec::with_capacity(opts.writes);
    for i in 0..WARMUP_WRITES + opts.writes {
        // Alternate which path goes first so neither always follows the other.
        for audited_turn in [i % 2 == 0, i % 2 != 0] {
            let record = note(&mut rng);
            let elapsed = if audited_turn {
                let draft = ctx(&mut rng)
                    .entry(Action::WriteNote, record.created_at)
                    .case(&case_id, Some(&reference))
                    .target("note", &record.id);
                let t = Instant::now();
                db.insert_note(CELLULE, &record, draft).await?;
                t.elapsed()
            } else {
                let t = Instant::now();
                raw.insert_note(&record).await?;
                t.elapsed()
            };
            if i >= WARMUP_WRITES {
                let us = elapsed.as_secs_f64() * 1e6;
                if audited_turn {
                    audited.push(us);
                } else {
                    unaudited.push(us);
                }
            }
        }
    }
    raw.close().await;

    let bytes = mem.raw.bytes;
    Ok(Backend {
        name,
        seed: Stats {
            secs: seed_secs,
            entries: n,
            bytes,
        },
        verify: Stats {
            secs: verify_secs,
            entries: n,
            bytes,
        },
        audited: Latencies::new(audited),
        unaudited: Latencies::new(unaudited),
    })
}

// ---------------------------------------------------------------------------------------------
// Report

fn stats_json(s: &Stats, raw: &Stats) -> Value {
    json!({
        "entries": s.entries,
        "seconds": s.secs,
        "entries_per_s": s.rate(),
        "mib_per_s": s.mib_s(),
        "ratio_vs_raw_sha256": s.rate() / raw.rate(),
    })
}

#[tokio::main]
async fn main() -> Res<()> {
    let wall = Instant::now();
    let opts = options();
    let now = Utc::now();
    let n = opts.entries;
    let mut backends = vec!["sqlite"];
    if opts.postgres.is_some() {
        backends.push("postgres");
    }
    println!(
        "audit bench: N = {n} entries, M = {} writes per path, backends: in-memory, {}; \
         figures measured on this machine ({}) in this run only",
        opts.writes,
        backends.join(", "),
        machine()
    );

    let w = Workload::new(now);
    eprintln!("[memory] building and walking a chain of {n} entries…");
    let mem = in_memory(&w, n);
    let keyring = Arc::new(Keyring::generate(now)?);
    let mac = keyring
        .audit_mac()
        .ok_or("the new keyring has no audit MAC key")?;
    let keys = Trusted {
        public_keys: Signer::new(keyring.clone())?.public_keys(),
        macs: keyring.audit_macs(),
        witnessed: Vec::new(),
        witness: None,
    };

    let mut results = Vec::new();
    let dir = tempfile::tempdir()?;
    let sqlite_url = format!("sqlite://{}", dir.path().join("bench.db").display());
    results.push(run_backend("sqlite", &sqlite_url, &w, &opts, &mem, &keys, &mac).await?);
    if let Some(admin) = &opts.postgres {
        let (name, url) = create_pg_database(admin).await?;
        let outcome = run_backend("postgres", &url, &w, &opts, &mem, &keys, &mac).await;
        drop_pg_database(admin, &name).await?;
        results.push(outcome?);
    }

    let raw = &mem.raw;
    println!();
    println!(
        "1. Verification ({n} entries; {:.0} B canonical, {:.0} B hashed per entry; {:.1} MiB)",
        mem.avg_canonical,
        raw.bytes as f64 / n as f64,
        raw.bytes as f64 / MIB
    );
    println!(
        "   {:<36} {:>12} {:>10} {:>9} {:>12}",
        "path", "entries/s", "MiB/s", "seconds", "vs raw"
    );
    let row = |label: &str, s: &Stats| {
        println!(
            "   {:<36} {:>12.0} {:>10.1} {:>9.3} {:>12.3}",
            label,
            s.rate(),
            s.mib_s(),
            s.secs,
            s.rate() / raw.rate()
        );
    };
    row("raw SHA-256 (ring), same bytes", raw);
    row("in-memory chain walk", &mem.walk);
    for b in &results {
        row(&format!("{} verify()", b.name), &b.verify);
    }
    for b in &results {
        row(
            &format!("{} seeding (append_audit x{BATCH})", b.name),
            &b.seed,
        );
    }
    println!(
        "   (in-memory figures: median of {REPS} interleaved runs; chain built in {:.2} s)",
        mem.build_secs
    );
    println!();
    println!(
        "2. Note writes, sequential, {} per path, {BODY_BYTES}-byte body",
        opts.writes
    );
    println!(
        "   {:<10} {:<10} {:>9} {:>9} {:>10}",
        "backend", "path", "p50 µs", "p99 µs", "writes/s"
    );
    for b in &results {
        for (label, l) in [("audited", &b.audited), ("unaudited", &b.unaudited)] {
            println!(
                "   {:<10} {:<10} {:>9.0} {:>9.0} {:>10.0}",
                b.name,
                label,
                l.pct(50.0),
                l.pct(99.0),
                l.per_s()
            );
        }
        println!(
            "   {:<10} added p50 {:+.0} µs; throughput audited/unaudited {:.3}",
            b.name,
            b.audited.pct(50.0) - b.unaudited.pct(50.0),
            b.audited.per_s() / b.unaudited.per_s()
        );
    }

    let report = json!({
        "entries": n,
        "writes": opts.writes,
        "machine": machine(),
        "measured_at": now.to_rfc3339(),
        "hashed_bytes": raw.bytes,
        "avg_canonical_bytes": mem.avg_canonical,
        "raw_sha256": stats_json(raw, raw),
        "in_memory_walk": stats_json(&mem.walk, raw),
        "backends": results.iter().map(|b| json!({
            "backend": b.name,
            "seeding": stats_json(&b.seed, raw),
            "verify": stats_json(&b.verify, raw),
            "note_writes": {
                "audited": b.audited.json(),
                "unaudited": b.unaudited.json(),
                "added_p50_us": b.audited.pct(50.0) - b.unaudited.pct(50.0),
                "throughput_ratio_audited_over_unaudited":
                    b.audited.per_s() / b.unaudited.per_s(),
            },
        })).collect::<Vec<_>>(),
    });
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    std::fs::create_dir_all(&target)?;
    let path = target.join("bench-audit.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
    println!();
    println!(
        "JSON: {}; wall time {:.1} s",
        path.display(),
        wall.elapsed().as_secs_f64()
    );
    Ok(())
}
