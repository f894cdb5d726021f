//! The French words of the pages for the service's values: statuses, needs, urgencies, consent,
//! roles, audit actions and the guard's kinds of identifier.

use chrono::{DateTime, Utc};
use chrono_tz::Europe::Paris;

use crate::audit::Action;
use crate::domain::case::{AgeBand, CaseStatus, ConsentStatus, Gender, Need, Urgency};
use crate::domain::guard::{Hit, IdentifierKind};
use crate::domain::routing::InterlocutorKind;
use crate::domain::{Role, Sphere};

pub fn status(s: CaseStatus) -> &'static str {
    match s {
        CaseStatus::Submitted => "Envoyée, en attente d'examen",
        CaseStatus::Accepted => "Retenue par la coordination",
        CaseStatus::Declined => "Non retenue",
        CaseStatus::Scheduled => "Inscrite à l'ordre du jour",
        CaseStatus::InFollowUp => "En suivi",
        CaseStatus::Closed => "Clôturée",
    }
}

pub fn age_band(a: AgeBand) -> &'static str {
    match a {
        AgeBand::Minor => "Moins de 18 ans",
        AgeBand::A18 => "18 à 24 ans",
        AgeBand::A25 => "25 à 34 ans",
        AgeBand::A35 => "35 à 44 ans",
        AgeBand::A45 => "45 à 54 ans",
        AgeBand::A55 => "55 à 64 ans",
        AgeBand::A65 => "65 à 74 ans",
        AgeBand::A75 => "75 ans et plus",
    }
}

pub fn gender(g: Gender) -> &'static str {
    match g {
        Gender::F => "Femme",
        Gender::M => "Homme",
        Gender::X => "Autre",
        Gender::Unknown => "Non renseigné",
    }
}

/// A need's label and what it covers.
pub fn need(n: Need) -> (&'static str, &'static str) {
    match n {
        Need::Housing => (
            "Logement",
            "impayés, risque d'expulsion, logement inadapté ou insalubre",
        ),
        Need::CareAccess => (
            "Accès aux soins",
            "aucun suivi, refus ou difficulté d'accéder au CMP ou au médecin",
        ),
        Need::CareContinuity => (
            "Continuité des soins",
            "rupture de traitement ou de suivi, sortie d'hospitalisation",
        ),
        Need::Isolation => ("Isolement", "repli, absence d'entourage ou de lien social"),
        Need::Addiction => ("Addictions", "alcool, drogues, jeux"),
        Need::FamilyMinors => (
            "Famille, mineurs",
            "enfants au domicile, parentalité, aidants épuisés",
        ),
        Need::ViolenceDanger => (
            "Violence, mise en danger",
            "pour la personne ou pour autrui",
        ),
        Need::RightsIncome => (
            "Droits, ressources",
            "droits non ouverts, absence de ressources, protection juridique",
        ),
        Need::NeighbourhoodNuisance => ("Troubles du voisinage", "plaintes, conflits, incurie"),
        Need::Other => ("Autre", "précisez dans la description de la situation"),
    }
}

/// An urgency's label and what it means.
pub fn urgency(u: Urgency) -> (&'static str, &'static str) {
    match u {
        Urgency::Routine => (
            "Habituelle",
            "la situation peut attendre la prochaine séance mensuelle",
        ),
        Urgency::Priority => (
            "Prioritaire",
            "la situation se dégrade : elle passe en tête de l'ordre du jour",
        ),
        Urgency::Urgent => (
            "Urgente",
            "la coordination la regarde dès réception ; la cellule n'est pas un service d'urgence",
        ),
    }
}

/// A consent status's label and explanation.
pub fn consent(c: ConsentStatus) -> (&'static str, &'static str) {
    match c {
        ConsentStatus::Agreed => (
            "La personne est informée et d'accord",
            "vous lui avez expliqué que sa situation sera étudiée par la cellule et elle l'accepte",
        ),
        ConsentStatus::Informed => (
            "La personne est informée et ne s'y oppose pas",
            "elle sait que sa situation sera étudiée et n'a pas exprimé d'opposition",
        ),
        ConsentStatus::NotInformed => (
            "La personne n'a pas pu être informée",
            "par exemple injoignable ou hors d'état de l'entendre : expliquez pourquoi ci-dessous",
        ),
        ConsentStatus::Objected => (
            "La personne s'y oppose",
            "une opposition bloque tout partage : la saisine ne pourra pas être enregistrée",
        ),
    }
}

pub fn role(r: Role) -> &'static str {
    match r {
        Role::Referrer => "Professionnel qui saisit la cellule",
        Role::Member => "Membre de la cellule",
        Role::Coordinator => "Coordination",
        Role::Auditor => "Délégué à la protection des données (audit)",
    }
}

pub fn role_short(r: &str) -> &'static str {
    match r {
        "referrer" => "Saisissant",
        "member" => "Membre",
        "coordinator" => "Coordination",
        "auditor" => "Audit",
        "administrator" => "Administration",
        _ => "Aucun",
    }
}

pub fn sphere(s: Sphere) -> &'static str {
    match s {
        Sphere::City => "Ville",
        Sphere::Psychiatry => "Psychiatrie",
    }
}

/// An interlocutor's kind in French.
pub fn interlocutor_kind(k: InterlocutorKind) -> &'static str {
    match k {
        InterlocutorKind::Ccas => "CCAS",
        InterlocutorKind::SocialServices => "Services sociaux",
        InterlocutorKind::Housing => "Logement, bailleur",
        InterlocutorKind::Mediation => "Médiation",
        InterlocutorKind::Cmp => "CMP",
        InterlocutorKind::Hospital => "Hôpital",
        InterlocutorKind::MobileTeam => "Équipe mobile",
        InterlocutorKind::AddictionCare => "Addictologie",
        InterlocutorKind::Association => "Association",
        InterlocutorKind::JusticePolice => "Justice, police",
        InterlocutorKind::Other => "Autre",
    }
}

pub fn action(a: Action) -> &'static str {
    match a {
        Action::SubmitReferral => "Saisine envoyée",
        Action::ListReferrals => "Liste de ses saisines",
        Action::ListCases => "Liste des situations",
        Action::ReadCase => "Lecture d'une situation",
        Action::TransitionCase => "Changement de statut",
        Action::WriteNote => "Note écrite",
        Action::ReadNotes => "Lecture des notes",
        Action::EraseCase => "Effacement",
        Action::RetentionErase => "Effacement (durée de conservation)",
        Action::EnterCellule => "Accès à la cellule",
        Action::ReadAudit => "Consultation du journal",
        Action::VerifyAudit => "Vérification du journal",
        Action::ExportAudit => "Export du journal",
        Action::ReadAccessLog => "Consultation des accès à une situation",
        Action::CheckpointAudit => "Point de contrôle signé",
        Action::PurgeAudit => "Purge du journal",
        Action::AcceptCharter => "Charte acceptée",
        Action::CancelSession => "Séance annulée",
        Action::BuildAgenda => "Ordre du jour préparé",
        Action::EditAgenda => "Ordre du jour modifié",
        Action::PublishAgenda => "Ordre du jour publié",
        Action::AmendAgenda => "Ordre du jour publié modifié",
        Action::ReadAgenda => "Lecture de l'ordre du jour",
        Action::RecordDecision => "Décision enregistrée",
        Action::ExportCalendar => "Export du calendrier",
        Action::OpenMeeting => "Séance ouverte",
        Action::CloseMeeting => "Séance close",
        Action::RecordAttendance => "Présences enregistrées",
        Action::CorrectDecision => "Décision corrigée",
        Action::ApproveMinutes => "Compte rendu approuvé",
        Action::ReadDecisions => "Lecture des décisions",
        Action::ReadMinutes => "Lecture du compte rendu",
        Action::ReadFollowUps => "Lecture des suivis",
        Action::SendReminder => "Rappel de séance envoyé",
        Action::SendDueNotice => "Avis d'échéances envoyé",
        Action::SendNotification => "Notification envoyée",
        Action::CreateCellule => "Cellule créée",
        Action::GrantMembership => "Accès accordé",
        Action::ChangeMembership => "Accès modifié",
        Action::RevokeMembership => "Accès retiré",
        Action::ChangeCharter => "Nouvelle version de la charte",
        Action::ChangeRetention => "Durées de conservation modifiées",
        Action::ChangeRouting => "Annuaire d'orientation modifié",
        Action::LoadPolicies => "Règles d'accès chargées au démarrage",
        Action::RotateKeys => "Rotation des clés",
        Action::RetireKey => "Clé de chiffrement retirée",
    }
}

/// The French label of a stored action name (the name itself when unknown).
pub fn action_name(name: &str) -> String {
    Action::ALL
        .iter()
        .find(|a| a.as_str() == name)
        .map(|a| action(*a).to_owned())
        .unwrap_or_else(|| name.to_owned())
}

pub fn denial(reason: Option<&str>) -> &'static str {
    match reason {
        Some("not_visible") => "situation non visible",
        Some("not_found") => "introuvable",
        Some("forbidden") => "rôle insuffisant",
        Some("charter_not_accepted") => "charte non acceptée",
        Some("not_member") => "pas membre de la cellule",
        Some("administrator") => "administrateur (jamais dans une cellule)",
        Some(_) => "refusé",
        None => "",
    }
}

/// What a kind of identifier is, in French.
pub fn identifier_kind(k: IdentifierKind) -> &'static str {
    match k {
        IdentifierKind::Email => "adresse électronique",
        IdentifierKind::Phone => "numéro de téléphone",
        IdentifierKind::Nir => "numéro de sécurité sociale",
        IdentifierKind::Iban => "coordonnées bancaires (IBAN)",
        IdentifierKind::BirthDate => "date de naissance",
        IdentifierKind::Address => "adresse postale",
        #[allow(unreachable_patterns)]
        _ => "identifiant direct",
    }
}

/// The hint shown beside a marked identifier. When the guard gives its own French hint with the
/// hit, that hint is the one to show; until then, one text per kind.
pub fn hint(hit: &Hit) -> String {
    let what = match hit.kind {
        IdentifierKind::Email => {
            "retirez l'adresse électronique ; écrivez plutôt « joignable par mail via le CCAS »"
        }
        IdentifierKind::Phone => {
            "retirez le numéro ; écrivez plutôt « joignable par l'intermédiaire de l'assistante sociale »"
        }
        IdentifierKind::Nir => "retirez le numéro de sécurité sociale : il identifie la personne",
        IdentifierKind::Iban => "retirez les coordonnées bancaires",
        IdentifierKind::BirthDate => {
            "retirez la date de naissance : la tranche d'âge suffit (l'identité facultative sert à repérer les doublons sans être conservée)"
        }
        IdentifierKind::Address => {
            "retirez l'adresse : la commune et le secteur suffisent ; écrivez plutôt « logement social du centre-ville »"
        }
        #[allow(unreachable_patterns)]
        _ => "retirez cet identifiant : la personne ne doit pas pouvoir être reconnue",
    };
    format!("{} : {what}.", capitalised(identifier_kind(hit.kind)))
}

fn capitalised(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A date and time as people read it here (Paris time).
pub fn when(t: DateTime<Utc>) -> String {
    t.with_timezone(&Paris)
        .format("%d/%m/%Y à %H:%M")
        .to_string()
}

/// A day (Paris time).
pub fn day(t: DateTime<Utc>) -> String {
    t.with_timezone(&Paris).format("%d/%m/%Y").to_string()
}

/// A calendar day.
pub fn calendar_day(d: chrono::NaiveDate) -> String {
    d.format("%d/%m/%Y").to_string()
}
