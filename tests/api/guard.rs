//! The identifier guard against a corpus of real-format identifiers and of ordinary case prose:
//! every identifier caught (with the right kind), no prose rejected.

use cellule::domain::guard::{Guard, IdentifierKind};
use chrono::NaiveDate;

fn guard() -> Guard {
    Guard::new(NaiveDate::from_ymd_opt(2026, 11, 23).expect("date"))
}

fn kinds(text: &str) -> Vec<IdentifierKind> {
    guard()
        .scan("situation", text)
        .into_iter()
        .map(|h| h.kind)
        .collect()
}

#[test]
fn every_identifier_of_the_corpus_is_caught() {
    use IdentifierKind::*;
    let corpus: &[(&str, IdentifierKind)] = &[
        // Phones, in the usual spellings.
        ("appeler le 06 12 34 56 78 demain", Phone),
        ("appeler le 06.12.34.56.78 demain", Phone),
        ("appeler le 0612345678 demain", Phone),
        ("appeler le 06-12-34-56-78 demain", Phone),
        ("appeler le +33 6 12 34 56 78 demain", Phone),
        ("appeler le +33612345678 demain", Phone),
        ("appeler le +33 (0)6 12 34 56 78 demain", Phone),
        ("appeler le 0033 6 12 34 56 78 demain", Phone),
        ("fixe : 04 68 12 34 56", Phone),
        ("tél.04.68.12.34.56", Phone),
        // E-mails.
        ("contact a.b@c.fr", Email),
        ("écrire à prenom.nom+cellule@sous.domaine.gouv.fr.", Email),
        ("MAIL: JEAN_DUPONT@EXAMPLE.COM", Email),
        // NIRs with a valid key, with and without spaces, Corsica included.
        ("NIR 1 85 05 78 006 084 91", Nir),
        ("numéro de sécu 185057800608491", Nir),
        ("sécu 2 93 01 66 136 012 58 connue", Nir),
        ("assurée 1 85 05 2A 123 456 33", Nir),
        ("assuré 1 85 05 2B 012 345 09", Nir),
        ("2 75 09 13 055 123 65", Nir),
        // IBANs with a valid checksum.
        ("RIB FR76 3000 6000 0112 3456 7890 189", Iban),
        ("iban FR7630006000011234567890189", Iban),
        ("compte DE89 3704 0044 0532 0130 00", Iban),
        ("GB82 WEST 1234 5698 7654 32", Iban),
        ("FR14 2004 1010 0505 0001 3M02 606", Iban),
        // Full dates that can be birth dates.
        ("né le 3 mars 1952", BirthDate),
        ("née le 14/07/2015 à Perpignan", BirthDate),
        ("DDN : 1975-11-02", BirthDate),
        ("date de naissance 2/4/2019", BirthDate),
        ("personne du 01/01/1960", BirthDate),
        ("repère 12.03.1980", BirthDate),
        ("le 1er janvier 1975", BirthDate),
        ("1987-06-30", BirthDate),
        // Street addresses.
        ("habite 12 rue Victor Hugo", Address),
        ("au 3 bis avenue de la République", Address),
        ("45 bd Clemenceau, 2e étage", Address),
        ("7 impasse des Mimosas", Address),
        ("2 allée Jean Moulin", Address),
        ("10, chemin du Mas Bresson", Address),
        ("18 ter place de la Loge", Address),
        ("5 boulevard Wilson", Address),
        ("14 avenue Foch", Address),
    ];
    let mut missed = Vec::new();
    for (text, kind) in corpus {
        let found = kinds(text);
        if found != vec![*kind] {
            missed.push(format!("{text:?}: expected [{kind:?}], found {found:?}"));
        }
    }
    assert!(
        missed.is_empty(),
        "{} of {} missed:\n{}",
        missed.len(),
        corpus.len(),
        missed.join("\n")
    );
}

#[test]
fn invalid_identifiers_are_not_taken_for_identifiers() {
    for text in [
        "1 85 05 78 006 084 92",             // NIR with a wrong key
        "2 93 01 66 136 012 57",             // NIR with a wrong key
        "FR76 3000 6000 0112 3456 7890 188", // IBAN with a wrong checksum
        "DE89 3704 0044 0532 0130 01",
        "31/02/1980",    // no such day
        "le 12/03/2026", // a recent date: a meeting, not a birth
        "hospitalisé du 02/09/2025 au 15/09/2025",
        "12345",
    ] {
        assert!(
            kinds(text).is_empty(),
            "{text:?} flagged as {:?}",
            kinds(text)
        );
    }
}

#[test]
fn ordinary_case_prose_passes() {
    let prose = [
        "Monsieur, 45 ans, vit seul depuis le décès de sa mère en 2019.",
        "Mme, 3 enfants dont 2 placés, suivie au CMP 66G03 depuis 2021 ; dernier RDV annulé.",
        "2 passages aux urgences en mars 2024, 1 hospitalisation de 3 semaines à l'automne.",
        "Rendez-vous pris à 14h30 le 12/03 avec l'assistante sociale du secteur.",
        "Loyer de 450 € impayé depuis 4 mois ; dette de 1 800 € ; RSA de 607,75 €.",
        "Dossier déjà évoqué en commission (réf. PER-2025-0042), orienté vers l'équipe mobile.",
        "Troubles du voisinage signalés 6 fois par le bailleur, dernier signalement en 06/2024.",
        "Appartement au 3e étage sans ascenseur, 45 m2, chauffage en panne depuis 2 semaines.",
        "Le CMP est ouvert de 9h à 17h ; permanence le mardi ; 15 patients en file active.",
        "Secteurs 66G01, 66G03 et 66I02 concernés ; commune 66136.",
        "Suivi par l'EMPP depuis septembre 2023, environ 10 visites.",
        "Demande de mesure de protection déposée en 2022, audience prévue en janvier 2027.",
        "Score de 12 sur 20 à l'évaluation ; 0,5 ETP d'infirmier dédié.",
        "Prochaine commission le 2e jeudi du mois, 20 minutes par situation.",
        "Il a 3 chats, 2 chiens, et 1 000 € d'économies.",
        "Version 2.3.1 du protocole ; 75 % des démarches faites.",
        "Appels au 115 et au 3114 sans suite.",
        "Il habite la rue principale du village depuis 30 ans.",
    ];
    for text in prose {
        assert!(
            kinds(text).is_empty(),
            "ordinary prose refused: {text:?} -> {:?}",
            guard().scan("situation", text)
        );
    }
}
