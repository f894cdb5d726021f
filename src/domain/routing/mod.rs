//! Routing (docs/design.md §10): the cellule's directory of interlocutors and its ordered routing rules, and
//! the proposal made for each case.
//!
//! # Directory
//!
//! An [`Interlocutor`] is an *organisation* the cellule can route a case to (a CCAS, a CMP, a
//! social landlord, an association…), with its sphere, its kind, the communes and sectors it
//! covers, the needs it handles and a professional contact line. The directory describes
//! organisations, never persons: `contact` is the service's own phone line or mailbox.
//!
//! An interlocutor's `name` must be spelled **exactly** like the `organisation` of the
//! memberships of that organisation's staff (docs/design.md §2): routing a case to an interlocutor is what
//! opens the item to its members (and, for a `guest` organisation, invites it to that item only),
//! and the link is made by that name. A name spelled differently routes the case to nobody.
//!
//! # Rules and matching
//!
//! A [`Rule`] says "cases with these needs, in this place, go to this lead and these others".
//! A rule matches a case when both hold:
//! - **needs**: the rule lists no need (any need, including a case with none), or the case has
//!   *at least one* of the listed needs;
//! - **place**: the rule lists neither commune nor sector (anywhere, including a case whose place
//!   is unknown), or the case's commune is listed, **or** the case's sector is listed.
//!
//! Rules are tried **in order and the first one that matches wins**: put specific rules (one
//! sector, one need) before general ones, and a catch-all (no needs, no place) last. A rule that
//! an earlier rule makes unreachable (the earlier one matches every case it matches) is refused
//! by [`Directory::validate`], so a misplaced general rule is caught when the file is loaded
//! rather than by noticing, months later, that a rule never fires.
//!
//! # Proposals
//!
//! [`propose`] returns the lead, the others and **the rule that matched** (id and 1-based
//! position), with a one-line explanation of why (``rule 2 `logement`: need housing, commune
//! 66136``, followed by ` — ` and the rule's note). The session's decision confirms or overrides it. A case
//! no rule matches is [`Proposal::Uncovered`], with an explanation: it is flagged for the
//! session, never silently dropped.
//!
//! # Formats
//!
//! The same field names serve JSON (API) and TOML (import/export, see
//! `policies/examples/routing-perpignan.toml`): `[[interlocutor]]` tables, then `[[rule]]` tables
//! in order. [`Directory::from_toml`] names the line of a syntax or shape error, and the JSON
//! pointer (`/rule/1/lead`, 0-based indices) of a validation error.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::FieldError;
use crate::domain::Organisation;
use crate::domain::Sphere;
use crate::domain::case::{Commune, Need, Sector};

mod propose;

pub use propose::{CaseFacts, Proposal, propose};

/// Longest interlocutor name (characters).
pub const MAX_NAME: usize = 120;
/// Longest contact line (characters).
pub const MAX_CONTACT: usize = 200;
/// Longest rule note (characters).
pub const MAX_NOTE: usize = 300;
/// Most interlocutors, and most rules, in one directory.
pub const MAX_ENTRIES: usize = 500;
/// Most communes, sectors, needs or others in one interlocutor or rule.
pub const MAX_LIST: usize = 1000;

/// What kind of organisation an interlocutor is (used for statistics and display).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InterlocutorKind {
    Ccas,
    SocialServices,
    Housing,
    Mediation,
    Cmp,
    Hospital,
    MobileTeam,
    AddictionCare,
    Association,
    JusticePolice,
    Other,
}

impl InterlocutorKind {
    pub const ALL: &'static [InterlocutorKind] = &[
        InterlocutorKind::Ccas,
        InterlocutorKind::SocialServices,
        InterlocutorKind::Housing,
        InterlocutorKind::Mediation,
        InterlocutorKind::Cmp,
        InterlocutorKind::Hospital,
        InterlocutorKind::MobileTeam,
        InterlocutorKind::AddictionCare,
        InterlocutorKind::Association,
        InterlocutorKind::JusticePolice,
        InterlocutorKind::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InterlocutorKind::Ccas => "ccas",
            InterlocutorKind::SocialServices => "social_services",
            InterlocutorKind::Housing => "housing",
            InterlocutorKind::Mediation => "mediation",
            InterlocutorKind::Cmp => "cmp",
            InterlocutorKind::Hospital => "hospital",
            InterlocutorKind::MobileTeam => "mobile_team",
            InterlocutorKind::AddictionCare => "addiction_care",
            InterlocutorKind::Association => "association",
            InterlocutorKind::JusticePolice => "justice_police",
            InterlocutorKind::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == s)
    }
}

/// One organisation the cellule can route a case to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Interlocutor {
    /// Short slug, `[a-z0-9-]{2,40}`, unique in the directory; rules name interlocutors by it.
    #[schema(example = "cmp-66g03")]
    pub id: String,
    /// The organisation's name, exactly as in the `organisation` of its members' memberships
    /// (1-120 characters).
    #[schema(example = "CMP adultes secteur 66G03")]
    pub name: String,
    pub sphere: Sphere,
    pub kind: InterlocutorKind,
    /// INSEE codes of the communes covered.
    #[serde(default)]
    #[schema(example = json!(["66136"]), value_type = Vec<crate::domain::case::Commune>)]
    pub communes: Vec<String>,
    /// Psychiatric sectors covered.
    #[serde(default)]
    #[schema(example = json!(["66G03"]), value_type = Vec<crate::domain::case::Sector>)]
    pub sectors: Vec<String>,
    /// Need categories handled.
    #[serde(default)]
    pub needs: Vec<Need>,
    /// Professional contact of the organisation (service line or mailbox, never a person's own
    /// data), at most 200 characters.
    #[serde(default)]
    #[schema(example = "accueil CMP : 04 00 00 00 00")]
    pub contact: String,
    /// Invited case by case rather than a permanent member of the cellule.
    #[serde(default)]
    pub guest: bool,
}

/// An ordered routing rule: needs × place → lead and others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Slug, `[a-z0-9-]{2,40}`, unique among rules.
    #[schema(example = "logement-perpignan")]
    pub id: String,
    /// Empty: any need; otherwise the case must have at least one of them.
    #[serde(default)]
    pub needs: Vec<Need>,
    /// Empty communes and sectors: anywhere; otherwise the case's commune is listed or its
    /// sector is listed.
    #[serde(default)]
    #[schema(value_type = Vec<crate::domain::case::Commune>)]
    pub communes: Vec<String>,
    #[serde(default)]
    #[schema(value_type = Vec<crate::domain::case::Sector>)]
    pub sectors: Vec<String>,
    /// Interlocutor id of the proposed lead.
    pub lead: String,
    /// Interlocutor ids also invited (not the lead, no repeats).
    #[serde(default)]
    pub others: Vec<String>,
    /// Free explanation shown with the proposals, at most 300 characters.
    #[serde(default)]
    pub note: String,
}

/// The directory of a cellule: interlocutors, and rules in the order they are tried.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Directory {
    #[serde(default, rename = "interlocutor")]
    pub interlocutors: Vec<Interlocutor>,
    #[serde(default, rename = "rule")]
    pub rules: Vec<Rule>,
}

/// Why a TOML directory was refused. `Display` gives one line per problem.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RoutingError {
    /// Not TOML, or not the directory's shape (unknown field, wrong type, missing field); `line`
    /// is 1-based, when toml could place the error.
    #[error("{}", syntax_text(*line, message))]
    Syntax {
        line: Option<usize>,
        message: String,
    },
    /// Well-formed but invalid: every problem, by JSON pointer.
    #[error("{}", field_errors_text(.0))]
    Invalid(Vec<FieldError>),
}

fn syntax_text(line: Option<usize>, message: &str) -> String {
    match line {
        Some(line) => format!("line {line}: {message}"),
        None => message.to_owned(),
    }
}

fn field_errors_text(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.pointer, e.detail))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Directory {
    /// Every problem, with JSON pointers like `/interlocutor/2/communes/0` or `/rule/1/lead`
    /// (0-based indices).
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut err =
            |pointer: String, detail: String| errors.push(FieldError::new(pointer, detail));

        if self.interlocutors.len() > MAX_ENTRIES {
            err(
                "/interlocutor".into(),
                format!("at most {MAX_ENTRIES} interlocutors"),
            );
        }
        if self.rules.len() > MAX_ENTRIES {
            err("/rule".into(), format!("at most {MAX_ENTRIES} rules"));
        }

        let mut ids: HashMap<&str, usize> = HashMap::new();
        let mut names: HashMap<&str, usize> = HashMap::new();
        for (i, it) in self.interlocutors.iter().enumerate() {
            let at = format!("/interlocutor/{i}");
            if let Some(detail) = slug_problem(&it.id) {
                err(format!("{at}/id"), detail);
            } else if let Some(&first) = ids.get(it.id.as_str()) {
                err(
                    format!("{at}/id"),
                    format!("id `{}` is already used by /interlocutor/{first}", it.id),
                );
            }
            ids.entry(&it.id).or_insert(i);
            if let Some(detail) = name_problem(&it.name) {
                err(format!("{at}/name"), detail);
            } else if let Some(&first) = names.get(it.name.as_str()) {
                err(
                    format!("{at}/name"),
                    format!("name is already used by /interlocutor/{first}"),
                );
            } else {
                names.insert(&it.name, i);
            }
            place_problems(&at, &it.communes, &it.sectors, &mut err);
            need_problems(&at, &it.needs, &mut err);
            if let Some(detail) = text_problem(&it.contact, MAX_CONTACT, "contact") {
                err(format!("{at}/contact"), detail);
            }
        }

        let mut rule_ids: HashMap<&str, usize> = HashMap::new();
        for (r, rule) in self.rules.iter().enumerate() {
            let at = format!("/rule/{r}");
            if let Some(detail) = slug_problem(&rule.id) {
                err(format!("{at}/id"), detail);
            } else if let Some(&first) = rule_ids.get(rule.id.as_str()) {
                err(
                    format!("{at}/id"),
                    format!("id `{}` is already used by /rule/{first}", rule.id),
                );
            } else {
                rule_ids.insert(&rule.id, r);
            }
            need_problems(&at, &rule.needs, &mut err);
            place_problems(&at, &rule.communes, &rule.sectors, &mut err);
            if !ids.contains_key(rule.lead.as_str()) {
                err(
                    format!("{at}/lead"),
                    format!("no interlocutor has the id `{}`", printable(&rule.lead)),
                );
            }
            if rule.others.len() > MAX_LIST {
                err(
                    format!("{at}/others"),
                    format!("at most {MAX_LIST} entries"),
                );
            }
            let mut seen = HashSet::new();
            for (o, other) in rule.others.iter().enumerate() {
                let pointer = format!("{at}/others/{o}");
                if *other == rule.lead {
                    err(
                        pointer,
                        "the lead must not be repeated among the others".into(),
                    );
                } else if !seen.insert(other.as_str()) {
                    err(pointer, format!("`{}` is repeated", printable(other)));
                } else if !ids.contains_key(other.as_str()) {
                    err(
                        pointer,
                        format!("no interlocutor has the id `{}`", printable(other)),
                    );
                }
            }
            if let Some(detail) = text_problem(&rule.note, MAX_NOTE, "note") {
                err(format!("{at}/note"), detail);
            }
            if let Some((e, earlier)) = self.rules[..r]
                .iter()
                .enumerate()
                .find(|(_, earlier)| covers(earlier, rule))
            {
                err(
                    at,
                    format!(
                        "never applies: rule {} `{}` comes first and matches every case this rule \
                         matches; put the more specific rule first",
                        e + 1,
                        printable(&earlier.id)
                    ),
                );
            }
        }

        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// TOML text (`[[interlocutor]]` … `[[rule]]` …) → validated directory. A syntax or shape
    /// error names its line; validation errors name their JSON pointer; one line each.
    pub fn from_toml(text: &str) -> Result<Directory, RoutingError> {
        let dir: Directory = toml::from_str(text).map_err(|e| RoutingError::Syntax {
            line: e.span().map(|span| line_of(text, span.start)),
            message: e.message().split_whitespace().collect::<Vec<_>>().join(" "),
        })?;
        dir.validate().map_err(RoutingError::Invalid)?;
        Ok(dir)
    }

    /// The directory as TOML, interlocutors then rules in order, empty fields left out; reads
    /// back identically through [`Directory::from_toml`].
    pub fn to_toml(&self) -> String {
        let mut out = String::from(
            "# Routing directory: interlocutors, then rules in order (the first rule that matches \
             wins).\n",
        );
        for it in &self.interlocutors {
            out.push_str("\n[[interlocutor]]\n");
            toml_line(&mut out, "id", &toml_str(&it.id));
            toml_line(&mut out, "name", &toml_str(&it.name));
            toml_line(&mut out, "sphere", &toml_str(it.sphere.as_str()));
            toml_line(&mut out, "kind", &toml_str(it.kind.as_str()));
            toml_list(&mut out, "communes", it.communes.iter().map(String::as_str));
            toml_list(&mut out, "sectors", it.sectors.iter().map(String::as_str));
            toml_list(&mut out, "needs", it.needs.iter().map(|n| n.as_str()));
            if !it.contact.is_empty() {
                toml_line(&mut out, "contact", &toml_str(&it.contact));
            }
            if it.guest {
                toml_line(&mut out, "guest", "true");
            }
        }
        for rule in &self.rules {
            out.push_str("\n[[rule]]\n");
            toml_line(&mut out, "id", &toml_str(&rule.id));
            toml_list(&mut out, "needs", rule.needs.iter().map(|n| n.as_str()));
            toml_list(
                &mut out,
                "communes",
                rule.communes.iter().map(String::as_str),
            );
            toml_list(&mut out, "sectors", rule.sectors.iter().map(String::as_str));
            toml_line(&mut out, "lead", &toml_str(&rule.lead));
            toml_list(&mut out, "others", rule.others.iter().map(String::as_str));
            if !rule.note.is_empty() {
                toml_line(&mut out, "note", &toml_str(&rule.note));
            }
        }
        out
    }

    /// The interlocutor with this id.
    pub fn interlocutor(&self, id: &str) -> Option<&Interlocutor> {
        self.interlocutors.iter().find(|it| it.id == id)
    }

    /// The interlocutor with this id, or else with exactly this name.
    pub fn interlocutor_by_id_or_name(&self, key: &str) -> Option<&Interlocutor> {
        self.interlocutor(key)
            .or_else(|| self.interlocutors.iter().find(|it| it.name == key))
    }

    /// The kind of the interlocutor with exactly this name (a membership's `organisation`).
    pub fn kind_of_organisation(&self, name: &str) -> Option<InterlocutorKind> {
        self.interlocutors
            .iter()
            .find(|it| it.name == name)
            .map(|it| it.kind)
    }
}

fn anywhere(rule: &Rule) -> bool {
    rule.communes.is_empty() && rule.sectors.is_empty()
}

/// Whether `earlier` matches every case `later` matches (so `later`, placed after it, never
/// applies). Sufficient, and exact for the rule language: needs and places are independent sets.
fn covers(earlier: &Rule, later: &Rule) -> bool {
    let needs = earlier.needs.is_empty()
        || (!later.needs.is_empty() && later.needs.iter().all(|n| earlier.needs.contains(n)));
    let place = anywhere(earlier)
        || (!anywhere(later)
            && later.communes.iter().all(|c| earlier.communes.contains(c))
            && later.sectors.iter().all(|s| earlier.sectors.contains(s)));
    needs && place
}

fn slug_problem(s: &str) -> Option<String> {
    let ok = (2..=40).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    (!ok).then(|| "id must be 2-40 characters among a-z, 0-9 and -".to_owned())
}

fn name_problem(name: &str) -> Option<String> {
    let parsed = match Organisation::parse(name) {
        Ok(parsed) => parsed,
        Err(e) => return Some(format!("name: {e}")),
    };
    if name.trim() != name {
        return Some(
            "name must not start or end with spaces (it must equal the memberships' organisation)"
                .to_owned(),
        );
    }
    if parsed.as_str() != name {
        return Some(
            "name must be in Unicode normalisation form C (it must equal the memberships' organisation)"
                .to_owned(),
        );
    }
    if name.chars().count() > MAX_NAME {
        return Some(format!("name must be 1-{MAX_NAME} characters"));
    }
    None
}

fn text_problem(text: &str, max: usize, what: &str) -> Option<String> {
    if text.chars().count() > max {
        Some(format!("{what} must be at most {max} characters"))
    } else if text.chars().any(char::is_control) {
        Some(format!(
            "{what} must be one line, without control characters"
        ))
    } else {
        None
    }
}

fn place_problems(
    at: &str,
    communes: &[String],
    sectors: &[String],
    err: &mut impl FnMut(String, String),
) {
    list_problems(&format!("{at}/communes"), communes, err, |s| {
        Commune::parse(s).err().map(|e| e.0)
    });
    list_problems(&format!("{at}/sectors"), sectors, err, |s| {
        Sector::parse(s).err().map(|e| e.0)
    });
}

/// Each value checked, repeats refused, length bounded.
fn list_problems(
    at: &str,
    values: &[String],
    err: &mut impl FnMut(String, String),
    check: impl Fn(&str) -> Option<String>,
) {
    if values.len() > MAX_LIST {
        err(at.to_owned(), format!("at most {MAX_LIST} entries"));
        return;
    }
    let mut seen = HashSet::new();
    for (k, value) in values.iter().enumerate() {
        if let Some(detail) = check(value) {
            err(format!("{at}/{k}"), detail);
        } else if !seen.insert(value.as_str()) {
            err(format!("{at}/{k}"), format!("{value} is repeated"));
        }
    }
}

fn need_problems(at: &str, needs: &[Need], err: &mut impl FnMut(String, String)) {
    let mut seen = HashSet::new();
    for (k, need) in needs.iter().enumerate() {
        if !seen.insert(*need) {
            err(
                format!("{at}/needs/{k}"),
                format!("{} is repeated", need.as_str()),
            );
        }
    }
}

/// An id echoed in a message: at most 40 characters, control characters replaced.
fn printable(s: &str) -> String {
    s.chars()
        .take(40)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn toml_line(out: &mut String, key: &str, value: &str) {
    let _ = writeln!(out, "{key} = {value}");
}

fn toml_list<'a>(out: &mut String, key: &str, values: impl Iterator<Item = &'a str>) {
    let items: Vec<String> = values.map(toml_str).collect();
    if !items.is_empty() {
        toml_line(out, key, &format!("[{}]", items.join(", ")));
    }
}

#[cfg(test)]
mod tests;
