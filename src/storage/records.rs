//! Rows exchanged with the storage layer for keys, cases, notes and charters. Encrypted fields
//! are opaque bytes here: storage never sees clear case content.

use chrono::{DateTime, NaiveDate, Utc};

use crate::domain::agenda::Kind;
use crate::domain::case::{
    AgeBand, Audience, CaseStatus, ConsentStatus, Gender, Need, Needs, Urgency,
};
use crate::domain::session::{AttendanceStatus, Outcome, SessionStage, SessionStatus};
use crate::domain::{Cellule, Membership, Role, Sphere};

/// A data key (or a cellule's linkage secret) wrapped by a KEK.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WrappedKey {
    /// The case id for a case key, `linkage:<cellule>` for a linkage secret.
    pub id: String,
    pub cellule: String,
    pub case_id: Option<String>,
    pub kek_version: i64,
    pub wrapped: Vec<u8>,
}

/// A re-wrapped key to store, if it still has `old_version`.
#[derive(Debug, Clone)]
pub struct Rewrapped {
    pub id: String,
    pub old_version: i64,
    pub new_version: i64,
    pub wrapped: Vec<u8>,
}

/// A case as submitted (content already encrypted).
#[derive(Debug, Clone)]
pub struct NewCase {
    pub id: String,
    pub cellule: String,
    pub code: String,
    pub year: i32,
    pub urgency: Urgency,
    pub age_band: AgeBand,
    pub gender: Gender,
    pub commune: Option<String>,
    pub sector: Option<String>,
    pub needs: Needs,
    pub consent_status: ConsentStatus,
    pub consent_justification: Option<Vec<u8>>,
    pub referring_org: String,
    pub referrer: String,
    pub linkage_key: Option<String>,
    pub situation: Vec<u8>,
    pub expectations: Option<Vec<u8>>,
    pub submitted_at: DateTime<Utc>,
}

/// A stored case with its wrapped data key.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CaseRecord {
    pub id: String,
    pub cellule: String,
    pub reference: String,
    pub status: CaseStatus,
    pub urgency: Urgency,
    pub age_band: AgeBand,
    pub gender: Gender,
    pub commune: Option<String>,
    pub sector: Option<String>,
    pub needs: Needs,
    pub consent_status: ConsentStatus,
    pub consent_justification: Option<Vec<u8>>,
    pub referring_org: String,
    pub referrer: String,
    pub linkage_key: Option<String>,
    pub routed_org: Option<String>,
    pub follow_up_date: Option<NaiveDate>,
    pub times_deferred: i64,
    pub situation: Vec<u8>,
    pub expectations: Option<Vec<u8>>,
    pub submitted_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    pub key_wrapped: Vec<u8>,
    /// On a published agenda whose session is not older than the window asked for.
    pub on_agenda: bool,
    /// Organisations invited to this case's published items in that window, each enclosed in
    /// [`INVITATION_SEPARATOR`]s.
    pub agenda_invited: String,
}

/// A cellule as one subject reaches it ([`super::CelluleStore::cellule_access`]).
#[derive(Debug, Clone)]
pub struct CelluleAccess {
    pub cellule: Cellule,
    pub membership: Option<Membership>,
    /// The subject accepted the cellule's current charter (false when there is none).
    pub charter_accepted: bool,
}

/// What agenda building needs of a case (no ciphertext, no key: thousands are read at once).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EligibleCase {
    pub id: String,
    pub reference: String,
    pub status: CaseStatus,
    pub urgency: Urgency,
    pub needs: Needs,
    pub commune: Option<String>,
    pub sector: Option<String>,
    pub follow_up_date: Option<NaiveDate>,
    /// Deferrals counted by published agendas and `deferred` decisions.
    pub times_deferred: i64,
    pub routed_org: Option<String>,
    pub submitted_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
    /// Whether the session asked about already deferred the case (an earlier build of its
    /// agenda): a rebuild that defers the same cases need not write its deferrals again.
    pub deferred_here: bool,
}

impl From<&CaseRecord> for EligibleCase {
    fn from(c: &CaseRecord) -> Self {
        EligibleCase {
            id: c.id.clone(),
            reference: c.reference.clone(),
            status: c.status,
            urgency: c.urgency,
            needs: c.needs.clone(),
            commune: c.commune.clone(),
            sector: c.sector.clone(),
            follow_up_date: c.follow_up_date,
            times_deferred: c.times_deferred,
            routed_org: c.routed_org.clone(),
            submitted_at: c.submitted_at,
            decided_at: c.decided_at,
            deferred_here: false,
        }
    }
}

/// Encloses each name of an invitation list. Organisation names cannot hold control characters,
/// so no name can contain it (a comma could: `Têt Habitat, office public`) and a search for
/// `␟name␟` matches that name only.
pub const INVITATION_SEPARATOR: char = '\u{1f}';

/// The stored invitation list of these organisations (empty when none).
pub fn invitation_list<S: AsRef<str>>(orgs: &[S]) -> String {
    if orgs.is_empty() {
        return String::new();
    }
    let mut out = String::from(INVITATION_SEPARATOR);
    for o in orgs {
        out.push_str(o.as_ref());
        out.push(INVITATION_SEPARATOR);
    }
    out
}

/// What an invitation list contains when it names `org`.
pub fn invitation_needle(org: &str) -> String {
    format!("{INVITATION_SEPARATOR}{org}{INVITATION_SEPARATOR}")
}

/// The names of a stored invitation list (or of several, concatenated).
pub fn invited_names(list: &str) -> Vec<&str> {
    list.split(INVITATION_SEPARATOR)
        .filter(|s| !s.is_empty())
        .collect()
}

impl CaseRecord {
    /// The organisations invited to this case's published agenda items (guests' access).
    pub fn invited_organisations(&self) -> Vec<&str> {
        invited_names(&self.agenda_invited)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_difference_is_what_came_and_what_went_in_id_order() {
        let ids = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let all = ids(&["e", "b", "a", "g", "b"]);
        let before = ids(&["f", "a", "c", "g"]);
        let d = Deferrals {
            all: &all,
            before: &before,
            read_at: None,
        };
        assert_eq!(d.difference(), (vec!["c", "f"], vec!["b", "e"]));
        let none = Deferrals {
            all: &[],
            before: &before,
            read_at: None,
        };
        assert_eq!(none.difference(), (vec!["a", "c", "f", "g"], vec![]));
        let first = Deferrals {
            all: &all,
            before: &[],
            read_at: None,
        };
        assert_eq!(first.difference(), (vec![], vec!["a", "b", "e", "g"]));
    }

    #[test]
    fn invitation_lists_keep_names_with_commas_whole() {
        let names = ["Têt Habitat, office public de l'habitat", "EMPP"];
        let list = invitation_list(&names);
        assert_eq!(invited_names(&list), names);
        // Lists of two publications, concatenated by the storage, still split right.
        let two = format!("{list}{}", invitation_list(&["CCAS"]));
        assert_eq!(invited_names(&two), [names[0], names[1], "CCAS"]);
        // Neither half of a name with a comma matches on its own.
        assert!(!list.contains(&invitation_needle("Têt Habitat")));
        assert!(!list.contains(&invitation_needle("office public de l'habitat")));
        assert!(list.contains(&invitation_needle("EMPP")));
        assert_eq!(invitation_list::<&str>(&[]), "");
    }
}

/// Filters of `GET …/cases`; `None` means "any". Ordered newest first by (submitted_at, id).
#[derive(Debug, Clone)]
pub struct CaseFilter {
    pub status: Option<CaseStatus>,
    pub urgency: Option<Urgency>,
    pub need: Option<Need>,
    pub sector: Option<String>,
    pub commune: Option<String>,
    pub submitted_from: Option<DateTime<Utc>>,
    pub submitted_before: Option<DateTime<Utc>>,
    /// Only cases routed to this organisation (members)…
    pub routed_org: Option<String>,
    /// …or, when set, on a published agenda (permanent members)…
    pub or_on_agenda: bool,
    /// …or invited (`,name,`) to a published item (guests).
    pub invited: Option<String>,
    /// Agenda sessions from this time on count (the 30-day window).
    pub agenda_since: DateTime<Utc>,
    /// Only cases submitted by this subject (referrers' status view).
    pub referrer: Option<String>,
    /// Continue after this (submitted_at, id).
    pub after: Option<(DateTime<Utc>, String)>,
    pub limit: i64,
}

impl Default for CaseFilter {
    fn default() -> Self {
        Self {
            status: None,
            urgency: None,
            need: None,
            sector: None,
            commune: None,
            submitted_from: None,
            submitted_before: None,
            routed_org: None,
            or_on_agenda: false,
            invited: None,
            agenda_since: DateTime::<Utc>::UNIX_EPOCH,
            referrer: None,
            after: None,
            limit: 50,
        }
    }
}

/// A status change to apply if the case is still in `from`.
#[derive(Debug, Clone)]
pub struct Transition {
    pub event_id: String,
    pub case_id: String,
    pub cellule: String,
    pub from: CaseStatus,
    pub to: CaseStatus,
    pub reason: Option<Vec<u8>>,
    /// Sealed; only with a decline: what the referrer reads in their status view.
    pub referrer_message: Option<Vec<u8>>,
    pub follow_up_date: Option<NaiveDate>,
    pub routed_org: Option<String>,
    pub actor: String,
    pub at: DateTime<Utc>,
}

/// A stored note.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct NoteRecord {
    pub id: String,
    pub case_id: String,
    pub author: String,
    pub author_role: Role,
    pub author_sphere: Option<Sphere>,
    pub author_organisation: Option<String>,
    pub audience: Audience,
    pub corrects: Option<String>,
    pub body: Vec<u8>,
    pub created_at: DateTime<Utc>,
}

/// A case event (status change).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventRecord {
    pub id: String,
    pub from_status: CaseStatus,
    pub to_status: CaseStatus,
    pub reason: Option<Vec<u8>>,
    pub referrer_message: Option<Vec<u8>>,
    pub actor: String,
    pub at: DateTime<Utc>,
}

/// A decline's message for the referrer (sealed), for the referrer's status view.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ReferrerDecline {
    pub case_id: String,
    pub event_id: String,
    pub referrer_message: Vec<u8>,
}

/// The erasure tombstone left for an erased case.
#[derive(Debug, Clone)]
pub struct Tombstone {
    pub id: String,
    pub erased_by: String,
    pub reason: &'static str,
    pub erased_at: DateTime<Utc>,
}

/// Retention settings of a cellule.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RetentionSettings {
    pub slug: String,
    pub retention_closed_months: i64,
    pub retention_declined_months: i64,
}

/// A cellule's charter.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CharterRecord {
    pub version: i64,
    pub text: String,
    pub created_at: DateTime<Utc>,
}

/// A session of a cellule (planned by its schedule, or ad hoc).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRecord {
    pub id: String,
    pub cellule: String,
    /// The date the schedule's rule produced (before a holiday move); `None` for ad hoc.
    pub occurrence_key: Option<NaiveDate>,
    pub starts_at: DateTime<Utc>,
    /// RFC 3339 with the local offset.
    pub local_start: String,
    pub time_zone: String,
    pub duration_minutes: i64,
    pub location: String,
    /// The holiday the session was moved from (or kept on).
    pub holiday: Option<String>,
    pub status: SessionStatus,
    pub agenda_built_at: Option<DateTime<Utc>>,
    pub published_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// The coordinator opened the meeting.
    pub opened_at: Option<DateTime<Utc>>,
    /// The coordinator closed the meeting.
    pub closed_at: Option<DateTime<Utc>>,
    pub minutes_approved_at: Option<DateTime<Utc>>,
    pub minutes_approved_by: Option<String>,
    /// The day-before reminder was sent.
    pub reminded_at: Option<DateTime<Utc>>,
}

impl SessionRecord {
    /// Where the session stands.
    pub fn stage(&self) -> SessionStage {
        SessionStage::of(
            self.status == SessionStatus::Cancelled,
            self.published_at.is_some(),
            self.opened_at.is_some(),
            self.closed_at.is_some(),
            self.minutes_approved_at.is_some(),
        )
    }
}

/// The deferrals of an agenda build.
#[derive(Debug, Clone, Copy)]
pub struct Deferrals<'a> {
    /// Every case the build deferred.
    pub all: &'a [String],
    /// The eligible cases this session had already deferred when the build read them.
    pub before: &'a [String],
    /// The session's `agenda_built_at` when the build read its cases: if another build or edit
    /// of the agenda came in between, the build is refused (`Conflict`: build again).
    pub read_at: Option<DateTime<Utc>>,
}

impl<'a> Deferrals<'a> {
    /// The cases of `before` no longer deferred, and the newly deferred ones, each in id order:
    /// the order of the deferral tables' keys, so that inserting them walks each page of those
    /// indexes once instead of jumping about (a first build inserts thousands). PostgreSQL
    /// compares with its stored set instead of `before` when the two differ in size.
    pub fn difference(&self) -> (Vec<&'a str>, Vec<&'a str>) {
        fn sorted(ids: &[String]) -> Vec<&str> {
            let mut v: Vec<&str> = ids.iter().map(String::as_str).collect();
            v.sort_unstable();
            v.dedup();
            v
        }
        let (all, before) = (sorted(self.all), sorted(self.before));
        let (mut withdrawn, mut added) = (Vec::new(), Vec::new());
        let (mut a, mut b) = (all.iter().peekable(), before.iter().peekable());
        loop {
            match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if x == y => {
                    a.next();
                    b.next();
                }
                (Some(x), Some(y)) if x < y => added.extend(a.next()),
                (_, Some(_)) => withdrawn.extend(b.next()),
                (Some(_), None) => added.extend(a.next()),
                (None, None) => break,
            }
        }
        (withdrawn, added)
    }
}

/// An agenda item to store.
#[derive(Debug, Clone)]
pub struct NewAgendaItem {
    pub case_id: String,
    pub position: i64,
    pub kind: Kind,
    pub minutes: i64,
    /// The routing proposal, JSON.
    pub proposal: String,
}

/// A change of a published agenda ([`super::ReviewStore::amend_agenda`]).
#[derive(Debug, Clone, Copy)]
pub enum AgendaChange<'a> {
    /// `item` joins the agenda: its case moves to `scheduled` (`scheduled`), its publication
    /// row opens access with the invitation list `invited`, and a deferral of the case by this
    /// session is withdrawn (its count undone: the session does review it).
    Add {
        item: &'a NewAgendaItem,
        invited: &'a str,
        scheduled: &'a Transition,
    },
    /// The case leaves the agenda and its publication row goes; `revert` moves it back to the
    /// status it had before scheduling (`None`: the case is no longer `scheduled`, it stays).
    Withdraw {
        case_id: &'a str,
        revert: Option<&'a Transition>,
    },
    /// Only the positions change.
    Reorder,
}

/// One change of a published agenda, with every item's position after it.
#[derive(Debug, Clone, Copy)]
pub struct AgendaAmendment<'a> {
    pub cellule: &'a str,
    pub session: &'a SessionRecord,
    /// The agenda's cases as the change read them: it is refused when they changed since.
    pub read: &'a [String],
    pub change: AgendaChange<'a>,
    /// (case id, position) of every item once changed.
    pub positions: &'a [(String, i64)],
    pub now: DateTime<Utc>,
}

/// A stored agenda item with the case attributes an agenda shows (no content).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AgendaItemRecord {
    pub case_id: String,
    pub position: i64,
    pub kind: Kind,
    pub minutes: i64,
    pub proposal: String,
    pub reference: String,
    pub status: CaseStatus,
    pub urgency: Urgency,
    pub needs: Needs,
    pub commune: Option<String>,
    pub sector: Option<String>,
    pub times_deferred: i64,
    pub routed_org: Option<String>,
    pub follow_up_date: Option<NaiveDate>,
    pub decision_outcome: Option<Outcome>,
}

/// A case left out of a session's agenda.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeferredRecord {
    pub case_id: String,
    pub reference: String,
    /// As counted (by published agendas): this session's deferral included once it is published.
    pub times_deferred: i64,
}

/// What a session decided for one item (text and actions encrypted).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DecisionRecord {
    pub id: String,
    pub session_id: String,
    pub case_id: String,
    pub outcome: Outcome,
    pub interlocutor: Option<String>,
    pub follow_up_date: Option<NaiveDate>,
    /// The sealed JSON list of [`DecidedAction`](crate::domain::session::DecidedAction)s (a
    /// list of plain strings before owners and due dates existed).
    pub actions: Option<Vec<u8>>,
    pub text: Option<Vec<u8>>,
    /// The message for the referrer, sealed with the case key.
    pub referrer_message: Option<Vec<u8>>,
    pub decided_by: String,
    pub decided_at: DateTime<Utc>,
    /// 1, then one more per correction.
    pub version: i32,
    /// Who may read `text` (like a note's audience).
    pub text_audience: Audience,
    /// The case's routing before the first version: a correction starts again from it.
    pub prior_routed_org: Option<String>,
    pub prior_follow_up_date: Option<NaiveDate>,
    /// The actions' owners and due dates, in order (stored in clear beside the sealed list).
    #[sqlx(skip)]
    pub action_dues: Vec<(String, NaiveDate)>,
}

/// One line of a session's attendance.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AttendanceRecord {
    pub organisation: String,
    /// The membership's subject; empty when the organisation attends as a whole.
    pub participant: String,
    pub status: AttendanceStatus,
    pub recorded_by: String,
    pub recorded_at: DateTime<Utc>,
}

/// A step of a session's meeting, taken only from the stage before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeetingStep {
    Open,
    Close,
    ApproveMinutes,
}

/// Something due: an action of a current decision, or a case's follow-up date.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DueRecord {
    pub case_id: String,
    pub reference: String,
    pub status: CaseStatus,
    /// `action` or `follow_up`.
    pub kind: String,
    /// The owner organisation (an action's) or the routed interlocutor (a follow-up's).
    pub owner: Option<String>,
    pub due_on: NaiveDate,
    /// The decision and the action's position, for an action.
    pub decision_id: Option<String>,
    pub position: Option<i32>,
}

/// What a referrer's status view shows of a case's latest decision: when its session took place,
/// the outcome and interlocutor, and the sealed message the coordinator left for them.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ReferrerDecision {
    pub case_id: String,
    pub decision_id: String,
    pub outcome: Outcome,
    pub interlocutor: Option<String>,
    pub referrer_message: Option<Vec<u8>>,
    /// The session's local start (RFC 3339 with its offset).
    pub session_start: String,
}

/// The facts of one case the yearly statistics count (no content).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StatsCase {
    pub submitted_at: DateTime<Utc>,
    pub needs: Needs,
    pub referring_org: String,
    pub first_review_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
}
