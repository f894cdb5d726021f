//! Deployment administration: cellules, memberships and retention (administrators only; the
//! rules of creation shared with the CLI). Nothing here returns case content.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::access::Caller;
use super::{AppState, audit_log};
use crate::audit::{Action, Actor, AuditCtx, Head};
use crate::clock::Clock;
use crate::domain::{
    Cellule, CelluleCode, CelluleName, CelluleSlug, Membership, MembershipSpec, NewCellule,
    Organisation, Role, Sphere, Subject,
};
use crate::error::Error;
use crate::storage::{Database, MembershipChange, StorageError};

/// Who administers: the actor the audit entries of administration name, and the request they
/// belong to (docs/audit.md, "Administrative entries").
#[derive(Debug, Clone)]
pub struct Admin {
    pub actor: Actor,
    pub request_id: Option<String>,
}

impl Admin {
    /// A signed-in administrator (API or web pages): their subject, role `administrator`.
    pub fn of(caller: &Caller) -> Self {
        Admin {
            actor: Actor::administrator(caller.subject.as_str()),
            request_id: caller.request_id.clone(),
        }
    }

    /// An operator at the command line: `system:cli:<os user>`.
    pub fn cli() -> Self {
        Admin {
            actor: Actor::cli(),
            request_id: None,
        }
    }

    /// The audit context of an entry in `cellule`'s chain.
    pub fn ctx(&self, cellule: &str) -> AuditCtx {
        self.actor.in_cellule(cellule, self.request_id.as_deref())
    }
}

/// A membership's identifiers as an administrative entry shows them.
fn membership_detail(m: &Membership) -> Value {
    json!({
        "role": m.spec.role.as_str(),
        "sphere": m.spec.sphere.map(Sphere::as_str),
        "organisation": m.spec.organisation.as_ref().map(Organisation::as_str),
        "guest": m.spec.guest,
    })
}

/// Hex SHA-256 of a text (a charter version is recorded by its hash, never its text).
pub fn sha256_hex(text: &str) -> String {
    crate::audit::hex(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()).as_ref())
}

/// Body of `POST /v1/cellules`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCellule {
    pub slug: CelluleSlug,
    pub name: CelluleName,
    /// Reference code (`PER` in `PER-2026-0042`); defaults to the slug's first three letters.
    #[serde(default)]
    pub code: Option<CelluleCode>,
}

/// Body of `PUT /v1/cellules/{cellule}/members/{sub}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutMember {
    pub role: Role,
    /// Required for `member` and `coordinator`, refused for `auditor`.
    #[serde(default)]
    pub sphere: Option<Sphere>,
    /// Required for `member`, `coordinator` and `referrer`.
    #[serde(default)]
    pub organisation: Option<Organisation>,
    /// Only for `member`: an organisation invited case by case.
    #[serde(default)]
    pub guest: bool,
}

/// Retention of a cellule's cases (docs/design.md §4).
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Months after closure before a closed case is erased (1-120, default 24).
    pub closed_months: i64,
    /// Months after decline before a declined case is erased (1-120, default 3).
    pub declined_months: i64,
}

/// The slug of a cellule that exists (`raw` as given in a path); 404 otherwise.
pub async fn existing(state: &AppState, raw: &str) -> Result<CelluleSlug, Error> {
    let slug = CelluleSlug::parse(raw).map_err(|_| Error::NotFound("cellule"))?;
    match state.db.get_cellule(&slug).await? {
        Some(_) => Ok(slug),
        None => Err(Error::NotFound("cellule")),
    }
}

/// Every cellule of the deployment, by slug.
pub async fn list(state: &AppState) -> Result<Vec<Cellule>, Error> {
    Ok(state.db.list_cellules().await?)
}

/// The memberships of a cellule, by subject.
pub async fn members(state: &AppState, cellule: &str) -> Result<Vec<Membership>, Error> {
    let slug = existing(state, cellule).await?;
    Ok(state.db.list_members(&slug).await?)
}

/// Creates or replaces a membership from its API form; the flag tells whether it was created.
pub async fn grant(
    state: &AppState,
    by: &Admin,
    cellule: &str,
    subject: &str,
    body: PutMember,
) -> Result<(Membership, bool), Error> {
    let slug = CelluleSlug::parse(cellule).map_err(|_| Error::NotFound("cellule"))?;
    let subject = Subject::parse(subject).map_err(|e| Error::invalid("/sub", e.to_string()))?;
    let spec = MembershipSpec::new(body.role, body.sphere, body.organisation, body.guest)
        .map_err(|(field, e)| Error::invalid(format!("/{field}"), e.to_string()))?;
    let (membership, created, head) = put_member(
        state.db.as_ref(),
        state.clock.as_ref(),
        &state.admins,
        by,
        &slug,
        &subject,
        &spec,
    )
    .await?;
    audit_log::committed(state, slug.as_str(), &head).await;
    Ok((membership, created))
}

/// Removes a membership: the person loses access at once.
pub async fn revoke(
    state: &AppState,
    by: &Admin,
    cellule: &str,
    subject: &str,
) -> Result<(), Error> {
    let slug = existing(state, cellule).await?;
    let subject = Subject::parse(subject).map_err(|_| Error::NotFound("membership"))?;
    let head = remove_member(state.db.as_ref(), state.clock.as_ref(), by, &slug, &subject)
        .await?
        .ok_or(Error::NotFound("membership"))?;
    audit_log::committed(state, slug.as_str(), &head).await;
    Ok(())
}

/// Removes a membership with its `revoke_membership` entry; `None` when there was none.
pub async fn remove_member(
    db: &dyn Database,
    clock: &dyn Clock,
    by: &Admin,
    cellule: &CelluleSlug,
    subject: &Subject,
) -> Result<Option<Head>, Error> {
    let draft = by
        .ctx(cellule.as_str())
        .entry(Action::RevokeMembership, clock.now())
        .target("membership", subject.as_str());
    Ok(db
        .delete_membership(
            cellule,
            subject,
            Box::new(move |removed| {
                draft.detail(&json!({
                    "before": membership_detail(&removed),
                    "after": null,
                }))
            }),
        )
        .await?)
}

/// Sets how long closed and declined cases are kept.
pub async fn set_retention(
    state: &AppState,
    by: &Admin,
    cellule: &str,
    body: Retention,
) -> Result<Retention, Error> {
    let slug = existing(state, cellule).await?;
    for (pointer, value) in [
        ("/closed_months", body.closed_months),
        ("/declined_months", body.declined_months),
    ] {
        if !(1..=120).contains(&value) {
            return Err(Error::invalid(pointer, "must be between 1 and 120 months"));
        }
    }
    let after = json!({
        "closed_months": body.closed_months,
        "declined_months": body.declined_months,
    });
    let draft = by
        .ctx(slug.as_str())
        .entry(Action::ChangeRetention, state.clock.now())
        .target("cellule", slug.as_str());
    let head = state
        .db
        .set_retention(
            slug.as_str(),
            body.closed_months,
            body.declined_months,
            Box::new(move |before| {
                draft.detail(&json!({
                    "before": {
                        "closed_months": before.retention_closed_months,
                        "declined_months": before.retention_declined_months,
                    },
                    "after": after,
                }))
            }),
        )
        .await?
        .ok_or(Error::NotFound("cellule"))?;
    audit_log::committed(state, slug.as_str(), &head).await;
    Ok(body)
}

/// How long a cellule's closed and declined cases are kept.
pub async fn retention(state: &AppState, cellule: &str) -> Result<Retention, Error> {
    let slug = existing(state, cellule).await?;
    let all = state.db.retention_settings().await?;
    let mine = all
        .into_iter()
        .find(|r| r.slug == slug.as_str())
        .ok_or(Error::NotFound("cellule"))?;
    Ok(Retention {
        closed_months: mine.retention_closed_months,
        declined_months: mine.retention_declined_months,
    })
}

/// The memberships of one subject with their cellules, by cellule (administrators hold none).
pub async fn memberships_of(
    state: &AppState,
    subject: &Subject,
) -> Result<Vec<(Cellule, Membership)>, Error> {
    if state.is_admin(subject.as_str()) {
        return Ok(Vec::new());
    }
    Ok(state.db.memberships_of(subject).await?)
}

/// The first version of every cellule's charter; a deployment replaces it with its own text
/// (`PUT /v1/cellules/{c}/charter`).
pub const DEFAULT_CHARTER: &str = "Charte de confidentialité de la cellule cas complexes. Les informations partagées \
relèvent du secret partagé : seules les informations strictement nécessaires à la coordination sont \
échangées, les données médicales restent entre professionnels de santé, aucune information n'est \
transmise hors de la cellule sans l'accord de la personne, et chaque accès est tracé.";

/// Creates a cellule, with the `create_cellule` entry that opens its chain; the code defaults to
/// the slug's first three letters.
pub async fn create(
    db: &dyn Database,
    clock: &dyn Clock,
    by: &Admin,
    slug: CelluleSlug,
    name: CelluleName,
    code: Option<CelluleCode>,
) -> Result<Cellule, Error> {
    let code = match code {
        Some(code) => code,
        None => slug.default_code().map_err(|_| {
            Error::invalid(
                "/code",
                "the slug has fewer than two letters to derive a code from; give a code (2-6 letters A-Z)",
            )
        })?,
    };
    let now = clock.now();
    let draft = by
        .ctx(slug.as_str())
        .entry(Action::CreateCellule, now)
        .target("cellule", slug.as_str())
        .detail(&json!({
            "before": null,
            "after": {
                "slug": slug.as_str(),
                "code": code.as_str(),
                "charter": { "version": 1, "sha256": sha256_hex(DEFAULT_CHARTER) },
            },
        }));
    let new = NewCellule {
        slug,
        name,
        code,
        charter: DEFAULT_CHARTER.to_owned(),
    };
    db.create_cellule(&new, now, draft)
        .await
        .map(|(cellule, _)| cellule)
        .map_err(|e| match e {
            StorageError::Conflict(_) => {
                Error::Conflict("A cellule with this slug or code already exists.".into())
            }
            other => other.into(),
        })
}

/// Creates or replaces a membership. Administrators cannot be members (separation of duties:
/// whoever grants access never reads case content).
/// The change is recorded (`grant_membership` or `change_membership`, naming `by`) in the same
/// transaction; the flag tells whether the membership was created.
pub async fn put_member(
    db: &dyn Database,
    clock: &dyn Clock,
    admins: &std::collections::HashSet<String>,
    by: &Admin,
    cellule: &CelluleSlug,
    subject: &Subject,
    spec: &MembershipSpec,
) -> Result<(Membership, bool, Head), Error> {
    if admins.contains(subject.as_str()) {
        return Err(Error::invalid(
            "/sub",
            "an administrator cannot hold a membership; use a separate subject",
        ));
    }
    let ctx = by.ctx(cellule.as_str());
    let now = clock.now();
    let target = subject.as_str().to_owned();
    let entry = move |change: MembershipChange| {
        let action = match change.before {
            None => Action::GrantMembership,
            Some(_) => Action::ChangeMembership,
        };
        ctx.entry(action, now)
            .target("membership", &target)
            .detail(&json!({
                "before": change.before.as_ref().map(membership_detail),
                "after": membership_detail(&change.after),
            }))
    };
    let (change, head) = db
        .put_membership(cellule, subject, spec, now, Box::new(entry))
        .await
        .map_err(|e| match e {
            StorageError::NotFound(_) => Error::NotFound("cellule"),
            other => other.into(),
        })?;
    let created = change.before.is_none();
    Ok((change.after, created, head))
}

/// The organisations of a cellule, read once: its routing directory's interlocutors and its
/// members' organisations. Fields that name an organisation take only these, never free text (a
/// name typed there could be a person's; a typo would send a case nowhere).
pub struct KnownOrganisations {
    directory: crate::domain::routing::Directory,
    members: Vec<String>,
}

impl KnownOrganisations {
    pub async fn load(state: &AppState, who: &super::access::CelluleMember) -> Result<Self, Error> {
        let directory =
            super::review::directory::export_directory(state.db.as_ref(), who.slug()).await?;
        let members = state
            .db
            .list_members(&who.cellule.slug)
            .await?
            .into_iter()
            .filter_map(|m| m.spec.organisation.map(|o| o.as_str().to_owned()))
            .collect();
        Ok(KnownOrganisations { directory, members })
    }

    /// Whether `name` is exactly the name of one of them.
    pub fn has_name(&self, name: &str) -> bool {
        self.directory.interlocutors.iter().any(|i| i.name == name)
            || self.members.iter().any(|m| m == name)
    }

    /// The organisation `key` names: a directory interlocutor by id or name, or a member's
    /// organisation by name; its name, as stored.
    pub fn resolve(&self, key: &str) -> Option<String> {
        let key = key.trim();
        if let Some(i) = self.directory.interlocutor_by_id_or_name(key) {
            return Some(i.name.clone());
        }
        self.members.iter().find(|m| m.as_str() == key).cloned()
    }
}

/// Whether `name` is an organisation of the cellule `who` entered: their own, or one of
/// [`KnownOrganisations`].
pub async fn is_known_organisation(
    state: &AppState,
    who: &super::access::CelluleMember,
    name: &Organisation,
) -> Result<bool, Error> {
    if who.membership.spec.organisation.as_ref() == Some(name) {
        return Ok(true);
    }
    Ok(KnownOrganisations::load(state, who)
        .await?
        .has_name(name.as_str()))
}
