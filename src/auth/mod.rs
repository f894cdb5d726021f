//! Authentication (who is calling) and membership resolution (in which cellule, as what).
//!
//! Handlers never parse headers or look memberships up themselves: they ask for one of the
//! extractors below and receive an already-checked caller.
//! - [`Caller`]: any valid token.
//! - [`Admin`]: a valid token whose subject is listed in `admins`; otherwise 403.
//! - [`CelluleMember`]: a valid token with a membership in the cellule named by the `{cellule}`
//!   path segment; a missing membership answers exactly like a cellule that does not exist (404).

pub mod dev_issuer;
pub mod verifier;

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

pub use dev_issuer::DevIssuer;
pub use verifier::{TokenError, TokenVerifier, VerifiedToken};

use crate::domain::{Cellule, CelluleSlug, Membership, Subject};
use crate::error::ApiError;
use crate::http::AppState;

/// Any caller with a valid token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub subject: Subject,
    pub issuer: String,
}

impl Caller {
    pub fn is_admin(&self, state: &AppState) -> bool {
        state.admins.contains(self.subject.as_str())
    }
}

fn bearer(parts: &Parts) -> Result<&str, TokenError> {
    let value = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or(TokenError::Missing)?;
    let value = value.to_str().map_err(|_| TokenError::Malformed)?;
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

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        let token = bearer(parts)?;
        let verified = state.verifier.verify(token).await?;
        let caller = Caller {
            subject: verified.subject,
            issuer: verified.issuer,
        };
        parts.extensions.insert(caller.clone());
        Ok(caller)
    }
}

/// A deployment administrator.
#[derive(Debug, Clone)]
pub struct Admin(pub Caller);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if caller.is_admin(state) {
            Ok(Admin(caller))
        } else {
            Err(ApiError::Forbidden(
                "This operation is reserved to deployment administrators.",
            ))
        }
    }
}

/// A caller with a membership in the cellule of the `{cellule}` path segment.
#[derive(Debug, Clone)]
pub struct CelluleMember {
    pub caller: Caller,
    pub cellule: Cellule,
    pub membership: Membership,
}

/// Reads and validates the `{cellule}` path segment; an invalid slug is simply not found.
pub(crate) async fn cellule_slug(
    parts: &mut Parts,
    state: &AppState,
) -> Result<CelluleSlug, ApiError> {
    let params = RawPathParams::from_request_parts(parts, state)
        .await
        .map_err(|_| ApiError::NotFound("cellule"))?;
    let raw = params
        .iter()
        .find(|(name, _)| *name == "cellule")
        .map(|(_, value)| value)
        .ok_or(ApiError::NotFound("cellule"))?;
    CelluleSlug::parse(raw).map_err(|_| ApiError::NotFound("cellule"))
}

impl FromRequestParts<AppState> for CelluleMember {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let slug = cellule_slug(parts, state).await?;
        if caller.is_admin(state) {
            // Administrators never act inside a cellule (separation of duties).
            return Err(ApiError::NotFound("cellule"));
        }
        // Both lookups run whether or not the first one finds something, so that "no such
        // cellule" and "not a member" take the same path.
        let membership = state.db.get_membership(&slug, &caller.subject).await?;
        let cellule = state.db.get_cellule(&slug).await?;
        match (cellule, membership) {
            (Some(cellule), Some(membership)) => Ok(CelluleMember {
                caller,
                cellule,
                membership,
            }),
            _ => Err(ApiError::NotFound("cellule")),
        }
    }
}
