//! Wiring: configuration in, a bound server out.

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::auth::{DevIssuer, TokenVerifier};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::crypto::Keyring;
use crate::http;
use crate::services::AppState;
use crate::services::audit_log::AuditLog;
use crate::services::keys::{KeyError, KeyService, KeyringSource};
use crate::storage::{self, Database};

/// Why the service could not start. Each renders as one line.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot open the database {url}: {cause}")]
    Database { url: String, cause: String },
    #[error(transparent)]
    DevIssuer(#[from] crate::auth::dev_issuer::DevIssuerError),
    #[error(transparent)]
    Verifier(#[from] crate::auth::verifier::VerifierSetupError),
    #[error(transparent)]
    Keys(#[from] crate::services::keys::KeyError),
    #[error(transparent)]
    Policy(#[from] crate::domain::policy::PolicyError),
    #[error("{0}")]
    Files(String),
    #[error(transparent)]
    Web(#[from] crate::web::WebSetupError),
    #[error(transparent)]
    Mail(#[from] crate::services::mail::MailSetupError),
    #[error("cannot listen on {addr}: {cause}")]
    Bind {
        addr: SocketAddr,
        cause: std::io::Error,
    },
}

/// Opens the configured database (applying migrations when asked), after checking that the
/// data directory and the database's files are private ([`check_private_files`]).
pub async fn open_database(
    config: &Config,
    migrate: bool,
) -> Result<Arc<dyn Database>, StartError> {
    check_private_files(config)?;
    let url = config.database_url();
    storage::connect(&url, &config.pool, migrate)
        .await
        .map_err(|e| StartError::Database {
            url: url.redacted(),
            cause: crate::config::one_line(&e.to_string()),
        })
}

/// Refuses to go on when the data directory, the SQLite database's folder or its files
/// (database, write-ahead log, shared memory, journal) can be read by other local users, as
/// for key files; the message names the `chmod` to run. Missing ones are created private later.
pub fn check_private_files(config: &Config) -> Result<(), StartError> {
    let refuse = |e: std::io::Error| StartError::Files(e.to_string());
    let mut dirs = vec![config.data_dir.clone()];
    let mut files = Vec::new();
    if let Some(db) = config.database_url().sqlite_file() {
        if let Some(parent) = db.parent().filter(|p| !p.as_os_str().is_empty()) {
            dirs.push(parent.to_path_buf());
        }
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut name = db.clone().into_os_string();
            name.push(suffix);
            files.push(std::path::PathBuf::from(name));
        }
    }
    for dir in dirs.iter().filter(|d| d.is_dir()) {
        crate::fsutil::check_private_dir(dir).map_err(refuse)?;
    }
    for file in files.iter().filter(|f| f.exists()) {
        crate::fsutil::check_private(file).map_err(refuse)?;
    }
    Ok(())
}

/// Loads the development issuer when it is enabled.
pub fn dev_issuer(config: &Config) -> Result<Option<DevIssuer>, StartError> {
    if config.auth.dev_issuer_enabled() {
        Ok(Some(DevIssuer::load_or_create(
            &config.data_dir,
            &config.auth.dev_issuer,
        )?))
    } else {
        Ok(None)
    }
}

/// Loads the keyring (generating it on first start of a file keyring) and checks it against the
/// database. A wrong or damaged keyring stops here, before any case is touched.
pub async fn open_keys(
    config: &Config,
    db: &dyn Database,
    clock: &dyn Clock,
) -> Result<Arc<KeyService>, StartError> {
    let (keyring, source) = match &config.keyring {
        Some(inline) => (
            Keyring::from_json(inline.expose()).map_err(KeyError::Keyring)?,
            KeyringSource::Inline,
        ),
        None => {
            let path = config.keyring_path();
            let (keyring, created) =
                Keyring::load_or_create(&path, clock.now()).map_err(KeyError::Keyring)?;
            if created {
                tracing::warn!(path = %path.display(), "generated a new keyring: BACK IT UP apart from the database; without it no case can ever be read");
                // Not `eprintln!`, which panics when stderr cannot be written (a closed pipe).
                let _ = std::io::Write::write_fmt(
                    &mut std::io::stderr(),
                    format_args!(
                        "cellule: generated a new keyring at {}. Back it up apart from the database: without it no case can ever be read.\n",
                        path.display()
                    ),
                );
            }
            let mut keyring = keyring;
            if keyring
                .ensure_signing_key(clock.now())
                .map_err(|e| KeyError::Keyring(e.into()))?
            {
                keyring.save(&path).map_err(KeyError::Keyring)?;
                tracing::warn!(path = %path.display(), "added an audit signing key to the keyring");
            }
            if keyring
                .ensure_audit_mac_key(clock.now())
                .map_err(|e| KeyError::Keyring(e.into()))?
            {
                keyring.save(&path).map_err(KeyError::Keyring)?;
                tracing::warn!(path = %path.display(), "added an audit MAC key to the keyring");
            }
            (keyring, KeyringSource::File(path))
        }
    };
    if keyring.audit_signing_key().is_none() {
        return Err(KeyError::Keyring(crate::crypto::KeyringError::Invalid(
            "it has no audit signing key (signing_keys): start once with a keyring file to add one, then pass that file".into(),
        ))
        .into());
    }
    if keyring.audit_mac().is_none() {
        return Err(KeyError::Keyring(crate::crypto::KeyringError::Invalid(
            "it has no audit MAC key (audit_mac_keys): start once with a keyring file to add one, then pass that file".into(),
        ))
        .into());
    }
    let keys = Arc::new(KeyService::new(keyring, source));
    keys.reconcile(db, clock.now()).await?;
    db.authenticate_audit(keys.clone());
    Ok(keys)
}

/// Loads and validates the access policies (embedded defaults, or `policies_dir`).
pub fn load_policies(config: &Config) -> Result<crate::domain::policy::Policies, StartError> {
    Ok(match &config.policies_dir {
        Some(dir) => crate::domain::policy::Policies::load_dir(dir)?,
        None => crate::domain::policy::Policies::embedded()?,
    })
}

/// Builds the shared state from configuration, an opened database and checked keys.
pub fn state(
    config: Config,
    db: Arc<dyn Database>,
    keys: Arc<KeyService>,
    clock: Arc<dyn Clock>,
) -> Result<AppState, StartError> {
    let dev = dev_issuer(&config)?;
    let policies = load_policies(&config)?;
    let verifier = TokenVerifier::new(&config.auth, dev.as_ref(), clock.clone())?;
    let witness = crate::services::witness::Witness::open(
        config.audit.witness_file.as_deref(),
        config.audit.witness_log,
    )
    .map_err(|e| StartError::Files(e.to_string()))?;
    let audit = Arc::new(AuditLog::new(
        db.clone(),
        keys.clone(),
        config.audit.checkpoint_every,
        witness,
    ));
    Ok(AppState {
        audit,
        limits: Arc::new(crate::services::throttle::RateLimits::new(
            &config.rate_limit,
        )),
        admins: Arc::new(config.admins.iter().cloned().collect::<HashSet<_>>()),
        config: Arc::new(config),
        db,
        verifier: Arc::new(verifier),
        clock,
        metrics: Arc::new(crate::telemetry::Metrics::new()),
        keys,
        policies: Arc::new(policies),
    })
}

/// A bound, ready-to-run server.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    web: crate::web::WebState,
    mailer: crate::services::mail::Mailer,
}

impl Application {
    /// Opens the database, applies migrations, loads keys and binds `config.bind`.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        config.validate()?;
        let mailer = crate::services::mail::Mailer::from_config(&config.mail)?;
        // Policies first: a broken policy file stops start-up before anything else happens.
        load_policies(&config)?;
        let db = open_database(&config, true).await?;
        let addr = config.bind;
        let keys = open_keys(&config, db.as_ref(), clock.as_ref()).await?;
        let state = state(config, db, keys, clock)?;
        // Every start records in each cellule's chain which policies it now enforces; a start
        // that cannot record it does not serve.
        crate::services::audit_log::record_policies(
            state.db.as_ref(),
            &state.policies,
            state.clock.now(),
        )
        .await
        .map_err(|e| StartError::Files(format!("cannot record the policies loaded: {e}")))?;
        let web = crate::web::WebState::new(state.clone())?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|cause| StartError::Bind { addr, cause })?;
        Ok(Self {
            listener,
            state,
            web,
            mailer,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until SIGTERM or SIGINT, then drains in-flight requests.
    pub async fn run(self) -> std::io::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `shutdown` completes; in-flight requests get `http.shutdown_grace` to finish.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let db = self.state.db.clone();
        // Every chain head signed (and witnessed) before the first request: entries written
        // before authentication codes existed are then all covered by a signature.
        sign_audit_heads(&self.state.audit, self.state.clock.now()).await;
        let stream = match &self.state.config.audit.stream {
            Some(target) => Some(
                crate::services::audit_stream::AuditStream::start(db.clone(), target)
                    .await
                    .map_err(std::io::Error::other)?,
            ),
            None => None,
        };
        let retention = self.state.config.retention.enabled.then(|| {
            let (db, clock, interval) = (
                db.clone(),
                self.state.clock.clone(),
                self.state.config.retention.interval,
            );
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                loop {
                    match crate::services::cases::run_retention(db.as_ref(), clock.now()).await {
                        Ok(erased) => tracing::info!(erased = erased.len(), "retention run"),
                        Err(e) => tracing::error!(error = %e, "retention run failed"),
                    }
                    tokio::time::sleep(interval).await;
                }
            })
        });
        let checkpoints = {
            let (audit, clock, interval) = (
                self.state.audit.clone(),
                self.state.clock.clone(),
                self.state.config.audit.checkpoint_interval,
            );
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(interval).await;
                    sign_audit_heads(&audit, clock.now()).await;
                }
            })
        };
        // Scheduled notices: reminders the day before, digests of what falls due.
        let notices = {
            let state = self.state.clone();
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                loop {
                    match crate::services::reminders::run_scheduled(&state).await {
                        Ok(n) if n > 0 => tracing::info!(messages = n, "scheduled notices"),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "scheduled notices; will retry"),
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(10 * 60)).await;
                }
            })
        };
        let sessions = {
            let web = self.web.clone();
            let state = self.state.clone();
            tokio::spawn(async move {
                loop {
                    web.purge_sessions().await;
                    // Idempotency keys are kept 24 hours (docs/api.md).
                    if let Err(e) = crate::services::idempotency::purge(&state).await {
                        tracing::warn!(error = %e, "idempotency keys not purged; will retry");
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(15 * 60)).await;
                }
            })
        };
        let outbox = crate::services::outbox::OutboxWorker::start(self.state.clone(), self.mailer);
        let pages = http::Pages {
            router: crate::web::router(self.web),
            not_found: crate::web::not_found,
        };
        let (audit, clock) = (self.state.audit.clone(), self.state.clock.clone());
        let result = http::serve(self.listener, self.state, Some(pages), shutdown).await;
        sessions.abort();
        notices.abort();
        if let Some(task) = retention {
            task.abort();
        }
        checkpoints.abort();
        // The message being sent finishes (and gets its audit entry) before the heads are signed.
        if let Some(worker) = outbox {
            worker.stop().await;
        }
        // Leave every chain head signed (and witnessed) behind us.
        sign_audit_heads(&audit, clock.now()).await;
        if let Some(stream) = stream {
            stream.stop().await;
        }
        db.close().await;
        result
    }
}

/// Signs a checkpoint for every audit chain that moved since its last one (periodic task).
async fn sign_audit_heads(audit: &AuditLog, now: chrono::DateTime<chrono::Utc>) {
    match audit
        .checkpoint_all(crate::audit::CheckpointKind::Periodic, now)
        .await
    {
        Ok(signed) if !signed.is_empty() => {
            tracing::info!(cellules = signed.len(), "signed audit checkpoints");
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "audit checkpoints failed; will retry"),
    }
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
