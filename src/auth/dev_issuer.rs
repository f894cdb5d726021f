//! The built-in development issuer: an Ed25519 key generated in the data directory
//! (`dev-issuer-ed25519.pk8`, mode 0600) that signs the tokens printed by `cellule token`.
//!
//! It lets the embedded default run with nothing else installed. Production deployments turn it
//! off (`auth.dev_issuer.enabled = false`) and trust their OIDC issuers instead.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::config::DevIssuerConfig;
use crate::domain::Subject;
use crate::fsutil;

pub const KEY_FILE: &str = "dev-issuer-ed25519.pk8";

/// The development signing key. `Debug` never shows key material.
pub struct DevIssuer {
    issuer: String,
    audience: String,
    max_ttl: Duration,
    kid: String,
    encoding: EncodingKey,
    public: Vec<u8>,
}

impl std::fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevIssuer")
            .field("issuer", &self.issuer)
            .field("kid", &self.kid)
            .field("key", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DevIssuerError {
    #[error("development issuer key {path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("token lifetime {asked} is longer than the allowed {max}")]
    TtlTooLong { asked: String, max: String },
    #[error("token lifetime must be positive")]
    TtlZero,
    #[error("could not sign the token: {0}")]
    Sign(String),
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    iat: i64,
    nbf: i64,
    exp: i64,
}

impl DevIssuer {
    /// Loads the key from `data_dir`, generating it (0600) on first use.
    pub fn load_or_create(
        data_dir: &Path,
        config: &DevIssuerConfig,
    ) -> Result<Self, DevIssuerError> {
        let path = data_dir.join(KEY_FILE);
        let err = |message: String| DevIssuerError::Key {
            path: path.clone(),
            message,
        };
        if !path.exists() {
            fsutil::create_private_dir(data_dir).map_err(|e| err(e.to_string()))?;
            let rng = ring::rand::SystemRandom::new();
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(|_| err("key generation failed".into()))?;
            fsutil::create_private_file(&path, pkcs8.as_ref()).map_err(|e| err(e.to_string()))?;
        }
        fsutil::check_private(&path).map_err(|e| err(e.to_string()))?;
        let pkcs8 = Zeroizing::new(std::fs::read(&path).map_err(|e| err(e.to_string()))?);
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pkcs8)
            .map_err(|_| err("not a valid Ed25519 PKCS#8 key".into()))?;
        let public = pair.public_key().as_ref().to_vec();
        let digest = ring::digest::digest(&ring::digest::SHA256, &public);
        let kid = format!("dev-{}", &URL_SAFE_NO_PAD.encode(digest.as_ref())[..16]);
        Ok(Self {
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            max_ttl: config.max_ttl,
            kid,
            encoding: EncodingKey::from_ed_der(&pkcs8),
            public,
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The raw 32-byte Ed25519 public key.
    pub fn public_key(&self) -> &[u8] {
        &self.public
    }

    pub fn decoding_key(&self) -> DecodingKey {
        DecodingKey::from_ed_der(&self.public)
    }

    /// Mints a token for `subject`, valid from `now` for `ttl`.
    pub fn mint(
        &self,
        subject: &Subject,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<String, DevIssuerError> {
        if ttl.is_zero() {
            return Err(DevIssuerError::TtlZero);
        }
        if ttl > self.max_ttl {
            return Err(DevIssuerError::TtlTooLong {
                asked: humantime::format_duration(ttl).to_string(),
                max: humantime::format_duration(self.max_ttl).to_string(),
            });
        }
        let iat = now.timestamp();
        let ttl_secs = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        let claims = Claims {
            iss: &self.issuer,
            aud: &self.audience,
            sub: subject.as_str(),
            iat,
            nbf: iat,
            exp: iat.saturating_add(ttl_secs),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| DevIssuerError::Sign(e.to_string()))
    }
}
