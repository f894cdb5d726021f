//! The tamper-evident audit log (SPEC §9).
//!
//! **What is recorded.** Every read, write, export and erasure of case data, every denial, and
//! every read of the audit log itself. An entry holds identifiers only: sequence, UTC time,
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
//! checkpoint pointing past the end. Keep exported checkpoints outside the database to catch a
//! rewrite that also removes checkpoints.
//!
//! **Append-only.** Triggers refuse UPDATE and DELETE of entries and checkpoints on both
//! backends. The only deletion is audit retention ([`purge`]), an explicit operation that first
//! signs a `retention` checkpoint at the last removed entry, which then anchors verification.

pub mod checkpoint;
pub mod fhir;
pub mod verify;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::Membership;

pub use checkpoint::{Checkpoint, CheckpointKind, Signer};
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
    ReadAgenda,
    RecordDecision,
    ExportCalendar,
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
        Action::ReadAgenda,
        Action::RecordDecision,
        Action::ExportCalendar,
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
            Action::ReadAgenda => "read_agenda",
            Action::RecordDecision => "record_decision",
            Action::ExportCalendar => "export_calendar",
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
            | Action::AcceptCharter => "C",
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
            | Action::RecordDecision => "U",
            Action::ReadAgenda => "R",
            Action::ExportCalendar => "E",
            Action::EraseCase | Action::RetentionErase | Action::PurgeAudit => "D",
            Action::VerifyAudit | Action::ExportAudit => "E",
        }
    }
}

/// Allowed, or denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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
        }
    }
}

/// One case of an entry's set of cases (see the module documentation for its encoding).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CaseTarget {
    pub case_id: String,
    pub case_ref: String,
}

/// The stored (and hashed) text of a set of cases.
pub fn cases_text(cases: &[(&str, &str)]) -> String {
    #[derive(Serialize)]
    struct Target<'a> {
        case_id: &'a str,
        case_ref: &'a str,
    }
    let targets: Vec<Target<'_>> = cases
        .iter()
        .map(|(case_id, case_ref)| Target { case_id, case_ref })
        .collect();
    // Serialising string pairs cannot fail.
    serde_json::to_string(&targets).unwrap_or_default()
}

/// What an export shows of a stored set of cases: the array, or the stored text itself as a
/// string when it is not one (a tampered row: verification reports it).
pub fn cases_view(stored: &str) -> serde_json::Value {
    serde_json::from_str::<Vec<CaseTarget>>(stored)
        .ok()
        .and_then(|v| serde_json::to_value(v).ok())
        .unwrap_or_else(|| serde_json::Value::String(stored.to_owned()))
}

/// The text a stored set of cases contains when it holds case `id` (exact: the quoted key and
/// value, as the compact encoding writes them).
pub fn case_id_pattern(id: &str) -> String {
    format!("\"case_id\":{}", serde_json::Value::String(id.to_owned()))
}

/// As [`case_id_pattern`], for a reference.
pub fn case_ref_pattern(reference: &str) -> String {
    format!(
        "\"case_ref\":{}",
        serde_json::Value::String(reference.to_owned())
    )
}

/// An entry before it gets its sequence number and hashes.
#[derive(Debug, Clone)]
pub struct Draft {
    pub at: DateTime<Utc>,
    pub actor: Actor,
    pub action: Action,
    pub case_id: Option<String>,
    /// Filled in by storage for a new case (its reference is allocated in the transaction).
    pub case_ref: Option<String>,
    pub target_kind: Option<&'static str>,
    pub target_id: Option<String>,
    pub outcome: Outcome,
    pub reason: Option<&'static str>,
    pub request_id: Option<String>,
    /// The set of cases of a session-level action ([`cases_text`]).
    pub cases: Option<String>,
}

impl Draft {
    /// Names the set of cases the action is about (nothing when it is empty).
    pub fn cases(mut self, cases: &[(&str, &str)]) -> Self {
        self.cases = (!cases.is_empty()).then(|| cases_text(cases));
        self
    }

    pub fn case(mut self, id: &str, reference: Option<&str>) -> Self {
        self.case_id = Some(id.to_owned());
        self.case_ref = reference.map(str::to_owned);
        self
    }

    pub fn target(mut self, kind: &'static str, id: &str) -> Self {
        self.target_kind = Some(kind);
        self.target_id = Some(id.to_owned());
        self
    }

    pub fn denied(mut self, reason: &'static str) -> Self {
        self.outcome = Outcome::Denied;
        self.reason = Some(reason);
        self
    }

    /// The stored entry this draft becomes at `seq` after `prev_hash`.
    pub fn into_entry(self, cellule: &str, seq: i64, prev_hash: &[u8]) -> Entry {
        // A case's access log is found by the case's id alone (migration 0010): an entry that
        // names a reference names the id too.
        debug_assert!(
            self.case_ref.is_none() || self.case_id.is_some(),
            "an audit entry names a case reference without the case's id"
        );
        let mut e = Entry {
            cellule: cellule.to_owned(),
            seq,
            at_us: self.at.timestamp_micros(),
            actor: self.actor.subject,
            actor_role: self.actor.role,
            actor_org: self.actor.organisation,
            action: self.action.as_str().to_owned(),
            case_id: self.case_id,
            case_ref: self.case_ref,
            target_kind: self.target_kind.map(str::to_owned),
            target_id: self.target_id,
            outcome: self.outcome.as_str().to_owned(),
            reason: self.reason.map(str::to_owned),
            request_id: self.request_id,
            cases: self.cases,
            prev_hash: prev_hash.to_vec(),
            hash: Vec::new(),
        };
        e.hash = e.compute_hash().to_vec();
        e
    }
}

/// One stored entry.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Entry {
    pub cellule: String,
    pub seq: i64,
    pub at_us: i64,
    pub actor: String,
    pub actor_role: String,
    pub actor_org: Option<String>,
    pub action: String,
    pub case_id: Option<String>,
    pub case_ref: Option<String>,
    pub target_kind: Option<String>,
    pub target_id: Option<String>,
    pub outcome: String,
    pub reason: Option<String>,
    pub request_id: Option<String>,
    pub cases: Option<String>,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

fn push_text(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            crate::crypto::push_lp(out, v);
        }
    }
}

/// The hashed fields of an entry, borrowed: from an [`Entry`] or straight from a database row
/// (the verification reader of the SQLite backend encodes the columns without building an
/// `Entry`). Text fields are their UTF-8 bytes.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    pub cellule: &'a [u8],
    pub seq: i64,
    pub at_us: i64,
    pub actor: &'a [u8],
    pub actor_role: &'a [u8],
    pub actor_org: Option<&'a [u8]>,
    pub action: &'a [u8],
    pub case_id: Option<&'a [u8]>,
    pub case_ref: Option<&'a [u8]>,
    pub target_kind: Option<&'a [u8]>,
    pub target_id: Option<&'a [u8]>,
    pub outcome: &'a [u8],
    pub reason: Option<&'a [u8]>,
    pub request_id: Option<&'a [u8]>,
    pub cases: Option<&'a [u8]>,
}

impl Fields<'_> {
    /// Appends the canonical encoding (see the module documentation) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        push_text(out, Some(self.cellule));
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.at_us.to_be_bytes());
        push_text(out, Some(self.actor));
        push_text(out, Some(self.actor_role));
        push_text(out, self.actor_org);
        push_text(out, Some(self.action));
        push_text(out, self.case_id);
        push_text(out, self.case_ref);
        push_text(out, self.target_kind);
        push_text(out, self.target_id);
        push_text(out, Some(self.outcome));
        push_text(out, self.reason);
        push_text(out, self.request_id);
        // Appended only when present: entries without a set encode as before the column existed.
        if let Some(cases) = self.cases {
            push_text(out, Some(cases));
        }
    }
}

/// What verification needs of a stored entry: its place, its stored links and the hash
/// recomputed over its stored previous hash and columns. The stored hashes are kept as digests,
/// not one allocation each (a verification holds a million links): a stored value that is not
/// a SHA-256 digest (32 bytes) is `None`, which matches nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub seq: i64,
    pub prev_hash: Option<[u8; 32]>,
    pub hash: Option<[u8; 32]>,
    pub computed: [u8; 32],
}

impl Link {
    /// The link of a row: `canonical` is a scratch buffer, reused from row to row.
    pub fn of(fields: &Fields<'_>, prev_hash: &[u8], hash: &[u8], canonical: &mut Vec<u8>) -> Self {
        canonical.clear();
        fields.encode(canonical);
        Link {
            seq: fields.seq,
            prev_hash: prev_hash.try_into().ok(),
            hash: hash.try_into().ok(),
            computed: chain_hash(prev_hash, canonical),
        }
    }
}

impl From<&Entry> for Link {
    fn from(e: &Entry) -> Self {
        Link::of(
            &e.fields(),
            &e.prev_hash,
            &e.hash,
            &mut Vec::with_capacity(256),
        )
    }
}

fn opt(v: &Option<String>) -> Option<&[u8]> {
    v.as_deref().map(str::as_bytes)
}

impl Entry {
    /// The hashed fields, borrowed.
    pub fn fields(&self) -> Fields<'_> {
        Fields {
            cellule: self.cellule.as_bytes(),
            seq: self.seq,
            at_us: self.at_us,
            actor: self.actor.as_bytes(),
            actor_role: self.actor_role.as_bytes(),
            actor_org: opt(&self.actor_org),
            action: self.action.as_bytes(),
            case_id: opt(&self.case_id),
            case_ref: opt(&self.case_ref),
            target_kind: opt(&self.target_kind),
            target_id: opt(&self.target_id),
            outcome: self.outcome.as_bytes(),
            reason: opt(&self.reason),
            request_id: opt(&self.request_id),
            cases: opt(&self.cases),
        }
    }

    /// The canonical encoding hashed into the chain (see the module documentation).
    pub fn canonical(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.fields().encode(&mut out);
        out
    }

    /// SHA-256 over the domain tag, the stored previous hash and the canonical encoding.
    pub fn compute_hash(&self) -> [u8; 32] {
        chain_hash(&self.prev_hash, &self.canonical())
    }

    pub fn at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.at_us).unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
    }
}

/// `SHA-256("cellule-audit-v1" · prev · canonical)`.
pub fn chain_hash(prev: &[u8], canonical: &[u8]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(DOMAIN);
    ctx.update(prev);
    ctx.update(canonical);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
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

/// The entry recording an audit retention purge through `seq`.
pub fn purge_entry(now: DateTime<Utc>, seq: i64) -> Draft {
    AuditCtx {
        cellule: String::new(),
        actor: Actor::system("audit-retention"),
        request_id: None,
    }
    .entry(Action::PurgeAudit, now)
    .target("audit_entries_through", &seq.to_string())
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft() -> Draft {
        AuditCtx {
            cellule: "perpignan".into(),
            actor: Actor {
                subject: "alice".into(),
                role: "coordinator".into(),
                organisation: Some("CMP".into()),
            },
            request_id: Some("r1".into()),
        }
        .entry(Action::ReadCase, Utc::now())
        .case("c1", Some("PER-2026-0001"))
    }

    /// The documented encoding, computed independently (Python's `hashlib` over the bytes the
    /// module documentation describes): exports stay verifiable by third parties.
    #[test]
    fn the_chain_hash_is_the_documented_one() {
        let e = Entry {
            cellule: "perpignan".into(),
            seq: 42,
            at_us: 1_790_000_000_123_456,
            actor: "alice".into(),
            actor_role: "coordinator".into(),
            actor_org: None,
            action: "read_case".into(),
            case_id: Some("c1".into()),
            case_ref: Some("PER-2026-0001".into()),
            target_kind: None,
            target_id: Some(String::new()),
            outcome: "allowed".into(),
            reason: None,
            request_id: Some("r-é".into()),
            cases: None,
            prev_hash: (0u8..32).collect(),
            hash: Vec::new(),
        };
        assert_eq!(
            hex(&e.compute_hash()),
            "6be4462cf1910f2d5720e55986f97ae2ed761464b9f75d5572510c67383332c6"
        );
        assert_eq!(Link::from(&e).computed, e.compute_hash());
        // An entry about a set of cases (same Python computation, `cases` appended).
        let set = Entry {
            action: "build_agenda".into(),
            case_id: None,
            case_ref: None,
            target_kind: Some("session".into()),
            target_id: Some("s1".into()),
            cases: Some(cases_text(&[
                ("c1", "PER-2026-0001"),
                ("c2", "PER-2026-0002"),
            ])),
            ..e
        };
        assert_eq!(
            set.cases.as_deref(),
            Some(
                r#"[{"case_id":"c1","case_ref":"PER-2026-0001"},{"case_id":"c2","case_ref":"PER-2026-0002"}]"#
            )
        );
        assert_eq!(
            hex(&set.compute_hash()),
            "eff57a1a0b31bf20be212602b3930c5966dae3d5868818e185146683060bc35e"
        );
        assert_eq!(Link::from(&set).computed, set.compute_hash());
        // Stored hashes are kept as digests: a stored value of another length matches nothing,
        // and the recomputed hash still covers the stored previous hash as it is.
        let link = Link::from(&set);
        assert_eq!(link.hash, None);
        assert_eq!(link.prev_hash, set.prev_hash.as_slice().try_into().ok());
        let short = Entry {
            prev_hash: vec![7; 31],
            hash: set.compute_hash().to_vec(),
            ..set.clone()
        };
        let link = Link::from(&short);
        assert_eq!(link.prev_hash, None);
        assert_eq!(link.hash, Some(set.compute_hash()));
        assert_eq!(link.computed, short.compute_hash());
        assert_ne!(link.computed, set.compute_hash());
    }

    #[test]
    fn a_set_of_cases_is_found_by_its_patterns_only() {
        let text = cases_text(&[("c1", "PER-2026-0001"), ("c12", "PER-2026-0012")]);
        assert!(text.contains(&case_id_pattern("c1")));
        assert!(text.contains(&case_ref_pattern("PER-2026-0012")));
        assert!(!text.contains(&case_id_pattern("c")));
        assert!(!text.contains(&case_ref_pattern("PER-2026-001")));
        assert!(!text.contains(&case_id_pattern("PER-2026-0001")));
        assert_eq!(
            cases_view(&text),
            serde_json::json!([
                {"case_id": "c1", "case_ref": "PER-2026-0001"},
                {"case_id": "c12", "case_ref": "PER-2026-0012"}
            ])
        );
        assert_eq!(cases_view("not json"), serde_json::json!("not json"));
        let d = AuditCtx {
            cellule: "perpignan".into(),
            actor: Actor::system("t"),
            request_id: None,
        }
        .entry(Action::BuildAgenda, Utc::now());
        assert_eq!(d.clone().cases(&[]).cases, None);
        assert!(d.cases(&[("c1", "R")]).cases.is_some());
    }

    #[test]
    fn every_field_changes_the_hash() {
        let e = draft().into_entry("perpignan", 1, &GENESIS);
        assert_eq!(e.hash, e.compute_hash().to_vec());
        let mut variants = Vec::new();
        let mut v = e.clone();
        v.seq = 2;
        variants.push(v);
        let mut v = e.clone();
        v.at_us += 1;
        variants.push(v);
        let mut v = e.clone();
        v.actor = "mallory".into();
        variants.push(v);
        let mut v = e.clone();
        v.actor_org = None;
        variants.push(v);
        let mut v = e.clone();
        v.case_ref = Some("PER-2026-0002".into());
        variants.push(v);
        let mut v = e.clone();
        v.outcome = "denied".into();
        variants.push(v);
        let mut v = e.clone();
        v.cases = Some(cases_text(&[("c1", "PER-2026-0001")]));
        variants.push(v);
        let mut v = e.clone();
        v.cases = Some("[]".into());
        variants.push(v);
        let mut v = e.clone();
        v.prev_hash = vec![1; 32];
        variants.push(v);
        for v in variants {
            assert_ne!(v.compute_hash().to_vec(), e.hash);
        }
    }

    #[test]
    fn absent_and_empty_fields_differ() {
        let mut a = draft().into_entry("perpignan", 1, &GENESIS);
        a.actor_org = None;
        let mut b = a.clone();
        b.actor_org = Some(String::new());
        assert_ne!(a.compute_hash(), b.compute_hash());
        // Moving bytes between adjacent fields changes the encoding.
        let mut c = a.clone();
        c.case_id = Some("c1P".into());
        c.case_ref = Some("ER-2026-0001".into());
        assert_ne!(a.compute_hash(), c.compute_hash());
    }

    #[test]
    fn actions_round_trip() {
        for a in Action::ALL {
            assert_eq!(Action::parse(a.as_str()), Some(*a));
            let json = serde_json::to_string(a).unwrap();
            assert_eq!(json, format!("\"{}\"", a.as_str()));
        }
    }
}
