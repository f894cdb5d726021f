//! Authentication: who is calling. Tokens are verified against the built-in development issuer
//! or the configured OpenID Connect issuers ([`verifier`]); what the caller may do comes from
//! their memberships, which the services look up ([`crate::services::access`]).

pub mod dev_issuer;
pub mod oidc;
pub mod verifier;

pub use dev_issuer::DevIssuer;
pub use verifier::{TokenError, TokenVerifier, VerifiedToken};

/// The `Authorization: Bearer` token of a header value, or why there is none.
pub fn bearer(value: Option<&str>) -> Result<&str, TokenError> {
    let value = value.ok_or(TokenError::Missing)?;
    let (scheme, token) = value.split_once(' ').ok_or(TokenError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(TokenError::Malformed);
    }
    let token = token.trim();
    if token.is_empty() || token.len() > 16 * 1024 {
        return Err(TokenError::Malformed);
    }
    Ok(token)
}
