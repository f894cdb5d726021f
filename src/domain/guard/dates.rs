//! Birth dates, read on normalised (accent-free) text.
//!
//! # Which dates are birth dates
//!
//! Every date of the text is read, in every spelling: `12/03/1980`, `12.03.80`, `12-3-1980`,
//! `12 / 03 / 1980`, `1980-03-12`, `12 mars 1980`, `1er janv. 80`; spaced (`12 03 1980`) and
//! compact (`12031980`, `120380`) forms only where a birth word or the identity asks for them.
//! Then, in this order:
//!
//! 1. the referral's identity's birth date, in any of these spellings, is refused wherever it is;
//! 2. a date right after a **birth word** (`né`, `née`, `né(e)` followed by `le`, `à`, `en` or
//!    `:`; `naissance`, `naiss.`, `DDN`, `D.D.N.` within 40 characters, in the same sentence), or
//!    listed after such a date (`nés le 04/05/2010 et le 17/09/2012`), is a birth date when it is
//!    a valid date not after today: full dates, and also day and month (`née le 12 mars`) or
//!    month and year (`né en mars 1980`) — a year alone passes;
//! 3. a date that something explains is an event and passes: an **event word** before it in its
//!    sentence and closer than any birth word (`loi`, `décret`, `juge`, `audience`, `depuis`,
//!    `hospitalisé`, `rendez-vous`, `arrêt`, `signalement`, `décédé`…, see [`EVENT`]), one end
//!    of a range (`du 12/05/2008 au 30/06/2008`), or, for a date with no birth word either, an
//!    event word right after it in its clause (`le 14 juillet 2010, incendie…`);
//! 4. a full date that nothing explains is a birth date when it is the birth date of an adult:
//!    between 1900 and eighteen years before today (`personne du 01/01/1960`). A more recent one
//!    passes (a meeting, a hospital stay; a child's birth date needs a birth word to be caught),
//!    and so do partial dates (`03/2024`, `mars 2024`, `le 12/03`).
//!
//! A two-digit year is read in the last hundred years (`85` is 1985, `12` is 2012 in 2026).

use std::sync::LazyLock;

use chrono::{Datelike, NaiveDate};
use regex::Regex;

use super::{Found, Reason, before, re};

/// Numeric dates: day-month-year with `/ . -` (spaces around allowed), day month year with
/// spaces only, year-month-day, and compact six or eight digits.
static NUMERIC: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?P<d>\d{1,2})[ \t]*[/.\-][ \t]*(?P<m>\d{1,2})[ \t]*[/.\-][ \t]*(?P<y>\d{4}|\d{2})",
        r"|(?P<iy>\d{4})[ \t]*[/.\-][ \t]*(?P<im>\d{1,2})[ \t]*[/.\-][ \t]*(?P<id>\d{1,2})",
        r"|(?P<sd>\d{1,2})[ \t]+(?P<sm>\d{1,2})[ \t]+(?P<sy>\d{4}|\d{2})",
        r"|(?P<c>\d{8}|\d{6})",
        r"|(?P<pm>\d{1,2})[ \t]*/[ \t]*(?P<py>\d{4})",
    ))
});
/// Dates with a month name, the day or the year possibly missing.
static TEXTUAL: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?:(?P<d>\d{1,2}|1er|premier)(?:er)?[ \t\-]+)?(?P<mon>janvier|janv|fevrier|fevr|fev|mars|avril|avr|mai|juin|juillet|juil|aout|septembre|sept|sep|octobre|oct|novembre|nov|decembre|dec)\b\.?(?:[ \t\-]+(?P<y>\d{4}|\d{2})\b)?",
    )
});
/// Birth words that may stand some way before the date.
static BIRTH_FAR: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)\b(?:naissance|naiss|ddn|d\.d\.n|date de nais)\b"));
/// `né`, `née`, `né(e)` and what may stand between them and the date.
static BIRTH_NEAR: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)(?:\bnee?s?\b(?:[ \t]*\(e?e?s?\))?[ \t]*(?:le\b|a\b|en\b|:|au\b|vers\b|,|dans\b)(?u:[^0-9\n;!?]){0,30}|\bnee?s?\b[ \t]*\(e?e?s?\)[ \t]*:?[ \t]*|\bnees?\b[ \t]*:?[ \t]*)$",
    )
});
/// Words that say a date is an event.
static EVENT: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?i)\b(?:lois?|decrets?|arretes?|ordonnances?|circulaires?|instructions?|conventions?|articles?|codes?|",
        r"jugements?|juges?|jap|jld|audiences?|tribunal|cour|arrets?|depuis|jusqu|des le|a partir|a compter|",
        r"apres|avant|entre|hospitalis\w*|admis\w*|admission|sorti\w*|entree|sejours?|urgences?|rdv|rendez|",
        r"consultations?|convoqu\w*|convocations?|visites?|vad|reunions?|commissions?|syntheses?|",
        r"expuls\w*|commandements?|assignations?|signal\w*|plaintes?|courriers?|mails?|appels?|appele\w*|",
        r"deces|decede\w*|mort|morte|mariage|marie\w*|divorc\w*|separ\w*|arrive\w*|demenag\w*|emmenag\w*|",
        r"installe\w*|incarcer\w*|liber\w*|garde a vue|placements?|place\w*|bail|baux|sign\w*|notifi\w*|",
        r"recu\w*|envoy\w*|prevu\w*|fixe\w*|report\w*|renouvel\w*|echeances?|expir\w*|valable|ouverture|",
        r"fermeture|clotur\w*|decisions?|mesures?|curatelle|tutelle|sauvegarde|hdt|sdt|sdre|spdt|spdre|",
        r"certificats?|orientations?|orient\w*|mdph|depos\w*|depot|demandes?|accidents?|agress\w*|chute|",
        r"interventions?|pompiers|police|gendarmerie|incidents?|crise|tentative|ts|evenements?|loyers?|",
        r"factures?|contrats?|cdd|cdi|embauch\w*|licenci\w*|chomage|retraite|effet|survenu\w*|intervenu\w*|",
        r"effectu\w*|realis\w*|evoqu\w*|examin\w*|vu|vue|vus|passe\w*|venu\w*|parti\w*|quitte\w*|perdu\w*|",
        r"rupture|fin|debut|lors|pendant|durant|au cours|datant|datee?s?|en date|publie\w*|adopte\w*|",
        r"vote\w*|modifi\w*|relative?|relatif|entre\w*|hebergee?s?|accueilli\w*|suivi\w*|reunie?s?|",
        r"rencontr\w*|vu\w*|revu\w*|obtenu\w*|accord\w*|refus\w*|ouvert\w*|ferme\w*|commenc\w*|termin\w*|",
        r"intern\w*|transfer\w*|mute\w*|opere\w*|operation|greffe|diagnostiqu\w*|licencie\w*|condamn\w*|",
        r"interpell\w*|fugu\w*|disparu\w*|retrouv\w*|hospit\w*|inscri\w*|radie\w*|expire\w*|attribu\w*|",
        r"reconnu\w*|incendie|inond\w*|sinistre|vol|cambriol\w*|rixe|bagarre|altercation|dispute|",
        r"episodes?|delir\w*|diagnostic\w*|premier|premiere|dernier|derniere|chu|chs|cmp|hopital|clinique|",
        r"samu|epsm|ehpad|chrs|foyer)\b"
    ))
});
/// What joins the dates of a list (`nés le 04/05/2010 et le 17/09/2012`).
static LIST_JOIN: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)^[ \t]*[,;]?[ \t]*(?:et[ \t]+)?(?:le[ \t]+)?$"));
/// What joins the two ends of a range.
static RANGE_JOIN: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)^[ \t]*(?:au|a|-|et|et le|jusqu'au|jusqu'a|puis le)[ \t]*$"));

fn month_number(name: &str) -> Option<u32> {
    let l = name.to_ascii_lowercase();
    let prefixes = [
        "jan", "fev", "mar", "avr", "mai", "juin", "juil", "aou", "sep", "oct", "nov", "dec",
    ];
    prefixes
        .iter()
        .position(|p| l.starts_with(p))
        .and_then(|i| u32::try_from(i + 1).ok())
}

/// The shape of a date found in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Day, month and year with separators or a month name.
    Full,
    /// Spaced or compact: a date only where a birth word or the identity asks for it.
    Weak,
    /// Day and month, or month and year.
    Partial,
}

#[derive(Debug, Clone, Copy)]
struct Candidate {
    start: usize,
    end: usize,
    shape: Shape,
    /// The full date, when the text gives one.
    date: Option<NaiveDate>,
    /// A partial date's month (for the plausibility of day-month and month-year).
    partial_ok: bool,
}

fn year_of(s: &str, today: NaiveDate) -> Option<i32> {
    let y: i32 = s.parse().ok()?;
    if s.len() == 4 {
        return Some(y);
    }
    let this = today.year() % 100;
    let century = today.year() - this;
    Some(if y <= this {
        century + y
    } else {
        century - 100 + y
    })
}

fn num(s: Option<regex::Match<'_>>) -> Option<u32> {
    s?.as_str().parse().ok()
}

/// Every date of the text, in order.
fn candidates(t: &str, today: NaiveDate) -> Vec<Candidate> {
    let b = t.as_bytes();
    let mut out = Vec::new();
    for c in NUMERIC.captures_iter(t) {
        let Some(m) = c.get(0) else { continue };
        // Not part of a longer number or dotted sequence (a phone, a version, a NIR); a spaced
        // date not inside a longer run of spaced numbers.
        let prev = m.start().checked_sub(1).map(|i| b[i]);
        let prev2 = m.start().checked_sub(2).map(|i| b[i]);
        let next = b.get(m.end()).copied();
        let next2 = b.get(m.end() + 1).copied();
        let joined = |sep: Option<u8>, digit: Option<u8>, spaced: bool| {
            sep.is_some_and(|p| matches!(p, b'/' | b'.' | b'-') || (spaced && p == b' '))
                && digit.is_some_and(|p| p.is_ascii_digit())
        };
        let spaced = c.name("sy").is_some();
        if prev.is_some_and(|p| p.is_ascii_alphanumeric())
            || next.is_some_and(|n| n.is_ascii_alphanumeric())
            || joined(prev, prev2, spaced)
            || joined(next, next2, spaced)
        {
            continue;
        }
        let (day, month, year, shape) = if let Some(y) = c.name("y") {
            (
                num(c.name("d")),
                num(c.name("m")),
                year_of(y.as_str(), today),
                Shape::Full,
            )
        } else if let Some(y) = c.name("iy") {
            (
                num(c.name("id")),
                num(c.name("im")),
                year_of(y.as_str(), today),
                Shape::Full,
            )
        } else if let Some(y) = c.name("sy") {
            (
                num(c.name("sd")),
                num(c.name("sm")),
                year_of(y.as_str(), today),
                Shape::Weak,
            )
        } else if let Some(x) = c.name("c") {
            let s = x.as_str();
            let (d, mo, y) = if s.len() == 8 && (s.starts_with("19") || s.starts_with("20")) {
                (&s[6..8], &s[4..6], &s[0..4])
            } else {
                (&s[0..2], &s[2..4], &s[4..])
            };
            (
                d.parse().ok(),
                mo.parse().ok(),
                year_of(y, today),
                Shape::Weak,
            )
        } else {
            let month = num(c.name("pm"));
            let year = c.name("py").and_then(|y| year_of(y.as_str(), today));
            let ok = month.is_some_and(|m| (1..=12).contains(&m)) && year.is_some();
            out.push(Candidate {
                start: m.start(),
                end: m.end(),
                shape: Shape::Partial,
                date: None,
                partial_ok: ok,
            });
            continue;
        };
        let date = match (year, month, day) {
            (Some(y), Some(mo), Some(d)) => NaiveDate::from_ymd_opt(y, mo, d),
            _ => None,
        };
        if date.is_some() {
            out.push(Candidate {
                start: m.start(),
                end: m.end(),
                shape,
                date,
                partial_ok: false,
            });
        }
    }
    for c in TEXTUAL.captures_iter(t) {
        let Some(m) = c.get(0) else { continue };
        let month = c.name("mon").and_then(|x| month_number(x.as_str()));
        let day = c
            .name("d")
            .and_then(|d| match d.as_str().to_ascii_lowercase().as_str() {
                "1er" | "premier" => Some(1),
                other => other.parse::<u32>().ok(),
            });
        let year = c.name("y").and_then(|y| year_of(y.as_str(), today));
        let (Some(month), end) = (month, m.end()) else {
            continue;
        };
        let end = if t[..end].ends_with('.') && c.name("y").is_none() {
            end - 1
        } else {
            end
        };
        match (day, year) {
            (Some(d), Some(y)) => {
                if let Some(date) = NaiveDate::from_ymd_opt(y, month, d) {
                    out.push(Candidate {
                        start: m.start(),
                        end,
                        shape: Shape::Full,
                        date: Some(date),
                        partial_ok: false,
                    });
                }
            }
            (Some(d), None) => out.push(Candidate {
                start: m.start(),
                end,
                shape: Shape::Partial,
                date: None,
                partial_ok: NaiveDate::from_ymd_opt(2000, month, d).is_some(),
            }),
            (None, Some(_)) => out.push(Candidate {
                start: m.start(),
                end,
                shape: Shape::Partial,
                date: None,
                partial_ok: true,
            }),
            (None, None) => {}
        }
    }
    out.sort_by_key(|c| c.start);
    out
}

/// End of the sentence part before `at`: after the last newline, `;`, `!`, `?` or a `.`
/// followed by a space and a capital.
fn clause_start(window: &str) -> usize {
    let b = window.as_bytes();
    let mut cut = 0;
    for i in 0..b.len() {
        let stop = match b[i] {
            b'\n' | b';' | b'!' | b'?' => true,
            b'.' => b.get(i + 1) == Some(&b' ') && b.get(i + 2).is_some_and(u8::is_ascii_uppercase),
            _ => false,
        };
        if stop {
            cut = i + 1;
        }
    }
    cut
}

/// What the words before a date say about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    Birth,
    Event,
    None,
}

/// Whether an event word follows the date in its clause, close to it (`le 14 juillet 2010,
/// incendie dans l'escalier`).
fn event_after(t: &str, end: usize) -> bool {
    let rest = &t[end..];
    let window = &rest[..super::ceil_boundary(rest, 32)];
    let clause = window
        .find(['\n', ';', '!', '?', '.'])
        .map_or(window, |i| &window[..i]);
    EVENT.is_match(clause)
}

fn context(t: &str, start: usize) -> Context {
    let window = before(t, start, 80);
    let clause = &window[clause_start(window)..];
    let near = BIRTH_NEAR.find(clause).map(|m| m.start());
    let far = BIRTH_FAR
        .find_iter(clause)
        .filter(|m| clause.len() - m.start() <= 48)
        .last()
        .map(|m| m.start());
    let birth = near.max(far);
    let event = EVENT.find_iter(clause).last().map(|m| m.start());
    match (birth, event) {
        (Some(b), Some(e)) if e > b => Context::Event,
        (Some(_), _) => Context::Birth,
        (None, Some(_)) => Context::Event,
        (None, None) => Context::None,
    }
}

pub(crate) fn find(
    t: &str,
    today: NaiveDate,
    identity_date: Option<NaiveDate>,
    out: &mut Vec<Found>,
) {
    if !t.bytes().any(|b| b.is_ascii_digit()) {
        return;
    }
    let cands = candidates(t, today);
    // Both ends of a range are events.
    let mut in_range = vec![false; cands.len()];
    for i in 1..cands.len() {
        let (a, b) = (cands[i - 1], cands[i]);
        if a.end <= b.start
            && a.shape != Shape::Partial
            && b.shape != Shape::Partial
            && RANGE_JOIN.is_match(&t[a.end..b.start])
        {
            in_range[i - 1] = true;
            in_range[i] = true;
        }
    }
    let adult = today.with_year(today.year() - 18).unwrap_or(today);
    // The previous date, when it was a birth date (`nés le 04/05/2010 et le 17/09/2012`).
    let mut previous_birth: Option<usize> = None;
    for (i, c) in cands.iter().enumerate() {
        if c.date.is_some() && c.date == identity_date {
            out.push(Found::new(Reason::IdentityBirthDate, c.start, c.end));
            continue;
        }
        let plausible = c.date.is_some_and(|d| d <= today && d.year() >= 1900);
        let listed = previous_birth
            .is_some_and(|end| end <= c.start && LIST_JOIN.is_match(&t[end..c.start]));
        let context = if listed {
            Context::Birth
        } else {
            context(t, c.start)
        };
        let birth = match context {
            Context::Birth => match c.shape {
                Shape::Partial => c.partial_ok,
                Shape::Full | Shape::Weak => plausible,
            },
            Context::Event => false,
            Context::None => {
                c.shape == Shape::Full
                    && !in_range[i]
                    && plausible
                    && c.date.is_some_and(|d| d <= adult)
                    && !event_after(t, c.end)
            }
        };
        if birth {
            out.push(Found::new(Reason::BirthDate, c.start, c.end));
        }
        previous_birth = birth.then_some(c.end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 23).unwrap()
    }

    fn births(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        find(text, today(), None, &mut out);
        out.into_iter().map(|f| &text[f.start..f.end]).collect()
    }

    #[test]
    fn month_names() {
        assert_eq!(month_number("janv"), Some(1));
        assert_eq!(month_number("Fevrier"), Some(2));
        assert_eq!(month_number("juin"), Some(6));
        assert_eq!(month_number("juillet"), Some(7));
        assert_eq!(month_number("juil"), Some(7));
        assert_eq!(month_number("aout"), Some(8));
        assert_eq!(month_number("sept"), Some(9));
        assert_eq!(month_number("decembre"), Some(12));
    }

    #[test]
    fn birth_dates_in_every_spelling() {
        for (text, date) in [
            ("DDN : 03/04/85", "03/04/85"),
            ("DDN 12031980", "12031980"),
            ("nee le 12 / 03 / 1980", "12 / 03 / 1980"),
            ("ne le 3 mars 1952", "3 mars 1952"),
            ("nee le 14/07/2015 a Perpignan", "14/07/2015"),
            ("date de naissance : 1975-11-02", "1975-11-02"),
            ("ne(e) le 12 03 1980", "12 03 1980"),
            ("nee le 12 mars", "12 mars"),
            ("personne du 01/01/1960", "01/01/1960"),
            ("le 1er janvier 1975", "1er janvier 1975"),
            ("repere 12.03.1980", "12.03.1980"),
            ("ne a Perpignan le 03/04/1985", "03/04/1985"),
        ] {
            assert_eq!(births(text), vec![date], "{text}");
        }
        assert_eq!(
            births("deux enfants nes le 04/05/2010 et le 17/09/2012"),
            vec!["04/05/2010", "17/09/2012"]
        );
    }

    #[test]
    fn event_dates_pass() {
        for text in [
            "loi du 5 juillet 2011",
            "loi n° 2002-303 du 4 mars 2002",
            "hospitalisee du 12/05/2008 au 30/06/2008",
            "Audience devant le juge des enfants le 15/06/2012.",
            "arret maladie depuis le 04/02/2014",
            "le 12/03/2026",
            "Rendez-vous le 12/03",
            "dernier signalement en 06/2024",
            "suivi depuis mars 2008",
            "ne le voit plus depuis 2019",
            "circulaire du 30/09/2016 (n° DGS/SP4/CGET/2016/289)",
            "06.12.34.56.78",
            "Version 2.3.1",
            "Il a eu son premier episode delirant le 12/04/1995.",
            "Pose du diagnostic le 20/10/1998 au CHU.",
        ] {
            assert!(births(text).is_empty(), "{text}: {:?}", births(text));
        }
    }

    #[test]
    fn the_identity_date_in_any_spelling() {
        let date = NaiveDate::from_ymd_opt(1980, 3, 12);
        for text in [
            "le 12/03/1980",
            "12031980",
            "12 mars 80",
            "1980-03-12",
            "depuis le 12 03 1980",
        ] {
            let mut out = Vec::new();
            find(text, today(), date, &mut out);
            assert_eq!(out.len(), 1, "{text}");
            assert_eq!(out[0].reason, Reason::IdentityBirthDate, "{text}");
        }
    }
}
