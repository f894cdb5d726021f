//! The compte rendu in French words, once, for both the HTML and the PDF: every date, status and
//! label is written here so that the two documents say exactly the same thing.

use chrono_tz::Tz;

use super::RenderError;
use super::french;
use crate::domain::minutes::{Minutes, MinutesDecision, MinutesItem, MinutesState};

/// Printed at the top and the bottom of every page.
pub const BANNER: &str =
    "Document confidentiel — secret partagé : ne pas diffuser en dehors des destinataires";

/// The whole document, ready to lay out.
pub struct View {
    /// The document's title (the HTML `<title>`, the PDF's metadata).
    pub title: String,
    pub cellule: String,
    /// « Compte rendu de la séance du jeudi 12 mars 2026 à 14 h 00 ».
    pub heading: String,
    pub location: String,
    pub duration: String,
    /// `true` while the minutes are a draft (« Projet »).
    pub draft: bool,
    /// « Projet … » or « Approuvé le … par … ».
    pub state: String,
    /// « Exemplaire destiné à : … ».
    pub reader: String,
    /// « Exemplaire produit le … ».
    pub generated: String,
    pub attendance: Vec<AttendanceRow>,
    pub items: Vec<ItemView>,
}

pub struct AttendanceRow {
    pub organisation: String,
    /// Empty when the organisation's attendance was recorded as a whole.
    pub participant: String,
    pub status: &'static str,
}

pub struct ItemView {
    /// « Point 1 — CAS-2026-014 ».
    pub heading: String,
    /// « Nouvelle situation » or « Suivi ».
    pub kind: &'static str,
    pub decision: Option<DecisionView>,
}

pub struct DecisionView {
    pub outcome: &'static str,
    pub interlocutor: Option<String>,
    pub follow_up: Option<String>,
    pub actions: Vec<ActionRow>,
    pub text: Option<TextView>,
    /// « version 2 — corrigée ».
    pub version: String,
    /// « Décision enregistrée par … le … à … ».
    pub recorded: String,
}

pub struct ActionRow {
    pub what: String,
    pub owner: String,
    pub due: String,
}

pub struct TextView {
    /// « Texte réservé à la sphère psychiatrie ».
    pub audience: &'static str,
    pub text: String,
}

/// Said where an item has no decision.
pub const NO_DECISION: &str = "Pas de décision enregistrée";
/// Said where a decision has no action.
pub const NO_ACTION: &str = "Aucune action";
/// Column headers of the tables.
pub const ATTENDANCE_HEADERS: [&str; 3] = ["Organisation", "Participant·e", "Présence"];
pub const ACTION_HEADERS: [&str; 3] = ["Action", "Organisation responsable", "Échéance"];

impl View {
    pub fn new(m: &Minutes) -> Result<Self, RenderError> {
        let zone: Tz = m
            .time_zone
            .parse()
            .map_err(|_| RenderError::TimeZone(m.time_zone.clone()))?;
        let state = match &m.state {
            MinutesState::Draft => {
                "Projet — ce compte rendu peut encore être corrigé avant son approbation".to_owned()
            }
            MinutesState::Approved {
                approved_at,
                approved_by,
            } => format!(
                "Approuvé le {} par {approved_by}",
                french::date_time(french::local(*approved_at, zone))
            ),
        };
        let items = m
            .items
            .iter()
            .map(|item| ItemView::new(item, zone))
            .collect::<Result<_, _>>()?;
        Ok(View {
            title: format!(
                "Compte rendu — {} — séance du {}",
                m.cellule_name,
                french::date(m.starts_local.date())
            ),
            cellule: m.cellule_name.clone(),
            heading: format!(
                "Compte rendu de la séance du {}",
                french::date_time(m.starts_local)
            ),
            location: m.location.clone(),
            duration: french::duration(m.duration_minutes),
            draft: matches!(m.state, MinutesState::Draft),
            state,
            reader: format!("Exemplaire destiné à : {}", m.reader),
            generated: format!(
                "Exemplaire produit le {}",
                french::date_time(french::local(m.generated_at, zone))
            ),
            attendance: m
                .attendance
                .iter()
                .map(|line| AttendanceRow {
                    organisation: line.organisation.clone(),
                    participant: line.participant.clone().unwrap_or_default(),
                    status: french::attendance(line.status),
                })
                .collect(),
            items,
        })
    }
}

impl ItemView {
    fn new(item: &MinutesItem, zone: Tz) -> Result<Self, RenderError> {
        Ok(ItemView {
            heading: format!("Point {} — {}", item.position, item.reference),
            kind: french::kind(&item.kind)
                .ok_or_else(|| RenderError::ItemKind(item.kind.clone()))?,
            decision: item.decision.as_ref().map(|d| DecisionView::new(d, zone)),
        })
    }
}

impl DecisionView {
    fn new(d: &MinutesDecision, zone: Tz) -> Self {
        DecisionView {
            outcome: french::outcome(d.outcome),
            interlocutor: d.interlocutor.clone(),
            follow_up: d.follow_up_date.map(french::long_date),
            actions: d
                .actions
                .iter()
                .map(|a| ActionRow {
                    what: a.what.clone(),
                    owner: a.owner.clone(),
                    due: french::date(a.due),
                })
                .collect(),
            text: d.text.as_ref().map(|t| TextView {
                audience: french::audience(t.audience),
                text: t.text.clone(),
            }),
            version: french::version(d.version),
            recorded: format!(
                "Décision enregistrée par {} le {}",
                d.decided_by,
                french::date_time(french::local(d.decided_at, zone))
            ),
        }
    }
}
