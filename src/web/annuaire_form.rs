//! The *Annuaire*'s forms and words: an interlocutor or a routing rule as typed (kept as typed
//! when refused), turned into the directory's values; a rule told in French; and each of the
//! directory's validation errors (a JSON pointer and an English detail) told in French, next to
//! its field when the form holds it.

use serde_json::Value;

use super::forms::{FieldProblem, Form};
use super::text;
use crate::domain::Sphere;
use crate::domain::case::Need;
use crate::domain::routing::{Interlocutor, InterlocutorKind, Rule};
use crate::error::FieldError;
use crate::services::review::directory::DirectoryDocument;

/// Codes typed in one field, separated by commas, semicolons or spaces; upper case (INSEE and
/// sector codes have no lower-case letter: `2a004` is `2A004`).
fn codes(typed: &str) -> Vec<String> {
    typed
        .split(|c: char| c == ',' || c == ';' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_uppercase)
        .collect()
}

fn needs_of(values: &[String], field: &str, problems: &mut Vec<FieldProblem>) -> Vec<Need> {
    let mut needs = Vec::new();
    for v in values {
        match Need::parse(v) {
            Ok(n) if !needs.contains(&n) => needs.push(n),
            Ok(_) => {}
            Err(_) => problems.push(FieldProblem::new(
                field,
                "Choisissez les besoins de la liste.",
            )),
        }
    }
    needs
}

/// The interlocutor form as typed. `original` is the id of the interlocutor edited (empty: a
/// new one).
#[derive(Debug, Clone, Default)]
pub struct InterlocutorFields {
    pub original: String,
    pub id: String,
    pub name: String,
    pub sphere: String,
    pub kind: String,
    pub communes: String,
    pub sectors: String,
    pub needs: Vec<String>,
    pub contact: String,
    pub guest: bool,
}

impl InterlocutorFields {
    pub fn from_form(form: &Form) -> Self {
        Self {
            original: form.text("original"),
            id: form.text("identifiant"),
            name: form.text("nom"),
            sphere: form.text("sphere"),
            kind: form.text("type"),
            communes: form.text("communes"),
            sectors: form.text("secteurs"),
            needs: form.all("besoins"),
            contact: form.text("contact"),
            guest: form.get("invite").is_some(),
        }
    }

    pub fn of(it: &Interlocutor) -> Self {
        Self {
            original: it.id.clone(),
            id: it.id.clone(),
            name: it.name.clone(),
            sphere: it.sphere.as_str().to_owned(),
            kind: it.kind.as_str().to_owned(),
            communes: it.communes.join(" "),
            sectors: it.sectors.join(" "),
            needs: it.needs.iter().map(|n| n.as_str().to_owned()).collect(),
            contact: it.contact.clone(),
            guest: it.guest,
        }
    }

    /// The interlocutor, or the problems of the choices (the directory checks the rest).
    pub fn interlocutor(&self) -> Result<Interlocutor, Vec<FieldProblem>> {
        let mut problems = Vec::new();
        let sphere = Sphere::parse(&self.sphere).ok();
        if sphere.is_none() {
            problems.push(FieldProblem::new(
                "i-sphere",
                "Choisissez la sphère de l'organisation : ville ou psychiatrie.",
            ));
        }
        let kind = InterlocutorKind::parse(&self.kind);
        if kind.is_none() {
            problems.push(FieldProblem::new(
                "i-type",
                "Choisissez le type d'organisation.",
            ));
        }
        let needs = needs_of(&self.needs, "i-besoins", &mut problems);
        match (sphere, kind) {
            (Some(sphere), Some(kind)) if problems.is_empty() => Ok(Interlocutor {
                id: self.id.clone(),
                name: crate::domain::nfc(&self.name),
                sphere,
                kind,
                communes: codes(&self.communes),
                sectors: codes(&self.sectors),
                needs,
                contact: self.contact.clone(),
                guest: self.guest,
            }),
            _ => Err(problems),
        }
    }
}

/// The rule form as typed. `original` is the id of the rule edited (empty: a new one).
#[derive(Debug, Clone, Default)]
pub struct RuleFields {
    pub original: String,
    pub id: String,
    pub needs: Vec<String>,
    pub communes: String,
    pub sectors: String,
    pub lead: String,
    pub others: Vec<String>,
    pub note: String,
}

impl RuleFields {
    pub fn from_form(form: &Form) -> Self {
        Self {
            original: form.text("original"),
            id: form.text("identifiant"),
            needs: form.all("besoins"),
            communes: form.text("communes"),
            sectors: form.text("secteurs"),
            lead: form.text("pilote"),
            others: form.all("invites"),
            note: form.text("note"),
        }
    }

    pub fn of(rule: &Rule) -> Self {
        Self {
            original: rule.id.clone(),
            id: rule.id.clone(),
            needs: rule.needs.iter().map(|n| n.as_str().to_owned()).collect(),
            communes: rule.communes.join(" "),
            sectors: rule.sectors.join(" "),
            lead: rule.lead.clone(),
            others: rule.others.clone(),
            note: rule.note.clone(),
        }
    }

    /// The rule, or the problems of the choices: the lead and the others are chosen among the
    /// directory's interlocutors (`known`), never typed.
    pub fn rule(&self, known: &[Interlocutor]) -> Result<Rule, Vec<FieldProblem>> {
        let mut problems = Vec::new();
        let needs = needs_of(&self.needs, "r-besoins", &mut problems);
        let exists = |id: &str| known.iter().any(|it| it.id == id);
        if !exists(&self.lead) {
            problems.push(FieldProblem::new(
                "r-pilote",
                "Choisissez l'interlocuteur pilote dans l'annuaire.",
            ));
        }
        let mut others: Vec<String> = Vec::new();
        for o in &self.others {
            if !exists(o) {
                problems.push(FieldProblem::new(
                    "r-invites",
                    "Choisissez les interlocuteurs invités dans l'annuaire.",
                ));
            } else if !others.contains(o) {
                others.push(o.clone());
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Rule {
            id: self.id.clone(),
            needs,
            communes: codes(&self.communes),
            sectors: codes(&self.sectors),
            lead: self.lead.clone(),
            others,
            note: self.note.clone(),
        })
    }
}

/// The name of interlocutor `id`, or the id itself when the directory lacks it.
fn name_of<'a>(known: &'a [Interlocutor], id: &'a str) -> &'a str {
    known
        .iter()
        .find(|it| it.id == id)
        .map_or(id, |it| it.name.as_str())
}

fn places(one: &str, many: &str, codes: &[String]) -> Option<String> {
    match codes {
        [] => None,
        [c] => Some(format!("{one} {c}")),
        _ => Some(format!("{many} {}", codes.join(", "))),
    }
}

/// A rule in French: « Besoin : Logement ou Isolement — territoire : commune 66136 ou secteur
/// 66G03. Pilote : CCAS Perpignan ; invités : CMP 66G03. »
pub fn rule_text(rule: &Rule, known: &[Interlocutor]) -> String {
    let needs = if rule.needs.is_empty() {
        "Tout besoin".to_owned()
    } else {
        let labels: Vec<&str> = rule.needs.iter().map(|n| text::need(*n).0).collect();
        format!(
            "{} : {}",
            if labels.len() == 1 {
                "Besoin"
            } else {
                "Au moins un de ces besoins"
            },
            labels.join(" ou ")
        )
    };
    let place: Vec<String> = [
        places("commune", "communes", &rule.communes),
        places("secteur", "secteurs", &rule.sectors),
    ]
    .into_iter()
    .flatten()
    .collect();
    let place = if place.is_empty() {
        "tout le territoire".to_owned()
    } else {
        place.join(" ou ")
    };
    let mut who = format!("Pilote : {}", name_of(known, &rule.lead));
    if !rule.others.is_empty() {
        let others: Vec<&str> = rule.others.iter().map(|o| name_of(known, o)).collect();
        who.push_str(&format!(" ; invités : {}", others.join(", ")));
    }
    format!("{needs} — territoire : {place}. {who}.")
}

/// Most errors listed on one page (an imported file may hold hundreds).
const MAX_SHOWN: usize = 30;

/// Where a validation error of the directory is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// The interlocutor at this index, and the field (`id`, `name`, `communes`…; empty: the
    /// whole interlocutor).
    Interlocutor(usize, String),
    /// The rule at this index, and the field (empty: the whole rule).
    Rule(usize, String),
    /// The list itself (too many entries) or something else.
    Whole,
}

/// Splits `/interlocutors/2/communes/0` (or the stored document's `/interlocutor/…`, `/rule/…`).
pub fn place(pointer: &str) -> Place {
    let mut parts = pointer.trim_start_matches('/').split('/');
    let list = parts.next().unwrap_or("");
    let Some(index) = parts.next().and_then(|i| i.parse::<usize>().ok()) else {
        return Place::Whole;
    };
    let field = parts.next().unwrap_or("").to_owned();
    match list {
        "interlocutors" | "interlocutor" => Place::Interlocutor(index, field),
        "rules" | "rule" => Place::Rule(index, field),
        _ => Place::Whole,
    }
}

/// The value an error points at (a commune or sector typed, a lead's id), quoted in its
/// message; `None` when it is not a short text.
fn value_at(doc: &Value, pointer: &str) -> Option<String> {
    let normalised = pointer
        .replacen("/interlocutor/", "/interlocutors/", 1)
        .replacen("/rule/", "/rules/", 1);
    doc.pointer(&normalised)
        .and_then(Value::as_str)
        .map(|s| s.chars().take(60).filter(|c| !c.is_control()).collect())
}

/// The French message of one error about `field` of an interlocutor (`rule` false) or a rule.
fn field_message(rule: bool, field: &str, detail: &str, value: Option<&str>) -> String {
    let value = value.unwrap_or("");
    let repeated = detail.contains("repeated");
    match field {
        "id" if detail.contains("already used") => if rule {
            "Cet identifiant est déjà celui d'une autre règle."
        } else {
            "Cet identifiant est déjà celui d'un autre interlocuteur."
        }
        .to_owned(),
        "id" => "L'identifiant compte de 2 à 40 caractères parmi les minuscules sans accent, les chiffres et le tiret (par exemple cmp-66g03).".to_owned(),
        "name" if detail.contains("already used") => {
            "Un autre interlocuteur porte déjà ce nom.".to_owned()
        }
        "name" if detail.contains("characters") && !detail.contains("control") => {
            "Indiquez le nom de l'organisation (120 caractères au plus).".to_owned()
        }
        "name" if detail.contains("control") => {
            "Le nom contient des caractères invisibles ou de contrôle : retapez-le.".to_owned()
        }
        "name" => "Le nom s'écrit exactement comme l'organisation des adhésions de ses membres, sans espace au début ni à la fin.".to_owned(),
        "communes" if detail.contains("at most") => "1 000 communes au plus.".to_owned(),
        "communes" if repeated => format!("La commune « {value} » est indiquée deux fois."),
        "communes" => format!(
            "« {value} » n'est pas un code INSEE de commune : cinq caractères, par exemple 66136 ou 2A004."
        ),
        "sectors" if detail.contains("at most") => "1 000 secteurs au plus.".to_owned(),
        "sectors" if repeated => format!("Le secteur « {value} » est indiqué deux fois."),
        "sectors" => format!(
            "« {value} » n'est pas un code de secteur de psychiatrie, par exemple 66G03."
        ),
        "needs" => "Un besoin est coché deux fois.".to_owned(),
        "contact" if detail.contains("at most") => {
            "Le contact compte 200 caractères au plus.".to_owned()
        }
        "contact" => "Le contact tient sur une ligne, sans caractère de contrôle.".to_owned(),
        "note" if detail.contains("at most") => "La note compte 300 caractères au plus.".to_owned(),
        "note" => "La note tient sur une ligne, sans caractère de contrôle.".to_owned(),
        "lead" => format!(
            "Le pilote « {value} » n'est pas (ou plus) dans l'annuaire : choisissez-en un autre."
        ),
        "others" if detail.contains("lead") => {
            "Le pilote ne figure pas aussi parmi les invités.".to_owned()
        }
        "others" if repeated => "Un invité est choisi deux fois.".to_owned(),
        "others" if detail.contains("at most") => "1 000 invités au plus.".to_owned(),
        "others" => format!(
            "L'invité « {value} » n'est pas (ou plus) dans l'annuaire : choisissez-en un autre."
        ),
        "" if detail.starts_with("never applies") => {
            // "never applies: rule 2 `logement` comes first and matches…"
            let n = detail
                .split("rule ")
                .nth(1)
                .and_then(|s| s.split(' ').next())
                .unwrap_or("?");
            let id = detail.split('`').nth(1).unwrap_or("");
            format!(
                "Cette règle ne s'appliquerait jamais : la règle n° {n} « {id} », placée avant, couvre déjà toutes ses situations. Placez la règle la plus précise en premier."
            )
        }
        _ => "Cette valeur n'est pas acceptée.".to_owned(),
    }
}

/// An error of the directory in French, as the page shows it: next to `fields`' field when the
/// error is about the item the form holds (`editing`: interlocutor or rule, its index in the list
/// sent; its fields' ids are `i-…` and `r-…`), in the summary otherwise (linked to `fallback`),
/// naming the interlocutor or rule.
pub fn french(
    errors: &[FieldError],
    doc: &DirectoryDocument,
    editing: Option<(bool, usize)>,
    fallback: &str,
) -> Vec<FieldProblem> {
    let json = serde_json::to_value(doc).unwrap_or(Value::Null);
    let mut out: Vec<FieldProblem> = Vec::new();
    for e in errors {
        let value = value_at(&json, &e.pointer);
        let problem = match place(&e.pointer) {
            Place::Interlocutor(i, field) => {
                let message = field_message(false, &field, &e.detail, value.as_deref());
                if editing == Some((false, i)) && !field.is_empty() {
                    FieldProblem::new(&format!("i-{}", form_field(&field)), message)
                } else {
                    let who = doc
                        .interlocutors
                        .get(i)
                        .map(|it| format!("Interlocuteur n° {} « {} »", i + 1, short(&it.name)))
                        .unwrap_or_else(|| format!("Interlocuteur n° {}", i + 1));
                    FieldProblem::new(fallback, format!("{who} : {message}"))
                }
            }
            Place::Rule(r, field) => {
                let message = field_message(true, &field, &e.detail, value.as_deref());
                if editing == Some((true, r)) {
                    // The whole rule (never applies): beside its identifier.
                    let id = if field.is_empty() {
                        "identifiant"
                    } else {
                        form_field(&field)
                    };
                    FieldProblem::new(&format!("r-{id}"), message)
                } else {
                    let which = doc
                        .rules
                        .get(r)
                        .map(|rule| format!("Règle n° {} « {} »", r + 1, short(&rule.id)))
                        .unwrap_or_else(|| format!("Règle n° {}", r + 1));
                    FieldProblem::new(fallback, format!("{which} : {message}"))
                }
            }
            Place::Whole => FieldProblem::new(
                fallback,
                if e.detail.contains("at most") {
                    "L'annuaire compte 500 interlocuteurs et 500 règles au plus.".to_owned()
                } else {
                    "L'annuaire n'est pas valide.".to_owned()
                },
            ),
        };
        // One message per field of the form (the first one); every other in the summary.
        let is_field = problem.field.starts_with("i-") || problem.field.starts_with("r-");
        if !(is_field && out.iter().any(|p| p.field == problem.field)) {
            out.push(problem);
        }
    }
    if out.len() > MAX_SHOWN {
        let more = out.len() - MAX_SHOWN;
        out.truncate(MAX_SHOWN);
        out.push(FieldProblem::new(
            fallback,
            format!("… et {more} autre(s) erreur(s) : corrigez d'abord celles-ci."),
        ));
    }
    out
}

/// The form's field id of a directory field.
fn form_field(field: &str) -> &'static str {
    match field {
        "id" => "identifiant",
        "name" => "nom",
        "sphere" => "sphere",
        "kind" => "type",
        "communes" => "communes",
        "sectors" => "secteurs",
        "needs" => "besoins",
        "contact" => "contact",
        "lead" => "pilote",
        "others" => "invites",
        "note" => "note",
        _ => "identifiant",
    }
}

fn short(s: &str) -> String {
    s.chars().take(60).filter(|c| !c.is_control()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::routing::Directory;

    fn cmp() -> Interlocutor {
        Interlocutor {
            id: "cmp".into(),
            name: "CMP 66G03".into(),
            sphere: Sphere::Psychiatry,
            kind: InterlocutorKind::Cmp,
            communes: vec![],
            sectors: vec!["66G03".into()],
            needs: vec![],
            contact: String::new(),
            guest: false,
        }
    }

    #[test]
    fn codes_are_split_and_upper_cased() {
        assert_eq!(codes(" 66136, 2a004;66100  "), ["66136", "2A004", "66100"]);
        assert!(codes("  ").is_empty());
    }

    #[test]
    fn a_rule_is_told_in_french() {
        let known = vec![cmp()];
        let rule = Rule {
            id: "soins".into(),
            needs: vec![Need::CareAccess, Need::Housing],
            communes: vec!["66136".into()],
            sectors: vec!["66G03".into(), "66G04".into()],
            lead: "cmp".into(),
            others: vec!["gone".into()],
            note: String::new(),
        };
        assert_eq!(
            rule_text(&rule, &known),
            "Au moins un de ces besoins : Accès aux soins ou Logement — territoire : commune 66136 \
             ou secteurs 66G03, 66G04. Pilote : CMP 66G03 ; invités : gone."
        );
        let any = Rule {
            needs: vec![],
            communes: vec![],
            sectors: vec![],
            others: vec![],
            ..rule
        };
        assert_eq!(
            rule_text(&any, &known),
            "Tout besoin — territoire : tout le territoire. Pilote : CMP 66G03."
        );
    }

    #[test]
    fn the_directorys_errors_are_told_in_french_beside_their_field() {
        let mut bad = cmp();
        bad.id = "Bad Id".into();
        bad.communes = vec!["661".into()];
        let dir = Directory {
            interlocutors: vec![cmp(), bad],
            rules: vec![],
        };
        let errors: Vec<FieldError> = dir
            .validate()
            .expect_err("invalid")
            .into_iter()
            .map(|e| {
                FieldError::new(
                    e.pointer.replacen("/interlocutor", "/interlocutors", 1),
                    e.detail,
                )
            })
            .collect();
        let doc = DirectoryDocument {
            interlocutors: dir.interlocutors.clone(),
            rules: vec![],
        };
        let shown = french(&errors, &doc, Some((false, 1)), "interlocuteurs");
        let field = |f: &str| {
            shown
                .iter()
                .find(|p| p.field == f)
                .map(|p| p.message.clone())
        };
        assert!(
            field("i-identifiant").is_some_and(|m| m.contains("2 à 40")),
            "{shown:?}"
        );
        assert!(
            field("i-communes").is_some_and(|m| m.contains("« 661 »")),
            "{shown:?}"
        );
        assert!(
            field("i-nom").is_some_and(|m| m.contains("déjà ce nom")),
            "{shown:?}"
        );
        // Not the item of the form: in the summary, naming it.
        let shown = french(&errors, &doc, None, "interlocuteurs");
        assert!(shown.iter().all(|p| p.field == "interlocuteurs"));
        assert!(
            shown[0]
                .message
                .starts_with("Interlocuteur n° 2 « CMP 66G03 » : ")
        );
    }

    #[test]
    fn an_unreachable_rule_and_a_missing_lead_are_told_in_french() {
        let m = field_message(
            true,
            "",
            "never applies: rule 1 `tout` comes first and matches every case this rule matches; put the more specific rule first",
            None,
        );
        assert!(m.contains("la règle n° 1 « tout »"), "{m}");
        assert!(
            field_message(true, "lead", "no interlocutor has the id `x`", Some("x"))
                .contains("« x »")
        );
        assert_eq!(place("/rule/3/lead"), Place::Rule(3, "lead".into()));
        assert_eq!(
            place("/interlocutors/0"),
            Place::Interlocutor(0, String::new())
        );
        assert_eq!(place("/rules"), Place::Whole);
    }
}
