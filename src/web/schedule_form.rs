//! The cellule's schedule, edited by the coordinator (`/c/{cellule}/seances/calendrier`): the
//! usual rhythms of a cellule in words (the n-th weekday of each month, or a weekday of each
//! week), the start time, the length, the time per case, the place and what a holiday does.
//! Saving calls the API's use case (`PUT …/schedule`): same validation, same guard on the place,
//! same audit entry. A rule the form cannot say (set through the API) is shown as written, and
//! replaced only when the coordinator saves the form.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::WebState;
use super::forms::{FieldProblem, Form, message_for};
use super::home::chrome;
use super::page::{self, Chrome, render, see_other};
use super::seances::{desk, desk_form};
use super::seances_plan::recurrence_text;
use super::session::Signed;
use crate::domain::schedule::{DEFAULT_TIME_ZONE, HolidayRule, Schedule};
use crate::error::Error;
use crate::services::access::CelluleMember;
use crate::services::review::schedule::{get_schedule, put_schedule};

/// A choice of a `<select>` or a radio group.
struct Choice {
    value: &'static str,
    label: &'static str,
    picked: bool,
}

fn choices(all: &[(&'static str, &'static str)], picked: &str) -> Vec<Choice> {
    all.iter()
        .map(|(value, label)| Choice {
            value,
            label,
            picked: *value == picked,
        })
        .collect()
}

const RHYTHMS: [(&str, &str); 2] = [
    ("mensuel", "chaque mois, le jour choisi ci-dessous"),
    ("hebdomadaire", "chaque semaine, le jour choisi ci-dessous"),
];
const RANKS: [(&str, &str); 5] = [
    ("1", "premier"),
    ("2", "deuxième"),
    ("3", "troisième"),
    ("4", "quatrième"),
    ("-1", "dernier"),
];
const WEEKDAYS: [(&str, &str); 7] = [
    ("MO", "lundi"),
    ("TU", "mardi"),
    ("WE", "mercredi"),
    ("TH", "jeudi"),
    ("FR", "vendredi"),
    ("SA", "samedi"),
    ("SU", "dimanche"),
];
const HOLIDAYS: [(&str, &str); 3] = [
    ("next_week", "la reporter d'une semaine"),
    ("skip", "la supprimer"),
    ("keep", "la maintenir"),
];

/// The form's fields, as stored or as typed.
struct Fields {
    rhythm: String,
    rank: String,
    weekday: String,
    time: String,
    duration: String,
    per_new: String,
    per_follow_up: String,
    location: String,
    holiday: String,
}

impl Fields {
    fn of_form(form: &Form) -> Self {
        Self {
            rhythm: form.text("rythme"),
            rank: form.text("rang"),
            weekday: form.text("jour"),
            time: form.text("heure"),
            duration: form.text("duree"),
            per_new: form.text("par_nouvelle"),
            per_follow_up: form.text("par_suivi"),
            location: form.raw("lieu"),
            holiday: form.text("ferie"),
        }
    }

    /// The stored schedule's fields, and whether the form can say its rule; the usual
    /// defaults when there is none.
    fn of_schedule(s: Option<&Schedule>) -> (Self, bool) {
        let Some(s) = s else {
            return (
                Self {
                    rhythm: "mensuel".into(),
                    rank: "2".into(),
                    weekday: "TH".into(),
                    time: "14:00".into(),
                    duration: "120".into(),
                    per_new: "20".into(),
                    per_follow_up: "10".into(),
                    location: String::new(),
                    holiday: "next_week".into(),
                },
                true,
            );
        };
        let (rhythm, rank, weekday, said) = match said_rule(&s.rrule) {
            Some((rhythm, rank, weekday)) => (rhythm, rank, weekday, true),
            None => ("mensuel", "2".to_owned(), "TH".to_owned(), false),
        };
        let holiday = match s.on_holiday {
            HolidayRule::NextWeek => "next_week",
            HolidayRule::Skip => "skip",
            HolidayRule::Keep => "keep",
        };
        (
            Self {
                rhythm: rhythm.into(),
                rank,
                weekday,
                time: s.start_time.clone(),
                duration: s.duration_minutes.to_string(),
                per_new: s.minutes_per_new_case.to_string(),
                per_follow_up: s.minutes_per_follow_up.to_string(),
                location: s.location.clone(),
                holiday: holiday.into(),
            },
            said,
        )
    }
}

/// The rhythm, rank and weekday of a rule the form can say (`FREQ=MONTHLY;BYDAY=+2TH`,
/// `FREQ=WEEKLY;BYDAY=TU`), or `None`.
fn said_rule(rrule: &str) -> Option<(&'static str, String, String)> {
    let rule = rrule.trim().trim_start_matches("RRULE:");
    let mut freq = None;
    let mut byday = None;
    for part in rule.split(';') {
        match part.split_once('=')? {
            ("FREQ", f) => freq = Some(f),
            ("BYDAY", d) => byday = Some(d),
            ("INTERVAL", "1") => {}
            _ => return None,
        }
    }
    let byday = byday?;
    let (n, day) = byday.split_at(byday.len().checked_sub(2)?);
    WEEKDAYS.iter().find(|(code, _)| *code == day)?;
    match (freq?, n.trim_start_matches('+')) {
        ("WEEKLY", "") => Some(("hebdomadaire", "1".into(), day.into())),
        ("MONTHLY", rank) if RANKS.iter().any(|(r, _)| *r == rank) => {
            Some(("mensuel", rank.into(), day.into()))
        }
        _ => None,
    }
}

#[derive(Template)]
#[template(path = "schedule_form.html")]
struct SchedulePage {
    c: Chrome,
    action: String,
    back: String,
    /// The stored rule in words when the form cannot say it (saving replaces it).
    unsaid: Option<String>,
    rhythms: Vec<Choice>,
    ranks: Vec<Choice>,
    weekdays: Vec<Choice>,
    holidays: Vec<Choice>,
    inputs: Vec<Input>,
    errors: Vec<FieldProblem>,
}

/// A typed input of the form, with its value.
struct Input {
    id: &'static str,
    label: &'static str,
    kind: &'static str,
    value: String,
}

impl SchedulePage {
    fn err(&self, field: &str) -> Option<&str> {
        message_for(&self.errors, field)
    }
}

fn schedule_page(
    state: &WebState,
    signed: &Signed,
    member: &CelluleMember,
    fields: Fields,
    unsaid: Option<String>,
    errors: Vec<FieldProblem>,
) -> SchedulePage {
    let back = format!("/c/{}/seances", member.slug());
    let action = format!("{back}/calendrier");
    let title = if errors.is_empty() {
        "Calendrier des séances"
    } else {
        "Erreurs — Calendrier des séances"
    };
    SchedulePage {
        c: chrome(state, signed, member, title, &back),
        rhythms: choices(&RHYTHMS, &fields.rhythm),
        ranks: choices(&RANKS, &fields.rank),
        weekdays: choices(&WEEKDAYS, &fields.weekday),
        holidays: choices(&HOLIDAYS, &fields.holiday),
        inputs: [
            ("heure", "Heure de début (HH:MM) *", "time", fields.time),
            (
                "duree",
                "Durée d'une séance, en minutes *",
                "number",
                fields.duration,
            ),
            (
                "par_nouvelle",
                "Temps pour une première présentation, en minutes *",
                "number",
                fields.per_new,
            ),
            (
                "par_suivi",
                "Temps pour un suivi, en minutes *",
                "number",
                fields.per_follow_up,
            ),
            (
                "lieu",
                "Lieu (une salle ou un service, jamais une personne)",
                "text",
                fields.location,
            ),
        ]
        .into_iter()
        .map(|(id, label, kind, value)| Input {
            id,
            label,
            kind,
            value,
        })
        .collect(),
        action,
        back,
        unsaid,
        errors,
    }
}

async fn stored(state: &WebState, member: &CelluleMember) -> Result<Option<Schedule>, Error> {
    match get_schedule(&state.app, member).await {
        Ok(s) => Ok(Some(s)),
        Err(Error::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `GET /c/{cellule}/seances/calendrier`.
pub async fn show(
    State(state): State<WebState>,
    signed: Signed,
    Path(slug): Path<String>,
) -> Response {
    let here = format!("/c/{slug}/seances/calendrier");
    let member = match desk(&state, &signed, &slug, &here).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let schedule = match stored(&state, &member).await {
        Ok(s) => s,
        Err(e) => return page::error(e),
    };
    let (fields, said) = Fields::of_schedule(schedule.as_ref());
    let unsaid = schedule
        .as_ref()
        .filter(|_| !said)
        .map(|s| recurrence_text(&s.rrule));
    render(
        StatusCode::OK,
        &schedule_page(&state, &signed, &member, fields, unsaid, vec![]),
    )
}

/// A number of minutes in `range`, or the field's problem.
fn minutes(
    value: &str,
    field: &str,
    message: &str,
    range: std::ops::RangeInclusive<u32>,
    errors: &mut Vec<FieldProblem>,
) -> u32 {
    match value.parse::<u32>() {
        Ok(m) if range.contains(&m) => m,
        _ => {
            errors.push(FieldProblem::new(field, message));
            0
        }
    }
}

/// The schedule the form describes, or its problems (each on its field).
fn schedule_of(
    f: &Fields,
    time_zone: String,
    starts_on: Option<chrono::NaiveDate>,
) -> Result<Schedule, Vec<FieldProblem>> {
    let mut errors = Vec::new();
    let day = WEEKDAYS.iter().find(|(code, _)| *code == f.weekday);
    if day.is_none() {
        errors.push(FieldProblem::new(
            "jour",
            "Choisissez le jour de la séance.",
        ));
    }
    let rrule = match (f.rhythm.as_str(), day) {
        ("hebdomadaire", Some((code, _))) => format!("FREQ=WEEKLY;BYDAY={code}"),
        ("mensuel", Some((code, _))) if RANKS.iter().any(|(r, _)| *r == f.rank) => {
            let rank = f.rank.as_str();
            let rank = if rank.starts_with('-') {
                rank.to_owned()
            } else {
                format!("+{rank}")
            };
            format!("FREQ=MONTHLY;BYDAY={rank}{code}")
        }
        ("mensuel", _) => {
            errors.push(FieldProblem::new(
                "rang",
                "Choisissez quel jour du mois (premier, deuxième…).",
            ));
            String::new()
        }
        (_, _) => {
            errors.push(FieldProblem::new(
                "rythme",
                "Choisissez un rythme : chaque mois ou chaque semaine.",
            ));
            String::new()
        }
    };
    let time_ok = chrono::NaiveTime::parse_from_str(&f.time, "%H:%M").is_ok();
    if !time_ok {
        errors.push(FieldProblem::new(
            "heure",
            "Indiquez l'heure de début, par exemple 14:00.",
        ));
    }
    let duration = minutes(
        &f.duration,
        "duree",
        "La durée se compte en minutes, entre 15 et 600.",
        15..=600,
        &mut errors,
    );
    let cap = if duration == 0 { 600 } else { duration };
    let per_new = minutes(
        &f.per_new,
        "par_nouvelle",
        "Le temps d'une première présentation se compte en minutes, au plus la durée de la séance.",
        1..=cap,
        &mut errors,
    );
    let per_follow_up = minutes(
        &f.per_follow_up,
        "par_suivi",
        "Le temps d'un suivi se compte en minutes, au plus la durée de la séance.",
        1..=cap,
        &mut errors,
    );
    let on_holiday = match f.holiday.as_str() {
        "next_week" => HolidayRule::NextWeek,
        "skip" => HolidayRule::Skip,
        "keep" => HolidayRule::Keep,
        _ => {
            errors.push(FieldProblem::new(
                "ferie",
                "Choisissez ce que devient une séance un jour férié.",
            ));
            HolidayRule::NextWeek
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Schedule {
        rrule,
        start_time: f.time.clone(),
        time_zone,
        duration_minutes: duration,
        minutes_per_new_case: per_new,
        minutes_per_follow_up: per_follow_up,
        location: f.location.trim().to_owned(),
        on_holiday,
        starts_on,
    })
}

/// The service's refusal of a schedule, on the form's fields.
fn problems_of(errors: &[crate::domain::FieldError]) -> Vec<FieldProblem> {
    errors
        .iter()
        .map(|e| match e.pointer.as_str() {
            "/start_time" => FieldProblem::new("heure", "Indiquez l'heure de début, par exemple 14:00."),
            "/duration_minutes" => {
                FieldProblem::new("duree", "La durée se compte en minutes, entre 15 et 600.")
            }
            "/minutes_per_new_case" => FieldProblem::new(
                "par_nouvelle",
                "Le temps d'une première présentation se compte en minutes, au plus la durée de la séance.",
            ),
            "/minutes_per_follow_up" => FieldProblem::new(
                "par_suivi",
                "Le temps d'un suivi se compte en minutes, au plus la durée de la séance.",
            ),
            "/location" => FieldProblem::new(
                "lieu",
                "Le lieu tient en 200 caractères au plus, sur une ligne.",
            ),
            _ => FieldProblem::new(
                "jour",
                "Ce rythme ne donne aucune séance : choisissez-en un autre.",
            ),
        })
        .collect()
}

/// `POST /c/{cellule}/seances/calendrier`: saves the schedule; the form comes back (422) with
/// what was typed on any refusal.
pub async fn save(
    State(state): State<WebState>,
    signed: Signed,
    Path(slug): Path<String>,
    body: Bytes,
) -> Response {
    let here = format!("/c/{slug}/seances/calendrier");
    let (form, member) = match desk_form(&state, &signed, &slug, &here, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let before = match stored(&state, &member).await {
        Ok(s) => s,
        Err(e) => return page::error(e),
    };
    let fields = Fields::of_form(&form);
    let (time_zone, starts_on) = match &before {
        Some(s) => (s.time_zone.clone(), s.starts_on),
        None => (DEFAULT_TIME_ZONE.to_owned(), None),
    };
    let again = |fields: Fields, errors: Vec<FieldProblem>| {
        let p = schedule_page(&state, &signed, &member, fields, None, errors);
        render(StatusCode::UNPROCESSABLE_ENTITY, &p)
    };
    let schedule = match schedule_of(&fields, time_zone, starts_on) {
        Ok(s) => s,
        Err(errors) => return again(fields, errors),
    };
    match put_schedule(&state.app, &member, schedule).await {
        Ok(_) => see_other(&format!("/c/{}/seances?fait=calendrier", member.slug())),
        Err(Error::Validation(errors)) => again(fields, problems_of(&errors)),
        Err(Error::Identifiers(_)) => again(
            fields,
            vec![FieldProblem::new(
                "lieu",
                "Le lieu ne doit identifier personne : indiquez une salle ou un service, pas une personne.",
            )],
        ),
        Err(e) => page::error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(rhythm: &str, rank: &str, weekday: &str) -> Fields {
        Fields {
            rhythm: rhythm.into(),
            rank: rank.into(),
            weekday: weekday.into(),
            time: "14:00".into(),
            duration: "120".into(),
            per_new: "20".into(),
            per_follow_up: "10".into(),
            location: " Mairie ".into(),
            holiday: "skip".into(),
        }
    }

    #[test]
    fn the_forms_rhythms_are_rules_and_back() {
        for (rhythm, rank, day, rule) in [
            ("mensuel", "2", "TH", "FREQ=MONTHLY;BYDAY=+2TH"),
            ("mensuel", "-1", "FR", "FREQ=MONTHLY;BYDAY=-1FR"),
            ("hebdomadaire", "1", "TU", "FREQ=WEEKLY;BYDAY=TU"),
        ] {
            let s = schedule_of(&fields(rhythm, rank, day), "Europe/Paris".into(), None)
                .map_err(|e| format!("{e:?}"));
            assert_eq!(s.as_ref().map(|s| s.rrule.as_str()), Ok(rule));
            assert_eq!(s.as_ref().map(|s| s.location.as_str()), Ok("Mairie"));
            assert_eq!(
                said_rule(rule),
                Some((rhythm, rank.to_owned(), day.to_owned()))
            );
            assert!(s.is_ok_and(|s| s.validate().is_ok()));
        }
        for other in [
            "FREQ=MONTHLY;BYMONTHDAY=15",
            "FREQ=MONTHLY;INTERVAL=2;BYDAY=+2TH",
            "FREQ=MONTHLY;BYDAY=+5TH",
            "FREQ=MONTHLY;BYDAY=+2TH,+4TH",
        ] {
            assert_eq!(said_rule(other), None, "{other}");
        }
    }

    #[test]
    fn each_problem_is_on_its_field() {
        let mut f = fields("mensuel", "7", "XX");
        f.time = "14h".into();
        f.duration = "5".into();
        f.per_new = "0".into();
        f.holiday = "jamais".into();
        let problems: Vec<String> = match schedule_of(&f, "Europe/Paris".into(), None) {
            Ok(_) => vec![],
            Err(e) => e.into_iter().map(|p| p.field).collect(),
        };
        assert_eq!(
            problems,
            ["jour", "rang", "heure", "duree", "par_nouvelle", "ferie"]
        );
        let mut f = fields("mensuel", "2", "TH");
        f.per_follow_up = "121".into();
        let problems: Vec<String> = match schedule_of(&f, "Europe/Paris".into(), None) {
            Ok(_) => vec![],
            Err(e) => e.into_iter().map(|p| p.field).collect(),
        };
        assert_eq!(problems, ["par_suivi"]);
    }
}
