//! Domain types: validated newtypes for what the service stores and checks.
//!
//! Every value that comes from outside (API body, CLI argument, database row) is parsed into one
//! of these before use, so a handler never sees an unchecked slug, role or subject.

/// `Deserialize` through the type's `parse`, so that JSON input is validated exactly like CLI input.
macro_rules! deserialize_via_parse {
    ($($t:ty),+) => {$(
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    )+};
}

/// A closed set of values with one text each: `as_str`, `parse`, `ALL`, serde under that text.
/// The texts are matched as `tt`, not `literal`: a `literal` fragment reaches the derives wrapped
/// in an invisible group, which utoipa does not read as a `rename`, and the OpenAPI document then
/// showed the Rust variant names (`A18`) instead of the API's (`18-24`).
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:tt),+ $(,)? }) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
        $(#[$meta])*
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(s: &str) -> Result<Self, Invalid> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => invalid(concat!(stringify!($name), " must be one of: ", $($text, " "),+)),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub mod agenda;
pub mod case;
pub mod cellule;
pub mod guard;
pub mod linkage;
pub mod membership;
pub mod minutes;
pub mod notice;
pub mod policy;
pub mod routing;
pub mod schedule;
pub mod session;

pub use cellule::{Cellule, CelluleCode, CelluleName, CelluleSlug, NewCellule};
pub use membership::{Membership, MembershipSpec, Organisation, Role, Sphere, Subject};

/// One invalid field.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema, PartialEq, Eq)]
pub struct FieldError {
    /// JSON pointer (RFC 6901) to the offending member, `""` for the whole body.
    #[schema(example = "/role")]
    pub pointer: String,
    pub detail: String,
}

impl FieldError {
    pub fn new(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            pointer: pointer.into(),
            detail: detail.into(),
        }
    }
}

/// A value that failed validation, with a message that never echoes the rejected input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// A human-readable label (a name, an organisation): trimmed, in Unicode NFC, 1-200 characters,
/// no control, format (bidirectional marks and overrides, zero-width characters) or line and
/// paragraph separator characters.
pub(crate) fn label(s: &str, what: &str) -> Result<String, Invalid> {
    let normalised = nfc(s.trim());
    let len = normalised.chars().count();
    if len == 0 || len > 200 {
        return invalid(format!("{what} must be 1-200 characters"));
    }
    if normalised.chars().any(hidden) {
        return invalid(format!(
            "{what} must not contain control, format, bidirectional or line separator characters"
        ));
    }
    Ok(normalised)
}

/// `s` in Unicode normalisation form C, so that one name has one spelling.
pub(crate) fn nfc(s: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    s.nfc().collect()
}

/// A character that does not show as itself or that reorders or breaks the text around it:
/// controls (Cc), format characters (Cf: bidirectional embeddings, overrides, isolates and
/// marks, zero-width spaces and joiners, the byte order mark…), line and paragraph separators
/// (Zl, Zp), surrogates and private-use characters.
pub(crate) fn hidden(c: char) -> bool {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    matches!(
        c.general_category(),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
            | GeneralCategory::Surrogate
            | GeneralCategory::PrivateUse
    )
}

pub(crate) fn invalid<T>(message: impl Into<String>) -> Result<T, Invalid> {
    Err(Invalid(message.into()))
}

/// Collapses a possibly multi-line message into one line.
pub fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_refuse_hidden_characters_and_are_nfc() {
        for bad in [
            "X\u{2028}forged line",
            "evil\u{202e}txt",
            "a\u{200b}b",
            "\u{feff}CCAS",
            "a\u{2066}b\u{2069}",
            "a\u{061c}b",
            "a\u{0}b",
            "a\u{2029}b",
            "a\u{e000}b",
        ] {
            assert!(label(bad, "name").is_err(), "{bad:?}");
        }
        let decomposed = "Me\u{301}diation";
        assert_eq!(label(decomposed, "name").unwrap(), "M\u{e9}diation");
        assert_eq!(label(" CMP 66G03 ", "name").unwrap(), "CMP 66G03");
    }
}
