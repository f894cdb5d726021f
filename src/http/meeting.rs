//! The meeting (docs/design.md §10): opening and closing a session, attendance, decision
//! corrections and versions, the compte rendu (JSON, printable HTML, PDF) and what falls due.
//! Handlers enter the cellule and call [`crate::services::review::meeting`] and
//! [`crate::services::review::minutes`].

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::idempotency::{self, KeyHeader, Ran};
use super::problem::Problem;
use crate::domain::minutes::Minutes;
use crate::error::Error;
use crate::services::access::{self, Caller};
use crate::services::review::decisions::{self, DecisionRequest, DecisionView};
use crate::services::review::meeting::{
    self, AttendanceLineView, AttendanceRequest, DecisionRecordView, DueQuery, DueView,
};
use crate::services::review::minutes;
use crate::services::review::sessions::SessionView;
use crate::storage::MeetingStep;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(open_meeting))
        .routes(routes!(close_meeting))
        .routes(routes!(approve_minutes))
        .routes(routes!(get_attendance, put_attendance))
        .routes(routes!(correct_decision))
        .routes(routes!(session_decisions))
        .routes(routes!(case_decisions))
        .routes(routes!(get_minutes))
        .routes(routes!(follow_ups))
}

/// Opens the meeting, on the session's day or after, once its agenda is published
/// (coordinator). Decisions are recorded from now until the minutes are approved.
#[utoipa::path(post, path = "/v1/cellules/{cellule}/sessions/{sid}/open", tag = "meeting", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug"), ("sid" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "The session, `in_session`", body = SessionView),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the coordinator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not published, already opened, cancelled, or before the session's day", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn open_meeting(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((cellule, sid)): ApiPath<(String, String)>,
) -> Result<Json<SessionView>, Error> {
    let member = access::enter(&state, &caller, &cellule, None).await?;
    Ok(Json(
        meeting::step(&state, &member, &sid, MeetingStep::Open).await?,
    ))
}

/// Closes the meeting (coordinator): the session is `held`; decisions can still be recorded
/// and corrected until the minutes are approved.
#[utoipa::path(post, path = "/v1/cellules/{cellule}/sessions/{sid}/close", tag = "meeting", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug"), ("sid" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "The session, `held`", body = SessionView),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the coordinator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The meeting is not open", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn close_meeting(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((cellule, sid)): ApiPath<(String, String)>,
) -> Result<Json<SessionView>, Error> {
    let member = access::enter(&state, &caller, &cellule, None).await?;
    Ok(Json(
        meeting::step(&state, &member, &sid, MeetingStep::Close).await?,
    ))
}

/// Approves the minutes of a held session (coordinator): its attendance and decisions are
/// frozen, and the participants may read the minutes.
#[utoipa::path(post, path = "/v1/cellules/{cellule}/sessions/{sid}/minutes/approve", tag = "meeting", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug"), ("sid" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "The session, `minutes_approved`", body = SessionView),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the coordinator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The meeting is not closed, or the minutes are already approved", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn approve_minutes(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((cellule, sid)): ApiPath<(String, String)>,
) -> Result<Json<SessionView>, Error> {
    let member = access::enter(&state, &caller, &cellule, None).await?;
    Ok(Json(
        meeting::step(&state, &member, &sid, MeetingStep::ApproveMinutes).await?,
    ))
}

/// The session's attendance (coordinator, members).
#[utoipa::path(get, path = "/v1/cellules/{cellule}/sessions/{sid}/attendance", tag = "meeting", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug"), ("sid" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "The attendance, by organisation", body = Vec<AttendanceLineView>),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role without access", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_attendance(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((cellule, sid)): ApiPath<(String, String)>,
) -> Result<Json<Vec<AttendanceLineView>>, Error> {
    let member = access::enter(&state, &caller, &cellule, None).await?;
    Ok(Json(meeting::attendance(&state, &member, &sid).await?))
}

/// Replaces the session's attendance: each participant (a member) or organisation present,
/// excused or absent (coordinator; from publication until the minutes are approved).
#[utoipa::path(put, path = "/v1/cellules/{cellule}/sessions/{sid}/attendance", tag = "meeting", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug"), ("sid" = String, Path, description = "Session id")),
    request_body = AttendanceRequest,
    responses(
        (status = 200, description = "The attendance", body = Vec<AttendanceLineView>),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the coordinator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not published, cancelled, or minutes approved", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown participant or organisation, or a line twice", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn put_attendance(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((cellule, sid)): ApiPath<(String, String)>,
    body: ApiJson<AttendanceRequest>,
) -> Result<Json<Vec<AttendanceLineView>>, Error> {
    let member = access::enter(&state, &caller, &cellule, None).await?;
    Ok(Json(
        meeting::record_attendance(&state, &member, &sid, body.parse()?).await?,
    ))
}

/// Corrects the item's decision: a new version, the previous one kept; the case follows the
/// corrected decision (coordinator; until the minutes are approved).
#[utoipa::path(put, path = "/v1/cellules/{cellule}/sessions/{sid}/items/{case_id}/decision", tag = "meeting", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug"), ("sid" = String, Path, description = "Session id"), ("case_id" = String, Path, description = "Case id or reference"), ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe (docs/api.md)", min_length = 1, max_length = 255, pattern = r"^[!#-\[\]-~]+$")),
    request_body = DecisionRequest,
    responses(
        (status = 200, description = "The new version", body = DecisionView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the coordinator, or charter not accepted", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session or item", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Meeting not open, minutes approved, no decision to correct, the case moved on, or a request with this idempotency key in flight", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid decision, direct identifiers in text, or an idempotency key misused", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Integrity failure", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable, or the commit's outcome unknown", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn correct_decision(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((cellule, sid, case_id)): ApiPath<(String, String, String)>,
    key: KeyHeader,
    body: ApiJson<DecisionRequest>,
) -> Result<Response, Error> {
    let member = access::enter(&state, &caller, &cellule, Some(&case_id)).await?;
    let (req, bytes) = body.parse_with_bytes()?;
    let (s, m, sid, case) = (&state, &member, sid.as_str(), case_id.as_str());
    let ran = idempotency::run(s, m, key, &bytes, StatusCode::OK, |lease| async move {
        decisions::correct(s, m, sid, case, req, lease.as_ref()).await
    })
    .await?;
    Ok(match ran {
        Ran::Fresh(decision) => Json(decision).into_response(),
        Ran::Replayed(stored) => idempotency::replay(stored, HeaderMap::new()),
    })
}

/// Every version of the session's decisions on the items the caller may see, texts of the
/// caller's audiences only (coordinator, members).
#[utoipa::path(get, path = "/v1/cellules/{cellule}/sessions/{sid}/decisions", tag = "meeting", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug"), ("sid" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "The decisions, by case then version", body = Vec<DecisionRecordView>),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role without access, or charter not accepted", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Integrity failure", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn session_decisions(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((cellule, sid)): ApiPath<(String, String)>,
) -> Result<Json<Vec<DecisionRecordView>>, Error> {
    let member = access::enter(&state, &caller, &cellule, None).await?;
    Ok(Json(
        meeting::session_decisions(&state, &member, &sid).await?,
    ))
}

/// Every version of the case's decisions (whoever may read the case).
#[utoipa::path(get, path = "/v1/cellules/{cellule}/cases/{id}/decisions", tag = "meeting", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug"), ("id" = String, Path, description = "Case id or reference")),
    responses(
        (status = 200, description = "The decisions, oldest first", body = Vec<DecisionRecordView>),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role without access, or charter not accepted", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such case, or not visible", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Integrity failure", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn case_decisions(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((cellule, id)): ApiPath<(String, String)>,
) -> Result<Json<Vec<DecisionRecordView>>, Error> {
    let member = access::enter(&state, &caller, &cellule, Some(&id)).await?;
    Ok(Json(meeting::case_decisions(&state, &member, &id).await?))
}

/// The compte rendu for the caller: JSON, printable HTML (`Accept: text/html`) or PDF
/// (`Accept: application/pdf`). The coordinator reads the draft from the opening; the others
/// once the minutes are approved; each reader gets the items they may see and the texts of
/// their audiences.
#[utoipa::path(get, path = "/v1/cellules/{cellule}/sessions/{sid}/minutes", tag = "meeting", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug"), ("sid" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "The minutes", content(
            (Minutes = "application/json"),
            (String = "text/html"),
            (Vec<u8> = "application/pdf"),
        )),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role without access, or charter not accepted", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session", body = Problem, content_type = "application/problem+json"),
        (status = 406, description = "None of JSON, HTML or PDF is acceptable", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "No minutes yet (meeting not held, or not approved for this reader)", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Integrity failure", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_minutes(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((cellule, sid)): ApiPath<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let format = MinutesFormat::negotiate(&headers)?;
    let member = access::enter(&state, &caller, &cellule, None).await?;
    let m = minutes::minutes(&state, &member, &sid).await?;
    let no_store = HeaderValue::from_static("no-store");
    Ok(match format {
        MinutesFormat::Json => {
            let mut r = Json(m).into_response();
            r.headers_mut().insert(header::CACHE_CONTROL, no_store);
            r
        }
        MinutesFormat::Html => {
            let html = crate::render::minutes_html(&m)
                .map_err(|e| Error::Internal(format!("minutes html: {e}")))?;
            // The document's own policy: its inline stylesheet allowed by hash, nothing else.
            let csp = HeaderValue::from_str(&crate::render::minutes_csp())
                .map_err(|e| Error::Internal(format!("minutes csp: {e}")))?;
            (
                [
                    (
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("text/html; charset=utf-8"),
                    ),
                    (header::CACHE_CONTROL, no_store),
                    (header::CONTENT_SECURITY_POLICY, csp),
                ],
                html,
            )
                .into_response()
        }
        MinutesFormat::Pdf => {
            let pdf = crate::render::minutes_pdf(&m)
                .map_err(|e| Error::Internal(format!("minutes pdf: {e}")))?;
            (
                [
                    (
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/pdf"),
                    ),
                    (header::CACHE_CONTROL, no_store),
                    (
                        header::CONTENT_DISPOSITION,
                        HeaderValue::from_static("attachment; filename=\"compte-rendu.pdf\""),
                    ),
                ],
                pdf,
            )
                .into_response()
        }
    })
}

/// The representations of the minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MinutesFormat {
    Json,
    Html,
    Pdf,
}

impl MinutesFormat {
    /// The first acceptable of PDF, HTML and JSON in the order the `Accept` header lists them
    /// (quality values are not weighed); JSON without a header or with `*/*`.
    fn negotiate(headers: &HeaderMap) -> Result<Self, Error> {
        let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
            return Ok(MinutesFormat::Json);
        };
        for range in accept.split(',') {
            let media = range
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            match media.as_str() {
                "application/pdf" => return Ok(MinutesFormat::Pdf),
                "text/html" => return Ok(MinutesFormat::Html),
                "application/json" | "application/*" | "*/*" => return Ok(MinutesFormat::Json),
                _ => {}
            }
        }
        Err(Error::NotAcceptable(
            "The minutes are served as application/json, text/html or application/pdf.",
        ))
    }
}

/// What falls due: actions of the cases' latest decisions and follow-up dates, by due date,
/// overdue ones flagged (coordinator: all, or one organisation; a member: its organisation's).
#[utoipa::path(get, path = "/v1/cellules/{cellule}/follow-ups", tag = "meeting", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug"), DueQuery),
    responses(
        (status = 200, description = "What falls due", body = Vec<DueView>),
        (status = 422, description = "Invalid filter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role without access, another organisation, or charter not accepted", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such cellule, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Integrity failure", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn follow_ups(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(cellule): ApiPath<String>,
    query: ApiQuery<DueQuery>,
) -> Result<Json<Vec<DueView>>, Error> {
    let member = access::enter(&state, &caller, &cellule, None).await?;
    Ok(Json(
        meeting::follow_ups(&state, &member, query.parse()?).await?,
    ))
}
