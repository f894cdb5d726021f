//! The identifier guard against its labelled corpus (`tests/guard/corpus.txt`, issue 35): prints
//! precision and recall per kind, and fails below 97 % of clean sentences accepted or 95 % of
//! identifier sentences refused. A sentence with identifiers counts as refused only if each of
//! them is covered by a hit of its kind. In the evasion sentences, every identifier must be hit at
//! exactly its offsets in the text as sent.

use std::collections::BTreeMap;

use cellule::domain::guard::{Guard, Hit, IdentifierKind, IdentityParts};
use chrono::NaiveDate;

const CORPUS: &str = include_str!("guard/corpus.txt");

/// An identifier marked in a sentence: its kind and character offsets.
#[derive(Debug, Clone)]
struct Marked {
    kind: IdentifierKind,
    start: usize,
    end: usize,
}

struct Sentence {
    line: usize,
    tag: String,
    identity: Option<(String, String, NaiveDate)>,
    text: String,
    marked: Vec<Marked>,
}

/// `\u{HEX}` escapes to characters.
fn unescape(s: &str, line: usize) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("\\u{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 3..];
        let close = after
            .find('}')
            .unwrap_or_else(|| panic!("line {line}: unclosed \\u{{"));
        let code = u32::from_str_radix(&after[..close], 16)
            .ok()
            .and_then(char::from_u32)
            .unwrap_or_else(|| panic!("line {line}: bad escape"));
        out.push(code);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

/// The sentence without its markers, and the marked identifiers.
fn parse_sentence(raw: &str, line: usize) -> (String, Vec<Marked>) {
    let mut text = String::new();
    let mut marked = Vec::new();
    let mut chars = 0;
    let mut rest = raw;
    while let Some(open) = rest.find('⟦') {
        let before = &rest[..open];
        text.push_str(before);
        chars += before.chars().count();
        let inner_start = open + '⟦'.len_utf8();
        let close = rest[inner_start..]
            .find('⟧')
            .unwrap_or_else(|| panic!("line {line}: unclosed ⟦"));
        let inner = &rest[inner_start..inner_start + close];
        let (kind, body) = inner
            .split_once(':')
            .unwrap_or_else(|| panic!("line {line}: marker without kind"));
        let kind = IdentifierKind::parse(kind)
            .unwrap_or_else(|| panic!("line {line}: unknown kind {kind:?}"));
        let n = body.chars().count();
        marked.push(Marked {
            kind,
            start: chars,
            end: chars + n,
        });
        text.push_str(body);
        chars += n;
        rest = &rest[inner_start + close + '⟧'.len_utf8()..];
    }
    text.push_str(rest);
    (text, marked)
}

fn load() -> (Vec<String>, Vec<Sentence>) {
    let mut contacts = Vec::new();
    let mut sentences = Vec::new();
    for (i, raw) in CORPUS.lines().enumerate() {
        let line = i + 1;
        if let Some(contact) = raw.strip_prefix("#! contact: ") {
            contacts.push(contact.to_owned());
            continue;
        }
        if raw.trim().is_empty() || raw.starts_with('#') {
            continue;
        }
        let mut parts = raw.splitn(3, " | ");
        let (Some(tag), Some(identity), Some(sentence)) =
            (parts.next(), parts.next(), parts.next())
        else {
            panic!("line {line}: expected `tag | identity | sentence`");
        };
        let identity = (identity != "-").then(|| {
            let f: Vec<&str> = identity.split(';').collect();
            assert_eq!(f.len(), 3, "line {line}: identity is Last;First;YYYY-MM-DD");
            let date = NaiveDate::parse_from_str(f[2], "%Y-%m-%d")
                .unwrap_or_else(|_| panic!("line {line}: identity date"));
            (f[0].to_owned(), f[1].to_owned(), date)
        });
        let (text, marked) = parse_sentence(&unescape(sentence, line), line);
        assert_eq!(
            tag.starts_with("clean"),
            marked.is_empty(),
            "line {line}: clean sentences have no marker, the others at least one"
        );
        sentences.push(Sentence {
            line,
            tag: tag.to_owned(),
            identity,
            text,
            marked,
        });
    }
    (contacts, sentences)
}

fn covers(hit: &Hit, m: &Marked) -> bool {
    hit.kind == m.kind && hit.start <= m.start && hit.end >= m.end
}

fn overlaps(hit: &Hit, m: &Marked) -> bool {
    hit.kind == m.kind && hit.start < m.end && m.start < hit.end
}

#[derive(Default)]
struct Counts {
    marked: usize,
    covered: usize,
    hits: usize,
    true_hits: usize,
}

#[test]
fn the_guard_meets_its_rates_on_the_corpus() {
    let (contacts, sentences) = load();
    let today = NaiveDate::from_ymd_opt(2026, 11, 23).expect("date");
    let base = Guard::new(today).with_contacts(&contacts);

    let mut per_kind: BTreeMap<&'static str, Counts> = BTreeMap::new();
    let (mut clean, mut clean_ok, mut dirty, mut dirty_ok) = (0, 0, 0, 0);
    let (mut evasions, mut evasions_exact) = (0, 0);
    let mut failures = Vec::new();
    for s in &sentences {
        let guard;
        let g = match &s.identity {
            None => &base,
            Some((last, first, date)) => {
                guard = Guard::new(today)
                    .with_contacts(&contacts)
                    .with_identity(Some(&IdentityParts {
                        last_name: last,
                        first_name: first,
                        birth_date: Some(*date),
                    }));
                &guard
            }
        };
        let hits = g.scan("situation", &s.text);
        for h in &hits {
            let c = per_kind.entry(h.kind.as_str()).or_default();
            c.hits += 1;
            if s.marked.iter().any(|m| overlaps(h, m)) {
                c.true_hits += 1;
            }
        }
        for m in &s.marked {
            let c = per_kind.entry(m.kind.as_str()).or_default();
            c.marked += 1;
            if hits.iter().any(|h| covers(h, m)) {
                c.covered += 1;
            }
        }
        let found: Vec<String> = hits
            .iter()
            .map(|h| {
                let t: String = s.text.chars().skip(h.start).take(h.end - h.start).collect();
                format!("{}[{}..{}] {t:?}", h.kind.as_str(), h.start, h.end)
            })
            .collect();
        if s.marked.is_empty() {
            clean += 1;
            if hits.is_empty() {
                clean_ok += 1;
            } else {
                failures.push(format!(
                    "line {} refused: {:?} -> {found:?}",
                    s.line, s.text
                ));
            }
        } else {
            dirty += 1;
            if s.marked.iter().all(|m| hits.iter().any(|h| covers(h, m))) {
                dirty_ok += 1;
            } else {
                failures.push(format!("line {} missed: {:?} -> {found:?}", s.line, s.text));
            }
        }
        if s.tag.contains("evasion") {
            evasions += 1;
            let exact = s.marked.iter().all(|m| {
                hits.iter()
                    .any(|h| h.kind == m.kind && h.start == m.start && h.end == m.end)
            });
            if exact {
                evasions_exact += 1;
            } else {
                failures.push(format!(
                    "line {} offsets differ: {:?} marked {:?} -> {found:?}",
                    s.line, s.text, s.marked
                ));
            }
        }
    }

    println!(
        "guard corpus: {} sentences ({clean} clean, {dirty} with identifiers, {evasions} evasions)",
        sentences.len()
    );
    println!(
        "{:<16} {:>7} {:>7} {:>10} {:>8}",
        "kind", "marked", "hits", "precision", "recall"
    );
    for (kind, c) in &per_kind {
        let precision = if c.hits == 0 {
            1.0
        } else {
            c.true_hits as f64 / c.hits as f64
        };
        let recall = if c.marked == 0 {
            1.0
        } else {
            c.covered as f64 / c.marked as f64
        };
        println!(
            "{kind:<16} {:>7} {:>7} {:>9.1}% {:>7.1}%",
            c.marked,
            c.hits,
            precision * 100.0,
            recall * 100.0
        );
    }
    let accepted = clean_ok as f64 / clean as f64;
    let refused = dirty_ok as f64 / dirty as f64;
    println!(
        "clean accepted: {clean_ok}/{clean} ({:.1}%); identifiers refused: {dirty_ok}/{dirty} ({:.1}%); evasions at exact offsets: {evasions_exact}/{evasions}",
        accepted * 100.0,
        refused * 100.0
    );
    for f in &failures {
        println!("  {f}");
    }
    assert!(clean >= 100 && dirty >= 100, "the corpus is too small");
    assert!(
        accepted >= 0.97,
        "clean sentences accepted: {:.1}% < 97%",
        accepted * 100.0
    );
    assert!(
        refused >= 0.95,
        "identifier sentences refused: {:.1}% < 95%",
        refused * 100.0
    );
    assert_eq!(
        evasions_exact, evasions,
        "evasion offsets must map to the text as sent"
    );
}
