//! Memberships: what a verified subject may do in one cellule (docs/design.md §2).
//!
//! Choices where the spec is silent:
//! - `member` and `coordinator` must have a sphere (`city` or `psychiatry`) and an organisation;
//! - a `referrer` must name their organisation; their sphere is optional;
//! - an `auditor` has no sphere (they never see case content); their organisation is optional;
//! - only a `member` can be a `guest`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Invalid, invalid};

/// The `sub` of a verified token (with the issuer's configured prefix): 1–255 visible characters.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, example = "psc:8100012345")]
pub struct Subject(String);

impl Subject {
    /// Checks and normalises (NFC) a subject: no spaces, controls, format characters
    /// (bidirectional overrides, zero-width characters) or line separators.
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let s = super::nfc(s);
        if s.is_empty() || s.len() > 255 {
            return invalid("subject must be 1-255 bytes");
        }
        if s.chars().any(|c| c.is_whitespace() || super::hidden(c)) {
            return invalid(
                "subject must not contain spaces, control, format, bidirectional or line separator characters",
            );
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Subject({:?})", self.0)
    }
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Role of a membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Referrer,
    Member,
    Coordinator,
    Auditor,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Referrer => "referrer",
            Role::Member => "member",
            Role::Coordinator => "coordinator",
            Role::Auditor => "auditor",
        }
    }

    pub fn parse(s: &str) -> Result<Self, Invalid> {
        match s {
            "referrer" => Ok(Role::Referrer),
            "member" => Ok(Role::Member),
            "coordinator" => Ok(Role::Coordinator),
            "auditor" => Ok(Role::Auditor),
            _ => invalid("role must be one of referrer, member, coordinator, auditor"),
        }
    }
}

/// Professional sphere: decides which notes a person may read (docs/design.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Sphere {
    City,
    Psychiatry,
}

impl Sphere {
    pub fn as_str(self) -> &'static str {
        match self {
            Sphere::City => "city",
            Sphere::Psychiatry => "psychiatry",
        }
    }

    pub fn parse(s: &str) -> Result<Self, Invalid> {
        match s {
            "city" => Ok(Sphere::City),
            "psychiatry" => Ok(Sphere::Psychiatry),
            _ => invalid("sphere must be city or psychiatry"),
        }
    }
}

/// Name of an organisation (`CCAS Perpignan`, `CMP secteur 66G03`): 1–200 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, example = "CCAS Perpignan")]
pub struct Organisation(String);

impl Organisation {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        super::label(s, "organisation").map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A validated combination of role, sphere, organisation and guest flag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct MembershipSpec {
    pub role: Role,
    pub sphere: Option<Sphere>,
    pub organisation: Option<Organisation>,
    pub guest: bool,
}

impl MembershipSpec {
    /// Checks the combination rules in the module docs. The error names the offending field.
    pub fn new(
        role: Role,
        sphere: Option<Sphere>,
        organisation: Option<Organisation>,
        guest: bool,
    ) -> Result<Self, (&'static str, Invalid)> {
        match role {
            Role::Member | Role::Coordinator => {
                if sphere.is_none() {
                    return Err((
                        "sphere",
                        Invalid(format!(
                            "a {} must have a sphere (city or psychiatry)",
                            role.as_str()
                        )),
                    ));
                }
                if organisation.is_none() {
                    return Err((
                        "organisation",
                        Invalid(format!("a {} must have an organisation", role.as_str())),
                    ));
                }
            }
            Role::Referrer => {
                if organisation.is_none() {
                    return Err((
                        "organisation",
                        Invalid("a referrer must have an organisation".into()),
                    ));
                }
            }
            Role::Auditor => {
                if sphere.is_some() {
                    return Err(("sphere", Invalid("an auditor has no sphere".into())));
                }
            }
        }
        if guest && role != Role::Member {
            return Err(("guest", Invalid("only a member can be a guest".into())));
        }
        Ok(Self {
            role,
            sphere,
            organisation,
            guest,
        })
    }
}

/// A stored membership.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Membership {
    pub cellule: super::CelluleSlug,
    pub subject: Subject,
    #[serde(flatten)]
    pub spec: MembershipSpec,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org() -> Option<Organisation> {
        Some(Organisation::parse("CCAS").unwrap())
    }

    #[test]
    fn combination_rules() {
        assert!(MembershipSpec::new(Role::Member, Some(Sphere::City), org(), true).is_ok());
        assert_eq!(
            MembershipSpec::new(Role::Member, None, org(), false)
                .unwrap_err()
                .0,
            "sphere"
        );
        assert_eq!(
            MembershipSpec::new(Role::Coordinator, Some(Sphere::City), None, false)
                .unwrap_err()
                .0,
            "organisation"
        );
        assert_eq!(
            MembershipSpec::new(Role::Coordinator, Some(Sphere::City), org(), true)
                .unwrap_err()
                .0,
            "guest"
        );
        assert!(MembershipSpec::new(Role::Referrer, None, org(), false).is_ok());
        assert_eq!(
            MembershipSpec::new(Role::Referrer, None, None, false)
                .unwrap_err()
                .0,
            "organisation"
        );
        assert!(MembershipSpec::new(Role::Auditor, None, None, false).is_ok());
        assert_eq!(
            MembershipSpec::new(Role::Auditor, Some(Sphere::City), None, false)
                .unwrap_err()
                .0,
            "sphere"
        );
    }

    #[test]
    fn subjects() {
        assert!(Subject::parse("psc:8100012345").is_ok());
        assert!(Subject::parse("").is_err());
        assert!(Subject::parse("a b").is_err());
        assert!(Subject::parse(&"x".repeat(256)).is_err());
        for bad in [
            "coordA\u{202e}",
            "a\u{2028}b",
            "a\u{200d}b",
            "\u{feff}a",
            "a\u{0}",
        ] {
            assert!(Subject::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Subject::parse("jose\u{301}").unwrap().as_str(),
            "jos\u{e9}",
            "subjects are NFC"
        );
    }
}

deserialize_via_parse!(Organisation);
