//! A past session of the demo, as the coordinator runs it: the agenda built a week before and
//! published, the meeting opened on the day with its attendance, every item decided (actions
//! with owners and due dates), notes written afterwards, the meeting closed and its minutes
//! approved. In the last past session one decision is corrected (a second version), so that the
//! minutes and the decisions' history show a correction.

use super::*;
use crate::domain::session::{AttendanceStatus, DecidedAction};
use crate::services::review::meeting::{self, AttendanceEntry, AttendanceRequest};
use crate::storage::MeetingStep;

impl Demo {
    /// `following` is the session after `s` (short follow-ups are due by then); `next` is the
    /// first session still to come (long follow-ups go past it). Answers the local day, the
    /// number of items and how many were deferred.
    pub(super) async fn session(
        &mut self,
        s: &SessionRecord,
        following: &SessionRecord,
        next: &SessionRecord,
        correct_one: bool,
    ) -> Result<(String, usize, usize), CliError> {
        let coordinator = self.who(COORDINATOR)?.clone();
        self.set(s.starts_at - days(7));
        agenda::build(&self.state, &coordinator, &s.id)
            .await
            .map_err(at("building an agenda"))?;
        self.set(s.starts_at - days(6));
        let agenda: AgendaView = agenda::publish(&self.state, &coordinator, &s.id)
            .await
            .map_err(at("publishing an agenda"))?;
        self.set(s.starts_at);
        meeting::step(&self.state, &coordinator, &s.id, MeetingStep::Open)
            .await
            .map_err(at("opening the meeting"))?;
        meeting::record_attendance(&self.state, &coordinator, &s.id, attendance())
            .await
            .map_err(at("recording attendance"))?;
        self.set(s.starts_at + chrono::Duration::hours(1));
        let due = local_date(following) - Days::new(1);
        let long = local_date(next) + Days::new(28);
        let by_id: HashMap<String, usize> = self
            .cases
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|(id, _)| (id.clone(), i)))
            .collect();
        let mut decided = Vec::new();
        for item in &agenda.items {
            let Some(&i) = by_id.get(&item.case_id) else {
                continue;
            };
            let lead = item.proposal["lead"].as_str().unwrap_or("ccas").to_owned();
            let follow_up = item.kind == "follow_up";
            let fate = SPECS[i].fate;
            let routed = |date: NaiveDate, text: &str| DecisionRequest {
                interlocutor: Some(lead.clone()),
                actions: vec![
                    action(
                        "Premier contact proposé par l'interlocuteur désigné (fictif).",
                        &lead,
                        due.min(date),
                    ),
                    action(
                        "Point d'étape transmis à la coordination (fictif).",
                        COORDINATION,
                        date,
                    ),
                ],
                referrer_message: Some(ROUTED_MESSAGE.into()),
                ..decision(Outcome::Routed, Some(date), text)
            };
            let req = match (fate, follow_up) {
                (Fate::Close, _) | (Fate::CloseLater, true) => DecisionRequest {
                    referrer_message: Some(CLOSED_MESSAGE.into()),
                    ..decision(Outcome::Closed, None, CLOSED_TEXT)
                },
                (Fate::DeferOnce, false) if self.deferred_once.insert(item.case_id.clone()) => {
                    decision(Outcome::Deferred, None, DEFERRED_TEXT)
                }
                (Fate::Short, true) => DecisionRequest {
                    actions: vec![action(
                        "Nouveau point à la prochaine séance (fictif).",
                        COORDINATION,
                        due,
                    )],
                    ..decision(Outcome::FollowUp, Some(due), FOLLOW_UP_TEXT)
                },
                (Fate::Short | Fate::CloseLater, false) => routed(
                    due,
                    "Orientation proposée, retour attendu à la prochaine séance (fictif).",
                ),
                _ => routed(
                    long,
                    "Orientation vers l'interlocuteur proposé par la règle de routage (fictif).",
                ),
            };
            let outcome = req.outcome;
            decisions::decide(&self.state, &coordinator, &s.id, &item.case_id, req, None)
                .await
                .map_err(at("recording a decision"))?;
            decided.push((i, item.case_id.clone(), outcome, lead));
        }
        if correct_one
            && let Some((_, id, _, lead)) = decided
                .iter()
                .find(|(_, _, o, _)| matches!(o, Outcome::Routed))
        {
            // A correction during the meeting: a due date brought forward and the text made
            // precise; the first version stays in the history.
            self.set(s.starts_at + chrono::Duration::minutes(90));
            let req = DecisionRequest {
                interlocutor: Some(lead.clone()),
                actions: vec![action(
                    "Premier contact dans la semaine par l'interlocuteur désigné (fictif).",
                    lead,
                    due,
                )],
                referrer_message: Some(ROUTED_MESSAGE.into()),
                ..decision(Outcome::Routed, Some(long), CORRECTED_TEXT)
            };
            decisions::correct(&self.state, &coordinator, &s.id, id, req, None)
                .await
                .map_err(at("correcting a decision"))?;
        }
        self.set(s.starts_at + chrono::Duration::hours(2));
        meeting::step(&self.state, &coordinator, &s.id, MeetingStep::Close)
            .await
            .map_err(at("closing the meeting"))?;
        self.set(s.starts_at + chrono::Duration::hours(3));
        for (k, (_, id, outcome, lead)) in decided.iter().enumerate() {
            if matches!(outcome, Outcome::Deferred) {
                continue;
            }
            let note = match lead.as_str() {
                "cmp-66g03" => Some((
                    CMP,
                    Audience::Psychiatry,
                    "Note fictive (démo) : la personne est connue du CMP, un rendez-vous infirmier est proposé.",
                )),
                "ccas" if k % 2 == 0 => Some((
                    CCAS,
                    Audience::City,
                    "Note fictive (démo) : dossier de droits repris par le CCAS, visite à domicile prévue.",
                )),
                _ if k % 3 == 0 => Some((
                    COORDINATOR,
                    Audience::Cellule,
                    "Note fictive (démo) : synthèse de la séance transmise aux interlocuteurs.",
                )),
                _ => None,
            };
            if let Some((person, audience, body)) = note {
                let who = self.who(person)?.clone();
                cases::add_note(
                    &self.state,
                    &who,
                    id,
                    NoteRequest {
                        audience,
                        body: body.into(),
                        corrects: None,
                    },
                    None,
                )
                .await
                .map_err(at("writing a note"))?;
                self.notes += 1;
            }
        }
        self.set(s.starts_at + days(2));
        meeting::step(
            &self.state,
            &coordinator,
            &s.id,
            MeetingStep::ApproveMinutes,
        )
        .await
        .map_err(at("approving the minutes"))?;
        Ok((
            local_day(s),
            agenda.items.len(),
            decided
                .iter()
                .filter(|(_, _, o, _)| matches!(o, Outcome::Deferred))
                .count(),
        ))
    }
}

/// Who attended: every permanent member present, the guest team excused.
fn attendance() -> AttendanceRequest {
    AttendanceRequest {
        entries: PEOPLE
            .iter()
            .filter(|p| matches!(p.role, Role::Member | Role::Coordinator))
            .map(|p| AttendanceEntry {
                participant: Some(p.sub.to_owned()),
                organisation: None,
                status: if p.guest {
                    AttendanceStatus::Excused
                } else {
                    AttendanceStatus::Present
                },
            })
            .collect(),
    }
}

fn action(what: &str, owner: &str, due: NaiveDate) -> DecidedAction {
    DecidedAction {
        what: what.to_owned(),
        owner: owner.to_owned(),
        due,
    }
}

pub(super) fn local_date(s: &SessionRecord) -> NaiveDate {
    DateTime::parse_from_rfc3339(&s.local_start)
        .map(|t| t.date_naive())
        .unwrap_or_else(|_| s.starts_at.date_naive())
}

fn local_day(s: &SessionRecord) -> String {
    local_date(s).to_string()
}

/// The coordinator's organisation, owner of the actions the coordination follows itself.
const COORDINATION: &str = "CLSM de Ville-sur-Têt";

/// The fictitious texts of the demo's decisions.
const ROUTED_MESSAGE: &str =
    "La cellule a orienté la situation : l'interlocuteur désigné vous contactera (fictif).";
const CLOSED_MESSAGE: &str = "La situation est close : un relais est en place (fictif).";
const CLOSED_TEXT: &str =
    "Relais en place et accepté par la personne : la cellule clôt la situation (fictif).";
const DEFERRED_TEXT: &str = "Informations manquantes : le bailleur complète la fiche (fictif).";
const FOLLOW_UP_TEXT: &str = "Suivi en cours, la situation reste fragile (fictif).";
const CORRECTED_TEXT: &str = "Orientation confirmée, premier contact avancé à la semaine prochaine (fictif, corrigé en séance).";

/// A decision with its outcome, follow-up date and text, nothing else.
fn decision(outcome: Outcome, follow_up_date: Option<NaiveDate>, text: &str) -> DecisionRequest {
    DecisionRequest {
        outcome,
        interlocutor: None,
        actions: Vec::new(),
        follow_up_date,
        text: Some(text.into()),
        text_audience: None,
        referrer_message: None,
    }
}
