//! Deployment administration: cellules and memberships. Administrators are the subjects listed
//! in `admins`; every other caller gets 403. Nothing here returns case content.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::extract::{ApiJson, ApiPath};
use super::problem::Problem;
use crate::domain::{Cellule, Membership};
use crate::error::Error;
use crate::services::access::{self, Caller};
use crate::services::cellules::{self, Admin, CreateCellule, PutMember, Retention};
use crate::services::charter::{self, CharterVersion, PutCharter};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_cellules, create_cellule))
        .routes(routes!(list_members))
        .routes(routes!(put_member, delete_member))
        .routes(routes!(put_charter))
        .routes(routes!(put_retention))
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
    caller: Caller,
    ApiPath(cellule): ApiPath<String>,
    body: ApiJson<PutCharter>,
) -> Result<(StatusCode, Json<CharterVersion>), Error> {
    access::admin(&state, &caller)?;
    let slug = cellules::existing(&state, &cellule).await?;
    let version = charter::publish(&state, &Admin::of(&caller), &slug, body.parse()?).await?;
    Ok((StatusCode::CREATED, Json(version)))
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
    caller: Caller,
    ApiPath(cellule): ApiPath<String>,
    body: ApiJson<Retention>,
) -> Result<Json<Retention>, Error> {
    access::admin(&state, &caller)?;
    let stored =
        cellules::set_retention(&state, &Admin::of(&caller), &cellule, body.parse()?).await?;
    Ok(Json(stored))
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
    caller: Caller,
) -> Result<Json<Vec<Cellule>>, Error> {
    access::admin(&state, &caller)?;
    Ok(Json(cellules::list(&state).await?))
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
    caller: Caller,
    body: ApiJson<CreateCellule>,
) -> Result<(StatusCode, HeaderMap, Json<Cellule>), Error> {
    access::admin(&state, &caller)?;
    let body = body.parse()?;
    let cellule = cellules::create(
        state.db.as_ref(),
        state.clock.as_ref(),
        &Admin::of(&caller),
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
    caller: Caller,
    ApiPath(cellule): ApiPath<String>,
) -> Result<Json<Vec<Membership>>, Error> {
    access::admin(&state, &caller)?;
    Ok(Json(cellules::members(&state, &cellule).await?))
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
    caller: Caller,
    ApiPath((cellule, sub)): ApiPath<(String, String)>,
    body: ApiJson<PutMember>,
) -> Result<(StatusCode, Json<Membership>), Error> {
    access::admin(&state, &caller)?;
    let (membership, created) =
        cellules::grant(&state, &Admin::of(&caller), &cellule, &sub, body.parse()?).await?;
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
    caller: Caller,
    ApiPath((cellule, sub)): ApiPath<(String, String)>,
) -> Result<StatusCode, Error> {
    access::admin(&state, &caller)?;
    cellules::revoke(&state, &Admin::of(&caller), &cellule, &sub).await?;
    Ok(StatusCode::NO_CONTENT)
}
