//! Names of persons, read on normalised (accent-free) text: the words after a civil title, and
//! the parts of the identity a referral carries.
//!
//! # After a civil title
//!
//! `M.`, `M`, `Mr`, `MM.`, `Mme`, `Mmes`, `Mlle`, `Melle`, `Dr`, `Pr`, `Me`, `Mtre` (as written, with or
//! without the dot) and `Monsieur`, `Madame`, `Mademoiselle`, `Messieurs`, `Mesdames`,
//! `Docteur`, `Professeur`, `Maître` (any case) are followed by a name when the next words
//! (particles such as `de`, `Le`, `d'` allowed in between) include a capitalised word of two
//! letters or more that is not an ordinary word (an article, a pronoun, a role such as `maire`
//! or `juge`, a weekday…). An initial or a placeholder (`Mme X.`, `M. A`, `Mme X`, `M. Y…`,
//! `Mme XXX`, `M. Untel`) is what the guard asks for and passes; `Monsieur le maire`, `Madame
//! la juge`, `Mme, 45 ans`, `Monsieur vit seul` pass. A title inside a street or an
//! institution's name (`rue du Docteur Roux`, `hôpital du Dr …`) is not a person's.
//!
//! # The identity's parts
//!
//! The last and first names given for linkage are looked for anywhere, compared on their
//! letters only (case, accents, hyphens, dots and apostrophes ignored): `Benali`, `BENALI`,
//! `Ben-Ali`, `B.E.N.A.L.I`, `B E N A L I` all match `Benali`; each part of four letters or
//! more of a compound name (`Jean-Pierre`, `Benali-Martin`) is looked for alone too. A match
//! must start and end on word boundaries (`Anne` is not found in `année`), and words split by
//! spaces only match where the name itself is split (`Jean Pierre` for `Jean-Pierre`) or letter
//! by letter, so that `le grand` is not `Legrand`.

use std::sync::LazyLock;

use regex::Regex;
use zeroize::Zeroizing;

use super::normalise::Normalised;
use super::{Found, IdentityParts, Reason, before, re};

static TITLE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\b(?:(?:M|MM|Mr|MR|Mme|MME|Mmes|Mlle|MLLE|Mlles|Melle|MELLE|Melles|Dr|DR|Dre|Drs|Pr|Me|Mtre)\b\.?|(?i:monsieur|madame|mademoiselle|messieurs|mesdames|docteure?|professeure?|maitre)\b)",
    )
});
/// A street or an institution whose name holds a title.
static NAMED_AFTER: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?:rue|r\.|avenue|av\.?|bd|boulevard|place|pl\.|impasse|allee|chemin|route|quai|square|cours|passage|hopital|centre|clinique|foyer|ehpad|college|lycee|ecole|residence|fondation|institut|cite|groupe|maison|pole|service)[ \t]+(?:du|de la|des|de)?[ \t]*$",
    )
});

/// Lower-case words that a capital after a title does not make a name.
const ORDINARY: &[&str] = &[
    "a",
    "adjoint",
    "adjointe",
    "ainsi",
    "alors",
    "ami",
    "amie",
    "apres",
    "assistant",
    "assistante",
    "au",
    "aucun",
    "aucune",
    "aussi",
    "aux",
    "avait",
    "avant",
    "avec",
    "bailleur",
    "ca",
    "capitaine",
    "car",
    "ccas",
    "ce",
    "cela",
    "celle",
    "celui",
    "cependant",
    "ces",
    "cet",
    "cette",
    "cf",
    "chef",
    "cheffe",
    "chez",
    "chs",
    "chu",
    "cmp",
    "comme",
    "commissaire",
    "compagne",
    "compagnon",
    "conjoint",
    "conjointe",
    "conseiller",
    "conseillere",
    "coordinateur",
    "coordinatrice",
    "curateur",
    "curatrice",
    "d'",
    "dans",
    "de",
    "decembre",
    "depuis",
    "depute",
    "deputee",
    "des",
    "dimanche",
    "directeur",
    "directrice",
    "dit",
    "doit",
    "donc",
    "du",
    "educateur",
    "educatrice",
    "elle",
    "elles",
    "empp",
    "en",
    "encore",
    "enfin",
    "ensuite",
    "entre",
    "epoux",
    "epouse",
    "est",
    "et",
    "etait",
    "explique",
    "fevrier",
    "fille",
    "fils",
    "frere",
    "gardien",
    "gardienne",
    "il",
    "ils",
    "infirmier",
    "infirmiere",
    "janvier",
    "je",
    "jeudi",
    "juge",
    "juillet",
    "juin",
    "la",
    "le",
    "les",
    "leur",
    "leurs",
    "lieutenant",
    "lors",
    "lui",
    "lundi",
    "mai",
    "maire",
    "mais",
    "mandataire",
    "mardi",
    "mars",
    "me",
    "medecin",
    "meme",
    "mercredi",
    "mere",
    "mes",
    "ministre",
    "mon",
    "n'",
    "ne",
    "ni",
    "non",
    "nous",
    "novembre",
    "octobre",
    "oui",
    "on",
    "or",
    "ou",
    "par",
    "pas",
    "pendant",
    "pere",
    "peut",
    "plus",
    "plusieurs",
    "pour",
    "pourtant",
    "prefet",
    "prefete",
    "presente",
    "president",
    "presidente",
    "procureur",
    "procureure",
    "psychiatre",
    "puis",
    "quand",
    "que",
    "qui",
    "referent",
    "referente",
    "refuse",
    "responsable",
    "reste",
    "s'",
    "sa",
    "samedi",
    "sans",
    "se",
    "selon",
    "semble",
    "septembre",
    "sera",
    "serait",
    "ses",
    "si",
    "soeur",
    "son",
    "sont",
    "sort",
    "sous",
    "souhaite",
    "suite",
    "sur",
    "tes",
    "toujours",
    "tous",
    "tout",
    "toute",
    "toutes",
    "tres",
    "tuteur",
    "tutrice",
    "un",
    "une",
    "va",
    "vendredi",
    "veut",
    "vit",
    "voisin",
    "voisine",
    "vous",
    "y",
    "aout",
    "avril",
    "accepte",
    "habite",
];

/// Particles of a name (`Mme de La Tour`, `M. Le Gall`, `Mme d'Almeida`).
const PARTICLES: &[&str] = &[
    "de", "d'", "du", "des", "la", "le", "van", "von", "der", "den", "di", "da", "dos", "del",
    "ben", "bin", "el", "al", "ibn", "mac", "mc", "st", "ste",
];

/// Placeholders that stand for a name.
const PLACEHOLDERS: &[&str] = &[
    "untel",
    "unetelle",
    "unetel",
    "trucmuche",
    "machin",
    "chose",
    "truc",
];

/// The next word after at most two spaces: start, end (a trailing `.` or `...` of an initial
/// is kept), and whether it ended with an apostrophe.
fn next_word(t: &str, i: usize) -> Option<(usize, usize)> {
    let b = t.as_bytes();
    let mut s = i;
    while s < b.len() && s - i < 2 && matches!(b[s], b' ' | b'\t') {
        s += 1;
    }
    let mut e = s;
    for (k, c) in t[s..].char_indices() {
        if c.is_alphabetic() || (k > 0 && c == '-') {
            e = s + k + c.len_utf8();
        } else if k > 0 && c == '\'' {
            // `N'Diaye`, `O'Neil` are one name; `d'`, `l'` are words of their own.
            let one_capital = k == 1 && t[s..].starts_with(|c: char| c.is_uppercase());
            let capital_next = t[s + k + 1..].starts_with(|c: char| c.is_uppercase());
            if one_capital && capital_next {
                e = s + k + 1;
                continue;
            }
            e = s + k + 1;
            break;
        } else {
            break;
        }
    }
    if e == s {
        return None;
    }
    // An initial's dots: `B.`, `X…` (normalised to `...`), `J.-P.`.
    let letters = t[s..e].chars().filter(|c| c.is_alphabetic()).count();
    if letters == 1 {
        while e < b.len() && matches!(b[e], b'.' | b'-' | b'*') {
            e += 1;
            if let Some((_, e2)) = next_word(t, e).filter(|(s2, e2)| *s2 == e && e2 - s2 == 1) {
                e = e2;
            }
        }
    }
    Some((s, e))
}

enum Word {
    Name,
    Particle,
    Placeholder,
    Other,
}

fn classify(word: &str) -> Word {
    let letters: String = word
        .chars()
        .filter(|c| c.is_alphabetic() || *c == '\'')
        .collect();
    let lower = letters.to_lowercase();
    let count = letters.chars().filter(|c| c.is_alphabetic()).count();
    if (count <= 1 && !word.ends_with('\'')) || lower.chars().all(|c| c == 'x') {
        return Word::Placeholder;
    }
    if PLACEHOLDERS.contains(&lower.as_str()) {
        return Word::Placeholder;
    }
    if PARTICLES.contains(&lower.as_str()) {
        return Word::Particle;
    }
    if word.starts_with(|c: char| c.is_uppercase()) && !ORDINARY.contains(&lower.as_str()) {
        return Word::Name;
    }
    Word::Other
}

pub(crate) fn find_titled(t: &str, out: &mut Vec<Found>) {
    for m in TITLE.find_iter(t) {
        let after = &t[m.end()..];
        // A space after the title, or a letter right after its dot (`M.Dupont`).
        if !(after.starts_with([' ', '\t'])
            || (m.as_str().ends_with('.') && after.starts_with(char::is_alphabetic)))
        {
            continue;
        }
        if NAMED_AFTER.is_match(before(t, m.start(), 40)) {
            continue;
        }
        let mut pos = m.end();
        let mut span: Option<(usize, usize)> = None;
        let mut pending: Option<usize> = None;
        for _ in 0..6 {
            let Some((s, e)) = next_word(t, pos) else {
                break;
            };
            match classify(&t[s..e]) {
                Word::Name => {
                    let start = pending.take().unwrap_or(s);
                    span = Some(span.map_or((start, e), |(a, _)| (a, e)));
                }
                Word::Particle => {
                    pending = pending.or(Some(s));
                }
                Word::Placeholder => pending = None,
                Word::Other => break,
            }
            pos = e;
        }
        if let Some((s, e)) = span {
            out.push(Found::new(Reason::Name, s, e));
        }
    }
}

/// Function words a name made of them would be found everywhere.
const TOO_COMMON: &[&str] = &[
    "A", "AU", "AUX", "CE", "DE", "DES", "DU", "EN", "ET", "IL", "LA", "LE", "LES", "NE", "ON",
    "PAR", "PAS", "POUR", "SA", "SES", "SON", "SUR", "UN", "UNE", "Y",
];

struct Needle {
    /// The name's letters, upper case.
    letters: Zeroizing<String>,
    /// Offsets (in `letters`) where the name itself is split (`JEAN|PIERRE` → 4).
    splits: Vec<usize>,
}

/// The identity's names, ready to be looked for, and its birth date. Wiped on drop.
pub(crate) struct IdentityNeedles {
    needles: Vec<Needle>,
    pub(crate) birth_date: Option<chrono::NaiveDate>,
}

/// The words of a name, upper case, letters only.
fn name_words(name: &str) -> Vec<Zeroizing<String>> {
    let norm = Normalised::new(name);
    norm.as_str()
        .split(|c: char| !c.is_alphabetic())
        .filter(|w| !w.is_empty())
        .map(|w| Zeroizing::new(w.to_uppercase()))
        .collect()
}

impl IdentityNeedles {
    pub(crate) fn new(identity: &IdentityParts<'_>) -> Self {
        let mut needles = Vec::new();
        for name in [identity.last_name, identity.first_name] {
            let words = name_words(name);
            let mut letters = Zeroizing::new(String::new());
            let mut splits = Vec::new();
            for w in &words {
                if !letters.is_empty() {
                    splits.push(letters.len());
                }
                letters.push_str(w);
            }
            if letters.chars().count() >= 2 && !TOO_COMMON.contains(&letters.as_str()) {
                needles.push(Needle { letters, splits });
            }
            if words.len() > 1 {
                for w in words {
                    let particle = PARTICLES.contains(&w.to_lowercase().as_str());
                    if w.chars().count() >= 4 && !particle {
                        needles.push(Needle {
                            letters: w,
                            splits: Vec::new(),
                        });
                    }
                }
            }
        }
        Self {
            needles,
            birth_date: identity.birth_date,
        }
    }

    pub(crate) fn find(&self, t: &str, out: &mut Vec<Found>) {
        if self.needles.is_empty() {
            return;
        }
        // The text's letters, upper case, and for each byte of them the normalised byte range of
        // the character it came from.
        let mut letters = Zeroizing::new(String::with_capacity(t.len()));
        let mut from: Vec<(usize, usize)> = Vec::with_capacity(t.len());
        for (i, c) in t.char_indices() {
            if c.is_alphabetic() {
                for u in c.to_uppercase() {
                    letters.push(u);
                    from.resize(letters.len(), (i, i + c.len_utf8()));
                }
            }
        }
        for needle in &self.needles {
            for (a, found) in letters.match_indices(needle.letters.as_str()) {
                let b = a + found.len();
                if let Some((start, end)) = accept(t, &from, a, b, &needle.splits) {
                    out.push(Found::new(Reason::IdentityName, start, end));
                }
            }
        }
    }
}

/// Whether the letters `a..b` of the text are the name and not letters of other words; the
/// normalised byte span if so.
fn accept(
    t: &str,
    from: &[(usize, usize)],
    a: usize,
    b: usize,
    splits: &[usize],
) -> Option<(usize, usize)> {
    let start = from.get(a)?.0;
    let end = from.get(b - 1)?.1;
    let before = t[..start].chars().next_back();
    let after = t[end..].chars().next();
    if before.is_some_and(char::is_alphabetic) || after.is_some_and(char::is_alphabetic) {
        return None;
    }
    // The gaps between consecutive letters of the match.
    let mut words = 1;
    let mut spaced_gaps = Vec::new();
    let mut k = a;
    while k < b {
        let this = from[k];
        // Next letter's first byte in `letters` (skip the rest of a multi-byte letter).
        let mut n = k + 1;
        while n < b && from[n] == this {
            n += 1;
        }
        if n >= b {
            break;
        }
        let gap = &t[this.1..from[n].0];
        if !gap.is_empty() {
            if gap.len() > 3 || gap.contains(|c: char| c.is_ascii_digit() || c == '\n') {
                return None;
            }
            words += 1;
            if gap.contains([' ', '\t']) {
                spaced_gaps.push(n - a);
            }
        }
        k = n;
    }
    if words == 1 || spaced_gaps.is_empty() {
        return Some((start, end));
    }
    let letter_by_letter = spaced_gaps.len() + 1 == b - a;
    let on_splits = spaced_gaps.iter().all(|g| splits.contains(g));
    (letter_by_letter || on_splits).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn titled(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        find_titled(text, &mut out);
        out.into_iter().map(|f| &text[f.start..f.end]).collect()
    }

    fn identity(text: &str) -> Vec<&str> {
        let id = IdentityParts {
            last_name: "Benali-Martin",
            first_name: "Anne",
            birth_date: None,
        };
        let mut out = Vec::new();
        IdentityNeedles::new(&id).find(text, &mut out);
        out.into_iter().map(|f| &text[f.start..f.end]).collect()
    }

    #[test]
    fn names_after_a_title() {
        for (text, name) in [
            ("Mme Fatima BENALI, 45 ans", "Fatima BENALI"),
            ("M. DUPONT Jean-Pierre est suivi", "DUPONT Jean-Pierre"),
            ("suivi par le Dr Martin du CMP", "Martin"),
            ("Madame de La Tour refuse", "de La Tour"),
            ("Monsieur Le Gall", "Le Gall"),
            ("M.Dupont", "Dupont"),
            ("MME DURAND", "DURAND"),
            ("Me Durand, avocate", "Durand"),
            ("M. X. Dupont", "Dupont"),
            ("Mme N'Diaye refuse", "N'Diaye"),
            ("Mme d'Almeida refuse", "d'Almeida"),
        ] {
            assert_eq!(titled(text), vec![name], "{text}");
        }
    }

    #[test]
    fn initials_placeholders_and_roles_pass() {
        for text in [
            "Mme X., 45 ans",
            "M. A est hospitalise",
            "Mme X et ses 3 enfants",
            "M. Y... refuse",
            "Mme B. et M. C.",
            "M. J.-P. D. est suivi",
            "Mme XXX",
            "M. Untel",
            "Monsieur le maire a ete informe",
            "Madame la juge des tutelles",
            "Monsieur Le Maire",
            "Mme, 45 ans, 3 enfants",
            "Monsieur vit seul. Il refuse.",
            "Madame. Depuis mars, rien.",
            "habite rue du Docteur Roux",
            "M. et Mme X.",
        ] {
            assert!(titled(text).is_empty(), "{text}: {:?}", titled(text));
        }
    }

    #[test]
    fn identity_parts_anywhere() {
        assert_eq!(identity("vue avec benali hier"), vec!["benali"]);
        assert_eq!(identity("B.E.N.A.L.I"), vec!["B.E.N.A.L.I"]);
        assert_eq!(identity("B E N A L I"), vec!["B E N A L I"]);
        assert_eq!(
            identity("Mme BENALI MARTIN"),
            vec!["BENALI MARTIN", "BENALI", "MARTIN"]
        );
        assert_eq!(identity("ANNE, sa fille"), vec!["ANNE"]);
        assert!(identity("l'annee derniere").is_empty());
        assert!(identity("Benalim").is_empty());
        assert!(identity("ben ali").is_empty());
        assert!(identity("an ne").is_empty());
    }
}
