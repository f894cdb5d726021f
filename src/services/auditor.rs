//! What auditors do with the log: query it, verify it, sign a checkpoint, export it (JSON Lines
//! or FHIR R4), and answer "who accessed this case". Each of these is itself recorded before it
//! runs, and is allowed by the `auditor-reads-audit` policy only.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use futures_util::StreamExt;

use super::access::{self, CelluleMember};
use super::{AppState, audit_log};
use crate::audit::checkpoint::CheckpointKind;
use crate::audit::verify::{CheckpointView, PAGE, Trusted, Verification, VerifyReport};
use crate::audit::{Action, Entry, Filter, Head, Outcome, hex};
use crate::error::Error;
use crate::storage::{Database, StorageError};

/// Entries per page of an export.
const EXPORT_PAGE: i64 = 1_000;

/// One audit entry as auditors see it: identifiers only.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EntryView {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub cellule: String,
    pub actor: String,
    pub actor_role: String,
    pub actor_org: Option<String>,
    #[schema(example = "read_case")]
    pub action: String,
    pub case_id: Option<String>,
    pub case_ref: Option<String>,
    /// `note`, `event`, `route`, `session`…
    pub target_kind: Option<String>,
    pub target_id: Option<String>,
    pub outcome: Outcome,
    /// Reason code of a denial: `not_visible`, `not_found`, `forbidden`,
    /// `charter_not_accepted`, `not_member`, `administrator`.
    pub reason: Option<String>,
    pub request_id: Option<String>,
    /// The cases of a session-level action (agenda built, read, edited, published, exported;
    /// session cancelled), as `[{"case_id", "case_ref"}]`; hashed as their compact JSON (see the
    /// chain's documentation).
    #[schema(value_type = Option<Vec<crate::audit::CaseTarget>>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cases: Option<serde_json::Value>,
    /// What an administrative action changed (`before`, `after`) or the settings that decided
    /// it; for `amend_agenda`, the change of the published agenda (`change`: `add`, `withdraw`,
    /// `reorder`); identifiers only; hashed as its compact JSON with sorted keys (see the chain's
    /// documentation).
    #[schema(value_type = Option<Object>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
    /// SHA-256 chain values, hex.
    pub prev_hash: String,
    pub hash: String,
}

impl From<&Entry> for EntryView {
    fn from(e: &Entry) -> Self {
        EntryView {
            seq: e.seq,
            at: e.at(),
            cellule: e.cellule.clone(),
            actor: e.actor.clone(),
            actor_role: e.actor_role.clone(),
            actor_org: e.actor_org.clone(),
            action: e.action.clone(),
            case_id: e.case_id.clone(),
            case_ref: e.case_ref.clone(),
            target_kind: e.target_kind.clone(),
            target_id: e.target_id.clone(),
            outcome: Outcome::parse(&e.outcome).unwrap_or(Outcome::Denied),
            reason: e.reason.clone(),
            request_id: e.request_id.clone(),
            cases: e.cases.as_deref().map(crate::audit::cases_view),
            detail: e.detail.as_deref().map(crate::audit::detail_view),
            prev_hash: hex(&e.prev_hash),
            hash: hex(&e.hash),
        }
    }
}

/// Filters of `GET …/audit`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Subject of the actor.
    pub actor: Option<String>,
    /// Case reference (`PER-2026-0042`).
    pub case: Option<String>,
    pub action: Option<Action>,
    pub outcome: Option<Outcome>,
    /// From this time on (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Before this time (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// 1-500, default 100.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

/// A page of entries, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<EntryView>,
    pub next_cursor: Option<String>,
}

/// Who accessed one case.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccessLog {
    pub case_id: String,
    pub reference: String,
    /// The case was erased; its access history remains.
    pub erased: bool,
    /// Every entry about the case, oldest first.
    pub entries: Vec<EntryView>,
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    /// One JSON entry per line (`application/jsonl`).
    Jsonl,
    /// A FHIR R4 `Bundle` of `AuditEvent` resources (`application/fhir+json`).
    Fhir,
}

/// Query of `GET …/audit/export`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    pub format: ExportFormat,
}

/// Asks the policies for an auditor action, recording a refusal; then records the allowed
/// action itself (with `target`) before it runs.
async fn begin(
    state: &AppState,
    who: &CelluleMember,
    policy_action: &str,
    action: Action,
    case: Option<(&str, &str)>,
) -> Result<(), Error> {
    let a = who.audit();
    let p = access::principal(who);
    access::cellule_action_audited(state, &p, &a, policy_action, action).await?;
    let mut draft = a.entry(action, state.clock.now());
    if let Some((id, reference)) = case {
        draft = draft.case(id, Some(reference));
    }
    audit_log::record(state, &a.cellule, vec![draft]).await
}

/// `GET …/audit`.
pub async fn search(
    state: &AppState,
    who: &CelluleMember,
    q: AuditQuery,
) -> Result<AuditPage, Error> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(Error::invalid("/limit", "must be between 1 and 500"));
    }
    let before_seq = match &q.cursor {
        Some(c) => Some(
            c.parse::<i64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| Error::invalid("/cursor", "not a cursor from this API"))?,
        ),
        None => None,
    };
    begin(state, who, "read_audit", Action::ReadAudit, None).await?;
    let filter = Filter {
        actor: q.actor,
        case_ref: q.case,
        action: q.action.map(|a| a.as_str().to_owned()),
        outcome: q.outcome.map(|o| o.as_str().to_owned()),
        from_us: q.from.map(|t| t.timestamp_micros()),
        to_us: q.to.map(|t| t.timestamp_micros()),
        before_seq,
        limit: limit + 1,
    };
    let mut rows = state
        .db
        .search_audit(who.cellule.slug.as_str(), &filter)
        .await?;
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(usize::try_from(limit).unwrap_or(0));
        rows.last().map(|e| e.seq.to_string())
    } else {
        None
    };
    Ok(AuditPage {
        items: rows.iter().map(EntryView::from).collect(),
        next_cursor,
    })
}

/// `GET …/audit/verify`.
pub async fn verify(state: &AppState, who: &CelluleMember) -> Result<VerifyReport, Error> {
    begin(state, who, "verify_audit", Action::VerifyAudit, None).await?;
    let trusted = state.audit.trusted(who.slug())?;
    let report = verify_chain(state.db.as_ref(), who.slug(), &trusted).await?;
    if !report.valid {
        // The security notice of a failed verification, to the auditors and coordinators, with
        // an entry saying the verification failed (the outbox is written with it).
        let now = state.clock.now();
        let name = who.cellule.name.as_str();
        let notices =
            crate::services::notify::chain_failure_notices(state, who.slug(), name, now).await?;
        if !notices.is_empty() {
            let draft = who
                .audit()
                .entry(Action::VerifyAudit, now)
                .detail(&serde_json::json!({ "valid": false }))
                .notify(notices);
            audit_log::record(state, who.slug(), vec![draft]).await?;
        }
    }
    Ok(report)
}

/// Pages read at once: on two cores, four keep the database producing pages while others are
/// hashed.
const READERS: usize = 4;

/// Verifies the chain of `cellule` against its signed checkpoints, up to the head read at the
/// start (see [`crate::audit::verify`]).
pub async fn verify_chain(
    db: &dyn Database,
    cellule: &str,
    trusted: &Trusted,
) -> Result<VerifyReport, StorageError> {
    verify_chain_paged(db, cellule, trusted, PAGE).await
}

/// [`verify_chain`] reading `page_size` entries per query (tests use small pages to cross page
/// boundaries).
pub async fn verify_chain_paged(
    db: &dyn Database,
    cellule: &str,
    trusted: &Trusted,
    page_size: i64,
) -> Result<VerifyReport, StorageError> {
    let page_size = page_size.max(1);
    let head = db.audit_head(cellule).await?.unwrap_or_else(Head::empty);
    let checkpoints = db.audit_checkpoints(cellule).await?;
    let lowest = db
        .audit_entries(cellule, 0, 1)
        .await?
        .first()
        .map(|e| e.seq);
    let mut verification = Verification::new(cellule, head, checkpoints, lowest, trusted);
    let mut pages = futures_util::stream::iter(verification.pages(page_size))
        .map(|after| db.audit_links(cellule, after, page_size))
        .buffered(READERS);
    while !verification.done() {
        let Some(page) = pages.next().await else {
            break;
        };
        verification.check(&page?);
    }
    Ok(verification.finish())
}

/// `POST …/audit/checkpoints`: signs the head now.
pub async fn checkpoint(state: &AppState, who: &CelluleMember) -> Result<CheckpointView, Error> {
    begin(
        state,
        who,
        "checkpoint_audit",
        Action::CheckpointAudit,
        None,
    )
    .await?;
    let c = state
        .audit
        .sign(
            who.cellule.slug.as_str(),
            CheckpointKind::OnDemand,
            state.clock.now(),
        )
        .await?
        .ok_or_else(|| Error::Internal("audit chain empty after an append".into()))?;
    Ok(CheckpointView::from(&c))
}

/// `GET …/audit/checkpoints`.
pub async fn checkpoints(
    state: &AppState,
    who: &CelluleMember,
) -> Result<Vec<CheckpointView>, Error> {
    begin(state, who, "read_audit", Action::ReadAudit, None).await?;
    Ok(state
        .db
        .audit_checkpoints(who.cellule.slug.as_str())
        .await?
        .iter()
        .map(CheckpointView::from)
        .collect())
}

/// `GET …/cases/{id}/access-log`: `id` is a case id or a reference, of a live or erased case.
pub async fn access_log(
    state: &AppState,
    who: &CelluleMember,
    id: &str,
) -> Result<AccessLog, Error> {
    let cellule = who.cellule.slug.as_str();
    let resolved = state.db.resolve_case(cellule, id).await?;
    let Some((case_id, reference)) = resolved else {
        // Refused for non-auditors (recorded); an unknown case is recorded like any other.
        let a = who.audit();
        let p = access::principal(who);
        access::cellule_action_audited(state, &p, &a, "read_access_log", Action::ReadAccessLog)
            .await?;
        let mut draft = a
            .entry(Action::ReadAccessLog, state.clock.now())
            .denied(crate::audit::reason::NOT_FOUND);
        if let Ok(id) = uuid::Uuid::parse_str(id) {
            draft = draft.case(&id.to_string(), None);
        }
        audit_log::record_denial(state, &a.cellule, draft).await?;
        return Err(Error::NotFound("case"));
    };
    begin(
        state,
        who,
        "read_access_log",
        Action::ReadAccessLog,
        Some((&case_id, &reference)),
    )
    .await?;
    let erased = state
        .db
        .get_case(cellule, &case_id, DateTime::<Utc>::UNIX_EPOCH)
        .await?
        .is_none();
    let entries = state.db.case_audit(cellule, &case_id, &reference).await?;
    Ok(AccessLog {
        case_id,
        reference,
        erased,
        entries: entries.iter().map(EntryView::from).collect(),
    })
}

/// `GET …/audit/export`: records the export, signs a checkpoint at the head (which now holds
/// the export's own entry), then streams the log in sequence order up to that checkpoint, so
/// that a third party can check the whole file with the published keys.
pub async fn export(
    state: &AppState,
    who: &CelluleMember,
    format: ExportFormat,
) -> Result<impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + use<>, Error> {
    begin(state, who, "export_audit", Action::ExportAudit, None).await?;
    let through = state
        .audit
        .sign(who.slug(), CheckpointKind::OnDemand, state.clock.now())
        .await?
        .map_or(0, |c| c.seq);
    Ok(export_stream(
        state.db.clone(),
        who.cellule.slug.as_str().to_owned(),
        format,
        state.clock.now(),
        through,
    ))
}

enum Phase {
    Start,
    Entries { after: i64, first: bool },
    Done,
}

/// The export body of a cellule's log up to entry `through`, page by page (memory stays flat
/// for any log size).
pub fn export_stream(
    db: Arc<dyn Database>,
    cellule: String,
    format: ExportFormat,
    now: DateTime<Utc>,
    through: i64,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::unfold(Phase::Start, move |phase| {
        let db = db.clone();
        let cellule = cellule.clone();
        async move {
            match phase {
                Phase::Start => {
                    let open = match format {
                        ExportFormat::Fhir => crate::audit::fhir::bundle_start(&cellule, now),
                        ExportFormat::Jsonl => String::new(),
                    };
                    Some((
                        Ok(Bytes::from(open)),
                        Phase::Entries {
                            after: 0,
                            first: true,
                        },
                    ))
                }
                Phase::Entries { after, first } => {
                    let limit = EXPORT_PAGE.min(through - after).max(0);
                    let page = match db.audit_entries(&cellule, after, limit).await {
                        Ok(p) => p,
                        Err(e) => {
                            tracing::error!(error = %e, "audit export failed");
                            return Some((
                                Err(std::io::Error::other("export failed")),
                                Phase::Done,
                            ));
                        }
                    };
                    let Some(last) = page.last().map(|e| e.seq) else {
                        let close = match format {
                            ExportFormat::Fhir => crate::audit::fhir::BUNDLE_END,
                            ExportFormat::Jsonl => "",
                        };
                        return Some((Ok(Bytes::from_static(close.as_bytes())), Phase::Done));
                    };
                    let mut out = String::with_capacity(page.len() * 600);
                    let mut first = first;
                    for e in &page {
                        match format {
                            ExportFormat::Jsonl => {
                                out.push_str(
                                    &serde_json::to_string(&EntryView::from(e)).unwrap_or_default(),
                                );
                                out.push('\n');
                            }
                            ExportFormat::Fhir => {
                                if !first {
                                    out.push(',');
                                }
                                first = false;
                                out.push_str(&crate::audit::fhir::bundle_entry(e).to_string());
                            }
                        }
                    }
                    Some((Ok(Bytes::from(out)), Phase::Entries { after: last, first }))
                }
                Phase::Done => None,
            }
        }
    })
}
