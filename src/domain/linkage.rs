//! Linkage key (docs/design.md §3): HMAC-SHA256, under a per-cellule secret, of the normalised identity.
//! It tells that two referrals concern the same person without storing who that person is.
//!
//! Normalisation: names upper-cased, accents removed (Unicode NFD, combining marks dropped),
//! everything but letters and digits removed (`Jean-Édouard d'Arc` → `JEANEDOUARDDARC`); the
//! birth date in ISO form. The identity itself is never stored, never logged, and wiped from
//! memory once the key is computed.

use chrono::NaiveDate;
use serde::Deserialize;
use unicode_normalization::UnicodeNormalization;
use utoipa::ToSchema;
use zeroize::Zeroizing;

/// The identity sent with a referral, only to derive the linkage key. `Debug` shows nothing.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    #[schema(value_type = String)]
    last_name: Zeroizing<String>,
    #[schema(value_type = String)]
    first_name: Zeroizing<String>,
    /// ISO date, `YYYY-MM-DD`.
    #[schema(value_type = String, format = Date)]
    birth_date: Zeroizing<String>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Identity(<redacted>)")
    }
}

/// Why an identity cannot be used; never contains the identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityError {
    pub field: &'static str,
    pub message: &'static str,
}

fn normalise_name(name: &str) -> Zeroizing<String> {
    Zeroizing::new(
        name.nfd()
            .filter(|c| c.is_alphanumeric() && !unicode_normalization::char::is_combining_mark(*c))
            .flat_map(char::to_uppercase)
            .collect(),
    )
}

impl Identity {
    /// The normalised message `LAST|FIRST|YYYY-MM-DD`.
    fn normalised(&self) -> Result<Zeroizing<String>, IdentityError> {
        let last = normalise_name(&self.last_name);
        let first = normalise_name(&self.first_name);
        if last.is_empty() || last.len() > 200 {
            return Err(IdentityError {
                field: "last_name",
                message: "must hold 1-200 letters",
            });
        }
        if first.is_empty() || first.len() > 200 {
            return Err(IdentityError {
                field: "first_name",
                message: "must hold 1-200 letters",
            });
        }
        let date = NaiveDate::parse_from_str(self.birth_date.trim(), "%Y-%m-%d").map_err(|_| {
            IdentityError {
                field: "birth_date",
                message: "must be a date YYYY-MM-DD",
            }
        })?;
        Ok(Zeroizing::new(format!(
            "{}|{}|{}",
            last.as_str(),
            first.as_str(),
            date.format("%Y-%m-%d")
        )))
    }

    /// The identity's parts as the guard looks for them in the referral's texts (the birth date
    /// when it reads as one).
    pub fn parts(&self) -> crate::domain::guard::IdentityParts<'_> {
        crate::domain::guard::IdentityParts {
            last_name: self.last_name.as_str(),
            first_name: self.first_name.as_str(),
            birth_date: NaiveDate::parse_from_str(self.birth_date.trim(), "%Y-%m-%d").ok(),
        }
    }

    /// HMAC-SHA256 of the normalised identity under the cellule's secret, hex-encoded.
    pub fn linkage_key(&self, secret: &[u8]) -> Result<String, IdentityError> {
        let message = self.normalised()?;
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
        let tag = ring::hmac::sign(&key, message.as_bytes());
        Ok(tag.as_ref().iter().map(|b| format!("{b:02x}")).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(last: &str, first: &str, birth: &str) -> Identity {
        Identity {
            last_name: Zeroizing::new(last.into()),
            first_name: Zeroizing::new(first.into()),
            birth_date: Zeroizing::new(birth.into()),
        }
    }

    #[test]
    fn spelling_variants_link() {
        let secret = [7u8; 32];
        let a = identity("Dupont-Lefèvre", "Jean Édouard", "1980-04-02")
            .linkage_key(&secret)
            .unwrap();
        let b = identity("DUPONT LEFEVRE", "jean-edouard", " 1980-04-02 ")
            .linkage_key(&secret)
            .unwrap();
        assert_eq!(a, b);
        let c = identity("Dupont-Lefèvre", "Jean Édouard", "1980-04-03")
            .linkage_key(&secret)
            .unwrap();
        assert_ne!(a, c);
        let d = identity("Dupont-Lefèvre", "Jean Édouard", "1980-04-02")
            .linkage_key(&[8u8; 32])
            .unwrap();
        assert_ne!(a, d, "another cellule's secret gives another key");
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn bad_identities() {
        assert_eq!(
            identity("", "x", "1980-01-01")
                .linkage_key(&[0; 32])
                .unwrap_err()
                .field,
            "last_name"
        );
        assert_eq!(
            identity("x", "x", "02/04/1980")
                .linkage_key(&[0; 32])
                .unwrap_err()
                .field,
            "birth_date"
        );
        assert!(!format!("{:?}", identity("Secret", "Name", "1980-01-01")).contains("Secret"));
    }
}
