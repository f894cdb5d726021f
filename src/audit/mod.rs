//! The tamper-evident audit log (docs/design.md §9).
//!
//! **What is recorded.** Every read, write, export and erasure of case data, every denial, and
//! every read of the audit log itself; and administration (cellules created, memberships granted,
//! changed and revoked, charter, retention and routing changes, policies loaded at start, keys
//! rotated and retired, audit purges), naming the administrator, `system:cli:<os user>` or
//! `system:startup`, with the change before → after in `detail` (docs/audit.md, "Administrative
//! entries"). An entry holds identifiers only: sequence, UTC time,
//! cellule, actor (`sub`, role, organisation), action, target (case id and reference, note id,
//! session id…), outcome (`allowed` / `denied` with a reason code) and request id. Never content,
//! identity or tokens.
//!
//! **Same transaction.** Writes hand their entry to the storage method doing the work, which
//! appends it in the same database transaction; reads and denials append their entry before the
//! answer is sent. If the entry cannot be written, the request fails (and a write changes
//! nothing).
//!
//! **Hash chain.** Entries of one cellule are numbered 1, 2, 3… without gaps and chained:
//!
//! ```text
//! hash(n) = SHA-256( "cellule-audit-v1" · hash(n-1) · canonical(entry n) )      hash(0) = 32 zero bytes
//! ```
//!
//! `canonical` concatenates, in this order, `cellule`, `seq` (i64 big-endian), `at_us` (i64
//! big-endian, UTC microseconds), `actor`, `actor_role`, `actor_org`, `action`, `case_id`,
//! `case_ref`, `target_kind`, `target_id`, `outcome`, `reason`, `request_id`; each text field is
//! `0x00` when absent, or `0x01` · length (u32 big-endian) · UTF-8 bytes. An entry about a set
//! of cases (an agenda built, read, edited, published or exported) names them in `cases`, whose
//! text is then appended the same way (`0x01` · length · bytes; nothing at all when the entry has
//! no such set, so entries without one encode as they always did): the compact JSON array
//! `[{"case_id":"…","case_ref":"…"},…]` (keys in that order, no whitespace), which is what
//! `json.dumps(cases, separators=(",", ":"), sort_keys=True)` gives back from an export. The
//! exports carry `prev_hash` and `hash` in hex so a third party can recompute the chain.
//!
//! **Sets of cases.** A session-level action over many cases (an agenda build considers every
//! eligible case of the cellule: thousands in a large département) is one entry naming the
//! session, with the cases in `cases`, rather than one entry per case: the chain covers the set
//! all the same, and "who accessed case X" finds the entry through it.
//!
//! Appends bump a per-cellule head row first; that statement takes the row lock (PostgreSQL) or
//! the write lock (SQLite), so the chain stays strictly linear with several API processes.
//!
//! **Checkpoints.** The service signs the head (Ed25519, [`checkpoint`]) every
//! `audit.checkpoint_every` entries, every `audit.checkpoint_interval`, on demand
//! (`POST …/audit/checkpoints`, `cellule audit checkpoint`) and before an audit retention purge.
//! Someone with database access can rewrite entries and recompute hashes, but cannot sign: a
//! rewritten history no longer matches the signed checkpoints, and a truncated tail leaves a
//! checkpoint pointing past the end. Checkpoints are also written to a witness outside the
//! database (`crate::services::witness`), which catches a chain rolled back together with its
//! checkpoints and head row.
//!
//! **Authentication codes.** Every entry carries an HMAC of its hash under a keyring secret
//! the database never holds (`crate::crypto::audit_mac`): whoever can write rows but has no
//! keyring cannot add, change, reorder or replace an entry without verification failing at
//! that entry. The threat model is in docs/audit.md.
//!
//! **Append-only.** Triggers refuse UPDATE and DELETE of entries and checkpoints on both
//! backends. The only deletion is audit retention (`AuditStore::purge_audit`), an explicit operation that first
//! signs a `retention` checkpoint at the last removed entry, which then anchors verification.

pub mod checkpoint;
mod entry;
pub mod fhir;
#[cfg(test)]
mod tests;
pub mod verify;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::Membership;

pub use checkpoint::{Checkpoint, CheckpointKind, Signer};
pub use entry::{
    CaseTarget, Draft, Entry, Fields, Link, case_id_pattern, case_ref_pattern, cases_text,
    cases_view, chain_hash, detail_text, detail_view,
};
pub use verify::{Broken, VerifyReport};

/// Hash of "no previous entry".
pub const GENESIS: [u8; 32] = [0u8; 32];
const DOMAIN: &[u8] = b"cellule-audit-v1";

/// What was done (or attempted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    SubmitReferral,
    ListReferrals,
    ListCases,
    ReadCase,
    TransitionCase,
    WriteNote,
    ReadNotes,
    EraseCase,
    /// Erasure by the retention schedule.
    RetentionErase,
    /// A request into a cellule by someone who is not a member of it (or an administrator).
    EnterCellule,
    ReadAudit,
    VerifyAudit,
    ExportAudit,
    ReadAccessLog,
    CheckpointAudit,
    PurgeAudit,
    AcceptCharter,
    CancelSession,
    BuildAgenda,
    EditAgenda,
    PublishAgenda,
    /// A published agenda changed: an item added or withdrawn, or the items reordered
    /// (`detail.change`: `add`, `withdraw`, `reorder`).
    AmendAgenda,
    ReadAgenda,
    RecordDecision,
    ExportCalendar,
    /// The meeting (docs/design.md §10).
    OpenMeeting,
    CloseMeeting,
    RecordAttendance,
    CorrectDecision,
    ApproveMinutes,
    ReadDecisions,
    ReadMinutes,
    ReadFollowUps,
    /// Scheduled notices (docs/notifications.md): a session's reminder, a digest of what falls due.
    SendReminder,
    SendDueNotice,
    /// A notification left through the outbox (docs/notifications.md): actor `system:outbox`,
    /// target `message`/id, the cases it names in `cases`, `detail` `{"kind", "recipient_org"}`
    /// (never the address or the content).
    SendNotification,
    /// Administration (docs/audit.md, "Administrative entries"): each names the administrator
    /// (or `system:cli:<os user>`, `system:startup`) and, in `detail`, the change before → after.
    CreateCellule,
    GrantMembership,
    ChangeMembership,
    RevokeMembership,
    ChangeCharter,
    ChangeRetention,
    ChangeRouting,
    LoadPolicies,
    RotateKeys,
    RetireKey,
}

impl Action {
    pub const ALL: &'static [Action] = &[
        Action::SubmitReferral,
        Action::ListReferrals,
        Action::ListCases,
        Action::ReadCase,
        Action::TransitionCase,
        Action::WriteNote,
        Action::ReadNotes,
        Action::EraseCase,
        Action::RetentionErase,
        Action::EnterCellule,
        Action::ReadAudit,
        Action::VerifyAudit,
        Action::ExportAudit,
        Action::ReadAccessLog,
        Action::CheckpointAudit,
        Action::PurgeAudit,
        Action::AcceptCharter,
        Action::CancelSession,
        Action::BuildAgenda,
        Action::EditAgenda,
        Action::PublishAgenda,
        Action::AmendAgenda,
        Action::ReadAgenda,
        Action::RecordDecision,
        Action::ExportCalendar,
        Action::OpenMeeting,
        Action::CloseMeeting,
        Action::RecordAttendance,
        Action::CorrectDecision,
        Action::ApproveMinutes,
        Action::ReadDecisions,
        Action::ReadMinutes,
        Action::ReadFollowUps,
        Action::SendReminder,
        Action::SendDueNotice,
        Action::SendNotification,
        Action::CreateCellule,
        Action::GrantMembership,
        Action::ChangeMembership,
        Action::RevokeMembership,
        Action::ChangeCharter,
        Action::ChangeRetention,
        Action::ChangeRouting,
        Action::LoadPolicies,
        Action::RotateKeys,
        Action::RetireKey,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::SubmitReferral => "submit_referral",
            Action::ListReferrals => "list_referrals",
            Action::ListCases => "list_cases",
            Action::ReadCase => "read_case",
            Action::TransitionCase => "transition_case",
            Action::WriteNote => "write_note",
            Action::ReadNotes => "read_notes",
            Action::EraseCase => "erase_case",
            Action::RetentionErase => "retention_erase",
            Action::EnterCellule => "enter_cellule",
            Action::ReadAudit => "read_audit",
            Action::VerifyAudit => "verify_audit",
            Action::ExportAudit => "export_audit",
            Action::ReadAccessLog => "read_access_log",
            Action::CheckpointAudit => "checkpoint_audit",
            Action::PurgeAudit => "purge_audit",
            Action::AcceptCharter => "accept_charter",
            Action::CancelSession => "cancel_session",
            Action::BuildAgenda => "build_agenda",
            Action::EditAgenda => "edit_agenda",
            Action::PublishAgenda => "publish_agenda",
            Action::AmendAgenda => "amend_agenda",
            Action::ReadAgenda => "read_agenda",
            Action::RecordDecision => "record_decision",
            Action::ExportCalendar => "export_calendar",
            Action::OpenMeeting => "open_meeting",
            Action::CloseMeeting => "close_meeting",
            Action::RecordAttendance => "record_attendance",
            Action::CorrectDecision => "correct_decision",
            Action::ApproveMinutes => "approve_minutes",
            Action::ReadDecisions => "read_decisions",
            Action::ReadMinutes => "read_minutes",
            Action::ReadFollowUps => "read_follow_ups",
            Action::SendReminder => "send_reminder",
            Action::SendDueNotice => "send_due_notice",
            Action::SendNotification => "send_notification",
            Action::CreateCellule => "create_cellule",
            Action::GrantMembership => "grant_membership",
            Action::ChangeMembership => "change_membership",
            Action::RevokeMembership => "revoke_membership",
            Action::ChangeCharter => "change_charter",
            Action::ChangeRetention => "change_retention",
            Action::ChangeRouting => "change_routing",
            Action::LoadPolicies => "load_policies",
            Action::RotateKeys => "rotate_keys",
            Action::RetireKey => "retire_key",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.iter().copied().find(|a| a.as_str() == s)
    }

    /// FHIR `AuditEvent.action`: C, R, U, D or E.
    pub fn fhir_code(self) -> &'static str {
        match self {
            Action::SubmitReferral
            | Action::WriteNote
            | Action::CheckpointAudit
            | Action::AcceptCharter
            | Action::CreateCellule
            | Action::GrantMembership
            | Action::ChangeCharter
            | Action::RotateKeys => "C",
            Action::ListReferrals
            | Action::ListCases
            | Action::ReadCase
            | Action::ReadNotes
            | Action::EnterCellule
            | Action::ReadAudit
            | Action::ReadAccessLog => "R",
            Action::TransitionCase
            | Action::CancelSession
            | Action::BuildAgenda
            | Action::EditAgenda
            | Action::PublishAgenda
            | Action::AmendAgenda
            | Action::RecordDecision
            | Action::OpenMeeting
            | Action::CloseMeeting
            | Action::RecordAttendance
            | Action::CorrectDecision
            | Action::ApproveMinutes
            | Action::ChangeMembership
            | Action::ChangeRetention
            | Action::ChangeRouting => "U",
            // Reading the policy directory at start changes nothing: the entry records what
            // the service now enforces.
            Action::LoadPolicies => "R",
            Action::ReadAgenda
            | Action::ReadDecisions
            | Action::ReadMinutes
            | Action::ReadFollowUps => "R",
            Action::ExportCalendar | Action::SendReminder | Action::SendDueNotice => "E",
            // A message leaving the service names cases to someone outside it: a disclosure,
            // coded like the calendar export (FHIR "E", execute: a system function performed).
            Action::SendNotification => "E",
            Action::EraseCase
            | Action::RetentionErase
            | Action::PurgeAudit
            | Action::RevokeMembership
            | Action::RetireKey => "D",
            Action::VerifyAudit | Action::ExportAudit => "E",
        }
    }
}

/// Allowed, or denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = AuditOutcome)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Allowed,
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
        }
    }
    pub fn parse(s: &str) -> Option<Outcome> {
        match s {
            "allowed" => Some(Outcome::Allowed),
            "denied" => Some(Outcome::Denied),
            _ => None,
        }
    }
}

/// Why a request was denied (reason codes stored in entries).
pub mod reason {
    /// The case is not visible to the caller (answered 404).
    pub const NOT_VISIBLE: &str = "not_visible";
    /// No such case (answered 404); recorded so that probing shows.
    pub const NOT_FOUND: &str = "not_found";
    /// The action is not allowed on a visible case or in the cellule (403).
    pub const FORBIDDEN: &str = "forbidden";
    /// The caller must first accept the cellule's charter (403).
    pub const CHARTER_NOT_ACCEPTED: &str = "charter_not_accepted";
    /// The caller is not a member of the cellule (404).
    pub const NOT_MEMBER: &str = "not_member";
    /// Administrators never act inside a cellule (404).
    pub const ADMINISTRATOR: &str = "administrator";
    /// An authorised write refused as invalid (422): nothing was written.
    pub const INVALID: &str = "invalid";
    /// An authorised write refused as not applicable to the case's state (409).
    pub const CONFLICT: &str = "conflict";
    /// A denial past the caller's denial budget (429): this entry stands for it and for the
    /// caller's further denials in the cellule during the window, which are not recorded one
    /// by one (`rate_limit.denials`).
    pub const THROTTLED: &str = "throttled";
}

/// Who acts: the identifiers of a membership (or a system actor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub subject: String,
    pub role: String,
    pub organisation: Option<String>,
}

impl Actor {
    pub fn of(m: &Membership) -> Self {
        Actor {
            subject: m.subject.as_str().to_owned(),
            role: m.spec.role.as_str().to_owned(),
            organisation: m.spec.organisation.as_ref().map(|o| o.as_str().to_owned()),
        }
    }

    /// The service itself (retention, scheduled checkpoints) or an operator at the command line.
    pub fn system(name: &str) -> Self {
        Actor {
            subject: format!("system:{name}"),
            role: "system".into(),
            organisation: None,
        }
    }

    /// A deployment administrator signed in (API or web pages): their subject, role
    /// `administrator`.
    pub fn administrator(subject: &str) -> Self {
        Actor {
            subject: subject.to_owned(),
            role: "administrator".into(),
            organisation: None,
        }
    }

    /// An operator at the command line: `system:cli:<os user>`, role `system`. The OS user is
    /// the process's login name (`USER`, else `LOGNAME`, else `unknown`): whoever runs the
    /// binary already holds the database and the keyring, so this names them rather than
    /// authenticates them.
    pub fn cli() -> Self {
        let user = ["USER", "LOGNAME"]
            .into_iter()
            .filter_map(|v| std::env::var(v).ok())
            .map(|u| u.trim().to_owned())
            .find(|u| !u.is_empty())
            .unwrap_or_else(|| "unknown".to_owned());
        Actor::system(&format!("cli:{user}"))
    }

    /// The actor with the id of the request it acts in, for entries in any cellule.
    pub fn in_cellule(&self, cellule: &str, request_id: Option<&str>) -> AuditCtx {
        AuditCtx {
            cellule: cellule.to_owned(),
            actor: self.clone(),
            request_id: request_id.map(str::to_owned),
        }
    }
}

/// The request an entry belongs to: cellule, actor and request id.
#[derive(Debug, Clone)]
pub struct AuditCtx {
    pub cellule: String,
    pub actor: Actor,
    pub request_id: Option<String>,
}

impl AuditCtx {
    /// An entry of this request.
    pub fn entry(&self, action: Action, at: DateTime<Utc>) -> Draft {
        Draft {
            at,
            actor: self.actor.clone(),
            action,
            case_id: None,
            case_ref: None,
            target_kind: None,
            target_id: None,
            outcome: Outcome::Allowed,
            reason: None,
            request_id: self.request_id.clone(),
            cases: None,
            detail: None,
            notices: Vec::new(),
        }
    }
}

/// The head of a cellule's chain.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Head {
    pub seq: i64,
    pub hash: Vec<u8>,
    pub checkpoint_seq: i64,
    pub purged_through: i64,
}

impl Head {
    pub fn empty() -> Self {
        Head {
            seq: 0,
            hash: GENESIS.to_vec(),
            checkpoint_seq: 0,
            purged_through: 0,
        }
    }
}

/// Filters of `GET …/audit`, newest first.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub actor: Option<String>,
    pub case_ref: Option<String>,
    pub action: Option<String>,
    pub outcome: Option<String>,
    pub from_us: Option<i64>,
    pub to_us: Option<i64>,
    /// Entries with a smaller sequence only (the cursor).
    pub before_seq: Option<i64>,
    pub limit: i64,
}

/// What an audit retention purge did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purged {
    /// Entries removed.
    pub removed: i64,
    /// The signed checkpoint at the last removed entry, anchoring verification.
    pub anchor: Option<Checkpoint>,
}

/// The entry recording an audit retention purge through `seq`, asked by `by` for the entries
/// older than `before_us`.
pub fn purge_entry(now: DateTime<Utc>, seq: i64, before_us: i64, by: &Actor) -> Draft {
    by.in_cellule("", None)
        .entry(Action::PurgeAudit, now)
        .target("audit_entries_through", &seq.to_string())
        .detail(&serde_json::json!({ "through_seq": seq, "before_us": before_us }))
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
