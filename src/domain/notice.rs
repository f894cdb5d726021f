//! Notices by e-mail (docs/notifications.md): the kinds, and a rendered message ready for the
//! outbox. A message says that something happened and links to the page where a signed-in person
//! sees it: never a situation, a note, a decision text or any attribute of a case; a reference
//! only where the recipient may see that case.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Invalid, invalid};

string_enum!(
    /// What a notice is about. Every kind but `chain_failure` (a security notice) can be turned
    /// off by its recipient.
    NoticeKind {
        Invitation = "invitation",
        AgendaUpdate = "agenda_update",
        Cancellation = "cancellation",
        Reminder = "reminder",
        MinutesAvailable = "minutes_available",
        ActionsDue = "actions_due",
        ReferralStatus = "referral_status",
        ChainFailure = "chain_failure"
    }
);

impl NoticeKind {
    /// Whether a person may turn this notice off.
    pub fn optional(self) -> bool {
        self != NoticeKind::ChainFailure
    }
}

/// A rendered message for one recipient, written to the outbox with its event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: String,
    pub cellule: String,
    pub kind: String,
    /// The recipient's organisation (or `administration`), named in the audit entry.
    pub recipient_org: String,
    pub recipient: String,
    pub subject: String,
    pub body_text: String,
    pub body_html: String,
    /// An iCalendar attachment (`METHOD:REQUEST` or `METHOD:CANCEL`), references only.
    pub ics: Option<String>,
    /// The case references the message names.
    pub case_refs: Vec<String>,
    pub created_at: DateTime<Utc>,
}
