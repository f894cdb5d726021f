//! The auditor API (docs/design.md §9): query, verify, checkpoint, export, and a case's access log.
//! Handlers are thin: the rules live in [`crate::services::auditor`].

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::extract::{ApiPath, ApiQuery};
use super::problem::Problem;
use crate::audit::verify::{CheckpointView, VerifyReport};
use crate::error::Error;
use crate::services::access::{self, Caller};
use crate::services::auditor::{self, AccessLog, AuditPage, AuditQuery, ExportFormat, ExportQuery};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(search_audit))
        .routes(routes!(verify_audit))
        .routes(routes!(sign_checkpoint, list_checkpoints))
        .routes(routes!(export_audit))
        .routes(routes!(access_log))
}

/// Audit entries of the cellule, newest first (auditors).
#[utoipa::path(get, path = "/v1/cellules/{cellule}/audit", tag = "audit", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug"), AuditQuery),
    responses(
        (status = 200, description = "A page of entries", body = AuditPage),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an auditor", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such cellule, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid filter", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn search_audit(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(cellule): ApiPath<String>,
    query: ApiQuery<AuditQuery>,
) -> Result<Json<AuditPage>, Error> {
    let member = access::enter(&state, &caller, &cellule, None).await?;
    Ok(Json(
        auditor::search(&state, &member, query.parse()?).await?,
    ))
}

/// Verifies the cellule's hash chain against its signed checkpoints (auditors). A broken chain
/// is a 200 answer with `valid: false` and the first broken sequence number.
#[utoipa::path(get, path = "/v1/cellules/{cellule}/audit/verify", tag = "audit", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug")),
    responses(
        (status = 200, description = "The verification report and the public keys", body = VerifyReport),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an auditor", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such cellule, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn verify_audit(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(cellule): ApiPath<String>,
) -> Result<Json<VerifyReport>, Error> {
    let member = access::enter(&state, &caller, &cellule, None).await?;
    Ok(Json(auditor::verify(&state, &member).await?))
}

/// Signs a checkpoint of the chain head now (auditors).
#[utoipa::path(post, path = "/v1/cellules/{cellule}/audit/checkpoints", tag = "audit", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug")),
    responses(
        (status = 201, description = "The signed checkpoint", body = CheckpointView),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an auditor", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such cellule, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn sign_checkpoint(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(cellule): ApiPath<String>,
) -> Result<(StatusCode, Json<CheckpointView>), Error> {
    let member = access::enter(&state, &caller, &cellule, None).await?;
    Ok((
        StatusCode::CREATED,
        Json(auditor::checkpoint(&state, &member).await?),
    ))
}

/// Every signed checkpoint of the cellule, oldest first (auditors): keep a copy outside the
/// database.
#[utoipa::path(get, path = "/v1/cellules/{cellule}/audit/checkpoints", tag = "audit", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug")),
    responses(
        (status = 200, description = "The checkpoints", body = Vec<CheckpointView>),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an auditor", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such cellule, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_checkpoints(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(cellule): ApiPath<String>,
) -> Result<Json<Vec<CheckpointView>>, Error> {
    let member = access::enter(&state, &caller, &cellule, None).await?;
    Ok(Json(auditor::checkpoints(&state, &member).await?))
}

/// Exports the whole log in sequence order (auditors): JSON Lines, or a FHIR R4 `Bundle` of
/// `AuditEvent` resources. Streamed.
#[utoipa::path(get, path = "/v1/cellules/{cellule}/audit/export", tag = "audit", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug"), ExportQuery),
    responses(
        (status = 200, description = "`application/jsonl` (one entry per line) or `application/fhir+json` (Bundle)",
            content((String = "application/jsonl"), (serde_json::Value = "application/fhir+json"))),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an auditor", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such cellule, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown format", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn export_audit(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(cellule): ApiPath<String>,
    query: ApiQuery<ExportQuery>,
) -> Result<Response, Error> {
    let member = access::enter(&state, &caller, &cellule, None).await?;
    let query = query.parse()?;
    let stream = auditor::export(&state, &member, query.format).await?;
    let (content_type, extension) = match query.format {
        ExportFormat::Jsonl => ("application/jsonl", "jsonl"),
        ExportFormat::Fhir => ("application/fhir+json", "json"),
    };
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"audit-{}.{extension}\"",
        member.cellule.slug
    )) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

/// Who accessed this case (auditors): every entry about it, oldest first. `id` is the case id
/// or its reference, and works for an erased case too (the person's right of access).
#[utoipa::path(get, path = "/v1/cellules/{cellule}/cases/{id}/access-log", tag = "audit", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug"), ("id" = String, Path, description = "Case id or reference")),
    responses(
        (status = 200, description = "The case's access history", body = AccessLog),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an auditor", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such case, live or erased", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn access_log(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((cellule, id)): ApiPath<(String, String)>,
) -> Result<Json<AccessLog>, Error> {
    let member = access::enter(&state, &caller, &cellule, Some(&id)).await?;
    Ok(Json(auditor::access_log(&state, &member, &id).await?))
}
