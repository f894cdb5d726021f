//! The rows queries return before they become domain values or records, and their decoding.

use chrono::{DateTime, Utc};

use super::{CaseRead, CaseRecord, CelluleAccess, EventRecord, StorageError};
use crate::domain::case::CaseStatus;
use crate::domain::{
    Cellule, CelluleCode, CelluleName, CelluleSlug, Membership, MembershipSpec, Organisation, Role,
    Sphere, Subject,
};

/// The columns of a cellule row.
macro_rules! cellule_columns {
    () => {
        "slug, name, code, created_at"
    };
}
pub(crate) use cellule_columns;

/// The columns of a membership row.
macro_rules! membership_columns {
    () => {
        "cellule, subject, role, sphere, organisation, guest, created_at, updated_at"
    };
}
pub(crate) use membership_columns;

/// A cellule row.
#[derive(sqlx::FromRow)]
pub(crate) struct CelluleRow {
    pub slug: String,
    pub name: String,
    pub code: String,
    pub created_at: DateTime<Utc>,
}

impl TryFrom<CelluleRow> for Cellule {
    type Error = StorageError;
    fn try_from(r: CelluleRow) -> Result<Self, StorageError> {
        let corrupt = |e: crate::domain::Invalid| StorageError::Corrupt(format!("cellule: {e}"));
        Ok(Cellule {
            slug: CelluleSlug::parse(&r.slug).map_err(corrupt)?,
            name: CelluleName::parse(&r.name).map_err(corrupt)?,
            code: CelluleCode::parse(&r.code).map_err(corrupt)?,
            created_at: r.created_at,
        })
    }
}

/// A membership row.
#[derive(sqlx::FromRow)]
pub(crate) struct MembershipRow {
    pub cellule: String,
    pub subject: String,
    pub role: Role,
    pub sphere: Option<Sphere>,
    pub organisation: Option<String>,
    pub guest: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl TryFrom<MembershipRow> for Membership {
    type Error = StorageError;
    fn try_from(r: MembershipRow) -> Result<Self, StorageError> {
        let corrupt = |e: crate::domain::Invalid| StorageError::Corrupt(format!("membership: {e}"));
        let organisation = r
            .organisation
            .as_deref()
            .map(Organisation::parse)
            .transpose()
            .map_err(corrupt)?;
        let spec = MembershipSpec::new(r.role, r.sphere, organisation, r.guest)
            .map_err(|(_, e)| corrupt(e))?;
        Ok(Membership {
            cellule: CelluleSlug::parse(&r.cellule).map_err(corrupt)?,
            subject: Subject::parse(&r.subject).map_err(corrupt)?,
            spec,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// The columns of [`CelluleAccessRow`], the subject bound at `$2`; the cellule is `c`, the
/// membership `m` (see [`access_join!`]).
macro_rules! access_columns {
    () => {
        "c.slug, c.name, c.code, c.created_at, \
         m.subject, m.role, m.sphere, m.organisation, m.guest, \
         m.created_at AS member_since, m.updated_at AS member_updated_at, \
         EXISTS (SELECT 1 FROM charter_acceptances a \
                 WHERE a.cellule = c.slug AND a.subject = $2 \
                   AND a.version = (SELECT MAX(v.version) FROM charters v \
                                    WHERE v.cellule = c.slug)) AS charter_accepted"
    };
}
pub(crate) use access_columns;

/// The cellule `c` (slug `$1`) and the membership `m` in it of the subject `$2`.
macro_rules! access_join {
    () => {
        "cellules c LEFT JOIN memberships m ON m.cellule = c.slug AND m.subject = $2"
    };
}
pub(crate) use access_join;

/// A cellule with the subject's membership columns (all null without one) and charter flag.
#[derive(sqlx::FromRow)]
pub(crate) struct CelluleAccessRow {
    #[sqlx(flatten)]
    pub cellule: CelluleRow,
    pub subject: Option<String>,
    pub role: Option<Role>,
    pub sphere: Option<Sphere>,
    pub organisation: Option<String>,
    pub guest: Option<bool>,
    pub member_since: Option<DateTime<Utc>>,
    pub member_updated_at: Option<DateTime<Utc>>,
    pub charter_accepted: bool,
}

impl TryFrom<CelluleAccessRow> for CelluleAccess {
    type Error = StorageError;
    fn try_from(r: CelluleAccessRow) -> Result<Self, StorageError> {
        let membership = match (
            r.subject,
            r.role,
            r.guest,
            r.member_since,
            r.member_updated_at,
        ) {
            (Some(subject), Some(role), Some(guest), Some(created_at), Some(updated_at)) => {
                Some(Membership::try_from(MembershipRow {
                    cellule: r.cellule.slug.clone(),
                    subject,
                    role,
                    sphere: r.sphere,
                    organisation: r.organisation,
                    guest,
                    created_at,
                    updated_at,
                })?)
            }
            _ => None,
        };
        Ok(CelluleAccess {
            cellule: Cellule::try_from(r.cellule)?,
            charter_accepted: membership.is_some() && r.charter_accepted,
            membership,
        })
    }
}

/// [`CelluleAccessRow`] with the references of [`super::CaseStore::submit_access`], as a JSON
/// array (`None`: no open case shares the key).
#[derive(sqlx::FromRow)]
pub(crate) struct SubmitAccessRow {
    #[sqlx(flatten)]
    pub access: CelluleAccessRow,
    pub duplicates: Option<String>,
}

impl TryFrom<SubmitAccessRow> for (CelluleAccess, Vec<String>) {
    type Error = StorageError;
    fn try_from(r: SubmitAccessRow) -> Result<Self, StorageError> {
        let duplicates = match r.duplicates.as_deref() {
            Some(j) => serde_json::from_str(j)
                .map_err(|e| StorageError::Corrupt(format!("possible duplicates: {e}")))?,
            None => Vec::new(),
        };
        Ok((CelluleAccess::try_from(r.access)?, duplicates))
    }
}

/// A row joining a membership with its cellule.
#[derive(sqlx::FromRow)]
pub(crate) struct MembershipWithCelluleRow {
    #[sqlx(flatten)]
    pub membership: MembershipRow,
    pub cellule_name: String,
    pub cellule_code: String,
    pub cellule_created_at: DateTime<Utc>,
}

impl TryFrom<MembershipWithCelluleRow> for (Cellule, Membership) {
    type Error = StorageError;
    fn try_from(r: MembershipWithCelluleRow) -> Result<Self, StorageError> {
        let cellule = Cellule::try_from(CelluleRow {
            slug: r.membership.cellule.clone(),
            name: r.cellule_name,
            code: r.cellule_code,
            created_at: r.cellule_created_at,
        })?;
        Ok((cellule, Membership::try_from(r.membership)?))
    }
}

pub(crate) fn collect<R, T>(rows: Vec<R>) -> Result<Vec<T>, StorageError>
where
    T: TryFrom<R, Error = StorageError>,
{
    rows.into_iter().map(T::try_from).collect()
}

/// A case as a read shows it: the case and the two aggregates its view adds, as one row
/// ([`super::CaseStore::case_access`]).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct CaseReadRow {
    #[sqlx(flatten)]
    pub case: CaseRecord,
    /// Its status history, a JSON array (`None`: none).
    pub history: Option<String>,
    /// The open cases of its cellule sharing its linkage key, a JSON array (`None`: none).
    pub duplicates: Option<String>,
}

/// Decodes a row of [`super::CaseStore::case_access`]: the access columns, and the case
/// columns, all null when the case is not found.
pub(crate) fn case_access_row<'r, R>(
    row: &'r R,
) -> Result<(CelluleAccess, Option<CaseRead>), StorageError>
where
    R: sqlx::Row,
    CelluleAccessRow: sqlx::FromRow<'r, R>,
    CaseReadRow: sqlx::FromRow<'r, R>,
    Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    &'static str: sqlx::ColumnIndex<R>,
{
    use sqlx::{Column, FromRow};
    // Columns are decoded by name: a case column named like an access column would shadow it.
    debug_assert!(
        {
            let mut names: Vec<&str> = row.columns().iter().map(|c| c.name()).collect();
            names.sort_unstable();
            names.windows(2).all(|w| w[0] != w[1])
        },
        "a case column has the name of an access column"
    );
    let access = CelluleAccess::try_from(CelluleAccessRow::from_row(row)?)?;
    let found: Option<String> = row.try_get("id")?;
    let case = match found {
        Some(_) => Some(case_read(CaseReadRow::from_row(row)?)?),
        None => None,
    };
    Ok((access, case))
}

/// Decodes the two aggregates of a case read.
fn case_read(row: CaseReadRow) -> Result<CaseRead, StorageError> {
    let corrupt = |e: serde_json::Error| StorageError::Corrupt(format!("case history: {e}"));
    let events: Vec<EventJson> = match row.history.as_deref() {
        Some(j) => serde_json::from_str(j).map_err(corrupt)?,
        None => Vec::new(),
    };
    let status = |s: &str| {
        CaseStatus::parse(s).map_err(|e| StorageError::Corrupt(format!("case history: {e}")))
    };
    let mut history = events
        .into_iter()
        .map(|(id, from_status, to_status, reason, actor, at)| {
            Ok(EventRecord {
                id,
                from_status: status(&from_status)?,
                to_status: status(&to_status)?,
                reason: reason
                    .map(hex::decode)
                    .transpose()
                    .map_err(|e| StorageError::Corrupt(format!("event reason: {e}")))?,
                actor,
                at: json_time(&at)?,
            })
        })
        .collect::<Result<Vec<_>, StorageError>>()?;
    history.sort_by(|a, b| a.at.cmp(&b.at).then_with(|| a.id.cmp(&b.id)));
    let duplicates: Vec<(String, serde_json::Value)> = match row.duplicates.as_deref() {
        Some(j) => serde_json::from_str(j).map_err(corrupt)?,
        None => Vec::new(),
    };
    let mut duplicates = duplicates
        .into_iter()
        .map(|(reference, at)| Ok((json_time(&at)?, reference)))
        .collect::<Result<Vec<_>, StorageError>>()?;
    duplicates.sort();
    Ok(CaseRead {
        case: row.case,
        history,
        duplicates: duplicates.into_iter().map(|(_, r)| r).collect(),
    })
}

/// One event as a case read aggregates it: id, from, to, reason (hex or null), actor, time.
type EventJson = (
    String,
    String,
    String,
    Option<String>,
    String,
    serde_json::Value,
);

/// A time the database put into a JSON aggregate: RFC 3339 text (as sqlx stores it in SQLite)
/// or UTC microseconds (PostgreSQL).
fn json_time(v: &serde_json::Value) -> Result<DateTime<Utc>, StorageError> {
    let bad = || StorageError::Corrupt(format!("time in an aggregate: {v}"));
    match v {
        serde_json::Value::Number(n) => n
            .as_i64()
            .and_then(DateTime::<Utc>::from_timestamp_micros)
            .ok_or_else(bad),
        serde_json::Value::String(s) => DateTime::parse_from_rfc3339(s)
            .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%:z"))
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| bad()),
        _ => Err(bad()),
    }
}

/// Whether two lists name the same cases (order aside).
pub(crate) fn same_cases(a: &[String], b: &[String]) -> bool {
    let mut a: Vec<&str> = a.iter().map(String::as_str).collect();
    let mut b: Vec<&str> = b.iter().map(String::as_str).collect();
    a.sort_unstable();
    b.sort_unstable();
    a == b
}
