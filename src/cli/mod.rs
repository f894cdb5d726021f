//! The `cellule` command line. Every command takes `--config`, `--data-dir` and `--database`;
//! `serve` (the default) also takes `--bind`. Errors print one line on stderr and exit non-zero
//! (2 for bad usage or configuration, 1 for everything else).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

mod audit;
mod backup;
pub mod demo;
mod keys;
mod outbox;
mod routing;

use crate::app::{self, Application, StartError};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, Overrides};
use crate::domain::{
    CelluleCode, CelluleName, CelluleSlug, MembershipSpec, Organisation, Role, Sphere, Subject,
};
use crate::services::cellules;

#[derive(Debug, Parser)]
#[command(
    name = "cellule",
    version,
    about = "Confidential coordination service for CLSM cellules cas complexes"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Configuration file (default: ./cellule.toml when present; env CELLULE_CONFIG)
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory: SQLite database and generated keys (env CELLULE_DATA_DIR)
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL, sqlite://… or postgres://… (env CELLULE_DATABASE)
    #[arg(long, global = true, value_name = "URL")]
    pub database: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API (the default command)
    Serve {
        /// Listen address (env CELLULE_BIND; default 127.0.0.1:8080)
        #[arg(long, value_name = "ADDR")]
        bind: Option<std::net::SocketAddr>,
    },
    /// Apply pending database migrations and exit
    Migrate,
    /// Manage cellules
    #[command(subcommand)]
    Cellule(CelluleCommand),
    /// Manage memberships
    #[command(subcommand)]
    Member(MemberCommand),
    /// Manage the keyring: status, rotation, retirement of old KEK versions
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Retention of closed and declined cases
    #[command(subcommand)]
    Retention(RetentionCommand),
    /// The audit log: verify, export, sign checkpoints, retention
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Back up the SQLite database while the service runs (`backup --output FILE`), or check a
    /// backup (`backup verify FILE`); the keyring is copied apart (`--keyring-output`)
    Backup(BackupArgs),
    /// Restore a SQLite backup into the configured database (stop the service first)
    Restore {
        /// The backup file
        file: PathBuf,
        /// Replace a database that exists
        #[arg(long)]
        force: bool,
    },
    /// The routing directory (interlocutors and ordered rules) of a cellule, as TOML
    #[command(subcommand)]
    Routing(RoutingCommand),
    /// Notifications waiting to be sent, sent or failed (`list`), or a failed one put back in
    /// line (`retry`)
    #[command(subcommand)]
    Outbox(OutboxCommand),
    /// Set up a demo cellule with synthetic cases, members, sessions and an agenda, then print
    /// tokens and curl commands to try the API at once (refused if the cellule already exists)
    Demo {
        /// Slug of the demo cellule
        #[arg(long, default_value = demo::DEFAULT_SLUG)]
        slug: String,
        /// Lifetime of the printed tokens, e.g. 12h (at most auth.dev_issuer.max_ttl)
        #[arg(long, default_value = "12h", value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
    /// Print a token from the built-in development issuer, alone on stdout
    Token {
        /// Subject of the token
        sub: String,
        /// Lifetime, e.g. 15m, 2h
        #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// KEK versions and how many data keys each one wraps
    Status,
    /// Add a KEK version, then re-wrap every data key with it (resumable)
    Rotate {
        /// Only finish an interrupted re-wrap; add no new version
        #[arg(long)]
        resume: bool,
        /// Keys re-wrapped per transaction
        #[arg(long, default_value_t = 500)]
        batch: i64,
    },
    /// Remove a KEK version from the keyring (refused while a data key still uses it)
    Retire { version: u32 },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify the hash chains and checkpoint signatures (every cellule, or one); exits 1 when
    /// a chain is broken
    Verify {
        #[arg(long)]
        cellule: Option<String>,
    },
    /// Export a cellule's audit log (JSON Lines or a FHIR R4 Bundle) to stdout or a file
    Export {
        #[arg(long)]
        cellule: String,
        /// jsonl or fhir
        #[arg(long, default_value = "jsonl")]
        format: String,
        /// Write to this file (created 0600) instead of stdout
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Sign a checkpoint of every chain head that moved (or of one cellule's)
    Checkpoint {
        #[arg(long)]
        cellule: Option<String>,
    },
    /// Audit retention: remove a cellule's entries older than a date, leaving a signed
    /// checkpoint that anchors the rest of the chain
    Purge {
        #[arg(long)]
        cellule: String,
        /// Remove entries recorded before this day (YYYY-MM-DD, UTC)
        #[arg(long)]
        before: chrono::NaiveDate,
        /// Confirm the removal
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BackupArgs {
    #[command(subcommand)]
    pub command: Option<BackupCommand>,
    /// The backup file to write (new; created 0600)
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Also copy the keyring into the backup file (only for a store that is itself encrypted)
    #[arg(long)]
    pub with_keyring: bool,
    /// Copy the keyring into this other file (new; created 0600)
    #[arg(long, value_name = "FILE")]
    pub keyring_output: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Check a backup: SQLite integrity, KEK check values against a keyring, audit chains;
    /// exits 1 when a check fails
    Verify {
        /// The backup file
        file: PathBuf,
        /// The keyring to check it with (default: the backup's own, else the configured one)
        #[arg(long, value_name = "FILE")]
        keyring: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum RoutingCommand {
    /// Replace a cellule's directory with a TOML file (`-` for stdin); the file is checked
    /// completely first, and a refused file changes nothing
    Import {
        #[arg(long)]
        cellule: String,
        /// TOML file (`[[interlocutor]]` … `[[rule]]` …), or `-` for stdin
        file: PathBuf,
    },
    /// Write a cellule's directory as TOML to stdout or a file (reads back with `import`)
    Export {
        #[arg(long)]
        cellule: String,
        /// Write to this file instead of stdout
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// One line per message: id, created, status, attempts, cellule, kind, organisation,
    /// address, last error (never its subject or text)
    List {
        /// pending, sending, sent or failed
        #[arg(long)]
        status: Option<String>,
    },
    /// Put a failed message back to pending (attempts from zero)
    Retry {
        id: String,
        /// Also a message whose send was interrupted ("outcome unknown"): it may arrive twice
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// Erase every case past its cellule's retention now
    Run,
}

#[derive(Debug, Subcommand)]
pub enum CelluleCommand {
    /// Create a cellule
    Add {
        slug: String,
        /// Display name
        #[arg(long)]
        name: String,
        /// Reference code, 2-6 letters (default: the slug's first three letters)
        #[arg(long)]
        code: Option<String>,
    },
    /// List cellules
    List,
}

#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Create or replace a membership
    Add {
        cellule: String,
        sub: String,
        /// referrer, member, coordinator or auditor
        #[arg(long)]
        role: String,
        /// city or psychiatry
        #[arg(long)]
        sphere: Option<String>,
        /// Organisation of the person
        #[arg(long)]
        org: Option<String>,
        /// An organisation invited case by case (members only)
        #[arg(long)]
        guest: bool,
    },
    /// Remove a membership
    Remove { cellule: String, sub: String },
    /// List the memberships of a cellule
    List { cellule: String },
}

/// A failure of a command: a one-line message and an exit code.
#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub code: u8,
}

impl CliError {
    fn usage(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: 2,
        }
    }

    fn failure(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: 1,
        }
    }
}

impl From<StartError> for CliError {
    fn from(e: StartError) -> Self {
        let code = if matches!(e, StartError::Config(_)) {
            2
        } else {
            1
        };
        Self {
            message: crate::config::one_line(&e.to_string()),
            code,
        }
    }
}

impl From<crate::error::Error> for CliError {
    fn from(e: crate::error::Error) -> Self {
        let problem = e.problem();
        let mut message = problem.detail.unwrap_or(problem.title);
        for item in problem.errors {
            if let crate::http::problem::ProblemItem::Field(field) = item {
                message = format!(
                    "{}: {}",
                    field.pointer.trim_start_matches('/'),
                    field.detail
                );
            }
        }
        Self {
            message,
            code: if e.status().is_client_error() { 2 } else { 1 },
        }
    }
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}

fn load_config(
    global: &GlobalArgs,
    bind: Option<std::net::SocketAddr>,
) -> Result<Config, CliError> {
    let overrides = Overrides {
        data_dir: global.data_dir.clone(),
        database: global.database.clone(),
        bind,
    };
    Config::load(global.config.as_deref(), &overrides).map_err(|e| CliError::usage(e.to_string()))
}

fn arg<T>(what: &str, parsed: Result<T, crate::domain::Invalid>) -> Result<T, CliError> {
    parsed.map_err(|e| CliError::usage(format!("{what}: {e}")))
}

pub async fn run(cli: Cli) -> Result<(), CliError> {
    let command = cli.command.unwrap_or(Command::Serve { bind: None });
    let bind = match &command {
        Command::Serve { bind } => *bind,
        _ => None,
    };
    let config = load_config(&cli.global, bind)?;
    let clock = SystemClock;
    match command {
        Command::Serve { .. } => serve(config).await,
        Command::Migrate => {
            let url = config.database_url().redacted();
            let db = app::open_database(&config, true).await?;
            db.close().await;
            println!("migrations applied to {url}");
            Ok(())
        }
        Command::Keys(cmd) => keys::run(&config, cmd).await,
        Command::Backup(args) => backup::run(&config, &clock, args).await,
        Command::Restore { file, force } => backup::restore(&config, &file, force).await,
        Command::Routing(cmd) => routing::run(&config, &clock, cmd).await,
        Command::Outbox(cmd) => outbox::run(&config, &clock, cmd).await,
        Command::Demo { slug, ttl } => {
            let slug = arg("slug", CelluleSlug::parse(&slug))?;
            demo::run(&config, &slug, ttl).await
        }
        Command::Audit(cmd) => {
            let db = app::open_database(&config, true).await?;
            let result = audit::run(&config, db.clone(), &clock, cmd).await;
            db.close().await;
            result
        }
        Command::Retention(RetentionCommand::Run) => {
            let db = app::open_database(&config, true).await?;
            let result = async {
                app::open_keys(&config, db.as_ref(), &clock).await?;
                crate::services::cases::run_retention(db.as_ref(), clock.now())
                    .await
                    .map_err(CliError::from)
            }
            .await;
            db.close().await;
            let erased = result?;
            println!("retention: {} case(s) erased", erased.len());
            for reference in erased {
                println!("erased {reference}");
            }
            Ok(())
        }
        Command::Token { sub, ttl } => {
            let subject = arg("subject", Subject::parse(&sub))?;
            let dev = app::dev_issuer(&config)?.ok_or_else(|| {
                CliError::usage(
                    "the development issuer is disabled (auth.dev_issuer.enabled = false, or an OpenID Connect issuer is configured)",
                )
            })?;
            if let Some(prefix) = config
                .auth
                .oidc_subject_prefixes()
                .into_iter()
                .find(|p| subject.as_str().starts_with(p.as_str()))
            {
                return Err(CliError::usage(format!(
                    "subjects starting with {prefix:?} belong to an OpenID Connect issuer; the development issuer does not sign them"
                )));
            }
            let token = dev
                .mint(&subject, ttl, clock.now())
                .map_err(|e| CliError::usage(e.to_string()))?;
            println!("{token}");
            Ok(())
        }
        Command::Cellule(CelluleCommand::Add { slug, name, code }) => {
            let slug = arg("slug", CelluleSlug::parse(&slug))?;
            let name = arg("name", CelluleName::parse(&name))?;
            let code = code
                .map(|c| arg("code", CelluleCode::parse(&c)))
                .transpose()?;
            let db = app::open_database(&config, true).await?;
            // The creation's entry opens the cellule's chain: appending needs the keyring's
            // audit MAC key.
            let result = async {
                app::open_keys(&config, db.as_ref(), &clock).await?;
                cellules::create(
                    db.as_ref(),
                    &clock,
                    &cellules::Admin::cli(),
                    slug,
                    name,
                    code,
                )
                .await
                .map_err(CliError::from)
            }
            .await;
            db.close().await;
            let cellule = result?;
            println!(
                "created cellule {} (code {})",
                cellule.slug,
                cellule.code.as_str()
            );
            Ok(())
        }
        Command::Cellule(CelluleCommand::List) => {
            let db = app::open_database(&config, true).await?;
            let result = db.list_cellules().await;
            db.close().await;
            for c in result.map_err(|e| CliError::failure(e.to_string()))? {
                println!("{}\t{}\t{}", c.slug, c.code.as_str(), c.name.as_str());
            }
            Ok(())
        }
        Command::Member(MemberCommand::Add {
            cellule,
            sub,
            role,
            sphere,
            org,
            guest,
        }) => {
            let slug = arg("cellule", CelluleSlug::parse(&cellule))?;
            let subject = arg("subject", Subject::parse(&sub))?;
            let role = arg("role", Role::parse(&role))?;
            let sphere = sphere
                .map(|s| arg("sphere", Sphere::parse(&s)))
                .transpose()?;
            let org = org
                .map(|o| arg("org", Organisation::parse(&o)))
                .transpose()?;
            let spec = MembershipSpec::new(role, sphere, org, guest)
                .map_err(|(field, e)| CliError::usage(format!("{field}: {e}")))?;
            let admins = config.admins.iter().cloned().collect();
            let db = app::open_database(&config, true).await?;
            let result = async {
                app::open_keys(&config, db.as_ref(), &clock).await?;
                cellules::put_member(
                    db.as_ref(),
                    &clock,
                    &admins,
                    &cellules::Admin::cli(),
                    &slug,
                    &subject,
                    &spec,
                )
                .await
                .map_err(CliError::from)
            }
            .await;
            db.close().await;
            let (m, created, _) = result?;
            println!(
                "{} membership of {} in {} as {}",
                if created { "created" } else { "updated" },
                m.subject,
                m.cellule,
                m.spec.role.as_str()
            );
            Ok(())
        }
        Command::Member(MemberCommand::Remove { cellule, sub }) => {
            let slug = arg("cellule", CelluleSlug::parse(&cellule))?;
            let subject = arg("subject", Subject::parse(&sub))?;
            let db = app::open_database(&config, true).await?;
            let result = async {
                app::open_keys(&config, db.as_ref(), &clock).await?;
                cellules::remove_member(
                    db.as_ref(),
                    &clock,
                    &cellules::Admin::cli(),
                    &slug,
                    &subject,
                )
                .await
                .map_err(CliError::from)
            }
            .await;
            db.close().await;
            if result?.is_some() {
                println!("removed membership of {subject} in {slug}");
                Ok(())
            } else {
                Err(CliError::failure(format!(
                    "no membership of {subject} in {slug}"
                )))
            }
        }
        Command::Member(MemberCommand::List { cellule }) => {
            let slug = arg("cellule", CelluleSlug::parse(&cellule))?;
            let db = app::open_database(&config, true).await?;
            let cellule = db.get_cellule(&slug).await;
            let result = db.list_members(&slug).await;
            db.close().await;
            if cellule
                .map_err(|e| CliError::failure(e.to_string()))?
                .is_none()
            {
                return Err(CliError::failure(format!("no cellule {slug}")));
            }
            for m in result.map_err(|e| CliError::failure(e.to_string()))? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    m.subject,
                    m.spec.role.as_str(),
                    m.spec.sphere.map_or("-", |s| s.as_str()),
                    m.spec.organisation.as_ref().map_or("-", |o| o.as_str()),
                    if m.spec.guest { "guest" } else { "-" }
                );
            }
            Ok(())
        }
    }
}

async fn serve(config: Config) -> Result<(), CliError> {
    crate::telemetry::init(&config.log);
    let dev_enabled = config.auth.dev_issuer_enabled();
    let backend = config.database_url().redacted();
    let app = Application::build_with_clock(config, Arc::new(SystemClock)).await?;
    let addr = app
        .local_addr()
        .map_err(|e| CliError::failure(e.to_string()))?;
    tracing::info!(%addr, database = %backend, "cellule listening");
    if dev_enabled {
        tracing::warn!(
            "development token issuer enabled: mint tokens with `cellule token <sub>`; disable it in production"
        );
    }
    app.run()
        .await
        .map_err(|e| CliError::failure(format!("server error: {e}")))
}
