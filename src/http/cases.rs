//! Referrals, cases, notes and the charter. Handlers are thin: they enter the cellule
//! ([`access::enter`]), then call the use case of [`crate::services::cases`] or
//! [`crate::services::charter`].

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::idempotency::{self, KeyHeader, Ran};
use super::problem::Problem;
use crate::error::Error;
use crate::services::access::{self, Caller};
use crate::services::cases::{
    self, CasePage, CaseQuery, CaseSummary, CaseView, NoteRequest, NoteView, ReferralCreated,
    ReferralRequest, ReferralStatus, TransitionRequest,
};
use crate::services::charter::{self, AcceptCharter, CharterAccepted, CharterView};
use crate::services::idempotency::Replay;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(submit_referral, my_referrals))
        .routes(routes!(list_cases))
        .routes(routes!(get_case, erase_case))
        .routes(routes!(transition_case))
        .routes(routes!(add_note, list_notes))
        .routes(routes!(get_charter))
        .routes(routes!(accept_charter))
}

/// Submits a pseudonymised referral (fiche de saisine).
#[utoipa::path(post, path = "/v1/cellules/{cellule}/referrals", tag = "cases", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug"), ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe: the same key with the same request answers the first answer again (`Idempotent-Replayed: true`); see docs/api.md", min_length = 1, max_length = 255, pattern = r"^[!#-\[\]-~]+$")),
    request_body = ReferralRequest,
    responses(
        (status = 201, description = "Recorded", body = ReferralCreated),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role cannot refer", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such cellule, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A request with this idempotency key is in flight", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field, objection, direct identifiers in free text, invalid idempotency key, or a key used with another request", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable, or the commit's outcome unknown (retry with the same idempotency key)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn submit_referral(
    State(state): State<AppState>,
    caller: Caller,
    key: KeyHeader,
    ApiPath(cellule): ApiPath<String>,
    body: ApiJson<ReferralRequest>,
) -> Result<Response, Error> {
    let member = access::enter(&state, &caller, &cellule, None).await?;
    let (req, bytes) = body.parse_with_bytes()?;
    let (s, m) = (&state, &member);
    let ran = idempotency::run(s, m, key, &bytes, StatusCode::CREATED, |lease| async move {
        cases::submit(s, m, req, lease.as_ref()).await
    })
    .await?;
    let slug = member.cellule.slug.as_str();
    Ok(match ran {
        Ran::Fresh(created) => {
            let headers = idempotency::case_location(slug, &created.id);
            (StatusCode::CREATED, headers, Json(created)).into_response()
        }
        Ran::Replayed(stored) if idempotency::erased(&stored) => {
            idempotency::replay(stored, HeaderMap::new())
        }
        Ran::Replayed(stored) => {
            let id = stored.body.get("id").and_then(|v| v.as_str()).unwrap_or("");
            let headers = idempotency::case_location(slug, id);
            idempotency::replay(stored, headers)
        }
    })
}

/// The caller's own referrals: status view only.
#[utoipa::path(get, path = "/v1/cellules/{cellule}/referrals", tag = "cases", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug")),
    responses(
        (status = 200, description = "The caller's referrals, newest first", body = Vec<ReferralStatus>),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such cellule, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn my_referrals(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(cellule): ApiPath<String>,
) -> Result<Json<Vec<ReferralStatus>>, Error> {
    let member = access::enter(&state, &caller, &cellule, None).await?;
    Ok(Json(cases::my_referrals(&state, &member).await?))
}

/// Cases the caller may see, filtered and paginated (newest first, stable cursor).
#[utoipa::path(get, path = "/v1/cellules/{cellule}/cases", tag = "cases", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug"), CaseQuery),
    responses(
        (status = 200, description = "A page of cases", body = CasePage),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role without case access, or charter not accepted", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such cellule, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid filter", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_cases(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(cellule): ApiPath<String>,
    query: ApiQuery<CaseQuery>,
) -> Result<Json<CasePage>, Error> {
    let member = access::enter(&state, &caller, &cellule, None).await?;
    Ok(Json(cases::list(&state, &member, query.parse()?).await?))
}

/// One case, with its decrypted content and history.
#[utoipa::path(get, path = "/v1/cellules/{cellule}/cases/{id}", tag = "cases", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug"), ("id" = String, Path, description = "Case id")),
    responses(
        (status = 200, description = "The case", body = CaseView),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Charter not accepted", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such case, or not visible to the caller", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Integrity failure", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_case(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((cellule, id)): ApiPath<(String, String)>,
) -> Result<Json<CaseView>, Error> {
    let member = access::enter(&state, &caller, &cellule, Some(&id)).await?;
    Ok(Json(cases::read(&state, &member, &id).await?))
}

/// Erases a case: its rows and its data key go, a tombstone stays.
#[utoipa::path(delete, path = "/v1/cellules/{cellule}/cases/{id}", tag = "cases", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug"), ("id" = String, Path, description = "Case id")),
    responses(
        (status = 204, description = "Erased"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the coordinator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such case, or not visible to the caller", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn erase_case(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((cellule, id)): ApiPath<(String, String)>,
) -> Result<StatusCode, Error> {
    let member = access::enter(&state, &caller, &cellule, Some(&id)).await?;
    cases::erase(&state, &member, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Moves a case along the lifecycle graph (coordinator).
#[utoipa::path(post, path = "/v1/cellules/{cellule}/cases/{id}/transitions", tag = "cases", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug"), ("id" = String, Path, description = "Case id"), ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe: the same key with the same request answers the first answer again (`Idempotent-Replayed: true`); see docs/api.md", min_length = 1, max_length = 255, pattern = r"^[!#-\[\]-~]+$")),
    request_body = TransitionRequest,
    responses(
        (status = 200, description = "The case after the transition", body = CaseSummary),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the coordinator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such case, or not visible to the caller", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not a transition of the lifecycle graph (nothing changed), or a request with this idempotency key in flight", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Missing reason or date, identifiers in the reason, invalid idempotency key, or a key used with another request", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable, or the commit's outcome unknown (retry with the same idempotency key)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn transition_case(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((cellule, id)): ApiPath<(String, String)>,
    key: KeyHeader,
    body: ApiJson<TransitionRequest>,
) -> Result<Response, Error> {
    let member = access::enter(&state, &caller, &cellule, Some(&id)).await?;
    let (req, bytes) = body.parse_with_bytes()?;
    let (s, m, case) = (&state, &member, id.as_str());
    let ran = idempotency::run(s, m, key, &bytes, StatusCode::OK, |lease| async move {
        cases::transition(s, m, case, req, lease.as_ref()).await
    })
    .await?;
    Ok(match ran {
        Ran::Fresh(summary) => Json(summary).into_response(),
        Ran::Replayed(stored) => idempotency::replay(stored, HeaderMap::new()),
    })
}

/// Appends a note (append-only; a correction references the note it corrects).
#[utoipa::path(post, path = "/v1/cellules/{cellule}/cases/{id}/notes", tag = "cases", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug"), ("id" = String, Path, description = "Case id"), ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe: the same key with the same request answers the first answer again (`Idempotent-Replayed: true`); see docs/api.md", min_length = 1, max_length = 255, pattern = r"^[!#-\[\]-~]+$")),
    request_body = NoteRequest,
    responses(
        (status = 201, description = "Recorded", body = NoteView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Audience of another sphere, or charter not accepted", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such case, or not visible to the caller", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A request with this idempotency key is in flight", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid note, identifiers in the text, invalid idempotency key, or a key used with another request", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Integrity failure", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable, or the commit's outcome unknown (retry with the same idempotency key)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn add_note(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((cellule, id)): ApiPath<(String, String)>,
    key: KeyHeader,
    body: ApiJson<NoteRequest>,
) -> Result<Response, Error> {
    let member = access::enter(&state, &caller, &cellule, Some(&id)).await?;
    let (req, bytes) = body.parse_with_bytes()?;
    let (s, m, case) = (&state, &member, id.as_str());
    let ran = idempotency::run(s, m, key, &bytes, StatusCode::CREATED, |lease| async move {
        cases::add_note(s, m, case, req, lease.as_ref()).await
    })
    .await?;
    Ok(match ran {
        Ran::Fresh(note) => (StatusCode::CREATED, Json(note)).into_response(),
        Ran::Replayed(stored) if idempotency::erased(&stored) => {
            idempotency::replay(stored, HeaderMap::new())
        }
        // The stored answer holds no text: the note is read again.
        Ran::Replayed(stored) => {
            let note_id = stored.body.get("id").and_then(|v| v.as_str()).unwrap_or("");
            let note = cases::note_again(s, m, case, note_id).await?;
            let body = serde_json::to_value(note).map_err(|e| Error::Internal(e.to_string()))?;
            idempotency::replay(
                Replay {
                    status: stored.status,
                    body,
                },
                HeaderMap::new(),
            )
        }
    })
}

/// Notes of the audiences the caller may read, oldest first.
#[utoipa::path(get, path = "/v1/cellules/{cellule}/cases/{id}/notes", tag = "cases", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug"), ("id" = String, Path, description = "Case id")),
    responses(
        (status = 200, description = "Notes", body = Vec<NoteView>),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Charter not accepted", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such case, or not visible to the caller", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Integrity failure", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_notes(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((cellule, id)): ApiPath<(String, String)>,
) -> Result<Json<Vec<NoteView>>, Error> {
    let member = access::enter(&state, &caller, &cellule, Some(&id)).await?;
    Ok(Json(cases::notes(&state, &member, &id).await?))
}

/// The charter members and coordinators must accept before any case content.
#[utoipa::path(get, path = "/v1/cellules/{cellule}/charter", tag = "cases", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug")),
    responses(
        (status = 200, description = "The current charter", body = CharterView),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such cellule, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_charter(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(cellule): ApiPath<String>,
) -> Result<Json<CharterView>, Error> {
    let member = access::enter(&state, &caller, &cellule, None).await?;
    Ok(Json(charter::current(&state, &member).await?))
}

/// Accepts the current charter (members and coordinators).
#[utoipa::path(post, path = "/v1/cellules/{cellule}/charter/accept", tag = "cases", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug")),
    request_body = AcceptCharter,
    responses(
        (status = 200, description = "Accepted", body = CharterAccepted),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role without a charter (referrer, auditor)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such cellule, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not the current version", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid body", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn accept_charter(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(cellule): ApiPath<String>,
    body: ApiJson<AcceptCharter>,
) -> Result<Json<CharterAccepted>, Error> {
    let member = access::enter(&state, &caller, &cellule, None).await?;
    Ok(Json(charter::accept(&state, &member, body.parse()?).await?))
}
