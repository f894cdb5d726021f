//! The guard as a whole: offsets in the text as sent, overlaps, contacts, identity, languages.

use super::*;

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 23).unwrap()
}

fn guard() -> Guard {
    Guard::new(today())
}

fn kinds(text: &str) -> Vec<IdentifierKind> {
    guard()
        .scan("f", text)
        .into_iter()
        .map(|h| h.kind)
        .collect()
}

/// The original text each hit points at.
fn found(g: &Guard, text: &str) -> Vec<(IdentifierKind, String)> {
    g.scan("f", text)
        .into_iter()
        .map(|h| {
            (
                h.kind,
                text.chars().skip(h.start).take(h.end - h.start).collect(),
            )
        })
        .collect()
}

#[test]
fn every_pattern_compiles() {
    // Scanning a text that reaches every detector forces every lazy pattern.
    let g = guard()
        .with_contacts(["04 00 00 00 01, accueil@ccas.example, 1 place de la Mairie"])
        .with_identity(Some(&IdentityParts {
            last_name: "Benali",
            first_name: "Fatima",
            birth_date: NaiveDate::from_ymd_opt(1985, 4, 3),
        }));
    let text = "Mme Fatima BENALI, née le 03/04/85, 12 rue des Lilas, appt 34, bât. B, 3e étage, \
                06 12 34 56 78, a@b.fr, FR76 3000 6000 0112 3456 7890 189, 1 85 05 78 006 084 91, \
                n° allocataire 1234567, loi du 5 juillet 2011, tel 6 12 34 56 78.";
    let kinds: Vec<&str> = g.scan("f", text).iter().map(|h| h.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "name",
            "birth_date",
            "address",
            "phone",
            "email",
            "iban",
            "nir",
            "claimant_number",
            "phone"
        ]
    );
}

#[test]
fn offsets_are_in_characters_of_the_text_as_sent() {
    let hits = guard().scan("situation", "Né à Perpignan, tél 06 12 34 56 78.");
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].kind, IdentifierKind::Phone);
    assert_eq!((hits[0].start, hits[0].end), (20, 34));
    assert_eq!(hits[0].field, "situation");
}

#[test]
fn evasions_point_at_what_was_typed() {
    let g = guard();
    for (text, kind, typed) in [
        (
            "tél 06\u{200B}12\u{200B}34\u{200B}56\u{200B}78 le soir",
            IdentifierKind::Phone,
            "06\u{200B}12\u{200B}34\u{200B}56\u{200B}78",
        ),
        (
            "tél ０６ １２ ３４ ５６ ７８.",
            IdentifierKind::Phone,
            "０６ １２ ３４ ５６ ７８",
        ),
        ("tél ٠٦١٢٣٤٥٦٧٨ !", IdentifierKind::Phone, "٠٦١٢٣٤٥٦٧٨"),
        (
            "é\u{0301}crire à jean＠orange.fr",
            IdentifierKind::Email,
            "jean＠orange.fr",
        ),
        (
            "mail jean.dupont@оrange.fr",
            IdentifierKind::Email,
            "jean.dupont@оrange.fr",
        ),
        (
            "tél 06\u{00AD}12\u{2060}34\u{00AD}56\u{2060}78",
            IdentifierKind::Phone,
            "06\u{00AD}12\u{2060}34\u{00AD}56\u{2060}78",
        ),
        (
            "\u{202E}87 65 43 21 60\u{202C} ok",
            IdentifierKind::Phone,
            "87 65 43 21 60",
        ),
        (
            "ne\u{0301}e le 12/03/1980",
            IdentifierKind::BirthDate,
            "12/03/1980",
        ),
        ("Mme Fe\u{0301}lix", IdentifierKind::Name, "Fe\u{0301}lix"),
    ] {
        let hits = found(&g, text);
        assert_eq!(hits, vec![(kind, typed.to_owned())], "{text:?}");
    }
}

#[test]
fn overlapping_finds_are_one_hit() {
    // The IBAN holds phone-like and date-like digits; the NIR holds a department and so on.
    assert_eq!(
        kinds("FR76 3000 6000 0112 3456 7890 189"),
        vec![IdentifierKind::Iban]
    );
    assert_eq!(kinds("1 85 05 78 006 084 91"), vec![IdentifierKind::Nir]);
    assert_eq!(kinds("06.12.34.56.78"), vec![IdentifierKind::Phone]);
}

#[test]
fn allowed_contacts_pass_in_any_spelling() {
    let g = guard().with_contacts([
        "accueil du CCAS : 04 00 00 00 01",
        "cmp.ville@ch.example, 12 rue de la République",
    ]);
    for text in [
        "appeler le CCAS au 04.00.00.00.01",
        "CCAS : +33 4 00 00 00 01",
        "écrire à CMP.Ville@ch.example",
        "le CMP, 12, rue de la république",
        "le CMP, au 12 de la rue de la République",
    ] {
        assert!(
            g.scan("f", text).is_empty(),
            "{text}: {:?}",
            g.scan("f", text)
        );
    }
    assert_eq!(
        g.scan("f", "appeler le 04 00 00 00 02").len(),
        1,
        "another number is still refused"
    );
    assert_eq!(g.scan("f", "vit au 14 rue de la République").len(), 1);
}

#[test]
fn identity_parts_are_refused_anywhere() {
    let id = IdentityParts {
        last_name: "Benali",
        first_name: "Fatima",
        birth_date: NaiveDate::from_ymd_opt(1985, 4, 3),
    };
    let g = guard().with_identity(Some(&id));
    assert_eq!(
        found(&g, "Fatima vit seule depuis 2019."),
        vec![(IdentifierKind::Name, "Fatima".to_owned())]
    );
    assert_eq!(
        found(&g, "famille BÉNALI connue du CCAS"),
        vec![(IdentifierKind::Name, "BÉNALI".to_owned())]
    );
    // The birth date, even where an event word would explain another date.
    assert_eq!(
        found(&g, "suivie depuis le 3 avril 1985"),
        vec![(IdentifierKind::BirthDate, "3 avril 1985".to_owned())]
    );
    assert_eq!(found(&g, "DDN 030485").len(), 1);
    let hit = &g.scan("f", "Fatima")[0];
    assert!(hit.detail.contains("rapprochement"));
    assert!(guard().with_identity(None).scan("f", "Fatima").is_empty());
}

#[test]
fn hints_are_french_by_default_and_never_echo() {
    let text = "Mme Fatima BENALI";
    let hits = guard().scan("situation", text);
    assert_eq!(hits.len(), 1);
    assert!(hits[0].detail.contains("initiale"), "{}", hits[0].detail);
    assert!(!hits[0].detail.contains("BENALI"));
    let en = guard().with_lang(Lang::En).scan("situation", text);
    assert!(en[0].detail.contains("initial"), "{}", en[0].detail);
    assert_eq!(hits[0].detail_in(Lang::En), en[0].detail);
    assert_eq!(hits[0].clone().in_lang(Lang::En), en[0]);
    let json = serde_json::to_value(&hits[0]).unwrap();
    let mut keys: Vec<String> = json
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    keys.sort();
    assert_eq!(keys, ["detail", "end", "field", "kind", "start"]);
}

#[test]
fn every_kind_has_hints_in_both_languages() {
    for reason in [
        Reason::Email,
        Reason::Phone,
        Reason::Nir,
        Reason::Iban,
        Reason::BirthDate,
        Reason::Address,
        Reason::Name,
        Reason::ClaimantNumber,
        Reason::IdentityName,
        Reason::IdentityBirthDate,
    ] {
        assert!(!messages::detail(reason, Lang::Fr).is_empty());
        assert_ne!(
            messages::detail(reason, Lang::Fr),
            messages::detail(reason, Lang::En)
        );
    }
    for k in IdentifierKind::ALL {
        assert_eq!(IdentifierKind::parse(k.as_str()), Some(k));
    }
}

#[test]
fn empty_and_plain_texts() {
    assert!(kinds("").is_empty());
    assert!(kinds("Situation ordinaire.").is_empty());
    assert!(kinds("\u{200B}\u{202E}").is_empty());
}

#[test]
fn arbitrary_text_never_panics_and_offsets_stay_in_the_text() {
    // A fixed pseudo-random walk over characters that stress every detector.
    let pool: Vec<char> = "0123456789 ./-()+@°'’:;,\n\tabcMmeDrXéèÉ\u{301}\u{200B}\u{202E}\u{202C}\u{AD}０６٣۴＠аοß漢🙂ruebisnéleDDNCAFMSAallocatairertFR2AB"
        .chars()
        .collect();
    let id = IdentityParts {
        last_name: "Ab",
        first_name: "Mé",
        birth_date: NaiveDate::from_ymd_opt(1980, 3, 12),
    };
    let g = guard()
        .with_contacts(["04 00 00 00 01", "a@b.fr"])
        .with_identity(Some(&id));
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..3000 {
        let mut text = String::new();
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let len = (state % 80) as usize;
        for _ in 0..len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            text.push(pool[(state % pool.len() as u64) as usize]);
        }
        let chars = text.chars().count();
        let mut last_end = 0;
        for h in g.scan("f", &text) {
            assert!(h.start < h.end && h.end <= chars, "{text:?}: {h:?}");
            assert!(h.start >= last_end, "{text:?}: hits overlap");
            last_end = h.end;
        }
    }
}
