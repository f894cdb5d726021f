//! The coordinator's *Séances* desk: the year's sessions, one session's agenda (build, order,
//! withdraw, add, publish), its calendar, and the meeting's steps (open on the day, attendance,
//! close). Every action calls the API's service, so the same policies decide and the same audit
//! entries are written; a refusal comes back as the page with a French message.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::WebState;
use super::forms::Form;
use super::home::{charter_gate, chrome, enter};
use super::page::{self, Chrome, render, see_other};
use super::session::Signed;
use super::text;
use crate::domain::membership::Role;
use crate::domain::session::{AttendanceStatus, SessionStage};
use crate::error::Error;
use crate::render::french;
use crate::services::access::{self, CelluleMember};
use crate::services::cellules;
use crate::services::review::agenda::{self, AgendaEdit, AgendaItemView, AgendaView};
use crate::services::review::agenda_amend::{self, AgendaItemAdd};
use crate::services::review::meeting::{self, AttendanceEntry, AttendanceRequest};
use crate::services::review::sessions::{self, SessionView};
use crate::storage::MeetingStep;

/// Enters the desk of cellule `slug`: only whom the policies let manage sessions (403 for the
/// other roles, 404 for a stranger), once the charter is accepted.
pub(super) async fn desk(
    state: &WebState,
    signed: &Signed,
    slug: &str,
    here: &str,
) -> Result<CelluleMember, Response> {
    let member = enter(state, signed, slug).await?;
    match access::cellule_action(&state.app, &access::principal(&member), "manage_sessions") {
        Ok(()) | Err(Error::CharterNotAccepted) => {}
        Err(e) => return Err(page::error(e)),
    }
    charter_gate(state, &member, here)?;
    Ok(member)
}

/// A form posted to the desk: its fields (once its CSRF token is checked) and the member, who
/// may manage the sessions.
pub(super) async fn desk_form(
    state: &WebState,
    signed: &Signed,
    slug: &str,
    here: &str,
    body: &Bytes,
) -> Result<(Form, CelluleMember), Response> {
    let form = signed.form(body)?;
    let member = desk(state, signed, slug, here).await?;
    Ok((form, member))
}

/// A session's status in French.
pub(super) fn stage(s: SessionStage) -> &'static str {
    match s {
        SessionStage::Planned => "planifiée",
        SessionStage::Published => "ordre du jour publié",
        SessionStage::InSession => "en séance",
        SessionStage::Held => "tenue",
        SessionStage::MinutesApproved => "compte rendu approuvé",
        SessionStage::Cancelled => "annulée",
    }
}

/// « jeudi 12 mars 2026 à 14 h 00 » from the session's local start.
pub(super) fn session_day(s: &SessionView) -> String {
    chrono::DateTime::parse_from_rfc3339(&s.starts_at)
        .map(|t| french::date_time(t.naive_local()))
        .unwrap_or_else(|_| s.starts_at.clone())
}

/// A service's conflict as a French sentence (its English detail is never shown).
pub(super) fn conflict_message(e: &Error) -> Option<&'static str> {
    let detail = match e {
        Error::Conflict(d) => d.as_str(),
        Error::InvalidTransition(_) => "",
        _ => return None,
    };
    Some(match detail {
        d if d.contains("is minutes_approved")
            || d.contains("minutes of this session are approved") =>
        {
            "Le compte rendu est approuvé : la séance ne change plus."
        }
        d if d.contains("needs it held") => "Le compte rendu s'approuve une fois la séance close.",
        d if d.contains("needs it in_session") || d.contains("not open") => {
            "La séance n'est pas ouverte : ouvrez-la d'abord, le jour de la séance."
        }
        d if d.contains("needs it published") => {
            "La séance s'ouvre une fois l'ordre du jour publié."
        }
        d if d.contains("on its day") => {
            "La séance s'ouvre le jour même, pas avant : revenez le jour de la séance."
        }
        d if d.contains("no longer be cancelled") => {
            "La séance a été ouverte : elle a eu lieu et ne peut plus être annulée."
        }
        d if d.contains("cancelled") && !d.contains("changed meanwhile") => {
            "Cette séance est annulée : elle ne change plus."
        }
        d if d.contains("attendance") => {
            "Les présences s'enregistrent de la publication de l'ordre du jour à l'approbation du compte rendu."
        }
        d if d.contains("agenda is published") => {
            "L'ordre du jour est déjà publié : ajoutez ou retirez un point, ou changez l'ordre."
        }
        d if d.contains("not published") => "L'ordre du jour n'est pas encore publié.",
        d if d.contains("no longer be withdrawn") => {
            "Ce point a déjà une décision : il ne peut plus être retiré."
        }
        d if d.contains("already decided") => {
            "Ce point a déjà une décision : rechargez la page pour la corriger."
        }
        d if d.contains("no decision to correct") => {
            "Ce point n'a pas encore de décision : rechargez la page pour l'enregistrer."
        }
        d if d.contains("already on this agenda") => {
            "Cette situation est déjà à l'ordre du jour de cette séance."
        }
        d if d.contains("agenda is empty") => "L'ordre du jour est vide : construisez-le d'abord.",
        d if d.contains("changed since the agenda was built") => {
            "Des situations ont changé depuis la construction de l'ordre du jour : reconstruisez-le."
        }
        d if d.contains("changed meanwhile") => {
            "La séance a changé entre-temps : rechargez la page."
        }
        _ => {
            "L'opération n'est pas possible dans l'état actuel de la séance : rien n'a été modifié."
        }
    })
}

/// A refused case reference (adding an item) as a French sentence.
fn reference_message(detail: &str) -> &'static str {
    match detail {
        d if d.contains("only accepted") => {
            "Seules les situations acceptées ou en suivi peuvent être inscrites à l'ordre du jour."
        }
        d if d.contains("agenda of session") => {
            "Cette situation est inscrite à l'ordre du jour d'une autre séance : retirez-la d'abord de celle-ci."
        }
        _ => "Aucune situation de cette cellule ne porte cette référence.",
    }
}

/// How many deferred references the session page names.
const DEFERRED_SHOWN: usize = 50;

/// One agenda item as the page shows it.
struct ItemRow {
    case_id: String,
    reference: String,
    position: i64,
    kind: &'static str,
    slot: String,
    urgency: &'static str,
    needs: String,
    place: String,
    proposal: String,
    why: String,
    decision: Option<&'static str>,
    first: bool,
    last: bool,
}

fn slot(t: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|t| french::time(t.naive_local()))
        .unwrap_or_default()
}

/// The routing proposal in French: who leads and who is invited, the rule, and why.
pub(super) fn proposal_text(p: &serde_json::Value) -> (String, String) {
    let names = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n.as_str().map(str::to_owned))
            .collect()
    };
    if p["status"] == "routed" {
        let lead = p["lead_name"].as_str().unwrap_or("");
        let others = names(&p["other_names"]);
        let who = if others.is_empty() {
            format!("Pilote : {lead}")
        } else {
            format!("Pilote : {lead} ; invités : {}", others.join(", "))
        };
        let why = format!(
            "Règle n° {} « {} » : les besoins et le territoire de la situation correspondent.",
            p["rule_position"].as_u64().unwrap_or(0),
            p["rule"].as_str().unwrap_or("")
        );
        (who, why)
    } else {
        (
            "Aucune règle ne couvre cette situation".to_owned(),
            "À orienter en séance : aucune règle d'orientation ne correspond à ses besoins et à son territoire.".to_owned(),
        )
    }
}

pub(super) fn needs_text(needs: &[crate::domain::case::Need]) -> String {
    needs
        .iter()
        .map(|n| text::need(*n).0)
        .collect::<Vec<_>>()
        .join(", ")
}

fn item_rows(items: &[AgendaItemView]) -> Vec<ItemRow> {
    let n = items.len();
    items
        .iter()
        .enumerate()
        .map(|(i, it)| {
            let (proposal, why) = proposal_text(&it.proposal);
            let place = [it.commune.as_deref(), it.sector.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" / ");
            ItemRow {
                case_id: it.case_id.clone(),
                reference: it.reference.clone(),
                position: it.position,
                kind: french::kind(&it.kind).unwrap_or("Point"),
                slot: format!("{} – {}", slot(&it.starts_at), slot(&it.ends_at)),
                urgency: text::urgency(it.urgency).0,
                needs: needs_text(&it.needs),
                place,
                proposal,
                why,
                decision: it.decision.map(french::outcome),
                first: i == 0,
                last: i + 1 == n,
            }
        })
        .collect()
}

/// One line of the attendance form: a member of the cellule.
struct AttendanceRow {
    index: usize,
    subject: String,
    label: String,
    status: &'static str,
}

#[derive(Template)]
#[template(path = "seance.html")]
struct SessionPage {
    c: Chrome,
    base: String,
    status: &'static str,
    location: String,
    duration: String,
    holiday: Option<String>,
    problem: Option<&'static str>,
    done: Option<&'static str>,
    built: bool,
    published: bool,
    planned: bool,
    /// Planned or published, not yet opened: it may still be cancelled.
    cancellable: bool,
    opens: bool,
    in_session: bool,
    held: bool,
    amendable: bool,
    has_minutes: bool,
    capacity: String,
    used: String,
    over: bool,
    items: Vec<ItemRow>,
    /// The first deferred references (a crowded month defers thousands: the page names
    /// [`DEFERRED_SHOWN`] and counts the rest).
    deferred: Vec<String>,
    deferred_more: usize,
    attendance: Vec<AttendanceRow>,
}

/// The session page, with `problem` shown at its top (and `status`).
async fn session_page(
    state: &WebState,
    signed: &Signed,
    member: &CelluleMember,
    sid: &str,
    status: StatusCode,
    problem: Option<&'static str>,
    done: Option<&'static str>,
) -> Response {
    let base = format!("/c/{}/seances/{sid}", member.slug());
    let (view, deferred_total): (AgendaView, usize) =
        match agenda::get_agenda_naming(&state.app, member, sid, DEFERRED_SHOWN).await {
            Ok(v) => v,
            Err(e) => return page::error(e),
        };
    let s = &view.session;
    let stage = s.status;
    let attendance = match attendance_rows(state, member, sid, stage).await {
        Ok(a) => a,
        Err(e) => return page::error(e),
    };
    let day = session_day(s);
    let page = SessionPage {
        c: chrome(state, signed, member, &format!("Séance du {day}"), &base),
        status: self::stage(stage),
        location: s.location.clone(),
        duration: french::duration(u32::try_from(s.duration_minutes).unwrap_or(0)),
        holiday: s.holiday.clone(),
        problem,
        done,
        built: s.agenda_built_at.is_some(),
        published: view.published,
        planned: stage == SessionStage::Planned,
        cancellable: matches!(stage, SessionStage::Planned | SessionStage::Published),
        opens: stage == SessionStage::Published,
        in_session: stage == SessionStage::InSession,
        held: stage == SessionStage::Held,
        amendable: stage.amendable(),
        has_minutes: matches!(
            stage,
            SessionStage::InSession | SessionStage::Held | SessionStage::MinutesApproved
        ),
        capacity: french::duration(u32::try_from(view.capacity_minutes).unwrap_or(0)),
        used: french::duration(u32::try_from(view.minutes_used).unwrap_or(0)),
        over: view.over_capacity,
        items: item_rows(&view.items),
        deferred: view
            .deferred
            .iter()
            .take(DEFERRED_SHOWN)
            .map(|d| d.reference.clone())
            .collect(),
        deferred_more: deferred_total.saturating_sub(DEFERRED_SHOWN),
        attendance,
        base,
    };
    render(status, &page)
}

async fn attendance_rows(
    state: &WebState,
    member: &CelluleMember,
    sid: &str,
    stage: SessionStage,
) -> Result<Vec<AttendanceRow>, Error> {
    if !stage.amendable() {
        return Ok(Vec::new());
    }
    let recorded = meeting::attendance(&state.app, member, sid).await?;
    let members = cellules::members(&state.app, member.slug()).await?;
    Ok(members
        .into_iter()
        .filter(|m| matches!(m.spec.role, Role::Member | Role::Coordinator))
        .enumerate()
        .map(|(index, m)| {
            let subject = m.subject.as_str().to_owned();
            let status = recorded
                .iter()
                .find(|l| l.participant.as_deref() == Some(subject.as_str()))
                .map_or("present", |l| l.status.as_str());
            let organisation = m
                .spec
                .organisation
                .as_ref()
                .map(|o| o.as_str().to_owned())
                .unwrap_or_default();
            AttendanceRow {
                index,
                label: format!("{subject} — {organisation}"),
                subject,
                status,
            }
        })
        .collect())
}

#[derive(serde::Deserialize)]
pub struct DoneQuery {
    fait: Option<String>,
}

/// The confirmation of an action of the session page (only these texts are shown: the query
/// is not echoed).
fn done_message(action: &str) -> Option<&'static str> {
    Some(match action {
        "construire" => "L'ordre du jour est construit.",
        "publier" => "L'ordre du jour est publié : les membres invités le reçoivent.",
        "deplacer" => "L'ordre des points est modifié.",
        "retirer" => "Le point est retiré de l'ordre du jour.",
        "ajouter" => "La situation est ajoutée à l'ordre du jour.",
        "ouvrir" => "La séance est ouverte : les décisions peuvent être enregistrées.",
        "clore" => "La séance est close : relisez puis approuvez le compte rendu.",
        "presences" => "Les présences sont enregistrées.",
        "annuler" => {
            "La séance est annulée : ses points retournent parmi les situations à inscrire."
        }
        _ => return None,
    })
}

/// `GET /c/{cellule}/seances/{sid}[?fait=action]`.
pub async fn show(
    State(state): State<WebState>,
    signed: Signed,
    Path((slug, sid)): Path<(String, String)>,
    Query(q): Query<DoneQuery>,
) -> Response {
    let here = format!("/c/{slug}/seances/{sid}");
    let member = match desk(&state, &signed, &slug, &here).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let done = q.fait.as_deref().and_then(done_message);
    session_page(&state, &signed, &member, &sid, StatusCode::OK, None, done).await
}

/// The answer to an action of the session page: back to it (303), or the page with the
/// problem in French (409 for a conflict, 422 for a refused value).
async fn after(
    state: &WebState,
    signed: &Signed,
    member: &CelluleMember,
    sid: &str,
    action: &str,
    result: Result<(), Error>,
) -> Response {
    match result {
        Ok(()) => see_other(&format!("/c/{}/seances/{sid}?fait={action}", member.slug())),
        Err(e) => {
            if let Some(m) = conflict_message(&e) {
                return session_page(
                    state,
                    signed,
                    member,
                    sid,
                    StatusCode::CONFLICT,
                    Some(m),
                    None,
                )
                .await;
            }
            let message = match &e {
                Error::Validation(errors) => {
                    if errors.iter().any(|f| f.pointer == "/confirm") {
                        "Cochez la case pour confirmer l'annulation de la séance."
                    } else {
                        match errors.iter().find(|f| f.pointer == "/case_id") {
                            Some(f) => reference_message(&f.detail),
                            None => "La demande n'est pas valide : rien n'a été modifié.",
                        }
                    }
                }
                Error::NotFound(_) => {
                    "Ce point n'est pas (ou plus) à l'ordre du jour de cette séance."
                }
                _ => return page::error(e),
            };
            session_page(
                state,
                signed,
                member,
                sid,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some(message),
                None,
            )
            .await
        }
    }
}

/// `POST /c/{cellule}/seances/{sid}/{action}`: the session page's buttons.
pub async fn act(
    State(state): State<WebState>,
    signed: Signed,
    Path((slug, sid, action)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    let here = format!("/c/{slug}/seances/{sid}");
    let (form, member) = match desk_form(&state, &signed, &slug, &here, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let app = &state.app;
    let result = match action.as_str() {
        "construire" => agenda::build(app, &member, &sid).await.map(drop),
        "publier" => agenda::publish(app, &member, &sid).await.map(drop),
        "deplacer" => move_item(&state, &member, &sid, &form).await,
        "retirer" => agenda_amend::withdraw_item(app, &member, &sid, &form.text("point"))
            .await
            .map(drop),
        "ajouter" => {
            let req = AgendaItemAdd {
                case_id: form.text("reference").to_uppercase(),
                position: None,
            };
            agenda_amend::add_item(app, &member, &sid, req, None)
                .await
                .map(drop)
        }
        "ouvrir" => meeting::step(app, &member, &sid, MeetingStep::Open)
            .await
            .map(drop),
        "clore" => meeting::step(app, &member, &sid, MeetingStep::Close)
            .await
            .map(drop),
        "presences" => record_attendance(&state, &member, &sid, &form).await,
        "annuler" if form.get("confirmer") == Some("oui") => {
            sessions::cancel(app, &member, &sid).await.map(drop)
        }
        "annuler" => Err(Error::invalid("/confirm", "not confirmed")),
        _ => return page::not_found(),
    };
    after(&state, &signed, &member, &sid, &action, result).await
}

/// Moves item `point` (a case id) one place up or down (`sens`), by the agenda's edit.
async fn move_item(
    state: &WebState,
    member: &CelluleMember,
    sid: &str,
    form: &Form,
) -> Result<(), Error> {
    let view = agenda::get_agenda(&state.app, member, sid).await?;
    let mut ids: Vec<String> = view.items.iter().map(|i| i.case_id.clone()).collect();
    let point = form.text("point");
    let Some(at) = ids.iter().position(|id| *id == point) else {
        return Err(Error::invalid("/items", "not an item of this agenda"));
    };
    let to = match form.text("sens").as_str() {
        "haut" if at > 0 => at - 1,
        "bas" if at + 1 < ids.len() => at + 1,
        _ => return Ok(()),
    };
    ids.swap(at, to);
    agenda::edit(&state.app, member, sid, AgendaEdit { items: ids })
        .await
        .map(drop)
}

/// Records the attendance form: one line per member, `statut-{i}` for `participant-{i}`.
async fn record_attendance(
    state: &WebState,
    member: &CelluleMember,
    sid: &str,
    form: &Form,
) -> Result<(), Error> {
    let mut entries = Vec::new();
    for i in 0..300 {
        let Some(subject) = form.get(&format!("participant-{i}")) else {
            break;
        };
        let status = match form.text(&format!("statut-{i}")).as_str() {
            "present" => AttendanceStatus::Present,
            "excused" => AttendanceStatus::Excused,
            "absent" => AttendanceStatus::Absent,
            _ => continue,
        };
        entries.push(AttendanceEntry {
            participant: Some(subject.to_owned()),
            organisation: None,
            status,
        });
    }
    meeting::record_attendance(&state.app, member, sid, AttendanceRequest { entries })
        .await
        .map(drop)
}

/// `GET /c/{cellule}/seances/{sid}/calendrier.ics`: the session's calendar (references only),
/// downloaded by the coordinator from the page (the API's own route takes a token).
pub async fn calendar(
    State(state): State<WebState>,
    signed: Signed,
    Path((slug, sid)): Path<(String, String)>,
) -> Response {
    let here = format!("/c/{slug}/seances/{sid}");
    let member = match desk(&state, &signed, &slug, &here).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    match sessions::calendar(&state.app, &member, &sid).await {
        Ok(ics) => page::download("text/calendar; charset=utf-8", "seance.ics", ics),
        Err(e) => page::error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_services_conflicts_are_told_in_french() {
        let says = |d: &str| conflict_message(&Error::Conflict(d.into())).unwrap_or("");
        assert!(
            says("The meeting opens on its day (2030-12-12), not before.").contains("jour même")
        );
        assert!(says("The session is published; this step needs it held.").contains("close"));
        assert!(
            says("The session is minutes_approved; this step needs it held.").contains("approuvé")
        );
        assert!(
            says("This item has a decision: it can no longer be withdrawn.").contains("retiré")
        );
        assert!(says("This agenda is published: it is no longer built").contains("déjà publié"));
        assert!(says("This case is already on this agenda.").contains("déjà à l'ordre du jour"));
        assert!(conflict_message(&Error::NotFound("case")).is_none());
        assert!(reference_message("no such case in this cellule").contains("Aucune situation"));
    }
}
