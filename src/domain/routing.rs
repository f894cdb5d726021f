//! Routing (SPEC §10): the cellule's directory of interlocutors and its ordered routing rules, and
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
//! memberships of that organisation's staff (SPEC §2): routing a case to an interlocutor is what
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
    #[schema(example = json!(["66136"]))]
    pub communes: Vec<String>,
    /// Psychiatric sectors covered.
    #[serde(default)]
    #[schema(example = json!(["66G03"]))]
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
    pub communes: Vec<String>,
    #[serde(default)]
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

    /// The kind of the interlocutor with exactly this name (a membership's `organisation`).
    pub fn kind_of_organisation(&self, name: &str) -> Option<InterlocutorKind> {
        self.interlocutors
            .iter()
            .find(|it| it.name == name)
            .map(|it| it.kind)
    }
}

/// The routing-relevant facts of a case (its pseudonymised attributes, SPEC §3).
#[derive(Debug, Clone, Copy)]
pub struct CaseFacts<'a> {
    pub needs: &'a [Need],
    /// INSEE code of the commune, if known.
    pub commune: Option<&'a str>,
    /// Psychiatric sector code, if known.
    pub sector: Option<&'a str>,
}

/// What the router proposes for one case.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Proposal {
    /// A rule matched.
    Routed {
        /// Interlocutor id of the lead.
        lead: String,
        lead_name: String,
        /// Interlocutor ids of the others, in the rule's order.
        others: Vec<String>,
        other_names: Vec<String>,
        /// Id of the rule that matched.
        rule: String,
        /// 1-based position of that rule.
        rule_position: usize,
        /// Which rule and why, e.g. ``rule 2 `logement`: need housing, commune 66136``.
        explanation: String,
    },
    /// No rule matches: the case is flagged for the session.
    Uncovered { explanation: String },
}

impl Proposal {
    /// Organisation names invited by the proposal (lead first, then the others), for guest
    /// access; empty when uncovered.
    pub fn organisations(&self) -> Vec<String> {
        match self {
            Proposal::Routed {
                lead_name,
                other_names,
                ..
            } => std::iter::once(lead_name)
                .chain(other_names)
                .cloned()
                .collect(),
            Proposal::Uncovered { .. } => Vec::new(),
        }
    }
}

/// The first rule, in order, that matches the case, with the reason; [`Proposal::Uncovered`] when
/// none does. The directory is expected to be valid; a matching rule that names an unknown
/// interlocutor is reported as uncovered, never half-routed.
pub fn propose(dir: &Directory, case: &CaseFacts<'_>) -> Proposal {
    let Some((index, rule, reason)) = dir
        .rules
        .iter()
        .enumerate()
        .find_map(|(i, rule)| match_reason(rule, case).map(|why| (i, rule, why)))
    else {
        return Proposal::Uncovered {
            explanation: uncovered_explanation(dir, case),
        };
    };
    let position = index + 1;
    let mut explanation = format!("rule {position} `{}`: {reason}", rule.id);
    let missing = std::iter::once(&rule.lead)
        .chain(&rule.others)
        .find(|id| dir.interlocutor(id).is_none());
    if let Some(missing) = missing {
        return Proposal::Uncovered {
            explanation: format!(
                "{explanation}, but it names `{}`, which is not in the directory: fix the \
                 directory and route this case in session",
                printable(missing)
            ),
        };
    }
    if !rule.note.is_empty() {
        explanation.push_str(" — ");
        explanation.push_str(&rule.note);
    }
    let name = |id: &String| dir.interlocutor(id).map(|it| it.name.clone());
    Proposal::Routed {
        lead: rule.lead.clone(),
        lead_name: name(&rule.lead).unwrap_or_default(),
        others: rule.others.clone(),
        other_names: rule.others.iter().filter_map(name).collect(),
        rule: rule.id.clone(),
        rule_position: position,
        explanation,
    }
}

/// Why `rule` matches `case` ("need housing, commune 66136"), or `None`.
fn match_reason(rule: &Rule, case: &CaseFacts<'_>) -> Option<String> {
    let needs = if rule.needs.is_empty() {
        "any need".to_owned()
    } else {
        let matched: Vec<&str> = rule
            .needs
            .iter()
            .filter(|n| case.needs.contains(n))
            .map(|n| n.as_str())
            .collect();
        match matched.len() {
            0 => return None,
            1 => format!("need {}", matched[0]),
            _ => format!("needs {}", matched.join(", ")),
        }
    };
    let place = if anywhere(rule) {
        "anywhere".to_owned()
    } else {
        let mut parts = Vec::new();
        if let Some(c) = case
            .commune
            .filter(|c| rule.communes.iter().any(|r| r == c))
        {
            parts.push(format!("commune {c}"));
        }
        if let Some(s) = case.sector.filter(|s| rule.sectors.iter().any(|r| r == s)) {
            parts.push(format!("sector {s}"));
        }
        if parts.is_empty() {
            return None;
        }
        parts.join(", ")
    };
    Some(format!("{needs}, {place}"))
}

fn uncovered_explanation(dir: &Directory, case: &CaseFacts<'_>) -> String {
    if dir.rules.is_empty() {
        return "no routing rule is defined: to be routed by the session".to_owned();
    }
    let needs = match case.needs {
        [] => "no need category".to_owned(),
        [one] => format!("need {}", one.as_str()),
        many => format!(
            "needs {}",
            many.iter()
                .map(|n| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let commune = case.commune.map_or("no commune".to_owned(), |c| {
        format!("commune {}", printable(c))
    });
    let sector = case.sector.map_or("no sector".to_owned(), |s| {
        format!("sector {}", printable(s))
    });
    let n = dir.rules.len();
    let rules = if n == 1 { "rule" } else { "rules" };
    format!(
        "no rule matches {needs}, {commune}, {sector} ({n} {rules} checked): to be routed by the \
         session (a catch-all rule, with no needs and no place, placed last, would cover it)"
    )
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
    if let Err(e) = Organisation::parse(name) {
        return Some(format!("name: {e}"));
    }
    if name.trim() != name {
        return Some(
            "name must not start or end with spaces (it must equal the memberships' organisation)"
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
mod tests {
    use super::*;
    use Need::*;

    const EXAMPLE: &str = include_str!("../../policies/examples/routing-perpignan.toml");

    fn org(id: &str, name: &str, sphere: Sphere, kind: InterlocutorKind) -> Interlocutor {
        Interlocutor {
            id: id.into(),
            name: name.into(),
            sphere,
            kind,
            communes: vec![],
            sectors: vec![],
            needs: vec![],
            contact: String::new(),
            guest: false,
        }
    }

    fn rule(id: &str, needs: &[Need], communes: &[&str], sectors: &[&str], lead: &str) -> Rule {
        Rule {
            id: id.into(),
            needs: needs.to_vec(),
            communes: communes.iter().map(|s| s.to_string()).collect(),
            sectors: sectors.iter().map(|s| s.to_string()).collect(),
            lead: lead.into(),
            others: vec![],
            note: String::new(),
        }
    }

    fn orgs() -> Vec<Interlocutor> {
        vec![
            org("ccas", "CCAS de Test", Sphere::City, InterlocutorKind::Ccas),
            org(
                "bailleur",
                "Test Habitat",
                Sphere::City,
                InterlocutorKind::Housing,
            ),
            org(
                "cmp",
                "CMP secteur 66G03",
                Sphere::Psychiatry,
                InterlocutorKind::Cmp,
            ),
        ]
    }

    fn dir(rules: Vec<Rule>) -> Directory {
        Directory {
            interlocutors: orgs(),
            rules,
        }
    }

    fn facts<'a>(
        needs: &'a [Need],
        commune: Option<&'a str>,
        sector: Option<&'a str>,
    ) -> CaseFacts<'a> {
        CaseFacts {
            needs,
            commune,
            sector,
        }
    }

    /// (lead, rule id, position) of a routed proposal; panics when uncovered.
    fn routed(p: &Proposal) -> (&str, &str, usize) {
        match p {
            Proposal::Routed {
                lead,
                rule,
                rule_position,
                ..
            } => (lead, rule, *rule_position),
            Proposal::Uncovered { explanation } => panic!("uncovered: {explanation}"),
        }
    }

    fn explanation(p: &Proposal) -> &str {
        match p {
            Proposal::Routed { explanation, .. } | Proposal::Uncovered { explanation } => {
                explanation
            }
        }
    }

    fn pointers(d: &Directory) -> Vec<String> {
        d.validate()
            .expect_err("should be invalid")
            .into_iter()
            .map(|e| e.pointer)
            .collect()
    }

    #[test]
    fn specific_rule_first_wins_then_general_takes_the_rest() {
        let d = dir(vec![
            rule("logement-66901", &[Housing], &["66901"], &[], "bailleur"),
            rule("logement", &[Housing], &[], &[], "ccas"),
        ]);
        d.validate().unwrap();
        let p = propose(&d, &facts(&[Housing], Some("66901"), None));
        assert_eq!(routed(&p), ("bailleur", "logement-66901", 1));
        assert_eq!(
            explanation(&p),
            "rule 1 `logement-66901`: need housing, commune 66901"
        );
        let p = propose(&d, &facts(&[Housing], Some("66903"), None));
        assert_eq!(routed(&p), ("ccas", "logement", 2));
        assert_eq!(explanation(&p), "rule 2 `logement`: need housing, anywhere");
    }

    #[test]
    fn specific_rule_after_a_general_one_never_fires_and_is_refused() {
        let d = dir(vec![
            rule("logement", &[Housing], &[], &[], "ccas"),
            rule("logement-66901", &[Housing], &["66901"], &[], "bailleur"),
        ]);
        for (commune, sector) in [
            (Some("66901"), None),
            (Some("66901"), Some("66G03")),
            (None, None),
        ] {
            let p = propose(&d, &facts(&[Housing, Isolation], commune, sector));
            assert_eq!(routed(&p), ("ccas", "logement", 1));
        }
        let errors = d.validate().unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].pointer, "/rule/1");
        assert!(
            errors[0].detail.contains("rule 1 `logement`"),
            "{}",
            errors[0].detail
        );
    }

    #[test]
    fn partially_overlapping_rules_are_both_reachable() {
        // housing|isolation in 66901, then housing in 66901|66902: neither covers the other.
        let d = dir(vec![
            rule("aa", &[Housing, Isolation], &["66901"], &[], "ccas"),
            rule("bb", &[Housing], &["66901", "66902"], &[], "bailleur"),
            rule("cc", &[], &[], &["66G03"], "cmp"),
        ]);
        d.validate().unwrap();
        assert_eq!(
            routed(&propose(&d, &facts(&[Housing], Some("66902"), None))).1,
            "bb"
        );
        assert_eq!(
            routed(&propose(&d, &facts(&[Housing], Some("66901"), None))).1,
            "aa"
        );
        // A rule with needs never covers a later rule without needs, even on a broader place.
        let d = dir(vec![
            rule("needs", &[Housing], &[], &[], "bailleur"),
            rule("no-needs", &[], &["66901"], &[], "ccas"),
        ]);
        d.validate().unwrap();
    }

    #[test]
    fn commune_or_sector_either_matches() {
        let d = dir(vec![rule(
            "soins",
            &[CareAccess],
            &["66901"],
            &["66G04"],
            "cmp",
        )]);
        d.validate().unwrap();
        let by_commune = propose(&d, &facts(&[CareAccess], Some("66901"), Some("66G03")));
        assert_eq!(routed(&by_commune).0, "cmp");
        assert_eq!(
            explanation(&by_commune),
            "rule 1 `soins`: need care_access, commune 66901"
        );
        let by_sector = propose(&d, &facts(&[CareAccess], Some("66903"), Some("66G04")));
        assert_eq!(
            explanation(&by_sector),
            "rule 1 `soins`: need care_access, sector 66G04"
        );
        let sector_only = propose(&d, &facts(&[CareAccess], None, Some("66G04")));
        assert_eq!(routed(&sector_only).0, "cmp");
        let both = propose(&d, &facts(&[CareAccess], Some("66901"), Some("66G04")));
        assert_eq!(
            explanation(&both),
            "rule 1 `soins`: need care_access, commune 66901, sector 66G04"
        );
        for (commune, sector) in [
            (Some("66903"), Some("66G03")),
            (None, None),
            (Some("66G04"), None),
        ] {
            let p = propose(&d, &facts(&[CareAccess], commune, sector));
            assert!(
                matches!(p, Proposal::Uncovered { .. }),
                "{commune:?} {sector:?}"
            );
        }
    }

    #[test]
    fn needs_match_when_the_case_has_any_of_them() {
        let d = dir(vec![rule(
            "rr",
            &[Housing, Addiction, Isolation],
            &[],
            &[],
            "ccas",
        )]);
        let p = propose(&d, &facts(&[Isolation, CareAccess, Addiction], None, None));
        // Matched needs are listed in the rule's order.
        assert_eq!(
            explanation(&p),
            "rule 1 `rr`: needs addiction, isolation, anywhere"
        );
        assert!(matches!(
            propose(&d, &facts(&[CareAccess], None, None)),
            Proposal::Uncovered { .. }
        ));
        assert!(matches!(
            propose(&d, &facts(&[], None, None)),
            Proposal::Uncovered { .. }
        ));
    }

    #[test]
    fn empty_needs_and_place_is_a_catch_all() {
        let d = dir(vec![
            rule("soins", &[CareAccess], &[], &["66G03"], "cmp"),
            rule("defaut", &[], &[], &[], "ccas"),
        ]);
        d.validate().unwrap();
        for case in [
            facts(&[], None, None),
            facts(&[CareAccess], None, Some("66G04")),
            facts(&[Other], Some("2A004"), None),
        ] {
            let p = propose(&d, &case);
            assert_eq!(routed(&p), ("ccas", "defaut", 2));
            assert_eq!(explanation(&p), "rule 2 `defaut`: any need, anywhere");
        }
        assert_eq!(
            routed(&propose(&d, &facts(&[CareAccess], None, Some("66G03")))).0,
            "cmp"
        );
        // A rule placed after the catch-all would never apply.
        let mut late = d.clone();
        late.rules
            .push(rule("trop-tard", &[Housing], &["66901"], &[], "bailleur"));
        assert_eq!(pointers(&late), ["/rule/2"]);
    }

    #[test]
    fn uncovered_case_is_flagged_with_an_explanation() {
        let d = dir(vec![rule(
            "logement-66901",
            &[Housing],
            &["66901"],
            &[],
            "bailleur",
        )]);
        let p = propose(&d, &facts(&[Housing, Addiction], Some("66903"), None));
        assert_eq!(
            p,
            Proposal::Uncovered {
                explanation: "no rule matches needs housing, addiction, commune 66903, no sector \
                              (1 rule checked): to be routed by the session (a catch-all rule, \
                              with no needs and no place, placed last, would cover it)"
                    .into()
            }
        );
        assert!(p.organisations().is_empty());
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["status"], "uncovered");
        assert!(
            json["explanation"]
                .as_str()
                .unwrap()
                .starts_with("no rule matches")
        );

        let empty = Directory::default();
        assert_eq!(
            explanation(&propose(&empty, &facts(&[Housing], None, None))),
            "no routing rule is defined: to be routed by the session"
        );
    }

    #[test]
    fn a_matching_rule_naming_an_unknown_interlocutor_is_not_half_routed() {
        let mut r = rule("rr", &[], &[], &[], "ccas");
        r.others = vec!["fantome".into()];
        let d = dir(vec![r]);
        let p = propose(&d, &facts(&[], None, None));
        let Proposal::Uncovered { explanation } = p else {
            panic!("should be uncovered")
        };
        assert!(explanation.starts_with("rule 1 `rr`: any need, anywhere, but it names `fantome`"));
    }

    #[test]
    fn validation_errors_have_exact_pointers() {
        let mut d = dir(vec![]);
        d.interlocutors[0].communes = vec!["66901".into(), "6690".into(), "66901".into()];
        d.interlocutors[1].id = "ccas".into(); // duplicate
        d.interlocutors[2].id = "CMP_66".into(); // bad slug
        d.interlocutors[2].sectors = vec!["66X03".into()];
        d.interlocutors[2].name = " CMP ".into();
        d.interlocutors.push(org(
            "x",
            &"n".repeat(121),
            Sphere::City,
            InterlocutorKind::Other,
        ));
        d.interlocutors[3].contact = "c".repeat(201);
        d.interlocutors[3].needs = vec![Housing, Housing];
        let mut unknown_lead = rule("aa", &[Housing], &[], &[], "nobody");
        unknown_lead.note = "n".repeat(301);
        let mut lead_in_others = rule("aa", &[CareAccess], &["66901"], &[], "ccas"); // duplicate id
        lead_in_others.others = vec!["ccas".into(), "nobody".into(), "nobody".into()];
        let bad_slug = rule("-b c", &[Isolation], &["2C001"], &["66G3"], "ccas");
        d.rules = vec![unknown_lead, lead_in_others, bad_slug];
        assert_eq!(
            pointers(&d),
            [
                "/interlocutor/0/communes/1",
                "/interlocutor/0/communes/2",
                "/interlocutor/1/id",
                "/interlocutor/2/id",
                "/interlocutor/2/name",
                "/interlocutor/2/sectors/0",
                "/interlocutor/3/id",
                "/interlocutor/3/name",
                "/interlocutor/3/needs/1",
                "/interlocutor/3/contact",
                "/rule/0/lead",
                "/rule/0/note",
                "/rule/1/id",
                "/rule/1/others/0",
                "/rule/1/others/1",
                "/rule/1/others/2",
                "/rule/2/id",
                "/rule/2/communes/0",
                "/rule/2/sectors/0",
            ]
        );
        let errors = d.validate().unwrap_err();
        let detail = |p: &str| {
            errors
                .iter()
                .find(|e| e.pointer == p)
                .unwrap()
                .detail
                .clone()
        };
        assert_eq!(
            detail("/interlocutor/1/id"),
            "id `ccas` is already used by /interlocutor/0"
        );
        assert_eq!(
            detail("/rule/0/lead"),
            "no interlocutor has the id `nobody`"
        );
        assert_eq!(detail("/rule/1/id"), "id `aa` is already used by /rule/0");
        assert_eq!(
            detail("/rule/1/others/0"),
            "the lead must not be repeated among the others"
        );
        assert_eq!(detail("/rule/1/others/2"), "`nobody` is repeated");
        assert!(detail("/rule/2/communes/0").contains("INSEE"));
        // The rejected commune is not echoed.
        assert!(!detail("/interlocutor/0/communes/1").contains("6690"));
    }

    #[test]
    fn duplicate_names_and_control_characters_are_refused() {
        let mut d = dir(vec![rule("rr", &[], &[], &[], "ccas")]);
        d.interlocutors[1].name = d.interlocutors[0].name.clone();
        d.interlocutors[2].contact = "ligne 1\nligne 2".into();
        d.rules[0].note = "a\tb".into();
        assert_eq!(
            pointers(&d),
            [
                "/interlocutor/1/name",
                "/interlocutor/2/contact",
                "/rule/0/note"
            ]
        );
    }

    #[test]
    fn toml_round_trips() {
        let example = Directory::from_toml(EXAMPLE).unwrap();
        let text = example.to_toml();
        assert_eq!(Directory::from_toml(&text).unwrap(), example);
        assert!(!text.contains("guest = false"));
        assert!(text.contains("[[interlocutor]]") && text.contains("[[rule]]"));

        let mut d = dir(vec![rule(
            "rr",
            &[Housing, Other],
            &["2A004"],
            &["974G12"],
            "ccas",
        )]);
        d.interlocutors[0].name = r#"Association "L'Abri" \ Têt — accueil"#.into();
        d.interlocutors[0].contact = "accueil@abri.example, 04 00 00 00 00".into();
        d.interlocutors[0].guest = true;
        d.interlocutors[1].needs = vec![Housing, NeighbourhoodNuisance];
        d.rules[0].others = vec!["cmp".into(), "bailleur".into()];
        d.rules[0].note = "d'abord l'\"Abri\"".into();
        let back = Directory::from_toml(&d.to_toml()).unwrap();
        assert_eq!(back, d);
        assert_eq!(
            Directory::from_toml(&Directory::default().to_toml()).unwrap(),
            Directory::default()
        );
    }

    #[test]
    fn json_uses_the_same_field_names() {
        let example = Directory::from_toml(EXAMPLE).unwrap();
        let json = serde_json::to_value(&example).unwrap();
        assert_eq!(json["interlocutor"][0]["id"], "ccas");
        assert_eq!(json["interlocutor"][0]["kind"], "ccas");
        assert_eq!(json["rule"][0]["needs"][0], "violence_danger");
        let back: Directory = serde_json::from_value(json).unwrap();
        assert_eq!(back, example);
        let bad = serde_json::json!({"interlocutor": [], "rule": [], "extra": 1});
        assert!(serde_json::from_value::<Directory>(bad).is_err());
    }

    #[test]
    fn toml_errors_name_the_line_or_the_pointer() {
        let text = "[[interlocutor]]\nid = \"ccas\"\nname = \"CCAS\"\nsphere = \"town\"\nkind = \"ccas\"\n";
        let err = Directory::from_toml(text).unwrap_err();
        assert!(
            matches!(err, RoutingError::Syntax { line: Some(4), .. }),
            "{err:?}"
        );
        let shown = err.to_string();
        assert!(
            shown.starts_with("line 4: ") && !shown.contains('\n'),
            "{shown}"
        );

        let text = "[[rule]]\nid = \"r\"\nlead = \"x\"\ncolour = \"red\"\n";
        let err = Directory::from_toml(text).unwrap_err();
        assert!(
            matches!(err, RoutingError::Syntax { line: Some(4), .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("colour"));

        let text = "[[interlocutor]]\nid = \"ccas\"\nname = \"CCAS\"\nsphere = \"city\"\nkind = \"ccas\"\n\n\
                    [[rule]]\nid = \"rr\"\nlead = \"cas\"\nothers = [\"ccas\", \"ccas\"]\n";
        let err = Directory::from_toml(text).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/rule/0/lead: no interlocutor has the id `cas`\n/rule/0/others/1: `ccas` is repeated"
        );
        let RoutingError::Invalid(errors) = err else {
            panic!("should be a validation error")
        };
        assert_eq!(errors.len(), 2);

        assert!(matches!(
            Directory::from_toml("[[rule]\n"),
            Err(RoutingError::Syntax { line: Some(1), .. })
        ));
    }

    #[test]
    fn the_example_file_parses_validates_and_routes_typical_cases() {
        let d = Directory::from_toml(EXAMPLE).unwrap();
        assert_eq!(d.interlocutors.len(), 9);
        assert_eq!(d.rules.len(), 9);
        assert!(d.interlocutors.iter().any(|i| i.sphere == Sphere::City));
        assert!(
            d.interlocutors
                .iter()
                .any(|i| i.sphere == Sphere::Psychiatry)
        );
        assert!(d.interlocutor("empp").unwrap().guest);

        // (needs, commune, sector, expected lead, expected rule)
        type Expected<'a> = (
            &'a [Need],
            Option<&'a str>,
            Option<&'a str>,
            &'a str,
            &'a str,
        );
        let cases: &[Expected<'_>] = &[
            // Housing on the estates → the landlord; elsewhere → catch-all CCAS.
            (
                &[Housing],
                Some("66901"),
                Some("66G03"),
                "tet-habitat",
                "logement-parc-social",
            ),
            (
                &[Housing],
                Some("66903"),
                Some("66G04"),
                "ccas",
                "defaut-ccas",
            ),
            // Care by sector, whatever the commune; unknown sector → mobile team.
            (
                &[CareAccess],
                Some("66901"),
                Some("66G03"),
                "cmp-66g03",
                "soins-secteur-66g03",
            ),
            (
                &[CareContinuity],
                Some("66901"),
                Some("66G04"),
                "cmp-66g04",
                "soins-secteur-66g04",
            ),
            (&[CareAccess], None, None, "empp", "soins-hors-secteur"),
            (
                &[CareAccess],
                None,
                Some("66G01"),
                "empp",
                "soins-hors-secteur",
            ),
            // Addiction before care; danger before everything.
            (
                &[CareAccess, Addiction],
                Some("66901"),
                Some("66G03"),
                "csapa",
                "addiction",
            ),
            (
                &[Housing, Addiction, ViolenceDanger],
                Some("66901"),
                None,
                "mds",
                "danger-ou-mineurs",
            ),
            (
                &[NeighbourhoodNuisance],
                Some("66902"),
                None,
                "tet-habitat",
                "logement-parc-social",
            ),
            (
                &[NeighbourhoodNuisance],
                Some("66904"),
                None,
                "mediation",
                "troubles-voisinage",
            ),
            (&[Isolation], Some("66903"), None, "ccas", "isolement"),
            (&[], None, None, "ccas", "defaut-ccas"),
        ];
        for (needs, commune, sector, lead, rule_id) in cases {
            let p = propose(&d, &facts(needs, *commune, *sector));
            let (got_lead, got_rule, position) = routed(&p);
            assert_eq!(
                (got_lead, got_rule),
                (*lead, *rule_id),
                "{needs:?} {commune:?} {sector:?}"
            );
            assert_eq!(d.rules[position - 1].id, *rule_id);
        }
        // Every rule fires for some case above: none is dead.
        for r in &d.rules {
            assert!(
                cases.iter().any(|c| c.4 == r.id),
                "rule {} never exercised",
                r.id
            );
        }
        // With the catch-all last, nothing is uncovered.
        for need in Need::ALL {
            assert!(matches!(
                propose(&d, &facts(&[*need], Some("2A004"), None)),
                Proposal::Routed { .. }
            ));
        }

        let p = propose(&d, &facts(&[CareAccess], None, Some("66G02")));
        assert_eq!(
            p.organisations(),
            [
                "EMPP Têt-Aspres, équipe mobile psychiatrie précarité",
                "CCAS de Ville-sur-Têt"
            ]
        );
        assert!(
            explanation(&p)
                .starts_with("rule 5 `soins-hors-secteur`: need care_access, anywhere — ")
        );
    }

    #[test]
    fn organisations_lists_lead_then_others_by_name() {
        let mut r = rule("rr", &[Housing], &[], &[], "bailleur");
        r.others = vec!["cmp".into(), "ccas".into()];
        r.note = "le bailleur d'abord".into();
        let d = dir(vec![r]);
        let p = propose(&d, &facts(&[Housing], None, None));
        assert_eq!(
            p.organisations(),
            ["Test Habitat", "CMP secteur 66G03", "CCAS de Test"]
        );
        let Proposal::Routed {
            lead_name,
            others,
            other_names,
            explanation,
            ..
        } = &p
        else {
            panic!("should be routed")
        };
        assert_eq!(lead_name, "Test Habitat");
        assert_eq!(others, &["cmp", "ccas"]);
        assert_eq!(other_names, &["CMP secteur 66G03", "CCAS de Test"]);
        assert_eq!(
            explanation,
            "rule 1 `rr`: need housing, anywhere — le bailleur d'abord"
        );
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["status"], "routed");
        assert_eq!(json["rule_position"], 1);
    }

    #[test]
    fn lookups_by_id_and_by_exact_name() {
        let d = Directory::from_toml(EXAMPLE).unwrap();
        assert_eq!(
            d.interlocutor("csapa").unwrap().kind,
            InterlocutorKind::AddictionCare
        );
        assert!(d.interlocutor("nobody").is_none());
        assert_eq!(
            d.kind_of_organisation("CMP adultes secteur 66G03"),
            Some(InterlocutorKind::Cmp)
        );
        assert_eq!(d.kind_of_organisation("cmp adultes secteur 66g03"), None);
        for kind in InterlocutorKind::ALL {
            assert_eq!(InterlocutorKind::parse(kind.as_str()), Some(*kind));
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, kind.as_str());
        }
    }
}
