//! The rows queries return before they become domain values or records, and their decoding.

use chrono::{DateTime, Utc};

use super::{CelluleAccess, StorageError};
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

/// Whether two lists name the same cases (order aside).
pub(crate) fn same_cases(a: &[String], b: &[String]) -> bool {
    let mut a: Vec<&str> = a.iter().map(String::as_str).collect();
    let mut b: Vec<&str> = b.iter().map(String::as_str).collect();
    a.sort_unstable();
    b.sort_unstable();
    a == b
}
