//! The identifier guard as the use cases apply it (docs/design.md §5): every free-text field of a
//! request is scanned, in the caller's language, with today's date in France; the cellule's
//! directory contacts (professional phones, mailboxes, addresses) pass; a referral's own identity
//! is looked for in its texts. A refusal is a 422 naming each field, kind and character range
//! with a hint, never the text.

use super::AppState;
use super::access::CelluleMember;
use super::review::directory::export_directory;
use crate::domain::guard::{Guard, Hit, IdentifierKind, IdentityParts};
use crate::error::Error;

/// Scans `fields` (JSON member, text) and refuses the request if one holds a direct identifier.
/// The directory is read only when a first scan finds something: its contacts may be what was
/// found.
pub async fn check(
    state: &AppState,
    who: &CelluleMember,
    fields: &[(&str, &str)],
    identity: Option<&IdentityParts<'_>>,
) -> Result<(), Error> {
    let today = state
        .clock
        .now()
        .with_timezone(&chrono_tz::Europe::Paris)
        .date_naive();
    let guard = Guard::new(today)
        .with_lang(who.caller.lang)
        .with_identity(identity);
    if scan(&guard, fields).is_empty() {
        return Ok(());
    }
    let directory = export_directory(state.db.as_ref(), who.slug()).await?;
    let guard = guard.with_contacts(directory.interlocutors.iter().map(|i| i.contact.as_str()));
    let hits = scan(&guard, fields);
    if hits.is_empty() {
        Ok(())
    } else {
        Err(Error::Identifiers(hits))
    }
}

/// Scans a meeting place: an address is what a place is, so only what identifies a person (a
/// name, a phone, an e-mail, a number…) is refused there.
pub async fn check_place(
    state: &AppState,
    who: &CelluleMember,
    field: &str,
    place: &str,
) -> Result<(), Error> {
    match check(state, who, &[(field, place)], None).await {
        Err(Error::Identifiers(hits)) => {
            let hits: Vec<Hit> = hits
                .into_iter()
                .filter(|h| h.kind != IdentifierKind::Address)
                .collect();
            if hits.is_empty() {
                Ok(())
            } else {
                Err(Error::Identifiers(hits))
            }
        }
        other => other,
    }
}

fn scan(guard: &Guard, fields: &[(&str, &str)]) -> Vec<Hit> {
    fields
        .iter()
        .flat_map(|(field, text)| guard.scan(field, text))
        .collect()
}
