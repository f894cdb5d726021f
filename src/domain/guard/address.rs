//! Street addresses, read on normalised (accent-free) text.
//!
//! An address is made of components, and a run of components separated only by commas, spaces
//! and small words (`au`, `de la`…) is one address:
//! - **strong** components identify on their own: a street number with a street type and a
//!   street name (`12 rue des Lilas`, `7 r. Jean Jaurès`, `au 12 de la rue Foch`, `3 bis av.
//!   Foch`), a street with its number after it (`rue des Lilas n°12`), a flat number (`appt 34`,
//!   `appartement n° 12`, `logement n° 5`);
//! - **weak** components identify only together: a named residence, estate, hamlet or
//!   *lieu-dit* (`résidence Les Mimosas`), a building (`bât. B`), a staircase (`esc. 2`);
//! - **neutral** ones only join the others (`3e étage`).
//!
//! Counts whose noun is also a street type pass: types that are ordinary nouns (`place`,
//! `cours`, `passage`, `voie`, `cité`, `résidence`, `ch.`, `r.`…) need a capitalised name that
//! is not an acronym after them (`1 place Foch`, but not `1 place en résidence sociale`, `2 cours
//! de FLE`, `1 passage aux urgences`, `2 ch. et un séjour`); plain street types (`rue`, `avenue`,
//! `bd`, `impasse`, `allée`, `chemin`…) take any name (`12 rue des lilas`). A street without
//! number (`la rue principale`) and a count of rooms (`appartement 3 pièces`) pass.

use std::sync::LazyLock;

use regex::Regex;

use super::{Found, Reason, before, re};

/// A street type and the spaces after it.
static TYPE: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?i)\b(?:(?P<w>rue|avenue|av|ave|boulevard|bd|bld|bvd|impasse|allee|chemin|route|rte|quai|",
        r"square|faubourg|fbg|fg|rond-point|esplanade|promenade|traverse|montee|sentier|ruelle|venelle|",
        r"chaussee|lotissement|hameau|lieu-dit|lieudit|cite|residence|place|cours|crs|passage|voie|",
        r"villa|domaine|clos|parvis|mail|galerie|port)\b\.?[ \t]+",
        r"|(?P<a>r|ch|chem|pl|sq|imp|all|lot|res|pass|prom|boul)\.[ \t]*)"
    ))
});
/// A street number (and `bis`, `ter`, a letter, `de la`…) right before a street type.
static NUMBER_BEFORE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)(?:^|(?u:[^0-9/.,]))(?P<n>\d{1,4})[ \t]*(?:(?:bis|ter|quater)\b|(?-i:[A-Da-d])\b)?[ \t]*,?[ \t]*(?:(?:de[ \t]+la|de[ \t]+l'|du|de)[ \t]*)?$",
    )
});
/// A street number after the street's name.
static NUMBER_AFTER: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)^[ \t]*,?[ \t]*(?:n°|no\b|n\.|numero\b|num\b\.?)[ \t]*\d{1,4}\b(?:[ \t]*(?:bis|ter)\b)?",
    )
});
static FLAT: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?P<w>appt|apt|appart|app|appartement|logement|log)\b\.?[ \t]*(?P<no>n°|no\b|n\.|numero\b)?[ \t]*\d{1,4}\b",
    )
});
static NOT_A_FLAT_NUMBER: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)^[ \t]*(?:pieces?|p\b|m2|m\b|ans?\b|eme|e\b|etages?|personnes?|chambres?|enfants?|mois|jours?)",
    )
});
static BUILDING: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i:\b(?:batiment|bat|bt|esc|escalier|immeuble|imm)\b\.?)[ \t]*(?:[A-Z]{1,2}|\d{1,3}[A-Z]?)\b",
    )
});
static FLOOR: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)\b(?:\d{1,2}[ \t]*(?:e|eme|er|ere)[ \t]+etage|rdc|rez-de-chaussee)\b")
});
static JOIN: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)^[ \t,;\-()]*(?:(?:au|a|du|de|la|le|l'|des|et)\b[ \t,;\-]*)*$"));

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Strength {
    Neutral,
    Weak,
    Strong,
}

/// A street type's canonical name, whether it is also an ordinary noun, and whether it names
/// a residence or an estate rather than a street.
fn street_type(word: &str) -> (&'static str, bool, bool) {
    match word.to_ascii_lowercase().as_str() {
        "rue" => ("rue", false, false),
        "r" => ("rue", true, false),
        "avenue" | "av" | "ave" => ("avenue", false, false),
        "boulevard" | "bd" | "bld" | "bvd" | "boul" => ("boulevard", false, false),
        "impasse" | "imp" => ("impasse", false, false),
        "allee" => ("allee", false, false),
        "all" => ("allee", true, false),
        "chemin" | "chem" => ("chemin", false, false),
        "ch" => ("chemin", true, false),
        "route" | "rte" => ("route", true, false),
        "quai" => ("quai", false, false),
        "square" | "sq" => ("square", false, false),
        "faubourg" | "fbg" | "fg" => ("faubourg", false, false),
        "rond-point" => ("rond-point", false, false),
        "esplanade" => ("esplanade", false, false),
        "promenade" => ("promenade", false, false),
        "prom" => ("promenade", true, false),
        "traverse" => ("traverse", false, false),
        "montee" => ("montee", false, false),
        "sentier" => ("sentier", false, false),
        "ruelle" => ("ruelle", false, false),
        "venelle" => ("venelle", false, false),
        "chaussee" => ("chaussee", false, false),
        "lotissement" => ("lotissement", false, true),
        "lot" => ("lotissement", true, true),
        "hameau" => ("hameau", false, true),
        "lieu-dit" | "lieudit" => ("lieu-dit", false, true),
        "cite" => ("cite", true, true),
        "residence" | "res" => ("residence", true, true),
        "place" | "pl" => ("place", true, false),
        "cours" | "crs" => ("cours", true, false),
        "passage" | "pass" => ("passage", true, false),
        "voie" => ("voie", true, false),
        "villa" => ("villa", true, true),
        "domaine" => ("domaine", true, true),
        "clos" => ("clos", true, true),
        "parvis" => ("parvis", true, false),
        "mail" => ("mail", true, false),
        "galerie" => ("galerie", true, false),
        "port" => ("port", true, false),
        _ => ("", true, false),
    }
}

const PARTICLES: &[&str] = &["de", "du", "des", "la", "le", "les", "l'", "d'"];

/// Words that end a street name even when capitalised or, after a plain street type, that are
/// not one.
const NOT_NAMES: &[&str] = &[
    "a", "au", "aux", "avec", "chez", "dans", "depuis", "donc", "elle", "elles", "en", "est", "et",
    "il", "ils", "je", "m", "mais", "madame", "mme", "monsieur", "ne", "nous", "on", "ou", "par",
    "pas", "pendant", "pour", "puis", "qu'", "que", "qui", "sans", "sur", "vers", "vous", "y",
];

/// Acronyms of the field that follow a count (`2 cours de FLE`, `1 place d'EHPAD`).
fn acronym(word: &str) -> bool {
    let letters = word.chars().filter(char::is_ascii_alphabetic).count();
    let all_caps = word.chars().all(|c| !c.is_lowercase());
    all_caps
        && (letters <= 4
            || matches!(
                word,
                "EHPAD" | "SAMSAH" | "SAVS" | "CHRS" | "CADA" | "FJT" | "ESAT" | "SIAO" | "IFSI"
            ))
}

/// The next word from byte `i` (after at most two spaces): its start and end; an elided
/// article (`l'`, `d'`) is a word of its own.
fn next_word(t: &str, i: usize) -> Option<(usize, usize)> {
    let b = t.as_bytes();
    let mut s = i;
    while s < b.len() && s - i < 2 && matches!(b[s], b' ' | b'\t') {
        s += 1;
    }
    let mut e = s;
    for (k, c) in t[s..].char_indices() {
        if c.is_alphanumeric() || (c == '-' && k > 0) {
            e = s + k + c.len_utf8();
        } else if c == '\'' && k > 0 {
            e = s + k + 1;
            break;
        } else {
            break;
        }
    }
    (e > s).then_some((s, e))
}

/// End of the street name starting at `i`, if there is one.
fn street_name_end(t: &str, i: usize, ordinary_noun: bool) -> Option<usize> {
    let mut pos = i;
    let mut end = None;
    let mut after_particle = false;
    // After an ordinary noun, a number alone (`3 ch. de 9 m2`) is not a name: a capital is.
    let mut capital = !ordinary_noun;
    while let Some((s, e)) = next_word(t, pos) {
        let word = &t[s..e];
        let lower = word.to_ascii_lowercase();
        let first = end.is_none();
        let starts_upper = word.starts_with(|c: char| c.is_uppercase());
        let starts_digit = word.starts_with(|c: char| c.is_ascii_digit());
        if PARTICLES.contains(&lower.as_str()) {
            after_particle = true;
        } else if NOT_NAMES.contains(&lower.as_str()) {
            break;
        } else if first && !ordinary_noun && !starts_digit {
            end = Some(e);
            after_particle = false;
        } else if (starts_upper && !(ordinary_noun && first && acronym(word)))
            || (starts_digit && after_particle)
        {
            end = Some(e);
            capital |= starts_upper;
            after_particle = false;
        } else {
            break;
        }
        pos = e;
    }
    end.filter(|_| capital)
}

struct Component {
    start: usize,
    end: usize,
    strength: Strength,
}

fn components(t: &str) -> Vec<Component> {
    let mut out = Vec::new();
    for c in TYPE.captures_iter(t) {
        let (Some(m), Some(word)) = (c.get(0), c.name("w").or_else(|| c.name("a"))) else {
            continue;
        };
        let (_, ordinary_noun, residence) = street_type(word.as_str());
        let Some(name_end) = street_name_end(t, m.end(), ordinary_noun) else {
            continue;
        };
        if let Some(n) = NUMBER_BEFORE
            .captures(before(t, m.start(), 32))
            .and_then(|c| c.name("n"))
        {
            let start = m.start() - (before(t, m.start(), 32).len() - n.start());
            out.push(Component {
                start,
                end: name_end,
                strength: Strength::Strong,
            });
        } else if let Some(after) = NUMBER_AFTER.find(&t[name_end..]) {
            out.push(Component {
                start: m.start(),
                end: name_end + after.end(),
                strength: Strength::Strong,
            });
        } else if residence {
            out.push(Component {
                start: m.start(),
                end: name_end,
                strength: Strength::Weak,
            });
        }
    }
    for c in FLAT.captures_iter(t) {
        let (Some(m), Some(word)) = (c.get(0), c.name("w")) else {
            continue;
        };
        let needs_number_word = word.as_str().to_ascii_lowercase().starts_with("log");
        if (needs_number_word && c.name("no").is_none())
            || NOT_A_FLAT_NUMBER.is_match(&t[m.end()..])
        {
            continue;
        }
        out.push(Component {
            start: m.start(),
            end: m.end(),
            strength: Strength::Strong,
        });
    }
    for m in BUILDING.find_iter(t) {
        out.push(Component {
            start: m.start(),
            end: m.end(),
            strength: Strength::Weak,
        });
    }
    for m in FLOOR.find_iter(t) {
        out.push(Component {
            start: m.start(),
            end: m.end(),
            strength: Strength::Neutral,
        });
    }
    out.sort_by_key(|c| (c.start, std::cmp::Reverse(c.end)));
    out
}

pub(crate) fn find(t: &str, out: &mut Vec<Found>) {
    let comps = components(t);
    let mut i = 0;
    while i < comps.len() {
        // The run joined to this component; its span leaves out neutral components at the edges.
        let mut reach = comps[i].end;
        let mut span: Option<(usize, usize)> = None;
        let mut strong = false;
        let mut weak = 0;
        let mut j = i;
        while j < comps.len() {
            let c = &comps[j];
            let joined = j == i
                || c.start <= reach
                || (c.start - reach <= 25
                    && t.get(reach..c.start).is_some_and(|g| JOIN.is_match(g)));
            if !joined {
                break;
            }
            reach = reach.max(c.end);
            if c.strength != Strength::Neutral {
                span = Some(span.map_or((c.start, c.end), |(s, e)| (s, e.max(c.end))));
            }
            strong |= c.strength == Strength::Strong;
            weak += usize::from(c.strength == Strength::Weak);
            j += 1;
        }
        if let Some((start, end)) = span
            && (strong || weak >= 2)
        {
            out.push(Found::new(Reason::Address, start, end));
        }
        i = j;
    }
}

/// A canonical form of an address span: numbers first, then the street type and name words,
/// lower case, without articles.
pub(crate) fn key(slice: &str) -> Option<String> {
    let mut numbers = Vec::new();
    let mut words = Vec::new();
    for w in slice
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let lower = w.to_ascii_lowercase();
        if lower.chars().all(|c| c.is_ascii_digit())
            || matches!(lower.as_str(), "bis" | "ter" | "quater")
        {
            numbers.push(lower);
            continue;
        }
        let skip = [
            "de", "du", "des", "la", "le", "les", "l", "d", "au", "a", "n", "no", "numero", "num",
        ];
        if skip.contains(&lower.as_str()) {
            continue;
        }
        let (canonical, _, _) = street_type(&lower);
        words.push(if canonical.is_empty() {
            lower
        } else {
            canonical.to_owned()
        });
    }
    if words.is_empty() {
        return None;
    }
    numbers.extend(words);
    Some(numbers.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        find(text, &mut out);
        out.into_iter().map(|f| &text[f.start..f.end]).collect()
    }

    #[test]
    fn addresses() {
        for (text, address) in [
            ("Vit au 12 rue des Lilas depuis 2019.", "12 rue des Lilas"),
            ("habite au 12 de la rue Foch", "12 de la rue Foch"),
            ("au 5 de l'avenue Foch", "5 de l'avenue Foch"),
            ("rue des Lilas n°12, 2e etage", "rue des Lilas n°12"),
            (
                "residence Les Mimosas, bat. B, appt 34",
                "residence Les Mimosas, bat. B, appt 34",
            ),
            (
                "residence Les Mimosas, bat. B.",
                "residence Les Mimosas, bat. B",
            ),
            ("7 r. Jean Jaures", "7 r. Jean Jaures"),
            ("45 bd Clemenceau, 2e etage", "45 bd Clemenceau"),
            (
                "au 3 bis avenue de la Republique",
                "3 bis avenue de la Republique",
            ),
            ("18 ter place de la Loge", "18 ter place de la Loge"),
            ("10, chemin du Mas Bresson", "10, chemin du Mas Bresson"),
            ("12 rue des lilas", "12 rue des lilas"),
            ("appartement n° 12", "appartement n° 12"),
            ("2 route de Thuir", "2 route de Thuir"),
            ("1 place du 8 Mai 1945", "1 place du 8 Mai"),
            ("bat. B, 3e etage, appt 34", "bat. B, 3e etage, appt 34"),
        ] {
            assert_eq!(spans(text), vec![address], "{text}");
        }
    }

    #[test]
    fn counts_and_streets_without_number_pass() {
        for text in [
            "1 passage aux urgences",
            "2 cours de FLE",
            "1 place en residence sociale",
            "2 ch. et un sejour",
            "Il habite la rue principale du village depuis 30 ans.",
            "Appartement au 3e etage sans ascenseur, 45 m2",
            "appartement 3 pieces",
            "le batiment B de l'hopital",
            "1 place d'EHPAD",
            "3 ch. de 9 m2, un salon",
            "2 cours par semaine",
            "vit en residence autonomie",
        ] {
            assert!(spans(text).is_empty(), "{text}: {:?}", spans(text));
        }
    }

    #[test]
    fn keys_ignore_spelling() {
        assert_eq!(key("12 rue des Lilas"), key("rue des lilas n°12"));
        assert_eq!(key("au 12 de la rue Foch").as_deref(), Some("12 rue foch"));
        assert_eq!(key("12 r. Foch"), key("12, rue Foch"));
    }
}
