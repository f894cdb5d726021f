//! Referrals (fiches de saisine): the identifier guard and the linkage key.

pub mod guard;
pub mod linkage;
