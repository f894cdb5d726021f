//! Typed configuration.
//!
//! Layers, each overriding the previous one:
//! 1. built-in defaults (nothing to configure for the embedded default);
//! 2. an optional TOML file: `--config PATH`, `CELLULE_CONFIG`, or `./cellule.toml` when present;
//! 3. `CELLULE_*` environment variables (`CELLULE_DATA_DIR`, `CELLULE_DATABASE`, `CELLULE_BIND`,
//!    `CELLULE_ADMINS=a,b`; nested keys with `__`, e.g. `CELLULE_HTTP__BODY_LIMIT_BYTES`);
//! 4. command-line flags.
//!
//! Unknown keys are errors, so a typo never silently falls back to a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use jsonwebtoken::Algorithm;
use secrecy::{ExposeSecret, SecretString};

mod limits;
mod mail;
mod pool;
pub use limits::{Budget, HttpConfig, RateLimitConfig};
pub use mail::{MailConfig, MailTransport, SmtpConfig, SmtpSecurity, is_loopback_host};
pub use pool::{PoolConfig, SqliteSynchronous};
use serde::{Deserialize, Deserializer, Serialize};

/// The most clock skew ever tolerated on `exp`/`nbf`.
pub const MAX_LEEWAY_SECONDS: u64 = 60;

/// Full service configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the SQLite database and generated keys live.
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; defaults to `sqlite://<data_dir>/cellule.db`.
    pub database: Option<DatabaseUrl>,
    /// Address `serve` listens on.
    pub bind: SocketAddr,
    /// Deployment administrators (token subjects). They manage cellules and memberships and never
    /// read case content.
    #[serde(deserialize_with = "string_or_list")]
    pub admins: Vec<String>,
    /// Keyring file (default `<data_dir>/keyring.json`, generated on first start).
    pub keyring_file: Option<PathBuf>,
    /// The whole keyring JSON (`CELLULE_KEYRING`); takes precedence over the file. Read-only:
    /// rotation needs a file.
    pub keyring: Option<SecretText>,
    /// Folder of Cedar policies (`schema.cedarschema` and `*.cedar`); the defaults of
    /// `policies/` compiled into the binary when unset.
    pub policies_dir: Option<PathBuf>,
    pub http: HttpConfig,
    pub rate_limit: RateLimitConfig,
    pub pool: PoolConfig,
    pub auth: AuthConfig,
    pub log: LogConfig,
    pub retention: RetentionConfig,
    pub audit: AuditConfig,
    pub web: WebConfig,
    pub mail: MailConfig,
}

/// The web application (`crate::web`): its address as people open it, and its sessions.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// The address people open (`https://cellule.example.fr`, no path): redirect URIs given to
    /// the OpenID providers and the `Origin` check derive from it. Defaults to `http://<bind>`.
    /// `https`, or `http` on a loopback address only.
    pub base_url: Option<url::Url>,
    /// A session unused this long ends.
    #[serde(with = "humantime_serde")]
    pub session_idle: Duration,
    /// A session ends this long after sign-in, used or not.
    #[serde(with = "humantime_serde")]
    pub session_absolute: Duration,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            base_url: None,
            session_idle: Duration::from_secs(30 * 60),
            session_absolute: Duration::from_secs(10 * 3600),
        }
    }
}

/// The web application's sign-in at one OpenID Connect issuer (authorization code flow with
/// PKCE): the client registered there for `web.base_url`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebClientConfig {
    /// The client id registered at the issuer; ID tokens must name it in `aud`.
    pub client_id: String,
    /// The client secret (`client_secret_basic`); none for a public client.
    #[serde(default)]
    pub client_secret: Option<SecretText>,
    /// The button's text on the sign-in page (`ProConnect`, `Pro Santé Connect`…).
    #[serde(default)]
    pub label: Option<String>,
    /// Scopes asked for besides `openid`.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// Signed checkpoints of the audit log (see `crate::audit`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Sign the chain head once this many entries accumulated since the last checkpoint
    /// (0 = only by time and on demand).
    pub checkpoint_every: i64,
    /// Sign every chain head that moved, this often.
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// Append every signed checkpoint to this file (JSON Lines, fsynced), outside the
    /// database: verification reads it to catch a truncated chain.
    pub witness_file: Option<PathBuf>,
    /// Also log every signed checkpoint as one structured line (for journald or a SIEM).
    pub witness_log: bool,
    /// Stream every committed entry as one JSON line, in chain order: `stdout` or a file path
    /// (appended). Off when absent.
    pub stream: Option<String>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(15 * 60),
            witness_file: None,
            witness_log: true,
            stream: None,
        }
    }
}

/// The retention job run by the server (also `cellule retention run`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    pub enabled: bool,
    /// Time between two runs; the first run happens one minute after start.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(24 * 3600),
        }
    }
}

/// A secret given as text; `Debug` shows nothing.
#[derive(Clone)]
pub struct SecretText(SecretString);

impl SecretText {
    pub fn new(text: impl Into<String>) -> Self {
        Self(SecretString::from(text.into()))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretText(<redacted>)")
    }
}

impl<'de> Deserialize<'de> for SecretText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(SecretText::new)
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("cellule-data"),
            database: None,
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admins: Vec::new(),
            keyring_file: None,
            keyring: None,
            policies_dir: None,
            http: HttpConfig::default(),
            rate_limit: RateLimitConfig::default(),
            pool: PoolConfig::default(),
            auth: AuthConfig::default(),
            log: LogConfig::default(),
            retention: RetentionConfig::default(),
            audit: AuditConfig::default(),
            web: WebConfig::default(),
            mail: MailConfig::default(),
        }
    }
}

/// Token verification.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, at most 60 seconds.
    pub leeway_seconds: u64,
    /// Longest lifetime (`exp - iat`) of an accepted token, for every issuer that does not set
    /// its own (the development issuer included).
    #[serde(with = "humantime_serde")]
    pub max_token_lifetime: Duration,
    pub dev_issuer: DevIssuerConfig,
    /// External OpenID Connect issuers (Keycloak, Pro Santé Connect, ProConnect…).
    pub issuers: Vec<IssuerConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            leeway_seconds: 30,
            max_token_lifetime: DEFAULT_MAX_TOKEN_LIFETIME,
            dev_issuer: DevIssuerConfig::default(),
            issuers: Vec::new(),
        }
    }
}

/// The default of `auth.max_token_lifetime`: a working day.
pub const DEFAULT_MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 3600);

impl AuthConfig {
    /// Whether the development issuer is on: as configured, or by default only when no OpenID
    /// Connect issuer is configured.
    pub fn dev_issuer_enabled(&self) -> bool {
        self.dev_issuer.enabled.unwrap_or(self.issuers.is_empty())
    }

    /// The subject prefixes of the OpenID Connect issuers: the development issuer's subjects
    /// never start with one of them.
    pub fn oidc_subject_prefixes(&self) -> Vec<String> {
        self.issuers
            .iter()
            .map(|i| i.subject_prefix.clone())
            .collect()
    }
}

/// The built-in development issuer (EdDSA key kept in the data directory).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DevIssuerConfig {
    /// Accept tokens minted by `cellule token`. Unset: on when no OpenID Connect issuer is
    /// configured, off otherwise. Turn off in production.
    pub enabled: Option<bool>,
    pub issuer: String,
    pub audience: String,
    /// Longest lifetime `cellule token --ttl` may ask for.
    #[serde(with = "humantime_serde")]
    pub max_ttl: Duration,
}

impl Default for DevIssuerConfig {
    fn default() -> Self {
        Self {
            enabled: None,
            issuer: "cellule-dev".to_owned(),
            audience: "cellule".to_owned(),
            max_ttl: DEFAULT_MAX_TOKEN_LIFETIME,
        }
    }
}

/// One trusted OIDC issuer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// Exact `iss` value.
    pub issuer: String,
    /// Required `aud` value.
    pub audience: String,
    /// Algorithms accepted from this issuer (asymmetric only: RS*, PS*, ES*, EdDSA).
    pub algorithms: Vec<Algorithm>,
    /// Where the issuer publishes its keys (https, or http on a loopback address for tests).
    #[serde(default)]
    pub jwks_url: Option<url::Url>,
    /// Static public keys, used instead of a JWKS URL.
    #[serde(default)]
    pub public_keys: Vec<StaticKey>,
    /// Prepended to `sub` so that two issuers can never produce the same subject. Required
    /// when the development issuer is on, whose subjects never start with it.
    #[serde(default)]
    pub subject_prefix: String,
    /// Longest lifetime (`exp - iat`) of this issuer's tokens; `auth.max_token_lifetime` when
    /// unset.
    #[serde(default, with = "humantime_serde")]
    pub max_token_lifetime: Option<Duration>,
    /// Sign-in to the web application through this issuer; absent: API tokens only.
    #[serde(default)]
    pub web: Option<WebClientConfig>,
}

/// A public key given in configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticKey {
    /// Key id matched against the token's `kid`; a key without `kid` matches tokens without one.
    #[serde(default)]
    pub kid: Option<String>,
    /// PEM-encoded public key (RSA, EC or Ed25519 `PUBLIC KEY`).
    pub pem: String,
}

/// Log output.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A tracing filter such as `info` or `cellule=debug` (`RUST_LOG` overrides it).
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info,sqlx=warn".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// A database URL. It may carry a password, so `Debug` shows it with the password removed.
#[derive(Clone)]
pub struct DatabaseUrl(SecretString);

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(SecretString::from(url.into()))
    }

    /// The URL with its credentials, for the driver only.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The URL without password or query string: safe for messages and logs.
    pub fn redacted(&self) -> String {
        match url::Url::parse(self.expose()) {
            Ok(mut url) => {
                if url.password().is_some() {
                    let _ = url.set_password(Some("***"));
                }
                url.set_query(None);
                url.to_string()
            }
            Err(_) => "<unparsable database URL>".to_owned(),
        }
    }

    /// The file of a SQLite URL (`None` for PostgreSQL and in-memory databases).
    pub fn sqlite_file(&self) -> Option<PathBuf> {
        let url = self.expose();
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))?;
        let path = rest.split('?').next().unwrap_or_default();
        (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
    }

    pub fn backend(&self) -> Result<Backend, ConfigError> {
        let url = self.expose();
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(ConfigError::Invalid(
                "database URL must start with sqlite:// or postgres://".to_owned(),
            ))
        }
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("DatabaseUrl")
            .field(&self.redacted())
            .finish()
    }
}

impl<'de> Deserialize<'de> for DatabaseUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(DatabaseUrl::new)
    }
}

/// Which storage implementation a URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(String),
    #[error("configuration: {0}")]
    Invalid(String),
}

/// Values given on the command line; `None` leaves the lower layers in force.
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<SocketAddr>,
}

impl Config {
    /// Loads the layers described in the module docs. `file` is an explicit `--config` path.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let mut figment = Figment::new();
        let explicit = file
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("CELLULE_CONFIG").map(PathBuf::from));
        match explicit {
            Some(path) => {
                if !path.is_file() {
                    return Err(ConfigError::Load(format!(
                        "configuration file {} does not exist",
                        path.display()
                    )));
                }
                figment = figment.merge(Toml::file_exact(path));
            }
            None => {
                if Path::new("cellule.toml").is_file() {
                    figment = figment.merge(Toml::file_exact("cellule.toml"));
                }
            }
        }
        figment = figment
            .merge(
                Env::prefixed("CELLULE_")
                    .split("__")
                    .ignore(&["CONFIG", "KEYRING"])
                    .ignore(mail::CREDENTIAL_KEYS)
                    .filter(|key| !key.as_str().to_ascii_lowercase().starts_with("test_")),
            )
            .merge(Serialized::defaults(overrides));
        let mut config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Load(one_line(&e.to_string())))?;
        // Read directly: a JSON document in an environment variable is not a figment value.
        if let Ok(keyring) = std::env::var("CELLULE_KEYRING") {
            config.keyring = Some(SecretText::new(keyring));
        }
        config.mail.smtp.read_env_credentials();
        config.validate()?;
        Ok(config)
    }

    /// The database URL in force (the SQLite file under the data directory by default).
    pub fn database_url(&self) -> DatabaseUrl {
        match &self.database {
            Some(url) => url.clone(),
            None => DatabaseUrl::new(format!(
                "sqlite://{}",
                self.data_dir.join("cellule.db").display()
            )),
        }
    }

    /// The keyring file in force.
    pub fn keyring_path(&self) -> PathBuf {
        self.keyring_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("keyring.json"))
    }

    /// The address people open the web application at (`web.base_url`, or `http://<bind>`),
    /// without a trailing slash.
    pub fn base_url(&self) -> url::Url {
        self.web.base_url.clone().unwrap_or_else(|| {
            url::Url::parse(&format!("http://{}", self.bind))
                .unwrap_or_else(|_| url::Url::parse("http://127.0.0.1:8080").expect("constant URL"))
        })
    }

    /// Checks what types alone cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        self.database_url().backend()?;
        self.mail.validate()?;
        if self.auth.leeway_seconds > MAX_LEEWAY_SECONDS {
            return invalid(format!(
                "auth.leeway_seconds is {}, at most {MAX_LEEWAY_SECONDS} is allowed",
                self.auth.leeway_seconds
            ));
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.http.body_limit_bytes) {
            return invalid("http.body_limit_bytes must be between 1024 and 16777216".to_owned());
        }
        if self.http.request_timeout.is_zero() {
            return invalid("http.request_timeout must be positive".to_owned());
        }
        if self.http.header_read_timeout.is_zero() || self.http.idle_timeout.is_zero() {
            return invalid(
                "http.header_read_timeout and http.idle_timeout must be positive".to_owned(),
            );
        }
        if self.http.max_connections == 0 || self.http.max_requests_per_connection == 0 {
            return invalid(
                "http.max_connections and http.max_requests_per_connection must be at least 1"
                    .to_owned(),
            );
        }
        if self.http.max_headers == 0 || self.http.max_header_bytes < 8192 {
            return invalid(
                "http.max_headers must be at least 1 and http.max_header_bytes at least 8192"
                    .to_owned(),
            );
        }
        self.http.trusted_networks()?;
        for (name, budget) in [
            ("subject", self.rate_limit.subject),
            ("address", self.rate_limit.address),
            ("denials", self.rate_limit.denials),
        ] {
            if budget.per_minute == 0 || budget.burst == 0 {
                return invalid(format!(
                    "rate_limit.{name}: per_minute and burst must be at least 1"
                ));
            }
        }
        if self.rate_limit.throttled_denial_entry_every.is_zero() {
            return invalid("rate_limit.throttled_denial_entry_every must be positive".to_owned());
        }
        if self.pool.statement_timeout.is_zero() || self.pool.acquire_timeout.is_zero() {
            return invalid(
                "pool.statement_timeout and pool.acquire_timeout must be positive".to_owned(),
            );
        }
        if self.pool.max_connections == 0 {
            return invalid("pool.max_connections must be at least 1".to_owned());
        }
        if self.admins.iter().any(|a| a.trim().is_empty()) {
            return invalid("admins must not contain an empty subject".to_owned());
        }
        if self.auth.max_token_lifetime.is_zero() {
            return invalid("auth.max_token_lifetime must be positive".to_owned());
        }
        let dev_on = self.auth.dev_issuer_enabled();
        if dev_on && self.auth.dev_issuer.max_ttl > self.auth.max_token_lifetime {
            return invalid(format!(
                "auth.dev_issuer.max_ttl ({}) is longer than auth.max_token_lifetime ({})",
                humantime::format_duration(self.auth.dev_issuer.max_ttl),
                humantime::format_duration(self.auth.max_token_lifetime)
            ));
        }
        let mut seen = std::collections::HashSet::new();
        if dev_on {
            seen.insert(self.auth.dev_issuer.issuer.as_str());
        }
        for (i, issuer) in self.auth.issuers.iter().enumerate() {
            let at = format!("auth.issuers[{i}] ({})", issuer.issuer);
            if issuer.issuer.is_empty() || issuer.audience.is_empty() {
                return invalid(format!("{at}: issuer and audience must not be empty"));
            }
            if !seen.insert(issuer.issuer.as_str()) {
                return invalid(format!("{at}: issuer is configured twice"));
            }
            if dev_on && issuer.subject_prefix.is_empty() {
                return invalid(format!(
                    "{at}: the development issuer is on, so this issuer needs a subject_prefix (such as \"kc:\") that keeps its subjects apart from the development issuer's"
                ));
            }
            if let Some(other) = self.auth.issuers[..i].iter().find(|o| {
                o.subject_prefix.starts_with(&issuer.subject_prefix)
                    || issuer.subject_prefix.starts_with(&o.subject_prefix)
            }) {
                return invalid(format!(
                    "{at}: its subject_prefix {:?} overlaps the one of {} ({:?}); each issuer needs a prefix of its own, so that a subject (and so a membership) belongs to one issuer only",
                    issuer.subject_prefix, other.issuer, other.subject_prefix
                ));
            }
            if issuer.max_token_lifetime.is_some_and(|d| d.is_zero()) {
                return invalid(format!("{at}: max_token_lifetime must be positive"));
            }
            if issuer.algorithms.is_empty() {
                return invalid(format!("{at}: algorithms must list at least one algorithm"));
            }
            if let Some(alg) = issuer
                .algorithms
                .iter()
                .find(|a| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512))
            {
                return invalid(format!(
                    "{at}: {alg:?} is a shared-secret algorithm; only asymmetric algorithms are accepted"
                ));
            }
            if let Some(web) = &issuer.web {
                if web.client_id.trim().is_empty() {
                    return invalid(format!("{at}: web.client_id must not be empty"));
                }
                let url = url::Url::parse(&issuer.issuer).map_err(|_| {
                    ConfigError::Invalid(format!("{at}: web sign-in needs an issuer URL"))
                })?;
                if url.scheme() != "https" && !(url.scheme() == "http" && is_loopback(&url)) {
                    return invalid(format!(
                        "{at}: web sign-in needs an https issuer (http on loopback only)"
                    ));
                }
            }
            match (&issuer.jwks_url, issuer.public_keys.is_empty()) {
                (Some(_), false) => {
                    return invalid(format!(
                        "{at}: give either jwks_url or public_keys, not both"
                    ));
                }
                (None, true) => {
                    return invalid(format!("{at}: give jwks_url or public_keys"));
                }
                (Some(url), true) => {
                    if url.scheme() != "https" && !(url.scheme() == "http" && is_loopback(url)) {
                        return invalid(format!(
                            "{at}: jwks_url must use https (http is allowed on loopback only)"
                        ));
                    }
                }
                (None, false) => {}
            }
        }
        Ok(())
    }
}

/// Whether the URL's host is a loopback address (or `localhost`).
pub fn is_loopback(url: &url::Url) -> bool {
    matches!(url.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
        || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
        || url.host_str() == Some("localhost")
}

/// Accepts `"a,b"` (from the environment) as well as `["a", "b"]` (from TOML).
fn string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        OneOrMany::Many(v) => v.into_iter().map(|s| s.trim().to_owned()).collect(),
    })
}

pub use crate::domain::one_line;

#[cfg(test)]
mod tests;
