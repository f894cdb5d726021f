//! Authentication (who is calling) and membership resolution (in which cellule, as what).
//!
//! Handlers never parse headers or look memberships up themselves: they ask for one of the
//! extractors below and receive an already-checked caller.
//! - [`Caller`]: any valid token.
//! - [`Admin`]: a valid token whose subject is listed in `admins`; otherwise 403.
//! - [`CelluleMember`]: a valid token with a membership in the cellule named by the `{cellule}`
//!   path segment; a missing membership answers exactly like a cellule that does not exist (404).
//! - [`CaseReader`]: a [`CelluleMember`] and the case of the `{id}` path segment, found in the
//!   same query (the read of one case, the hottest route). Nothing of the case is shown before
//!   the handler's access decision.
//! - [`Submitter`]: a [`CelluleMember`] with the referral of the body and, when it names a
//!   person, the open cases sharing their linkage key, found in the same query (the duplicate
//!   check of a submission). Refusals come before any error of the body, as with the other
//!   extractors.

pub mod dev_issuer;
pub mod verifier;

use axum::extract::{FromRequest, FromRequestParts, MatchedPath, RawPathParams, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

pub use dev_issuer::DevIssuer;
pub use verifier::{TokenError, TokenVerifier, VerifiedToken};

use crate::audit::{self, Action, Actor, AuditCtx};
use crate::domain::{Cellule, CelluleSlug, Membership, Subject};
use crate::error::ApiError;
use crate::http::AppState;
use crate::http::middleware::RequestId;
use crate::storage::{CaseRead, CelluleAccess};

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
    /// Whether the caller had accepted the cellule's current charter when the request came in.
    pub charter_accepted: bool,
    /// The id of this request (`x-request-id`), for the audit log.
    pub request_id: Option<String>,
}

impl CelluleMember {
    /// The audit context of this request: cellule, actor, request id.
    pub fn audit(&self) -> AuditCtx {
        AuditCtx {
            cellule: self.membership.cellule.as_str().to_owned(),
            actor: Actor::of(&self.membership),
            request_id: self.request_id.clone(),
        }
    }
}

/// Records the refusal of a request into an existing cellule by someone who is not a member of
/// it (or an administrator): identifiers only (subject, route template, case id if the path
/// names one).
async fn record_outsider(
    parts: &mut Parts,
    state: &AppState,
    cellule: &Cellule,
    caller: &Caller,
    reason: &'static str,
) -> Result<(), ApiError> {
    let ctx = AuditCtx {
        cellule: cellule.slug.as_str().to_owned(),
        actor: Actor {
            subject: caller.subject.as_str().to_owned(),
            role: if reason == audit::reason::ADMINISTRATOR {
                "administrator".into()
            } else {
                "none".into()
            },
            organisation: None,
        },
        request_id: parts.extensions.get::<RequestId>().map(|r| r.0.clone()),
    };
    let mut draft = ctx
        .entry(Action::EnterCellule, state.clock.now())
        .denied(reason);
    if let Some(route) = parts.extensions.get::<MatchedPath>() {
        draft = draft.target("route", route.as_str());
    }
    if let Ok(params) = RawPathParams::from_request_parts(parts, state).await
        && let Some((_, id)) = params
            .iter()
            .find(|(name, _)| *name == "id" || *name == "case_id")
        && let Ok(id) = uuid::Uuid::parse_str(id)
    {
        draft = draft.case(&id.to_string(), None);
    }
    audit::log(state, ctx.cellule.as_str(), vec![draft]).await
}

/// The path segment `name`, as given (`None`: the route has none, or it does not decode).
async fn path_param(parts: &mut Parts, state: &AppState, name: &str) -> Option<String> {
    let params = RawPathParams::from_request_parts(parts, state).await.ok()?;
    params
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.to_owned())
}

/// Reads and validates the `{cellule}` path segment; an invalid slug is simply not found.
pub(crate) async fn cellule_slug(
    parts: &mut Parts,
    state: &AppState,
) -> Result<CelluleSlug, ApiError> {
    let raw = path_param(parts, state, "cellule")
        .await
        .ok_or(ApiError::NotFound("cellule"))?;
    CelluleSlug::parse(&raw).map_err(|_| ApiError::NotFound("cellule"))
}

impl FromRequestParts<AppState> for CelluleMember {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let slug = cellule_slug(parts, state).await?;
        // One query answers for the cellule, the membership and the charter, so that "no such
        // cellule" and "not a member" take the same path.
        let access = state.db.cellule_access(&slug, &caller.subject).await?;
        member(parts, state, caller, access).await
    }
}

/// The caller as a member of the cellule `access` describes (`None`: no such cellule), or the
/// refusal, recorded when the cellule exists.
async fn member(
    parts: &mut Parts,
    state: &AppState,
    caller: Caller,
    access: Option<CelluleAccess>,
) -> Result<CelluleMember, ApiError> {
    let (cellule, membership, charter_accepted) = match access {
        Some(a) => (Some(a.cellule), a.membership, a.charter_accepted),
        None => (None, None, false),
    };
    match (cellule, membership) {
        // Administrators never act inside a cellule (separation of duties).
        (Some(cellule), _) if caller.is_admin(state) => {
            record_outsider(
                parts,
                state,
                &cellule,
                &caller,
                audit::reason::ADMINISTRATOR,
            )
            .await?;
            Err(ApiError::NotFound("cellule"))
        }
        (Some(cellule), Some(membership)) => Ok(CelluleMember {
            caller,
            cellule,
            membership,
            charter_accepted,
            request_id: parts.extensions.get::<RequestId>().map(|r| r.0.clone()),
        }),
        (Some(cellule), None) => {
            record_outsider(parts, state, &cellule, &caller, audit::reason::NOT_MEMBER).await?;
            Err(ApiError::NotFound("cellule"))
        }
        (None, _) => Err(ApiError::NotFound("cellule")),
    }
}

/// A [`CelluleMember`] with the case of the `{id}` path segment as
/// [`crate::storage::CaseStore::case_access`] finds it (`None`: no such case in this cellule),
/// from one query. The case is for the handler's access decision: it is never shown unless
/// that decision allows it.
#[derive(Debug)]
pub struct CaseReader {
    pub member: CelluleMember,
    /// The `{id}` path segment, as given.
    pub id: String,
    pub case: Option<CaseRead>,
}

impl FromRequestParts<AppState> for CaseReader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let slug = cellule_slug(parts, state).await?;
        let id = path_param(parts, state, "id")
            .await
            .ok_or(ApiError::NotFound("case"))?;
        let since = crate::access::agenda_since(state.clock.now());
        let (access, case) = match state
            .db
            .case_access(&slug, &caller.subject, &id, since)
            .await?
        {
            Some((access, case)) => (Some(access), case),
            None => (None, None),
        };
        let member = member(parts, state, caller, access).await?;
        Ok(CaseReader { member, id, case })
    }
}

/// A [`CelluleMember`] with the referral of the request's body and the possible duplicates
/// of the person it names, found with the membership in one query
/// ([`crate::storage::CaseStore::submit_access`]). The lookup is made in that query only when
/// the body is a referral with a valid identity and this process already holds the cellule's
/// linkage secret (no database access before the membership is known); otherwise the
/// membership is looked up alone and the handler runs the duplicate check. The references are
/// for the handler, which shows them only once its access decision allows the submission. A
/// refusal (no such cellule, not a member) comes before any error of the body, and is recorded
/// even when the body does not come (it is waited for half the request timeout, then the
/// request answers 503 `timeout` to a member). `Debug` shows
/// neither the referral's text nor the references.
pub struct Submitter {
    pub member: CelluleMember,
    pub referral: crate::cases::ReferralRequest,
    /// The linkage key looked up and the references found (`None`: not looked up).
    pub duplicates: Option<(String, Vec<String>)>,
}

impl std::fmt::Debug for Submitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Submitter")
            .field("member", &self.member)
            .field("duplicates_looked_up", &self.duplicates.is_some())
            .finish_non_exhaustive()
    }
}

impl FromRequest<AppState> for Submitter {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let (mut parts, body) = req.into_parts();
        let caller = Caller::from_request_parts(&mut parts, state).await?;
        let slug = cellule_slug(&mut parts, state).await?;
        let read = Request::from_parts(parts.clone(), body);
        // The body comes before the membership is known: a body that does not arrive within
        // half the request's time is given up, so that a refusal is still answered and
        // recorded before the request itself times out.
        let reading = crate::http::extract::ApiJson::<crate::cases::ReferralRequest>::from_request(
            read, state,
        );
        let referral =
            match tokio::time::timeout(state.config.http.request_timeout / 2, reading).await {
                Ok(read) => read.map(|json| json.0),
                Err(_) => Err(ApiError::Timeout),
            };
        let linkage_key = match &referral {
            Ok(r) => r.identity.as_ref().and_then(|identity| {
                let secret = state.keys.cached_linkage_secret(slug.as_str())?;
                identity.linkage_key(&secret).ok()
            }),
            Err(_) => None,
        };
        let (access, duplicates) = match linkage_key {
            Some(key) => match state.db.submit_access(&slug, &caller.subject, &key).await? {
                Some((access, found)) => (Some(access), Some((key, found))),
                None => (None, None),
            },
            None => (state.db.cellule_access(&slug, &caller.subject).await?, None),
        };
        let member = member(&mut parts, state, caller, access).await?;
        Ok(Submitter {
            member,
            referral: referral?,
            duplicates,
        })
    }
}
