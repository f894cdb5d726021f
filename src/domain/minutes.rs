//! The compte rendu of a session as one reader may see it: a plain document that the minutes
//! service assembles (attendance, then each agenda item the reader may see with its current
//! decision, the texts of the reader's audiences only) and that `render` turns into HTML and PDF.
//! Nothing here decides who sees what: the service has already filtered.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::case::Audience;
pub use super::session::DecidedAction as ActionLine;
use super::session::{AttendanceStatus, Outcome};

/// Where the minutes stand: a draft changes with every correction, approved minutes are frozen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum MinutesState {
    Draft,
    Approved {
        approved_at: DateTime<Utc>,
        /// The coordinator's subject.
        approved_by: String,
    },
}

/// One compte rendu, for one reader.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Minutes {
    /// The cellule's display name.
    pub cellule_name: String,
    pub session_id: String,
    /// The session's local start (wall-clock time in `time_zone`).
    #[schema(value_type = String)]
    pub starts_local: NaiveDateTime,
    pub time_zone: String,
    pub duration_minutes: u32,
    pub location: String,
    #[serde(flatten)]
    pub state: MinutesState,
    /// When this copy was assembled.
    pub generated_at: DateTime<Utc>,
    /// Who this copy is for, in French (e.g. « Coordination », « Membre — sphère ville, MDS Nord »).
    pub reader: String,
    pub attendance: Vec<AttendanceLine>,
    /// The items the reader may see, in agenda order.
    pub items: Vec<MinutesItem>,
}

/// One participant (or an organisation as a whole when `participant` is empty).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AttendanceLine {
    pub organisation: String,
    /// The participant's display name or subject, when attendance was recorded per person.
    pub participant: Option<String>,
    pub status: AttendanceStatus,
}

/// One agenda item.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MinutesItem {
    pub position: u32,
    pub reference: String,
    /// `new` or `follow_up`.
    pub kind: String,
    /// The current version of the item's decision; none when the session did not decide it.
    pub decision: Option<MinutesDecision>,
}

/// A decision as the minutes show it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MinutesDecision {
    pub outcome: Outcome,
    pub interlocutor: Option<String>,
    pub follow_up_date: Option<NaiveDate>,
    pub actions: Vec<ActionLine>,
    /// The decision's text when the reader belongs to its audience.
    pub text: Option<MinutesText>,
    /// 1 for the first record, more when corrected.
    pub version: u32,
    pub decided_by: String,
    pub decided_at: DateTime<Utc>,
}

/// A text and the audience allowed to read it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MinutesText {
    pub audience: Audience,
    pub text: String,
}
