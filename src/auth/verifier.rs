//! Token verification: signature, `iss`, `aud`, `exp`, `nbf` (bounded leeway) and the algorithm,
//! pinned per issuer; `iat` is required, not in the future beyond the leeway, and `exp - iat` is
//! at most the issuer's maximum lifetime. The development issuer's subjects never start with an
//! OpenID Connect issuer's subject prefix, so that it can never act as one of their users.
//! Tokens are never logged; only the reason of a rejection is.
//!
//! Issuer selection reads the unverified `iss` claim, then everything is checked against that
//! issuer's own configuration: an attacker choosing `iss` only chooses which keys must have
//! signed the token.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::{Mutex, RwLock};

use super::dev_issuer::DevIssuer;
use crate::clock::Clock;
use crate::config::{AuthConfig, IssuerConfig};
use crate::domain::Subject;

/// Unknown `kid`s trigger a JWKS refresh at most this often.
pub const JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(60);

/// Why a token was refused. The text is safe to log: it never contains the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no bearer token")]
    Missing,
    #[error("malformed token")]
    Malformed,
    #[error("token has no iss claim")]
    MissingIssuer,
    #[error("token issuer is not configured")]
    UnknownIssuer,
    #[error("algorithm not allowed for this issuer")]
    AlgorithmNotAllowed,
    #[error("no key with this kid")]
    UnknownKey,
    #[error("bad signature")]
    BadSignature,
    #[error("wrong audience")]
    WrongAudience,
    #[error("wrong issuer")]
    WrongIssuer,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("missing or mistyped claim {0}")]
    BadClaim(String),
    #[error("subject is not acceptable")]
    BadSubject,
    #[error("token issued in the future")]
    IssuedInFuture,
    #[error("token lifetime longer than the issuer's maximum")]
    LifetimeTooLong,
    #[error("subject belongs to another issuer's namespace")]
    ForeignSubject,
}

/// A token that passed every check.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    pub subject: Subject,
    pub issuer: String,
}

#[derive(Deserialize)]
struct IssOnly {
    iss: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Claims {
    sub: serde_json::Value,
    #[serde(default)]
    iat: Option<serde_json::Value>,
    exp: serde_json::Value,
}

/// A NumericDate claim as whole seconds (fractions dropped), `None` when not a number.
fn seconds(value: &serde_json::Value) -> Option<i64> {
    value
        .as_i64()
        .or_else(|| value.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
}

/// Verifies bearer tokens against the configured issuers.
pub struct TokenVerifier {
    issuers: HashMap<String, Issuer>,
    leeway: u64,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("issuers", &self.issuers.keys().collect::<Vec<_>>())
            .field("leeway", &self.leeway)
            .finish()
    }
}

struct Issuer {
    audience: String,
    algorithms: Vec<Algorithm>,
    subject_prefix: String,
    /// Longest `exp - iat`, in seconds.
    max_lifetime: i64,
    /// Subject prefixes this issuer may not produce (the development issuer: the OpenID
    /// Connect issuers' prefixes).
    foreign_prefixes: Vec<String>,
    keys: KeySource,
}

enum KeySource {
    Static(Vec<(Option<String>, DecodingKey)>),
    Jwks(Arc<JwksCache>),
}

#[derive(Debug, thiserror::Error)]
#[error("issuer {issuer}: {message}")]
pub struct VerifierSetupError {
    issuer: String,
    message: String,
}

impl TokenVerifier {
    /// Builds the verifier from configuration and the development issuer (when enabled).
    /// `clock` paces JWKS refreshes (tests move it to cross the refresh interval).
    pub fn new(
        config: &AuthConfig,
        dev: Option<&DevIssuer>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, VerifierSetupError> {
        let mut issuers = HashMap::new();
        let lifetime = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        if let Some(dev) = dev {
            issuers.insert(
                dev.issuer().to_owned(),
                Issuer {
                    audience: dev.audience().to_owned(),
                    algorithms: vec![Algorithm::EdDSA],
                    subject_prefix: String::new(),
                    max_lifetime: lifetime(config.max_token_lifetime),
                    foreign_prefixes: config.oidc_subject_prefixes(),
                    keys: KeySource::Static(vec![(Some(dev.kid().to_owned()), dev.decoding_key())]),
                },
            );
        }
        for cfg in &config.issuers {
            let mut issuer = Issuer::from_config(cfg, clock.clone())?;
            issuer.max_lifetime =
                lifetime(cfg.max_token_lifetime.unwrap_or(config.max_token_lifetime));
            issuers.insert(cfg.issuer.clone(), issuer);
        }
        Ok(Self {
            issuers,
            leeway: config.leeway_seconds.min(crate::config::MAX_LEEWAY_SECONDS),
        })
    }

    /// Checks a compact JWS and returns its subject.
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        let unverified = jsonwebtoken::dangerous::insecure_decode::<IssOnly>(token)
            .map_err(|_| TokenError::Malformed)?;
        let iss = match unverified.claims.iss {
            Some(serde_json::Value::String(iss)) => iss,
            Some(_) => return Err(TokenError::BadClaim("iss".into())),
            None => return Err(TokenError::MissingIssuer),
        };
        let issuer = self.issuers.get(&iss).ok_or(TokenError::UnknownIssuer)?;
        if !issuer.algorithms.contains(&header.alg) {
            return Err(TokenError::AlgorithmNotAllowed);
        }
        let key = issuer.key_for(header.kid.as_deref()).await?;

        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.leeway = self.leeway;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_issuer(&[iss.as_str()]);
        validation.set_audience(&[issuer.audience.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);

        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|e| match e
            .kind()
        {
            ErrorKind::InvalidSignature
            | ErrorKind::InvalidKeyFormat
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidEddsaKey
            | ErrorKind::InvalidRsaKey(_) => TokenError::BadSignature,
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::ImmatureSignature => TokenError::NotYetValid,
            ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
            ErrorKind::InvalidAudience => TokenError::WrongAudience,
            ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
                TokenError::AlgorithmNotAllowed
            }
            ErrorKind::MissingRequiredClaim(c) | ErrorKind::InvalidClaimFormat(c) => {
                TokenError::BadClaim(c.clone())
            }
            ErrorKind::Json(_) => TokenError::BadClaim("payload".into()),
            _ => TokenError::Malformed,
        })?;
        let iat = data
            .claims
            .iat
            .as_ref()
            .and_then(seconds)
            .ok_or_else(|| TokenError::BadClaim("iat".into()))?;
        let exp = seconds(&data.claims.exp).ok_or_else(|| TokenError::BadClaim("exp".into()))?;
        let now = i64::try_from(jsonwebtoken::get_current_timestamp()).unwrap_or(i64::MAX);
        let leeway = i64::try_from(self.leeway).unwrap_or(0);
        if iat > now.saturating_add(leeway) {
            return Err(TokenError::IssuedInFuture);
        }
        if exp.saturating_sub(iat) > issuer.max_lifetime {
            return Err(TokenError::LifetimeTooLong);
        }
        let sub = match data.claims.sub {
            serde_json::Value::String(sub) => sub,
            _ => return Err(TokenError::BadClaim("sub".into())),
        };
        let subject = Subject::parse(&format!("{}{}", issuer.subject_prefix, sub))
            .map_err(|_| TokenError::BadSubject)?;
        if issuer
            .foreign_prefixes
            .iter()
            .any(|p| subject.as_str().starts_with(p.as_str()))
        {
            return Err(TokenError::ForeignSubject);
        }
        Ok(VerifiedToken {
            subject,
            issuer: iss,
        })
    }
}

impl Issuer {
    fn from_config(cfg: &IssuerConfig, clock: Arc<dyn Clock>) -> Result<Self, VerifierSetupError> {
        let err = |message: String| VerifierSetupError {
            issuer: cfg.issuer.clone(),
            message,
        };
        let keys = match &cfg.jwks_url {
            Some(url) => KeySource::Jwks(Arc::new(
                JwksCache::new(url.clone(), clock).map_err(|e| err(e.to_string()))?,
            )),
            None => {
                let mut keys = Vec::new();
                for (i, k) in cfg.public_keys.iter().enumerate() {
                    let pem = k.pem.as_bytes();
                    let key = DecodingKey::from_rsa_pem(pem)
                        .or_else(|_| DecodingKey::from_ec_pem(pem))
                        .or_else(|_| DecodingKey::from_ed_pem(pem))
                        .map_err(|_| err(format!("public_keys[{i}] is not a PEM public key")))?;
                    keys.push((k.kid.clone(), key));
                }
                KeySource::Static(keys)
            }
        };
        Ok(Self {
            audience: cfg.audience.clone(),
            algorithms: cfg.algorithms.clone(),
            subject_prefix: cfg.subject_prefix.clone(),
            max_lifetime: i64::MAX,
            foreign_prefixes: Vec::new(),
            keys,
        })
    }

    async fn key_for(&self, kid: Option<&str>) -> Result<DecodingKey, TokenError> {
        match &self.keys {
            KeySource::Static(keys) => keys
                .iter()
                .find(|(k, _)| k.as_deref() == kid)
                .map(|(_, key)| key.clone())
                .ok_or(TokenError::UnknownKey),
            KeySource::Jwks(cache) => {
                let kid = kid.ok_or(TokenError::UnknownKey)?;
                cache.key(kid).await.ok_or(TokenError::UnknownKey)
            }
        }
    }
}

/// Keys fetched from an issuer's JWKS endpoint, by `kid`. An unknown `kid` causes a refresh, at
/// most once per [`JWKS_REFRESH_INTERVAL`]; concurrent misses share one fetch.
pub struct JwksCache {
    url: url::Url,
    client: reqwest::Client,
    keys: RwLock<HashMap<String, DecodingKey>>,
    last_fetch: Mutex<Option<DateTime<Utc>>>,
    clock: Arc<dyn Clock>,
}

impl JwksCache {
    fn new(url: url::Url, clock: Arc<dyn Clock>) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            url,
            client,
            keys: RwLock::new(HashMap::new()),
            last_fetch: Mutex::new(None),
            clock,
        })
    }

    async fn key(&self, kid: &str) -> Option<DecodingKey> {
        if let Some(key) = self.keys.read().await.get(kid) {
            return Some(key.clone());
        }
        let mut last = self.last_fetch.lock().await;
        // Another request may have refreshed while this one waited for the lock.
        if let Some(key) = self.keys.read().await.get(kid) {
            return Some(key.clone());
        }
        let now = self.clock.now();
        let interval =
            chrono::Duration::from_std(JWKS_REFRESH_INTERVAL).unwrap_or(chrono::Duration::MAX);
        if last.is_some_and(|t| now.signed_duration_since(t) < interval) {
            return None;
        }
        *last = Some(now);
        match self.fetch().await {
            Ok(fresh) => {
                let found = fresh.get(kid).cloned();
                *self.keys.write().await = fresh;
                found
            }
            Err(e) => {
                tracing::warn!(url = %self.url, error = %e, "JWKS refresh failed");
                None
            }
        }
    }

    async fn fetch(&self) -> Result<HashMap<String, DecodingKey>, String> {
        let set: JwkSet = self
            .client
            .get(self.url.clone())
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            match DecodingKey::from_jwk(jwk) {
                Ok(key) => {
                    keys.insert(kid, key);
                }
                Err(e) => tracing::warn!(url = %self.url, %kid, error = %e, "JWKS key skipped"),
            }
        }
        Ok(keys)
    }
}
