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
