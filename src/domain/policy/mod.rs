//! The policy engine: Cedar policies and schema from `policies/` (or from `policies_dir`),
//! validated in strict mode at start. Every access decision of the service goes through
//! [`Policies::decide`]; an evaluation error is never taken as allow or deny but answered 500.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;

use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicyId,
    PolicySet, Request, RestrictedExpression, Schema, ValidationMode, Validator,
};
use miette::Diagnostic;

const EMBEDDED_SCHEMA: &str = include_str!("../../../policies/schema.cedarschema");
const EMBEDDED_POLICIES: &str = include_str!("../../../policies/default.cedar");
pub const SCHEMA_FILE: &str = "schema.cedarschema";

/// A policy problem found at start, naming the file and line.
#[derive(Debug, thiserror::Error)]
#[error("policy error in {file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct PolicyError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

/// Who asks, as the policies see it.
#[derive(Debug, Clone)]
pub struct Principal {
    pub subject: String,
    pub cellule: String,
    pub role: String,
    pub sphere: String,
    pub organisation: String,
    pub guest: bool,
    pub charter_accepted: bool,
}

/// What is asked about.
#[derive(Debug, Clone)]
pub enum Resource<'a> {
    Cellule(&'a str),
    Case {
        id: &'a str,
        cellule: &'a str,
        status: &'a str,
        referrer: &'a str,
        routed_org: &'a str,
        on_published_agenda: bool,
        /// Organisations invited to the case's published agenda items (guests).
        invited_orgs: Vec<&'a str>,
    },
}

/// The outcome, with the ids of the policies that decided a denial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny { reasons: Vec<String> },
}

impl Verdict {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Verdict::Allow)
    }

    /// Denied only because the charter was not accepted.
    pub fn only_charter(&self) -> bool {
        match self {
            Verdict::Deny { reasons } => {
                !reasons.is_empty()
                    && reasons
                        .iter()
                        .all(|r| r.starts_with("charter-not-accepted"))
            }
            Verdict::Allow => false,
        }
    }
}

/// The loaded, validated policies.
pub struct Policies {
    schema: Schema,
    set: PolicySet,
    authorizer: Authorizer,
    /// The schema's action entities, with their groups (`case_content`), part of every request.
    actions: Entities,
    types: Types,
    source: String,
    /// SHA-256 (hex) over the schema and policy files as loaded ([`Policies::digest`]).
    digest: String,
    /// How many files (schema included) were loaded.
    files: usize,
    /// Decisions already taken (see [`Policies::decide`]).
    memo: Mutex<HashMap<String, Verdict>>,
    /// Some policy names a case: a case's id is part of a remembered decision's key.
    case_ids: bool,
}

/// At most this many decisions are remembered (then forgotten all at once): a few per member,
/// action and kind of case.
const MEMO_CAPACITY: usize = 4096;

/// Appends `s` to a memo key, prefixed by its length so that no two field sequences give the
/// same key.
fn push_field(key: &mut String, s: &str) {
    // Writing into a String cannot fail.
    let _ = write!(key, "{}:", s.len());
    key.push_str(s);
}

/// The memo key of a request: every input of the decision (principal with all its
/// attributes, action, resource with all its attributes, context), each field length-prefixed.
/// A case's id is part of it only when `case_ids` says a policy names a case.
fn memo_key(
    principal: &Principal,
    action: &str,
    resource: &Resource<'_>,
    audience: Option<&str>,
    case_ids: bool,
) -> String {
    let mut key = String::with_capacity(192);
    for s in [
        principal.subject.as_str(),
        principal.cellule.as_str(),
        principal.role.as_str(),
        principal.sphere.as_str(),
        principal.organisation.as_str(),
        action,
        audience.unwrap_or(""),
    ] {
        push_field(&mut key, s);
    }
    key.push(if principal.guest { 'g' } else { '-' });
    key.push(if principal.charter_accepted { 'c' } else { '-' });
    key.push(if audience.is_some() { 'a' } else { '-' });
    match resource {
        Resource::Cellule(slug) => {
            key.push('C');
            push_field(&mut key, slug);
        }
        Resource::Case {
            id,
            cellule,
            status,
            referrer,
            routed_org,
            on_published_agenda,
            invited_orgs,
        } => {
            key.push('K');
            for s in [*cellule, *status, *referrer, *routed_org] {
                push_field(&mut key, s);
            }
            key.push(if *on_published_agenda { 'p' } else { '-' });
            // A set to the policies: the same organisations in another order (the database
            // aggregates them in none) are the same request.
            let mut orgs = invited_orgs.clone();
            orgs.sort_unstable();
            orgs.dedup();
            let _ = write!(key, "{}:", orgs.len());
            for o in orgs {
                push_field(&mut key, o);
            }
            if case_ids {
                push_field(&mut key, id);
            } else {
                key.push('*');
            }
        }
    }
    key
}

/// Whether some policy names a case entity (`resource == Cellule::Case::"…"`, a case literal in
/// a condition, a template linked to a case): then a decision may depend on the case's id, and
/// the id is part of what is remembered. Found in the policies' JSON form, where every entity
/// reference carries its `type`.
fn names_a_case(set: &PolicySet, case: &EntityTypeName) -> Result<bool, String> {
    fn walk(v: &serde_json::Value, case: &str) -> bool {
        match v {
            serde_json::Value::Object(map) => {
                map.get("type").and_then(serde_json::Value::as_str) == Some(case)
                    || map.values().any(|v| walk(v, case))
            }
            serde_json::Value::Array(items) => items.iter().any(|v| walk(v, case)),
            _ => false,
        }
    }
    let json = set
        .clone()
        .to_json()
        .map_err(|e| format!("policies as JSON: {e}"))?;
    Ok(walk(&json, &case.to_string()))
}

/// The entity types the service speaks of, parsed once.
struct Types {
    cellule: EntityTypeName,
    member: EntityTypeName,
    case: EntityTypeName,
    action: EntityTypeName,
}

fn uid(kind: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(kind.clone(), EntityId::new(id))
}

impl std::fmt::Debug for Policies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policies")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset.min(text.len()))
        .map_or(1, |t| t.matches('\n').count() + 1)
}

fn first_offset(diag: &dyn Diagnostic) -> Option<usize> {
    diag.labels()
        .and_then(|mut labels| labels.next())
        .map(|l| l.offset())
}

fn describe(diag: &dyn Diagnostic, fallback: &str) -> String {
    let text = diag.to_string();
    let help = diag.help().map(|h| format!(" ({h})")).unwrap_or_default();
    crate::domain::one_line(&if text.is_empty() {
        fallback.to_owned()
    } else {
        format!("{text}{help}")
    })
}

/// SHA-256 over the loaded files, schema first then the policy files in load order (sorted by
/// name): for each, its file name (without folders, so the same directory hashes the same
/// wherever it is mounted) then its text, each as a u32 big-endian length and UTF-8 bytes.
fn digest(schema_name: &str, schema_text: &str, files: &[(String, String)]) -> String {
    let base = |name: &str| {
        Path::new(name)
            .file_name()
            .map_or_else(|| name.to_owned(), |n| n.to_string_lossy().into_owned())
    };
    let mut bytes = Vec::new();
    for (name, text) in std::iter::once((schema_name, schema_text))
        .chain(files.iter().map(|(n, t)| (n.as_str(), t.as_str())))
    {
        for part in [base(name).as_bytes(), text.as_bytes()] {
            let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
            bytes.extend_from_slice(&len.to_be_bytes());
            bytes.extend_from_slice(part);
        }
    }
    let d = ring::digest::digest(&ring::digest::SHA256, &bytes);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The name the embedded schema is loaded under.
const EMBEDDED_SCHEMA_NAME: &str = "policies/schema.cedarschema";

impl Policies {
    /// SHA-256 (hex) of the schema and policy files in force (see [`digest`]): what the
    /// `load_policies` audit entry of each start records.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// How many files were loaded, the schema included.
    pub fn file_count(&self) -> usize {
        self.files
    }

    /// Whether these are the policies compiled into the binary (no `policies_dir`).
    pub fn is_embedded(&self) -> bool {
        self.source == EMBEDDED_SCHEMA_NAME
    }

    /// The default policies compiled into the binary (the files of `policies/` at build time).
    pub fn embedded() -> Result<Self, PolicyError> {
        Self::build(
            EMBEDDED_SCHEMA_NAME,
            EMBEDDED_SCHEMA,
            vec![(
                "policies/default.cedar".to_owned(),
                EMBEDDED_POLICIES.to_owned(),
            )],
        )
    }

    /// `schema.cedarschema` and every `*.cedar` file of `dir` (not its subfolders).
    pub fn load_dir(dir: &Path) -> Result<Self, PolicyError> {
        let io = |path: &Path, e: std::io::Error| PolicyError {
            file: path.display().to_string(),
            line: None,
            message: e.to_string(),
        };
        let schema_path = dir.join(SCHEMA_FILE);
        let schema = std::fs::read_to_string(&schema_path).map_err(|e| io(&schema_path, e))?;
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| io(dir, e))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "cedar"))
            .collect();
        paths.sort();
        if paths.is_empty() {
            return Err(PolicyError {
                file: dir.display().to_string(),
                line: None,
                message: "no .cedar policy file".into(),
            });
        }
        let mut files = Vec::new();
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
            files.push((path.display().to_string(), text));
        }
        Self::build(&schema_path.display().to_string(), &schema, files)
    }

    fn build(
        schema_name: &str,
        schema_text: &str,
        files: Vec<(String, String)>,
    ) -> Result<Self, PolicyError> {
        let (schema, _warnings) =
            Schema::from_cedarschema_str(schema_text).map_err(|e| PolicyError {
                file: schema_name.to_owned(),
                line: first_offset(&e).map(|o| line_of(schema_text, o)),
                message: describe(&e, "invalid schema"),
            })?;
        let mut set = PolicySet::new();
        let mut origin: HashMap<String, (String, String)> = HashMap::new();
        for (file, text) in &files {
            let parsed = PolicySet::from_str(text).map_err(|e| PolicyError {
                file: file.clone(),
                line: first_offset(&e).map(|o| line_of(text, o)),
                message: describe(&e, "syntax error"),
            })?;
            for (i, policy) in parsed.policies().enumerate() {
                let id = policy
                    .annotation("id")
                    .map_or_else(|| format!("{file}#{i}"), str::to_owned);
                if origin.contains_key(&id) {
                    return Err(PolicyError {
                        file: file.clone(),
                        line: None,
                        message: format!("policy id {id:?} is used twice"),
                    });
                }
                set.add(policy.new_id(PolicyId::new(&id)))
                    .map_err(|e| PolicyError {
                        file: file.clone(),
                        line: None,
                        message: describe(&e, "cannot add policy"),
                    })?;
                origin.insert(id, (file.clone(), text.clone()));
            }
        }
        let result = Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
        if let Some(e) = result.validation_errors().next() {
            let (file, text) = origin
                .get(e.policy_id().to_string().as_str())
                .cloned()
                .unwrap_or_default();
            return Err(PolicyError {
                file,
                line: first_offset(e).map(|o| line_of(&text, o)),
                message: describe(e, "policy does not match the schema"),
            });
        }
        let schema_error = |message: String| PolicyError {
            file: schema_name.to_owned(),
            line: None,
            message,
        };
        let kind = |name: &str| {
            EntityTypeName::from_str(name).map_err(|e| schema_error(format!("{name}: {e}")))
        };
        let types = Types {
            cellule: kind("Cellule::Cellule")?,
            member: kind("Cellule::Member")?,
            case: kind("Cellule::Case")?,
            action: kind("Cellule::Action")?,
        };
        let case_ids = names_a_case(&set, &types.case).map_err(schema_error)?;
        let actions = schema
            .action_entities()
            .map_err(|e| schema_error(describe(&e, "invalid actions")))?;
        let policies = Self {
            schema,
            set,
            authorizer: Authorizer::new(),
            actions,
            types,
            source: schema_name.to_owned(),
            digest: digest(schema_name, schema_text, &files),
            files: files.len() + 1,
            memo: Mutex::new(HashMap::new()),
            case_ids,
        };
        policies.check_entity_shapes().map_err(schema_error)?;
        Ok(policies)
    }

    /// Requests build their entities without the schema; here, once, the entities the service
    /// gives (a member, a cellule, a case of another cellule with invited organisations) are
    /// checked against it, so that a schema describing other attributes is refused at start.
    fn check_entity_shapes(&self) -> Result<(), String> {
        let principal = Principal {
            subject: "check".into(),
            cellule: "check".into(),
            role: "member".into(),
            sphere: "city".into(),
            organisation: "check".into(),
            guest: false,
            charter_accepted: true,
        };
        let case = Resource::Case {
            id: "check",
            cellule: "other",
            status: "accepted",
            referrer: "check",
            routed_org: "check",
            on_published_agenda: true,
            invited_orgs: vec!["check"],
        };
        let (entities, _) = self.request_entities(&principal, &case)?;
        Entities::from_entities(entities, Some(&self.schema)).map_err(|e| {
            // The top-level message only says "does not conform"; its causes say what.
            let mut text = describe(&e, "entity shape");
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                text = format!("{text}: {}", crate::domain::one_line(&c.to_string()));
                cause = c.source();
            }
            format!("the schema does not describe the entities the service gives: {text}")
        })?;
        Ok(())
    }

    /// The entities of one request: the principal's cellule and membership, and the case with
    /// its cellule when the resource is a case (typed values, no JSON on this path).
    fn request_entities(
        &self,
        principal: &Principal,
        resource: &Resource<'_>,
    ) -> Result<(Vec<Entity>, EntityUid), String> {
        let t = &self.types;
        let cellule_uid = |slug: &str| uid(&t.cellule, slug);
        let string = |s: &str| RestrictedExpression::new_string(s.to_owned());
        let entity = |id, attrs: Vec<(&str, RestrictedExpression)>, parents: Vec<EntityUid>| {
            Entity::new(
                id,
                attrs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
                parents.into_iter().collect(),
            )
            .map_err(|e| format!("entity: {e}"))
        };
        let mut entities = vec![
            Entity::new_no_attrs(cellule_uid(&principal.cellule), HashSet::new()),
            entity(
                uid(&t.member, &principal.subject),
                vec![
                    ("role", string(&principal.role)),
                    ("sphere", string(&principal.sphere)),
                    ("organisation", string(&principal.organisation)),
                    ("guest", RestrictedExpression::new_bool(principal.guest)),
                    (
                        "charter_accepted",
                        RestrictedExpression::new_bool(principal.charter_accepted),
                    ),
                    (
                        "cellule",
                        RestrictedExpression::new_entity_uid(cellule_uid(&principal.cellule)),
                    ),
                ],
                Vec::new(),
            )?,
        ];
        let resource_uid = match resource {
            Resource::Cellule(slug) => {
                if *slug != principal.cellule {
                    entities.push(Entity::new_no_attrs(cellule_uid(slug), HashSet::new()));
                }
                cellule_uid(slug)
            }
            Resource::Case {
                id,
                cellule,
                status,
                referrer,
                routed_org,
                on_published_agenda,
                invited_orgs,
            } => {
                if *cellule != principal.cellule {
                    entities.push(Entity::new_no_attrs(cellule_uid(cellule), HashSet::new()));
                }
                let case_uid = uid(&t.case, id);
                entities.push(entity(
                    case_uid.clone(),
                    vec![
                        ("status", string(status)),
                        ("referrer", string(referrer)),
                        ("routed_org", string(routed_org)),
                        (
                            "on_published_agenda",
                            RestrictedExpression::new_bool(*on_published_agenda),
                        ),
                        (
                            "invited_orgs",
                            RestrictedExpression::new_set(invited_orgs.iter().map(|o| string(o))),
                        ),
                    ],
                    vec![cellule_uid(cellule)],
                )?);
                case_uid
            }
        };
        Ok((entities, resource_uid))
    }

    /// Asks the policies. `audience` is the note audience for note actions.
    ///
    /// A decision is a function of its request alone (the policies and schema are fixed once
    /// loaded, and evaluation reads nothing else: no clock, no store). The same few members
    /// ask the same questions about cases in the same few states all day (a read asks
    /// `view_case` then `read_case`, a notes list once per audience), so decisions are
    /// remembered by their whole request: principal with all its attributes, action, resource
    /// with all its attributes, context. A case's id is left out unless a policy names a case:
    /// in Cedar 4.14 (which `Cargo.toml` pins to its minor version) no expression turns an
    /// entity's id into a value a condition could test, so without such a literal two cases
    /// with the same attributes get the same answer. That keeps the memo as useful with
    /// 100,000 cases as with 1,000.
    pub fn decide(
        &self,
        principal: &Principal,
        action: &str,
        resource: &Resource<'_>,
        audience: Option<&str>,
    ) -> Result<Verdict, String> {
        let key = memo_key(principal, action, resource, audience, self.case_ids);
        if let Some(v) = self.memo.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(v);
        }
        let verdict = self.evaluate(principal, action, resource, audience)?;
        if let Ok(mut memo) = self.memo.lock() {
            if memo.len() >= MEMO_CAPACITY {
                memo.clear();
            }
            memo.insert(key, verdict.clone());
        }
        Ok(verdict)
    }

    /// Evaluates the policies for one request.
    fn evaluate(
        &self,
        principal: &Principal,
        action: &str,
        resource: &Resource<'_>,
        audience: Option<&str>,
    ) -> Result<Verdict, String> {
        let (request_entities, resource_uid) = self.request_entities(principal, resource)?;
        // The schema's actions (with their groups) and this request's entities; their shape was
        // checked against the schema at start ([`Policies::build`]).
        let entities = self
            .actions
            .clone()
            .add_entities(request_entities, None)
            .map_err(|e| format!("entities: {e}"))?;
        let action_uid = uid(&self.types.action, action);
        let context = match audience {
            Some(a) => Context::from_pairs([(
                "audience".to_owned(),
                RestrictedExpression::new_string(a.to_owned()),
            )])
            .map_err(|e| format!("context: {e}"))?,
            None => Context::empty(),
        };
        let request = Request::new(
            uid(&self.types.member, &principal.subject),
            action_uid,
            resource_uid,
            context,
            Some(&self.schema),
        )
        .map_err(|e| format!("request: {e}"))?;
        let response = self
            .authorizer
            .is_authorized(&request, &self.set, &entities);
        if let Some(e) = response.diagnostics().errors().next() {
            return Err(format!("policy evaluation error: {e}"));
        }
        Ok(match response.decision() {
            Decision::Allow => Verdict::Allow,
            Decision::Deny => {
                // Sorted: Cedar gives them in no particular order.
                let mut reasons: Vec<String> = response
                    .diagnostics()
                    .reason()
                    .map(|id| id.to_string())
                    .collect();
                reasons.sort_unstable();
                Verdict::Deny { reasons }
            }
        })
    }
}

#[cfg(test)]
mod tests;
