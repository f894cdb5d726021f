//! Numbers that identify: phones, NIRs, IBANs and claimant numbers, read on normalised text.

use std::sync::LazyLock;

use regex::Regex;

use super::{Found, Reason, before, re};

/// A run of digit groups joined by separators (one to three spaces, or one of `. / - _` with up
/// to two spaces either side), with an optional international prefix; a letter `O` typed for
/// the leading zero (`O6 12 34 56 78`) counts as a digit.
static RUN: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?:(?:\(\s?\+\s?33\s?\)|\+\s?33|\b00\s?33)[ .\-]?(?:\(\s?0\s?\)[ .\-]?)?)?(?:\b[Oo])?\d+(?:(?:[ \t]{1,3}|[ \t]{0,2}[./\-_][ \t]{0,2})\d+)*",
    )
});
/// A phone word just before a number written without its leading `0`.
static PHONE_WORD: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)(?:\b(?:tel|telephone|portable|port|mobile|mob|gsm|fixe|joignable|joindre|appeler|rappeler|appel|numero|num|contact|sms|whatsapp|standard|ligne)\b)\.?\s*(?:[:\-]|\bau\b|\ble\b|\bsur\b|\bdu\b)?\s*(?:[:\-]|\bau\b|\ble\b)?\s*$",
    )
});
/// The start of an IBAN: country code and check digits.
static IBAN_START: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)\b[a-z]{2}[ .\-]?\d{2}"));
/// A claimant number right after `allocataire`, `CAF` or `MSA` and number words.
static CLAIMANT: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?:allocataire|caf|msa)\b(?:\s*(?:n°|no\b|n\.|numero\b|num\b\.?|matricule\b|identifiant\b|allocataire\b|caf\b|msa\b|d'|de\s+l'|est\b|le\b|:|#|-))*\s*(\d(?:[ .\-]?\d){4,12})\b",
    )
});
static UNIT_AFTER: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)^\s*(?:€|e\b|eur\b|euros?\b|%|ans?\b|mois\b|jours?\b|h\b|heures?\b|k€)")
});

pub(crate) fn find(t: &str, out: &mut Vec<Found>) {
    if !t.bytes().any(|b| b.is_ascii_digit()) {
        return;
    }
    phones(t, out);
    nirs(t, out);
    ibans(t, out);
    claimants(t, out);
}

/// The digit groups (byte ranges) of `t[start..end]`.
fn groups(t: &str, start: usize, end: usize) -> Vec<(usize, usize)> {
    let b = t.as_bytes();
    let mut out = Vec::new();
    let mut i = start;
    while i < end {
        if b[i].is_ascii_digit() || (i == start && matches!(b[i], b'O' | b'o')) {
            let s = i;
            i += 1;
            while i < end && b[i].is_ascii_digit() {
                i += 1;
            }
            out.push((s, i));
        } else {
            i += 1;
        }
    }
    out
}

/// The `n`-th digit of a sequence of digit groups.
fn nth_digit(b: &[u8], gs: &[(usize, usize)], mut n: usize) -> Option<u8> {
    for g in gs {
        if n < g.1 - g.0 {
            return Some(match b[g.0 + n] {
                b'O' | b'o' => b'0',
                c => c,
            });
        }
        n -= g.1 - g.0;
    }
    None
}

/// How many groups from the start of `gs` it takes to reach `n` digits, if exactly.
fn groups_for(gs: &[(usize, usize)], n: usize) -> Option<usize> {
    let mut count = 0;
    for (j, g) in gs.iter().enumerate() {
        count += g.1 - g.0;
        if count >= n {
            return (count == n).then_some(j + 1);
        }
    }
    None
}

fn phones(t: &str, out: &mut Vec<Found>) {
    let b = t.as_bytes();
    for m in RUN.find_iter(t) {
        // A run starts with `+`, `(` or `00` only when the regex took an international prefix
        // (`0033`, not `0012…`); the `33` and the `0` of `(0)` are not part of the number.
        let run = m.as_str();
        let prefixed = run.starts_with(['+', '('])
            || (run.starts_with("00") && run[2..].trim_start().starts_with("33"));
        let body_start = if prefixed {
            m.start() + prefix_end(run)
        } else {
            m.start()
        };
        let gs = groups(t, body_start, m.end());
        let mut k = 0;
        if prefixed {
            // Nine digits, or ten when the national `0` is written after the prefix.
            let needed = if nth_digit(b, &gs, 0) == Some(b'0') {
                10
            } else {
                9
            };
            match groups_for(&gs, needed) {
                Some(n) => {
                    out.push(Found::new(Reason::Phone, m.start(), gs[n - 1].1));
                    k = n;
                }
                None => continue,
            }
        }
        // Ten digits `0[1-9]…` from the start of the run, or right after a phone; after a
        // failed attempt, only in the usual pairs (a NIR or an account number is not a phone).
        let mut fresh = true;
        let first = k;
        while k < gs.len() {
            let rest = &gs[k..];
            let national = nth_digit(b, rest, 0) == Some(b'0')
                && nth_digit(b, rest, 1).is_some_and(|c| (b'1'..=b'9').contains(&c));
            if let Some(n) = groups_for(rest, 10)
                && national
                && (fresh || n == 1 || shaped_pairs(&rest[..n]))
            {
                out.push(Found::new(Reason::Phone, rest[0].0, rest[n - 1].1));
                k += n;
                fresh = true;
                continue;
            }
            if k == first
                && !prefixed
                && nth_digit(b, rest, 0).is_some_and(|c| c != b'0')
                && let Some(n) = groups_for(rest, 9)
                && (n == rest.len() || shaped_pairs(&rest[1..n]))
                && PHONE_WORD.is_match(before(t, rest[0].0, 40))
            {
                // Nine digits after a phone word: `tel 6 12 34 56 78`.
                out.push(Found::new(Reason::Phone, rest[0].0, rest[n - 1].1));
                k += n;
                fresh = true;
                continue;
            }
            fresh = false;
            k += 1;
        }
    }
}

fn shaped_pairs(gs: &[(usize, usize)]) -> bool {
    gs.iter().all(|g| g.1 - g.0 == 2)
}

/// Length of the international prefix at the start of a run (`+33 `, `0033`, `(+33) (0)`).
fn prefix_end(run: &str) -> usize {
    let b = run.as_bytes();
    let mut i = 0;
    // Up to and including the `33`.
    while i + 1 < b.len() && !(b[i] == b'3' && b[i + 1] == b'3') {
        i += 1;
    }
    i += 2;
    // Spaces, separators, `)` and the `(0)`.
    loop {
        match b.get(i) {
            Some(b' ' | b'.' | b'-' | b')' | b'\t') => i += 1,
            Some(b'(') => {
                // `(0)` or `( 0 )`
                let mut j = i + 1;
                while b.get(j) == Some(&b' ') {
                    j += 1;
                }
                if b.get(j) == Some(&b'0') {
                    j += 1;
                    while b.get(j) == Some(&b' ') {
                        j += 1;
                    }
                    if b.get(j) == Some(&b')') {
                        i = j + 1;
                        continue;
                    }
                }
                break;
            }
            _ => break,
        }
    }
    i.min(run.len())
}

/// The national ten digits of a phone span (`+33 6…` → `06…`).
pub(crate) fn phone_key(slice: &str) -> Option<String> {
    let prefixed = slice.starts_with(['+', '(']) || slice.starts_with("00");
    let body = if prefixed {
        slice.get(prefix_end(slice)..)?
    } else {
        slice
    };
    let digits: String = body
        .chars()
        .filter_map(|c| match c {
            '0'..='9' => Some(c),
            'O' | 'o' => Some('0'),
            _ => None,
        })
        .collect();
    match digits.len() {
        10 => Some(digits),
        9 => Some(format!("0{digits}")),
        _ => None,
    }
}

/// Byte positions of up to 34 significant characters (an IBAN's most).
struct Walked {
    pos: [usize; 34],
    len: usize,
}

impl Walked {
    fn positions(&self) -> &[usize] {
        &self.pos[..self.len]
    }
}

/// Up to `max` significant characters from byte `i`: those `allow` accepts (given how many were
/// taken before), with at most `gap` separators (space, dot, dash) between two of them.
fn walk(
    b: &[u8],
    mut i: usize,
    max: usize,
    gap: usize,
    allow: impl Fn(usize, u8) -> bool,
) -> Walked {
    let mut w = Walked {
        pos: [0; 34],
        len: 0,
    };
    let max = max.min(w.pos.len());
    while w.len < max && i < b.len() {
        if allow(w.len, b[i]) {
            w.pos[w.len] = i;
            w.len += 1;
            i += 1;
            continue;
        }
        let mut j = i;
        while j < b.len() && j - i < gap && matches!(b[j], b' ' | b'.' | b'-') {
            j += 1;
        }
        if j == i || j >= b.len() || !allow(w.len, b[j]) {
            break;
        }
        i = j;
    }
    w
}

/// Whether the byte after position `p` ends a token (not a letter or digit).
fn ends_token(b: &[u8], p: usize) -> bool {
    b.get(p + 1).is_none_or(|c| !c.is_ascii_alphanumeric())
}

fn nirs(t: &str, out: &mut Vec<Found>) {
    let b = t.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let starts = matches!(c, b'1' | b'2' | b'3' | b'4' | b'7' | b'8')
            && (i == 0 || !b[i - 1].is_ascii_alphanumeric());
        if !starts {
            i += 1;
            continue;
        }
        let walked = walk(b, i, 15, 3, |n, c| {
            c.is_ascii_digit() || (n == 6 && matches!(c, b'A' | b'B' | b'a' | b'b'))
        });
        let pos = walked.positions();
        if pos.len() < 13 {
            i += 1;
            continue;
        }
        let mut chars = [0u8; 15];
        for (c, &p) in chars.iter_mut().zip(pos) {
            *c = b[p].to_ascii_uppercase();
        }
        let mut matched = None;
        if pos.len() == 15 && ends_token(b, pos[14]) {
            // With its key: the key decides.
            let key = key_value(&chars[13..]);
            if nir_structure(&chars[..13], true) && key.is_some() && nir_key(&chars[..13]) == key {
                matched = Some(pos[14] + 1);
            }
        } else if ends_token(b, pos[12]) && nir_structure(&chars[..13], false) {
            matched = Some(pos[12] + 1);
        }
        match matched {
            Some(end) => {
                out.push(Found::new(Reason::Nir, i, end));
                i = end;
            }
            None => i += 1,
        }
    }
}

fn key_value(digits: &[u8]) -> Option<u64> {
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn two(d: &[u8]) -> u32 {
    u32::from(d[0].wrapping_sub(b'0')) * 10 + u32::from(d[1].wrapping_sub(b'0'))
}

/// Sex, month, department, commune and order of a 13-character NIR body.
pub(crate) fn nir_structure(body: &[u8], keyed: bool) -> bool {
    if body.len() != 13 || !matches!(body[0], b'1' | b'2' | b'3' | b'4' | b'7' | b'8') {
        return false;
    }
    let digits_except_dept = body
        .iter()
        .enumerate()
        .all(|(i, c)| i == 6 || c.is_ascii_digit());
    if !digits_except_dept {
        return false;
    }
    let month = two(&body[3..5]);
    let month_ok = matches!(month, 1..=12 | 20 | 30..=42) || (keyed && (50..=99).contains(&month));
    let dept_ok = match (body[5], body[6]) {
        (b'2', b'A' | b'B') => true,
        (a, b) => a.is_ascii_digit() && b.is_ascii_digit() && !(a == b'0' && b == b'0'),
    };
    month_ok && dept_ok && &body[7..10] != b"000" && &body[10..13] != b"000"
}

/// The key of a NIR body: 97 − (number mod 97), with 2A → 19 and 2B → 18.
pub(crate) fn nir_key(body: &[u8]) -> Option<u64> {
    let mut n: u64 = 0;
    for (i, &c) in body.iter().enumerate() {
        let digit = match (i, c) {
            (5, b'2') if matches!(body.get(6), Some(b'A' | b'B')) => 1,
            (6, b'A') => 9,
            (6, b'B') => 8,
            (_, c) if c.is_ascii_digit() => u64::from(c - b'0'),
            _ => return None,
        };
        n = n * 10 + digit;
    }
    Some(97 - n % 97)
}

/// IBAN lengths of the countries a French referral meets.
fn iban_length(country: &[u8]) -> Option<usize> {
    Some(match country {
        b"NO" => 15,
        b"BE" => 16,
        b"DK" | b"FI" | b"NL" => 18,
        b"SI" => 19,
        b"AT" | b"EE" | b"LT" | b"LU" => 20,
        b"CH" | b"HR" | b"LI" | b"LV" => 21,
        b"BG" | b"DE" | b"GB" | b"IE" => 22,
        b"AD" | b"CZ" | b"ES" | b"RO" | b"SE" | b"SK" | b"TN" => 24,
        b"PT" => 25,
        b"DZ" | b"IS" | b"TR" => 26,
        b"FR" | b"GR" | b"IT" | b"MC" | b"SM" => 27,
        b"CY" | b"HU" | b"MA" | b"PL" | b"SN" | b"CI" => 28,
        b"MT" => 31,
        _ => return None,
    })
}

/// ISO 13616: the first four characters moved to the end, letters as numbers, mod 97 = 1.
pub(crate) fn iban_checksum(chars: &[u8]) -> bool {
    if chars.len() < 15 {
        return false;
    }
    let mut r: u32 = 0;
    for &c in chars[4..].iter().chain(&chars[..4]) {
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'Z' => u32::from(c - b'A') + 10,
            _ => return false,
        };
        r = if v >= 10 {
            (r * 100 + v) % 97
        } else {
            (r * 10 + v) % 97
        };
    }
    r == 1
}

fn ibans(t: &str, out: &mut Vec<Found>) {
    let b = t.as_bytes();
    let mut after = 0;
    for m in IBAN_START.find_iter(t) {
        if m.start() < after {
            continue;
        }
        // Only the countries whose length is known: with any length, one candidate in a few
        // dozen would pass the checksum by chance.
        let country = [
            b[m.start()].to_ascii_uppercase(),
            b[m.start() + 1].to_ascii_uppercase(),
        ];
        let Some(n) = iban_length(&country) else {
            continue;
        };
        let walked = walk(b, m.start(), n + 1, 3, |_, c| c.is_ascii_alphanumeric());
        let pos = walked.positions();
        if pos.len() < n {
            continue;
        }
        let mut chars = [0u8; 34];
        for (c, &p) in chars.iter_mut().zip(pos) {
            *c = b[p].to_ascii_uppercase();
        }
        if !chars[2..4].iter().all(u8::is_ascii_digit) {
            continue;
        }
        let mostly_digits =
            || chars[4..n].iter().filter(|c| c.is_ascii_digit()).count() * 2 >= n - 4;
        if n <= chars.len()
            && ends_token(b, pos[n - 1])
            && mostly_digits()
            && iban_checksum(&chars[..n])
        {
            out.push(Found::new(Reason::Iban, m.start(), pos[n - 1] + 1));
            after = pos[n - 1] + 1;
        }
    }
}

fn claimants(t: &str, out: &mut Vec<Found>) {
    for c in CLAIMANT.captures_iter(t) {
        let Some(number) = c.get(1) else { continue };
        let next_is_digit = t[number.end()..].starts_with(|ch: char| ch.is_ascii_digit());
        if next_is_digit || UNIT_AFTER.is_match(&t[number.end()..]) {
            continue;
        }
        out.push(Found::new(
            Reason::ClaimantNumber,
            number.start(),
            number.end(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(text: &str, reason: Reason) -> Vec<&str> {
        let mut out = Vec::new();
        find(text, &mut out);
        out.into_iter()
            .filter(|f| f.reason == reason)
            .map(|f| &text[f.start..f.end])
            .collect()
    }

    #[test]
    fn phones_in_every_grouping() {
        for (text, phone) in [
            ("appeler le 06 12 34 56 78.", "06 12 34 56 78"),
            ("tel 0612345678", "0612345678"),
            ("06 12 345 678", "06 12 345 678"),
            ("au 06/45/23/78/90 le soir", "06/45/23/78/90"),
            ("06 12.34.56.78", "06 12.34.56.78"),
            ("tel 06 1234 5678", "06 1234 5678"),
            ("tel 6 12 34 56 78", "6 12 34 56 78"),
            ("portable : 7 12 34 56 78", "7 12 34 56 78"),
            ("+33 6 12 34 56 78", "+33 6 12 34 56 78"),
            ("+33612345678", "+33612345678"),
            ("+33 (0)6 12 34 56 78", "+33 (0)6 12 34 56 78"),
            ("0033 6 12 34 56 78", "0033 6 12 34 56 78"),
            ("(+33) 6 12 34 56 78", "(+33) 6 12 34 56 78"),
            ("tél.04.68.12.34.56", "04.68.12.34.56"),
            ("le 12/03/2024 06 12 34 56 78", "06 12 34 56 78"),
            ("Tel O6 12 34 56 78", "O6 12 34 56 78"),
        ] {
            assert_eq!(spans(text, Reason::Phone), vec![phone], "{text}");
        }
        assert_eq!(
            spans("06 12 34 56 78 / 07 11 22 33 44", Reason::Phone),
            vec!["06 12 34 56 78", "07 11 22 33 44"]
        );
    }

    #[test]
    fn numbers_that_are_not_phones() {
        for text in [
            "6 12 34 56 78",         // nine digits without a phone word
            "1 85 05 78 006 084 92", // a NIR with a wrong key
            "2 93 01 66 136 012 57",
            "PER-2026-0042",
            "Appels au 115 et au 3114",
            "loyer 1 800 €",
            "SIRET 123 456 789 00012",
            "du 12/05/2008 au 30/06/2008",
            "0012345678",
        ] {
            assert!(spans(text, Reason::Phone).is_empty(), "{text}");
        }
    }

    #[test]
    fn phone_keys() {
        assert_eq!(
            phone_key("+33 (0)4 68 12 34 56").as_deref(),
            Some("0468123456")
        );
        assert_eq!(phone_key("0033468123456").as_deref(), Some("0468123456"));
        assert_eq!(phone_key("04.68.12.34.56").as_deref(), Some("0468123456"));
    }

    #[test]
    fn nir_keys_and_structure() {
        assert_eq!(nir_key(b"1850578006084"), Some(91));
        assert_eq!(nir_key(b"185052A123456"), Some(33));
        assert!(nir_structure(b"1850578006084", false));
        assert!(!nir_structure(b"1851378006084", false)); // month 13
        assert!(!nir_structure(b"1855578006084", false)); // month 55 without a key
        assert!(nir_structure(b"1855578006084", true));
        assert!(!nir_structure(b"1850500006084", false)); // department 00
        assert!(!nir_structure(b"1850578000084", false)); // commune 000
        assert!(!nir_structure(b"5850578006084", false)); // sex 5
    }

    #[test]
    fn nirs_with_or_without_key() {
        for (text, nir) in [
            (
                "NIR 1 85 05 78 006 084 91 transmis",
                "1 85 05 78 006 084 91",
            ),
            ("185057800608491", "185057800608491"),
            ("1-85-05-78-006-084-91", "1-85-05-78-006-084-91"),
            ("1.85.05.78.006.084.91", "1.85.05.78.006.084.91"),
            ("sécu 1 85 05 78 006 084 sans clé", "1 85 05 78 006 084"),
            ("1850578006084", "1850578006084"),
            ("assurée 1 85 05 2A 123 456 33", "1 85 05 2A 123 456 33"),
            (
                "née en Guadeloupe, 2 85 05 971 05 123 11",
                "2 85 05 971 05 123 11",
            ),
        ] {
            assert_eq!(spans(text, Reason::Nir), vec![nir], "{text}");
        }
        for text in [
            "1 85 05 78 006 084 92",
            "185057800608492",
            "1 85 13 78 006 084",
        ] {
            assert!(spans(text, Reason::Nir).is_empty(), "{text}");
        }
    }

    #[test]
    fn ibans_with_any_separator() {
        for (text, iban) in [
            (
                "RIB FR76 3000 6000 0112 3456 7890 189 joint",
                "FR76 3000 6000 0112 3456 7890 189",
            ),
            (
                "FR76-3000-6000-0112-3456-7890-189",
                "FR76-3000-6000-0112-3456-7890-189",
            ),
            ("fr7630006000011234567890189", "fr7630006000011234567890189"),
            ("GB82 WEST 1234 5698 7654 32", "GB82 WEST 1234 5698 7654 32"),
            (
                "FR14 2004 1010 0505 0001 3M02 606.",
                "FR14 2004 1010 0505 0001 3M02 606",
            ),
        ] {
            assert_eq!(spans(text, Reason::Iban), vec![iban], "{text}");
        }
        assert!(spans("FR76 3000 6000 0112 3456 7890 188", Reason::Iban).is_empty());
    }

    #[test]
    fn claimant_numbers_in_context() {
        for (text, n) in [
            ("n° allocataire 1234567", "1234567"),
            ("numero CAF : 123 4567.", "123 4567"),
            ("allocataire CAF n° 7654321", "7654321"),
            ("MSA n° 123456789", "123456789"),
        ] {
            assert_eq!(spans(text, Reason::ClaimantNumber), vec![n], "{text}");
        }
        for text in [
            "la CAF verse 450 €",
            "CAF 12000 euros",
            "allocataire depuis 2019",
            "CAF 66",
        ] {
            assert!(spans(text, Reason::ClaimantNumber).is_empty(), "{text}");
        }
    }
}
