//! Notes: append-only, each with its audience (docs/design.md §6).

use super::*;

/// `POST …/cases/{id}/notes`: append a note (or a correction of one).
pub async fn add_note(
    state: &AppState,
    who: &CelluleMember,
    id: &str,
    req: NoteRequest,
    lease: Option<&Lease>,
) -> Result<NoteView, Error> {
    let a = who.audit();
    let p = access::principal(who);
    let case = authorised_case(
        state,
        &p,
        &a,
        id,
        "write_note",
        Action::WriteNote,
        Some(req.audience),
    )
    .await?;
    let result = add_note_authorised(state, who, &p, &a, &case, req, lease).await;
    refused(state, &a, Action::WriteNote, &case, result).await
}

async fn add_note_authorised(
    state: &AppState,
    who: &CelluleMember,
    p: &Principal,
    a: &AuditCtx,
    case: &CaseRecord,
    req: NoteRequest,
    lease: Option<&Lease>,
) -> Result<NoteView, Error> {
    let m = &who.membership;
    let mut errors = Vec::new();
    text_field("/body", &req.body, MAX_TEXT, &mut errors);
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    if let Some(corrected) = &req.corrects {
        let original = state.db.get_note(&case.id, corrected).await?;
        match original {
            Some(n) if access::readable_audiences(state, p, case)?.contains(&n.audience) => {
                if n.audience != req.audience {
                    return Err(Error::invalid(
                        "/corrects",
                        "a correction keeps the audience of the note it corrects",
                    ));
                }
            }
            _ => return Err(Error::invalid("/corrects", "no such note on this case")),
        }
    }
    guard::check(state, who, &[("body", &req.body)], None).await?;
    let key = case_key(state, case)?;
    let note_id = uuid::Uuid::now_v7().to_string();
    let record = NoteRecord {
        id: note_id.clone(),
        case_id: case.id.clone(),
        author: m.subject.as_str().to_owned(),
        author_role: m.spec.role,
        author_sphere: m.spec.sphere,
        author_organisation: m.spec.organisation.as_ref().map(|o| o.as_str().to_owned()),
        audience: req.audience,
        corrects: req.corrects.clone(),
        body: seal(&key, &case.cellule, &case.id, &note_id, "body", &req.body)?,
        created_at: state.clock.now(),
    };
    let draft = a
        .entry(Action::WriteNote, record.created_at)
        .case(&case.id, Some(&case.reference))
        .target("note", &note_id);
    let view = note_view(&key, case, record.clone())?;
    // The key's answer keeps no text: a replay reads the note again ([`note_again`]).
    let answer = lease
        .map(|l| l.answer(&view, &["body"], Some(&case.id)))
        .transpose()?;
    let head = state
        .db
        .insert_note_answered(&case.cellule, &record, draft, answer.as_ref())
        .await?;
    audit_log::committed(state, &case.cellule, &head).await;
    Ok(view)
}

/// The note `note_id` of case `id` answered again to its author: the replay of an idempotent
/// `POST …/notes`, whose stored answer holds no text. Recorded as a read of the case's notes.
pub async fn note_again(
    state: &AppState,
    who: &CelluleMember,
    id: &str,
    note_id: &str,
) -> Result<NoteView, Error> {
    let a = who.audit();
    let p = access::principal(who);
    let case = authorised_case(state, &p, &a, id, "view_case", Action::ReadNotes, None).await?;
    let readable = access::readable_audiences(state, &p, &case)?;
    let note = state
        .db
        .get_note(&case.id, note_id)
        .await?
        .filter(|n| readable.contains(&n.audience))
        .ok_or(Error::NotFound("note"))?;
    let draft = a
        .entry(Action::ReadNotes, state.clock.now())
        .case(&case.id, Some(&case.reference));
    audit_log::record(state, &a.cellule, vec![draft]).await?;
    note_view(&case_key(state, &case)?, &case, note)
}

fn note_view(key: &DataKey, case: &CaseRecord, n: NoteRecord) -> Result<NoteView, Error> {
    let body = open(key, ctx(case, &n.id, "body"), &n.body)?;
    Ok(NoteView {
        audience: n.audience,
        body: body.as_str().to_owned(),
        id: n.id,
        corrects: n.corrects,
        author: n.author,
        author_role: n.author_role.as_str().to_owned(),
        author_organisation: n.author_organisation,
        created_at: n.created_at,
    })
}

/// `GET …/cases/{id}/notes`: the notes of the audiences the caller may read.
pub async fn notes(
    state: &AppState,
    who: &CelluleMember,
    id: &str,
) -> Result<Vec<NoteView>, Error> {
    let a = who.audit();
    let p = access::principal(who);
    let found = state
        .db
        .get_case(who.slug(), id, access::agenda_since(state.clock.now()))
        .await?;
    let case = authorise(
        state,
        &p,
        &a,
        id,
        found,
        "view_case",
        Action::ReadNotes,
        None,
    )
    .await?;
    let audiences: Vec<&str> = access::readable_audiences(state, &p, &case)?
        .into_iter()
        .map(Audience::as_str)
        .collect();
    let draft = a
        .entry(Action::ReadNotes, state.clock.now())
        .case(&case.id, Some(&case.reference));
    // As for a case read: prepared while the entry commits, given only once it is committed.
    let notes = async {
        let rows = state.db.list_notes(&case.id, &audiences).await?;
        let key = case_key(state, &case)?;
        rows.into_iter()
            .map(|n| note_view(&key, &case, n))
            .collect::<Result<Vec<_>, Error>>()
    };
    let (logged, notes) = tokio::join!(audit_log::record(state, &a.cellule, vec![draft]), notes);
    logged?;
    notes
}
