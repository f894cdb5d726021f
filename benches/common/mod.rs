//! Helpers shared by the benchmark harnesses (`mod common;` in each).

use std::error::Error;

use sqlx::Connection;

pub type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// A fresh database on the server of `admin_url`; returns its name and URL.
pub async fn create_pg_database(admin_url: &str) -> Res<(String, String)> {
    let name = format!("cellule_bench_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(admin_url).await?;
    // The name is generated above, never input.
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    let mut url = url::Url::parse(admin_url)?;
    url.set_path(&format!("/{name}"));
    Ok((name, url.to_string()))
}

pub async fn drop_pg_database(admin_url: &str, name: &str) -> Res<()> {
    let mut conn = sqlx::PgConnection::connect(admin_url).await?;
    sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

/// `N CPUs, model`, printed with every figure.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    format!("{cpus} CPUs, {model}")
}
