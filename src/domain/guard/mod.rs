//! Pseudonymisation guard (docs/design.md §5): free text is scanned for direct identifiers before it is
//! encrypted and stored. A hit names the field, the kind, the character offsets in the text as
//! sent (Unicode scalar values, end exclusive) and a short hint saying how to rewrite it; it never
//! echoes the text.
//!
//! # How a text is read
//!
//! The text is first normalised for matching ([`normalise`]): compatibility forms, accents,
//! invisible format characters, digits of other scripts and Latin look-alike letters are folded,
//! and every normalised byte keeps the offsets of the original characters it came from, so an
//! evasion (`06\u{200B}12…`, `０６…`, `jean＠orаnge.fr` with a Cyrillic `а`) is caught and the
//! hit still points at what was typed. Then each detector reads the normalised text:
//!
//! - `email`: `local@domain.tld`, with spaces around `@`, a known mail provider without its
//!   top-level domain (`jean.dupont@free`), and obfuscated forms (`(at)`, `[at]`, ` at `,
//!   ` arobase `, `(dot)`, ` point `) when the top-level domain is a common one;
//! - `phone`: French numbers of ten digits starting `0[1-9]` in any grouping and with any mix of
//!   spaces, dots, dashes, slashes (`06 12 345 678`, `06/45/23/78/90`, `06 12.34.56.78`), with
//!   `+33`, `0033`, `(+33)` and `(0)`, a letter `O` for the leading zero; nine digits without
//!   the `0` after a phone word (`tel`, `portable`, `joignable`…);
//! - `nir`: a social security number of 13 characters (without key) or 15 (with key), in any
//!   grouping with spaces, dots or dashes, whose structure is valid: sex 1, 2, 3, 4, 7 or 8;
//!   month 01-12, 20 or 30-42 (and 50-99 when a valid key vouches for it); department not `00`
//!   (`2A`/`2B` accepted); commune and order not `000`. With 15 characters the key must be valid:
//!   fifteen characters with a wrong key are some other number and pass;
//! - `iban`: country code, check digits and account with any separators, whose ISO 13616 checksum
//!   is valid (and whose length is the country's, when the country is known);
//! - `birth_date`: see [`dates`]: a date after a birth word (`né(e) le`, `née`, `DDN`, `date de
//!   naissance`) in any spelling (two-digit years, compact `12031980`, spaced `12 / 03 / 1980`,
//!   month names, day and month without year); a full date with nothing to explain it (no event
//!   word around it in its sentence, not one end of a `du … au …` range) that falls between 1900
//!   and eighteen years before today; and the referral's identity's birth date in any spelling;
//! - `address`: see [`address`]: a street number with a street type and a street name (`12 rue
//!   des Lilas`, `7 r. Jean Jaurès`, `au 12 de la rue Foch`, `rue des Lilas n°12`), a flat number
//!   (`appt 34`), and a named residence with its building (`résidence Les Mimosas, bât. B`);
//! - `name`: see [`names`]: the words after a civil title (`M.`, `Mme`, `Mlle`, `Monsieur`,
//!   `Madame`, `Dr`, `Docteur`, `Me`, `Pr`…) unless they are an initial or a placeholder
//!   (`Mme X.`, `M. A`, `M. Y…`), an article (`Monsieur le maire`) or an ordinary word; and the
//!   referral's identity's last and first names anywhere (case, accents and separators ignored);
//! - `claimant_number`: a number of 5 to 13 digits right after `allocataire`, `CAF` or `MSA`
//!   (`n° allocataire 1234567`, `numéro CAF : 123 4567`, `MSA n° 123456789`).
//!
//! Ordinary prose passes: laws and event dates, counts whose noun is also a street type
//! (`1 passage aux urgences`, `2 cours de FLE`), times, amounts, ages, years, partial dates,
//! sector and INSEE codes, case references.
//!
//! Not caught, by choice or for now: names without a title (`Jean Dupont`, `sa fille Léa`) unless
//! they are the referral's identity's; a lower-case name after a lower-case title (`mme benali`:
//! the next word is as often a verb); numbers spelled in words (`zéro six…`); a street without
//! its number (`vit rue des Lilas`); a year of birth alone (`né en 1980`). Professionals' names
//! after a title (`Dr Martin`) are refused like any other: the referral names the service.
//!
//! # Allowed contacts
//!
//! [`Guard::with_contacts`] takes the contact lines of the cellule's routing directory. The
//! phones, e-mails and addresses found in them are reduced to a canonical form (national digits;
//! lower-case address with obfuscations resolved; number, street type and name words) and the
//! same forms pass anywhere in a scanned text.

mod address;
mod dates;
mod email;
mod messages;
mod names;
mod normalise;
mod numbers;

use std::collections::HashSet;

use chrono::NaiveDate;
use serde::Serialize;
use utoipa::ToSchema;

pub use messages::Lang;
use normalise::Normalised;

/// The kinds of identifier the guard looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IdentifierKind {
    Email,
    Phone,
    Nir,
    Iban,
    BirthDate,
    Address,
    Name,
    ClaimantNumber,
}

impl IdentifierKind {
    pub const ALL: [IdentifierKind; 8] = [
        IdentifierKind::Email,
        IdentifierKind::Phone,
        IdentifierKind::Nir,
        IdentifierKind::Iban,
        IdentifierKind::BirthDate,
        IdentifierKind::Address,
        IdentifierKind::Name,
        IdentifierKind::ClaimantNumber,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IdentifierKind::Email => "email",
            IdentifierKind::Phone => "phone",
            IdentifierKind::Nir => "nir",
            IdentifierKind::Iban => "iban",
            IdentifierKind::BirthDate => "birth_date",
            IdentifierKind::Address => "address",
            IdentifierKind::Name => "name",
            IdentifierKind::ClaimantNumber => "claimant_number",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Why a span was taken for an identifier: the kind, refined where the advice differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    Email,
    Phone,
    Nir,
    Iban,
    BirthDate,
    Address,
    /// Words after a civil title.
    Name,
    ClaimantNumber,
    /// A part of the referral's identity (last or first name).
    IdentityName,
    /// The referral's identity's birth date.
    IdentityBirthDate,
}

impl Reason {
    fn kind(self) -> IdentifierKind {
        match self {
            Reason::Email => IdentifierKind::Email,
            Reason::Phone => IdentifierKind::Phone,
            Reason::Nir => IdentifierKind::Nir,
            Reason::Iban => IdentifierKind::Iban,
            Reason::BirthDate | Reason::IdentityBirthDate => IdentifierKind::BirthDate,
            Reason::Address => IdentifierKind::Address,
            Reason::Name | Reason::IdentityName => IdentifierKind::Name,
            Reason::ClaimantNumber => IdentifierKind::ClaimantNumber,
        }
    }

    /// Which of two spans starting at the same place and as long wins (higher first): the most
    /// specific check.
    fn rank(self) -> u8 {
        match self {
            Reason::Iban => 9,
            Reason::Nir => 8,
            Reason::ClaimantNumber => 7,
            Reason::Email => 6,
            Reason::Phone => 5,
            Reason::IdentityBirthDate => 4,
            Reason::BirthDate => 3,
            Reason::Address => 2,
            Reason::IdentityName => 1,
            Reason::Name => 0,
        }
    }
}

/// A span of the normalised text taken for an identifier (byte offsets, end exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Found {
    pub(crate) reason: Reason,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

impl Found {
    pub(crate) fn new(reason: Reason, start: usize, end: usize) -> Self {
        Self { reason, start, end }
    }
}

/// One identifier found in a field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Hit {
    /// The JSON member the text came from (`situation`, `actions.2`…).
    pub field: String,
    pub kind: IdentifierKind,
    /// Character offset (Unicode scalar values) of the first character, in the text as sent.
    pub start: usize,
    /// Character offset just past the last character.
    pub end: usize,
    /// What was found and how to rewrite it, without the text itself (French unless the guard
    /// was asked for English).
    #[schema(
        example = "Nom de personne après une civilité : remplacez-le par une initiale (Mme B.)."
    )]
    pub detail: &'static str,
    #[serde(skip)]
    reason: Reason,
}

impl Hit {
    /// The hint in another language.
    pub fn detail_in(&self, lang: Lang) -> &'static str {
        messages::detail(self.reason, lang)
    }

    /// The same hit with its hint in `lang`.
    pub fn in_lang(mut self, lang: Lang) -> Self {
        self.detail = self.detail_in(lang);
        self
    }
}

/// The parts of the identity a referral carries for linkage, to be refused anywhere in its texts.
/// Plain strings, so that the guard does not depend on the linkage module.
#[derive(Clone, Copy, Default)]
pub struct IdentityParts<'a> {
    pub last_name: &'a str,
    pub first_name: &'a str,
    pub birth_date: Option<NaiveDate>,
}

impl std::fmt::Debug for IdentityParts<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdentityParts(<redacted>)")
    }
}

/// A scanner bound to "today" (birth dates are judged relative to it), the cellule's allowed
/// contacts and, for a referral, the identity it carries.
pub struct Guard {
    today: NaiveDate,
    lang: Lang,
    /// Canonical forms of the allowed phones, e-mails and addresses.
    contacts: HashSet<String>,
    identity: Option<names::IdentityNeedles>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("today", &self.today)
            .field("lang", &self.lang)
            .field("contacts", &self.contacts.len())
            .field("identity", &self.identity.is_some())
            .finish()
    }
}

impl Guard {
    pub fn new(today: NaiveDate) -> Self {
        Self {
            today,
            lang: Lang::default(),
            contacts: HashSet::new(),
            identity: None,
        }
    }

    /// Hints in `lang` (French by default).
    pub fn with_lang(mut self, lang: Lang) -> Self {
        self.lang = lang;
        self
    }

    /// Professional contact lines (a directory entry's `contact`: "accueil du CCAS : 04 00 00 00
    /// 01, ccas@ville.example"): every phone, e-mail and address found in them passes anywhere.
    pub fn with_contacts<I, S>(mut self, contacts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for line in contacts {
            let norm = Normalised::new(line.as_ref());
            let t = norm.as_str();
            let mut found = Vec::new();
            email::find(t, &mut found);
            numbers::find(t, &mut found);
            address::find(t, &mut found);
            for f in found {
                if let Some(key) = contact_key(f, t) {
                    self.contacts.insert(key);
                }
            }
        }
        self
    }

    /// The identity a referral carries: its names and birth date are refused anywhere in the
    /// referral's texts. `None` leaves the guard as it is.
    pub fn with_identity(mut self, identity: Option<&IdentityParts<'_>>) -> Self {
        if let Some(id) = identity {
            self.identity = Some(names::IdentityNeedles::new(id));
        }
        self
    }

    /// Every identifier in `text`, in order of appearance, overlapping finds merged into the
    /// first and longest. `field` names the JSON member.
    pub fn scan(&self, field: &str, text: &str) -> Vec<Hit> {
        let norm = Normalised::new(text);
        let mut spans = self.detect(&norm);
        // Text reversed by a right-to-left override is also read as displayed; what is found
        // there counts where the text as stored showed nothing.
        if let Some(shown) = Normalised::visual(text) {
            let logical = spans.clone();
            spans.extend(
                self.detect(&shown)
                    .into_iter()
                    .filter(|v| !logical.iter().any(|l| l.1 < v.2 && v.1 < l.2)),
            );
        }
        spans.sort_by(|a, b| {
            a.1.cmp(&b.1)
                .then(b.2.cmp(&a.2))
                .then(b.0.rank().cmp(&a.0.rank()))
        });
        let mut hits: Vec<Hit> = Vec::new();
        let mut covered_to = 0;
        for (reason, start, end) in spans {
            if start < covered_to || start >= end {
                continue;
            }
            covered_to = end;
            hits.push(Hit {
                field: field.to_owned(),
                kind: reason.kind(),
                start,
                end,
                detail: messages::detail(reason, self.lang),
                reason,
            });
        }
        hits
    }

    /// The identifiers of a normalised text, allowed contacts left out, as spans of the original
    /// text's characters.
    fn detect(&self, norm: &Normalised<'_>) -> Vec<(Reason, usize, usize)> {
        let t = norm.as_str();
        let mut found: Vec<Found> = Vec::new();
        email::find(t, &mut found);
        numbers::find(t, &mut found);
        let identity_date = self.identity.as_ref().and_then(|i| i.birth_date);
        dates::find(t, self.today, identity_date, &mut found);
        address::find(t, &mut found);
        names::find_titled(t, &mut found);
        if let Some(identity) = &self.identity {
            identity.find(t, &mut found);
        }
        found
            .into_iter()
            .filter(|f| f.start < f.end)
            .filter(|f| {
                self.contacts.is_empty()
                    || contact_key(*f, t).is_none_or(|k| !self.contacts.contains(&k))
            })
            .map(|f| {
                let (start, end) = norm.original_span(f.start, f.end);
                (f.reason, start, end)
            })
            .collect()
    }
}

/// The canonical form of an allowed-contact kind of span, `None` for the other kinds.
fn contact_key(f: Found, t: &str) -> Option<String> {
    let slice = t.get(f.start..f.end)?;
    match f.reason {
        Reason::Phone => numbers::phone_key(slice),
        Reason::Email => email::key(slice),
        Reason::Address => address::key(slice),
        _ => None,
    }
}

/// The smallest char boundary of `s` at or above `i`.
pub(crate) fn ceil_boundary(s: &str, i: usize) -> usize {
    let mut i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// At most `n` bytes of `s` before byte `i` (cut at a char boundary).
pub(crate) fn before(s: &str, i: usize, n: usize) -> &str {
    let start = ceil_boundary(s, i.saturating_sub(n));
    s.get(start..i).unwrap_or("")
}

/// Compiles a constant pattern in ASCII mode (`\\d`, `\\s`, `\\w`, `\\b` and `(?i)` on ASCII
/// only): the normalised text holds its identifiers in ASCII, and Unicode classes and word
/// boundaries would make the regex engine give up its fast automaton on the first `€` or `°`.
/// The patterns are checked by the unit tests, so a typo is a bug caught there.
pub(crate) fn re(pattern: &str) -> regex::Regex {
    regex::Regex::new(&format!("(?-u){pattern}"))
        .unwrap_or_else(|e| panic!("identifier guard pattern: {e}"))
}

#[cfg(test)]
mod tests;
