//! Sessions of the web application (SPEC §11): a random 256-bit secret held by the browser (its
//! SHA-256 only is stored), ended after `web.session_idle` unused or `web.session_absolute` after
//! sign-in, a new one at every sign-in; the CSRF token of a session is derived from its secret,
//! so that it is bound to that session and to no other. Sign-ins in progress (the OpenID
//! `state`, `nonce` and PKCE verifier) are kept the same way, for ten minutes, usable once.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use ring::rand::SecureRandom;

use crate::config::Config;
use crate::domain::Subject;
use crate::error::Error;
use crate::storage::Database;
use crate::storage::web_sessions::{SignInRow, WebSessionRow, WebSessionStore};

/// How long a sign-in may take between the redirect to the issuer and its answer.
pub const SIGN_IN_WINDOW: Duration = Duration::from_secs(10 * 60);

/// A session's last use is written at most this often (not at every page).
const TOUCH_EVERY: i64 = 60;

/// The session timeouts in force.
#[derive(Debug, Clone, Copy)]
pub struct SessionRules {
    pub idle: Duration,
    pub absolute: Duration,
}

/// A session that is still valid.
#[derive(Clone)]
pub struct ActiveSession {
    pub subject: Subject,
    pub issuer: String,
    pub id_token: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Shows no secret (its tokens and PKCE verifier stay out of logs and panics).
impl std::fmt::Debug for ActiveSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActiveSession")
            .field("subject", &self.subject)
            .field("issuer", &self.issuer)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// A sign-in in progress, as it was begun.
#[derive(Clone)]
pub struct PendingSignIn {
    pub issuer: String,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub return_to: String,
}

/// Shows no secret (its tokens and PKCE verifier stay out of logs and panics).
impl std::fmt::Debug for PendingSignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingSignIn")
            .field("issuer", &self.issuer)
            .field("return_to", &self.return_to)
            .finish_non_exhaustive()
    }
}

/// The web sessions of the service, on its database, with the timeouts in force.
pub struct Sessions {
    store: Arc<dyn Database>,
    rules: SessionRules,
}

impl Sessions {
    /// The sessions on the service's database, with `web.session_*`.
    pub fn new(db: Arc<dyn Database>, config: &Config) -> Result<Self, Error> {
        Ok(Self {
            store: db,
            rules: SessionRules {
                idle: config.web.session_idle,
                absolute: config.web.session_absolute,
            },
        })
    }

    /// Opens a session for `subject` (after a verified sign-in); answers its secret.
    pub async fn start(
        &self,
        subject: &Subject,
        issuer: &str,
        id_token: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<String, Error> {
        start(self.store.as_ref(), subject, issuer, id_token, now).await
    }

    /// The session of `secret` if it is still valid.
    pub async fn resume(
        &self,
        secret: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<ActiveSession>, Error> {
        resume(self.store.as_ref(), secret, self.rules, now).await
    }

    /// Ends the session of `secret`.
    pub async fn end(&self, secret: &str) -> Result<Option<ActiveSession>, Error> {
        end(self.store.as_ref(), secret).await
    }

    /// Records a sign-in about to be sent to its issuer.
    pub async fn begin_sign_in(
        &self,
        pending: &PendingSignIn,
        now: DateTime<Utc>,
    ) -> Result<String, Error> {
        begin_sign_in(self.store.as_ref(), pending, now).await
    }

    /// Takes the sign-in of `secret`, once.
    pub async fn take_sign_in(
        &self,
        secret: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<PendingSignIn>, Error> {
        take_sign_in(self.store.as_ref(), secret, now).await
    }

    /// Removes what has expired.
    pub async fn purge(&self, now: DateTime<Utc>) -> Result<u64, Error> {
        purge(self.store.as_ref(), self.rules, now).await
    }
}

/// A fresh random secret: 256 bits, base64url.
pub fn new_secret() -> Result<String, Error> {
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::Internal("no randomness for a session".into()))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

fn hash(secret: &str) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, secret.as_bytes())
        .as_ref()
        .to_vec()
}

fn seconds(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Opens a session for `subject` (after a verified sign-in); answers its secret.
async fn start(
    store: &dyn WebSessionStore,
    subject: &Subject,
    issuer: &str,
    id_token: Option<String>,
    now: DateTime<Utc>,
) -> Result<String, Error> {
    let secret = new_secret()?;
    store
        .insert_session(&WebSessionRow {
            id_hash: hash(&secret),
            subject: subject.as_str().to_owned(),
            issuer: issuer.to_owned(),
            id_token,
            created_at: now.timestamp(),
            last_seen_at: now.timestamp(),
        })
        .await?;
    Ok(secret)
}

/// The session of `secret` if it is still valid (an expired one is removed), its last use
/// moved to `now`.
async fn resume(
    store: &dyn WebSessionStore,
    secret: &str,
    rules: SessionRules,
    now: DateTime<Utc>,
) -> Result<Option<ActiveSession>, Error> {
    let id = hash(secret);
    let Some(row) = store.session(&id).await? else {
        return Ok(None);
    };
    let t = now.timestamp();
    if t - row.last_seen_at >= seconds(rules.idle) || t - row.created_at >= seconds(rules.absolute)
    {
        store.take_session(&id).await?;
        return Ok(None);
    }
    if t - row.last_seen_at >= TOUCH_EVERY {
        store.touch_session(&id, t).await?;
    }
    let Ok(subject) = Subject::parse(&row.subject) else {
        store.take_session(&id).await?;
        return Ok(None);
    };
    Ok(Some(ActiveSession {
        subject,
        issuer: row.issuer,
        id_token: row.id_token,
        created_at: DateTime::from_timestamp(row.created_at, 0).unwrap_or(now),
    }))
}

/// Ends the session of `secret`; answers it when there was one (for the issuer's sign-out).
async fn end(store: &dyn WebSessionStore, secret: &str) -> Result<Option<ActiveSession>, Error> {
    let Some(row) = store.take_session(&hash(secret)).await? else {
        return Ok(None);
    };
    Ok(Subject::parse(&row.subject)
        .ok()
        .map(|subject| ActiveSession {
            subject,
            issuer: row.issuer,
            id_token: row.id_token,
            created_at: DateTime::from_timestamp(row.created_at, 0).unwrap_or_default(),
        }))
}

/// The CSRF token of the session of `secret`: HMAC-SHA256 keyed by the secret.
pub fn csrf_token(secret: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    URL_SAFE_NO_PAD.encode(ring::hmac::sign(&key, b"cellule csrf").as_ref())
}

/// Whether `token` is the CSRF token of the session of `secret` (compared in constant time).
pub fn csrf_valid(secret: &str, token: &str) -> bool {
    let Ok(tag) = URL_SAFE_NO_PAD.decode(token) else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    ring::hmac::verify(&key, b"cellule csrf", &tag).is_ok()
}

/// Records a sign-in about to be sent to `issuer`; answers the secret the browser keeps for it.
async fn begin_sign_in(
    store: &dyn WebSessionStore,
    pending: &PendingSignIn,
    now: DateTime<Utc>,
) -> Result<String, Error> {
    let secret = new_secret()?;
    store
        .insert_sign_in(&SignInRow {
            id_hash: hash(&secret),
            issuer: pending.issuer.clone(),
            state: pending.state.clone(),
            nonce: pending.nonce.clone(),
            pkce_verifier: pending.pkce_verifier.clone(),
            return_to: pending.return_to.clone(),
            created_at: now.timestamp(),
        })
        .await?;
    Ok(secret)
}

/// Takes the sign-in of `secret` (once: a second call finds nothing), if begun less than
/// [`SIGN_IN_WINDOW`] ago.
async fn take_sign_in(
    store: &dyn WebSessionStore,
    secret: &str,
    now: DateTime<Utc>,
) -> Result<Option<PendingSignIn>, Error> {
    let Some(row) = store.take_sign_in(&hash(secret)).await? else {
        return Ok(None);
    };
    if now.timestamp() - row.created_at >= seconds(SIGN_IN_WINDOW) {
        return Ok(None);
    }
    Ok(Some(PendingSignIn {
        issuer: row.issuer,
        state: row.state,
        nonce: row.nonce,
        pkce_verifier: row.pkce_verifier,
        return_to: row.return_to,
    }))
}

/// Removes what has expired (run now and then by the server).
async fn purge(
    store: &dyn WebSessionStore,
    rules: SessionRules,
    now: DateTime<Utc>,
) -> Result<u64, Error> {
    let t = now.timestamp();
    Ok(store
        .purge(
            t - seconds(rules.idle),
            t - seconds(rules.absolute),
            t - seconds(SIGN_IN_WINDOW),
        )
        .await?)
}

/// Whether two secrets are equal, in constant time (the `state` of a sign-in).
pub fn same_secret(a: &str, b: &str) -> bool {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"cellule compare");
    let tag = ring::hmac::sign(&key, a.as_bytes());
    ring::hmac::verify(&key, b.as_bytes(), tag.as_ref()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_are_bound_to_their_session() {
        let a = new_secret().expect("secret");
        let b = new_secret().expect("secret");
        assert_ne!(a, b);
        assert!(csrf_valid(&a, &csrf_token(&a)));
        assert!(!csrf_valid(&a, &csrf_token(&b)));
        assert!(!csrf_valid(&a, ""));
        assert!(!csrf_valid(&a, "not base64 !"));
    }

    #[test]
    fn debug_output_shows_no_secret() {
        let pending = PendingSignIn {
            issuer: "https://idp".into(),
            state: "state-secret".into(),
            nonce: "nonce-secret".into(),
            pkce_verifier: "pkce-secret".into(),
            return_to: "/".into(),
        };
        let active = ActiveSession {
            subject: Subject::parse("kc:alice").expect("subject"),
            issuer: "https://idp".into(),
            id_token: Some("id-token-secret".into()),
            created_at: Utc::now(),
        };
        let shown = format!("{pending:?} {active:?}");
        assert!(shown.contains("https://idp"), "{shown}");
        assert!(!shown.contains("secret"), "{shown}");
    }

    #[test]
    fn secrets_compare_exactly() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
    }
}
