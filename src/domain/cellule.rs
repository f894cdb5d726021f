//! A cellule cas complexes: one per CLSM territory.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::{Invalid, invalid};

/// URL-safe identifier of a cellule: 2–63 characters, lower-case letters, digits and `-`,
/// starting with a letter or digit. Used in every API path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, pattern = "^[a-z0-9][a-z0-9-]{1,62}$", example = "perpignan")]
pub struct CelluleSlug(String);

impl CelluleSlug {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let ok_len = (2..=63).contains(&s.len());
        let ok_chars = s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        let ok_start = s
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if ok_len && ok_chars && ok_start {
            Ok(Self(s.to_owned()))
        } else {
            invalid(
                "slug must be 2-63 characters: lower-case letters, digits and '-', not starting with '-'",
            )
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The default reference code: the slug's first letters, upper-cased (`perpignan` → `PER`).
    pub fn default_code(&self) -> Result<CelluleCode, Invalid> {
        let letters: String = self
            .0
            .chars()
            .filter(char::is_ascii_alphabetic)
            .take(3)
            .collect();
        CelluleCode::parse(&letters.to_ascii_uppercase())
    }
}

impl std::fmt::Display for CelluleSlug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Code used in case references (`PER-2026-0042`): 2–6 upper-case ASCII letters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, pattern = "^[A-Z]{2,6}$", example = "PER")]
pub struct CelluleCode(String);

impl CelluleCode {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        if (2..=6).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Self(s.to_owned()))
        } else {
            invalid("code must be 2-6 upper-case letters A-Z")
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Display name of a cellule: 1–200 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, example = "Cellule cas complexes de Perpignan")]
pub struct CelluleName(String);

impl CelluleName {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        super::label(s, "name").map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What is needed to create a cellule.
#[derive(Debug, Clone)]
pub struct NewCellule {
    pub slug: CelluleSlug,
    pub name: CelluleName,
    pub code: CelluleCode,
    /// Text of the first version of the cellule's confidentiality charter.
    pub charter: String,
}

/// A stored cellule.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Cellule {
    pub slug: CelluleSlug,
    pub name: CelluleName,
    pub code: CelluleCode,
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert!(CelluleSlug::parse("perpignan").is_ok());
        assert!(CelluleSlug::parse("clsm-66-2").is_ok());
        for bad in [
            "",
            "a",
            "-abc",
            "Perpignan",
            "per pignan",
            "pér",
            &"a".repeat(64),
        ] {
            assert!(CelluleSlug::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn codes() {
        assert_eq!(
            CelluleSlug::parse("perpignan")
                .unwrap()
                .default_code()
                .unwrap()
                .as_str(),
            "PER"
        );
        assert!(CelluleCode::parse("P").is_err());
        assert!(CelluleCode::parse("PER1").is_err());
        assert!(CelluleCode::parse("per").is_err());
        assert!(CelluleSlug::parse("66-1").unwrap().default_code().is_err());
    }

    #[test]
    fn names() {
        assert_eq!(
            CelluleName::parse("  Perpignan ").unwrap().as_str(),
            "Perpignan"
        );
        assert!(CelluleName::parse("   ").is_err());
        assert!(CelluleName::parse("a\u{0}b").is_err());
    }
}

deserialize_via_parse!(CelluleSlug, CelluleCode, CelluleName);
