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
    let cellule = slug(who);
    let mut dir = load_directory(state, cellule).await?;
    dir.interlocutors = body.interlocutors;
    dir.validate().map_err(|errors| {
        Error::Validation(
            errors
                .into_iter()
                .map(|e| {
                    FieldError::new(
                        e.pointer.replacen("/interlocutor", "/interlocutors", 1),
                        e.detail,
                    )
                })
                .collect(),
        )
    })?;
    store_directory(state.db.as_ref(), cellule, &dir, state.clock.now()).await?;
    Ok(Interlocutors {
        interlocutors: dir.interlocutors,
    })
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
    let cellule = slug(who);
    let mut dir = load_directory(state, cellule).await?;
    dir.rules = body.rules;
    dir.validate().map_err(|errors| {
        Error::Validation(
            errors
                .into_iter()
                .map(|e| FieldError::new(e.pointer.replacen("/rule", "/rules", 1), e.detail))
                .collect(),
        )
    })?;
    store_directory(state.db.as_ref(), cellule, &dir, state.clock.now()).await?;
    Ok(RoutingRules { rules: dir.rules })
}

/// Replaces a cellule's whole directory (CLI import).
pub async fn import_directory(
    db: &dyn crate::storage::Database,
    cellule: &str,
    dir: &Directory,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    dir.validate().map_err(Error::Validation)?;
    store_directory(db, cellule, dir, now).await
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
