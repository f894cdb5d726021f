//! The cellule's session schedule (recurrence, time, place, holiday rule).

use super::*;

/// `GET …/schedule`.
pub async fn get_schedule(state: &AppState, who: &CelluleMember) -> Result<Schedule, Error> {
    allowed(state, who, "read_schedule").await?;
    load_schedule(state, slug(who))
        .await?
        .ok_or(Error::NotFound("schedule"))
}

/// `PUT …/schedule`.
pub async fn put_schedule(
    state: &AppState,
    who: &CelluleMember,
    mut body: Schedule,
) -> Result<Schedule, Error> {
    allowed(state, who, "manage_schedule").await?;
    body.validate().map_err(Error::Validation)?;
    crate::services::guard::check_place(state, who, "location", &body.location).await?;
    if body.starts_on.is_none() {
        // A schedule edited without a first day keeps the one it had: the recurrence (and so
        // the occurrences already planned) does not shift under the sessions.
        body.starts_on = load_schedule(state, slug(who))
            .await?
            .and_then(|old| old.starts_on);
    }
    if body.starts_on.is_none() {
        let tz = body
            .tz()
            .map_err(|e| Error::invalid("/time_zone", e.to_string()))?;
        body.starts_on = Some(state.clock.now().with_timezone(&tz).date_naive());
    }
    let doc = serde_json::to_string(&body).map_err(|e| Error::Internal(e.to_string()))?;
    state
        .db
        .put_schedule(slug(who), &doc, state.clock.now())
        .await?;
    Ok(body)
}
