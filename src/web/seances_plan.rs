//! The coordinator's calendar of sessions (`/c/{cellule}/seances`): the year's sessions with the
//! holidays that moved them, the cellule's schedule in words, and the forms that plan the coming
//! months from it, add a session outside it, or (on a session's page) cancel one. Each form calls
//! the API's use case (`POST …/sessions/plan`, `POST …/sessions`), so the same policies decide.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{Datelike, NaiveDate, NaiveTime, TimeZone};

use super::WebState;
use super::forms::{FieldProblem, Form, message_for};
use super::home::chrome;
use super::page::{self, Chrome, render, see_other};
use super::seances::{desk, desk_form, session_day, stage};
use super::session::Signed;
use crate::domain::schedule::{HolidayRule, Schedule, parse_tz};
use crate::error::Error;
use crate::render::french;
use crate::services::access::CelluleMember;
use crate::services::review::schedule::get_schedule;
use crate::services::review::sessions::{self, AdHocRequest, PlanRequest, SessionQuery};

struct SessionRow {
    href: String,
    day: String,
    holiday: Option<String>,
    status: &'static str,
    kind: &'static str,
}

#[derive(Template)]
#[template(path = "seances.html")]
struct SessionsPage {
    c: Chrome,
    year: i32,
    rows: Vec<SessionRow>,
    previous: String,
    next: String,
    base: String,
    /// The schedule's lines in French, or none when the cellule has none yet.
    schedule: Vec<(&'static str, String)>,
    done: Option<&'static str>,
    errors: Vec<FieldProblem>,
    /// The planning form's month count, as typed when it came back.
    months: String,
    /// The ad-hoc session's fields, as typed when they came back.
    ad_hoc: Vec<InputField>,
}

/// One input of a form, with its value and its problem.
struct InputField {
    id: &'static str,
    label: &'static str,
    kind: &'static str,
    help: &'static str,
    value: String,
    error: Option<String>,
}

impl SessionsPage {
    fn err(&self, field: &str) -> Option<&str> {
        message_for(&self.errors, field)
    }
}

#[derive(serde::Deserialize)]
pub struct ListQuery {
    annee: Option<i32>,
    fait: Option<String>,
}

/// The forms' fields as typed (kept when the page comes back with a problem).
#[derive(Default)]
struct Typed {
    months: String,
    date: String,
    time: String,
    duration: String,
    location: String,
}

impl Typed {
    fn of(form: &Form) -> Self {
        Self {
            months: form.text("mois"),
            date: form.text("date"),
            time: form.text("heure"),
            duration: form.text("duree"),
            location: form.raw("lieu"),
        }
    }
}

const ORDINALS: [&str; 5] = ["premier", "deuxième", "troisième", "quatrième", "cinquième"];
const DAYS: [(&str, &str); 7] = [
    ("MO", "lundi"),
    ("TU", "mardi"),
    ("WE", "mercredi"),
    ("TH", "jeudi"),
    ("FR", "vendredi"),
    ("SA", "samedi"),
    ("SU", "dimanche"),
];

/// A recurrence rule in French for the usual shapes (« le deuxième jeudi de chaque mois »,
/// « chaque semaine, le mardi »); any other rule as written, in its own words.
pub(super) fn recurrence_text(rrule: &str) -> String {
    let rule = rrule.trim().trim_start_matches("RRULE:");
    let parts: Vec<(&str, &str)> = rule.split(';').filter_map(|p| p.split_once('=')).collect();
    let get = |k: &str| parts.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
    let day_name = |code: &str| DAYS.iter().find(|(c, _)| *c == code).map(|(_, n)| *n);
    let interval = get("INTERVAL").unwrap_or("1");
    let known = parts
        .iter()
        .all(|(k, _)| matches!(*k, "FREQ" | "BYDAY" | "INTERVAL"));
    if known && interval == "1" {
        match (get("FREQ"), get("BYDAY")) {
            (Some("MONTHLY"), Some(by)) if !by.contains(',') => {
                let (n, code) = by.split_at(by.len().saturating_sub(2));
                let n = n.trim_start_matches('+');
                let ordinal = match n.parse::<usize>() {
                    Ok(k) if (1..=5).contains(&k) => Some(ORDINALS[k - 1]),
                    _ if n == "-1" => Some("dernier"),
                    _ => None,
                };
                if let (Some(o), Some(d)) = (ordinal, day_name(code)) {
                    return format!("le {o} {d} de chaque mois");
                }
            }
            (Some("WEEKLY"), Some(code)) => {
                if let Some(d) = day_name(code) {
                    return format!("chaque semaine, le {d}");
                }
            }
            _ => {}
        }
    }
    format!("selon la règle de récurrence « {rule} »")
}

fn holiday_text(rule: HolidayRule) -> &'static str {
    match rule {
        HolidayRule::NextWeek => "reportée d'une semaine",
        HolidayRule::Skip => "supprimée",
        HolidayRule::Keep => "maintenue",
    }
}

fn schedule_lines(s: &Schedule) -> Vec<(&'static str, String)> {
    let mut lines = vec![
        ("Rythme", recurrence_text(&s.rrule)),
        ("Heure", s.start_time.replace(':', "\u{a0}h\u{a0}")),
        ("Durée", french::duration(s.duration_minutes)),
        (
            "Temps par situation",
            format!(
                "{} pour une première présentation, {} pour un suivi",
                french::duration(s.minutes_per_new_case),
                french::duration(s.minutes_per_follow_up)
            ),
        ),
        (
            "Jour férié",
            format!("la séance est {}", holiday_text(s.on_holiday)),
        ),
    ];
    if !s.location.is_empty() {
        lines.push(("Lieu", s.location.clone()));
    }
    lines
}

#[allow(clippy::too_many_arguments)]
async fn sessions_page(
    state: &WebState,
    signed: &Signed,
    member: &CelluleMember,
    year: i32,
    done: Option<&'static str>,
    errors: Vec<FieldProblem>,
    typed: Typed,
) -> Result<SessionsPage, Error> {
    let here = format!("/c/{}/seances", member.slug());
    let q = SessionQuery {
        from: NaiveDate::from_ymd_opt(year, 1, 1),
        to: NaiveDate::from_ymd_opt(year, 12, 31),
    };
    let list = sessions::list_sessions(&state.app, member, q).await?;
    let schedule = match get_schedule(&state.app, member).await {
        Ok(s) => schedule_lines(&s),
        Err(Error::NotFound(_)) => vec![],
        Err(e) => return Err(e),
    };
    let rows = list
        .iter()
        .map(|s| SessionRow {
            href: format!("{here}/{}", s.id),
            day: session_day(s),
            holiday: s.holiday.clone(),
            status: stage(s.status),
            kind: if s.kind == "ad_hoc" {
                "séance supplémentaire"
            } else {
                "séance du calendrier"
            },
        })
        .collect();
    let title = if errors.is_empty() {
        format!("Séances {year}")
    } else {
        format!("Erreurs — Séances {year}")
    };
    Ok(SessionsPage {
        c: chrome(state, signed, member, &title, &here),
        year,
        rows,
        previous: format!("{here}?annee={}", year - 1),
        next: format!("{here}?annee={}", year + 1),
        base: here,
        schedule,
        done,
        ad_hoc: [
            ("date", "Jour *", "date", "Par exemple 2027-03-18.", typed.date),
            ("heure", "Heure de début *", "time", "Par exemple 14:00.", typed.time),
            (
                "duree",
                "Durée en minutes",
                "number",
                "Celle du calendrier si vous la laissez vide.",
                typed.duration,
            ),
            (
                "lieu",
                "Lieu",
                "text",
                "Celui du calendrier si vous le laissez vide. Une salle ou un service, jamais une personne.",
                typed.location,
            ),
        ]
        .into_iter()
        .map(|(id, label, kind, help, value)| InputField {
            id,
            label,
            kind,
            help,
            value,
            error: message_for(&errors, id).map(str::to_owned),
        })
        .collect(),
        months: if typed.months.is_empty() {
            "3".to_owned()
        } else {
            typed.months
        },
        errors,
    })
}

fn this_year(state: &WebState) -> i32 {
    state.app.clock.now().year()
}

/// `GET /c/{cellule}/seances[?annee=YYYY]`: the sessions of a year (the current one by default).
pub async fn list(
    State(state): State<WebState>,
    signed: Signed,
    Path(slug): Path<String>,
    Query(q): Query<ListQuery>,
) -> Response {
    let here = format!("/c/{slug}/seances");
    let member = match desk(&state, &signed, &slug, &here).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let year = q
        .annee
        .filter(|y| (2000..=2100).contains(y))
        .unwrap_or_else(|| this_year(&state));
    let done = match q.fait.as_deref() {
        Some("planifiees") => Some("Les séances des mois à venir sont planifiées."),
        Some("ajoutee") => Some("La séance supplémentaire est ajoutée au calendrier."),
        Some("calendrier") => {
            Some("Le calendrier est enregistré : les prochaines séances se planifient selon lui.")
        }
        _ => None,
    };
    match sessions_page(
        &state,
        &signed,
        &member,
        year,
        done,
        vec![],
        Typed::default(),
    )
    .await
    {
        Ok(p) => render(StatusCode::OK, &p),
        Err(e) => page::error(e),
    }
}

/// The page again with the problems of a form (422), what was typed kept.
async fn again(
    state: &WebState,
    signed: &Signed,
    member: &CelluleMember,
    errors: Vec<FieldProblem>,
    form: &Form,
) -> Response {
    again_with(
        state,
        signed,
        member,
        errors,
        form,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await
}

async fn again_with(
    state: &WebState,
    signed: &Signed,
    member: &CelluleMember,
    errors: Vec<FieldProblem>,
    form: &Form,
    status: StatusCode,
) -> Response {
    let year = this_year(state);
    match sessions_page(state, signed, member, year, None, errors, Typed::of(form)).await {
        Ok(p) => render(status, &p),
        Err(e) => page::error(e),
    }
}

/// `POST /c/{cellule}/seances/planifier`: plans the coming `mois` months from the schedule.
pub async fn plan(
    State(state): State<WebState>,
    signed: Signed,
    Path(slug): Path<String>,
    body: Bytes,
) -> Response {
    let here = format!("/c/{slug}/seances");
    let (form, member) = match desk_form(&state, &signed, &slug, &here, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let months = match form.text("mois").parse::<u32>() {
        Ok(m) if (1..=36).contains(&m) => m,
        _ => {
            let problem = FieldProblem::new("mois", "Indiquez un nombre de mois entre 1 et 36.");
            return again(&state, &signed, &member, vec![problem], &form).await;
        }
    };
    match sessions::plan(&state.app, &member, PlanRequest { months }).await {
        Ok(_) => see_other(&format!("{here}?fait=planifiees")),
        Err(Error::Conflict(_)) => {
            let problem = FieldProblem::new(
                "mois",
                "La cellule n'a pas encore de calendrier de séances : définissez-le d'abord.",
            );
            let conflict = StatusCode::CONFLICT;
            again_with(&state, &signed, &member, vec![problem], &form, conflict).await
        }
        Err(Error::Validation(_)) => {
            let problem = FieldProblem::new("mois", "Indiquez un nombre de mois entre 1 et 36.");
            again(&state, &signed, &member, vec![problem], &form).await
        }
        Err(e) => page::error(e),
    }
}

/// The ad-hoc session's fields, read and checked (each problem on its field).
fn ad_hoc_request(
    form: &Form,
    zone: chrono_tz::Tz,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<AdHocRequest, Vec<FieldProblem>> {
    let mut errors = Vec::new();
    let date = NaiveDate::parse_from_str(&form.text("date"), "%Y-%m-%d").ok();
    if date.is_none() {
        errors.push(FieldProblem::new(
            "date",
            "Indiquez le jour de la séance, par exemple 2027-03-18.",
        ));
    }
    let time = NaiveTime::parse_from_str(&form.text("heure"), "%H:%M").ok();
    if time.is_none() {
        errors.push(FieldProblem::new(
            "heure",
            "Indiquez l'heure de début, par exemple 14:00.",
        ));
    }
    let duration = match form.text("duree") {
        d if d.is_empty() => None,
        d => match d.parse::<u32>() {
            Ok(m) if (15..=600).contains(&m) => Some(m),
            _ => {
                errors.push(FieldProblem::new(
                    "duree",
                    "La durée se compte en minutes, entre 15 et 600.",
                ));
                None
            }
        },
    };
    let location = Some(form.raw("lieu")).filter(|l| !l.trim().is_empty());
    if location
        .as_ref()
        .is_some_and(|l| l.chars().count() > 200 || l.chars().any(char::is_control))
    {
        errors.push(FieldProblem::new(
            "lieu",
            "Le lieu tient en 200 caractères au plus, sur une ligne.",
        ));
    }
    let starts_at = match (date, time) {
        (Some(d), Some(t)) => match zone.from_local_datetime(&d.and_time(t)).earliest() {
            Some(at) if at.with_timezone(&chrono::Utc) > now => Some(at.fixed_offset()),
            Some(_) => {
                errors.push(FieldProblem::new(
                    "date",
                    "La séance doit commencer dans le futur.",
                ));
                None
            }
            None => {
                errors.push(FieldProblem::new(
                    "heure",
                    "Cette heure n'existe pas ce jour-là (changement d'heure) : choisissez-en une autre.",
                ));
                None
            }
        },
        _ => None,
    };
    match starts_at {
        Some(starts_at) if errors.is_empty() => Ok(AdHocRequest {
            starts_at,
            duration_minutes: duration,
            location,
        }),
        _ => Err(errors),
    }
}

/// `POST /c/{cellule}/seances/supplementaire`: a session outside the schedule.
pub async fn add(
    State(state): State<WebState>,
    signed: Signed,
    Path(slug): Path<String>,
    body: Bytes,
) -> Response {
    let here = format!("/c/{slug}/seances");
    let (form, member) = match desk_form(&state, &signed, &slug, &here, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    // The day and hour are the cellule's local time (its schedule's zone).
    let zone = match get_schedule(&state.app, &member).await {
        Ok(s) => parse_tz(&s.time_zone).unwrap_or(chrono_tz::Europe::Paris),
        Err(Error::NotFound(_)) => chrono_tz::Europe::Paris,
        Err(e) => return page::error(e),
    };
    let req = match ad_hoc_request(&form, zone, state.app.clock.now()) {
        Ok(r) => r,
        Err(errors) => return again(&state, &signed, &member, errors, &form).await,
    };
    match sessions::add_session(&state.app, &member, req).await {
        Ok(s) => see_other(&format!("{here}/{}", s.id)),
        Err(Error::Identifiers(_)) => {
            let problem = FieldProblem::new(
                "lieu",
                "Le lieu ne doit identifier personne : indiquez une salle ou un service, pas une personne.",
            );
            again(&state, &signed, &member, vec![problem], &form).await
        }
        Err(Error::Validation(errors)) => {
            let problems = errors
                .iter()
                .map(|e| match e.pointer.as_str() {
                    "/duration_minutes" => FieldProblem::new(
                        "duree",
                        "La durée se compte en minutes, entre 15 et 600.",
                    ),
                    "/location" => FieldProblem::new(
                        "lieu",
                        "Le lieu tient en 200 caractères au plus, sur une ligne.",
                    ),
                    _ => FieldProblem::new("date", "La séance doit commencer dans le futur."),
                })
                .collect();
            again(&state, &signed, &member, problems, &form).await
        }
        Err(e) => page::error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usual_rules_are_said_in_french_and_others_as_written() {
        assert_eq!(
            recurrence_text("FREQ=MONTHLY;BYDAY=+2TH"),
            "le deuxième jeudi de chaque mois"
        );
        assert_eq!(
            recurrence_text("RRULE:FREQ=MONTHLY;BYDAY=1MO"),
            "le premier lundi de chaque mois"
        );
        assert_eq!(
            recurrence_text("FREQ=MONTHLY;BYDAY=-1FR"),
            "le dernier vendredi de chaque mois"
        );
        assert_eq!(
            recurrence_text("FREQ=WEEKLY;BYDAY=TU"),
            "chaque semaine, le mardi"
        );
        for other in [
            "FREQ=MONTHLY;INTERVAL=2;BYDAY=+2TH",
            "FREQ=MONTHLY;BYMONTHDAY=15",
            "FREQ=MONTHLY;BYDAY=+2TH,+4TH",
            "FREQ=MONTHLY;BYDAY=+7TH",
        ] {
            assert_eq!(
                recurrence_text(other),
                format!("selon la règle de récurrence « {other} »")
            );
        }
    }

    fn form(fields: &[(&str, &str)]) -> Form {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        Form::parse(&Bytes::from(body))
    }

    #[test]
    fn an_ad_hoc_session_is_read_in_the_cellule_zone_and_checked_field_by_field() {
        let now = chrono::DateTime::parse_from_rfc3339("2027-03-01T10:00:00Z")
            .map(|t| t.to_utc())
            .unwrap_or_default();
        let zone = chrono_tz::Europe::Paris;
        let ok = ad_hoc_request(
            &form(&[("date", "2027-03-18"), ("heure", "14:00"), ("duree", "90")]),
            zone,
            now,
        );
        let req = ok.map_err(|e| format!("{e:?}"));
        assert_eq!(
            req.as_ref().map(|r| r.starts_at.to_rfc3339()),
            Ok("2027-03-18T14:00:00+01:00".to_owned())
        );
        assert_eq!(req.as_ref().map(|r| r.duration_minutes), Ok(Some(90)));
        let fields = |f: &[(&str, &str)]| -> Vec<String> {
            match ad_hoc_request(&form(f), zone, now) {
                Ok(_) => vec![],
                Err(e) => e.into_iter().map(|p| p.field).collect(),
            }
        };
        assert_eq!(
            fields(&[("date", "18/03/2027"), ("heure", "14 h")]),
            ["date", "heure"]
        );
        assert_eq!(
            fields(&[("date", "2027-02-18"), ("heure", "14:00")]),
            ["date"]
        );
        assert_eq!(
            fields(&[("date", "2027-03-18"), ("heure", "14:00"), ("duree", "5")]),
            ["duree"]
        );
        // 28 March 2027, 02:30 does not exist in Paris (clocks go forward).
        assert_eq!(
            fields(&[("date", "2027-03-28"), ("heure", "02:30")]),
            ["heure"]
        );
    }
}
