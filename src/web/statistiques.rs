//! *Statistiques*: a year's figures for the CLSM's report, from the API's service
//! ([`statistics::stats`]) and suppressed as it suppresses them: a withheld count is never
//! shown, only « moins de 5 » (a count of its own, from 1 to 4) or « secret statistique » (a
//! cell of a breakdown, which may also hide a larger count so that no small one can be worked
//! out from the total). Each breakdown is a bar chart drawn on the server ([`chart`]) with its
//! numbers in a table beside it.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Datelike;

use super::WebState;
use super::chart::{self, Bar};
use super::forms::FieldProblem;
use super::home::{charter_gate, chrome, enter};
use super::page::{self, Chrome, render};
use super::session::Signed;
use super::text;
use crate::domain::case::Need;
use crate::domain::routing::InterlocutorKind;
use crate::domain::session::Outcome;
use crate::error::Error;
use crate::render::french;
use crate::services::access;
use crate::services::review::SUPPRESS_BELOW;
use crate::services::review::statistics::{self, Count, Delay, Stats};

/// What a breakdown's withheld cell shows (it may hide a count of 5 or more).
const SECRET: &str = "secret statistique";

/// One line of a figure's table.
struct Line {
    label: String,
    shown: String,
    withheld: bool,
}

/// A breakdown: its chart and its table.
struct Figure {
    id: &'static str,
    title: String,
    svg: String,
    lines: Vec<Line>,
}

struct DelayLine {
    label: &'static str,
    shown: String,
}

#[derive(Template)]
#[template(path = "statistiques.html")]
struct StatsPage {
    c: Chrome,
    action: String,
    typed: String,
    errors: Vec<FieldProblem>,
    year: Option<i32>,
    previous: String,
    next: String,
    total: String,
    figures: Vec<Figure>,
    delays: Vec<DelayLine>,
    below: i64,
}

#[derive(serde::Deserialize)]
pub struct YearQuery {
    annee: Option<String>,
}

/// A count as shown: the number, or `withheld` in its place.
fn shown(c: &Count, withheld: &str) -> String {
    match c.count {
        Some(n) if !c.suppressed => n.to_string(),
        _ => withheld.to_owned(),
    }
}

fn figure(
    id: &'static str,
    title: String,
    cells: &[Count],
    label: impl Fn(&str) -> String,
    withheld: &str,
) -> Figure {
    let bars: Vec<Bar> = cells
        .iter()
        .map(|c| Bar {
            label: label(&c.key),
            value: if c.suppressed { None } else { c.count },
        })
        .collect();
    Figure {
        id,
        svg: chart::bars(id, &title, &bars, withheld),
        title,
        lines: cells
            .iter()
            .map(|c| Line {
                label: label(&c.key),
                shown: shown(c, withheld),
                withheld: c.suppressed || c.count.is_none(),
            })
            .collect(),
    }
}

fn month(key: &str) -> String {
    key.rsplit('-')
        .next()
        .and_then(|m| m.parse::<usize>().ok())
        .and_then(|m| french::MONTHS.get(m.wrapping_sub(1)))
        .map_or_else(|| key.to_owned(), |m| (*m).to_owned())
}

fn need(key: &str) -> String {
    Need::parse(key).map_or_else(|_| key.to_owned(), |n| text::need(n).0.to_owned())
}

fn org_kind(key: &str) -> String {
    match InterlocutorKind::parse(key) {
        Some(k) => text::interlocutor_kind(k).to_owned(),
        None if key == "unknown" => "Organisation absente de l'annuaire".to_owned(),
        None => key.to_owned(),
    }
}

fn outcome(key: &str) -> String {
    Outcome::parse(key).map_or_else(|_| key.to_owned(), |o| french::outcome(o).to_owned())
}

/// « 12,5 jours », or why there is no number.
fn delay(d: &Delay) -> String {
    match d.median_days {
        Some(days) if !d.suppressed => {
            let text = format!("{days:.1}").replace('.', ",");
            let text = text.strip_suffix(",0").unwrap_or(&text).to_owned();
            format!("{text} jour{}", if days >= 2.0 { "s" } else { "" })
        }
        _ if d.suppressed => format!("{SECRET} (moins de {SUPPRESS_BELOW} situations)"),
        _ => "aucune situation".to_owned(),
    }
}

fn figures(s: &Stats) -> Vec<Figure> {
    let few = format!("moins de {SUPPRESS_BELOW}");
    let y = s.year;
    vec![
        figure(
            "par-mois",
            format!("Saisines reçues en {y}, par mois"),
            &s.by_month,
            month,
            SECRET,
        ),
        figure(
            "par-besoin",
            format!("Saisines reçues en {y}, par besoin (une saisine peut en avoir plusieurs)"),
            &s.by_need,
            need,
            &few,
        ),
        figure(
            "par-organisation",
            format!("Saisines reçues en {y}, par type d'organisation qui saisit"),
            &s.by_referring_org_kind,
            org_kind,
            SECRET,
        ),
        figure(
            "par-decision",
            format!("Décisions prises en {y}, par issue"),
            &s.decisions_by_outcome,
            outcome,
            SECRET,
        ),
    ]
}

/// `GET /c/{cellule}/statistiques[?annee=YYYY]`: the year's figures (the current year by
/// default), for whom the policies let read statistics (403 for the other roles).
pub async fn page(
    State(state): State<WebState>,
    signed: Signed,
    Path(slug): Path<String>,
    Query(q): Query<YearQuery>,
) -> Response {
    let here = format!("/c/{slug}/statistiques");
    let member = match enter(&state, &signed, &slug).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    match access::cellule_action(&state.app, &access::principal(&member), "read_stats") {
        Ok(()) | Err(Error::CharterNotAccepted) => {}
        Err(e) => return page::error(e),
    }
    if let Err(r) = charter_gate(&state, &member, &here) {
        return r;
    }
    let typed = q.annee.unwrap_or_default().trim().to_owned();
    let year = if typed.is_empty() {
        Ok(state.app.clock.now().year())
    } else {
        typed
            .parse::<i32>()
            .map_err(|_| "L'année s'écrit avec ses quatre chiffres, par exemple 2025.".to_owned())
    };
    let result = match year {
        Ok(y) => match statistics::stats(&state.app, &member, y).await {
            Ok(s) => Ok(s),
            Err(Error::Validation(_)) => {
                Err("Les statistiques couvrent les années 2000 à 2100.".to_owned())
            }
            Err(e) => return page::error(e),
        },
        Err(m) => Err(m),
    };
    let base = |title: &str| chrome(&state, &signed, &member, title, &here);
    let (status, page) = match result {
        Ok(s) => {
            let y = s.year;
            (
                StatusCode::OK,
                StatsPage {
                    c: base(&format!("Statistiques {y}")),
                    action: here.clone(),
                    typed: y.to_string(),
                    errors: Vec::new(),
                    year: Some(y),
                    previous: format!("{here}?annee={}", y - 1),
                    next: format!("{here}?annee={}", y + 1),
                    total: shown(&s.referrals, &format!("moins de {SUPPRESS_BELOW}")),
                    figures: figures(&s),
                    delays: vec![
                        DelayLine {
                            label: "De la saisine au premier examen en séance",
                            shown: delay(&s.referral_to_first_review),
                        },
                        DelayLine {
                            label: "Du premier examen à la clôture",
                            shown: delay(&s.first_review_to_closure),
                        },
                        DelayLine {
                            label: "De la saisine à la clôture",
                            shown: delay(&s.referral_to_closure),
                        },
                    ],
                    below: SUPPRESS_BELOW,
                },
            )
        }
        Err(message) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            StatsPage {
                c: base("Statistiques"),
                action: here.clone(),
                typed,
                errors: vec![FieldProblem::new("annee", message)],
                year: None,
                previous: String::new(),
                next: String::new(),
                total: String::new(),
                figures: Vec::new(),
                delays: Vec::new(),
                below: SUPPRESS_BELOW,
            },
        ),
    };
    render(status, &page)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(key: &str, count: Option<i64>) -> Count {
        Count {
            key: key.into(),
            count,
            suppressed: count.is_none(),
        }
    }

    #[test]
    fn withheld_counts_never_show_a_number() {
        let f = figure(
            "f",
            "t".into(),
            &[
                count("2026-01", None),
                count("2026-02", Some(12)),
                count("2026-03", Some(0)),
            ],
            month,
            SECRET,
        );
        assert_eq!(f.lines[0].label, "janvier");
        assert_eq!(f.lines[0].shown, SECRET);
        assert!(f.lines[0].withheld);
        assert_eq!(f.lines[1].shown, "12");
        assert_eq!(f.lines[2].shown, "0");
        assert!(f.svg.contains(">secret statistique</text>"));
    }

    #[test]
    fn delays_and_labels_in_french() {
        let d = |median_days, suppressed| Delay {
            median_days,
            suppressed,
        };
        assert_eq!(delay(&d(Some(12.5), false)), "12,5 jours");
        assert_eq!(delay(&d(Some(3.0), false)), "3 jours");
        assert_eq!(delay(&d(Some(0.5), false)), "0,5 jour");
        assert!(delay(&d(None, true)).starts_with(SECRET));
        assert_eq!(delay(&d(None, false)), "aucune situation");
        assert_eq!(need("housing"), "Logement");
        assert_eq!(org_kind("unknown"), "Organisation absente de l'annuaire");
        assert_eq!(org_kind("cmp"), "CMP");
        assert_eq!(outcome("follow_up"), "Suivi");
        assert_eq!(month("2026-12"), "décembre");
    }
}
