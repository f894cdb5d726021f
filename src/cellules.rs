//! Managing cellules and memberships: the rules shared by the admin API and the CLI.

use crate::clock::Clock;
use crate::domain::{
    Cellule, CelluleCode, CelluleName, CelluleSlug, Membership, MembershipSpec, NewCellule, Subject,
};
use crate::error::ApiError;
use crate::storage::{Database, StorageError};

/// The first version of every cellule's charter; a deployment replaces it with its own text
/// (`PUT /v1/cellules/{c}/charter`).
pub const DEFAULT_CHARTER: &str = "Charte de confidentialité de la cellule cas complexes. Les informations partagées \
relèvent du secret partagé : seules les informations strictement nécessaires à la coordination sont \
échangées, les données médicales restent entre professionnels de santé, aucune information n'est \
transmise hors de la cellule sans l'accord de la personne, et chaque accès est tracé.";

/// Creates a cellule; the code defaults to the slug's first three letters.
pub async fn create(
    db: &dyn Database,
    clock: &dyn Clock,
    slug: CelluleSlug,
    name: CelluleName,
    code: Option<CelluleCode>,
) -> Result<Cellule, ApiError> {
    let code = match code {
        Some(code) => code,
        None => slug.default_code().map_err(|_| {
            ApiError::invalid(
                "/code",
                "the slug has fewer than two letters to derive a code from; give a code (2-6 letters A-Z)",
            )
        })?,
    };
    let new = NewCellule {
        slug,
        name,
        code,
        charter: DEFAULT_CHARTER.to_owned(),
    };
    db.create_cellule(&new, clock.now())
        .await
        .map_err(|e| match e {
            StorageError::Conflict(_) => {
                ApiError::Conflict("A cellule with this slug or code already exists.".into())
            }
            other => other.into(),
        })
}

/// Creates or replaces a membership. Administrators cannot be members (separation of duties:
/// whoever grants access never reads case content).
pub async fn put_member(
    db: &dyn Database,
    clock: &dyn Clock,
    admins: &std::collections::HashSet<String>,
    cellule: &CelluleSlug,
    subject: &Subject,
    spec: &MembershipSpec,
) -> Result<(Membership, bool), ApiError> {
    if admins.contains(subject.as_str()) {
        return Err(ApiError::invalid(
            "/sub",
            "an administrator cannot hold a membership; use a separate subject",
        ));
    }
    db.put_membership(cellule, subject, spec, clock.now())
        .await
        .map_err(|e| match e {
            StorageError::NotFound(_) => ApiError::NotFound("cellule"),
            other => other.into(),
        })
}
