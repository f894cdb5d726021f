//! Text normalisation for matching, with a map from every normalised byte back to the character
//! offsets of the text as sent.
//!
//! Each character of the input is, in order:
//! 1. decomposed by compatibility (NFKD: full-width forms, ligatures, `＠`, `①`, mathematical
//!    letters and digits, no-break and thin spaces become their plain forms);
//! 2. stripped of combining marks, so precomposed and decomposed accents both give the bare
//!    letter (`é` and `e` + U+0301 both give `e`) and marks stacked on digits disappear;
//! 3. folded: format characters (zero-width space and joiners, soft hyphen, word joiner, bidi
//!    controls such as U+202E, BOM, tags) are removed; digits of every script become ASCII
//!    digits; Cyrillic and Greek letters that look like Latin ones become those letters; dashes,
//!    apostrophes, quotes, slashes and middle dots become their ASCII forms; other spaces become
//!    a space and line separators a newline.
//!
//! Case is kept (names after a civil title are told by their capitals). The result is NFKD with
//! marks removed rather than NFKC: for matching identifiers the two differ only in accents, which
//! the detectors ignore anyway. ASCII text is its own normalisation and costs nothing.

use std::borrow::Cow;

use unicode_normalization::char::{decompose_compatible, is_combining_mark};

/// A normalised text and the way back to the original.
pub(crate) struct Normalised<'a> {
    text: Cow<'a, str>,
    /// For each byte of `text`: the character offset, in the original, of the character it came
    /// from. Empty when `text` is the original (ASCII input).
    starts: Vec<u32>,
    /// For each byte of `text`: the character offset just past the original character(s) it came
    /// from (a combining mark dropped after a letter belongs to that letter).
    ends: Vec<u32>,
}

impl<'a> Normalised<'a> {
    pub(crate) fn new(original: &'a str) -> Self {
        if original.is_ascii() {
            return Self {
                text: Cow::Borrowed(original),
                starts: Vec::new(),
                ends: Vec::new(),
            };
        }
        let chars = original
            .chars()
            .enumerate()
            .map(|(i, c)| (u32::try_from(i).unwrap_or(u32::MAX), c));
        Self::from_chars(original.len(), chars)
    }

    /// The text as displayed where a right-to-left override (U+202E) reverses it, up to the
    /// next pop (U+202C) or the end of the line: `\u{202E}87 65 43 21 60` shows a phone
    /// number. `None` when the text holds no override.
    pub(crate) fn visual(original: &str) -> Option<Normalised<'static>> {
        if !original.contains('\u{202E}') {
            return None;
        }
        let chars: Vec<(u32, char)> = original
            .chars()
            .enumerate()
            .map(|(i, c)| (u32::try_from(i).unwrap_or(u32::MAX), c))
            .collect();
        let mut shown = Vec::with_capacity(chars.len());
        let mut i = 0;
        while i < chars.len() {
            if chars[i].1 == '\u{202E}' {
                let mut j = i + 1;
                while j < chars.len() && !matches!(chars[j].1, '\u{202C}' | '\n') {
                    j += 1;
                }
                shown.extend(chars[i + 1..j].iter().rev());
                i = j;
            } else {
                shown.push(chars[i]);
                i += 1;
            }
        }
        Some(Normalised::from_chars(original.len(), shown.into_iter()))
    }

    /// Normalises characters given with their offsets in the original text.
    fn from_chars(
        capacity: usize,
        chars: impl Iterator<Item = (u32, char)>,
    ) -> Normalised<'static> {
        let mut text = String::with_capacity(capacity);
        let mut starts: Vec<u32> = Vec::with_capacity(capacity);
        let mut ends: Vec<u32> = Vec::with_capacity(capacity);
        // Byte range in `text` of what the last character that produced output produced.
        let mut last = 0..0;
        for (i, c) in chars {
            if c.is_ascii() {
                text.push(c);
                starts.push(i);
                ends.push(i.saturating_add(1));
                last = text.len() - 1..text.len();
                continue;
            }
            let before = text.len();
            decompose_compatible(c, |d| {
                if !is_combining_mark(d) {
                    fold(d, &mut |o| text.push(o));
                }
            });
            let after = text.len();
            if after > before {
                starts.resize(after, i);
                ends.resize(after, i.saturating_add(1));
                last = before..after;
            } else if is_combining_mark(c) {
                // A decomposed accent: it extends the letter it sits on.
                for end in &mut ends[last.clone()] {
                    *end = (*end).max(i.saturating_add(1));
                }
            }
        }
        Normalised {
            text: Cow::Owned(text),
            starts,
            ends,
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }

    /// The original character offsets (start, end exclusive) of the normalised byte range
    /// `start..end` (which must be non-empty and within the text).
    pub(crate) fn original_span(&self, start: usize, end: usize) -> (usize, usize) {
        if self.starts.is_empty() {
            return (start, end);
        }
        // Min and max: in a reversed (displayed) text the first byte is not the first character.
        let end = end.min(self.starts.len()).max(start + 1);
        let s = self
            .starts
            .get(start..end)
            .and_then(|r| r.iter().min())
            .copied()
            .unwrap_or(0);
        let e = self
            .ends
            .get(start..end)
            .and_then(|r| r.iter().max())
            .copied()
            .unwrap_or(s);
        (s as usize, e as usize)
    }
}

/// Folds one character of a compatibility decomposition (see the module documentation).
pub(crate) fn fold(c: char, out: &mut impl FnMut(char)) {
    if c.is_ascii() {
        out(c);
        return;
    }
    match c {
        // Format characters and fillers: invisible, dropped.
        '\u{00AD}'
        | '\u{061C}'
        | '\u{115F}'
        | '\u{1160}'
        | '\u{17B4}'
        | '\u{17B5}'
        | '\u{180B}'..='\u{180F}'
        | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}'
        | '\u{3164}'
        | '\u{FEFF}'
        | '\u{FFA0}'
        | '\u{FFF0}'..='\u{FFFB}'
        | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0000}'..='\u{E0FFF}' => {}
        '\u{0085}' | '\u{2028}' | '\u{2029}' => out('\n'),
        c if c.is_whitespace() => out(' '),
        '\u{2010}'..='\u{2015}'
        | '\u{2212}'
        | '\u{2043}'
        | '\u{FE58}'
        | '\u{FE63}'
        | '\u{2E3A}'
        | '\u{2E3B}' => out('-'),
        '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}' | '\u{2032}' | '\u{02BC}'
        | '\u{02B9}' => out('\''),
        '\u{00AB}' | '\u{00BB}' | '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{201F}'
        | '\u{2033}' | '\u{2039}' | '\u{203A}' => out('"'),
        '\u{2044}' | '\u{2215}' | '\u{29F8}' => out('/'),
        '\u{00B7}' | '\u{2022}' | '\u{2027}' | '\u{2219}' | '\u{30FB}' => out('.'),
        'ß' => {
            out('s');
            out('s');
        }
        'œ' => {
            out('o');
            out('e');
        }
        'Œ' => {
            out('O');
            out('E');
        }
        'æ' => {
            out('a');
            out('e');
        }
        'Æ' => {
            out('A');
            out('E');
        }
        c => {
            if let Some(d) = digit_value(c) {
                out(char::from(b'0' + d));
            } else {
                out(latin_lookalike(c).unwrap_or(c));
            }
        }
    }
}

/// The first code point (the zero) of each block of ten decimal digits (Unicode category Nd)
/// outside ASCII. Full-width and mathematical digits are handled by NFKD before this.
const DIGIT_ZEROS: &[u32] = &[
    0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6, 0x0C66, 0x0CE6, 0x0D66,
    0x0DE6, 0x0E50, 0x0ED0, 0x0F20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90,
    0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10,
    0x104A0, 0x10D30, 0x11066, 0x110F0, 0x11136, 0x111D0, 0x112F0, 0x11450, 0x114D0, 0x11650,
    0x116C0, 0x11730, 0x118E0, 0x11950, 0x11C50, 0x11D50, 0x11DA0, 0x16A60, 0x16AC0, 0x16B50,
    0x1E140, 0x1E2F0, 0x1E950, 0x1FBF0,
];

/// The value of a decimal digit of any script.
pub(crate) fn digit_value(c: char) -> Option<u8> {
    let cp = u32::from(c);
    if c.is_ascii_digit() {
        return u8::try_from(cp - u32::from('0')).ok();
    }
    if !c.is_numeric() {
        return None;
    }
    DIGIT_ZEROS
        .iter()
        .find(|&&zero| (zero..zero + 10).contains(&cp))
        .and_then(|zero| u8::try_from(cp - zero).ok())
}

/// Cyrillic, Greek and Latin-extension letters that are drawn like a basic Latin letter.
fn latin_lookalike(c: char) -> Option<char> {
    Some(match c {
        // Cyrillic.
        'а' => 'a',
        'в' => 'b',
        'е' | 'ё' | 'є' => 'e',
        'і' | 'ї' => 'i',
        'ј' => 'j',
        'к' => 'k',
        'м' => 'm',
        'н' | 'һ' => 'h',
        'о' => 'o',
        'р' => 'p',
        'с' => 'c',
        'т' => 't',
        'у' | 'ү' => 'y',
        'х' => 'x',
        'ѕ' => 's',
        'ԁ' => 'd',
        'ԛ' => 'q',
        'ԝ' => 'w',
        'ӏ' => 'l',
        'А' => 'A',
        'В' => 'B',
        'Е' | 'Ё' | 'Є' => 'E',
        'І' | 'Ї' | 'Ӏ' => 'I',
        'Ј' => 'J',
        'К' => 'K',
        'М' => 'M',
        'Н' | 'Һ' => 'H',
        'О' => 'O',
        'Р' => 'P',
        'С' => 'C',
        'Т' => 'T',
        'У' | 'Ү' => 'Y',
        'Х' => 'X',
        'Ѕ' => 'S',
        'Ԁ' => 'D',
        'Ԛ' => 'Q',
        'Ԝ' => 'W',
        // Greek.
        'α' => 'a',
        'ε' => 'e',
        'ι' => 'i',
        'κ' => 'k',
        'ν' => 'v',
        'ο' => 'o',
        'ρ' => 'p',
        'τ' => 't',
        'υ' => 'u',
        'χ' => 'x',
        'Α' => 'A',
        'Β' => 'B',
        'Ε' => 'E',
        'Ζ' => 'Z',
        'Η' => 'H',
        'Ι' => 'I',
        'Κ' => 'K',
        'Μ' => 'M',
        'Ν' => 'N',
        'Ο' => 'O',
        'Ρ' => 'P',
        'Τ' => 'T',
        'Υ' => 'Y',
        'Χ' => 'X',
        // Latin letters without a decomposition, and Armenian look-alikes.
        'ı' => 'i',
        'ł' => 'l',
        'Ł' => 'L',
        'ø' => 'o',
        'Ø' => 'O',
        'đ' => 'd',
        'Đ' => 'D',
        'ħ' => 'h',
        'ɡ' => 'g',
        'օ' => 'o',
        'ս' => 'u',
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Normalised::new(s).as_str().to_owned()
    }

    /// The original text covered by the normalised byte range `start..end`.
    fn back(original: &str, start: usize, end: usize) -> String {
        let n = Normalised::new(original);
        let (s, e) = n.original_span(start, end);
        original.chars().skip(s).take(e - s).collect()
    }

    #[test]
    fn ascii_is_its_own_normalisation() {
        let n = Normalised::new("tel 06 12 34 56 78");
        assert!(matches!(n.text, Cow::Borrowed(_)));
        assert_eq!(n.original_span(4, 18), (4, 18));
    }

    #[test]
    fn accents_are_removed_whether_composed_or_not() {
        assert_eq!(norm("née le"), "nee le");
        assert_eq!(norm("ne\u{0301}e le"), "nee le");
        assert_eq!(norm("Jérôme"), norm("Je\u{0301}ro\u{0302}me"));
        // The decomposed accent belongs to its letter.
        assert_eq!(back("ne\u{0301}e", 0, 2), "ne\u{0301}");
    }

    #[test]
    fn format_characters_are_removed() {
        for s in [
            "06\u{200B}12",
            "06\u{00AD}12",
            "06\u{2060}12",
            "06\u{200D}12",
            "\u{202E}0612",
            "06\u{FEFF}12",
        ] {
            assert_eq!(norm(s), "0612", "{s:?}");
        }
        // The hit covers the invisible characters between the digits, not those around them.
        let s = "\u{202E}06\u{200B}12\u{200B}";
        assert_eq!(back(s, 0, 4), "06\u{200B}12");
    }

    #[test]
    fn digits_of_every_script_become_ascii() {
        assert_eq!(norm("０６１２"), "0612");
        assert_eq!(norm("٠٦١٢٣٤"), "061234");
        assert_eq!(norm("۰۶۱۲"), "0612");
        assert_eq!(norm("०६१२"), "0612");
        assert_eq!(norm("𝟎𝟔𝟏𝟐"), "0612");
        assert_eq!(norm("①②"), "12");
        assert_eq!(digit_value('๕'), Some(5));
        assert_eq!(digit_value('x'), None);
        assert_eq!(digit_value('½'), None);
    }

    #[test]
    fn look_alikes_and_punctuation() {
        assert_eq!(norm("jean＠orаnge.fr"), "jean@orange.fr"); // full-width @, Cyrillic а
        assert_eq!(norm("Мme ΒΕΝΑLΙ"), "Mme BENALI");
        assert_eq!(norm("l’avenue"), "l'avenue");
        assert_eq!(norm("06\u{2011}12\u{2013}34"), "06-12-34");
        assert_eq!(norm("12\u{00A0}rue\u{202F}Foch"), "12 rue Foch");
        assert_eq!(norm("Œuvre"), "OEuvre");
        assert_eq!(norm("nº 12"), "no 12");
    }

    #[test]
    fn overrides_are_read_as_displayed() {
        let s = "tel \u{202E}87 65 43 21 60\u{202C} ok";
        assert!(Normalised::visual("06 12").is_none());
        let v = Normalised::visual(s).unwrap();
        assert_eq!(v.as_str(), "tel 06 12 34 56 78 ok");
        assert_eq!(v.original_span(4, 18), (5, 19));
    }

    #[test]
    fn offsets_point_into_the_original_characters() {
        // One original character giving two (ﬁ), a full-width digit, an accent.
        let s = "ﬁl ０６ é";
        let n = Normalised::new(s);
        assert_eq!(n.as_str(), "fil 06 e");
        assert_eq!(n.original_span(0, 2), (0, 1)); // "fi" <- "ﬁ"
        assert_eq!(n.original_span(4, 6), (3, 5)); // "06" <- "０６"
        assert_eq!(n.original_span(7, 8), (6, 7));
    }
}
