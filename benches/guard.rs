//! The identifier guard's throughput on 10,000-character texts, next to a plain scan of the same
//! bytes in the same run. Run with `cargo bench --bench guard`. Prints figures; asserts nothing.
//!
//! The baseline counts the ASCII digits of the text (one pass over its bytes): the least any
//! scanner does. The guard normalises the text (ASCII text is its own normalisation), runs every
//! detector and maps each hit back to the characters sent. Texts:
//! - `clean fr`: French casework prose with accents, dates of events, amounts, codes;
//! - `clean ascii`: the same prose with its accents taken off (the normaliser's fast path);
//! - `dirty fr`: the French prose with an identifier every 200 characters or so;
//! - `evasive`: the dirty text with zero-width spaces, full-width digits and look-alike letters.
//!
//! Each is scanned by a bare guard and by one with three directory contacts and an identity.

use std::hint::black_box;
use std::time::{Duration, Instant};

use cellule::domain::guard::{Guard, IdentityParts};
use chrono::NaiveDate;

const SIZE: usize = 10_000;

const CLEAN: &[&str] = &[
    "Madame, 45 ans, vit seule depuis le décès de sa mère en 2019 ; logement très encombré. ",
    "Hospitalisée du 12/05/2008 au 30/06/2008, arrêt maladie depuis le 04/02/2014. ",
    "Le juge des tutelles a statué le 15/06/2012 ; mesure prévue par la loi du 5 mars 2007. ",
    "1 passage aux urgences en mars 2024, 2 cours de FLE par semaine, 1 place en résidence sociale. ",
    "Loyer de 450 € impayé depuis 4 mois, dette de 1 800 €, RSA de 607,75 €. ",
    "Suivie au CMP 66G03 depuis 2021, dossier PER-2025-0042, rendez-vous le 12/03 à 14h30. ",
    "Mme X., 3 enfants dont 2 placés ; Monsieur le maire a été informé de la situation. ",
    "Troubles du voisinage signalés 6 fois par le bailleur, dernier signalement en 06/2024. ",
];

const DIRTY: &[&str] = &[
    "Joignable au 06 12 34 56 78 le matin. ",
    "Écrire à martin.j (at) orange.fr pour les papiers. ",
    "NIR 1 85 05 78 006 084 91 transmis. ",
    "Née le 12 / 03 / 1980 à Perpignan. ",
    "Vit au 12 rue des Lilas, résidence Les Mimosas, bât. B, appt 34. ",
    "Mme Fatima BENALI refuse les visites. ",
    "N° allocataire 1234567. ",
    "RIB FR76 3000 6000 0112 3456 7890 189. ",
];

/// `SIZE` characters of prose, with one of `dirty` after every `every` sentences when given.
fn text(dirty: Option<(&[&str], usize)>) -> String {
    let mut out = String::new();
    let mut i = 0;
    while out.chars().count() < SIZE {
        out.push_str(CLEAN[i % CLEAN.len()]);
        if let Some((d, every)) = dirty
            && i % every == every - 1
        {
            out.push_str(d[(i / every) % d.len()]);
        }
        i += 1;
    }
    out.chars().take(SIZE).collect()
}

fn strip_accents(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'é' | 'è' | 'ê' | 'É' => 'e',
            'à' | 'â' => 'a',
            'ç' => 'c',
            'î' | 'ï' => 'i',
            'ô' => 'o',
            'ù' | 'û' => 'u',
            '€' => 'E',
            c if c.is_ascii() => c,
            _ => ' ',
        })
        .collect()
}

fn evasive(s: &str) -> String {
    s.replace("06 12", "06\u{200B}12")
        .replace("34 56", "３４ ５６")
        .replace("orange", "оrange")
        .replace("1234567", "١٢٣٤٥٦٧")
        .replace("Mme", "М\u{200D}me")
}

fn measure(mut f: impl FnMut()) -> f64 {
    for _ in 0..20 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(2) {
        for _ in 0..10 {
            f();
        }
        n += 10;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let today = NaiveDate::from_ymd_opt(2026, 11, 23).expect("date");
    let bare = Guard::new(today);
    let identity = IdentityParts {
        last_name: "Lambert",
        first_name: "Sophie",
        birth_date: NaiveDate::from_ymd_opt(1979, 6, 2),
    };
    let full = Guard::new(today)
        .with_contacts([
            "accueil du CCAS : 04 00 00 00 01",
            "cmp.villesurtet@ch-thuir.example, 12 rue de la République",
            "Mairie : 04 00 00 00 10 ; 1 place de la Mairie",
        ])
        .with_identity(Some(&identity));
    let clean = text(None);
    let dirty = text(Some((DIRTY, 2)));
    let texts = [
        ("clean fr", clean.clone()),
        ("clean ascii", strip_accents(&clean)),
        ("dirty fr", dirty.clone()),
        ("evasive", evasive(&dirty)),
    ];
    println!(
        "{:<12} {:<9} {:>6} {:>7} {:>12} {:>11} {:>12} {:>10}",
        "text", "guard", "bytes", "hits", "guard MiB/s", "texts/s", "scan MiB/s", "ratio"
    );
    for (name, t) in &texts {
        let baseline = measure(|| {
            black_box(
                black_box(t.as_bytes())
                    .iter()
                    .filter(|b| b.is_ascii_digit())
                    .count(),
            );
        });
        for (label, guard) in [("bare", &bare), ("full", &full)] {
            let hits = guard.scan("situation", t).len();
            let ours = measure(|| {
                black_box(guard.scan("situation", black_box(t)));
            });
            let mib = |per_second: f64| per_second * t.len() as f64 / (1024.0 * 1024.0);
            println!(
                "{:<12} {:<9} {:>6} {:>7} {:>12.1} {:>11.0} {:>12.1} {:>9.2}%",
                name,
                label,
                t.len(),
                hits,
                mib(ours),
                ours,
                mib(baseline),
                100.0 * ours / baseline
            );
        }
    }
}
