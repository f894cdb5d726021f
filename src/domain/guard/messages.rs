//! The hints of a refusal: what was found and how to rewrite it, never the text itself.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Reason;

/// The language of the hints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    #[default]
    Fr,
    En,
}

impl Lang {
    /// The language asked for by an `Accept-Language` value: English when English comes before
    /// French, French otherwise (quality values are not weighed: the first listed wins).
    pub fn from_accept_language(header: &str) -> Self {
        for tag in header.split(',') {
            let tag = tag
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if tag == "en" || tag.starts_with("en-") {
                return Lang::En;
            }
            if tag == "fr" || tag.starts_with("fr-") {
                return Lang::Fr;
            }
        }
        Lang::Fr
    }
}

pub(crate) fn detail(reason: Reason, lang: Lang) -> &'static str {
    match lang {
        Lang::Fr => match reason {
            Reason::Email => {
                "Adresse e-mail : retirez-la ; pour un contact professionnel, nommez le service \
                 (« l'accueil du CCAS »)."
            }
            Reason::Phone => {
                "Numéro de téléphone : retirez-le ; pour un service, nommez-le (« le secrétariat \
                 du CMP »)."
            }
            Reason::Nir => {
                "Numéro de sécurité sociale (NIR) : retirez-le, il n'a pas sa place dans une \
                 fiche pseudonymisée."
            }
            Reason::Iban => "IBAN ou coordonnées bancaires : retirez-les.",
            Reason::BirthDate => {
                "Date de naissance : retirez-la ; la tranche d'âge suffit. Une date d'événement \
                 passe si le texte dit de quoi il s'agit (« hospitalisée du … au … »)."
            }
            Reason::Address => {
                "Adresse : retirez le numéro, la rue et le logement ; indiquez seulement la \
                 commune ou le quartier."
            }
            Reason::Name => {
                "Nom de personne après une civilité : remplacez-le par une initiale (Mme B.)."
            }
            Reason::ClaimantNumber => {
                "Numéro d'allocataire (CAF, MSA) : retirez-le ; « allocataire CAF » suffit."
            }
            Reason::IdentityName => {
                "Nom ou prénom de la personne (donné pour le rapprochement) : remplacez-le par \
                 une initiale ou par « la personne »."
            }
            Reason::IdentityBirthDate => {
                "Date de naissance de la personne (donnée pour le rapprochement) : retirez-la ; \
                 la tranche d'âge suffit."
            }
        },
        Lang::En => match reason {
            Reason::Email => {
                "E-mail address: remove it; for a professional contact, name the service (\"the \
                 CCAS front desk\")."
            }
            Reason::Phone => {
                "Phone number: remove it; for a service, name it (\"the CMP's secretariat\")."
            }
            Reason::Nir => {
                "Social security number (NIR): remove it; it has no place in a pseudonymised \
                 referral."
            }
            Reason::Iban => "IBAN or bank details: remove them.",
            Reason::BirthDate => {
                "Birth date: remove it; the age band is enough. An event's date passes when the \
                 text says what happened (\"hospitalisée du … au …\")."
            }
            Reason::Address => {
                "Address: remove the number, street and flat; give only the commune or the \
                 neighbourhood."
            }
            Reason::Name => "Name after a civil title: replace it with an initial (Mme B.).",
            Reason::ClaimantNumber => {
                "Benefit claimant number (CAF, MSA): remove it; \"allocataire CAF\" is enough."
            }
            Reason::IdentityName => {
                "The person's last or first name (given for linkage): replace it with an initial \
                 or with \"the person\"."
            }
            Reason::IdentityBirthDate => {
                "The person's birth date (given for linkage): remove it; the age band is enough."
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language() {
        assert_eq!(Lang::from_accept_language("en-GB,en;q=0.9"), Lang::En);
        assert_eq!(
            Lang::from_accept_language("fr-FR,fr;q=0.9,en;q=0.8"),
            Lang::Fr
        );
        assert_eq!(Lang::from_accept_language("de, en"), Lang::En);
        assert_eq!(Lang::from_accept_language(""), Lang::Fr);
        assert_eq!(Lang::from_accept_language("*"), Lang::Fr);
    }
}
