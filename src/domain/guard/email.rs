//! E-mail addresses, plain or obfuscated (`martin.j (at) orange.fr`, `jean arobase free point
//! fr`), read on normalised text (a full-width `＠` is already `@` there).

use std::sync::LazyLock;

use regex::Regex;

use super::{Found, Reason, re};

/// The `@` and its stand-ins, with the spaces around them.
static AT: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)[ \t]*@[ \t]*|[ \t]*[\(\[\{<][ \t]*(?:at|arobase|arrobase)[ \t]*[\)\]\}>][ \t]*|[ \t]+(?:at|arobase|arrobase)[ \t]+",
    )
});
/// A dot between two labels of a domain and its stand-ins.
static DOT: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)^(?:\.|[ \t]*[\(\[\{<][ \t]*(?:dot|point|pt)[ \t]*[\)\]\}>][ \t]*|[ \t]+(?:dot|point)[ \t]+|[ \t]+\.[ \t]*|\.[ \t]+)",
    )
});

/// Mail providers whose name after a plain `@` is an address even without its top-level domain
/// (`jean.dupont@free`).
const PROVIDERS: &[&str] = &[
    "aol",
    "free",
    "gmail",
    "gmx",
    "hotmail",
    "icloud",
    "laposte",
    "live",
    "msn",
    "neuf",
    "orange",
    "outlook",
    "protonmail",
    "sfr",
    "wanadoo",
    "yahoo",
];

/// Top-level domains accepted after an obfuscated `@` or dot.
const COMMON_TLDS: &[&str] = &[
    "be", "biz", "ca", "ch", "ci", "com", "de", "dz", "es", "eu", "fr", "gf", "gp", "info", "io",
    "it", "lu", "ma", "mc", "mq", "net", "nc", "org", "pf", "pm", "pt", "re", "sn", "tn", "uk",
    "us", "yt",
];

fn is_local(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_label(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-'
}

/// An address found around one `@` (or stand-in): its byte span, and its plain lower-case form.
struct Parsed {
    start: usize,
    end: usize,
    plain: String,
}

/// The address whose `@` (or stand-in) spans `at_start..at_end`.
fn parse(t: &str, at_start: usize, at_end: usize, plain_at: bool) -> Option<Parsed> {
    let b = t.as_bytes();
    // Local part: back over address characters, without a leading dot or dash.
    let mut start = at_start;
    while start > 0 && is_local(b[start - 1]) {
        start -= 1;
    }
    while start < at_start && !b[start].is_ascii_alphanumeric() {
        start += 1;
    }
    if start == at_start {
        return None;
    }
    // Domain labels and the separators before each (plain dot or not).
    let mut labels: Vec<(usize, usize, bool)> = Vec::new();
    let mut i = at_end;
    let mut plain_sep = true;
    loop {
        let s = i;
        while i < b.len() && is_label(b[i]) {
            i += 1;
        }
        if i == s {
            break;
        }
        labels.push((s, i, plain_sep));
        let Some(dot) = DOT.find(&t[i..]) else { break };
        // A spaced dot followed by a capital is the end of a sentence.
        let next = b.get(i + dot.end()).copied();
        if dot.as_str() != "."
            && dot.as_str().contains('.')
            && next.is_some_and(|c| c.is_ascii_uppercase())
        {
            break;
        }
        plain_sep = dot.as_str() == ".";
        i += dot.end();
    }
    // The last label that can be a top-level domain.
    while labels.len() >= 2 {
        let Some(&(s, e, plain)) = labels.last() else {
            break;
        };
        let tld = &t[s..e];
        let alphabetic =
            tld.bytes().all(|c| c.is_ascii_alphabetic()) && (2..=24).contains(&tld.len());
        let common = COMMON_TLDS.iter().any(|c| c.eq_ignore_ascii_case(tld));
        if alphabetic && (common || (plain && plain_at && labels.iter().all(|l| l.2))) {
            break;
        }
        labels.pop();
    }
    let provider_only = plain_at
        && labels.len() == 1
        && PROVIDERS
            .iter()
            .any(|p| p.eq_ignore_ascii_case(&t[labels[0].0..labels[0].1]));
    if labels.len() < 2 && !provider_only {
        return None;
    }
    let local = t[start..at_start].trim_end_matches(['.', '-']);
    let mut plain = local.to_ascii_lowercase();
    plain.push('@');
    for (n, (s, e, _)) in labels.iter().enumerate() {
        if n > 0 {
            plain.push('.');
        }
        plain.push_str(&t[*s..*e].to_ascii_lowercase());
    }
    let end = labels.last().map(|l| l.1)?;
    Some(Parsed { start, end, plain })
}

pub(crate) fn find(t: &str, out: &mut Vec<Found>) {
    let mut after = 0;
    for m in AT.find_iter(t) {
        if m.start() < after {
            continue;
        }
        let plain_at = m.as_str().trim() == "@";
        if let Some(p) = parse(t, m.start(), m.end(), plain_at) {
            out.push(Found::new(Reason::Email, p.start, p.end));
            after = p.end;
        }
    }
}

/// The plain lower-case form of an address span.
pub(crate) fn key(slice: &str) -> Option<String> {
    let m = AT.find(slice)?;
    parse(slice, m.start(), m.end(), m.as_str().trim() == "@").map(|p| p.plain)
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
    fn plain_and_obfuscated_addresses() {
        for (text, email) in [
            ("ecrire a m.dupont@example.fr.", "m.dupont@example.fr"),
            ("MAIL: JEAN_DUPONT@EXAMPLE.COM", "JEAN_DUPONT@EXAMPLE.COM"),
            (
                "a prenom.nom+cellule@sous.domaine.gouv.fr, merci",
                "prenom.nom+cellule@sous.domaine.gouv.fr",
            ),
            ("martin.j (at) orange.fr", "martin.j (at) orange.fr"),
            (
                "martin.j [at] orange [dot] fr",
                "martin.j [at] orange [dot] fr",
            ),
            (
                "martin arobase orange point fr",
                "martin arobase orange point fr",
            ),
            ("jean.dupont @ free.fr le soir", "jean.dupont @ free.fr"),
            ("jean.dupont at laposte.net", "jean.dupont at laposte.net"),
            ("ecrire a jean@orange.fr. Il repond", "jean@orange.fr"),
            ("Contact: jean.dupont@free", "jean.dupont@free"),
        ] {
            assert_eq!(spans(text), vec![email], "{text}");
        }
    }

    #[test]
    fn prose_is_not_an_address() {
        for text in [
            "look at me",
            "RDV @ 14h",
            "il est arrive at home",
            "le dossier 12.3 at 4.5",
            "rendez-vous at the hotel.Paris",
            "ecrire a jean@cmp",
        ] {
            assert!(spans(text).is_empty(), "{text}");
        }
    }

    #[test]
    fn keys_resolve_the_obfuscation() {
        assert_eq!(
            key("Martin.J (at) Orange [dot] FR").as_deref(),
            Some("martin.j@orange.fr")
        );
        assert_eq!(
            key("martin.j@orange.fr").as_deref(),
            Some("martin.j@orange.fr")
        );
    }
}
