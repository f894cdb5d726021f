//! The body of a compte rendu as a page shows it, for the coordinator's desk
//! ([`super::compte_rendu`]) and the members' copy ([`super::my_sessions`]): the attendance, then
//! each item with its current decision. One view of [`Minutes`], one template
//! (`minutes_body.html`), included by both pages.

use crate::domain::minutes::Minutes;
use crate::render::french;

pub(super) struct AttendanceRow {
    pub organisation: String,
    pub participant: Option<String>,
    pub status: &'static str,
}

pub(super) struct DecisionRow {
    pub outcome: &'static str,
    pub version: String,
    pub interlocutor: Option<String>,
    pub follow_up: Option<String>,
    /// What, owner, due date.
    pub actions: Vec<(String, String, String)>,
    /// The audience's label and the text.
    pub text: Option<(&'static str, String)>,
}

pub(super) struct ItemRow {
    pub heading: String,
    /// The case page, where the reader has one.
    pub href: Option<String>,
    pub kind: &'static str,
    pub decision: Option<DecisionRow>,
}

pub(super) struct MinutesBody {
    pub attendance: Vec<AttendanceRow>,
    pub items: Vec<ItemRow>,
}

impl MinutesBody {
    /// The body of `m`; with `cases`, each item links to `{cases}/{reference}`.
    pub fn of(m: &Minutes, cases: Option<&str>) -> Self {
        MinutesBody {
            attendance: m
                .attendance
                .iter()
                .map(|a| AttendanceRow {
                    organisation: a.organisation.clone(),
                    participant: a.participant.clone(),
                    status: french::attendance(a.status),
                })
                .collect(),
            items: m
                .items
                .iter()
                .map(|i| ItemRow {
                    heading: format!("Point {} — {}", i.position, i.reference),
                    href: cases.map(|base| format!("{base}/{}", i.reference)),
                    kind: french::kind(&i.kind).unwrap_or("Point"),
                    decision: i.decision.as_ref().map(|d| DecisionRow {
                        outcome: french::outcome(d.outcome),
                        version: french::version(d.version),
                        interlocutor: d.interlocutor.clone(),
                        follow_up: d.follow_up_date.map(french::long_date),
                        actions: d
                            .actions
                            .iter()
                            .map(|a| (a.what.clone(), a.owner.clone(), french::date(a.due)))
                            .collect(),
                        text: d
                            .text
                            .as_ref()
                            .map(|t| (french::audience(t.audience), t.text.clone())),
                    }),
                })
                .collect(),
        }
    }
}
