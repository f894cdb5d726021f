//! The monthly review: schedule, sessions, agenda, decisions, calendar, routing directory and
//! statistics (docs/design.md §10). Handlers are thin: they enter the cellule, then call the use case
//! of [`crate::services::review`].

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::idempotency::{self, KeyHeader, Ran};
use super::problem::Problem;
use crate::domain::schedule::Schedule;
use crate::error::Error;
use crate::services::access::{self, Caller};
use crate::services::review::agenda::{self, AgendaEdit, AgendaView};
use crate::services::review::agenda_amend::{self, AgendaItemAdd};
use crate::services::review::decisions::{self, DecisionRequest, DecisionView};
use crate::services::review::directory::{self, DirectoryDocument, Interlocutors, RoutingRules};
use crate::services::review::schedule;
use crate::services::review::sessions::{
    self, AdHocRequest, PlanRequest, PlanResult, SessionQuery, SessionView,
};
use crate::services::review::statistics::{self, Stats, StatsQuery};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_schedule, put_schedule))
        .routes(routes!(plan_sessions))
        .routes(routes!(list_sessions, add_session))
        .routes(routes!(cancel_session))
        .routes(routes!(build_agenda))
        .routes(routes!(get_agenda, edit_agenda))
        .routes(routes!(publish_agenda))
        .routes(routes!(record_decision))
        .routes(routes!(session_calendar))
        .routes(routes!(get_interlocutors, put_interlocutors))
        .routes(routes!(get_routing, put_routing))
        .routes(routes!(get_directory, put_directory))
        .routes(routes!(get_stats))
        .routes(routes!(add_agenda_item))
        .routes(routes!(withdraw_agenda_item))
}

/// The cellule's session schedule (coordinator, members).
#[utoipa::path(get, path = "/v1/cellules/{cellule}/schedule", tag = "sessions", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug")),
    responses(
        (status = 200, description = "The schedule", body = Schedule),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role without access", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No schedule yet, no such cellule, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_schedule(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(cellule): ApiPath<String>,
) -> Result<Json<Schedule>, Error> {
    let member = access::enter(&state, &caller, &cellule, None).await?;
    Ok(Json(schedule::get_schedule(&state, &member).await?))
}

/// Sets the schedule (coordinator).
#[utoipa::path(put, path = "/v1/cellules/{cellule}/schedule", tag = "sessions", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug")),
    request_body = Schedule,
    responses(
        (status = 200, description = "The stored schedule", body = Schedule),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the coordinator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such cellule, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid schedule", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn put_schedule(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(cellule): ApiPath<String>,
    body: ApiJson<Schedule>,
) -> Result<Json<Schedule>, Error> {
    let member = access::enter(&state, &caller, &cellule, None).await?;
    Ok(Json(
        schedule::put_schedule(&state, &member, body.parse()?).await?,
    ))
}

/// Plans the sessions of the coming months from the schedule, idempotently (coordinator).
#[utoipa::path(post, path = "/v1/cellules/{cellule}/sessions/plan", tag = "sessions", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug")),
    request_body = PlanRequest,
    responses(
        (status = 200, description = "Sessions created now, and every planned session of the window", body = PlanResult),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the coordinator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such cellule, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "No schedule yet", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid number of months", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn plan_sessions(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(cellule): ApiPath<String>,
    body: ApiJson<PlanRequest>,
) -> Result<Json<PlanResult>, Error> {
    let member = access::enter(&state, &caller, &cellule, None).await?;
    Ok(Json(sessions::plan(&state, &member, body.parse()?).await?))
}

/// Sessions, by start (coordinator, members).
#[utoipa::path(get, path = "/v1/cellules/{cellule}/sessions", tag = "sessions", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug"), SessionQuery),
    responses(
        (status = 200, description = "The sessions", body = Vec<SessionView>),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role without access", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such cellule, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid filter", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_sessions(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(cellule): ApiPath<String>,
    query: ApiQuery<SessionQuery>,
) -> Result<Json<Vec<SessionView>>, Error> {
    let member = access::enter(&state, &caller, &cellule, None).await?;
    Ok(Json(
        sessions::list_sessions(&state, &member, query.parse()?).await?,
    ))
}

/// Adds an ad-hoc session (coordinator).
#[utoipa::path(post, path = "/v1/cellules/{cellule}/sessions", tag = "sessions", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug")),
    request_body = AdHocRequest,
    responses(
        (status = 201, description = "The session", body = SessionView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the coordinator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such cellule, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid session", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn add_session(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(cellule): ApiPath<String>,
    body: ApiJson<AdHocRequest>,
) -> Result<(StatusCode, Json<SessionView>), Error> {
    let member = access::enter(&state, &caller, &cellule, None).await?;
    Ok((
        StatusCode::CREATED,
        Json(sessions::add_session(&state, &member, body.parse()?).await?),
    ))
}

/// Cancels a session; its agenda returns to the pool (coordinator).
#[utoipa::path(post, path = "/v1/cellules/{cellule}/sessions/{sid}/cancel", tag = "sessions", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug"), ("sid" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "The cancelled session", body = SessionView),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the coordinator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already cancelled, or decisions recorded", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn cancel_session(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((cellule, sid)): ApiPath<(String, String)>,
) -> Result<Json<SessionView>, Error> {
    let member = access::enter(&state, &caller, &cellule, None).await?;
    Ok(Json(sessions::cancel(&state, &member, &sid).await?))
}

/// Builds the agenda: eligible cases by urgency, deferrals and waiting time, within capacity;
/// the rest is deferred, counted when the agenda is published (coordinator).
#[utoipa::path(post, path = "/v1/cellules/{cellule}/sessions/{sid}/agenda/build", tag = "sessions", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug"), ("sid" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "The agenda", body = AgendaView),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the coordinator, or charter not accepted", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Session cancelled, agenda published, rebuilt or edited since this build read it, or a case changed meanwhile", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn build_agenda(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((cellule, sid)): ApiPath<(String, String)>,
) -> Result<Json<AgendaView>, Error> {
    let member = access::enter(&state, &caller, &cellule, None).await?;
    Ok(Json(agenda::build(&state, &member, &sid).await?))
}

/// The agenda with time slots and routing proposals; also the printable view of the meeting.
/// Members see the items they may see.
#[utoipa::path(get, path = "/v1/cellules/{cellule}/sessions/{sid}/agenda", tag = "sessions", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug"), ("sid" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "The agenda", body = AgendaView),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role without access, or charter not accepted", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_agenda(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((cellule, sid)): ApiPath<(String, String)>,
) -> Result<Json<AgendaView>, Error> {
    let member = access::enter(&state, &caller, &cellule, None).await?;
    Ok(Json(agenda::get_agenda(&state, &member, &sid).await?))
}

/// Sets the agenda's items in the given order (coordinator). Once the agenda is published, only
/// reorders its current items (all of them, by case id or reference): items are added and
/// withdrawn with `POST` and `DELETE …/agenda/items`.
#[utoipa::path(put, path = "/v1/cellules/{cellule}/sessions/{sid}/agenda", tag = "sessions", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug"), ("sid" = String, Path, description = "Session id")),
    request_body = AgendaEdit,
    responses(
        (status = 200, description = "The agenda", body = AgendaView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the coordinator, or charter not accepted", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Session cancelled, or the agenda or a case changed meanwhile", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown, repeated or ineligible case; once published, not exactly the current items", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn edit_agenda(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((cellule, sid)): ApiPath<(String, String)>,
    body: ApiJson<AgendaEdit>,
) -> Result<Json<AgendaView>, Error> {
    let member = access::enter(&state, &caller, &cellule, None).await?;
    Ok(Json(
        agenda::edit(&state, &member, &sid, body.parse()?).await?,
    ))
}

/// Publishes the agenda: its deferrals are counted, its cases become `scheduled` and members get
/// access (coordinator).
#[utoipa::path(post, path = "/v1/cellules/{cellule}/sessions/{sid}/agenda/publish", tag = "sessions", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug"), ("sid" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "The published agenda", body = AgendaView),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the coordinator, or charter not accepted", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Cancelled, already published, empty, or a case changed since the agenda was built", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn publish_agenda(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((cellule, sid)): ApiPath<(String, String)>,
) -> Result<Json<AgendaView>, Error> {
    let member = access::enter(&state, &caller, &cellule, None).await?;
    Ok(Json(agenda::publish(&state, &member, &sid).await?))
}

/// Records the session's decision on one item and moves the case on (coordinator).
#[utoipa::path(post, path = "/v1/cellules/{cellule}/sessions/{sid}/items/{case_id}/decision", tag = "sessions", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug"), ("sid" = String, Path, description = "Session id"), ("case_id" = String, Path, description = "Case id"), ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe: the same key with the same request answers the first answer again (`Idempotent-Replayed: true`); see docs/api.md", min_length = 1, max_length = 255, pattern = r"^[!#-\[\]-~]+$")),
    request_body = DecisionRequest,
    responses(
        (status = 201, description = "The decision", body = DecisionView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the coordinator, or charter not accepted", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session or item", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Agenda not published, item decided, case not scheduled, or a request with this idempotency key in flight", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid decision, direct identifiers in text, invalid idempotency key, or a key used with another request", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Integrity failure", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable, or the commit's outcome unknown (retry with the same idempotency key)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn record_decision(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((cellule, sid, case_id)): ApiPath<(String, String, String)>,
    key: KeyHeader,
    body: ApiJson<DecisionRequest>,
) -> Result<Response, Error> {
    let member = access::enter(&state, &caller, &cellule, Some(&case_id)).await?;
    let (req, bytes) = body.parse_with_bytes()?;
    let (s, m, sid, case) = (&state, &member, sid.as_str(), case_id.as_str());
    let ran = idempotency::run(s, m, key, &bytes, StatusCode::CREATED, |lease| async move {
        decisions::decide(s, m, sid, case, req, lease.as_ref()).await
    })
    .await?;
    Ok(match ran {
        Ran::Fresh(decision) => (StatusCode::CREATED, Json(decision)).into_response(),
        Ran::Replayed(stored) => idempotency::replay(stored, axum::http::HeaderMap::new()),
    })
}

/// The session as an iCalendar file: time, place, item references only (coordinator, members).
#[utoipa::path(get, path = "/v1/cellules/{cellule}/sessions/{sid}/calendar.ics", tag = "sessions", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug"), ("sid" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "An iCalendar file (RFC 5545)", body = String, content_type = "text/calendar"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role without access", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn session_calendar(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((cellule, sid)): ApiPath<(String, String)>,
) -> Result<Response, Error> {
    let member = access::enter(&state, &caller, &cellule, None).await?;
    let text = sessions::calendar(&state, &member, &sid).await?;
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/calendar; charset=utf-8"),
    );
    Ok(response)
}

/// The directory of interlocutors (coordinator).
#[utoipa::path(get, path = "/v1/cellules/{cellule}/interlocutors", tag = "sessions", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug")),
    responses(
        (status = 200, description = "The interlocutors", body = Interlocutors),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the coordinator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such cellule, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_interlocutors(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(cellule): ApiPath<String>,
) -> Result<Json<Interlocutors>, Error> {
    let member = access::enter(&state, &caller, &cellule, None).await?;
    Ok(Json(directory::get_interlocutors(&state, &member).await?))
}

/// Replaces the interlocutors (coordinator); the routing rules must still refer to them.
#[utoipa::path(put, path = "/v1/cellules/{cellule}/interlocutors", tag = "sessions", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug")),
    request_body = Interlocutors,
    responses(
        (status = 200, description = "The interlocutors", body = Interlocutors),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the coordinator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such cellule, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid directory", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn put_interlocutors(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(cellule): ApiPath<String>,
    body: ApiJson<Interlocutors>,
) -> Result<Json<Interlocutors>, Error> {
    let member = access::enter(&state, &caller, &cellule, None).await?;
    Ok(Json(
        directory::put_interlocutors(&state, &member, body.parse()?).await?,
    ))
}

/// The whole directory: interlocutors and rules (coordinator).
#[utoipa::path(get, path = "/v1/cellules/{cellule}/directory", tag = "sessions", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug")),
    responses(
        (status = 200, description = "Interlocutors and rules", body = DirectoryDocument),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the coordinator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such cellule, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_directory(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(cellule): ApiPath<String>,
) -> Result<Json<DirectoryDocument>, Error> {
    let member = access::enter(&state, &caller, &cellule, None).await?;
    Ok(Json(directory::get_directory(&state, &member).await?))
}

/// Replaces interlocutors and rules at once (coordinator): an import, whose rules may name
/// interlocutors the stored directory lacks.
#[utoipa::path(put, path = "/v1/cellules/{cellule}/directory", tag = "sessions", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug")),
    request_body = DirectoryDocument,
    responses(
        (status = 200, description = "Interlocutors and rules", body = DirectoryDocument),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the coordinator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such cellule, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid directory", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn put_directory(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(cellule): ApiPath<String>,
    body: ApiJson<DirectoryDocument>,
) -> Result<Json<DirectoryDocument>, Error> {
    let member = access::enter(&state, &caller, &cellule, None).await?;
    Ok(Json(
        directory::put_directory(&state, &member, body.parse()?).await?,
    ))
}

/// The ordered routing rules (coordinator).
#[utoipa::path(get, path = "/v1/cellules/{cellule}/routing", tag = "sessions", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug")),
    responses(
        (status = 200, description = "The rules", body = RoutingRules),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the coordinator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such cellule, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_routing(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(cellule): ApiPath<String>,
) -> Result<Json<RoutingRules>, Error> {
    let member = access::enter(&state, &caller, &cellule, None).await?;
    Ok(Json(directory::get_rules(&state, &member).await?))
}

/// Replaces the ordered routing rules (coordinator).
#[utoipa::path(put, path = "/v1/cellules/{cellule}/routing", tag = "sessions", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug")),
    request_body = RoutingRules,
    responses(
        (status = 200, description = "The rules", body = RoutingRules),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the coordinator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such cellule, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid rules", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn put_routing(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(cellule): ApiPath<String>,
    body: ApiJson<RoutingRules>,
) -> Result<Json<RoutingRules>, Error> {
    let member = access::enter(&state, &caller, &cellule, None).await?;
    Ok(Json(
        directory::put_rules(&state, &member, body.parse()?).await?,
    ))
}

/// Yearly statistics, every count below 5 suppressed (coordinator, auditor).
#[utoipa::path(get, path = "/v1/cellules/{cellule}/stats", tag = "sessions", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug"), StatsQuery),
    responses(
        (status = 200, description = "The statistics", body = Stats),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role without access", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such cellule, or not a member", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid year", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_stats(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(cellule): ApiPath<String>,
    query: ApiQuery<StatsQuery>,
) -> Result<Json<Stats>, Error> {
    let member = access::enter(&state, &caller, &cellule, None).await?;
    let query = query.parse()?;
    Ok(Json(statistics::stats(&state, &member, query.year).await?))
}

/// Adds a case to a published agenda (an urgent case that came in after publication): it
/// becomes `scheduled` with its routing proposal, and members' and invited guests' access opens
/// at once (coordinator).
#[utoipa::path(post, path = "/v1/cellules/{cellule}/sessions/{sid}/agenda/items", tag = "sessions", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug"), ("sid" = String, Path, description = "Session id"), ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe: the same key with the same request answers the first answer again (`Idempotent-Replayed: true`); see docs/api.md", min_length = 1, max_length = 255, pattern = r"^[!#-\[\]-~]+$")),
    request_body = AgendaItemAdd,
    responses(
        (status = 201, description = "The agenda with the item", body = AgendaView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the coordinator, or charter not accepted", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Session cancelled, agenda not published, case already on it, the agenda or the case changed meanwhile, or a request with this idempotency key in flight", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown or ineligible case (not accepted nor followed up, or on another open agenda), position out of range, invalid idempotency key, or a key used with another request", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable, or the commit's outcome unknown (retry with the same idempotency key)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn add_agenda_item(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((cellule, sid)): ApiPath<(String, String)>,
    key: KeyHeader,
    body: ApiJson<AgendaItemAdd>,
) -> Result<Response, Error> {
    let member = access::enter(&state, &caller, &cellule, None).await?;
    let (req, bytes) = body.parse_with_bytes()?;
    let (s, m, sid) = (&state, &member, sid.as_str());
    let ran = idempotency::run(s, m, key, &bytes, StatusCode::CREATED, |lease| async move {
        agenda_amend::add_item(s, m, sid, req, lease.as_ref()).await
    })
    .await?;
    Ok(match ran {
        Ran::Fresh(agenda) => (StatusCode::CREATED, Json(agenda)).into_response(),
        Ran::Replayed(stored) => idempotency::replay(stored, axum::http::HeaderMap::new()),
    })
}

/// Withdraws an undecided item from a published agenda: its case goes back to the status it had
/// before scheduling, and access through this agenda closes at once (coordinator).
#[utoipa::path(delete, path = "/v1/cellules/{cellule}/sessions/{sid}/agenda/items/{case_id}", tag = "sessions", security(("bearer" = [])),
    params(("cellule" = String, Path, description = "Cellule slug"), ("sid" = String, Path, description = "Session id"), ("case_id" = String, Path, description = "The item's case id or reference")),
    responses(
        (status = 200, description = "The agenda without the item", body = AgendaView),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the coordinator, or charter not accepted", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session or item", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Session cancelled, agenda not published, item decided, or the agenda or the case changed meanwhile", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn withdraw_agenda_item(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((cellule, sid, case_id)): ApiPath<(String, String, String)>,
) -> Result<Json<AgendaView>, Error> {
    let member = access::enter(&state, &caller, &cellule, Some(&case_id)).await?;
    Ok(Json(
        agenda_amend::withdraw_item(&state, &member, &sid, &case_id).await?,
    ))
}
