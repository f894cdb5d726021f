//! Erasure: on request, or by the retention schedule; the case's data key goes with it.

use chrono::SecondsFormat;

use super::*;

/// `DELETE …/cases/{id}`: erase on request.
pub async fn erase(state: &AppState, who: &CelluleMember, id: &str) -> Result<String, Error> {
    let a = who.audit();
    let p = access::principal(who);
    let case = authorised_case(state, &p, &a, id, "erase_case", Action::EraseCase, None).await?;
    let now = state.clock.now();
    let draft = a.entry(Action::EraseCase, now).case(&case.id, None);
    let (reference, head) = erase_record(
        state.db.as_ref(),
        &case.cellule,
        &case.id,
        who.membership.subject.as_str(),
        "request",
        now,
        draft,
    )
    .await?
    .ok_or(Error::NotFound("case"))?;
    audit_log::committed(state, &case.cellule, &head).await;
    Ok(reference)
}

async fn erase_record(
    db: &dyn Database,
    cellule: &str,
    id: &str,
    by: &str,
    reason: &'static str,
    now: DateTime<Utc>,
    draft: audit::Draft,
) -> Result<Option<(String, audit::Head)>, Error> {
    let tomb = Tombstone {
        id: uuid::Uuid::new_v4().to_string(),
        erased_by: by.to_owned(),
        reason,
        erased_at: now,
    };
    Ok(db.erase_case(cellule, id, &tomb, draft).await?)
}

/// Erases every case past its cellule's retention: closed cases `retention_closed_months` after
/// closure (24 by default), declined ones `retention_declined_months` after decline (3).
/// Returns the erased references.
pub async fn run_retention(db: &dyn Database, now: DateTime<Utc>) -> Result<Vec<String>, Error> {
    let mut erased = Vec::new();
    for settings in db.retention_settings().await? {
        let months = |m: i64| Months::new(u32::try_from(m.max(0)).unwrap_or(0));
        let closed_before = now
            .checked_sub_months(months(settings.retention_closed_months))
            .unwrap_or(now);
        let declined_before = now
            .checked_sub_months(months(settings.retention_declined_months))
            .unwrap_or(now);
        // The settings that decide, named in each erasure's entry (identifiers and dates).
        let rule = |status: &str| match status {
            "declined" => serde_json::json!({
                "rule": "declined_cases",
                "retention_months": settings.retention_declined_months,
                "declined_before": declined_before.to_rfc3339_opts(SecondsFormat::Micros, true),
            }),
            _ => serde_json::json!({
                "rule": "closed_cases",
                "retention_months": settings.retention_closed_months,
                "closed_before": closed_before.to_rfc3339_opts(SecondsFormat::Micros, true),
            }),
        };
        for (id, status) in db
            .expired_cases(&settings.slug, closed_before, declined_before)
            .await?
        {
            let draft = AuditCtx {
                cellule: settings.slug.clone(),
                actor: audit::Actor::system("retention"),
                request_id: None,
            }
            .entry(Action::RetentionErase, now)
            .case(&id, None)
            .detail(&rule(&status));
            if let Some((reference, _)) = erase_record(
                db,
                &settings.slug,
                &id,
                "retention",
                "retention",
                now,
                draft,
            )
            .await?
            {
                erased.push(reference);
            }
        }
    }
    Ok(erased)
}
