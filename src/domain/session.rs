//! Sessions of a cellule and what they decide (docs/design.md §10).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Invalid, invalid};

string_enum!(
    /// Where a session stands.
    SessionStatus { Planned = "planned", Cancelled = "cancelled" }
);
string_enum!(
    /// What a session decided for one item.
    #[schema(as = DecisionOutcome)]
    Outcome { Routed = "routed", FollowUp = "follow_up", Closed = "closed", Deferred = "deferred" }
);
string_enum!(
    /// Whether a participant (or an organisation) took part in a session.
    AttendanceStatus { Present = "present", Excused = "excused", Absent = "absent" }
);
string_enum!(
    /// Where a session stands in its month (docs/design.md §10): `planned`, its agenda
    /// `published`, the meeting `in_session` (opened by the coordinator on the day), `held`
    /// (closed), `minutes_approved` (frozen), or `cancelled`.
    SessionStage {
        Planned = "planned",
        Published = "published",
        InSession = "in_session",
        Held = "held",
        MinutesApproved = "minutes_approved",
        Cancelled = "cancelled"
    }
);

impl SessionStage {
    /// The stage from the session's stored facts: the latest step taken wins.
    pub fn of(
        cancelled: bool,
        published: bool,
        opened: bool,
        closed: bool,
        approved: bool,
    ) -> Self {
        match () {
            _ if cancelled => SessionStage::Cancelled,
            _ if approved => SessionStage::MinutesApproved,
            _ if closed => SessionStage::Held,
            _ if opened => SessionStage::InSession,
            _ if published => SessionStage::Published,
            _ => SessionStage::Planned,
        }
    }

    /// Decisions are recorded and corrected while the meeting is open, and after it until the
    /// minutes are approved.
    pub fn takes_decisions(self) -> bool {
        matches!(self, SessionStage::InSession | SessionStage::Held)
    }

    /// The published agenda and the attendance may still change.
    pub fn amendable(self) -> bool {
        matches!(
            self,
            SessionStage::Published | SessionStage::InSession | SessionStage::Held
        )
    }
}

/// One action decided for a case: what, which organisation does it, by when. The text is sealed
/// with the case key; owner and due date stay in clear for the follow-up list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecidedAction {
    /// 1 to 500 characters.
    pub what: String,
    /// A directory interlocutor or a membership's organisation.
    pub owner: String,
    /// `YYYY-MM-DD`.
    #[schema(value_type = String, format = Date)]
    pub due: chrono::NaiveDate,
}
