//! French words for dates, times and the minutes' statuses. Written here rather than taken from a
//! locale crate: a dozen names, and the document must read the same whatever the machine's locale.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Timelike, Utc, Weekday};
use chrono_tz::Tz;

use crate::domain::case::Audience;
use crate::domain::session::{AttendanceStatus, Outcome};

/// The months' names, January first.
pub const MONTHS: [&str; 12] = [
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
];

fn weekday(day: Weekday) -> &'static str {
    match day {
        Weekday::Mon => "lundi",
        Weekday::Tue => "mardi",
        Weekday::Wed => "mercredi",
        Weekday::Thu => "jeudi",
        Weekday::Fri => "vendredi",
        Weekday::Sat => "samedi",
        Weekday::Sun => "dimanche",
    }
}

/// « 12 mars 2026 », « 1er avril 2026 » (French writes the first day of a month as an ordinal).
pub fn date(d: NaiveDate) -> String {
    let month = MONTHS.get(d.month0() as usize).copied().unwrap_or_default();
    match d.day() {
        1 => format!("1er {month} {}", d.year()),
        day => format!("{day} {month} {}", d.year()),
    }
}

/// « jeudi 12 mars 2026 ».
pub fn long_date(d: NaiveDate) -> String {
    format!("{} {}", weekday(d.weekday()), date(d))
}

/// « 14 h 00 », the usual French typography for an hour, with no-break spaces (U+00A0) so that
/// a line never ends inside it.
pub fn time(t: NaiveDateTime) -> String {
    format!("{}\u{a0}h\u{a0}{:02}", t.hour(), t.minute())
}

/// « jeudi 12 mars 2026 à 14 h 00 ».
pub fn date_time(t: NaiveDateTime) -> String {
    format!("{} à {}", long_date(t.date()), time(t))
}

/// An instant as the cellule's wall clock shows it.
pub fn local(at: DateTime<Utc>, zone: Tz) -> NaiveDateTime {
    at.with_timezone(&zone).naive_local()
}

/// « 2 h », « 1 h 30 », « 45 min ».
pub fn duration(minutes: u32) -> String {
    match (minutes / 60, minutes % 60) {
        (0, m) => format!("{m} min"),
        (h, 0) => format!("{h} h"),
        (h, m) => format!("{h} h {m:02}"),
    }
}

pub fn attendance(status: AttendanceStatus) -> &'static str {
    match status {
        AttendanceStatus::Present => "Présent·e",
        AttendanceStatus::Excused => "Excusé·e",
        AttendanceStatus::Absent => "Absent·e",
    }
}

pub fn outcome(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Routed => "Orientée",
        Outcome::FollowUp => "Suivi",
        Outcome::Closed => "Clôturée",
        Outcome::Deferred => "Reportée",
    }
}

/// The label above a decision's text: who may read it (docs/design.md §6).
pub fn audience(audience: Audience) -> &'static str {
    match audience {
        Audience::Cellule => "Texte partagé avec les membres de la cellule",
        Audience::Psychiatry => "Texte réservé à la sphère psychiatrie",
        Audience::City => "Texte réservé à la sphère ville",
    }
}

/// An agenda item's kind (`new`, `follow_up`); `None` for a kind this document does not know.
pub fn kind(kind: &str) -> Option<&'static str> {
    match kind {
        "new" => Some("Nouvelle situation"),
        "follow_up" => Some("Suivi"),
        _ => None,
    }
}

/// « version 1 », « version 2 — corrigée ».
pub fn version(version: u32) -> String {
    if version > 1 {
        format!("version {version} — corrigée")
    } else {
        format!("version {version}")
    }
}
