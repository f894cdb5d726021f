//! What the pages ask before offering or refusing a form: the case a searched reference names,
//! the case actions the policies allow (to offer only the forms that may succeed), and an
//! action's authorisation before a form is refused for what was typed in it.

use super::*;

/// The reference of the case `reference` names, for the search of the case list: only someone
/// who may list cases asks, and a case they may not see answers 404 exactly as a missing one.
/// Shows the reference only, so it is recorded as the list is (one `list_cases` entry naming the
/// case); a refusal is recorded as a denied entry.
pub async fn find(state: &AppState, who: &CelluleMember, reference: &str) -> Result<String, Error> {
    let a = who.audit();
    let p = access::principal(who);
    access::cellule_action_audited(state, &p, &a, "list_cases", Action::ListCases).await?;
    let found = state
        .db
        .get_case(
            who.slug(),
            reference,
            access::agenda_since(state.clock.now()),
        )
        .await?
        // By its reference only: an id is no reference.
        .filter(|c| c.reference == reference);
    let case = authorise(
        state,
        &p,
        &a,
        reference,
        found,
        "view_case",
        Action::ListCases,
        None,
    )
    .await?;
    log_list(
        state,
        &a,
        Action::ListCases,
        &[(case.id.as_str(), case.reference.as_str())],
    )
    .await?;
    Ok(case.reference)
}

/// Which of `actions` (case actions of the policies: `transition_case`, `erase_case`…) the
/// policies allow `who` on the case `id`, to offer only the forms that may succeed (the use case
/// decides again). Nothing is done nor shown: nothing is recorded. A case not visible allows
/// nothing.
pub async fn allowed_actions(
    state: &AppState,
    who: &CelluleMember,
    id: &str,
    actions: &[&'static str],
) -> Result<Vec<&'static str>, Error> {
    let p = access::principal(who);
    let Some(case) = state
        .db
        .get_case(who.slug(), id, access::agenda_since(state.clock.now()))
        .await?
    else {
        return Ok(Vec::new());
    };
    let mut allowed = Vec::new();
    for action in actions {
        match access::case_action(state, &p, &case, action, None) {
            Ok(()) => allowed.push(*action),
            Err(Error::NotFound(_) | Error::Forbidden(_) | Error::CharterNotAccepted) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(allowed)
}

/// Asks the policies for `action` on the case `id` before a form is refused for what was typed
/// in it, so that whoever may not act gets the answer (404 or 403) and the denied entry the use
/// case would have given. Allowed: nothing is recorded (nothing was done).
pub async fn check_action(
    state: &AppState,
    who: &CelluleMember,
    id: &str,
    action: &str,
    audited: Action,
) -> Result<(), Error> {
    let a = who.audit();
    let p = access::principal(who);
    authorised_case(state, &p, &a, id, action, audited, None)
        .await
        .map(|_| ())
}
