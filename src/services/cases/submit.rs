//! Intake: a referral with consent and the identifier guard becomes a `submitted` case.

use super::*;

/// `POST …/referrals`.
pub async fn submit(
    state: &AppState,
    who: &CelluleMember,
    req: ReferralRequest,
    lease: Option<&Lease>,
) -> Result<ReferralCreated, Error> {
    let m = &who.membership;
    let a = who.audit();
    let p = access::principal(who);
    access::cellule_action_audited(state, &p, &a, "submit_referral", Action::SubmitReferral)
        .await?;
    let mut errors = Vec::new();
    if req.commune.is_none() && req.sector.is_none() {
        errors.push(FieldError::new(
            "/commune",
            "give a commune, a sector, or both",
        ));
    }
    if req.needs.is_empty() {
        errors.push(FieldError::new("/needs", "at least one need is required"));
    }
    let needs = Needs::new(req.needs.clone()).unwrap_or_default();
    if needs.as_slice().len() != req.needs.len() {
        errors.push(FieldError::new("/needs", "needs must not repeat"));
    }
    match req.consent.status {
        ConsentStatus::Objected => errors.push(FieldError::new(
            "/consent/status",
            "the person objected: an objection blocks all sharing, the referral cannot be recorded",
        )),
        ConsentStatus::NotInformed => match &req.consent.justification {
            Some(j) => text_field("/consent/justification", j, MAX_SHORT_TEXT, &mut errors),
            None => errors.push(FieldError::new(
                "/consent/justification",
                "required when the person was not informed",
            )),
        },
        ConsentStatus::Agreed | ConsentStatus::Informed => {
            if let Some(j) = &req.consent.justification {
                text_field("/consent/justification", j, MAX_SHORT_TEXT, &mut errors);
            }
        }
    }
    text_field("/situation", &req.situation, MAX_TEXT, &mut errors);
    if let Some(e) = &req.expectations {
        text_field("/expectations", e, MAX_SHORT_TEXT, &mut errors);
    }
    let referring_org = match (&req.referring_org, &m.spec.organisation) {
        (Some(org), _) | (None, Some(org)) => org.clone(),
        (None, None) => {
            errors.push(FieldError::new("/referring_org", "required"));
            Organisation::parse("-").map_err(|e| Error::Internal(e.to_string()))?
        }
    };
    if req.referring_org.is_some()
        && !cellules::is_known_organisation(state, who, &referring_org).await?
    {
        errors.push(FieldError::new(
            "/referring_org",
            "not an organisation of this cellule: name your own organisation, one of the routing directory or of a member",
        ));
    }
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    let mut texts = vec![("situation", req.situation.as_str())];
    if let Some(e) = &req.expectations {
        texts.push(("expectations", e));
    }
    if let Some(j) = &req.consent.justification {
        texts.push(("consent.justification", j));
    }
    let identity = req.identity.as_ref().map(|i| i.parts());
    guard::check(state, who, &texts, identity.as_ref()).await?;

    let cellule = m.cellule.as_str();
    let (linkage_key, possible_duplicates) = match &req.identity {
        None => (None, Vec::new()),
        Some(identity) => {
            let secret = state
                .keys
                .linkage_secret(state.db.as_ref(), cellule)
                .await
                .map_err(|e| match e {
                    crate::services::keys::KeyError::Storage(s) => Error::from(s),
                    other => integrity(other.to_string()),
                })?;
            let key = identity
                .linkage_key(&secret)
                .map_err(|e| Error::invalid(format!("/identity/{}", e.field), e.message))?;
            // Only the coordinator is told (and only then looked for): anyone else's answer is
            // the same whether or not the person already has an open case.
            let found = if access::sees_duplicates(state, &p) {
                state.db.open_cases_with_linkage(cellule, &key).await?
            } else {
                Vec::new()
            };
            (Some(key), found)
        }
    };
    // The identity is not needed any more: drop it (its fields are wiped on drop).
    let ReferralRequest {
        situation,
        expectations,
        consent,
        identity,
        ..
    } = req;
    drop(identity);

    // Time-ordered (UUIDv7): a new case's rows go at the end of the indexes keyed by case id
    // (case, data key, audit entries by case) instead of into a random page of each, which the
    // commit would write and the WAL copy back. It shows the millisecond it was made (the
    // system clock's, about the case's `submitted_at`, which is shown wherever the case is).
    let id = uuid::Uuid::now_v7().to_string();
    let (key, wrapped) = state
        .keys
        .new_case_key(cellule, &id)
        .map_err(|e| Error::Internal(format!("key generation: {e}")))?;
    let now = state.clock.now();
    let new = NewCase {
        id: id.clone(),
        cellule: cellule.to_owned(),
        code: who.cellule.code.as_str().to_owned(),
        year: crate::domain::case::reference_year(now),
        urgency: req.urgency,
        age_band: req.age_band,
        gender: req.gender,
        commune: req.commune.as_ref().map(|c| c.as_str().to_owned()),
        sector: req.sector.as_ref().map(|s| s.as_str().to_owned()),
        needs,
        consent_status: consent.status,
        consent_justification: consent
            .justification
            .as_deref()
            .map(|j| seal(&key, cellule, &id, &id, "consent_justification", j))
            .transpose()?,
        referring_org: referring_org.as_str().to_owned(),
        referrer: m.subject.as_str().to_owned(),
        linkage_key,
        situation: seal(&key, cellule, &id, &id, "situation", &situation)?,
        expectations: expectations
            .as_deref()
            .map(|e| seal(&key, cellule, &id, &id, "expectations", e))
            .transpose()?,
        submitted_at: now,
    };
    let draft = a.entry(Action::SubmitReferral, now).case(&id, None);
    let mut created = ReferralCreated {
        id,
        // Allocated by the transaction that inserts the case (also into the key's answer).
        reference: String::new(),
        status: CaseStatus::Submitted,
        possible_duplicates,
    };
    let answer = lease
        .map(|l| l.answer(&created, &[], Some(&created.id)))
        .transpose()?;
    // Group-committed with the other submissions and reads of the moment (same transaction as
    // its entry and its idempotency key's answer; answered once committed).
    created.reference = state
        .audit
        .insert_case_answered(new, wrapped, draft, answer)
        .await?;
    Ok(created)
}
