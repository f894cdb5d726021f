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
    pub pool: PoolConfig,
    pub auth: AuthConfig,
    pub log: LogConfig,
    pub retention: RetentionConfig,
    pub audit: AuditConfig,
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
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(15 * 60),
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
            pool: PoolConfig::default(),
            auth: AuthConfig::default(),
            log: LogConfig::default(),
            retention: RetentionConfig::default(),
            audit: AuditConfig::default(),
        }
    }
}

/// HTTP hardening knobs.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Largest accepted request body, in bytes (64 KiB by default).
    pub body_limit_bytes: usize,
    /// A request still running after this long is answered 503 and abandoned.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            body_limit_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(20),
        }
    }
}

/// Database pool settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    pub max_connections: u32,
    /// How long a request waits for a connection before answering 503.
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
    /// How long start-up waits for the database before giving up.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// Token verification.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Clock skew tolerated on `exp` and `nbf`, at most 60 seconds.
    pub leeway_seconds: u64,
    pub dev_issuer: DevIssuerConfig,
    /// External OpenID Connect issuers (Keycloak, Pro Santé Connect, ProConnect…).
    pub issuers: Vec<IssuerConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            leeway_seconds: 30,
            dev_issuer: DevIssuerConfig::default(),
            issuers: Vec::new(),
        }
    }
}

/// The built-in development issuer (EdDSA key kept in the data directory).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DevIssuerConfig {
    /// Accept tokens minted by `cellule token`. Turn off in production.
    pub enabled: bool,
    pub issuer: String,
    pub audience: String,
    /// Longest lifetime `cellule token --ttl` may ask for.
    #[serde(with = "humantime_serde")]
    pub max_ttl: Duration,
}

impl Default for DevIssuerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            issuer: "cellule-dev".to_owned(),
            audience: "cellule".to_owned(),
            max_ttl: Duration::from_secs(24 * 3600),
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
    /// Prepended to `sub` so that two issuers can never produce the same subject.
    #[serde(default)]
    pub subject_prefix: String,
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

    /// Checks what types alone cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        self.database_url().backend()?;
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
        if self.pool.max_connections == 0 {
            return invalid("pool.max_connections must be at least 1".to_owned());
        }
        if self.admins.iter().any(|a| a.trim().is_empty()) {
            return invalid("admins must not contain an empty subject".to_owned());
        }
        let mut seen = std::collections::HashSet::new();
        if self.auth.dev_issuer.enabled {
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
                    let loopback = matches!(
                        url.host(),
                        Some(url::Host::Ipv4(ip)) if ip.is_loopback()
                    ) || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
                        || url.host_str() == Some("localhost");
                    if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
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
mod tests {
    use super::*;

    #[test]
    fn database_url_debug_hides_password() {
        let url =
            DatabaseUrl::new("postgres://app:s3cr3t-pw@db.example:5432/cellule?sslmode=require");
        let shown = format!("{url:?}");
        assert!(!shown.contains("s3cr3t-pw"), "{shown}");
        assert!(shown.contains("db.example"), "{shown}");
        let config = Config {
            database: Some(url),
            ..Config::default()
        };
        assert!(!format!("{config:?}").contains("s3cr3t-pw"));
    }

    #[test]
    fn leeway_above_sixty_seconds_is_refused() {
        let mut config = Config::default();
        config.auth.leeway_seconds = 61;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("leeway"), "{err}");
    }

    #[test]
    fn the_deployment_example_is_valid() {
        let config: Config = Figment::new()
            .merge(Toml::string(include_str!("../deploy/cellule.example.toml")))
            .extract()
            .expect("deploy/cellule.example.toml parses");
        config
            .validate()
            .expect("deploy/cellule.example.toml is valid");
        assert!(!config.auth.dev_issuer.enabled);
        assert_eq!(config.auth.issuers.len(), 2);
    }

    #[test]
    fn unknown_database_scheme_is_refused() {
        let config = Config {
            database: Some(DatabaseUrl::new("mysql://x")),
            ..Config::default()
        };
        assert!(config.validate().is_err());
    }
}
