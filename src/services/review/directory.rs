//! The routing directory: interlocutors and ordered routing rules, edited through the API or
//! imported and exported as TOML.

use super::*;

/// Interlocutors of `GET`/`PUT …/interlocutors`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Interlocutors {
    pub interlocutors: Vec<routing::Interlocutor>,
}

/// Rules of `GET`/`PUT …/routing`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoutingRules {
    pub rules: Vec<routing::Rule>,
}

/// `GET …/interlocutors`.
pub async fn get_interlocutors(
    state: &AppState,
    who: &CelluleMember,
) -> Result<Interlocutors, Error> {
    allowed(state, who, "manage_routing").await?;
    Ok(Interlocutors {
        interlocutors: load_directory(state, slug(who)).await?.interlocutors,
    })
}

/// `PUT …/interlocutors`: replaces the directory's interlocutors (the rules must still hold).
pub async fn put_interlocutors(
    state: &AppState,
    who: &CelluleMember,
    body: Interlocutors,
) -> Result<Interlocutors, Error> {
    allowed(state, who, "manage_routing").await?;
    let mut dir = load_directory(state, slug(who)).await?;
    dir.interlocutors = body.interlocutors;
    let dir = replace_directory(state, who, dir).await?;
    Ok(Interlocutors {
        interlocutors: dir.interlocutors,
    })
}

/// Validates `dir` whole (each problem pointing into the API's documents: `/interlocutors/1/name`,
/// `/rules/0/lead`) and stores it with its one `change_routing` entry.
async fn replace_directory(
    state: &AppState,
    who: &CelluleMember,
    dir: Directory,
) -> Result<Directory, Error> {
    let cellule = slug(who);
    dir.validate().map_err(|errors| {
        Error::Validation(
            errors
                .into_iter()
                .map(|e| {
                    let pointer = if e.pointer.starts_with("/interlocutor") {
                        e.pointer.replacen("/interlocutor", "/interlocutors", 1)
                    } else {
                        e.pointer.replacen("/rule", "/rules", 1)
                    };
                    FieldError::new(pointer, e.detail)
                })
                .collect(),
        )
    })?;
    let head = store_directory(
        state.db.as_ref(),
        cellule,
        &dir,
        state.clock.now(),
        who.audit(),
    )
    .await?;
    audit_log::committed(state, cellule, &head).await;
    Ok(dir)
}

/// `GET …/routing`.
pub async fn get_rules(state: &AppState, who: &CelluleMember) -> Result<RoutingRules, Error> {
    allowed(state, who, "manage_routing").await?;
    Ok(RoutingRules {
        rules: load_directory(state, slug(who)).await?.rules,
    })
}

/// `PUT …/routing`: replaces the ordered rules.
pub async fn put_rules(
    state: &AppState,
    who: &CelluleMember,
    body: RoutingRules,
) -> Result<RoutingRules, Error> {
    allowed(state, who, "manage_routing").await?;
    let mut dir = load_directory(state, slug(who)).await?;
    dir.rules = body.rules;
    let dir = replace_directory(state, who, dir).await?;
    Ok(RoutingRules { rules: dir.rules })
}

/// A whole directory (`GET`/`PUT …/directory`, and the web's *Annuaire* export and import):
/// the documents of `…/interlocutors` and `…/routing` side by side, replaced at once so that an
/// import's rules may name interlocutors the stored directory lacks.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DirectoryDocument {
    pub interlocutors: Vec<routing::Interlocutor>,
    pub rules: Vec<routing::Rule>,
}

/// `GET …/directory`: interlocutors and rules (the policy of `GET …/interlocutors`, no entry).
pub async fn get_directory(
    state: &AppState,
    who: &CelluleMember,
) -> Result<DirectoryDocument, Error> {
    allowed(state, who, "manage_routing").await?;
    let dir = load_directory(state, slug(who)).await?;
    Ok(DirectoryDocument {
        interlocutors: dir.interlocutors,
        rules: dir.rules,
    })
}

/// `PUT …/directory`: replaces interlocutors and rules at once, under the policy of `PUT
/// …/interlocutors` and with its one `change_routing` entry; errors point into the document
/// (`/interlocutors/1/name`, `/rules/0/lead`).
pub async fn put_directory(
    state: &AppState,
    who: &CelluleMember,
    body: DirectoryDocument,
) -> Result<DirectoryDocument, Error> {
    allowed(state, who, "manage_routing").await?;
    let dir = Directory {
        interlocutors: body.interlocutors,
        rules: body.rules,
    };
    let dir = replace_directory(state, who, dir).await?;
    Ok(DirectoryDocument {
        interlocutors: dir.interlocutors,
        rules: dir.rules,
    })
}

/// Replaces a cellule's whole directory (CLI import), recorded as `change_routing` by `by`.
pub async fn import_directory(
    db: &dyn crate::storage::Database,
    by: &crate::services::cellules::Admin,
    cellule: &str,
    dir: &Directory,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    dir.validate().map_err(Error::Validation)?;
    store_directory(db, cellule, dir, now, by.ctx(cellule)).await?;
    Ok(())
}

/// What a `change_routing` entry records (identifiers only: the interlocutors' and rules' ids,
/// never their names, contacts or notes), from the stored directory replaced and the new one as
/// JSON (`null` before: none): the counts before → after, and the ids of the interlocutors and
/// rules added, removed and changed; `reordered` when the rules kept their ids but not their
/// order (the order decides proposals).
pub fn routing_detail(before: &serde_json::Value, after: &serde_json::Value) -> serde_json::Value {
    // The stored document's own field names (`interlocutor`, `rule`: the TOML names).
    let items = |doc: &serde_json::Value, key: &str| -> Vec<(String, serde_json::Value)> {
        doc.get(key)
            .and_then(serde_json::Value::as_array)
            .map(|list| {
                list.iter()
                    .map(|item| {
                        let id = item
                            .get("id")
                            .and_then(serde_json::Value::as_str)
                            .unwrap_or_default()
                            .to_owned();
                        (id, item.clone())
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let diff = |key: &str| {
        let (old, new) = (items(before, key), items(after, key));
        let find = |list: &[(String, serde_json::Value)], id: &str| {
            list.iter().find(|(i, _)| i == id).map(|(_, v)| v.clone())
        };
        let added: Vec<&str> = new
            .iter()
            .filter(|(id, _)| find(&old, id).is_none())
            .map(|(id, _)| id.as_str())
            .collect();
        let removed: Vec<&str> = old
            .iter()
            .filter(|(id, _)| find(&new, id).is_none())
            .map(|(id, _)| id.as_str())
            .collect();
        let changed: Vec<&str> = new
            .iter()
            .filter(|(id, v)| find(&old, id).is_some_and(|o| &o != v))
            .map(|(id, _)| id.as_str())
            .collect();
        let kept_old: Vec<&str> = old
            .iter()
            .map(|(id, _)| id.as_str())
            .filter(|id| find(&new, id).is_some())
            .collect();
        let kept_new: Vec<&str> = new
            .iter()
            .map(|(id, _)| id.as_str())
            .filter(|id| find(&old, id).is_some())
            .collect();
        (
            old.len(),
            new.len(),
            serde_json::json!({
                "added": added,
                "removed": removed,
                "changed": changed,
                "reordered": kept_old != kept_new,
            }),
        )
    };
    let (interlocutors_before, interlocutors_after, interlocutors) = diff("interlocutor");
    let (rules_before, rules_after, rules) = diff("rule");
    serde_json::json!({
        "before": { "interlocutors": interlocutors_before, "rules": rules_before },
        "after": { "interlocutors": interlocutors_after, "rules": rules_after },
        "interlocutors": interlocutors,
        "rules": rules,
    })
}

/// A cellule's directory (CLI export).
pub async fn export_directory(
    db: &dyn crate::storage::Database,
    cellule: &str,
) -> Result<Directory, Error> {
    match db.get_directory(cellule).await? {
        Some(doc) => serde_json::from_str(&doc)
            .map_err(|e| Error::Internal(format!("stored directory does not parse: {e}"))),
        None => Ok(Directory::default()),
    }
}
