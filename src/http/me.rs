//! What the caller is: `GET /v1/me` and `GET /v1/cellules/{cellule}`.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::extract::ApiPath;
use super::problem::Problem;
use crate::domain::{Cellule, CelluleCode, CelluleName, CelluleSlug, MembershipSpec, Subject};
use crate::error::Error;
use crate::services::access::{self, Caller};
use crate::services::cellules;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(me))
        .routes(routes!(my_cellule))
}

/// A cellule as its members see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CelluleSummary {
    pub slug: CelluleSlug,
    pub name: CelluleName,
    pub code: CelluleCode,
}

impl From<Cellule> for CelluleSummary {
    fn from(c: Cellule) -> Self {
        Self {
            slug: c.slug,
            name: c.name,
            code: c.code,
        }
    }
}

/// One of the caller's memberships.
#[derive(Debug, Serialize, ToSchema)]
pub struct MyMembership {
    pub cellule: CelluleSummary,
    #[serde(flatten)]
    pub spec: MembershipSpec,
}

/// The caller's identity as the service sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    pub subject: Subject,
    pub issuer: String,
    /// Listed in the deployment's `admins`.
    pub admin: bool,
    pub memberships: Vec<MyMembership>,
}

/// The caller's subject, administrator flag and memberships.
#[utoipa::path(get, path = "/v1/me", tag = "memberships", security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = Me),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn me(State(state): State<AppState>, caller: Caller) -> Result<Json<Me>, Error> {
    let memberships = cellules::memberships_of(&state, &caller.subject)
        .await?
        .into_iter()
        .map(|(cellule, m)| MyMembership {
            cellule: cellule.into(),
            spec: m.spec,
        })
        .collect();
    Ok(Json(Me {
        admin: state.is_admin(caller.subject.as_str()),
        subject: caller.subject,
        issuer: caller.issuer,
        memberships,
    }))
}

/// A cellule seen by one of its members, with the caller's membership.
#[derive(Debug, Serialize, ToSchema)]
pub struct CelluleView {
    #[serde(flatten)]
    pub cellule: CelluleSummary,
    pub membership: MembershipSpec,
}

/// The cellule and the caller's membership in it. A cellule the caller is not a member of
/// answers exactly like one that does not exist.
#[utoipa::path(get, path = "/v1/cellules/{cellule}", tag = "memberships", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug")),
    responses(
        (status = 200, description = "The cellule", body = CelluleView),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such cellule, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn my_cellule(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(cellule): ApiPath<String>,
) -> Result<Json<CelluleView>, Error> {
    let member = access::enter(&state, &caller, &cellule, None).await?;
    Ok(Json(CelluleView {
        cellule: member.cellule.into(),
        membership: member.membership.spec,
    }))
}
