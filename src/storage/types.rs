//! The domain's enumerations as database values: stored as their text (`as_str`), read back
//! through their `parse`, on either backend. A stored value that no longer parses fails the
//! row's decoding (a corrupt row) instead of travelling on as an unchecked string.

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::{Database, Decode, Encode, Type};

use crate::domain::agenda::Kind;
use crate::domain::case::{AgeBand, Audience, CaseStatus, ConsentStatus, Gender, Needs, Urgency};
use crate::domain::session::{AttendanceStatus, Outcome, SessionStatus};
use crate::domain::{Role, Sphere};

/// `Type`, `Encode` and `Decode` for enumerations with `as_str` and `parse`, generic over the
/// backend: the column's type is the backend's text.
macro_rules! text_enum {
    ($($t:ty),+ $(,)?) => {$(
        impl<DB: Database> Type<DB> for $t
        where
            str: Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <str as Type<DB>>::type_info()
            }

            fn compatible(ty: &DB::TypeInfo) -> bool {
                <str as Type<DB>>::compatible(ty)
            }
        }

        impl<'q, DB: Database> Encode<'q, DB> for $t
        where
            &'q str: Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut <DB as Database>::ArgumentBuffer<'q>,
            ) -> Result<IsNull, BoxDynError> {
                <&str as Encode<'q, DB>>::encode(self.as_str(), buf)
            }
        }

        impl<'r, DB: Database> Decode<'r, DB> for $t
        where
            &'r str: Decode<'r, DB>,
        {
            fn decode(value: <DB as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
                let text = <&str as Decode<'r, DB>>::decode(value)?;
                Ok(<$t>::parse(text)?)
            }
        }
    )+};
}

text_enum!(
    Role,
    Sphere,
    CaseStatus,
    Urgency,
    AgeBand,
    Gender,
    ConsentStatus,
    Audience,
    Kind,
    SessionStatus,
    Outcome,
    AttendanceStatus
);

/// The needs of a case are stored as `,need,need,` ([`Needs::to_stored`]).
impl<DB: Database> Type<DB> for Needs
where
    str: Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <str as Type<DB>>::type_info()
    }

    fn compatible(ty: &DB::TypeInfo) -> bool {
        <str as Type<DB>>::compatible(ty)
    }
}

impl<'q, DB: Database> Encode<'q, DB> for Needs
where
    String: Encode<'q, DB>,
{
    fn encode_by_ref(
        &self,
        buf: &mut <DB as Database>::ArgumentBuffer<'q>,
    ) -> Result<IsNull, BoxDynError> {
        <String as Encode<'q, DB>>::encode(self.to_stored(), buf)
    }
}

impl<'r, DB: Database> Decode<'r, DB> for Needs
where
    &'r str: Decode<'r, DB>,
{
    fn decode(value: <DB as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <&str as Decode<'r, DB>>::decode(value)?;
        Ok(Needs::parse_stored(text)?)
    }
}

#[cfg(test)]
mod tests {
    use sqlx::Connection;

    use super::*;

    /// Each value goes in as its text and comes back as itself; a text that is no value of the
    /// enumeration is refused when read.
    #[tokio::test]
    async fn enumerations_round_trip_as_their_text() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let mut c = sqlx::SqliteConnection::connect(&url)
            .await
            .expect("connect");
        for status in CaseStatus::ALL {
            let (text, back): (String, CaseStatus) = sqlx::query_as("SELECT $1, $1")
                .bind(*status)
                .fetch_one(&mut c)
                .await
                .expect("round trip");
            assert_eq!((text.as_str(), back), (status.as_str(), *status));
        }
        for role in [
            Role::Referrer,
            Role::Member,
            Role::Coordinator,
            Role::Auditor,
        ] {
            let back: Role = sqlx::query_scalar("SELECT $1")
                .bind(role)
                .fetch_one(&mut c)
                .await
                .expect("round trip");
            assert_eq!(back, role);
        }
        let none: Option<Sphere> = sqlx::query_scalar("SELECT NULL")
            .fetch_one(&mut c)
            .await
            .expect("null");
        assert_eq!(none, None);
        let bad = sqlx::query_scalar::<_, Urgency>("SELECT 'whenever'")
            .fetch_one(&mut c)
            .await;
        assert!(
            matches!(bad, Err(sqlx::Error::ColumnDecode { .. })),
            "{bad:?}"
        );
    }
}
