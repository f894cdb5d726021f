//! Pseudonymisation guard (docs/design.md §5): free text is scanned for direct identifiers before it is
//! encrypted and stored. A hit names the field, the kind and the character offsets (Unicode
//! scalar values, end exclusive), and never echoes the text.
//!
//! Kinds and what counts:
//! - `email`: `local@domain.tld`;
//! - `phone`: French numbers, `06 12 34 56 78`, `06.12.34.56.78`, `0612345678`, `+33 6 12 34 56 78`,
//!   `+33 (0)6 …`, `0033 6 …`, with spaces, dots or dashes;
//! - `nir`: a social security number (13 characters, `2A`/`2B` for Corsica, spaces allowed) whose
//!   two-digit key is valid; numbers with a wrong key are not NIRs and pass;
//! - `iban`: an IBAN whose ISO 13616 checksum is valid;
//! - `birth_date`: a full calendar date (`12/03/1980`, `1980-03-12`, `12 mars 1980`) that is
//!   valid and falls between 1900 and twelve years before today, or any full date right after
//!   "né(e) le", "date de naissance", "DDN". Recent dates (meetings, hospital stays) and
//!   partial dates (`03/2024`, `mars 2024`) pass;
//! - `address`: a street number followed by a street type (`12 rue …`, `3 bis avenue …`, `bd`,
//!   `impasse`, `allée`, `chemin`…).
//!
//! Ages, counts, years, times, amounts, sector codes and case references pass.

use std::sync::LazyLock;

use chrono::{Datelike, NaiveDate};
use regex::Regex;
use serde::Serialize;
use utoipa::ToSchema;

/// The kinds of identifier the guard looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IdentifierKind {
    Email,
    Phone,
    Nir,
    Iban,
    BirthDate,
    Address,
}

impl IdentifierKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentifierKind::Email => "email",
            IdentifierKind::Phone => "phone",
            IdentifierKind::Nir => "nir",
            IdentifierKind::Iban => "iban",
            IdentifierKind::BirthDate => "birth_date",
            IdentifierKind::Address => "address",
        }
    }
}

/// One identifier found in a field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Hit {
    pub field: String,
    pub kind: IdentifierKind,
    /// Character offset of the first character.
    pub start: usize,
    /// Character offset just past the last character.
    pub end: usize,
}

fn re(pattern: &str) -> Regex {
    // The patterns are constants checked by the unit tests; a typo is a bug caught there.
    Regex::new(pattern).unwrap_or_else(|e| panic!("identifier guard pattern: {e}"))
}

static EMAIL: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)[a-z0-9._%+\-]+@[a-z0-9\-]+(?:\.[a-z0-9\-]+)*\.[a-z]{2,}"));
static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?:(?:\+|00)\s?33[\s.\-]?(?:\(0\)[\s.\-]?)?|\b0)[1-9](?:[\s.\-]?[0-9]{2}){4}")
});
static NIR: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b[1-478][\s.]?[0-9]{2}[\s.]?[0-9]{2}[\s.]?(?:[0-9]{2}|2A|2B)[\s.]?[0-9]{3}[\s.]?[0-9]{3}[\s.]?[0-9]{2}\b",
    )
});
static IBAN: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)\b[a-z]{2}[0-9]{2}(?:[\s]?[a-z0-9]{4}){2,7}(?:[\s]?[a-z0-9]{1,4})?\b")
});
static NUMERIC_DATE: LazyLock<Regex> = LazyLock::new(|| {
    re(r"\b(?:([0-9]{1,2})[/.\-]([0-9]{1,2})[/.\-]([0-9]{4})|([0-9]{4})-([0-9]{2})-([0-9]{2}))\b")
});
static TEXT_DATE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b([0-9]{1,2})(?:er)?\s+(janvier|f[ée]vrier|mars|avril|mai|juin|juillet|ao[uû]t|septembre|octobre|novembre|d[ée]cembre)\s+([0-9]{4})\b",
    )
});
static BIRTH_CONTEXT: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)(?:\bn[ée]e?\s+le|date\s+de\s+naissance|\bddn)\s*:?\s*$"));
static ADDRESS: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b[0-9]{1,4}\s?(?:bis|ter|quater|[a-d]\b)?,?\s+(?:rue|avenue|av\.?|boulevard|bd|bld|place|pl\.|impasse|imp\.|all[ée]e|chemin|ch\.|route|rte|quai|cours|square|sq\.|passage|cit[ée]|r[ée]sidence|lotissement|faubourg|fbg|voie|sentier|esplanade|rond-point|promenade|hameau|lieu-dit|villa|traverse|mont[ée]e)\s+\S",
    )
});

const MONTHS: [&str; 12] = [
    "janvier",
    "fevrier",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "aout",
    "septembre",
    "octobre",
    "novembre",
    "decembre",
];

fn month_number(name: &str) -> Option<u32> {
    let folded: String = name
        .to_lowercase()
        .chars()
        .map(|c| match c {
            'é' => 'e',
            'û' => 'u',
            other => other,
        })
        .collect();
    MONTHS
        .iter()
        .position(|m| *m == folded)
        .and_then(|i| u32::try_from(i + 1).ok())
}

/// NIR key check: 97 − (number mod 97), with 2A → 19 and 2B → 18 for Corsica.
fn nir_key_is_valid(digits: &str) -> bool {
    let cleaned: String = digits
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_uppercase();
    if cleaned.len() != 15 {
        return false;
    }
    let (body, key) = cleaned.split_at(13);
    let body = body.replace("2A", "19").replace("2B", "18");
    let (Ok(number), Ok(key)) = (body.parse::<u64>(), key.parse::<u64>()) else {
        return false;
    };
    97 - (number % 97) == key
}

/// ISO 13616 check: move the first four characters to the end, letters to numbers, mod 97 = 1.
fn iban_is_valid(text: &str) -> bool {
    let cleaned: String = text
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_uppercase();
    if !(15..=34).contains(&cleaned.len()) {
        return false;
    }
    let rearranged = format!("{}{}", &cleaned[4..], &cleaned[..4]);
    let mut remainder: u32 = 0;
    for c in rearranged.chars() {
        let value = match c {
            '0'..='9' => c as u32 - '0' as u32,
            'A'..='Z' => c as u32 - 'A' as u32 + 10,
            _ => return false,
        };
        let (factor, value) = if value >= 10 {
            (100, value)
        } else {
            (10, value)
        };
        remainder = (remainder * factor + value) % 97;
    }
    remainder == 1
}

/// The last four digit pairs of a phone number use one separator throughout (`06 12 34 56 78`,
/// `0612345678`), which tells a phone number from a longer code that happens to contain one.
fn uniform_pair_separators(number: &str) -> bool {
    let mut separators = Vec::new();
    let mut chars = number.chars().rev().peekable();
    for _ in 0..4 {
        // Two digits, then an optional separator.
        for _ in 0..2 {
            if !chars.next().is_some_and(|c| c.is_ascii_digit()) {
                return false;
            }
        }
        match chars.peek() {
            Some(c) if !c.is_ascii_digit() && *c != '(' && *c != ')' => {
                separators.push(Some(*c));
                chars.next();
            }
            _ => separators.push(None),
        }
    }
    separators.windows(2).all(|w| w[0] == w[1])
}

/// Byte offset just past the street name starting at `start`.
fn street_name_end(text: &str, start: usize) -> usize {
    const PARTICLES: [&str; 9] = ["de", "des", "du", "la", "le", "les", "l'", "d'", "et"];
    let mut end = start;
    let mut pos = start;
    let mut first = true;
    for word in text[start..].split_inclusive(char::is_whitespace) {
        let bare = word.trim_end().trim_end_matches([',', '.', ';', ':', ')']);
        let lower = bare.to_lowercase();
        let is_name = bare
            .chars()
            .next()
            .is_some_and(|c| c.is_uppercase() || c.is_ascii_digit());
        let particle = PARTICLES
            .iter()
            .any(|p| lower == *p || (p.ends_with('\'') && lower.starts_with(p)));
        if bare.is_empty() || !(first || is_name || particle) {
            break;
        }
        first = false;
        let stop = bare.len() < word.trim_end().len();
        if is_name || !particle || lower.contains('\'') {
            end = pos + bare.len();
        }
        pos += word.len();
        if stop {
            break;
        }
    }
    end.max(start + 1)
}

/// A scanner bound to "today" (birth dates are judged relative to it).
pub struct Guard {
    today: NaiveDate,
}

impl Guard {
    pub fn new(today: NaiveDate) -> Self {
        Self { today }
    }

    fn plausible_birth_date(&self, year: i32, month: u32, day: u32, in_context: bool) -> bool {
        let Some(date) = NaiveDate::from_ymd_opt(year, month, day) else {
            return false;
        };
        if date > self.today || year < 1900 {
            return false;
        }
        in_context || year <= self.today.year() - 12
    }

    /// Every identifier in `text`, in order of appearance. `field` names the JSON member.
    pub fn scan(&self, field: &str, text: &str) -> Vec<Hit> {
        let mut spans: Vec<(IdentifierKind, usize, usize)> = Vec::new();
        let mut push = |kind, start, end| spans.push((kind, start, end));

        for m in EMAIL.find_iter(text) {
            push(IdentifierKind::Email, m.start(), m.end());
        }
        for m in IBAN.find_iter(text) {
            if iban_is_valid(m.as_str()) {
                push(IdentifierKind::Iban, m.start(), m.end());
            }
        }
        for m in NIR.find_iter(text) {
            if nir_key_is_valid(m.as_str()) {
                push(IdentifierKind::Nir, m.start(), m.end());
            }
        }
        for m in PHONE.find_iter(text) {
            // Not part of a longer run of digits (a NIR, an IBAN, an account number).
            let before = text[..m.start()].chars().next_back();
            let after = text[m.end()..].chars().next();
            if before.is_some_and(|c| c.is_ascii_digit())
                || after.is_some_and(|c| c.is_ascii_digit())
                || !uniform_pair_separators(m.as_str())
            {
                continue;
            }
            push(IdentifierKind::Phone, m.start(), m.end());
        }
        for c in NUMERIC_DATE.captures_iter(text) {
            let Some(whole) = c.get(0) else { continue };
            let num = |i: usize| c.get(i).and_then(|m| m.as_str().parse::<i64>().ok());
            let (day, month, year) = match (num(1), num(2), num(3)) {
                (Some(d), Some(m), Some(y)) => (d, m, y),
                _ => match (num(6), num(5), num(4)) {
                    (Some(d), Some(m), Some(y)) => (d, m, y),
                    _ => continue,
                },
            };
            let context = BIRTH_CONTEXT.is_match(&text[..whole.start()]);
            let (Ok(year), Ok(month), Ok(day)) = (
                i32::try_from(year),
                u32::try_from(month),
                u32::try_from(day),
            ) else {
                continue;
            };
            if self.plausible_birth_date(year, month, day, context) {
                push(IdentifierKind::BirthDate, whole.start(), whole.end());
            }
        }
        for c in TEXT_DATE.captures_iter(text) {
            let Some(whole) = c.get(0) else { continue };
            let day = c.get(1).and_then(|m| m.as_str().parse::<u32>().ok());
            let month = c.get(2).and_then(|m| month_number(m.as_str()));
            let year = c.get(3).and_then(|m| m.as_str().parse::<i32>().ok());
            let context = BIRTH_CONTEXT.is_match(&text[..whole.start()]);
            if let (Some(d), Some(m), Some(y)) = (day, month, year)
                && self.plausible_birth_date(y, m, d, context)
            {
                push(IdentifierKind::BirthDate, whole.start(), whole.end());
            }
        }
        for m in ADDRESS.find_iter(text) {
            // The match ends on the first character of the street name: extend it over the name
            // (capitalised words and particles such as "de", "des", "du", "la").
            let end = street_name_end(text, m.end() - 1);
            push(IdentifierKind::Address, m.start(), end);
        }

        // Overlaps: keep the earliest, longest span (an IBAN is not also a phone number).
        spans.sort_by(|a, b| a.1.cmp(&b.1).then(b.2.cmp(&a.2)));
        let mut kept: Vec<(IdentifierKind, usize, usize)> = Vec::new();
        for span in spans {
            if kept.last().is_some_and(|last| span.1 < last.2) {
                continue;
            }
            kept.push(span);
        }
        kept.into_iter()
            .map(|(kind, start, end)| Hit {
                field: field.to_owned(),
                kind,
                start: text[..start].chars().count(),
                end: text[..end].chars().count(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> Guard {
        Guard::new(NaiveDate::from_ymd_opt(2026, 11, 23).unwrap())
    }

    fn kinds(text: &str) -> Vec<IdentifierKind> {
        guard()
            .scan("f", text)
            .into_iter()
            .map(|h| h.kind)
            .collect()
    }

    #[test]
    fn key_checks() {
        assert!(nir_key_is_valid("1 85 05 78 006 084 91"));
        assert!(!nir_key_is_valid("1 85 05 78 006 084 92"));
        assert!(iban_is_valid("FR76 3000 6000 0112 3456 7890 189"));
        assert!(!iban_is_valid("FR76 3000 6000 0112 3456 7890 188"));
    }

    #[test]
    fn offsets_are_in_characters() {
        let hits = guard().scan("situation", "Né à Perpignan, tél 06 12 34 56 78.");
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].kind, IdentifierKind::Phone);
        assert_eq!((hits[0].start, hits[0].end), (20, 34));
        assert_eq!(hits[0].field, "situation");
    }

    #[test]
    fn simple_kinds() {
        assert_eq!(
            kinds("écrire à jean.dupont@example.fr svp"),
            vec![IdentifierKind::Email]
        );
        assert_eq!(
            kinds("habite 12 rue des Lilas"),
            vec![IdentifierKind::Address]
        );
        assert_eq!(kinds("né le 03/04/2020"), vec![IdentifierKind::BirthDate]);
        assert!(kinds("réunion le 03/04/2026").is_empty());
    }
}
