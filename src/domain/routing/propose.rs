//! The router: for one case, the first rule that matches, with why, or why none does.

use super::*;

/// The routing-relevant facts of a case (its pseudonymised attributes, docs/design.md §3).
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
