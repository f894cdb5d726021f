//! The compte rendu's documents, read back: the HTML's French and escaping, the PDF's text
//! through `pdftotext` (poppler-utils; CI installs it, and its absence fails these tests).

use std::process::Command;

use chrono::{NaiveDate, TimeZone, Utc};

use super::{RenderError, minutes_csp, minutes_html, minutes_pdf};
use crate::domain::case::Audience;
use crate::domain::minutes::{
    ActionLine, AttendanceLine, Minutes, MinutesDecision, MinutesItem, MinutesState, MinutesText,
};
use crate::domain::session::{AttendanceStatus, Outcome};

const BANNER: &str =
    "Document confidentiel — secret partagé : ne pas diffuser en dehors des destinataires";

/// A time as the documents write it: « 14 h 00 » with no-break spaces.
fn nb(s: &str) -> String {
    s.replace(" h ", "\u{a0}h\u{a0}")
}

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("valid date")
}

fn item(position: u32, reference: &str) -> MinutesItem {
    MinutesItem {
        position,
        reference: reference.to_owned(),
        kind: "new".to_owned(),
        decision: Some(MinutesDecision {
            outcome: Outcome::Routed,
            interlocutor: Some("Équipe mobile psychiatrie précarité".to_owned()),
            follow_up_date: Some(day(2026, 4, 9)),
            actions: vec![
                ActionLine {
                    what: "Prendre contact avec la mesure de protection".to_owned(),
                    owner: "UDAF Pyrénées-Orientales".to_owned(),
                    due: day(2026, 3, 31),
                },
                ActionLine {
                    what: "Visite à domicile conjointe".to_owned(),
                    owner: "CMP de Thuir".to_owned(),
                    due: day(2026, 4, 2),
                },
            ],
            text: Some(MinutesText {
                audience: Audience::Psychiatry,
                text: "Hospitalisation récente ; adhésion aux soins fragile.\n\
                       Revoir l'accès au médecin traitant <script>alert(1)</script>"
                    .to_owned(),
            }),
            version: 2,
            decided_by: "coord-thuir".to_owned(),
            decided_at: Utc.with_ymd_and_hms(2026, 3, 12, 13, 35, 0).unwrap(),
        }),
    }
}

/// Approved minutes with two items: one decided (actions, a psychiatry text, corrected once),
/// one follow-up without a decision.
fn minutes() -> Minutes {
    let mut follow_up = item(2, "CAS-2026-0017");
    follow_up.kind = "follow_up".to_owned();
    follow_up.decision = None;
    Minutes {
        cellule_name: "Cellule cas complexes de Thuir".to_owned(),
        session_id: "0193c0de-0000-7000-8000-000000000001".to_owned(),
        starts_local: day(2026, 3, 12).and_hms_opt(14, 0, 0).unwrap(),
        time_zone: "Europe/Paris".to_owned(),
        duration_minutes: 120,
        location: "Salle du conseil, mairie de Thuir".to_owned(),
        state: MinutesState::Approved {
            approved_at: Utc.with_ymd_and_hms(2026, 3, 19, 9, 12, 0).unwrap(),
            approved_by: "coord-thuir".to_owned(),
        },
        generated_at: Utc.with_ymd_and_hms(2026, 3, 20, 8, 0, 0).unwrap(),
        reader: "Membre — sphère psychiatrie, CMP de Thuir".to_owned(),
        attendance: vec![
            AttendanceLine {
                organisation: "CMP de Thuir".to_owned(),
                participant: Some("Dr Élodie Martin".to_owned()),
                status: AttendanceStatus::Present,
            },
            AttendanceLine {
                organisation: "CCAS de Thuir".to_owned(),
                participant: None,
                status: AttendanceStatus::Excused,
            },
            AttendanceLine {
                organisation: "Roussillon Habitat".to_owned(),
                participant: Some("Jérôme Dupré".to_owned()),
                status: AttendanceStatus::Absent,
            },
        ],
        items: vec![item(1, "CAS-2026-0042"), follow_up],
    }
}

#[test]
fn html_says_it_in_french() {
    let html = minutes_html(&minutes()).unwrap();
    for expected in [
        "<html lang=\"fr\">",
        BANNER,
        "Cellule cas complexes de Thuir",
        "Compte rendu de la séance du jeudi 12 mars 2026 à 14 h 00",
        "Salle du conseil, mairie de Thuir",
        "Approuvé le jeudi 19 mars 2026 à 10 h 12 par coord-thuir",
        "Exemplaire destiné à : Membre — sphère psychiatrie, CMP de Thuir",
        "Exemplaire produit le vendredi 20 mars 2026 à 9 h 00",
        "Présent·e",
        "Excusé·e",
        "Absent·e",
        "Dr Élodie Martin",
        "Point 1 — CAS-2026-0042",
        "Nouvelle situation",
        "Orientée",
        "Équipe mobile psychiatrie précarité",
        "jeudi 9 avril 2026",
        "<th scope=\"col\">Organisation responsable</th>",
        "UDAF Pyrénées-Orientales",
        "31 mars 2026",
        "2 avril 2026",
        "Texte réservé à la sphère psychiatrie",
        "Hospitalisation récente ; adhésion aux soins fragile.",
        "version 2 — corrigée",
        "Décision enregistrée par coord-thuir le jeudi 12 mars 2026 à 14 h 35",
        "Point 2 — CAS-2026-0017",
        "Suivi",
        "Pas de décision enregistrée",
    ] {
        assert!(html.contains(&nb(expected)), "missing {expected:?}");
    }
    let body = &html[html.find("</style>").unwrap()..];
    assert_eq!(
        body.matches(BANNER).count(),
        2,
        "banner at the top and the bottom"
    );
    assert!(html.contains("@media print") && html.contains("size: A4"));
    assert!(!html.contains("Projet"));
}

#[test]
fn a_draft_says_projet() {
    let mut m = minutes();
    m.state = MinutesState::Draft;
    let html = minutes_html(&m).unwrap();
    assert!(html.contains("Projet — ce compte rendu peut encore être corrigé"));
    assert!(!html.contains("Approuvé le"));
}

#[test]
fn html_escapes_the_model_and_loads_nothing() {
    let mut m = minutes();
    m.reader = "<b>x</b> & \"y\"".to_owned();
    let html = minutes_html(&m).unwrap();
    assert!(!html.contains("<script"), "a text's markup is escaped");
    assert!(
        html.contains("&#60;script&#62;alert(1)&#60;/script&#62;")
            || html.contains("&lt;script&gt;")
    );
    assert!(!html.contains("<b>x</b>"));
    for forbidden in [
        "src=", "href=", "<link", "@import", "url(", "http://", "https://",
    ] {
        assert!(
            !html.contains(forbidden),
            "no external resource: {forbidden}"
        );
    }
}

#[test]
fn html_shows_only_what_the_model_holds() {
    let mut m = minutes();
    // What the service filtered out for this reader: the text, an action, the second item.
    if let Some(d) = m.items[0].decision.as_mut() {
        d.text = None;
        d.actions.truncate(1);
    }
    m.items.truncate(1);
    let html = minutes_html(&m).unwrap();
    for absent in [
        "Texte réservé",
        "Hospitalisation",
        "Visite à domicile",
        "CAS-2026-0017",
        "Pas de décision",
    ] {
        assert!(!html.contains(absent), "{absent:?} is not in the model");
    }
    assert!(html.contains("UDAF Pyrénées-Orientales"));
}

#[test]
fn the_inline_style_is_allowed_by_its_hash_only() {
    use base64::Engine;
    let html = minutes_html(&minutes()).unwrap();
    let start = html.find("<style>").unwrap() + "<style>".len();
    let end = html.find("</style>").unwrap();
    let digest = ring::digest::digest(&ring::digest::SHA256, &html.as_bytes()[start..end]);
    let hash = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
    let csp = minutes_csp();
    assert!(csp.starts_with("default-src 'none'; "), "{csp}");
    assert!(csp.contains(&format!("style-src 'sha256-{hash}'")), "{csp}");
    assert!(!csp.contains("unsafe"), "{csp}");
}

#[test]
fn unknown_kind_and_zone_are_errors() {
    let mut m = minutes();
    m.items[1].kind = "autre".to_owned();
    assert!(matches!(minutes_html(&m), Err(RenderError::ItemKind(k)) if k == "autre"));
    let mut m = minutes();
    m.time_zone = "Europe/Thuir".to_owned();
    assert!(matches!(minutes_pdf(&m), Err(RenderError::TimeZone(_))));
}

#[test]
fn french_dates() {
    use super::french;
    assert_eq!(
        french::long_date(day(2026, 4, 1)),
        "mercredi 1er avril 2026"
    );
    assert_eq!(french::date(day(2026, 8, 15)), "15 août 2026");
    assert_eq!(
        french::long_date(day(2026, 2, 1)),
        "dimanche 1er février 2026"
    );
    assert_eq!(french::duration(90), "1 h 30");
    assert_eq!(french::duration(45), "45 min");
    // Summer time: 12:00 UTC is 14 h 00 in Paris in July.
    let summer = french::local(
        Utc.with_ymd_and_hms(2026, 7, 2, 12, 0, 0).unwrap(),
        chrono_tz::Europe::Paris,
    );
    assert_eq!(
        french::date_time(summer),
        nb("jeudi 2 juillet 2026 à 14 h 00")
    );
}

/// The PDF's text as `pdftotext -layout` reads it, no-break spaces as plain ones (poppler gives
/// them back either way).
fn pdf_text(pdf: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("compte-rendu.pdf");
    std::fs::write(&path, pdf).unwrap();
    let out = Command::new("pdftotext")
        .arg("-layout")
        .arg(&path)
        .arg("-")
        .output()
        .unwrap_or_else(|e| panic!("pdftotext (Debian package poppler-utils) is required: {e}"));
    assert!(
        out.status.success(),
        "pdftotext: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .replace('\u{a0}', " ")
}

#[test]
fn pdf_text_can_be_read_back() {
    let pdf = minutes_pdf(&minutes()).unwrap();
    assert!(pdf.starts_with(b"%PDF-"));
    let text = pdf_text(&pdf);
    for expected in [
        BANNER,
        "page 1 / 1",
        "Cellule cas complexes de Thuir",
        "Compte rendu de la séance du jeudi 12 mars 2026 à 14 h 00",
        "Approuvé le jeudi 19 mars 2026 à 10 h 12 par coord-thuir",
        "Exemplaire destiné à : Membre — sphère psychiatrie, CMP de Thuir",
        "Dr Élodie Martin",
        "Excusé·e",
        "Point 1 — CAS-2026-0042",
        "Orientée",
        "Équipe mobile psychiatrie précarité",
        "Organisation responsable",
        "UDAF Pyrénées-Orientales",
        "31 mars 2026",
        "CMP de Thuir",
        "2 avril 2026",
        "Texte réservé à la sphère psychiatrie",
        "Hospitalisation récente ; adhésion aux soins fragile.",
        "<script>alert(1)</script>",
        "version 2 — corrigée",
        "Point 2 — CAS-2026-0017",
        "Pas de décision enregistrée",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert_eq!(
        text.matches(BANNER).count(),
        2,
        "banner at the top and the bottom:\n{text}"
    );
    for absent in ["Projet", "CAS-2026-0099", "sphère ville"] {
        assert!(
            !text.contains(absent),
            "{absent:?} is not in the model:\n{text}"
        );
    }
}

#[test]
fn pdf_of_a_draft_and_its_determinism() {
    let mut m = minutes();
    m.state = MinutesState::Draft;
    let pdf = minutes_pdf(&m).unwrap();
    assert_eq!(pdf, minutes_pdf(&m).unwrap(), "same input, same bytes");
    let text = pdf_text(&pdf);
    assert!(text.contains("Projet — ce compte rendu"), "{text}");
    assert!(!text.contains("Approuvé"), "{text}");
    // The metadata: title, language, creation date from `generated_at`.
    let raw = String::from_utf8_lossy(&pdf);
    assert!(raw.contains("/Lang(fr)"), "language");
    assert!(raw.contains("D:20260320080000"), "creation date");
}

#[test]
fn forty_items_fill_several_pages() {
    let mut m = minutes();
    m.items = (1..=40)
        .map(|n| item(n, &format!("CAS-2026-{n:04}")))
        .collect();
    let text = pdf_text(&minutes_pdf(&m).unwrap());
    let pages = text.split('\u{c}').filter(|p| !p.trim().is_empty()).count();
    assert!(pages >= 10, "{pages} pages");
    for n in 1..=pages {
        assert!(
            text.contains(&format!("page {n} / {pages}")),
            "page {n} / {pages}"
        );
    }
    assert_eq!(
        text.matches(BANNER).count(),
        2 * pages,
        "banner twice on every page"
    );
    for n in 1..=40 {
        assert!(
            text.contains(&format!("Point {n} — CAS-2026-{n:04}")),
            "item {n}"
        );
    }
    // An item is never cut: its heading and its record are on the same page.
    for page in text.split('\u{c}') {
        assert_eq!(
            page.matches("Point ").count(),
            page.matches("Décision enregistrée").count(),
            "{page}"
        );
    }
}

#[test]
fn a_text_longer_than_a_page_flows_over_pages_word_for_word() {
    let mut m = minutes();
    let words: Vec<String> = (0..1500).map(|n| format!("m{n:04}x")).collect();
    if let Some(d) = m.items[0].decision.as_mut() {
        d.text = Some(MinutesText {
            audience: Audience::Cellule,
            text: words.join(" "),
        });
    }
    let text = pdf_text(&minutes_pdf(&m).unwrap());
    assert!(text.contains("page 2 / "), "{text}");
    assert!(text.contains("Texte partagé avec les membres de la cellule"));
    for word in &words {
        assert!(text.contains(word.as_str()), "{word} lost");
    }
}

#[test]
fn lines_are_wrapped_within_their_width() {
    use super::pdf::layout;
    let fonts = layout::fonts().unwrap();
    let m = layout::Metrics::new(fonts.0, fonts.1);
    let text = format!(
        "Une phrase assez longue pour passer à la ligne. {}",
        "x".repeat(300)
    );
    let lines = m.wrap(&text, layout::Weight::Regular, 10.0, 200.0);
    assert!(lines.len() > 3, "{lines:?}");
    for line in &lines {
        assert!(
            m.width(line, layout::Weight::Regular, 10.0) <= 200.0,
            "{line}"
        );
    }
    assert_eq!(lines.concat().replace(' ', ""), text.replace(' ', ""));
}
