//! Notices by e-mail (docs/notifications.md): the address an administrator sets for a member,
//! and each member's choice of the optional notices they receive.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::extract::{ApiJson, ApiPath};
use super::problem::Problem;
use crate::error::Error;
use crate::services::access::{self, Caller};
use crate::services::cellules::Admin;
use crate::services::notify::{self, AddressRequest, NoticeChoice, NoticePreferences};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(put_address, delete_address))
        .routes(routes!(get_notices, put_notices))
}

/// Sets the professional address a member's notices go to (administrator).
#[utoipa::path(put, path = "/v1/cellules/{cellule}/members/{sub}/address", tag = "administration", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug"), ("sub" = String, Path, description = "Token subject")),
    request_body = AddressRequest,
    responses(
        (status = 204, description = "Set"),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such cellule or membership", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not an e-mail address", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn put_address(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((cellule, sub)): ApiPath<(String, String)>,
    body: ApiJson<AddressRequest>,
) -> Result<StatusCode, Error> {
    access::admin(&state, &caller)?;
    let req = body.parse()?;
    notify::set_address(
        &state,
        &Admin::of(&caller),
        &cellule,
        &sub,
        Some(&req.email),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes a member's address: no notice goes to them (administrator).
#[utoipa::path(delete, path = "/v1/cellules/{cellule}/members/{sub}/address", tag = "administration", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug"), ("sub" = String, Path, description = "Token subject")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such cellule or membership", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_address(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((cellule, sub)): ApiPath<(String, String)>,
) -> Result<StatusCode, Error> {
    access::admin(&state, &caller)?;
    notify::set_address(&state, &Admin::of(&caller), &cellule, &sub, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's address and the optional notices they turned off (any member).
#[utoipa::path(get, path = "/v1/cellules/{cellule}/me/notices", tag = "memberships", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug")),
    responses(
        (status = 200, description = "The caller's notices", body = NoticePreferences),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such cellule, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_notices(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(cellule): ApiPath<String>,
) -> Result<Json<NoticePreferences>, Error> {
    let member = access::enter(&state, &caller, &cellule, None).await?;
    Ok(Json(notify::preferences(&state, &member).await?))
}

/// Chooses the optional notices the caller receives (any member; security notices stay on).
#[utoipa::path(put, path = "/v1/cellules/{cellule}/me/notices", tag = "memberships", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug")),
    request_body = NoticeChoice,
    responses(
        (status = 200, description = "The caller's notices", body = NoticePreferences),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such cellule, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown kind, or a security notice", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn put_notices(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(cellule): ApiPath<String>,
    body: ApiJson<NoticeChoice>,
) -> Result<Json<NoticePreferences>, Error> {
    let member = access::enter(&state, &caller, &cellule, None).await?;
    Ok(Json(notify::choose(&state, &member, body.parse()?).await?))
}
