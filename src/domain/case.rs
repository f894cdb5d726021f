//! Cases and referrals: the pseudonymised attributes (stored in clear, needed to route, plan and
//! count) and the lifecycle of docs/design.md §4.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Invalid, invalid};

string_enum!(
    /// Age band of the person.
    AgeBand { Minor = "0-17", A18 = "18-24", A25 = "25-34", A35 = "35-44", A45 = "45-54", A55 = "55-64", A65 = "65-74", A75 = "75+" }
);
string_enum!(
    /// Gender as given by the referrer.
    Gender { F = "f", M = "m", X = "x", Unknown = "unknown" }
);
string_enum!(
    /// Urgency, in increasing order.
    Urgency { Routine = "routine", Priority = "priority", Urgent = "urgent" }
);
string_enum!(
    /// Need categories (docs/design.md §3).
    Need {
        Housing = "housing",
        CareAccess = "care_access",
        CareContinuity = "care_continuity",
        Isolation = "isolation",
        Addiction = "addiction",
        FamilyMinors = "family_minors",
        ViolenceDanger = "violence_danger",
        RightsIncome = "rights_income",
        NeighbourhoodNuisance = "neighbourhood_nuisance",
        Other = "other",
    }
);
string_enum!(
    /// Consent of the person to the referral (docs/design.md §5). `objected` is refused.
    ConsentStatus { Agreed = "agreed", Informed = "informed", NotInformed = "not_informed", Objected = "objected" }
);
string_enum!(
    /// Status of a case (docs/design.md §4).
    CaseStatus {
        Submitted = "submitted",
        Accepted = "accepted",
        Declined = "declined",
        Scheduled = "scheduled",
        InFollowUp = "in_follow_up",
        Closed = "closed",
    }
);
string_enum!(
    /// Who may read a note (docs/design.md §6).
    Audience { Cellule = "cellule", Psychiatry = "psychiatry", City = "city" }
);

/// The needs of a case: distinct, in the order of [`Need::ALL`]'s declaration (sorted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs(Vec<Need>);

impl Needs {
    /// The needs given, sorted; `None` when one repeats.
    pub fn new(mut needs: Vec<Need>) -> Option<Self> {
        let given = needs.len();
        needs.sort();
        needs.dedup();
        (needs.len() == given).then_some(Needs(needs))
    }

    pub fn as_slice(&self) -> &[Need] {
        &self.0
    }

    pub fn contains(&self, need: Need) -> bool {
        self.0.contains(&need)
    }

    /// The stored form `,housing,care_access,`: one need is found with `LIKE '%,need,%'`.
    pub fn to_stored(&self) -> String {
        let mut out = String::from(",");
        for n in &self.0 {
            out.push_str(n.as_str());
            out.push(',');
        }
        out
    }

    /// Reads the stored form back.
    pub fn parse_stored(stored: &str) -> Result<Self, Invalid> {
        let needs = stored
            .split(',')
            .filter(|s| !s.is_empty())
            .map(Need::parse)
            .collect::<Result<Vec<_>, _>>()?;
        Needs::new(needs).ok_or_else(|| Invalid("needs must not repeat".into()))
    }

    /// The pattern of a stored form that holds `need`.
    pub fn pattern(need: Need) -> String {
        format!("%,{},%", need.as_str())
    }
}

impl CaseStatus {
    /// The lifecycle graph. Everything else is refused with 409.
    ///
    /// `submitted → accepted | declined`, `accepted → scheduled`, `scheduled → in_follow_up |
    /// closed | accepted` (taken off an agenda), `in_follow_up → scheduled | closed`.
    pub fn can_become(self, to: CaseStatus) -> bool {
        use CaseStatus::*;
        matches!(
            (self, to),
            (Submitted, Accepted)
                | (Submitted, Declined)
                | (Accepted, Scheduled)
                | (Scheduled, InFollowUp)
                | (Scheduled, Closed)
                | (Scheduled, Accepted)
                | (InFollowUp, Scheduled)
                | (InFollowUp, Closed)
        )
    }

    /// Open cases are the ones duplicates are looked for among.
    pub fn is_open(self) -> bool {
        !matches!(self, CaseStatus::Declined | CaseStatus::Closed)
    }

    /// Transitions that need a reason (stored encrypted).
    pub fn needs_reason(self) -> bool {
        matches!(self, CaseStatus::Declined | CaseStatus::Closed)
    }
}

/// INSEE code of a commune: five characters, `2A`/`2B` for Corsica (`66136`, `2A004`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, pattern = "^([0-9]{2}|2A|2B)[0-9]{3}$", example = "66136")]
pub struct Commune(String);

impl Commune {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let b = s.as_bytes();
        let dept = b.len() == 5
            && (b[..2].iter().all(u8::is_ascii_digit) || &b[..2] == b"2A" || &b[..2] == b"2B");
        if dept && b[2..].iter().all(u8::is_ascii_digit) {
            Ok(Self(s.to_owned()))
        } else {
            invalid("commune must be a 5-character INSEE code such as 66136 or 2A004")
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Psychiatric sector code: département, `G` (adults), `I` (children) or `P` (prison), number
/// (`66G03`, `2BI01`, `974G12`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, pattern = "^([0-9]{2,3}|2A|2B)[GIP][0-9]{2}$", example = "66G03")]
pub struct Sector(String);

impl Sector {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let b = s.as_bytes();
        let ok = |dept: &[u8], rest: &[u8]| {
            (dept.iter().all(u8::is_ascii_digit) || dept == b"2A" || dept == b"2B")
                && rest.len() == 3
                && matches!(rest[0], b'G' | b'I' | b'P')
                && rest[1..].iter().all(u8::is_ascii_digit)
        };
        let valid = (b.len() == 5 && ok(&b[..2], &b[2..]))
            || (b.len() == 6 && b.starts_with(b"97") && ok(&b[..3], &b[3..]));
        if valid {
            Ok(Self(s.to_owned()))
        } else {
            invalid("sector must be a psychiatric sector code such as 66G03")
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

deserialize_via_parse!(Commune, Sector);

/// A case reference, `CODE-YYYY-NNNN` (`PER-2026-0042`); the sequence widens past 9999.
pub fn format_reference(code: &str, year: i32, seq: i64) -> String {
    format!("{code}-{year}-{seq:04}")
}

/// The year a reference is numbered in (UTC).
pub fn reference_year(at: DateTime<Utc>) -> i32 {
    at.year()
}

/// A follow-up date (calendar date, no time).
pub type FollowUpDate = NaiveDate;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_graph() {
        use CaseStatus::*;
        let allowed: Vec<(CaseStatus, CaseStatus)> = CaseStatus::ALL
            .iter()
            .flat_map(|a| CaseStatus::ALL.iter().map(move |b| (*a, *b)))
            .filter(|(a, b)| a.can_become(*b))
            .collect();
        assert_eq!(allowed.len(), 8);
        assert!(!Declined.can_become(Accepted));
        assert!(!Closed.can_become(Scheduled));
        assert!(!Submitted.can_become(Submitted));
    }

    #[test]
    fn codes() {
        assert!(Commune::parse("66136").is_ok());
        assert!(Commune::parse("2A004").is_ok());
        assert!(Commune::parse("6613").is_err());
        assert!(Commune::parse("2C004").is_err());
        assert!(Sector::parse("66G03").is_ok());
        assert!(Sector::parse("2BI01").is_ok());
        assert!(Sector::parse("974G12").is_ok());
        assert!(Sector::parse("66X03").is_err());
        assert!(Sector::parse("66G3").is_err());
        assert_eq!(format_reference("PER", 2026, 42), "PER-2026-0042");
        assert_eq!(format_reference("PER", 2026, 12345), "PER-2026-12345");
    }
}
