//! Deployment administration: cellules and memberships. Administrators are the subjects listed
//! in `admins`; every other caller gets 403. Nothing here returns case content.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::extract::{ApiJson, ApiPath};
use crate::auth::Admin;
use crate::cellules;
use crate::domain::{
    Cellule, CelluleCode, CelluleName, CelluleSlug, Membership, MembershipSpec, Organisation, Role,
    Sphere, Subject,
};
use crate::error::{ApiError, Problem};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_cellules, create_cellule))
        .routes(routes!(list_members))
        .routes(routes!(put_member, delete_member))
        .routes(routes!(put_charter))
        .routes(routes!(put_retention))
}

/// Body of `PUT /v1/cellules/{cellule}/charter`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutCharter {
    /// 1-20000 characters.
    pub text: String,
}

/// A new charter version.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct CharterVersion {
    pub version: i64,
}

/// Publishes a new charter version; members and coordinators must accept it again.
#[utoipa::path(put, path = "/v1/cellules/{cellule}/charter", tag = "administration", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug")),
    request_body = PutCharter,
    responses(
        (status = 201, description = "New version", body = CharterVersion),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such cellule", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid text", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn put_charter(
    State(state): State<AppState>,
    _admin: Admin,
    ApiPath(cellule): ApiPath<String>,
    ApiJson(body): ApiJson<PutCharter>,
) -> Result<(StatusCode, Json<CharterVersion>), ApiError> {
    let slug = existing_cellule(&state, &cellule).await?;
    let len = body.text.trim().chars().count();
    if len == 0 || len > 20_000 {
        return Err(ApiError::invalid("/text", "must be 1-20000 characters"));
    }
    let version = state
        .db
        .add_charter(slug.as_str(), body.text.trim(), state.clock.now())
        .await?;
    Ok((StatusCode::CREATED, Json(CharterVersion { version })))
}

/// Retention of a cellule's cases (SPEC §4).
#[derive(Debug, Deserialize, serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Months after closure before a closed case is erased (1-120, default 24).
    pub closed_months: i64,
    /// Months after decline before a declined case is erased (1-120, default 3).
    pub declined_months: i64,
}

/// Sets how long closed and declined cases are kept.
#[utoipa::path(put, path = "/v1/cellules/{cellule}/retention", tag = "administration", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug")),
    request_body = Retention,
    responses(
        (status = 200, description = "Stored", body = Retention),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such cellule", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Out of range", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn put_retention(
    State(state): State<AppState>,
    _admin: Admin,
    ApiPath(cellule): ApiPath<String>,
    ApiJson(body): ApiJson<Retention>,
) -> Result<Json<Retention>, ApiError> {
    let slug = existing_cellule(&state, &cellule).await?;
    for (pointer, value) in [
        ("/closed_months", body.closed_months),
        ("/declined_months", body.declined_months),
    ] {
        if !(1..=120).contains(&value) {
            return Err(ApiError::invalid(
                pointer,
                "must be between 1 and 120 months",
            ));
        }
    }
    if !state
        .db
        .set_retention(slug.as_str(), body.closed_months, body.declined_months)
        .await?
    {
        return Err(ApiError::NotFound("cellule"));
    }
    Ok(Json(body))
}

/// Body of `POST /v1/cellules`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCellule {
    pub slug: CelluleSlug,
    pub name: CelluleName,
    /// Reference code (`PER` in `PER-2026-0042`); defaults to the slug's first three letters.
    #[serde(default)]
    pub code: Option<CelluleCode>,
}

/// Body of `PUT /v1/cellules/{cellule}/members/{sub}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutMember {
    pub role: Role,
    /// Required for `member` and `coordinator`, refused for `auditor`.
    #[serde(default)]
    pub sphere: Option<Sphere>,
    /// Required for `member`, `coordinator` and `referrer`.
    #[serde(default)]
    pub organisation: Option<Organisation>,
    /// Only for `member`: an organisation invited case by case.
    #[serde(default)]
    pub guest: bool,
}

/// All cellules of the deployment.
#[utoipa::path(get, path = "/v1/cellules", tag = "administration", security(("bearer" = [])),
    responses(
        (status = 200, description = "Cellules, by slug", body = Vec<Cellule>),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_cellules(
    State(state): State<AppState>,
    _admin: Admin,
) -> Result<Json<Vec<Cellule>>, ApiError> {
    Ok(Json(state.db.list_cellules().await?))
}

/// Creates a cellule.
#[utoipa::path(post, path = "/v1/cellules", tag = "administration", security(("bearer" = [])),
    request_body = CreateCellule,
    responses(
        (status = 201, description = "Created", body = Cellule),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Slug or code already used", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid or unknown field", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_cellule(
    State(state): State<AppState>,
    _admin: Admin,
    ApiJson(body): ApiJson<CreateCellule>,
) -> Result<(StatusCode, HeaderMap, Json<Cellule>), ApiError> {
    let cellule = cellules::create(
        state.db.as_ref(),
        state.clock.as_ref(),
        body.slug,
        body.name,
        body.code,
    )
    .await?;
    let mut headers = HeaderMap::new();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/cellules/{}", cellule.slug)) {
        headers.insert(header::LOCATION, location);
    }
    Ok((StatusCode::CREATED, headers, Json(cellule)))
}

/// Members of a cellule.
#[utoipa::path(get, path = "/v1/cellules/{cellule}/members", tag = "administration", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug")),
    responses(
        (status = 200, description = "Memberships, by subject", body = Vec<Membership>),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such cellule", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_members(
    State(state): State<AppState>,
    _admin: Admin,
    ApiPath(cellule): ApiPath<String>,
) -> Result<Json<Vec<Membership>>, ApiError> {
    let slug = existing_cellule(&state, &cellule).await?;
    Ok(Json(state.db.list_members(&slug).await?))
}

/// Creates (201) or replaces (200) a membership.
#[utoipa::path(put, path = "/v1/cellules/{cellule}/members/{sub}", tag = "administration", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug"), ("sub" = String, Path, description = "Token subject")),
    request_body = PutMember,
    responses(
        (status = 200, description = "Replaced", body = Membership),
        (status = 201, description = "Created", body = Membership),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such cellule", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field or combination", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn put_member(
    State(state): State<AppState>,
    _admin: Admin,
    ApiPath((cellule, sub)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<PutMember>,
) -> Result<(StatusCode, Json<Membership>), ApiError> {
    let slug = CelluleSlug::parse(&cellule).map_err(|_| ApiError::NotFound("cellule"))?;
    let subject = Subject::parse(&sub).map_err(|e| ApiError::invalid("/sub", e.to_string()))?;
    let spec = MembershipSpec::new(body.role, body.sphere, body.organisation, body.guest)
        .map_err(|(field, e)| ApiError::invalid(format!("/{field}"), e.to_string()))?;
    let (membership, created) = cellules::put_member(
        state.db.as_ref(),
        state.clock.as_ref(),
        &state.admins,
        &slug,
        &subject,
        &spec,
    )
    .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(membership)))
}

/// Removes a membership; the person loses access at once.
#[utoipa::path(delete, path = "/v1/cellules/{cellule}/members/{sub}", tag = "administration", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug"), ("sub" = String, Path, description = "Token subject")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such cellule or membership", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_member(
    State(state): State<AppState>,
    _admin: Admin,
    ApiPath((cellule, sub)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let slug = existing_cellule(&state, &cellule).await?;
    let subject = Subject::parse(&sub).map_err(|_| ApiError::NotFound("membership"))?;
    if state.db.delete_membership(&slug, &subject).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("membership"))
    }
}

async fn existing_cellule(state: &AppState, raw: &str) -> Result<CelluleSlug, ApiError> {
    let slug = CelluleSlug::parse(raw).map_err(|_| ApiError::NotFound("cellule"))?;
    match state.db.get_cellule(&slug).await? {
        Some(_) => Ok(slug),
        None => Err(ApiError::NotFound("cellule")),
    }
}
