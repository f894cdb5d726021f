//! One entry of the chain: a [`Draft`] before it is numbered, the stored [`Entry`], its
//! canonical encoding ([`Fields`]) and the [`Link`] verification checks.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Action, Actor, DOMAIN, Outcome};

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

/// The stored (and hashed) text of an entry's `detail`: compact JSON with every object's keys
/// sorted, which is what `json.dumps(detail, separators=(",", ":"), sort_keys=True,
/// ensure_ascii=False)` gives back from an export.
pub fn detail_text(detail: &serde_json::Value) -> String {
    fn sorted(v: &serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                let mut out = serde_json::Map::new();
                for k in keys {
                    if let Some(value) = map.get(k) {
                        out.insert(k.clone(), sorted(value));
                    }
                }
                serde_json::Value::Object(out)
            }
            serde_json::Value::Array(items) => {
                serde_json::Value::Array(items.iter().map(sorted).collect())
            }
            other => other.clone(),
        }
    }
    serde_json::to_string(&sorted(detail)).unwrap_or_default()
}

/// What an export shows of a stored detail: the object, or the stored text as a string when it
/// is not JSON (a tampered row: verification reports it).
pub fn detail_view(stored: &str) -> serde_json::Value {
    serde_json::from_str::<serde_json::Value>(stored)
        .unwrap_or_else(|_| serde_json::Value::String(stored.to_owned()))
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
    /// What an administrative action changed, identifiers only ([`detail_text`]).
    pub detail: Option<String>,
    /// The notices the event sends (not part of the entry): written to the outbox in the
    /// transaction that appends this entry, so that they exist if and only if it commits.
    pub notices: Vec<crate::domain::notice::Message>,
}

impl Draft {
    /// The notices this event sends, written with its entry.
    pub fn notify(mut self, notices: Vec<crate::domain::notice::Message>) -> Self {
        self.notices.extend(notices);
        self
    }

    /// Records what an administrative action changed (`{"before": …, "after": …}` or the
    /// settings that decided it), identifiers only: never content.
    pub fn detail(mut self, detail: &serde_json::Value) -> Self {
        self.detail = Some(detail_text(detail));
        self
    }

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
            detail: self.detail,
            prev_hash: prev_hash.to_vec(),
            hash: Vec::new(),
            mac: None,
            mac_key: None,
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
    pub detail: Option<String>,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
    /// The entry's authentication code (`crate::crypto::audit_mac`) and the version of the
    /// key that made it; `None` on entries written before codes existed.
    pub mac: Option<Vec<u8>>,
    pub mac_key: Option<i64>,
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
    pub detail: Option<&'a [u8]>,
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
        // `cases` is appended only when present, so that entries without a set encode as before
        // the column existed; `detail`, when present, follows the `cases` slot written out
        // (`0x00` when there is no set), so the three shapes cannot be confused.
        match (self.cases, self.detail) {
            (None, None) => {}
            (Some(cases), None) => push_text(out, Some(cases)),
            (cases, Some(detail)) => {
                push_text(out, cases);
                push_text(out, Some(detail));
            }
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
    /// The stored authentication code and key version (`None`: the entry carries none).
    pub mac: Option<([u8; 32], i64)>,
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
            mac: None,
        }
    }

    /// With the stored code and key version. A stored code that is not 32 bytes is kept as 32
    /// zero bytes, which no key makes.
    pub fn with_mac(mut self, mac: Option<&[u8]>, key: Option<i64>) -> Self {
        self.mac = match (mac, key) {
            (Some(m), Some(k)) => Some((m.try_into().unwrap_or([0u8; 32]), k)),
            (Some(_), None) => Some(([0u8; 32], -1)),
            _ => None,
        };
        self
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
        .with_mac(e.mac.as_deref(), e.mac_key)
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
            detail: opt(&self.detail),
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
