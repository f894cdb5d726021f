//! Upgrades on both backends: a database written by an earlier release keeps what it stored
//! when the service migrates it.

use std::borrow::Cow;

use sqlx::Connection;
use sqlx::migrate::Migrator;

use crate::backend_tests;
use crate::helpers::{Backend, PgDatabase};

/// The migrations up to and including `version`.
fn up_to(mut migrator: Migrator, version: i64) -> Migrator {
    let kept: Vec<_> = migrator
        .migrations
        .iter()
        .filter(|m| m.version <= version)
        .cloned()
        .collect();
    migrator.migrations = Cow::Owned(kept);
    migrator
}

/// A case row as release 0008 stored it, with its deferral count (then on the case row).
fn case_of_0008(n: u32, times_deferred: i64, blob: &str, at: &str) -> String {
    format!(
        "INSERT INTO cases (id, cellule, reference, status, urgency, age_band, gender, needs, \
         consent_status, referring_org, referrer, times_deferred, situation, submitted_at, \
         updated_at) VALUES ('case-{n}', 'c', 'C-2026-000{n}', 'accepted', 'routine', '30-39', \
         'f', '[\"housing\"]', 'agreed', 'ccas', 'ref', {times_deferred}, {blob}, {at}, {at})"
    )
}

/// Rows as release 0008 stored them: a case deferred twice, one of them by the draft agenda of
/// a session never published; another deferred once, by a published agenda.
fn rows_of_0008(blob: &str) -> Vec<String> {
    let at = "'2026-01-05T10:00:00Z'";
    vec![
        format!("INSERT INTO cellules (slug, name, code, created_at) VALUES ('c', 'C', 'C', {at})"),
        case_of_0008(1, 2, blob, at),
        case_of_0008(2, 0, blob, at),
        format!(
            "INSERT INTO sessions (id, cellule, starts_at, local_start, time_zone, \
             duration_minutes, location, status, created_at) VALUES ('s-1', 'c', {at}, \
             '2026-01-05T11:00:00', 'Europe/Paris', 120, 'Mairie', 'planned', {at})"
        ),
        "INSERT INTO agenda_deferrals (session_id, case_id) VALUES ('s-1', 'case-1')".to_owned(),
        case_of_0008(3, 1, blob, at),
        format!(
            "INSERT INTO sessions (id, cellule, starts_at, local_start, time_zone, \
             duration_minutes, location, status, published_at, created_at) VALUES ('s-2', 'c', \
             {at}, '2026-01-05T11:00:00', 'Europe/Paris', 120, 'Mairie', 'planned', {at}, {at})"
        ),
        "INSERT INTO agenda_deferrals (session_id, case_id) VALUES ('s-2', 'case-3')".to_owned(),
    ]
}

/// What the upgrade must keep: the counts of the deferred cases less the draft's deferral (since
/// PostgreSQL's 0015 and SQLite's 0012, publication counts a deferral), no count for the other
/// case, the draft session's deferral (on PostgreSQL, in the session's set since 0013).
fn kept(backend: Backend) -> [(&'static str, i64); 4] {
    [
        (
            "SELECT count(*) FROM case_deferrals WHERE case_id = 'case-1' AND times = 1",
            1,
        ),
        (
            "SELECT count(*) FROM case_deferrals WHERE case_id = 'case-3' AND times = 1",
            1,
        ),
        ("SELECT count(*) FROM case_deferrals", 2),
        match backend {
            Backend::Sqlite => (
                "SELECT count(*) FROM agenda_deferrals WHERE session_id = 's-1' AND case_id = 'case-1'",
                1,
            ),
            Backend::Postgres => (
                "SELECT count(*) FROM session_deferrals \
                 WHERE session_id = 's-1' AND case_ids = ARRAY['case-1']",
                1,
            ),
        },
    ]
}

/// Migrates a fresh database up to 0008, writes [`rows_of_0008`], upgrades it and checks
/// [`kept`]: one body for both connection types.
macro_rules! upgrade {
    ($backend:expr, $connection:ty, $url:expr, $migrations:literal, $blob:expr) => {{
        let mut c = <$connection>::connect($url).await.expect("connection");
        up_to(sqlx::migrate!($migrations), 8)
            .run(&mut c)
            .await
            .expect("migrations up to 0008");
        for s in rows_of_0008($blob) {
            sqlx::raw_sql(&s)
                .execute(&mut c)
                .await
                .unwrap_or_else(|e| panic!("{s}: {e}"));
        }
        sqlx::migrate!($migrations)
            .run(&mut c)
            .await
            .expect("upgrade");
        for (query, expected) in kept($backend) {
            let n: i64 = sqlx::query_scalar(query)
                .fetch_one(&mut c)
                .await
                .unwrap_or_else(|e| panic!("{query}: {e}"));
            assert_eq!(n, expected, "{query}");
        }
        c.close().await.ok();
    }};
}

async fn deferral_counts_survive_the_upgrade(backend: Backend) {
    match backend {
        Backend::Sqlite => {
            let dir = crate::helpers::private_tempdir();
            let url = format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display());
            upgrade!(
                backend,
                sqlx::SqliteConnection,
                &url,
                "migrations/sqlite",
                "X'00'"
            );
        }
        Backend::Postgres => {
            let db = PgDatabase::create().await;
            upgrade!(
                backend,
                sqlx::PgConnection,
                &db.url,
                "migrations/postgres",
                "'\\x00'::bytea"
            );
            // 0012: the deferral counts leave room for updates on their page, and case sets
            // are compressed with lz4 where the server has it.
            let mut c = sqlx::PgConnection::connect(&db.url)
                .await
                .expect("connection");
            let options: Vec<String> = sqlx::query_scalar(
                "SELECT unnest(reloptions) FROM pg_class WHERE oid = 'case_deferrals'::regclass",
            )
            .fetch_all(&mut c)
            .await
            .expect("reloptions");
            assert_eq!(options, ["fillfactor=50"]);
            let lz4: bool = sqlx::query_scalar(
                "SELECT 'lz4' = ANY(enumvals) FROM pg_settings \
                 WHERE name = 'default_toast_compression'",
            )
            .fetch_one(&mut c)
            .await
            .expect("lz4 support");
            let method: String = sqlx::query_scalar(
                "SELECT attcompression::text FROM pg_attribute \
                 WHERE attrelid = 'audit_entries'::regclass AND attname = 'cases'",
            )
            .fetch_one(&mut c)
            .await
            .expect("compression");
            assert_eq!(method, if lz4 { "l" } else { "" });
            // 0014: the agenda pool is read from its own partial index, and autovacuum keeps
            // the cases' pages visible for that index-only scan.
            let pool: String = sqlx::query_scalar(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'cases_agenda_pool'",
            )
            .fetch_one(&mut c)
            .await
            .expect("the pool index");
            assert!(pool.contains("INCLUDE") && pool.contains("WHERE"), "{pool}");
            let options: Vec<String> = sqlx::query_scalar(
                "SELECT unnest(reloptions) FROM pg_class WHERE oid = 'cases'::regclass ORDER BY 1",
            )
            .fetch_all(&mut c)
            .await
            .expect("reloptions");
            assert_eq!(
                options,
                [
                    "autovacuum_vacuum_insert_scale_factor=0.01",
                    "autovacuum_vacuum_scale_factor=0.01"
                ]
            );
            c.close().await.ok();
        }
    }
}

backend_tests!(deferral_counts_survive_the_upgrade);
