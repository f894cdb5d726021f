//! The demo's fictional cellule: its people, its referrals' themes and the fate of each one.
//! Everything here is synthetic.

use super::*;

/// Slug of the demo cellule unless `--slug` says otherwise.
pub const DEFAULT_SLUG: &str = "demo";

pub(super) const NAME: &str = "Démo — CLSM de Ville-sur-Têt (fictif)";

/// The worked routing example, a fictional town.
pub const ROUTING_EXAMPLE: &str = include_str!("../../../policies/examples/routing-perpignan.toml");

pub(super) const SCHEDULE: &str = r#"{"rrule": "FREQ=MONTHLY;BYDAY=+2TH", "start_time": "14:00",
  "time_zone": "Europe/Paris", "duration_minutes": 180, "minutes_per_new_case": 15,
  "minutes_per_follow_up": 10, "location": "Mairie de Ville-sur-Têt, salle du conseil (fictive)",
  "on_holiday": "next_week"}"#;

/// A fictional person of the demo.
pub(super) struct Person {
    /// Shell variable of the printed token.
    pub(super) var: &'static str,
    pub(super) sub: &'static str,
    pub(super) role: Role,
    pub(super) sphere: Option<Sphere>,
    pub(super) org: Option<&'static str>,
    pub(super) guest: bool,
    pub(super) what: &'static str,
}

/// The administrator the printout suggests: an administrator holds no membership (separation of
/// duties), so it is one only when the server runs with `CELLULE_ADMINS=demo-admin`.
pub const ADMIN: &str = "demo-admin";

pub(super) const COORDINATOR: usize = 0;
pub(super) const CCAS: usize = 1;
pub(super) const CMP: usize = 2;
pub(super) const LANDLORD: usize = 3;
pub(super) const REFERRER_CCAS: usize = 5;
pub(super) const REFERRER_MEDIATION: usize = 6;

pub(super) const PEOPLE: &[Person] = &[
    Person {
        var: "COORDINATOR",
        sub: "demo-coordinator",
        role: Role::Coordinator,
        sphere: Some(Sphere::City),
        org: Some("CLSM de Ville-sur-Têt"),
        guest: false,
        what: "screens referrals, builds agendas, records decisions",
    },
    Person {
        var: "MEMBER_CCAS",
        sub: "demo-ccas",
        role: Role::Member,
        sphere: Some(Sphere::City),
        org: Some("CCAS de Ville-sur-Têt"),
        guest: false,
        what: "permanent member, city sphere",
    },
    Person {
        var: "MEMBER_CMP",
        sub: "demo-cmp",
        role: Role::Member,
        sphere: Some(Sphere::Psychiatry),
        org: Some("CMP adultes secteur 66G03"),
        guest: false,
        what: "permanent member, psychiatry sphere",
    },
    Person {
        var: "MEMBER_LANDLORD",
        sub: "demo-bailleur",
        role: Role::Member,
        sphere: Some(Sphere::City),
        org: Some("Têt Habitat, office public de l'habitat"),
        guest: false,
        what: "permanent member, social landlord",
    },
    Person {
        var: "GUEST_EMPP",
        sub: "demo-empp",
        role: Role::Member,
        sphere: Some(Sphere::Psychiatry),
        org: Some("EMPP Têt-Aspres, équipe mobile psychiatrie précarité"),
        guest: true,
        what: "guest organisation: sees only the items it is invited to",
    },
    Person {
        var: "REFERRER_CCAS",
        sub: "demo-referrer-ccas",
        role: Role::Referrer,
        sphere: None,
        org: Some("CCAS de Ville-sur-Têt"),
        guest: false,
        what: "field worker: submits referrals, sees their status",
    },
    Person {
        var: "REFERRER_MEDIATION",
        sub: "demo-referrer-mediation",
        role: Role::Referrer,
        sphere: None,
        org: Some("Service de médiation sociale de Ville-sur-Têt"),
        guest: false,
        what: "field worker: submits referrals, sees their status",
    },
    Person {
        var: "AUDITOR",
        sub: "demo-auditor",
        role: Role::Auditor,
        sphere: None,
        org: None,
        guest: false,
        what: "reads and verifies the audit log, never case content",
    },
];

/// What happens to a synthetic case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fate {
    /// Left to screen: stays `submitted`.
    Pending,
    /// Declined at screening.
    Decline,
    /// Closed at its first review.
    Close,
    /// Routed with a follow-up after the next session: stays `in_follow_up`.
    Long,
    /// Routed with a follow-up due at the next session, and so on.
    Short,
    /// Routed, then closed at its follow-up review.
    CloseLater,
    /// Deferred at its first review, then routed (long).
    DeferOnce,
    /// Accepted before the next session's agenda is built: on it (or deferred by capacity).
    Review,
    /// Accepted after the next session's agenda is published: waits, `accepted`.
    LateAccept,
}

/// Themes of the synthetic situations: (situation, expectations). Obviously fictional, no
/// identifiers.
pub(super) const THEMES: &[(&str, &str)] = &[
    (
        "Situation fictive (démo). Impayés de loyer depuis plusieurs mois, courriers non ouverts, procédure d'expulsion engagée. La personne refuse les visites mais parle au gardien.",
        "Éviter l'expulsion et renouer un contact de soin.",
    ),
    (
        "Situation fictive (démo). Rupture de suivi au CMP depuis l'été, traitement arrêté, repli à domicile signalé par la famille.",
        "Reprise d'un suivi psychiatrique.",
    ),
    (
        "Situation fictive (démo). Sortie d'hospitalisation sans relais organisé, rendez-vous manqués, entourage épuisé.",
        "Organiser le relais de soins et soutenir l'entourage.",
    ),
    (
        "Situation fictive (démo). Personne âgée très isolée, ne sort plus, refuse l'aide à domicile ; voisinage inquiet.",
        "Trouver une porte d'entrée acceptée par la personne.",
    ),
    (
        "Situation fictive (démo). Consommation d'alcool importante, chutes répétées, passages fréquents aux urgences.",
        "Orientation vers un accompagnement en addictologie.",
    ),
    (
        "Situation fictive (démo). Parent seul en grande souffrance psychique, enfants scolarisés, absentéisme signalé par l'école.",
        "Soutien au parent et évaluation de la situation des enfants.",
    ),
    (
        "Situation fictive (démo). Conflit familial avec menaces, la personne dit avoir peur de rentrer chez elle.",
        "Mise en sécurité et accompagnement social.",
    ),
    (
        "Situation fictive (démo). Plaintes répétées du voisinage pour bruit nocturne et propos incohérents dans la cage d'escalier.",
        "Apaiser le voisinage et proposer une évaluation.",
    ),
    (
        "Situation fictive (démo). Droits non renouvelés (allocation, complémentaire santé), plus aucune ressource depuis deux mois.",
        "Rétablir les droits.",
    ),
    (
        "Situation fictive (démo). Personne sans domicile stable rencontrée par l'équipe de rue, propos délirants, aucun suivi connu.",
        "Aller vers la personne et trouver le secteur compétent.",
    ),
    (
        "Situation fictive (démo). Logement encombré et insalubre, refus d'intervention, risque d'incendie signalé par le bailleur.",
        "Intervention coordonnée acceptable par la personne.",
    ),
    (
        "Situation fictive (démo). Demandes répétées en mairie, sentiment de persécution, aucune demande d'aide explicite.",
        "Savoir qui peut rencontrer la personne.",
    ),
];

/// A synthetic referral: period (0 before the first reviewed session, 1 between the two, 2
/// since the last one), attributes, who submits it, its theme and its fate.
pub(super) struct Spec {
    pub(super) period: u8,
    pub(super) age: &'static str,
    pub(super) gender: &'static str,
    pub(super) commune: Option<&'static str>,
    pub(super) sector: Option<&'static str>,
    pub(super) needs: &'static [&'static str],
    pub(super) urgency: &'static str,
    pub(super) by: usize,
    pub(super) theme: usize,
    pub(super) fate: Fate,
}

macro_rules! spec {
    ($p:literal, $age:literal, $g:literal, $c:expr, $s:expr, [$($n:literal),+], $u:literal, $by:expr, $t:literal, $f:ident) => {
        Spec { period: $p, age: $age, gender: $g, commune: $c, sector: $s, needs: &[$($n),+],
               urgency: $u, by: $by, theme: $t, fate: Fate::$f }
    };
}

pub(super) const C1: Option<&str> = Some("66901");
pub(super) const C2: Option<&str> = Some("66902");
pub(super) const C3: Option<&str> = Some("66903");
pub(super) const C4: Option<&str> = Some("66904");
pub(super) const G1: Option<&str> = Some("66G01");
pub(super) const G3: Option<&str> = Some("66G03");
pub(super) const G4: Option<&str> = Some("66G04");
pub(super) const NO: Option<&str> = None;
pub(super) const RC: usize = REFERRER_CCAS;
pub(super) const RM: usize = REFERRER_MEDIATION;
pub(super) const LL: usize = LANDLORD;

/// Index of the first referral given the shared synthetic identity, and of its possible duplicate.
pub(super) const DUPLICATE_PAIR: (usize, usize) = (0, 31);

#[rustfmt::skip]
pub(super) const SPECS: &[Spec] = &[
    // Period 0: reviewed at the first session (capacity permitting).
    spec!(0, "45-54", "m", C1, G3, ["housing", "care_access"], "priority", RC, 0, Long),
    spec!(0, "35-44", "f", C2, G3, ["care_continuity"], "routine", RC, 2, Short),
    spec!(0, "75+", "f", C1, NO, ["isolation"], "routine", RM, 3, Long),
    spec!(0, "25-34", "m", C3, G4, ["addiction", "care_access"], "priority", RC, 4, Close),
    spec!(0, "55-64", "x", C4, NO, ["other"], "routine", RM, 11, Decline),
    spec!(0, "35-44", "f", C1, G3, ["family_minors", "care_access"], "urgent", RC, 5, CloseLater),
    spec!(0, "45-54", "m", C2, NO, ["neighbourhood_nuisance"], "routine", RM, 7, Long),
    spec!(0, "18-24", "m", NO, G1, ["care_access", "housing"], "priority", RM, 9, Short),
    spec!(0, "65-74", "f", C3, G4, ["care_continuity", "isolation"], "routine", RC, 2, Close),
    spec!(0, "55-64", "m", C1, G3, ["housing"], "routine", LL, 10, DeferOnce),
    spec!(0, "25-34", "f", C4, G4, ["rights_income"], "routine", RC, 8, Long),
    spec!(0, "45-54", "f", C1, G3, ["violence_danger"], "urgent", RM, 6, CloseLater),
    spec!(0, "35-44", "m", C2, G3, ["care_access"], "routine", RC, 1, Close),
    spec!(0, "55-64", "unknown", C1, G3, ["housing", "rights_income"], "routine", LL, 0, Long),
    // Period 1: reviewed at the second session.
    spec!(1, "45-54", "m", C3, G4, ["care_access"], "priority", RC, 1, Long),
    spec!(1, "75+", "m", C4, NO, ["isolation", "rights_income"], "routine", RC, 3, Close),
    spec!(1, "25-34", "f", C1, G3, ["care_continuity", "housing"], "routine", RM, 2, Short),
    spec!(1, "35-44", "m", C2, G3, ["neighbourhood_nuisance", "care_access"], "priority", LL, 7, Long),
    spec!(1, "18-24", "f", C1, NO, ["other"], "routine", RM, 11, Decline),
    spec!(1, "45-54", "m", C1, G3, ["addiction"], "routine", RC, 4, Long),
    spec!(1, "55-64", "f", C3, NO, ["housing", "neighbourhood_nuisance"], "routine", RM, 10, CloseLater),
    spec!(1, "35-44", "f", C4, G4, ["family_minors"], "priority", RC, 5, Close),
    spec!(1, "65-74", "m", C2, G3, ["isolation"], "routine", RC, 3, Long),
    spec!(1, "25-34", "x", NO, G1, ["care_access"], "urgent", RM, 9, Short),
    spec!(1, "45-54", "f", C1, G3, ["rights_income"], "routine", RC, 8, Long),
    spec!(1, "55-64", "m", C3, G4, ["care_continuity"], "routine", RC, 1, Close),
    // Period 2: since the last session; on the next agenda, or still to screen.
    spec!(2, "35-44", "m", C1, G3, ["housing", "care_access"], "priority", RC, 0, Review),
    spec!(2, "45-54", "f", NO, G1, ["care_access"], "urgent", RM, 9, Review),
    spec!(2, "25-34", "m", C3, G4, ["care_continuity"], "routine", RC, 2, Review),
    spec!(2, "65-74", "f", C2, NO, ["isolation"], "routine", RM, 3, Review),
    spec!(2, "55-64", "m", C1, G3, ["neighbourhood_nuisance"], "routine", LL, 7, Review),
    spec!(2, "45-54", "m", C1, G3, ["housing", "care_access"], "priority", RC, 0, Review),
    spec!(2, "35-44", "f", C4, G4, ["violence_danger", "family_minors"], "urgent", RC, 6, Review),
    spec!(2, "18-24", "m", C2, G3, ["addiction"], "routine", RM, 4, Pending),
    spec!(2, "75+", "f", C3, NO, ["isolation", "care_access"], "routine", RC, 3, LateAccept),
    spec!(2, "25-34", "f", C1, NO, ["other"], "routine", RM, 11, Decline),
    spec!(2, "45-54", "x", C4, G4, ["rights_income", "housing"], "routine", RC, 8, LateAccept),
    spec!(2, "55-64", "m", C2, G3, ["care_continuity"], "priority", RC, 2, Pending),
    spec!(2, "35-44", "m", NO, G1, ["housing"], "routine", RM, 9, Pending),
    spec!(2, "65-74", "f", C1, G3, ["housing", "isolation"], "routine", LL, 10, Pending),
];
