//! Sign-in to the web application at the configured OpenID Connect issuers: the authorization
//! code flow with PKCE (S256), `state` and `nonce`, then the ID token checked as API tokens are
//! (issuer, audience = this client, expiry, signature with an algorithm pinned for the issuer)
//! and its `sub` prefixed like the issuer's API tokens, so that the same memberships apply. The
//! issuer's metadata (endpoints, keys) comes from its discovery document, fetched when first
//! needed and again after [`METADATA_TTL`]. RP-initiated logout when the issuer offers it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreIdToken, CoreJwsSigningAlgorithm,
};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, LogoutRequest, Nonce,
    PkceCodeChallenge, PkceCodeVerifier, PostLogoutRedirectUrl, ProviderMetadataWithLogout,
    RedirectUrl, Scope, TokenResponse,
};
use tokio::sync::Mutex;

use crate::config::{Config, IssuerConfig};
use crate::domain::Subject;

/// How long an issuer's discovery document (and its keys) is used before it is fetched again.
pub const METADATA_TTL: Duration = Duration::from_secs(15 * 60);

/// Why a sign-in failed. The text is safe to log: no token, code or secret.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the issuer's discovery document could not be used: {0}")]
    Discovery(String),
    #[error("the code was refused by the issuer: {0}")]
    Exchange(String),
    #[error("the issuer answered no ID token")]
    NoIdToken,
    #[error("the ID token was refused: {0}")]
    IdToken(String),
    #[error("the subject is not acceptable")]
    BadSubject,
    #[error("configuration: {0}")]
    Config(String),
}

/// A redirect to the issuer, with what must be kept to check its answer.
pub struct Authorization {
    pub url: url::Url,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

/// Shows no secret (its tokens and PKCE verifier stay out of logs and panics).
impl std::fmt::Debug for Authorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not even the URL: its query carries the state, the nonce and the PKCE challenge.
        f.debug_struct("Authorization").finish_non_exhaustive()
    }
}

/// A verified sign-in.
pub struct SignedIn {
    pub subject: Subject,
    pub issuer: String,
    /// The raw ID token, for the `id_token_hint` of the sign-out.
    pub id_token: String,
    /// The `email` claim when the issuer says it is verified (`email_verified: true`): where
    /// the person's notices may go (docs/notifications.md).
    pub verified_email: Option<String>,
}

/// Shows no secret (its tokens and PKCE verifier stay out of logs and panics).
impl std::fmt::Debug for SignedIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedIn")
            .field("subject", &self.subject)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// One issuer the web application signs people in with.
pub struct OidcClient {
    pub issuer: String,
    pub label: String,
    client_id: String,
    client_secret: Option<String>,
    scopes: Vec<String>,
    algorithms: Vec<CoreJwsSigningAlgorithm>,
    subject_prefix: String,
    redirect_uri: String,
    post_logout_uri: String,
    http: openidconnect::reqwest::Client,
    metadata: Mutex<Option<(Arc<ProviderMetadataWithLogout>, Instant)>>,
}

impl std::fmt::Debug for OidcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcClient")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// The path of the redirect URI under the base URL.
pub const CALLBACK_PATH: &str = "/connexion/retour";
/// The path people come back to after signing out at the issuer.
pub const SIGNED_OUT_PATH: &str = "/deconnecte";

/// The issuers configured for web sign-in, in configuration order.
pub fn clients(config: &Config) -> Result<Vec<OidcClient>, OidcError> {
    let base = config.base_url();
    let base = base.as_str().trim_end_matches('/');
    let http = openidconnect::reqwest::ClientBuilder::new()
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| OidcError::Config(e.to_string()))?;
    config
        .auth
        .issuers
        .iter()
        .filter(|i| i.web.is_some())
        .map(|i| OidcClient::new(i, base, http.clone()))
        .collect()
}

impl OidcClient {
    fn new(
        cfg: &IssuerConfig,
        base: &str,
        http: openidconnect::reqwest::Client,
    ) -> Result<Self, OidcError> {
        let web = cfg
            .web
            .as_ref()
            .ok_or_else(|| OidcError::Config("no web client".into()))?;
        let algorithms = cfg
            .algorithms
            .iter()
            .map(|a| {
                serde_json::from_value::<CoreJwsSigningAlgorithm>(serde_json::Value::String(
                    format!("{a:?}"),
                ))
                .map_err(|e| OidcError::Config(format!("algorithm {a:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            issuer: cfg.issuer.clone(),
            label: web.label.clone().unwrap_or_else(|| cfg.issuer.clone()),
            client_id: web.client_id.clone(),
            client_secret: web.client_secret.as_ref().map(|s| s.expose().to_owned()),
            scopes: web.scopes.clone(),
            algorithms,
            subject_prefix: cfg.subject_prefix.clone(),
            redirect_uri: format!("{base}{CALLBACK_PATH}"),
            post_logout_uri: format!("{base}{SIGNED_OUT_PATH}"),
            http,
            metadata: Mutex::new(None),
        })
    }

    /// The issuer's discovery document, fetched when missing or older than [`METADATA_TTL`].
    async fn metadata(&self) -> Result<Arc<ProviderMetadataWithLogout>, OidcError> {
        let mut cached = self.metadata.lock().await;
        if let Some((m, at)) = cached.as_ref()
            && at.elapsed() < METADATA_TTL
        {
            return Ok(m.clone());
        }
        let issuer =
            IssuerUrl::new(self.issuer.clone()).map_err(|e| OidcError::Discovery(e.to_string()))?;
        let fresh = ProviderMetadataWithLogout::discover_async(issuer, &self.http)
            .await
            .map_err(|e| OidcError::Discovery(crate::config::one_line(&e.to_string())))?;
        let fresh = Arc::new(fresh);
        *cached = Some((fresh.clone(), Instant::now()));
        Ok(fresh)
    }

    fn client(
        &self,
        metadata: &ProviderMetadataWithLogout,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        OidcError,
    > {
        let redirect = RedirectUrl::new(self.redirect_uri.clone())
            .map_err(|e| OidcError::Config(e.to_string()))?;
        Ok(CoreClient::from_provider_metadata(
            metadata.clone(),
            ClientId::new(self.client_id.clone()),
            self.client_secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(redirect))
    }

    /// A new authorization request: the URL to send the browser to, and its `state`, `nonce`
    /// and PKCE verifier (random, 256 bits or more each).
    pub async fn authorize(&self) -> Result<Authorization, OidcError> {
        let metadata = self.metadata().await?;
        let client = self.client(&metadata)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in &self.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.url();
        Ok(Authorization {
            url,
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// Exchanges `code` (with the PKCE verifier) and checks the ID token, its `nonce` included.
    pub async fn finish(
        &self,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
    ) -> Result<SignedIn, OidcError> {
        let metadata = self.metadata().await?;
        let client = self.client(&metadata)?;
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| OidcError::Config(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(|e| OidcError::Exchange(crate::config::one_line(&e.to_string())))?;
        let id_token = response.id_token().ok_or(OidcError::NoIdToken)?;
        let verifier = client
            .id_token_verifier()
            .set_allowed_algs(self.algorithms.clone());
        let claims = id_token
            .claims(&verifier, &Nonce::new(nonce.to_owned()))
            .map_err(|e| OidcError::IdToken(crate::config::one_line(&e.to_string())))?;
        let subject = Subject::parse(&format!(
            "{}{}",
            self.subject_prefix,
            claims.subject().as_str()
        ))
        .map_err(|_| OidcError::BadSubject)?;
        let verified_email = match (claims.email(), claims.email_verified()) {
            (Some(email), Some(true)) => Some(email.as_str().to_owned()),
            _ => None,
        };
        Ok(SignedIn {
            subject,
            issuer: self.issuer.clone(),
            id_token: id_token.to_string(),
            verified_email,
        })
    }

    /// Where to send the browser to end the session at the issuer too (RP-initiated logout),
    /// when the issuer offers it.
    pub async fn end_session_url(&self, id_token: Option<&str>) -> Option<url::Url> {
        let metadata = match self.metadata().await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(issuer = %self.issuer, error = %e, "no sign-out at the issuer");
                return None;
            }
        };
        let endpoint = metadata
            .additional_metadata()
            .end_session_endpoint
            .clone()?;
        let mut request = LogoutRequest::from(endpoint)
            .set_client_id(ClientId::new(self.client_id.clone()))
            .set_post_logout_redirect_uri(
                PostLogoutRedirectUrl::new(self.post_logout_uri.clone()).ok()?,
            );
        if let Some(token) = id_token.and_then(|t| t.parse::<CoreIdToken>().ok()) {
            request = request.set_id_token_hint(&token);
        }
        Some(request.http_get_url())
    }
}
