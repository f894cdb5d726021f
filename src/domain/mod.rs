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
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
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

/// A human-readable label (a name, an organisation): trimmed, 1-200 characters, no control
/// characters.
pub(crate) fn label(s: &str, what: &str) -> Result<String, Invalid> {
    let trimmed = s.trim();
    let len = trimmed.chars().count();
    if len == 0 || len > 200 {
        return invalid(format!("{what} must be 1-200 characters"));
    }
    if trimmed.chars().any(char::is_control) {
        return invalid(format!("{what} must not contain control characters"));
    }
    Ok(trimmed.to_owned())
}

pub(crate) fn invalid<T>(message: impl Into<String>) -> Result<T, Invalid> {
    Err(Invalid(message.into()))
}

/// Collapses a possibly multi-line message into one line.
pub fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}
