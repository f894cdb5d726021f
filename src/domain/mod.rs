//! Domain types: validated newtypes for what the service stores and checks.
//!
//! Every value that comes from outside (API body, CLI argument, database row) is parsed into one
//! of these before use, so a handler never sees an unchecked slug, role or subject.

pub mod case;
pub mod cellule;
pub mod membership;

pub use cellule::{Cellule, CelluleCode, CelluleName, CelluleSlug, NewCellule};
pub use membership::{Membership, MembershipSpec, Organisation, Role, Sphere, Subject};

/// A value that failed validation, with a message that never echoes the rejected input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

pub(crate) fn invalid<T>(message: impl Into<String>) -> Result<T, Invalid> {
    Err(Invalid(message.into()))
}
