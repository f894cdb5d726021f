//! The cellule's charter (charte de confidentialité, docs/design.md §2): a versioned text per cellule that
//! members and coordinators accept before their first access to case content. Referrers and
//! auditors read no case content and sign nothing.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::access::{self, CelluleMember};
use super::{AppState, audit_log};
use crate::audit::Action;
use crate::domain::CelluleSlug;
use crate::error::Error;

/// Longest charter text, in characters.
pub const MAX_CHARTER: usize = 20_000;

/// The cellule's current charter and whether the caller accepted it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CharterView {
    pub version: i64,
    pub text: String,
    pub accepted: bool,
}

/// Body of `POST …/charter/accept`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptCharter {
    /// The version read (must be the current one).
    pub version: i64,
}

/// An acceptance.
#[derive(Debug, Serialize, ToSchema)]
pub struct CharterAccepted {
    pub version: i64,
    pub accepted_at: DateTime<Utc>,
}

/// Body of `PUT /v1/cellules/{cellule}/charter`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutCharter {
    /// 1-20000 characters.
    pub text: String,
}

/// A new charter version.
#[derive(Debug, Serialize, ToSchema)]
pub struct CharterVersion {
    pub version: i64,
}

/// The current charter, as its reader sees it.
pub async fn current(state: &AppState, who: &CelluleMember) -> Result<CharterView, Error> {
    let p = access::principal(who);
    access::cellule_action(state, &p, "read_charter")?;
    let charter = state
        .db
        .current_charter(who.slug())
        .await?
        .ok_or(Error::NotFound("charter"))?;
    let accepted = state
        .db
        .has_accepted_charter(who.slug(), who.caller.subject.as_str(), charter.version)
        .await?;
    Ok(CharterView {
        version: charter.version,
        text: charter.text,
        accepted,
    })
}

/// Whether `who` must still accept the current charter before any case page: the policies say
/// who signs it (members and coordinators), the membership whether it is done.
pub fn pending(state: &AppState, who: &CelluleMember) -> Result<bool, Error> {
    if who.charter_accepted {
        return Ok(false);
    }
    match access::cellule_action(state, &access::principal(who), "accept_charter") {
        Ok(()) | Err(Error::CharterNotAccepted) => Ok(true),
        Err(Error::Forbidden(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Accepts `version`, which must be the current one (members and coordinators).
pub async fn accept(
    state: &AppState,
    who: &CelluleMember,
    body: AcceptCharter,
) -> Result<CharterAccepted, Error> {
    let p = access::principal(who);
    let a = who.audit();
    access::cellule_action_audited(state, &p, &a, "accept_charter", Action::AcceptCharter).await?;
    let slug = who.slug();
    let charter = state
        .db
        .current_charter(slug)
        .await?
        .ok_or(Error::NotFound("charter"))?;
    if charter.version != body.version {
        return Err(Error::Conflict(format!(
            "The current charter is version {}; read it and accept that version.",
            charter.version
        )));
    }
    let now = state.clock.now();
    let draft = a
        .entry(Action::AcceptCharter, now)
        .target("charter", &charter.version.to_string());
    let head = state
        .db
        .accept_charter(
            slug,
            who.caller.subject.as_str(),
            charter.version,
            now,
            draft,
        )
        .await?;
    audit_log::committed(state, slug, &head).await;
    Ok(CharterAccepted {
        version: charter.version,
        accepted_at: now,
    })
}

/// The current charter of an existing cellule, for its administrators (who publish the next
/// version; they are never members, so [`current`] is not theirs).
pub async fn current_text(state: &AppState, cellule: &CelluleSlug) -> Result<(i64, String), Error> {
    let charter = state
        .db
        .current_charter(cellule.as_str())
        .await?
        .ok_or(Error::NotFound("charter"))?;
    Ok((charter.version, charter.text))
}

/// Publishes a new charter version of an existing cellule (administrators): members and
/// coordinators must accept it again.
///
/// Recorded as `change_charter` naming `by`, with the versions and the new text's SHA-256
/// (never the text), in the same transaction.
pub async fn publish(
    state: &AppState,
    by: &super::cellules::Admin,
    cellule: &CelluleSlug,
    body: PutCharter,
) -> Result<CharterVersion, Error> {
    let text = body.text.trim();
    let len = text.chars().count();
    if len == 0 || len > MAX_CHARTER {
        return Err(Error::invalid("/text", "must be 1-20000 characters"));
    }
    let now = state.clock.now();
    let ctx = by.ctx(cellule.as_str());
    let sha256 = super::cellules::sha256_hex(text);
    let entry = move |version: i64| {
        ctx.entry(Action::ChangeCharter, now)
            .target("charter", &version.to_string())
            .detail(&serde_json::json!({
                "before": (version > 1).then(|| serde_json::json!({ "version": version - 1 })),
                "after": { "version": version, "sha256": sha256 },
            }))
    };
    let (version, head) = state
        .db
        .add_charter(cellule.as_str(), text, now, Box::new(entry))
        .await?;
    audit_log::committed(state, cellule.as_str(), &head).await;
    Ok(CharterVersion { version })
}
